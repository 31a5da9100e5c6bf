//! What a notification says: the JSON document (webhook body with `format = "json"`, and the
//! stdin of exec sinks), the short text for people (the `format = "slack"` body), and the
//! `DETOUR_*` environment of exec sinks. The schema is documented in docs/notifications.md; `version`
//! goes up if a field ever changes meaning.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::Config;
use crate::events::{Event, Kind};
use crate::health::ServiceState;

/// Version of the JSON document.
pub const SCHEMA_VERSION: u32 = 1;

/// A flapping summary: state changes that were held back and are told as one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flapping {
    /// State changes in the summarised period (the ones already sent included).
    pub changes: u32,
    /// The first change of the period.
    pub first_at: DateTime<Utc>,
    /// The last change.
    pub last_at: DateTime<Utc>,
    /// The kinds of the changes held back (a sink hears the summary if it wants any of them).
    pub held: Vec<Kind>,
}

/// One thing to tell: an event, or a summary of several (then `flapping` says so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The event (for a summary: the last change, with the first one's old state).
    pub event: Event,
    /// Set when this notice summarises a flapping service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flapping: Option<Flapping>,
    /// Its headline when not the event's own (subscriber digests, confirmations, maintenance
    /// announcements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Notice {
    /// A notice for one event.
    pub fn single(event: Event) -> Self {
        Self {
            event,
            flapping: None,
            text: None,
        }
    }
}

/// What every notification shares: the page title, the links to the status page (`[page]
/// url`, else the first `page_listen`), the time zone.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Context {
    /// `[page] title`.
    pub title: String,
    /// `http://<first page_listen>/`.
    pub status_page: Option<String>,
    /// `http://<first page_listen>/status.json`.
    pub status_json: Option<String>,
    /// `[page] timezone`, for times in messages people read.
    pub zone: Option<chrono_tz::Tz>,
}

impl Context {
    /// The context of `config`.
    pub fn of(config: &Config) -> Self {
        let base = match &config.page.url {
            Some(u) => Some(u.to_string()),
            None => config
                .server
                .page_listen
                .first()
                .map(|a| format!("http://{a}/")),
        };
        Self {
            title: config.page.title.clone(),
            status_json: base.as_ref().map(|b| format!("{b}status.json")),
            status_page: base,
            zone: config.page.timezone,
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The services an event concerns: the incident's, or the one service, or none.
pub fn services(e: &Event) -> Vec<String> {
    if let Some(i) = &e.incident {
        return i.services.clone();
    }
    e.service.iter().cloned().collect()
}

/// A span in words ([`crate::text::span`]).
pub fn span(d: chrono::Duration) -> String {
    crate::text::span(d.num_seconds())
}

fn shout(s: Option<ServiceState>) -> String {
    s.map_or("UNKNOWN".into(), |s| s.to_string().to_uppercase())
}

/// One line for people: "MLS is DOWN: connect refused".
pub fn headline(n: &Notice) -> String {
    if let Some(t) = &n.text {
        return t.clone();
    }
    let e = &n.event;
    let who = e
        .service_name
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(e.service.as_deref())
        .unwrap_or("?");
    if let Some(f) = &n.flapping {
        return format!(
            "{who} flapped {} times in {}, now {}",
            f.changes,
            span(f.last_at - f.first_at),
            e.new_state.map_or("unknown".into(), |s| s.to_string())
        );
    }
    let reason = if e.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", e.reason)
    };
    match e.kind {
        Kind::Down => format!("{who} is DOWN{reason}"),
        Kind::Up => format!("{who} is UP{reason}"),
        Kind::Impacted => {
            format!("{who} is IMPACTED (it works, but not through the usual way in){reason}")
        }
        Kind::Maintenance => format!("{who} is in MAINTENANCE{reason}"),
        Kind::Degraded => format!("{who} is SLOW (working, but degraded){reason}"),
        Kind::Override => match &e.override_ {
            Some(o) => {
                let until = o
                    .until
                    .map_or(String::new(), |u| format!(" until {}", rfc3339(u)));
                format!(
                    "{} forced {who} {}{until}{reason}",
                    e.who,
                    shout(Some(ServiceState::from(o.state)))
                )
            }
            None => format!("{who}: {}", e.reason),
        },
        Kind::Incident => match &e.incident {
            Some(i) => {
                let last = i.updates.last();
                let status = last.map_or("open", |u| u.status.as_str());
                let message = last.map_or("", |u| u.message.as_str());
                format!(
                    "Incident {} ({status}) on {}: {message}",
                    i.id,
                    i.services.join(", ")
                )
            }
            None => format!("Incident: {}", e.reason),
        },
        Kind::Guard => format!("detour guard: {}", e.reason),
        Kind::Drill => match e.new_state {
            Some(s) => format!(
                "[DRILL] {who} is {} for the drill: {}",
                shout(Some(s)),
                e.reason
            ),
            None => format!("[DRILL] {who}: {}", e.reason),
        },
        Kind::Safety => format!("detour: {}", e.reason),
        Kind::Test => format!(
            "Test notification from detour, sent by {}: if you read this, this sink works",
            e.who
        ),
    }
}

/// The text of a Slack/Mattermost/Teams message: the title, the headline, the link.
pub fn text(n: &Notice, ctx: &Context) -> String {
    let mut t = String::new();
    if !ctx.title.is_empty() {
        t.push_str(&format!("[{}] ", ctx.title));
    }
    t.push_str(&headline(n));
    if let Some(p) = &ctx.status_page {
        t.push_str(&format!("\nStatus: {p}"));
    }
    t
}

/// The JSON document (webhook `format = "json"`, exec stdin).
pub fn document(n: &Notice, ctx: &Context) -> Value {
    let e = &n.event;
    let incident = e.incident.as_ref().map(|i| {
        let last = i.updates.last();
        json!({
            "id": i.id,
            "services": i.services,
            "status": last.map_or("investigating", |u| u.status.as_str()),
            "message": last.map_or("", |u| u.message.as_str()),
            "opened_at": i.opened_at,
            "resolved_at": i.resolved_at,
            "updates": i.updates,
        })
    });
    let flapping = n.flapping.as_ref().map(|f| {
        json!({
            "changes": f.changes,
            "first_at": f.first_at,
            "last_at": f.last_at,
            "seconds": (f.last_at - f.first_at).num_seconds().max(0),
        })
    });
    json!({
        "version": SCHEMA_VERSION,
        "event": e.kind.as_str(),
        "at": e.at,
        "service": e.service,
        "service_name": e.service_name,
        "services": services(e),
        "old_state": e.old_state,
        "new_state": e.new_state,
        "reason": e.reason,
        "since": e.since,
        "who": e.who,
        "text": headline(n),
        "incident": incident,
        "override": e.override_,
        "flapping": flapping,
        "title": ctx.title,
        "links": {
            "status_page": ctx.status_page,
            "status_json": ctx.status_json,
        },
    })
}

/// The Slack-style incoming-webhook body: `{"text": "..."}`.
pub fn slack(n: &Notice, ctx: &Context) -> Value {
    json!({ "text": text(n, ctx) })
}

/// The `DETOUR_*` variables of an exec sink; absent facts are empty strings, so scripts
/// under `set -u` work.
pub fn env(n: &Notice, ctx: &Context) -> Vec<(&'static str, String)> {
    let e = &n.event;
    let state = |s: Option<ServiceState>| s.map_or(String::new(), |s| s.to_string());
    let last = e.incident.as_ref().and_then(|i| i.updates.last());
    vec![
        ("DETOUR_EVENT", e.kind.as_str().to_string()),
        ("DETOUR_AT", rfc3339(e.at)),
        ("DETOUR_SERVICE", e.service.clone().unwrap_or_default()),
        (
            "DETOUR_SERVICE_NAME",
            e.service_name.clone().unwrap_or_default(),
        ),
        ("DETOUR_SERVICES", services(e).join(",")),
        ("DETOUR_OLD_STATE", state(e.old_state)),
        ("DETOUR_NEW_STATE", state(e.new_state)),
        ("DETOUR_REASON", e.reason.clone()),
        ("DETOUR_SINCE", e.since.map(rfc3339).unwrap_or_default()),
        ("DETOUR_WHO", e.who.clone()),
        ("DETOUR_TEXT", headline(n)),
        (
            "DETOUR_INCIDENT_ID",
            e.incident
                .as_ref()
                .map(|i| i.id.clone())
                .unwrap_or_default(),
        ),
        (
            "DETOUR_INCIDENT_STATUS",
            last.map(|u| u.status.clone()).unwrap_or_default(),
        ),
        (
            "DETOUR_INCIDENT_MESSAGE",
            last.map(|u| u.message.clone()).unwrap_or_default(),
        ),
        (
            "DETOUR_FLAPPING",
            n.flapping
                .as_ref()
                .map(|f| f.changes.to_string())
                .unwrap_or_default(),
        ),
        ("DETOUR_TITLE", ctx.title.clone()),
        (
            "DETOUR_STATUS_URL",
            ctx.status_page.clone().unwrap_or_default(),
        ),
        (
            "DETOUR_STATUS_JSON_URL",
            ctx.status_json.clone().unwrap_or_default(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Notice {
        let mut e = Event::new(Kind::Down);
        e.service = Some("mls".into());
        e.service_name = Some("MLS".into());
        e.old_state = Some(ServiceState::Up);
        e.new_state = Some(ServiceState::Down);
        e.reason = "connect refused".into();
        Notice::single(e)
    }

    #[test]
    fn the_document_has_every_field_and_the_text_reads_well() {
        let ctx = Context {
            title: "Example Realty".into(),
            status_page: Some("http://127.0.0.1:8080/".into()),
            status_json: Some("http://127.0.0.1:8080/status.json".into()),
            zone: None,
        };
        let d = document(&down(), &ctx);
        assert_eq!(d["event"], "down");
        assert_eq!(d["service"], "mls");
        assert_eq!(d["old_state"], "up");
        assert_eq!(d["new_state"], "down");
        assert_eq!(d["services"], json!(["mls"]));
        assert_eq!(d["incident"], Value::Null);
        assert_eq!(
            d["links"]["status_json"],
            "http://127.0.0.1:8080/status.json"
        );
        assert_eq!(d["text"], "MLS is DOWN: connect refused");
        assert_eq!(
            slack(&down(), &ctx)["text"],
            "[Example Realty] MLS is DOWN: connect refused\nStatus: http://127.0.0.1:8080/"
        );
        let env = env(&down(), &ctx);
        assert!(env.contains(&("DETOUR_OLD_STATE", "up".into())));
        assert!(env.contains(&("DETOUR_INCIDENT_ID", String::new())));
    }

    #[test]
    fn a_summary_says_how_often_and_how_it_ended() {
        let mut n = down();
        let now = Utc::now();
        n.flapping = Some(Flapping {
            changes: 6,
            first_at: now - chrono::Duration::seconds(300),
            last_at: now,
            held: vec![Kind::Down, Kind::Up],
        });
        assert_eq!(headline(&n), "MLS flapped 6 times in 5 minutes, now down");
        assert_eq!(span(chrono::Duration::seconds(40)), "less than a minute");
        assert_eq!(span(chrono::Duration::seconds(3600)), "1 hour");
        assert_eq!(span(chrono::Duration::seconds(7200)), "2 hours");
    }
}
