//! What the pages say, built from one Snapshot: the outage view (a record answering
//! `otherwise`), the status view, and the time formatting they share. The same view is
//! rendered as HTML (askama) and serialized as JSON, so both say the same facts.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDateTime, Offset, SecondsFormat, Utc};
use chrono_tz::{OffsetName, Tz};
use serde::{Serialize, Serializer};

use crate::config::{Config, Dynamic};
use crate::health::{ServiceState, ServiceStatus};
use crate::incidents::Incident;
use crate::selection::Chosen;
use crate::snapshot::Snapshot;

/// Seconds between the page's own refreshes (meta refresh).
pub const REFRESH_SECS: u32 = 45;

/// The shortest `Retry-After` the outage page sends.
pub const MIN_RETRY_AFTER: u64 = 30;

/// A moment, as people read it (local time and "for 12 minutes") and as machines do.
#[derive(Debug, Clone)]
pub struct When {
    /// RFC 3339, UTC: what JSON carries and `<time datetime>` holds.
    pub iso: String,
    /// Local time with its zone, e.g. "14:02 EST today" (see [`local_time`]).
    pub local: String,
    /// How long ago, e.g. "12 minutes" (empty for moments in the future).
    pub ago: String,
}

/// The moment a page is built, and the zone its times are shown in: `[page] timezone`, or
/// the process's local time zone (`TZ`) when that is not set.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Now.
    pub now: DateTime<Utc>,
    /// `[page] timezone`.
    pub zone: Option<Tz>,
}

impl Clock {
    /// `now`, shown in the zone `config` asks for.
    pub fn new(config: &Config, now: DateTime<Utc>) -> Self {
        Self {
            now,
            zone: config.page.timezone,
        }
    }

    /// `t` as the page shows it, seen from now.
    pub fn when(&self, t: DateTime<Utc>) -> When {
        let secs = (self.now - t).num_seconds();
        When {
            iso: t.to_rfc3339_opts(SecondsFormat::Secs, true),
            local: local_time(t, self.now, self.zone),
            ago: if secs >= 0 {
                crate::text::span(secs)
            } else {
                String::new()
            },
        }
    }
}

impl Serialize for When {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.iso)
    }
}

/// `t` in `zone` (the process's local zone when `None`), as short as it can be while still
/// unambiguous next to `now`: "14:02 EST today", "14:02 CET, Tue 24 Dec", "09:02 UTC-03:00,
/// Tue 24 Dec 2026". A zone's abbreviation is used when the time zone database has one, else
/// the offset from UTC.
pub fn local_time(t: DateTime<Utc>, now: DateTime<Utc>, zone: Option<Tz>) -> String {
    let (l, name) = zoned(t, zone);
    short_time(l, zoned(now, zone).0, &name)
}

/// `t` as a wall-clock time in `zone` (the process's local zone when `None`), and the zone's
/// label: its abbreviation when the time zone database has one ("EST"), else the offset
/// from UTC ("UTC-03:00", "UTC"). The CLI labels its times the same way.
pub fn zoned(t: DateTime<Utc>, zone: Option<Tz>) -> (NaiveDateTime, String) {
    match zone {
        Some(tz) => {
            let l = t.with_timezone(&tz);
            let name = l
                .offset()
                .abbreviation()
                .filter(|a| !a.starts_with(['+', '-']))
                .map_or_else(|| utc_offset(l.offset().fix()), str::to_string);
            (l.naive_local(), name)
        }
        None => {
            let l = t.with_timezone(&Local);
            (l.naive_local(), utc_offset(*l.offset()))
        }
    }
}

/// "UTC", or "UTC-05:00".
fn utc_offset(off: FixedOffset) -> String {
    let secs = off.local_minus_utc();
    if secs == 0 {
        return "UTC".into();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    format!("UTC{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
}

/// Clock time `l` named `zone`, with as much of the date as `now` (same zone) needs.
fn short_time(l: NaiveDateTime, now: NaiveDateTime, zone: &str) -> String {
    let clock = l.format("%H:%M");
    if l.date() == now.date() {
        format!("{clock} {zone} today")
    } else if l.year() == now.year() {
        format!("{clock} {zone}, {}", l.format("%a %-d %b"))
    } else {
        format!("{clock} {zone}, {}", l.format("%a %-d %b %Y"))
    }
}

/// A labelled link.
#[derive(Debug, Clone, Serialize)]
pub struct LinkView {
    /// Text shown.
    pub label: String,
    /// Where it goes.
    pub url: String,
}

/// What every page shows around its content.
#[derive(Debug, Clone)]
pub struct Common<'a> {
    /// `[page] title`.
    pub title: String,
    /// `[page] contact`.
    pub contact: String,
    /// `[page] links`.
    pub links: Vec<LinkView>,
    /// Where the logo comes from (`/logo` or a data URI), if there is one.
    pub logo_src: Option<&'a str>,
    /// When the page was made.
    pub generated: When,
    /// Seconds between refreshes.
    pub refresh: u32,
    /// The subscribe form, when `[subscribers]` is set (`[page] url` + `subscribe`, so that
    /// the outage page links to the status page's form).
    pub subscribe_url: Option<String>,
    /// The banner of a drill, when the request came from a view with one in force.
    pub drill: Option<DrillBanner>,
}

/// "DRILL — only staff see this": which view, and what is drilled until when.
#[derive(Debug, Clone)]
pub struct DrillBanner {
    /// The view's name.
    pub view: String,
    /// "mls is down for this drill until 02:30 CET."
    pub what: String,
}

impl<'a> Common<'a> {
    /// The same, with the drill banner when `snap` is a view's Snapshot with drills.
    #[must_use]
    pub fn drilled(mut self, snap: &Snapshot, now: DateTime<Utc>) -> Self {
        self.drill = snap.drill.as_ref().map(|d| {
            let clock = Clock::new(&snap.config, now);
            let what: Vec<String> = d
                .drills
                .iter()
                .map(|x| {
                    format!(
                        "{} is {} for this drill until {}.",
                        snap.config
                            .services
                            .get(&x.service)
                            .map_or(x.service.as_str(), |s| s.name.as_str()),
                        crate::health::ServiceState::from(x.state),
                        clock.when(x.until).local
                    )
                })
                .collect();
            DrillBanner {
                view: d.view.clone(),
                what: what.join(" "),
            }
        });
        self
    }

    /// The parts of `[page]` every page shows.
    pub fn new(config: &Config, logo_src: Option<&'a str>, now: DateTime<Utc>) -> Self {
        Self {
            title: config.page.title.clone(),
            contact: config.page.contact.clone(),
            links: links(config),
            logo_src,
            generated: Clock::new(config, now).when(now),
            refresh: REFRESH_SECS,
            subscribe_url: config.subscribers.as_ref().map(|_| match &config.page.url {
                Some(u) => format!("{u}subscribe"),
                None => "/subscribe".to_string(),
            }),
            drill: None,
        }
    }
}

fn links(config: &Config) -> Vec<LinkView> {
    config
        .page
        .links
        .iter()
        .filter_map(|l| {
            Some(LinkView {
                label: l.label.clone(),
                url: safe_url(&l.url)?,
            })
        })
        .collect()
}

/// `url` when it is safe to put in an `href` (http, https, mailto, tel or a local path);
/// anything else (`javascript:`, `data:`) is not linked.
pub fn safe_url(url: &str) -> Option<String> {
    let u = url.trim();
    let l = u.to_ascii_lowercase();
    let ok = ["http://", "https://", "mailto:", "tel:"]
        .iter()
        .any(|p| l.starts_with(p))
        || (l.starts_with('/') && !l.starts_with("//"));
    ok.then(|| u.to_string())
}

/// Why a service is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// The health checks found it failing.
    Unplanned,
    /// A `[[maintenance]]` window is on.
    Maintenance,
    /// An operator override says so.
    Operator,
}

/// A service the record cannot point at now.
#[derive(Debug, Clone, Serialize)]
pub struct Unavailable {
    /// Service id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// State in force (down or maintenance).
    pub state: ServiceState,
    /// Since when.
    pub since: When,
    /// Seconds since then.
    pub for_seconds: i64,
    /// Unplanned, maintenance or an operator decision.
    pub cause: Cause,
    /// The operator's reason, the window's message or the last check's finding.
    pub reason: String,
    /// When it is expected back: the override's `until` or the window's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<When>,
    /// A later entry of the record (a standby), not its usual target.
    pub standby: bool,
    /// `since`, as a time.
    #[serde(skip)]
    pub since_at: DateTime<Utc>,
}

/// One incident update, as the outage page lists them.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateView {
    /// Incident id.
    pub incident: String,
    /// When it was posted.
    pub at: When,
    /// "investigating", "resolved", …
    pub status: String,
    /// What it says.
    pub message: String,
}

/// A service that still works.
#[derive(Debug, Clone, Serialize)]
pub struct Working {
    /// Service id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Direct link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// One line on what it is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Up or impacted.
    pub state: ServiceState,
    /// For impacted services: why the usual way in does not work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The state in words.
    #[serde(skip)]
    pub label: &'static str,
    /// The state's badge class.
    #[serde(skip)]
    pub class: &'static str,
}

/// The outage page: a dynamic record that now answers `otherwise`.
#[derive(Debug, Clone, Serialize)]
pub struct Outage {
    /// Always "unavailable".
    pub status: &'static str,
    /// The name asked for (Host, normalized).
    pub host: String,
    /// The dynamic record behind it.
    pub record: String,
    /// The record's usual service (its first entry).
    pub service: String,
    /// Its display name.
    pub name: String,
    /// Since when the record points at this page, as far as the states tell.
    pub since: When,
    /// Seconds since then.
    pub for_seconds: i64,
    /// Every service of the record that is unavailable, usual one first.
    pub unavailable: Vec<Unavailable>,
    /// Updates of open incidents about these services, newest first.
    pub updates: Vec<UpdateView>,
    /// Services that work, with their direct links.
    pub working: Vec<Working>,
    /// `[page] links`.
    pub links: Vec<LinkView>,
    /// `[page] contact`.
    pub contact: String,
    /// When this was made.
    pub generated_at: When,
    /// The `Retry-After` sent with it, in seconds.
    pub retry_after: u64,
}

fn status_of<'a>(snap: &'a Snapshot, id: &str) -> Option<&'a ServiceStatus> {
    snap.health.services.get(id)
}

fn state_of(snap: &Snapshot, id: &str) -> ServiceState {
    status_of(snap, id).map_or(ServiceState::Up, |s| s.state)
}

fn name_of(config: &Config, id: &str) -> String {
    config
        .services
        .get(id)
        .map_or_else(|| id.to_string(), |s| s.name.clone())
}

/// `Retry-After` for a record: its first entry's service checks' `interval × rise` (the
/// longest), and never below [`MIN_RETRY_AFTER`].
pub fn retry_after(config: &Config, def: &Dynamic) -> u64 {
    let longest = def
        .answers
        .first()
        .and_then(|a| config.services.get(&a.if_up))
        .map(|svc| {
            svc.checks
                .iter()
                .map(|c| c.timing.interval.as_secs_f64() * f64::from(c.timing.rise))
                .fold(0.0, f64::max)
        })
        .unwrap_or(0.0);
    (longest.ceil() as u64).max(MIN_RETRY_AFTER)
}

/// Why `id` is unavailable: the override, else the window on now, else the checks.
fn cause(snap: &Snapshot, id: &str, st: Option<&ServiceStatus>, clock: &Clock) -> Unavailable {
    let config = &snap.config;
    let now = clock.now;
    let since = st.map_or(now, |s| s.since);
    let state = st.map_or(ServiceState::Down, |s| s.state);
    let (cause, reason, until) = if let Some(o) = snap.health.overrides.get(id) {
        (Cause::Operator, o.reason.clone(), o.until)
    } else if state == ServiceState::Maintenance {
        let window = config
            .maintenance
            .iter()
            .find(|m| m.services.iter().any(|s| s == id) && m.start <= now && now < m.end);
        (
            Cause::Maintenance,
            st.map(|s| s.reason.clone()).unwrap_or_default(),
            window.map(|m| m.end.with_timezone(&Utc)),
        )
    } else {
        let reason = match st {
            Some(s) if s.state.usable() => "none of its addresses answer".to_string(),
            Some(s) => s.reason.clone(),
            None => String::new(),
        };
        (Cause::Unplanned, reason, None)
    };
    Unavailable {
        id: id.to_string(),
        name: name_of(config, id),
        state,
        since: clock.when(since),
        for_seconds: (now - since).num_seconds().max(0),
        cause,
        reason,
        until: until.map(|u| clock.when(u)),
        standby: false,
        since_at: since,
    }
}

/// Services reached through something unusable: the names of those somethings.
fn broken_dependencies(snap: &Snapshot, id: &str) -> Vec<String> {
    let config = &snap.config;
    let mut todo: Vec<&String> = config
        .services
        .get(id)
        .map(|s| s.depends_on.iter().collect())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.as_str()) {
            continue;
        }
        if !state_of(snap, d).usable() {
            out.push(name_of(config, d));
        }
        if let Some(svc) = config.services.get(d) {
            todo.extend(svc.depends_on.iter());
        }
    }
    out.sort();
    out
}

fn impacted_note(snap: &Snapshot, id: &str) -> String {
    let broken = broken_dependencies(snap, id);
    if broken.is_empty() {
        "It works, but not through the usual way in: use its direct link.".into()
    } else {
        let verb = if broken.len() == 1 { "is" } else { "are" };
        format!(
            "It works, but not through the usual way in ({} {verb} unavailable): use its direct link.",
            broken.join(", ")
        )
    }
}

/// Services that are up or impacted, except `exclude`, in config order.
fn working(snap: &Snapshot, exclude: &[&str]) -> Vec<Working> {
    snap.config
        .services
        .values()
        .filter(|svc| !exclude.contains(&svc.id.as_str()))
        .filter_map(|svc| {
            let state = state_of(snap, &svc.id);
            state.usable().then(|| Working {
                id: svc.id.clone(),
                name: svc.name.clone(),
                url: svc.url.as_deref().and_then(safe_url),
                description: svc.description.clone(),
                state,
                note: (state == ServiceState::Impacted).then(|| impacted_note(snap, &svc.id)),
                label: state_label(&state),
                class: state_class(&state),
            })
        })
        .collect()
}

fn update_views<'a>(
    incidents: impl Iterator<Item = &'a Incident>,
    clock: &Clock,
) -> Vec<UpdateView> {
    let mut all: Vec<(DateTime<Utc>, UpdateView)> = incidents
        .flat_map(|i| {
            i.updates.iter().map(move |u| {
                (
                    u.at,
                    UpdateView {
                        incident: i.id.clone(),
                        at: clock.when(u.at),
                        status: u.status.clone(),
                        message: u.message.clone(),
                    },
                )
            })
        })
        .collect();
    // Newest first; for equal times, the later-posted first.
    all.reverse();
    all.sort_by_key(|u| std::cmp::Reverse(u.0));
    all.into_iter().map(|(_, u)| u).collect()
}

/// The outage view for dynamic record `record` of zone `zone`, when it answers `otherwise`
/// in `snap`; `None` when it answers one of its entries.
pub fn outage(
    snap: &Snapshot,
    zone: usize,
    record: usize,
    host: &str,
    now: DateTime<Utc>,
) -> Option<Outage> {
    let answer = snap
        .dynamic
        .iter()
        .find(|d| d.choice.zone == zone && d.choice.record == record)?;
    if answer.choice.chosen != Chosen::Otherwise {
        return None;
    }
    let config = &snap.config;
    let clock = Clock::new(config, now);
    let def = config.zones.get(zone)?.dynamic.get(record)?;
    let mut ids: Vec<&str> = Vec::new();
    for a in &def.answers {
        if !ids.contains(&a.if_up.as_str()) {
            ids.push(&a.if_up);
        }
    }
    let first = ids.first().copied().unwrap_or_default();
    let mut unavailable: Vec<Unavailable> = ids
        .iter()
        .filter(|id| !state_of(snap, id).usable())
        .map(|id| cause(snap, id, status_of(snap, id), &clock))
        .collect();
    if unavailable.is_empty() {
        // Usable services whose probed addresses are all dead (`check_each`).
        unavailable = ids
            .iter()
            .map(|id| cause(snap, id, status_of(snap, id), &clock))
            .collect();
    }
    for u in unavailable.iter_mut() {
        u.standby = u.id != first;
    }
    let since_t = unavailable.iter().map(|u| u.since_at).max().unwrap_or(now);
    let updates = update_views(
        snap.incidents
            .open()
            .filter(|i| i.services.iter().any(|s| ids.contains(&s.as_str()))),
        &clock,
    );
    Some(Outage {
        status: "unavailable",
        host: host.to_string(),
        record: def.name.to_string(),
        service: first.to_string(),
        name: name_of(config, first),
        since: clock.when(since_t),
        for_seconds: (now - since_t).num_seconds().max(0),
        unavailable,
        updates,
        working: working(snap, &ids),
        links: links(config),
        contact: config.page.contact.clone(),
        generated_at: clock.when(now),
        retry_after: retry_after(config, def),
    })
}

/// A service on the status page.
#[derive(Debug, Clone)]
pub struct ServiceRow {
    /// Id (anchor).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Direct link.
    pub url: Option<String>,
    /// One line on what it is for.
    pub description: Option<String>,
    /// State in force.
    pub state: ServiceState,
    /// Since when.
    pub since: When,
    /// Why, for services not up (the last check's finding, the window's message or the
    /// operator's reason).
    pub reason: Option<String>,
    /// Set when an operator override is in force.
    pub operator: bool,
    /// For impacted services: why the usual way in does not work.
    pub note: Option<String>,
    /// The state in words.
    pub label: &'static str,
    /// The state's badge class.
    pub class: &'static str,
    /// Its 90 day bars, availability and response times (none without history).
    pub history: Option<super::history::HistoryRow>,
}

/// An incident on the status page.
#[derive(Debug, Clone)]
pub struct IncidentView {
    /// Id (anchor).
    pub id: String,
    /// Names of the services concerned.
    pub services: String,
    /// When it was opened.
    pub opened: When,
    /// Updates, newest first.
    pub updates: Vec<UpdateView>,
}

/// A maintenance window on the status page.
#[derive(Debug, Clone)]
pub struct WindowView {
    /// Names of the services concerned.
    pub services: String,
    /// Start.
    pub start: When,
    /// End.
    pub end: When,
    /// What is done.
    pub message: String,
    /// Under way now.
    pub active: bool,
}

/// The overall status page.
#[derive(Debug, Clone)]
pub struct Status {
    /// One line: all well, or how many services have a problem.
    pub headline: String,
    /// True when every service is up.
    pub all_up: bool,
    /// Since when detour distrusts its own view (every canary down), if it does.
    pub frozen_since: Option<When>,
    /// Every service, in id order.
    pub services: Vec<ServiceRow>,
    /// Open incidents, newest first.
    pub incidents: Vec<IncidentView>,
    /// Windows not over yet, soonest first.
    pub windows: Vec<WindowView>,
}

fn names(config: &Config, ids: &[String]) -> String {
    ids.iter()
        .map(|i| name_of(config, i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status view of `snap`, with each service's `history` when there is one.
pub fn status(
    snap: &Snapshot,
    history: Option<&crate::history::view::PageView>,
    now: DateTime<Utc>,
) -> Status {
    let config = &snap.config;
    let clock = Clock::new(config, now);
    let services: Vec<ServiceRow> = config
        .services
        .values()
        .map(|svc| {
            let st = status_of(snap, &svc.id);
            let state = st.map_or(ServiceState::Up, |s| s.state);
            let operator = snap.health.overrides.contains_key(&svc.id);
            // Impacted services get their note instead: it says the same in plain words.
            let reason = st
                .filter(|s| {
                    matches!(
                        s.state,
                        ServiceState::Down | ServiceState::Maintenance | ServiceState::Degraded
                    ) && !s.reason.is_empty()
                })
                .map(|s| s.reason.clone());
            ServiceRow {
                id: svc.id.clone(),
                name: svc.name.clone(),
                url: svc.url.as_deref().and_then(safe_url),
                description: svc.description.clone(),
                state,
                since: clock.when(st.map_or(now, |s| s.since)),
                reason,
                operator,
                note: (state == ServiceState::Impacted).then(|| impacted_note(snap, &svc.id)),
                label: state_label(&state),
                class: state_class(&state),
                history: history.and_then(|h| {
                    let today = h.today?;
                    h.services
                        .get(&svc.id)
                        .map(|r| super::history::row(r, today))
                }),
            }
        })
        .collect();
    let troubled = services
        .iter()
        .filter(|s| s.state != ServiceState::Up)
        .count();
    let headline = match troubled {
        0 => "All services are working".to_string(),
        n if n == services.len() => "No service is working normally".to_string(),
        1 => "1 service has a problem".to_string(),
        n => format!("{n} services have a problem"),
    };
    let incidents = snap
        .incidents
        .open()
        .map(|i| IncidentView {
            id: i.id.clone(),
            services: names(config, &i.services),
            opened: clock.when(i.opened_at),
            updates: update_views(std::iter::once(i), &clock),
        })
        .collect();
    let mut windows: Vec<(DateTime<Utc>, WindowView)> = config
        .maintenance
        .iter()
        .filter(|m| m.end > now)
        .map(|m| {
            let start = m.start.with_timezone(&Utc);
            (
                start,
                WindowView {
                    services: names(config, &m.services),
                    start: clock.when(start),
                    end: clock.when(m.end.with_timezone(&Utc)),
                    message: m.message.clone(),
                    active: m.start <= now,
                },
            )
        })
        .collect();
    windows.sort_by_key(|(s, _)| *s);
    let h = &snap.health;
    Status {
        headline,
        all_up: troubled == 0,
        frozen_since: h.guard.frozen.then(|| clock.when(h.guard.since)),
        services,
        incidents,
        windows: windows.into_iter().map(|(_, w)| w).collect(),
    }
}

/// How a state reads on the page: always words, never colour alone.
pub fn state_label(s: &ServiceState) -> &'static str {
    match s {
        ServiceState::Up => "Working",
        ServiceState::Impacted => "Working, limited access",
        ServiceState::Degraded => "Working, slow",
        ServiceState::Down => "Unavailable",
        ServiceState::Maintenance => "Maintenance",
    }
}

/// The CSS class of a state's badge.
pub fn state_class(s: &ServiceState) -> &'static str {
    match s {
        ServiceState::Up => "ok",
        ServiceState::Impacted => "limited",
        ServiceState::Degraded => "slow",
        ServiceState::Down => "down",
        ServiceState::Maintenance => "maint",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_are_short_near_now() {
        let now = Utc::now();
        assert!(
            local_time(now, now, None).ends_with(" today"),
            "{}",
            local_time(now, now, None)
        );
        let far = now - chrono::Duration::days(800);
        let year = far.with_timezone(&Local).format(" %Y").to_string();
        assert!(
            local_time(far, now, None).ends_with(&year),
            "{}",
            local_time(far, now, None)
        );
    }

    #[test]
    fn a_configured_zone_names_its_times() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let ny: Tz = "America/New_York".parse().unwrap();
        // 03:30 UTC on 25 Dec is still 24 Dec in New York: the date follows the zone.
        let now = at("2026-12-25T03:30:00Z");
        assert_eq!(
            local_time(at("2026-12-25T03:00:00Z"), now, Some(ny)),
            "22:00 EST today"
        );
        assert_eq!(
            local_time(at("2026-07-04T16:00:00Z"), now, Some(ny)),
            "12:00 EDT, Sat 4 Jul"
        );
        assert_eq!(
            local_time(at("2025-12-25T12:00:00Z"), now, Some(ny)),
            "07:00 EST, Thu 25 Dec 2025"
        );
        // A zone whose database entry has no letters shows its offset.
        let sp: Tz = "America/Sao_Paulo".parse().unwrap();
        assert_eq!(
            local_time(at("2026-12-25T03:00:00Z"), now, Some(sp)),
            "00:00 UTC-03:00 today"
        );
        assert_eq!(local_time(now, now, Some(Tz::UTC)), "03:30 UTC today");
    }
}
