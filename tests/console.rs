//! The operator console over real HTTP against a real detour: sign-in and its cookie,
//! sessions, CSRF refusals, roles, the lockout, previews, and the audit log naming the
//! account; plus `detour user` through the real binary.

mod common;
#[path = "common/console.rs"]
mod console;
#[path = "common/page.rs"]
mod page;

use common::{MLS_DYNAMIC, Server, udp_a};
use console::*;
use detour::console::accounts::{self, Role};
use page::page_zone;

/// A maintenance window far ahead: shown, never on.
const LATER: &str = "[[maintenance]]\nservices = [\"mls\"]\nstart = \"2099-12-24T22:00:00-05:00\"\nend = \"2099-12-25T02:00:00-05:00\"\nmessage = \"Database upgrade\"\n";

async fn start() -> Server {
    let s = Server::start(
        &console_config(LATER),
        &[("example.test.toml", &page_zone())],
    )
    .await;
    let state = s.fixture.dir.path().join("state");
    add_account(&state, "dana", Role::Operator);
    add_account(&state, "cal", Role::Communicator);
    s
}

fn audit_lines(s: &Server) -> Vec<serde_json::Value> {
    std::fs::read_to_string(s.fixture.dir.path().join("state/audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_in_sets_a_strict_session_cookie_and_actions_are_audited_by_account() {
    let _ = MLS_DYNAMIC;
    let s = start().await;
    let mut a = Agent::new(s.running.admin_addr());

    // Signed out: every page leads to the sign-in form.
    let r = a.get("/console/").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location.as_deref(), Some("/console/login"));
    let r = a.get("/console/login").await;
    assert_eq!(r.status, 200);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("form-action 'self'"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers["cache-control"], "no-store");

    let r = a
        .post(
            "/console/login",
            &[("name", "dana"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/console/"));
    let session = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("detour_console="))
        .expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console/"] {
        assert!(session.contains(attr), "{attr} missing: {session}");
    }
    // Plain HTTP: no Secure (the browser would drop it), no __Host- prefix.
    assert!(!session.contains("Secure"), "{session}");
    assert!(
        !session.contains("Max-Age"),
        "a session cookie, gone with the browser: {session}"
    );

    let home = a.get("/console/").await;
    assert_eq!(home.status, 200);
    for part in [
        "dana (operator)",
        "MLS Sign-On",
        "mls.example.test. A",
        "127.0.0.10",
        "Planned maintenance",
        "Database upgrade",
    ] {
        assert!(
            home.body.contains(part),
            "{part:?} missing from the dashboard"
        );
    }

    // The template fills the form; posting opens the incident through the same operation
    // as the API, and the page shows it.
    let form = a.get("/console/incidents/new?template=0").await;
    assert!(
        form.body
            .contains("Sign-on is down. Forms and tax records work")
    );
    assert!(form.body.contains("value=\"sso\" checked"));
    let r = a
        .post(
            "/console/incidents/new",
            &[
                ("service", "sso"),
                ("service", "mls"),
                (
                    "message",
                    "Sign-on is down <script>alert(1)</script>; we are on it.",
                ),
                ("do", "open"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.location.unwrap();
    assert!(to.starts_with("/console/incidents/"), "{to}");
    let id = to.trim_start_matches("/console/incidents/").to_string();
    let shown = a.get(&to).await;
    assert!(
        shown.body.contains(&format!("Incident {id} opened")),
        "the flash line"
    );
    assert!(shown.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!shown.body.contains("<script>alert(1)"));
    let status = page::get(
        page::addr_of(&s.running.page_addrs()[0]),
        "status.example.test",
        "/",
    )
    .await;
    assert!(
        status.body.contains("Sign-on is down &lt;script&gt;"),
        "on the status page"
    );

    // An update and a resolve, each audited with the account's name.
    let r = a
        .post(
            &to,
            &[("message", "The vendor is restoring it."), ("do", "update")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = a.post(&to, &[("message", ""), ("do", "resolve")]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let audit = audit_lines(&s);
    let mine: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e["incident"] == id.as_str())
        .map(|e| (e["action"].as_str().unwrap(), e["who"].as_str().unwrap()))
        .collect();
    assert_eq!(
        mine,
        [
            ("incident.open", "dana"),
            ("incident.update", "dana"),
            ("incident.resolve", "dana")
        ]
    );
    let history = a.get("/console/audit").await;
    assert!(history.body.contains("incident.resolve"));
    assert!(history.body.contains("<strong>dana</strong>"));

    // The admin API is unchanged: the bearer token is still required there.
    let api = common::Api::of(&s);
    let (code, _) = api.send(reqwest::Method::GET, "/api/v1/status", None).await;
    assert_eq!(code, 200);
    let bare = reqwest::get(format!("http://{}/api/v1/status", s.running.admin_addr()))
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 401);

    // Signing out ends the session on the server, not only in the browser.
    let cookie_before = a.cookies.clone();
    let r = a.post("/console/logout", &[]).await;
    assert_eq!(r.status, 303);
    a.cookies = cookie_before;
    assert_eq!(
        a.get("/console/").await.status,
        303,
        "the old cookie is dead"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_posts_and_a_communicators_dns_changes_are_refused() {
    let s = start().await;
    let dns = s.addr;
    let mut cal = Agent::new(s.running.admin_addr());
    assert_eq!(cal.sign_in("cal", PASSWORD).await.status, 303);
    let _ = cal.get("/console/").await;
    let incidents = || s.running.snapshots().load().incidents.list.len();

    // No token, a wrong token, another origin, a cross-site fetch: refused, nothing changes.
    let fields = [("service", "mls"), ("message", "forged"), ("do", "open")];
    let r = cal
        .post_as("/console/incidents/new", &fields, false, None)
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("security token"));
    let good = cal.csrf.clone();
    cal.csrf = "0".repeat(64);
    assert_eq!(
        cal.post("/console/incidents/new", &fields).await.status,
        403
    );
    cal.csrf = good;
    let r = cal
        .post_as(
            "/console/incidents/new",
            &fields,
            true,
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(incidents(), 0);

    // A communicator posts incidents...
    let r = cal
        .post(
            "/console/incidents/new",
            &[
                ("service", "mls"),
                ("message", "Looking into it."),
                ("do", "open"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(incidents(), 1);
    // ...but cannot change DNS: no override, no maintenance, no reload.
    let page = cal.get("/console/dns").await;
    assert!(page.body.contains("only operators change what DNS answers"));
    assert!(!page.body.contains("action=\"/console/dns/override\""));
    for (path, fields) in [
        (
            "/console/dns/override",
            vec![("service", "mls"), ("state", "down"), ("reason", "x")],
        ),
        (
            "/console/dns/maintenance",
            vec![("service", "mls"), ("reason", "x"), ("until", "1h")],
        ),
        ("/console/dns/reload", vec![]),
    ] {
        let r = cal.post(path, &fields).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("communicator"), "{path}");
    }
    assert!(s.running.snapshots().load().health.overrides.is_empty());
    assert_eq!(udp_a(dns, "mls.example.test.").await, ["127.0.0.10"]);

    // An operator's override goes through the same operation: DNS follows, the audit log
    // and the override name the account.
    let mut dana = Agent::new(s.running.admin_addr());
    assert_eq!(dana.sign_in("dana", PASSWORD).await.status, 303);
    let _ = dana.get("/console/dns").await;
    let r = dana
        .post(
            "/console/dns/override",
            &[
                ("service", "mls"),
                ("state", "down"),
                ("reason", "Vendor restoring the database"),
                ("until", "2h"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(udp_a(dns, "mls.example.test.").await, ["127.0.0.20"]);
    let snap = s.running.snapshots().load_full();
    let o = &snap.health.overrides["mls"];
    assert_eq!(o.by.as_deref(), Some("dana"));
    assert!(o.until.is_some());
    // Without a reason, or with an expiry in the past: refused, with the reason on the form.
    let r = dana
        .post(
            "/console/dns/maintenance",
            &[("service", "mls_dr"), ("reason", "Upgrade"), ("until", "")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Say until when"));
    let r = dana
        .post(
            "/console/dns/maintenance",
            &[
                ("service", "mls_dr"),
                ("reason", "Upgrade"),
                ("until", "45m"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(udp_a(dns, "mls.example.test.").await, ["127.0.0.80"]);
    let r = dana
        .post(
            "/console/dns/clear",
            &[("service", "mls"), ("reason", "Vendor done")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let audit = audit_lines(&s);
    let dns_changes: Vec<(&str, &str, &str)> = audit
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("override."))
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["service"].as_str().unwrap(),
                e["who"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        dns_changes,
        [
            ("override.down", "mls", "dana"),
            ("override.maintenance", "mls_dr", "dana"),
            ("override.clear", "mls", "dana")
        ]
    );
    // The communicator's attempts left no trace in the state.
    assert!(
        !audit
            .iter()
            .any(|e| e["who"] == "cal" && e["action"] != "incident.open")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn five_wrong_passwords_lock_the_account_and_unknown_names_look_the_same() {
    let s = start().await;
    let mut a = Agent::new(s.running.admin_addr());
    let wrong = a.sign_in("dana", "not the password at all").await;
    assert_eq!(wrong.status, 401);
    let unknown = a.sign_in("nobody", "not the password at all").await;
    assert_eq!(unknown.status, 401);
    let said = |b: &str| {
        let at = b.find("class=\"error\"").expect("an error line");
        b[at..at + 80].to_string()
    };
    assert_eq!(said(&wrong.body), said(&unknown.body), "the same answer");
    for _ in 0..4 {
        assert_eq!(
            a.sign_in("dana", "still not the password").await.status,
            401
        );
    }
    // Locked: even the right password is refused for a while.
    let r = a.sign_in("dana", PASSWORD).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("locked for 15 more minute"), "{}", r.body);
    assert!(a.get("/console/").await.status == 303, "not signed in");
    // Another account is not locked.
    assert_eq!(a.sign_in("cal", PASSWORD).await.status, 303);
    // A new password (`detour user passwd`) lifts the lock.
    accounts::passwd(
        &s.fixture.dir.path().join("state"),
        "dana",
        "a new long passphrase",
        None,
    )
    .unwrap();
    let mut c = Agent::new(s.running.admin_addr());
    assert_eq!(c.sign_in("dana", "a new long passphrase").await.status, 303);
    // A sign-in form that did not come from the console is refused before any password
    // is tried.
    let mut b = Agent::new(s.running.admin_addr());
    let r = b
        .post_as(
            "/console/login",
            &[("name", "cal"), ("password", PASSWORD)],
            false,
            None,
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_has_a_budget_of_sign_in_attempts() {
    let s = Server::start(
        &console_config("[console]\nsource_limit = 3\nlockout_after = 10\n"),
        &[("example.test.toml", &page_zone())],
    )
    .await;
    add_account(&s.fixture.dir.path().join("state"), "dana", Role::Operator);
    let mut a = Agent::new(s.running.admin_addr());
    for name in ["x", "y", "z"] {
        assert_eq!(a.sign_in(name, "wrong password here").await.status, 401);
    }
    let r = a.sign_in("dana", PASSWORD).await;
    assert_eq!(r.status, 429);
    assert!(r.body.contains("from your address"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_end_when_the_password_changes_or_the_account_goes() {
    let s = start().await;
    let state = s.fixture.dir.path().join("state");
    let mut a = Agent::new(s.running.admin_addr());
    assert_eq!(a.sign_in("dana", PASSWORD).await.status, 303);
    assert_eq!(a.get("/console/").await.status, 200);
    // A file's modification time may not move within one tick: wait for it to.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    accounts::passwd(&state, "dana", "a new long passphrase", None).unwrap();
    assert_eq!(
        a.get("/console/").await.status,
        303,
        "signed out by the change"
    );
    assert_eq!(a.sign_in("dana", PASSWORD).await.status, 401);
    assert_eq!(a.sign_in("dana", "a new long passphrase").await.status, 303);
    assert_eq!(a.get("/console/").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    accounts::remove(&state, "dana").unwrap();
    assert_eq!(
        a.get("/console/").await.status,
        303,
        "signed out by the removal"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_preview_shows_the_outage_page_without_posting() {
    let s = start().await;
    common::force(&s, "mls", Some(detour::overrides::Forced::Down)).await;
    common::force(&s, "mls_dr", Some(detour::overrides::Forced::Down)).await;
    let mut a = Agent::new(s.running.admin_addr());
    assert_eq!(a.sign_in("cal", PASSWORD).await.status, 303);
    let _ = a.get("/console/incidents/new").await;
    let r = a
        .post(
            "/console/incidents/new",
            &[
                ("service", "mls"),
                ("message", "Back by 15:00 \"we hope\""),
                ("do", "preview"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("the outage page of mls.example.test"),
        "{}",
        r.body
    );
    // The outage page itself, escaped once more into the frame's srcdoc attribute.
    assert!(r.body.contains("srcdoc=\"&lt;!DOCTYPE html&gt;"));
    assert!(r.body.contains("Back by 15:00 &amp;quot;we hope&amp;quot;"));
    assert!(
        r.body.contains("Back by 15:00 \"we hope\"</textarea>")
            || r.body
                .contains("Back by 15:00 &quot;we hope&quot;</textarea>")
    );
    assert!(
        s.running.snapshots().load().incidents.list.is_empty(),
        "nothing posted"
    );
    // The messages it would send, by the notifications' own code, and to whom.
    assert!(r.body.contains("The messages it would send"), "{}", r.body);
    assert!(r.body.contains("Email: "), "{}", r.body);
    assert!(r.body.contains("Text message"), "{}", r.body);
    assert!(
        r.body
            .contains("To: nobody: no [[notify]] sink takes incidents"),
        "this config has no sink: {}",
        r.body
    );
    // The live preview's JSON says the same.
    let r = a
        .post(
            "/console/incidents/new",
            &[
                ("service", "mls"),
                ("message", "Typing…"),
                ("do", "preview-json"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["html"].as_str().unwrap().contains("Typing…"));
    assert!(v["what"].as_str().unwrap().contains("outage page"));
    assert!(
        s.running.snapshots().load().incidents.list.is_empty(),
        "nothing posted"
    );
    let js = a.get("/console/console.js").await;
    assert_eq!(js.status, 200);
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
}

#[test]
fn the_user_command_takes_the_password_from_stdin_never_the_command_line() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let f = common::Fixture::new(&console_config(""), &[("example.test.toml", &page_zone())]);
    let cfg = f.config_path();
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_detour"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(
        &["user", "add", "dana", "--role", "operator"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("account dana added (operator)"));
    let (code, _, err) = run(&["user", "add", "sam", "--role", "communicator"], "short\n");
    assert_eq!(code, 2);
    assert!(err.contains("too short"), "{err}");
    let (code, _, err) = run(
        &["user", "add", "dana", "--role", "operator"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("exists already"), "{err}");
    let (code, _, _) = run(
        &["user", "passwd", "dana", "--role", "communicator"],
        "another long passphrase\n",
    );
    assert_eq!(code, 0);
    let (code, out, _) = run(&["user", "list", "--json"], "");
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "dana");
    assert_eq!(v[0]["role"], "communicator");
    assert!(!out.contains("argon2"), "no hashes listed");
    let a = accounts::load(&f.dir.path().join("state")).unwrap();
    assert!(accounts::authenticate(&a, "dana", "another long passphrase").is_some());
    let (code, out, _) = run(&["user", "remove", "dana"], "");
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = run(&["user", "remove", "dana"], "");
    assert_eq!(code, 1);
    assert!(err.contains("no account"), "{err}");
    // No password argument exists to put one on the command line.
    let (code, _, err) = run(
        &["user", "add", "x", "--role", "operator", "--password", "p"],
        "",
    );
    assert_eq!(code, 2);
    assert!(err.contains("unexpected argument"), "{err}");
}

/// A certificate for `name` signed by `ca`, written into `dir`: (chain, key).
fn leaf(
    dir: &std::path::Path,
    ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.signed_by(&key, ca).unwrap();
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&c, format!("{}{}", cert.pem(), ca.pem())).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[tokio::test(flavor = "multi_thread")]
async fn its_own_https_listener_uses_secure_host_only_cookies() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "detour console test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let (c, k) = leaf(certs.path(), &ca, "console.example.test");
    let extra = format!(
        "[console]\nlisten = [\"127.0.0.1:0\"]\ncerts = [ {{ cert = \"{}\", key = \"{}\" }} ]\n",
        c.display(),
        k.display()
    );
    let s = Server::start(
        &console_config(&extra),
        &[("example.test.toml", &page_zone())],
    )
    .await;
    add_account(&s.fixture.dir.path().join("state"), "dana", Role::Operator);
    let urls = s.running.console_addrs().to_vec();
    assert_eq!(urls.len(), 1, "{urls:?}");
    let addr = page::addr_of(&urls[0]);
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .resolve("console.example.test", addr)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let mut a = Agent::with(
        http,
        format!("https://console.example.test:{}", addr.port()),
    );
    let form = a.get("/console/login").await;
    assert_eq!(form.status, 200);
    let login_cookie = &form.set_cookies[0];
    assert!(
        login_cookie.starts_with("__Host-detour_console_login="),
        "{login_cookie}"
    );
    let r = a
        .post(
            "/console/login",
            &[("name", "dana"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let session = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-detour_console="))
        .expect("a __Host- session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(session.contains(attr), "{attr} missing: {session}");
    }
    assert!(!session.contains("Domain"), "host-only: {session}");
    let home = a.get("/console/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("dana (operator)"));
    // An Origin of plain http is another origin here.
    let _ = a.get("/console/incidents/new").await;
    let r = a
        .post_as(
            "/console/incidents/new",
            &[("service", "mls"), ("message", "x"), ("do", "open")],
            true,
            Some(&format!("http://console.example.test:{}", addr.port())),
        )
        .await;
    assert_eq!(r.status, 403);
    // Only the console is there: not the admin API.
    let api = a.get("/api/v1/status").await;
    assert_eq!(api.status, 404);
}

/// One UDP query for `name` sent from `src` (views are chosen by it).
async fn a_from(src: &str, dns: std::net::SocketAddr, name: &str) -> Vec<String> {
    let sock = tokio::net::UdpSocket::bind((src, 0)).await.unwrap();
    let q = common::query(name, hickory_server::proto::rr::RecordType::A, None);
    sock.send_to(&q.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(std::time::Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    common::a_values(&hickory_server::proto::op::Message::from_vec(&buf[..n]).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_run_drills_and_pass_safety_rules_only_when_they_say_so() {
    let extra = "[views.staff]\nsources = [\"127.0.0.2/32\"]\n\n[[safety]]\nat_least = 1\nof = [\"mls\", \"mls_dr\"]\nstate = \"up\"\n";
    let s = Server::start(
        &console_config(&format!("{LATER}{extra}")),
        &[("example.test.toml", &page_zone())],
    )
    .await;
    let state = s.fixture.dir.path().join("state");
    add_account(&state, "dana", Role::Operator);
    add_account(&state, "cal", Role::Communicator);

    // A communicator sees no drill form and is refused one.
    let mut cal = Agent::new(s.running.admin_addr());
    assert_eq!(cal.sign_in("cal", PASSWORD).await.status, 303);
    let _ = cal.get("/console/dns").await;
    let fields = [
        ("service", "mls"),
        ("state", "down"),
        ("view", "staff"),
        ("for", "30m"),
        ("reason", "x"),
    ];
    let r = cal.post("/console/dns/drill", &fields).await;
    assert_eq!(r.status, 403, "{}", r.body);

    // An operator starts one: staff see the outage answer, everyone else the MLS.
    let mut dana = Agent::new(s.running.admin_addr());
    assert_eq!(dana.sign_in("dana", PASSWORD).await.status, 303);
    let page = dana.get("/console/dns").await;
    assert!(
        page.body.contains("action=\"/console/dns/drill\""),
        "{}",
        page.body
    );
    let r = dana
        .post(
            "/console/dns/drill",
            &[
                ("service", "mls"),
                ("state", "down"),
                ("view", "staff"),
                ("for", "30m"),
                ("reason", "night rehearsal"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        a_from("127.0.0.2", s.addr, "mls.example.test.").await,
        ["127.0.0.20"]
    );
    assert_eq!(
        a_from("127.0.0.1", s.addr, "mls.example.test.").await,
        ["127.0.0.10"]
    );
    let page = dana.get("/console/dns").await;
    assert!(
        page.body.contains("mls is down for view staff only"),
        "{}",
        page.body
    );
    let last = audit_lines(&s).pop().unwrap();
    assert_eq!(last["action"], "drill.down");
    assert_eq!(last["who"], "dana");
    let r = dana
        .post("/console/dns/drill/stop", &[("service", "mls")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        a_from("127.0.0.2", s.addr, "mls.example.test.").await,
        ["127.0.0.10"]
    );

    // The safety rule: both MLS sites down is refused with the rule named, unless the
    // operator ticks the box (audited as safety.forced with the account).
    let form = |service: &'static str| {
        vec![
            ("service", service),
            ("state", "down"),
            ("reason", "rebuild"),
        ]
    };
    assert_eq!(
        dana.post("/console/dns/override", &form("mls"))
            .await
            .status,
        303
    );
    let r = dana.post("/console/dns/override", &form("mls_dr")).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.contains("at least 1 of mls, mls_dr up"),
        "{}",
        r.body
    );
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.20"]);
    let mut forced = form("mls_dr");
    forced.push(("force", "on"));
    assert_eq!(
        dana.post("/console/dns/override", &forced).await.status,
        303
    );
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.80"]);
    assert!(
        audit_lines(&s)
            .iter()
            .any(|e| e["action"] == "safety.forced" && e["who"] == "dana"),
        "the forced change is audited with the account"
    );
}
