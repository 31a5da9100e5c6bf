//! `/api/v2/summary.json` and `/api/v2/status.json` in the public Statuspage format, so
//! existing status widgets and clients read detour unchanged. Services are components;
//! open incidents are incidents; `[[maintenance]]` windows not over yet are scheduled
//! maintenances.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::health::ServiceState;
use crate::snapshot::Snapshot;

/// `page`.
#[derive(Debug, Clone, Serialize)]
pub struct PageDoc {
    /// Stable id.
    pub id: String,
    /// `[page] title`.
    pub name: String,
    /// The status page's URL.
    pub url: String,
    /// Every time here is UTC.
    pub time_zone: String,
    /// The latest change shown.
    pub updated_at: String,
}

/// `status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusDoc {
    /// none, minor, major, critical or maintenance.
    pub indicator: &'static str,
    /// In words.
    pub description: &'static str,
}

/// A component (one per service).
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// Service id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// operational, degraded_performance, partial_outage, major_outage or under_maintenance.
    pub status: &'static str,
    /// The oldest state change known.
    pub created_at: String,
    /// The latest state change.
    pub updated_at: String,
    /// Order on the page, from 1.
    pub position: usize,
    /// One line on what it is for.
    pub description: Option<String>,
    /// Shown on the page.
    pub showcase: bool,
    /// No start date is known.
    pub start_date: Option<String>,
    /// Components are not grouped.
    pub group_id: Option<String>,
    /// The page's id.
    pub page_id: String,
    /// Not a group.
    pub group: bool,
    /// Always shown.
    pub only_show_if_degraded: bool,
}

/// An update of an incident or maintenance.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentUpdate {
    /// `<incident>-<n>`.
    pub id: String,
    /// The incident's status after it.
    pub status: String,
    /// The text.
    pub body: String,
    /// Its incident.
    pub incident_id: String,
    /// When.
    pub created_at: String,
    /// When.
    pub updated_at: String,
    /// When.
    pub display_at: String,
    /// Not tracked per update.
    pub affected_components: Option<Vec<serde_json::Value>>,
    /// Sent to subscribers.
    pub deliver_notifications: bool,
    /// Unused.
    pub custom_tweet: Option<String>,
    /// Unused.
    pub tweet_id: Option<String>,
}

/// An incident, or a scheduled maintenance (which adds `scheduled_for`/`scheduled_until`).
#[derive(Debug, Clone, Serialize)]
pub struct IncidentDoc {
    /// Id.
    pub id: String,
    /// One line.
    pub name: String,
    /// investigating / identified / monitoring / resolved, or scheduled / in_progress.
    pub status: String,
    /// When opened.
    pub created_at: String,
    /// The latest update.
    pub updated_at: String,
    /// Not tracked.
    pub monitoring_at: Option<String>,
    /// When resolved.
    pub resolved_at: Option<String>,
    /// none, minor, major, critical or maintenance.
    pub impact: &'static str,
    /// Where to read it.
    pub shortlink: String,
    /// When it started.
    pub started_at: String,
    /// The page's id.
    pub page_id: String,
    /// Newest first.
    pub incident_updates: Vec<IncidentUpdate>,
    /// Components concerned.
    pub components: Vec<Component>,
    /// Maintenance start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<String>,
    /// Maintenance end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_until: Option<String>,
}

/// `/api/v2/summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The page.
    pub page: PageDoc,
    /// Overall.
    pub status: StatusDoc,
    /// One per service.
    pub components: Vec<Component>,
    /// Unresolved incidents, newest first.
    pub incidents: Vec<IncidentDoc>,
    /// Windows in progress or ahead, soonest first.
    pub scheduled_maintenances: Vec<IncidentDoc>,
}

/// `/api/v2/status.json`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusOnly {
    /// The page.
    pub page: PageDoc,
    /// Overall.
    pub status: StatusDoc,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The Statuspage component status of a state.
pub fn component_status(s: ServiceState) -> &'static str {
    match s {
        ServiceState::Up => "operational",
        ServiceState::Impacted | ServiceState::Degraded => "degraded_performance",
        ServiceState::Down => "major_outage",
        ServiceState::Maintenance => "under_maintenance",
    }
}

/// Statuspage's page indicator and its words, from every service's state.
pub fn indicator(states: &[ServiceState]) -> StatusDoc {
    let down = states.iter().filter(|s| **s == ServiceState::Down).count();
    let (indicator, description) = if down > 0 && down == states.len() {
        ("critical", "Major System Outage")
    } else if down > 0 {
        ("major", "Partial System Outage")
    } else if states.contains(&ServiceState::Impacted) || states.contains(&ServiceState::Degraded) {
        ("minor", "Minor Service Outage")
    } else if states.contains(&ServiceState::Maintenance) {
        ("maintenance", "Service Under Maintenance")
    } else {
        ("none", "All Systems Operational")
    };
    StatusDoc {
        indicator,
        description,
    }
}

/// Incident impact from the states of its services.
fn impact(states: &[ServiceState]) -> &'static str {
    if states.contains(&ServiceState::Down) {
        "major"
    } else if states.contains(&ServiceState::Impacted) || states.contains(&ServiceState::Degraded) {
        "minor"
    } else if states.contains(&ServiceState::Maintenance) {
        "maintenance"
    } else {
        "none"
    }
}

const INCIDENT_STATUSES: &[&str] = &[
    "investigating",
    "identified",
    "monitoring",
    "resolved",
    "postmortem",
];

/// The page's id: stable, derived from the tag authority (the first served zone).
fn page_id(snap: &Snapshot) -> String {
    super::feed::authority(snap)
}

fn components(snap: &Snapshot, now: DateTime<Utc>) -> Vec<Component> {
    let pid = page_id(snap);
    snap.config
        .services
        .values()
        .enumerate()
        .map(|(i, svc)| {
            let st = snap.health.services.get(&svc.id);
            let state = st.map_or(ServiceState::Up, |s| s.state);
            let since = st.map_or(now, |s| s.since);
            let created = st
                .and_then(|s| s.history.front().map(|t| t.at))
                .unwrap_or(since);
            Component {
                id: svc.id.clone(),
                name: svc.name.clone(),
                status: component_status(state),
                created_at: ts(created),
                updated_at: ts(since),
                position: i + 1,
                description: svc.description.clone(),
                showcase: true,
                start_date: None,
                group_id: None,
                page_id: pid.clone(),
                group: false,
                only_show_if_degraded: false,
            }
        })
        .collect()
}

fn page(snap: &Snapshot, base: &str, now: DateTime<Utc>) -> PageDoc {
    let latest_state = snap.health.services.values().map(|s| s.since);
    let latest_update = snap
        .incidents
        .list
        .iter()
        .flat_map(|i| i.updates.iter().map(|u| u.at));
    PageDoc {
        id: page_id(snap),
        name: snap.config.page.title.clone(),
        url: format!("{base}/"),
        // The zone the page shows times in: `[page] timezone`, else the machine's (the
        // page uses it then), as its IANA name; UTC if the machine cannot say.
        time_zone: snap.config.page.timezone.map_or_else(
            || iana_time_zone::get_timezone().unwrap_or_else(|_| "Etc/UTC".into()),
            |tz| tz.name().to_string(),
        ),
        updated_at: ts(latest_state.chain(latest_update).max().unwrap_or(now)),
    }
}

fn states(snap: &Snapshot) -> Vec<ServiceState> {
    snap.config
        .services
        .keys()
        .map(|id| {
            snap.health
                .services
                .get(id)
                .map_or(ServiceState::Up, |s| s.state)
        })
        .collect()
}

/// `/api/v2/status.json` of `snap`.
pub fn status_only(snap: &Snapshot, base: &str, now: DateTime<Utc>) -> StatusOnly {
    StatusOnly {
        page: page(snap, base, now),
        status: indicator(&states(snap)),
    }
}

/// `/api/v2/summary.json` of `snap`; `base` is the scheme and host asked.
pub fn build(snap: &Snapshot, base: &str, now: DateTime<Utc>) -> Summary {
    let pid = page_id(snap);
    let comps = components(snap, now);
    let pick = |ids: &[String]| -> Vec<Component> {
        comps
            .iter()
            .filter(|c| ids.contains(&c.id))
            .cloned()
            .collect()
    };
    let state_of = |id: &String| {
        snap.health
            .services
            .get(id)
            .map_or(ServiceState::Up, |s| s.state)
    };
    let incidents = snap
        .incidents
        .open()
        .map(|inc| {
            let last = inc.updates.last();
            let status = last
                .map(|u| u.status.as_str())
                .filter(|s| INCIDENT_STATUSES.contains(s))
                .unwrap_or("investigating");
            let opening = inc.updates.first().map_or("", |u| u.message.as_str());
            let names: Vec<String> = pick(&inc.services).into_iter().map(|c| c.name).collect();
            let line = opening.lines().next().unwrap_or("").trim();
            let name = if line.is_empty() {
                names.join(", ")
            } else {
                format!("{}: {line}", names.join(", "))
            };
            let states: Vec<ServiceState> = inc.services.iter().map(state_of).collect();
            let updates = inc
                .updates
                .iter()
                .enumerate()
                .rev()
                .map(|(n, u)| IncidentUpdate {
                    id: format!("{}-{}", inc.id, n + 1),
                    status: if INCIDENT_STATUSES.contains(&u.status.as_str()) {
                        u.status.clone()
                    } else {
                        "investigating".into()
                    },
                    body: u.message.clone(),
                    incident_id: inc.id.clone(),
                    created_at: ts(u.at),
                    updated_at: ts(u.at),
                    display_at: ts(u.at),
                    affected_components: None,
                    deliver_notifications: true,
                    custom_tweet: None,
                    tweet_id: None,
                })
                .collect();
            IncidentDoc {
                id: inc.id.clone(),
                name,
                status: status.to_string(),
                created_at: ts(inc.opened_at),
                updated_at: ts(last.map_or(inc.opened_at, |u| u.at)),
                monitoring_at: None,
                resolved_at: inc.resolved_at.map(ts),
                impact: impact(&states),
                shortlink: format!("{base}/#incident-{}", inc.id),
                started_at: ts(inc.opened_at),
                page_id: pid.clone(),
                incident_updates: updates,
                components: pick(&inc.services),
                scheduled_for: None,
                scheduled_until: None,
            }
        })
        .collect();
    let mut windows: Vec<_> = snap
        .config
        .maintenance
        .iter()
        .filter(|m| m.end > now)
        .collect();
    windows.sort_by_key(|m| m.start);
    let scheduled_maintenances = windows
        .into_iter()
        .map(|m| {
            let start = m.start.with_timezone(&Utc);
            let end = m.end.with_timezone(&Utc);
            let id = format!("m{}-{}", start.timestamp(), m.services.join("-"));
            let status = if start <= now {
                "in_progress"
            } else {
                "scheduled"
            };
            let name = if m.message.is_empty() {
                "Planned maintenance".to_string()
            } else {
                m.message.clone()
            };
            IncidentDoc {
                id: id.clone(),
                name: name.clone(),
                status: status.into(),
                created_at: ts(start),
                updated_at: ts(start),
                monitoring_at: None,
                resolved_at: None,
                impact: "maintenance",
                shortlink: format!("{base}/#maintenance"),
                started_at: ts(start),
                page_id: pid.clone(),
                incident_updates: vec![IncidentUpdate {
                    id: format!("{id}-1"),
                    status: status.into(),
                    body: name,
                    incident_id: id.clone(),
                    created_at: ts(start),
                    updated_at: ts(start),
                    display_at: ts(start),
                    affected_components: None,
                    deliver_notifications: true,
                    custom_tweet: None,
                    tweet_id: None,
                }],
                components: pick(&m.services),
                scheduled_for: Some(ts(start)),
                scheduled_until: Some(ts(end)),
            }
        })
        .collect();
    Summary {
        page: page(snap, base, now),
        status: indicator(&states(snap)),
        components: comps,
        incidents,
        scheduled_maintenances,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceState::*;

    #[test]
    fn indicator_follows_the_worst_state() {
        assert_eq!(indicator(&[Up, Up]).indicator, "none");
        assert_eq!(indicator(&[Up, Maintenance]).indicator, "maintenance");
        assert_eq!(indicator(&[Impacted, Maintenance]).indicator, "minor");
        assert_eq!(indicator(&[Up, Degraded]).indicator, "minor");
        assert_eq!(component_status(Degraded), "degraded_performance");
        assert_eq!(indicator(&[Down, Up]).indicator, "major");
        assert_eq!(indicator(&[Down, Down]).indicator, "critical");
    }
}
