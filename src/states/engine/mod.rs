//! The pure part of the states engine (no I/O; time is an argument): probe reports become
//! check verdicts (and grades), verdicts become service states (`healthy_when`; a passing
//! check graded degraded makes its service degraded, a vendor's maintenance makes it
//! maintenance), maintenance windows and overrides apply, `depends_on` makes services impacted (transitively), and the guard
//! freezes every verdict when every canary is down and holds a new down verdict until a
//! canary corroborates it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::operator::OperatorError;
use super::persist::Persisted;
use crate::checks::runner::{CheckId, Report};
use crate::checks::{Grade, plan};
use crate::config::{Config, HealthyWhen};
use crate::health::{
    CheckStatus, GuardStatus, HISTORY, Health, ServiceState, ServiceStatus, Transition,
};
use crate::overrides::{Override, Overrides};
use crate::selection;

/// A service's state change, as logged and notified.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Service id.
    pub service: String,
    /// The transition.
    pub transition: Transition,
    /// How long the previous state lasted.
    pub lasted: Option<Duration>,
}

/// Folds reports into service states. Pure: time is an argument.
#[derive(Debug, Clone)]
pub struct Engine {
    config: Arc<Config>,
    plan: BTreeMap<CheckId, (crate::checks::runner::Target, crate::config::Timing)>,
    checks: BTreeMap<CheckId, CheckStatus>,
    services: BTreeMap<String, ServiceStatus>,
    /// Verdicts (and grades) held while the guard is frozen.
    frozen: Option<BTreeMap<CheckId, (Option<bool>, Grade)>>,
    guard_since: DateTime<Utc>,
    /// Failing checks whose down verdict no canary has corroborated yet (only with canaries).
    holds: BTreeMap<CheckId, Hold>,
    /// When the latest passing canary probe started (monotonic).
    canary_pass: Option<Instant>,
    overrides: Overrides,
}

/// A check that has started failing, while `[guard]` canaries are configured.
///
/// When detour's own network breaks, every check fails at once, and whether a service's
/// checks or the canaries reach their `fall` first is a matter of their phases: the guard
/// would freeze only after some services had already been sent away. So a down verdict takes
/// effect only once it is corroborated: a canary probe that started during the check's
/// current run of failures (after its first failure, no later than its latest) has passed,
/// which shows detour could reach the outside world while the check failed. Until then the
/// check keeps the verdict it had before the run. Check tasks ask the canaries to probe at
/// once when a run of failures starts, so with `fall` ≥ 2 this costs no time.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Hold {
    /// The verdict before this run of failures.
    before: Option<bool>,
    /// The grade before it.
    before_grade: Grade,
    /// First and latest failure of the current run (monotonic finish times); none after a
    /// pass.
    run: Option<(Instant, Instant)>,
    /// A canary passed during a run: the down verdict stands until the check is up again.
    corroborated: bool,
}

impl Hold {
    /// Marks the hold corroborated if a canary probe that started at `pass` fell in the run.
    fn corroborate(&mut self, pass: Option<Instant>) {
        if let (Some(p), Some((first, last))) = (pass, self.run)
            && first <= p
            && p <= last
        {
            self.corroborated = true;
        }
    }
}

impl Engine {
    /// Starts with every check of `config` unknown, or restored from `saved`.
    pub fn new(config: Arc<Config>, saved: Option<&Persisted>, now: DateTime<Utc>) -> Self {
        let mut e = Self {
            config: config.clone(),
            plan: BTreeMap::new(),
            checks: BTreeMap::new(),
            services: BTreeMap::new(),
            frozen: None,
            guard_since: now,
            holds: BTreeMap::new(),
            canary_pass: None,
            overrides: Overrides::new(),
        };
        e.set_config(config, now);
        if let Some(p) = saved {
            for (id, c) in e.checks.iter_mut() {
                if let Some(v) = p.checks.get(&id.to_string()) {
                    c.verdict = Some(*v);
                }
            }
            e.evaluate(now);
            // Keep the saved "since" where the state is the same, so "down for 12 minutes"
            // survives a restart.
            for (id, s) in e.services.iter_mut() {
                if let Some((state, since)) = p.services.get(id)
                    && *state == s.state
                {
                    s.since = *since;
                    if let Some(t) = s.history.back_mut() {
                        t.at = *since;
                    }
                }
            }
        }
        e
    }

    /// Switches to a new config: checks that still exist keep their verdicts.
    pub fn set_config(&mut self, config: Arc<Config>, now: DateTime<Utc>) {
        let ids = plan(&config);
        let mut checks = BTreeMap::new();
        for (id, def) in &ids {
            // A check whose definition changed starts over: its old verdict says nothing.
            let same = self.plan.get(id) == Some(def);
            let kept = self
                .checks
                .remove(id)
                .filter(|_| same)
                .unwrap_or(CheckStatus {
                    verdict: None,
                    since: now,
                    grade: Grade::Normal,
                    last: None,
                    awaiting_canary: false,
                });
            checks.insert(id.clone(), kept);
        }
        self.checks = checks;
        // Without canaries nothing can corroborate: every verdict acts as it is.
        let guarded = !config.guard.canaries.is_empty();
        self.holds
            .retain(|id, _| guarded && self.checks.get(id).is_some_and(|c| c.verdict.is_some()));
        self.plan = ids;
        self.services
            .retain(|id, _| config.services.contains_key(id));
        self.config = config;
    }

    /// The config in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// True when every check has a verdict.
    pub fn all_known(&self) -> bool {
        self.checks.values().all(|c| c.verdict.is_some())
    }

    /// Records one probe report (ignored if the check no longer exists). True when a verdict
    /// in force may have changed: the check's own flipped, or a canary corroborated one.
    pub fn report(&mut self, r: Report) -> bool {
        let o = &r.observation;
        metrics::histogram!("detour_check_duration_seconds").record(o.latency.as_secs_f64());
        if !o.ok {
            metrics::counter!(
                "detour_check_failures_total",
                "check" => r.id.to_string(),
                "reason" => crate::telemetry::reason_class(&o.reason)
            )
            .increment(1);
        }
        let Some(c) = self.checks.get_mut(&r.id) else {
            return false;
        };
        let flipped = r.flipped;
        let before = c.verdict;
        let before_grade = c.grade;
        if c.verdict != r.verdict {
            c.since = r.observation.at;
        }
        c.verdict = r.verdict;
        c.grade = r.grade;
        let (ok, at) = (o.ok, o.finished);
        let started = at.checked_sub(o.latency).unwrap_or(at);
        c.last = Some(r.observation);
        if matches!(r.id, CheckId::Canary(_)) {
            let mut changed = flipped;
            if ok {
                self.canary_pass = self.canary_pass.max(Some(started));
                for h in self.holds.values_mut() {
                    let was = h.corroborated;
                    h.corroborate(self.canary_pass);
                    changed |= h.corroborated != was;
                }
            }
            return changed;
        }
        if self.config.guard.canaries.is_empty() || (ok && r.verdict == Some(true)) {
            self.holds.remove(&r.id);
            return flipped;
        }
        let pass = self.canary_pass;
        if ok {
            // Still down (rise not reached): the run of failures is over.
            if let Some(h) = self.holds.get_mut(&r.id) {
                h.run = None;
            }
            return flipped;
        }
        let h = self.holds.entry(r.id.clone()).or_insert(Hold {
            before,
            before_grade,
            run: None,
            corroborated: false,
        });
        h.run = Some(h.run.map_or((at, at), |(first, _)| (first, at)));
        let was = h.corroborated;
        h.corroborate(pass);
        let changed = flipped || h.corroborated != was;
        if flipped && h.before != Some(false) && !h.corroborated {
            info!(
                check = %r.id,
                "check is down, but no canary has passed since it began failing: its verdict \
                 waits for one, in case the fault is detour's own network"
            );
        }
        changed
    }

    /// Sets a check's verdict and grade from outside: in a cluster, the quorum of the
    /// instances' votes, with why it fails (or why it is not normal). Returns true when
    /// either changed.
    pub fn set_agreed(
        &mut self,
        id: &CheckId,
        verdict: Option<bool>,
        grade: Grade,
        why: &str,
        at: DateTime<Utc>,
    ) -> bool {
        let Some(c) = self.checks.get_mut(id) else {
            return false;
        };
        let grade = if verdict == Some(true) {
            grade
        } else {
            Grade::Normal
        };
        let changed = c.verdict != verdict || c.grade != grade;
        if c.verdict != verdict {
            c.since = at;
        }
        c.verdict = verdict;
        c.grade = grade;
        let reason = if verdict == Some(false) || grade != Grade::Normal {
            why.to_string()
        } else {
            "agreed: passing".to_string()
        };
        if c.last.as_ref().is_none_or(|o| o.reason != reason) {
            let mut o = if verdict == Some(false) {
                crate::checks::Observation::fail(Duration::ZERO, reason)
            } else {
                crate::checks::Observation::graded(Duration::ZERO, grade, reason)
            };
            o.at = at;
            c.last = Some(o);
        }
        changed
    }

    /// The ids of every check (canaries included).
    pub fn check_ids(&self) -> impl Iterator<Item = &CheckId> {
        self.checks.keys()
    }

    /// The verdict services and selection use: the frozen one while the guard is frozen, the
    /// one before the failures while a down verdict awaits a canary, else the check's own.
    fn verdict(&self, id: &CheckId) -> Option<bool> {
        self.in_force(id).0
    }

    /// The verdict and grade in force (see [`Engine::verdict`]); a check not up is of
    /// normal grade.
    fn in_force(&self, id: &CheckId) -> (Option<bool>, Grade) {
        match &self.frozen {
            Some(held) if !matches!(id, CheckId::Canary(_)) => {
                held.get(id).copied().unwrap_or((None, Grade::Normal))
            }
            _ => self.corroborated(id),
        }
    }

    /// The check's verdict and grade, unless it is down and no canary has corroborated it
    /// yet (then the ones before its failures).
    fn corroborated(&self, id: &CheckId) -> (Option<bool>, Grade) {
        let Some(c) = self.checks.get(id) else {
            return (None, Grade::Normal);
        };
        match self.holds.get(id) {
            Some(h) if c.verdict == Some(false) && !h.corroborated => (h.before, h.before_grade),
            _ => (c.verdict, c.grade),
        }
    }

    /// True while some check's down verdict waits for a canary.
    pub fn awaiting_any(&self) -> bool {
        self.holds.keys().any(|id| self.awaiting_canary(id))
    }

    /// True once a canary has passed a probe.
    pub fn canary_passed(&self) -> bool {
        self.canary_pass.is_some()
    }

    /// True while a check's down verdict waits for a canary to corroborate it.
    pub fn awaiting_canary(&self, id: &CheckId) -> bool {
        self.frozen.is_none()
            && self.checks.get(id).and_then(|c| c.verdict) == Some(false)
            && self
                .holds
                .get(id)
                .is_some_and(|h| !h.corroborated && h.before != Some(false))
    }

    /// The overrides in force.
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// Replaces every override (start, reload of overrides.toml).
    pub fn set_overrides(&mut self, o: Overrides) {
        self.overrides = o;
    }

    /// Sets or clears one override; `Err` for an unknown service.
    pub fn set_override(
        &mut self,
        service: &str,
        o: Option<Override>,
    ) -> Result<(), OperatorError> {
        if !self.config.services.contains_key(service) {
            return Err(OperatorError::NotFound(format!(
                "unknown service {service:?}: expected one of {}",
                self.config
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        match o {
            Some(o) => self.overrides.insert(service.to_string(), o),
            None => self.overrides.remove(service),
        };
        Ok(())
    }

    /// The health that would follow if `forced` services were in the given states (on top
    /// of, and before, the overrides in force), evaluated at `at`: simulations, drills'
    /// views and safety checks. Nothing here changes.
    pub fn what_if(
        &self,
        forced: &[(String, Option<Override>)],
        at: DateTime<Utc>,
    ) -> Result<Health, OperatorError> {
        let mut e = self.clone();
        for (service, o) in forced {
            e.set_override(service, o.clone())?;
        }
        e.evaluate(at);
        Ok(e.health())
    }

    /// Removes overrides whose `until` has passed; returns them.
    pub fn expire_overrides(&mut self, now: DateTime<Utc>) -> Vec<(String, Override)> {
        let expired: Vec<String> = self
            .overrides
            .iter()
            .filter(|(_, o)| o.until.is_some_and(|u| u <= now))
            .map(|(id, _)| id.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|id| self.overrides.remove(&id).map(|o| (id, o)))
            .collect()
    }

    /// Recomputes the guard and every service at `now`; returns the transitions.
    /// Precedence: an operator override, then a maintenance window, then the checks.
    pub fn evaluate(&mut self, now: DateTime<Utc>) -> Vec<Change> {
        self.update_guard(now);
        let cfg = self.config.clone();
        // What checks and windows say, and what is in force (override first).
        let mut observed: BTreeMap<&str, (ServiceState, String)> = BTreeMap::new();
        let mut base: BTreeMap<&str, (ServiceState, String)> = BTreeMap::new();
        for (id, svc) in &cfg.services {
            let window = cfg
                .maintenance
                .iter()
                .find(|m| m.services.iter().any(|s| s == id) && m.start <= now && now < m.end);
            let own = if let Some(m) = window {
                let msg = if m.message.is_empty() {
                    "planned maintenance".to_string()
                } else {
                    m.message.clone()
                };
                (ServiceState::Maintenance, msg)
            } else {
                self.own_health(id, svc.healthy_when, svc.checks.len())
            };
            let forced = match self.overrides.get(id) {
                Some(o) => {
                    let why = if o.reason.is_empty() {
                        format!("operator set {}", ServiceState::from(o.state))
                    } else {
                        o.reason.clone()
                    };
                    (ServiceState::from(o.state), why)
                }
                None => own.clone(),
            };
            observed.insert(id.as_str(), own);
            base.insert(id.as_str(), forced);
        }
        // Dependencies: up but reached through something unusable is impacted.
        let mut out = Vec::new();
        for (id, svc) in &cfg.services {
            let (mut state, mut reason) = base[id.as_str()].clone();
            if matches!(state, ServiceState::Up | ServiceState::Degraded)
                && let Some((dep, dep_state)) = self.broken_dependency(&cfg, &svc.depends_on, &base)
            {
                state = ServiceState::Impacted;
                reason = format!("depends on {dep}, which is {dep_state}");
            }
            let (seen, seen_why) = observed[id.as_str()].clone();
            let entry = self.services.get_mut(id);
            match entry {
                Some(s) if s.state == state => {
                    s.reason = reason;
                    s.observed = seen;
                    s.observed_reason = seen_why;
                }
                Some(s) => {
                    let lasted = (now - s.since).to_std().ok();
                    let t = Transition {
                        at: now,
                        from: Some(s.state),
                        to: state,
                        reason: reason.clone(),
                    };
                    s.state = state;
                    s.since = now;
                    s.reason = reason;
                    s.observed = seen;
                    s.observed_reason = seen_why;
                    s.history.push_back(t.clone());
                    while s.history.len() > HISTORY {
                        s.history.pop_front();
                    }
                    out.push(Change {
                        service: id.clone(),
                        transition: t,
                        lasted,
                    });
                }
                None => {
                    let t = Transition {
                        at: now,
                        from: None,
                        to: state,
                        reason: reason.clone(),
                    };
                    self.services.insert(
                        id.clone(),
                        ServiceStatus {
                            state,
                            since: now,
                            reason,
                            history: VecDeque::from([t.clone()]),
                            observed: seen,
                            observed_reason: seen_why,
                        },
                    );
                    out.push(Change {
                        service: id.clone(),
                        transition: t,
                        lasted: None,
                    });
                }
            }
        }
        out
    }

    /// The first unusable service found among `deps` and their dependencies.
    fn broken_dependency(
        &self,
        cfg: &Config,
        deps: &[String],
        base: &BTreeMap<&str, (ServiceState, String)>,
    ) -> Option<(String, ServiceState)> {
        let mut todo: Vec<&String> = deps.iter().collect();
        let mut seen = BTreeSet::new();
        while let Some(d) = todo.pop() {
            if !seen.insert(d) {
                continue;
            }
            if let Some((s, _)) = base.get(d.as_str())
                && !s.usable()
            {
                return Some((d.clone(), *s));
            }
            if let Some(svc) = cfg.services.get(d) {
                todo.extend(svc.depends_on.iter());
            }
        }
        None
    }

    fn own_health(&self, id: &str, when: HealthyWhen, n: usize) -> (ServiceState, String) {
        if n == 0 {
            return (ServiceState::Up, "no checks".into());
        }
        let mut passing = 0;
        let mut failing = Vec::new();
        // Passing checks that work less than normally: their grade and why.
        let mut graded: Vec<(Grade, String)> = Vec::new();
        // Checks whose verdict in force is not (yet) theirs: none so far, or a failure that
        // is held (the guard is frozen, or a canary has not corroborated it).
        let (mut unknown, mut held) = (0, 0);
        for index in 0..n {
            let cid = CheckId::Service {
                service: id.to_string(),
                index,
            };
            let live = self.checks.get(&cid).and_then(|c| c.verdict);
            let (verdict, grade) = self.in_force(&cid);
            match verdict {
                Some(false) => {}
                _ if live == Some(false) => held += 1,
                None => unknown += 1,
                Some(true) => {}
            }
            let last = self.checks.get(&cid).and_then(|c| c.last.as_ref());
            // No verdict yet counts as passing: only evidence takes a service down.
            if verdict == Some(false) {
                failing.push(last.map_or("check failing".to_string(), |o| o.reason.clone()));
            } else {
                passing += 1;
                if grade != Grade::Normal {
                    // The latest probe's words while they say the same; else the grade's.
                    let why = match last {
                        Some(o) if o.ok && o.grade == grade => o.reason.clone(),
                        _ if grade == Grade::Maintenance => "under maintenance".to_string(),
                        _ => "slow".to_string(),
                    };
                    graded.push((grade, why));
                }
            }
        }
        let healthy = match when {
            HealthyWhen::All => failing.is_empty(),
            HealthyWhen::Any => passing > 0,
            HealthyWhen::AtLeast(k) => passing >= k as usize,
        };
        if !healthy {
            return (ServiceState::Down, failing.join("; "));
        }
        // A vendor's maintenance outranks slowness: the service is not for use meanwhile.
        let worst = graded.iter().map(|(g, _)| *g).max();
        if let Some(worst) = worst {
            let why: Vec<String> = graded
                .into_iter()
                .filter(|(g, _)| *g == worst)
                .map(|(_, w)| w)
                .collect();
            let state = match worst {
                Grade::Maintenance => ServiceState::Maintenance,
                _ => ServiceState::Degraded,
            };
            return (state, why.join("; "));
        }
        // Say why a service is up when its checks do not plainly say so.
        let frozen = self.frozen.is_some();
        let reason = if (held > 0 || unknown > 0) && frozen {
            "held at its last state: the guard is frozen (every canary is down)".to_string()
        } else if held > 0 {
            "a failing check waits for a canary to pass before it counts".to_string()
        } else if unknown == n {
            "no verdict yet".to_string()
        } else if unknown > 0 || !failing.is_empty() {
            // `passing` counts the checks without a verdict too: they keep it up.
            let waiting = if unknown > 0 {
                format!(", {unknown} without a verdict yet")
            } else {
                String::new()
            };
            format!("{} of {n} checks pass{waiting}", passing - unknown - held)
        } else {
            "checks pass".to_string()
        };
        (ServiceState::Up, reason)
    }

    fn update_guard(&mut self, now: DateTime<Utc>) {
        let canaries = self.config.guard.canaries.len();
        let all_down = canaries > 0
            && (0..canaries).all(|i| {
                self.checks.get(&CheckId::Canary(i)).and_then(|c| c.verdict) == Some(false)
            });
        match (&self.frozen, all_down) {
            (None, true) => {
                let held = self
                    .checks
                    .keys()
                    .map(|id| (id.clone(), self.corroborated(id)))
                    .collect();
                self.frozen = Some(held);
                self.guard_since = now;
                let why: Vec<String> = (0..canaries)
                    .map(|i| {
                        let last = self
                            .checks
                            .get(&CheckId::Canary(i))
                            .and_then(|c| c.last.as_ref());
                        format!(
                            "canary#{i}: {}",
                            last.map_or("no result", |o| o.reason.as_str())
                        )
                    })
                    .collect();
                warn!(
                    canaries = %why.join("; "),
                    "guard: every canary is down; detour's own view is suspect, so every service stays at its last state and no new redirects are made (if detour's network is fine, check the [guard] canaries)"
                );
            }
            (Some(_), false) => {
                self.frozen = None;
                self.guard_since = now;
                info!("guard: a canary is back; states follow the checks again");
            }
            _ => {}
        }
    }

    /// True while the guard holds states frozen.
    pub fn frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// The next moment a maintenance window starts or ends (or lowers TTLs) after `now`.
    pub fn next_boundary(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.config
            .maintenance
            .iter()
            .flat_map(|m| [m.start.with_timezone(&Utc), m.end.with_timezone(&Utc)])
            .chain(selection::ttl_boundaries(&self.config, now))
            .chain(self.overrides.values().filter_map(|o| o.until))
            .filter(|t| *t > now)
            .min()
    }

    /// Health to publish. Check verdicts are the ones in force: frozen while the guard is
    /// frozen, the earlier one while a down verdict awaits a canary.
    pub fn health(&self) -> Health {
        let mut checks = self.checks.clone();
        for (id, c) in checks.iter_mut() {
            c.awaiting_canary = self.awaiting_canary(id);
            (c.verdict, c.grade) = self.in_force(id);
        }
        Health {
            services: self.services.clone(),
            checks,
            guard: GuardStatus {
                frozen: self.frozen.is_some(),
                since: self.guard_since,
            },
            overrides: self.overrides.clone(),
        }
    }

    /// What to save in `state_dir`.
    pub fn persisted(&self, now: DateTime<Utc>) -> Persisted {
        Persisted {
            saved_at: now,
            checks: self
                .checks
                .keys()
                .filter_map(|id| self.verdict(id).map(|v| (id.to_string(), v)))
                .collect(),
            services: self
                .services
                .iter()
                .map(|(id, s)| (id.clone(), (s.state, s.since)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
