//! The Snapshot: every zone compiled into the form the query path reads, with the health
//! and incidents it was chosen from, swapped atomically.
//!
//! A [`Snapshot`] is immutable. Health changes and reloads build a new one with
//! [`Snapshot::build`] and publish it through [`SnapshotHandle::store`]; readers call
//! [`SnapshotHandle::load`], which takes no lock and never waits. Unchanged zones are shared
//! with the previous Snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use hickory_server::proto::rr::{LowerName, Name, RecordType};

use crate::config::Config;
use crate::health::Health;
use crate::incidents::Incidents;
use crate::selection::{Choice, Selection};
use crate::zone::resolve::Zones;
use crate::zone::{ZoneData, compiled, labels};

/// What one dynamic record answers in this Snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicAnswer {
    /// Owner name.
    pub name: Name,
    /// A, AAAA or CNAME.
    pub rtype: RecordType,
    /// The selection behind it.
    pub choice: Choice,
    /// Since when it answers this (the Snapshot that first answered it): a cache may hold
    /// the previous answer until this plus the TTL.
    pub since: chrono::DateTime<chrono::Utc>,
}

/// An immutable view of everything detour answers.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Counts Snapshots since start: 1 for the first.
    pub generation: u64,
    /// The highest serial any zone has had in this process (or its last run's, at start):
    /// where new zones start.
    serial_high: u32,
    /// The configuration it was built from.
    pub config: Arc<Config>,
    /// Zones, in `config.zones` order; unchanged zones are shared with the previous Snapshot.
    pub zones: Vec<Arc<ZoneData>>,
    /// Service and check states this Snapshot was selected from.
    pub health: Arc<Health>,
    /// The selection it was built from.
    pub selection: Selection,
    /// Incidents, as operators last wrote them.
    pub incidents: Arc<Incidents>,
    index: HashMap<LowerName, usize>,
    /// Zones by their origin's lowercase wire form, for the fast path.
    wire_index: rustc_hash::FxHashMap<Box<[u8]>, usize>,
    min_labels: u8,
    max_labels: u8,
    /// Current answer of every dynamic record.
    pub dynamic: Vec<DynamicAnswer>,
    /// The Snapshots of views with drills in force, matched by source address; `None` while
    /// no drill is in force, so that the query path pays nothing for idle views.
    views: Option<Arc<ViewSnapshots>>,
    /// In a view's Snapshot: the view and its drills (the page's banner, status, explain).
    pub drill: Option<Arc<DrillView>>,
}

/// The Snapshots of `[views.*]` with drills, by view index in `config.views`.
#[derive(Debug)]
struct ViewSnapshots {
    matcher: crate::rehearsal::Views,
    snapshots: Vec<Option<Arc<Snapshot>>>,
}

/// What a view's Snapshot differs by: its name and the drills in force in it.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillView {
    /// The view's name.
    pub view: String,
    /// Its drills.
    pub drills: Vec<crate::rehearsal::Drill>,
}

impl Snapshot {
    /// The highest serial any zone has had in this process (or its last run's, at start).
    pub fn serial_high(&self) -> u32 {
        self.serial_high
    }

    /// Compiles `config` with the given selection; serials continue from `prev`.
    /// `now` is the current Unix time, the floor for new serials.
    pub fn build(
        config: Arc<Config>,
        selection: Selection,
        health: Arc<Health>,
        incidents: Arc<Incidents>,
        prev: Option<&Snapshot>,
        now: u32,
    ) -> Snapshot {
        // A zone new to this Snapshot (added by a reload, perhaps removed before) starts
        // above every serial served so far, so a secondary that still holds it follows.
        let now = now.max(prev.map_or(0, |p| p.serial_high.saturating_add(1)));
        let mut zones = Vec::with_capacity(config.zones.len());
        let mut index = HashMap::new();
        let mut wire_index = rustc_hash::FxHashMap::default();
        for (zi, zone) in config.zones.iter().enumerate() {
            let mine = selection.for_zone(zi);
            // Same config and same selection: the compiled zone is reused as it is.
            let reusable = prev
                .filter(|p| Arc::ptr_eq(&p.config, &config))
                .and_then(|p| (p.selection.for_zone(zi) == mine).then(|| p.zones[zi].clone()))
                .filter(|z| !z.signatures_due());
            let compiled = match reusable {
                Some(z) => z,
                None => {
                    let prev_zone = prev.and_then(|p| p.zone_by_origin(&zone.origin));
                    let children = children(&config, zone);
                    Arc::new(ZoneData::compile(zone, &mine, prev_zone, now, children))
                }
            };
            zones.push(compiled);
            index.insert(LowerName::new(&zone.origin), zi);
            wire_index.insert(compiled::wire(&LowerName::new(&zone.origin)), zi);
        }
        let counts = config
            .zones
            .iter()
            .map(|z| labels(&LowerName::new(&z.origin)));
        let min_labels = counts.clone().min().unwrap_or(0);
        let max_labels = counts.max().unwrap_or(0);
        let built = chrono::Utc::now();
        let dynamic = selection
            .choices
            .iter()
            .map(|c| {
                let d = &config.zones[c.zone].dynamic[c.record];
                let since = prev
                    .and_then(|p| {
                        p.dynamic.iter().find(|x| {
                            x.name == d.name
                                && x.rtype == d.rtype
                                && x.choice.chosen == c.chosen
                                && x.choice.values == c.values
                        })
                    })
                    .map_or(built, |x| x.since);
                DynamicAnswer {
                    name: d.name.clone(),
                    rtype: d.rtype,
                    choice: c.clone(),
                    since,
                }
            })
            .collect();
        let serial_high = zones
            .iter()
            .map(|z| z.serial)
            .chain(prev.map(|p| p.serial_high))
            .max()
            .unwrap_or(0);
        Snapshot {
            generation: prev.map_or(1, |p| p.generation + 1),
            serial_high,
            config,
            zones,
            health,
            incidents,
            selection,
            index,
            wire_index,
            min_labels,
            max_labels,
            dynamic,
            views: None,
            drill: None,
        }
    }

    /// The Snapshot a query or page request from `ip` is answered from: a view's, while it
    /// has a drill in force and `ip` is among its sources; else this one.
    #[inline]
    pub fn for_source(&self, ip: std::net::IpAddr) -> &Snapshot {
        match &self.views {
            None => self,
            Some(v) => v
                .matcher
                .of(ip)
                .and_then(|i| v.snapshots.get(i)?.as_deref())
                .unwrap_or(self),
        }
    }

    /// [`Snapshot::for_source`] as an owned `Arc`, for holding across `.await`.
    pub fn of_source(this: &Arc<Snapshot>, ip: std::net::IpAddr) -> Arc<Snapshot> {
        match &this.views {
            None => this.clone(),
            Some(v) => v
                .matcher
                .of(ip)
                .and_then(|i| v.snapshots.get(i)?.clone())
                .unwrap_or_else(|| this.clone()),
        }
    }

    /// Attaches the views' Snapshots (by index in `config.views`; `None` for a view without
    /// drills, which answers as everyone does).
    pub fn with_views(mut self, snapshots: Vec<Option<Arc<Snapshot>>>) -> Snapshot {
        if snapshots.iter().all(Option::is_none) {
            self.views = None;
            return self;
        }
        self.views = Some(Arc::new(ViewSnapshots {
            matcher: crate::rehearsal::Views::new(&self.config.views),
            snapshots,
        }));
        self
    }

    /// Marks this as the Snapshot of view number `index` (in `config.views`) with drills,
    /// beside `main`. Its generation is main's with the top bit and the view's index set:
    /// never one of main's, so nothing cached for everyone is served to the view, or back.
    pub fn as_view(mut self, main: &Snapshot, index: usize, drill: DrillView) -> Snapshot {
        self.generation = main.generation | (1 << 63) | ((index as u64 & 0x7fff) << 48);
        self.drill = Some(Arc::new(drill));
        self
    }

    /// The views' Snapshots in force, with their names (for status).
    pub fn view_snapshots(&self) -> Vec<(&str, &Snapshot)> {
        let Some(v) = &self.views else {
            return Vec::new();
        };
        self.config
            .views
            .iter()
            .zip(v.snapshots.iter())
            .filter_map(|(view, s)| Some((view.name.as_str(), s.as_deref()?)))
            .collect()
    }

    /// Gives zones the serials `pin` says (by origin and content digest), recompiling them
    /// (their IXFR journal starts over): in a cluster, the serial the cluster agreed for
    /// that content, so that an instance joining late serves the same serials as the others.
    pub fn pin_serials(mut self, pin: impl Fn(&str, &str, u32) -> Option<u32>) -> Snapshot {
        let config = self.config.clone();
        let mut changed = false;
        for (zi, zone) in config.zones.iter().enumerate() {
            let current = &self.zones[zi];
            let Some(serial) = pin(&zone.origin.to_string(), &current.digest(), current.serial)
            else {
                continue;
            };
            if serial == current.serial {
                continue;
            }
            let children = children(&config, zone);
            let mine = self.selection.for_zone(zi);
            self.zones[zi] = Arc::new(ZoneData::compile(zone, &mine, None, serial, children));
            self.serial_high = self.serial_high.max(serial);
            changed = true;
        }
        if changed {
            self.generation += 1;
        }
        self
    }

    /// The zone whose apex is exactly `origin`.
    pub fn zone_by_origin(&self, origin: &Name) -> Option<&ZoneData> {
        self.index
            .get(&LowerName::new(origin))
            .map(|&i| &*self.zones[i])
    }

    /// The zone whose origin's lowercase wire form is exactly `wire`.
    pub fn zone_by_wire(&self, wire: &[u8]) -> Option<&ZoneData> {
        self.wire_index.get(wire).map(|&i| &*self.zones[i])
    }

    /// The served zone that holds `name` (longest matching origin), if any.
    pub fn find_zone(&self, name: &LowerName) -> Option<&ZoneData> {
        let count = labels(name);
        if count < self.min_labels || self.zones.is_empty() {
            return None;
        }
        let mut n = name.clone();
        let mut l = count;
        while l > self.max_labels {
            n = n.base_name();
            l -= 1;
        }
        loop {
            if let Some(&i) = self.index.get(&n) {
                return Some(&*self.zones[i]);
            }
            if l <= self.min_labels {
                return None;
            }
            n = n.base_name();
            l -= 1;
        }
    }
}

/// The current Snapshot, readable without a lock from any thread; tasks that act on a new
/// one (NOTIFY to secondaries) are woken through [`SnapshotHandle::watch`].
#[derive(Debug, Clone)]
pub struct SnapshotHandle {
    current: Arc<ArcSwap<Snapshot>>,
    /// The generation last stored.
    stored: Arc<tokio::sync::watch::Sender<u64>>,
}

impl SnapshotHandle {
    /// Publishes `first` as the initial Snapshot.
    pub fn new(first: Snapshot) -> Self {
        let generation = first.generation;
        Self {
            current: Arc::new(ArcSwap::from_pointee(first)),
            stored: Arc::new(tokio::sync::watch::channel(generation).0),
        }
    }

    /// Wakes its holder after each [`SnapshotHandle::store`] (with the new generation); a
    /// holder that falls behind sees only the latest.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.stored.subscribe()
    }

    /// The current Snapshot; cheap, lock-free; do not hold it across `.await`.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current Snapshot as an owned `Arc`, for holding across `.await`.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the current Snapshot; queries in flight keep the one they loaded.
    pub fn store(&self, next: Snapshot) {
        let generation = next.generation;
        self.current.store(Arc::new(next));
        self.stored.send_replace(generation);
    }
}

impl Zones for Snapshot {
    fn find_zone(&self, name: &LowerName) -> Option<&ZoneData> {
        Snapshot::find_zone(self, name)
    }
}

/// The served zones inside `zone` (their apexes are delegations out of it).
fn children(config: &Config, zone: &crate::config::Zone) -> Vec<LowerName> {
    let apex = LowerName::new(&zone.origin);
    config
        .zones
        .iter()
        .map(|z| LowerName::new(&z.origin))
        .filter(|o| *o != apex && apex.zone_of(o))
        .collect()
}

/// Seconds since the Unix epoch, as a serial floor.
pub fn unix_now() -> u32 {
    u32::try_from(crate::proto::unix_seconds()).unwrap_or(u32::MAX)
}
