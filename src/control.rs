//! Operator control shared by SIGHUP, the admin API and the CLI: reload, overrides,
//! incidents. Every change goes to the states task (the single writer) and is answered once
//! it is saved and live in the Snapshot.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::config::{Config, Diagnostics};
use crate::incidents::Incident;
use crate::overrides::{self, Override};
use crate::snapshot::SnapshotHandle;
use crate::states::{Actor, Command, IncidentOp, OperatorError};

/// The outcome of the last reload.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadStatus {
    /// When it was tried.
    pub at: DateTime<Utc>,
    /// Every error (file:line:col: message), empty when it succeeded.
    pub errors: Vec<String>,
}

/// The daemon's control surface.
#[derive(Debug)]
pub struct Control {
    config_path: PathBuf,
    commands: mpsc::Sender<Command>,
    /// The Snapshot readers use.
    pub snapshots: SnapshotHandle,
    last_reload: Mutex<Option<ReloadStatus>>,
    problems: Mutex<Vec<String>>,
    notifier: OnceLock<crate::notify::Notifier>,
    cluster: OnceLock<crate::cluster::Cluster>,
    heartbeats: OnceLock<crate::checks::heartbeat::Heartbeats>,
    history: OnceLock<crate::history::Recorder>,
}

/// The daemon stopped before answering.
fn gone() -> OperatorError {
    OperatorError::Storage("detour is shutting down".into())
}

impl Control {
    /// Control over the states task behind `commands`.
    pub fn new(
        config_path: PathBuf,
        commands: mpsc::Sender<Command>,
        snapshots: SnapshotHandle,
        problems: Vec<String>,
    ) -> Self {
        Self {
            config_path,
            commands,
            snapshots,
            last_reload: Mutex::new(None),
            problems: Mutex::new(problems),
            notifier: OnceLock::new(),
            cluster: OnceLock::new(),
            heartbeats: OnceLock::new(),
            history: OnceLock::new(),
        }
    }

    /// Hands over the heartbeat registry (once, at start), for the heartbeat endpoints.
    pub fn set_heartbeats(&self, heartbeats: crate::checks::heartbeat::Heartbeats) {
        let _ = self.heartbeats.set(heartbeats);
    }

    /// The heartbeat registry, once started.
    pub fn heartbeats(&self) -> Option<&crate::checks::heartbeat::Heartbeats> {
        self.heartbeats.get()
    }

    /// Hands over the notifier (once, at start), for `detour notify test`.
    pub fn set_notifier(&self, notifier: crate::notify::Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// Hands over the cluster link (once, at start), for status and the audit log.
    pub fn set_cluster(&self, cluster: crate::cluster::Cluster) {
        let _ = self.cluster.set(cluster);
    }

    /// Hands over the history recorder (once, at start), for the admin API.
    pub fn set_history(&self, history: crate::history::Recorder) {
        let _ = self.history.set(history);
    }

    /// The history recorder, unless `[history] enabled = false`.
    pub fn history(&self) -> Option<&crate::history::Recorder> {
        self.history.get()
    }

    /// The cluster link, in a cluster.
    pub fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.cluster.get()
    }

    /// The notifier, once started.
    pub fn notifier(&self) -> Option<&crate::notify::Notifier> {
        self.notifier.get()
    }

    /// Adds a problem found while starting, for status.
    pub fn add_problem(&self, problem: String) {
        if let Ok(mut p) = self.problems.lock() {
            p.push(problem);
        }
    }

    /// Problems found at start (a state file set aside, say), for status.
    pub fn problems(&self) -> Vec<String> {
        let mut all = self.problems.lock().map(|p| p.clone()).unwrap_or_default();
        // The history database set aside or unusable (found by its thread).
        all.extend(self.history.get().and_then(|h| h.problem()));
        all
    }

    /// The last reload's outcome, if any reload happened.
    pub fn last_reload(&self) -> Option<ReloadStatus> {
        self.last_reload.lock().ok().and_then(|r| r.clone())
    }

    /// Re-reads config, zones and overrides.toml; swaps them in when all are valid, else keeps
    /// the old ones serving and returns (and logs, and remembers for status) every error.
    pub async fn reload(&self, actor: Actor) -> Result<(), Diagnostics> {
        let result = self.try_reload(actor).await;
        let errors: Vec<String> = match &result {
            Ok(()) => Vec::new(),
            Err(d) => d.iter().map(|e| e.to_string()).collect(),
        };
        for e in &errors {
            error!("reload failed, still serving the previous config: {e}");
        }
        let ok = if errors.is_empty() { "ok" } else { "error" };
        metrics::counter!("detour_reloads_total", "result" => ok).increment(1);
        if let Ok(mut r) = self.last_reload.lock() {
            *r = Some(ReloadStatus {
                at: Utc::now(),
                errors,
            });
        }
        result
    }

    async fn try_reload(&self, actor: Actor) -> Result<(), Diagnostics> {
        let config = Config::load(&self.config_path)?;
        let overrides = overrides::load_for_reload(&config.server.state_dir)
            .map_err(|d| Diagnostics(vec![d]))?;
        let current = self.snapshots.load_full();
        // The cookie secret is read from the Snapshot by every query: it takes effect now.
        let restart_bound = |s: &crate::config::Server| crate::config::Server {
            cookies: None,
            probe_source: None,
            ..s.clone()
        };
        if restart_bound(&config.server) != restart_bound(&current.config.server) {
            warn!("[server] changed: listeners and limits take effect at the next restart");
        }
        // The Prober is built once, at start.
        let (now, new) = (
            current.config.server.probe_source,
            config.server.probe_source,
        );
        if now != new {
            let shown = |ip: Option<std::net::IpAddr>| {
                ip.map_or("the system's choice".to_string(), |ip| ip.to_string())
            };
            warn!(
                "[server] probe_source changed to {}: takes effect at the next restart; probes still leave from {}",
                shown(new),
                shown(now)
            );
        }
        for w in &config.warnings {
            warn!("{w}");
        }
        let (done, wait) = oneshot::channel();
        let cmd = Command::Reload {
            config: std::sync::Arc::new(config),
            overrides,
            actor,
            done,
        };
        if self.commands.send(cmd).await.is_ok() {
            let _ = wait.await;
        }
        for z in &self.snapshots.load().zones {
            info!(zone = %z.origin, serial = z.serial, "zone loaded");
        }
        Ok(())
    }

    /// Sets (`Some`) or clears (`None`) a service's override.
    pub async fn set_override(
        &self,
        service: &str,
        value: Option<Override>,
        actor: Actor,
    ) -> Result<(), OperatorError> {
        self.change_override(service, value, "", false, actor).await
    }

    /// Clears a service's override, saying why (audit log, notifications).
    pub async fn clear_override(
        &self,
        service: &str,
        reason: &str,
        actor: Actor,
    ) -> Result<(), OperatorError> {
        self.change_override(service, None, reason, false, actor)
            .await
    }

    /// Sets or clears an override; `force` applies it even if it breaks a `[[safety]]`
    /// rule (the reason, the override's own when set, is then required and audited).
    pub async fn change_override(
        &self,
        service: &str,
        value: Option<Override>,
        cleared_because: &str,
        force: bool,
        actor: Actor,
    ) -> Result<(), OperatorError> {
        let (done, wait) = oneshot::channel();
        let cmd = Command::Override {
            service: service.to_string(),
            value,
            reason: cleared_because.to_string(),
            force,
            actor,
            done,
        };
        self.commands.send(cmd).await.map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }

    /// Starts or stops drills; the drills started or stopped.
    pub async fn drill(
        &self,
        op: crate::states::DrillOp,
        actor: Actor,
    ) -> Result<Vec<crate::rehearsal::Drill>, OperatorError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Drill { op, actor, done })
            .await
            .map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }

    /// The Snapshot DNS would answer from if `forced` services were in those states at
    /// `at`; nothing changes.
    pub async fn what_if(
        &self,
        forced: Vec<(String, crate::overrides::Forced)>,
        at: DateTime<Utc>,
    ) -> Result<std::sync::Arc<crate::snapshot::Snapshot>, OperatorError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::WhatIf { forced, at, done })
            .await
            .map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }

    /// Opens, updates or resolves an incident.
    pub async fn incident(&self, op: IncidentOp, actor: Actor) -> Result<Incident, OperatorError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Incident { op, actor, done })
            .await
            .map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }
}
