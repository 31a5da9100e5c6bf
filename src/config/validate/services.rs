//! `[services.*]` and `[[maintenance]]`: ids, dependencies (no cycles), windows.

use super::*;

pub(super) fn known_service(
    src: &mut Source<'_>,
    s: &Spanned<String>,
    ids: &BTreeSet<String>,
    ctx: &str,
) {
    if !ids.contains(s.get_ref()) {
        src.error(
            s.span(),
            format!(
                "unknown service {:?} in {ctx}: expected one of {}",
                s.get_ref(),
                list(ids.iter())
            ),
        );
    }
}

pub(super) fn service(
    src: &mut Source<'_>,
    id: &str,
    raw: RawService,
    ids: &BTreeSet<String>,
    defaults: &Timing,
    probe_source: Option<IpAddr>,
    dir: &Path,
) -> Option<Service> {
    let before = src.errors.len();
    for d in &raw.depends_on {
        known_service(src, d, ids, "depends_on");
        if d.get_ref() == id {
            src.error(d.span(), format!("service {id} cannot depend on itself"));
        }
    }
    if let Some(u) = &raw.url
        && !linkable(u.get_ref())
    {
        src.error(
            u.span(),
            format!(
                "invalid url {:?}: expected an absolute http, https, mailto or tel URL",
                u.get_ref()
            ),
        );
    }
    let mut raws: Vec<&Spanned<RawCheck>> = Vec::new();
    match (&raw.check, &raw.checks) {
        (Some(c), Some(_)) => src.error(
            c.span(),
            format!("service {id} sets both `check` and `checks`: use one"),
        ),
        (Some(c), None) => raws.push(c),
        (None, Some(cs)) => raws.extend(cs.iter()),
        (None, None) => {}
    }
    let checks: Vec<Check> = raws
        .into_iter()
        .filter_map(|c| {
            let place = Place {
                source: probe_source,
                dir,
                canary: false,
            };
            check(src, c, defaults, &place)
        })
        .collect();
    let healthy_when = match &raw.healthy_when {
        None => HealthyWhen::All,
        Some(h) => match h.get_ref() {
            RawHealthyWhen::Word(w) if w == "all" => HealthyWhen::All,
            RawHealthyWhen::Word(w) if w == "any" => HealthyWhen::Any,
            RawHealthyWhen::AtLeast { at_least } => {
                if *at_least == 0 || *at_least as usize > checks.len() {
                    src.error(
                        h.span(),
                        format!(
                            "healthy_when.at_least must be between 1 and the number of checks ({})",
                            checks.len()
                        ),
                    );
                }
                HealthyWhen::AtLeast(*at_least)
            }
            RawHealthyWhen::Word(_) => {
                src.error(
                    h.span(),
                    "invalid healthy_when: expected \"all\", \"any\" or { at_least = N }",
                );
                HealthyWhen::All
            }
        },
    };
    let quorum = raw
        .quorum
        .as_ref()
        .and_then(|q| super::cluster::quorum(src, q));
    (src.errors.len() == before).then(|| Service {
        id: id.to_string(),
        name: raw.name.unwrap_or_else(|| id.to_string()),
        url: raw.url.map(Spanned::into_inner),
        description: raw.description,
        depends_on: raw
            .depends_on
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        checks,
        healthy_when,
        quorum,
    })
}

/// Reports every dependency cycle once (at the service whose table starts it).
pub(super) fn dependency_cycles(src: &mut Source<'_>, services: &BTreeMap<String, Service>) {
    // Depth-first search with colours; a grey node reached again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        White,
        Grey,
        Black,
    }
    fn visit(
        id: &str,
        services: &BTreeMap<String, Service>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        marks.insert(id.to_string(), Mark::Grey);
        path.push(id.to_string());
        if let Some(s) = services.get(id) {
            for d in &s.depends_on {
                match marks.get(d).copied().unwrap_or(Mark::White) {
                    Mark::Grey => {
                        let start = path.iter().position(|p| p == d).unwrap_or(0);
                        let mut cycle = path[start..].to_vec();
                        cycle.push(d.clone());
                        cycles.push(cycle);
                    }
                    Mark::White if services.contains_key(d) => {
                        visit(d, services, marks, path, cycles)
                    }
                    _ => {}
                }
            }
        }
        path.pop();
        marks.insert(id.to_string(), Mark::Black);
    }
    let mut marks = BTreeMap::new();
    let mut cycles = Vec::new();
    for id in services.keys() {
        if marks.get(id).copied().unwrap_or(Mark::White) == Mark::White {
            visit(id, services, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    for c in cycles {
        src.error_nowhere(format!("dependency cycle: {}", c.join(" -> ")));
    }
}

pub(super) fn time(src: &mut Source<'_>, s: &Spanned<String>) -> Option<DateTime<FixedOffset>> {
    match DateTime::parse_from_rfc3339(s.get_ref()) {
        Ok(t) => Some(t),
        Err(e) => {
            src.error(
                s.span(),
                format!(
                    "invalid time {:?} ({e}): expected RFC 3339 with an offset, such as \"2026-12-24T22:00:00-05:00\"",
                    s.get_ref()
                ),
            );
            None
        }
    }
}
