//! Operator commands (reload, overrides, incidents) as the states task carries them out:
//! checked, saved to `state_dir` before anything is published, audited, and told to
//! notifications. [`crate::control`] is how SIGHUP, the admin API and the CLI send them.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::oneshot;
use tracing::warn;

use super::StatesTask;
use crate::audit;
use crate::config::Config;
use crate::events::Event;
use crate::health::ServiceState;
use crate::incidents::{self, Incident, Incidents, Update};
use crate::overrides::{self, Override, Overrides};

/// Who asked, and when, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The local user of a CLI call, a `--by` name, or "detour".
    pub who: String,
}

/// What an operator does to an incident.
#[derive(Debug, Clone)]
pub enum IncidentOp {
    /// Opens one about `services`.
    Open {
        /// Services concerned.
        services: Vec<String>,
        /// The first message.
        message: String,
    },
    /// Posts an update.
    Update {
        /// Incident id.
        id: String,
        /// The message.
        message: String,
    },
    /// Resolves it, with an optional last word.
    Resolve {
        /// Incident id.
        id: String,
        /// The message (may be empty).
        message: String,
    },
}

/// Requests to the states task. Each answers once the change is saved and live.
#[derive(Debug)]
pub enum Command {
    /// Switch to a new config and overrides (both already validated).
    Reload {
        /// The new config.
        config: Arc<Config>,
        /// overrides.toml as re-read.
        overrides: Overrides,
        /// Who asked.
        actor: Actor,
        /// Done.
        done: oneshot::Sender<()>,
    },
    /// Set (`Some`) or clear (`None`) a service's override.
    Override {
        /// Service id.
        service: String,
        /// The override.
        value: Option<Override>,
        /// Why it is cleared (a set override carries its own reason); may be empty.
        reason: String,
        /// Apply it even if it breaks a `[[safety]]` rule (audited; needs a reason).
        force: bool,
        /// Who asked.
        actor: Actor,
        /// Done, or why not.
        done: oneshot::Sender<Result<(), OperatorError>>,
    },
    /// Start or stop drills.
    Drill {
        /// What to do.
        op: super::DrillOp,
        /// Who asked.
        actor: Actor,
        /// The drills started or stopped, or why not.
        done: oneshot::Sender<Result<Vec<crate::rehearsal::Drill>, OperatorError>>,
    },
    /// What DNS would answer if these services were in these states at `at` (nothing
    /// changes): a Snapshot to compare with the current one.
    WhatIf {
        /// Services and the states to pretend.
        forced: Vec<(String, crate::overrides::Forced)>,
        /// When (maintenance windows are evaluated then).
        at: chrono::DateTime<Utc>,
        /// The Snapshot it would be, or why not.
        done: oneshot::Sender<Result<Arc<crate::snapshot::Snapshot>, OperatorError>>,
    },
    /// Change an incident.
    Incident {
        /// What to do.
        op: IncidentOp,
        /// Who asked.
        actor: Actor,
        /// The incident after the change, or why not.
        done: oneshot::Sender<Result<Incident, OperatorError>>,
    },
}

/// Why an operator request was refused; the message is for the operator as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// Bad input (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// No such thing (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// It could not be saved (HTTP 500); nothing changed.
    #[error("{0}")]
    Storage(String),
    /// The cluster's shared store cannot take changes now (HTTP 503); nothing changed.
    #[error("{0}")]
    Unavailable(String),
    /// A `[[safety]]` rule forbids it (HTTP 409; the CLI exits 2); nothing changed.
    #[error("{0}")]
    Refused(String),
}

impl From<crate::text::TextError> for OperatorError {
    fn from(e: crate::text::TextError) -> Self {
        OperatorError::Invalid(e.to_string())
    }
}

/// Refuses operator text that is too long to keep and publish, and a `by` name that is too
/// long or carries control characters, before anything changes.
fn operator_input(actor: &Actor, text: &str) -> Result<(), OperatorError> {
    crate::text::check_name("by", &actor.who)?;
    crate::text::check_text("the reason or message", text)?;
    Ok(())
}

impl StatesTask {
    pub(super) fn command(&mut self, c: Command) {
        match c {
            Command::Reload {
                config,
                overrides,
                actor,
                done,
            } => {
                self.engine.set_config(config.clone(), Utc::now());
                if let Some(h) = &self.history {
                    h.services(&config);
                }
                if let Some(c) = &mut self.cluster {
                    // overrides.toml is only the cluster's cache here: etcd's overrides
                    // are the ones in force (set them with the CLI or the API).
                    c.local.set_config(config.clone(), Utc::now());
                    let health = c.local.health();
                    self.checks.apply(&config, |id| health.verdict(id));
                    self.audit("reload", None, None, "", &actor);
                    self.follow_view(true);
                    let _ = done.send(());
                    return;
                } else {
                    self.engine.set_overrides(overrides);
                    let health = self.engine.health();
                    self.checks.apply(&config, |id| health.verdict(id));
                }

                self.audit("reload", None, None, "", &actor);
                self.publish(true);
                let _ = done.send(());
            }
            Command::Override {
                service,
                value,
                reason,
                force,
                actor,
                done,
            } => {
                let said = value
                    .as_ref()
                    .map_or(reason.as_str(), |o| o.reason.as_str());
                if let Err(e) = self.safe_override(&service, value.as_ref(), force, said, &actor) {
                    let _ = done.send(Err(e));
                    return;
                }
                if self.cluster.is_some() {
                    let r = operator_input(&actor, said)
                        .and_then(|()| self.override_in_cluster(&service, value, &reason, &actor));
                    match r {
                        Ok(write) => self.finish_in_cluster(write, (), done),
                        Err(e) => {
                            let _ = done.send(Err(e));
                        }
                    }
                    return;
                }
                let r = operator_input(&actor, said)
                    .and_then(|()| self.override_service(&service, value, &reason, &actor));
                if r.is_ok() {
                    self.publish_by(true, true);
                }
                let _ = done.send(r);
            }
            Command::Drill { op, actor, done } => {
                if self.cluster.is_some() {
                    match self.drill_in_cluster(op, &actor) {
                        Ok((write, changed)) => self.finish_in_cluster(write, changed, done),
                        Err(e) => {
                            let _ = done.send(Err(e));
                        }
                    }
                    return;
                }
                let r = self.drill(op, &actor);
                if r.is_ok() {
                    self.publish(true);
                }
                let _ = done.send(r);
            }
            Command::WhatIf { forced, at, done } => {
                let _ = done.send(self.what_if(&forced, at));
            }
            Command::Incident { op, actor, done } => {
                let message = match &op {
                    IncidentOp::Open { message, .. }
                    | IncidentOp::Update { message, .. }
                    | IncidentOp::Resolve { message, .. } => message.as_str(),
                };
                if self.cluster.is_some() {
                    let r = operator_input(&actor, message)
                        .and_then(|()| self.incident_in_cluster(op, &actor));
                    match r {
                        Ok((write, inc)) => self.finish_in_cluster(write, inc, done),
                        Err(e) => {
                            let _ = done.send(Err(e));
                        }
                    }
                    return;
                }
                let r = operator_input(&actor, message).and_then(|()| self.incident(op, &actor));
                if r.is_ok() {
                    self.publish(true);
                }
                let _ = done.send(r);
            }
        }
    }

    pub(super) fn override_service(
        &mut self,
        service: &str,
        value: Option<Override>,
        cleared_because: &str,
        actor: &Actor,
    ) -> Result<(), OperatorError> {
        let before = self.engine.overrides().clone();
        self.engine.set_override(service, value.clone())?;
        let state_dir = self.engine.config().server.state_dir.clone();
        if let Err(e) = overrides::save(&state_dir, self.engine.overrides()) {
            self.engine.set_overrides(before);
            return Err(OperatorError::Storage(format!(
                "cannot save overrides: {e}"
            )));
        }
        let (action, reason) = match &value {
            Some(o) => (
                format!("override.{}", ServiceState::from(o.state)),
                o.reason.clone(),
            ),
            None => ("override.clear".to_string(), cleared_because.to_string()),
        };
        self.audit(&action, Some(service), None, &reason, actor);
        let name = self.service_name(service);
        let e = Event::override_changed(service, name, value, cleared_because, &actor.who);
        self.emit(e);
        Ok(())
    }

    pub(super) fn incident(
        &mut self,
        op: IncidentOp,
        actor: &Actor,
    ) -> Result<Incident, OperatorError> {
        let (next, action, id, message) = self.incident_change(op, actor)?;
        let state_dir = self.engine.config().server.state_dir.clone();
        incidents::save(&state_dir, &next)
            .map_err(|e| OperatorError::Storage(format!("cannot save incidents: {e}")))?;
        self.incidents = next;
        let inc = self
            .incidents
            .list
            .iter()
            .find(|i| i.id == id)
            .cloned()
            .ok_or_else(|| OperatorError::NotFound(id.clone()))?;
        let services = inc.services.join(",");
        self.audit(action, Some(&services), Some(&id), &message, actor);
        self.emit(Event::incident(inc.clone(), action, &message, &actor.who));
        Ok(inc)
    }

    /// What an incident operation makes of the incidents: the new list, the audit action,
    /// the incident's id and the message; or why not.
    fn incident_change(
        &self,
        op: IncidentOp,
        actor: &Actor,
    ) -> Result<(Incidents, &'static str, String, String), OperatorError> {
        let now = Utc::now();
        let mut next = self.incidents.clone();
        let by = Some(actor.who.clone());
        let (action, id, message) = match op {
            IncidentOp::Open {
                mut services,
                message,
            } => {
                let mut seen = std::collections::HashSet::new();
                services.retain(|s| seen.insert(s.clone()));
                for s in &services {
                    if !self.engine.config().services.contains_key(s) {
                        return Err(OperatorError::Invalid(format!("unknown service {s:?}")));
                    }
                }
                if services.is_empty() {
                    return Err(OperatorError::Invalid(
                        "an incident names at least one service".into(),
                    ));
                }
                if message.trim().is_empty() {
                    return Err(OperatorError::Invalid("an incident needs a message".into()));
                }
                let id = next.new_id();
                next.list.push(Incident {
                    id: id.clone(),
                    services,
                    opened_at: now,
                    resolved_at: None,
                    updates: vec![Update {
                        at: now,
                        message: message.clone(),
                        by,
                        status: "investigating".into(),
                    }],
                });
                ("incident.open", id, message)
            }
            IncidentOp::Update { id, message } => {
                let inc = next
                    .get_mut(&id)
                    .ok_or_else(|| OperatorError::NotFound(format!("no incident {id:?}")))?;
                if !inc.is_open() {
                    return Err(OperatorError::Invalid(format!("incident {id} is resolved")));
                }
                if message.trim().is_empty() {
                    return Err(OperatorError::Invalid("an update needs a message".into()));
                }
                inc.updates.push(Update {
                    at: now,
                    message: message.clone(),
                    by,
                    status: "investigating".into(),
                });
                ("incident.update", id, message)
            }
            IncidentOp::Resolve { id, message } => {
                let inc = next
                    .get_mut(&id)
                    .ok_or_else(|| OperatorError::NotFound(format!("no incident {id:?}")))?;
                if !inc.is_open() {
                    return Err(OperatorError::Invalid(format!(
                        "incident {id} is already resolved"
                    )));
                }
                let message = if message.trim().is_empty() {
                    "Resolved.".to_string()
                } else {
                    message
                };
                inc.resolved_at = Some(now);
                inc.updates.push(Update {
                    at: now,
                    message: message.clone(),
                    by,
                    status: "resolved".into(),
                });
                ("incident.resolve", id, message)
            }
        };
        Ok((next, action, id, message))
    }

    /// An override set or cleared in a cluster: checked here, written to etcd with its
    /// audit entry by [`Self::finish_in_cluster`].
    fn override_in_cluster(
        &self,
        service: &str,
        value: Option<Override>,
        cleared_because: &str,
        actor: &Actor,
    ) -> Result<ClusterWrite, OperatorError> {
        let Some(c) = &self.cluster else {
            return Err(OperatorError::Storage("not in a cluster".into()));
        };
        if !self.engine.config().services.contains_key(service) {
            return Err(OperatorError::NotFound(format!(
                "unknown service {service:?}: expected one of {}",
                self.engine
                    .config()
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let rel = format!("{}{service}", crate::cluster::keys::OVERRIDES);
        let (action, reason, op) = match &value {
            Some(o) => (
                format!("override.{}", ServiceState::from(o.state)),
                o.reason.clone(),
                c.link.put_json(&rel, o).map_err(unavailable)?,
            ),
            None => (
                "override.clear".to_string(),
                cleared_because.to_string(),
                c.link.delete(&rel),
            ),
        };
        Ok(ClusterWrite {
            when: Vec::new(),
            ops: vec![op],
            entry: entry(&action, Some(service), None, &reason, actor),
            conflict: String::new(),
        })
    }

    /// An incident change in a cluster: the incident as it will be, and its write.
    fn incident_in_cluster(
        &self,
        op: IncidentOp,
        actor: &Actor,
    ) -> Result<(ClusterWrite, Incident), OperatorError> {
        let Some(c) = &self.cluster else {
            return Err(OperatorError::Storage("not in a cluster".into()));
        };
        let (next, action, id, message) = self.incident_change(op, actor)?;
        let inc = next
            .list
            .iter()
            .find(|i| i.id == id)
            .cloned()
            .ok_or_else(|| OperatorError::NotFound(id.clone()))?;
        let rel = format!("{}{id}", crate::cluster::keys::INCIDENTS);
        // Open: the id must be new; otherwise the incident must be as this instance saw it.
        let when = match self.incidents.list.iter().find(|i| i.id == id) {
            None => c.link.absent(&rel),
            Some(old) => c.link.holds(&rel, old),
        };
        let services = inc.services.join(",");
        Ok((
            ClusterWrite {
                when: vec![when],
                ops: vec![c.link.put_json(&rel, &inc).map_err(unavailable)?],
                entry: entry(action, Some(&services), Some(&id), &message, actor),
                conflict: format!(
                    "incident {id} was changed on another instance at the same moment: nothing was changed, look at it again and retry"
                ),
            },
            inc,
        ))
    }

    /// Writes `w` to etcd in the background and answers `done` once this instance serves
    /// the result (or with why not: etcd unreachable, a conflict).
    pub(super) fn finish_in_cluster<T: Send + 'static>(
        &self,
        w: ClusterWrite,
        ok: T,
        done: oneshot::Sender<Result<T, OperatorError>>,
    ) {
        let Some(c) = &self.cluster else { return };
        let link = c.link.clone();
        let mut applied = c.applied.subscribe();
        tokio::spawn(async move {
            let r = match link.write(w.when, w.ops, &w.entry).await {
                Err(e) => Err(unavailable(e)),
                Ok((_, false)) => Err(OperatorError::Invalid(w.conflict)),
                Ok((rev, true)) => {
                    let live = tokio::time::timeout(
                        crate::cluster::WRITE_TIMEOUT,
                        applied.wait_for(|a| *a >= rev),
                    )
                    .await;
                    if !matches!(live, Ok(Ok(_))) {
                        warn!(
                            revision = rev,
                            "cluster: a change was written but is not served here yet"
                        );
                    }
                    Ok(ok)
                }
            };
            let _ = done.send(r);
        });
    }

    pub(super) fn audit(
        &self,
        action: &str,
        service: Option<&str>,
        incident: Option<&str>,
        reason: &str,
        actor: &Actor,
    ) {
        let entry = entry(action, service, incident, reason, actor);
        if let Some(h) = &self.history {
            h.action(&entry);
        }
        if let Some(c) = &self.cluster {
            let link = c.link.clone();
            tokio::spawn(async move {
                if let Err(e) = link.write(Vec::new(), Vec::new(), &entry).await {
                    warn!("cluster: cannot add to the audit log: {e}");
                }
            });
            return;
        }
        let dir = &self.engine.config().server.state_dir;
        if let Err(e) = audit::append(dir, &entry) {
            warn!(error = %e, "cannot append to the audit log");
        }
    }
}

/// A change for etcd: operations, the condition they need, the audit entry that goes with
/// them, and what to tell the operator when the condition fails.
pub(super) struct ClusterWrite {
    pub(super) when: Vec<crate::cluster::Cond>,
    pub(super) ops: Vec<crate::cluster::Op>,
    pub(super) entry: audit::Entry,
    pub(super) conflict: String,
}

/// An audit entry, now.
pub(super) fn entry(
    action: &str,
    service: Option<&str>,
    incident: Option<&str>,
    reason: &str,
    actor: &Actor,
) -> audit::Entry {
    audit::Entry {
        time: Utc::now(),
        action: action.to_string(),
        service: service.map(str::to_string),
        incident: incident.map(str::to_string),
        reason: reason.to_string(),
        who: actor.who.clone(),
    }
}

/// etcd could not take a change: the operator's command fails (HTTP 503, exit 1).
pub(super) fn unavailable(e: crate::cluster::Unavailable) -> OperatorError {
    OperatorError::Unavailable(e.to_string())
}
