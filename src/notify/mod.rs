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
//! Email and SMS sinks write to people, one delivery per recipient (so a retry never sends
//! twice to someone who already has it). A recipient `"oncall"` is whoever `[oncall]` names
//! when the notice is queued; bad news sent that way raises a page ([`pages`]) that
//! escalates until acknowledged ([`Notifier::ack`], or the signed link in the message:
//! [`links`]).
//!
//! Metrics: `detour_notifications_total{sink, result}` with result `delivered`, `retried`
//! (a failed try that will be tried again), `failed` (gave up) or `dropped` (queue overflow,
//! sink removed), and `detour_notify_queue_depth{sink}`. Sinks are numbered from 1 in the
//! order of the `[[notify]]` tables.

pub mod deliver;
pub mod fanout;
pub mod flap;
pub mod links;
pub mod message;
pub mod pages;
pub mod payload;
pub mod queue;
pub mod subscribers;

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

use crate::config::{Config, Notify, Recipient as To, Sink as SinkKind};
use crate::events::{Event, Kind};
use crate::snapshot::SnapshotHandle;
use flap::Flaps;
pub use links::Purpose;
use links::Signer;
use pages::{Acked, Page, Pages};
use payload::{Context, Notice};
use queue::{Entry, Recipient, Stored};

/// How long an acknowledge link in a message works.
pub const ACK_LINK_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

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

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubscribeError {
    /// No `[subscribers]`.
    #[error("This page does not offer updates.")]
    Off,
    /// Something typed is wrong (the message says what, for the visitor).
    #[error("{0}")]
    Invalid(String),
    /// Too many requests from this address: try later.
    #[error("Too many requests from your address; try again in a few minutes.")]
    TooMany,
    /// The store failed.
    #[error("Subscriptions cannot be taken right now.")]
    Storage(String),
}

/// Requests one address may make to the subscribe form per [`FORM_WINDOW`].
pub const FORM_LIMIT: u32 = 5;
/// The window of [`FORM_LIMIT`].
pub const FORM_WINDOW: Duration = Duration::from_secs(600);
/// Addresses remembered for the form's limit; past it the map is cleared (a flood of
/// addresses then gets a fresh window, never unbounded memory).
const FORM_TRACKED: usize = 10_000;

/// An address as kept: email addresses as typed (trimmed), phone numbers as E.164 with
/// spaces, dashes, dots and brackets taken out; `None` when it is not one.
pub fn normalize_address(channel: &str, s: &str) -> Option<String> {
    let s = s.trim();
    match channel {
        "email" => s.parse::<lettre::Address>().ok().map(|a| a.to_string()),
        "sms" => {
            let digits: String = s
                .chars()
                .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
                .collect();
            let ok = digits.strip_prefix('+').is_some_and(|d| {
                (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())
            });
            ok.then_some(digits)
        }
        _ => None,
    }
}

/// Who is on call, and the pages: `detour oncall`, `GET /api/v1/oncall`, status.
#[derive(Debug, Clone, Serialize)]
pub struct OnCallView {
    /// The moment asked about.
    pub at: chrono::DateTime<Utc>,
    /// Who is on call then.
    pub now: crate::oncall::Shift,
    /// Who comes next.
    pub next: crate::oncall::Shift,
    /// The rotation, in order.
    pub people: Vec<crate::oncall::Person>,
    /// `[oncall] escalate_after`.
    pub escalate_after: String,
    /// Pages nobody acknowledged yet, newest first.
    pub open: Vec<Page>,
    /// The latest acknowledged or ended pages, newest first (at most 10).
    pub ended: Vec<Page>,
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
    /// Wakes the router (flap limits changed, a page acknowledged).
    poke: tokio::sync::Notify,
    /// On-call pages.
    pages: Mutex<Pages>,
    /// Signs the links in messages; `None` when `state_dir` could not keep a key.
    signer: Option<Signer>,
    /// The subscribers, when `[subscribers]` was set at start.
    subscribers: Option<Arc<subscribers::Store>>,
    /// Wakes the fan-out (news queued).
    fanout_wake: Arc<tokio::sync::Notify>,
    /// Subscribe requests per source address (IPv6: per /64) in the current window.
    form_limits: Mutex<std::collections::HashMap<std::net::IpAddr, (Instant, u32)>>,
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
/// incidents match when any of their services is listed; guard events concern everyone. The
/// end of a slow spell (degraded to up) is told to the sinks that take `degraded`: a sink
/// that was never told a service was slow is not told it is fine again.
pub fn wants(sink: &Notify, n: &Notice) -> bool {
    let kinds = match &n.flapping {
        Some(f) => f.held.clone(),
        None if n.event.kind == Kind::Up
            && n.event.old_state == Some(crate::health::ServiceState::Degraded) =>
        {
            vec![Kind::Degraded]
        }
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
        Kind::Guard | Kind::Test | Kind::Safety => true,
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
        let (pages, pages_problem) = pages::load(&state_dir);
        let mut problem = problem;
        if let Some(p) = pages_problem {
            error!("{p}");
            problem = Some(p);
        }
        let subscribers = if config.subscribers.is_some() {
            match subscribers::Store::open(&state_dir) {
                Ok((s, p)) => {
                    if let Some(p) = p {
                        error!("{p}");
                        problem = Some(p);
                    }
                    Some(Arc::new(s))
                }
                Err(e) => {
                    let p = format!("subscribers are off: {e}");
                    error!("{p}");
                    problem = Some(p);
                    None
                }
            }
        } else {
            None
        };
        let signer = match Signer::load_or_create(&state_dir) {
            Ok(s) => Some(s),
            Err(e) => {
                let p = format!(
                    "cannot keep the key of the links in messages: {e}; messages go out without acknowledge or unsubscribe links"
                );
                error!("{p}");
                problem = Some(p);
                None
            }
        };
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
            pages: Mutex::new(pages),
            signer,
            subscribers,
            fanout_wake: Arc::new(tokio::sync::Notify::new()),
            form_limits: Mutex::new(std::collections::HashMap::new()),
            history: std::sync::OnceLock::new(),
        });
        if let Some(store) = &shared.subscribers {
            let handle = tokio::spawn(fanout::run(
                shared.clone(),
                store.clone(),
                shared.fanout_wake.clone(),
            ));
            lock(&shared.workers).push(handle);
        }
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

    /// Acknowledges page `id` as `by`: its escalation stops, the audit log says who. `Err`
    /// when there is no such page.
    pub fn ack(&self, id: &str, by: &str) -> Result<Acked, String> {
        let acked = lock(&self.shared.pages).ack(id, by, Utc::now());
        let Some(a) = acked else {
            return Err(format!("no page {id}: `detour oncall` lists the open ones"));
        };
        if !a.already {
            info!(page = %a.page.id, by, "page acknowledged: {}", a.page.headline());
            self.shared.audit("page.ack", &a.page, "acknowledged", by);
            self.shared.save_pages();
            self.shared.poke.notify_one();
        }
        Ok(a)
    }

    /// Takes a subscription from the page's form: `channel` "email" or "sms", the address as
    /// typed, the services (empty: everything), and the visitor's address (rate limit). The
    /// answer is the same whether or not a confirmation goes out now, so the form tells
    /// nobody who else subscribed.
    pub fn subscribe(
        &self,
        channel: &str,
        address: &str,
        services: &[String],
        source: std::net::IpAddr,
    ) -> Result<(), SubscribeError> {
        let config = self.shared.current();
        let (Some(store), Some(sc)) = (&self.shared.subscribers, &config.subscribers) else {
            return Err(SubscribeError::Off);
        };
        if !sc.channels.iter().any(|c| c == channel) {
            return Err(SubscribeError::Invalid(format!(
                "This page does not offer updates by {channel}."
            )));
        }
        let address = normalize_address(channel, address).ok_or_else(|| {
            SubscribeError::Invalid(match channel {
                "sms" => {
                    "That is not a phone number with its country code, such as +1 555 555 0101."
                        .into()
                }
                _ => "That is not an email address.".into(),
            })
        })?;
        for s in services {
            if !config.services.contains_key(s) {
                return Err(SubscribeError::Invalid(format!("There is no service {s}.")));
            }
        }
        if !self.shared.allow_form(source) {
            return Err(SubscribeError::TooMany);
        }
        let r = store
            .subscribe(channel, &address, services, Utc::now())
            .map_err(SubscribeError::Storage)?;
        info!(channel, to = %mask(&address), confirmed = r.subscriber.confirmed_at.is_some(), "subscription asked for");
        if r.send_confirmation {
            self.shared.send_confirmation(&config, channel, &address);
        }
        Ok(())
    }

    /// The channel and address a confirm (or unsubscribe) link names.
    pub fn subscriber_link(
        &self,
        purpose: Purpose,
        token: &str,
    ) -> Result<(String, String), String> {
        let signer = self
            .shared
            .signer
            .as_ref()
            .ok_or("links are off: detour could not keep their key")?;
        let payload = signer
            .verify(purpose, token, Utc::now())
            .map_err(|e| e.to_string())?;
        payload
            .split_once(':')
            .map(|(c, a)| (c.to_string(), a.to_string()))
            .ok_or_else(|| links::Refused::Invalid.to_string())
    }

    /// Confirms a subscription; false when it is gone (unsubscribed since).
    pub fn confirm(&self, channel: &str, address: &str) -> Result<bool, String> {
        let store = self
            .shared
            .subscribers
            .as_ref()
            .ok_or("subscriptions are off")?;
        let ok = store.confirm(channel, address, Utc::now())?;
        if ok {
            info!(channel, to = %mask(address), "subscription confirmed");
        }
        Ok(ok)
    }

    /// Ends subscriptions of `address` (on `channel`, or every one); how many went.
    pub fn unsubscribe(&self, channel: Option<&str>, address: &str) -> Result<usize, String> {
        let store = self
            .shared
            .subscribers
            .as_ref()
            .ok_or("subscriptions are off")?;
        let n = store.remove(channel, address)?;
        if n > 0 {
            info!(to = %mask(address), "unsubscribed");
        }
        Ok(n)
    }

    /// Every subscriber (for `detour subscribers list`: the operator's export).
    pub fn subscribers(&self) -> Result<Vec<subscribers::Subscriber>, String> {
        let store = self
            .shared
            .subscribers
            .as_ref()
            .ok_or("subscriptions are off: no [subscribers] in the config (at start)")?;
        store.list()
    }

    /// Checks an SMS gateway webhook the way Twilio signs it: base64 of HMAC-SHA1, keyed
    /// with the secret of the SMS sink's `credentials_file`, over the URL it called
    /// (`[page] url` + `sms/inbound`) followed by every form field's name and value, sorted
    /// by name. Without a `credentials_file` there is no key, and only a STOP can come in.
    pub fn verify_inbound(
        &self,
        signature: Option<&str>,
        form: &[(String, String)],
    ) -> Result<(), String> {
        use base64::Engine;
        let config = self.shared.current();
        let Some(crate::config::Sink::Sms(sms)) = fanout::sink_for(&config, "sms").map(|s| &s.sink)
        else {
            return Err("no sms sink".into());
        };
        let Some(file) = &sms.credentials_file else {
            return Ok(());
        };
        let creds = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let secret = creds.trim().split_once(':').map_or("", |(_, s)| s);
        let base = Context::of(&config).status_page.ok_or("no page address")?;
        let mut data = format!("{base}sms/inbound");
        let mut fields: Vec<&(String, String)> = form.iter().collect();
        fields.sort();
        for (k, v) in fields {
            data.push_str(k);
            data.push_str(v);
        }
        let key =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
        let want = base64::engine::general_purpose::STANDARD
            .encode(ring::hmac::sign(&key, data.as_bytes()));
        match signature {
            Some(got)
                if bool::from(subtle::ConstantTimeEq::ct_eq(
                    got.as_bytes(),
                    want.as_bytes(),
                )) =>
            {
                Ok(())
            }
            Some(_) => Err("X-Twilio-Signature does not match".into()),
            None => Err("no X-Twilio-Signature".into()),
        }
    }

    /// The channels the page offers, if subscriptions are on.
    pub fn channels(&self) -> Vec<String> {
        match (&self.shared.subscribers, &self.shared.current().subscribers) {
            (Some(_), Some(sc)) => sc.channels.clone(),
            _ => Vec::new(),
        }
    }

    /// The page and person an acknowledge link names, if the link is ours and current.
    pub fn ack_link(&self, token: &str) -> Result<(String, String), String> {
        let signer = self
            .shared
            .signer
            .as_ref()
            .ok_or("acknowledge links are off: detour could not keep their key")?;
        let payload = signer
            .verify(Purpose::Ack, token, Utc::now())
            .map_err(|e| e.to_string())?;
        payload
            .split_once(':')
            .map(|(p, n)| (p.to_string(), n.to_string()))
            .ok_or_else(|| links::Refused::Invalid.to_string())
    }

    /// The page with `id`, if any.
    pub fn page(&self, id: &str) -> Option<Page> {
        lock(&self.shared.pages)
            .list
            .iter()
            .find(|p| p.id.eq_ignore_ascii_case(id))
            .cloned()
    }

    /// Who is on call at `at` and next, and the pages (open ones first, then the latest
    /// ended ones); `None` without `[oncall]`.
    pub fn oncall(&self, at: chrono::DateTime<Utc>) -> Option<OnCallView> {
        let config = self.shared.current();
        let rota = config.oncall.as_ref()?;
        let zone = config.page.timezone;
        let pages = lock(&self.shared.pages).list.clone();
        let mut open: Vec<Page> = pages.iter().filter(|p| p.open()).cloned().collect();
        let mut ended: Vec<Page> = pages.into_iter().filter(|p| !p.open()).collect();
        open.reverse();
        ended.reverse();
        ended.truncate(10);
        Some(OnCallView {
            at,
            now: rota.at(at, zone),
            next: rota.next(at, zone),
            people: rota.people.clone(),
            escalate_after: crate::config::duration::display(rota.escalate_after),
            open,
            ended,
        })
    }

    /// Whom an operator's change `e` reaches, in words, for the command's answer: "on call:
    /// Dana (SMS, email)", "ops@example.test (email)", "webhook http://...". Empty when no
    /// sink wants it.
    pub fn reach(&self, e: &Event) -> Vec<String> {
        let config = self.shared.current();
        let n = Notice::single(e.clone());
        let sinks = lock(&self.shared.sinks).clone();
        let mut people: Vec<(String, Vec<&'static str>)> = Vec::new();
        let mut others: Vec<String> = Vec::new();
        for s in sinks.iter().filter(|s| wants(&s.config, &n)) {
            let kind = match &s.config.sink {
                SinkKind::Email(_) => "email",
                SinkKind::Sms(_) => "SMS",
                _ => {
                    others.push(s.target.clone());
                    continue;
                }
            };
            for r in recipients(&config, &s.config, Utc::now(), 0) {
                let who = match &r.person {
                    Some(p) => format!("on call: {p}"),
                    None => mask(&r.to),
                };
                match people.iter_mut().find(|(w, _)| *w == who) {
                    Some((_, kinds)) if !kinds.contains(&kind) => kinds.push(kind),
                    Some(_) => {}
                    None => people.push((who, vec![kind])),
                }
            }
        }
        let mut out: Vec<String> = people
            .into_iter()
            .map(|(who, kinds)| format!("{who} ({})", kinds.join(", ")))
            .collect();
        out.extend(others);
        if let (Some(store), Some(sc)) = (&self.shared.subscribers, &config.subscribers)
            && fanout::wanted(&n, sc.automatic)
        {
            match store.count(&payload::services(e)) {
                Ok(c) if c > 0 => out.push(format!("{c} subscribers queued")),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot count subscribers"),
            }
        }
        out
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
        let config = self.shared.current();
        let mut set = JoinSet::new();
        for s in chosen {
            let client = self.shared.client.clone();
            let (notice, ctx, base) = (notice.clone(), ctx.clone(), base.clone());
            let recipients: Vec<deliver::Recipient> = recipients(&config, &s.config, Utc::now(), 0)
                .into_iter()
                .map(|r| self.shared.addressed(&r, &config))
                .collect();
            set.spawn(async move {
                let start = Instant::now();
                let r = if recipients.is_empty() {
                    deliver::attempt(
                        &client,
                        &s.config.sink,
                        &base,
                        &notice,
                        &ctx,
                        s.config.timeout,
                        None,
                    )
                    .await
                } else {
                    // Every recipient, one after the other; the first failure is the answer.
                    let mut out = Ok(());
                    for r in &recipients {
                        if let Err(e) = deliver::attempt(
                            &client,
                            &s.config.sink,
                            &base,
                            &notice,
                            &ctx,
                            s.config.timeout,
                            Some(r),
                        )
                        .await
                        {
                            out = Err(format!("to {}: {e}", mask(&r.to)));
                            break;
                        }
                    }
                    out
                };
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
            let flap = lock(&shared.flaps).next_deadline();
            let page = lock(&shared.pages).next_deadline();
            let next = match (flap, page) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let wait = next
                .map(|d| (d - now).to_std().unwrap_or(Duration::ZERO))
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
            shared.escalate();
            shared.announce_maintenance();
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

/// Masks an address for logs: `d***@example.test`, `+1555***0101`. Recipients are personal
/// data; logs keep just enough to tell them apart.
pub fn mask(to: &str) -> String {
    if let Some((local, domain)) = to.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let n = to.chars().count();
    if n > 8 {
        let head: String = to.chars().take(5).collect();
        let tail: String = to.chars().skip(n - 4).collect();
        return format!("{head}***{tail}");
    }
    "***".into()
}

/// Who sink `n` writes to at escalation `level` of a page raised at `at`: its fixed addresses
/// (level 0 only) and, for `"oncall"`, the people `[oncall]` names for that level. Empty for
/// webhook and exec sinks.
fn recipients(config: &Config, n: &Notify, at: chrono::DateTime<Utc>, level: u8) -> Vec<Recipient> {
    let (to, phone) = match &n.sink {
        SinkKind::Email(e) => (&e.to, false),
        SinkKind::Sms(s) => (&s.to, true),
        _ => return Vec::new(),
    };
    let mut out: Vec<Recipient> = Vec::new();
    for r in to {
        match r {
            To::Address(a) if level == 0 => out.push(Recipient {
                to: a.clone(),
                person: None,
                page: None,
                level,
                why: format!("This address is listed to hear from {}.", config.page.title),
            }),
            To::Address(_) => {}
            To::OnCall => {
                let Some(rota) = &config.oncall else { continue };
                for p in rota.escalation(at, config.page.timezone, level) {
                    let addr = if phone { &p.phone } else { &p.email };
                    if let Some(a) = addr {
                        out.push(Recipient {
                            to: a.clone(),
                            person: Some(p.name.clone()),
                            page: None,
                            level,
                            why: match level {
                                0 => format!("You are on call for {}.", config.page.title),
                                1 => format!("You are next on call for {}.", config.page.title),
                                _ => format!(
                                    "You are in the on-call rotation of {}.",
                                    config.page.title
                                ),
                            },
                        });
                    }
                }
            }
        }
    }
    // One message per address, however many ways it was named.
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|r| seen.insert(r.to.clone()));
    out
}

/// True when sink `n` writes to whoever is on call.
fn pages_oncall(n: &Notify) -> bool {
    match &n.sink {
        SinkKind::Email(e) => e.to.contains(&To::OnCall),
        SinkKind::Sms(s) => s.to.contains(&To::OnCall),
        _ => false,
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

    /// Queues `n` on every sink that wants it: once for a webhook or exec sink, once per
    /// recipient for email and SMS. Bad news for whoever is on call raises a page; good news
    /// ends the pages it settles.
    fn dispatch(&self, n: Notice) {
        let sinks = lock(&self.sinks).clone();
        let config = self.current();
        let now = Utc::now();
        self.settle(&n, now);
        self.tell_subscribers(&config, &n, None);
        let wanting: Vec<&Arc<Sink>> = sinks.iter().filter(|s| wants(&s.config, &n)).collect();
        let page = match &config.oncall {
            Some(rota) if pages::pages(&n) && wanting.iter().any(|s| pages_oncall(&s.config)) => {
                let first: Vec<String> = rota
                    .escalation(now, config.page.timezone, 0)
                    .iter()
                    .map(|p| p.name.clone())
                    .collect();
                let page =
                    lock(&self.pages).raise(n.clone(), first.clone(), now, rota.escalate_after);
                info!(page = %page.id, to = %first.join(", "), "on call paged: {}", page.headline());
                self.audit(
                    "page.raise",
                    &page,
                    &format!("paged {}", first.join(", ")),
                    "detour",
                );
                self.save_pages();
                Some(page)
            }
            _ => None,
        };
        for s in wanting {
            let recipients = recipients(&config, &s.config, now, 0);
            if recipients.is_empty()
                && matches!(s.config.sink, SinkKind::Email(_) | SinkKind::Sms(_))
            {
                warn!(sink = %s.label(), target = %s.target, event = %about(&n), "nobody to send this to (nobody on call has an address for this sink)");
                continue;
            }
            let recipients: Vec<Option<Recipient>> = if recipients.is_empty() {
                vec![None]
            } else {
                recipients
                    .into_iter()
                    .map(|mut r| {
                        if r.person.is_some() {
                            r.page = page.as_ref().map(|p| p.id.clone());
                        }
                        Some(r)
                    })
                    .collect()
            };
            for recipient in recipients {
                let entry = Entry {
                    id: self.next_id.fetch_add(1, Ordering::Relaxed),
                    queued_at: now,
                    attempts: 0,
                    notice: n.clone(),
                    recipient,
                };
                self.push(s, entry);
            }
        }
    }

    /// Queues `n` for the subscribers who follow its services (once ever with `key`); how
    /// many.
    fn tell_subscribers(&self, config: &Config, n: &Notice, key: Option<&str>) -> usize {
        let (Some(store), Some(sc)) = (&self.subscribers, &config.subscribers) else {
            return 0;
        };
        if !fanout::wanted(n, sc.automatic) {
            return 0;
        }
        match store.enqueue(n, &payload::services(&n.event), key, Utc::now()) {
            Ok(0) => 0,
            Ok(count) => {
                info!(
                    subscribers = count,
                    "subscribers queued: {}",
                    payload::headline(n)
                );
                self.fanout_wake.notify_one();
                count
            }
            Err(e) => {
                warn!(error = %e, "cannot queue news for subscribers");
                0
            }
        }
    }

    /// Announces maintenance windows to subscribers when first seen, and reminds them
    /// `remind_before` the start (each once ever, keyed by window and lead time).
    fn announce_maintenance(&self) {
        let config = self.current();
        let Some(sc) = &config.subscribers else {
            return;
        };
        if self.subscribers.is_none() {
            return;
        }
        let now = Utc::now();
        let ctx = Context::of(&config);
        for m in &config.maintenance {
            let start = m.start.with_timezone(&Utc);
            if start <= now {
                continue;
            }
            let names: Vec<String> = m
                .services
                .iter()
                .map(|id| {
                    config
                        .services
                        .get(id)
                        .map_or(id.clone(), |s| s.name.clone())
                })
                .collect();
            let window = format!(
                "{} to {}",
                message::clock(start, ctx.zone),
                message::clock(m.end.with_timezone(&Utc), ctx.zone)
            );
            let key = format!("maintenance:{}:{}", m.services.join(","), start.timestamp());
            let notice = |what: &str| {
                let mut e = Event::new(Kind::Maintenance);
                e.service = m.services.first().cloned();
                e.incident = None;
                e.reason = m.message.clone();
                let mut n = Notice::single(e);
                let msg = if m.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", m.message)
                };
                n.text = Some(format!(
                    "{what} maintenance of {} {window}{msg}",
                    names.join(", ")
                ));
                n
            };
            // Every service of the window, for who follows which.
            let services = m.services.clone();
            let enqueue = |n: Notice, k: &str| {
                let store = self.subscribers.as_ref().expect("checked above");
                match store.enqueue(&n, &services, Some(k), now) {
                    Ok(c) if c > 0 => {
                        info!(
                            subscribers = c,
                            "subscribers queued: {}",
                            payload::headline(&n)
                        );
                        self.fanout_wake.notify_one();
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, "cannot queue a maintenance notice for subscribers")
                    }
                }
            };
            let store = self.subscribers.as_ref().expect("checked above");
            let announce = format!("{key}:announce");
            let first = !store.told(&announce).unwrap_or(true);
            enqueue(notice("Planned"), &announce);
            for lead in &sc.remind_before {
                let Ok(lead) = chrono::Duration::from_std(*lead) else {
                    continue;
                };
                let k = format!("{key}:remind:{}", lead.num_seconds());
                if now >= start - lead {
                    if first {
                        // Announced just now, inside the reminder's lead: the announcement
                        // says it all.
                        if let Err(e) = store.mark_told(&k, now) {
                            warn!(error = %e, "cannot record a maintenance reminder");
                        }
                    } else {
                        enqueue(notice("Reminder:"), &k);
                    }
                }
            }
        }
    }

    /// Ends the open pages `n` settles (a service up again, an incident resolved).
    fn settle(&self, n: &Notice, now: chrono::DateTime<Utc>) {
        let ended = lock(&self.pages).settle(n, now);
        for p in &ended {
            info!(page = %p.id, "page ended without acknowledgement: {}", pages::Page::headline(p));
            self.audit("page.end", p, &payload::headline(n), "detour");
        }
        if !ended.is_empty() {
            self.save_pages();
        }
    }

    /// Sends the pages due to escalate to the next level of people.
    fn escalate(&self) {
        let config = self.current();
        let Some(rota) = &config.oncall else { return };
        let due = lock(&self.pages).escalate_due(Utc::now(), rota.escalate_after);
        if due.is_empty() {
            return;
        }
        let sinks = lock(&self.sinks).clone();
        for page in due {
            let mut names: Vec<String> = Vec::new();
            for s in sinks
                .iter()
                .filter(|s| pages_oncall(&s.config) && wants(&s.config, &page.notice))
            {
                for mut r in recipients(&config, &s.config, Utc::now(), page.level) {
                    r.page = Some(page.id.clone());
                    if let Some(p) = &r.person
                        && !names.contains(p)
                    {
                        names.push(p.clone());
                    }
                    let entry = Entry {
                        id: self.next_id.fetch_add(1, Ordering::Relaxed),
                        queued_at: Utc::now(),
                        attempts: 0,
                        notice: page.notice.clone(),
                        recipient: Some(r),
                    };
                    self.push(s, entry);
                }
            }
            lock(&self.pages).paged(&page.id, &names);
            warn!(page = %page.id, level = page.level, to = %names.join(", "), "page not acknowledged: escalated: {}", page.headline());
            self.audit(
                "page.escalate",
                &page,
                &format!("level {}: {}", page.level, names.join(", ")),
                "detour",
            );
        }
        self.save_pages();
    }

    /// True when `source` may use the subscribe form now (at most [`FORM_LIMIT`] requests
    /// per [`FORM_WINDOW`]; IPv6 counted per /64).
    fn allow_form(&self, source: std::net::IpAddr) -> bool {
        let key = match source {
            std::net::IpAddr::V6(v6) => {
                let mut o = v6.octets();
                o[8..].fill(0);
                std::net::IpAddr::V6(o.into())
            }
            v4 => v4,
        };
        let now = Instant::now();
        let mut m = lock(&self.form_limits);
        if m.len() >= FORM_TRACKED {
            m.retain(|_, (t, _)| now.duration_since(*t) < FORM_WINDOW);
            if m.len() >= FORM_TRACKED {
                m.clear();
            }
        }
        let e = m.entry(key).or_insert((now, 0));
        if now.duration_since(e.0) >= FORM_WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= FORM_LIMIT
    }

    /// Sends the confirmation of a new subscription (its own delivery, not the outbox: the
    /// subscriber is not confirmed yet).
    fn send_confirmation(self: &Arc<Self>, config: &Config, channel: &str, address: &str) {
        let (Some(signer), Some(base), Some(sink)) = (
            &self.signer,
            Context::of(config).status_page,
            fanout::sink_for(config, channel).cloned(),
        ) else {
            warn!(
                channel,
                "cannot send a confirmation: no link key, page address or sink"
            );
            return;
        };
        let token = signer.sign(
            Purpose::Confirm,
            &format!("{channel}:{address}"),
            Utc::now() + fanout::CONFIRM_LIFETIME,
        );
        let url = format!("{base}confirm/{token}");
        let mut n = Notice::single(Event::test("subscription"));
        n.text = Some(match channel {
            "sms" => format!("Confirm updates from {}: {url}", config.page.title),
            _ => format!("Confirm your subscription to {} updates", config.page.title),
        });
        n.event.reason = format!("Open this link to confirm: {url}");
        let r = deliver::Recipient {
            to: address.to_string(),
            addressing: message::Addressing {
                why: format!(
                    "Someone asked for updates from the {} status page for this address. Nothing more is sent unless you confirm: {url}",
                    config.page.title
                ),
                ..message::Addressing::default()
            },
        };
        let shared = self.clone();
        let ctx = Context {
            // The link is in the text: no second link to the status page in a text message.
            status_page: if channel == "sms" {
                None
            } else {
                Context::of(config).status_page
            },
            ..Context::of(config)
        };
        let to = mask(address);
        tokio::spawn(async move {
            let base = shared.base();
            match deliver::attempt(
                &shared.client,
                &sink.sink,
                &base,
                &n,
                &ctx,
                sink.timeout,
                Some(&r),
            )
            .await
            {
                Ok(()) => info!(%to, "subscription confirmation sent"),
                Err(e) => warn!(%to, error = %e, "subscription confirmation not sent"),
            }
        });
    }

    /// Appends an audit entry about a page; a failure is logged.
    fn audit(&self, action: &str, page: &Page, what: &str, who: &str) {
        let entry = crate::audit::Entry {
            time: Utc::now(),
            action: action.to_string(),
            service: page.notice.event.service.clone(),
            incident: page.notice.event.incident.as_ref().map(|i| i.id.clone()),
            reason: format!("page {} ({}): {what}", page.id, page.headline()),
            who: who.to_string(),
        };
        if let Err(e) = crate::audit::append(&self.state_dir, &entry) {
            warn!(error = %e, "cannot write the audit log");
        }
    }

    /// Writes `pages.json` (the pages change rarely: written at once).
    fn save_pages(&self) {
        let pages = lock(&self.pages).clone();
        if let Err(e) = pages::save(&self.state_dir, &pages) {
            warn!(error = %e, "cannot save the on-call pages");
        }
    }

    /// The delivery-time form of a recipient: their acknowledge link signed now.
    fn addressed(&self, r: &Recipient, config: &Config) -> deliver::Recipient {
        let base = Context::of(config).status_page;
        let ack_url = match (&r.page, &r.person, &self.signer, base) {
            (Some(page), Some(person), Some(signer), Some(base)) => {
                let token = signer.sign(
                    Purpose::Ack,
                    &format!("{page}:{person}"),
                    Utc::now() + ACK_LINK_LIFETIME,
                );
                Some(format!("{base}ack/{token}"))
            }
            _ => None,
        };
        deliver::Recipient {
            to: r.to.clone(),
            addressing: message::Addressing {
                page: r.page.clone(),
                level: r.level,
                ack_url,
                unsubscribe_url: None,
                why: r.why.clone(),
                escalate_after: config
                    .oncall
                    .as_ref()
                    .map(|o| {
                        crate::text::span(
                            i64::try_from(o.escalate_after.as_secs()).unwrap_or(i64::MAX),
                        )
                    })
                    .unwrap_or_default(),
                message_id: None,
            },
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
        let recipient = entry
            .recipient
            .as_ref()
            .map(|r| shared.addressed(r, &shared.current()));
        let attempt = deliver::attempt(
            &shared.client,
            &cfg.sink,
            &base,
            &entry.notice,
            &ctx,
            cfg.timeout,
            recipient.as_ref(),
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
            recipient: None,
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
