//! What people read: an email (subject, plain text and HTML from the templates in
//! `templates/notify/`) or a text message of at most 160 characters, for one notice and one
//! recipient (whose links, acknowledge or unsubscribe, are their own).

use askama::Template;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::payload::{self, Context, Notice};
use crate::events::Kind;
use crate::health::ServiceState;

/// The longest text message sent: one GSM-7 segment.
pub const SMS_MAX: usize = 160;

/// Who one delivery goes to, and the links that are theirs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Addressing {
    /// The on-call page this message belongs to.
    pub page: Option<String>,
    /// 0 for the first message of a page; 1, 2 for escalations.
    pub level: u8,
    /// Their acknowledge link.
    pub ack_url: Option<String>,
    /// Their one-click unsubscribe link (subscribers).
    pub unsubscribe_url: Option<String>,
    /// Why they get it ("You are on call for ...").
    pub why: String,
    /// `[oncall] escalate_after` in words, for escalated messages.
    pub escalate_after: String,
    /// The email's Message-ID, when it must be the same on every try (a subscriber's
    /// message, so that one sent again after a crash is seen as the same message).
    pub message_id: Option<String>,
}

/// One message's facts, as both templates show them.
#[derive(Debug, Clone)]
pub struct Message {
    /// `[page] title`.
    pub title: String,
    /// The email subject.
    pub subject: String,
    /// The headline ("MLS is DOWN: connect refused").
    pub headline: String,
    /// True for bad news (red), false for good (green).
    pub alarm: bool,
    /// "Escalated: nobody acknowledged in 10 minutes", for escalations.
    pub escalation: Option<String>,
    /// Label and value lines.
    pub details: Vec<(String, String)>,
    /// Incident updates, newest first.
    pub updates: Vec<String>,
    /// The page id (for `detour ack ID`).
    pub page_id: String,
    /// The acknowledge link.
    pub ack_url: Option<String>,
    /// The status page.
    pub status_url: Option<String>,
    /// The unsubscribe link.
    pub unsubscribe_url: Option<String>,
    /// Why the reader gets this.
    pub why: String,
}

#[derive(Template)]
#[template(path = "notify/email.html", config = "templates/askama.toml")]
struct Html<'a> {
    m: &'a Message,
}

#[derive(Template)]
#[template(path = "notify/email.txt", config = "templates/askama.toml")]
struct Text<'a> {
    m: &'a Message,
}

/// `t` in `zone` (the process's zone when `None`): "2026-12-24 17:02 EST".
pub fn clock(t: DateTime<Utc>, zone: Option<Tz>) -> String {
    match zone {
        Some(z) => t.with_timezone(&z).format("%Y-%m-%d %H:%M %Z").to_string(),
        None => t
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M %Z")
            .to_string(),
    }
}

/// True when the notice is bad news.
pub fn alarm(n: &Notice) -> bool {
    let e = &n.event;
    match e.kind {
        Kind::Down | Kind::Impacted | Kind::Guard => true,
        Kind::Incident => e.incident.as_ref().is_none_or(|i| i.resolved_at.is_none()),
        Kind::Override => matches!(
            e.new_state,
            Some(ServiceState::Down | ServiceState::Impacted)
        ),
        _ => n.flapping.is_some(),
    }
}

/// The facts of `n` for `to`.
pub fn build(n: &Notice, ctx: &Context, to: &Addressing) -> Message {
    let escalate_after = &to.escalate_after;
    let e = &n.event;
    let headline = payload::headline(n);
    let mut details = Vec::new();
    details.push(("When".to_string(), clock(e.at, ctx.zone)));
    if let Some(s) = e.since {
        details.push((
            "Before that".to_string(),
            format!(
                "{} since {}",
                e.old_state.map_or("unknown".into(), |s| s.to_string()),
                clock(s, ctx.zone)
            ),
        ));
    }
    let services = payload::services(e);
    if services.len() > 1 {
        details.push(("Services".into(), services.join(", ")));
    }
    if e.who != "detour" && !e.who.is_empty() && n.text.is_none() {
        details.push(("By".into(), e.who.clone()));
    }
    let mut updates = Vec::new();
    if let Some(i) = &e.incident {
        for u in i.updates.iter().rev() {
            updates.push(format!(
                "{} — {}: {}",
                clock(u.at, ctx.zone),
                u.status,
                u.message
            ));
        }
    }
    let escalation = match (to.page.is_some(), to.level) {
        (true, 1) => Some(format!(
            "Escalated: the person on call did not acknowledge within {escalate_after}"
        )),
        (true, l) if l >= 2 => Some(format!(
            "Escalated to everyone: nobody acknowledged within {escalate_after} twice"
        )),
        _ => None,
    };
    let prefix = if ctx.title.is_empty() {
        String::new()
    } else {
        format!("[{}] ", ctx.title)
    };
    let subject = match &escalation {
        Some(_) => format!("{prefix}ESCALATED: {headline}"),
        None => format!("{prefix}{headline}"),
    };
    Message {
        title: ctx.title.clone(),
        subject: subject.replace(['\r', '\n'], " "),
        headline,
        alarm: alarm(n),
        escalation,
        details,
        updates,
        page_id: to.page.clone().unwrap_or_default(),
        ack_url: to.ack_url.clone(),
        status_url: ctx.status_page.clone(),
        unsubscribe_url: to.unsubscribe_url.clone(),
        why: to.why.clone(),
    }
}

/// The plain-text and HTML bodies of `m`.
pub fn bodies(m: &Message) -> Result<(String, String), String> {
    let text = Text { m }
        .render()
        .map_err(|e| format!("cannot render the email text: {e}"))?;
    let html = Html { m }
        .render()
        .map_err(|e| format!("cannot render the email HTML: {e}"))?;
    Ok((text, html))
}

/// Cuts `s` to at most `max` characters, ending with "…" when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A text message of at most [`SMS_MAX`] characters: its link whole (acknowledge, else the
/// status page), the headline cut to what is left.
pub fn sms(n: &Notice, ctx: &Context, to: &Addressing) -> String {
    let mut head = String::new();
    if !ctx.title.is_empty() {
        head.push_str(&format!("[{}] ", ctx.title));
    }
    if to.page.is_some() && to.level > 0 {
        head.push_str("ESCALATED: ");
    }
    head.push_str(&payload::headline(n));
    // The acknowledge page links to the status page: one link is enough.
    let mut tail = match (&to.ack_url, &ctx.status_page) {
        (Some(a), _) => format!(" Ack: {a}"),
        (None, Some(s)) => format!(" {s}"),
        (None, None) => String::new(),
    };
    if to.unsubscribe_url.is_some() {
        tail.push_str(" Reply STOP to end");
    }
    let room = SMS_MAX.saturating_sub(tail.chars().count());
    let mut out = cut(&head, room);
    out.push_str(&tail);
    cut(&out, SMS_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;

    fn down(reason: &str) -> Notice {
        let mut e = Event::new(Kind::Down);
        e.service = Some("mls".into());
        e.service_name = Some("MLS".into());
        e.old_state = Some(ServiceState::Up);
        e.new_state = Some(ServiceState::Down);
        e.reason = reason.into();
        Notice::single(e)
    }

    fn ctx() -> Context {
        Context {
            title: "Example Realty".into(),
            status_page: Some("https://status.example.test/".into()),
            status_json: None,
            zone: Some(chrono_tz::America::New_York),
        }
    }

    #[test]
    fn a_text_message_fits_160_characters_and_keeps_its_links_whole() {
        let to = Addressing {
            page: Some("k7q2".into()),
            ack_url: Some(
                "https://status.example.test/ack/azdxMjpEYW5h.1767225600.AAAAAAAAAAAAAAAAAAAAAA"
                    .into(),
            ),
            ..Addressing::default()
        };
        let long = "x".repeat(300);
        let m = sms(&down(&long), &ctx(), &to);
        assert_eq!(m.chars().count(), SMS_MAX, "{m}");
        assert!(m.starts_with("[Example Realty] MLS is DOWN: xxx"), "{m}");
        assert!(m.ends_with(to.ack_url.as_deref().unwrap()), "{m}");
        let short = sms(&down("connect refused"), &ctx(), &Addressing::default());
        assert_eq!(
            short,
            "[Example Realty] MLS is DOWN: connect refused https://status.example.test/"
        );
    }

    #[test]
    fn an_email_has_both_bodies_and_escapes_what_it_quotes() {
        let to = Addressing {
            page: Some("k7q2".into()),
            level: 1,
            ack_url: Some("https://status.example.test/ack/t".into()),
            why: "You are on call for Example Realty.".into(),
            escalate_after: "10 minutes".into(),
            ..Addressing::default()
        };
        let m = build(&down("<script>x</script>"), &ctx(), &to);
        assert!(
            m.subject
                .starts_with("[Example Realty] ESCALATED: MLS is DOWN")
        );
        let (text, html) = bodies(&m).unwrap();
        assert!(text.contains("MLS is DOWN: <script>x</script>"), "{text}");
        assert!(text.contains("https://status.example.test/ack/t"));
        assert!(text.contains("detour ack k7q2"));
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
        assert!(
            html.contains("Escalated: the person on call did not acknowledge within 10 minutes")
        );
    }
}
