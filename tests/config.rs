//! Configuration errors: each names file:line:col and what was expected; shipped examples load.

mod common;

use common::*;
use detour::config::{Config, Diagnostics};

const ZONE_OK: &str = r#"
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test." }
ns = ["ns1.example.test."]
records = [ { name = "ns1", type = "A", value = "127.0.0.1" } ]
"#;

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
}

#[test]
fn an_unknown_key_names_its_position() {
    let cfg = config_toml("").replace("udp_workers = 2", "udp_workers = 2\nlisten_dns = 1");
    let (_f, r) = load(&cfg, &[("z.toml", ZONE_OK)]);
    let e = r.unwrap_err();
    expect_error(&e, "detour.toml", 8, 1, "unknown field `listen_dns`");
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
fn a_wrong_type_names_its_position_and_what_was_expected() {
    let cfg = "[check_defaults]\nrise = \"two\"\n";
    let (_f, r) = load(cfg, &[("z.toml", ZONE_OK)]);
    expect_error(
        &r.unwrap_err(),
        "detour.toml",
        2,
        8,
        "invalid type: string \"two\", expected u32",
    );

    let cfg = "[check_defaults]\ninterval = \"five\"\n";
    let (_f, r) = load(cfg, &[("z.toml", ZONE_OK)]);
    expect_error(
        &r.unwrap_err(),
        "detour.toml",
        2,
        12,
        "expected a string such as \"250ms\"",
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
fn bad_addresses_are_errors() {
    let cfg = "[server]\ndns_listen = [\"127.0.0.1\", \"localhost:53\"]\nzones_dir = \"zones\"\n";
    let (_f, r) = load(cfg, &[("z.toml", ZONE_OK)]);
    let e = r.unwrap_err();
    expect_error(
        &e,
        "detour.toml",
        2,
        15,
        "invalid dns_listen address \"127.0.0.1\": expected an IP address and port",
    );
    expect_error(
        &e,
        "detour.toml",
        2,
        28,
        "invalid dns_listen address \"localhost:53\"",
    );
}

fn zone_with(records: &str, extra: &str) -> String {
    format!(
        "origin = \"example.test.\"\nsoa = {{ mname = \"ns1.example.test.\", rname = \"h.example.test.\" }}\nns = [\"ns1.example.test.\"]\nrecords = [\n{records}]\n{extra}"
    )
}

#[test]
fn names_outside_their_zone_are_errors() {
    let z = zone_with(
        "  { name = \"www.example.com.\", type = \"A\", value = \"192.0.2.1\" },\n",
        "",
    );
    let (_f, r) = load(&config_toml(""), &[("z.toml", &z)]);
    expect_error(
        &r.unwrap_err(),
        "z.toml",
        5,
        12,
        "name www.example.com. is outside zone example.test.",
    );
}

#[test]
fn a_cname_beside_other_data_is_an_error() {
    let z = zone_with(
        "  { name = \"www\", type = \"A\", value = \"192.0.2.1\" },\n  { name = \"www\", type = \"CNAME\", value = \"mls\" },\n",
        "",
    );
    let (_f, r) = load(&config_toml(""), &[("z.toml", &z)]);
    expect_error(&r.unwrap_err(), "z.toml", 6, 12, "CNAME beside other data");

    // A dynamic record beside a static CNAME too.
    let z = zone_with(
        "  { name = \"mls\", type = \"CNAME\", value = \"www\" },\n",
        "[[dynamic]]\nname = \"mls\"\ntype = \"A\"\nanswers = [ { if_up = \"mls\", values = [\"192.0.2.1\"] } ]\notherwise = [\"192.0.2.80\"]\n",
    );
    let (_f, r) = load(&config_toml(""), &[("z.toml", &z)]);
    let e = r.unwrap_err();
    assert!(e.to_string().contains("also has dynamic A"), "{e}");
}

#[test]
fn duplicate_zones_are_errors() {
    let (_f, r) = load(
        &config_toml(""),
        &[("a.toml", ZONE_OK), ("b.toml", ZONE_OK)],
    );
    let e = r.unwrap_err();
    expect_error(
        &e,
        "b.toml",
        2,
        10,
        "duplicate zone example.test.: already served from",
    );
}

#[test]
fn dangling_if_up_and_missing_otherwise_are_errors() {
    let z = zone_with(
        "",
        "[[dynamic]]\nname = \"mls\"\ntype = \"A\"\nanswers = [ { if_up = \"nosuch\", values = [\"192.0.2.1\"] } ]\n",
    );
    let (_f, r) = load(&config_toml(""), &[("z.toml", &z)]);
    let e = r.unwrap_err();
    expect_error(
        &e,
        "z.toml",
        9,
        23,
        "if_up names unknown service \"nosuch\": expected one of mls",
    );
    expect_error(
        &e,
        "z.toml",
        6,
        1,
        "dynamic record mls.example.test. has no `otherwise`",
    );
}

#[test]
fn bad_record_values_name_the_type_and_the_expected_form() {
    let z = zone_with(
        "  { name = \"a\", type = \"A\", value = \"::1\" },\n  { name = \"m\", type = \"MX\", value = \"mail\" },\n  { name = \"x\", type = \"HINFO\", value = \"a b\" },\n",
        "",
    );
    let (_f, r) = load(&config_toml(""), &[("z.toml", &z)]);
    let e = r.unwrap_err();
    expect_error(
        &e,
        "z.toml",
        5,
        37,
        "invalid A value \"::1\": expected an IPv4 address",
    );
    expect_error(&e, "z.toml", 6, 38, "expected \"PREFERENCE HOST\"");
    expect_error(&e, "z.toml", 7, 24, "unsupported record type \"HINFO\"");

    // TXT: bare text is one value (split at 255 bytes); quoted strings are read as a zone
    // file writes them, and a malformed one names its position.
    let z = zone_with(
        "  { name = \"t\", type = \"TXT\", value = '\"one\" \"two' },\n",
        "",
    );
    let (_f, r) = load(&config_toml(""), &[("z.toml", &z)]);
    expect_error(
        &r.unwrap_err(),
        "z.toml",
        5,
        39,
        "invalid TXT value \"\\\"one\\\" \\\"two\": expected quoted strings",
    );
}

#[test]
fn references_between_services_are_checked() {
    let cfg = r#"
[server]
zones_dir = "zones"
[services.a]
depends_on = ["b"]
[services.b]
depends_on = ["a", "ghost"]
"#;
    let (_f, r) = load(cfg, &[("z.toml", ZONE_OK)]);
    let e = r.unwrap_err();
    expect_error(
        &e,
        "detour.toml",
        7,
        20,
        "unknown service \"ghost\" in depends_on",
    );

    let (_f, r) = load(&cfg.replace(", \"ghost\"", ""), &[("z.toml", ZONE_OK)]);
    let e = r.unwrap_err();
    assert!(
        e.to_string().contains("dependency cycle: a -> b -> a"),
        "{e}"
    );
}

#[test]
fn check_fields_must_fit_their_type() {
    let cfg = r#"
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
"#;
    let (_f, r) = load(cfg, &[("z.toml", ZONE_OK)]);
    let e = r.unwrap_err();
    expect_error(
        &e,
        "detour.toml",
        5,
        67,
        "`body_contains` does not apply to tcp checks",
    );
    expect_error(&e, "detour.toml", 7, 18, "unknown check type \"smtp\"");
    expect_error(
        &e,
        "detour.toml",
        9,
        80,
        "timeout (3s) must not exceed the interval (1s)",
    );
    expect_error(
        &e,
        "detour.toml",
        11,
        67,
        "down_interval must be between 50ms and 1h",
    );
    expect_error(
        &e,
        "detour.toml",
        13,
        83,
        "`watch` does not apply to dns checks",
    );
    assert_eq!(e.0.len(), 5, "watch on a tcp check is fine: {e}");
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
fn links_people_are_sent_to_must_be_web_mail_or_phone() {
    let cfg = "[server]\nzones_dir = \"zones\"\n[page]\nlinks = [ { label = \"x\", url = \"javascript:alert(1)\" } ]\n[services.mls]\nurl = \"data:text/html,hi\"\n";
    let (_f, r) = load(cfg, &[("z.toml", ZONE_OK)]);
    let e = r.unwrap_err();
    expect_error(
        &e,
        "detour.toml",
        4,
        32,
        "invalid link URL \"javascript:alert(1)\"",
    );
    expect_error(&e, "detour.toml", 6, 7, "invalid url \"data:text/html,hi\"");
}

#[test]
fn the_page_time_zone_must_be_an_iana_name() {
    let cfg = "[server]\nzones_dir = \"zones\"\n[page]\ntimezone = \"Eastern\"\n";
    let (_f, r) = load(cfg, &[("z.toml", ZONE_OK)]);
    expect_error(
        &r.unwrap_err(),
        "detour.toml",
        4,
        12,
        "unknown time zone \"Eastern\": expected an IANA name such as \"America/New_York\"",
    );
    let cfg = "[server]\nzones_dir = \"zones\"\n[page]\ntimezone = \"America/New_York\"\n";
    let (_f, r) = load(cfg, &[("z.toml", ZONE_OK)]);
    assert_eq!(r.unwrap().page.timezone, Some(chrono_tz::America::New_York));
}

#[test]
fn page_tls_needs_existing_certificate_files() {
    let cfg = "[server]\nzones_dir = \"zones\"\n[page.tls]\nlisten = [\"127.0.0.1:0\"]\ncerts = [ { cert = \"nope.pem\", key = \"nope.key\" } ]\n";
    let (_f, r) = load(cfg, &[("z.toml", ZONE_OK)]);
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("[page.tls] file ") && e.contains("nope.pem does not exist"),
        "{e}"
    );
    let cfg = "[server]\nzones_dir = \"zones\"\n[page.tls]\ncerts = []\n";
    let (_f, r) = load(cfg, &[("z.toml", ZONE_OK)]);
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("needs at least one certificate")
    );
}

#[test]
fn a_cookie_secret_is_32_hex_digits() {
    let (_f, r) = load(
        "[server]\nzones_dir = \"zones\"\ncookie_secret = \"e5e973e5a6b2\"\n",
        &[("z.toml", ZONE_OK)],
    );
    expect_error(
        &r.unwrap_err(),
        "detour.toml",
        3,
        17,
        "cookie_secret: expected 32 hexadecimal digits (16 bytes, e.g. `openssl rand -hex 16`), got 12 characters",
    );
    let (_f, r) = load(
        "[server]\nzones_dir = \"zones\"\ncookie_secret = \"E5E973E5A6B2A43F48E7DC849E37BFCF\"\n",
        &[("z.toml", ZONE_OK)],
    );
    assert!(r.unwrap().server.cookies.is_some());
    let (_f, r) = load(
        "[server]\nzones_dir = \"zones\"\ncookies = false\n",
        &[("z.toml", ZONE_OK)],
    );
    assert!(r.unwrap().server.cookies.is_none());
    // Checked with cookies off too, so that turning them on finds no typo.
    let (_f, r) = load(
        "[server]\nzones_dir = \"zones\"\ncookies = false\ncookie_secret = \"xyz\"\n",
        &[("z.toml", ZONE_OK)],
    );
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("detour.toml:4:17: cookie_secret")
    );
}

#[test]
fn tsig_keys_need_a_base64_secret_given_once_and_a_known_algorithm() {
    let base = "[server]\nzones_dir = \"zones\"\n";
    let good = "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IQ==";
    let (_f, r) = load(
        &format!("{base}[tsig.xfr]\nsecret = \"not base64!\"\n"),
        &[("z.toml", ZONE_OK)],
    );
    expect_error(
        &r.unwrap_err(),
        "detour.toml",
        4,
        10,
        "the TSIG secret is not base64",
    );
    let (_f, r) = load(
        &format!("{base}[tsig.xfr]\nsecret = \"{good}\"\nalgorithm = \"hmac-md5\"\n"),
        &[("z.toml", ZONE_OK)],
    );
    expect_error(
        &r.unwrap_err(),
        "detour.toml",
        5,
        13,
        "unsupported TSIG algorithm \"hmac-md5\": expected one of hmac-sha256, hmac-sha1, hmac-sha384, hmac-sha512",
    );
    let (_f, r) = load(
        &format!("{base}[tsig.xfr]\nsecret = \"{good}\"\nsecret_file = \"x\"\n"),
        &[("z.toml", ZONE_OK)],
    );
    expect_error(
        &r.unwrap_err(),
        "detour.toml",
        3,
        7,
        "exactly one of `secret`",
    );
    let (_f, r) = load(
        &format!("{base}[tsig.xfr]\nsecret_file = \"missing.key\"\n"),
        &[("z.toml", ZONE_OK)],
    );
    expect_error(
        &r.unwrap_err(),
        "detour.toml",
        4,
        15,
        "cannot read TSIG secret_file \"missing.key\"",
    );
    let (_f, r) = load(
        &format!("{base}[tsig.\"bad..name\"]\nsecret = \"{good}\"\n"),
        &[("z.toml", ZONE_OK)],
    );
    expect_error(
        &r.unwrap_err(),
        "detour.toml",
        3,
        7,
        "invalid TSIG key name \"bad..name\"",
    );

    let (_f, r) = load(
        &format!("{base}[tsig.xfr]\nsecret = \"{good}\"\n[tsig.\"XFR.\"]\nsecret = \"{good}\"\n"),
        &[("z.toml", ZONE_OK)],
    );
    expect_error(
        &r.unwrap_err(),
        "detour.toml",
        5,
        7,
        "TSIG key xfr. is defined twice",
    );

    // A secret in a file beside the config (as tsig-keygen's output would be cut down to).
    let f = Fixture::new(
        &format!(
            "{base}[tsig.\"XFR.example\"]\nsecret_file = \"xfr.key\"\nalgorithm = \"HMAC-SHA512\"\n"
        ),
        &[("z.toml", ZONE_OK)],
    );
    write(
        &f.config_path().with_file_name("xfr.key"),
        &format!("{good}\n"),
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
        shown.contains("hmac-sha512") && !shown.contains(good),
        "{shown}"
    );
}

#[test]
fn transfer_keys_must_be_config_keys_and_go_with_allow_transfer() {
    let cfg = "[server]\nzones_dir = \"zones\"\n[tsig.xfr]\nsecret = \"c2VjcmV0\"\n[tsig.next]\nsecret = \"c2VjcmV0\"\n";
    let z = zone_with(
        "",
        "allow_transfer = [\"127.0.0.1\"]\ntransfer_key = \"nope\"\n",
    );
    let (_f, r) = load(cfg, &[("z.toml", &z)]);
    expect_error(
        &r.unwrap_err(),
        "z.toml",
        7,
        16,
        "transfer key \"nope\" is not a [tsig] key of the config; known: xfr., next.",
    );
    let z = zone_with("", "transfer_key = \"xfr\"\n");
    let (_f, r) = load(cfg, &[("z.toml", &z)]);
    expect_error(
        &r.unwrap_err(),
        "z.toml",
        6,
        16,
        "a transfer key without allow_transfer",
    );
    let z = zone_with(
        "",
        "allow_transfer = [\"127.0.0.1\"]\ntransfer_key = \"xfr\"\ntransfer_keys = [\"next\"]\n",
    );
    let (_f, r) = load(cfg, &[("z.toml", &z)]);
    expect_error(
        &r.unwrap_err(),
        "z.toml",
        7,
        16,
        "transfer_key and transfer_keys together",
    );
    let z = zone_with("", "allow_transfer = [\"127.0.0.1\"]\ntransfer_keys = []\n");
    let (_f, r) = load(cfg, &[("z.toml", &z)]);
    expect_error(&r.unwrap_err(), "z.toml", 7, 17, "transfer_keys is empty");

    // One key, or several while a key is rotated (the first signs NOTIFY).
    let names = |extra: &str| -> Vec<String> {
        let z = zone_with("", &format!("allow_transfer = [\"127.0.0.1\"]\n{extra}"));
        let (_f, r) = load(cfg, &[("z.toml", &z)]);
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
        "allow_transfer = [\"127.0.0.1\"]\n[[dynamic]]\nname = \"mls\"\ntype = \"A\"\nanswers = [ { if_up = \"mls\", values = [\"192.0.2.1\"] } ]\notherwise = [\"192.0.2.80\"]\n",
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
