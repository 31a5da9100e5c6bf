//! What people do on the page listener besides reading: acknowledge an on-call page
//! (`/ack/{token}`), subscribe (`/subscribe`, a plain form), confirm (`/confirm/{token}`),
//! unsubscribe (`/unsubscribe/{token}`, RFC 8058 one-click too), and STOP by text
//! (`/sms/inbound`, the gateway's webhook). A link's GET shows what it does and a button;
//! only the POST acts, so a mail scanner or a link preview that fetches it changes nothing.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use tracing::warn;

use super::App;
use super::view::Common;
use crate::control::Control;
use crate::notify::Purpose;

/// The largest form body taken.
const FORM_MAX: usize = 16 * 1024;

/// The subscribe form's choices.
pub struct SubscribeForm {
    /// ("email", "Email"), ("sms", "Text message").
    pub channels: Vec<(String, String)>,
    /// (id, name) of every service.
    pub services: Vec<(String, String)>,
    /// What was wrong with the last try.
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "page/subscribe.html", config = "templates/askama.toml")]
struct SubscribePage<'a> {
    common: &'a Common<'a>,
    f: &'a SubscribeForm,
}

/// Content-Security-Policy of the action pages: the page's, with its own form allowed.
const CSP: &str = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A form with one button, posting back to where it came from.
pub struct Form {
    /// Where it posts.
    pub action: String,
    /// The button's label.
    pub button: String,
}

/// What an action page says.
pub struct Action {
    /// True for a success or a question (green), false for a refusal (red).
    pub ok: bool,
    /// The heading.
    pub heading: String,
    /// Paragraphs.
    pub paragraphs: Vec<String>,
    /// The button, on a GET.
    pub form: Option<Form>,
}

#[derive(Template)]
#[template(path = "page/action.html", config = "templates/askama.toml")]
struct ActionPage<'a> {
    common: &'a Common<'a>,
    a: &'a Action,
}

/// Renders `a` with `status`, never cached, framed by the page's header and footer.
pub fn respond(app: &App, status: StatusCode, a: &Action) -> Response {
    let snap = app.shared.snapshots.load_full();
    let common = Common::new(&snap.config, None, Utc::now());
    html(status, (ActionPage { common: &common, a }).render())
}

/// An action page's HTML, never cached, with its own CSP; a rendering error is a logged 500.
fn html(status: StatusCode, body: Result<String, askama::Error>) -> Response {
    match body {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            body,
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

fn refused(app: &App, status: StatusCode, why: String) -> Response {
    respond(
        app,
        status,
        &Action {
            ok: false,
            heading: "This link does not work".into(),
            paragraphs: vec![why],
            form: None,
        },
    )
}

fn control(app: &App) -> Option<&Arc<Control>> {
    app.shared.control.as_ref()
}

/// `GET /ack/{token}`: what the page is about, and the button.
pub async fn ack_form(State(app): State<App>, UrlPath(token): UrlPath<String>) -> Response {
    let Some(n) = control(&app).and_then(|c| c.notifier()) else {
        return refused(
            &app,
            StatusCode::SERVICE_UNAVAILABLE,
            "Notifications are not running.".into(),
        );
    };
    let (id, person) = match n.ack_link(&token) {
        Ok(x) => x,
        Err(e) => {
            return refused(
                &app,
                StatusCode::FORBIDDEN,
                format!("{}.", e.trim_end_matches('.')),
            );
        }
    };
    let Some(page) = n.page(&id) else {
        return refused(
            &app,
            StatusCode::NOT_FOUND,
            format!("Page {id} is no longer kept."),
        );
    };
    let mut paragraphs = vec![page.headline()];
    let (heading, form) = match (&page.acked, &page.ended) {
        (Some(a), _) => {
            paragraphs.push(format!("{} acknowledged it already.", a.by));
            (format!("Page {id} is acknowledged"), None)
        }
        (None, Some((_, why))) => {
            paragraphs.push(format!("It ended by itself: {why}"));
            (format!("Page {id} has ended"), None)
        }
        (None, None) => {
            paragraphs.push(format!(
                "Acknowledge as {person}: the others learn you are on it, and the page stops escalating."
            ));
            (
                format!("Acknowledge page {id}?"),
                Some(Form {
                    action: format!("/ack/{token}"),
                    button: "Acknowledge".into(),
                }),
            )
        }
    };
    respond(
        &app,
        StatusCode::OK,
        &Action {
            ok: true,
            heading,
            paragraphs,
            form,
        },
    )
}

/// `POST /ack/{token}`: acknowledges the page as the person the link was sent to.
pub async fn ack_post(State(app): State<App>, UrlPath(token): UrlPath<String>) -> Response {
    let Some(n) = control(&app).and_then(|c| c.notifier()) else {
        return refused(
            &app,
            StatusCode::SERVICE_UNAVAILABLE,
            "Notifications are not running.".into(),
        );
    };
    let (id, person) = match n.ack_link(&token) {
        Ok(x) => x,
        Err(e) => {
            return refused(
                &app,
                StatusCode::FORBIDDEN,
                format!("{}.", e.trim_end_matches('.')),
            );
        }
    };
    match n.ack(&id, &person) {
        Ok(a) => {
            let by = a
                .page
                .acked
                .as_ref()
                .map_or(person.clone(), |x| x.by.clone());
            let said = if a.already {
                format!("It was already acknowledged by {by}.")
            } else {
                format!("Acknowledged by {by}. The page stops escalating.")
            };
            respond(
                &app,
                StatusCode::OK,
                &Action {
                    ok: true,
                    heading: format!("Page {id} acknowledged"),
                    paragraphs: vec![a.page.headline(), said],
                    form: None,
                },
            )
        }
        Err(e) => refused(&app, StatusCode::NOT_FOUND, e),
    }
}

fn form_page(app: &App, status: StatusCode, error: Option<String>) -> Response {
    let Some(n) = control(app).and_then(|c| c.notifier()) else {
        return refused(
            app,
            StatusCode::NOT_FOUND,
            "This page does not offer updates.".into(),
        );
    };
    let channels: Vec<(String, String)> = n
        .channels()
        .into_iter()
        .map(|c| {
            let label = if c == "sms" { "Text message" } else { "Email" };
            (c, label.to_string())
        })
        .collect();
    if channels.is_empty() {
        return refused(
            app,
            StatusCode::NOT_FOUND,
            "This page does not offer updates.".into(),
        );
    }
    let snap = app.shared.snapshots.load_full();
    let f = SubscribeForm {
        channels,
        services: snap
            .config
            .services
            .values()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect(),
        error,
    };
    let common = Common::new(&snap.config, None, Utc::now());
    html(
        status,
        (SubscribePage {
            common: &common,
            f: &f,
        })
        .render(),
    )
}

/// `GET /subscribe`: the form.
pub async fn subscribe_form(State(app): State<App>) -> Response {
    form_page(&app, StatusCode::OK, None)
}

/// Reads a form body (at most [`FORM_MAX`]) into its pairs.
async fn form(req: axum::extract::Request) -> Option<Vec<(String, String)>> {
    let body = axum::body::to_bytes(req.into_body(), FORM_MAX).await.ok()?;
    Some(url::form_urlencoded::parse(&body).into_owned().collect())
}

fn source(req: &axum::extract::Request) -> std::net::IpAddr {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// `POST /subscribe`: takes the form; the answer is the same whoever the address belongs to.
pub async fn subscribe_post(State(app): State<App>, req: axum::extract::Request) -> Response {
    let Some(n) = control(&app).and_then(|c| c.notifier()).cloned() else {
        return refused(
            &app,
            StatusCode::NOT_FOUND,
            "This page does not offer updates.".into(),
        );
    };
    let from = source(&req);
    let Some(pairs) = form(req).await else {
        return form_page(
            &app,
            StatusCode::BAD_REQUEST,
            Some("The form could not be read.".into()),
        );
    };
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let channel = get("channel").unwrap_or_else(|| "email".into());
    let address = get("address").unwrap_or_default();
    let services: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "service")
        .map(|(_, v)| v.clone())
        .collect();
    match n.subscribe(&channel, &address, &services, from) {
        Ok(()) => respond(
            &app,
            StatusCode::OK,
            &Action {
                ok: true,
                heading: "Almost done".into(),
                paragraphs: vec![
                    match channel.as_str() {
                        "sms" => "We sent a text message with a link: open it to confirm.".into(),
                        _ => "We sent an email with a link: open it to confirm.".into(),
                    },
                    "Nothing else is sent until you confirm. If nothing arrives, check the address and try again in an hour.".into(),
                ],
                form: None,
            },
        ),
        Err(crate::notify::SubscribeError::TooMany) => form_page(
            &app,
            StatusCode::TOO_MANY_REQUESTS,
            Some(crate::notify::SubscribeError::TooMany.to_string()),
        ),
        Err(crate::notify::SubscribeError::Storage(e)) => {
            warn!(error = %e, "subscribe failed");
            form_page(&app, StatusCode::SERVICE_UNAVAILABLE, Some("Subscriptions cannot be taken right now.".into()))
        }
        Err(e) => form_page(&app, StatusCode::BAD_REQUEST, Some(e.to_string())),
    }
}

/// The channel and address a link names, or the refusal page.
fn subscriber_link(
    app: &App,
    purpose: Purpose,
    token: &str,
) -> Result<(crate::notify::Notifier, String, String), Box<Response>> {
    let Some(n) = control(app).and_then(|c| c.notifier()).cloned() else {
        return Err(Box::new(refused(
            app,
            StatusCode::NOT_FOUND,
            "This page does not offer updates.".into(),
        )));
    };
    match n.subscriber_link(purpose, token) {
        Ok((c, a)) => Ok((n, c, a)),
        Err(e) => Err(Box::new(refused(
            app,
            StatusCode::FORBIDDEN,
            format!("{}.", e.trim_end_matches('.')),
        ))),
    }
}

/// `GET /confirm/{token}` and `GET /unsubscribe/{token}`: what the link does, and the button.
fn link_form(app: &App, purpose: Purpose, token: &str) -> Response {
    let (_, _, address) = match subscriber_link(app, purpose, token) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let (heading, text, path, button) = match purpose {
        Purpose::Confirm => (
            "Confirm your subscription",
            format!("Send updates to {address}?"),
            "confirm",
            "Confirm",
        ),
        _ => (
            "Unsubscribe",
            format!("Stop sending updates to {address}?"),
            "unsubscribe",
            "Unsubscribe",
        ),
    };
    respond(
        app,
        StatusCode::OK,
        &Action {
            ok: true,
            heading: heading.into(),
            paragraphs: vec![text],
            form: Some(Form {
                action: format!("/{path}/{token}"),
                button: button.into(),
            }),
        },
    )
}

/// `GET /confirm/{token}`.
pub async fn confirm_form(State(app): State<App>, UrlPath(token): UrlPath<String>) -> Response {
    link_form(&app, Purpose::Confirm, &token)
}

/// `POST /confirm/{token}`: confirms.
pub async fn confirm_post(State(app): State<App>, UrlPath(token): UrlPath<String>) -> Response {
    let (n, channel, address) = match subscriber_link(&app, Purpose::Confirm, &token) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match n.confirm(&channel, &address) {
        Ok(true) => respond(
            &app,
            StatusCode::OK,
            &Action {
                ok: true,
                heading: "Subscribed".into(),
                paragraphs: vec![format!(
                    "{address} gets updates from now on. Every message has a link to stop."
                )],
                form: None,
            },
        ),
        Ok(false) => refused(
            &app,
            StatusCode::NOT_FOUND,
            "This subscription was cancelled since; subscribe again from the status page.".into(),
        ),
        Err(e) => {
            warn!(error = %e, "confirm failed");
            refused(
                &app,
                StatusCode::SERVICE_UNAVAILABLE,
                "Subscriptions cannot be confirmed right now; try again later.".into(),
            )
        }
    }
}

/// `GET /unsubscribe/{token}`.
pub async fn unsubscribe_form(State(app): State<App>, UrlPath(token): UrlPath<String>) -> Response {
    link_form(&app, Purpose::Unsubscribe, &token)
}

/// `POST /unsubscribe/{token}`: unsubscribes (a mail client's RFC 8058 one-click POST too).
pub async fn unsubscribe_post(State(app): State<App>, UrlPath(token): UrlPath<String>) -> Response {
    let (n, channel, address) = match subscriber_link(&app, Purpose::Unsubscribe, &token) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match n.unsubscribe(Some(&channel), &address) {
        Ok(_) => respond(
            &app,
            StatusCode::OK,
            &Action {
                ok: true,
                heading: "Unsubscribed".into(),
                paragraphs: vec![format!("Nothing more is sent to {address}.")],
                form: None,
            },
        ),
        Err(e) => {
            warn!(error = %e, "unsubscribe failed");
            refused(
                &app,
                StatusCode::SERVICE_UNAVAILABLE,
                "Unsubscribing failed; try again later.".into(),
            )
        }
    }
}

/// Words that end every text subscription of the sender (the carriers' standard set).
const STOP_WORDS: &[&str] = &["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];

/// `POST /sms/inbound`: the SMS gateway's webhook for replies (Twilio's shape: `From`,
/// `Body`, signed with `X-Twilio-Signature` under the secret of the SMS sink's
/// `credentials_file`). A STOP word removes the sender's text subscription.
pub async fn sms_inbound(State(app): State<App>, req: axum::extract::Request) -> Response {
    let Some(n) = control(&app).and_then(|c| c.notifier()).cloned() else {
        return (StatusCode::NOT_FOUND, "no subscriptions here\n").into_response();
    };
    let signature = req
        .headers()
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(pairs) = form(req).await else {
        return (StatusCode::BAD_REQUEST, "unreadable form\n").into_response();
    };
    if let Err(e) = n.verify_inbound(signature.as_deref(), &pairs) {
        warn!(error = %e, "SMS webhook refused");
        return (StatusCode::FORBIDDEN, "bad signature\n").into_response();
    }
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
    };
    let (Some(from), Some(body)) = (get("From"), get("Body")) else {
        return (StatusCode::BAD_REQUEST, "From and Body are needed\n").into_response();
    };
    if STOP_WORDS.contains(&body.to_ascii_uppercase().as_str())
        && let Err(e) = n.unsubscribe(Some("sms"), &from)
    {
        warn!(error = %e, "STOP by text failed");
        return (StatusCode::SERVICE_UNAVAILABLE, "try again\n").into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>",
    )
        .into_response()
}
