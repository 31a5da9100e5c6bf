//! Config and zone text that several test files share.

/// example.test. with its SOA, its NS and the name server's address, nothing else.
pub const BARE_ZONE: &str = r#"
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test." }
ns = ["ns1.example.test."]
records = [ { name = "ns1", type = "A", value = "127.0.0.1" } ]
"#;

/// `mls` answers the MLS (127.0.0.10) while it is up, else its standby (127.0.0.20), else
/// the outage page (127.0.0.80).
pub const MLS_DYNAMIC: &str = r#"
[[dynamic]]
name = "mls"
type = "A"
ttl = 30
answers = [
  { if_up = "mls",    values = ["127.0.0.10"] },
  { if_up = "mls_dr", values = ["127.0.0.20"] },
]
otherwise = ["127.0.0.80"]
"#;

/// `mls` answers the MLS (127.0.0.10) while it is up, else the outage page (127.0.0.80).
pub const MLS_ONLY_DYNAMIC: &str = r#"
[[dynamic]]
name = "mls"
type = "A"
ttl = 30
answers = [ { if_up = "mls", values = ["127.0.0.10"] } ]
otherwise = ["127.0.0.80"]
"#;

/// Ephemeral listeners, one UDP worker, one unchecked service (`mls`); `extra_server`
/// joins `[server]` at line 7.
pub fn single_worker_config(extra_server: &str) -> String {
    format!(
        "[server]\ndns_listen = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\npage_listen = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\nudp_workers = 1\n{extra_server}\n[services.mls]\nname = \"MLS\"\n"
    )
}

/// A config with every listener on an ephemeral loopback port; `rest` follows `[server]`.
pub fn page_config(extra_server: &str, rest: &str) -> String {
    format!(
        r#"
[server]
dns_listen = ["127.0.0.1:0"]
page_listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
zones_dir = "zones"
state_dir = "state"
udp_workers = 1
{extra_server}

{rest}
"#
    )
}

/// The zone big.test.: `keys` (each on its own line) before `records` (the lines inside
/// `records = [ ]`).
pub fn big_zone(keys: &str, records: &str) -> String {
    format!(
        "origin = \"big.test.\"\nsoa = {{ mname = \"ns.big.test.\", rname = \"h.big.test.\" }}\nns = [\"ns.big.test.\"]\n{keys}records = [\n{records}]\n"
    )
}
