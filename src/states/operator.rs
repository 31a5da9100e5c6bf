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
use crate::incidents::{self, Incident, Update};
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
        /// Who asked.
        actor: Actor,
        /// Done, or why not.
        done: oneshot::Sender<Result<(), OperatorError>>,
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
                self.engine.set_overrides(overrides);
                let health = self.engine.health();
                self.checks.apply(&config, |id| health.verdict(id));
                self.audit("reload", None, None, "", &actor);
                self.publish(true);
                let _ = done.send(());
            }
            Command::Override {
                service,
                value,
                reason,
                actor,
                done,
            } => {
                let said = value
                    .as_ref()
                    .map_or(reason.as_str(), |o| o.reason.as_str());
                let r = operator_input(&actor, said)
                    .and_then(|()| self.override_service(&service, value, &reason, &actor));
                if r.is_ok() {
                    self.publish(true);
                }
                let _ = done.send(r);
            }
            Command::Incident { op, actor, done } => {
                let message = match &op {
                    IncidentOp::Open { message, .. }
                    | IncidentOp::Update { message, .. }
                    | IncidentOp::Resolve { message, .. } => message.as_str(),
                };
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

    pub(super) fn audit(
        &self,
        action: &str,
        service: Option<&str>,
        incident: Option<&str>,
        reason: &str,
        actor: &Actor,
    ) {
        let entry = audit::Entry {
            time: Utc::now(),
            action: action.to_string(),
            service: service.map(str::to_string),
            incident: incident.map(str::to_string),
            reason: reason.to_string(),
            who: actor.who.clone(),
        };
        let dir = &self.engine.config().server.state_dir;
        if let Err(e) = audit::append(dir, &entry) {
            warn!(error = %e, "cannot append to the audit log");
        }
    }
}
