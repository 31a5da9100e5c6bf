//! `/feed.atom`: an Atom 1.0 feed (RFC 4287) of incident updates and service state changes
//! of the last 30 days, newest first, for staff to subscribe to (older ones: `/history`). Ids are `tag:` URIs (RFC 4151) under the first
//! served zone, stable across restarts: they are made of what they describe.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::health::ServiceState;
use crate::snapshot::Snapshot;

/// At most this many entries, newest first.
pub const MAX_ENTRIES: usize = 200;

/// Only entries of the last this many days: older ones are on `/history`.
pub const RECENT_DAYS: i64 = 30;

/// One entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `tag:` URI.
    pub id: String,
    /// One line.
    pub title: String,
    /// RFC 3339.
    pub updated: String,
    /// "incident" or "state".
    pub category: &'static str,
    /// Where to read more (the status page, anchored).
    pub link: String,
    /// The text.
    pub content: String,
    /// For sorting.
    at: DateTime<Utc>,
}

/// The feed.
#[derive(Debug, Clone)]
pub struct Feed {
    /// `tag:` URI of the feed.
    pub id: String,
    /// `[page] title` and what this is.
    pub title: String,
    /// The newest entry's time (or now, for an empty feed).
    pub updated: String,
    /// This feed's own URL.
    pub self_url: String,
    /// The status page.
    pub alt_url: String,
    /// Who publishes it.
    pub author: String,
    /// Entries, newest first.
    pub entries: Vec<Entry>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The tag authority: the first served zone (the operator's own domain).
pub fn authority(snap: &Snapshot) -> String {
    snap.config
        .zones
        .first()
        .map(|z| {
            z.origin
                .to_ascii()
                .trim_end_matches('.')
                .to_ascii_lowercase()
        })
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "detour.invalid".into())
}

fn first_line(s: &str, max: usize) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{}…", cut.trim_end())
    }
}

/// The feed of `snap`; `base` is the scheme and host the request came in on.
pub fn build(snap: &Snapshot, base: &str, now: DateTime<Utc>) -> Feed {
    let config = &snap.config;
    let auth = authority(snap);
    let name_of = |id: &str| {
        config
            .services
            .get(id)
            .map_or_else(|| id.to_string(), |s| s.name.clone())
    };
    let mut entries = Vec::new();
    for inc in &snap.incidents.list {
        let services: Vec<String> = inc.services.iter().map(|s| name_of(s)).collect();
        let services = services.join(", ");
        for (n, u) in inc.updates.iter().enumerate() {
            let status = if u.status.is_empty() {
                "update"
            } else {
                u.status.as_str()
            };
            entries.push(Entry {
                id: format!(
                    "tag:{auth},{}:incident/{}/{}",
                    inc.opened_at.format("%Y-%m-%d"),
                    inc.id,
                    n + 1
                ),
                title: format!("{services}: {status}: {}", first_line(&u.message, 100)),
                updated: rfc3339(u.at),
                category: "incident",
                link: format!("{base}/#incident-{}", inc.id),
                content: format!(
                    "{}\n\nIncident {} ({services}), {status}.",
                    u.message, inc.id
                ),
                at: u.at,
            });
        }
    }
    for (id, st) in &snap.health.services {
        let name = name_of(id);
        for t in &st.history {
            // Coming up at start is not news; anything else is.
            if t.from.is_none() && t.to == ServiceState::Up {
                continue;
            }
            let title = match (t.from, t.to) {
                (_, ServiceState::Down) => format!("{name} is unavailable"),
                (Some(_), ServiceState::Up) => format!("{name} is working again"),
                (None, ServiceState::Up) => format!("{name} is working"),
                (_, ServiceState::Impacted) => {
                    format!("{name} works, but not through the usual way in")
                }
                (_, ServiceState::Maintenance) => format!("{name} is in maintenance"),
                (_, ServiceState::Degraded) => format!("{name} is slow"),
            };
            let from = t
                .from
                .map_or_else(|| "start".to_string(), |f| f.to_string());
            entries.push(Entry {
                id: format!(
                    "tag:{auth},{}:service/{id}/{}/{}",
                    t.at.format("%Y-%m-%d"),
                    t.at.timestamp_millis(),
                    t.to
                ),
                title,
                updated: rfc3339(t.at),
                category: "state",
                link: format!("{base}/#service-{id}"),
                content: format!("{name}: {from} → {}. {}", t.to, t.reason),
                at: t.at,
            });
        }
    }
    // Newest first; a stable sort keeps posting order for equal times, reversed.
    entries.reverse();
    entries.sort_by_key(|e| std::cmp::Reverse(e.at));
    let recent = now - chrono::Duration::days(RECENT_DAYS);
    entries.retain(|e| e.at >= recent);
    entries.truncate(MAX_ENTRIES);
    Feed {
        id: format!("tag:{auth},2026:detour/feed"),
        title: format!("{}: incidents and changes", config.page.title),
        updated: rfc3339(entries.first().map_or(now, |e| e.at)),
        self_url: format!("{base}/feed.atom"),
        alt_url: format!("{base}/"),
        author: config.page.title.clone(),
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_are_trimmed_and_cut() {
        assert_eq!(first_line("\n  hello  \nworld", 100), "hello");
        assert_eq!(first_line("abcdef", 4), "abc…");
        assert_eq!(first_line("", 4), "");
    }
}
