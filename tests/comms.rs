//! Reaching people, end to end: the real detour binary, a real SMTP server process (aiosmtpd,
//! tests/support/smtp_server.py) and a local HTTP receiver in the shape of Twilio's message
//! API. A real backend goes down; the person on call gets an email and a text with their own
//! acknowledge link; unacknowledged, the page escalates; acknowledged (by link or by
//! `detour ack`), it stops; commands say whom they notified.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use common::backend::HttpBackend;
use common::binary::{BIN, Daemon};

// ---------------------------------------------------------------------------------------
// The SMTP server.

/// A real SMTP server process writing each message it accepts into a folder.
struct Smtp {
    child: Child,
    dir: PathBuf,
    port: u16,
}

/// One message the SMTP server accepted.
#[derive(Debug, Clone)]
struct Mail {
    rcpt: Vec<String>,
    raw: String,
}

impl Smtp {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let port = free_port();
        let out = dir.join(format!("mail-{port}"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&out)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (python3-aiosmtpd installed by .ci/run)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        Self {
            child,
            dir: out,
            port,
        }
    }

    fn mails(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        names.sort();
        names
            .iter()
            .map(|p| Mail {
                rcpt: std::fs::read_to_string(p.with_extension("rcpt"))
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect(),
                raw: std::fs::read_to_string(p).unwrap(),
            })
            .collect()
    }

    /// The mails to `to`.
    fn to(&self, to: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.rcpt.iter().any(|r| r == to))
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The SMS gateway.

/// One text message the gateway took: its form fields and Authorization header.
#[derive(Debug, Clone)]
struct Text {
    form: BTreeMap<String, String>,
    auth: Option<String>,
}

#[derive(Clone, Default)]
struct Gateway {
    texts: Arc<Mutex<Vec<Text>>>,
}

impl Gateway {
    async fn start() -> (Self, SocketAddr) {
        let g = Gateway::default();
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/AC1/Messages.json",
                axum::routing::post(
                    |State(g): State<Gateway>, headers: HeaderMap, body: String| async move {
                        let form: BTreeMap<String, String> =
                            url::form_urlencoded::parse(body.as_bytes())
                                .into_owned()
                                .collect();
                        g.texts.lock().unwrap().push(Text {
                            form,
                            auth: headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string),
                        });
                        (axum::http::StatusCode::CREATED, "{\"sid\":\"SM1\"}")
                    },
                ),
            )
            .with_state(g.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        (g, addr)
    }

    fn to(&self, phone: &str) -> Vec<String> {
        self.texts
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.form.get("To").map(String::as_str) == Some(phone))
            .map(|t| t.form["Body"].clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Set-up.

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const DANA: &str = "+15555550101";
const SAM: &str = "+15555550102";
const LEE: &str = "+15555550103";

const ZONE: &str = r#"
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "h.example.test." }
ns = ["ns1.example.test."]
records = [ { name = "ns1", type = "A", value = "127.0.0.1" } ]
"#;

struct Site {
    dir: tempfile::TempDir,
    page: u16,
}

impl Site {
    fn config(&self) -> PathBuf {
        self.dir.path().join("detour.toml")
    }
}

/// A site whose rotation has Dana on call today, Sam next, then Lee, escalating after 5 s.
fn site(backend: SocketAddr, smtp: u16, gateway: SocketAddr) -> Site {
    site_with(backend, smtp, gateway, "")
}

/// [`site`] with `extra` appended to the config.
fn site_with(backend: SocketAddr, smtp: u16, gateway: SocketAddr, extra: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let (admin, page) = (free_port(), free_port());
    let today = chrono::Utc::now().date_naive();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/z.toml"), ZONE).unwrap();
    std::fs::write(dir.path().join("sms.secret"), "AC1:s3cret\n").unwrap();
    std::fs::write(
        dir.path().join("detour.toml"),
        format!(
            r#"
[server]
dns_listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:{admin}"
page_listen = ["127.0.0.1:{page}"]
zones_dir = "zones"
state_dir = "state"
udp_workers = 1

[page]
title = "Example Realty"
timezone = "UTC"
url = "http://127.0.0.1:{page}/"

[oncall]
handoff = "00:00"
length = "7d"
start = "{today}"
escalate_after = "5s"
people = [ {{ name = "Dana", phone = "{DANA}", email = "dana@example.test" }},
           {{ name = "Sam", phone = "{SAM}", email = "sam@example.test" }},
           {{ name = "Lee", phone = "{LEE}", email = "lee@example.test" }} ]

[services.mls]
name = "MLS"
check = {{ type = "http", url = "http://{backend}/", interval = "1s", timeout = "500ms", rise = 1, fall = 1 }}

[[notify]]
type = "email"
smtp = "smtp://127.0.0.1:{smtp}"
from = "status@example.test"
to = ["oncall", "ops@example.test"]
events = ["down", "up", "override", "incident"]

[[notify]]
type = "sms"
url = "http://{gateway}/2010-04-01/Accounts/AC1/Messages.json"
from = "+15555550100"
to = ["oncall"]
credentials_file = "sms.secret"
events = ["down", "up"]
{extra}
"#
        ),
    )
    .unwrap();
    Site { dir, page }
}

fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("USER", "tester")
        .env_remove("SUDO_USER")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn until<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The acknowledge link in a text message.
fn ack_link(text: &str) -> String {
    text.split_whitespace()
        .skip_while(|w| *w != "Ack:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Ack: link in {text:?}"))
        .to_string()
}

fn audit(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("state/audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

const WITHIN: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_person_on_call_is_paged_by_email_and_text_escalation_follows_and_an_ack_stops_it() {
    let mut backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(tmp.path(), &[]);
    let (gw, gw_addr) = Gateway::start().await;
    let site = site(backend.addr, smtp.port, gw_addr);
    let mut d = Daemon::start(&site.config());
    d.wait_for("ready");

    // Who is on call, by the CLI: Dana today, Sam next.
    let (code, out, err) = cli(&site.config(), &["oncall"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("on call: Dana until "), "{out}");
    assert!(out.contains("next:    Sam from "), "{out}");
    assert!(out.contains("open pages: none"), "{out}");

    // MLS goes down: Dana gets an email and a text, ops an email; nobody else.
    backend.stop();
    let texts = until("Dana's text", WITHIN, || {
        Some(gw.to(DANA)).filter(|t| !t.is_empty())
    })
    .await;
    let text = &texts[0];
    assert!(text.starts_with("[Example Realty] MLS is DOWN"), "{text}");
    assert!(text.chars().count() <= 160, "{text}");
    let link = ack_link(text);
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{}/ack/", site.page)),
        "{link}"
    );
    let auth = gw.texts.lock().unwrap()[0].auth.clone().unwrap();
    assert_eq!(
        auth, "Basic QUMxOnMzY3JldA==",
        "user:secret from credentials_file"
    );
    let dana = until("Dana's email", WITHIN, || {
        smtp.to("dana@example.test").pop()
    })
    .await;
    assert!(
        dana.raw.contains("Subject: [Example Realty] MLS is DOWN"),
        "{}",
        dana.raw
    );
    assert!(dana.raw.contains("multipart/alternative"), "{}", dana.raw);
    assert!(dana.raw.contains("text/html"));
    assert!(dana.raw.contains("detour ack "), "the email names the page");
    assert!(dana.raw.contains("You are on call for Example Realty."));
    let ops = until("ops' email", WITHIN, || smtp.to("ops@example.test").pop()).await;
    assert!(
        !ops.raw.contains("/ack/"),
        "a fixed address has no ack link"
    );
    assert!(gw.to(SAM).is_empty() && smtp.to("sam@example.test").is_empty());

    // The status shows the open page.
    let (_, out, _) = cli(&site.config(), &["status"]);
    assert!(out.contains("UNACKNOWLEDGED page "), "{out}");

    // Nobody reacts: after 5 s, Sam (next in the rotation) gets it, marked as escalated.
    let sam = until("Sam's text", WITHIN, || {
        Some(gw.to(SAM)).filter(|t| !t.is_empty())
    })
    .await;
    assert!(sam[0].contains("ESCALATED: MLS is DOWN"), "{sam:?}");
    until("Sam's email", WITHIN, || smtp.to("sam@example.test").pop()).await;

    // Dana acknowledges from her link: GET shows a button and changes nothing; POST acts.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let page = http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains("Acknowledge as Dana"), "{body}");
    assert!(body.contains("<form method=\"post\""), "{body}");
    let posted = http.post(&link).send().await.unwrap();
    assert_eq!(posted.status(), 200);
    let body = posted.text().await.unwrap();
    assert!(body.contains("Acknowledged by Dana"), "{body}");
    // A forged link is refused.
    let forged = format!("{}x", &link[..link.len() - 1]);
    assert_eq!(http.post(&forged).send().await.unwrap().status(), 403);

    // No third step: Lee (everyone) would have had it 5 s after Sam.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        gw.to(LEE).is_empty(),
        "escalated after the ack: {:?}",
        gw.to(LEE)
    );
    let log = audit(site.dir.path());
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["who"].as_str().unwrap()))
        .collect();
    assert!(actions.contains(&("page.raise", "detour")), "{actions:?}");
    assert!(
        actions.contains(&("page.escalate", "detour")),
        "{actions:?}"
    );
    assert!(actions.contains(&("page.ack", "Dana")), "{actions:?}");
    let (_, out, _) = cli(&site.config(), &["oncall"]);
    assert!(out.contains("acknowledged by Dana"), "{out}");

    // MLS recovers: good news by email and text to Dana and ops; it raises no page.
    backend.restart().await;
    until("Dana's recovery text", WITHIN, || {
        Some(()).filter(|_| gw.to(DANA).iter().any(|t| t.contains("MLS is UP")))
    })
    .await;

    // Down again: this time `detour ack ID` stops the escalation.
    backend.stop();
    until("Dana's second page", WITHIN, || {
        Some(()).filter(|_| gw.to(DANA).iter().filter(|t| t.contains("DOWN")).count() == 2)
    })
    .await;
    let (_, json, _) = cli(&site.config(), &["oncall", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let id = v["open"][0]["id"].as_str().unwrap().to_string();
    let (code, out, err) = cli(&site.config(), &["ack", &id, "--by", "Dana"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("page {id} acknowledged: escalation stopped\n"));
    let (code, out, _) = cli(&site.config(), &["ack", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("already acknowledged by Dana"), "{out}");
    let (code, _, err) = cli(&site.config(), &["ack", "zzzz"]);
    assert_eq!(code, 1);
    assert!(err.contains("no page zzzz"), "{err}");
    let sam_before = gw.to(SAM).len();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(gw.to(SAM).len(), sam_before, "escalated after `detour ack`");

    // An operator's override says whom it told.
    let (code, out, err) = cli(
        &site.config(),
        &[
            "override",
            "set",
            "mls",
            "maintenance",
            "--reason",
            "vendor upgrade",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("notified: on call: Dana (email); o***@example.test (email)"),
        "{out}"
    );
    // Stopped by SIGTERM: the pending deliveries and pages are saved on the way out.
    d.signal("-TERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn email_goes_through_starttls_and_implicit_tls_with_auth_and_bad_credentials_fail() {
    let tmp = tempfile::tempdir().unwrap();
    // A certificate for 127.0.0.1 from a throwaway CA the sink is told to trust.
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "detour SMTP test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let p = |n: &str| tmp.path().join(n);
    std::fs::write(p("ca.pem"), ca.pem()).unwrap();
    std::fs::write(p("cert.pem"), cert.pem()).unwrap();
    std::fs::write(p("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(p("smtp.secret"), "hunter2\n").unwrap();
    std::fs::write(p("wrong.secret"), "nope\n").unwrap();
    let cert_args = [p("cert.pem"), p("key.pem")].map(|x| x.display().to_string());
    let starttls = Smtp::start(
        tmp.path(),
        &[
            "--starttls",
            &cert_args[0],
            &cert_args[1],
            "--auth",
            "probe:hunter2",
        ],
    );
    let implicit = Smtp::start(
        tmp.path(),
        &[
            "--implicit",
            &cert_args[0],
            &cert_args[1],
            "--auth",
            "probe:hunter2",
        ],
    );
    let admin = free_port();
    let sink = |url: String, secret: &str, ca: bool| {
        format!(
            "[[notify]]\ntype = \"email\"\nsmtp = \"{url}\"\nfrom = \"status@example.test\"\nto = [\"ops@example.test\"]\nusername = \"probe\"\npassword_file = \"{secret}\"\n{}\n",
            if ca { "ca = \"ca.pem\"" } else { "" }
        )
    };
    let config = format!(
        "[server]\ndns_listen = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:{admin}\"\npage_listen = []\nzones_dir = \"zones\"\nstate_dir = \"state\"\nudp_workers = 1\n\n[services.mls]\nname = \"MLS\"\n\n{}{}{}{}",
        sink(
            format!("smtp://127.0.0.1:{}", starttls.port),
            "smtp.secret",
            true
        ),
        sink(
            format!("smtps://127.0.0.1:{}", implicit.port),
            "smtp.secret",
            true
        ),
        sink(
            format!("smtp://127.0.0.1:{}", starttls.port),
            "wrong.secret",
            true
        ),
        sink(
            format!("smtps://127.0.0.1:{}", implicit.port),
            "smtp.secret",
            false
        ),
    );
    std::fs::create_dir(p("zones")).unwrap();
    std::fs::write(p("zones/z.toml"), ZONE).unwrap();
    std::fs::write(p("detour.toml"), config).unwrap();
    let mut d = Daemon::start(&p("detour.toml"));
    d.wait_for("ready");
    let (code, out, err) = cli(&p("detour.toml"), &["notify", "test"]);
    assert_eq!(code, 1, "two sinks must fail: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("sink 1 (email smtp://") && lines[0].contains("delivered"),
        "{out}"
    );
    assert!(
        lines[1].contains("sink 2 (email smtps://") && lines[1].contains("delivered"),
        "{out}"
    );
    assert!(
        lines[2].contains("FAILED") && lines[2].contains("to o***@example.test"),
        "{out}"
    );
    assert!(
        lines[2].contains("535") || lines[2].contains("uthentication"),
        "{out}"
    );
    assert!(
        !out.contains("nope") && !out.contains("hunter2"),
        "a secret in the output: {out}"
    );
    assert!(
        lines[3].contains("FAILED"),
        "an untrusted certificate must fail: {out}"
    );
    assert!(err.contains("2 of 4 sink(s) failed"), "{err}");
    for s in [&starttls, &implicit] {
        let mails = s.to("ops@example.test");
        assert_eq!(mails.len(), 1, "exactly one test mail each");
        assert!(mails[0].raw.contains("Test notification from detour"));
    }
    // Stopped by SIGTERM: the pending deliveries and pages are saved on the way out.
    d.signal("-TERM");
}

// ---------------------------------------------------------------------------------------
// Subscribers.

/// The decoded text/plain part of a raw email (quoted-printable or base64).
fn plain(raw: &str) -> String {
    use base64::Engine;
    let raw = raw.replace("\r\n", "\n");
    let boundary = raw
        .split("boundary=\"")
        .nth(1)
        .and_then(|b| b.split('"').next())
        .unwrap_or("\u{0}")
        .to_string();
    for part in raw.split(&format!("--{boundary}")) {
        let Some((head, body)) = part.split_once("\n\n") else {
            continue;
        };
        let head_l = head.to_ascii_lowercase();
        if !head_l.contains("text/plain") {
            continue;
        }
        if head_l.contains("content-transfer-encoding: base64") {
            let b: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default();
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        if head_l.contains("quoted-printable") {
            let joined = body.replace("=\n", "");
            let mut out = Vec::new();
            let b = joined.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'='
                    && i + 2 < b.len()
                    && let Ok(x) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
                {
                    out.push(x);
                    i += 3;
                    continue;
                }
                out.push(b[i]);
                i += 1;
            }
            return String::from_utf8_lossy(&out).into_owned();
        }
        return body.to_string();
    }
    raw.to_string()
}

/// The first URL in `text` containing `path`.
fn link_in(text: &str, path: &str) -> String {
    text.split_whitespace()
        .find(|w| w.contains(path))
        .map(|w| w.trim_end_matches(['.', ')', ',']).to_string())
        .unwrap_or_else(|| panic!("no {path} link in {text:?}"))
}

/// Twilio's signature of a webhook to `url` with `form`, under `secret`.
fn twilio_signature(url: &str, form: &[(&str, &str)], secret: &str) -> String {
    use base64::Engine;
    let mut f: Vec<&(&str, &str)> = form.iter().collect();
    f.sort();
    let mut data = url.to_string();
    for (k, v) in f {
        data.push_str(k);
        data.push_str(v);
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, data.as_bytes()))
}

#[tokio::test(flavor = "multi_thread")]
async fn visitors_subscribe_confirm_get_folded_news_and_leave_by_link_or_stop() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(tmp.path(), &[]);
    let (gw, gw_addr) = Gateway::start().await;
    let site = site_with(
        backend.addr,
        smtp.port,
        gw_addr,
        "\n[subscribers]\nchannels = [\"email\", \"sms\"]\nmin_gap = \"4s\"\n",
    );
    let mut d = Daemon::start(&site.config());
    d.wait_for("ready");
    let base = format!("http://127.0.0.1:{}", site.page);
    let http = reqwest::Client::new();
    let post = |path: &str, body: &str| {
        http.post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
    };

    // The status page links to a plain form that works without JavaScript.
    let page = http
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("/subscribe\">Get updates by email or text"),
        "{page}"
    );
    let form = http.get(format!("{base}/subscribe")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("form-action 'self'") && !csp.contains("script-src"),
        "{csp}"
    );
    let form = form.text().await.unwrap();
    assert!(
        form.contains("value=\"sms\"") && form.contains("value=\"mls\""),
        "{form}"
    );

    // An email subscriber for MLS: one confirmation, nothing else until confirmed.
    let r = post(
        "/subscribe",
        "channel=email&address=agent%40example.test&service=mls",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let confirm = until("the confirmation", WITHIN, || {
        smtp.to("agent@example.test").pop()
    })
    .await;
    let text = plain(&confirm.raw);
    let link = link_in(&text, "/confirm/");
    // Asked again within the hour: the same answer, no second confirmation.
    assert_eq!(
        post(
            "/subscribe",
            "channel=email&address=agent%40example.test&service=mls"
        )
        .await
        .unwrap()
        .status(),
        200
    );
    backend.stop();
    until("Dana's page", WITHIN, || {
        Some(()).filter(|_| !gw.to(DANA).is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        smtp.to("agent@example.test").len(),
        1,
        "only the confirmation before confirming"
    );

    // Confirmed by the link (GET shows a button, POST confirms).
    let g = http.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(g.contains("Send updates to agent@example.test?"), "{g}");
    let p = http.post(&link).send().await.unwrap();
    assert_eq!(p.status(), 200);

    // News now reaches them, with a one-click unsubscribe (RFC 8058).
    backend.restart().await;
    let up = until("the recovery notice", WITHIN, || {
        smtp.to("agent@example.test")
            .into_iter()
            .find(|m| plain(&m.raw).contains("MLS is UP"))
    })
    .await;
    assert!(up.raw.contains("List-Unsubscribe: <"), "{}", up.raw);
    assert!(
        up.raw
            .contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    );
    let unsubscribe = link_in(&plain(&up.raw), "/unsubscribe/");

    // Two changes within min_gap: one message that says both.
    backend.stop();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    backend.restart().await;
    let folded = until("the folded message", Duration::from_secs(15), || {
        smtp.to("agent@example.test")
            .into_iter()
            .find(|m| plain(&m.raw).contains("2 updates"))
    })
    .await;
    let t = plain(&folded.raw);
    assert!(t.contains("MLS is DOWN") && t.contains("MLS is UP"), "{t}");
    let before = smtp.to("agent@example.test").len();

    // A text subscriber; STOP from their phone ends it (signed like Twilio signs).
    let r = post("/subscribe", "channel=sms&address=%2B1+555+555+0199")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sms_confirm = until("the text confirmation", WITHIN, || {
        gw.to("+15555550199").pop()
    })
    .await;
    assert!(sms_confirm.chars().count() <= 160, "{sms_confirm}");
    let sms_link = link_in(&sms_confirm, "/confirm/");
    assert_eq!(http.post(&sms_link).send().await.unwrap().status(), 200);
    let (_, out, _) = cli(&site.config(), &["subscribers", "list"]);
    assert!(
        out.contains("+15555550199") && out.contains("agent@example.test"),
        "{out}"
    );
    assert!(out.contains("2 subscriber(s)"), "{out}");
    let stop = [("From", "+15555550199"), ("Body", "STOP")];
    let body = "From=%2B15555550199&Body=STOP";
    let bad = http
        .post(format!("{base}/sms/inbound"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", "AAAA")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403, "an unsigned STOP is refused");
    let sig = twilio_signature(&format!("{base}/sms/inbound"), &stop, "s3cret");
    let ok = http
        .post(format!("{base}/sms/inbound"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let (_, out, _) = cli(&site.config(), &["subscribers", "list"]);
    assert!(!out.contains("+15555550199"), "{out}");

    // What an operator's change reaches includes the subscribers.
    let (code, out, err) = cli(
        &site.config(),
        &["override", "set", "mls", "down", "--reason", "x"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 subscribers queued"), "{out}");

    // The mail client's one-click unsubscribe: a POST with the RFC 8058 body.
    let r = http
        .post(&unsubscribe)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, out, _) = cli(&site.config(), &["subscribers", "list"]);
    assert!(out.contains("0 subscriber(s)"), "{out}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        smtp.to("agent@example.test").len() <= before + 1,
        "after unsubscribing, at most the message already in flight"
    );

    // Erasure by the operator, and the form's limit per source address.
    post("/subscribe", "channel=email&address=x%40example.test")
        .await
        .unwrap();
    let (code, out, err) = cli(&site.config(), &["subscribers", "remove", "x@example.test"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("erased"), "{out}");
    let mut last = 200;
    for i in 0..6 {
        last = post(
            "/subscribe",
            &format!("channel=email&address=y{i}%40example.test"),
        )
        .await
        .unwrap()
        .status()
        .as_u16();
    }
    assert_eq!(
        last, 429,
        "more than 5 requests in 10 minutes from one address"
    );
    d.signal("-TERM");
}

/// The Message-ID header of a raw email.
fn message_id(raw: &str) -> String {
    raw.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .map(|l| l[11..].trim().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_killed_midway_resumes_where_it_stopped() {
    const N: usize = 200;
    let backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(tmp.path(), &[]);
    let (_gw, gw_addr) = Gateway::start().await;
    let site = site_with(
        backend.addr,
        smtp.port,
        gw_addr,
        "\n[subscribers]\nchannels = [\"email\"]\nrate = 40\n",
    );
    // N confirmed subscribers, written the way the form and the link would.
    {
        let (store, _) =
            detour::notify::subscribers::Store::open(&site.dir.path().join("state")).unwrap();
        let now = chrono::Utc::now();
        for i in 0..N {
            let a = format!("agent{i}@example.test");
            store.subscribe("email", &a, &[], now).unwrap();
            assert!(store.confirm("email", &a, now).unwrap());
        }
    }
    let mut d = Daemon::start(&site.config());
    d.wait_for("ready");
    let (code, _, err) = cli(
        &site.config(),
        &[
            "incident",
            "open",
            "--service",
            "mls",
            "Logins fail; the vendor is on it",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let agents = |smtp: &Smtp| {
        smtp.mails()
            .into_iter()
            .filter(|m| m.rcpt.iter().any(|r| r.starts_with("agent")))
            .collect::<Vec<_>>()
    };
    until("a third of the fan-out", Duration::from_secs(20), || {
        Some(()).filter(|_| agents(&smtp).len() >= N / 3)
    })
    .await;
    // Killed in the middle: no chance to save anything on the way out.
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let at_kill = agents(&smtp).len();
    assert!(
        at_kill < N,
        "the fan-out was over before the kill ({at_kill})"
    );
    let mut d = Daemon::start(&site.config());
    d.wait_for("ready");
    until("everyone told", Duration::from_secs(30), || {
        let m = agents(&smtp);
        let mut who: Vec<&String> = m.iter().flat_map(|m| &m.rcpt).collect();
        who.sort();
        who.dedup();
        Some(()).filter(|_| who.len() == N)
    })
    .await;
    // Anything still coming would be a repeat.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut per: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &agents(&smtp) {
        assert!(plain(&m.raw).contains("Logins fail"), "{}", m.raw);
        for r in &m.rcpt {
            per.entry(r.clone()).or_default().push(message_id(&m.raw));
        }
    }
    assert_eq!(per.len(), N, "nobody is skipped");
    let twice: Vec<(&String, &Vec<String>)> = per.iter().filter(|(_, ids)| ids.len() > 1).collect();
    // Only messages in flight at the kill can go twice, and they go as the same message.
    assert!(
        twice.len() <= detour::notify::fanout::IN_FLIGHT,
        "{} got it twice: {twice:?}",
        twice.len()
    );
    for (who, ids) in &twice {
        assert_eq!(ids.len(), 2, "{who}: {ids:?}");
        assert_eq!(
            ids[0], ids[1],
            "{who}: a repeat must carry the same Message-ID"
        );
    }
    eprintln!(
        "fan-out of {N}: {at_kill} told before SIGKILL, {} told twice across it",
        twice.len()
    );
    d.signal("-TERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribers_hear_of_maintenance_once_when_announced_and_again_before_it_starts() {
    let backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let tmp = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(tmp.path(), &[]);
    let (_gw, gw_addr) = Gateway::start().await;
    let start = chrono::Utc::now() + chrono::Duration::seconds(75);
    let end = start + chrono::Duration::hours(1);
    let rfc =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let site = site_with(
        backend.addr,
        smtp.port,
        gw_addr,
        &format!(
            "\n[subscribers]\nchannels = [\"email\"]\nmin_gap = \"1s\"\nremind_before = [\"1m\", \"2h\"]\n\n[[maintenance]]\nservices = [\"mls\"]\nstart = \"{}\"\nend = \"{}\"\nmessage = \"Database upgrade\"\n",
            rfc(start),
            rfc(end)
        ),
    );
    {
        let (store, _) =
            detour::notify::subscribers::Store::open(&site.dir.path().join("state")).unwrap();
        let now = chrono::Utc::now();
        store
            .subscribe("email", "agent@example.test", &["mls".into()], now)
            .unwrap();
        store.confirm("email", "agent@example.test", now).unwrap();
    }
    let mut d = Daemon::start(&site.config());
    d.wait_for("ready");
    // First sight: the announcement alone (the 2 h reminder is moot: it says the same).
    let first = until("the announcement", WITHIN, || {
        smtp.to("agent@example.test").pop()
    })
    .await;
    let t = plain(&first.raw);
    assert!(t.contains("Planned maintenance of MLS"), "{t}");
    assert!(t.contains("Database upgrade"), "{t}");
    assert!(!t.contains("updates:"), "not a digest: {t}");
    // A minute before the start: the reminder, once.
    let reminder = until("the reminder", Duration::from_secs(30), || {
        smtp.to("agent@example.test")
            .into_iter()
            .find(|m| plain(&m.raw).contains("Reminder: maintenance of MLS"))
    })
    .await;
    assert!(reminder.raw.contains("List-Unsubscribe"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(smtp.to("agent@example.test").len(), 2, "each told once");
    // A restart tells nothing again.
    d.signal("-TERM");
    let _ = d.child.wait();
    let mut d = Daemon::start(&site.config());
    d.wait_for("ready");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        smtp.to("agent@example.test").len(),
        2,
        "told again after a restart"
    );
    d.signal("-TERM");
}
