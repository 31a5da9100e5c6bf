//! The outage page and the status page, served on `page_listen` (HTTP) and `[page.tls]`
//! (HTTPS, certificate chosen by SNI).
//!
//! Every request loads the Snapshot once, the same one DNS answers from, and takes no lock:
//! a request whose Host is a dynamic record's name (or a static CNAME leading to one) that
//! now answers `otherwise` gets the outage page (503, any path, HTML or JSON); any other Host
//! gets the status page and its feeds:
//!
//! | path                   | what                                                   |
//! |------------------------|--------------------------------------------------------|
//! | `/`                    | the status page (HTML)                                 |
//! | `/status.json`         | [`crate::status::build`] as JSON                       |
//! | `/feed.atom`           | Atom feed of incident updates and state changes        |
//! | `/api/v2/summary.json` | Statuspage-compatible summary (`/api/v2/status.json`)  |
//! | `/history`             | past incidents, 90 days (HTML)                          |
//! | `/status/history.json` | day bars, availability, response times, past incidents |
//! | `/logo`                | `[page] logo`                                          |
//! | `/ack/{token}`         | acknowledge an on-call page (link in a message)        |
//! | `/subscribe`           | the subscribe form (GET) and what it posts             |
//! | `/confirm/{token}`     | confirm a subscription (link in the confirmation)      |
//! | `/unsubscribe/{token}` | end one (link in every message; RFC 8058 one-click)    |
//! | `/sms/inbound`         | the SMS gateway's webhook: STOP ends text updates      |
//! | `/announcement.txt`    | the phone announcement ([`crate::announce`])           |
//! | `/announcement.wav`    | the same, spoken (8 kHz; 404 without espeak-ng)        |
//!
//! The status page, `/history` and `/status/history.json` are rendered once per Snapshot,
//! history view and minute, and served from that cache: a page with 50 services' bars costs
//! a render per change, not per request. Templates live in `templates/page/` (askama,
//! escaping on: see `escape`).

mod actions;
mod feed;
mod history;
mod summary;
mod tls;
mod view;

pub use view::Outage;

/// The outage page's facts for dynamic record `record` of zone `zone` asked as `host`, when
/// it points at the page in `snap` (what `detour simulate` shows it would say).
pub fn outage(
    snap: &Snapshot,
    zone: usize,
    record: usize,
    host: &str,
    now: DateTime<Utc>,
) -> Option<Outage> {
    view::outage(snap, zone, record, host, now)
}

pub use view::{state_class, state_label, zoned};

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hickory_server::proto::rr::{Name, RecordType};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::announce::speech::{Speech, SpeechError};
use crate::config::Config;
use crate::health::ServiceState;
use crate::snapshot::{Snapshot, SnapshotHandle};
use view::{Cause, Common, Status};

/// The largest logo detour serves (it is also inlined into the outage page).
const MAX_LOGO: usize = 256 * 1024;

/// Content-Security-Policy of the HTML pages: nothing from elsewhere, no script at all.
const CSP: &str = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Template)]
#[template(path = "page/outage.html", config = "templates/askama.toml")]
struct OutagePage<'a> {
    common: &'a Common<'a>,
    o: &'a Outage,
}

#[derive(Template)]
#[template(path = "page/status.html", config = "templates/askama.toml")]
struct StatusPage<'a> {
    common: &'a Common<'a>,
    s: &'a Status,
}

#[derive(Template)]
#[template(path = "page/history.html", config = "templates/askama.toml")]
struct HistoryPage<'a> {
    common: &'a Common<'a>,
    past: &'a [history::PastIncident],
    days: i64,
}

#[derive(Template)]
#[template(path = "page/feed.xml", config = "templates/askama.toml")]
struct FeedXml<'a> {
    f: &'a feed::Feed,
}

/// `[page] logo`, read once per config.
struct Logo {
    bytes: Bytes,
    content_type: &'static str,
    /// The same image as a `data:` URI, for the outage page (where every path is the page).
    data_uri: String,
}

/// What a config implies for the page, computed once per config (start and reload).
struct Derived {
    config: Arc<Config>,
    /// Host (lowercase, no trailing dot) to (zone index, dynamic record index).
    hosts: HashMap<String, (usize, usize)>,
    logo: Option<Logo>,
}

/// A rendered body and what it was rendered from: the Snapshot's generation, the history
/// view's version and the minute (pages say "for 12 minutes").
struct Cached {
    key: (u64, u64, i64),
    body: Bytes,
    /// The same, gzipped, for clients that accept it.
    gzip: Option<Bytes>,
}

/// A cached body, plain or gzipped.
struct Body {
    bytes: Bytes,
    gzip: bool,
}

impl From<Body> for axum::body::Body {
    fn from(b: Body) -> Self {
        b.bytes.into()
    }
}

fn gzip(bytes: &[u8]) -> Option<Bytes> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 8),
        flate2::Compression::default(),
    );
    e.write_all(bytes).ok()?;
    e.finish().ok().map(Bytes::from)
}

/// True when `Accept-Encoding` takes gzip (not refused with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or("").trim();
            let refused = it.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            coding.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// Sets `Content-Encoding` (and `Vary`) for a cached body.
fn encoded(mut resp: Response, gzip: bool) -> Response {
    let h = resp.headers_mut();
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}

/// State shared by every listener.
struct Shared {
    snapshots: SnapshotHandle,
    derived: ArcSwapOption<Derived>,
    /// The daemon's control (its notifier acknowledges pages); `None` in tests of the page
    /// alone.
    control: Option<Arc<crate::control::Control>>,
    /// The announcement's audio, kept until its text changes.
    speech: Speech,
    history: Option<crate::history::Recorder>,
    /// `/`, `/history` and `/status/history.json` as last rendered.
    status_page: ArcSwapOption<Cached>,
    history_page: ArcSwapOption<Cached>,
    history_json: ArcSwapOption<Cached>,
}

impl Shared {
    /// The history view, when history is kept.
    fn history_view(&self) -> Option<Arc<crate::history::view::PageView>> {
        self.history.as_ref().map(|h| h.view())
    }
}

/// The body in `slot` when it was rendered from the same inputs, else `render`ed now and
/// kept there.
fn cached<E>(
    slot: &ArcSwapOption<Cached>,
    key: (u64, u64, i64),
    want_gzip: bool,
    render: impl FnOnce() -> Result<String, E>,
) -> Result<Body, E> {
    let pick = |c: &Cached| match (&c.gzip, want_gzip) {
        (Some(g), true) => Body {
            bytes: g.clone(),
            gzip: true,
        },
        _ => Body {
            bytes: c.body.clone(),
            gzip: false,
        },
    };
    if let Some(c) = slot.load().as_ref()
        && c.key == key
    {
        return Ok(pick(c));
    }
    let body = Bytes::from(render()?);
    let c = Cached {
        key,
        gzip: gzip(&body),
        body,
    };
    let out = pick(&c);
    slot.store(Some(Arc::new(c)));
    Ok(out)
}

/// One listener's view of the shared state.
#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    /// "http" or "https".
    scheme: &'static str,
    /// The bound address, for absolute URLs when the Host header is unusable.
    local: String,
}

fn host_key(n: &Name) -> String {
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// Every name that leads to a dynamic record: the record's own, and static CNAMEs whose
/// chain ends at it.
fn hosts(config: &Config) -> HashMap<String, (usize, usize)> {
    let mut m = HashMap::new();
    for (zi, zone) in config.zones.iter().enumerate() {
        for (ri, d) in zone.dynamic.iter().enumerate() {
            m.insert(host_key(&d.name), (zi, ri));
        }
    }
    for (zi, zone) in config.zones.iter().enumerate() {
        for r in zone
            .records
            .iter()
            .filter(|r| r.record_type() == RecordType::CNAME)
        {
            let Some(d) = zone.cname_leads_to(&r.name) else {
                continue;
            };
            if let Some(ri) = zone.dynamic.iter().position(|x| std::ptr::eq(x, d)) {
                m.entry(host_key(&r.name)).or_insert((zi, ri));
            }
        }
    }
    m
}

/// The image type of `bytes`, by its magic numbers (SVG by its text).
fn image_type(bytes: &[u8], path: &Path) -> Option<&'static str> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.starts_with(&[0, 0, 1, 0]) {
        Some("image/x-icon")
    } else if ext.as_deref() == Some("svg")
        && String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).contains("<svg")
    {
        Some("image/svg+xml")
    } else {
        None
    }
}

/// Standard base64 (RFC 4648), for the logo's data URI.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn read_logo(path: &Path) -> Option<Logo> {
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) => {
            warn!(
                "page: cannot read the logo {}: {e}; serving no logo",
                path.display()
            );
            return None;
        }
    };
    if bytes.len() > MAX_LOGO {
        warn!(
            "page: the logo {} is {} bytes, more than {MAX_LOGO}; serving no logo",
            path.display(),
            bytes.len()
        );
        return None;
    }
    let Some(content_type) = image_type(&bytes, path) else {
        warn!(
            "page: the logo {} is not a PNG, JPEG, GIF, WebP, ICO or SVG image; serving no logo",
            path.display()
        );
        return None;
    };
    let data_uri = format!("data:{content_type};base64,{}", base64(&bytes));
    Some(Logo {
        bytes: Bytes::from(bytes),
        content_type,
        data_uri,
    })
}

impl Shared {
    /// What the Snapshot's config implies, rebuilt when the config changes (a reload).
    async fn derived(&self, snap: &Snapshot) -> Arc<Derived> {
        if let Some(d) = self.derived.load_full()
            && Arc::ptr_eq(&d.config, &snap.config)
        {
            return d;
        }
        let logo = match &snap.config.page.logo {
            Some(p) => read_logo(p).await,
            None => None,
        };
        let d = Arc::new(Derived {
            config: snap.config.clone(),
            hosts: hosts(&snap.config),
            logo,
        });
        self.derived.store(Some(d.clone()));
        d
    }
}

/// Host without port or trailing dot, lowercase; `None` when it is not a plausible host.
fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if raw.starts_with('[') {
        &raw[..=raw.find(']')?]
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    valid_host(host).then(|| host.to_ascii_lowercase())
}

/// Letters, digits and the punctuation of names, IPv6 literals and ports only.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 300
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
}

/// The Host a request names (Host header, or the URI's authority for HTTP/2).
fn request_host(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// True when `Accept` prefers JSON: it names `application/json` with a weight above that of
/// an explicitly named HTML type (wildcards never choose JSON).
fn wants_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (mut json, mut html) = (0.0f32, 0.0f32);
    for part in accept.split(',') {
        let mut it = part.split(';');
        let media = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/json" => json = json.max(q),
            "text/html" | "application/xhtml+xml" => html = html.max(q),
            _ => {}
        }
    }
    json > 0.0 && json > html
}

fn html_response<B: Into<axum::body::Body>>(
    status: StatusCode,
    body: Result<B, askama::Error>,
    cache: &str,
) -> Response {
    match body {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, cache),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            body.into(),
        )
            .into_response(),
        Err(e) => {
            warn!("page: cannot render: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the page\n",
            )
                .into_response()
        }
    }
}

fn json_response<B: Into<axum::body::Body>>(
    status: StatusCode,
    body: serde_json::Result<B>,
) -> Response {
    match body {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body.into(),
        )
            .into_response(),
        Err(e) => {
            warn!("page: cannot serialize: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot serialize\n").into_response()
        }
    }
}

fn outage_response(
    req: &Request,
    derived: &Derived,
    snap: &Snapshot,
    o: &Outage,
    now: DateTime<Utc>,
) -> Response {
    let json = wants_json(req.headers());
    let mut resp = if json {
        json_response(StatusCode::SERVICE_UNAVAILABLE, serde_json::to_string(o))
    } else {
        let logo = derived.logo.as_ref().map(|l| l.data_uri.as_str());
        let common = Common::new(&snap.config, logo, now).drilled(snap, now);
        let page = OutagePage { common: &common, o };
        html_response(StatusCode::SERVICE_UNAVAILABLE, page.render(), "no-store")
    };
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(o.retry_after));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

/// Every request: the outage page for a redirected name, else the status page's routes.
async fn handle(State(app): State<App>, req: Request) -> Response {
    // A request from a view with a drill sees the view's Snapshot, banner included.
    let snap = app.shared.snapshots.load_full();
    let snap = match req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        Some(c) => Snapshot::of_source(&snap, c.0.ip()),
        None => snap,
    };
    let derived = app.shared.derived(&snap).await;
    let now = Utc::now();
    let host = request_host(&req);
    if let Some(h) = host.and_then(normalize_host)
        && let Some(&(zone, record)) = derived.hosts.get(&h)
        && let Some(o) = view::outage(&snap, zone, record, &h, now)
    {
        return outage_response(&req, &derived, &snap, &o, now);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "only GET and HEAD\n",
        )
            .into_response();
    }
    let base = format!(
        "{}://{}",
        app.scheme,
        host.filter(|h| valid_host(h)).unwrap_or(&app.local)
    );
    match req.uri().path() {
        "/" | "/index.html" => {
            let hv = app.shared.history_view();
            let key = (
                snap.generation,
                hv.as_ref().map_or(0, |v| v.version),
                now.timestamp() / 60,
            );
            let z = accepts_gzip(req.headers());
            let body = cached(&app.shared.status_page, key, z, || {
                let logo = derived.logo.as_ref().map(|_| "/logo");
                let common = Common::new(&snap.config, logo, now).drilled(&snap, now);
                let s = view::status(&snap, hv.as_deref(), now);
                StatusPage {
                    common: &common,
                    s: &s,
                }
                .render()
            });
            let g = body.as_ref().is_ok_and(|b| b.gzip);
            encoded(html_response(StatusCode::OK, body, "no-cache"), g)
        }
        "/history" => {
            let hv = app.shared.history_view();
            let key = (
                snap.generation,
                hv.as_ref().map_or(0, |v| v.version),
                now.timestamp() / 60,
            );
            let z = accepts_gzip(req.headers());
            let body = cached(&app.shared.history_page, key, z, || {
                let logo = derived.logo.as_ref().map(|_| "/logo");
                let common = Common::new(&snap.config, logo, now);
                let past = history::past(&snap.config, &snap.incidents, hv.as_deref(), now);
                HistoryPage {
                    common: &common,
                    past: &past,
                    days: history::PAST_DAYS,
                }
                .render()
            });
            let g = body.as_ref().is_ok_and(|b| b.gzip);
            encoded(html_response(StatusCode::OK, body, "no-cache"), g)
        }
        "/status/history.json" => {
            let Some(hv) = app.shared.history_view() else {
                return (
                    StatusCode::NOT_FOUND,
                    [(header::CACHE_CONTROL, "no-cache")],
                    "No history is kept here ([history] enabled = false).\n",
                )
                    .into_response();
            };
            let key = (snap.generation, hv.version, now.timestamp() / 60);
            let z = accepts_gzip(req.headers());
            let body = cached(&app.shared.history_json, key, z, || {
                serde_json::to_string(&history::json(&snap.config, &snap.incidents, &hv, now))
            });
            let g = body.as_ref().is_ok_and(|b| b.gzip);
            encoded(json_response(StatusCode::OK, body), g)
        }
        "/status.json" => json_response(
            StatusCode::OK,
            serde_json::to_string(&crate::status::build(&snap, None)),
        ),
        "/api/v2/summary.json" => json_response(
            StatusCode::OK,
            serde_json::to_string(&summary::build(&snap, &base, now)),
        ),
        "/api/v2/status.json" => json_response(
            StatusCode::OK,
            serde_json::to_string(&summary::status_only(&snap, &base, now)),
        ),
        "/feed.atom" => {
            let f = feed::build(&snap, &base, now);
            match (FeedXml { f: &f }).render() {
                Ok(body) => (
                    [
                        (header::CONTENT_TYPE, "application/atom+xml; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-cache"),
                        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                    ],
                    body,
                )
                    .into_response(),
                Err(e) => {
                    warn!("page: cannot render the feed: {e}");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "cannot render the feed\n",
                    )
                        .into_response()
                }
            }
        }
        "/announcement.txt" => announcement_txt(req.headers(), &snap, now),
        "/announcement.wav" => announcement_wav(&app.shared, req.headers(), &snap, now).await,
        "/logo" => match &derived.logo {
            Some(l) => (
                [
                    (header::CONTENT_TYPE, l.content_type),
                    (header::CACHE_CONTROL, "public, max-age=300"),
                    (
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'none'; style-src 'unsafe-inline'",
                    ),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                l.bytes.clone(),
            )
                .into_response(),
            None => not_found(),
        },
        _ => not_found(),
    }
}

/// True when `If-None-Match` names `etag` (or `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// A body of `content_type` tagged `etag` (304 when the client holds it already).
fn tagged(headers: &HeaderMap, content_type: &'static str, etag: String, body: Bytes) -> Response {
    let status = if not_modified(headers, &etag) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut resp = (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::OK {
        *resp.body_mut() = axum::body::Body::from(body);
    }
    resp
}

/// `/announcement.txt`: the announcement, one line.
fn announcement_txt(headers: &HeaderMap, snap: &Snapshot, now: DateTime<Utc>) -> Response {
    let text = crate::announce::text(snap, now);
    let etag = crate::announce::etag(&text, "");
    tagged(
        headers,
        "text/plain; charset=utf-8",
        etag,
        Bytes::from(format!("{text}\n")),
    )
}

/// `/announcement.wav`: the announcement spoken, 8 kHz 16-bit mono; 404 where espeak-ng is
/// not installed, 503 when it failed (both logged by [`Speech`]).
async fn announcement_wav(
    shared: &Shared,
    headers: &HeaderMap,
    snap: &Snapshot,
    now: DateTime<Utc>,
) -> Response {
    shared.speech.want();
    let text = crate::announce::text(snap, now);
    match shared.speech.wav(&text).await {
        Ok(wav) => tagged(
            headers,
            "audio/wav",
            crate::announce::etag(&text, "-8k"),
            wav,
        ),
        Err(SpeechError::Missing) => (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, "no-cache")],
            "No audio: espeak-ng is not installed on this server. The text is at /announcement.txt.\n",
        )
            .into_response(),
        Err(SpeechError::Failed(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CACHE_CONTROL, "no-cache"),
                (header::RETRY_AFTER, "30"),
            ],
            "The announcement could not be spoken just now (see the log). The text is at /announcement.txt.\n",
        )
            .into_response(),
    }
}

/// Once a phone system has asked for the audio, speaks each new text ahead of its next
/// request: the states change, so does the text, and the audio is ready when asked for.
async fn speak_ahead(shared: Arc<Shared>, cancel: CancellationToken) -> io::Result<()> {
    let mut changed = shared.snapshots.watch();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = changed.changed() => {
                if r.is_err() {
                    // No more Snapshots: nothing new to say.
                    cancel.cancelled().await;
                    return Ok(());
                }
            }
            // Day words ("yesterday") change at midnight without a new Snapshot.
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
        }
        if !shared.speech.wanted() {
            continue;
        }
        let text = crate::announce::text(&shared.snapshots.load_full(), Utc::now());
        // Failures are logged (and answered) by `Speech`; here there is no one to tell.
        if let Err(e) = shared.speech.wav(&text).await {
            tracing::debug!("announcement not spoken ahead: {e}");
        }
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, "no-cache")],
        "Not found. The status page is at /.\n",
    )
        .into_response()
}

fn router(app: App) -> Router {
    Router::new()
        .route(
            "/ack/{token}",
            axum::routing::get(actions::ack_form).post(actions::ack_post),
        )
        .route(
            "/subscribe",
            axum::routing::get(actions::subscribe_form).post(actions::subscribe_post),
        )
        .route(
            "/confirm/{token}",
            axum::routing::get(actions::confirm_form).post(actions::confirm_post),
        )
        .route(
            "/unsubscribe/{token}",
            axum::routing::get(actions::unsubscribe_form).post(actions::unsubscribe_post),
        )
        .route("/sms/inbound", axum::routing::post(actions::sms_inbound))
        .fallback(handle)
        .with_state(app)
}

/// What a visitor would see if `incidents` were in force: the console's preview of an
/// incident before it is posted.
#[derive(Debug, Clone)]
pub struct Preview {
    /// Which page it is, in words ("the outage page of mls.example.test").
    pub what: String,
    /// The page, as the page listener would send it (without the logo, which the preview
    /// cannot fetch).
    pub html: String,
}

/// Renders, with the page's own templates, what visitors would see about `services` if the
/// incidents were `incidents` instead of the Snapshot's: the outage page of the first name
/// that follows one of them and answers the outage page now, else the status page (where
/// every open incident is shown too). Nothing is sent or saved.
pub fn preview(
    snap: &Snapshot,
    incidents: crate::incidents::Incidents,
    services: &[String],
    now: DateTime<Utc>,
) -> Result<Preview, askama::Error> {
    let mut s = snap.clone();
    s.incidents = Arc::new(incidents);
    let config = s.config.clone();
    let common = Common::new(&config, None, now);
    for (zi, zone) in config.zones.iter().enumerate() {
        for (ri, d) in zone.dynamic.iter().enumerate() {
            if !d.answers.iter().any(|a| services.contains(&a.if_up)) {
                continue;
            }
            let host = host_key(&d.name);
            if let Some(o) = view::outage(&s, zi, ri, &host, now) {
                let html = OutagePage {
                    common: &common,
                    o: &o,
                }
                .render()?;
                return Ok(Preview {
                    what: format!("the outage page of {host} (it is redirected there now)"),
                    html,
                });
            }
        }
    }
    let st = view::status(&s, None, now);
    let html = StatusPage {
        common: &common,
        s: &st,
    }
    .render()?;
    Ok(Preview {
        what: "the status page (no name these services answer for is on the outage page now)"
            .into(),
        html,
    })
}

/// "http://127.0.0.1:8080" as the daemon logs it: "127.0.0.1:8080 (HTTP)".
pub fn label(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, addr)) => format!("{addr} ({})", scheme.to_ascii_uppercase()),
        None => url.to_string(),
    }
}

fn bind_error(addr: &std::net::SocketAddr, what: &str, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("cannot listen for the page on {addr} ({what}): {e}"),
    )
}

/// Binds every `page_listen` (HTTP) and `[page.tls] listen` (HTTPS) address and serves the
/// page until `cancel` fires, then lets requests in flight finish (for a few seconds at
/// most). Returns the URLs listened on, HTTP first: `http://127.0.0.1:8080`,
/// `https://127.0.0.1:8443`.
pub async fn serve(
    config: &Config,
    caps: crate::fds::Caps,
    snapshots: SnapshotHandle,
    control: Option<Arc<crate::control::Control>>,
    history: Option<crate::history::Recorder>,
    cancel: CancellationToken,
    tasks: &mut JoinSet<io::Result<()>>,
) -> io::Result<Vec<String>> {
    let shared = Arc::new(Shared {
        snapshots,
        derived: ArcSwapOption::empty(),
        control,
        speech: Speech::default(),
        history,
        status_page: ArcSwapOption::empty(),
        history_page: ArcSwapOption::empty(),
        history_json: ArcSwapOption::empty(),
    });
    tasks.spawn(speak_ahead(shared.clone(), cancel.clone()));
    // Reads the logo now, so a bad one is reported at start.
    shared.derived(&shared.snapshots.load_full()).await;

    let mut plain = Vec::new();
    for addr in &config.server.page_listen {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| bind_error(addr, "HTTP", e))?;
        plain.push(l);
    }
    let mut secure = Vec::new();
    let mut acceptor = None;
    if let Some(t) = config.page.tls.as_ref().filter(|t| !t.listen.is_empty()) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = tls::load(&t.certs, &provider)?;
        for ((cert, _), names) in t.certs.iter().zip(&certs.names) {
            info!(
                "page certificate {} covers {}",
                cert.display(),
                names.join(", ")
            );
        }
        let resolver = Arc::new(tls::SniResolver {
            certs: arc_swap::ArcSwap::from_pointee(certs),
        });
        let server_config = tls::server_config(resolver.clone(), provider.clone())?;
        acceptor = Some(tokio_rustls::TlsAcceptor::from(Arc::new(server_config)));
        for addr in &t.listen {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| bind_error(addr, "HTTPS", e))?;
            secure.push(l);
        }
        tasks.spawn(watch_certs(
            shared.clone(),
            resolver,
            provider,
            cancel.clone(),
        ));
    }

    let limits = crate::config::HttpLimits {
        max_connections: caps.page,
        ..config.server.http
    };
    let mut urls = Vec::new();
    let listeners = plain.into_iter().map(|l| (l, "http", None, "page")).chain(
        secure
            .into_iter()
            .map(|l| (l, "https", acceptor.clone(), "page (HTTPS)")),
    );
    for (l, scheme, tls, name) in listeners {
        let local = l.local_addr()?;
        urls.push(format!("{scheme}://{local}"));
        let app = App {
            shared: shared.clone(),
            scheme,
            local: local.to_string(),
        };
        let site = crate::http::Site {
            router: router(app),
            tls,
            limits,
            name,
        };
        tasks.spawn(crate::http::serve(
            crate::http::Listener::Tcp(l),
            site,
            cancel.clone(),
        ));
    }
    Ok(urls)
}

/// A TLS acceptor that chooses among `pairs` (certificate, key) by SNI, as the page's HTTPS
/// listeners do: for the operator console's own listeners. Logs which names each covers.
pub fn tls_acceptor(
    pairs: &[(std::path::PathBuf, std::path::PathBuf)],
) -> io::Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = tls::load(pairs, &provider)?;
    for ((cert, _), names) in pairs.iter().zip(&certs.names) {
        info!(
            "console certificate {} covers {}",
            cert.display(),
            names.join(", ")
        );
    }
    let resolver = Arc::new(tls::SniResolver {
        certs: arc_swap::ArcSwap::from_pointee(certs),
    });
    let server_config = tls::server_config(resolver, provider)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server_config)))
}

/// Re-reads the certificates whenever the config is reloaded (SIGHUP), so renewed files are
/// served without a restart; a bad set is logged and the previous one kept.
async fn watch_certs(
    shared: Arc<Shared>,
    resolver: Arc<tls::SniResolver>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    cancel: CancellationToken,
) -> io::Result<()> {
    let mut last = shared.snapshots.load_full().config.clone();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let config = shared.snapshots.load_full().config.clone();
        if Arc::ptr_eq(&config, &last) {
            continue;
        }
        last = config.clone();
        let Some(t) = config.page.tls.as_ref() else {
            continue;
        };
        let pairs = t.certs.clone();
        let p = provider.clone();
        match tokio::task::spawn_blocking(move || tls::load(&pairs, &p)).await {
            Ok(Ok(certs)) => {
                info!("page certificates reloaded ({})", certs.names.len());
                resolver.certs.store(Arc::new(certs));
            }
            Ok(Err(e)) => {
                warn!("page certificates not reloaded, the previous ones stay: {e}")
            }
            Err(e) => warn!("page certificates not reloaded: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(
            normalize_host("MLS.Example.Test:8080").as_deref(),
            Some("mls.example.test")
        );
        assert_eq!(
            normalize_host("mls.example.test.").as_deref(),
            Some("mls.example.test")
        );
        assert_eq!(
            normalize_host("mls.example.test.:80").as_deref(),
            Some("mls.example.test")
        );
        assert_eq!(normalize_host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host("x:y"), None);
        assert_eq!(normalize_host(""), None);
    }

    #[test]
    fn accept_chooses_json_only_when_asked() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            wants_json(&m)
        };
        assert!(h("application/json"));
        assert!(h("application/json, text/plain, */*"));
        assert!(h("text/html;q=0.5, application/json"));
        assert!(!h(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!h("*/*"));
        assert!(!h("application/json;q=0, text/html"));
        assert!(!wants_json(&HeaderMap::new()));
    }

    #[test]
    fn gzip_is_used_only_when_accepted() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip, deflate, br"));
        assert!(h("br;q=1.0, GZIP;q=0.5"));
        assert!(!h("gzip;q=0, br"));
        assert!(!h("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
        let body = "<rect x=\"1\"/>".repeat(1000);
        let z = gzip(body.as_bytes()).unwrap();
        assert!(z.len() * 20 < body.len(), "{} of {}", z.len(), body.len());
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&z[..]), &mut out).unwrap();
        assert_eq!(out, body);
    }

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
