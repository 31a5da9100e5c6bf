//! History (`state_dir/history.db`): transitions, operator actions and what the records
//! answered are written and read back across a restart of the real binary; a report over a
//! history of known events; the status page's bars, `/history` and `/status/history.json`
//! over real HTTP; notifications counted; a corrupt or locked database set aside while detour
//! keeps serving.

mod common;
#[path = "common/history.rs"]
mod history;
#[path = "common/page.rs"]
mod page;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::backend::{HttpBackend, Mode};
use common::binary::{Daemon, cli};
use common::{Api, Fixture};
use detour::daemon;
use detour::health::ServiceState::{self, *};
use detour::history::Answered;
use history::{PastRun, seed};
use page::{addr_of, get};
use serde_json::Value;

/// `mls` follows the MLS, else the outage page.
const ZONE: &str = r#"
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "h.example.test." }
ns = ["ns1.example.test."]
records = [ { name = "ns1", type = "A", value = "127.0.0.1" } ]

[[dynamic]]
name = "mls"
type = "A"
ttl = 30
answers = [ { if_up = "mls", values = ["127.0.0.10"] } ]
otherwise = ["127.0.0.80"]
"#;

/// Services `mls` (an HTTP check of `backend`, every 300 ms) and `tax` (no check); the
/// admin API on a port chosen now, so that the CLI finds it in the file.
fn config(backend: &str, extra: &str) -> String {
    let admin = page::closed_port();
    format!(
        r#"
[server]
dns_listen = ["127.0.0.1:0"]
page_listen = ["127.0.0.1:0"]
admin_listen = "{admin}"
zones_dir = "zones"
state_dir = "state"
udp_workers = 1

[page]
title = "History test"
timezone = "America/New_York"

[services.mls]
name = "MLS"
check = {{ type = "http", url = "http://{backend}/", interval = "300ms", timeout = "250ms", rise = 1, fall = 1 }}

[services.tax]
name = "Tax records"
{extra}
"#
    )
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn admin_get(base: &str, token: &str, path: &str) -> (u16, Value) {
    let r = http()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin API answers");
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn states(v: &Value, service: &str) -> Vec<(Option<String>, String)> {
    v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["service"] == service)
        .map(|t| {
            (
                t["from"].as_str().map(str::to_string),
                t["to"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn transitions_actions_and_answers_survive_a_restart_of_the_binary() {
    let backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let fx = Fixture::new(
        &config(&backend.addr.to_string(), ""),
        &[("example.test.toml", ZONE)],
    );
    let cfg = fx.config_path();
    let mut a = Daemon::start(&cfg);
    a.wait_for("ready");
    backend.set(Mode::Status(500));
    a.wait_for("to=down");
    backend.set(Mode::Status(200));
    a.wait_for("to=up");
    let (code, out, err) = cli(
        &cfg,
        &[
            "override",
            "set",
            "mls",
            "maintenance",
            "--reason",
            "vendor upgrade",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    a.wait_for("to=maintenance");
    let (code, out, err) = cli(&cfg, &["override", "clear", "mls"]);
    assert_eq!(code, 0, "{out}{err}");
    a.wait_for("from=maintenance to=up");
    a.signal("-TERM");
    let status = a.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        a.log()
            .iter()
            .any(|l| l.contains("history: written and closed")),
        "{:?}",
        a.log()
    );

    // A second run reads the first back.
    let mut b = Daemon::start(&cfg);
    let admin = b.addr_after("listening for the admin API on ");
    let page_line = b.wait_for("listening for the page on ");
    b.wait_for("ready");
    let token = std::fs::read_to_string(fx.dir.path().join("state/admin.token")).unwrap();
    let base = format!("http://{admin}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let v = loop {
        let (code, v) = admin_get(&base, token.trim(), "/api/v1/history?since=1h").await;
        assert_eq!(code, 200, "{v}");
        if states(&v, "tax").len() == 2 || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{v}");
    let first_end: DateTime<Utc> = runs[0]["end"].as_str().unwrap().parse().unwrap();
    let second_start: DateTime<Utc> = runs[1]["start"].as_str().unwrap().parse().unwrap();
    assert!(first_end <= second_start, "{v}");
    let mls = states(&v, "mls");
    let s = |f: Option<&str>, t: &str| (f.map(str::to_string), t.to_string());
    let want = [
        s(None, "up"),
        s(Some("up"), "down"),
        s(Some("down"), "up"),
        s(Some("up"), "maintenance"),
        s(Some("maintenance"), "up"),
        s(None, "up"),
    ];
    assert_eq!(mls, want, "{v}");
    assert_eq!(states(&v, "tax"), [s(None, "up"), s(None, "up")], "{v}");
    let actions: Vec<(&str, &str)> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["who"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("override.maintenance", "tester"),
            ("override.clear", "tester")
        ],
        "{v}"
    );
    let answered: Vec<(&str, bool)> = v["answered"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["service"] == "mls")
        .map(|x| {
            (
                x["answered"].as_str().unwrap(),
                x["manual"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        answered,
        [
            ("usual", false),
            ("outage_page", false),
            ("usual", false),
            ("outage_page", true),
            ("usual", true),
            ("usual", false),
        ],
        "{v}"
    );
    assert_eq!(v["probe_resolution"], "minute");
    let probes = v["probes"]["mls#0"]
        .as_array()
        .expect("mls probes per minute");
    let n: u64 = probes.iter().map(|p| p["probes"].as_u64().unwrap()).sum();
    let failed: u64 = probes.iter().map(|p| p["failures"].as_u64().unwrap()).sum();
    // The failure, and the pass that brought it back (the first round at start, before
    // the states task runs, is not counted).
    assert!(n >= 2 && failed >= 1 && failed < n, "{probes:?}");

    // The report over the same period.
    let (code, out, err) = cli(&cfg, &["report", "--since", "1h", "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    let m = &r["services"][0];
    assert_eq!(m["id"], "mls");
    assert_eq!(m["outages"], 1, "{r}");
    assert_eq!(m["swaps_automatic"], 2, "{r}");
    assert_eq!(m["swaps_manual"], 2, "{r}");
    assert!(m["maintenance_s"].as_i64().unwrap() <= 5, "{r}");
    assert!(m["availability"].as_f64().unwrap() < 1.0, "{r}");
    let (code, text, err) = cli(&cfg, &["report", "--since", "1h"]);
    assert_eq!(code, 0, "{err}");
    page::in_order(
        &text,
        &[
            "Report from",
            "SERVICE",
            "AVAIL",
            "MLS",
            "Tax records",
            "100%",
        ],
    );

    // And the public page's bars say the day had an outage.
    let url = page_line
        .split("listening for the page on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let p = get(
        addr_of(&format!("http://{url}")),
        "status.example.test",
        "/status/history.json",
    )
    .await;
    assert_eq!(p.status, 200);
    let j: Value = serde_json::from_str(&p.body).unwrap();
    let days = j["services"][0]["days"].as_array().unwrap();
    assert_eq!(days.len(), 90);
    assert_eq!(days[89]["worst"], "down", "{}", days[89]);
    assert!(days[88]["worst"].is_null(), "no data the day before");
    assert!(
        !p.body.contains("tester"),
        "no operator names in public: {}",
        p.body
    );
    drop(b);
}

/// A history of known events: yesterday (in the page's zone) 09:00-09:30 `mls` down and
/// answered by the outage page (checks); 3 days ago 10:00-12:00 in maintenance (an
/// operator); a detour run per day.
fn known(now: DateTime<Utc>) -> (Vec<PastRun>, DateTime<Utc>, DateTime<Utc>) {
    use chrono::TimeZone;
    let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let today = now.with_timezone(&tz).date_naive();
    let at = |days_back: u64, h: u32, m: u32| {
        let d = today
            .checked_sub_days(chrono::Days::new(days_back))
            .unwrap();
        tz.from_local_datetime(&d.and_hms_opt(h, m, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    };
    let runs = vec![
        PastRun::new(at(3, 0, 0), at(3, 23, 0))
            .state(at(3, 0, 0), "mls", Up)
            .state(at(3, 0, 0), "tax", Up)
            .state(at(3, 10, 0), "mls", Maintenance)
            .state(at(3, 12, 0), "mls", Up)
            .answer(at(3, 0, 0), "mls", Answered::Usual, false)
            .answer(at(3, 10, 0), "mls", Answered::OutagePage, true)
            .answer(at(3, 12, 0), "mls", Answered::Usual, true),
        PastRun::new(at(1, 0, 0), at(1, 23, 0))
            .state(at(1, 0, 0), "mls", Up)
            .state(at(1, 0, 0), "tax", Up)
            .state(at(1, 9, 0), "mls", Down)
            .state(at(1, 9, 30), "mls", Up)
            .answer(at(1, 0, 0), "mls", Answered::Usual, false)
            .answer(at(1, 9, 0), "mls", Answered::OutagePage, false)
            .answer(at(1, 9, 30), "mls", Answered::Usual, false)
            .notified(at(1, 9, 1), "mls")
            .notified(at(1, 9, 31), "mls"),
    ];
    (runs, at(3, 0, 0), at(0, 0, 0))
}

async fn start_on(fx: &Fixture) -> daemon::Running {
    daemon::start(fx.load(), &fx.config_path())
        .await
        .expect("detour starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_from_known_events_and_the_pages_that_show_them() {
    let backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let fx = Fixture::new(
        &config(&backend.addr.to_string(), ""),
        &[("example.test.toml", ZONE)],
    );
    let now = Utc::now();
    let (runs, since, until) = known(now);
    seed(&fx.dir.path().join("state"), &runs);
    let running = start_on(&fx).await;
    let s = common::Server {
        addr: running.dns_addrs()[0],
        running,
        fixture: fx,
    };
    let api = Api::of(&s);
    let q = format!(
        "/api/v1/report?since={}&until={}",
        urlenc(&since.to_rfc3339()),
        urlenc(&until.to_rfc3339())
    );
    let (code, r) = api.send(reqwest::Method::GET, &q, None).await;
    assert_eq!(code, 200, "{r}");
    // Each seeded run lasts from 00:00 to 23:00 local time (23 hours, but for a clock change).
    let ran: i64 = runs.iter().map(|r| (r.end - r.start).num_seconds()).sum();
    assert_eq!(r["running_s"], ran, "{r}");
    assert_eq!(r["notifications"], 2, "{r}");
    let mls = &r["services"][0];
    assert_eq!(mls["id"], "mls");
    assert_eq!(mls["known_s"], ran, "{r}");
    assert_eq!(mls["down_s"], 1800, "{r}");
    assert_eq!(mls["maintenance_s"], 7200, "{r}");
    let avail = mls["availability"].as_f64().unwrap();
    let want = 1.0 - 1800.0 / (ran as f64 - 7200.0);
    assert!((avail - want).abs() < 1e-9, "{avail} vs {want}");
    assert_eq!(mls["outages"], 1);
    assert_eq!(mls["mttr_median_s"], 1800);
    assert_eq!(mls["mttr_worst_s"], 1800);
    assert_eq!(mls["outage_page_s"], 1800 + 7200);
    assert_eq!(mls["backup_s"], 0);
    assert_eq!(mls["swaps_automatic"], 2);
    assert_eq!(mls["swaps_manual"], 2);
    assert_eq!(mls["notifications"], 2);
    let tax = &r["services"][1];
    assert_eq!(
        (tax["availability"].as_f64(), &tax["outages"]),
        (Some(1.0), &Value::from(0))
    );

    // The same through the CLI, dates in the page's zone.
    let day = |t: DateTime<Utc>| {
        t.with_timezone(&"America/New_York".parse::<chrono_tz::Tz>().unwrap())
            .format("%Y-%m-%d")
            .to_string()
    };
    let (code, out, err) = cli(
        &s.fixture.config_path(),
        &[
            "report",
            "--since",
            &day(since),
            "--until",
            &day(until - chrono::Duration::hours(1)),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let c: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["services"][0]["down_s"], 1800, "{c}");
    assert_eq!(c["services"][0]["maintenance_s"], 7200, "{c}");
    let (code, _, err) = cli(&s.fixture.config_path(), &["report", "--since", "someday"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a period bound"), "{err}");

    // The status page: 90 bars per service, yesterday red with its minutes in its title,
    // three days ago blue, the text equivalent beside them.
    let page = addr_of(&s.running.page_addrs()[0]);
    // The history thread has read the seeded runs before the first request: it loads them
    // before detour serves.
    let body = get(page, "status.example.test", "/").await.body;
    let mls_part =
        &body[body.find("id=\"service-mls\"").unwrap()..body.find("id=\"service-tax\"").unwrap()];
    assert_eq!(mls_part.matches("<rect ").count(), 90, "{mls_part}");
    let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let d = |back: i64| {
        let d = (now.with_timezone(&tz).date_naive()) - chrono::Duration::days(back);
        d.format("%a %-d %b").to_string()
    };
    assert!(
        mls_part.contains(&format!(
            "class=\"down\"><title>{}: down 30 min</title>",
            d(1)
        )),
        "{mls_part}"
    );
    assert!(
        mls_part.contains(&format!(
            "class=\"maint\"><title>{}: maintenance 2 h</title>",
            d(3)
        )),
        "{mls_part}"
    );
    assert!(mls_part.contains(&format!("class=\"none\"><title>{}: no data</title>", d(2))));
    // Today: this run, once its first states are in.
    let today = format!("class=\"ok\"><title>{}: no problems</title>", d(0));
    wait_until("today's bar", || async {
        get(page, "status.example.test", "/")
            .await
            .body
            .contains(&today)
    })
    .await;
    assert!(mls_part.contains(&format!("class=\"none\"><title>{}: no data</title>", d(4))));
    page::in_order(
        mls_part,
        &[
            "role=\"img\" aria-label=\"Last 90 days: 1 day with downtime; 1 day with maintenance;",
            "Available ",
            "over 30 days",
            &format!("{}: down 30 min", d(1)),
            &format!("{}: maintenance 2 h", d(3)),
        ],
    );
    // The sparkline comes with the first passing probes of this run.
    wait_until("a response-time sparkline", || async {
        get(page, "status.example.test", "/")
            .await
            .body
            .contains("class=\"spark\"")
    })
    .await;

    // Browsers get it gzipped, compressed once per render; the same page (fetched again
    // when a minute turned between the two requests: the page says when it was made).
    for attempt in 1..=3 {
        let plain = get(page, "status.example.test", "/").await;
        let z = page::request(
            page,
            "GET",
            "status.example.test",
            "/",
            &[("Accept-Encoding", "gzip")],
        )
        .await;
        assert_eq!(z.header("content-encoding"), Some("gzip"));
        assert_eq!(z.header("vary"), Some("Accept-Encoding"));
        assert_eq!(plain.header("content-encoding"), None);
        let mut unzipped = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&z.bytes[..]),
            &mut unzipped,
        )
        .expect("valid gzip");
        assert!(
            z.bytes.len() * 5 < plain.bytes.len(),
            "{} of {}",
            z.bytes.len(),
            plain.bytes.len()
        );
        if unzipped == plain.body {
            break;
        }
        assert!(attempt < 3, "gzipped and plain pages differ");
    }

    // /history: found trouble, newest first, with durations and timelines.
    let h = get(page, "status.example.test", "/history").await;
    assert_eq!(h.status, 200);
    assert_eq!(
        h.header("content-security-policy")
            .map(|c| c.contains("default-src 'none'")),
        Some(true)
    );
    h.in_order(&[
        "Past incidents",
        "MLS unavailable",
        "30 minutes",
        "Unavailable: seeded down",
        "Working: seeded up",
        "MLS in maintenance",
        "2 hours",
        "Maintenance: seeded maintenance",
    ]);
    let j = get(page, "status.example.test", "/status/history.json").await;
    let j: Value = serde_json::from_str(&j.body).unwrap();
    let days = j["services"][0]["days"].as_array().unwrap();
    assert_eq!(days[88]["worst"], "down");
    assert_eq!(days[88]["seconds"]["down"], 1800);
    assert_eq!(days[86]["worst"], "maintenance");
    assert_eq!(j["incidents"][0]["kind"], "outage");
    assert_eq!(j["incidents"][0]["duration_s"], 1800);
    drop(backend);
}

fn urlenc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test(flavor = "multi_thread")]
async fn delivered_notifications_are_counted() {
    let mut backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let hook = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let sink = format!(
        "[[notify]]\ntype = \"webhook\"\nurl = \"http://{}/hook\"\nevents = [\"down\", \"up\"]\n",
        hook.addr
    );
    let fx = Fixture::new(
        &config(&backend.addr.to_string(), &sink),
        &[("example.test.toml", ZONE)],
    );
    let running = start_on(&fx).await;
    let s = common::Server {
        addr: running.dns_addrs()[0],
        running,
        fixture: fx,
    };
    let api = Api::of(&s);
    backend.stop();
    wait_until("two delivered notifications in the report", || async {
        backend_cycle_report(&api).await >= 1
    })
    .await;
    backend.restart().await;
    wait_until("the up notification too", || async {
        backend_cycle_report(&api).await >= 2
    })
    .await;
    assert!(hook.hits() >= 2);
}

async fn backend_cycle_report(api: &Api) -> i64 {
    let (code, r) = api
        .send(
            reqwest::Method::GET,
            "/api/v1/report?service=mls&since=1h",
            None,
        )
        .await;
    assert_eq!(code, 200, "{r}");
    r["services"][0]["notifications"].as_i64().unwrap()
}

fn aside(state: &std::path::Path, what: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(state)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(&format!("history.db.{what}-"))
                && !n.ends_with("-wal")
                && !n.ends_with("-shm")
        })
        .collect()
}

/// Starts detour on `fx`, whose history.db is unusable (`what`: "corrupt" or "locked"), and
/// checks that it is set aside, said, and replaced while detour serves; returns the bytes of
/// the file set aside.
async fn serves_with_a_fresh_history(fx: Fixture, what: &str) -> Vec<u8> {
    let state = fx.dir.path().join("state");
    let running = start_on(&fx).await;
    // The history thread opens the database (detour serves meanwhile) and says so.
    let said = |p: &String| {
        p.starts_with(&format!("history.db was unusable ({what}")) && p.contains("set aside as")
    };
    wait_until("the problem in status", || async {
        running.control().problems().iter().any(said)
    })
    .await;
    let set = aside(&state, what);
    assert_eq!(set.len(), 1, "{set:?}");
    let page = addr_of(&running.page_addrs()[0]);
    let p = get(page, "status.example.test", "/").await;
    assert_eq!(p.status, 200);
    let s = common::Server {
        addr: running.dns_addrs()[0],
        running,
        fixture: fx,
    };
    let (code, v) = Api::of(&s)
        .send(reqwest::Method::GET, "/api/v1/status", None)
        .await;
    assert_eq!(code, 200);
    assert!(
        v["problems"]
            .to_string()
            .contains("history.db was unusable"),
        "{v}"
    );
    // The new database records.
    wait_until("the new database to hold this run", || async {
        let (code, h) = Api::of(&s)
            .send(reqwest::Method::GET, "/api/v1/history?since=1h", None)
            .await;
        code == 200 && h["runs"].as_array().is_some_and(|r| r.len() == 1)
    })
    .await;
    assert_eq!(
        common::udp_a(s.addr, "mls.example.test.").await,
        ["127.0.0.10"]
    );
    std::fs::read(&set[0]).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_database_is_set_aside_and_detour_keeps_serving() {
    let backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let fx = Fixture::new(
        &config(&backend.addr.to_string(), ""),
        &[("example.test.toml", ZONE)],
    );
    let state = fx.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("history.db"),
        b"this is not a database, just garbage".repeat(200),
    )
    .unwrap();
    let kept = serves_with_a_fresh_history(fx, "corrupt").await;
    assert!(kept.starts_with(b"this is not a database"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_database_is_set_aside_and_detour_keeps_serving() {
    let backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let fx = Fixture::new(
        &config(&backend.addr.to_string(), ""),
        &[("example.test.toml", ZONE)],
    );
    let state = fx.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    seed(&state, &[]);
    // Another process's exclusive lock (here another connection: SQLite's locks are the
    // same between connections as between processes).
    let holder = rusqlite::Connection::open(state.join("history.db")).unwrap();
    holder
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; CREATE TABLE held (x);")
        .unwrap();
    let kept = serves_with_a_fresh_history(fx, "locked").await;
    assert!(kept.starts_with(b"SQLite format 3"));
    drop(holder);
}

#[test]
fn every_state_has_a_rank_and_a_colour() {
    use detour::history::timeline::{rank, states_by_rank};
    let all = states_by_rank();
    assert!(all.len() >= 4, "{all:?}");
    let ranks: Vec<u8> = all.iter().map(|s| rank(*s)).collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
    assert_eq!(all.first(), Some(&ServiceState::Up));
    assert_eq!(all.last(), Some(&ServiceState::Down));
}
