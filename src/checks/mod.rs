//! Health checks: one task per probe, each sending what it saw to the states task.
//!
//! [`probe`] performs single probes (HTTP, TCP, DNS, and per-address probes for
//! `check_each`), each bounded by its timeout whatever the other side does; [`journey`]
//! (HTTP steps sharing cookies) and [`vendor`] (a vendor's Statuspage) are probes too.
//! [`runner`] schedules them: jittered start, steady `interval`, faster `confirm_interval`
//! while rise/fall is deciding, and rise/fall hysteresis per check (of the verdict, and of
//! an up check's [`Grade`]). [`heartbeat`] checks are not probed: their task waits for a
//! job's calls.

pub mod heartbeat;
pub mod journey;
pub mod probe;
pub mod runner;
pub mod vendor;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What one probe saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The probe passed.
    pub ok: bool,
    /// How long it took (up to the timeout).
    pub latency: Duration,
    /// One line for people: "HTTP 200", "HTTP 502", "connect refused",
    /// "timed out after 400ms", "body lacks 'OK'", "certificate expires in 3 days".
    pub reason: String,
    /// When it finished.
    pub at: DateTime<Utc>,
    /// When it finished, on the monotonic clock: to order probes against each other when the
    /// wall clock steps (`at` is for people).
    pub finished: Instant,
    /// It failed for detour's own lack of resources (out of file descriptors, of memory or
    /// of socket buffers), which says nothing about the target: not counted.
    pub own_fault: bool,
    /// How well a passing probe went: slower than `degraded_after`, or a vendor saying it
    /// is degraded or under maintenance (always [`Grade::Normal`] for a failure).
    pub grade: Grade,
}

/// How well a passing check works: what a pass alone does not say.
///
/// Ordered from best to worst, so that `max` is the worse of two.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Grade {
    /// Works as it should.
    #[default]
    Normal,
    /// Works, but slowly (`degraded_after`), or its vendor says "degraded performance".
    Degraded,
    /// Its vendor says it is under maintenance (a `statuspage` check).
    Maintenance,
}

impl Grade {
    /// True for [`Grade::Normal`] (serde's `skip_serializing_if`).
    pub fn is_normal(&self) -> bool {
        *self == Grade::Normal
    }

    /// The name used in status documents and votes.
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Normal => "normal",
            Grade::Degraded => "degraded",
            Grade::Maintenance => "maintenance",
        }
    }
}

impl Observation {
    /// A passing observation.
    pub fn pass(latency: Duration, reason: impl Into<String>) -> Self {
        Self {
            ok: true,
            latency,
            reason: reason.into(),
            at: Utc::now(),
            finished: Instant::now(),
            own_fault: false,
            grade: Grade::Normal,
        }
    }

    /// A passing observation of a check that works, but not fully (`grade`).
    pub fn graded(latency: Duration, grade: Grade, reason: impl Into<String>) -> Self {
        Self {
            grade,
            ..Self::pass(latency, reason)
        }
    }

    /// A failing observation.
    pub fn fail(latency: Duration, reason: impl Into<String>) -> Self {
        Self {
            ok: false,
            latency,
            reason: reason.into(),
            at: Utc::now(),
            finished: Instant::now(),
            own_fault: false,
            grade: Grade::Normal,
        }
    }
}

use std::collections::{BTreeMap, HashMap};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, Timing};
use probe::Prober;
use runner::{CheckId, Report, Target};

/// Every probe a config asks for, by id.
pub fn plan(config: &Config) -> BTreeMap<CheckId, (Target, Timing)> {
    let mut out = BTreeMap::new();
    for (id, svc) in &config.services {
        for (index, c) in svc.checks.iter().enumerate() {
            out.insert(
                CheckId::Service {
                    service: id.clone(),
                    index,
                },
                (Target::Check(c.kind.clone()), c.timing),
            );
        }
    }
    for (i, c) in config.guard.canaries.iter().enumerate() {
        out.insert(
            CheckId::Canary(i),
            (Target::Check(c.kind.clone()), c.timing),
        );
    }
    for zone in &config.zones {
        for d in &zone.dynamic {
            for (ip, each) in d.probed_addresses() {
                out.insert(
                    CheckId::Address {
                        record: d.name.clone(),
                        rtype: d.rtype,
                        ip,
                    },
                    (
                        Target::Address {
                            kind: each.kind.clone(),
                            ip,
                            port: each.port,
                            record: d.name.clone(),
                        },
                        each.timing,
                    ),
                );
            }
        }
    }
    out
}

/// The running probe tasks, kept in step with the config.
pub struct Checks {
    prober: Prober,
    heartbeats: heartbeat::Heartbeats,
    links: runner::Links,
    parent: CancellationToken,
    running: HashMap<CheckId, ((Target, Timing), CancellationToken)>,
}

impl Checks {
    /// No tasks yet; reports will go to `tx`.
    pub fn new(prober: Prober, tx: mpsc::Sender<Report>, parent: CancellationToken) -> Self {
        Self {
            prober,
            heartbeats: heartbeat::Heartbeats::new(),
            links: runner::Links {
                tx,
                canaries: tokio::sync::watch::channel(0).0,
            },
            parent,
            running: HashMap::new(),
        }
    }

    /// The heartbeat registry, for the admin API.
    pub fn heartbeats(&self) -> heartbeat::Heartbeats {
        self.heartbeats.clone()
    }

    /// Starts what `config` asks for and stops what it no longer does. A check whose
    /// definition did not change keeps running untouched; a new or changed one starts from the
    /// verdict `verdict` gives (none for a changed one, which the engine has reset).
    /// Heartbeat tokens are read or made here (problems are logged).
    pub fn apply(&mut self, config: &Config, verdict: impl Fn(&CheckId) -> Option<bool>) {
        for p in self.heartbeats.apply(config) {
            tracing::error!("{p}");
        }
        let wanted = plan(config);
        self.running.retain(|id, (def, token)| {
            let keep = wanted.get(id) == Some(def);
            if !keep {
                token.cancel();
            }
            keep
        });
        for (id, def) in wanted {
            if self.running.contains_key(&id) {
                continue;
            }
            let token = self.parent.child_token();
            let initial = verdict(&id);
            if let Target::Check(config::CheckKind::Heartbeat(h)) = &def.0 {
                // Without an entry (its token could not be made, and that was logged) the
                // check has nothing to wait on: it is not started.
                if let Some(beats) = self.heartbeats.subscribe(&id) {
                    tokio::spawn(heartbeat::watch(
                        id.clone(),
                        *h,
                        initial,
                        beats,
                        self.links.clone(),
                        token.clone(),
                    ));
                }
                self.running.insert(id, (def, token));
                continue;
            }
            tokio::spawn(runner::run(
                id.clone(),
                def.0.clone(),
                def.1,
                initial,
                self.prober.clone(),
                self.links.clone(),
                token.clone(),
            ));
            self.running.insert(id, (def, token));
        }
    }

    /// Stops every task.
    pub fn stop(&mut self) {
        for (_, (_, t)) in self.running.drain() {
            t.cancel();
        }
    }
}
