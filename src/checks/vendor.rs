//! Statuspage probes: a vendor's own word on one of its components, from the
//! `summary.json` that Atlassian Statuspage (and compatible pages, detour's own
//! `/api/v2/summary.json` among them) publish.
//!
//! The component is found by id, else by name (any case). Its status decides:
//! `operational` passes, `degraded_performance` passes degraded, `under_maintenance` passes
//! as maintenance, `partial_outage` and `major_outage` fail, anything else fails as unknown.
//! The reason is the status in words and the name of the vendor's unresolved incident (or,
//! for maintenance, its maintenance) that names the component: `major outage: Login
//! failures`. At most [`BODY_LIMIT`] of the document is read.

use std::net::IpAddr;

use serde_json::Value;

use super::Grade;
use super::probe::{Graded, expected_statuses, http_error_reason, quote, url_cross_family};
use crate::config::StatuspageCheck;

/// Large pages list hundreds of components and incidents: read up to this much.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// One fetch of the vendor's `summary.json`, judged for `check.component`.
pub async fn probe(
    client: reqwest::Client,
    check: &StatuspageCheck,
    source: Option<IpAddr>,
) -> Graded {
    if let Some(why) = url_cross_family(source, &check.url) {
        return Err(why);
    }
    let mut response = client
        .get(check.url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| http_error_reason(&e, source))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!(
            "HTTP {status} (expected {})",
            expected_statuses(&[200])
        ));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > BODY_LIMIT {
                    return Err(format!(
                        "summary.json is larger than {} MiB",
                        BODY_LIMIT / (1024 * 1024)
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "HTTP {status}, body: {}",
                    http_error_reason(&e, source)
                ));
            }
        }
    }
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("summary.json is not JSON: {}", quote(&e.to_string())))?;
    judge(&doc, &check.component)
}

/// An id or a name as text (some pages write ids as numbers).
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The verdict on `component` in a parsed `summary.json`.
pub fn judge(doc: &Value, component: &str) -> Graded {
    let components = doc
        .get("components")
        .and_then(Value::as_array)
        .ok_or("summary.json has no `components` list")?;
    let found = components
        .iter()
        .find(|c| text(c.get("id")).as_deref() == Some(component))
        .or_else(|| {
            components.iter().find(|c| {
                text(c.get("name")).is_some_and(|n| n.trim().eq_ignore_ascii_case(component))
            })
        });
    let Some(c) = found else {
        let mut names: Vec<String> = components
            .iter()
            .filter_map(|c| text(c.get("name")))
            .collect();
        names.truncate(12);
        return Err(format!(
            "no component '{}' in summary.json (it lists: {})",
            quote(component),
            quote(&names.join(", "))
        ));
    };
    let id = text(c.get("id")).unwrap_or_default();
    let status = c.get("status").and_then(Value::as_str).unwrap_or("");
    let words = status.replace('_', " ");
    let incident = |lists: &[&str]| -> Option<String> {
        lists.iter().find_map(|list| {
            doc.get(*list)?.as_array()?.iter().find_map(|inc| {
                let open = !matches!(
                    inc.get("status").and_then(Value::as_str),
                    Some("resolved" | "postmortem" | "completed")
                );
                let names_it = inc
                    .get("components")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| cs.iter().any(|x| text(x.get("id")).as_deref() == Some(&id)));
                (open && names_it)
                    .then(|| text(inc.get("name")))
                    .flatten()
                    .map(|n| quote(n.trim()))
            })
        })
    };
    let said = |lists: &[&str]| match incident(lists) {
        Some(name) => format!("{words}: {name}"),
        None => format!("{words} (no incident posted)"),
    };
    match status {
        "operational" => Ok((Grade::Normal, "operational".into())),
        "degraded_performance" => Ok((Grade::Degraded, said(&["incidents"]))),
        "under_maintenance" => Ok((
            Grade::Maintenance,
            said(&["scheduled_maintenances", "incidents"]),
        )),
        "partial_outage" | "major_outage" => Err(said(&["incidents"])),
        other => Err(format!("unknown component status '{}'", quote(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(status: &str) -> Value {
        json!({
            "components": [
                { "id": "k1", "name": "Forms API", "status": status },
                { "id": "k2", "name": "Tax data", "status": "operational" },
            ],
            "incidents": [
                { "name": "Old one", "status": "resolved", "components": [{ "id": "k1" }] },
                { "name": "Elevated errors", "status": "investigating", "components": [{ "id": "k1" }] },
            ],
            "scheduled_maintenances": [
                { "name": "Database upgrade", "status": "in_progress", "components": [{ "id": "k1" }] },
            ],
        })
    }

    #[test]
    fn each_component_status_maps_to_a_verdict_with_the_vendors_words() {
        assert_eq!(
            judge(&page("operational"), "Forms API"),
            Ok((Grade::Normal, "operational".into()))
        );
        assert_eq!(
            judge(&page("degraded_performance"), "forms api"),
            Ok((
                Grade::Degraded,
                "degraded performance: Elevated errors".into()
            ))
        );
        assert_eq!(
            judge(&page("under_maintenance"), "k1"),
            Ok((
                Grade::Maintenance,
                "under maintenance: Database upgrade".into()
            ))
        );
        assert_eq!(
            judge(&page("partial_outage"), "Forms API"),
            Err("partial outage: Elevated errors".into())
        );
        assert_eq!(
            judge(&page("major_outage"), "Forms API"),
            Err("major outage: Elevated errors".into())
        );
        assert_eq!(
            judge(&page("on_fire"), "Forms API"),
            Err("unknown component status 'on_fire'".into())
        );
        assert_eq!(
            judge(&page("major_outage"), "Tax data"),
            Ok((Grade::Normal, "operational".into()))
        );
    }

    #[test]
    fn a_missing_component_or_list_is_a_failure_that_says_so() {
        assert_eq!(
            judge(&page("operational"), "Showings"),
            Err("no component 'Showings' in summary.json (it lists: Forms API, Tax data)".into())
        );
        assert_eq!(
            judge(&json!({ "page": {} }), "x"),
            Err("summary.json has no `components` list".into())
        );
        let quiet = json!({ "components": [{ "id": "a", "name": "A", "status": "major_outage" }] });
        assert_eq!(
            judge(&quiet, "A"),
            Err("major outage (no incident posted)".into())
        );
    }
}
