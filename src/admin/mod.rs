//! The admin API: JSON over HTTP on `admin_listen` (TCP with a bearer token, or a unix socket
//! guarded by its 0600 mode), plus `/metrics`. [`client`] is the CLI's side of it.

pub mod client;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{AdminListen, Config, HttpLimits};
use crate::control::Control;
use crate::events::{Event, Kind};
use crate::overrides::{Forced, Override};
use crate::states::{Actor, IncidentOp, OperatorError};
use crate::{audit, http, status, store, telemetry};

/// Shared by every handler.
#[derive(Clone)]
struct App {
    control: Arc<Control>,
    /// Required bearer token (TCP); `None` on a unix socket.
    token: Option<Arc<String>>,
}

/// An error answered as `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<OperatorError> for ApiError {
    fn from(e: OperatorError) -> Self {
        let code = match &e {
            OperatorError::Invalid(_) => StatusCode::BAD_REQUEST,
            OperatorError::NotFound(_) => StatusCode::NOT_FOUND,
            OperatorError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            OperatorError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            OperatorError::Refused(_) => StatusCode::CONFLICT,
        };
        ApiError(code, e.to_string())
    }
}

/// The admin token: read from `path`, or made (random, mode 0600 from creation) when the
/// file is missing or empty. A file that cannot serve as a bearer token (not UTF-8, or with
/// characters an `Authorization` header cannot carry, such as NULs) is set aside like any
/// corrupt state file and a new token made; the second value says so, for `detour status`.
pub fn ensure_token(path: &Path) -> io::Result<(String, Option<String>)> {
    let (found, problem) = store::load_or_report(path, |t| {
        let t = t.trim();
        match t.chars().find(|c| !c.is_ascii_graphic()) {
            Some(c) => Err(format!(
                "character {:?} cannot be sent in an Authorization header",
                c
            )),
            None => Ok(t.to_string()),
        }
    });
    if let Some(t) = found.filter(|t| !t.is_empty()) {
        return Ok((t, None));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    store::atomic_write_mode(path, format!("{token}\n").as_bytes(), 0o600)?;
    info!(file = %path.display(), "created a new admin token");
    let problem = problem.map(|p| format!("{p}; a new admin token is in {}", path.display()));
    Ok((token, problem))
}

/// Binds the admin socket at `path`, mode 0600 from the moment it is reachable: it is bound
/// in a private folder (0700) beside `path`, given its mode there, then renamed into place.
/// A socket left by an earlier run is replaced; a socket a live process answers on, or
/// anything that is not a socket, is refused (`detour check` says so too).
fn bind_unix(path: &Path) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use: another process answers on it",
                        path.display()
                    ),
                ));
            }
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket: refusing to replace it",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let private = dir.join(format!(".{name}.bind.{}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let inside = private.join("socket");
    let bound = (|| {
        let listener = tokio::net::UnixListener::bind(&inside)?;
        std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&inside, path)?;
        Ok(listener)
    })();
    if bound.is_err() {
        // Best effort: the bind error is the one worth reporting.
        let _ = std::fs::remove_file(&inside);
    }
    std::fs::remove_dir(&private)?;
    bound
}

/// The admin API as a listener on `admin_listen` serves it: every route, behind the bearer
/// `token` a TCP listener requires (`None`, as on a unix socket: no token). Public so that
/// the `admin` fuzz target (`fuzz/`) can drive the real API in-process; everything else
/// reaches it over HTTP through [`serve`].
pub fn router_for(control: Arc<Control>, token: Option<String>) -> Router {
    router(App {
        control,
        token: token.map(Arc::new),
    })
}

/// The routes of the admin API. Heartbeats are outside the bearer-token layer: each check
/// has a token of its own, which authorizes that heartbeat and nothing else.
fn router(app: App) -> Router {
    let heartbeats = Router::new()
        .route("/api/v1/heartbeat/{check}", post(heartbeat_bearer))
        .route(
            "/api/v1/heartbeat/{check}/{token}",
            get(heartbeat_in_path).post(heartbeat_in_path),
        )
        .with_state(app.clone());
    Router::new()
        .route("/api/v1/status", get(get_status))
        .route("/api/v1/audit", get(get_audit))
        .route("/api/v1/announcement", get(get_announcement))
        .route("/api/v1/history", get(get_history))
        .route("/api/v1/report", get(get_report))
        .route("/api/v1/overrides/{service}", put(put_override))
        .route("/api/v1/overrides/{service}", delete(delete_override))
        .route("/api/v1/incidents", post(open_incident))
        .route("/api/v1/incidents/{id}/updates", post(update_incident))
        .route("/api/v1/incidents/{id}/resolve", post(resolve_incident))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/notify/test", post(notify_test))
        .route("/api/v1/oncall", get(get_oncall))
        .route("/api/v1/simulate", post(simulate))
        .route("/api/v1/drills", post(start_drill))
        .route("/api/v1/drills", delete(stop_drill))
        .route("/api/v1/explain", get(get_explain))
        .route("/api/v1/subscribers", get(get_subscribers))
        .route("/api/v1/subscribers/{address}", delete(delete_subscriber))
        .route("/api/v1/pages/{id}/ack", post(ack_page))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .with_state(app)
        .merge(heartbeats)
        .layer(middleware::from_fn(json_refusals))
}

/// Refused heartbeats are logged at most once per this period.
static HEARTBEAT_REFUSED_LOG: telemetry::Throttle =
    telemetry::Throttle::new(std::time::Duration::from_secs(10));

/// `POST /api/v1/heartbeat/{check}` with `Authorization: Bearer <the check's token>`.
async fn heartbeat_bearer(
    State(app): State<App>,
    UrlPath(check): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    take_heartbeat(&app, &check, token)
}

/// `GET` or `POST /api/v1/heartbeat/{check}/{token}`: for a cron line (`curl -fsS URL`).
async fn heartbeat_in_path(
    State(app): State<App>,
    UrlPath((check, token)): UrlPath<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    take_heartbeat(&app, &check, &token)
}

fn take_heartbeat(
    app: &App,
    check: &str,
    token: &str,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::checks::heartbeat::Refused;
    let beats = app.control.heartbeats().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "heartbeats are not taken yet".into(),
        )
    })?;
    match beats.beat(check, token, Utc::now()) {
        Ok(taken) => {
            metrics::counter!("detour_heartbeats_total", "check" => taken.check.clone(), "result" => "taken")
                .increment(1);
            Ok(Json(json!({ "check": taken.check, "at": taken.at })))
        }
        Err(e) => {
            let (code, result) = match &e {
                Refused::Unknown(_) => (StatusCode::NOT_FOUND, "unknown"),
                Refused::Token(_) => (StatusCode::UNAUTHORIZED, "refused"),
            };
            // A name nobody configured is not a label: callers choose it.
            let label = match &e {
                Refused::Token(id) => id.clone(),
                Refused::Unknown(_) => "(unknown)".to_string(),
            };
            metrics::counter!("detour_heartbeats_total", "check" => label, "result" => result)
                .increment(1);
            if code == StatusCode::UNAUTHORIZED
                && let Some(held) = HEARTBEAT_REFUSED_LOG.allow()
            {
                warn!(
                    check,
                    "heartbeat refused: {e} ({held} more refused since the last such line)"
                );
            }
            Err(ApiError(code, e.to_string()))
        }
    }
}

/// Refusals that axum makes itself, before a handler runs (a query string or a path segment
/// that does not parse, an optional JSON body that is not the one expected, a method the
/// route does not take), come as plain text or with no body at all; every refusal of the
/// API is `{"error": "..."}` (docs/operations.md), so they are wrapped here, keeping their
/// status and headers. Found by the `admin` fuzz target.
async fn json_refusals(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if resp.status().is_success() || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // axum's messages are one line: a bound, not a limit anything reaches.
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    // A 405 has no body ("method not allowed"; axum adds `Allow` on the way out).
    let message = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("refused")
            .to_lowercase()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut out = ApiError(parts.status, message).into_response();
    out.headers_mut().extend(parts.headers);
    out
}

/// Refused requests are logged at most once per this period (a guessing client must not
/// fill the disk with log lines).
static REFUSED_LOG: telemetry::Throttle =
    telemetry::Throttle::new(std::time::Duration::from_secs(10));

/// Checks the bearer token (constant time) when the listener is TCP.
async fn auth(State(app): State<App>, req: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = given.as_bytes().ct_eq(token.as_bytes()).into();
        if !ok {
            let peer = req
                .extensions()
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map_or("unknown".to_string(), |c| c.0.to_string());
            metrics::counter!("detour_admin_refused_total").increment(1);
            if let Some(held) = REFUSED_LOG.allow() {
                warn!(
                    peer = %peer,
                    path = %req.uri().path(),
                    "admin request refused: missing or wrong bearer token \
                     ({held} more refused since the last such line; detour_admin_refused_total counts all)"
                );
            }
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (see [admin] token_file)".into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn get_status(State(app): State<App>) -> Json<status::StatusDoc> {
    let snap = app.control.snapshots.load_full();
    let mut doc = status::build(
        &snap,
        Some((app.control.last_reload(), app.control.problems())),
    );
    if let Some(c) = app.control.cluster() {
        status::add_cluster(&mut doc, c, &snap);
    }
    if let Some(v) = app.control.notifier().and_then(|n| n.oncall(Utc::now())) {
        doc.oncall = Some(status::OnCallDoc {
            now: v.now.name,
            until: v.now.until,
            next: v.next.name,
            open_pages: v
                .open
                .iter()
                .map(|p| (p.id.clone(), p.headline()))
                .collect(),
        });
    }
    Json(doc)
}

/// The phone announcement, the words `/announcement.txt` serves: `{"text": "..."}`.
async fn get_announcement(State(app): State<App>) -> Json<serde_json::Value> {
    let snap = app.control.snapshots.load_full();
    Json(json!({ "text": crate::announce::text(&snap, Utc::now()) }))
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn get_audit(
    State(app): State<App>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<audit::Entry>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=audit::MAX_TAIL).contains(&limit) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {}", audit::MAX_TAIL),
        ));
    }
    if let Some(c) = app.control.cluster() {
        return c
            .audit_tail(limit)
            .await
            .map(Json)
            .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()));
    }
    let dir = app.control.snapshots.load().config.server.state_dir.clone();
    audit::tail(&dir, limit).map(Json).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read audit log: {e}"),
        )
    })
}

#[derive(Deserialize)]
struct HistoryQuery {
    service: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// The history reader and the period a query asks for (30 days back to now by default).
fn history_period(
    app: &App,
    q: &HistoryQuery,
) -> Result<(crate::history::Recorder, i64, i64, i64), ApiError> {
    let Some(h) = app.control.history() else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "no history is kept: [history] enabled = false".into(),
        ));
    };
    let now = Utc::now().timestamp_millis();
    let zone =
        crate::history::timeline::Zone::of(app.control.snapshots.load().config.page.timezone);
    let (from, until) = crate::history::period(q.since.as_deref(), q.until.as_deref(), now, zone)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    Ok((h.clone(), from, until, now))
}

/// Reads the history database off the async threads.
async fn read_history<T: Send + 'static>(
    h: crate::history::Recorder,
    f: impl FnOnce(crate::history::db::Reader) -> Result<T, String> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || h.reader().and_then(f))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the history: {e}"),
            )
        })
}

/// `GET /api/v1/history?service=&since=&until=`: runs, transitions, what records answered,
/// operator actions, notifications delivered and probe summaries (per minute for a period
/// of at most two days within `[history] detail`, else per day).
async fn get_history(
    State(app): State<App>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (h, from, until, now) = history_period(&app, &q)?;
    let config = app.control.snapshots.load().config.clone();
    if let Some(s) = &q.service
        && !config.services.contains_key(s)
    {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("unknown service {s:?}"),
        ));
    }
    let detail_from = now - config.history.detail.as_millis() as i64;
    let minutes = until - from <= 2 * crate::history::timeline::DAY_MS && from >= detail_from;
    let service = q.service.clone();
    let (rows, probes) = read_history(h, move |r| {
        Ok((
            r.rows(from, until, now)?,
            r.probes(service.as_deref(), from, until, minutes)?,
        ))
    })
    .await?;
    let keep = |s: &str| q.service.as_deref().is_none_or(|x| x == s);
    let t = crate::history::timeline::utc;
    Ok(Json(json!({
        "since": t(from),
        "until": t(until),
        "runs": rows.runs.iter().map(|r| json!({
            "start": t(r.start), "end": t(r.end),
        })).collect::<Vec<_>>(),
        "transitions": rows.transitions.iter().filter(|x| keep(&x.service)).collect::<Vec<_>>(),
        "answered": rows.answered.iter().filter(|x| keep(&x.service)).collect::<Vec<_>>(),
        "actions": rows.actions.iter().filter(|a| a.service.as_deref().is_none_or(&keep)).collect::<Vec<_>>(),
        "notifications": rows.notifications.iter().filter(|n| n.service.as_deref().is_none_or(&keep)).collect::<Vec<_>>(),
        "probe_resolution": if minutes { "minute" } else { "day" },
        "probes": probes,
    })))
}

/// `GET /api/v1/report?since=&until=`: `detour report`'s numbers.
async fn get_report(
    State(app): State<App>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<crate::history::report::Report>, ApiError> {
    let (h, from, until, now) = history_period(&app, &q)?;
    let config = app.control.snapshots.load().config.clone();
    let services: Vec<(String, String)> = config
        .services
        .values()
        .filter(|s| q.service.as_deref().is_none_or(|x| x == s.id))
        .map(|s| (s.id.clone(), s.name.clone()))
        .collect();
    let only = q.service.clone();
    let rows = read_history(h, move |r| r.rows(from, until, now)).await?;
    let mut report = crate::history::report::build(&rows, &services, from, until);
    if let Some(s) = only {
        report.services.retain(|x| x.id == s);
    }
    Ok(Json(report))
}

/// Who made a request: the body's `by`, else the `X-Detour-By` header, else "admin-api".
fn actor(by: Option<String>, headers: &HeaderMap) -> Actor {
    let who = by
        .filter(|b| !b.trim().is_empty())
        .or_else(|| {
            headers
                .get("x-detour-by")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "admin-api".into());
    Actor { who }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    state: String,
    #[serde(default)]
    reason: String,
    until: Option<String>,
    by: Option<String>,
    /// Apply it even if it breaks a `[[safety]]` rule (needs a reason; audited).
    #[serde(default)]
    force: bool,
}

/// `until` as RFC 3339 or as a duration from now ("2h").
pub fn parse_until(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    use crate::config::duration::{self, DurationError};
    let d = duration::parse(s).map_err(|e| match e {
        DurationError::TooLong(_) => format!("until {s:?} is too far away: at most 10 years"),
        DurationError::Invalid(..) => {
            format!("invalid until {s:?}: expected a duration such as \"2h\" or an RFC 3339 time")
        }
    })?;
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| format!("until {s:?} is too far away"))
}

async fn put_override(
    State(app): State<App>,
    UrlPath(service): UrlPath<String>,
    headers: HeaderMap,
    body: Result<Json<OverrideBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(b) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let state = Forced::parse(&b.state).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid state {:?}: expected up, down or maintenance",
                b.state
            ),
        )
    })?;
    let now = Utc::now();
    let until = match b.until.as_deref() {
        None | Some("") => None,
        Some(u) => Some(parse_until(u, now).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?),
    };
    if until.is_some_and(|u| u <= now) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "until is in the past".into(),
        ));
    }
    let actor = actor(b.by, &headers);
    let o = Override {
        state,
        reason: b.reason,
        until,
        by: Some(actor.who.clone()),
        set_at: Some(now),
    };
    let forced = crate::health::ServiceState::from(o.state);
    app.control
        .change_override(&service, Some(o.clone()), "", b.force, actor)
        .await?;
    let mut told = Event::new(Kind::Override);
    told.service = Some(service.clone());
    told.new_state = Some(forced);
    let mut state = Event::new(Kind::of_state(forced));
    state.service = Some(service.clone());
    let notified = notified(&app, &[told, state]);
    Ok(Json(
        json!({ "service": service, "override": o, "notified": notified }),
    ))
}

/// Whom notifications about `events` reach (each sink and person once), for the answer of
/// a command that changes what people are told.
fn notified(app: &App, events: &[Event]) -> Vec<String> {
    let Some(n) = app.control.notifier() else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for e in events {
        for who in n.reach(e) {
            if !out.contains(&who) {
                out.push(who);
            }
        }
    }
    out
}

/// An incident as JSON, with whom the change reaches.
fn incident_answer(app: &App, inc: crate::incidents::Incident) -> serde_json::Value {
    let event = Event::incident(inc.clone(), "incident", "", "");
    let mut v = serde_json::to_value(&inc).unwrap_or_else(|_| json!({}));
    if let Some(m) = v.as_object_mut() {
        m.insert("notified".into(), json!(notified(app, &[event])));
    }
    v
}

#[derive(Deserialize)]
struct AtQuery {
    /// RFC 3339, or a duration from now ("2d").
    at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulateBody {
    /// Service id -> up, down or maintenance.
    states: std::collections::BTreeMap<String, String>,
    /// RFC 3339, or a duration from now ("2h"); now when absent.
    at: Option<String>,
}

/// `POST /api/v1/simulate`: what would happen if these services were in these states
/// (at `at`), next to what happens now. Nothing changes.
async fn simulate(
    State(app): State<App>,
    body: Result<Json<SimulateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<crate::simulate::Simulation>, ApiError> {
    let Json(b) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    if b.states.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "name at least one SERVICE=STATE to simulate".into(),
        ));
    }
    let now = Utc::now();
    let at = match b.at.as_deref() {
        None | Some("") => now,
        Some(a) => parse_until(a, now).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?,
    };
    let mut forced = Vec::new();
    let mut assumed = std::collections::BTreeMap::new();
    for (service, state) in &b.states {
        let f = Forced::parse(state).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("invalid state {state:?} for {service}: expected up, down or maintenance"),
            )
        })?;
        forced.push((service.clone(), f));
        assumed.insert(service.clone(), crate::health::ServiceState::from(f));
    }
    let would = app.control.what_if(forced, at).await?;
    let current = app.control.snapshots.load_full();
    let (mut sim, events) = crate::simulate::compare(&current, &would, assumed, at);
    sim.notified = notified(&app, &events);
    Ok(Json(sim))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrillBody {
    service: String,
    /// up, down or maintenance (down when absent).
    state: Option<String>,
    view: String,
    /// How long: "30m".
    #[serde(rename = "for")]
    lasts: String,
    #[serde(default)]
    reason: String,
    by: Option<String>,
}

/// `POST /api/v1/drills`: starts a drill that only the view's sources see.
async fn start_drill(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<Json<DrillBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(b) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let state = Forced::parse(b.state.as_deref().unwrap_or("down")).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "invalid state: expected up, down or maintenance".into(),
        )
    })?;
    let lasts = crate::config::duration::parse(&b.lasts).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid duration {:?}: expected e.g. \"30m\" or \"2h\"",
                b.lasts
            ),
        )
    })?;
    if lasts > std::time::Duration::from_secs(7 * 86_400) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "a drill lasts at most 7 days".into(),
        ));
    }
    let until = Utc::now()
        + chrono::Duration::from_std(lasts)
            .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "duration too long".into()))?;
    let actor = actor(b.by, &headers);
    let op = crate::states::DrillOp::Start {
        service: b.service.clone(),
        state,
        view: b.view,
        until,
        reason: b.reason,
    };
    let started = app.control.drill(op, actor).await?;
    let events: Vec<Event> = started
        .iter()
        .map(|d| {
            Event::drill(
                &d.service,
                None,
                &d.view,
                Some(crate::health::ServiceState::from(d.state)),
                Some(d.until),
                &d.reason,
                &d.by,
            )
        })
        .collect();
    Ok(Json(
        json!({ "drills": started, "notified": notified(&app, &events) }),
    ))
}

#[derive(Deserialize)]
struct StopDrillQuery {
    service: Option<String>,
    by: Option<String>,
}

/// `DELETE /api/v1/drills[?service=S]`: ends drills early (every one without `service`).
async fn stop_drill(
    State(app): State<App>,
    Query(q): Query<StopDrillQuery>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = q.service.filter(|s| !s.is_empty());
    let op = crate::states::DrillOp::Stop { service };
    let stopped = app.control.drill(op, actor(q.by, &headers)).await?;
    Ok(Json(json!({ "stopped": stopped })))
}

#[derive(Deserialize)]
struct ExplainQuery {
    name: String,
    #[serde(rename = "type")]
    rtype: Option<String>,
    from: Option<String>,
}

/// `GET /api/v1/explain?name=N[&type=T][&from=ADDR]`: the answer now, and why.
async fn get_explain(
    State(app): State<App>,
    Query(q): Query<ExplainQuery>,
) -> Result<Json<crate::explain::Explanation>, ApiError> {
    use std::str::FromStr;
    let name = hickory_server::proto::rr::Name::from_str(q.name.trim())
        .map(|mut n| {
            n.set_fqdn(true);
            n
        })
        .map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("invalid name {:?}: {e}", q.name),
            )
        })?;
    let rtype = match q.rtype.as_deref() {
        None | Some("") => hickory_server::proto::rr::RecordType::A,
        Some(t) => hickory_server::proto::rr::RecordType::from_str(&t.to_ascii_uppercase())
            .map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("invalid type {t:?}")))?,
    };
    let from =
        match q.from.as_deref() {
            None | Some("") => None,
            Some(f) => Some(f.trim().parse::<std::net::IpAddr>().map_err(|_| {
                ApiError(StatusCode::BAD_REQUEST, format!("invalid address {f:?}"))
            })?),
        };
    let main = app.control.snapshots.load_full();
    let answering = from.map_or_else(
        || main.clone(),
        |ip| crate::snapshot::Snapshot::of_source(&main, ip),
    );
    let mut doc = status::build(&answering, Some((None, Vec::new())));
    if let Some(c) = app.control.cluster() {
        status::add_cluster(&mut doc, c, &answering);
    }
    Ok(Json(crate::explain::explain(
        &main,
        &doc,
        &name,
        rtype,
        from,
        Utc::now(),
    )))
}

/// Who is on call (now, or `?at=`), who is next, and the pages.
async fn get_oncall(
    State(app): State<App>,
    Query(q): Query<AtQuery>,
) -> Result<Json<crate::notify::OnCallView>, ApiError> {
    let now = Utc::now();
    let at = match q.at.as_deref() {
        None | Some("") => now,
        Some(a) => parse_until(a, now)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.replace("until", "at")))?,
    };
    let n = app.control.notifier().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "notifications are not running".into(),
        )
    })?;
    n.oncall(at).map(Json).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "no [oncall] rotation in the config".into(),
        )
    })
}

/// Every subscriber: the operator's export of this personal data.
async fn get_subscribers(
    State(app): State<App>,
) -> Result<Json<Vec<crate::notify::subscribers::Subscriber>>, ApiError> {
    let n = app.control.notifier().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "notifications are not running".into(),
        )
    })?;
    n.subscribers()
        .map(Json)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e))
}

/// Erases a subscriber (every channel of that address) and what waits for them.
async fn delete_subscriber(
    State(app): State<App>,
    UrlPath(address): UrlPath<String>,
    headers: HeaderMap,
    Query(q): Query<ByQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n = app.control.notifier().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "notifications are not running".into(),
        )
    })?;
    let removed = n
        .unsubscribe(None, address.trim())
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e))?;
    if removed == 0 {
        return Err(ApiError(StatusCode::NOT_FOUND, "no such subscriber".into()));
    }
    let who = actor(q.by, &headers).who;
    info!(by = %who, removed, "subscriber erased by an operator");
    Ok(Json(json!({ "removed": removed })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    by: Option<String>,
}

/// Acknowledges a page: its escalation stops.
async fn ack_page(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    b: Option<Json<AckBody>>,
) -> Result<Json<crate::notify::pages::Acked>, ApiError> {
    let by = b.and_then(|Json(b)| b.by);
    let who = actor(by, &headers).who;
    crate::text::check_name("by", &who)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let n = app.control.notifier().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "notifications are not running".into(),
        )
    })?;
    n.ack(&id, &who)
        .map(Json)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e))
}

#[derive(Deserialize)]
struct ByQuery {
    by: Option<String>,
    /// Why the override is cleared (audit log, notifications).
    reason: Option<String>,
    /// Clear it even if that breaks a `[[safety]]` rule (needs a reason; audited).
    #[serde(default)]
    force: bool,
}

async fn delete_override(
    State(app): State<App>,
    UrlPath(service): UrlPath<String>,
    Query(q): Query<ByQuery>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let had = app
        .control
        .snapshots
        .load()
        .health
        .overrides
        .contains_key(&service);
    let reason = q.reason.unwrap_or_default();
    app.control
        .change_override(&service, None, &reason, q.force, actor(q.by, &headers))
        .await?;
    Ok(Json(json!({ "service": service, "cleared": had })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentBody {
    services: Vec<String>,
    message: String,
    by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    #[serde(default)]
    message: String,
    by: Option<String>,
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T, ApiError> {
    b.map(|Json(x)| x)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))
}

async fn open_incident(
    State(app): State<App>,
    headers: HeaderMap,
    b: JsonBody<IncidentBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let b = body(b)?;
    let op = IncidentOp::Open {
        services: b.services,
        message: b.message,
    };
    let inc = app.control.incident(op, actor(b.by, &headers)).await?;
    Ok((StatusCode::CREATED, Json(incident_answer(&app, inc))))
}

async fn update_incident(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    b: JsonBody<MessageBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b = body(b)?;
    let op = IncidentOp::Update {
        id,
        message: b.message,
    };
    let inc = app.control.incident(op, actor(b.by, &headers)).await?;
    Ok(Json(incident_answer(&app, inc)))
}

async fn resolve_incident(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    b: Option<Json<MessageBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (message, by) = b.map_or((String::new(), None), |Json(b)| (b.message, b.by));
    let op = IncidentOp::Resolve { id, message };
    let inc = app.control.incident(op, actor(by, &headers)).await?;
    Ok(Json(incident_answer(&app, inc)))
}

async fn reload(
    State(app): State<App>,
    headers: HeaderMap,
    b: Option<Json<MessageBody>>,
) -> Response {
    let by = b.and_then(|Json(b)| b.by);
    match app.control.reload(actor(by, &headers)).await {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "error": format!("reload failed; still serving the previous config ({} error(s))", list.len()),
                    "errors": list,
                })),
            )
                .into_response()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyTestBody {
    sink: Option<usize>,
    by: Option<String>,
}

/// Sends a test event through every sink (or one); answers each sink's result.
async fn notify_test(
    State(app): State<App>,
    headers: HeaderMap,
    b: Option<Json<NotifyTestBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (sink, by) = b.map_or((None, None), |Json(b)| (b.sink, b.by));
    let notifier = app.control.notifier().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "notifications are not running".into(),
        )
    })?;
    let results = notifier
        .test(sink, &actor(by, &headers).who)
        .await
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e))?;
    Ok(Json(json!({ "results": results })))
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        telemetry::render(),
    )
}

/// Binds `admin_listen` and serves the API until `cancel` fires. Returns where it listens.
/// `beside`: routes served on the same listener outside the API's bearer token and JSON
/// errors (the operator console, which signs people in itself).
pub async fn serve(
    config: &Config,
    caps: crate::fds::Caps,
    control: Arc<Control>,
    beside: Option<Router>,
    cancel: CancellationToken,
    tasks: &mut tokio::task::JoinSet<io::Result<()>>,
) -> io::Result<String> {
    telemetry::install();
    // One site per listener: the token decides whether requests need a bearer token.
    let site = |token: Option<String>| http::Site {
        router: match &beside {
            Some(r) => router_for(control.clone(), token).merge(r.clone()),
            None => router_for(control.clone(), token),
        },
        tls: None,
        limits: HttpLimits {
            max_connections: caps.admin,
            ..config.server.http.admin()
        },
        name: "admin API",
    };
    match &config.server.admin_listen {
        AdminListen::Tcp(addr) => {
            let (token, problem) = ensure_token(&config.admin.token_file)?;
            if let Some(p) = problem {
                control.add_problem(p);
            }
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let bound = listener.local_addr()?;
            let site = site(Some(token));
            tasks.spawn(http::serve(http::Listener::Tcp(listener), site, cancel));
            Ok(bound.to_string())
        }
        AdminListen::Unix(path) => {
            let listener = bind_unix(path)?;
            let site = site(None);
            let p = path.clone();
            tasks.spawn(async move {
                let r = http::serve(http::Listener::Unix(listener), site, cancel).await;
                std::fs::remove_file(&p)?;
                r
            });
            Ok(format!("unix:{}", path.display()))
        }
    }
}
