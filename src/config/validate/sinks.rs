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
];

pub(super) fn notify_sink(
    src: &mut Source<'_>,
    raw: Spanned<RawNotify>,
    ids: &BTreeSet<String>,
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
    let sink = match r.kind.get_ref().as_str() {
        "webhook" => {
            if r.command.is_some() {
                src.error(span.clone(), "`command` applies to exec sinks, not webhook");
            }
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
        "exec" => {
            for (f, present) in [
                ("url", r.url.is_some()),
                ("headers", r.headers.is_some()),
                ("format", r.format.is_some()),
            ] {
                if present {
                    src.error(
                        span.clone(),
                        format!("`{f}` applies to webhook sinks, not exec"),
                    );
                }
            }
            match &r.command {
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
            }
        }
        other => {
            src.error(
                r.kind.span(),
                format!("unknown notify type {other:?}: expected \"webhook\" or \"exec\""),
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
