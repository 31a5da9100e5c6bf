//! Operator control through the admin API: auth, overrides, incidents, reload, persistence,
//! audit and metrics, against a real detour over real HTTP.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hickory_server::proto::rr::{RData, RecordType};

use serde_json::{Value, json};

fn cfg() -> String {
    single_worker_config("") + "[services.mls_dr]\n"
}

/// `origin` with one host and the `mls` record.
fn zone(origin: &str) -> String {
    SUB_ZONE.replace("sub.example.test.", origin) + MLS_DYNAMIC
}

async fn server() -> Server {
    Server::start(&cfg(), &[("z.toml", &zone("example.test."))]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_requests_need_the_bearer_token() {
    let s = server().await;
    let api = Api::of(&s);
    let token_file = s.fixture.dir.path().join("state/admin.token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(api.token.len(), 64);

    let url = format!("{}/api/v1/status", api.base);
    let none = reqwest::get(&url).await.unwrap();
    assert_eq!(none.status(), 401);
    let body: Value = serde_json::from_str(&none.text().await.unwrap()).unwrap();
    assert!(body["error"].as_str().unwrap().contains("bearer token"));
    let wrong = api.http.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    let (code, doc) = api.send(reqwest::Method::GET, "/api/v1/status", None).await;
    assert_eq!(code, 200);
    assert_eq!(doc["services"][0]["id"], "mls");
    assert_eq!(doc["services"][0]["state"], "up");
    assert_eq!(doc["records"][0]["name"], "mls.example.test.");
    assert_eq!(doc["records"][0]["values"], json!(["127.0.0.10"]));
    assert_eq!(doc["records"][0]["because"], "mls is up");
    assert_eq!(doc["guard"]["frozen"], false);
    let (code, err) = api
        .send(reqwest::Method::GET, "/api/v1/nothing", None)
        .await;
    assert_eq!(
        (code, err["error"].as_str()),
        (404, Some("no such endpoint"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_override_takes_effect_at_once_is_saved_first_and_can_be_cleared() {
    let s = server().await;
    let api = Api::of(&s);
    let t = Instant::now();
    let (code, body) = api
        .send(
            reqwest::Method::PUT,
            "/api/v1/overrides/mls",
            Some(json!({"state": "down", "reason": "vendor is on it", "by": "alice"})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    // Saved before the answer, and live in DNS right away.
    let saved = std::fs::read_to_string(s.fixture.dir.path().join("state/overrides.toml")).unwrap();
    assert!(
        saved.contains("[mls]") && saved.contains("state = \"down\""),
        "{saved}"
    );
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.20"]);
    assert!(t.elapsed() < Duration::from_secs(1));

    let (_, doc) = api.send(reqwest::Method::GET, "/api/v1/status", None).await;
    let mls = &doc["services"][0];
    assert_eq!(mls["state"], "down");
    assert_eq!(mls["reason"], "vendor is on it");
    assert_eq!(mls["observed"], "up", "checks shown underneath");
    assert_eq!(mls["override"]["by"], "alice");

    let (code, body) = api
        .send(
            reqwest::Method::DELETE,
            "/api/v1/overrides/mls?by=bob&reason=vendor%20fixed%20it",
            None,
        )
        .await;
    assert_eq!((code, body["cleared"].as_bool()), (200, Some(true)));
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    // Who cleared it and why, in the audit log.
    let (_, audit) = api
        .send(reqwest::Method::GET, "/api/v1/audit?limit=1", None)
        .await;
    let last = &audit.as_array().unwrap()[0];
    assert_eq!(
        (&last["action"], &last["who"], &last["reason"]),
        (
            &json!("override.clear"),
            &json!("bob"),
            &json!("vendor fixed it")
        ),
        "{audit}"
    );

    // Bad input: clear errors, nothing changes.
    let (code, body) = api
        .send(
            reqwest::Method::PUT,
            "/api/v1/overrides/nosuch",
            Some(json!({"state": "down"})),
        )
        .await;
    assert_eq!(code, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown service \"nosuch\"")
    );
    let (code, body) = api
        .send(
            reqwest::Method::PUT,
            "/api/v1/overrides/mls",
            Some(json!({"state": "sideways"})),
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("expected up, down or maintenance")
    );
    let (code, _) = api
        .send(
            reqwest::Method::PUT,
            "/api/v1/overrides/mls",
            Some(json!({"state": "down", "until": "yesterday"})),
        )
        .await;
    assert_eq!(code, 400);

    // The audit log has both changes with who made them.
    let entries = detour::audit::tail(&s.fixture.dir.path().join("state"), 10).unwrap();
    let seen: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.who.as_str()))
        .collect();
    assert_eq!(
        seen,
        [("override.down", "alice"), ("override.clear", "bob")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_override_with_until_expires_by_itself() {
    let s = server().await;
    let api = Api::of(&s);
    let (code, _) = api
        .send(
            reqwest::Method::PUT,
            "/api/v1/overrides/mls",
            Some(json!({"state": "maintenance", "reason": "patching", "until": "700ms"})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.20"]);
    let start = Instant::now();
    while udp_a(s.addr, "mls.example.test.").await != ["127.0.0.10"] {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "override never expired"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let saved = std::fs::read_to_string(s.fixture.dir.path().join("state/overrides.toml")).unwrap();
    assert!(!saved.contains("[mls]"), "{saved}");
    let entries = detour::audit::tail(&s.fixture.dir.path().join("state"), 10).unwrap();
    assert_eq!(entries.last().unwrap().action, "override.expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn incidents_open_update_resolve_and_are_saved() {
    let s = server().await;
    let api = Api::of(&s);
    let (code, inc) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/incidents",
            Some(json!({"services": ["mls"], "message": "MLS is down", "by": "carol"})),
        )
        .await;
    assert_eq!(code, 201, "{inc}");
    let id = inc["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 4);
    let (code, inc) = api
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/incidents/{id}/updates"),
            Some(json!({"message": "Vendor is restoring"})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(inc["updates"].as_array().unwrap().len(), 2);
    let (_, doc) = api.send(reqwest::Method::GET, "/api/v1/status", None).await;
    assert_eq!(doc["incidents"][0]["id"], id.as_str());
    let saved = std::fs::read_to_string(s.fixture.dir.path().join("state/incidents.json")).unwrap();
    assert!(saved.contains("Vendor is restoring"));

    let (code, inc) = api
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/incidents/{id}/resolve"),
            Some(json!({"message": "Back"})),
        )
        .await;
    assert_eq!(code, 200);
    assert!(inc["resolved_at"].is_string());
    let (_, doc) = api.send(reqwest::Method::GET, "/api/v1/status", None).await;
    assert_eq!(doc["incidents"], json!([]));

    let (code, body) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/incidents/zzzz/updates",
            Some(json!({"message": "x"})),
        )
        .await;
    assert_eq!(code, 404, "{body}");
    let (code, _) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/incidents",
            Some(json!({"services": ["mls"], "message": " "})),
        )
        .await;
    assert_eq!(code, 400);
    let (code, _) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/incidents",
            Some(json!({"services": ["ghost"], "message": "x"})),
        )
        .await;
    assert_eq!(code, 400);
    let actions: Vec<String> = detour::audit::tail(&s.fixture.dir.path().join("state"), 10)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["incident.open", "incident.update", "incident.resolve"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_reload_is_reported_until_a_good_one() {
    let s = server().await;
    let api = Api::of(&s);
    let zone = s.fixture.zone_path("z.toml");
    let good = std::fs::read_to_string(&zone).unwrap();
    write(&zone, &good.replace("127.0.0.20", "127.0.0.999"));
    let (code, body) = api
        .send(reqwest::Method::POST, "/api/v1/reload", None)
        .await;
    assert_eq!(code, 422);
    let errors = body["errors"].as_array().unwrap();
    assert!(errors[0].as_str().unwrap().contains("z.toml:"), "{body}");
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .contains("invalid A value \"127.0.0.999\""),
        "{body}"
    );
    let (_, doc) = api.send(reqwest::Method::GET, "/api/v1/status", None).await;
    assert_eq!(doc["reload"]["ok"], false);
    assert_eq!(
        udp_a(s.addr, "mls.example.test.").await,
        ["127.0.0.10"],
        "old config serves"
    );

    // A hand-edited overrides.toml is read on reload too.
    write(&zone, &good);
    write(
        &s.fixture.dir.path().join("state/overrides.toml"),
        "[mls]\nstate = \"down\"\nreason = \"edited by hand\"\n",
    );
    let (code, _) = api
        .send(reqwest::Method::POST, "/api/v1/reload", None)
        .await;
    assert_eq!(code, 200);
    let (_, doc) = api.send(reqwest::Method::GET, "/api/v1/status", None).await;
    assert_eq!(doc["reload"]["ok"], true);
    assert_eq!(doc["services"][0]["reason"], "edited by hand");
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.20"]);

    // A broken overrides.toml fails the reload with its position, and keeps the old overrides.
    write(
        &s.fixture.dir.path().join("state/overrides.toml"),
        "[mls]\nstate = 3\n",
    );
    let (code, body) = api
        .send(reqwest::Method::POST, "/api/v1/reload", None)
        .await;
    assert_eq!(code, 422);
    // The file named once, with the position: not "PATH: PATH:2:9: ...".
    let path = s.fixture.dir.path().join("state/overrides.toml");
    assert_eq!(
        body["errors"][0].as_str().unwrap(),
        format!("{}:2:9: wanted string or table", path.display()),
        "{body}"
    );
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.20"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn overrides_and_incidents_survive_a_restart_and_corrupt_files_are_set_aside() {
    let fixture = Fixture::new(&cfg(), &[("z.toml", &zone("example.test."))]);
    let path = fixture.config_path();
    let running = detour::daemon::start(fixture.load(), &path).await.unwrap();
    let actor = || detour::states::Actor { who: "test".into() };
    running
        .control()
        .set_override(
            "mls",
            Some(detour::overrides::Override::new(
                detour::overrides::Forced::Down,
                "kept",
            )),
            actor(),
        )
        .await
        .unwrap();
    let inc = running
        .control()
        .incident(
            detour::states::IncidentOp::Open {
                services: vec!["mls".into()],
                message: "down".into(),
            },
            actor(),
        )
        .await
        .unwrap();
    running.shutdown().await.unwrap();

    let running = detour::daemon::start(fixture.load(), &path).await.unwrap();
    assert_eq!(
        udp_a(running.dns_addrs()[0], "mls.example.test.").await,
        ["127.0.0.20"]
    );
    let snap = running.snapshots().load_full();
    assert_eq!(snap.incidents.open().next().unwrap().id, inc.id);
    running.shutdown().await.unwrap();

    // Corrupt both files: detour starts, sets them aside, and says so in status.
    let state = fixture.dir.path().join("state");
    std::fs::write(state.join("overrides.toml"), "[mls\n").unwrap();
    std::fs::write(state.join("incidents.json"), "{").unwrap();
    let running = detour::daemon::start(fixture.load(), &path).await.unwrap();
    assert_eq!(
        udp_a(running.dns_addrs()[0], "mls.example.test.").await,
        ["127.0.0.10"]
    );
    let problems = running.control().problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("overrides.toml was unreadable"),
        "{problems:?}"
    );
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("overrides.toml.corrupt-")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("incidents.json.corrupt-")),
        "{names:?}"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_give_each_zone_serial_and_journal() {
    // A zone of its own: gauges are process-wide, and other tests serve example.test.
    let s = Server::start(&cfg(), &[("z.toml", &zone("gauge.test."))]).await;
    let serial = || async {
        match &udp(s.addr, &query("gauge.test.", RecordType::SOA, None))
            .await
            .0
            .answers[0]
            .data
        {
            RData::SOA(soa) => soa.serial,
            _ => panic!("SOA expected"),
        }
    };
    let gauge = |name: &str| metric(&[name, "zone=\"gauge.test.\""]);
    assert_eq!(gauge("detour_zone_serial{"), f64::from(serial().await));
    assert_eq!(gauge("detour_zone_journal_changes{"), 0.0);
    force(&s, "mls", Some(detour::overrides::Forced::Down)).await;
    let now = serial().await;
    let start = Instant::now();
    while gauge("detour_zone_serial{") != f64::from(now) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the gauge follows the serial"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gauge("detour_zone_journal_changes{"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_queries_states_and_reloads() {
    let s = server().await;
    let api = Api::of(&s);
    for _ in 0..3 {
        udp_a(s.addr, "mls.example.test.").await;
    }
    udp_a(s.addr, "nope.example.test.").await;
    api.send(reqwest::Method::POST, "/api/v1/reload", None)
        .await;
    // A probe's latency, as the states task records it.
    metrics::histogram!("detour_check_duration_seconds").record(0.03);
    let text = api
        .http
        .get(format!("{}/metrics", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |needle: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
    };
    // Counters are process-wide (other tests share them): at least ours.
    assert!(count("detour_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"}") >= 3.0);
    assert!(count("detour_dns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"}") >= 1.0);
    assert!(count("detour_reloads_total{result=\"ok\"}") >= 1.0);
    assert!(count("detour_snapshot_swaps_total") >= 1.0);
    assert!(text.contains("detour_service_state{"), "{text}");
    assert!(text.contains("# TYPE detour_dns_queries_total counter"));
    assert!(
        text.contains("# TYPE detour_checks_awaiting_canary gauge"),
        "{text}"
    );
    // Probe latency is a histogram with buckets (summable), not a summary.
    assert!(text.contains("# TYPE detour_check_duration_seconds histogram"));
    assert!(count("detour_check_duration_seconds_bucket{le=\"0.05\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unix_socket_admin_needs_no_token_and_is_private() {
    let config = cfg().replace(
        "admin_listen = \"127.0.0.1:0\"",
        "admin_listen = \"unix:state/admin.sock\"",
    );
    let s = Server::start(&config, &[("z.toml", &zone("example.test."))]).await;
    let sock = s.fixture.dir.path().join("state/admin.sock");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let client = detour::admin::client::Client::from_config(&s.fixture.load()).unwrap();
    let doc = client
        .call(hyper::Method::GET, "/api/v1/status", None)
        .await
        .unwrap();
    assert_eq!(doc["services"][0]["id"], "mls");
}

/// Refusals axum makes before a handler runs (a query string or path segment that does not
/// parse, an optional body that is not the one expected, a method a route does not take)
/// were plain text or empty, though every refusal is documented as `{"error": "..."}`;
/// found by the `admin` fuzz target.
#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_is_a_json_error_even_those_axum_makes() {
    let s = server().await;
    let api = Api::of(&s);
    /// A request axum refuses, and what it must answer.
    struct Case {
        method: &'static str,
        path: &'static str,
        content_type: Option<&'static str>,
        body: &'static str,
        status: u16,
        /// Words the error contains.
        says: &'static str,
    }
    let get = |path, says| Case {
        method: "GET",
        path,
        content_type: None,
        body: "",
        status: 400,
        says,
    };
    let json = Some("application/json");
    let cases = [
        get("/api/v1/audit?limit=abc", "invalid digit"),
        get("/api/v1/audit?limit=1&limit=2", "duplicate field"),
        Case {
            method: "DELETE",
            ..get("/api/v1/overrides/mls?by=a&by=b", "duplicate field")
        },
        Case {
            method: "POST",
            content_type: json,
            body: r#"{"messag": "typo"}"#,
            status: 422,
            ..get("/api/v1/incidents/abcd/resolve", "unknown field")
        },
        Case {
            method: "POST",
            content_type: json,
            ..get("/api/v1/notify/test", "EOF while parsing")
        },
        Case {
            method: "POST",
            content_type: Some("text/plain"),
            body: "hi",
            status: 415,
            ..get("/api/v1/notify/test", "Content-Type")
        },
        Case {
            method: "PUT",
            status: 405,
            ..get("/api/v1/status", "method not allowed")
        },
        Case {
            method: "PUT",
            content_type: json,
            body: r#"{"state": "down"}"#,
            ..get("/api/v1/overrides/%FF", "UTF-8")
        },
    ];
    for Case {
        method,
        path,
        content_type,
        body,
        status,
        says,
    } in cases
    {
        let mut r = api
            .http
            .request(method.parse().unwrap(), format!("{}{path}", api.base))
            .bearer_auth(&api.token)
            .body(body.to_string());
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        let resp = r.send().await.unwrap();
        let code = resp.status().as_u16();
        let allow = resp.headers().get("allow").cloned();
        let text = resp.text().await.unwrap();
        let what = format!("{method} {path}: {code} {text}");
        assert_eq!(code, status, "{what}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {what}"));
        let error = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error: {what}"));
        assert!(error.contains(says), "{what}");
        if code == 405 {
            assert_eq!(allow.unwrap(), "GET,HEAD", "the Allow header is kept");
        }
    }
    // Answers that were JSON already are left alone.
    let (code, err) = api
        .send(reqwest::Method::GET, "/api/v1/nothing", None)
        .await;
    assert_eq!(
        (code, err["error"].as_str()),
        (404, Some("no such endpoint"))
    );
}
