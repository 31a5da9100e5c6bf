//! Any request to the admin API of a real, running detour (`daemon::start` on a config in a
//! temporary folder: two services without checks, so nothing probes the network, one zone),
//! sent in-process through the router its listener serves (`admin::router_for`). The input
//! chooses a route (override set/clear, incident open/update/resolve, audit, notify test,
//! status, or any method and path), its path and query, an `X-Detour-By` header, a content
//! type and a body: built as JSON from fuzzed fields, or the raw bytes (at most 64 KiB).
//!
//! What must hold: no panic anywhere in the daemon (libFuzzer aborts on any thread's
//! panic); an answer within 10 s; never a 5xx but 503; every answer but `/metrics` is JSON
//! and every refusal is `{"error": "..."}` (docs/operations.md); the states task still
//! answers afterwards; what a 2xx says was done is in the status document; and the state
//! files say what the Snapshot says (what a restart would read back, without setting
//! anything aside).
//!
//! State piles up across inputs: incidents are never deleted (open ones are in every
//! status document, and every change rewrites all of `incidents.json`), and `audit.log`,
//! which `GET /audit` reads whole, only grows. With 100 KB of incidents an input took 5 ms
//! instead of 1, so once `incidents.json` and `audit.log` hold [`MAX_STATE`] bytes together
//! the daemon is shut down (0.1 to 0.2 s) and a fresh one started in a fresh folder. Its
//! files live in /dev/shm when there is one: every change is fsynced, which on a disk would
//! make this a benchmark of the disk.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use detour::daemon::{self, Running};
use detour::incidents::Incident;
use detour::overrides::Override;
use detour::status::StatusDoc;
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The largest body sent.
const MAX_BODY: usize = 64 * 1024;
/// Bytes of `incidents.json` and `audit.log` kept before starting afresh.
const MAX_STATE: u64 = 64 * 1024;
/// Longest any request may take.
const DEADLINE: Duration = Duration::from_secs(10);

const CONFIG: &str = r#"
[server]
dns_listen = ["127.0.0.1:0"]
page_listen = ["127.0.0.1:0"]
admin_listen = "unix:state/admin.sock"
zones_dir = "zones"
state_dir = "state"
udp_workers = 1

[services.mls]
name = "MLS"

[services.mls_dr]
name = "MLS (disaster recovery)"
"#;

const ZONE: &str = r#"
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test." }
ns  = ["ns1.example.test."]
records = [ { name = "ns1", type = "A", value = "127.0.0.1" } ]

[[dynamic]]
name = "mls"
type = "A"
ttl = 30
answers = [
  { if_up = "mls",    values = ["127.0.0.10"] },
  { if_up = "mls_dr", values = ["127.0.0.20"] },
]
otherwise = ["127.0.0.80"]
"#;

/// A running detour and its folder.
struct Daemon {
    running: Running,
    router: Router,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(rt: &tokio::runtime::Runtime) -> Self {
        let base = Path::new("/dev/shm");
        let dir = if base.is_dir() {
            tempfile::Builder::new()
                .prefix("detour-fuzz-admin.")
                .tempdir_in(base)
        } else {
            tempfile::Builder::new()
                .prefix("detour-fuzz-admin.")
                .tempdir()
        }
        .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("zones")).unwrap();
        std::fs::write(dir.path().join("zones/example.test.toml"), ZONE).unwrap();
        let path = dir.path().join("detour.toml");
        std::fs::write(&path, CONFIG).unwrap();
        let config = detour::config::Config::load(&path).expect("the fuzz config is valid");
        let running = rt
            .block_on(daemon::start(config, &path))
            .expect("detour starts");
        let router = detour::admin::router_for(running.control().clone(), None);
        *LEFT_BEHIND.lock().unwrap() = Some(dir.path().to_path_buf());
        Self {
            running,
            router,
            dir,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

/// The folder of the daemon running when the process exits (statics are not dropped).
static LEFT_BEHIND: Mutex<Option<PathBuf>> = Mutex::new(None);

extern "C" fn remove_left_behind() {
    if let Ok(Some(dir)) = LEFT_BEHIND.lock().map(|d| d.clone()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> std::ffi::c_int;
}

struct Harness {
    /// Current-thread: the daemon's tasks run only inside `block_on`, so what is read
    /// between requests (Snapshot, files) is never half-way through a change.
    rt: tokio::runtime::Runtime,
    daemon: Option<Daemon>,
    /// Ids of incidents opened, newest last, so updates and resolves can name real ones.
    ids: Vec<String>,
}

fn harness() -> &'static Mutex<Harness> {
    static H: OnceLock<Mutex<Harness>> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let daemon = Daemon::start(&rt);
        // SAFETY: registers a plain function that takes no arguments.
        unsafe { atexit(remove_left_behind) };
        Mutex::new(Harness {
            rt,
            daemon: Some(daemon),
            ids: Vec::new(),
        })
    })
}

impl Harness {
    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("a daemon runs")
    }

    /// Starts afresh once state has piled up.
    fn bound_state(&mut self) {
        let dir = self.daemon().state_dir();
        let size = |name| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        if size("incidents.json") + size("audit.log") < MAX_STATE {
            return;
        }
        let old = self.daemon.take().expect("a daemon runs");
        self.rt
            .block_on(old.running.shutdown())
            .expect("detour stops cleanly");
        drop(old.dir);
        self.daemon = Some(Daemon::start(&self.rt));
        self.ids.clear();
    }

    /// Sends one request; its status and body.
    fn send(&self, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        let what = format!("{} {}", req.method(), req.uri());
        let router = self.daemon().router.clone();
        self.rt.block_on(async {
            let resp = tokio::time::timeout(DEADLINE, router.oneshot(req))
                .await
                .unwrap_or_else(|_| panic!("{what}: no answer within {DEADLINE:?}"))
                .expect("infallible");
            let status = resp.status();
            let body =
                tokio::time::timeout(DEADLINE, axum::body::to_bytes(resp.into_body(), 16 << 20))
                    .await
                    .unwrap_or_else(|_| panic!("{what}: body not finished within {DEADLINE:?}"))
                    .expect("body");
            (status, body.to_vec())
        })
    }

    fn status_doc(&self) -> StatusDoc {
        let req = Request::get("/api/v1/status").body(Body::empty()).unwrap();
        let (status, body) = self.send(req);
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("the status document parses")
    }
}

/// The route an input goes to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Route {
    PutOverride,
    DeleteOverride,
    OpenIncident,
    UpdateIncident,
    ResolveIncident,
    Audit,
    NotifyTest,
    Status,
    /// Any method, any path.
    Anything,
}

const ROUTES: [Route; 9] = [
    Route::PutOverride,
    Route::DeleteOverride,
    Route::OpenIncident,
    Route::UpdateIncident,
    Route::ResolveIncident,
    Route::Audit,
    Route::NotifyTest,
    Route::Status,
    Route::Anything,
];

/// Text an operator might send, or anything.
fn text(u: &mut Unstructured) -> ArbResult<String> {
    const WORDS: &[&str] = &[
        "",
        " ",
        "mls",
        "mls_dr",
        "nope",
        "alice",
        "vendor is on it",
        "2h",
        "1s",
        "1ms",
        "0s",
        "3650d",
        "3651d",
        "2000-01-01T00:00:00Z",
        "2999-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999Z",
        "2026-12-24T06:00:00+14:00",
        "up",
        "down",
        "maintenance",
        "line\nbreak",
        "\u{1b}[31mred",
        "nul\0byte",
        "\u{202e}rtl",
        "\"quoted\" 'x' \\ [table] # end of overrides.toml",
    ];
    Ok(match u.int_in_range(0..=3u8)? {
        0 | 1 => u.choose(WORDS)?.to_string(),
        2 => u.arbitrary()?,
        _ => {
            let w = u.choose(WORDS)?;
            let n = u.int_in_range(1..=2100usize)?;
            w.repeat(n.max(1)).chars().take(n).collect()
        }
    })
}

/// A JSON value for a field: usually text, sometimes another type.
fn field(u: &mut Unstructured) -> ArbResult<Value> {
    Ok(match u.int_in_range(0..=9u8)? {
        0 => Value::Null,
        1 => json!(u.arbitrary::<i64>()?),
        2 => json!(u.arbitrary::<bool>()?),
        3 => json!([text(u)?]),
        _ => json!(text(u)?),
    })
}

/// A JSON object with some of `fields` (each a function making its value), sometimes an
/// unknown field too.
fn object(
    u: &mut Unstructured,
    fields: &[(&str, fn(&mut Unstructured) -> ArbResult<Value>)],
) -> ArbResult<Value> {
    let mut o = serde_json::Map::new();
    for (name, make) in fields {
        if u.ratio(4, 5)? {
            o.insert(name.to_string(), make(u)?);
        }
    }
    if u.ratio(1, 16)? {
        o.insert(text(u)?, field(u)?);
    }
    Ok(Value::Object(o))
}

fn state(u: &mut Unstructured) -> ArbResult<Value> {
    if u.ratio(3, 4)? {
        Ok(json!(*u.choose(&["up", "down", "maintenance"])?))
    } else {
        field(u)
    }
}

fn services(u: &mut Unstructured) -> ArbResult<Value> {
    if u.ratio(1, 8)? {
        return field(u);
    }
    let n = u.int_in_range(0..=3usize)?;
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(match u.int_in_range(0..=3u8)? {
            0 | 1 => json!("mls"),
            2 => json!("mls_dr"),
            _ => json!(text(u)?),
        });
    }
    Ok(Value::Array(v))
}

fn sink(u: &mut Unstructured) -> ArbResult<Value> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => json!(0),
        1 => json!(1),
        2 => json!(u.arbitrary::<u64>()?),
        _ => field(u)?,
    })
}

/// Percent-encodes every byte but the unreserved ones: the router decodes it back as is.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path segment: `known` (a service, an incident id) or any text, encoded or sent raw.
fn segment(u: &mut Unstructured, known: &[&str]) -> ArbResult<String> {
    if !known.is_empty() && u.ratio(3, 4)? {
        return Ok(u.choose(known)?.to_string());
    }
    let t = text(u)?;
    Ok(if u.ratio(7, 8)? { encode(&t) } else { t })
}

/// A query string: pairs of `keys` with fuzzed values, or raw text.
fn query(u: &mut Unstructured, keys: &[&str]) -> ArbResult<String> {
    if u.ratio(1, 8)? {
        return text(u);
    }
    let mut pairs = Vec::new();
    for _ in 0..u.int_in_range(0..=3u8)? {
        let k = if u.ratio(7, 8)? {
            u.choose(keys)?.to_string()
        } else {
            text(u)?
        };
        let v = match u.int_in_range(0..=3u8)? {
            0 => u
                .choose(&[
                    "0",
                    "1",
                    "50",
                    "10000",
                    "10001",
                    "-1",
                    "99999999999999999999",
                ])?
                .to_string(),
            _ => text(u)?,
        };
        pairs.push(format!("{}={}", encode(&k), encode(&v)));
    }
    Ok(pairs.join("&"))
}

/// One fuzzed request, and what it is meant to do.
struct Fuzzed {
    route: Route,
    request: Request<Body>,
}

fn request(u: &mut Unstructured, ids: &[String]) -> ArbResult<Option<Fuzzed>> {
    let route = *u.choose(&ROUTES)?;
    let structured = u.ratio(3, 4)?;
    let ids: Vec<&str> = ids.iter().rev().take(8).map(String::as_str).collect();
    let known = ["mls", "mls_dr", "nope"];
    let (method, uri, body) = match route {
        Route::PutOverride => (
            Method::PUT,
            format!("/api/v1/overrides/{}", segment(u, &known)?),
            object(
                u,
                &[
                    ("state", state),
                    ("reason", field),
                    ("until", field),
                    ("by", field),
                ],
            )?,
        ),
        Route::DeleteOverride => {
            let s = segment(u, &known)?;
            let q = query(u, &["by", "reason"])?;
            (
                Method::DELETE,
                format!("/api/v1/overrides/{s}?{q}"),
                Value::Null,
            )
        }
        Route::OpenIncident => (
            Method::POST,
            "/api/v1/incidents".to_string(),
            object(
                u,
                &[("services", services), ("message", field), ("by", field)],
            )?,
        ),
        Route::UpdateIncident | Route::ResolveIncident => {
            let id = segment(u, &ids)?;
            let what = if route == Route::UpdateIncident {
                "updates"
            } else {
                "resolve"
            };
            (
                Method::POST,
                format!("/api/v1/incidents/{id}/{what}"),
                object(u, &[("message", field), ("by", field)])?,
            )
        }
        Route::Audit => (
            Method::GET,
            format!("/api/v1/audit?{}", query(u, &["limit"])?),
            Value::Null,
        ),
        Route::NotifyTest => (
            Method::POST,
            "/api/v1/notify/test".to_string(),
            object(u, &[("sink", sink), ("by", field)])?,
        ),
        Route::Status => (Method::GET, "/api/v1/status".to_string(), Value::Null),
        Route::Anything => {
            let m = *u.choose(&["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE"])?;
            let path = match u.int_in_range(0..=2u8)? {
                0 => u
                    .choose(&[
                        "/api/v1/status",
                        "/api/v1/audit",
                        "/api/v1/overrides/mls",
                        "/api/v1/incidents",
                        "/api/v1/notify/test",
                        "/api/v1/",
                        "/",
                    ])?
                    .to_string(),
                _ => format!("/{}", text(u)?),
            };
            (Method::from_bytes(m.as_bytes()).unwrap(), path, Value::Null)
        }
    };
    let by_header = if u.ratio(1, 4)? { Some(text(u)?) } else { None };
    let content_type = *u.choose(&[
        Some("application/json"),
        Some("application/json"),
        Some("application/json"),
        None,
        Some("text/plain"),
        Some("application/json; charset=utf-8"),
        Some("application/vnd.detour+json"),
    ])?;
    let body = if structured && !body.is_null() {
        serde_json::to_vec(&body).unwrap()
    } else if structured {
        Vec::new()
    } else {
        let rest = u.bytes(u.len().min(MAX_BODY))?;
        rest.to_vec()
    };
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(by) = by_header {
        b = b.header("x-detour-by", by);
    }
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    // Refused by http (an unparsable URI, a header value it cannot carry): hyper would
    // have refused it before the router.
    Ok(b.body(Body::from(body))
        .ok()
        .map(|request| Fuzzed { route, request }))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut h = harness().lock().unwrap_or_else(|p| p.into_inner());
    h.bound_state();
    let mut u = Unstructured::new(data);
    let Ok(Some(Fuzzed { route, request })) = request(&mut u, &h.ids) else {
        return;
    };
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let (status, body) = h.send(request);
    let shown = String::from_utf8_lossy(&body);
    let what = format!("{method} {path} ({route:?}) answered {status}: {shown}");

    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{what}"
    );
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    if path != "/metrics" && method != Method::HEAD {
        assert!(json.is_some(), "not JSON: {what}");
    }
    if !status.is_success() {
        if let Some(j) = &json {
            assert!(
                j["error"].is_string(),
                "a refusal without \"error\": {what}"
            );
        }
    }

    // The states task still answers: a clear for no such service is refused by it.
    let probe = Request::delete("/api/v1/overrides/no-such-service")
        .body(Body::empty())
        .unwrap();
    let (s, b) = h.send(probe);
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the states task no longer answers after {what}: {}",
        String::from_utf8_lossy(&b)
    );

    let doc = h.status_doc();
    let d = h.daemon();
    let snap = d.running.snapshots().load_full();
    let mut opened = None;
    if status.is_success() {
        let j = json.as_ref().expect("a JSON answer");
        let service = |id: &str| doc.services.iter().find(|s| s.id == id);
        let open = |id: &str| doc.incidents.iter().find(|i| i.id == id);
        match route {
            Route::PutOverride => {
                let id = j["service"].as_str().expect("service");
                let o: Override = serde_json::from_value(j["override"].clone()).expect("override");
                let expired = o.until.is_some_and(|t| t <= chrono::Utc::now());
                let shown = service(id).unwrap_or_else(|| panic!("{id} not in status: {what}"));
                if !expired {
                    assert_eq!(shown.override_.as_ref(), Some(&o), "{what}");
                }
            }
            Route::DeleteOverride => {
                let id = j["service"].as_str().expect("service");
                let shown = service(id).unwrap_or_else(|| panic!("{id} not in status: {what}"));
                assert_eq!(shown.override_, None, "{what}");
            }
            Route::OpenIncident | Route::UpdateIncident | Route::ResolveIncident => {
                let inc: Incident = serde_json::from_value(j.clone()).expect("incident");
                if route == Route::ResolveIncident {
                    assert!(open(&inc.id).is_none(), "resolved but open: {what}");
                } else {
                    assert_eq!(open(&inc.id), Some(&inc), "{what}");
                }
                if route == Route::OpenIncident {
                    opened = Some(inc.id);
                }
            }
            _ => {}
        }
    }

    // The files say what the Snapshot says: a restart would read the same, setting nothing
    // aside.
    let dir = d.state_dir();
    let (saved, problem) = detour::overrides::load_at_start(&dir);
    assert_eq!(problem, None, "overrides.toml after {what}");
    assert_eq!(saved, snap.health.overrides, "overrides.toml after {what}");
    let (saved, problem) = detour::incidents::load(&dir);
    assert_eq!(problem, None, "incidents.json after {what}");
    assert_eq!(&saved, &*snap.incidents, "incidents.json after {what}");
    h.ids.extend(opened);
});
