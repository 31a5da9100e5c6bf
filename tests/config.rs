//! Configuration errors: each names file:line:col and what was expected; shipped examples load.

mod common;

use common::*;
use detour::config::{Config, Diagnostic, Diagnostics};

fn load(config: &str, zones: &[(&str, &str)]) -> (Fixture, Result<Config, Diagnostics>) {
    let f = Fixture::new(config, zones);
    let r = Config::load(&f.config_path());
    (f, r)
}

/// Asserts one error at `file:line:col` whose message contains `needle`.
fn expect_error(errors: &Diagnostics, file: &str, line: usize, col: usize, needle: &str) {
    let found = errors.iter().any(|d| {
        d.file.ends_with(file) && d.line == line && d.col == col && d.message.contains(needle)
    });
    assert!(
        found,
        "expected {file}:{line}:{col} containing {needle:?}; got:\n{errors}"
    );
}

/// The dynamic record `mls`, in 192.0.2.0/24, as `extra` for [`zone_with`].
const MLS_192: &str = "[[dynamic]]\nname = \"mls\"\ntype = \"A\"\nanswers = [ { if_up = \"mls\", values = [\"192.0.2.1\"] } ]\notherwise = [\"192.0.2.80\"]\n";

/// example.test. with `records` (the lines inside `records = [ ]`) and `extra` after them.
fn zone_with(records: &str, extra: &str) -> String {
    format!(
        "origin = \"example.test.\"\nsoa = {{ mname = \"ns1.example.test.\", rname = \"h.example.test.\" }}\nns = [\"ns1.example.test.\"]\nrecords = [\n{records}]\n{extra}"
    )
}

/// A config that must be refused: what the case shows, `detour.toml`, the zone files, and
/// the errors it must report and no others, each `file:line:col: text` (an error at that
/// position whose message contains `text`; `0:0` for an error without a position).
type Refused = (
    &'static str,
    String,
    Vec<(&'static str, String)>,
    &'static [&'static str],
);

/// `BARE_ZONE` as the only zone.
fn zone_ok() -> Vec<(&'static str, String)> {
    zone(BARE_ZONE)
}

/// `text` as the only zone, z.toml.
fn zone(text: &str) -> Vec<(&'static str, String)> {
    vec![("z.toml", text.to_string())]
}

/// The least a config needs.
const SERVER: &str = "[server]\nzones_dir = \"zones\"\n";
/// A TSIG secret (28 bytes).
const SECRET: &str = "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IQ==";
/// Two TSIG keys, for the zones' transfer keys.
const TSIG_KEYS: &str = "[server]\nzones_dir = \"zones\"\n[tsig.xfr]\nsecret = \"c2VjcmV0\"\n[tsig.next]\nsecret = \"c2VjcmV0\"\n";
/// Two services that depend on each other, and one of them on a service that is not there.
const DEPENDS: &str = r#"
[server]
zones_dir = "zones"
[services.a]
depends_on = ["b"]
[services.b]
depends_on = ["a", "ghost"]
"#;

fn refused() -> Vec<Refused> {
    let mut all = common_refused();
    if cfg!(feature = "cluster") {
        all.extend(cluster_refused());
    } else {
        all.push((
            "a cluster in a build without it",
            "[server]\nzones_dir = \"zones\"\n[cluster]\ninstance = \"a\"\n".into(),
            zone_ok(),
            &["detour.toml:3:1: this detour was built without the cluster"],
        ));
    }
    all
}

/// `[cluster]` mistakes (with the `cluster` feature).
fn cluster_refused() -> Vec<Refused> {
    vec![
        (
            "a cluster without a name, with a bad endpoint, prefix, quorum and lease",
            "[server]\nzones_dir = \"zones\"\n[cluster]\netcd = [\"127.0.0.1:2379\"]\nprefix = \"detour\"\nquorum = \"most\"\nlease_ttl = \"1s\"\n".into(),
            zone_ok(),
            &[
                "detour.toml:3:1: [cluster] needs `instance`",
                "detour.toml:4:9: invalid etcd endpoint \"127.0.0.1:2379\": expected \"http://HOST:PORT\"",
                "detour.toml:5:10: invalid prefix \"detour\": expected a key prefix that starts and ends with '/'",
                "detour.toml:6:10: invalid quorum \"most\": expected \"one\", \"majority\", \"all\" or { at_least = N }",
                "detour.toml:7:13: lease_ttl must be between 2s and 60s",
            ],
        ),
        (
            "a service quorum of zero, a cluster password file that is missing",
            "[server]\nzones_dir = \"zones\"\n[services.mls]\nquorum = { at_least = 0 }\n[cluster]\ninstance = \"a b\"\netcd = [\"http://127.0.0.1:2379\"]\nusername = \"u\"\npassword_file = \"nope\"\n".into(),
            zone_ok(),
            &[
                "detour.toml:4:10: quorum.at_least must be at least 1",
                "detour.toml:6:12: invalid instance \"a b\"",
                "detour.toml:9:17: cannot read password_file \"nope\"",
            ],
        ),
    ]
}

fn common_refused() -> Vec<Refused> {
    vec![
        (
            "an unknown key names its position",
            config_toml("listen_dns = 1"),
            zone_ok(),
            &["detour.toml:8:1: unknown field `listen_dns`"],
        ),
        (
            "console limits out of range, incident templates with an unknown service, no message, a name twice",
            "[server]\nzones_dir = \"zones\"\n[services.mls]\n[console]\nidle_timeout = \"10s\"\nlockout_after = 0\n[[incident_templates]]\nname = \"Sign-on outage\"\nservices = [\"ghost\"]\nmessage = \"\"\n[[incident_templates]]\nname = \"sign-on outage\"\nmessage = \"x\"\n".into(),
            zone_ok(),
            &[
                "detour.toml:5:16: [console] idle_timeout must be between \"1m\" and \"24h\"",
                "detour.toml:6:17: [console] lockout_after must be between 1 and 100",
                "detour.toml:9:13: unknown service \"ghost\" in incident_templates: expected one of mls",
                "detour.toml:10:11: an incident template needs a message",
                "detour.toml:12:8: incident template \"sign-on outage\" is defined twice",
            ],
        ),
        (
            "a console HTTPS listener without certificates, and one that is no address",
            "[server]\nzones_dir = \"zones\"\n[console]\nlisten = [\"127.0.0.1:0\", \"nope\"]\ncerts = [ { cert = \"missing.crt\", key = \"missing.key\" } ]\n".into(),
            zone_ok(),
            &[
                "detour.toml:4:26: invalid console listen address \"nope\"",
                "detour.toml:5:11: [console] file",
                "detour.toml:5:11: [console] file",
            ],
        ),
        (
            "a console HTTPS listener with no certificate anywhere",
            "[server]\nzones_dir = \"zones\"\n[console]\nlisten = [\"127.0.0.1:0\"]\n".into(),
            zone_ok(),
            &["detour.toml:3:1: [console] listen serves HTTPS only: it needs certificates"],
        ),
        (
            "a wrong type names what was expected",
            "[check_defaults]\nrise = \"two\"\n".into(),
            zone_ok(),
            &["detour.toml:2:8: invalid type: string \"two\", expected u32"],
        ),
        (
            "a duration that is not one",
            "[check_defaults]\ninterval = \"five\"\n".into(),
            zone_ok(),
            &["detour.toml:2:12: expected a string such as \"250ms\""],
        ),
        (
            "bad addresses",
            "[server]\ndns_listen = [\"127.0.0.1\", \"localhost:53\"]\nzones_dir = \"zones\"\n"
                .into(),
            zone_ok(),
            &[
                "detour.toml:2:15: invalid dns_listen address \"127.0.0.1\": expected an IP address and port",
                "detour.toml:2:28: invalid dns_listen address \"localhost:53\"",
            ],
        ),
        (
            "a name outside its zone",
            config_toml(""),
            zone(&zone_with(
                "  { name = \"www.example.com.\", type = \"A\", value = \"192.0.2.1\" },\n",
                "",
            )),
            &["z.toml:5:12: name www.example.com. is outside zone example.test."],
        ),
        (
            "a CNAME beside other data",
            config_toml(""),
            zone(&zone_with(
                "  { name = \"www\", type = \"A\", value = \"192.0.2.1\" },\n  { name = \"www\", type = \"CNAME\", value = \"mls\" },\n",
                "",
            )),
            &["z.toml:6:12: CNAME beside other data"],
        ),
        (
            "a dynamic record beside a static CNAME",
            config_toml(""),
            zone(&zone_with(
                "  { name = \"mls\", type = \"CNAME\", value = \"www\" },\n",
                MLS_192,
            )),
            &["z.toml:5:12: also has dynamic A"],
        ),
        (
            "a zone served twice",
            config_toml(""),
            vec![("a.toml", BARE_ZONE.into()), ("b.toml", BARE_ZONE.into())],
            &["b.toml:2:10: duplicate zone example.test.: already served from"],
        ),
        (
            "a dangling if_up and a missing otherwise",
            config_toml(""),
            zone(&zone_with(
                "",
                "[[dynamic]]\nname = \"mls\"\ntype = \"A\"\nanswers = [ { if_up = \"nosuch\", values = [\"192.0.2.1\"] } ]\n",
            )),
            &[
                "z.toml:9:23: if_up names unknown service \"nosuch\": expected one of mls",
                "z.toml:6:1: dynamic record mls.example.test. has no `otherwise`",
            ],
        ),
        (
            "bad record values name the type and the expected form",
            config_toml(""),
            zone(&zone_with(
                "  { name = \"a\", type = \"A\", value = \"::1\" },\n  { name = \"m\", type = \"MX\", value = \"mail\" },\n  { name = \"x\", type = \"HINFO\", value = \"a b\" },\n",
                "",
            )),
            &[
                "z.toml:5:37: invalid A value \"::1\": expected an IPv4 address",
                "z.toml:6:38: expected \"PREFERENCE HOST\"",
                "z.toml:7:24: unsupported record type \"HINFO\"",
            ],
        ),
        (
            // TXT: bare text is one value (split at 255 bytes); quoted strings are read as a
            // zone file writes them, and a malformed one names its position.
            "a malformed quoted TXT value",
            config_toml(""),
            zone(&zone_with(
                "  { name = \"t\", type = \"TXT\", value = '\"one\" \"two' },\n",
                "",
            )),
            &["z.toml:5:39: invalid TXT value \"\\\"one\\\" \\\"two\": expected quoted strings"],
        ),
        (
            "an unknown service in depends_on",
            DEPENDS.into(),
            zone_ok(),
            &["detour.toml:7:20: unknown service \"ghost\" in depends_on"],
        ),
        (
            "a dependency cycle",
            DEPENDS.replace(", \"ghost\"", ""),
            zone_ok(),
            &["detour.toml:0:0: dependency cycle: a -> b -> a"],
        ),
        (
            // `watch` on a tcp check ([services.f]) is fine: no sixth error.
            "check fields must fit their type",
            r#"
[server]
zones_dir = "zones"
[services.a]
check = { type = "tcp", address = "127.0.0.1:80", body_contains = "OK" }
[services.b]
check = { type = "smtp" }
[services.c]
check = { type = "http", url = "http://127.0.0.1/", interval = "1s", timeout = "3s" }
[services.d]
check = { type = "tcp", address = "127.0.0.1:80", down_interval = "10ms" }
[services.e]
check = { type = "dns", name = "x.example.test", server = "127.0.0.1:53", watch = true }
[services.f]
check = { type = "tcp", address = "127.0.0.1:80", watch = true }
"#
            .into(),
            zone_ok(),
            &[
                "detour.toml:5:67: `body_contains` does not apply to tcp checks",
                "detour.toml:7:18: unknown check type \"smtp\"",
                "detour.toml:9:80: timeout (3s) must not exceed the interval (1s)",
                "detour.toml:11:67: down_interval must be between 50ms and 1h",
                "detour.toml:13:83: `watch` does not apply to dns checks",
            ],
        ),
        (
            "links people are sent to must be web, mail or phone",
            format!(
                "{SERVER}[page]\nlinks = [ {{ label = \"x\", url = \"javascript:alert(1)\" }} ]\n[services.mls]\nurl = \"data:text/html,hi\"\n"
            ),
            zone_ok(),
            &[
                "detour.toml:4:32: invalid link URL \"javascript:alert(1)\"",
                "detour.toml:6:7: invalid url \"data:text/html,hi\"",
            ],
        ),
        (
            "the page time zone must be an IANA name",
            format!("{SERVER}[page]\ntimezone = \"Eastern\"\n"),
            zone_ok(),
            &[
                "detour.toml:4:12: unknown time zone \"Eastern\": expected an IANA name such as \"America/New_York\"",
            ],
        ),
        (
            "page TLS needs existing certificate files",
            format!(
                "{SERVER}[page.tls]\nlisten = [\"127.0.0.1:0\"]\ncerts = [ {{ cert = \"nope.pem\", key = \"nope.key\" }} ]\n"
            ),
            zone_ok(),
            &[
                "detour.toml:5:11: [page.tls] file ",
                "detour.toml:5:11: nope.pem does not exist",
            ],
        ),
        (
            "page TLS needs a certificate",
            format!("{SERVER}[page.tls]\ncerts = []\n"),
            zone_ok(),
            &["detour.toml:0:0: needs at least one certificate"],
        ),
        (
            "a cookie secret is 32 hex digits",
            format!("{SERVER}cookie_secret = \"e5e973e5a6b2\"\n"),
            zone_ok(),
            &[
                "detour.toml:3:17: cookie_secret: expected 32 hexadecimal digits (16 bytes, e.g. `openssl rand -hex 16`), got 12 characters",
            ],
        ),
        (
            // Checked with cookies off too, so that turning them on finds no typo.
            "a cookie secret is checked with cookies off",
            format!("{SERVER}cookies = false\ncookie_secret = \"xyz\"\n"),
            zone_ok(),
            &["detour.toml:4:17: cookie_secret: expected 32 hexadecimal digits"],
        ),
        (
            "response-rate limits out of range",
            format!(
                "{SERVER}[server.rrl]\nrate = 2000000\nslip = 11\nipv4_prefix = 33\nipv6_prefix = 129\n"
            ),
            zone_ok(),
            &[
                "detour.toml:4:8: [server.rrl] rate (identical answers per second to one prefix; 0 = off): expected 0 to 1000000, got 2000000",
                "detour.toml:5:8: [server.rrl] slip (every slip-th limited answer is truncated; 0 = none): expected 0 to 10, got 11",
                "detour.toml:6:15: [server.rrl] ipv4_prefix (bits): expected 0 to 32, got 33",
                "detour.toml:7:15: [server.rrl] ipv6_prefix (bits): expected 0 to 128, got 129",
            ],
        ),
        (
            "an unknown response-rate limiting key",
            format!("{SERVER}[server.rrl]\nrate = 5\nwindow = 1\n"),
            zone_ok(),
            &[
                "detour.toml:5:1: unknown field `window`, expected one of `rate`, `slip`, `ipv4_prefix`, `ipv6_prefix`",
            ],
        ),
        (
            "a negative rate",
            format!("{SERVER}[server.rrl]\nrate = -1\n"),
            zone_ok(),
            &["detour.toml:4:8: invalid value: integer `-1`, expected u32"],
        ),
        (
            "a TSIG secret that is not base64",
            format!("{SERVER}[tsig.xfr]\nsecret = \"not base64!\"\n"),
            zone_ok(),
            &["detour.toml:4:10: the TSIG secret is not base64"],
        ),
        (
            "an unknown TSIG algorithm",
            format!("{SERVER}[tsig.xfr]\nsecret = \"{SECRET}\"\nalgorithm = \"hmac-md5\"\n"),
            zone_ok(),
            &[
                "detour.toml:5:13: unsupported TSIG algorithm \"hmac-md5\": expected one of hmac-sha256, hmac-sha1, hmac-sha384, hmac-sha512",
            ],
        ),
        (
            "a TSIG secret given twice",
            format!("{SERVER}[tsig.xfr]\nsecret = \"{SECRET}\"\nsecret_file = \"x\"\n"),
            zone_ok(),
            &["detour.toml:3:7: exactly one of `secret`"],
        ),
        (
            "a missing TSIG secret_file",
            format!("{SERVER}[tsig.xfr]\nsecret_file = \"missing.key\"\n"),
            zone_ok(),
            &["detour.toml:4:15: cannot read TSIG secret_file \"missing.key\""],
        ),
        (
            "a bad TSIG key name",
            format!("{SERVER}[tsig.\"bad..name\"]\nsecret = \"{SECRET}\"\n"),
            zone_ok(),
            &["detour.toml:3:7: invalid TSIG key name \"bad..name\""],
        ),
        (
            "a TSIG key defined twice",
            format!(
                "{SERVER}[tsig.xfr]\nsecret = \"{SECRET}\"\n[tsig.\"XFR.\"]\nsecret = \"{SECRET}\"\n"
            ),
            zone_ok(),
            &["detour.toml:5:7: TSIG key xfr. is defined twice"],
        ),
        (
            "a transfer key that is not a config key",
            TSIG_KEYS.into(),
            zone(&zone_with(
                "",
                "allow_transfer = [\"127.0.0.1\"]\ntransfer_key = \"nope\"\n",
            )),
            &[
                "z.toml:7:16: transfer key \"nope\" is not a [tsig] key of the config; known: xfr., next.",
            ],
        ),
        (
            "a transfer key without allow_transfer",
            TSIG_KEYS.into(),
            zone(&zone_with("", "transfer_key = \"xfr\"\n")),
            &["z.toml:6:16: a transfer key without allow_transfer"],
        ),
        (
            "transfer_key and transfer_keys together",
            TSIG_KEYS.into(),
            zone(&zone_with(
                "",
                "allow_transfer = [\"127.0.0.1\"]\ntransfer_key = \"xfr\"\ntransfer_keys = [\"next\"]\n",
            )),
            &["z.toml:7:16: transfer_key and transfer_keys together"],
        ),
        (
            "an empty transfer_keys",
            TSIG_KEYS.into(),
            zone(&zone_with(
                "",
                "allow_transfer = [\"127.0.0.1\"]\ntransfer_keys = []\n",
            )),
            &["z.toml:7:17: transfer_keys is empty"],
        ),
        (
            "a probe_source that is not an address",
            format!("{SERVER}probe_source = \"uplink\"\n"),
            zone_ok(),
            &[
                "detour.toml:3:16: invalid probe_source \"uplink\": expected an IP address of this host such as \"192.0.2.10\" or \"2001:db8::10\"",
            ],
        ),
        (
            "a probe_source with a port",
            format!("{SERVER}probe_source = \"127.0.0.3:0\"\n"),
            zone_ok(),
            &[
                "detour.toml:3:16: invalid probe_source \"127.0.0.3:0\": expected an IP address of this host such as \"192.0.2.10\" or \"2001:db8::10\", without a port",
            ],
        ),
        (
            "a probe_source that names no one address",
            format!("{SERVER}probe_source = \"0.0.0.0\"\n"),
            zone_ok(),
            &["detour.toml:3:16: probe_source \"0.0.0.0\" is the unspecified address"],
        ),
        (
            "a link-local probe_source",
            format!("{SERVER}probe_source = \"fe80::1\"\n"),
            zone_ok(),
            &[
                "detour.toml:3:16: probe_source \"fe80::1\" is IPv6 link-local, which needs an interface",
            ],
        ),
        (
            "targets written as addresses of the other family than probe_source",
            PROBE_FAMILIES.into(),
            zone_ok(),
            &[
                "detour.toml:5:32: IPv6 address ::1 cannot be probed from probe_source 127.0.0.3 (IPv4): probes leave from probe_source, so a target written as an address must be of its family",
                "detour.toml:7:35: IPv6 address ::1 cannot be probed from probe_source 127.0.0.3 (IPv4)",
                "detour.toml:9:61: IPv6 address ::1 cannot be probed from probe_source 127.0.0.3 (IPv4)",
                "detour.toml:11:39: IPv6 address ::1 cannot be probed from probe_source 127.0.0.3 (IPv4)",
            ],
        ),
        (
            "check_each of an AAAA record from an IPv4 probe_source",
            format!("{SERVER}probe_source = \"127.0.0.3\"\n[services.mls]\n"),
            zone(&zone_with("", &each("AAAA", "::1"))),
            &[
                "z.toml:11:14: check_each would probe the IPv6 addresses of this AAAA record from probe_source 127.0.0.3 (IPv4): every probe would fail",
            ],
        ),
        (
            "check_each of an A record from an IPv6 probe_source",
            format!("{SERVER}probe_source = \"2001:db8::10\"\n[services.mls]\n"),
            zone(&zone_with("", &each("A", "192.0.2.1"))),
            &[
                "z.toml:11:14: check_each would probe the IPv4 addresses of this A record from probe_source 2001:db8::10 (IPv6)",
            ],
        ),
    ]
}

/// An IPv4 probe_source, and an http, a tcp and a dns check and a canary whose targets are
/// IPv6 addresses.
const PROBE_FAMILIES: &str = r#"[server]
zones_dir = "zones"
probe_source = "127.0.0.3"
[services.web]
check = { type = "http", url = "http://[::1]:8080/" }
[services.shell]
check = { type = "tcp", address = "[::1]:22" }
[services.mls]
check = { type = "dns", name = "mls.example.test", server = "::1" }
[guard]
canaries = [{ type = "tcp", address = "[::1]:53" }]
"#;

/// A dynamic `mls` record of `rtype` answering `value` while mls is up, probed on port 80.
fn each(rtype: &str, value: &str) -> String {
    format!(
        "[[dynamic]]\nname = \"mls\"\ntype = \"{rtype}\"\nanswers = [ {{ if_up = \"mls\", values = [\"{value}\"] }} ]\notherwise = [\"{value}\"]\ncheck_each = {{ type = \"tcp\", port = 80 }}\n"
    )
}

/// Whether `d` is the error `expected` (`file:line:col: text`) names.
fn is(d: &Diagnostic, expected: &str) -> bool {
    let parse = || {
        let (file, rest) = expected.split_once(':')?;
        let (line, rest) = rest.split_once(':')?;
        let (col, text) = rest.split_once(": ")?;
        Some((file, line.parse().ok()?, col.parse().ok()?, text))
    };
    let (file, line, col, text): (&str, usize, usize, &str) =
        parse().unwrap_or_else(|| panic!("not `file:line:col: text`: {expected:?}"));
    d.file.ends_with(file) && d.line == line && d.col == col && d.message.contains(text)
}

#[test]
fn bad_configs_are_refused_with_every_error_named_where_it_is() {
    let mut failed = Vec::new();
    for (case, config, zones, errors) in refused() {
        let zones: Vec<(&str, &str)> = zones.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let (_f, r) = load(&config, &zones);
        let Err(got) = r else {
            failed.push(format!("{case}: loaded; expected {errors:#?}"));
            continue;
        };
        for e in errors.iter().filter(|e| !got.iter().any(|d| is(d, e))) {
            failed.push(format!("{case}: expected {e:?}; got:\n{got}"));
        }
        for d in got.iter().filter(|d| !errors.iter().any(|e| is(d, e))) {
            failed.push(format!("{case}: unexpected {d}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn the_shipped_example_config_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = Config::load(&root.join("config/detour.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.zones.len(), 1);
    assert_eq!(cfg.zones[0].origin.to_string(), "example.test.");
    let ids: Vec<&str> = cfg.services.keys().map(String::as_str).collect();
    assert_eq!(ids, ["forms", "mls", "mls_dr", "sso"]);
    let dynamic: Vec<String> = cfg.zones[0]
        .dynamic
        .iter()
        .map(|d| d.name.to_string())
        .collect();
    assert_eq!(dynamic, ["mls.example.test.", "sso.example.test."]);
    assert_eq!(cfg.services["mls"].depends_on, ["sso"]);
    assert_eq!(
        cfg.services["mls"].checks[0].timing.interval.as_millis(),
        1000
    );
    // Confirm pace defaults to interval / 4, at least 250 ms.
    assert_eq!(
        cfg.services["mls"].checks[0]
            .timing
            .confirm_interval
            .as_millis(),
        250
    );
    assert_eq!(cfg.maintenance.len(), 1);
    assert_eq!(cfg.guard.canaries.len(), 1);
    assert_eq!(cfg.notify.len(), 1);
    let templates: Vec<&str> = cfg
        .incident_templates
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(templates, ["Sign-on outage", "Planned maintenance"]);
    assert_eq!(cfg.console.lockout_after, 5);
}

#[test]
fn unknown_keys_are_rejected_in_every_table() {
    // Inject an unknown key into each table of the shipped example (hickory's habit).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config/detour.toml")).unwrap();
    let tables: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    assert!(tables.len() >= 8, "{tables:?}");
    for t in tables {
        let bad = text.replacen(t, &format!("{t}\nbogus_key = 1"), 1);
        let f = Fixture::new(&bad, &[]);
        let err = Config::load(&f.config_path()).expect_err(t);
        assert!(
            err.to_string().contains("unknown field `bogus_key`"),
            "{t}: {err}"
        );
    }
    // And inside an inline check table.
    let bad = text.replacen(
        "expect_status = [200]",
        "expect_status = [200], bogus = 1",
        1,
    );
    let f = Fixture::new(&bad, &[]);
    assert!(
        Config::load(&f.config_path())
            .unwrap_err()
            .to_string()
            .contains("unknown field `bogus`")
    );
}

#[test]
fn every_syntax_error_of_a_file_is_reported() {
    let cfg = "[server\nstate_dir = \"x\"\n[page]\ntitle = \"unterminated\n";
    let (_f, r) = load(cfg, &[]);
    let e = r.unwrap_err();
    assert!(e.0.len() >= 2, "several syntax errors: {e}");
    assert!(e.iter().all(|d| d.line > 0 && d.col > 0), "{e}");
    assert_eq!(e.0[0].line, 1);
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let e = Config::load(std::path::Path::new("/nonexistent/detour.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/detour.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn the_page_time_zone_is_read() {
    let cfg = format!("{SERVER}[page]\ntimezone = \"America/New_York\"\n");
    let (_f, r) = load(&cfg, &[("z.toml", BARE_ZONE)]);
    assert_eq!(r.unwrap().page.timezone, Some(chrono_tz::America::New_York));
}

#[test]
fn cookies_are_on_with_a_given_secret_and_can_be_off() {
    let (_f, r) = load(
        &format!("{SERVER}cookie_secret = \"E5E973E5A6B2A43F48E7DC849E37BFCF\"\n"),
        &[("z.toml", BARE_ZONE)],
    );
    assert!(r.unwrap().server.cookies.is_some());
    let (_f, r) = load(
        &format!("{SERVER}cookies = false\n"),
        &[("z.toml", BARE_ZONE)],
    );
    assert!(r.unwrap().server.cookies.is_none());
}

#[test]
fn response_rate_limiting_is_off_by_default_and_read_when_set() {
    let (_f, r) = load(SERVER, &[("z.toml", BARE_ZONE)]);
    let rrl = r.unwrap().server.rrl;
    assert_eq!(
        (rrl.rate, rrl.slip, rrl.ipv4_prefix, rrl.ipv6_prefix),
        (0, 2, 24, 56)
    );
    assert_eq!(rrl.to_string(), "off");
    let (_f, r) = load(
        &format!("{SERVER}rrl = {{ rate = 20, slip = 0, ipv4_prefix = 32, ipv6_prefix = 64 }}\n"),
        &[("z.toml", BARE_ZONE)],
    );
    let rrl = r.unwrap().server.rrl;
    assert_eq!(
        (rrl.rate, rrl.slip, rrl.ipv4_prefix, rrl.ipv6_prefix),
        (20, 0, 32, 64)
    );
    assert_eq!(
        rrl.to_string(),
        "20 identical answers/s per IPv4 /32 or IPv6 /64; limited answers dropped"
    );
}

#[test]
fn a_tsig_secret_can_be_read_from_a_file() {
    // A secret in a file beside the config (as tsig-keygen's output would be cut down to).
    let f = Fixture::new(
        &format!(
            "{SERVER}[tsig.\"XFR.example\"]\nsecret_file = \"xfr.key\"\nalgorithm = \"HMAC-SHA512\"\n"
        ),
        &[("z.toml", BARE_ZONE)],
    );
    write(
        &f.config_path().with_file_name("xfr.key"),
        &format!("{SECRET}\n"),
    );
    let cfg = f.load();
    assert_eq!(cfg.tsig.len(), 1);
    assert!(
        cfg.warnings.iter().any(|w| w
            .contains("TSIG key xfr.example.: its 28-byte secret is shorter than the 64-byte MAC")),
        "{:?}",
        cfg.warnings
    );
    assert_eq!(cfg.tsig[0].name().to_string(), "xfr.example.");
    let shown = format!("{:?}", cfg.tsig[0]);
    assert!(
        shown.contains("hmac-sha512") && !shown.contains(SECRET),
        "{shown}"
    );
}

#[test]
fn a_zone_names_one_transfer_key_or_several_while_one_is_rotated() {
    // One key, or several while a key is rotated (the first signs NOTIFY).
    let names = |extra: &str| -> Vec<String> {
        let z = zone_with("", &format!("allow_transfer = [\"127.0.0.1\"]\n{extra}"));
        let (_f, r) = load(TSIG_KEYS, &[("z.toml", &z)]);
        r.unwrap_or_else(|e| panic!("{e}")).zones[0]
            .transfer_keys
            .iter()
            .map(|k| k.name().to_string())
            .collect()
    };
    assert_eq!(names("transfer_key = \"XFR.\"\n"), ["xfr."]);
    assert_eq!(
        names("transfer_keys = [\"next\", \"xfr\"]\n"),
        ["next.", "xfr."]
    );
}

/// A zone of `n` one-line records (over 1 MiB for 20,000: read in pieces), the one at
/// `bad` replaced by `bad_line`, with keys and a table after the records.
fn large_zone(n: usize, bad: Option<(usize, &str)>) -> String {
    let mut recs = String::new();
    for i in 0..n {
        match bad {
            Some((at, line)) if at == i => recs.push_str(line),
            _ => recs.push_str(&format!(
                "  {{ name = \"h{i}\", type = \"A\", value = \"10.0.{}.{}\" }}, # host {i}\n",
                i / 256 % 256,
                i % 256
            )),
        }
    }
    zone_with(
        &recs,
        &format!("allow_transfer = [\"127.0.0.1\"]\n{MLS_192}"),
    )
}

#[test]
fn a_large_zone_is_read_in_pieces_with_exact_positions() {
    let z = large_zone(20_000, None);
    assert!(z.len() > 1 << 20, "{} bytes", z.len());
    let (_f, r) = load(&config_toml(""), &[("big.toml", &z)]);
    let cfg = r.unwrap();
    let zone = &cfg.zones[0];
    // 20,000 records plus the apex NS; the keys and the table after them still apply.
    assert_eq!(zone.records.len(), 20_001);
    assert!(zone.records.iter().any(
        |r| r.name.to_string() == "h19999.example.test." && r.data.to_string() == "10.0.78.31"
    ));
    assert_eq!(zone.allow_transfer.len(), 1);
    assert_eq!(zone.dynamic.len(), 1);

    // A bad value in the middle of the file, in a later piece: its own line and column.
    let line = "  { name = \"h15000\", type = \"A\", value = \"::1\" },\n";
    let z = large_zone(20_000, Some((15_000, line)));
    let (_f, r) = load(&config_toml(""), &[("big.toml", &z)]);
    let col = line.find("\"::1\"").unwrap() + 1;
    expect_error(
        &r.unwrap_err(),
        "big.toml",
        5 + 15_000,
        col,
        "invalid A value \"::1\"",
    );

    // A syntax error there too (an unknown key in the record).
    let line = "  { name = \"h15000\", type = \"A\", valu = \"10.0.0.1\" },\n";
    let z = large_zone(20_000, Some((15_000, line)));
    let (_f, r) = load(&config_toml(""), &[("big.toml", &z)]);
    let e = r.unwrap_err();
    assert!(
        e.iter()
            .any(|d| d.line == 5 + 15_000 && d.message.contains("valu")),
        "{e}"
    );
}

#[test]
fn oncall_email_and_sms_errors_name_their_place() {
    let base = config_toml("");
    let offset = base.lines().count();
    let text = format!(
        r#"{base}
[oncall]
handoff = "Funday 09:00"
length = "30m"
escalate_after = "1s"
people = [ {{ name = "Dana", phone = "555-0101", email = "dana@example.test" }},
           {{ name = "Sam" }} ]
exceptions = [ {{ name = "Lee", from = "2026-12-24T17:00", to = "yesterday" }} ]

[[notify]]
type = "email"
smtp = "http://127.0.0.1:25"
from = "status"
to = ["oncall", "not an address"]
password_file = "missing.secret"

[[notify]]
type = "sms"
url = "http://127.0.0.1:9/"
from = "+15555550100"
to = ["+1"]
command = ["x"]
"#
    );
    let (_, r) = load(&text, &[]);
    let e = r.unwrap_err();
    let l = |n: usize| offset + 1 + n;
    expect_error(
        &e,
        "detour.toml",
        l(2),
        11,
        "invalid handoff \"Funday 09:00\"",
    );
    expect_error(&e, "detour.toml", l(3), 10, "length must be at least 1h");
    expect_error(
        &e,
        "detour.toml",
        l(4),
        18,
        "escalate_after must be at least 5s",
    );
    expect_error(
        &e,
        "detour.toml",
        l(5),
        37,
        "invalid phone \"555-0101\": expected an E.164 number",
    );
    expect_error(
        &e,
        "detour.toml",
        l(6),
        21,
        "Sam has neither `phone` nor `email`",
    );
    expect_error(
        &e,
        "detour.toml",
        l(7),
        25,
        "exception names \"Lee\", who is not in [oncall] people (Dana, Sam)",
    );
    expect_error(&e, "detour.toml", l(7), 64, "invalid time \"yesterday\"");
    expect_error(
        &e,
        "detour.toml",
        l(11),
        8,
        "invalid smtp \"http://127.0.0.1:25\"",
    );
    expect_error(
        &e,
        "detour.toml",
        l(12),
        8,
        "invalid from address \"status\"",
    );
    expect_error(
        &e,
        "detour.toml",
        l(9),
        1,
        "`username` and `password_file` go together",
    );
    expect_error(
        &e,
        "detour.toml",
        l(13),
        17,
        "invalid email address \"not an address\"",
    );
    expect_error(&e, "detour.toml", l(14), 17, "cannot read");
    expect_error(&e, "detour.toml", l(20), 7, "invalid phone \"+1\"");
    expect_error(
        &e,
        "detour.toml",
        l(16),
        1,
        "`command` applies to exec sinks, not sms",
    );
}
