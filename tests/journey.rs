//! Journey checks against a real sign-in app on loopback: a login form with a CSRF token
//! tied to a pre-session cookie, a POST that sets a session cookie and redirects, a home
//! page only a session sees. Each step is broken in turn and the reason must name it; the
//! password must never show, in a reason or in detour's status.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{Fixture, Server, page_config};
use detour::checks::Observation;
use detour::checks::probe::Prober;
use detour::config::CheckKind;

const PASSWORD: &str = "pa55-w0rd!";

/// How the app misbehaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Break {
    Nothing,
    /// The login page answers 500.
    LoginPage,
    /// The login page has no CSRF field.
    NoCsrf,
    /// Every password is wrong (the directory is down, say).
    Password,
    /// Sessions are forgotten: /home sends everyone back to the login page.
    Sessions,
    /// The POST never answers.
    HangPost,
}

#[derive(Default)]
struct Shared {
    mode: AtomicU8,
    /// Pre-session id -> the CSRF token issued with it.
    csrf: Mutex<BTreeMap<String, String>>,
    sessions: Mutex<HashSet<String>>,
    /// Every login form posted (to check what was sent).
    posted: Mutex<Vec<BTreeMap<String, String>>>,
}

type App = Arc<Shared>;

fn mode(app: &App) -> Break {
    match app.mode.load(Ordering::SeqCst) {
        1 => Break::LoginPage,
        2 => Break::NoCsrf,
        3 => Break::Password,
        4 => Break::Sessions,
        5 => Break::HangPost,
        _ => Break::Nothing,
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn random() -> String {
    (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

async fn login_page(State(app): State<App>) -> Response {
    if mode(&app) == Break::LoginPage {
        return (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response();
    }
    let pre = random();
    let token = random();
    app.csrf.lock().unwrap().insert(pre.clone(), token.clone());
    let field = if mode(&app) == Break::NoCsrf {
        String::new()
    } else {
        format!(r#"<input type="hidden" name="csrf" value="{token}">"#)
    };
    (
        [(header::SET_COOKIE, format!("pre={pre}; Path=/; HttpOnly"))],
        format!("<html><form method=post>{field}<input name=user><input name=password type=password></form></html>"),
    )
        .into_response()
}

async fn login_post(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if mode(&app) == Break::HangPost {
        std::future::pending::<()>().await;
    }
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    app.posted.lock().unwrap().push(form.clone());
    let expected = cookie(&headers, "pre").and_then(|p| app.csrf.lock().unwrap().remove(&p));
    if expected.is_none() || expected != form.get("csrf").cloned() {
        return (StatusCode::FORBIDDEN, "bad csrf").into_response();
    }
    let good = form.get("user").map(String::as_str) == Some("probe")
        && form.get("password").map(String::as_str) == Some(PASSWORD)
        && mode(&app) != Break::Password;
    if !good {
        return (StatusCode::UNAUTHORIZED, "wrong user or password").into_response();
    }
    let sid = random();
    app.sessions.lock().unwrap().insert(sid.clone());
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, "/home?from=login".to_string()),
            (
                header::SET_COOKIE,
                format!("session={sid}; Path=/; HttpOnly"),
            ),
        ],
    )
        .into_response()
}

async fn home(State(app): State<App>, headers: HeaderMap) -> Response {
    let known = cookie(&headers, "session")
        .is_some_and(|s| app.sessions.lock().unwrap().contains(&s))
        && mode(&app) != Break::Sessions;
    if !known {
        return (StatusCode::FOUND, [(header::LOCATION, "/login")], "").into_response();
    }
    "<h1>Welcome, probe</h1>".into_response()
}

/// The app on an ephemeral loopback port.
async fn start_app() -> (SocketAddr, App, tokio::task::JoinHandle<()>) {
    let app: App = Arc::new(Shared::default());
    let router = Router::new()
        .route("/login", get(login_page).post(login_post))
        .route("/home", get(home))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (addr, app, task)
}

/// The service and its journey check, with the app at `addr`; the password file beside it.
fn journey_service(addr: SocketAddr, timeout: &str) -> String {
    format!(
        r#"
[services.sso]
name = "MLS Sign-On"
check = {{ type = "journey", timeout = "{timeout}", interval = "{timeout}", password_file = "sso.secret", rise = 1, fall = 1, steps = [
  {{ method = "GET",  url = "http://{addr}/login",
     capture = {{ csrf = {{ regex = 'name="csrf" value="([^"]+)"' }} }} }},
  {{ method = "POST", url = "http://{addr}/login", expect_status = [302],
     form = {{ user = "probe", password = "{{password}}", csrf = "{{csrf}}" }},
     capture = {{ next = {{ header = "Location" }} }} }},
  {{ method = "GET",  url = "{{next}}", body_contains = "Welcome" }} ] }}
"#
    )
}

/// A fixture holding the config, the zones folder and the password file.
fn fixture(service: &str) -> Fixture {
    let f = Fixture::new(
        &page_config("", service),
        &[("example.test.toml", common::BARE_ZONE)],
    );
    std::fs::write(f.dir.path().join("sso.secret"), format!("{PASSWORD}\n")).unwrap();
    f
}

/// The journey check of service `sso` as loaded from `f`.
fn loaded(f: &Fixture) -> (CheckKind, Duration) {
    let cfg = f.load();
    let c = &cfg.services["sso"].checks[0];
    (c.kind.clone(), c.timing.timeout)
}

async fn run(kind: &CheckKind, timeout: Duration) -> Observation {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Prober::new().check(kind, timeout).await
}

#[tokio::test]
async fn a_sign_in_passes_and_each_broken_step_is_named_in_the_reason() {
    let (addr, app, _task) = start_app().await;
    let f = fixture(&journey_service(addr, "2s"));
    let (kind, timeout) = loaded(&f);

    let o = run(&kind, timeout).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.reason, "3 steps pass (HTTP 200)");
    // The form carried the captured CSRF token and the password from the file.
    let posted = app.posted.lock().unwrap().last().cloned().unwrap();
    assert_eq!(posted["user"], "probe");
    assert_eq!(posted["password"], PASSWORD);
    assert_eq!(posted["csrf"].len(), 32);

    let cases = [
        (
            Break::LoginPage,
            "step 1 (GET /login): HTTP 500 (expected 200-399)",
        ),
        (
            Break::NoCsrf,
            "step 1 (GET /login): HTTP 200, capture csrf: body does not match /name=\"csrf\" value=\"([^\"]+)\"/",
        ),
        (
            Break::Password,
            "step 2 (POST /login): HTTP 401 (expected 302)",
        ),
        (
            Break::Sessions,
            "step 3 (GET /home): HTTP 302, body lacks 'Welcome'",
        ),
        (Break::HangPost, "step 2 (POST /login): timed out after 2s"),
    ];
    for (broken, reason) in cases {
        app.mode.store(broken as u8, Ordering::SeqCst);
        let o = run(&kind, timeout).await;
        assert!(!o.ok, "{broken:?}: {o:?}");
        assert_eq!(o.reason, reason, "{broken:?}");
        assert!(!o.reason.contains(PASSWORD));
    }
    // Fixed again: passes again, from an empty cookie jar (no session carried over).
    app.mode.store(Break::Nothing as u8, Ordering::SeqCst);
    let before = app.sessions.lock().unwrap().len();
    assert!(run(&kind, timeout).await.ok);
    assert_eq!(app.sessions.lock().unwrap().len(), before + 1);
}

#[tokio::test]
async fn without_the_session_cookie_the_journey_fails_where_it_should() {
    // A journey that skips the login: /home sends it back to /login and it says so.
    let (addr, _app, _task) = start_app().await;
    let service = format!(
        r#"
[services.sso]
check = {{ type = "journey", steps = [
  {{ url = "http://{addr}/home", expect_status = [200], body_contains = "Welcome" }} ] }}
"#
    );
    let f = fixture(&service);
    let (kind, timeout) = loaded(&f);
    let o = run(&kind, timeout).await;
    assert_eq!(o.reason, "step 1 (GET /home): HTTP 302 (expected 200)");
    // Followed, the redirect lands on the login page, which lacks the word.
    let service = service.replace("expect_status = [200]", "follow_redirects = true");
    let f = fixture(&service);
    let (kind, timeout) = loaded(&f);
    let o = run(&kind, timeout).await;
    // The step is named by its own URL; the redirect's target answered.
    assert_eq!(
        o.reason,
        "step 1 (GET /home): HTTP 200, body lacks 'Welcome'"
    );
}

#[tokio::test]
async fn the_password_never_shows_in_a_reason_or_in_detours_status() {
    let (addr, app, _task) = start_app().await;
    // The password in a URL (a badly designed API): the step's path would show it.
    let service = format!(
        r#"
[services.sso]
name = "MLS Sign-On"
check = {{ type = "journey", timeout = "1s", interval = "1s", rise = 1, fall = 1, password_file = "sso.secret", steps = [
  {{ url = "http://{addr}/check/{{password}}" }} ] }}
"#
    );
    let f = fixture(&service);
    let (kind, timeout) = loaded(&f);
    let o = run(&kind, timeout).await;
    assert_eq!(
        o.reason,
        "step 1 (GET /check/(secret)): HTTP 404 (expected 200-399)"
    );
    assert!(!format!("{kind:?}").contains(PASSWORD), "Debug hides it");

    // A running detour with the full journey, the password refused: nothing it shows holds it.
    app.mode.store(Break::Password as u8, Ordering::SeqCst);
    let config = page_config("", &journey_service(addr, "1s"));
    let server = start_with_secret(&config).await;
    let api = common::Api::of(&server);
    let mut seen = String::new();
    for _ in 0..50 {
        let (_, doc) = api.send(reqwest::Method::GET, "/api/v1/status", None).await;
        seen = doc.to_string();
        if seen.contains("step 2 (POST /login): HTTP 401") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.contains("step 2 (POST /login): HTTP 401"), "{seen}");
    assert!(!seen.contains(PASSWORD));
    let page = reqwest::get(format!("{}/status.json", server.running.page_addrs()[0]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("step 2 (POST /login)"), "{page}");
    assert!(!page.contains(PASSWORD));
}

/// A detour serving `config`, with the password file in its folder before it loads.
async fn start_with_secret(config: &str) -> Server {
    let fixture = Fixture::new(config, &[("example.test.toml", common::BARE_ZONE)]);
    std::fs::write(fixture.dir.path().join("sso.secret"), PASSWORD).unwrap();
    let cfg = fixture.load();
    let running = detour::daemon::start(cfg, &fixture.config_path())
        .await
        .expect("detour starts");
    let addr = running.dns_addrs()[0];
    Server {
        fixture,
        running,
        addr,
    }
}

#[test]
fn journey_config_errors_name_the_place() {
    let bad = |service: &str| -> String {
        let f = Fixture::new(
            &page_config("", service),
            &[("example.test.toml", common::BARE_ZONE)],
        );
        match detour::config::Config::load(&f.config_path()) {
            Ok(_) => panic!("accepted:\n{service}"),
            Err(e) => e.to_string(),
        }
    };
    let e = bad(
        "[services.sso]\ncheck = { type = \"journey\", steps = [ { url = \"http://127.0.0.1:1/\", form = { c = \"{csrf}\" } } ] }\n",
    );
    assert!(
        e.contains("detour.toml:12:83:") && e.contains("{csrf} is not captured by an earlier step"),
        "{e}"
    );
    let e = bad(
        "[services.sso]\ncheck = { type = \"journey\", steps = [ { url = \"http://127.0.0.1:1/\", form = { p = \"{password}\" } } ] }\n",
    );
    assert!(e.contains("{password} needs `password_file`"), "{e}");
    let e = bad(
        "[services.sso]\ncheck = { type = \"journey\", password_file = \"nope.secret\", steps = [ { url = \"http://127.0.0.1:1/{password}\" } ] }\n",
    );
    assert!(
        e.contains("detour.toml:12:") && e.contains("cannot read password_file \"nope.secret\""),
        "{e}"
    );
    let e = bad(
        "[services.sso]\ncheck = { type = \"journey\", steps = [ { url = \"http://127.0.0.1:1/\", capture = { t = { regex = '([a-z' } } } ] }\n",
    );
    assert!(e.contains("invalid capture regex"), "{e}");
    let e = bad("[services.sso]\ncheck = { type = \"journey\", steps = [] }\n");
    assert!(e.contains("a journey needs at least one step"), "{e}");
    let e =
        bad("[services.sso]\ncheck = { type = \"journey\", steps = [ { url = \"ftp://x/\" } ] }\n");
    assert!(e.contains("invalid step url \"ftp://x/\""), "{e}");
    let e = bad(
        "[services.sso]\ncheck = { type = \"journey\", steps = [ { url = \"http://x/\", bogus = 1 } ] }\n",
    );
    assert!(e.contains("unknown field `bogus`"), "{e}");
}
