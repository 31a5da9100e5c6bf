//! `[views.*]` and `[[safety]]`: who sees a drill, and what operator changes may not do.

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use super::services::known_service;
use super::valid_id;
use crate::config::diag::Source;
use crate::config::schema::{RawSafety, RawView};
use crate::config::{SafetyKind, SafetyRule, View};

/// The states a safety rule may count.
const STATES: [&str; 5] = ["up", "down", "maintenance", "impacted", "degraded"];

/// `[views.NAME] sources = [...]`: names are ids, sources are addresses or prefixes, and no
/// address belongs to two views (which one would answer would be a guess).
pub(super) fn views(
    src: &mut Source<'_>,
    raw: BTreeMap<Spanned<String>, Spanned<RawView>>,
) -> Vec<View> {
    let mut out: Vec<View> = Vec::new();
    let mut spans = Vec::new();
    for (name, v) in raw {
        if !valid_id(name.get_ref()) {
            src.error(
                name.span(),
                format!(
                    "invalid view name {:?}: expected letters, digits, '_' or '-'",
                    name.get_ref()
                ),
            );
            continue;
        }
        let span = v.span();
        let v = v.into_inner();
        if v.sources.is_empty() {
            src.error(
                span,
                format!(
                    "view {} has no sources: list the resolvers' addresses or prefixes, e.g. sources = [\"10.0.0.0/8\"]",
                    name.get_ref()
                ),
            );
            continue;
        }
        let mut sources = Vec::new();
        for s in &v.sources {
            let text = s.get_ref().trim();
            let parsed = text.parse::<ipnet::IpNet>().ok().or_else(|| {
                text.parse::<std::net::IpAddr>()
                    .ok()
                    .map(ipnet::IpNet::from)
            });
            match parsed {
                Some(n) => {
                    let n = n.trunc();
                    for (other, nets) in out.iter().map(|o| (&o.name, &o.sources)) {
                        if let Some(o) = nets.iter().find(|o| o.contains(&n) || n.contains(*o)) {
                            src.error(
                                s.span(),
                                format!(
                                    "{n} overlaps {o} of view {other}: an address may belong to one view only"
                                ),
                            );
                        }
                    }
                    sources.push(n);
                    spans.push(s.span());
                }
                None => src.error(
                    s.span(),
                    format!(
                        "invalid source {text:?}: expected an address or a prefix such as 10.0.0.0/8 or 2001:db8::/32"
                    ),
                ),
            }
        }
        out.push(View {
            name: name.into_inner(),
            sources,
        });
    }
    out
}

/// `[[safety]]`: `{ at_least = N, of = [...], state = "up" }` or `{ max_overrides = N }`.
pub(super) fn safety(
    src: &mut Source<'_>,
    raw: Vec<Spanned<RawSafety>>,
    ids: &BTreeSet<String>,
) -> Vec<SafetyRule> {
    let mut out: Vec<SafetyRule> = Vec::new();
    for r in raw {
        let span = r.span();
        let r = r.into_inner();
        let kind = match (&r.at_least, &r.max_overrides) {
            (Some(_), Some(m)) => {
                src.error(
                    m.span(),
                    "a [[safety]] rule is either at_least/of/state or max_overrides, not both",
                );
                continue;
            }
            (None, None) => {
                src.error(
                    span,
                    "a [[safety]] rule needs at_least (with of and state) or max_overrides",
                );
                continue;
            }
            (None, Some(m)) => {
                for (field, set) in [
                    ("of", r.of.as_ref().map(|o| o.first().map(|s| s.span()))),
                    ("state", r.state.as_ref().map(|s| Some(s.span()))),
                ] {
                    if let Some(at) = set {
                        src.error(
                            at.unwrap_or(m.span()),
                            format!("`{field}` belongs with at_least, not max_overrides"),
                        );
                    }
                }
                match usize::try_from(*m.get_ref()) {
                    Ok(n) => SafetyKind::MaxOverrides(n),
                    Err(_) => {
                        src.error(m.span(), "max_overrides must be 0 or more");
                        continue;
                    }
                }
            }
            (Some(n), None) => {
                let of: Vec<Spanned<String>> = r.of.clone().unwrap_or_default();
                if of.is_empty() {
                    src.error(
                        n.span(),
                        "at_least needs `of`, the services it counts: of = [\"mls\", \"mls_dr\"]",
                    );
                    continue;
                }
                for s in &of {
                    known_service(src, s, ids, "[[safety]] of");
                }
                let count = match usize::try_from(*n.get_ref()) {
                    Ok(c) if c >= 1 && c <= of.len() => c,
                    _ => {
                        src.error(
                            n.span(),
                            format!(
                                "at_least must be 1 to {} (the number of services in `of`)",
                                of.len()
                            ),
                        );
                        continue;
                    }
                };
                let state = match &r.state {
                    None => "up".to_string(),
                    Some(s) if STATES.contains(&s.get_ref().as_str()) => s.get_ref().clone(),
                    Some(s) => {
                        src.error(
                            s.span(),
                            format!(
                                "invalid state {:?}: expected one of {}",
                                s.get_ref(),
                                STATES.join(", ")
                            ),
                        );
                        continue;
                    }
                };
                SafetyKind::AtLeast {
                    count,
                    of: of.into_iter().map(Spanned::into_inner).collect(),
                    state,
                }
            }
        };
        let name = match &r.name {
            Some(n) if !n.get_ref().trim().is_empty() => n.get_ref().trim().to_string(),
            _ => describe(&kind),
        };
        if out.iter().any(|o| o.name == name) {
            let at = r.name.as_ref().map_or(span.clone(), Spanned::span);
            src.error(at, format!("two [[safety]] rules are named {name:?}"));
            continue;
        }
        out.push(SafetyRule { name, kind });
    }
    out
}

/// A rule's name when it has none: what it asks, in words.
fn describe(kind: &SafetyKind) -> String {
    match kind {
        SafetyKind::AtLeast { count, of, state } => {
            format!("at least {count} of {} {state}", of.join(", "))
        }
        SafetyKind::MaxOverrides(n) => format!("at most {n} services overridden"),
    }
}
