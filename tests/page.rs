//! The outage page, the status page and their feeds, over real HTTP on loopback: a detour
//! started in-process whose `mls` record points at the outage page because its services'
//! checks fail (a closed port) or because an operator says so.

mod common;
#[path = "common/page.rs"]
mod page;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{Fixture, Server, page_config, udp_a};
use detour::daemon;
use detour::overrides::{Forced, Override};
use detour::states::{Actor, IncidentOp};

use page::*;
use serde_json::Value;

const ATOM: &str = "http://www.w3.org/2005/Atom";

/// `page_zone()` plus a record for the docs service (in maintenance in the rich config).
fn rich_zone() -> String {
    let zone = page_zone();
    format!(
        "{zone}\n[[dynamic]]\nname = \"docs\"\ntype = \"A\"\nttl = 30\nanswers = [ {{ if_up = \"docs\", values = [\"127.0.0.30\"] }} ]\notherwise = [\"127.0.0.80\"]\n"
    )
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

/// sso, mls and mls_dr fail their checks (a closed port), so `mls` points at the outage
/// page; forms depends on sso (impacted), tax is up with a window ahead, docs is in a
/// window now.
fn rich_config() -> String {
    let closed = closed_port();
    let now = Utc::now();
    let day = chrono::Duration::days(1);
    let hour = chrono::Duration::hours(1);
    page_config(
        "",
        &format!(
            r#"
[page]
title = "Example Realty — system status"
contact = "Help desk: 555-0100 (24/7)"
links = [{{ label = "Agent handbook", url = "https://handbook.example.test/" }}]

[services.sso]
name = "MLS Sign-On"
url = "https://sso.example.test/"
description = "Single sign-on portal"
check = {{ type = "tcp", address = "{closed}", interval = "5s", rise = 2 }}

[services.mls]
name = "MLS"
url = "https://mls.example.test/"
description = "Listings, search and showings"
depends_on = ["sso"]
check = {{ type = "tcp", address = "{closed}", interval = "20s", rise = 3 }}

[services.mls_dr]
name = "MLS standby"
check = {{ type = "tcp", address = "{closed}", interval = "5s", rise = 2 }}

[services.forms]
name = "Forms"
url = "https://forms.example.net/login"
description = "Transaction forms: log in directly at this address"
depends_on = ["sso"]

[services.tax]
name = "Tax records"
url = "https://tax.example.net/"
description = "County tax data"

[services.docs]
name = "Document library"
url = "https://docs.example.net/"

[[maintenance]]
services = ["tax"]
start = "{}"
end = "{}"
message = "Vendor upgrade"

[[maintenance]]
services = ["docs"]
start = "{}"
end = "{}"
message = "Index rebuild"
"#,
            rfc3339(now + day),
            rfc3339(now + day + hour * 2),
            rfc3339(now - hour),
            rfc3339(now + hour),
        ),
    )
}

struct Rich {
    s: Server,
    page: std::net::SocketAddr,
    incident: String,
}

async fn actor() -> Actor {
    Actor {
        who: "page-test".into(),
    }
}

/// The rich server with one incident about the MLS: an opening message and an update.
async fn rich() -> Rich {
    let s = Server::start(&rich_config(), &[("example.test.toml", &rich_zone())]).await;
    let page = addr_of(&s.running.page_addrs()[0]);
    let c = s.running.control();
    let inc = c
        .incident(
            IncidentOp::Open {
                services: vec!["mls".into()],
                message: "First: we are looking into it.".into(),
            },
            actor().await,
        )
        .await
        .expect("incident opens");
    // Distinct timestamps, so "newest first" is about time, not order of insertion.
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.incident(
        IncidentOp::Update {
            id: inc.id.clone(),
            message: "Second: the vendor is restoring the database.".into(),
        },
        actor().await,
    )
    .await
    .expect("incident update");
    Rich {
        s,
        page,
        incident: inc.id,
    }
}

fn section<'a>(body: &'a str, from: &str, to: &str) -> &'a str {
    let a = body
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} missing"));
    let b = body[a..].find(to).map_or(body.len(), |b| a + b);
    &body[a..b]
}

fn assert_self_contained(body: &str) {
    for bad in [
        "<script",
        "<link",
        "@import",
        "src=\"http",
        "url(http",
        "src=\"//",
    ] {
        assert!(!body.contains(bad), "page has {bad:?}:\n{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirected_name_gets_a_503_page_that_says_everything_in_order() {
    let r = rich().await;
    assert_eq!(udp_a(r.s.addr, "mls.example.test.").await, ["127.0.0.80"]);
    let resp = get(r.page, "mls.example.test", "/").await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(resp.header("retry-after"), Some("60"), "20s x rise 3");
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = resp.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'"), "{csp}");

    let b = &resp.body;
    assert!(b.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"), "{b}");
    assert!(b.contains("<meta http-equiv=\"refresh\" content=\"45\">"));
    assert!(b.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"));
    assert_self_contained(b);

    // The services' state began at start: the page says since when, in local time and
    // as a span.
    let snap = r.s.running.snapshots().load_full();
    let since = snap.health.services["mls_dr"]
        .since
        .max(snap.health.services["mls"].since);
    let iso = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let local = since
        .with_timezone(&chrono::Local)
        .format("%H:%M")
        .to_string();
    resp.in_order(&[
        "<h1 id=\"what-h\">MLS is unavailable</h1>",
        &format!("Unavailable since <time datetime=\"{iso}\">{local} "),
        "(for less than a minute)",
        "The address mls.example.test leads to this page",
        "<h2 id=\"why-h\">What is going on</h2>",
        "<h3>Unplanned outage</h3>",
        "Automatic checks found MLS not working",
        "Last check: connect refused",
        "<h3>Also: Unplanned outage</h3>",
        "Automatic checks found MLS standby not working",
        "<h2 id=\"updates-h\">Updates from the team</h2>",
        "Investigating",
        "Second: the vendor is restoring the database.",
        "First: we are looking into it.",
        "<h2 id=\"works-h\">What still works</h2>",
        "<a href=\"https://forms.example.net/login\">Forms</a>",
        "Working, limited access",
        "Transaction forms: log in directly at this address",
        "It works, but not through the usual way in (MLS Sign-On is unavailable)",
        "<a href=\"https://tax.example.net/\">Tax records</a>",
        "County tax data",
        "<h2 id=\"links-h\">Useful links</h2>",
        "<a href=\"https://handbook.example.test/\">Agent handbook</a>",
        "<h2 id=\"help-h\">Need help?</h2>",
        "Help desk: 555-0100 (24/7)",
        "Page generated at <time datetime=",
        "It refreshes itself every 45 seconds.",
    ]);
    // Only services that work are offered: not the sign-on portal, not the document
    // library in maintenance, not the MLS itself.
    let works = section(b, "id=\"works-h\"", "id=\"links-h\"");
    for absent in [
        "https://sso.example.test/",
        "Document library",
        "https://mls.example.test/",
    ] {
        assert!(!works.contains(absent), "{absent} offered:\n{works}");
    }
    // Headings go h1, h2, h3 without skipping.
    assert_eq!(b.matches("<h1").count(), 1);
    r.s.running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_path_method_and_spelling_of_the_name_gets_the_page() {
    let r = rich().await;
    for host in [
        "mls.example.test",
        "MLS.Example.TEST",
        "mls.example.test.",
        "mls.example.test:8080",
        "MLS.EXAMPLE.TEST.:443",
        "www.example.test",
    ] {
        for path in [
            "/",
            "/login?next=/x",
            "/status.json",
            "/feed.atom",
            "/logo",
            "/announcement.txt",
            "/announcement.wav",
            "/a/b/c",
        ] {
            let resp = get(r.page, host, path).await;
            assert_eq!(resp.status, 503, "{host}{path}");
            assert!(
                resp.body
                    .contains("<h1 id=\"what-h\">MLS is unavailable</h1>"),
                "{host}{path}"
            );
            assert_eq!(resp.header("retry-after"), Some("60"), "{host}{path}");
        }
    }
    let post = request(r.page, "POST", "mls.example.test", "/login", &[]).await;
    assert_eq!(post.status, 503);
    let head = request(r.page, "HEAD", "mls.example.test", "/", &[]).await;
    assert_eq!(head.status, 503);
    assert!(head.body.is_empty());
    assert_eq!(head.header("retry-after"), Some("60"));

    // Any other name, or none we serve, gets the status page.
    for host in [
        "status.example.test",
        "example.test",
        "mlsx.example.test",
        "a.mls.example.test",
        "127.0.0.1",
        &r.page.to_string(),
    ] {
        let resp = get(r.page, host, "/").await;
        assert_eq!(resp.status, 200, "{host}");
        assert!(resp.body.contains("id=\"services-h\""), "{host}");
        assert_eq!(resp.header("retry-after"), None, "{host}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn accept_json_gets_the_same_facts_as_json_with_503() {
    let r = rich().await;
    let resp = request(
        r.page,
        "GET",
        "mls.example.test",
        "/anything",
        &[("Accept", "application/json")],
    )
    .await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("retry-after"), Some("60"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let v: Value = serde_json::from_str(&resp.body).expect("JSON");
    assert_eq!(v["status"], "unavailable");
    assert_eq!(v["host"], "mls.example.test");
    assert_eq!(v["record"], "mls.example.test.");
    assert_eq!(v["service"], "mls");
    assert_eq!(v["name"], "MLS");
    assert!(DateTime::parse_from_rfc3339(v["since"].as_str().unwrap()).is_ok());
    assert!(v["for_seconds"].as_i64().unwrap() >= 0);
    let un = v["unavailable"].as_array().unwrap();
    assert_eq!(un.len(), 2);
    assert_eq!(un[0]["id"], "mls");
    assert_eq!(un[0]["state"], "down");
    assert_eq!(un[0]["cause"], "unplanned");
    assert_eq!(un[0]["reason"], "connect refused");
    assert_eq!(un[0]["standby"], false);
    assert_eq!(un[1]["id"], "mls_dr");
    assert_eq!(un[1]["standby"], true);
    let updates = v["updates"].as_array().unwrap();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0]["incident"], r.incident.as_str());
    assert!(
        updates[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Second")
    );
    assert!(updates[1]["message"].as_str().unwrap().starts_with("First"));
    let working: Vec<&str> = v["working"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(working, ["forms", "tax"]);
    assert_eq!(v["working"][0]["state"], "impacted");
    assert_eq!(v["working"][0]["url"], "https://forms.example.net/login");
    assert!(
        v["working"][0]["note"]
            .as_str()
            .unwrap()
            .contains("not through the usual way in")
    );
    assert_eq!(v["working"][1]["state"], "up");
    assert!(v["working"][1].get("note").is_none());
    assert_eq!(v["links"][0]["label"], "Agent handbook");
    assert_eq!(v["contact"], "Help desk: 555-0100 (24/7)");
    assert_eq!(v["retry_after"], 60);

    // What browsers send gets HTML.
    let html = request(
        r.page,
        "GET",
        "mls.example.test",
        "/",
        &[(
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )],
    )
    .await;
    assert_eq!(html.status, 503);
    assert!(
        html.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn planned_maintenance_is_said_with_its_end() {
    let r = rich().await;
    let resp = get(r.page, "docs.example.test", "/").await;
    assert_eq!(resp.status, 503);
    assert_eq!(
        resp.header("retry-after"),
        Some("30"),
        "no checks: the floor"
    );
    let end = r.s.running.snapshots().load().config.maintenance[1]
        .end
        .with_timezone(&Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    resp.in_order(&[
        "Document library is unavailable",
        "<h3>Planned maintenance</h3>",
        "Document library is down for planned maintenance",
        "Work being done: <span class=\"msg\">Index rebuild</span>",
        &format!("Expected back by <time datetime=\"{end}\">"),
        "No updates yet.",
        "What still works",
    ]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_lists_every_service_incident_and_window() {
    let r = rich().await;
    let resp = get(r.page, "status.example.test", "/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("cache-control"), Some("no-cache"));
    assert!(
        resp.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let b = &resp.body;
    assert_self_contained(b);
    assert!(b.contains("<meta http-equiv=\"refresh\" content=\"45\">"));
    resp.in_order(&[
        "<h1 id=\"sum-h\">5 services have a problem</h1>",
        "<h2 id=\"services-h\">Services</h2>",
        // In id order: docs, forms, mls, mls_dr, sso, tax.
        "id=\"service-docs\"",
        "Document library",
        "Maintenance",
        "Maintenance since <time datetime=",
        "Why: <span class=\"msg\">Index rebuild</span>",
        "id=\"service-forms\"",
        "Working, limited access",
        "It works, but not through the usual way in (MLS Sign-On is unavailable)",
        "id=\"service-mls\"",
        "Unavailable",
        "Why: <span class=\"msg\">connect refused</span>",
        "id=\"service-mls_dr\"",
        "id=\"service-sso\"",
        "Unavailable since",
        "id=\"service-tax\"",
        "<span class=\"badge ok\">Working</span>",
        "<h2 id=\"incidents-h\">Open incidents</h2>",
        &format!("id=\"incident-{}\"", r.incident),
        "Second: the vendor",
        "First: we are looking",
        "<h2 id=\"maint-h\">Planned maintenance</h2>",
        "Document library",
        "Under way",
        "Index rebuild",
        "Tax records",
        "Planned",
        "Vendor upgrade",
        "Need help?",
        "Page generated at",
        "href=\"/feed.atom\"",
    ]);
    // The working tax service shows no reason line.
    let tax = section(b, "id=\"service-tax\"", "</li>");
    assert!(!tax.contains("Why:"), "{tax}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_json_is_the_status_document() {
    let r = rich().await;
    let resp = get(r.page, "status.example.test", "/status.json").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    // It is exactly detour's status document (public view).
    let doc: detour::status::StatusDoc = serde_json::from_str(&resp.body).expect("a StatusDoc");
    assert!(doc.reload.is_none() && doc.problems.is_empty());
    let v: Value = serde_json::from_str(&resp.body).unwrap();
    for key in [
        "generated_at",
        "generation",
        "services",
        "records",
        "incidents",
        "maintenance",
        "guard",
        "zones",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert!(v.get("reload").is_none() && v.get("problems").is_none());
    let ids: Vec<&str> = doc.services.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["docs", "forms", "mls", "mls_dr", "sso", "tax"]);
    let state = |id: &str| {
        v["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state("mls"), "down");
    assert_eq!(state("forms"), "impacted");
    assert_eq!(state("docs"), "maintenance");
    assert_eq!(state("tax"), "up");
    let mls = doc
        .records
        .iter()
        .find(|r| r.name == "mls.example.test.")
        .unwrap();
    assert!(mls.outage);
    assert_eq!(mls.values, ["127.0.0.80"]);
    assert_eq!(doc.incidents.len(), 1);
    assert_eq!(doc.incidents[0].updates.len(), 2);
    assert_eq!(doc.maintenance.len(), 2);
    assert!(doc.maintenance[0].active && !doc.maintenance[1].active);
    assert!(!doc.guard.frozen);
    assert_eq!(doc.zones[0].origin, "example.test.");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_is_atom_newest_first_with_tag_ids() {
    let r = rich().await;
    let resp = get(r.page, "status.example.test", "/feed.atom").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/atom+xml; charset=utf-8")
    );
    assert!(
        resp.body
            .starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>")
    );
    let feed = parse_xml(&resp.body).unwrap_or_else(|e| panic!("{e}:\n{}", resp.body));
    assert_eq!(feed.name, "feed");
    assert_eq!(feed.attr("xmlns"), Some(ATOM));
    assert!(feed.text_of("id").starts_with("tag:example.test,"));
    assert!(feed.text_of("title").contains("Example Realty"));
    assert!(DateTime::parse_from_rfc3339(feed.text_of("updated")).is_ok());
    assert!(feed.child("author").and_then(|a| a.child("name")).is_some());
    let this = feed
        .all("link")
        .into_iter()
        .find(|l| l.attr("rel") == Some("self"))
        .expect("a self link");
    assert_eq!(
        this.attr("href"),
        Some("http://status.example.test/feed.atom")
    );

    let entries = feed.all("entry");
    let mut ids = std::collections::BTreeSet::new();
    let mut last: Option<DateTime<chrono::FixedOffset>> = None;
    for e in &entries {
        let id = e.text_of("id");
        assert!(id.starts_with("tag:example.test,20"), "{id}");
        assert!(ids.insert(id.to_string()), "duplicate id {id}");
        assert!(!e.text_of("title").is_empty());
        assert!(e.child("content").is_some());
        let t = DateTime::parse_from_rfc3339(e.text_of("updated")).expect("RFC 3339");
        if let Some(prev) = last {
            assert!(t <= prev, "entries are newest first");
        }
        last = Some(t);
    }
    // The newest is the incident's update; the feed's updated is its time.
    assert_eq!(
        entries[0].child("category").unwrap().attr("term"),
        Some("incident")
    );
    assert!(entries[0].text_of("title").contains("Second: the vendor"));
    assert_eq!(feed.text_of("updated"), entries[0].text_of("updated"));
    let titles: Vec<&str> = entries.iter().map(|e| e.text_of("title")).collect();
    let first_msg = titles
        .iter()
        .position(|t| t.contains("First: we are"))
        .unwrap();
    assert!(first_msg > 0);
    for t in [
        "MLS is unavailable",
        "MLS Sign-On is unavailable",
        "Forms works, but not through the usual way in",
        "Document library is in maintenance",
    ] {
        assert!(titles.contains(&t), "{t} missing from {titles:?}");
    }
    // Coming up at start is not news.
    assert!(!titles.contains(&"Tax records is working"), "{titles:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn summary_json_follows_the_statuspage_format() {
    let r = rich().await;
    let resp = get(r.page, "status.example.test", "/api/v2/summary.json").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    let v: Value = serde_json::from_str(&resp.body).unwrap();
    let page = &v["page"];
    for k in ["id", "name", "url", "time_zone", "updated_at"] {
        assert!(page[k].is_string(), "page.{k}: {page}");
    }
    assert_eq!(page["url"], "http://status.example.test/");
    assert_eq!(v["status"]["indicator"], "major");
    assert_eq!(v["status"]["description"], "Partial System Outage");
    let comps = v["components"].as_array().unwrap();
    assert_eq!(comps.len(), 6);
    let status = |id: &str| {
        comps.iter().find(|c| c["id"] == id).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("tax"), "operational");
    assert_eq!(status("forms"), "degraded_performance");
    assert_eq!(status("mls"), "major_outage");
    assert_eq!(status("docs"), "under_maintenance");
    for (i, c) in comps.iter().enumerate() {
        assert_eq!(c["position"], i + 1);
        assert_eq!(c["group_id"], Value::Null);
        assert_eq!(c["group"], false);
        assert_eq!(c["only_show_if_degraded"], false);
        assert_eq!(c["page_id"], page["id"]);
        for k in ["name", "created_at", "updated_at"] {
            assert!(c[k].is_string(), "{k}: {c}");
        }
        assert!(c["showcase"].is_boolean() && c.get("description").is_some());
    }
    let inc = &v["incidents"][0];
    assert_eq!(inc["id"], r.incident.as_str());
    assert_eq!(inc["status"], "investigating");
    assert_eq!(inc["impact"], "major");
    assert_eq!(inc["resolved_at"], Value::Null);
    assert_eq!(inc["monitoring_at"], Value::Null);
    assert!(inc["name"].as_str().unwrap().starts_with("MLS: First"));
    for k in [
        "created_at",
        "updated_at",
        "started_at",
        "shortlink",
        "page_id",
    ] {
        assert!(inc[k].is_string(), "{k}: {inc}");
    }
    let ups = inc["incident_updates"].as_array().unwrap();
    assert_eq!(ups.len(), 2);
    assert!(ups[0]["body"].as_str().unwrap().starts_with("Second"));
    for u in ups {
        for k in [
            "id",
            "status",
            "body",
            "incident_id",
            "created_at",
            "updated_at",
            "display_at",
        ] {
            assert!(u[k].is_string(), "{k}: {u}");
        }
        assert_eq!(u["deliver_notifications"], true);
        assert!(u.get("affected_components").is_some());
    }
    assert_eq!(inc["components"][0]["id"], "mls");
    let sm = v["scheduled_maintenances"].as_array().unwrap();
    assert_eq!(sm.len(), 2);
    assert_eq!(sm[0]["status"], "in_progress");
    assert_eq!(sm[0]["name"], "Index rebuild");
    assert_eq!(sm[0]["components"][0]["id"], "docs");
    assert_eq!(sm[1]["status"], "scheduled");
    assert_eq!(sm[1]["impact"], "maintenance");
    assert!(sm[1]["scheduled_for"].is_string() && sm[1]["scheduled_until"].is_string());

    let st = get(r.page, "status.example.test", "/api/v2/status.json").await;
    let st: Value = serde_json::from_str(&st.body).unwrap();
    assert_eq!(st["status"], v["status"]);
    assert_eq!(st["page"]["id"], page["id"]);
}

/// Up at start (no checks); operators then take both MLS entries out.
const OPERATOR_CONFIG: &str = r#"
[page]
title = "Realty & Co <status>"
contact = "Call <b>555-0100</b>"
links = [
  { label = "Handbook", url = "https://handbook.example.test/" },
  { label = "Quoted \"<link>\"", url = "https://example.test/?a=\"<b>\"" },
]

[services.mls]
name = "MLS"
url = "https://mls.example.test/"

[services.mls_dr]
name = "MLS standby"

[services.forms]
name = "Forms"
url = "https://forms.example.net/login?x=<y>&z=\""
description = "<img src=x onerror=alert(3)>"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn operator_decisions_are_said_and_everything_operators_type_is_escaped() {
    let s = Server::start(
        &page_config("", OPERATOR_CONFIG),
        &[("example.test.toml", &page_zone())],
    )
    .await;
    let page = addr_of(&s.running.page_addrs()[0]);
    // Up: DNS answers the MLS and the name gets the status page.
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    assert_eq!(get(page, "mls.example.test", "/").await.status, 200);

    let c = s.running.control();
    let forced = |state, reason: &str| {
        Some(
            Override::new(state, reason)
                .until(Utc::now() + chrono::Duration::hours(2))
                .by("alice")
                .set_at(Utc::now()),
        )
    };
    c.set_override(
        "mls",
        forced(
            Forced::Down,
            "<script>alert(1)</script> Vendor & co restore",
        ),
        actor().await,
    )
    .await
    .unwrap();
    c.set_override(
        "mls_dr",
        forced(Forced::Maintenance, "DR drill"),
        actor().await,
    )
    .await
    .unwrap();
    let inc = c
        .incident(
            IncidentOp::Open {
                services: vec!["mls".into()],
                message: "Update with <script>steal()</script> & \"quotes\"".into(),
            },
            actor().await,
        )
        .await
        .unwrap();
    // The page and DNS change together: both read the Snapshot set_override published.
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.80"]);
    let resp = get(page, "mls.example.test", "/").await;
    assert_eq!(resp.status, 503);
    assert_eq!(
        resp.header("retry-after"),
        Some("30"),
        "no checks: the floor"
    );
    let b = &resp.body;
    resp.in_order(&[
        "<title>MLS is unavailable · Realty &amp; Co &lt;status&gt;</title>",
        "<h3>Operator decision</h3>",
        "An operator has taken MLS out of service",
        "Reason given: <span class=\"msg\">&lt;script&gt;alert(1)&lt;/script&gt; Vendor &amp; co restore</span>",
        "Expected back by",
        "<h3>Also: Operator decision</h3>",
        "An operator has taken MLS standby out of service for maintenance",
        "DR drill",
        "Update with &lt;script&gt;steal()&lt;/script&gt; &amp; &quot;quotes&quot;",
        "What still works",
        "&lt;img src=x onerror=alert(3)&gt;",
        "Call &lt;b&gt;555-0100&lt;/b&gt;",
    ]);
    assert!(!b.contains("<script"), "{b}");
    assert!(!b.contains("<img src=x"), "{b}");
    // javascript: URLs are refused by the config (tests/config.rs); the ones allowed are
    // escaped inside attributes.
    assert!(!b.contains("href=\"https://example.test/?a=\"<b>"), "{b}");
    assert!(b.contains("Quoted &quot;&lt;link&gt;&quot;"), "{b}");
    assert!(b.contains("<a href=\"https://handbook.example.test/\">Handbook</a>"));

    // The same text on the status page, in the feed and in JSON.
    let status = get(page, "status.example.test", "/").await;
    assert!(
        status
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;")
    );
    assert!(status.body.contains("Operator's reason:"));
    assert!(!status.body.contains("<script"));
    let feed = get(page, "status.example.test", "/feed.atom").await;
    assert!(!feed.body.contains("<script"));
    let root = parse_xml(&feed.body).unwrap_or_else(|e| panic!("{e}:\n{}", feed.body));
    let newest = &root.all("entry")[0];
    assert!(
        newest
            .text_of("content")
            .contains("<script>steal()</script> & \"quotes\"")
    );
    let json = request(
        page,
        "GET",
        "mls.example.test",
        "/",
        &[("Accept", "application/json")],
    )
    .await;
    let v: Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(v["unavailable"][0]["cause"], "operator");
    assert_eq!(
        v["unavailable"][0]["reason"],
        "<script>alert(1)</script> Vendor & co restore"
    );
    assert!(v["unavailable"][0]["until"].is_string());
    assert_eq!(v["unavailable"][1]["state"], "maintenance");
    assert_eq!(v["updates"][0]["incident"], inc.id.as_str());

    // Cleared: the name is back to the status page as DNS goes back to the MLS.
    c.set_override("mls", None, actor().await).await.unwrap();
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    assert_eq!(get(page, "mls.example.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_logo_is_served_and_inlined() {
    // A tiny PNG: the signature is what detour looks at.
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRlogo-bytes".to_vec();
    let cfg = page_config(
        "",
        "[page]\nlogo = \"logo.png\"\n[services.mls]\n[services.mls_dr]\n",
    );
    let f = Fixture::new(&cfg, &[("example.test.toml", &page_zone())]);
    std::fs::write(f.dir.path().join("logo.png"), &png).unwrap();
    let running = daemon::start(f.load(), &f.config_path()).await.unwrap();
    let page = addr_of(&running.page_addrs()[0]);
    let resp = get(page, "status.example.test", "/logo").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("image/png"));
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(resp.bytes, png);
    let status = get(page, "status.example.test", "/").await;
    assert!(status.body.contains("<img src=\"/logo\" alt=\"\">"));

    let c = running.control();
    for id in ["mls", "mls_dr"] {
        c.set_override(id, Some(Override::new(Forced::Down, "")), actor().await)
            .await
            .unwrap();
    }
    // On the outage page every path is the page, so the logo travels inside it.
    let outage = get(page, "mls.example.test", "/").await;
    assert_eq!(outage.status, 503);
    let start = outage
        .body
        .find("<img src=\"data:image/png;base64,")
        .expect("inline logo")
        + "<img src=\"data:image/png;base64,".len();
    let end = start + outage.body[start..].find('"').unwrap();
    assert_eq!(base64_decode(&outage.body[start..end]), png);
    assert!(outage.body.contains("No reason was given."));
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn status_host_methods_and_unknown_paths() {
    let r = rich().await;
    let head = request(r.page, "HEAD", "status.example.test", "/", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = request(r.page, "POST", "status.example.test", "/", &[]).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(
        get(r.page, "status.example.test", "/nope").await.status,
        404
    );
    assert_eq!(
        get(r.page, "status.example.test", "/logo").await.status,
        404,
        "no logo set"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_changes_the_page_with_the_snapshot() {
    let s = Server::start(
        &page_config(
            "",
            "[page]\ntitle = \"Before\"\n[services.mls]\n[services.mls_dr]\n",
        ),
        &[("example.test.toml", &page_zone())],
    )
    .await;
    let page = addr_of(&s.running.page_addrs()[0]);
    assert!(get(page, "x", "/").await.body.contains("Before"));
    common::write(
        &s.fixture.config_path(),
        &page_config(
            "",
            "[page]\ntitle = \"After\"\n[services.mls]\n[services.mls_dr]\n",
        ),
    );
    s.running.reload().await.expect("reload");
    let body = get(page, "x", "/").await.body;
    assert!(body.contains("After") && !body.contains("Before"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn times_are_shown_in_the_configured_zone() {
    // Asia/Tokyo has no daylight saving time: always JST, UTC+9.
    let s = Server::start(
        &page_config(
            "",
            "[page]\ntimezone = \"Asia/Tokyo\"\n[services.mls]\n[services.mls_dr]\n",
        ),
        &[("example.test.toml", &page_zone())],
    )
    .await;
    let page = addr_of(&s.running.page_addrs()[0]);
    let tokyo = || {
        (Utc::now() + chrono::Duration::hours(9))
            .format(">%H:")
            .to_string()
    };
    let before = tokyo();
    let body = get(page, "status.example.test", "/").await.body;
    let after = tokyo();
    assert!(
        (body.contains(&before) || body.contains(&after)) && body.contains(" JST today"),
        "{body}"
    );
    assert!(!body.contains(" UTC today"), "{body}");
    // And summary.json names the zone, as Statuspage's does.
    let v: serde_json::Value = serde_json::from_str(
        &get(page, "status.example.test", "/api/v2/summary.json")
            .await
            .body,
    )
    .unwrap();
    assert_eq!(v["page"]["time_zone"], "Asia/Tokyo");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_page_port_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = page_config("", "[services.mls]\n[services.mls_dr]\n").replace(
        "page_listen = [\"127.0.0.1:0\"]",
        &format!("page_listen = [\"{addr}\"]"),
    );
    let f = Fixture::new(&cfg, &[("example.test.toml", &page_zone())]);
    let err = match daemon::start(f.load(), &f.config_path()).await {
        Ok(_) => panic!("started on a taken port"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot start the outage page"), "{err}");
    assert!(err.contains(&addr.to_string()), "{err}");
}

/// A CA and a leaf certificate for `name`, written as PEM files in `dir`.
fn leaf(
    dir: &std::path::Path,
    ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.signed_by(&key, ca).unwrap();
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    // The chain: leaf then CA, as certificate files usually are.
    std::fs::write(&c, format!("{}{}", cert.pem(), ca.pem())).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// Connects with SNI `name` and returns the names the served leaf certificate covers.
async fn served_names(
    addr: std::net::SocketAddr,
    name: &str,
    roots: &rustls::RootCertStore,
) -> Vec<String> {
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let sni = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let tls = connector
        .connect(sni, tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS with SNI {name}: {e}"));
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::DNSName(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn https_chooses_the_certificate_by_sni_beside_http() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "detour page test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let (c1, k1) = leaf(certs.path(), &ca, "status.example.test");
    let (c2, k2) = leaf(certs.path(), &ca, "mls.example.test");
    let cfg = page_config(
        "",
        &format!(
            "[page]\ntitle = \"TLS test\"\n[page.tls]\nlisten = [\"127.0.0.1:0\"]\ncerts = [ {{ cert = \"{}\", key = \"{}\" }}, {{ cert = \"{}\", key = \"{}\" }} ]\n[services.mls]\nname = \"MLS\"\n[services.mls_dr]\n",
            c1.display(),
            k1.display(),
            c2.display(),
            k2.display()
        ),
    );
    let s = Server::start(&cfg, &[("example.test.toml", &page_zone())]).await;
    let urls = s.running.page_addrs().to_vec();
    assert_eq!(urls.len(), 2, "{urls:?}");
    assert!(
        urls[0].starts_with("http://") && urls[1].starts_with("https://"),
        "{urls:?}"
    );
    let http = addr_of(&urls[0]);
    let https = addr_of(&urls[1]);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    assert_eq!(
        served_names(https, "status.example.test", &roots).await,
        ["status.example.test"]
    );
    assert_eq!(
        served_names(https, "mls.example.test", &roots).await,
        ["mls.example.test"]
    );
    // Case does not matter.
    assert_eq!(
        served_names(https, "MLS.Example.Test", &roots).await,
        ["mls.example.test"]
    );

    // Operators take the MLS out: over HTTPS the name gets the outage page with a
    // certificate for it, and the status name the status page.
    for id in ["mls", "mls_dr"] {
        s.running
            .control()
            .set_override(
                id,
                Some(Override::new(Forced::Down, "TLS test")),
                actor().await,
            )
            .await
            .unwrap();
    }
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .resolve("mls.example.test", https)
        .resolve("status.example.test", https)
        .no_proxy()
        .build()
        .unwrap();
    let port = https.port();
    let outage = client
        .get(format!("https://mls.example.test:{port}/some/path"))
        .send()
        .await
        .expect("HTTPS to the outage name verifies against its certificate");
    assert_eq!(outage.status(), 503);
    assert_eq!(outage.headers()["retry-after"], "30");
    let text = outage.text().await.unwrap();
    assert!(text.contains("MLS is unavailable"), "{text}");
    let status = client
        .get(format!("https://status.example.test:{port}/status.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let doc: detour::status::StatusDoc =
        serde_json::from_str(&status.text().await.unwrap()).unwrap();
    assert_eq!(doc.services.len(), 2);
    // The feed's links say https.
    let feed = client
        .get(format!("https://status.example.test:{port}/feed.atom"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(feed.contains(&format!(
        "href=\"https://status.example.test:{port}/feed.atom\""
    )));

    // Plain HTTP answers beside it, from the same Snapshot.
    assert_eq!(get(http, "mls.example.test", "/").await.status, 503);
    assert_eq!(get(http, "status.example.test", "/").await.status, 200);

    let t = Instant::now();
    s.running.shutdown().await.expect("clean shutdown");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_certificate_fails_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("broken.crt");
    std::fs::write(&cert, "not a certificate").unwrap();
    let cfg = page_config(
        "",
        &format!(
            "[page.tls]\nlisten = [\"127.0.0.1:0\"]\ncerts = [ {{ cert = \"{}\", key = \"{}\" }} ]\n[services.mls]\n[services.mls_dr]\n",
            cert.display(),
            cert.display()
        ),
    );
    let f = Fixture::new(&cfg, &[("example.test.toml", &page_zone())]);
    let err = match daemon::start(f.load(), &f.config_path()).await {
        Ok(_) => panic!("started with a broken certificate"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot start the outage page"), "{err}");
    assert!(err.contains("broken.crt"), "{err}");
}
