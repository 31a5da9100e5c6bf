//! Service states: check verdicts in, up / down / impacted / maintenance / degraded out; the single
//! writer of Snapshots.
//!
//! [`Engine`] ([`engine`]) is the pure part. [`StatesTask::run`] is the task around it: it
//! receives probe reports and operator commands ([`operator`]), and publishes a new Snapshot
//! whenever what DNS answers (or the states shown) changes; [`persist`] keeps verdicts and
//! serial reservations across restarts.

pub mod cluster;
pub mod engine;
pub mod operator;
pub mod persist;
pub mod rehearse;

pub use cluster::ClusterMode;
pub use engine::{Change, Engine};
pub use operator::{Actor, Command, IncidentOp, OperatorError};
pub use persist::{
    HIGHEST, Persisted, RESTORE_WINDOW, SERIAL_LEASE, persisted_path, restore, save_serials,
    serial_floor, serials_path, snapshot_of,
};
pub use rehearse::DrillOp;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::checks::Checks;
use crate::checks::runner::Report;
use crate::events::Event;
use crate::health::{Health, ServiceState};
use crate::incidents::Incidents;
use crate::overrides;
use crate::selection;
use crate::snapshot::{Snapshot, SnapshotHandle, unix_now};
use crate::store;

/// Logs one transition as a structured event (and counts it).
pub fn log_change(c: &Change) {
    metrics::counter!(
        "detour_state_transitions_total",
        "service" => c.service.clone(),
        "to" => c.transition.to.to_string()
    )
    .increment(1);
    let from = c.transition.from.map_or("-".to_string(), |s| s.to_string());
    let lasted = c
        .lasted
        .map_or(0.0, |d| (d.as_secs_f64() * 1000.0).round() / 1000.0);
    info!(
        service = %c.service,
        from = %from,
        to = %c.transition.to,
        reason = %c.transition.reason,
        previous_state_s = lasted,
        "service state changed"
    );
}

/// The states task: the single writer of Snapshots while running.
pub struct StatesTask {
    /// The engine.
    pub engine: Engine,
    /// Probe tasks.
    pub checks: Checks,
    /// Where probe reports arrive.
    pub reports: mpsc::Receiver<Report>,
    /// Where commands arrive.
    pub commands: mpsc::Receiver<Command>,
    /// Where Snapshots go.
    pub snapshots: SnapshotHandle,
    /// Incidents (this task is their only writer).
    pub incidents: Incidents,
    /// Where events for notifications go (none when nobody listens).
    pub events: Option<crate::events::Sender>,
    /// The serials `serials.json` reserves ([`save_serials`]).
    pub serial_ceilings: BTreeMap<String, u32>,
    /// When the verdicts changed since they were last saved: saved [`SAVE_AFTER`] later.
    pub unsaved_since: Option<tokio::time::Instant>,
    /// Bumped at least every [`BEAT`], for systemd's watchdog.
    pub beat: crate::systemd::Beat,
    /// In a cluster: this instance's own engine and the link; `engine` is then the agreed
    /// one, fed by the view.
    pub cluster: Option<ClusterMode>,
    /// Where transitions, answers, probes and operator actions are recorded (none with
    /// `[history] enabled = false`).
    pub history: Option<crate::history::Recorder>,
    /// Drills in force (`state_dir/drills.json`): each view with one gets its own Snapshot.
    pub drills: crate::rehearsal::Drills,
    /// The `[[safety]]` rules broken at the last evaluation (told when this changes).
    pub breaches: Vec<crate::rehearsal::Breach>,
}

/// Waits for the next view (never, alone or once the mirror is gone).
async fn next_view(c: &mut Option<ClusterMode>) {
    let Some(c) = c else {
        return std::future::pending().await;
    };
    if c.view.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The states task shows it is alive at least this often, work or not (as often as a UDP
/// worker: systemd's watchdog needs a beat within any half second).
pub const BEAT: Duration = Duration::from_millis(250);

/// How long changed verdicts wait before `health.json` is written: a storm of changes
/// writes it once, and a crash loses at most this much of it (probes redo it anyway).
pub const SAVE_AFTER: Duration = Duration::from_secs(1);

impl StatesTask {
    /// Runs until `cancel` fires, then saves the verdicts.
    pub async fn run(mut self, cancel: CancellationToken) {
        // Wake at every window edge after the last evaluation, not after "now": an edge
        // passed while something else was handled (or before this task started, since the
        // first Snapshot is built earlier) is applied at once instead of being skipped.
        let mut evaluated = Utc::now();
        if let Some(h) = &self.history {
            let snap = self.snapshots.load();
            let answers = crate::history::answers(&snap.config, &snap.selection);
            h.started(&self.engine.health(), self.engine.config(), answers);
        }
        // Drills kept from the last run get their views' Snapshots now.
        self.publish(!self.drills.is_empty());
        self.export_gauges();
        self.write_pins();
        let mut alive = tokio::time::interval(BEAT);
        loop {
            // Alone, time-driven changes (window edges, `until`) happen here; in a cluster
            // the leader ticks cluster time and every instance changes at that revision.
            let until_wake = if self.cluster.is_some() {
                self.until_tick().unwrap_or(Duration::from_secs(3600))
            } else {
                let wake = self
                    .engine
                    .next_boundary(evaluated)
                    .into_iter()
                    .chain(self.drills.next_end())
                    .min();
                wake.map(|w| (w - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                    .unwrap_or(Duration::from_secs(3600))
            };
            let mut dirty = false;
            let save_at = self.unsaved_since.map(|t| t + SAVE_AFTER);
            tokio::select! {
                r = self.reports.recv() => {
                    let Some(r) = r else { break };
                    if let Some(h) = &self.history {
                        h.probe(&r);
                    }
                    let engine = match &mut self.cluster {
                        Some(c) => &mut c.local,
                        None => &mut self.engine,
                    };
                    dirty |= engine.report(r);
                    // Take everything already queued before rebuilding once.
                    while let Ok(r) = self.reports.try_recv() {
                        if let Some(h) = &self.history {
                            h.probe(&r);
                        }
                        dirty |= engine.report(r);
                    }
                    if self.cluster.is_some() {
                        if dirty {
                            self.local_changes();
                            self.vote();
                        }
                        continue;
                    }
                }
                c = self.commands.recv() => match c {
                    Some(c) => {
                        self.command(c);
                        continue;
                    }
                    None => break,
                },
                _ = next_view(&mut self.cluster) => {
                    self.follow_view(false);
                    continue;
                }
                _ = tokio::time::sleep(until_wake) => {
                    if self.cluster.is_some() {
                        self.tick();
                        continue;
                    }
                    dirty = true;
                }
                _ = tokio::time::sleep_until(save_at.unwrap_or_else(tokio::time::Instant::now)),
                    if save_at.is_some() => {
                    self.save();
                    continue;
                }
                _ = alive.tick() => {
                    self.beat.beat();
                    // A signed zone's signatures are made again when their window turns
                    // (in a cluster, from the agreed view, at the agreed serials).
                    if self.snapshots.load().zones.iter().any(|z| z.signatures_due()) {
                        tracing::info!("DNSSEC: a new signing window; signing again");
                        if self.cluster.is_some() {
                            self.follow_view(true);
                        } else {
                            self.publish(true);
                        }
                    }
                    continue;
                }
                _ = cancel.cancelled() => break,
            }
            if dirty {
                evaluated = Utc::now();
                self.publish(false);
            }
        }
        self.checks.stop();
        self.save();
        if let Some(h) = &self.history {
            h.stop().await;
        }
    }

    /// Evaluates, logs transitions, and swaps in a new Snapshot when anything answered or
    /// shown changed.
    fn publish(&mut self, force: bool) {
        self.publish_by(force, false);
    }

    /// [`Self::publish`]; `operator` when an operator's override caused it (history counts
    /// the swaps it makes as manual).
    pub(super) fn publish_by(&mut self, force: bool, operator: bool) {
        // In a cluster everything is evaluated at cluster time, so that every instance
        // computes the same answers from the same view.
        let (now, serial_floor) = match &self.cluster {
            Some(c) => {
                let v = c.view.borrow();
                (cluster::cluster_now(&v), cluster::serial_at(&v, unix_now()))
            }
            None => (Utc::now(), unix_now()),
        };
        let expired = if self.cluster.is_some() {
            Vec::new() // the leader removes them from etcd (cluster::expire_in_cluster)
        } else {
            self.engine.expire_overrides(now)
        };
        if !expired.is_empty() {
            let dir = self.engine.config().server.state_dir.clone();
            if let Err(e) = overrides::save(&dir, self.engine.overrides()) {
                warn!(error = %e, "cannot save overrides after expiry");
            }
            for (service, o) in &expired {
                info!(service = %service, state = %ServiceState::from(o.state), "override expired");
                self.emit(Event::override_expired(
                    service,
                    ServiceState::from(o.state),
                ));
                self.audit(
                    "override.expired",
                    Some(service),
                    None,
                    &o.reason,
                    &Actor {
                        who: "detour".into(),
                    },
                );
            }
        }
        let drills_before = self.drills.list.len();
        if self.cluster.is_none() {
            self.expire_drills(now);
        }
        let force = force || self.drills.list.len() != drills_before;
        let was_frozen = self.snapshots.load().health.guard.frozen;
        let changes = self.engine.evaluate(now);
        for c in &changes {
            log_change(c);
            if let Some(h) = &self.history {
                let t = &c.transition;
                h.transition(&c.service, t.at, t.from, t.to, &t.reason);
            }
            // The first verdict at start is not news.
            if let Some(from) = c.transition.from {
                let since = c
                    .lasted
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .map(|d| c.transition.at - d);
                self.emit(Event::state_change(
                    &c.service,
                    self.service_name(&c.service),
                    from,
                    c.transition.to,
                    &c.transition.reason,
                    c.transition.at,
                    since,
                ));
            }
        }
        if self.engine.frozen() != was_frozen && self.cluster.is_none() {
            self.emit(Event::guard(self.engine.frozen()));
        }
        let health = self.engine.health();
        self.note_breaches(&health);
        let config = self.engine.config().clone();
        let selection = selection::select(&config, &health, now);
        let current = self.snapshots.load_full();
        let rebuild = force
            || drills_differ(&current, &self.drills)
            || !changes.is_empty()
            || !expired.is_empty()
            || !Arc::ptr_eq(&current.config, &config)
            || selection != current.selection
            || *current.incidents != self.incidents
            || health_differs(&current.health, &health);
        if rebuild {
            let incidents = if *current.incidents == self.incidents {
                current.incidents.clone()
            } else {
                Arc::new(self.incidents.clone())
            };
            let next = Snapshot::build(
                config,
                selection,
                Arc::new(health),
                incidents,
                Some(&current),
                serial_floor,
            );
            let views = self.view_snapshots(&next, now, serial_floor);
            let next = next.with_views(views);
            if persist::passes(&next, &self.serial_ceilings) {
                // Before the new serials are served, so a crash between the two cannot lose
                // one. A failed write is logged and the flip goes ahead: answering matters more.
                self.serial_ceilings = save_serials(&next);
            }
            if let Some(h) = &self.history {
                h.answered(
                    crate::history::answers(&next.config, &next.selection),
                    operator,
                );
            }
            self.snapshots.store(next);
            metrics::counter!("detour_snapshot_swaps_total").increment(1);
            self.export_gauges();
        }
        if !changes.is_empty() || force {
            self.unsaved_since
                .get_or_insert_with(tokio::time::Instant::now);
        }
    }

    /// A service's display name, for events.
    fn service_name(&self, service: &str) -> Option<String> {
        self.engine
            .config()
            .services
            .get(service)
            .map(|s| s.name.clone())
    }

    /// Hands an event to notifications: alone, always; in a cluster, only on the leader, so
    /// that the cluster tells each event once.
    fn emit(&self, e: Event) {
        if !self.notifies() {
            return;
        }
        self.emit_here(e);
    }

    /// Hands an event to this instance's notifications whatever its role.
    fn emit_here(&self, e: Event) {
        if let Some(tx) = &self.events {
            // The receiver lives as long as the daemon; a closed one means shutdown.
            let _ = tx.send(e);
        }
    }

    fn export_gauges(&self) {
        let h = self.engine.health();
        for (id, s) in &h.services {
            for st in ServiceState::ALL {
                let v = if s.state == st { 1.0 } else { 0.0 };
                metrics::gauge!("detour_service_state", "service" => id.clone(), "state" => st.to_string()).set(v);
            }
        }
        metrics::gauge!("detour_guard_frozen").set(if h.guard.frozen { 1.0 } else { 0.0 });
        let awaiting = h.checks.values().filter(|c| c.awaiting_canary).count();
        metrics::gauge!("detour_checks_awaiting_canary").set(awaiting as f64);
        let degraded = h
            .checks
            .values()
            .filter(|c| c.verdict == Some(true) && c.grade != crate::checks::Grade::Normal)
            .count();
        metrics::gauge!("detour_checks_degraded").set(degraded as f64);
        // Compare with a secondary's SOA serial to see how far behind it is.
        for z in &self.snapshots.load().zones {
            let zone = z.origin.to_string();
            metrics::gauge!("detour_zone_serial", "zone" => zone.clone()).set(f64::from(z.serial));
            metrics::gauge!("detour_zone_journal_changes", "zone" => zone)
                .set(z.journal_len() as f64);
        }
    }

    /// Logs the transitions of this instance's own view (in a cluster; alone, `publish`
    /// logs them), and tells when its guard freezes or thaws: that is this instance's news.
    fn local_changes(&mut self) {
        let Some(c) = &mut self.cluster else { return };
        let was_frozen = c.local.frozen();
        for ch in c.local.evaluate(Utc::now()) {
            info!(
                service = %ch.service,
                to = %ch.transition.to,
                reason = %ch.transition.reason,
                instance = %c.link.instance(),
                "this instance's own view changed (the cluster's quorum decides)"
            );
        }
        let frozen = c.local.frozen();
        if frozen != was_frozen {
            self.emit_here(Event::guard(frozen));
        }
    }

    fn save(&mut self) {
        self.unsaved_since = None;
        let p = self.engine.persisted(Utc::now());
        let path = persisted_path(self.engine.config());
        match serde_json::to_vec_pretty(&p) {
            Ok(bytes) => {
                if let Err(e) = store::atomic_write(&path, &bytes) {
                    warn!(file = %path.display(), error = %e, "cannot save service states");
                }
            }
            Err(e) => warn!(error = %e, "cannot encode service states"),
        }
    }
}

/// True when the drills in force are not the ones `snap`'s views were built with (in a
/// cluster, a drill arrives with the view, not as a command).
fn drills_differ(snap: &Snapshot, drills: &crate::rehearsal::Drills) -> bool {
    let key = |d: &crate::rehearsal::Drill| (d.view.clone(), d.service.clone(), d.started);
    let mut published: Vec<_> = snap
        .view_snapshots()
        .into_iter()
        .filter_map(|(_, v)| v.drill.as_ref())
        .flat_map(|d| d.drills.iter().map(key))
        .collect();
    let mut wanted: Vec<_> = drills.list.iter().map(key).collect();
    published.sort();
    wanted.sort();
    published != wanted
}

/// True when verdicts differ (which changes answers for `check_each` records), or what the
/// status shows of them: a service's reason, a check held for a canary.
fn health_differs(a: &Health, b: &Health) -> bool {
    a.guard.frozen != b.guard.frozen
        || a.checks.len() != b.checks.len()
        || a.checks
            .iter()
            .zip(b.checks.iter())
            .any(|((ia, ca), (ib, cb))| {
                ia != ib
                    || ca.verdict != cb.verdict
                    || ca.grade != cb.grade
                    || ca.awaiting_canary != cb.awaiting_canary
            })
        || a.services.len() != b.services.len()
        || a.services
            .iter()
            .zip(b.services.iter())
            .any(|((ia, sa), (ib, sb))| ia != ib || sa.reason != sb.reason)
}
