//! The states task in a cluster: this instance's verdicts go to etcd as its ballot, and the
//! Snapshot is built from the quorum of every live instance's ballot (the *agreed* engine),
//! at cluster time, with serials counted from the cluster's base by etcd revision, so that
//! every instance serves the same answers and serials. The elected instance (the oldest
//! live member) sends notifications, ticks cluster time at window and `until` edges, and
//! removes expired overrides.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Engine, StatesTask};
use crate::audit;
use crate::checks::Grade;
use crate::checks::runner::CheckId;
use crate::cluster::{Ballot, Cluster, View, Vote, keys};
use crate::config::{CheckKind, Quorum};
use crate::events::Event;
use crate::health::ServiceState;
use crate::{incidents, overrides};

/// The leader's background writes failing (etcd away) are logged once a minute.
static LEADER_LOG: crate::telemetry::Throttle =
    crate::telemetry::Throttle::new(Duration::from_secs(60));

/// The states task's cluster side.
pub struct ClusterMode {
    /// The link to etcd.
    pub link: Cluster,
    /// This instance's own engine: probe reports in, its ballot out.
    pub local: Engine,
    /// The view, as the mirror updates it.
    pub view: watch::Receiver<Arc<View>>,
    /// The revision whose view the current Snapshot was built from (operators' writes
    /// wait for it).
    pub applied: watch::Sender<i64>,
    /// Audit news up to this revision has been acted on.
    pub news_seen: i64,
    /// The ballot last handed to the session.
    pub ballot: Ballot,
    /// No clock tick before this (one just made, or failures backing off).
    pub tick_after: tokio::time::Instant,
    /// How long the next failed tick backs off.
    pub tick_backoff: Duration,
    /// The leader's background writes in flight (clock tick, expiries, serial pins): one
    /// of each at a time.
    pub busy: Arc<Busy>,
    /// What the cache files in state_dir hold.
    pub cached: (overrides::Overrides, incidents::Incidents, Pins),
}

/// The agreed serials by origin, as the view holds them.
pub type Pins = BTreeMap<String, crate::cluster::view::Pin>;

/// Which of the leader's background writes are in flight.
#[derive(Debug, Default)]
pub struct Busy {
    /// A clock tick.
    pub tick: AtomicBool,
    /// Removing expired overrides.
    pub expire: AtomicBool,
    /// Writing serial pins.
    pub pins: AtomicBool,
}

/// Claims one of [`Busy`]'s flags for a background write; `None` while one is in flight.
/// The claim releases it when dropped (the write ended, however).
fn claim(busy: &Arc<Busy>, flag: fn(&Busy) -> &AtomicBool) -> Option<Claim> {
    (!flag(busy).swap(true, Ordering::AcqRel)).then(|| Claim {
        busy: busy.clone(),
        flag,
    })
}

/// A claimed [`Busy`] flag, released on drop.
pub struct Claim {
    busy: Arc<Busy>,
    flag: fn(&Busy) -> &AtomicBool,
}

impl Drop for Claim {
    fn drop(&mut self) {
        (self.flag)(&self.busy).store(false, Ordering::Release);
    }
}

/// The file caching the agreed serials (`state_dir/cluster-serials.json`), for a start
/// while etcd cannot be reached.
pub fn pins_path(config: &crate::config::Config) -> std::path::PathBuf {
    config.server.state_dir.join("cluster-serials.json")
}

/// The cached agreed serials (none when absent or unreadable: the message says so).
pub fn cached_pins(config: &crate::config::Config) -> (Pins, Option<String>) {
    let (p, problem) = crate::store::load_or_report(&pins_path(config), |t| {
        serde_json::from_str::<Pins>(t).map_err(|e| e.to_string())
    });
    (p.unwrap_or_default(), problem)
}

impl std::fmt::Debug for ClusterMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMode")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// Cluster time at `view` (the wall clock before any writer has set it).
pub fn cluster_now(view: &View) -> DateTime<Utc> {
    view.clock.unwrap_or_else(Utc::now)
}

/// The serial a zone whose content changes at `view`'s revision gets: the cluster's base
/// plus the revision, the same on every instance that sees the change at that revision
/// (`fallback` as the base before the view has one).
pub fn serial_at(view: &View, fallback: u32) -> u32 {
    let base = view.serial_base.unwrap_or(fallback);
    let rev = u32::try_from(view.revision.max(0) % i64::from(u32::MAX)).unwrap_or(0);
    base.wrapping_add(rev)
}

/// This instance's ballot from its own engine: the verdict in force of every check but the
/// canaries (the guard's own), and whether its guard is frozen. A vote keeps the reason it
/// had when it flipped, so that a failing probe's changing words do not rewrite it.
pub fn ballot(local: &Engine, before: &Ballot) -> Ballot {
    let health = local.health();
    let mut votes = BTreeMap::new();
    for (id, c) in &health.checks {
        if matches!(id, CheckId::Canary(_)) {
            continue;
        }
        let Some(up) = c.verdict else { continue };
        let key = id.to_string();
        let grade = if up { c.grade } else { Grade::Normal };
        let vote = match before.votes.get(&key) {
            Some(v) if v.up == up && v.grade == grade => v.clone(),
            _ => Vote {
                up,
                why: if up && grade == Grade::Normal {
                    String::new()
                } else {
                    c.last
                        .as_ref()
                        .map(|o| o.reason.clone())
                        .unwrap_or_default()
                },
                grade,
            },
        };
        votes.insert(key, vote);
    }
    Ballot {
        frozen: health.guard.frozen,
        votes,
    }
}

/// Sets the agreed engine from `view`: each check's verdict is the quorum of the live,
/// unfrozen instances' votes (a check nobody votes on keeps its last agreed verdict, so a
/// cluster coming back from an outage does not flap), and the overrides in force at
/// cluster time. Returns cluster time.
pub fn agree(engine: &mut Engine, view: &View) -> DateTime<Utc> {
    let now = cluster_now(view);
    let config = engine.config().clone();
    let default = config
        .cluster
        .as_ref()
        .map(|c| c.quorum)
        .unwrap_or_default();
    let ids: Vec<CheckId> = engine
        .check_ids()
        .filter(|id| !matches!(id, CheckId::Canary(_)))
        .cloned()
        .collect();
    for id in ids {
        let quorum = match &id {
            // A job's call reaches one instance: any instance that heard it in time is
            // enough (docs/cluster.md, "Heartbeats").
            CheckId::Service { service, index }
                if config.services.get(service).is_some_and(|s| {
                    matches!(
                        s.checks.get(*index).map(|c| &c.kind),
                        Some(CheckKind::Heartbeat(_))
                    )
                }) =>
            {
                Quorum::One
            }
            CheckId::Service { service, .. } => config
                .services
                .get(service)
                .and_then(|s| s.quorum)
                .unwrap_or(default),
            _ => default,
        };
        let tally = view.tally(&id.to_string(), quorum);
        if let Some(v) = tally.verdict() {
            let grade = if v { tally.grade() } else { Grade::Normal };
            let why = if !v {
                tally.why()
            } else if grade != Grade::Normal {
                tally.grade_why(grade)
            } else {
                String::new()
            };
            engine.set_agreed(&id, Some(v), grade, &why, now);
        }
    }
    engine.set_overrides(view.overrides_at(now));
    now
}

impl StatesTask {
    /// True when this instance sends notifications: alone, or the cluster's leader.
    pub(super) fn notifies(&self) -> bool {
        match &self.cluster {
            None => true,
            Some(c) => c.view.borrow().leader() == Some(c.link.instance()),
        }
    }

    /// Hands this instance's verdicts to the session when they changed.
    pub(super) fn vote(&mut self) {
        if let Some(c) = &mut self.cluster {
            let b = ballot(&c.local, &c.ballot);
            if b != c.ballot {
                c.ballot = b.clone();
                c.link.vote(b);
            }
        }
    }

    /// Follows the latest view: applies it, publishes (always when `force`), serves the
    /// agreed serials, records them when leading, and tells waiting commands.
    pub(super) fn follow_view(&mut self, force: bool) {
        self.apply_view();
        self.publish(force);
        self.adopt_pins();
        self.write_pins();
        if let Some(c) = &self.cluster {
            c.applied.send_replace(c.view.borrow().revision);
        }
    }

    /// Applies the latest view: agreed verdicts, overrides, incidents; the leader's
    /// duties; the cache in state_dir. The caller publishes.
    fn apply_view(&mut self) {
        let Some(c) = &mut self.cluster else { return };
        let view = c.view.borrow_and_update().clone();
        agree(&mut self.engine, &view);
        self.incidents = view.incidents();
        self.drills = view.drills_at(cluster_now(&view));
        // Drills of a view or service this config lacks apply nowhere here.
        let _ignored = self.drills.retain_known(self.engine.config());
        let me = c.link.instance().to_string();
        let leader = view.leader() == Some(me.as_str());
        let news: Vec<audit::Entry> = view
            .news
            .iter()
            .filter(|(rev, _)| *rev > c.news_seen)
            .map(|(_, e)| e.clone())
            .collect();
        c.news_seen = c.news_seen.max(view.revision);
        // The cache: what a restart uses while etcd cannot be reached.
        let dir = self.engine.config().server.state_dir.clone();
        if c.cached.0 != view.overrides {
            match overrides::save(&dir, &view.overrides) {
                Ok(()) => c.cached.0 = view.overrides.clone(),
                Err(e) => warn!(error = %e, "cluster: cannot cache overrides in state_dir"),
            }
        }
        if c.cached.1 != self.incidents {
            match incidents::save(&dir, &self.incidents) {
                Ok(()) => c.cached.1 = self.incidents.clone(),
                Err(e) => warn!(error = %e, "cluster: cannot cache incidents in state_dir"),
            }
        }
        if c.cached.2 != view.zones {
            let path = pins_path(self.engine.config());
            let written = serde_json::to_vec_pretty(&view.zones)
                .map_err(|e| e.to_string())
                .and_then(|b| crate::store::atomic_write(&path, &b).map_err(|e| e.to_string()));
            match written {
                Ok(()) => c.cached.2 = view.zones.clone(),
                Err(e) => warn!(error = %e, "cluster: cannot cache zone serials in state_dir"),
            }
        }
        if !leader {
            return;
        }
        for e in news {
            self.announce(&view, &e);
        }
        self.expire_in_cluster(&view);
        self.expire_drills_in_cluster(&view);
    }

    /// The leader tells notifications about an operator's change it saw in the audit log.
    fn announce(&self, view: &View, e: &audit::Entry) {
        if let Some(service) = e.action.strip_prefix("override.").and(e.service.as_deref()) {
            if e.action == "override.expired" {
                return; // the leader that removed it told already
            }
            let value = view.overrides.get(service).cloned();
            let cleared = if value.is_none() {
                e.reason.as_str()
            } else {
                ""
            };
            let name = self.service_name(service);
            self.emit(Event::override_changed(
                service, name, value, cleared, &e.who,
            ));
        } else if let Some(what) = e.action.strip_prefix("drill.")
            && let Some(services) = e.service.as_deref()
        {
            for service in services.split(',') {
                let name = self.service_name(service);
                if what == "end" {
                    // "view staff: stopped by an operator"
                    let (view_name, why) = e
                        .reason
                        .strip_prefix("view ")
                        .and_then(|r| r.split_once(": "))
                        .unwrap_or(("?", e.reason.as_str()));
                    self.emit(Event::drill(
                        service, name, view_name, None, None, why, &e.who,
                    ));
                } else if let Some(d) = view.drills.values().find(|d| d.service == service) {
                    let state = ServiceState::from(d.state);
                    self.emit(Event::drill(
                        service,
                        name,
                        &d.view,
                        Some(state),
                        Some(d.until),
                        &d.reason,
                        &e.who,
                    ));
                }
            }
        } else if e.action.starts_with("incident.")
            && let Some(id) = &e.incident
            && let Some(inc) = view.incidents.get(id)
        {
            self.emit(Event::incident(inc.clone(), &e.action, &e.reason, &e.who));
        }
    }

    /// The leader removes drills whose time is up at cluster time (out of force everywhere
    /// already) and audits it (told once, from the audit entry): a removal conditional on the key
    /// being as it was, so a second try after the first succeeded changes nothing.
    fn expire_drills_in_cluster(&self, view: &View) {
        let Some(c) = &self.cluster else { return };
        let now = cluster_now(view);
        for (key, d) in view.drills.iter().filter(|(_, d)| d.until <= now) {
            let link = c.link.clone();
            let rel = format!("{}{key}", keys::DRILLS);
            let entry = audit::Entry {
                time: Utc::now(),
                action: "drill.end".into(),
                service: Some(d.service.clone()),
                incident: None,
                reason: format!("view {}: its time is up", d.view),
                who: "detour".into(),
            };
            let when = vec![link.holds(&rel, d)];
            let ops = vec![link.delete(&rel)];
            let (service, view_name) = (d.service.clone(), d.view.clone());
            tokio::spawn(async move {
                match link.write(when, ops, &entry).await {
                    // Told by the leader when the audit entry comes back as news.
                    Ok((_, true)) => {
                        info!(service = %service, view = %view_name, "drill ended (its time is up)");
                    }
                    Ok((_, false)) => {}
                    Err(e) => {
                        warn!(service = %service, "cluster: cannot remove an ended drill: {e}")
                    }
                }
            });
        }
    }

    /// The leader removes overrides whose `until` has passed at cluster time (they are
    /// already out of force everywhere), audits it and tells notifications once.
    fn expire_in_cluster(&self, view: &View) {
        let Some(c) = &self.cluster else { return };
        let now = cluster_now(view);
        let due: Vec<_> = view
            .overrides
            .iter()
            .filter(|(_, o)| o.until.is_some_and(|u| u <= now))
            .collect();
        if due.is_empty() {
            return;
        }
        // One removal at a time: the next view after it has ended sees what is left.
        let Some(claim) = claim(&c.busy, |b| &b.expire) else {
            return;
        };
        let claim = Arc::new(claim);
        for (service, o) in due {
            let link = c.link.clone();
            let rel = format!("{}{service}", keys::OVERRIDES);
            let entry = audit::Entry {
                time: Utc::now(),
                action: "override.expired".into(),
                service: Some(service.clone()),
                incident: None,
                reason: o.reason.clone(),
                who: "detour".into(),
            };
            let when = vec![link.holds(&rel, o)];
            let ops = vec![link.delete(&rel)];
            let events = self.events.clone();
            let (service, state) = (service.clone(), ServiceState::from(o.state));
            let claim = claim.clone();
            tokio::spawn(async move {
                let _claim = claim;
                match link.write(when, ops, &entry).await {
                    Ok((_, true)) => {
                        info!(service = %service, state = %state, "override expired");
                        if let Some(tx) = events {
                            let _ = tx.send(Event::override_expired(&service, state));
                        }
                    }
                    Ok((_, false)) => {} // changed meanwhile: nothing to remove
                    Err(e) => {
                        warn!(service = %service, "cluster: cannot remove an expired override: {e}")
                    }
                }
            });
        }
    }

    /// Serves the serial the leader recorded for a zone's content whenever this instance
    /// serves the same content under another serial. Instances count serials from the
    /// revision at which they saw a change; one that re-read etcd after an outage saw it
    /// later, and the leader's record settles it. The content is the same either way, so a
    /// secondary holding the other serial holds the same data.
    pub(super) fn adopt_pins(&mut self) {
        let Some(c) = &self.cluster else { return };
        let current = self.snapshots.load_full();
        let pins = c.view.borrow().zones.clone();
        let differs = current.zones.iter().any(|z| {
            pins.get(&z.origin.to_string())
                .is_some_and(|p| p.serial != z.serial && p.digest == z.digest())
        });
        if !differs {
            return;
        }
        let next = (*current).clone().pin_serials(|origin, digest, _| {
            pins.get(origin)
                .filter(|p| p.digest == digest)
                .map(|p| p.serial)
        });
        self.serial_ceilings = super::save_serials(&next);
        self.snapshots.store(next);
        metrics::counter!("detour_snapshot_swaps_total").increment(1);
    }

    /// The leader records the serial each zone's content has, for instances that join
    /// later (only what differs from the view; in the background).
    pub(super) fn write_pins(&self) {
        let Some(c) = &self.cluster else { return };
        if !self.notifies() {
            return;
        }
        let snap = self.snapshots.load_full();
        let view = c.view.borrow().clone();
        let mut ops = Vec::new();
        for z in &snap.zones {
            let pin = crate::cluster::view::Pin {
                serial: z.serial,
                digest: z.digest(),
            };
            let origin = z.origin.to_string();
            if view.zones.get(&origin) != Some(&pin) {
                match c.link.put_json(&format!("{}{origin}", keys::ZONES), &pin) {
                    Ok(op) => ops.push(op),
                    Err(e) => warn!("cluster: {e}"),
                }
            }
        }
        if ops.is_empty() {
            return;
        }
        let Some(claim) = claim(&c.busy, |b| &b.pins) else {
            return; // the next view after the one in flight tries again
        };
        let link = c.link.clone();
        tokio::spawn(async move {
            let _claim = claim;
            if let Err(e) = link.write_plain(ops).await
                && let Some(held) = LEADER_LOG.allow()
            {
                warn!(repeated = held, "cluster: cannot record zone serials: {e}");
            }
        });
    }

    /// How long until the leader must tick cluster time (a window edge, an `until`);
    /// `None` when not the leader or nothing is ahead.
    pub(super) fn until_tick(&self) -> Option<Duration> {
        let c = self.cluster.as_ref()?;
        if !self.notifies() {
            return None;
        }
        let now = cluster_now(&c.view.borrow());
        let edge = self
            .engine
            .next_boundary(now)
            .into_iter()
            .chain(self.drills.next_end())
            .min()?;
        let wall = (edge - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let floor = c
            .tick_after
            .saturating_duration_since(tokio::time::Instant::now());
        Some(wall.max(floor))
    }

    /// The leader moves cluster time forward (in the background; one at a time; after a
    /// failure, backing off up to a minute, logged once a minute).
    pub(super) fn tick(&mut self) {
        let Some(c) = &mut self.cluster else { return };
        let Some(claim) = claim(&c.busy, |b| &b.tick) else {
            c.tick_after = tokio::time::Instant::now() + Duration::from_millis(200);
            return;
        };
        let ok = c.link.link().borrow().reachable;
        c.tick_backoff = if ok {
            Duration::from_secs(1)
        } else {
            (c.tick_backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
        };
        c.tick_after = tokio::time::Instant::now() + c.tick_backoff;
        let link = c.link.clone();
        tokio::spawn(async move {
            let _claim = claim;
            if let Err(e) = link.tick_clock().await
                && let Some(held) = LEADER_LOG.allow()
            {
                warn!(
                    repeated = held,
                    "cluster: cannot move cluster time forward: {e}"
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Member;

    /// An engine over a config with a slow-checked `mls` (service quorum "all") and a
    /// heartbeat-checked `feed`.
    fn engine(dir: &std::path::Path) -> Engine {
        std::fs::create_dir_all(dir.join("zones")).unwrap();
        std::fs::write(
            dir.join("zones/z.toml"),
            "origin = \"example.test.\"\nsoa = { mname = \"ns1.example.test.\", rname = \"h.example.test.\" }\nns = [\"ns1.example.test.\"]\n",
        )
        .unwrap();
        let cfg = "[server]\ndns_listen = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\nstate_dir = \"state\"\n\
                   [services.mls]\nquorum = \"all\"\ncheck = { type = \"tcp\", address = \"127.0.0.1:9\", degraded_after = \"1s\" }\n\
                   [services.feed]\nquorum = \"all\"\ncheck = { type = \"heartbeat\", period = \"1m\" }\n";
        std::fs::write(dir.join("detour.toml"), cfg).unwrap();
        let config = Arc::new(crate::config::Config::load(&dir.join("detour.toml")).unwrap());
        Engine::new(config, None, Utc::now())
    }

    fn put(v: &mut View, key: &str, value: &impl serde::Serialize, rev: i64) {
        v.put(key, &serde_json::to_vec(value).unwrap(), (rev, rev), false)
            .unwrap();
    }

    #[test]
    fn a_heartbeat_heard_by_one_instance_is_up_and_grades_follow_the_quorum() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = engine(dir.path());
        let mut v = View::default();
        for (i, name) in ["office", "dc", "cloud"].iter().enumerate() {
            let m = Member {
                frozen: false,
                started: Utc::now(),
                version: "0".into(),
                config: "x".into(),
            };
            put(&mut v, &format!("members/{name}"), &m, 10 + i as i64);
            // Only the office heard the job; everybody sees the MLS up, the dc sees it slow.
            let heard = *name == "office";
            let beat = Vote {
                up: heard,
                why: if heard {
                    String::new()
                } else {
                    "no heartbeat within 1m12s".into()
                },
                grade: Grade::Normal,
            };
            put(&mut v, &format!("votes/{name}/feed#0"), &beat, 20);
            let grade = if *name == "dc" {
                Grade::Degraded
            } else {
                Grade::Normal
            };
            let mls = Vote {
                up: true,
                why: if *name == "dc" {
                    "slow: over 1s (connected)".into()
                } else {
                    String::new()
                },
                grade,
            };
            put(&mut v, &format!("votes/{name}/mls#0"), &mls, 20);
        }
        agree(&mut e, &v);
        let feed = CheckId::Service {
            service: "feed".into(),
            index: 0,
        };
        let mls = CheckId::Service {
            service: "mls".into(),
            index: 0,
        };
        // The service's quorum is "all", but a heartbeat needs only one instance to hear it.
        assert_eq!(e.health().verdict(&feed), Some(true));
        // "all" for the MLS: one instance seeing it slow is enough for slow.
        let h = e.health();
        assert_eq!(
            (h.checks[&mls].verdict, h.checks[&mls].grade),
            (Some(true), Grade::Degraded)
        );
        e.evaluate(Utc::now());
        assert_eq!(
            e.health().services["mls"].state,
            crate::health::ServiceState::Degraded
        );
        assert_eq!(
            e.health().services["mls"].reason,
            "slow: over 1s (connected)"
        );
        // Nobody hears the job any more: down.
        let silent = Vote {
            up: false,
            why: "no heartbeat".into(),
            grade: Grade::Normal,
        };
        put(&mut v, "votes/office/feed#0", &silent, 30);
        agree(&mut e, &v);
        assert_eq!(e.health().verdict(&feed), Some(false));
    }
}
