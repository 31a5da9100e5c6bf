//! Heartbeat checks: a job (a batch import, a backup, a cron line) calls detour at least
//! every `period`; no call for `period + grace` fails the check.
//!
//! [`Heartbeats`] is the registry the admin API hands calls to: one entry per heartbeat
//! check, with its token (`state_dir/heartbeat/<check id>.token`, read, or made at start
//! or reload when missing, mode 0600) and the time of its last call, which is also kept
//! in `state_dir/heartbeat/<check id>.last` so that a restart does not forget it. [`watch`]
//! is the check's task: it reports a pass at each call and a failure when the deadline
//! passes, through the same rise/fall machinery as probes (with rise = fall = 1: `grace`
//! is the heartbeat's hysteresis).
//!
//! Before the first call ever seen, the check passes ("waiting for the first heartbeat")
//! until `period + grace` after detour started: a check only fails on evidence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;
use tokio::sync::watch as tokio_watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Observation;
use super::runner::{CheckId, Hysteresis, Links, Report};
use crate::config::duration::display;
use crate::config::{CheckKind, Config, HeartbeatCheck};

/// The time of a check's last heartbeat, as its task watches it.
pub type Beat = Option<DateTime<Utc>>;

/// Every heartbeat check's token and last call. Cheap to clone (shared inside).
#[derive(Clone, Default)]
pub struct Heartbeats {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// By check id ("feed#0").
    entries: BTreeMap<String, Entry>,
    /// `state_dir/heartbeat`.
    dir: PathBuf,
}

struct Entry {
    service: String,
    token: String,
    beat: tokio_watch::Sender<Beat>,
}

impl std::fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.lock().entries.keys().cloned().collect();
        f.debug_struct("Heartbeats").field("checks", &ids).finish()
    }
}

/// A call that was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    /// No heartbeat check by that name.
    #[error("{0}")]
    Unknown(String),
    /// The token is not this check's.
    #[error("wrong heartbeat token for {0} (see state_dir/heartbeat/{0}.token)")]
    Token(String),
}

/// A call that was taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// The check's id.
    pub check: String,
    /// When it was taken.
    pub at: DateTime<Utc>,
}

/// The folder of heartbeat tokens and last calls.
pub fn dir(config: &Config) -> PathBuf {
    config.server.state_dir.join("heartbeat")
}

/// A check id as a file name ("feed#0" is one as it is).
fn file(dir: &Path, id: &str, ext: &str) -> PathBuf {
    dir.join(format!("{id}.{ext}"))
}

/// The heartbeat checks of `config`: id, service, definition.
pub fn of(config: &Config) -> Vec<(CheckId, HeartbeatCheck)> {
    let mut out = Vec::new();
    for (service, svc) in &config.services {
        for (index, c) in svc.checks.iter().enumerate() {
            if let CheckKind::Heartbeat(h) = &c.kind {
                out.push((
                    CheckId::Service {
                        service: service.clone(),
                        index,
                    },
                    *h,
                ));
            }
        }
    }
    out
}

/// The token in `path`, or a new one written there (random, 256 bits, mode 0600).
fn token(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    crate::store::atomic_write_mode(path, format!("{token}\n").as_bytes(), 0o600)?;
    info!(file = %path.display(), "created a heartbeat token");
    Ok(token)
}

impl Heartbeats {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds exactly the heartbeat checks of `config`: an entry kept keeps its last call
    /// (and its task's subscription); a new one reads its token and last call from
    /// `state_dir/heartbeat`, making the token when missing. Returns what went wrong (a
    /// token that cannot be read or written: that check cannot be called).
    pub fn apply(&self, config: &Config) -> Vec<String> {
        let dir = dir(config);
        let wanted = of(config);
        let mut problems = Vec::new();
        let mut made = BTreeMap::new();
        for (id, _) in &wanted {
            let key = id.to_string();
            let known = self.lock().entries.get(&key).map(|e| e.token.clone());
            // Read again at every apply: an operator may have put another token in the file.
            let t = match token(&file(&dir, &key, "token")) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(format!(
                        "heartbeat check {key}: cannot read or create its token {}: {e}",
                        file(&dir, &key, "token").display()
                    ));
                    match known {
                        Some(t) => t,
                        None => continue,
                    }
                }
            };
            let last = std::fs::read_to_string(file(&dir, &key, "last"))
                .ok()
                .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
                .map(|t| t.with_timezone(&Utc));
            made.insert(key, (t, last));
        }
        let mut inner = self.lock();
        inner.dir = dir;
        let mut entries = BTreeMap::new();
        for (id, _) in wanted {
            let key = id.to_string();
            let Some((token, last)) = made.remove(&key) else {
                continue;
            };
            let service = match &id {
                CheckId::Service { service, .. } => service.clone(),
                _ => String::new(),
            };
            let entry = match inner.entries.remove(&key) {
                Some(mut e) => {
                    e.token = token;
                    e.service = service;
                    e
                }
                None => Entry {
                    service,
                    token,
                    beat: tokio_watch::channel(last).0,
                },
            };
            entries.insert(key, entry);
        }
        inner.entries = entries;
        problems
    }

    /// The last call of check `id`, to watch; `None` for an unknown check.
    pub fn subscribe(&self, id: &CheckId) -> Option<tokio_watch::Receiver<Beat>> {
        self.lock()
            .entries
            .get(&id.to_string())
            .map(|e| e.beat.subscribe())
    }

    /// The check a URL names: its id ("feed#0"), or a service's id when that service has
    /// exactly one heartbeat check.
    fn resolve(&self, name: &str) -> Result<String, Refused> {
        let inner = self.lock();
        if inner.entries.contains_key(name) {
            return Ok(name.to_string());
        }
        let of_service: Vec<&String> = inner
            .entries
            .iter()
            .filter(|(_, e)| e.service == name)
            .map(|(id, _)| id)
            .collect();
        match of_service.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Refused::Unknown(format!(
                "no heartbeat check {name:?}: expected one of {} (or the service of one)",
                if inner.entries.is_empty() {
                    "(none configured)".to_string()
                } else {
                    inner.entries.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ))),
            many => Err(Refused::Unknown(format!(
                "service {name} has {} heartbeat checks: name one ({})",
                many.len(),
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Takes one call for `name` (see [`Heartbeats::resolve`]) with `token`, compared in
    /// constant time; keeps its time in `state_dir` (a failed write is logged: the call
    /// still counts).
    pub fn beat(&self, name: &str, token: &str, at: DateTime<Utc>) -> Result<Taken, Refused> {
        let id = self.resolve(name)?;
        let dir = {
            let inner = self.lock();
            let Some(e) = inner.entries.get(&id) else {
                return Err(Refused::Unknown(format!("no heartbeat check {id:?}")));
            };
            let ok: bool = token.as_bytes().ct_eq(e.token.as_bytes()).into();
            if !ok {
                return Err(Refused::Token(id));
            }
            e.beat.send_replace(Some(at));
            inner.dir.clone()
        };
        let path = file(&dir, &id, "last");
        if let Err(e) = crate::store::atomic_write(&path, at.to_rfc3339().as_bytes()) {
            warn!(file = %path.display(), error = %e, "cannot keep a heartbeat's time: a restart would forget it");
        }
        Ok(Taken { check: id, at })
    }
}

/// Runs one heartbeat check's task until `cancel` fires (or its entry goes): a report at
/// start, at each call, and when `period + grace` passes without one.
pub async fn watch(
    id: CheckId,
    check: HeartbeatCheck,
    initial: Option<bool>,
    mut beats: tokio_watch::Receiver<Beat>,
    links: Links,
    cancel: CancellationToken,
) {
    let started = Utc::now();
    let window = check.period + check.grace;
    let window_c = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let within = display(window);
    let parts = format!(
        "(period {} + grace {})",
        display(check.period),
        display(check.grace)
    );
    let mut h = Hysteresis::new(1, 1, initial);
    let mut seen = *beats.borrow_and_update();
    loop {
        let now = Utc::now();
        let (ok, reason, due) = match seen {
            Some(t) if now < t + window_c => {
                (true, "heartbeat received".to_string(), Some(t + window_c))
            }
            Some(_) => (false, format!("no heartbeat within {within} {parts}"), None),
            None if now < started + window_c => (
                true,
                format!("waiting for the first heartbeat: due within {within} of start {parts}"),
                Some(started + window_c),
            ),
            None => (
                false,
                format!("no heartbeat since detour started {within} ago {parts}"),
                None,
            ),
        };
        if !ok {
            // Like a failing probe: ask the canaries whether detour's own network works.
            links.canaries.send_modify(|n| *n = n.wrapping_add(1));
        }
        let mut observation = if ok {
            Observation::pass(Duration::ZERO, reason)
        } else {
            Observation::fail(Duration::ZERO, reason)
        };
        observation.at = now;
        let flipped = h.observe(ok).is_some();
        let report = Report {
            id: id.clone(),
            observation,
            verdict: h.verdict(),
            grade: h.grade(),
            flipped,
        };
        if links.tx.send(report).await.is_err() {
            return;
        }
        let wait = due.map(|d| (d - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        tokio::select! {
            changed = beats.changed() => {
                if changed.is_err() {
                    return; // the check is gone from the config
                }
                seen = *beats.borrow_and_update();
            }
            // Slightly after the deadline, so that "now" is past it.
            _ = tokio::time::sleep(wait.unwrap_or_default() + Duration::from_millis(5)), if wait.is_some() => {}
            _ = cancel.cancelled() => return,
        }
    }
}
