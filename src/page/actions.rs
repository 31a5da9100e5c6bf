//! What people do from a link in a message, on the page listener: acknowledge an on-call page
//! (`/ack/{token}`). A GET shows what the link does and a button; only the POST acts, so a
//! mail scanner or a link preview that fetches the link changes nothing.

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
    match (ActionPage { common: &common, a }).render() {
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
