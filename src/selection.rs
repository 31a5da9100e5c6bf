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

/// Everything the Snapshot builder needs from selection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selection {
    /// One choice per dynamic record, in config order.
    pub choices: Vec<Choice>,
    /// (zone index, owner, TTL) of static records whose TTL is lowered ahead of maintenance.
    pub ttl_caps: Vec<(usize, hickory_server::proto::rr::Name, u32)>,
}

impl Selection {
    /// The part of this selection that concerns zone `zone`.
    pub fn for_zone(
        &self,
        zone: usize,
    ) -> (Vec<&Choice>, Vec<(&hickory_server::proto::rr::Name, u32)>) {
        (
            self.choices.iter().filter(|c| c.zone == zone).collect(),
            self.ttl_caps
                .iter()
                .filter(|(z, _, _)| *z == zone)
                .map(|(_, n, t)| (n, *t))
                .collect(),
        )
    }
}

/// Chooses an answer for every dynamic record of every zone, and the TTLs lowered ahead of
/// maintenance at `now`.
pub fn select(
    config: &Config,
    health: &impl Health,
    now: chrono::DateTime<chrono::Utc>,
) -> Selection {
    let mut choices = Vec::new();
    for (zi, zone) in config.zones.iter().enumerate() {
        for (ri, d) in zone.dynamic.iter().enumerate() {
            choices.push(choose(zi, ri, d, health));
        }
    }
    Selection {
        choices,
        ttl_caps: maintenance_ttls(config, now),
    }
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

/// TTLs lowered ahead of maintenance: for each zone (by index), static CNAME owners whose
/// chain leads to a dynamic record that a `[[maintenance]]` window will redirect get that
/// record's TTL, from one old TTL before the window starts until it ends, so caches switch
/// on time. Dynamic records always answer with their own TTL and need no lowering.
pub fn maintenance_ttls(
    config: &Config,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(usize, hickory_server::proto::rr::Name, u32)> {
    use hickory_server::proto::rr::RecordType;
    let mut out = Vec::new();
    for (zi, zone) in config.zones.iter().enumerate() {
        for r in zone
            .records
            .iter()
            .filter(|r| r.record_type() == RecordType::CNAME)
        {
            let Some(d) = zone.cname_leads_to(&r.name) else {
                continue;
            };
            if r.ttl <= d.ttl {
                continue;
            }
            let lead = chrono::Duration::seconds(i64::from(r.ttl));
            let soon = config.maintenance.iter().any(|m| {
                let redirects = d.answers.iter().any(|a| m.services.contains(&a.if_up));
                redirects && now >= m.start - lead && now < m.end
            });
            if soon {
                out.push((zi, r.name.clone(), d.ttl));
            }
        }
    }
    out
}

/// Moments after `now` when [`maintenance_ttls`] changes: one old TTL before each window.
pub fn ttl_boundaries(
    config: &Config,
    now: chrono::DateTime<chrono::Utc>,
) -> impl Iterator<Item = chrono::DateTime<chrono::Utc>> + '_ {
    use hickory_server::proto::rr::RecordType;
    config.zones.iter().flat_map(move |zone| {
        zone.records
            .iter()
            .filter(|r| r.record_type() == RecordType::CNAME)
            .filter_map(move |r| zone.cname_leads_to(&r.name).map(|_| r.ttl))
            .flat_map(move |ttl| {
                config.maintenance.iter().map(move |m| {
                    (m.start - chrono::Duration::seconds(i64::from(ttl)))
                        .with_timezone(&chrono::Utc)
                })
            })
            .filter(move |t| *t > now)
    })
}
