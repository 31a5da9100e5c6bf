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

use crate::config::{AdminListen, Config};
use crate::control::Control;
use crate::overrides::{Forced, Override};
use crate::states::{Actor, IncidentOp, OperatorError};
use crate::{audit, status, store, telemetry};

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
        };
        ApiError(code, e.to_string())
    }
}

/// Reads the token file, creating it (0600, random) when missing.
pub fn ensure_token(path: &Path) -> io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    store::atomic_write(path, format!("{token}\n").as_bytes())?;
    set_mode(path, 0o600)?;
    info!(file = %path.display(), "created a new admin token");
    Ok(token)
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The routes of the admin API.
fn router(app: App) -> Router {
    Router::new()
        .route("/api/v1/status", get(get_status))
        .route("/api/v1/audit", get(get_audit))
        .route("/api/v1/overrides/{service}", put(put_override))
        .route("/api/v1/overrides/{service}", delete(delete_override))
        .route("/api/v1/incidents", post(open_incident))
        .route("/api/v1/incidents/{id}/updates", post(update_incident))
        .route("/api/v1/incidents/{id}/resolve", post(resolve_incident))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/notify/test", post(notify_test))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .with_state(app)
}

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
            warn!(peer = %peer, path = %req.uri().path(), "admin request refused: missing or wrong bearer token");
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
    Json(status::build(
        &snap,
        Some((app.control.last_reload(), app.control.problems())),
    ))
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn get_audit(
    State(app): State<App>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<audit::Entry>>, ApiError> {
    let dir = app.control.snapshots.load().config.server.state_dir.clone();
    audit::tail(&dir, q.limit.unwrap_or(50))
        .map(Json)
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read audit log: {e}"),
            )
        })
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
}

/// `until` as RFC 3339 or as a duration from now ("2h").
pub fn parse_until(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = crate::config::duration::parse(s).map_err(|_| {
        format!("invalid until {s:?}: expected a duration such as \"2h\" or an RFC 3339 time")
    })?;
    chrono::Duration::from_std(d)
        .map(|d| now + d)
        .map_err(|_| format!("until {s:?} is too far away"))
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
    app.control
        .set_override(&service, Some(o.clone()), actor)
        .await?;
    Ok(Json(json!({ "service": service, "override": o })))
}

#[derive(Deserialize)]
struct ByQuery {
    by: Option<String>,
    /// Why the override is cleared (audit log, notifications).
    reason: Option<String>,
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
        .clear_override(&service, &reason, actor(q.by, &headers))
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
) -> Result<(StatusCode, Json<crate::incidents::Incident>), ApiError> {
    let b = body(b)?;
    let op = IncidentOp::Open {
        services: b.services,
        message: b.message,
    };
    let inc = app.control.incident(op, actor(b.by, &headers)).await?;
    Ok((StatusCode::CREATED, Json(inc)))
}

async fn update_incident(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    b: JsonBody<MessageBody>,
) -> Result<Json<crate::incidents::Incident>, ApiError> {
    let b = body(b)?;
    let op = IncidentOp::Update {
        id,
        message: b.message,
    };
    Ok(Json(app.control.incident(op, actor(b.by, &headers)).await?))
}

async fn resolve_incident(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    b: Option<Json<MessageBody>>,
) -> Result<Json<crate::incidents::Incident>, ApiError> {
    let (message, by) = b.map_or((String::new(), None), |Json(b)| (b.message, b.by));
    let op = IncidentOp::Resolve { id, message };
    Ok(Json(app.control.incident(op, actor(by, &headers)).await?))
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
pub async fn serve(
    config: &Config,
    control: Arc<Control>,
    cancel: CancellationToken,
    tasks: &mut tokio::task::JoinSet<io::Result<()>>,
) -> io::Result<String> {
    telemetry::install();
    match &config.server.admin_listen {
        AdminListen::Tcp(addr) => {
            let token = ensure_token(&config.admin.token_file)?;
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let bound = listener.local_addr()?;
            let app = App {
                control,
                token: Some(Arc::new(token)),
            };
            let svc = router(app).into_make_service_with_connect_info::<SocketAddr>();
            tasks.spawn(async move {
                axum::serve(listener, svc)
                    .with_graceful_shutdown(async move { cancel.cancelled().await })
                    .await
            });
            Ok(bound.to_string())
        }
        AdminListen::Unix(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // A socket left by a previous run would make bind fail.
            if std::fs::symlink_metadata(path).is_ok() {
                std::fs::remove_file(path)?;
            }
            let listener = tokio::net::UnixListener::bind(path)?;
            set_mode(path, 0o600)?;
            let app = App {
                control,
                token: None,
            };
            let svc = router(app);
            let p = path.clone();
            tasks.spawn(async move {
                let r = axum::serve(listener, svc)
                    .with_graceful_shutdown(async move { cancel.cancelled().await })
                    .await;
                let _ = std::fs::remove_file(&p);
                r
            });
            Ok(format!("unix:{}", path.display()))
        }
    }
}
