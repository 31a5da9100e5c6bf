//! Rehearsal in the states task: drills (views' own Snapshots), what-if Snapshots for
//! `detour simulate`, and the `[[safety]]` rules checked before an operator change.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::StatesTask;
use super::operator::{Actor, ClusterWrite, OperatorError, entry, unavailable};
use crate::cluster::keys;
use crate::events::Event;
use crate::health::{Health, ServiceState};
use crate::overrides::{Forced, Override};
use crate::rehearsal::{self, Drill};
use crate::selection;
use crate::snapshot::{DrillView, Snapshot};

/// What an operator does to drills.
#[derive(Debug, Clone)]
pub enum DrillOp {
    /// Starts one: `service` is `state` for the sources of `view` until `until`.
    Start {
        /// The service drilled.
        service: String,
        /// What the view sees.
        state: Forced,
        /// The view.
        view: String,
        /// When it ends by itself.
        until: DateTime<Utc>,
        /// Why.
        reason: String,
    },
    /// Ends the drills of a service (every drill when `None`).
    Stop {
        /// The service, or every drill.
        service: Option<String>,
    },
}

impl StatesTask {
    /// Starts or stops drills: saved, audited, told (tagged "drill"), then live. Returns the
    /// drills started or stopped.
    pub(super) fn drill(
        &mut self,
        op: DrillOp,
        actor: &Actor,
    ) -> Result<Vec<Drill>, OperatorError> {
        let config = self.engine.config().clone();
        let (next, changed, started) = self.drill_change(op, actor)?;
        if let Err(e) = next.save(&config.server.state_dir) {
            return Err(OperatorError::Storage(format!("cannot save drills: {e}")));
        }
        self.drills = next;
        for d in &changed {
            if started {
                self.announce_drill_start(d, actor);
            } else {
                self.announce_drill_end(d, "stopped by an operator", actor);
            }
        }
        Ok(changed)
    }

    /// A drill change in a cluster: `drills/<view>/<service>` keys written with one audit
    /// entry; every instance applies it from its view, and the leader tells it.
    pub(super) fn drill_in_cluster(
        &self,
        op: DrillOp,
        actor: &Actor,
    ) -> Result<(ClusterWrite, Vec<Drill>), OperatorError> {
        let Some(c) = &self.cluster else {
            return Err(OperatorError::Storage("not in a cluster".into()));
        };
        let (_, changed, started) = self.drill_change(op, actor)?;
        let mut ops = Vec::new();
        for d in &changed {
            let rel = format!("{}{}/{}", keys::DRILLS, d.view, d.service);
            ops.push(if started {
                c.link.put_json(&rel, d).map_err(unavailable)?
            } else {
                c.link.delete(&rel)
            });
        }
        let services: Vec<&str> = changed.iter().map(|d| d.service.as_str()).collect();
        let entry = match (started, changed.first()) {
            (true, Some(d)) => entry(
                &format!("drill.{}", ServiceState::from(d.state)),
                Some(&d.service),
                None,
                &drill_reason(d),
                actor,
            ),
            (_, first) => entry(
                "drill.end",
                Some(&services.join(",")),
                None,
                &format!(
                    "view {}: stopped by an operator",
                    first.map_or("-", |d| d.view.as_str())
                ),
                actor,
            ),
        };
        Ok((
            ClusterWrite {
                when: Vec::new(),
                ops,
                entry,
                conflict: String::new(),
            },
            changed,
        ))
    }

    /// The drills after `op`, the drills it starts or stops, and whether it starts them;
    /// or why not. Nothing changes here.
    fn drill_change(
        &self,
        op: DrillOp,
        actor: &Actor,
    ) -> Result<(crate::rehearsal::Drills, Vec<Drill>, bool), OperatorError> {
        let config = self.engine.config().clone();
        let mut next = self.drills.clone();
        let now = Utc::now();
        let (changed, started) = match op {
            DrillOp::Start {
                service,
                state,
                view,
                until,
                reason,
            } => {
                crate::text::check_text("the reason", &reason)?;
                if !config.services.contains_key(&service) {
                    return Err(OperatorError::NotFound(format!(
                        "unknown service {service:?}: expected one of {}",
                        config
                            .services
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                if !config.views.iter().any(|v| v.name == view) {
                    let known: Vec<&str> = config.views.iter().map(|v| v.name.as_str()).collect();
                    return Err(OperatorError::Invalid(if known.is_empty() {
                        format!(
                            "no view {view:?}: the config has no [views.*]; add one with the staff resolvers' addresses, e.g. [views.staff] sources = [\"10.0.0.0/8\"]"
                        )
                    } else {
                        format!("no view {view:?}: expected one of {}", known.join(", "))
                    }));
                }
                if until <= now {
                    return Err(OperatorError::Invalid(
                        "a drill must end in the future".into(),
                    ));
                }
                let d = Drill {
                    view,
                    service,
                    state,
                    reason,
                    by: actor.who.clone(),
                    started: now,
                    until,
                };
                next.start(d.clone());
                (vec![d], true)
            }
            DrillOp::Stop { service } => {
                if let Some(s) = &service
                    && !config.services.contains_key(s)
                {
                    return Err(OperatorError::NotFound(format!("unknown service {s:?}")));
                }
                (next.stop(service.as_deref()), false)
            }
        };
        Ok((next, changed, started))
    }

    fn announce_drill_start(&self, d: &Drill, actor: &Actor) {
        let state = ServiceState::from(d.state);
        info!(service = %d.service, view = %d.view, state = %state, until = %d.until, "drill started");
        self.audit(
            &format!("drill.{state}"),
            Some(&d.service),
            None,
            &drill_reason(d),
            actor,
        );
        self.emit(Event::drill(
            &d.service,
            self.service_name(&d.service),
            &d.view,
            Some(state),
            Some(d.until),
            &d.reason,
            &actor.who,
        ));
    }

    fn announce_drill_end(&self, d: &Drill, why: &str, actor: &Actor) {
        info!(service = %d.service, view = %d.view, "drill ended ({why})");
        self.audit(
            "drill.end",
            Some(&d.service),
            None,
            &format!("view {}: {why}", d.view),
            actor,
        );
        self.emit(Event::drill(
            &d.service,
            self.service_name(&d.service),
            &d.view,
            None,
            None,
            why,
            &actor.who,
        ));
    }

    /// Ends drills whose time is up, or whose view or service the config dropped.
    pub(super) fn expire_drills(&mut self, now: DateTime<Utc>) {
        let config = self.engine.config().clone();
        let mut next = self.drills.clone();
        let mut ended: Vec<(Drill, &str)> = next
            .expire(now)
            .into_iter()
            .map(|d| (d, "its time is up"))
            .collect();
        ended.extend(
            next.retain_known(&config)
                .into_iter()
                .map(|d| (d, "its view or service left the config")),
        );
        if ended.is_empty() {
            return;
        }
        if let Err(e) = next.save(&config.server.state_dir) {
            warn!(error = %e, "cannot save drills after some ended");
        }
        self.drills = next;
        let detour = Actor {
            who: "detour".into(),
        };
        for (d, why) in &ended {
            self.announce_drill_end(d, why, &detour);
        }
    }

    /// The Snapshots of views with drills, built beside `main` (same config, incidents and
    /// serial floor): each differs only by its view's drills, which act as overrides there.
    pub(super) fn view_snapshots(
        &self,
        main: &Snapshot,
        now: DateTime<Utc>,
        serial_floor: u32,
    ) -> Vec<Option<Arc<Snapshot>>> {
        let config = &main.config;
        config
            .views
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let drills: Vec<Drill> = self.drills.of_view(&v.name).cloned().collect();
                if drills.is_empty() {
                    return None;
                }
                let forced: Vec<(String, Option<Override>)> = drills
                    .iter()
                    .map(|d| {
                        let why = format!(
                            "DRILL{}",
                            if d.reason.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", d.reason)
                            }
                        );
                        (d.service.clone(), Some(Override::new(d.state, why)))
                    })
                    .collect();
                let health = match self.engine.what_if(&forced, now) {
                    Ok(h) => h,
                    Err(e) => {
                        warn!(view = %v.name, "cannot apply the view's drills: {e}");
                        return None;
                    }
                };
                let selection = selection::select(config, &health, now);
                let snap = Snapshot::build(
                    config.clone(),
                    selection,
                    Arc::new(health),
                    main.incidents.clone(),
                    Some(main),
                    serial_floor,
                )
                .as_view(
                    main,
                    i,
                    DrillView {
                        view: v.name.clone(),
                        drills,
                    },
                );
                Some(Arc::new(snap))
            })
            .collect()
    }

    /// What DNS and the page would give if `forced` services were in those states at `at`:
    /// a Snapshot built from the engine as it is, for `detour simulate`. Nothing changes.
    pub(super) fn what_if(
        &self,
        forced: &[(String, Forced)],
        at: DateTime<Utc>,
    ) -> Result<Arc<Snapshot>, OperatorError> {
        let forced: Vec<(String, Option<Override>)> = forced
            .iter()
            .map(|(s, f)| (s.clone(), Some(Override::new(*f, "simulated"))))
            .collect();
        let health = self.engine.what_if(&forced, at)?;
        let config = self.engine.config().clone();
        let selection = selection::select(&config, &health, at);
        let current = self.snapshots.load_full();
        Ok(Arc::new(Snapshot::build(
            config,
            selection,
            Arc::new(health),
            current.incidents.clone(),
            Some(&current),
            crate::snapshot::unix_now(),
        )))
    }

    /// Checks an override change against `[[safety]]`: refused (naming each rule) when it
    /// would break one, unless `force`d with a reason, which is audited.
    pub(super) fn safe_override(
        &self,
        service: &str,
        value: Option<&Override>,
        force: bool,
        reason: &str,
        actor: &Actor,
    ) -> Result<(), OperatorError> {
        let rules = &self.engine.config().safety;
        if rules.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let before = self.engine.health();
        let after = self
            .engine
            .what_if(&[(service.to_string(), value.cloned())], now)?;
        let broken = rehearsal::refusals(rules, &before, &after);
        if broken.is_empty() {
            return Ok(());
        }
        let said: Vec<String> = broken
            .iter()
            .map(|b| format!("safety rule \"{}\" ({})", b.rule, b.detail))
            .collect();
        if !force {
            return Err(OperatorError::Refused(format!(
                "refused: this change would break {}; nothing was changed (pass --force --reason TEXT to do it anyway)",
                said.join(" and ")
            )));
        }
        if reason.trim().is_empty() {
            return Err(OperatorError::Invalid(
                "--force needs --reason: say why the safety rule may be broken".into(),
            ));
        }
        warn!(service, by = %actor.who, "safety rule overridden: {}", said.join("; "));
        for b in &broken {
            self.audit(
                "safety.forced",
                Some(service),
                None,
                &format!("rule \"{}\" ({}): {reason}", b.rule, b.detail),
                actor,
            );
        }
        Ok(())
    }

    /// Tells (log, notifications) when the set of broken safety rules changes.
    pub(super) fn note_breaches(&mut self, health: &Health) {
        let now = rehearsal::breaches(&self.engine.config().safety, health);
        if now == self.breaches {
            return;
        }
        for b in now
            .iter()
            .filter(|b| !self.breaches.iter().any(|o| o.rule == b.rule))
        {
            warn!(rule = %b.rule, "safety rule broken: {}", b.detail);
            self.emit(Event::safety(&b.rule, true, &b.detail));
        }
        let mut mended = Vec::new();
        for b in self
            .breaches
            .iter()
            .filter(|o| !now.iter().any(|b| b.rule == o.rule))
        {
            info!(rule = %b.rule, "safety rule holds again");
            mended.push(b.rule.clone());
        }
        for rule in mended {
            let detail =
                rehearsal::safety::describe_now(&self.engine.config().safety, &rule, health);
            self.emit(Event::safety(&rule, false, &detail));
        }
        self.breaches = now;
    }
}

/// A drill's start in the audit log: "view staff until 2026-12-24T02:30:00+00:00: why".
fn drill_reason(d: &Drill) -> String {
    format!(
        "view {} until {}: {}",
        d.view,
        d.until.to_rfc3339(),
        d.reason
    )
}
