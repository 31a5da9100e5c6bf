//! Rehearsal against a real detour: drills that only a view's sources see (DNS over UDP and
//! TCP from 127.0.0.2, the page over HTTP from it), safety rules refusing overrides,
//! `simulate` changing nothing, and `explain` naming each step; the CLI's side through the
//! real binary.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::binary::{Daemon, cli};
use common::*;
use hickory_server::proto::op::Message;
use hickory_server::proto::rr::RecordType;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, UdpSocket};

/// The staff resolver's address: the view's only source.
const STAFF: &str = "127.0.0.2";

const ZONE: &str = r#"
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test.", minimum = 60 }
ns  = ["ns1.example.test."]
allow_transfer = ["127.0.0.1", "127.0.0.2"]
records = [
  { name = "ns1", type = "A",     value = "127.0.0.1" },
  { name = "www", type = "CNAME", value = "mls" },
]

[[dynamic]]
name = "mls"
type = "A"
ttl  = 30
answers = [
  { if_up = "mls",    values = ["127.0.0.10"] },
  { if_up = "mls_dr", values = ["127.0.0.20"] },
]
otherwise = ["127.0.0.80"]

[[dynamic]]
name = "sso"
type = "A"
ttl  = 30
answers = [ { if_up = "sso", values = ["127.0.0.30"] } ]
otherwise = ["127.0.0.80"]
"#;

/// Services without checks (up unless an operator says otherwise), forms reached through
/// sign-on, a staff view, two safety rules, a webhook sink (for "who would be told"), and a
/// maintenance window far ahead (for `simulate --at`).
fn services(extra: &str) -> String {
    format!(
        r#"
[page]
title = "Example Realty"

[services.mls]
name = "MLS"
[services.mls_dr]
name = "MLS (DR site)"
[services.sso]
name = "Sign-on"
[services.forms]
name = "Forms"
url = "https://forms.example.test/"
depends_on = ["sso"]

[views.staff]
sources = ["{STAFF}/32", "2001:db8::/32"]

[[safety]]
at_least = 1
of = ["mls", "mls_dr"]
state = "up"

[[safety]]
name = "two at most"
max_overrides = 2

[[notify]]
type = "webhook"
url = "http://127.0.0.1:9/hook"
events = ["down", "impacted", "drill"]

[[maintenance]]
services = ["forms"]
start = "2031-01-01T00:00:00Z"
end = "2031-01-01T04:00:00Z"
message = "Forms upgrade"
{extra}
"#
    )
}

async fn server() -> Server {
    Server::start(
        &page_config("", &services("")),
        &[("example.test.toml", ZONE)],
    )
    .await
}

/// One UDP query sent from `src`.
async fn udp_from(src: &str, addr: SocketAddr, name: &str) -> Vec<String> {
    let sock = UdpSocket::bind((src, 0)).await.expect("bind the source");
    let q = query(name, RecordType::A, None);
    sock.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("an answer over UDP")
        .unwrap();
    a_values(&Message::from_vec(&buf[..n]).unwrap())
}

/// One TCP query sent from `src`.
async fn tcp_from(src: &str, addr: SocketAddr, q: &Message) -> Vec<Message> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(src.parse().unwrap(), 0)).unwrap();
    let mut s = sock.connect(addr).await.expect("tcp connect");
    tcp_send(&mut s, &q.to_vec().unwrap()).await;
    let mut out = Vec::new();
    while let Some(raw) = tcp_recv(&mut s).await {
        let m = Message::from_vec(&raw).unwrap();
        let soas = m
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        out.push(m);
        if q.queries[0].query_type() != RecordType::AXFR || soas >= 2 || out.len() > 1 {
            break;
        }
    }
    out
}

/// GET `http://page/` with `host`, sent from `src`: status code and body.
async fn page_from(s: &Server, src: &str, host: &str) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .local_address(src.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/", s.running.page_addrs()[0]))
        .header("host", host)
        .send()
        .await
        .expect("the page answers");
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn audit(api: &Api, n: usize) -> Vec<Value> {
    let (_, v) = api
        .send(Method::GET, &format!("/api/v1/audit?limit={n}"), None)
        .await;
    v.as_array().cloned().unwrap_or_default()
}

/// Waits (at most 10 s) until `f` holds.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_shows_the_outage_to_the_view_only_and_ends_by_itself() {
    let s = server().await;
    let api = Api::of(&s);
    assert_eq!(
        udp_from(STAFF, s.addr, "sso.example.test.").await,
        ["127.0.0.30"]
    );

    // An unknown view is refused, saying which exist.
    let (code, v) = api
        .send(
            Method::POST,
            "/api/v1/drills",
            Some(json!({"service": "sso", "view": "lab", "for": "3s"})),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("expected one of staff"),
        "{v}"
    );

    let (code, v) = api
        .send(
            Method::POST,
            "/api/v1/drills",
            Some(
                json!({"service": "sso", "state": "down", "view": "staff", "for": "3s",
                        "reason": "night drill", "by": "dana"}),
            ),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["drills"][0]["view"], "staff");
    assert_eq!(v["notified"][0], "webhook http://127.0.0.1:9/hook", "{v}");

    // Staff see the outage page's address, over UDP and TCP; everyone else does not.
    assert_eq!(
        udp_from(STAFF, s.addr, "sso.example.test.").await,
        ["127.0.0.80"]
    );
    let over_tcp = tcp_from(
        STAFF,
        s.addr,
        &query("sso.example.test.", RecordType::A, None),
    )
    .await;
    assert_eq!(a_values(&over_tcp[0]), ["127.0.0.80"]);
    assert_eq!(
        udp_from("127.0.0.1", s.addr, "sso.example.test.").await,
        ["127.0.0.30"]
    );
    // Forms depends on sign-on: staff see it impacted, which does not move its answer here,
    // but the MLS (no dependency) is untouched for everyone.
    assert_eq!(
        udp_from(STAFF, s.addr, "mls.example.test.").await,
        ["127.0.0.10"]
    );

    // A secondary inside the view still transfers everyone's zone, never the drill.
    let axfr = tcp_from(
        STAFF,
        s.addr,
        &query("example.test.", RecordType::AXFR, None),
    )
    .await;
    let records: Vec<String> = axfr
        .iter()
        .flat_map(|m| m.answers.iter().map(|r| r.to_string()))
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r.starts_with("sso.example.test.") && r.ends_with("127.0.0.30")),
        "{records:?}"
    );
    assert!(
        !records
            .iter()
            .any(|r| r.ends_with("127.0.0.80") && r.starts_with("sso"))
    );

    // The page: staff get the outage page with the banner; others the plain status page.
    let (code, body) = page_from(&s, STAFF, "sso.example.test").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("DRILL — only staff see this."), "{body}");
    assert!(
        body.contains("Sign-on is down for this drill until"),
        "{body}"
    );
    let (code, body) = page_from(&s, "127.0.0.1", "sso.example.test").await;
    assert_eq!(code, 200);
    assert!(!body.contains("DRILL"), "{body}");

    // Status and the audit log say so.
    let (_, st) = api.send(Method::GET, "/api/v1/status", None).await;
    assert_eq!(st["drills"][0]["service"], "sso", "{st}");
    assert_eq!(st["drills"][0]["by"], "dana");
    let a = audit(&api, 1).await;
    assert_eq!(a[0]["action"], "drill.down", "{a:?}");
    assert_eq!(a[0]["who"], "dana");

    // It ends by itself: staff get the usual answer back, and the end is audited.
    eventually("the drill's end", || async {
        udp_from(STAFF, s.addr, "sso.example.test.").await == ["127.0.0.30"]
    })
    .await;
    let a = audit(&api, 1).await;
    assert_eq!(a[0]["action"], "drill.end", "{a:?}");
    assert!(a[0]["reason"].as_str().unwrap().contains("its time is up"));
    let (_, st) = api.send(Method::GET, "/api/v1/status", None).await;
    assert!(st.get("drills").is_none(), "{st}");

    // `drill stop` ends one early.
    let (code, _) = api
        .send(
            Method::POST,
            "/api/v1/drills",
            Some(json!({"service": "mls=down", "view": "staff", "for": "30m"})),
        )
        .await;
    assert_eq!(
        code, 404,
        "SERVICE=STATE is the CLI's spelling, not the API's"
    );
    api.send(
        Method::POST,
        "/api/v1/drills",
        Some(json!({"service": "mls", "view": "staff", "for": "30m"})),
    )
    .await;
    assert_eq!(
        udp_from(STAFF, s.addr, "mls.example.test.").await,
        ["127.0.0.20"]
    );
    let (code, v) = api
        .send(Method::DELETE, "/api/v1/drills?service=mls", None)
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["stopped"][0]["service"], "mls");
    assert_eq!(
        udp_from(STAFF, s.addr, "mls.example.test.").await,
        ["127.0.0.10"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_survives_a_restart() {
    let s = server().await;
    let api = Api::of(&s);
    api.send(
        Method::POST,
        "/api/v1/drills",
        Some(json!({"service": "sso", "view": "staff", "for": "30m"})),
    )
    .await;
    let dir = s.fixture;
    s.running.shutdown().await.unwrap();
    let cfg = dir.load();
    let running = detour::daemon::start(cfg, &dir.config_path())
        .await
        .expect("detour starts again");
    let addr = running.dns_addrs()[0];
    assert_eq!(
        udp_from(STAFF, addr, "sso.example.test.").await,
        ["127.0.0.80"]
    );
    assert_eq!(
        udp_from("127.0.0.1", addr, "sso.example.test.").await,
        ["127.0.0.30"]
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn safety_rules_refuse_an_override_unless_forced_with_a_reason() {
    let hooks = common::hooks::Hooks::default();
    let hook = hooks.start().await;
    let config = page_config("", &services(""))
        .replace("http://127.0.0.1:9/hook", &format!("http://{hook}/hook"))
        .replace(
            r#"events = ["down", "impacted", "drill"]"#,
            r#"events = ["safety"]"#,
        );
    let s = Server::start(&config, &[("example.test.toml", ZONE)]).await;
    let api = Api::of(&s);
    let set = |service: &str, body: Value| {
        let path = format!("/api/v1/overrides/{service}");
        let api = &api;
        async move { api.send(Method::PUT, &path, Some(body)).await }
    };
    let (code, _) = set("mls", json!({"state": "down", "reason": "vendor"})).await;
    assert_eq!(code, 200);
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.20"]);

    // Taking the DR site down too would leave nobody up: refused, the rule named, nothing
    // changed.
    let (code, v) = set("mls_dr", json!({"state": "down"})).await;
    assert_eq!(code, 409, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("safety rule \"at least 1 of mls, mls_dr up\""),
        "{e}"
    );
    assert!(e.contains("mls_dr is down"), "{e}");
    assert!(e.contains("nothing was changed"), "{e}");
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.20"]);

    // --force needs a reason; with one it goes through and is audited.
    let (code, v) = set("mls_dr", json!({"state": "down", "force": true})).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = set(
        "mls_dr",
        json!({"state": "down", "force": true, "reason": "both sites are being rebuilt", "by": "lee"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.80"]);
    let a = audit(&api, 2).await;
    let forced = a
        .iter()
        .find(|e| e["action"] == "safety.forced")
        .unwrap_or_else(|| panic!("{a:?}"));
    assert_eq!(forced["who"], "lee");
    assert!(
        forced["reason"]
            .as_str()
            .unwrap()
            .contains("at least 1 of mls, mls_dr up")
    );

    // The broken rule shows in status.
    let (_, st) = api.send(Method::GET, "/api/v1/status", None).await;
    assert_eq!(
        st["safety"][0]["rule"], "at least 1 of mls, mls_dr up",
        "{st}"
    );

    // A third override breaks "two at most".
    let (code, v) = set("sso", json!({"state": "maintenance"})).await;
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("\"two at most\""),
        "{v}"
    );

    // Clearing is never refused here (it mends both rules).
    let (code, _) = api
        .send(Method::DELETE, "/api/v1/overrides/mls_dr", None)
        .await;
    assert_eq!(code, 200);
    let (_, st) = api.send(Method::GET, "/api/v1/status", None).await;
    assert!(st.get("safety").is_none(), "{st}");

    // The rule broken, then holding again, was told to the sinks that take "safety".
    let deadline = Instant::now() + Duration::from_secs(10);
    let told = loop {
        let told: Vec<String> = hooks
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == "safety")
            .map(|v| v["reason"].as_str().unwrap_or_default().to_string())
            .collect();
        if told.len() >= 2 || Instant::now() > deadline {
            break told;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(
        told[0].starts_with("safety rule \"at least 1 of mls, mls_dr up\" is broken: 0 of"),
        "{told:?}"
    );
    assert!(told[1].contains("holds again"), "{told:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn simulate_shows_what_would_change_and_changes_nothing() {
    let s = server().await;
    let api = Api::of(&s);
    let before = audit(&api, 5).await;
    let (code, v) = api
        .send(
            Method::POST,
            "/api/v1/simulate",
            Some(json!({"states": {"sso": "down"}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let rec = |name: &str| {
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {v}"))
    };
    let sso = rec("sso.example.test.");
    assert_eq!(sso["now"], json!(["127.0.0.30"]));
    assert_eq!(sso["would"], json!(["127.0.0.80"]));
    assert_eq!(sso["outage"], true);
    assert_eq!(sso["changes"], true);
    assert_eq!(rec("mls.example.test.")["changes"], false);
    assert_eq!(v["impacted"], json!(["forms"]), "{v}");
    let page = &v["outage_pages"][0];
    assert_eq!(page["host"], "sso.example.test", "{v}");
    assert_eq!(page["name"], "Sign-on");
    // What the page would list as still working: the MLS, with its link if it had one.
    assert!(
        page["working"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "MLS"),
        "{page}"
    );
    assert_eq!(v["notified"], json!(["webhook http://127.0.0.1:9/hook"]));

    // Nothing changed: DNS, states, the audit log.
    assert_eq!(udp_a(s.addr, "sso.example.test.").await, ["127.0.0.30"]);
    let (_, st) = api.send(Method::GET, "/api/v1/status", None).await;
    let sso_state = st["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "sso")
        .unwrap()["state"]
        .clone();
    assert_eq!(sso_state, "up");
    assert_eq!(audit(&api, 5).await, before);

    // Both MLS sites down: the safety rule it would break is named.
    let (_, v) = api
        .send(
            Method::POST,
            "/api/v1/simulate",
            Some(json!({"states": {"mls": "down", "mls_dr": "down"}})),
        )
        .await;
    assert_eq!(
        v["safety"][0]["rule"], "at least 1 of mls, mls_dr up",
        "{v}"
    );

    // --at: inside the maintenance window, forms would be in maintenance.
    let (_, v) = api
        .send(
            Method::POST,
            "/api/v1/simulate",
            Some(json!({"states": {"sso": "up"}, "at": "2031-01-01T01:00:00Z"})),
        )
        .await;
    let forms = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "forms")
        .cloned()
        .unwrap();
    assert_eq!(forms["would"], "maintenance", "{v}");
    assert_eq!(forms["because"], "Forms upgrade");

    // Bad input: a clear 400.
    let (code, v) = api
        .send(
            Method::POST,
            "/api/v1/simulate",
            Some(json!({"states": {"nope": "down"}})),
        )
        .await;
    assert_eq!(code, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown service \"nope\"")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_names_each_step_behind_an_answer() {
    let s = server().await;
    let api = Api::of(&s);
    api.send(
        Method::PUT,
        "/api/v1/overrides/mls",
        Some(json!({"state": "down", "reason": "vendor restores the database", "by": "alice"})),
    )
    .await;
    let (code, v) = api
        .send(
            Method::GET,
            "/api/v1/explain?name=www.example.test&type=A",
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["rcode"], "No Error", "{v}");
    let answer: Vec<&str> = v["answer"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(answer[0].contains("CNAME"), "{answer:?}");
    assert!(answer[1].contains("127.0.0.20"), "{answer:?}");
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let text = steps.join("\n");
    assert!(text.contains("view: 127.0.0.1 is in no view"), "{text}");
    assert!(text.contains("www.example.test. CNAME: static"), "{text}");
    assert!(
        text.contains("mls.example.test. A: dynamic, TTL 30 s"),
        "{text}"
    );
    assert!(
        text.contains("override: down by alice (vendor restores the database)"),
        "{text}"
    );
    assert!(
        text.contains("2. mls_dr (127.0.0.20)  <- answered"),
        "{text}"
    );
    assert!(text.contains("no checks"), "{text}");
    assert!(
        text.contains("may serve it until"),
        "the swap just happened, so the old answer may still be cached: {text}"
    );

    // From the staff view during a drill: the view and its drill are the first step.
    api.send(
        Method::POST,
        "/api/v1/drills",
        Some(json!({"service": "sso", "view": "staff", "for": "30m", "reason": "rehearsal"})),
    )
    .await;
    let (_, v) = api
        .send(
            Method::GET,
            &format!("/api/v1/explain?name=sso.example.test&from={STAFF}"),
            None,
        )
        .await;
    assert_eq!(v["view"], "staff", "{v}");
    let first = v["steps"][0].as_str().unwrap();
    assert!(
        first.contains("view staff, which has a drill in force: sso down"),
        "{first}"
    );
    assert!(
        v["answer"][0].as_str().unwrap().contains("127.0.0.80"),
        "{v}"
    );

    // A name with nothing there: the negative answer explained.
    let (_, v) = api
        .send(
            Method::GET,
            "/api/v1/explain?name=nothing.example.test",
            None,
        )
        .await;
    assert_eq!(v["rcode"], "Non-Existent Domain", "{v}");
    assert!(
        v["steps"][1]
            .as_str()
            .unwrap()
            .contains("no A record at nothing.example.test.")
    );
}

#[test]
fn views_and_safety_rules_are_checked_with_line_and_column() {
    let bad = r#"
[services.mls]
[views.staff]
sources = ["10.0.0.0/8", "banana"]
[views.lab]
sources = ["10.1.0.0/16"]
[[safety]]
at_least = 3
of = ["mls", "nope"]
[[safety]]
max_overrides = 1
state = "up"
"#;
    let f = Fixture::new(
        &config_toml("").replace("[services.mls]\nname = \"MLS\"\n", bad),
        &[("z.toml", ZONE)],
    );
    let errors = detour::config::Config::load(&f.config_path())
        .expect_err("invalid")
        .to_string();
    for want in [
        "invalid source \"banana\": expected an address or a prefix",
        "10.0.0.0/8 overlaps 10.1.0.0/16 of view lab",
        "unknown service \"nope\" in [[safety]] of",
        "at_least must be 1 to 2",
        "`state` belongs with at_least, not max_overrides",
    ] {
        assert!(errors.contains(want), "missing {want:?} in:\n{errors}");
    }
    assert!(
        errors.contains("detour.toml:"),
        "errors name the file: {errors}"
    );
}

/// The CLI: a refused override exits 2 naming the rule, --force passes, simulate and
/// explain print for people, drills start and stop.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_rehearses_refuses_and_explains() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = Fixture::new(
        &format!(
            "[server]\ndns_listen = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:{port}\"\npage_listen = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\n{}",
            services("")
        ),
        &[("example.test.toml", ZONE)],
    );
    let cfg = f.config_path();
    let mut d = Daemon::start(&cfg);
    d.wait_for("ready");

    let (code, out, err) = cli(&cfg, &["simulate", "sso=down"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("SIMULATION (nothing was changed): if sso down"),
        "{out}"
    );
    assert!(
        out.contains("sso.example.test. A  127.0.0.30 -> 127.0.0.80  CHANGES (outage page)"),
        "{out}"
    );
    assert!(out.contains("Impacted: forms"), "{out}");
    assert!(
        out.contains("Outage page for sso.example.test: \"Sign-on is unavailable\""),
        "{out}"
    );
    let (code, _, err) = cli(&cfg, &["simulate", "sso=sideways"]);
    assert_eq!(code, 2, "a bad STATE is a usage error: {err}");

    assert_eq!(cli(&cfg, &["override", "set", "mls", "down"]).0, 0);
    let (code, out, err) = cli(&cfg, &["override", "set", "mls_dr", "down"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("safety rule \"at least 1 of mls, mls_dr up\""),
        "{err}"
    );
    let (code, _, err) = cli(&cfg, &["override", "set", "mls_dr", "down", "--force"]);
    assert_eq!(code, 2, "--force without --reason is a usage error: {err}");
    let (code, _, err) = cli(
        &cfg,
        &[
            "override", "set", "mls_dr", "down", "--force", "--reason", "rebuild",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = cli(&cfg, &["status"]);
    assert!(
        out.contains("SAFETY RULE BROKEN: \"at least 1 of mls, mls_dr up\""),
        "{out}"
    );

    let (code, out, err) = cli(&cfg, &["explain", "www.example.test"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("why:"), "{out}");
    assert!(
        out.contains("otherwise: the outage page (127.0.0.80)  <- answered"),
        "{out}"
    );

    let (code, out, err) = cli(
        &cfg,
        &[
            "drill",
            "start",
            "sso=maintenance",
            "--view",
            "staff",
            "--for",
            "30m",
            "--reason",
            "rehearsal",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("DRILL: sso is maintenance for view staff only"),
        "{out}"
    );
    let (_, out, _) = cli(&cfg, &["status"]);
    assert!(
        out.contains("DRILL in view staff: sso is maintenance"),
        "{out}"
    );
    let (code, out, _) = cli(&cfg, &["drill", "stop"]);
    assert_eq!(code, 0);
    assert!(out.contains("drill ended: sso in view staff"), "{out}");
    let (_, out, _) = cli(&cfg, &["drill", "stop"]);
    assert!(out.contains("no drill was in force"), "{out}");
}
