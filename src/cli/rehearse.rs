//! The rehearsal commands' client side: `detour simulate`, `detour drill`, `detour explain`.

use std::fmt::Write as _;

use hyper::Method;
use serde_json::{Value, json};

use super::DrillCmd;
use super::commands::urlencode;
use crate::admin::client::{Client, ClientError};
use crate::text::escape as t;

/// `detour simulate SERVICE=STATE ... [--at TIME]`.
pub async fn simulate(
    client: &Client,
    states: &[String],
    at: Option<&str>,
    json: bool,
) -> Result<String, ClientError> {
    let map: serde_json::Map<String, Value> = states
        .iter()
        .filter_map(|s| s.split_once('='))
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    let v = client
        .call(
            Method::POST,
            "/api/v1/simulate",
            Some(json!({ "states": map, "at": at })),
        )
        .await?;
    if json {
        return Ok(format!("{v}\n"));
    }
    Ok(render_simulation(&v))
}

/// The simulation for people: what changes first, then what stays.
pub fn render_simulation(v: &Value) -> String {
    let mut o = String::new();
    let assumed: Vec<String> = v["assumed"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, s)| format!("{k} {}", s.as_str().unwrap_or("?")))
        .collect();
    let _ = writeln!(
        o,
        "SIMULATION (nothing was changed): if {} at {}",
        t(&assumed.join(", ")),
        v["at"].as_str().unwrap_or("now")
    );
    let _ = writeln!(o, "\nDNS answers               now -> would be");
    for r in v["records"].as_array().into_iter().flatten() {
        let list = |k: &str| strings(&r[k]).join(" ");
        let mark = if r["changes"].as_bool() == Some(true) {
            if r["outage"].as_bool() == Some(true) {
                "  CHANGES (outage page)"
            } else {
                "  CHANGES"
            }
        } else {
            "  (same)"
        };
        let _ = writeln!(
            o,
            "  {} {}  {} -> {}{mark}\n      because {}",
            r["name"].as_str().unwrap_or("?"),
            r["type"].as_str().unwrap_or("?"),
            list("now"),
            list("would"),
            t(r["because"].as_str().unwrap_or(""))
        );
    }
    let _ = writeln!(o, "\nServices                  now -> would be");
    for s in v["services"].as_array().into_iter().flatten() {
        let changes = s["changes"].as_bool() == Some(true);
        let _ = writeln!(
            o,
            "  {:<22}  {} -> {}{}",
            s["id"].as_str().unwrap_or("?"),
            s["now"].as_str().unwrap_or("?"),
            s["would"].as_str().unwrap_or("?"),
            if changes {
                format!("  ({})", t(s["because"].as_str().unwrap_or("")))
            } else {
                String::new()
            }
        );
    }
    let impacted = strings(&v["impacted"]);
    let _ = writeln!(
        o,
        "\nImpacted: {}",
        if impacted.is_empty() {
            "none".to_string()
        } else {
            impacted.join(", ")
        }
    );
    let pages = v["outage_pages"].as_array().cloned().unwrap_or_default();
    if pages.is_empty() {
        let _ = writeln!(o, "Outage page: nobody would be sent there");
    }
    for p in &pages {
        let working: Vec<String> = p["working"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| {
                format!(
                    "{}{}",
                    w["name"].as_str().unwrap_or("?"),
                    w["url"]
                        .as_str()
                        .map_or(String::new(), |u| format!(" ({u})"))
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "Outage page for {}: \"{} is unavailable\"; still working: {}",
            p["host"].as_str().unwrap_or("?"),
            t(p["name"].as_str().unwrap_or("?")),
            if working.is_empty() {
                "nothing listed".to_string()
            } else {
                t(&working.join(", ")).into_owned()
            }
        );
    }
    let _ = writeln!(o, "Would notify: {}", told(v, "nobody"));
    for b in v["safety"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "SAFETY RULE BROKEN: \"{}\": {}",
            t(b["rule"].as_str().unwrap_or("?")),
            t(b["detail"].as_str().unwrap_or(""))
        );
    }
    o
}

/// `detour drill start|stop`.
pub async fn drill(
    client: &Client,
    cmd: &DrillCmd,
    by: &str,
    json: bool,
) -> Result<String, ClientError> {
    match cmd {
        DrillCmd::Start {
            service,
            view,
            lasts,
            reason,
        } => {
            let (service, state) = service.split_once('=').unwrap_or((service, "down"));
            let body = json!({
                "service": service, "state": state, "view": view,
                "for": lasts, "reason": reason, "by": by,
            });
            let v = client
                .call(Method::POST, "/api/v1/drills", Some(body))
                .await?;
            if json {
                return Ok(format!("{v}\n"));
            }
            let mut o = String::new();
            for d in v["drills"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    o,
                    "DRILL: {} is {} for view {} only, until {} (detour drill stop {} ends it)",
                    d["service"].as_str().unwrap_or("?"),
                    d["state"].as_str().unwrap_or("?"),
                    d["view"].as_str().unwrap_or("?"),
                    d["until"]
                        .as_str()
                        .map_or("?".into(), super::commands::local),
                    d["service"].as_str().unwrap_or("?"),
                );
            }
            let _ = writeln!(
                o,
                "notified: {}",
                told(&v, "nobody (no [[notify]] sink takes \"drill\")")
            );
            Ok(o)
        }
        DrillCmd::Stop { service } => {
            let path = format!(
                "/api/v1/drills?service={}&by={}",
                urlencode(service.as_deref().unwrap_or("")),
                urlencode(by)
            );
            let v = client.call(Method::DELETE, &path, None).await?;
            if json {
                return Ok(format!("{v}\n"));
            }
            let stopped = v["stopped"].as_array().cloned().unwrap_or_default();
            if stopped.is_empty() {
                return Ok("no drill was in force\n".into());
            }
            let mut o = String::new();
            for d in &stopped {
                let _ = writeln!(
                    o,
                    "drill ended: {} in view {}",
                    d["service"].as_str().unwrap_or("?"),
                    d["view"].as_str().unwrap_or("?")
                );
            }
            Ok(o)
        }
    }
}

/// `detour explain NAME [TYPE] [--from ADDR]`.
pub async fn explain(
    client: &Client,
    name: &str,
    rtype: &str,
    from: Option<&str>,
    json: bool,
) -> Result<String, ClientError> {
    let mut path = format!(
        "/api/v1/explain?name={}&type={}",
        urlencode(name),
        urlencode(rtype)
    );
    if let Some(f) = from {
        path.push_str(&format!("&from={}", urlencode(f)));
    }
    let v = client.call(Method::GET, &path, None).await?;
    if json {
        return Ok(format!("{v}\n"));
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} {} asked from {}: {}",
        v["name"].as_str().unwrap_or("?"),
        v["type"].as_str().unwrap_or("?"),
        v["from"].as_str().unwrap_or("?"),
        v["rcode"].as_str().unwrap_or("?")
    );
    for a in v["answer"].as_array().into_iter().flatten() {
        let _ = writeln!(o, "  {}", t(a.as_str().unwrap_or("")));
    }
    let _ = writeln!(o, "why:");
    for s in v["steps"].as_array().into_iter().flatten() {
        let _ = writeln!(o, "  {}", t(s.as_str().unwrap_or("")));
    }
    Ok(o)
}

/// The strings of a JSON array (none when it is not one).
fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// An answer's `notified` list for people, or `nobody` when it is empty.
fn told(v: &Value, nobody: &str) -> String {
    let list = strings(&v["notified"]);
    if list.is_empty() {
        nobody.to_string()
    } else {
        t(&list.join("; ")).into_owned()
    }
}
