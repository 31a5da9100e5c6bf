//! `[[safety]]` rules: what an operator change may not bring about. A change is refused when
//! it breaks a rule that held, or makes a broken one worse; automatic swaps are never
//! refused (the checks are the truth), but a state that breaks a rule is reported.

use serde::{Deserialize, Serialize};

use crate::config::{SafetyKind, SafetyRule};
use crate::health::{Health, ServiceState};

/// A rule that does not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    /// The rule's name.
    pub rule: String,
    /// What is the case instead ("0 of mls, mls_dr are up: mls is down, mls_dr is down").
    pub detail: String,
}

/// How well `rule` holds in `health`: higher is better; it holds when the second is true.
fn measure(rule: &SafetyRule, health: &Health) -> (i64, bool, String) {
    match &rule.kind {
        SafetyKind::AtLeast { count, of, state } => {
            let is = |s: ServiceState| {
                s.to_string() == *state || (state == "up" && s == ServiceState::Degraded)
            };
            let states: Vec<(String, Option<ServiceState>)> = of
                .iter()
                .map(|id| (id.clone(), health.services.get(id).map(|s| s.state)))
                .collect();
            let n = states.iter().filter(|(_, s)| s.is_some_and(is)).count();
            let each: Vec<String> = states
                .iter()
                .map(|(id, s)| match s {
                    Some(s) => format!("{id} is {s}"),
                    None => format!("{id} is not known yet"),
                })
                .collect();
            (
                n as i64,
                n >= *count,
                format!(
                    "{n} of {} {} {state}: {}",
                    of.join(", "),
                    if n == 1 { "is" } else { "are" },
                    each.join(", ")
                ),
            )
        }
        SafetyKind::MaxOverrides(max) => {
            let n = health.overrides.len();
            let names: Vec<&str> = health.overrides.keys().map(String::as_str).collect();
            (
                -(n as i64),
                n <= *max,
                format!("{n} services overridden ({})", names.join(", ")),
            )
        }
    }
}

/// The rules that do not hold in `health`.
pub fn breaches(rules: &[SafetyRule], health: &Health) -> Vec<Breach> {
    rules
        .iter()
        .filter_map(|r| {
            let (_, holds, detail) = measure(r, health);
            (!holds).then(|| Breach {
                rule: r.name.clone(),
                detail,
            })
        })
        .collect()
}

/// What `health` says of the rule named `name` ("1 of mls, mls_dr is up: ..."), for the
/// message that it holds again.
pub fn describe_now(rules: &[SafetyRule], name: &str, health: &Health) -> String {
    rules
        .iter()
        .find(|r| r.name == name)
        .map(|r| measure(r, health).2)
        .unwrap_or_default()
}

/// The rules a change from `before` to `after` would break, or leave broken and make worse.
pub fn refusals(rules: &[SafetyRule], before: &Health, after: &Health) -> Vec<Breach> {
    rules
        .iter()
        .filter_map(|r| {
            let (was, held, _) = measure(r, before);
            let (is, holds, detail) = measure(r, after);
            (!holds && (held || is < was)).then(|| Breach {
                rule: r.name.clone(),
                detail,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};

    use chrono::Utc;

    use super::*;
    use crate::health::{GuardStatus, ServiceStatus};
    use crate::overrides::{Forced, Override};

    fn health(states: &[(&str, ServiceState)], overridden: &[&str]) -> Health {
        let now = Utc::now();
        Health {
            services: states
                .iter()
                .map(|(id, s)| {
                    (
                        id.to_string(),
                        ServiceStatus {
                            state: *s,
                            since: now,
                            reason: String::new(),
                            history: VecDeque::new(),
                            observed: *s,
                            observed_reason: String::new(),
                        },
                    )
                })
                .collect(),
            checks: BTreeMap::new(),
            guard: GuardStatus {
                frozen: false,
                since: now,
            },
            overrides: overridden
                .iter()
                .map(|s| (s.to_string(), Override::new(Forced::Down, "")))
                .collect(),
        }
    }

    fn one_of_two() -> SafetyRule {
        SafetyRule {
            name: "one MLS up".into(),
            kind: SafetyKind::AtLeast {
                count: 1,
                of: vec!["mls".into(), "mls_dr".into()],
                state: "up".into(),
            },
        }
    }

    #[test]
    fn a_change_that_breaks_a_rule_is_refused() {
        use ServiceState::*;
        let rules = [one_of_two()];
        let before = health(&[("mls", Down), ("mls_dr", Up)], &[]);
        let after = health(&[("mls", Down), ("mls_dr", Down)], &["mls_dr"]);
        let r = refusals(&rules, &before, &after);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].rule, "one MLS up");
        assert!(r[0].detail.contains("mls_dr is down"), "{}", r[0].detail);
        // Degraded counts as up.
        let after = health(&[("mls", Down), ("mls_dr", Degraded)], &[]);
        assert!(refusals(&rules, &before, &after).is_empty());
    }

    #[test]
    fn a_rule_already_broken_refuses_only_what_makes_it_worse() {
        use ServiceState::*;
        let rules = [SafetyRule {
            name: "two up".into(),
            kind: SafetyKind::AtLeast {
                count: 2,
                of: vec!["a".into(), "b".into(), "c".into()],
                state: "up".into(),
            },
        }];
        let before = health(&[("a", Up), ("b", Down), ("c", Down)], &[]);
        assert_eq!(breaches(&rules, &before).len(), 1);
        // Unrelated or helpful changes pass; taking the last one down does not.
        let same = health(&[("a", Up), ("b", Down), ("c", Down)], &["x"]);
        assert!(refusals(&rules, &before, &same).is_empty());
        let worse = health(&[("a", Down), ("b", Down), ("c", Down)], &["a"]);
        assert_eq!(refusals(&rules, &before, &worse).len(), 1);
    }

    #[test]
    fn max_overrides_counts_overrides() {
        use ServiceState::*;
        let rules = [SafetyRule {
            name: "at most 1 services overridden".into(),
            kind: SafetyKind::MaxOverrides(1),
        }];
        let before = health(&[("a", Up)], &["a"]);
        let after = health(&[("a", Up)], &["a", "b"]);
        assert!(breaches(&rules, &before).is_empty());
        let r = refusals(&rules, &before, &after);
        assert_eq!(r.len(), 1);
        assert!(r[0].detail.starts_with("2 services overridden (a, b)"));
        // Clearing one is always allowed.
        assert!(refusals(&rules, &after, &before).is_empty());
    }
}
