//! History: every state transition, every operator action, what the records answered, the
//! notifications delivered and a per-minute summary of each check's probes, kept in
//! `state_dir/history.db` (SQLite, [`db`]) for `[history] keep`, with daily roll-ups.
//!
//! The states task and the notifier hand records to a [`Recorder`]: a bounded channel to one
//! dedicated thread, which never blocks them (a full channel drops the record, counted in
//! `detour_history_dropped_total` and logged). The thread folds probes into minutes, writes
//! everything once a second in one transaction, rolls complete days up, prunes what is older
//! than `keep`, and after each change (and each minute) rebuilds the [`view::PageView`] the
//! status page reads without a lock. [`timeline`] and [`report`] are the arithmetic.
//!
//! A corrupt, foreign or locked database is set aside and a new one started; when none can
//! be opened detour keeps serving, shows the history of its current run from memory, and
//! tries again every minute. In a cluster each instance keeps its own history.

pub mod db;
pub mod report;
pub mod timeline;
pub mod view;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::audit;
use crate::checks::runner::{CheckId, Report};
use crate::config::Config;
use crate::health::{Health, ServiceState};
use db::{AnsweredRow, Batch, Db, NotificationRow, ProbeRow, TransitionRow};
use timeline::{Ms, Run, Zone};
use view::PageView;

/// What a service's dynamic records answered: their first entry (the service itself), a
/// later one (a backup), or `otherwise` (the outage page). Of several records the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answered {
    /// The usual answer.
    Usual,
    /// A backup.
    Backup,
    /// The outage page.
    OutagePage,
}

impl Answered {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Answered::Usual => "usual",
            Answered::Backup => "backup",
            Answered::OutagePage => "outage_page",
        }
    }
}

/// What each service's records answer under `selection`: per service that is the first
/// entry of one or more dynamic records, the worst of them.
pub fn answers(
    config: &Config,
    selection: &crate::selection::Selection,
) -> Vec<(String, Answered)> {
    use crate::selection::Chosen;
    let mut out: BTreeMap<String, Answered> = BTreeMap::new();
    for c in &selection.choices {
        let Some(usual) = config
            .zones
            .get(c.zone)
            .and_then(|z| z.dynamic.get(c.record))
            .and_then(|d| d.answers.first())
        else {
            continue;
        };
        let a = match c.chosen {
            Chosen::Entry(0) => Answered::Usual,
            Chosen::Entry(_) => Answered::Backup,
            Chosen::Otherwise => Answered::OutagePage,
        };
        let e = out.entry(usual.if_up.clone()).or_insert(a);
        *e = (*e).max(a);
    }
    out.into_iter().collect()
}

/// Reads one end of a period: a duration back from now ("30d", "12h"), a date
/// ("2026-10-01", the start of that day in `zone`; with `end`, the start of the next day,
/// so the date is included) or an RFC 3339 time.
pub fn parse_bound(s: &str, now: Ms, zone: Zone, end: bool) -> Result<Ms, String> {
    let s = s.trim();
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let d = if end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(zone.start_of(d));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    match crate::config::duration::parse(s) {
        Ok(d) => Ok(now - d.as_millis() as Ms),
        Err(_) => Err(format!(
            "{s:?} is not a period bound: expected a duration back from now (\"30d\", \"12h\"), a date (\"2026-10-01\") or an RFC 3339 time"
        )),
    }
}

/// The period `since` (default 30 days back) to `until` (default now), checked.
pub fn period(
    since: Option<&str>,
    until: Option<&str>,
    now: Ms,
    zone: Zone,
) -> Result<(Ms, Ms), String> {
    let from = match since {
        Some(s) if !s.is_empty() => parse_bound(s, now, zone, false)?,
        _ => now - 30 * timeline::DAY_MS,
    };
    let to = match until {
        Some(u) if !u.is_empty() => parse_bound(u, now, zone, true)?,
        _ => now,
    };
    if to <= from {
        return Err("the period is empty: `until` must be after `since`".into());
    }
    Ok((from, to))
}

/// Passing probes' latency in one 15-minute bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bucket {
    /// Passing probes.
    pub ok: u32,
    /// Their latencies added (µs).
    pub sum_us: u64,
    /// The slowest (µs).
    pub max_us: u32,
}

impl Bucket {
    /// Average latency in milliseconds.
    pub fn avg_ms(&self) -> f64 {
        if self.ok == 0 {
            return 0.0;
        }
        self.sum_us as f64 / f64::from(self.ok) / 1000.0
    }
}

/// Records waiting for the thread; past this a record is dropped (and counted), never
/// waited for. At 5,000 checks every 5 s that is a minute of probes.
pub const CHANNEL: usize = 65_536;
/// How often the thread writes.
const FLUSH: Duration = Duration::from_secs(1);
/// How often the page view is rebuilt when nothing else changed it (the ongoing day grows).
const REBUILD: Duration = Duration::from_secs(60);
/// How often roll-ups and pruning run.
const HOUSEKEEPING: Duration = Duration::from_secs(3600);
/// How often an unusable database is tried again.
const REOPEN: Duration = Duration::from_secs(60);
/// Rows kept for a write that failed (a full disk); past this the oldest go.
const MAX_PENDING: usize = 200_000;

enum Msg {
    Start {
        at: Ms,
        states: Vec<(String, ServiceState, String)>,
        answers: Vec<(String, Answered)>,
    },
    Services {
        zone: Zone,
        ids: Vec<String>,
    },
    Transition(TransitionRow),
    Answered {
        at: Ms,
        values: Vec<(String, Answered)>,
        manual: bool,
    },
    Probe {
        id: CheckId,
        at: Ms,
        ok: bool,
        latency_us: u32,
    },
    Action(audit::Entry),
    Notified(NotificationRow),
    Stop(tokio::sync::oneshot::Sender<()>),
}

/// What the thread and every handle share.
struct Shared {
    view: ArcSwap<PageView>,
    path: PathBuf,
    /// Why the database is not in use, when it is not.
    unusable: Mutex<Option<String>>,
    /// A database set aside (at start or while running), or none usable, for `detour
    /// status`.
    set_aside: Mutex<Option<String>>,
    dropped: AtomicU64,
    drop_log: crate::telemetry::Throttle,
}

/// The handle that the states task, the notifier, the page and the admin API hold. Cheap to
/// clone; every method returns at once.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.shared.path)
            .finish()
    }
}

fn ms(t: chrono::DateTime<Utc>) -> Ms {
    t.timestamp_millis()
}

/// Starts the history thread for `config` (none with `[history] enabled = false`), which
/// opens the database first thing (a database set aside, or none usable, is then a
/// [`Recorder::problem`]); the second value is a problem for `detour status` when the
/// thread cannot start.
pub fn start(config: &Config) -> (Option<Recorder>, Option<String>) {
    if !config.history.enabled {
        return (None, None);
    }
    let path = db::path(&config.server.state_dir);
    let shared = Arc::new(Shared {
        view: ArcSwap::from_pointee(PageView::default()),
        path: path.clone(),
        unusable: Mutex::new(None),
        set_aside: Mutex::new(None),
        dropped: AtomicU64::new(0),
        drop_log: crate::telemetry::Throttle::new(Duration::from_secs(60)),
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL);
    let w = Writer::new(None, path, config, shared.clone());
    let spawned = std::thread::Builder::new()
        .name("history".into())
        .spawn(move || w.run(rx));
    if let Err(e) = spawned {
        let p = format!("cannot start the history thread: {e}; no history is kept");
        error!("{p}");
        return (None, Some(p));
    }
    (Some(Recorder { tx, shared }), None)
}

impl Recorder {
    fn send(&self, m: Msg) {
        match self.tx.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("detour_history_dropped_total").increment(1);
                if let Some(held) = self.shared.drop_log.allow() {
                    warn!(
                        held_back = held,
                        "history: the writer is behind ({CHANNEL} records waiting); records are dropped, not waited for"
                    );
                }
            }
            // The thread is gone: it said why when it went.
            Err(TrySendError::Disconnected(_)) => {
                metrics::counter!("detour_history_dropped_total").increment(1);
            }
        }
    }

    /// A new run begins with these states and answers (what detour found at start).
    pub fn started(&self, health: &Health, config: &Config, answers: Vec<(String, Answered)>) {
        let states = health
            .services
            .iter()
            .map(|(id, s)| (id.clone(), s.state, s.reason.clone()))
            .collect();
        self.services(config);
        self.send(Msg::Start {
            at: ms(Utc::now()),
            states,
            answers,
        });
    }

    /// The services and time zone of the config in force (at start and after a reload).
    pub fn services(&self, config: &Config) {
        self.send(Msg::Services {
            zone: Zone::of(config.page.timezone),
            ids: config.services.keys().cloned().collect(),
        });
    }

    /// A service changed state.
    pub fn transition(
        &self,
        service: &str,
        at: chrono::DateTime<Utc>,
        from: Option<ServiceState>,
        to: ServiceState,
        reason: &str,
    ) {
        self.send(Msg::Transition(TransitionRow {
            run: 0,
            at: ms(at),
            service: service.to_string(),
            from,
            to,
            reason: reason.to_string(),
        }));
    }

    /// What each service's records answer now (only changes are written); `manual` when an
    /// operator's override caused this.
    pub fn answered(&self, values: Vec<(String, Answered)>, manual: bool) {
        self.send(Msg::Answered {
            at: ms(Utc::now()),
            values,
            manual,
        });
    }

    /// A probe report (folded into its check's minute).
    pub fn probe(&self, r: &Report) {
        let o = &r.observation;
        self.send(Msg::Probe {
            id: r.id.clone(),
            at: ms(o.at),
            ok: o.ok,
            latency_us: u32::try_from(o.latency.as_micros()).unwrap_or(u32::MAX),
        });
    }

    /// An operator action (the same entry as the audit log's).
    pub fn action(&self, e: &audit::Entry) {
        self.send(Msg::Action(e.clone()));
    }

    /// A sink delivered a notification.
    pub fn notified(&self, sink: &str, kind: &str, service: Option<&str>) {
        self.send(Msg::Notified(NotificationRow {
            at: ms(Utc::now()),
            sink: sink.to_string(),
            kind: kind.to_string(),
            service: service.map(str::to_string),
        }));
    }

    /// Writes what is pending, marks the run stopped, and ends the thread (at most 5 s).
    pub async fn stop(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Waits for room: at shutdown the records before it matter more than speed.
        let tx_ = self.tx.clone();
        let sent = tokio::task::spawn_blocking(move || tx_.send(Msg::Stop(tx)).is_ok()).await;
        if sent.unwrap_or(false)
            && tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .is_err()
        {
            warn!("history: the writer did not finish within 5 s; the last second may be lost");
        }
    }

    /// The page's view, as last rebuilt.
    pub fn view(&self) -> Arc<PageView> {
        self.shared.view.load_full()
    }

    /// `state_dir/history.db`.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Why the database is not in use now, if it is not.
    pub fn unusable(&self) -> Option<String> {
        self.shared
            .unusable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The database was set aside (corrupt, foreign, locked), or none could be opened: what
    /// `detour status` says about it.
    pub fn problem(&self) -> Option<String> {
        self.shared
            .set_aside
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// A read-only connection to the database (for the admin API; run it off the async
    /// threads).
    pub fn reader(&self) -> Result<db::Reader, String> {
        if let Some(why) = self.unusable() {
            return Err(format!("the history database is not in use: {why}"));
        }
        db::Reader::open(&self.shared.path)
    }
}

/// One check's probes in the minute under way.
#[derive(Debug)]
struct Acc {
    minute: i64,
    probes: u32,
    failures: u32,
    lats: Vec<u32>,
}

impl Acc {
    fn row(&mut self, check: i64) -> ProbeRow {
        self.lats.sort_unstable();
        let sum = self.lats.iter().map(|l| u64::from(*l)).sum();
        ProbeRow {
            check,
            slot: self.minute,
            probes: self.probes,
            failures: self.failures,
            min: self.lats.first().copied(),
            med: self
                .lats
                .get(self.lats.len().saturating_sub(1) / 2)
                .copied(),
            max: self.lats.last().copied(),
            sum,
        }
    }
}

/// The history thread.
struct Writer {
    db: Option<Db>,
    path: PathBuf,
    keep: Duration,
    detail: Duration,
    shared: Arc<Shared>,
    /// This run's row id (0 before `Start`, or without a database).
    run: i64,
    /// Pending rows (probe minutes carry check names until written).
    batch: Batch,
    minutes: Vec<(CheckId, Acc)>,
    /// Minutes under way, per check.
    open: HashMap<CheckId, Acc>,
    /// For the page: the runs and state changes of the last 92 days.
    runs: Vec<Run>,
    transitions: Vec<TransitionRow>,
    buckets: HashMap<String, BTreeMap<i64, Bucket>>,
    /// This run's latest state and answer per service.
    states: BTreeMap<String, (ServiceState, String)>,
    answers: HashMap<String, Answered>,
    zone: Zone,
    services: Vec<String>,
    version: u64,
    dirty: bool,
    last_seen_written: Ms,
    last_rebuild: Instant,
    last_housekeeping: Option<Instant>,
    last_reopen: Instant,
    write_log: crate::telemetry::Throttle,
}

/// What the page view looks back over (a day more than the bars, for a zone's offset).
const MEMORY: Ms = (view::DAYS as Ms + 2) * timeline::DAY_MS;

impl Writer {
    fn new(db: Option<Db>, path: PathBuf, config: &Config, shared: Arc<Shared>) -> Self {
        Self {
            db,
            path,
            keep: config.history.keep,
            detail: config.history.detail,
            shared,
            run: 0,
            batch: Batch::default(),
            minutes: Vec::new(),
            open: HashMap::new(),
            runs: Vec::new(),
            transitions: Vec::new(),
            buckets: HashMap::new(),
            states: BTreeMap::new(),
            answers: HashMap::new(),
            zone: Zone::of(config.page.timezone),
            services: config.services.keys().cloned().collect(),
            version: 0,
            dirty: true,
            last_seen_written: 0,
            last_rebuild: Instant::now(),
            last_housekeeping: None,
            last_reopen: Instant::now(),
            write_log: crate::telemetry::Throttle::new(Duration::from_secs(60)),
        }
    }

    /// Opens the database; what went wrong is said in the log and [`Recorder::problem`].
    fn open(&mut self) {
        self.last_reopen = Instant::now();
        let problem = match Db::open(&self.path) {
            Ok((db, p)) => {
                self.db = Some(db);
                p
            }
            Err(e) => {
                let p = format!(
                    "{e}; history is kept in memory for this run only (tried again every minute)"
                );
                error!("{p}");
                *self
                    .shared
                    .unusable
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
                Some(p)
            }
        };
        *self
            .shared
            .set_aside
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = problem;
    }

    /// Reads what the page shows from the database.
    fn load(&mut self) {
        let now = ms(Utc::now());
        let Some(db) = &self.db else { return };
        match db.recent(now - MEMORY, now) {
            Ok((runs, transitions)) => {
                self.runs = runs;
                self.transitions = transitions;
            }
            Err(e) => error!(error = %e, "history: cannot read recent history"),
        }
        match db.buckets(now - view::BUCKETS as Ms * view::BUCKET_MS) {
            Ok(b) => self.buckets = b,
            Err(e) => error!(error = %e, "history: cannot read recent response times"),
        }
        self.rebuild(now);
    }

    fn run(mut self, rx: Receiver<Msg>) {
        // Here, not at start: a database behind another process's lock takes a second to
        // give up on, and 24 hours of minutes of thousands of checks take a while to read.
        self.open();
        self.load();
        let mut next_flush = Instant::now() + FLUSH;
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Msg::Stop(done)) => {
                    while let Ok(m) = rx.try_recv() {
                        if !matches!(m, Msg::Stop(_)) {
                            self.take(m);
                        }
                    }
                    self.finish();
                    let _ = done.send(());
                    return;
                }
                Ok(m) => self.take(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish();
                    return;
                }
            }
            if Instant::now() >= next_flush {
                self.tick();
                next_flush = Instant::now() + FLUSH;
            }
        }
    }

    fn take(&mut self, m: Msg) {
        match m {
            Msg::Start {
                at,
                states,
                answers,
            } => {
                self.start_run(at, states);
                self.take(Msg::Answered {
                    at,
                    values: answers,
                    manual: false,
                });
                // The states found at start are written at once, not a second later.
                self.write(at, false);
            }
            Msg::Services { zone, ids } => {
                self.zone = zone;
                self.services = ids;
                self.dirty = true;
            }
            Msg::Transition(mut t) => {
                t.run = self.run;
                self.states
                    .insert(t.service.clone(), (t.to, t.reason.clone()));
                self.transitions.push(t.clone());
                self.batch.transitions.push(t);
                self.dirty = true;
            }
            Msg::Answered { at, values, manual } => {
                for (service, a) in values {
                    if self.answers.get(&service) == Some(&a) {
                        continue;
                    }
                    self.answers.insert(service.clone(), a);
                    self.batch.answered.push(AnsweredRow {
                        run: self.run,
                        at,
                        service,
                        answered: a,
                        manual,
                    });
                }
            }
            Msg::Probe {
                id,
                at,
                ok,
                latency_us,
            } => self.probe(id, at, ok, latency_us),
            Msg::Action(e) => self.batch.actions.push(e),
            Msg::Notified(n) => self.batch.notifications.push(n),
            Msg::Stop(_) => {}
        }
    }

    fn start_run(&mut self, at: Ms, states: Vec<(String, ServiceState, String)>) {
        self.run = match &mut self.db {
            Some(db) => match db.begin_run(at) {
                Ok(id) => id,
                Err(e) => {
                    error!(error = %e, "history: cannot record the start of this run");
                    self.memory_run_id()
                }
            },
            None => self.memory_run_id(),
        };
        self.runs.push(Run {
            id: self.run,
            start: at,
            end: at,
        });
        self.states.clear();
        self.answers.clear();
        for (service, to, reason) in states {
            self.take(Msg::Transition(TransitionRow {
                run: self.run,
                at,
                service,
                from: None,
                to,
                reason,
            }));
        }
    }

    /// A run id for a run the database does not know (it is unusable): above any it does.
    fn memory_run_id(&self) -> i64 {
        self.runs.iter().map(|r| r.id).max().unwrap_or(0) + 1
    }

    fn probe(&mut self, id: CheckId, at: Ms, ok: bool, latency_us: u32) {
        let minute = at.div_euclid(60_000);
        if let CheckId::Service { service, .. } = &id
            && ok
        {
            let b = self
                .buckets
                .entry(service.clone())
                .or_default()
                .entry(at.div_euclid(view::BUCKET_MS))
                .or_default();
            b.ok += 1;
            b.sum_us += u64::from(latency_us);
            b.max_us = b.max_us.max(latency_us);
        }
        let acc = self.open.entry(id.clone()).or_insert(Acc {
            minute,
            probes: 0,
            failures: 0,
            lats: Vec::new(),
        });
        if acc.minute != minute {
            let fresh = Acc {
                minute,
                probes: 0,
                failures: 0,
                lats: Vec::new(),
            };
            self.minutes.push((id, std::mem::replace(acc, fresh)));
        }
        acc.probes += 1;
        if ok {
            acc.lats.push(latency_us);
        } else {
            acc.failures += 1;
        }
    }

    /// Closes minutes before `before` (all of them with `None`) into rows.
    fn close_minutes(&mut self, before: Option<i64>) {
        let ids: Vec<CheckId> = self
            .open
            .iter()
            .filter(|(_, a)| before.is_none_or(|b| a.minute < b))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(acc) = self.open.remove(&id) {
                self.minutes.push((id, acc));
            }
        }
        let Some(db) = &mut self.db else {
            self.minutes.clear();
            return;
        };
        for (id, mut acc) in std::mem::take(&mut self.minutes) {
            if acc.probes == 0 {
                continue;
            }
            let service = match &id {
                CheckId::Service { service, .. } => Some(service.as_str()),
                _ => None,
            };
            match db.check_id(&id.to_string(), service) {
                Ok(check) => self.batch.minutes.push(acc.row(check)),
                Err(e) => {
                    if self.write_log.allow().is_some() {
                        error!(error = %e, "history: cannot record a check");
                    }
                }
            }
        }
    }

    /// Once a second: write, keep house, rebuild the page's view when due.
    fn tick(&mut self) {
        let now = ms(Utc::now());
        self.close_minutes(Some(now.div_euclid(60_000)));
        self.write(now, false);
        if self.db.is_none() && self.last_reopen.elapsed() >= REOPEN {
            self.reopen(now);
        }
        if self
            .last_housekeeping
            .is_none_or(|t| t.elapsed() >= HOUSEKEEPING)
        {
            self.housekeeping(now);
        }
        if self.dirty || self.last_rebuild.elapsed() >= REBUILD {
            self.rebuild(now);
        }
    }

    fn write(&mut self, now: Ms, stopped: bool) {
        // Alive every 10 s even when nothing happens: a crash loses at most that much of
        // the run's length.
        let due = now - self.last_seen_written >= 10_000 || stopped;
        if self.batch.is_empty() && !due {
            return;
        }
        let Some(db) = &mut self.db else {
            self.batch = Batch::default();
            return;
        };
        if self.run == 0 {
            return; // before Start: written with the next flush after it
        }
        let started = Instant::now();
        match db.write(&self.batch, self.run, now, stopped) {
            Ok(()) => {
                let rows = self.batch.len();
                metrics::counter!("detour_history_rows_written_total").increment(rows as u64);
                metrics::histogram!("detour_history_write_seconds")
                    .record(started.elapsed().as_secs_f64());
                self.batch = Batch::default();
                self.last_seen_written = now;
            }
            Err(e) if db::is_corrupt(&e) => {
                self.db = None; // closed before it is renamed
                let aside = db::set_aside(&self.path, "corrupt");
                let p = format!(
                    "history.db was found damaged while running ({e}); set aside as {} and a new one started",
                    aside.display()
                );
                error!("{p}");
                *self
                    .shared
                    .set_aside
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(p);
                self.reopen(now);
            }
            Err(e) => {
                metrics::counter!("detour_history_write_errors_total").increment(1);
                if let Some(held) = self.write_log.allow() {
                    error!(error = %e, held_back = held, pending = self.batch.len(),
                        "history: cannot write; kept to try again");
                }
                if self.batch.len() > MAX_PENDING {
                    let n = self.batch.minutes.len();
                    self.batch.minutes.drain(..n / 2);
                    metrics::counter!("detour_history_dropped_total").increment((n / 2) as u64);
                }
            }
        }
    }

    /// Tries to open the database again (after it was unusable or damaged): a new run
    /// starts in it with the states this run holds now.
    fn reopen(&mut self, now: Ms) {
        self.last_reopen = Instant::now();
        match Db::open(&self.path) {
            Ok((db, problem)) => {
                self.db = Some(db);
                let was_unusable = self
                    .shared
                    .unusable
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .is_some();
                let mut said = self
                    .shared
                    .set_aside
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if was_unusable {
                    // "cannot open" is over.
                    *said = None;
                }
                if let Some(p) = problem {
                    warn!("{p}");
                    *said = Some(p);
                }
                drop(said);
                info!("history: recording again");
                // Rows of the old run refer to its id: the new database starts a run of its own.
                self.batch = Batch::default();
                let states = std::mem::take(&mut self.states)
                    .into_iter()
                    .map(|(s, (st, why))| (s, st, why))
                    .collect();
                let answers: Vec<(String, Answered)> = self.answers.drain().collect();
                self.start_run(now, states);
                self.take(Msg::Answered {
                    at: now,
                    values: answers,
                    manual: false,
                });
            }
            Err(e) => {
                *self
                    .shared
                    .unusable
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(e.clone());
                if self.write_log.allow().is_some() {
                    error!("history: {e}; trying again in a minute");
                }
            }
        }
    }

    fn housekeeping(&mut self, now: Ms) {
        self.last_housekeeping = Some(Instant::now());
        let Some(db) = &mut self.db else { return };
        let keep = now - self.keep.as_millis() as Ms;
        let detail = now - self.detail.as_millis() as Ms;
        match db.roll_up(now.div_euclid(timeline::DAY_MS)) {
            Ok(0) => {}
            Ok(n) => info!(days = n, "history: probe minutes rolled up into days"),
            Err(e) => error!(error = %e, "history: cannot roll up"),
        }
        if let Err(e) = db.prune(keep, detail) {
            error!(error = %e, "history: cannot prune");
        }
    }

    fn rebuild(&mut self, now: Ms) {
        self.dirty = false;
        self.last_rebuild = Instant::now();
        if let Some(r) = self.runs.iter_mut().find(|r| r.id == self.run) {
            r.end = now;
        }
        self.forget(now);
        let mut v = view::build(
            &self.runs,
            &self.transitions,
            &self.buckets,
            &self.services,
            self.zone,
            now,
        );
        self.version += 1;
        v.version = self.version;
        self.shared.view.store(Arc::new(v));
    }

    /// Drops from memory what the page no longer shows.
    fn forget(&mut self, now: Ms) {
        let cut = now - MEMORY;
        let first_bucket = now.div_euclid(view::BUCKET_MS) - view::BUCKETS as i64;
        for b in self.buckets.values_mut() {
            b.retain(|k, _| *k >= first_bucket);
        }
        self.buckets.retain(|_, b| !b.is_empty());
        if self
            .transitions
            .first()
            .is_none_or(|t| t.at >= cut - timeline::DAY_MS)
        {
            return;
        }
        // Keep each service's last change before the cut, so its state there is known.
        let mut last: HashMap<(&str, i64), usize> = HashMap::new();
        for (i, t) in self.transitions.iter().enumerate() {
            if t.at < cut {
                last.insert((t.service.as_str(), t.run), i);
            }
        }
        let keep: std::collections::HashSet<usize> = last.into_values().collect();
        let mut i = 0;
        self.transitions.retain(|t| {
            let k = t.at >= cut || keep.contains(&i);
            i += 1;
            k
        });
        self.runs.retain(|r| r.end >= cut || r.id == self.run);
    }

    fn finish(&mut self) {
        let now = ms(Utc::now());
        self.close_minutes(None);
        self.write(now, true);
        info!("history: written and closed");
    }
}
