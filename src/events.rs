//! Events: what the states task tells the outside world (notifications) when something a
//! person should hear about happens. One event per real transition, never per probe.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::health::ServiceState;
use crate::incidents::Incident;
use crate::overrides::Override;

/// The kinds `[[notify]] events` filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A service went down.
    Down,
    /// A service came (back) up.
    Up,
    /// A service works but something it depends on does not.
    Impacted,
    /// A service entered maintenance.
    Maintenance,
    /// An operator set or cleared an override (or one expired).
    Override,
    /// An incident was opened, updated or resolved.
    Incident,
    /// The guard froze or released states.
    Guard,
    /// A service works, but slowly (or its vendor says "degraded performance").
    Degraded,
    /// A test event from `detour notify test`.
    Test,
    /// A drill started or ended: only a view's sources see it.
    Drill,
    /// A `[[safety]]` rule stopped holding, or holds again.
    Safety,
}

impl Kind {
    /// The name used in config and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Down => "down",
            Kind::Up => "up",
            Kind::Impacted => "impacted",
            Kind::Maintenance => "maintenance",
            Kind::Override => "override",
            Kind::Incident => "incident",
            Kind::Guard => "guard",
            Kind::Degraded => "degraded",
            Kind::Test => "test",
            Kind::Drill => "drill",
            Kind::Safety => "safety",
        }
    }

    /// The event kind of a transition to `state`.
    pub fn of_state(state: ServiceState) -> Kind {
        match state {
            ServiceState::Up => Kind::Up,
            ServiceState::Down => Kind::Down,
            ServiceState::Impacted => Kind::Impacted,
            ServiceState::Maintenance => Kind::Maintenance,
            ServiceState::Degraded => Kind::Degraded,
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: Kind,
    /// When.
    pub at: DateTime<Utc>,
    /// The service concerned (state changes, overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Its display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Previous state (state changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_state: Option<ServiceState>,
    /// New state (state changes, overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_state: Option<ServiceState>,
    /// Why, in one line.
    #[serde(default)]
    pub reason: String,
    /// Since when the previous state held (state changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The override set (None when cleared).
    #[serde(rename = "override", default, skip_serializing_if = "Option::is_none")]
    pub override_: Option<Override>,
    /// The incident, as it stands after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Incident>,
    /// Who caused it ("detour" for its own findings).
    pub who: String,
}

impl Event {
    /// An event of `kind` at now, by detour itself, with nothing else filled in.
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            at: Utc::now(),
            service: None,
            service_name: None,
            old_state: None,
            new_state: None,
            reason: String::new(),
            since: None,
            override_: None,
            incident: None,
            who: "detour".into(),
        }
    }
}

impl Event {
    /// A drill of `service` in `view` started (`state` is what the view sees) or ended
    /// (`None`); `reason` says why, or why it ended.
    pub fn drill(
        service: &str,
        name: Option<String>,
        view: &str,
        state: Option<ServiceState>,
        until: Option<DateTime<Utc>>,
        reason: &str,
        who: &str,
    ) -> Self {
        let reason = match (state, until) {
            (Some(_), Some(u)) => format!(
                "only view {view} sees it, until {}{}",
                u.format("%Y-%m-%d %H:%M UTC"),
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                }
            ),
            _ => format!("drill in view {view} ended ({reason})"),
        };
        Self {
            service: Some(service.to_string()),
            service_name: name,
            new_state: state,
            reason,
            who: who.to_string(),
            ..Self::new(Kind::Drill)
        }
    }

    /// A `[[safety]]` rule named `rule` stopped holding (`broken`), or holds again.
    pub fn safety(rule: &str, broken: bool, detail: &str) -> Self {
        Self {
            reason: if broken {
                format!("safety rule \"{rule}\" is broken: {detail}")
            } else {
                format!("safety rule \"{rule}\" holds again: {detail}")
            },
            ..Self::new(Kind::Safety)
        }
    }

    /// A service went from `from` to `to` at `at` (`since`: when `from` began); `name` is its
    /// display name.
    pub fn state_change(
        service: &str,
        name: Option<String>,
        from: ServiceState,
        to: ServiceState,
        reason: &str,
        at: DateTime<Utc>,
        since: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            at,
            service: Some(service.to_string()),
            service_name: name,
            old_state: Some(from),
            new_state: Some(to),
            reason: reason.to_string(),
            since,
            ..Self::new(Kind::of_state(to))
        }
    }

    /// An operator set an override (`Some`) or cleared one (`None`, saying why if they did).
    pub fn override_changed(
        service: &str,
        name: Option<String>,
        value: Option<Override>,
        cleared_because: &str,
        who: &str,
    ) -> Self {
        let reason = match &value {
            Some(o) if o.reason.is_empty() => {
                format!("operator set {}", ServiceState::from(o.state))
            }
            Some(o) => o.reason.clone(),
            None if cleared_because.is_empty() => "override cleared; checks decide again".into(),
            None => format!("override cleared ({cleared_because}); checks decide again"),
        };
        Self {
            service: Some(service.to_string()),
            service_name: name,
            new_state: value.as_ref().map(|o| ServiceState::from(o.state)),
            reason,
            override_: value,
            who: who.to_string(),
            ..Self::new(Kind::Override)
        }
    }

    /// An override with `until` ended by itself.
    pub fn override_expired(service: &str, state: ServiceState) -> Self {
        Self {
            service: Some(service.to_string()),
            reason: format!("override ({state}) expired"),
            ..Self::new(Kind::Override)
        }
    }

    /// An incident was opened, updated or resolved (`action`, e.g. "incident.open").
    pub fn incident(incident: Incident, action: &str, message: &str, who: &str) -> Self {
        Self {
            reason: format!("{action}: {message}"),
            incident: Some(incident),
            who: who.to_string(),
            ..Self::new(Kind::Incident)
        }
    }

    /// The guard froze (every canary down) or thawed.
    pub fn guard(frozen: bool) -> Self {
        Self {
            reason: if frozen {
                "every canary is down: states frozen, no new redirects".into()
            } else {
                "a canary is back: states follow the checks again".into()
            },
            ..Self::new(Kind::Guard)
        }
    }

    /// `detour notify test`, asked by `who`.
    pub fn test(who: &str) -> Self {
        Self {
            reason: "detour notify test".into(),
            who: who.to_string(),
            ..Self::new(Kind::Test)
        }
    }
}

/// Where the states task sends events; never blocks it.
pub type Sender = tokio::sync::mpsc::UnboundedSender<Event>;
