//! The shared state types: what a service and a check are as of one moment (up / down /
//! impacted / maintenance / degraded, with why and since when), and [`Health`], all of it as the states
//! task publishes it in a Snapshot for DNS, the page, the admin API and notifications.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use chrono::{DateTime, Utc};
use hickory_server::proto::rr::RData;
use serde::{Deserialize, Serialize};

use crate::checks::runner::CheckId;
use crate::checks::{Grade, Observation};
use crate::config::Dynamic;
use crate::overrides::{Forced, Overrides};
use crate::selection;

/// The states of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Its checks pass and everything it depends on is up.
    Up,
    /// Its checks fail.
    Down,
    /// Its checks pass but something in `depends_on` is down: it works, but not through the
    /// usual way in.
    Impacted,
    /// Planned work (a `[[maintenance]]` window, an operator, or its vendor's status page).
    Maintenance,
    /// Its checks pass, but slower than `degraded_after` (or its vendor says "degraded
    /// performance"): answered as up, shown as slow.
    Degraded,
}

impl ServiceState {
    /// True when records may point at the service (up, degraded or impacted).
    pub fn usable(self) -> bool {
        matches!(
            self,
            ServiceState::Up | ServiceState::Impacted | ServiceState::Degraded
        )
    }

    /// Every state, for metrics.
    pub const ALL: [ServiceState; 5] = [
        ServiceState::Up,
        ServiceState::Down,
        ServiceState::Impacted,
        ServiceState::Maintenance,
        ServiceState::Degraded,
    ];
}

impl From<Forced> for ServiceState {
    fn from(f: Forced) -> Self {
        match f {
            Forced::Up => ServiceState::Up,
            Forced::Down => ServiceState::Down,
            Forced::Maintenance => ServiceState::Maintenance,
        }
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceState::Up => "up",
            ServiceState::Down => "down",
            ServiceState::Impacted => "impacted",
            ServiceState::Maintenance => "maintenance",
            ServiceState::Degraded => "degraded",
        })
    }
}

/// One change of a service's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// When.
    pub at: DateTime<Utc>,
    /// Previous state (none at start).
    pub from: Option<ServiceState>,
    /// New state.
    pub to: ServiceState,
    /// Why, in one line.
    pub reason: String,
}

/// Transitions kept per service for the status API and page.
pub const HISTORY: usize = 50;

/// A service as of one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    /// Current state.
    pub state: ServiceState,
    /// Since when.
    pub since: DateTime<Utc>,
    /// Why, in one line ("HTTP 502", "depends on sso, which is down", "Database upgrade").
    pub reason: String,
    /// Latest transitions, newest last.
    pub history: VecDeque<Transition>,
    /// What the checks and maintenance windows alone say (shown beside an override).
    pub observed: ServiceState,
    /// Why the checks say so.
    pub observed_reason: String,
}

/// A check as of one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckStatus {
    /// Up (`Some(true)`), down, or no verdict yet.
    pub verdict: Option<bool>,
    /// Since when the verdict holds.
    pub since: DateTime<Utc>,
    /// How well an up check works (the grade in force, with rise/fall like the verdict).
    pub grade: Grade,
    /// The latest observation.
    pub last: Option<Observation>,
    /// The check is down, but its verdict waits for a canary to pass (see `[guard]`);
    /// `verdict` shows the one in force meanwhile.
    pub awaiting_canary: bool,
}

/// The guard's view: is detour's own network working?
#[derive(Debug, Clone, PartialEq)]
pub struct GuardStatus {
    /// Every canary is down: states are frozen.
    pub frozen: bool,
    /// Since when (frozen or not).
    pub since: DateTime<Utc>,
}

/// Health as published in a Snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Every service by id.
    pub services: BTreeMap<String, ServiceStatus>,
    /// Every check by id (with the latest observation as of the last publication).
    pub checks: BTreeMap<CheckId, CheckStatus>,
    /// The guard.
    pub guard: GuardStatus,
    /// Operator overrides in force.
    pub overrides: Overrides,
}

impl Health {
    /// A check's verdict in force: up, down, or none yet.
    pub fn verdict(&self, id: &CheckId) -> Option<bool> {
        self.checks.get(id).and_then(|c| c.verdict)
    }
}

impl selection::Health for Health {
    fn usable(&self, service: &str) -> bool {
        self.services.get(service).is_none_or(|s| s.state.usable())
    }

    fn live_values(&self, record: &Dynamic, entry: usize) -> Option<Vec<RData>> {
        record.check_each.as_ref()?;
        let values = &record.answers.get(entry)?.values;
        Some(
            values
                .iter()
                .filter(|v| {
                    let Some(ip) = crate::config::address_of(v) else {
                        return true;
                    };
                    let id = CheckId::Address {
                        record: record.name.clone(),
                        rtype: record.rtype,
                        ip,
                    };
                    // No verdict yet counts as live: only a failed probe removes an address.
                    self.checks.get(&id).and_then(|c| c.verdict) != Some(false)
                })
                .cloned()
                .collect(),
        )
    }
}
