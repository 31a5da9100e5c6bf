//! The outage page in a real browser: headless Chromium (Debian package `chromium`, which
//! `.ci/run` installs) loads the redirected page at 360 px and 1280 px, and the test reads
//! what is visible, checks that nothing overflows horizontally and that nothing but the page
//! itself was fetched, and saves screenshots under `target/browser/`.
//!
//! Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
//! commands on fd 3, replies on fd 4, NUL-separated JSON), so the page needs no script of
//! its own. Names resolve to 127.0.0.1 through `--host-resolver-rules`: nothing leaves
//! loopback.

mod common;
#[path = "common/history.rs"]
mod history;
#[path = "common/page.rs"]
mod page;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Server, page_config};
use detour::overrides::{Forced, Override};
use detour::states::{Actor, IncidentOp};
use page::*;
use serde_json::{Value, json};

/// How long one DevTools command may take.
const REPLY_WITHIN: Duration = Duration::from_secs(30);

fn chromium() -> PathBuf {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "headless Chromium is needed by this test and was not found at /usr/bin/chromium: \
         `.ci/run` installs it (Debian package `chromium`), or run `apt-get install -y chromium`"
    );
}

/// A Chromium driven over the DevTools pipe.
struct Browser {
    child: Child,
    to: ChildStdin,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    /// Events seen while waiting for replies (method names, with their session).
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch(log: &Path) -> Self {
        let bin = chromium();
        let profile = tempfile::tempdir().expect("profile dir");
        let log = std::fs::File::create(log).expect("chromium log");
        // fd 3 (commands) is our stdin pipe and fd 4 (replies) our stdout pipe; Chromium's
        // own stdout goes to the log with its stderr.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec \"$@\" 3<&0 4>&1 0</dev/null 1>&2")
            .arg("sh")
            .arg(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--no-proxy-server",
                "--hide-scrollbars",
                "--window-size=1280,800",
                "--host-resolver-rules=MAP * 127.0.0.1",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let to = child.stdin.take().expect("stdin");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            loop {
                let mut buf = Vec::new();
                match out.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        buf.pop_if(|b| *b == 0);
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                            && tx.send(v).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Self {
            child,
            to,
            from,
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        }
    }

    /// Sends one command (to a page session when given) and waits for its reply.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to Chromium");
        self.to.flush().unwrap();
        loop {
            let v = self
                .from
                .recv_timeout(REPLY_WITHIN)
                .unwrap_or_else(|_| panic!("Chromium did not answer {method} in time"));
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// Waits for the event `method` in `session` (or returns one already seen).
    fn wait_event(&mut self, session: &str, method: &str) {
        let matches = |v: &Value| v["method"] == method && v["sessionId"] == session;
        if let Some(i) = self.events.iter().position(matches) {
            self.events.remove(i);
            return;
        }
        loop {
            let v = self
                .from
                .recv_timeout(REPLY_WITHIN)
                .unwrap_or_else(|_| panic!("no {method} from Chromium in time"));
            if matches(&v) {
                return;
            }
            self.events.push(v);
        }
    }

    /// Evaluates `expr` in the page and returns its value (JSON).
    fn eval(&mut self, session: &str, expr: &str) -> Value {
        let r = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr} threw: {e}");
        }
        r["result"]["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one load of a page at one width showed.
struct Seen {
    text: String,
    inner_width: i64,
    scroll_width: i64,
    overflowing: Vec<String>,
    resources: Vec<String>,
    scripts: i64,
    font_px: f64,
    status: i64,
    /// What the caller's own expression found.
    extra: Value,
}

/// Loads `url` at `width` px (a phone below 600), screenshots the whole page to `shot`.
fn look(b: &mut Browser, url: &str, width: u32, shot: &Path) -> Seen {
    look_with(b, url, width, shot, "null")
}

/// [`look`], also evaluating `extra` (a JavaScript expression) in the loaded page.
fn look_with(b: &mut Browser, url: &str, width: u32, shot: &Path, extra: &str) -> Seen {
    let target = b.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
    let target_id = target["targetId"].as_str().unwrap().to_string();
    let attached = b.call(
        None,
        "Target.attachToTarget",
        json!({ "targetId": target_id, "flatten": true }),
    );
    let session = attached["sessionId"].as_str().unwrap().to_string();
    let s = session.as_str();
    b.call(Some(s), "Page.enable", json!({}));
    b.call(Some(s), "Network.enable", json!({}));
    let mobile = width < 600;
    b.call(
        Some(s),
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": width, "height": 800, "deviceScaleFactor": 1, "mobile": mobile }),
    );
    b.call(Some(s), "Page.navigate", json!({ "url": url }));
    b.wait_event(s, "Page.loadEventFired");
    // The status code of the document, from the network events seen so far.
    let status = b
        .events
        .iter()
        .filter(|e| e["method"] == "Network.responseReceived" && e["sessionId"] == s)
        .find(|e| e["params"]["type"] == "Document")
        .map_or(0, |e| {
            e["params"]["response"]["status"].as_i64().unwrap_or(0)
        });
    let v = b.eval(
        s,
        r#"(() => {
            const w = window.innerWidth;
            const over = [];
            for (const el of document.body.querySelectorAll('*')) {
                const r = el.getBoundingClientRect();
                if (r.width > 0 && (r.right > w + 0.5 || r.left < -0.5)) {
                    over.push(el.tagName + '.' + el.className + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
                }
            }
            return {
                text: document.body.innerText,
                innerWidth: w,
                scrollWidth: document.documentElement.scrollWidth,
                overflowing: over,
                // Inline data: images (the logo) are not fetches; anything else would be.
                resources: performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:')),
                scripts: document.scripts.length,
                fontPx: parseFloat(getComputedStyle(document.body).fontSize),
                height: Math.ceil(document.documentElement.scrollHeight),
            };
        })()"#,
    );
    let extra = b.eval(s, extra);
    let height = v["height"].as_u64().unwrap().max(800);
    b.call(
        Some(s),
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
    );
    let png = b.call(
        Some(s),
        "Page.captureScreenshot",
        json!({ "format": "png", "captureBeyondViewport": true }),
    );
    let bytes = base64_decode(png["data"].as_str().unwrap());
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(shot, bytes).expect("save screenshot");
    b.call(None, "Target.closeTarget", json!({ "targetId": target_id }));
    Seen {
        text: v["text"].as_str().unwrap().to_string(),
        inner_width: v["innerWidth"].as_i64().unwrap(),
        scroll_width: v["scrollWidth"].as_i64().unwrap(),
        overflowing: v["overflowing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect(),
        resources: v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect(),
        scripts: v["scripts"].as_i64().unwrap(),
        font_px: v["fontPx"].as_f64().unwrap(),
        status,
        extra,
    }
}

fn config() -> String {
    let closed = closed_port();
    page_config(
        "",
        &format!(
            r#"
[page]
title = "Example Realty — system status"
contact = "Help desk: 555-0100 (24/7) · helpdesk@example-realty.test"
links = [
  {{ label = "Agent handbook", url = "https://handbook.example.test/" }},
  {{ label = "A link with a very long address", url = "https://example.test/aVeryLongPathWithoutAnyBreakOpportunity/AndMoreOfItUntilItIsWiderThanAnyPhoneScreen/really" }},
]

[services.sso]
name = "MLS Sign-On"
url = "https://sso.example.test/"
description = "Single sign-on portal: the usual way into the MLS and its tools"
check = {{ type = "tcp", address = "{closed}", interval = "20s", rise = 3 }}

[services.mls]
name = "MLS"
url = "https://mls.example.test/"
description = "Listings, search and showings"
depends_on = ["sso"]

[services.mls_dr]
name = "MLS (disaster-recovery site)"

[services.forms]
name = "Forms"
url = "https://forms.example.net/login"
description = "Transaction forms: log in directly at this address"
depends_on = ["sso"]

[services.tax]
name = "Tax records"
url = "https://tax-records.example.net/search/by-parcel-number-and-owner-name"
description = "County tax data: parcels, owners, assessments"

[services.showings]
name = "Showing scheduler"
url = "https://showings.example.net/"
description = "Book and confirm showings"
"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outage_page_reads_well_at_360_and_1280_pixels() {
    let _ = chromium();
    let s = Server::start(&config(), &[("example.test.toml", &page_zone())]).await;
    let port = addr_of(&s.running.page_addrs()[0]).port();
    let c = s.running.control();
    let who = || Actor {
        who: "browser-test".into(),
    };
    c.set_override(
        "mls",
        Some(
            Override::new(
                Forced::Down,
                "The MLS vendor is restoring its database after a storage failure.",
            )
            .until(chrono::Utc::now() + chrono::Duration::hours(2))
            .by("alice")
            .set_at(chrono::Utc::now()),
        ),
        who(),
    )
    .await
    .unwrap();
    c.set_override(
        "mls_dr",
        Some(Override::new(
            Forced::Maintenance,
            "Disaster-recovery drill",
        )),
        who(),
    )
    .await
    .unwrap();
    let inc = c
        .incident(
            IncidentOp::Open {
                services: vec!["mls".into(), "sso".into()],
                message: "We know the MLS and sign-on are down and are working with the vendor."
                    .into(),
            },
            who(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.incident(
        IncidentOp::Update {
            id: inc.id,
            message: "The vendor expects the MLS back by 15:00. Forms and tax records work: use the links below.".into(),
        },
        who(),
    )
    .await
    .unwrap();

    let dir = artifact_dir("browser");
    let outage = format!("http://mls.example.test:{port}/listing/12345");
    let status = format!("http://status.example.test:{port}/");
    let shots = dir.clone();
    let seen = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(&shots.join("chromium.log"));
        let out = [360u32, 1280]
            .iter()
            .map(|w| {
                (
                    *w,
                    look(&mut b, &outage, *w, &shots.join(format!("outage-{w}.png"))),
                )
            })
            .collect::<Vec<_>>();
        let st = look(&mut b, &status, 360, &shots.join("status-360.png"));
        let _ = b.call(None, "Browser.close", json!({}));
        (out, st)
    })
    .await
    .expect("the browser session");
    let (outage_views, status_view) = seen;

    for (w, v) in &outage_views {
        assert_eq!(v.status, 503, "{w}px");
        assert_eq!(v.inner_width, i64::from(*w), "the viewport is {w}px");
        assert!(
            v.scroll_width <= v.inner_width,
            "{w}px: the page is {}px wide",
            v.scroll_width
        );
        assert!(v.overflowing.is_empty(), "{w}px: {:?}", v.overflowing);
        assert!(
            v.resources.is_empty(),
            "{w}px: nothing but the page is fetched: {:?}",
            v.resources
        );
        assert_eq!(v.scripts, 0, "{w}px: the page has no script");
        assert!(v.font_px >= 16.0, "{w}px: body text is {}px", v.font_px);
        in_order(
            &v.text,
            &[
                "MLS is unavailable",
                "Unavailable since",
                "for less than a minute",
                "Operator decision",
                "Reason given: The MLS vendor is restoring its database",
                "Expected back by",
                "Also: Operator decision",
                "Disaster-recovery drill",
                "Updates from the team",
                "The vendor expects the MLS back by 15:00",
                "We know the MLS and sign-on are down",
                "What still works",
                "Forms",
                "Working, limited access",
                "not through the usual way in (MLS Sign-On is unavailable)",
                "Showing scheduler",
                "Tax records",
                "Useful links",
                "Agent handbook",
                "Need help?",
                "Help desk: 555-0100 (24/7)",
                "Page generated at",
            ],
        );
        // States are words, not colour alone.
        assert!(v.text.contains("Working"), "{w}px");
    }
    assert_eq!(status_view.status, 200);
    assert!(
        status_view.overflowing.is_empty(),
        "{:?}",
        status_view.overflowing
    );
    assert!(status_view.scroll_width <= status_view.inner_width);
    in_order(
        &status_view.text,
        &[
            "have a problem",
            "Services",
            "MLS",
            "Unavailable",
            "Open incidents",
        ],
    );
    for f in ["outage-360.png", "outage-1280.png", "status-360.png"] {
        let mut head = [0u8; 8];
        std::fs::File::open(dir.join(f))
            .and_then(|mut x| x.read_exact(&mut head))
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(&head, b"\x89PNG\r\n\x1a\n", "{f}");
    }
    eprintln!("screenshots in {}", dir.display());
}

/// What the status page's history charts are, as the browser lays them out.
const CHARTS: &str = r#"(() => [...document.querySelectorAll('svg.bars')].map(svg => {
    const r = svg.getBoundingClientRect();
    const rects = [...svg.querySelectorAll('rect')];
    const li = svg.closest('li');
    return {
        service: li.id,
        left: r.left, right: r.right, width: r.width, height: r.height,
        label: svg.getAttribute('aria-label'),
        role: svg.getAttribute('role'),
        bars: rects.length,
        narrowest: Math.min(...rects.map(x => x.getBoundingClientRect().width)),
        fills: Object.fromEntries(rects.map(x => [x.getAttribute('class'), getComputedStyle(x).fill])),
        down: rects.filter(x => x.getAttribute('class') === 'down').map(x => x.querySelector('title').textContent),
        spark: li.querySelectorAll('svg.spark polyline').length,
        sparkWidth: li.querySelector('svg.spark') ? li.querySelector('svg.spark').getBoundingClientRect().width : 0,
    };
}))()"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_day_bars_read_well_at_360_and_1280_pixels() {
    use chrono::{Duration as Days, Utc};
    use detour::health::ServiceState::*;
    use history::{PastRun, seed};
    let _ = chromium();
    let backend = common::backend::HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let cfg = page_config(
        "",
        &format!(
            r#"
[page]
title = "Example Realty — system status"
timezone = "America/New_York"

[services.mls]
name = "MLS"
url = "https://mls.example.test/"
check = {{ type = "http", url = "http://{}/", interval = "200ms" }}

[services.mls_dr]
name = "MLS standby"

[services.forms]
name = "Forms"
url = "https://forms.example.net/login"

[services.tax]
name = "Tax records with a rather long name that wraps on a phone"
"#,
            backend.addr
        ),
    );
    let fx = common::Fixture::new(&cfg, &[("example.test.toml", &page_zone())]);
    // 85 days of history: the MLS down for an hour every ten days, in maintenance one
    // afternoon, forms impacted twice; the last 5 days detour was not running.
    let now = Utc::now();
    let start = now - Days::days(88);
    let end = now - Days::days(5);
    let mut run = PastRun::new(start, end)
        .state(start, "mls", Up)
        .state(start, "forms", Up)
        .state(start, "tax", Up);
    for k in (10..85).step_by(10) {
        let at = start + Days::days(k);
        run = run
            .state(at, "mls", Down)
            .state(at + Days::hours(1), "mls", Up);
    }
    let m = start + Days::days(33) + Days::hours(3);
    run = run
        .state(m, "mls", Maintenance)
        .state(m + Days::hours(4), "mls", Up)
        .state(start + Days::days(12), "forms", Impacted)
        .state(start + Days::days(12) + Days::minutes(45), "forms", Up)
        .state(start + Days::days(61), "forms", Impacted)
        .state(start + Days::days(61) + Days::minutes(20), "forms", Up);
    seed(&fx.dir.path().join("state"), &[run]);
    let running = detour::daemon::start(fx.load(), &fx.config_path())
        .await
        .expect("detour starts");
    let page = addr_of(&running.page_addrs()[0]);
    // Wait for this run's first states and response times.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !get(page, "status.example.test", "/")
        .await
        .body
        .contains("class=\"spark\"")
    {
        assert!(std::time::Instant::now() < deadline, "no sparkline in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let port = page.port();
    let dir = artifact_dir("browser");
    let shots = dir.clone();
    let url = format!("http://status.example.test:{port}/");
    let past = format!("http://status.example.test:{port}/history");
    let (views, history_view) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(&shots.join("chromium-bars.log"));
        let v = [360u32, 1280]
            .iter()
            .map(|w| {
                let shot = shots.join(format!("status-bars-{w}.png"));
                (*w, look_with(&mut b, &url, *w, &shot, CHARTS))
            })
            .collect::<Vec<_>>();
        let h = look(&mut b, &past, 360, &shots.join("history-360.png"));
        let _ = b.call(None, "Browser.close", json!({}));
        (v, h)
    })
    .await
    .expect("the browser session");
    for (w, v) in &views {
        assert_eq!(v.status, 200, "{w}px");
        assert!(
            v.scroll_width <= v.inner_width,
            "{w}px: {} wide",
            v.scroll_width
        );
        assert!(v.overflowing.is_empty(), "{w}px: {:?}", v.overflowing);
        // The browser's own favicon request aside, nothing but the page is fetched.
        let fetched: Vec<&String> = v
            .resources
            .iter()
            .filter(|r| !r.ends_with("/favicon.ico"))
            .collect();
        assert!(fetched.is_empty(), "{w}px: {fetched:?}");
        assert_eq!(v.scripts, 0);
        let charts = v.extra.as_array().expect("charts");
        assert_eq!(charts.len(), 4, "{w}px: {charts:?}");
        for c in charts {
            assert_eq!(c["bars"], 90, "{c}");
            assert_eq!(c["role"], "img");
            assert!(
                c["label"].as_str().unwrap().starts_with("Last 90 days: "),
                "{c}"
            );
            // Inside the card, as wide as the text, and every day visible on its own.
            assert!(
                c["left"].as_f64().unwrap() >= 0.0 && c["right"].as_f64().unwrap() <= f64::from(*w),
                "{c}"
            );
            // As wide as the text (46rem at most on a wide screen).
            let text = f64::from(*w).min(736.0);
            assert!(c["width"].as_f64().unwrap() >= text * 0.75, "{w}px: {c}");
            assert!(c["height"].as_f64().unwrap() >= 30.0, "{c}");
            assert!(c["narrowest"].as_f64().unwrap() >= 2.0, "{w}px: bars {c}");
        }
        let mls = &charts[charts
            .iter()
            .position(|c| c["service"] == "service-mls")
            .unwrap()];
        assert_eq!(mls["fills"]["down"], "rgb(192, 57, 43)", "{mls}");
        assert_eq!(mls["fills"]["maint"], "rgb(59, 111, 196)", "{mls}");
        assert_eq!(mls["fills"]["ok"], "rgb(47, 158, 91)", "{mls}");
        assert_eq!(mls["fills"]["none"], "rgb(201, 206, 214)", "{mls}");
        assert_eq!(mls["down"].as_array().unwrap().len(), 8, "{mls}");
        assert!(
            mls["down"][0].as_str().unwrap().ends_with(": down 1 h"),
            "{mls}"
        );
        assert!(mls["spark"].as_u64().unwrap() >= 1, "{mls}");
        assert!(
            mls["sparkWidth"].as_f64().unwrap() >= f64::from(*w).min(736.0) * 0.75,
            "{mls}"
        );
        let forms = &charts[charts
            .iter()
            .position(|c| c["service"] == "service-forms")
            .unwrap()];
        assert_eq!(forms["fills"]["limited"], "rgb(217, 130, 43)", "{forms}");
        // The text equivalent is on the page, not only in the picture.
        in_order(
            &v.text,
            &[
                "MLS",
                "90 days ago",
                "Today",
                "over 30 days",
                "over 90 days",
                "Response time over the last 24 hours",
                "Last 90 days:",
            ],
        );
    }
    let h = history_view;
    assert_eq!(h.status, 200);
    assert!(h.overflowing.is_empty(), "{:?}", h.overflowing);
    in_order(
        &h.text,
        &[
            "Past incidents",
            "MLS unavailable",
            "1 hour",
            "Forms reachable only by its direct link",
        ],
    );
    for f in [
        "status-bars-360.png",
        "status-bars-1280.png",
        "history-360.png",
    ] {
        let mut head = [0u8; 8];
        std::fs::File::open(dir.join(f))
            .and_then(|mut x| x.read_exact(&mut head))
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(&head, b"\x89PNG\r\n\x1a\n", "{f}");
    }
    drop(running);
}
