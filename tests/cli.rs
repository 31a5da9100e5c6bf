//! End to end through the real `detour` binary: `check`, and `run` answering DNS, reloading on
//! SIGHUP and stopping cleanly on SIGTERM.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hickory_server::proto::rr::RecordType;

use common::binary::{BIN, Daemon, cli};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_prints_a_summary_and_exits_0() {
    let (code, stdout, _) = cli(&root().join("config/detour.toml"), &["check"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("detour.toml: OK"), "{stdout}");
    assert!(stdout.contains("zones:    1"), "{stdout}");
    assert!(
        stdout.contains("cookies:  on, secret made at each start"),
        "{stdout}"
    );
    assert!(stdout.contains("rrl:      off"), "{stdout}");
    assert!(
        stdout.contains("services: 4 (forms, mls, mls_dr, sso)"),
        "{stdout}"
    );
    // The example watches the MLS: a killed backend is seen within (fall - 1) x confirm.
    assert!(
        stdout.contains("a killed backend (watch): within 30.25s"),
        "{stdout}"
    );
}

#[test]
fn check_lists_every_error_and_exits_2() {
    let f = Fixture::new(
        "[server]\nzones_dir = \"zones\"\ndns_listen = [\"nope\"]\n[check_defaults]\nfall = 0\n",
        &[("z.toml", TEST_ZONE)],
    );
    // --config after the subcommand, as the contract allows.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(f.config_path())
        .arg("check")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("detour.toml:3:15: invalid dns_listen address \"nope\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("detour.toml:5:8: fall must be at least 1"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(BIN).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Copies the shipped example into a temp folder, DNS on an ephemeral port, its guard canary
/// pointed at a live local listener (kept open by the returned value): only the services'
/// backends are down, so detour redirects them. With the shipped canary (127.0.0.1:9004, not
/// running) the guard would hold every service where it was.
fn example_copy() -> (tempfile::TempDir, std::net::TcpListener) {
    let canary = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::create_dir_all(dir.path().join("zones")).unwrap();
    let cfg = std::fs::read_to_string(root().join("config/detour.toml"))
        .unwrap()
        .replace(
            "dns_listen   = [\"127.0.0.1:5353\"]",
            "dns_listen   = [\"127.0.0.1:0\"]",
        )
        .replace(
            "admin_listen = \"127.0.0.1:8053\"",
            "admin_listen = \"127.0.0.1:0\"",
        )
        .replace(
            "page_listen  = [\"127.0.0.1:8080\"]",
            "page_listen  = [\"127.0.0.1:0\"]",
        )
        .replace(
            "address = \"127.0.0.1:9004\"",
            &format!("address = \"{}\"", canary.local_addr().unwrap()),
        );
    assert!(
        cfg.contains("dns_listen   = [\"127.0.0.1:0\"]")
            && cfg.contains("admin_listen = \"127.0.0.1:0\"")
            && !cfg.contains("127.0.0.1:9004")
    );
    std::fs::write(dir.path().join("config/detour.toml"), cfg).unwrap();
    std::fs::copy(
        root().join("zones/example.test.toml"),
        dir.path().join("zones/example.test.toml"),
    )
    .unwrap();
    (dir, canary)
}

#[tokio::test(flavor = "multi_thread")]
async fn run_serves_the_example_reloads_on_sighup_and_stops_on_sigterm() {
    let (dir, _canary) = example_copy();
    let zone = dir.path().join("zones/example.test.toml");
    let mut d = Daemon::start(&dir.path().join("config/detour.toml"));
    let addr = d.dns_addr();
    d.wait_for("ready");

    // None of the example's backends (127.0.0.1:9001-9005) runs here: the MLS and its DR
    // site are down, so mls answers the outage page.
    let (reply, _) = udp(addr, &query("mls.example.test.", RecordType::A, None)).await;
    assert_eq!(a_values(&reply), ["127.0.0.80"]);
    let reply = tcp(addr, &query("mls.example.test.", RecordType::A, None)).await;
    assert!(reply.metadata.authoritative);

    // A valid change, then SIGHUP: the new answer.
    let text = std::fs::read_to_string(&zone).unwrap();
    std::fs::write(&zone, text.replace("127.0.0.25", "127.0.0.26")).unwrap();
    d.signal("-HUP");
    d.wait_for("reload done");
    let (reply, _) = udp(addr, &query("mail.example.test.", RecordType::A, None)).await;
    assert_eq!(a_values(&reply), ["127.0.0.26"]);

    // An invalid change: logged with file:line:col, the old answers stay.
    std::fs::write(&zone, text.replace("127.0.0.25", "banana")).unwrap();
    d.signal("-HUP");
    let line = d.wait_for("reload failed");
    assert!(line.contains("example.test.toml:"), "{line}");
    assert!(line.contains("invalid A value \"banana\""), "{line}");
    let (reply, _) = udp(addr, &query("mail.example.test.", RecordType::A, None)).await;
    assert_eq!(a_values(&reply), ["127.0.0.26"]);

    d.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "detour did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn run_with_an_invalid_config_exits_2() {
    let f = Fixture::new("[server]\nbogus = 1\n", &[]);
    let (code, _, stderr) = cli(&f.config_path(), &["run"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("detour.toml:2:1: unknown field `bogus`"),
        "{stderr}"
    );
}

#[test]
fn run_exits_1_when_the_port_is_taken() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let f = Fixture::new(
        &format!(
            "[server]\nzones_dir = \"zones\"\ndns_listen = [\"127.0.0.1:{port}\"]\n[services.mls]\n"
        ),
        &[("z.toml", TEST_ZONE)],
    );
    let (code, _, stderr) = cli(&f.config_path(), &["run"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen for DNS on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn dig_gets_the_example_answer_from_the_binary() {
    // What README promises: `dig @127.0.0.1 -p 5353 mls.example.test` answers (here on an
    // ephemeral port). `dig` comes from bind9-dnsutils, which .ci/run installs.
    let (dir, _canary) = example_copy();
    let mut d = Daemon::start(&dir.path().join("config/detour.toml"));
    let addr = d.dns_addr();
    d.wait_for("ready");
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "mls.example.test",
            "+norec",
        ])
        .output()
        .expect("dig is installed (bind9-dnsutils; .ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status: NOERROR"), "{text}");
    assert!(text.contains("flags: qr aa;"), "AA set, RA clear: {text}");
    assert!(
        text.contains("mls.example.test.\t30\tIN\tA\t127.0.0.80"),
        "{text}"
    );
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "+tcp",
            "nope.example.test",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status: NXDOMAIN"), "{text}");
    assert!(
        text.contains("IN\tSOA\tns1.example.test. hostmaster.example.test."),
        "{text}"
    );
}

#[test]
fn check_prints_each_failover_budget_and_warns_about_risky_settings() {
    let f = Fixture::new(
        "[server]\nzones_dir = \"zones\"\n[services.mls]\ncheck = { type = \"tcp\", address = \"127.0.0.1:9\", interval = \"1s\", timeout = \"500ms\", fall = 3 }\n",
        &[(
            "z.toml",
            &TEST_ZONE.replace("minimum = 60", "minimum = 600"),
        )],
    );
    let (code, stdout, _) = cli(&f.config_path(), &["check"]);
    assert_eq!(code, 0, "{stdout}");
    // 1 s + 2 x max(250 ms, 500 ms) + 500 ms = 2.5 s detection, + 30 s TTL; back: a down
    // check is probed at the confirm pace, max(250 ms, 500 ms) + 1 x 500 ms + 500 ms.
    assert!(
        stdout.contains("failover: mls.example.test. A: within 32.50s (detect 2.50s: interval 1s + 2 x max(confirm 250ms, timeout 500ms) + timeout 500ms; then TTL 30 s); back within 31.50s (max(down pace 250ms, timeout) + 1 x max(confirm, timeout) + timeout; then TTL 30 s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: zone example.test.: negative TTL (SOA minimum) is 600 s"),
        "{stdout}"
    );
    assert!(stdout.contains("warning: no [guard] canaries"), "{stdout}");

    // With canaries and fall 1, a down verdict waits for a second failure after a canary
    // passed: one more max(down pace, timeout).
    let f = Fixture::new(
        "[server]\nzones_dir = \"zones\"\n[services.mls]\ncheck = { type = \"tcp\", address = \"127.0.0.1:9\", interval = \"1s\", timeout = \"500ms\", fall = 1 }\n[guard]\ncanaries = [{ type = \"tcp\", address = \"127.0.0.1:9\" }]\n",
        &[("z.toml", TEST_ZONE)],
    );
    let (code, stdout, _) = cli(&f.config_path(), &["check"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("within 32s (detect 2s: interval 1s + 0 x max(confirm 250ms, timeout 500ms) + timeout 500ms + 500ms for a second failure after a canary passed (guard, fall 1); then TTL 30 s)"),
        "{stdout}"
    );
}

#[test]
fn check_names_the_probe_source_and_warns_when_it_is_not_on_this_host() {
    let config = |source: &str| {
        format!("[server]\nzones_dir = \"zones\"\nprobe_source = \"{source}\"\n[services.mls]\n")
    };
    let f = Fixture::new(&config("127.0.0.3"), &[("z.toml", BARE_ZONE)]);
    let (code, stdout, _) = cli(&f.config_path(), &["check"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("\n  probes:   leave from 127.0.0.3 (probe_source)\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("warning: probe_source"), "{stdout}");

    // Valid, but every probe would fail here: a warning, not an error (the config may be
    // checked on another host, and an address may come later).
    let f = Fixture::new(&config("198.51.100.10"), &[("z.toml", BARE_ZONE)]);
    let (code, stdout, _) = cli(&f.config_path(), &["check"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("warning: probe_source 198.51.100.10 is not an address of this host now (cannot bind probe source 198.51.100.10: Cannot assign requested address): every probe fails until it is"),
        "{stdout}"
    );

    let f = Fixture::new(&config("uplink"), &[("z.toml", BARE_ZONE)]);
    let (code, _, stderr) = cli(&f.config_path(), &["check"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "detour.toml:3:16: invalid probe_source \"uplink\": expected an IP address of this host"
        ),
        "{stderr}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config whose admin API has a fixed (free) port, so client commands can find it.
fn operator_fixture() -> (Fixture, u16) {
    let port = free_port();
    let zone = SUB_ZONE.replace("sub.example.test.", "example.test.") + MLS_ONLY_DYNAMIC;
    let f = Fixture::new(
        &format!(
            "[server]\ndns_listen = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:{port}\"\npage_listen = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\n[page]\ntimezone = \"America/New_York\"\n[services.mls]\nname = \"MLS\"\n"
        ),
        &[("z.toml", &zone)],
    );
    (f, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_drive_detour_from_the_cli_and_it_sticks_across_sigkill() {
    let (f, port) = operator_fixture();
    let cfg = f.config_path();

    // Not running yet: a clear message, exit 1.
    let (code, _, err) = cli(&cfg, &["status"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("is detour running? tried 127.0.0.1:{port}")),
        "{err}"
    );

    let mut d = Daemon::start(&cfg);
    let addr = d.dns_addr();
    d.wait_for("ready");

    let (code, out, err) = cli(
        &cfg,
        &[
            "override",
            "set",
            "mls",
            "down",
            "--reason",
            "vendor is on it",
            "--until",
            "2h",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("mls: down until "), "{out}");
    // Times in [page] timezone, as on the page, and labelled.
    assert!(out.contains(" EST (") || out.contains(" EDT ("), "{out}");
    let (reply, _) = udp(addr, &query("mls.example.test.", RecordType::A, None)).await;
    assert_eq!(a_values(&reply), ["127.0.0.80"]);

    let (code, id, err) = cli(
        &cfg,
        &[
            "incident",
            "open",
            "--service",
            "mls",
            "The MLS is down; the vendor is on it",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    assert_eq!(id.len(), 4, "the id alone on stdout: {id:?}");
    let (code, _, err) = cli(
        &cfg,
        &["incident", "update", &id, "Restore at 60%", "--by", "dana"],
    );
    assert_eq!(code, 0, "{err}");

    let (code, out, _) = cli(&cfg, &["status", "--history"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(
            "DNS answers now\n  mls.example.test. A (TTL 30)  127.0.0.80  <- outage page"
        ),
        "{out}"
    );
    assert!(out.contains("because mls is down: outage page"), "{out}");
    assert!(out.contains("override: down by tester"), "{out}");
    assert!(out.contains("checks say up"), "{out}");
    assert!(out.contains(&format!("  {id}  mls  opened")), "{out}");
    assert!(out.contains("Restore at 60%"), "{out}");
    assert!(
        out.contains("override.down        mls        tester     vendor is on it"),
        "{out}"
    );
    assert!(out.contains("incident.update      "), "{out}");
    assert!(out.contains(" dana "), "{out}");

    let (code, out, _) = cli(&cfg, &["status", "--json"]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["services"][0]["state"], "down");

    // SIGKILL: nothing graceful. Overrides and incidents were saved before the answers.
    d.signal("-KILL");
    let _ = d.child.wait();
    let mut d = Daemon::start(&cfg);
    let addr = d.dns_addr();
    d.wait_for("ready");
    let (reply, _) = udp(addr, &query("mls.example.test.", RecordType::A, None)).await;
    assert_eq!(
        a_values(&reply),
        ["127.0.0.80"],
        "override survived SIGKILL"
    );
    let (_, out, _) = cli(&cfg, &["status"]);
    assert!(out.contains(&id), "incident survived SIGKILL: {out}");

    let (code, out, _) = cli(
        &cfg,
        &[
            "override",
            "clear",
            "mls",
            "--reason",
            "vendor fixed it & verified",
        ],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "mls: override cleared; checks decide again\n")
    );
    // The reason is in the audit log, whole (the query string carries `&` and spaces).
    let (_, out, _) = cli(&cfg, &["status", "--history"]);
    assert!(
        out.lines()
            .any(|l| l.contains("override.clear") && l.ends_with("vendor fixed it & verified")),
        "{out}"
    );
    let (code, _, _) = cli(&cfg, &["incident", "resolve", &id]);
    assert_eq!(code, 0);

    // A refused request: exit 1 with the daemon's reason.
    let (code, _, err) = cli(&cfg, &["incident", "update", &id, "too late"]);
    assert_eq!(code, 1);
    assert!(err.contains("is resolved"), "{err}");

    // Reload through the CLI: a broken zone is refused with its position, exit 1.
    let zone = f.zone_path("z.toml");
    let good = std::fs::read_to_string(&zone).unwrap();
    std::fs::write(&zone, good.replace("127.0.0.10", "10.0.0.300")).unwrap();
    let (code, _, err) = cli(&cfg, &["reload"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("z.toml:") && err.contains("invalid A value \"10.0.0.300\""),
        "{err}"
    );
    std::fs::write(&zone, good).unwrap();
    let (code, out, _) = cli(&cfg, &["reload"]);
    assert_eq!((code, out.as_str()), (0, "reloaded\n"));
}

#[test]
fn client_commands_with_a_bad_config_exit_2() {
    // Client commands read only where the admin API is (so `reload` works while the rest of
    // the config is broken); that part must be right.
    let f = Fixture::new("[server]\nadmin_listen = \"nowhere\"\n", &[]);
    let (code, _, err) = cli(&f.config_path(), &["status"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("detour.toml:2:16: invalid admin_listen \"nowhere\""),
        "{err}"
    );
    let (code, _, _) = cli(&f.config_path(), &["override", "set", "mls", "sideways"]);
    assert_eq!(code, 2, "usage error");
}
