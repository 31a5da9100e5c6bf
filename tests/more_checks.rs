//! Smarter health, end to end with real local servers: a slow backend makes a service
//! degraded (answered as up, shown as slow, notified as such); a vendor's Statuspage
//! (a real local one, and detour's own summary.json) decides a statuspage check; a job's
//! heartbeats keep a heartbeat check up, and their absence takes it down.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::backend::HttpBackend;
use common::{Api, Fixture, Server, force, metric, page_config, udp_a};
use detour::checks::{Grade, probe::Prober};
use detour::config::CheckKind;
use detour::health::ServiceState;
use detour::overrides::Forced;
use serde_json::{Value, json};

/// Waits (at most 15 s) until `f` holds, polling; panics with `what` otherwise.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state(s: &Server, service: &str) -> ServiceState {
    s.running.snapshots().load().health.services[service].state
}

fn reason(s: &Server, service: &str) -> String {
    s.running.snapshots().load().health.services[service]
        .reason
        .clone()
}

// ---------------------------------------------------------------------------------------
// A webhook receiver and a vendor status page, both real HTTP servers on loopback.

type Hits = Arc<Mutex<Vec<(String, Value)>>>;

/// Records every POST body, by path.
async fn receiver() -> (SocketAddr, Hits) {
    let hits: Hits = Arc::default();
    async fn hook(State(h): State<Hits>, uri: axum::http::Uri, body: Bytes) -> StatusCode {
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        h.lock().unwrap().push((uri.path().to_string(), v));
        StatusCode::OK
    }
    let app = Router::new()
        .route("/{sink}", post(hook))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

/// Events (kind, old state, new state) that sink `path` received for `service`.
fn events(hits: &Hits, path: &str, service: &str) -> Vec<(String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    hits.lock()
        .unwrap()
        .iter()
        .filter(|(p, v)| p == path && v["service"] == service)
        .map(|(_, v)| (s(&v["event"]), s(&v["old_state"]), s(&v["new_state"])))
        .collect()
}

/// A vendor's status page: `/api/v2/summary.json` answers whatever `doc` holds (`Null`:
/// HTTP 500).
async fn vendor() -> (SocketAddr, Arc<Mutex<Value>>, tokio::task::JoinHandle<()>) {
    let doc = Arc::new(Mutex::new(Value::Null));
    async fn summary(State(d): State<Arc<Mutex<Value>>>) -> Response {
        let v = d.lock().unwrap().clone();
        if v.is_null() {
            return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
        }
        ([("content-type", "application/json")], v.to_string()).into_response()
    }
    let app = Router::new()
        .route("/api/v2/summary.json", get(summary))
        .with_state(doc.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, doc, task)
}

/// A Statuspage summary with the component "Forms API" in `status`, and an open incident
/// and a maintenance about it.
fn summary(status: &str) -> Value {
    json!({
        "page": { "id": "v", "name": "Vendor" },
        "components": [
            { "id": "f0rm5", "name": "Forms API", "status": status, "group": false },
            { "id": "t4x", "name": "Tax data", "status": "operational" }
        ],
        "incidents": [
            { "id": "i1", "name": "Slow form submissions", "status": "investigating",
              "components": [ { "id": "f0rm5", "name": "Forms API" } ] }
        ],
        "scheduled_maintenances": [
            { "id": "m1", "name": "Storage migration", "status": "in_progress",
              "components": [ { "id": "f0rm5" } ] }
        ]
    })
}

// ---------------------------------------------------------------------------------------
// Degraded

#[tokio::test]
async fn a_slow_service_is_degraded_answered_as_up_shown_slow_and_notified() {
    let mut backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let (hooks, hits) = receiver().await;
    let rest = format!(
        r#"
[services.mls]
name = "MLS"
check = {{ type = "http", url = "http://{b}/", interval = "1s", confirm_interval = "200ms", down_interval = "200ms", timeout = "1s", degraded_after = "300ms", rise = 1, fall = 1 }}

[services.portal]
name = "Portal"
depends_on = ["mls"]

[[notify]]
type = "webhook"
url = "http://{hooks}/slow"
events = ["degraded"]
attempts = 1

[[notify]]
type = "webhook"
url = "http://{hooks}/outages"
events = ["down", "up"]
attempts = 1
"#,
        b = backend.addr
    );
    let zone = format!("{}{}", common::BARE_ZONE, common::MLS_ONLY_DYNAMIC);
    let s = Server::start(&page_config("", &rest), &[("example.test.toml", &zone)]).await;
    until("mls up", || state(&s, "mls") == ServiceState::Up).await;

    backend.set_delay(Duration::from_millis(600));
    until("mls degraded", || {
        state(&s, "mls") == ServiceState::Degraded
    })
    .await;
    assert_eq!(reason(&s, "mls"), "slow: over 300ms (HTTP 200)");
    // Answered as up; what depends on it works as usual.
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    assert_eq!(state(&s, "portal"), ServiceState::Up);
    // Shown as slow: the page, the status documents, the metrics.
    let page = s.running.page_addrs()[0].clone();
    let html = reqwest::get(format!("{page}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Working, slow"), "{html}");
    let status: Value = reqwest::get(format!("{page}/status.json"))
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let mls = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "mls")
        .unwrap()
        .clone();
    assert_eq!(mls["state"], "degraded");
    assert_eq!(mls["checks"][0]["verdict"], "up");
    assert_eq!(mls["checks"][0]["grade"], "degraded");
    let summary: Value = reqwest::get(format!("{page}/api/v2/summary.json"))
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let comp = summary["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "mls")
        .unwrap()
        .clone();
    assert_eq!(comp["status"], "degraded_performance");
    assert_eq!(summary["status"]["indicator"], "minor");
    assert_eq!(
        metric(&[
            "detour_service_state",
            "service=\"mls\"",
            "state=\"degraded\""
        ]),
        1.0
    );
    // Notified to the sink that takes "degraded", not to the one that takes down/up.
    until("the degraded event", || {
        !events(&hits, "/slow", "mls").is_empty()
    })
    .await;
    assert_eq!(
        events(&hits, "/slow", "mls")[0],
        ("degraded".into(), "up".into(), "degraded".into())
    );

    // Quick again: up, told to the sink that heard it was slow.
    backend.set_delay(Duration::ZERO);
    until("mls up again", || state(&s, "mls") == ServiceState::Up).await;
    until("the recovery", || events(&hits, "/slow", "mls").len() == 2).await;
    assert_eq!(
        events(&hits, "/slow", "mls")[1],
        ("up".into(), "degraded".into(), "up".into())
    );
    // Down is not slow: the outage sink hears of it, and only of it.
    backend.stop();
    until("mls down", || state(&s, "mls") == ServiceState::Down).await;
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.80"]);
    until("the down event", || {
        !events(&hits, "/outages", "mls").is_empty()
    })
    .await;
    assert_eq!(
        events(&hits, "/outages", "mls"),
        [("down".to_string(), "up".to_string(), "down".to_string())]
    );
}

#[test]
fn degraded_after_must_be_below_the_timeout_and_max_response_time() {
    let err = |check: &str| {
        let f = Fixture::new(
            &page_config("", &format!("[services.mls]\ncheck = {check}\n")),
            &[("example.test.toml", common::BARE_ZONE)],
        );
        detour::config::Config::load(&f.config_path())
            .expect_err(check)
            .to_string()
    };
    let e = err(
        r#"{ type = "http", url = "http://127.0.0.1:1/", timeout = "1s", degraded_after = "2s" }"#,
    );
    assert!(
        e.contains("detour.toml:12:")
            && e.contains(
                "degraded_after (2s) must be more than 0s and less than the timeout (1s)"
            ),
        "{e}"
    );
    let e = err(
        r#"{ type = "http", url = "http://127.0.0.1:1/", max_response_time = "500ms", degraded_after = "800ms" }"#,
    );
    assert!(
        e.contains("must be less than max_response_time (500ms)"),
        "{e}"
    );
    let e = err(r#"{ type = "heartbeat", period = "1m", degraded_after = "1s" }"#);
    assert!(
        e.contains("`degraded_after` does not apply to heartbeat checks"),
        "{e}"
    );
    let f = Fixture::new(
        &page_config(
            "",
            "[guard]\ncanaries = [{ type = \"tcp\", address = \"127.0.0.1:1\", degraded_after = \"1s\" }]\n",
        ),
        &[("example.test.toml", common::BARE_ZONE)],
    );
    let e = detour::config::Config::load(&f.config_path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not apply to [guard] canaries"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Statuspage

fn statuspage(url: &str, component: &str) -> CheckKind {
    let f = Fixture::new(
        &page_config(
            "",
            &format!(
                "[services.forms]\ncheck = {{ type = \"statuspage\", url = \"{url}\", component = \"{component}\" }}\n"
            ),
        ),
        &[("example.test.toml", common::BARE_ZONE)],
    );
    f.load().services["forms"].checks[0].kind.clone()
}

#[tokio::test]
async fn a_vendors_component_status_decides_and_its_incident_is_the_reason() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (addr, doc, task) = vendor().await;
    let check = statuspage(&format!("http://{addr}/api/v2/summary.json"), "Forms API");
    let prober = Prober::new();
    let t = Duration::from_secs(2);
    let cases = [
        ("operational", true, Grade::Normal, "operational"),
        (
            "degraded_performance",
            true,
            Grade::Degraded,
            "degraded performance: Slow form submissions",
        ),
        (
            "partial_outage",
            false,
            Grade::Normal,
            "partial outage: Slow form submissions",
        ),
        (
            "major_outage",
            false,
            Grade::Normal,
            "major outage: Slow form submissions",
        ),
        (
            "under_maintenance",
            true,
            Grade::Maintenance,
            "under maintenance: Storage migration",
        ),
    ];
    for (status, ok, grade, why) in cases {
        *doc.lock().unwrap() = summary(status);
        let o = prober.check(&check, t).await;
        assert_eq!(
            (o.ok, o.grade, o.reason.as_str()),
            (ok, grade, why),
            "{status}"
        );
    }
    // By id too.
    let by_id = statuspage(&format!("http://{addr}/api/v2/summary.json"), "f0rm5");
    assert!(prober.check(&by_id, t).await.ok);
    // The page itself failing is a failure of the check, with the reason.
    *doc.lock().unwrap() = Value::Null;
    assert_eq!(
        prober.check(&check, t).await.reason,
        "HTTP 500 (expected 200)"
    );
    *doc.lock().unwrap() = json!({ "components": [] });
    assert_eq!(
        prober.check(&check, t).await.reason,
        "no component 'Forms API' in summary.json (it lists: )"
    );
    task.abort();
    let _ = task.await;
    let o = prober.check(&check, t).await;
    assert!(!o.ok && o.reason.contains("refused"), "{o:?}");
}

#[tokio::test]
async fn a_vendor_that_says_degraded_makes_the_service_degraded_and_maintenance_is_maintenance() {
    let (addr, doc, _task) = vendor().await;
    *doc.lock().unwrap() = summary("operational");
    let rest = format!(
        r#"
[services.forms]
name = "Forms"
check = {{ type = "statuspage", url = "http://{addr}/api/v2/summary.json", component = "Forms API", interval = "300ms", timeout = "300ms", rise = 1, fall = 1 }}
"#
    );
    let s = Server::start(
        &page_config("", &rest),
        &[("example.test.toml", common::BARE_ZONE)],
    )
    .await;
    until("forms up", || state(&s, "forms") == ServiceState::Up).await;
    *doc.lock().unwrap() = summary("degraded_performance");
    until("forms degraded", || {
        state(&s, "forms") == ServiceState::Degraded
    })
    .await;
    assert_eq!(
        reason(&s, "forms"),
        "degraded performance: Slow form submissions"
    );
    *doc.lock().unwrap() = summary("under_maintenance");
    until("forms in maintenance", || {
        state(&s, "forms") == ServiceState::Maintenance
    })
    .await;
    assert_eq!(reason(&s, "forms"), "under maintenance: Storage migration");
    *doc.lock().unwrap() = summary("major_outage");
    until("forms down", || state(&s, "forms") == ServiceState::Down).await;
    assert_eq!(reason(&s, "forms"), "major outage: Slow form submissions");
}

#[tokio::test]
async fn one_detour_watches_another_through_its_summary_json() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let watched = Server::start(
        &page_config("", "[services.forms]\nname = \"Forms\"\n"),
        &[("example.test.toml", common::BARE_ZONE)],
    )
    .await;
    let url = format!("{}/api/v2/summary.json", watched.running.page_addrs()[0]);
    let prober = Prober::new();
    let t = Duration::from_secs(2);
    let check = statuspage(&url, "Forms");
    let o = prober.check(&check, t).await;
    assert_eq!((o.ok, o.reason.as_str()), (true, "operational"));
    force(&watched, "forms", Some(Forced::Maintenance)).await;
    assert_eq!(prober.check(&check, t).await.grade, Grade::Maintenance);
    force(&watched, "forms", Some(Forced::Down)).await;
    watched
        .running
        .control()
        .incident(
            detour::states::IncidentOp::Open {
                services: vec!["forms".into()],
                message: "Vendor login broken".into(),
            },
            detour::states::Actor { who: "t".into() },
        )
        .await
        .unwrap();
    // By id (the service id) as well as by name.
    let by_id = statuspage(&url, "forms");
    let o = prober.check(&by_id, t).await;
    assert_eq!(
        (o.ok, o.reason.as_str()),
        (false, "major outage: Forms: Vendor login broken")
    );
}

// ---------------------------------------------------------------------------------------
// Heartbeat

#[tokio::test]
async fn heartbeats_keep_a_check_up_with_their_own_token_and_their_absence_takes_it_down() {
    let rest = r#"
[services.feed]
name = "Listing feed import"
check = { type = "heartbeat", period = "1s", grace = "1s" }
"#;
    let s = Server::start(
        &page_config("", rest),
        &[("example.test.toml", common::BARE_ZONE)],
    )
    .await;
    let dir = s.fixture.dir.path().join("state/heartbeat");
    let token = std::fs::read_to_string(dir.join("feed#0.token"))
        .expect("the token is made at start")
        .trim()
        .to_string();
    assert_eq!(token.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("feed#0.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(state(&s, "feed"), ServiceState::Up);
    assert_eq!(reason(&s, "feed"), "checks pass");
    let first = s
        .running
        .snapshots()
        .load()
        .health
        .checks
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(
        first.last.unwrap().reason,
        "waiting for the first heartbeat: due within 2s of start (period 1s + grace 1s)"
    );

    let api = Api::of(&s);
    let http = reqwest::Client::new();
    let post = |name: &str, bearer: &str| {
        http.post(format!("{}/api/v1/heartbeat/{name}", api.base))
            .bearer_auth(bearer)
            .send()
    };
    // The check's token, by service or by check id (`#` escaped in a URL).
    assert_eq!(post("feed", &token).await.unwrap().status(), 200);
    assert_eq!(post("feed%230", &token).await.unwrap().status(), 200);
    // Nothing else opens it: a wrong token, the admin token. And the heartbeat token opens
    // nothing else.
    assert_eq!(post("feed", "nope").await.unwrap().status(), 401);
    assert_eq!(post("feed", &api.token).await.unwrap().status(), 401);
    let r = http
        .get(format!("{}/api/v1/status", api.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post("backup", &token).await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no heartbeat check \"backup\""),
        "{body}"
    );
    assert!(metric(&["detour_heartbeats_total", "result=\"refused\""]) >= 2.0);

    // No call for period + grace: down, with why.
    until("feed down", || state(&s, "feed") == ServiceState::Down).await;
    assert_eq!(
        reason(&s, "feed"),
        "no heartbeat within 2s (period 1s + grace 1s)"
    );
    // A cron one-liner: the token in the path.
    let r = http
        .get(format!("{}/api/v1/heartbeat/feed/{token}", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    until("feed up again", || state(&s, "feed") == ServiceState::Up).await;
    // Kept for a restart.
    let last = std::fs::read_to_string(dir.join("feed#0.last")).unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(last.trim()).is_ok(),
        "{last}"
    );
}

#[test]
fn heartbeat_config_errors_name_the_place() {
    let err = |rest: &str| {
        let f = Fixture::new(
            &page_config("", rest),
            &[("example.test.toml", common::BARE_ZONE)],
        );
        detour::config::Config::load(&f.config_path())
            .expect_err(rest)
            .to_string()
    };
    let e = err(
        "[services.feed]\ncheck = { type = \"heartbeat\", period = \"5m\", interval = \"1s\" }\n",
    );
    assert!(
        e.contains("detour.toml:12:")
            && e.contains("`interval` does not apply to heartbeat checks"),
        "{e}"
    );
    let e = err("[services.feed]\ncheck = { type = \"heartbeat\" }\n");
    assert!(e.contains("heartbeat check needs `period`"), "{e}");
    let e = err("[guard]\ncanaries = [{ type = \"heartbeat\", period = \"1m\" }]\n");
    assert!(e.contains("a heartbeat cannot be a [guard] canary"), "{e}");
    let e = err(
        "[services.forms]\ncheck = { type = \"statuspage\", url = \"http://127.0.0.1:1/s.json\" }\n",
    );
    assert!(e.contains("statuspage check needs `component`"), "{e}");
}

#[test]
fn the_failover_budget_of_a_heartbeat_is_period_plus_grace() {
    let rest =
        "[services.mls]\ncheck = { type = \"heartbeat\", period = \"15m\", grace = \"5m\" }\n";
    let zone = format!("{}{}", common::BARE_ZONE, common::MLS_ONLY_DYNAMIC);
    let f = Fixture::new(&page_config("", rest), &[("example.test.toml", &zone)]);
    let cfg = f.load();
    let b = detour::cli::check::budget(&cfg, &cfg.zones[0].dynamic[0]);
    assert_eq!(
        b,
        "a heartbeat check: within 1230s of the job's last call (period + grace 20m; then TTL 30 s), back at its next call (then TTL)"
    );
}
