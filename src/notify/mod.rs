//! Notifications: tell the people on call and the people affected, once, reliably.
//!
//! Events come from the states task over an unbounded channel (it never waits on us). A
//! router task fills in service names, holds back the state changes of a flapping service
//! for one summary ([`flap`]), and puts each notice on the queue of every `[[notify]]` sink
//! whose `events` and `services` filters want it. Each sink has its own bounded queue
//! ([`QUEUE_CAPACITY`]; when full the oldest is dropped, logged and counted) and its own
//! worker, which delivers one notice at a time in order: up to `attempts` tries, each bounded
//! by `timeout`, with exponential backoff and jitter between them capped at `max_delay`. A
//! final failure is logged (warn, with sink and event) and counted, never silent. Pending
//! deliveries, the one being tried included, are kept in `state_dir/notify-queue.json`
//! ([`queue`]) and sent after a restart.
//!
//! A reload that changes `[[notify]]` takes effect at the next event (or within a few
//! seconds): unchanged sinks keep their queues, a removed sink's pending deliveries move to a
//! new sink with the same destination or are reported as dropped.
//!
//! Metrics: `detour_notifications_total{sink, result}` with result `delivered`, `retried`
//! (a failed try that will be tried again), `failed` (gave up) or `dropped` (queue overflow,
//! sink removed), and `detour_notify_queue_depth{sink}`. Sinks are numbered from 1 in the
//! order of the `[[notify]]` tables.

pub mod deliver;
pub mod flap;
pub mod payload;
pub mod queue;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, Notify};
use crate::events::{Event, Kind};
use crate::snapshot::SnapshotHandle;
use flap::Flaps;
use payload::{Context, Notice};
use queue::{Entry, Stored};

/// Pending deliveries per sink; past this the oldest is dropped (logged and counted).
pub const QUEUE_CAPACITY: usize = 1000;
/// The wait after the first failed try; it doubles after each further one, up to the sink's
/// `max_delay`. The actual wait is jittered between half of it and all of it.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(2);
/// At shutdown, a try in flight gets this long to finish before it is abandoned (and kept
/// pending for the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// At shutdown, events the states task sends while stopping are still taken this long.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How often the router looks for a reloaded `[[notify]]` when no event arrives.
const CONFIG_POLL: Duration = Duration::from_secs(2);

/// The outcome of one sink in `detour notify test`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// Sink number (1-based position in `[[notify]]`).
    pub sink: usize,
    /// "webhook URL" or "exec PROGRAM ARGS".
    pub target: String,
    /// True when the sink took the test event.
    pub delivered: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the try took.
    pub ms: u64,
}

/// The notifier: the handle the admin API uses for `detour notify test`. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
    /// What went wrong loading the queue left by the last run, if anything.
    problem: Option<String>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("sinks", &lock(&self.shared.sinks).len())
            .finish()
    }
}

struct Shared {
    snapshots: SnapshotHandle,
    /// The config the sinks were built from.
    config: Mutex<Arc<Config>>,
    sinks: Mutex<Vec<Arc<Sink>>>,
    client: Result<reqwest::Client, String>,
    state_dir: PathBuf,
    next_id: AtomicU64,
    /// Wakes the persister.
    dirty: tokio::sync::Notify,
    /// True once anything changed since start (the final write is skipped otherwise).
    changed: AtomicBool,
    cancel: CancellationToken,
    workers: Mutex<Vec<JoinHandle<()>>>,
    flaps: Mutex<Flaps>,
    /// Wakes the router (flap limits changed).
    poke: tokio::sync::Notify,
    /// Where delivered notifications are counted (`detour report`).
    history: std::sync::OnceLock<crate::history::Recorder>,
}

struct Sink {
    /// 1-based position in `[[notify]]` (changes when a reload reorders sinks).
    number: AtomicUsize,
    config: Notify,
    target: String,
    pending: Mutex<Pending>,
    wake: tokio::sync::Notify,
    /// Stops the worker (shutdown, or the sink was removed by a reload).
    stop: CancellationToken,
}

#[derive(Default)]
struct Pending {
    /// The delivery being tried (or waiting for its next try).
    inflight: Option<Entry>,
    queue: VecDeque<Entry>,
    /// Removed by a reload: its entries moved elsewhere, the worker must not touch them.
    retired: bool,
}

impl Pending {
    /// Queues `entry`; when the queue is full, drops the oldest queued entry (never the one
    /// in flight) and returns it.
    fn push(&mut self, entry: Entry) -> Option<Entry> {
        let dropped = if self.queue.len() >= QUEUE_CAPACITY {
            self.queue.pop_front()
        } else {
            None
        };
        self.queue.push_back(entry);
        dropped
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sink {
    fn label(&self) -> String {
        self.number.load(Ordering::Relaxed).to_string()
    }

    fn depth(&self, p: &Pending) {
        let n = p.queue.len() + usize::from(p.inflight.is_some());
        metrics::gauge!("detour_notify_queue_depth", "sink" => self.label()).set(n as f64);
    }
}

/// True when `sink`'s filters want `n`. A summary counts as every kind it holds back;
/// incidents match when any of their services is listed; guard events concern everyone.
pub fn wants(sink: &Notify, n: &Notice) -> bool {
    let kinds = match &n.flapping {
        Some(f) => f.held.clone(),
        None => vec![n.event.kind],
    };
    if !kinds
        .iter()
        .any(|k| sink.events.iter().any(|e| e == k.as_str()))
    {
        return false;
    }
    if sink.services.is_empty() {
        return true;
    }
    let e = &n.event;
    match e.kind {
        Kind::Guard | Kind::Test => true,
        Kind::Incident => e
            .incident
            .as_ref()
            .is_some_and(|i| i.services.iter().any(|s| sink.services.contains(s))),
        _ => e.service.as_ref().is_none_or(|s| sink.services.contains(s)),
    }
}

/// The wait before try `tried + 1`: `BACKOFF_FIRST` doubled per failed try, capped at `max`,
/// jittered between half of that and all of it.
pub fn backoff(tried: u32, max: Duration) -> Duration {
    let exp = 2u32.saturating_pow(tried.saturating_sub(1));
    let full = BACKOFF_FIRST.saturating_mul(exp).min(max);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// One line about a notice for logs.
fn about(n: &Notice) -> String {
    payload::headline(n)
}

impl Notifier {
    /// Starts the router, one worker per sink and the persister; loads the deliveries left
    /// pending by the previous run. Everything stops (and pending deliveries are saved) when
    /// `cancel` fires.
    pub fn start(
        config: &Arc<Config>,
        snapshots: SnapshotHandle,
        events: mpsc::UnboundedReceiver<Event>,
        cancel: CancellationToken,
        tasks: &mut JoinSet<io::Result<()>>,
    ) -> Notifier {
        let state_dir = config.server.state_dir.clone();
        let (stored, problem) = queue::load(&state_dir);
        if let Some(p) = &problem {
            error!("{p}");
        }
        let next_id = stored.iter().map(|s| s.entry.id).max().unwrap_or(0) + 1;
        let shared = Arc::new(Shared {
            snapshots,
            config: Mutex::new(config.clone()),
            sinks: Mutex::new(Vec::new()),
            client: deliver::http_client(),
            state_dir,
            next_id: AtomicU64::new(next_id),
            dirty: tokio::sync::Notify::new(),
            changed: AtomicBool::new(false),
            cancel: cancel.clone(),
            workers: Mutex::new(Vec::new()),
            flaps: Mutex::new(Flaps::default()),
            poke: tokio::sync::Notify::new(),
            history: std::sync::OnceLock::new(),
        });
        let sinks: Vec<Arc<Sink>> = config
            .notify
            .iter()
            .enumerate()
            .map(|(i, n)| shared.new_sink(i + 1, n.clone()))
            .collect();
        for w in &config.notify {
            if let crate::config::Sink::Webhook { headers, .. } = &w.sink {
                for (k, v) in headers {
                    if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                        || reqwest::header::HeaderValue::from_str(v).is_err()
                    {
                        warn!(header = %k, "notify: invalid webhook header; deliveries will fail");
                    }
                }
            }
        }
        *lock(&shared.sinks) = sinks.clone();
        if !stored.is_empty() {
            shared.mark_dirty();
            let n = stored.len();
            for s in stored {
                shared.restore(&sinks, s);
            }
            info!(
                pending = n,
                "notifications left pending by the last run are queued again"
            );
        }
        let notifier = Notifier {
            shared: shared.clone(),
            problem,
        };
        let router = notifier.clone();
        tasks.spawn(async move {
            router.run(events).await;
            Ok(())
        });
        notifier
    }

    /// Counts every delivered notification in `history` from now on (for `detour report`).
    pub fn record_into(&self, history: crate::history::Recorder) {
        let _ = self.shared.history.set(history);
    }

    /// What went wrong loading the queue left by the last run (a corrupt file set aside),
    /// for `detour status`.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// Changes when a service counts as flapping: more than `threshold` state changes within
    /// `window`, summarised after `settle` without a change (defaults: [`flap::FLAP_THRESHOLD`],
    /// [`flap::FLAP_WINDOW`], [`flap::FLAP_SETTLE`]). Held events are kept. For tests.
    pub fn set_flap_limits(&self, threshold: usize, window: Duration, settle: Duration) {
        lock(&self.shared.flaps).set_limits(threshold, window, settle);
        self.shared.poke.notify_one();
    }

    /// Sends a test event through every sink (or only sink `number`), once each, with the
    /// sink's timeout and no retry, all at once; the results in sink order.
    pub async fn test(&self, number: Option<usize>, who: &str) -> Result<Vec<TestResult>, String> {
        self.shared.refresh();
        let sinks = lock(&self.shared.sinks).clone();
        let chosen: Vec<Arc<Sink>> = match number {
            None => sinks,
            Some(n) => match sinks.get(n.wrapping_sub(1)) {
                Some(s) if n > 0 => vec![s.clone()],
                _ => {
                    return Err(format!(
                        "no sink {n}: {} [[notify]] sink(s) configured, numbered from 1",
                        sinks.len()
                    ));
                }
            },
        };
        let notice = Notice::single(Event::test(who));
        let ctx = self.shared.context();
        let base = self.shared.base();
        let mut set = JoinSet::new();
        for s in chosen {
            let client = self.shared.client.clone();
            let (notice, ctx, base) = (notice.clone(), ctx.clone(), base.clone());
            set.spawn(async move {
                let start = Instant::now();
                let r = deliver::attempt(
                    &client,
                    &s.config.sink,
                    &base,
                    &notice,
                    &ctx,
                    s.config.timeout,
                )
                .await;
                let result = TestResult {
                    sink: s.number.load(Ordering::Relaxed),
                    target: s.target.clone(),
                    delivered: r.is_ok(),
                    error: r.err(),
                    ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                };
                match &result.error {
                    None => info!(sink = result.sink, target = %result.target, "test notification delivered"),
                    Some(err) => warn!(sink = result.sink, target = %result.target, error = %err, "test notification failed"),
                }
                result
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.map_err(|e| format!("test delivery task failed: {e}"))?);
        }
        out.sort_by_key(|r| r.sink);
        Ok(out)
    }

    /// The router: events in, notices out to the sinks' queues, until `cancel`.
    async fn run(self, mut events: mpsc::UnboundedReceiver<Event>) {
        let shared = self.shared;
        let cancel = shared.cancel.clone();
        let persister = tokio::spawn(persist_loop(shared.clone()));
        let mut open = true;
        loop {
            let now = Utc::now();
            let next = lock(&shared.flaps).next_deadline();
            let wait = next
                .and_then(|d| (d - now).to_std().ok())
                .map_or(CONFIG_POLL, |d| d.min(CONFIG_POLL));
            tokio::select! {
                e = events.recv(), if open => match e {
                    Some(e) => {
                        shared.refresh();
                        shared.route(e);
                        while let Ok(e) = events.try_recv() {
                            shared.route(e);
                        }
                    }
                    // The states task is gone; nothing more will come.
                    None => open = false,
                },
                _ = tokio::time::sleep(wait) => {}
                _ = shared.poke.notified() => {}
                _ = cancel.cancelled() => break,
            }
            shared.refresh();
            let due = lock(&shared.flaps).due(Utc::now());
            for n in due {
                shared.dispatch(n);
            }
        }
        // The states task drops its sender when it stops: take what it sent until then.
        if open {
            let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
            while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.recv()).await {
                shared.route(e);
            }
        }
        let held = lock(&shared.flaps).flush();
        for n in held {
            shared.dispatch(n);
        }
        let workers: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&shared.workers));
        for w in workers {
            let _ = w.await;
        }
        let _ = persister.await;
        if shared.changed.load(Ordering::Relaxed) {
            let pending = shared.pending();
            let n = pending.len();
            let dir = shared.state_dir.clone();
            match tokio::task::spawn_blocking(move || queue::save(&dir, pending)).await {
                Ok(Ok(())) if n > 0 => {
                    info!(
                        pending = n,
                        "pending notifications saved for the next start"
                    )
                }
                Ok(Ok(())) => {}
                Ok(Err(e)) => error!(error = %e, "cannot save pending notifications"),
                Err(e) => error!(error = %e, "cannot save pending notifications"),
            }
        }
    }
}

/// Writes the pending deliveries whenever they change; bursts coalesce.
async fn persist_loop(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.dirty.notified() => {}
            _ = shared.cancel.cancelled() => return,
        }
        let pending = shared.pending();
        let dir = shared.state_dir.clone();
        match tokio::task::spawn_blocking(move || queue::save(&dir, pending)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot save pending notifications"),
            Err(e) => warn!(error = %e, "cannot save pending notifications"),
        }
    }
}

impl Shared {
    fn current(&self) -> Arc<Config> {
        self.snapshots.load().config.clone()
    }

    fn context(&self) -> Context {
        Context::of(&self.current())
    }

    /// The folder relative exec programs are found in: the config file's.
    fn base(&self) -> PathBuf {
        self.current()
            .path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    fn mark_dirty(&self) {
        self.changed.store(true, Ordering::Relaxed);
        self.dirty.notify_one();
    }

    fn new_sink(self: &Arc<Self>, number: usize, config: Notify) -> Arc<Sink> {
        let sink = Arc::new(Sink {
            number: AtomicUsize::new(number),
            target: deliver::target(&config.sink),
            config,
            pending: Mutex::new(Pending::default()),
            wake: tokio::sync::Notify::new(),
            stop: self.cancel.child_token(),
        });
        let handle = tokio::spawn(worker(self.clone(), sink.clone()));
        lock(&self.workers).push(handle);
        sink
    }

    /// Every pending delivery, each sink's in-flight one first.
    fn pending(&self) -> Vec<Stored> {
        let sinks = lock(&self.sinks).clone();
        let mut out = Vec::new();
        for s in sinks {
            let p = lock(&s.pending);
            if p.retired {
                continue;
            }
            let number = s.number.load(Ordering::Relaxed);
            for e in p.inflight.iter().chain(p.queue.iter()) {
                out.push(Stored {
                    sink: number,
                    target: s.target.clone(),
                    entry: e.clone(),
                });
            }
        }
        out
    }

    /// Puts a delivery loaded from the queue file back on its sink.
    fn restore(&self, sinks: &[Arc<Sink>], s: Stored) {
        let same = sinks
            .get(s.sink.wrapping_sub(1))
            .filter(|k| k.target == s.target)
            .or_else(|| sinks.iter().find(|k| k.target == s.target));
        match same {
            Some(k) => self.push(k, s.entry),
            None => {
                warn!(sink = s.sink, target = %s.target, event = %about(&s.entry.notice),
                    "pending notification dropped: its sink is no longer configured");
                metrics::counter!("detour_notifications_total", "sink" => s.sink.to_string(), "result" => "dropped").increment(1);
            }
        }
    }

    /// Adds an entry at the back of a sink's queue, dropping the oldest when full.
    fn push(&self, sink: &Sink, entry: Entry) {
        {
            let mut p = lock(&sink.pending);
            if let Some(old) = p.push(entry) {
                warn!(sink = %sink.label(), target = %sink.target, event = %about(&old.notice),
                    queued_at = %old.queued_at, "notification queue full: dropped the oldest pending notification");
                metrics::counter!("detour_notifications_total", "sink" => sink.label(), "result" => "dropped").increment(1);
            }
            sink.depth(&p);
        }
        sink.wake.notify_one();
        self.mark_dirty();
    }

    /// Fills in what the states task left out, then passes the event through the flap
    /// filter and on to the sinks.
    fn route(&self, mut e: Event) {
        if e.service_name.is_none()
            && let Some(id) = &e.service
        {
            e.service_name = self.current().services.get(id).map(|s| s.name.clone());
        }
        let now = lock(&self.flaps).offer(e, Utc::now());
        if let Some(n) = now {
            self.dispatch(n);
        }
    }

    /// Queues `n` on every sink that wants it.
    fn dispatch(&self, n: Notice) {
        let sinks = lock(&self.sinks).clone();
        for s in sinks.iter().filter(|s| wants(&s.config, &n)) {
            let entry = Entry {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                queued_at: Utc::now(),
                attempts: 0,
                notice: n.clone(),
            };
            self.push(s, entry);
        }
    }

    /// Applies a reload that changed `[[notify]]`: identical sinks stay (with their queues),
    /// new ones start, removed ones hand their pending deliveries to a sink with the same
    /// destination or report them dropped.
    fn refresh(self: &Arc<Self>) {
        let current = self.current();
        {
            let mut cfg = lock(&self.config);
            if Arc::ptr_eq(&cfg, &current) {
                return;
            }
            let same = cfg.notify == current.notify;
            *cfg = current.clone();
            if same {
                return;
            }
        }
        let mut old: Vec<Option<Arc<Sink>>> = lock(&self.sinks).drain(..).map(Some).collect();
        let mut next = Vec::new();
        for (i, n) in current.notify.iter().enumerate() {
            let reuse = match old.get(i) {
                Some(Some(s)) if s.config == *n => Some(i),
                _ => old
                    .iter()
                    .position(|o| o.as_ref().is_some_and(|s| s.config == *n)),
            };
            let sink = match reuse.and_then(|p| old[p].take()) {
                Some(s) => {
                    s.number.store(i + 1, Ordering::Relaxed);
                    s
                }
                None => self.new_sink(i + 1, n.clone()),
            };
            next.push(sink);
        }
        *lock(&self.sinks) = next.clone();
        for gone in old.into_iter().flatten() {
            gone.stop.cancel();
            let entries: Vec<Entry> = {
                let mut p = lock(&gone.pending);
                p.retired = true;
                let mut v: Vec<Entry> = p.inflight.take().into_iter().collect();
                v.extend(p.queue.drain(..));
                v
            };
            metrics::gauge!("detour_notify_queue_depth", "sink" => gone.label()).set(0.0);
            for mut e in entries {
                match next.iter().find(|k| k.target == gone.target) {
                    Some(k) => {
                        e.attempts = 0;
                        self.push(k, e);
                    }
                    None => {
                        warn!(sink = %gone.label(), target = %gone.target, event = %about(&e.notice),
                            "pending notification dropped: its sink was removed from the config");
                        metrics::counter!("detour_notifications_total", "sink" => gone.label(), "result" => "dropped").increment(1);
                    }
                }
            }
        }
        self.mark_dirty();
        info!(sinks = next.len(), "notification sinks reloaded");
    }
}

/// One sink's worker: delivers its queue in order, one notice at a time.
async fn worker(shared: Arc<Shared>, sink: Arc<Sink>) {
    loop {
        let next = {
            let mut p = lock(&sink.pending);
            if p.retired {
                return;
            }
            if p.inflight.is_none() {
                p.inflight = p.queue.pop_front();
            }
            p.inflight.clone()
        };
        let Some(entry) = next else {
            tokio::select! {
                _ = sink.wake.notified() => continue,
                _ = sink.stop.cancelled() => return,
            }
        };
        let ctx = shared.context();
        let base = shared.base();
        let cfg = &sink.config;
        let attempt = deliver::attempt(
            &shared.client,
            &cfg.sink,
            &base,
            &entry.notice,
            &ctx,
            cfg.timeout,
        );
        tokio::pin!(attempt);
        let mut stopping = false;
        let result = tokio::select! {
            r = &mut attempt => r,
            _ = sink.stop.cancelled() => {
                stopping = true;
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut attempt).await {
                    Ok(r) => r,
                    // Abandoned: it stays pending and is tried again at the next start.
                    Err(_) => return,
                }
            }
        };
        let tried = entry.attempts + 1;
        let event = about(&entry.notice);
        let kind = entry.notice.event.kind.as_str();
        let label = sink.label();
        let delay = {
            let mut p = lock(&sink.pending);
            if p.retired {
                return;
            }
            match &result {
                Ok(()) => {
                    p.inflight = None;
                    info!(sink = %label, target = %sink.target, event = kind, attempts = tried, "notification delivered: {event}");
                    metrics::counter!("detour_notifications_total", "sink" => label.clone(), "result" => "delivered").increment(1);
                    if let Some(h) = shared.history.get() {
                        h.notified(&label, kind, entry.notice.event.service.as_deref());
                    }
                    None
                }
                Err(reason) if tried < cfg.attempts => {
                    if let Some(e) = p.inflight.as_mut() {
                        e.attempts = tried;
                    }
                    let d = backoff(tried, cfg.max_delay);
                    warn!(sink = %label, target = %sink.target, event = kind, attempt = tried, of = cfg.attempts,
                        error = %reason, retry_in_ms = d.as_millis() as u64, "notification not delivered yet: {event}");
                    metrics::counter!("detour_notifications_total", "sink" => label.clone(), "result" => "retried").increment(1);
                    Some(d)
                }
                Err(reason) => {
                    p.inflight = None;
                    warn!(sink = %label, target = %sink.target, event = kind, attempts = tried,
                        error = %reason, "notification FAILED, giving up: {event}");
                    metrics::counter!("detour_notifications_total", "sink" => label.clone(), "result" => "failed").increment(1);
                    None
                }
            }
        };
        {
            let p = lock(&sink.pending);
            sink.depth(&p);
        }
        shared.mark_dirty();
        if stopping {
            return;
        }
        if let Some(d) = delay {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = sink.stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sink as SinkKind;
    use crate::health::ServiceState;
    use crate::incidents::{Incident, Update};

    fn sink(events: &[&str], services: &[&str]) -> Notify {
        Notify {
            sink: SinkKind::Exec {
                command: vec!["true".into()],
            },
            events: events.iter().map(|s| s.to_string()).collect(),
            services: services.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(1),
            attempts: 3,
            max_delay: Duration::from_secs(1),
        }
    }

    fn state(kind: Kind, service: &str) -> Notice {
        let mut e = Event::new(kind);
        e.service = Some(service.into());
        Notice::single(e)
    }

    #[test]
    fn filters_by_event_and_service() {
        let s = sink(&["down"], &["mls"]);
        assert!(wants(&s, &state(Kind::Down, "mls")));
        assert!(!wants(&s, &state(Kind::Up, "mls")));
        assert!(!wants(&s, &state(Kind::Down, "sso")));
        let g = sink(&["guard", "incident"], &["mls"]);
        assert!(wants(&g, &Notice::single(Event::new(Kind::Guard))));
        let mut inc = Event::new(Kind::Incident);
        inc.incident = Some(Incident {
            id: "k7q2".into(),
            services: vec!["sso".into(), "mls".into()],
            opened_at: Utc::now(),
            resolved_at: None,
            updates: vec![Update {
                at: Utc::now(),
                message: "on it".into(),
                by: None,
                status: "investigating".into(),
            }],
        });
        assert!(wants(&g, &Notice::single(inc.clone())));
        let other = sink(&["incident"], &["forms"]);
        assert!(!wants(&other, &Notice::single(inc)));
        // A summary reaches a sink that wants any kind it held back.
        let mut sum = state(Kind::Up, "mls");
        sum.event.new_state = Some(ServiceState::Up);
        sum.flapping = Some(payload::Flapping {
            changes: 6,
            first_at: Utc::now(),
            last_at: Utc::now(),
            held: vec![Kind::Down, Kind::Up],
        });
        assert!(wants(&s, &sum));
    }

    #[test]
    fn a_full_queue_drops_its_oldest_entry_never_the_one_in_flight() {
        let entry = |id| Entry {
            id,
            queued_at: Utc::now(),
            attempts: 0,
            notice: Notice::single(Event::new(Kind::Guard)),
        };
        let mut p = Pending {
            inflight: Some(entry(0)),
            ..Pending::default()
        };
        for id in 1..=QUEUE_CAPACITY as u64 {
            assert!(p.push(entry(id)).is_none());
        }
        assert_eq!(p.push(entry(5000)).map(|e| e.id), Some(1));
        assert_eq!(p.queue.len(), QUEUE_CAPACITY);
        assert_eq!(p.inflight.as_ref().map(|e| e.id), Some(0));
        assert_eq!(p.queue.front().map(|e| e.id), Some(2));
        assert_eq!(p.queue.back().map(|e| e.id), Some(5000));
    }

    #[test]
    fn backoff_doubles_jitters_and_is_capped() {
        for _ in 0..50 {
            let d = backoff(1, Duration::from_secs(300));
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
            let d = backoff(3, Duration::from_secs(300));
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(8),
                "{d:?}"
            );
            let d = backoff(30, Duration::from_millis(200));
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
        }
    }
}
