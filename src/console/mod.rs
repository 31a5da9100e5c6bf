//! The operator console: web pages under `/console/` on `admin_listen` for the people on the
//! rota who have no shell on the DNS host, signed in with local accounts (not single
//! sign-on, which may be what is down).
//!
//! - [`accounts`]: `state_dir/accounts.json`, Argon2id hashes, roles; `detour user` writes it.
//! - [`sessions`]: in-memory sessions (idle and absolute timeouts), the sign-in gate (an
//!   account locks after wrong passwords; each source has a budget).
//! - [`routes`]: the pages (askama templates in `templates/console/`): dashboard, incident
//!   forms with templates and a preview rendered by the page's own renderer, overrides and
//!   maintenance, reload, the audit history.
//!
//! Every action goes through the same [`Control`] operations as the admin API and the CLI,
//! with the account's name as the actor, so the audit log names who did it. Every POST
//! carries the session's CSRF token and must come from the console's own origin
//! (`Origin`, `Sec-Fetch-Site`); the session cookie is `HttpOnly`, `SameSite=Strict`, and
//! `Secure` with the `__Host-` prefix when served over TLS. A communicator never changes DNS.

pub mod accounts;
pub mod routes;
pub mod sessions;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::error;

use crate::config::Config;
use crate::control::Control;
use accounts::Accounts;
use sessions::{Gate, Sessions};

/// Content-Security-Policy of the console's pages: nothing from elsewhere; its own small
/// script (the live preview, which the pages do not need); forms post only to itself; the
/// preview is an inline, sandboxed frame.
pub const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; frame-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A cluster's unreadable accounts are logged at most this often.
static BAD_ACCOUNTS_LOG: crate::telemetry::Throttle =
    crate::telemetry::Throttle::new(std::time::Duration::from_secs(60));

/// `accounts.json` as last read, and what it was read from (modification time and length),
/// so that it is read again only when `detour user` changed it.
#[derive(Debug)]
struct AccountsFile {
    key: Option<(SystemTime, u64)>,
    accounts: Result<Arc<Accounts>, String>,
}

/// The console's state, shared by every request.
#[derive(Debug)]
pub struct Console {
    control: Arc<Control>,
    sessions: Sessions,
    gate: Gate,
    accounts: Mutex<AccountsFile>,
    /// Served over TLS: cookies are `Secure` with the `__Host-` prefix.
    secure: bool,
}

impl Console {
    /// The console over `control`; `secure` when its listener is TLS.
    pub fn new(control: Arc<Control>, secure: bool) -> Self {
        Self {
            control,
            sessions: Sessions::default(),
            gate: Gate::default(),
            accounts: Mutex::new(AccountsFile {
                key: None,
                accounts: Ok(Arc::new(Accounts::default())),
            }),
            secure,
        }
    }

    /// The config in force.
    fn config(&self) -> Arc<Config> {
        self.control.snapshots.load().config.clone()
    }

    fn state_dir(&self) -> PathBuf {
        self.config().server.state_dir.clone()
    }

    /// The accounts: in a cluster, etcd's `accounts` key as the mirror last saw it (a
    /// change there reaches every instance by its watch); else `accounts.json`, read again
    /// when the file changed (a stat per request). An unreadable document is logged once
    /// per change and lets nobody in.
    fn accounts(&self) -> Result<Arc<Accounts>, String> {
        if let Some(cluster) = self.control.cluster() {
            let view = cluster.view().borrow().clone();
            return match &view.accounts {
                None => Ok(Arc::new(Accounts::default())),
                Some(raw) => accounts::parse(raw).map(Arc::new).map_err(|e| {
                    if let Some(held) = BAD_ACCOUNTS_LOG.allow() {
                        error!("console: the cluster's accounts: {e}; nobody can sign in until it is fixed ({held} more)");
                    }
                    e
                }),
            };
        }
        let dir = self.state_dir();
        let p = accounts::path(&dir);
        let key = std::fs::metadata(&p)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let mut f = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if f.key != key || key.is_none() {
            f.accounts = accounts::load(&dir).map(Arc::new).map_err(|e| {
                if f.key != key {
                    error!("console: {e}; nobody can sign in until it is fixed");
                }
                e.to_string()
            });
            f.key = key;
        }
        f.accounts.clone()
    }

    /// The session cookie's name.
    fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-detour_console"
        } else {
            "detour_console"
        }
    }

    /// The sign-in form's cookie (double-submit token against login CSRF).
    fn login_cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-detour_console_login"
        } else {
            "detour_console_login"
        }
    }

    /// A `Set-Cookie` value: `name=value` with the console's attributes (`max_age` 0 ends it).
    fn cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
        let mut c = format!("{name}={value}; HttpOnly; SameSite=Strict");
        if self.secure {
            // `__Host-` cookies must have Path=/ and Secure.
            c.push_str("; Path=/; Secure");
        } else {
            c.push_str("; Path=/console/");
        }
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
    }
}

/// The value of cookie `name` in the request, if sent.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The host a request names: its `Host` header, or for HTTP/2 the URI's authority.
fn request_host(req: &axum::extract::Request) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_string()
}

/// True when a POST comes from the console's own pages as far as the browser says:
/// `Sec-Fetch-Site` (when sent) is `same-origin`, and `Origin` (when sent) is this `host`.
/// Clients that send neither (curl, scripts) still need the CSRF token.
fn same_origin(headers: &HeaderMap, host: &str, secure: bool) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return false;
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let scheme = if secure { "https" } else { "http" };
        return !host.is_empty() && origin.as_bytes() == format!("{scheme}://{host}").as_bytes();
    }
    true
}

/// An HTML response with the console's headers (never cached, never framed).
fn html(status: StatusCode, body: Result<String, askama::Error>) -> Response {
    match body {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "same-origin"),
                (header::X_FRAME_OPTIONS, "DENY"),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            error!("console: cannot render: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CACHE_CONTROL, "no-store")],
                "cannot render the page\n",
            )
                .into_response()
        }
    }
}

/// A redirect after a POST (303: the browser GETs `to`).
fn see_other(to: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, to), (header::CACHE_CONTROL, "no-store")],
    )
        .into_response()
}

/// Binds every `[console] listen` address (HTTPS, certificates by SNI from `[console] certs`
/// or `[page.tls] certs`, read at start) and serves the console alone there until `cancel`
/// fires. Returns the URLs listened on ("https://127.0.0.1:8443").
pub async fn serve(
    config: &Config,
    caps: crate::fds::Caps,
    control: Arc<Control>,
    cancel: tokio_util::sync::CancellationToken,
    tasks: &mut tokio::task::JoinSet<std::io::Result<()>>,
) -> std::io::Result<Vec<String>> {
    let c = &config.console;
    if c.listen.is_empty() {
        return Ok(Vec::new());
    }
    let acceptor = crate::page::tls_acceptor(&c.certs)?;
    let router = router(control, true);
    let mut urls = Vec::new();
    for addr in &c.listen {
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen for the console on {addr} (HTTPS): {e}"),
            )
        })?;
        urls.push(format!("https://{}", l.local_addr()?));
        let site = crate::http::Site {
            router: router.clone(),
            tls: Some(acceptor.clone()),
            limits: crate::config::HttpLimits {
                max_connections: caps.admin,
                ..config.server.http.admin()
            },
            name: "console (HTTPS)",
        };
        tasks.spawn(crate::http::serve(
            crate::http::Listener::Tcp(l),
            site,
            cancel.clone(),
        ));
    }
    Ok(urls)
}

/// The console's routes, for `admin_listen` (merged outside the admin API's bearer token:
/// the console signs people in itself). `secure`: served over TLS.
pub fn router(control: Arc<Control>, secure: bool) -> Router {
    routes::router(Arc::new(Console::new(control, secure)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_reads_what_the_browser_says() {
        let host = "127.0.0.1:8053";
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            m
        };
        assert!(same_origin(&h(&[]), host, false));
        let ours = [
            ("origin", "http://127.0.0.1:8053"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(same_origin(&h(&ours), host, false));
        assert!(
            !same_origin(&h(&ours), host, true),
            "https is another origin"
        );
        assert!(!same_origin(&h(&ours), "", false), "no host, no match");
        assert!(!same_origin(
            &h(&[("origin", "http://evil.test")]),
            host,
            false
        ));
        assert!(!same_origin(
            &h(&[("sec-fetch-site", "cross-site")]),
            host,
            false
        ));
        assert!(!same_origin(
            &h(&[("sec-fetch-site", "same-site")]),
            host,
            false
        ));
        let c = h(&[("cookie", "a=1; detour_console=abc ; b=2")]);
        assert_eq!(cookie_value(&c, "detour_console"), Some("abc"));
        assert_eq!(cookie_value(&c, "detour"), None);
    }
}
