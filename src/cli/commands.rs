//! The client commands: each is one admin API call, printed for people or as JSON.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use hyper::{Method, StatusCode};
use serde_json::json;

use super::{Cli, Command, IncidentCmd, NotifyCmd, OverrideCmd, SubscribersCmd};
use crate::admin::client::{Client, ClientError};
use crate::audit;
use crate::config::ClientSettings;
use crate::health::ServiceState;
use crate::incidents::Incident;
use crate::status::StatusDoc;

/// How a client command ended: the exit code and what to print.
#[derive(Debug)]
pub struct Outcome {
    /// 0 success, 1 runtime failure, 2 usage or config error.
    pub code: u8,
    /// For stdout.
    pub stdout: String,
    /// For stderr.
    pub stderr: String,
}

impl Outcome {
    pub(super) fn ok(stdout: String) -> Self {
        Self {
            code: 0,
            stdout,
            stderr: String::new(),
        }
    }

    pub(super) fn fail(code: u8, stderr: String) -> Self {
        Self {
            code,
            stdout: String::new(),
            stderr,
        }
    }
}

/// The local user, for the audit log.
pub fn local_user() -> String {
    for var in ["SUDO_USER", "USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var)
            && !u.is_empty()
        {
            return u;
        }
    }
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or("unknown".into(), |m| format!("uid:{}", m.uid()))
}

/// Runs a client command against the daemon the config points at.
pub async fn run(cli: &Cli) -> Outcome {
    let settings = match ClientSettings::load(&cli.config) {
        Ok(c) => c,
        Err(e) => return Outcome::fail(2, format!("{e}\n")),
    };
    let _ = ZONE.set(settings.timezone);
    let client = match Client::from_settings(&settings) {
        Ok(c) => c,
        Err(e) => return Outcome::fail(1, format!("error: {e}\n")),
    };
    let by = cli.by.clone().unwrap_or_else(local_user);
    let result = match &cli.command {
        Command::Status { history } => status(&client, cli.json, *history).await,
        Command::Override(OverrideCmd::Set(s)) => {
            let body = json!({ "state": s.state, "reason": s.reason, "until": s.until, "by": by, "force": s.force });
            client
                .call(
                    Method::PUT,
                    &format!("/api/v1/overrides/{}", s.service),
                    Some(body),
                )
                .await
                .map(|v| {
                    if cli.json {
                        format!("{v}\n")
                    } else {
                        let until = v["override"]["until"]
                            .as_str()
                            .map_or(String::new(), |u| format!(" until {}", local(u)));
                        format!(
                            "{}: {}{until} (checks keep running underneath)\n{}",
                            s.service,
                            s.state,
                            notified_line(&v)
                        )
                    }
                })
        }
        Command::Override(OverrideCmd::Clear {
            service,
            reason,
            force,
        }) => client
            .call(
                Method::DELETE,
                &format!(
                    "/api/v1/overrides/{service}?by={}&reason={}&force={force}",
                    urlencode(&by),
                    urlencode(reason.as_deref().unwrap_or(""))
                ),
                None,
            )
            .await
            .map(|v| {
                if cli.json {
                    format!("{v}\n")
                } else if v["cleared"].as_bool() == Some(true) {
                    format!(
                        "{service}: override cleared; checks decide again\n{}",
                        notified_line(&v)
                    )
                } else {
                    format!("{service}: had no override\n")
                }
            }),
        Command::Incident(IncidentCmd::Open { services, text }) => {
            match client
                .call(
                    Method::POST,
                    "/api/v1/incidents",
                    Some(json!({ "services": services, "message": text, "by": by })),
                )
                .await
            {
                Ok(v) if cli.json => Ok(format!("{v}\n")),
                // The id alone on stdout, so scripts can capture it; whom it told on stderr.
                Ok(v) => {
                    return Outcome {
                        code: 0,
                        stdout: format!("{}\n", v["id"].as_str().unwrap_or_default()),
                        stderr: notified_line(&v),
                    };
                }
                Err(e) => Err(e),
            }
        }
        Command::Subscribers(SubscribersCmd::List) => client
            .call(Method::GET, "/api/v1/subscribers", None)
            .await
            .map(|v| {
                if cli.json {
                    return format!("{v}\n");
                }
                let mut out = String::new();
                let list = v.as_array().cloned().unwrap_or_default();
                for s in &list {
                    let services: Vec<&str> = s["services"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str())
                        .collect();
                    let state = match s["confirmed_at"].as_str() {
                        Some(t) => format!("confirmed {}", local(t)),
                        None => "NOT CONFIRMED".to_string(),
                    };
                    let _ = writeln!(
                        out,
                        "{}",
                        crate::text::escape(&format!(
                            "{:<5} {:<32} {:<20} {state}",
                            s["channel"].as_str().unwrap_or("?"),
                            s["address"].as_str().unwrap_or("?"),
                            if services.is_empty() {
                                "everything".to_string()
                            } else {
                                services.join(",")
                            },
                        ))
                    );
                }
                let _ = writeln!(out, "{} subscriber(s)", list.len());
                out
            }),
        Command::Subscribers(SubscribersCmd::Remove { address }) => client
            .call(
                Method::DELETE,
                &format!(
                    "/api/v1/subscribers/{}?by={}",
                    urlencode(address),
                    urlencode(&by)
                ),
                None,
            )
            .await
            .map(|v| {
                if cli.json {
                    format!("{v}\n")
                } else {
                    format!(
                        "{}: erased ({} subscription(s) and what waited for them)\n",
                        crate::text::escape(address),
                        v["removed"]
                    )
                }
            }),
        Command::Oncall { at } => {
            let path = match at {
                Some(a) => format!("/api/v1/oncall?at={}", urlencode(a)),
                None => "/api/v1/oncall".to_string(),
            };
            client.call(Method::GET, &path, None).await.map(|v| {
                if cli.json {
                    format!("{v}\n")
                } else {
                    render_oncall(&v)
                }
            })
        }
        Command::Ack { id } => client
            .call(
                Method::POST,
                &format!("/api/v1/pages/{}/ack", urlencode(id)),
                Some(json!({ "by": by })),
            )
            .await
            .map(|v| {
                if cli.json {
                    return format!("{v}\n");
                }
                let page = &v["page"];
                let id = page["id"].as_str().unwrap_or_default();
                if v["already"].as_bool() == Some(true) {
                    match page["acked"]["by"].as_str() {
                        Some(who) => format!(
                            "page {id} was already acknowledged by {}\n",
                            crate::text::escape(who)
                        ),
                        None => format!("page {id} had already ended by itself\n"),
                    }
                } else {
                    format!("page {id} acknowledged: escalation stopped\n")
                }
            }),
        Command::Incident(IncidentCmd::Update { id, text }) => client
            .call(
                Method::POST,
                &format!("/api/v1/incidents/{id}/updates"),
                Some(json!({ "message": text, "by": by })),
            )
            .await
            .map(|v| incident_line(&v, cli.json, "updated")),
        Command::Incident(IncidentCmd::Resolve { id, text }) => client
            .call(
                Method::POST,
                &format!("/api/v1/incidents/{id}/resolve"),
                Some(json!({ "message": text.clone().unwrap_or_default(), "by": by })),
            )
            .await
            .map(|v| incident_line(&v, cli.json, "resolved")),
        Command::Reload => match client
            .call(Method::POST, "/api/v1/reload", Some(json!({ "by": by })))
            .await
        {
            Ok(v) if cli.json => Ok(format!("{v}\n")),
            Ok(_) => Ok("reloaded\n".to_string()),
            Err(ClientError::Refused { body, .. }) if body.get("errors").is_some() => {
                let mut err =
                    String::from("reload failed; detour keeps serving the previous config:\n");
                for e in body["errors"].as_array().into_iter().flatten() {
                    let _ = writeln!(err, "  {}", e.as_str().unwrap_or_default());
                }
                return Outcome::fail(1, err);
            }
            Err(e) => Err(e),
        },
        Command::Announce => client
            .call(Method::GET, "/api/v1/announcement", None)
            .await
            .and_then(|v| match v["text"].as_str() {
                _ if cli.json => Ok(format!("{v}\n")),
                // The very words of /announcement.txt, which ends with a newline too.
                Some(t) => Ok(format!("{t}\n")),
                None => Err(ClientError::Protocol(format!(
                    "unexpected announcement: {v}"
                ))),
            }),
        Command::Notify(NotifyCmd::Test { sink }) => {
            let body = json!({ "sink": sink, "by": by });
            return match client
                .call(Method::POST, "/api/v1/notify/test", Some(body))
                .await
            {
                Ok(v) => notify_test(&v, cli.json),
                Err(e) => Outcome::fail(1, format!("error: {e}\n")),
            };
        }
        Command::Report {
            since,
            until,
            service,
        } => {
            let mut q = vec![];
            for (k, v) in [("since", since), ("until", until), ("service", service)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", urlencode(v)));
                }
            }
            client
                .call(
                    Method::GET,
                    &format!("/api/v1/report?{}", q.join("&")),
                    None,
                )
                .await
                .and_then(|v| {
                    if cli.json {
                        return Ok(format!("{v}\n"));
                    }
                    let r: crate::history::report::Report = serde_json::from_value(v)
                        .map_err(|e| ClientError::Protocol(format!("unexpected answer: {e}")))?;
                    let zone = crate::history::timeline::Zone::of(settings.timezone);
                    Ok(crate::history::report::render(&r, zone))
                })
        }
        Command::Simulate { states, at } => {
            super::rehearse::simulate(&client, states, at.as_deref(), cli.json).await
        }
        Command::Drill(cmd) => super::rehearse::drill(&client, cmd, &by, cli.json).await,
        Command::Explain { name, rtype, from } => {
            super::rehearse::explain(&client, name, rtype, from.as_deref(), cli.json).await
        }
        Command::Run
        | Command::Check
        | Command::Dnssec(_)
        | Command::Generate { .. }
        | Command::User(_) => unreachable_command(),
    };
    match result {
        Ok(out) => Outcome::ok(out),
        // A [[safety]] rule refused it: the operator must change course (exit 2, as for a
        // usage error), not retry.
        Err(e @ ClientError::Refused { status, .. }) if status == StatusCode::CONFLICT => {
            Outcome::fail(2, format!("error: {e}\n"))
        }
        Err(e) => Outcome::fail(1, format!("error: {e}\n")),
    }
}

/// Prints each sink's test result; exit 0 when every sink took the test event.
fn notify_test(v: &serde_json::Value, json: bool) -> Outcome {
    let results: Vec<crate::notify::TestResult> = match serde_json::from_value(v["results"].clone())
    {
        Ok(r) => r,
        Err(e) => return Outcome::fail(1, format!("error: unexpected answer: {e}\n")),
    };
    let failed = results.iter().filter(|r| !r.delivered).count();
    let mut out = String::new();
    if json {
        out = format!("{v}\n");
    } else {
        for r in &results {
            match &r.error {
                None => {
                    let _ = writeln!(
                        out,
                        "sink {} ({}): delivered in {} ms",
                        r.sink, r.target, r.ms
                    );
                }
                Some(e) => {
                    let _ = writeln!(
                        out,
                        "sink {} ({}): FAILED after {} ms: {e}",
                        r.sink, r.target, r.ms
                    );
                }
            }
        }
    }
    let (code, stderr) = if results.is_empty() {
        (
            1,
            "no [[notify]] sinks configured: nothing was sent\n".to_string(),
        )
    } else if failed > 0 {
        (1, format!("{failed} of {} sink(s) failed\n", results.len()))
    } else {
        (0, String::new())
    };
    Outcome {
        code,
        stdout: out,
        stderr,
    }
}

fn unreachable_command() -> Result<String, ClientError> {
    Err(ClientError::Protocol(
        "run and check are not client commands".into(),
    ))
}

pub(super) fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn incident_line(v: &serde_json::Value, json: bool, what: &str) -> String {
    if json {
        return format!("{v}\n");
    }
    match serde_json::from_value::<Incident>(v.clone()) {
        Ok(i) => format!(
            "incident {} {what} ({} updates)\n{}",
            i.id,
            i.updates.len(),
            notified_line(v)
        ),
        Err(_) => format!("{v}\n"),
    }
}

/// "notified: on call: Dana (SMS, email); ops@… (email)" from an answer's `notified` list.
fn notified_line(v: &serde_json::Value) -> String {
    let Some(list) = v["notified"].as_array() else {
        return String::new();
    };
    let names: Vec<String> = list
        .iter()
        .filter_map(|x| x.as_str())
        .map(|x| crate::text::escape(x).into_owned())
        .collect();
    if names.is_empty() {
        "notified: nobody (no [[notify]] sink wants this)\n".to_string()
    } else {
        format!("notified: {}\n", names.join("; "))
    }
}

/// `detour oncall` as text.
fn render_oncall(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let shift = |s: &serde_json::Value| {
        let name = crate::text::escape(s["name"].as_str().unwrap_or("?")).into_owned();
        let until = s["until"].as_str().map(local).unwrap_or_default();
        let from = s["from"].as_str().map(local).unwrap_or_default();
        let why = if s["exception"].as_bool() == Some(true) {
            " (exception)"
        } else {
            ""
        };
        (name, from, until, why)
    };
    let (name, _, until, why) = shift(&v["now"]);
    let _ = writeln!(out, "on call: {name}{why} until {until}");
    let (name, from, until, why) = shift(&v["next"]);
    let _ = writeln!(out, "next:    {name}{why} from {from} until {until}");
    let people: Vec<String> = v["people"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let mut ways = Vec::new();
            if let Some(x) = p["phone"].as_str() {
                ways.push(x.to_string());
            }
            if let Some(x) = p["email"].as_str() {
                ways.push(x.to_string());
            }
            crate::text::escape(&format!(
                "{} ({})",
                p["name"].as_str().unwrap_or("?"),
                ways.join(", ")
            ))
            .into_owned()
        })
        .collect();
    let _ = writeln!(
        out,
        "rotation: {}; unacknowledged pages escalate after {}",
        people.join(", "),
        v["escalate_after"].as_str().unwrap_or("?")
    );
    let page_line = |p: &serde_json::Value| {
        let id = p["id"].as_str().unwrap_or("?");
        let at = p["opened_at"].as_str().map(local).unwrap_or_default();
        let paged: Vec<&str> = p["paged"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .collect();
        let text = serde_json::from_value::<crate::notify::pages::Page>(p.clone())
            .map(|p| p.headline())
            .unwrap_or_default();
        let state = if let Some(by) = p["acked"]["by"].as_str() {
            format!("acknowledged by {by}")
        } else if p["ended"].is_array() {
            "ended by itself".to_string()
        } else {
            format!("level {}, paged {}", p["level"], paged.join(", "))
        };
        crate::text::escape(&format!("  {id}  {at}  {text} — {state}")).into_owned()
    };
    let open = v["open"].as_array().cloned().unwrap_or_default();
    if open.is_empty() {
        out.push_str("open pages: none\n");
    } else {
        let _ = writeln!(out, "open pages (acknowledge with `detour ack ID`):");
        for p in &open {
            let _ = writeln!(out, "{}", page_line(p));
        }
    }
    let ended = v["ended"].as_array().cloned().unwrap_or_default();
    if !ended.is_empty() {
        out.push_str("recent pages:\n");
        for p in &ended {
            let _ = writeln!(out, "{}", page_line(p));
        }
    }
    out
}

/// The zone the CLI shows times in: `[page] timezone`, as on the page, or the machine's.
static ZONE: std::sync::OnceLock<Option<chrono_tz::Tz>> = std::sync::OnceLock::new();

/// `t` as `pattern` in the display zone, labelled as the page labels it ("EST", "UTC").
fn stamp(t: DateTime<Utc>, pattern: &str) -> String {
    let (local, name) = crate::page::zoned(t, ZONE.get().copied().flatten());
    format!("{} {name}", local.format(pattern))
}

/// "2026-11-27 09:01 EST (12m ago)" in the display zone.
pub(super) fn local(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| when(t.with_timezone(&Utc)))
        .unwrap_or_else(|_| rfc3339.to_string())
}

fn when(t: DateTime<Utc>) -> String {
    format!("{} ({})", stamp(t, "%Y-%m-%d %H:%M"), ago(t))
}

/// "12 minutes ago", "in 3 hours", "less than a minute ago": the page's wording.
pub fn ago(t: DateTime<Utc>) -> String {
    let secs = (Utc::now() - t).num_seconds();
    if secs < 0 {
        format!("in {}", crate::text::span(-secs))
    } else {
        format!("{} ago", crate::text::span(secs))
    }
}

async fn status(client: &Client, json: bool, history: bool) -> Result<String, ClientError> {
    let v = client.call(Method::GET, "/api/v1/status", None).await?;
    let audit = if history {
        Some(
            client
                .call(Method::GET, "/api/v1/audit?limit=30", None)
                .await?,
        )
    } else {
        None
    };
    if json {
        let mut v = v;
        if let Some(a) = audit {
            v["history"] = a;
        }
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ));
    }
    let doc: StatusDoc = serde_json::from_value(v)
        .map_err(|e| ClientError::Protocol(format!("unexpected status document: {e}")))?;
    let entries: Option<Vec<audit::Entry>> = audit.and_then(|a| serde_json::from_value(a).ok());
    Ok(render_status(&doc, entries.as_deref()))
}

/// The human view of `detour status`: what DNS answers now and why, first.
///
/// Text that came from people or from probed servers (reasons, messages, names) is escaped:
/// a newline or an ESC sequence in it cannot forge a line or drive the terminal.
pub fn render_status(doc: &StatusDoc, history: Option<&[audit::Entry]>) -> String {
    use crate::text::escape as t;
    let mut o = String::new();
    let _ = writeln!(o, "DNS answers now");
    for r in &doc.records {
        let mark = if r.outage { "  <- outage page" } else { "" };
        let _ = writeln!(
            o,
            "  {} {} (TTL {})  {}{mark}\n      because {}",
            r.name,
            r.rtype,
            r.ttl,
            r.values.join(" "),
            t(&r.because)
        );
    }
    if doc.records.is_empty() {
        let _ = writeln!(o, "  (no dynamic records)");
    }
    let _ = writeln!(o, "\nServices");
    let w = doc
        .services
        .iter()
        .map(|s| s.id.len())
        .max()
        .unwrap_or(4)
        .max(7);
    for s in &doc.services {
        let _ = writeln!(
            o,
            "  {:<w$}  {:<11}  since {}  {}",
            s.id,
            // "Shown as slow": the word people use, beside the state's name.
            if s.state == ServiceState::Degraded {
                "slow".to_string()
            } else {
                s.state.to_string()
            },
            when(s.since),
            t(&s.reason)
        );
        if !s.views.is_empty() {
            let views: Vec<String> = s
                .views
                .iter()
                .map(|v| format!("{}: {}", t(&v.instance), v.sees))
                .collect();
            let _ = writeln!(
                o,
                "  {:<w$}  ({}; {})",
                "",
                views.join(", "),
                s.quorum.as_deref().unwrap_or("majority")
            );
        }
        if let Some(ov) = &s.override_ {
            let until = ov
                .until
                .map_or(String::new(), |u| format!(", until {}", when(u)));
            let by = t(ov.by.as_deref().unwrap_or("?"));
            let _ = writeln!(
                o,
                "  {:<w$}  override: {} by {by}{until}; checks say {} ({})",
                "",
                ServiceState::from(ov.state),
                s.observed,
                t(&s.observed_reason)
            );
        }
        for c in s
            .checks
            .iter()
            .filter(|c| c.verdict != "up" || c.awaiting_canary || c.grade.is_some())
        {
            let last = c
                .last
                .as_ref()
                .map_or("no result yet".to_string(), |l| t(&l.reason).into_owned());
            let graded;
            let verdict = if c.awaiting_canary {
                "failing, held until a canary passes"
            } else if let Some(g) = &c.grade {
                graded = format!(
                    "{} ({})",
                    c.verdict,
                    if g == "degraded" { "slow" } else { g }
                );
                &graded
            } else {
                &c.verdict
            };
            let _ = writeln!(o, "  {:<w$}  check {} {verdict}: {last}", "", c.id);
        }
    }
    for d in &doc.drills {
        let _ = writeln!(
            o,
            "DRILL in view {}: {} is {} until {} (by {}{}; detour drill stop {} ends it)",
            d.view,
            d.service,
            ServiceState::from(d.state),
            when(d.until),
            t(&d.by),
            if d.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", t(&d.reason))
            },
            d.service
        );
    }
    for b in &doc.safety {
        let _ = writeln!(
            o,
            "SAFETY RULE BROKEN: \"{}\": {}",
            t(&b.rule),
            t(&b.detail)
        );
    }
    if let Some(oc) = &doc.oncall {
        let _ = writeln!(
            o,
            "on call: {} until {}; next {}",
            t(&oc.now),
            when(oc.until),
            t(&oc.next)
        );
        for (id, headline) in &oc.open_pages {
            let _ = writeln!(
                o,
                "  UNACKNOWLEDGED page {id}: {} (detour ack {id})",
                t(headline)
            );
        }
    }
    if let Some(c) = &doc.cluster {
        let etcd = if c.etcd.reachable {
            format!("reachable since {}", when(c.etcd.since))
        } else {
            format!(
                "UNREACHABLE since {} ({}): serving the last agreed state; commands are refused",
                when(c.etcd.since),
                t(c.etcd.error.as_deref().unwrap_or("no answer"))
            )
        };
        let members: Vec<String> = c
            .members
            .iter()
            .map(|m| {
                let mut n = t(&m.name).into_owned();
                if m.frozen {
                    n.push_str(" (guard frozen: abstains)");
                }
                if m.config_differs {
                    n.push_str(" (different checks!)");
                }
                n
            })
            .collect();
        let _ = writeln!(
            o,
            "\nCluster: this is {}; leader {}; quorum {}\n  members: {}\n  etcd: {etcd}\n  view at revision {}, {} behind",
            t(&c.instance),
            t(c.leader.as_deref().unwrap_or("none")),
            c.quorum,
            if members.is_empty() {
                "none live".to_string()
            } else {
                members.join(", ")
            },
            c.revision,
            c.lag
        );
    }
    if doc.guard.frozen {
        let _ = writeln!(
            o,
            "\nGuard: FROZEN since {}: every canary is down, so detour distrusts its own view and makes no new redirects",
            when(doc.guard.since)
        );
    } else if !doc.guard.canaries.is_empty() {
        let up = doc
            .guard
            .canaries
            .iter()
            .filter(|c| c.verdict != "down")
            .count();
        let _ = writeln!(
            o,
            "\nGuard: ok ({up} of {} canaries up)",
            doc.guard.canaries.len()
        );
    } else {
        let _ = writeln!(o, "\nGuard: no canaries configured");
    }
    if !doc.incidents.is_empty() {
        let _ = writeln!(o, "\nOpen incidents");
        for i in &doc.incidents {
            let _ = writeln!(
                o,
                "  {}  {}  opened {}",
                i.id,
                i.services.join(", "),
                when(i.opened_at)
            );
            for u in i.newest_first() {
                let _ = writeln!(o, "      {}  {}", stamp(u.at, "%H:%M"), t(&u.message));
            }
        }
    }
    if !doc.maintenance.is_empty() {
        let _ = writeln!(o, "\nMaintenance");
        for m in &doc.maintenance {
            let now = if m.active { " (under way)" } else { "" };
            let _ = writeln!(
                o,
                "  {} to {}{now}: {} — {}",
                when(m.start),
                stamp(m.end, "%Y-%m-%d %H:%M"),
                m.services.join(", "),
                t(&m.message)
            );
        }
    }
    if let Some(r) = &doc.reload {
        if r.ok {
            let _ = writeln!(o, "\nLast reload: ok, {}", when(r.at));
        } else {
            let _ = writeln!(
                o,
                "\nLast reload: FAILED {}; still serving the previous config:",
                when(r.at)
            );
            for e in &r.errors {
                let _ = writeln!(o, "  {}", t(e));
            }
        }
    }
    for p in &doc.problems {
        let _ = writeln!(o, "\nProblem: {}", t(p));
    }
    if let Some(h) = history {
        let _ = writeln!(o, "\nHistory");
        for e in h {
            let what = t(e.service.as_deref().or(e.incident.as_deref()).unwrap_or(""));
            let _ = writeln!(
                o,
                "  {}  {:<20} {:<10} {:<10} {}",
                stamp(e.time, "%Y-%m-%d %H:%M:%S"),
                t(&e.action),
                what,
                t(&e.who),
                t(&e.reason)
            );
        }
    }
    o
}
