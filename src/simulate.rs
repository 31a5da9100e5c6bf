//! `detour simulate`: what DNS, the outage page and notifications would do if some services
//! were in given states (at a given time), next to what they do now. Nothing changes: the
//! states task builds the would-be Snapshot ([`crate::control::Control::what_if`]), this
//! compares it with the current one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::events::Event;
use crate::health::ServiceState;
use crate::rehearsal::Breach;
use crate::selection::Chosen;
use crate::snapshot::Snapshot;
use crate::status;

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    /// When it is evaluated (maintenance windows at that time).
    pub at: DateTime<Utc>,
    /// The states assumed.
    pub assumed: BTreeMap<String, ServiceState>,
    /// Every service: now and then.
    pub services: Vec<ServiceChange>,
    /// Every dynamic record: what it answers now and would answer.
    pub records: Vec<RecordChange>,
    /// Services that would be impacted (working, but reached through something down).
    pub impacted: Vec<String>,
    /// The hosts that would get the outage page, with what it would say.
    pub outage_pages: Vec<crate::page::Outage>,
    /// Whom the changes would reach (filled in by the caller, which knows the notifier).
    pub notified: Vec<String>,
    /// `[[safety]]` rules the simulated states would break.
    pub safety: Vec<Breach>,
}

/// A service, now and in the simulation.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceChange {
    /// Id.
    pub id: String,
    /// State now.
    pub now: ServiceState,
    /// State it would be in.
    pub would: ServiceState,
    /// Why it would be.
    pub because: String,
    /// True when the two differ.
    pub changes: bool,
}

/// A dynamic record, now and in the simulation.
#[derive(Debug, Clone, Serialize)]
pub struct RecordChange {
    /// Owner name.
    pub name: String,
    /// A, AAAA or CNAME.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Values answered now.
    pub now: Vec<String>,
    /// Values it would answer.
    pub would: Vec<String>,
    /// True when it would point at the outage page.
    pub outage: bool,
    /// Why it would answer so.
    pub because: String,
    /// True when the answer would change.
    pub changes: bool,
}

/// Compares `now` (the Snapshot in force) with `would` (built for `assumed` at `at`); the
/// events the change would raise come second, for the caller to ask who they reach.
pub fn compare(
    now: &Snapshot,
    would: &Snapshot,
    assumed: BTreeMap<String, ServiceState>,
    at: DateTime<Utc>,
) -> (Simulation, Vec<Event>) {
    let a = status::build(now, None);
    let b = status::build(would, None);
    let mut events = Vec::new();
    let services: Vec<ServiceChange> = a
        .services
        .iter()
        .zip(b.services.iter())
        .map(|(x, y)| {
            if x.state != y.state {
                events.push(Event::state_change(
                    &y.id,
                    Some(y.name.clone()),
                    x.state,
                    y.state,
                    &y.reason,
                    at,
                    Some(x.since),
                ));
            }
            ServiceChange {
                id: y.id.clone(),
                now: x.state,
                would: y.state,
                because: y.reason.clone(),
                changes: x.state != y.state,
            }
        })
        .collect();
    let records = a
        .records
        .iter()
        .zip(b.records.iter())
        .map(|(x, y)| RecordChange {
            name: y.name.clone(),
            rtype: y.rtype.clone(),
            now: x.values.clone(),
            would: y.values.clone(),
            outage: y.outage,
            because: y.because.clone(),
            changes: x.values != y.values,
        })
        .collect();
    let impacted = b
        .services
        .iter()
        .filter(|s| s.state == ServiceState::Impacted)
        .map(|s| s.id.clone())
        .collect();
    let outage_pages = would
        .dynamic
        .iter()
        .filter(|d| d.choice.chosen == Chosen::Otherwise)
        .filter_map(|d| {
            let host = d.name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
            crate::page::outage(would, d.choice.zone, d.choice.record, &host, at)
        })
        .collect();
    let safety = crate::rehearsal::breaches(&would.config.safety, &would.health);
    (
        Simulation {
            at,
            assumed,
            services,
            records,
            impacted,
            outage_pages,
            notified: Vec::new(),
            safety,
        },
        events,
    )
}
