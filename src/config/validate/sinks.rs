//! `[[notify]]`: webhook and exec sinks, their events, services, retries and timeouts.

use super::*;

/// Event kinds a sink may ask for.
pub(super) const EVENTS: &[&str] = &[
    "down",
    "up",
    "impacted",
    "maintenance",
    "degraded",
    "override",
    "incident",
    "guard",
    "drill",
    "safety",
];

/// The types of sink each field applies to.
fn applies(r: &RawNotify) -> [(&'static str, bool, &'static [&'static str]); 11] {
    [
        ("url", r.url.is_some(), &["webhook", "sms"]),
        ("headers", r.headers.is_some(), &["webhook"]),
        ("format", r.format.is_some(), &["webhook"]),
        ("command", r.command.is_some(), &["exec"]),
        ("smtp", r.smtp.is_some(), &["email"]),
        ("username", r.username.is_some(), &["email"]),
        ("password_file", r.password_file.is_some(), &["email"]),
        ("ca", r.ca.is_some(), &["email"]),
        ("from", r.from.is_some(), &["email", "sms"]),
        ("to", r.to.is_some(), &["email", "sms"]),
        ("credentials_file", r.credentials_file.is_some(), &["sms"]),
    ]
}

pub(super) fn notify_sink(
    src: &mut Source<'_>,
    raw: Spanned<RawNotify>,
    ids: &BTreeSet<String>,
    dir: &Path,
    oncall: super::comms::Rota<'_>,
) -> Option<Notify> {
    let before = src.errors.len();
    let span = raw.span();
    let r = raw.into_inner();
    let events: Vec<String> = match &r.events {
        None => EVENTS.iter().map(|s| s.to_string()).collect(),
        Some(list) => list
            .iter()
            .map(|e| {
                if !EVENTS.contains(&e.get_ref().as_str()) {
                    src.error(
                        e.span(),
                        format!(
                            "unknown event {:?}: expected one of {}",
                            e.get_ref(),
                            EVENTS.join(", ")
                        ),
                    );
                }
                e.get_ref().clone()
            })
            .collect(),
    };
    for s in r.services.iter().flatten() {
        known_service(src, s, ids, "notify services");
    }
    let kind = r.kind.get_ref().as_str();
    if matches!(kind, "webhook" | "exec" | "email" | "sms") {
        for (field, present, types) in applies(&r) {
            if present && !types.contains(&kind) {
                src.error(
                    span.clone(),
                    format!(
                        "`{field}` applies to {} sinks, not {kind}",
                        types.join(" and ")
                    ),
                );
            }
        }
    }
    let sink = match kind {
        "webhook" => {
            let format = r
                .format
                .as_ref()
                .map_or("json".to_string(), |f| f.get_ref().clone());
            if let Some(f) = &r.format
                && !matches!(f.get_ref().as_str(), "json" | "slack")
            {
                src.error(f.span(), "invalid format: expected \"json\" or \"slack\"");
            }
            match &r.url {
                None => {
                    src.error(span, "webhook sink needs `url`");
                    None
                }
                Some(u) => match url::Url::parse(u.get_ref()) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Some(Sink::Webhook {
                        url,
                        headers: r.headers.clone().unwrap_or_default(),
                        format,
                    }),
                    _ => {
                        src.error(
                            u.span(),
                            format!(
                                "invalid webhook url {:?}: expected an http:// or https:// URL",
                                u.get_ref()
                            ),
                        );
                        None
                    }
                },
            }
        }
        "email" => super::comms::email_sink(src, span, &r, dir, oncall),
        "sms" => super::comms::sms_sink(src, span, &r, dir, oncall),
        "exec" => match &r.command {
            Some(c) if !c.get_ref().is_empty() => Some(Sink::Exec {
                command: c.get_ref().clone(),
            }),
            Some(c) => {
                src.error(c.span(), "exec `command` must name a program");
                None
            }
            None => {
                src.error(
                    span,
                    "exec sink needs `command = [\"program\", \"arg\", ...]`",
                );
                None
            }
        },
        other => {
            src.error(
                r.kind.span(),
                format!(
                    "unknown notify type {other:?}: expected \"webhook\", \"exec\", \"email\" or \"sms\""
                ),
            );
            None
        }
    };
    let attempts = r.attempts.as_ref().map_or(5, |a| *a.get_ref());
    if let Some(a) = &r.attempts
        && *a.get_ref() == 0
    {
        src.error(a.span(), "attempts must be at least 1");
    }
    if src.errors.len() > before {
        return None;
    }
    Some(Notify {
        sink: sink?,
        events,
        services: r
            .services
            .unwrap_or_default()
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        timeout: r.timeout.map_or(Duration::from_secs(5), |d| d.0),
        attempts,
        max_delay: r.max_delay.map_or(Duration::from_secs(300), |d| d.0),
    })
}
