//! Record selection: which answer each `[[dynamic]]` record gives, from service health.
//!
//! A pure function of the configuration and a view of service health: no I/O, no clock,
//! so the rule ("the first entry whose service is usable wins, else `otherwise`") is tested
//! on its own and the Snapshot builder only compiles what it is handed.

use hickory_server::proto::rr::RData;

use crate::config::{Config, Dynamic};

/// Which of a dynamic record's candidates is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// `answers[i]`.
    Entry(usize),
    /// The outage answer.
    Otherwise,
}

/// The selected answer for one dynamic record.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Index of the zone in `Config::zones`.
    pub zone: usize,
    /// Index of the record in that zone's `dynamic`.
    pub record: usize,
    /// Which candidate won.
    pub chosen: Chosen,
    /// The values answered (a subset of the entry's when addresses are probed one by one).
    pub values: Vec<RData>,
}

/// What selection needs to know about health.
pub trait Health {
    /// True when `service` may take traffic (up or impacted).
    fn usable(&self, service: &str) -> bool;
    /// For `check_each` records: which of an entry's values are live; `None` when not probed
    /// (all count as live).
    fn live_values(&self, _record: &Dynamic, _entry: usize) -> Option<Vec<RData>> {
        None
    }
}

/// Health before any verdict: every service usable, so each record answers its first entry.
pub struct AllUp;

impl Health for AllUp {
    fn usable(&self, _service: &str) -> bool {
        true
    }
}

/// Chooses an answer for every dynamic record of every zone, in config order.
pub fn select(config: &Config, health: &impl Health) -> Vec<Choice> {
    let mut out = Vec::new();
    for (zi, zone) in config.zones.iter().enumerate() {
        for (ri, d) in zone.dynamic.iter().enumerate() {
            out.push(choose(zi, ri, d, health));
        }
    }
    out
}

fn choose(zone: usize, record: usize, d: &Dynamic, health: &impl Health) -> Choice {
    for (i, entry) in d.answers.iter().enumerate() {
        if !health.usable(&entry.if_up) {
            continue;
        }
        let values = health
            .live_values(d, i)
            .unwrap_or_else(|| entry.values.clone());
        if values.is_empty() {
            // check_each found no live address: the entry counts as down.
            continue;
        }
        return Choice {
            zone,
            record,
            chosen: Chosen::Entry(i),
            values,
        };
    }
    Choice {
        zone,
        record,
        chosen: Chosen::Otherwise,
        values: d.otherwise.clone(),
    }
}
