//! `detour explain NAME [TYPE] [--from ADDR]`: the answer detour gives now, asked through
//! the real answer path, and each step that chose it: the view, overrides, maintenance,
//! the services' states with their checks' last results, quorum votes in a cluster, and how
//! long a cache may still hold the previous answer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use chrono::{DateTime, Utc};
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Message, Query};
use hickory_server::proto::rr::{Name, RecordType};
use serde::Serialize;

use crate::dns::answer::{Client, Reply, respond};
use crate::selection::Chosen;
use crate::snapshot::Snapshot;
use crate::status::{ServiceDoc, StatusDoc};

/// What `detour explain` prints (and `GET /api/v1/explain` answers).
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The name asked.
    pub name: String,
    /// The type asked.
    #[serde(rename = "type")]
    pub rtype: String,
    /// The source it was asked as (views are chosen by it).
    pub from: IpAddr,
    /// The view whose Snapshot answered, when a drill is in force there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    /// The response code.
    pub rcode: String,
    /// The answer section, one record a line (presentation format).
    pub answer: Vec<String>,
    /// Each step that chose it, in words, in order.
    pub steps: Vec<String>,
}

/// Explains `name`/`rtype` asked from `from` in `main` (the Snapshot in force); `doc` is
/// the status document of the Snapshot that answers (with the cluster's views when there
/// is one), for the services' checks and votes.
pub fn explain(
    main: &Snapshot,
    doc: &StatusDoc,
    name: &Name,
    rtype: RecordType,
    from: Option<IpAddr>,
    now: DateTime<Utc>,
) -> Explanation {
    let from = from.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let snap = main.for_source(from);
    let mut steps = Vec::new();
    steps.push(view_step(main, snap, from));

    let (rcode, answer, owners) = ask(main, name, rtype, from);
    for (owner, t) in &owners {
        match snap
            .dynamic
            .iter()
            .find(|d| d.name.eq_case(owner) && d.rtype == *t)
            .or_else(|| {
                // A dynamic CNAME answers every type at its name.
                snap.dynamic
                    .iter()
                    .find(|d| d.name.eq_case(owner) && d.rtype == RecordType::CNAME)
            }) {
            Some(d) => steps.extend(record_steps(snap, doc, d, now)),
            None => steps.push(format!(
                "{owner} {t}: static, from the zone file (no service decides it)"
            )),
        }
    }
    if owners.is_empty() {
        steps.push(match snap.find_zone(&name.into()) {
            None => format!("{name} is in no zone detour serves: REFUSED"),
            Some(z) => format!(
                "no {rtype} record at {name} in zone {}: {rcode}, with the SOA (negative answers may be cached for the SOA minimum, {} s)",
                z.origin,
                snap.config
                    .zones
                    .iter()
                    .find(|c| c.origin == z.origin)
                    .map_or(0, |c| c.soa.minimum)
            ),
        });
    }
    Explanation {
        name: name.to_string(),
        rtype: rtype.to_string(),
        from,
        view: snap.drill.as_ref().map(|d| d.view.clone()),
        rcode,
        answer,
        steps,
    }
}

/// Which Snapshot answers `from`, in words.
fn view_step(main: &Snapshot, snap: &Snapshot, from: IpAddr) -> String {
    let views = crate::rehearsal::Views::new(&main.config.views);
    match (views.of(from), &snap.drill) {
        (_, Some(d)) => {
            let drills: Vec<String> = d
                .drills
                .iter()
                .map(|x| {
                    format!(
                        "{} {} until {} ({}, by {})",
                        x.service,
                        crate::health::ServiceState::from(x.state),
                        x.until.to_rfc3339(),
                        if x.reason.is_empty() {
                            "no reason given"
                        } else {
                            &x.reason
                        },
                        x.by
                    )
                })
                .collect();
            format!(
                "view: {from} is in view {}, which has a drill in force: {}; answered from the view's Snapshot",
                d.view,
                drills.join("; ")
            )
        }
        (Some(i), None) => format!(
            "view: {from} is in view {}, which has no drill in force: answered as everyone is",
            main.config.views[i].name
        ),
        (None, None) if main.config.views.is_empty() => {
            "view: no [views.*] configured: everyone gets the same answer".to_string()
        }
        (None, None) => format!("view: {from} is in no view: answered as everyone is"),
    }
}

/// Asks the real answer path (TCP, so nothing is truncated) as `from`: the response code,
/// the answer section, and the (owner, type) of each record in it, in order.
fn ask(
    main: &Snapshot,
    name: &Name,
    rtype: RecordType,
    from: IpAddr,
) -> (String, Vec<String>, Vec<(Name, RecordType)>) {
    let mut q = Message::query();
    q.add_query(Query::query(name.clone(), rtype));
    let Ok(raw) = q.to_vec() else {
        return ("FORMERR".into(), Vec::new(), Vec::new());
    };
    let client = Client::new(SocketAddr::new(from, 53), Protocol::Tcp);
    let bytes = match respond(main, &raw, &client) {
        Reply::Message(m) => m,
        Reply::Stream(mut s) if !s.is_empty() => s.remove(0),
        _ => return ("no answer".into(), Vec::new(), Vec::new()),
    };
    let Ok(msg) = Message::from_vec(&bytes) else {
        return ("unreadable answer".into(), Vec::new(), Vec::new());
    };
    let rcode = msg.metadata.response_code.to_string();
    let answer = msg.answers.iter().map(ToString::to_string).collect();
    let mut owners: Vec<(Name, RecordType)> = Vec::new();
    for r in &msg.answers {
        let key = (r.name.clone(), r.record_type());
        if !owners.contains(&key) {
            owners.push(key);
        }
    }
    (rcode, answer, owners)
}

/// The steps behind one dynamic record's answer.
fn record_steps(
    snap: &Snapshot,
    doc: &StatusDoc,
    d: &crate::snapshot::DynamicAnswer,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(def) = snap
        .config
        .zones
        .get(d.choice.zone)
        .and_then(|z| z.dynamic.get(d.choice.record))
    else {
        return out;
    };
    out.push(format!(
        "{} {}: dynamic, TTL {} s; the first entry whose service is usable wins",
        d.name, d.rtype, def.ttl
    ));
    for (i, a) in def.answers.iter().enumerate() {
        let values: Vec<String> = a.values.iter().map(ToString::to_string).collect();
        let chosen = d.choice.chosen == Chosen::Entry(i);
        out.push(format!(
            "  {}. {} ({}){}",
            i + 1,
            a.if_up,
            values.join(", "),
            if chosen { "  <- answered" } else { "" }
        ));
        if let Some(s) = doc.services.iter().find(|s| s.id == a.if_up) {
            out.extend(service_steps(snap, s, now));
        }
    }
    let otherwise: Vec<String> = def.otherwise.iter().map(ToString::to_string).collect();
    out.push(format!(
        "  otherwise: the outage page ({}){}",
        otherwise.join(", "),
        if d.choice.chosen == Chosen::Otherwise {
            "  <- answered"
        } else {
            ""
        }
    ));
    let held_until = d.since + chrono::Duration::seconds(i64::from(def.ttl));
    if held_until > now {
        out.push(format!(
            "  answers this since {}: a resolver that cached the previous answer just before may serve it until {} ({} s more)",
            d.since.to_rfc3339(),
            held_until.to_rfc3339(),
            (held_until - now).num_seconds()
        ));
    } else {
        out.push(format!(
            "  answers this since {}: longer than its TTL, so every cache has it",
            d.since.to_rfc3339()
        ));
    }
    out
}

/// Why a service is in its state: override, maintenance window, checks, votes.
fn service_steps(snap: &Snapshot, s: &ServiceDoc, now: DateTime<Utc>) -> Vec<String> {
    let mut out = vec![format!(
        "     {} is {} since {}: {}",
        s.id,
        s.state,
        s.since.to_rfc3339(),
        s.reason
    )];
    if let Some(o) = &s.override_ {
        out.push(format!(
            "     override: {} by {}{}{}",
            crate::health::ServiceState::from(o.state),
            o.by.as_deref().unwrap_or("an operator"),
            if o.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", o.reason)
            },
            o.until
                .map_or(String::new(), |u| format!(", until {}", u.to_rfc3339()))
        ));
        if s.observed != s.state {
            out.push(format!(
                "     underneath, checks and windows say {}: {}",
                s.observed, s.observed_reason
            ));
        }
    }
    if let Some(m) = snap
        .config
        .maintenance
        .iter()
        .find(|m| m.services.contains(&s.id) && m.start <= now && now < m.end)
    {
        out.push(format!(
            "     maintenance window until {}{}",
            m.end.to_rfc3339(),
            if m.message.is_empty() {
                String::new()
            } else {
                format!(": {}", m.message)
            }
        ));
    }
    if s.checks.is_empty() {
        out.push("     no checks: up unless an operator says otherwise".into());
    }
    for c in &s.checks {
        let last = c.last.as_ref().map_or("no result yet".to_string(), |l| {
            format!(
                "last {} {} s ago: {} ({} ms)",
                if l.ok { "passed" } else { "failed" },
                (now - l.at).num_seconds().max(0),
                l.reason,
                l.latency_ms
            )
        });
        out.push(format!(
            "     check {}: {}{}; {last}",
            c.id,
            c.verdict,
            if c.awaiting_canary {
                " (down held until a canary passes)"
            } else {
                ""
            }
        ));
    }
    if let Some(q) = &s.quorum {
        let votes: Vec<String> = s
            .views
            .iter()
            .map(|v| format!("{} sees {}", v.instance, v.sees))
            .collect();
        out.push(format!("     cluster quorum {q}: {}", votes.join(", ")));
    }
    out
}
