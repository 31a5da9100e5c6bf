//! The console's pages and what their forms do. Each GET renders a page from the current
//! Snapshot; each POST checks the session, the CSRF token and the role, then calls the same
//! [`crate::control::Control`] operation the admin API calls, and answers with a redirect
//! (303) to the page that shows the result.
//!
//! | path                          | what                                                |
//! |-------------------------------|-----------------------------------------------------|
//! | `/console/`                   | dashboard: services, DNS answers and why, incidents, on call |
//! | `/console/login`, `/logout`   | sign in (GET form, POST) and out (POST)             |
//! | `/console/incidents/new`      | open an incident, from a template; preview          |
//! | `/console/incidents/{id}`     | an incident: post an update, resolve; preview       |
//! | `/console/dns`                | overrides, maintenance, reload (operators)          |
//! | `/console/audit`              | the audit history                                   |
//! | `/console/console.js`         | the live preview (optional; forms work without it)  |
//!
//! Drills (issue 19) will be one more operator form on `/console/dns`, calling the drill
//! operation the CLI gets, behind [`accounts::Role::changes_dns`] like overrides.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use tracing::{info, warn};

use super::accounts;
use super::sessions::{Limits, Refusal, Session, token};
use super::{Console, cookie_value, html, request_host, same_origin, see_other};
use crate::health::ServiceState;
use crate::incidents::{Incident, Incidents, Update};
use crate::overrides::{Forced, Override};
use crate::page::{Preview, state_class, state_label};
use crate::states::{Actor, IncidentOp, OperatorError};

/// The largest form body taken.
const FORM_MAX: usize = 64 * 1024;

/// Audit entries the history page shows.
const AUDIT_SHOWN: usize = 200;

/// The live preview: posts the form as it is typed and shows the page it would make. The
/// Preview button does the same without it.
const SCRIPT: &str = r#"// detour console: live preview (optional; the Preview button works without it).
(function () {
  var form = document.querySelector('form[data-preview]');
  var frame = document.getElementById('preview-frame');
  var what = document.getElementById('preview-what');
  if (!form || !frame || !what) { return; }
  var timer = null;
  function refresh() {
    var data = new URLSearchParams(new FormData(form));
    data.set('do', 'preview-json');
    fetch(form.action, { method: 'POST', body: data, credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (!j) { return; }
        frame.srcdoc = j.html;
        what.textContent = 'Live preview: ' + j.what + '. Nothing is sent until you post.';
        document.getElementById('preview').hidden = false;
      })
      .catch(function () {});
  }
  form.addEventListener('input', function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 500);
  });
})();
"#;

/// The routes (all under `/console`).
pub(super) fn router(c: Arc<Console>) -> Router {
    Router::new()
        .route("/console", get(|| async { see_other("/console/") }))
        .route("/console/", get(dashboard))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", axum::routing::post(logout))
        .route(
            "/console/incidents/new",
            get(new_incident_form).post(new_incident),
        )
        .route(
            "/console/incidents/{id}",
            get(incident_page).post(incident_post),
        )
        .route("/console/dns", get(dns_page))
        .route("/console/dns/override", axum::routing::post(dns_override))
        .route(
            "/console/dns/maintenance",
            axum::routing::post(dns_maintenance),
        )
        .route("/console/dns/clear", axum::routing::post(dns_clear))
        .route("/console/dns/reload", axum::routing::post(dns_reload))
        .route("/console/dns/drill", axum::routing::post(dns_drill))
        .route(
            "/console/dns/drill/stop",
            axum::routing::post(dns_drill_stop),
        )
        .route("/console/audit", get(audit_page))
        .route("/console/console.js", get(script))
        .route("/console/{*rest}", axum::routing::any(not_found))
        .with_state(c)
}

// ------------ Shared parts of every page -------------------------------------------------

/// Who is signed in, as the header shows it.
struct Who {
    name: String,
    role: &'static str,
    operator: bool,
}

/// What every console page shows around its content.
struct Base {
    /// `[page] title`.
    site: String,
    /// The signed-in person, if any.
    who: Option<Who>,
    /// The session's CSRF token (the sign-out form carries it).
    csrf: String,
    /// One line from the last action.
    flash: Option<String>,
    /// Which tab: "home", "incident", "dns", "audit".
    nav: &'static str,
}

/// A signed-in request: the session id and the session.
struct Signed {
    id: String,
    s: Session,
}

impl Console {
    fn base(&self, signed: Option<&Signed>, nav: &'static str) -> Base {
        Base {
            site: self.config().page.title.clone(),
            who: signed.map(|x| Who {
                name: x.s.account.clone(),
                role: x.s.role.as_str(),
                operator: x.s.role.changes_dns(),
            }),
            csrf: signed.map(|x| x.s.csrf.clone()).unwrap_or_default(),
            flash: signed.and_then(|x| x.s.flash.clone()),
            nav,
        }
    }

    /// The live session the request's cookie names, if any.
    fn signed_in(&self, headers: &HeaderMap) -> Option<Signed> {
        let id = cookie_value(headers, self.cookie_name())?;
        let cfg = self.config();
        let accts = self.accounts().ok()?;
        let s = self.sessions.get(
            id,
            Instant::now(),
            cfg.console.idle_timeout,
            cfg.console.absolute_timeout,
            |n| accts.get(n).cloned(),
        )?;
        Some(Signed {
            id: id.to_string(),
            s,
        })
    }

    /// The actor of a signed-in person's action: the account's name.
    fn actor(signed: &Signed) -> Actor {
        Actor {
            who: signed.s.account.clone(),
        }
    }

    fn zone(&self) -> Option<Tz> {
        self.config().page.timezone
    }
}

/// `t` as the console shows it: "14:02 EST, Thu 24 Dec".
fn when(t: DateTime<Utc>, zone: Option<Tz>) -> String {
    let (l, label) = crate::page::zoned(t, zone);
    format!("{} {label}, {}", l.format("%H:%M"), l.format("%a %-d %b"))
}

/// A parsed form body.
struct Form(Vec<(String, String)>);

impl Form {
    /// The first value of `name`, trimmed ("" when absent).
    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// Every value of `name` (ticked checkboxes).
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

async fn read_form(req: Request) -> Option<Form> {
    let body = axum::body::to_bytes(req.into_body(), FORM_MAX).await.ok()?;
    Some(Form(
        url::form_urlencoded::parse(&body).into_owned().collect(),
    ))
}

#[derive(Template)]
#[template(path = "console/message.html", config = "templates/askama.toml")]
struct MessagePage {
    b: Base,
    heading: String,
    text: String,
    back: &'static str,
}

/// A page with one message and a way back.
fn message(
    c: &Console,
    signed: Option<&Signed>,
    status: StatusCode,
    heading: &str,
    text: String,
    back: &'static str,
) -> Response {
    let page = MessagePage {
        b: c.base(signed, ""),
        heading: heading.into(),
        text,
        back,
    };
    html(status, page.render())
}

async fn not_found(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let signed = c.signed_in(&headers);
    message(
        &c,
        signed.as_ref(),
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page in the console.".into(),
        "/console/",
    )
}

/// A POST from a signed-in person with the session's CSRF token, from the console's own
/// origin: the session and the form; otherwise the refusal to send.
async fn checked_post(c: &Console, req: Request) -> Result<(Signed, Form), Response> {
    let headers = req.headers().clone();
    let host = request_host(&req);
    let Some(signed) = c.signed_in(&headers) else {
        return Err(message(
            c,
            None,
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your session has ended (signed out, timed out, or the account changed). Sign in again; nothing was changed.".into(),
            "/console/login",
        ));
    };
    let origin_ok = same_origin(&headers, &host, c.secure);
    let form = read_form(req).await;
    let token_ok = form
        .as_ref()
        .is_some_and(|f| super::sessions::same(f.get("csrf"), &signed.s.csrf));
    if !origin_ok || !token_ok {
        warn!(
            account = %signed.s.account,
            "console: a POST without this session's CSRF token or from another origin was refused"
        );
        return Err(message(
            c,
            Some(&signed),
            StatusCode::FORBIDDEN,
            "Refused",
            "This form did not come from the console (its security token is missing or wrong). Nothing was changed; reload the page and try again.".into(),
            "/console/",
        ));
    }
    match form {
        Some(f) => Ok((signed, f)),
        None => Err(message(
            c,
            Some(&signed),
            StatusCode::BAD_REQUEST,
            "Refused",
            "The form could not be read.".into(),
            "/console/",
        )),
    }
}

/// The refusal of a communicator's attempt to change DNS; `None` for an operator.
fn operators_only(c: &Console, signed: &Signed, what: &str) -> Option<Response> {
    if signed.s.role.changes_dns() {
        return None;
    }
    warn!(account = %signed.s.account, "console: a communicator tried to {what}; refused");
    Some(message(
        c,
        Some(signed),
        StatusCode::FORBIDDEN,
        "Operators only",
        format!(
            "Your account ({}) is a communicator: it posts incidents and announcements but cannot {what}. Ask an operator (the dashboard shows who is on call).",
            signed.s.account
        ),
        "/console/dns",
    ))
}

/// Tells the session's next page what happened, and goes there.
fn done(c: &Console, signed: &Signed, line: String, to: &str) -> Response {
    c.sessions.flash(&signed.id, line);
    see_other(to)
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCRIPT,
    )
        .into_response()
}

// ------------ Signing in and out -----------------------------------------------------------

#[derive(Template)]
#[template(path = "console/login.html", config = "templates/askama.toml")]
struct LoginPage {
    b: Base,
    token: String,
    name: String,
    error: Option<String>,
}

/// The sign-in form, with a fresh double-submit token in a cookie and in the form.
fn login_page(c: &Console, status: StatusCode, name: String, error: Option<String>) -> Response {
    let t = token();
    let page = LoginPage {
        b: c.base(None, ""),
        token: t.clone(),
        name,
        error,
    };
    let mut resp = html(status, page.render());
    resp.headers_mut().append(
        header::SET_COOKIE,
        c.cookie(c.login_cookie_name(), &t, Some(3600)),
    );
    resp
}

async fn login_form(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if c.signed_in(&headers).is_some() {
        return see_other("/console/");
    }
    login_page(&c, StatusCode::OK, String::new(), None)
}

async fn login(State(c): State<Arc<Console>>, req: Request) -> Response {
    let headers = req.headers().clone();
    let host = request_host(&req);
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip());
    let Some(form) = read_form(req).await else {
        return login_page(
            &c,
            StatusCode::BAD_REQUEST,
            String::new(),
            Some("The form could not be read.".into()),
        );
    };
    let cookie = cookie_value(&headers, c.login_cookie_name()).unwrap_or("");
    if !same_origin(&headers, &host, c.secure)
        || cookie.is_empty()
        || !super::sessions::same(form.get("csrf"), cookie)
    {
        return login_page(
            &c,
            StatusCode::FORBIDDEN,
            String::new(),
            Some(
                "This sign-in form expired or did not come from here. Try again with this one."
                    .into(),
            ),
        );
    }
    // No valid name is longer than 64 characters; longer ones are kept (by the gate, the
    // log) cut to that, so that a huge form cannot fill memory.
    let name: String = form
        .get("name")
        .to_ascii_lowercase()
        .chars()
        .take(64)
        .collect();
    let password = form
        .0
        .iter()
        .find(|(k, _)| k == "password")
        .map_or(String::new(), |(_, v)| v.clone());
    let cfg = c.config();
    let limits = Limits {
        lockout_after: cfg.console.lockout_after,
        lockout: cfg.console.lockout,
        source_limit: cfg.console.source_limit,
    };
    let now = Instant::now();
    let minutes = |d: std::time::Duration| d.as_secs().div_ceil(60).max(1);
    let accts = match c.accounts() {
        Ok(a) => a,
        Err(e) => {
            return message(
                &c,
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in unavailable",
                format!(
                    "The accounts file cannot be read ({e}). An administrator must fix it on the server."
                ),
                "/console/login",
            );
        }
    };
    let stamp = accts.get(&name).map(|a| a.hash.clone());
    match c.gate.admit(&name, stamp.as_deref(), peer, now, limits) {
        Ok(()) => {}
        Err(Refusal::Locked(left)) => {
            return login_page(
                &c,
                StatusCode::TOO_MANY_REQUESTS,
                name,
                Some(format!(
                    "Too many wrong passwords for this account: it is locked for {} more minute(s). Wait, or ask an operator to reset the password (`detour user passwd`).",
                    minutes(left)
                )),
            );
        }
        Err(Refusal::Source(left)) => {
            return login_page(
                &c,
                StatusCode::TOO_MANY_REQUESTS,
                name,
                Some(format!(
                    "Too many sign-in attempts from your address: try again in {} minute(s).",
                    minutes(left)
                )),
            );
        }
    }
    let n = name.clone();
    // Argon2id takes tens of milliseconds on purpose: not on the async workers.
    let found =
        tokio::task::spawn_blocking(move || accounts::authenticate(&accts, &n, &password).cloned())
            .await
            .ok()
            .flatten();
    let Some(account) = found else {
        if c.gate.failed(&name, stamp.as_deref(), now, limits) {
            warn!(account = %crate::text::escape(&name), "console: sign-in locked after {} wrong passwords", limits.lockout_after);
        } else {
            info!(account = %crate::text::escape(&name), "console: wrong name or password");
        }
        return login_page(
            &c,
            StatusCode::UNAUTHORIZED,
            name,
            Some("Wrong name or password.".into()),
        );
    };
    c.gate.succeeded(&name);
    let id = c.sessions.create(&account, now);
    info!(account = %account.name, role = account.role.as_str(), "console: signed in");
    let mut resp = see_other("/console/");
    let h = resp.headers_mut();
    h.append(header::SET_COOKIE, c.cookie(c.cookie_name(), &id, None));
    h.append(
        header::SET_COOKIE,
        c.cookie(c.login_cookie_name(), "", Some(0)),
    );
    resp
}

async fn logout(State(c): State<Arc<Console>>, req: Request) -> Response {
    let (signed, _) = match checked_post(&c, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    c.sessions.remove(&signed.id);
    info!(account = %signed.s.account, "console: signed out");
    let mut resp = see_other("/console/login");
    resp.headers_mut()
        .append(header::SET_COOKIE, c.cookie(c.cookie_name(), "", Some(0)));
    resp
}

// ------------ Dashboard ------------------------------------------------------------------

/// A service on the dashboard.
struct ServiceLine {
    id: String,
    name: String,
    label: &'static str,
    class: &'static str,
    since: String,
    reason: String,
    /// "down, set by dana, until 16:00 EST: reason".
    override_: Option<String>,
    /// What the checks see under an override.
    observed: Option<String>,
}

/// A dynamic record: what DNS answers now, and why.
struct RecordLine {
    name: String,
    rtype: String,
    values: String,
    because: String,
    outage: bool,
}

/// An open incident, in one line.
struct IncidentLine {
    id: String,
    services: String,
    opened: String,
    last: String,
}

#[derive(Template)]
#[template(path = "console/dashboard.html", config = "templates/askama.toml")]
struct DashboardPage {
    b: Base,
    headline: String,
    services: Vec<ServiceLine>,
    records: Vec<RecordLine>,
    incidents: Vec<IncidentLine>,
    /// (who now, until, who next).
    oncall: Option<(String, String, String)>,
    /// `[[maintenance]]` windows not over yet: (services, start, end, message, under way).
    windows: Vec<(String, String, String, String, bool)>,
    frozen: bool,
    problems: Vec<String>,
}

fn override_line(o: &Override, zone: Option<Tz>) -> String {
    let mut s = ServiceState::from(o.state).to_string();
    if let Some(by) = &o.by {
        s.push_str(&format!(", set by {by}"));
    }
    match o.until {
        Some(u) => s.push_str(&format!(", until {}", when(u, zone))),
        None => s.push_str(", until cleared"),
    }
    if !o.reason.is_empty() {
        s.push_str(&format!(": {}", o.reason));
    }
    s
}

fn service_names(config: &crate::config::Config, ids: &[String]) -> String {
    ids.iter()
        .map(|i| {
            config
                .services
                .get(i)
                .map_or(i.as_str(), |s| s.name.as_str())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn dashboard(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(signed) = c.signed_in(&headers) else {
        return see_other("/console/login");
    };
    let snap = c.control.snapshots.load_full();
    let doc = crate::status::build(&snap, Some((c.control.last_reload(), c.control.problems())));
    let zone = c.zone();
    let services: Vec<ServiceLine> = doc
        .services
        .iter()
        .map(|s| ServiceLine {
            id: s.id.clone(),
            name: s.name.clone(),
            label: state_label(&s.state),
            class: state_class(&s.state),
            since: when(s.since, zone),
            reason: s.reason.clone(),
            override_: s.override_.as_ref().map(|o| override_line(o, zone)),
            observed: s.override_.as_ref().map(|_| {
                let mut o = format!("checks see it {}", s.observed);
                if !s.observed_reason.is_empty() {
                    o.push_str(&format!(" ({})", s.observed_reason));
                }
                o
            }),
        })
        .collect();
    let troubled = services.iter().filter(|s| s.class != "ok").count();
    let headline = match troubled {
        0 => "Every service is working".to_string(),
        1 => "1 service has a problem".to_string(),
        n => format!("{n} services have a problem"),
    };
    let records = doc
        .records
        .iter()
        .map(|r| RecordLine {
            name: r.name.clone(),
            rtype: r.rtype.clone(),
            values: r.values.join(", "),
            because: r.because.clone(),
            outage: r.outage,
        })
        .collect();
    let incidents = snap
        .incidents
        .open()
        .map(|i| IncidentLine {
            id: i.id.clone(),
            services: service_names(&snap.config, &i.services),
            opened: when(i.opened_at, zone),
            last: i
                .updates
                .last()
                .map(|u| u.message.clone())
                .unwrap_or_default(),
        })
        .collect();
    let oncall = c
        .control
        .notifier()
        .and_then(|n| n.oncall(Utc::now()))
        .map(|v| (v.now.name, when(v.now.until, zone), v.next.name));
    let windows = doc
        .maintenance
        .iter()
        .map(|m| {
            (
                service_names(&snap.config, &m.services),
                when(m.start, zone),
                when(m.end, zone),
                m.message.clone(),
                m.active,
            )
        })
        .collect();
    let page = DashboardPage {
        b: c.base(Some(&signed), "home"),
        headline,
        services,
        records,
        incidents,
        oncall,
        windows,
        frozen: doc.guard.frozen,
        problems: doc.problems,
    };
    html(StatusCode::OK, page.render())
}

// ------------ Incidents ------------------------------------------------------------------

/// A service to tick.
struct Tick {
    id: String,
    name: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "console/incident_new.html", config = "templates/askama.toml")]
struct NewIncidentPage {
    b: Base,
    /// (index, name) of each `[[incident_templates]]`.
    templates: Vec<(usize, String)>,
    services: Vec<Tick>,
    message: String,
    error: Option<String>,
    preview: Option<Preview>,
    /// The email and text message it would send, and to whom (with a preview).
    messages: Option<MessagePreview>,
}

#[derive(Deserialize)]
struct TemplateQuery {
    template: Option<usize>,
}

fn ticks(config: &crate::config::Config, chosen: &[String]) -> Vec<Tick> {
    config
        .services
        .values()
        .map(|s| Tick {
            id: s.id.clone(),
            name: s.name.clone(),
            checked: chosen.contains(&s.id),
        })
        .collect()
}

fn new_incident_view(
    c: &Console,
    signed: &Signed,
    services: &[String],
    message: String,
    error: Option<String>,
    preview: Option<Preview>,
) -> NewIncidentPage {
    let cfg = c.config();
    NewIncidentPage {
        b: c.base(Some(signed), "incident"),
        templates: cfg
            .incident_templates
            .iter()
            .enumerate()
            .map(|(i, t)| (i, t.name.clone()))
            .collect(),
        services: ticks(&cfg, services),
        message,
        error,
        preview,
        messages: None,
    }
}

async fn new_incident_form(
    State(c): State<Arc<Console>>,
    Query(q): Query<TemplateQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(signed) = c.signed_in(&headers) else {
        return see_other("/console/login");
    };
    let cfg = c.config();
    let (services, message) = match q.template.and_then(|i| cfg.incident_templates.get(i)) {
        Some(t) => (t.services.clone(), t.message.clone()),
        None => (Vec::new(), String::new()),
    };
    let page = new_incident_view(&c, &signed, &services, message, None, None);
    html(StatusCode::OK, page.render())
}

/// The page as it would be with `incidents`: rendered by the page's own templates.
fn render_preview(c: &Console, incidents: Incidents, services: &[String]) -> Option<Preview> {
    let snap = c.control.snapshots.load_full();
    match crate::page::preview(&snap, incidents, services, Utc::now()) {
        Ok(p) => Some(p),
        Err(e) => {
            warn!("console: cannot render the preview: {e}");
            None
        }
    }
}

/// What an incident change would send: the email's subject and text, the text message, and
/// whom it would reach, rendered by the notifications' own code.
pub struct MessagePreview {
    /// The email's subject.
    pub subject: String,
    /// The email's plain-text body.
    pub text: String,
    /// The text message (at most 160 characters).
    pub sms: String,
    /// Whom it would reach ("on call: Dana (SMS)", "312 subscribers queued").
    pub notified: String,
}

/// The messages `inc` (as it would be after `action`) would send; nothing is sent.
fn message_preview(
    c: &Console,
    inc: Option<&Incident>,
    action: &str,
    account: &str,
) -> Option<MessagePreview> {
    use crate::notify::{message, payload};
    let inc = inc?;
    let said = inc.updates.last().map_or("", |u| u.message.as_str());
    let event = crate::events::Event::incident(inc.clone(), action, said, account);
    let notice = payload::Notice::single(event.clone());
    let ctx = payload::Context::of(&c.config());
    let to = message::Addressing {
        why: "You get this as a subscriber of these services or as detour's on-call person.".into(),
        ..message::Addressing::default()
    };
    let m = message::build(&notice, &ctx, &to);
    let text = match message::bodies(&m) {
        Ok((text, _html)) => text,
        Err(e) => {
            warn!("console: cannot render the message preview: {e}");
            return None;
        }
    };
    let reach = c
        .control
        .notifier()
        .map(|n| n.reach(&event))
        .unwrap_or_default();
    Some(MessagePreview {
        subject: m.subject,
        text,
        sms: message::sms(&notice, &ctx, &to),
        notified: if reach.is_empty() {
            "nobody: no [[notify]] sink takes incidents".into()
        } else {
            reach.join("; ")
        },
    })
}

/// The preview as JSON, for the live preview script.
fn preview_json(p: Option<Preview>) -> Response {
    match p {
        Some(p) => (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({ "what": p.what, "html": p.html })),
        )
            .into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// What an operator's refusal says on the form.
fn refusal(e: &OperatorError) -> String {
    e.to_string()
}

async fn new_incident(State(c): State<Arc<Console>>, req: Request) -> Response {
    let (signed, form) = match checked_post(&c, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let services = form.all("service");
    let message = form.get("message").to_string();
    let act = form.get("do");
    if act == "preview" || act == "preview-json" {
        let mut next = (*c.control.snapshots.load().incidents).clone();
        let now = Utc::now();
        next.list.push(Incident {
            id: "preview".into(),
            services: services.clone(),
            opened_at: now,
            resolved_at: None,
            updates: vec![Update {
                at: now,
                message: message.clone(),
                by: Some(signed.s.account.clone()),
                status: "investigating".into(),
            }],
        });
        let messages = message_preview(&c, next.list.last(), "incident.open", &signed.s.account);
        let p = render_preview(&c, next, &services);
        if act == "preview-json" {
            return preview_json(p);
        }
        let mut page = new_incident_view(&c, &signed, &services, message, None, p);
        page.messages = messages;
        return html(StatusCode::OK, page.render());
    }
    let op = IncidentOp::Open {
        services: services.clone(),
        message: message.clone(),
    };
    match c.control.incident(op, Console::actor(&signed)).await {
        Ok(inc) => {
            info!(account = %signed.s.account, incident = %inc.id, "console: incident opened");
            done(
                &c,
                &signed,
                format!("Incident {} opened; it is on the page now.", inc.id),
                &format!("/console/incidents/{}", inc.id),
            )
        }
        Err(e) => {
            let page = new_incident_view(&c, &signed, &services, message, Some(refusal(&e)), None);
            html(status_of(&e), page.render())
        }
    }
}

fn status_of(e: &OperatorError) -> StatusCode {
    match e {
        OperatorError::Invalid(_) => StatusCode::BAD_REQUEST,
        OperatorError::NotFound(_) => StatusCode::NOT_FOUND,
        OperatorError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        OperatorError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        OperatorError::Refused(_) => StatusCode::CONFLICT,
    }
}

/// One update of an incident, as the console lists them.
struct UpdateLine {
    at: String,
    status: String,
    message: String,
    by: String,
}

#[derive(Template)]
#[template(path = "console/incident.html", config = "templates/askama.toml")]
struct IncidentPage {
    b: Base,
    id: String,
    services: String,
    opened: String,
    resolved: Option<String>,
    updates: Vec<UpdateLine>,
    message: String,
    error: Option<String>,
    preview: Option<Preview>,
    /// The email and text message it would send, and to whom (with a preview).
    messages: Option<MessagePreview>,
}

fn incident_view(
    c: &Console,
    signed: &Signed,
    inc: &Incident,
    message: String,
    error: Option<String>,
    preview: Option<Preview>,
) -> IncidentPage {
    let zone = c.zone();
    let cfg = c.config();
    IncidentPage {
        b: c.base(Some(signed), "incident"),
        id: inc.id.clone(),
        services: service_names(&cfg, &inc.services),
        opened: when(inc.opened_at, zone),
        resolved: inc.resolved_at.map(|t| when(t, zone)),
        updates: inc
            .newest_first()
            .map(|u| UpdateLine {
                at: when(u.at, zone),
                status: u.status.clone(),
                message: u.message.clone(),
                by: u.by.clone().unwrap_or_default(),
            })
            .collect(),
        message,
        error,
        preview,
        messages: None,
    }
}

fn find_incident(c: &Console, id: &str) -> Option<Incident> {
    c.control
        .snapshots
        .load()
        .incidents
        .list
        .iter()
        .find(|i| i.id == id)
        .cloned()
}

async fn incident_page(
    State(c): State<Arc<Console>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Some(signed) = c.signed_in(&headers) else {
        return see_other("/console/login");
    };
    let Some(inc) = find_incident(&c, &id) else {
        return message(
            &c,
            Some(&signed),
            StatusCode::NOT_FOUND,
            "No such incident",
            format!("There is no incident {id:?}."),
            "/console/",
        );
    };
    let page = incident_view(&c, &signed, &inc, String::new(), None, None);
    html(StatusCode::OK, page.render())
}

async fn incident_post(
    State(c): State<Arc<Console>>,
    UrlPath(id): UrlPath<String>,
    req: Request,
) -> Response {
    let (signed, form) = match checked_post(&c, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(inc) = find_incident(&c, &id) else {
        return message(
            &c,
            Some(&signed),
            StatusCode::NOT_FOUND,
            "No such incident",
            format!("There is no incident {id:?}."),
            "/console/",
        );
    };
    let text = form.get("message").to_string();
    let act = form.get("do");
    if act == "preview" || act == "preview-json" || act == "preview-resolve" {
        let mut next = (*c.control.snapshots.load().incidents).clone();
        let now = Utc::now();
        if let Some(i) = next.get_mut(&id) {
            let resolving = act == "preview-resolve";
            i.updates.push(Update {
                at: now,
                message: if resolving && text.is_empty() {
                    "Resolved.".into()
                } else {
                    text.clone()
                },
                by: Some(signed.s.account.clone()),
                status: if resolving {
                    "resolved"
                } else {
                    "investigating"
                }
                .into(),
            });
            if resolving {
                i.resolved_at = Some(now);
            }
        }
        let action = if act == "preview-resolve" {
            "incident.resolve"
        } else {
            "incident.update"
        };
        let messages = message_preview(
            &c,
            next.list.iter().find(|i| i.id == id),
            action,
            &signed.s.account,
        );
        let p = render_preview(&c, next, &inc.services);
        if act == "preview-json" {
            return preview_json(p);
        }
        let mut page = incident_view(&c, &signed, &inc, text, None, p);
        page.messages = messages;
        return html(StatusCode::OK, page.render());
    }
    let (op, what) = match act {
        "resolve" => (
            IncidentOp::Resolve {
                id: id.clone(),
                message: text.clone(),
            },
            "resolved",
        ),
        _ => (
            IncidentOp::Update {
                id: id.clone(),
                message: text.clone(),
            },
            "updated",
        ),
    };
    match c.control.incident(op, Console::actor(&signed)).await {
        Ok(_) => {
            info!(account = %signed.s.account, incident = %id, "console: incident {what}");
            done(
                &c,
                &signed,
                format!("Incident {id} {what}."),
                &format!("/console/incidents/{id}"),
            )
        }
        Err(e) => {
            let page = incident_view(&c, &signed, &inc, text, Some(refusal(&e)), None);
            html(status_of(&e), page.render())
        }
    }
}

// ------------ DNS: overrides, maintenance, reload -----------------------------------------

/// A service on the DNS page.
struct DnsLine {
    id: String,
    name: String,
    label: &'static str,
    class: &'static str,
    override_: Option<String>,
}

#[derive(Template)]
#[template(path = "console/dns.html", config = "templates/askama.toml")]
struct DnsPage {
    b: Base,
    operator: bool,
    services: Vec<DnsLine>,
    /// `[views.*]` names: drills are offered when there is one.
    views: Vec<String>,
    /// Drills in force, in words, with the service to stop.
    drills: Vec<(String, String)>,
    error: Option<String>,
}

fn dns_view(c: &Console, signed: &Signed, error: Option<String>) -> DnsPage {
    let snap = c.control.snapshots.load_full();
    let zone = c.zone();
    DnsPage {
        b: c.base(Some(signed), "dns"),
        operator: signed.s.role.changes_dns(),
        views: snap.config.views.iter().map(|v| v.name.clone()).collect(),
        drills: snap
            .view_snapshots()
            .into_iter()
            .filter_map(|(_, v)| v.drill.as_ref())
            .flat_map(|d| d.drills.iter())
            .map(|d| {
                (
                    d.service.clone(),
                    format!(
                        "{} is {} for view {} only, until {} (started by {})",
                        d.service,
                        ServiceState::from(d.state),
                        d.view,
                        when(d.until, zone),
                        d.by
                    ),
                )
            })
            .collect(),
        services: snap
            .config
            .services
            .values()
            .map(|s| {
                let state = snap
                    .health
                    .services
                    .get(&s.id)
                    .map_or(ServiceState::Up, |x| x.state);
                DnsLine {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    label: state_label(&state),
                    class: state_class(&state),
                    override_: snap
                        .health
                        .overrides
                        .get(&s.id)
                        .map(|o| override_line(o, zone)),
                }
            })
            .collect(),
        error,
    }
}

async fn dns_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(signed) = c.signed_in(&headers) else {
        return see_other("/console/login");
    };
    html(StatusCode::OK, dns_view(&c, &signed, None).render())
}

/// Sets `state` on the form's service, with its reason and expiry.
async fn set_override(
    c: &Console,
    signed: &Signed,
    form: &Form,
    state: Forced,
    until_required: bool,
) -> Response {
    let service = form.get("service").to_string();
    let reason = form.get("reason").to_string();
    let now = Utc::now();
    let refuse = |text: String| {
        html(
            StatusCode::BAD_REQUEST,
            dns_view(c, signed, Some(text)).render(),
        )
    };
    if reason.is_empty() {
        return refuse(
            "Say why: the reason is shown on the page and kept in the audit log.".into(),
        );
    }
    let until = match form.get("until") {
        "" if until_required => {
            return refuse("Say until when (\"2h\", or a time such as 2026-12-25T02:00:00-05:00): maintenance ends by itself.".into());
        }
        "" => None,
        u => match crate::admin::parse_until(u, now) {
            Ok(t) if t > now => Some(t),
            Ok(_) => return refuse("That time is in the past.".into()),
            Err(e) => return refuse(e),
        },
    };
    let o = Override {
        state,
        reason,
        until,
        by: Some(signed.s.account.clone()),
        set_at: Some(now),
    };
    // "Break the safety rule anyway": the same as the CLI's --force (the reason is required
    // above; the states task audits it).
    let force = form.get("force") == "on";
    match c
        .control
        .change_override(&service, Some(o), "", force, Console::actor(signed))
        .await
    {
        Ok(()) => {
            info!(account = %signed.s.account, service = %service, state = %ServiceState::from(state), "console: override set");
            done(
                c,
                signed,
                format!("{service} is now forced {}.", ServiceState::from(state)),
                "/console/dns",
            )
        }
        Err(e) => html(
            status_of(&e),
            dns_view(c, signed, Some(refusal(&e))).render(),
        ),
    }
}

async fn dns_override(State(c): State<Arc<Console>>, req: Request) -> Response {
    let (signed, form) = match checked_post(&c, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(r) = operators_only(&c, &signed, "change DNS (overrides)") {
        return r;
    }
    let Some(state) = Forced::parse(form.get("state")) else {
        return html(
            StatusCode::BAD_REQUEST,
            dns_view(&c, &signed, Some("Choose up, down or maintenance.".into())).render(),
        );
    };
    set_override(&c, &signed, &form, state, false).await
}

async fn dns_maintenance(State(c): State<Arc<Console>>, req: Request) -> Response {
    let (signed, form) = match checked_post(&c, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(r) = operators_only(
        &c,
        &signed,
        "put a service into maintenance (it changes DNS)",
    ) {
        return r;
    }
    set_override(&c, &signed, &form, Forced::Maintenance, true).await
}

/// Starts a drill: the service in the chosen state for one view's sources only.
async fn dns_drill(State(c): State<Arc<Console>>, req: Request) -> Response {
    let (signed, form) = match checked_post(&c, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(r) = operators_only(&c, &signed, "start a drill") {
        return r;
    }
    let refuse = |text: String| {
        html(
            StatusCode::BAD_REQUEST,
            dns_view(&c, &signed, Some(text)).render(),
        )
    };
    let Some(state) = Forced::parse(form.get("state")) else {
        return refuse("Choose down, maintenance or up.".into());
    };
    let lasts = match crate::config::duration::parse(form.get("for")) {
        Ok(d)
            if d > std::time::Duration::ZERO && d <= std::time::Duration::from_secs(7 * 86_400) =>
        {
            d
        }
        _ => return refuse("Say how long, such as \"30m\" (at most 7 days).".into()),
    };
    let Ok(lasts) = chrono::Duration::from_std(lasts) else {
        return refuse("Say how long, such as \"30m\".".into());
    };
    let op = crate::states::DrillOp::Start {
        service: form.get("service").to_string(),
        state,
        view: form.get("view").to_string(),
        until: Utc::now() + lasts,
        reason: form.get("reason").to_string(),
    };
    match c.control.drill(op, Console::actor(&signed)).await {
        Ok(started) => {
            info!(account = %signed.s.account, "console: drill started");
            let line = started.first().map_or_else(String::new, |d| {
                format!(
                    "Drill started: {} is {} for view {} only.",
                    d.service,
                    ServiceState::from(d.state),
                    d.view
                )
            });
            done(&c, &signed, line, "/console/dns")
        }
        Err(e) => html(
            status_of(&e),
            dns_view(&c, &signed, Some(refusal(&e))).render(),
        ),
    }
}

/// Ends a service's drills early.
async fn dns_drill_stop(State(c): State<Arc<Console>>, req: Request) -> Response {
    let (signed, form) = match checked_post(&c, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(r) = operators_only(&c, &signed, "stop a drill") {
        return r;
    }
    let service = Some(form.get("service").to_string()).filter(|s| !s.is_empty());
    let op = crate::states::DrillOp::Stop { service };
    match c.control.drill(op, Console::actor(&signed)).await {
        Ok(stopped) => done(
            &c,
            &signed,
            format!("{} drill(s) ended.", stopped.len()),
            "/console/dns",
        ),
        Err(e) => html(
            status_of(&e),
            dns_view(&c, &signed, Some(refusal(&e))).render(),
        ),
    }
}

async fn dns_clear(State(c): State<Arc<Console>>, req: Request) -> Response {
    let (signed, form) = match checked_post(&c, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(r) = operators_only(&c, &signed, "change DNS (overrides)") {
        return r;
    }
    let service = form.get("service").to_string();
    match c
        .control
        .clear_override(&service, form.get("reason"), Console::actor(&signed))
        .await
    {
        Ok(()) => {
            info!(account = %signed.s.account, service = %service, "console: override cleared");
            done(
                &c,
                &signed,
                format!("{service}: override cleared; its checks decide again."),
                "/console/dns",
            )
        }
        Err(e) => html(
            status_of(&e),
            dns_view(&c, &signed, Some(refusal(&e))).render(),
        ),
    }
}

async fn dns_reload(State(c): State<Arc<Console>>, req: Request) -> Response {
    let (signed, _) = match checked_post(&c, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(r) = operators_only(&c, &signed, "reload the configuration") {
        return r;
    }
    match c.control.reload(Console::actor(&signed)).await {
        Ok(()) => done(
            &c,
            &signed,
            "Configuration reloaded.".into(),
            "/console/dns",
        ),
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            html(
                StatusCode::UNPROCESSABLE_ENTITY,
                dns_view(
                    &c,
                    &signed,
                    Some(format!(
                        "Reload failed; the previous configuration still serves. {}",
                        list.join("; ")
                    )),
                )
                .render(),
            )
        }
    }
}

// ------------ Audit history ---------------------------------------------------------------

/// One audit entry.
struct AuditLine {
    at: String,
    who: String,
    action: String,
    subject: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "console/audit.html", config = "templates/askama.toml")]
struct AuditPage {
    b: Base,
    entries: Vec<AuditLine>,
    error: Option<String>,
}

async fn audit_page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Some(signed) = c.signed_in(&headers) else {
        return see_other("/console/login");
    };
    let read = match c.control.cluster() {
        Some(cl) => cl.audit_tail(AUDIT_SHOWN).await.map_err(|e| e.to_string()),
        None => {
            let dir = c.state_dir();
            tokio::task::spawn_blocking(move || crate::audit::tail(&dir, AUDIT_SHOWN))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        }
    };
    let zone = c.zone();
    let (entries, error) = match read {
        Ok(list) => (
            list.iter()
                .rev()
                .map(|e| AuditLine {
                    at: when(e.time, zone),
                    who: e.who.clone(),
                    action: e.action.clone(),
                    subject: match (&e.incident, &e.service) {
                        (Some(i), Some(s)) => format!("{i} ({s})"),
                        (Some(i), None) => i.clone(),
                        (None, Some(s)) => s.clone(),
                        (None, None) => String::new(),
                    },
                    reason: e.reason.clone(),
                })
                .collect(),
            None,
        ),
        Err(e) => (
            Vec::new(),
            Some(format!("The audit log cannot be read: {e}")),
        ),
    };
    let page = AuditPage {
        b: c.base(Some(&signed), "audit"),
        entries,
        error,
    };
    html(StatusCode::OK, page.render())
}

#[cfg(test)]
mod tests {
    use crate::console::accounts::Role;

    #[test]
    fn roles_decide_who_changes_dns() {
        assert!(Role::Operator.changes_dns());
        assert!(!Role::Communicator.changes_dns());
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("admin"), None);
    }
}
