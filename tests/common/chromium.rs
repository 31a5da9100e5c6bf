//! Headless Chromium driven over the DevTools pipe (`--remote-debugging-pipe`: commands on
//! fd 3, replies on fd 4, NUL-separated JSON), for tests that click through pages as a
//! person would. Names resolve to 127.0.0.1 (`--host-resolver-rules`): nothing leaves
//! loopback. The same approach as tests/browser.rs, with tabs that keep their session
//! (cookies persist in the profile) and navigate by clicks.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

/// How long one DevTools command (or a page load) may take.
const REPLY_WITHIN: Duration = Duration::from_secs(30);

/// Debian's Chromium (`.ci/run` installs the package `chromium`).
pub fn chromium() -> PathBuf {
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
pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    /// Events seen while waiting for replies.
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium; its own output goes to `log`.
    pub fn launch(log: &Path) -> Self {
        let bin = chromium();
        let profile = tempfile::tempdir().expect("profile dir");
        let log = std::fs::File::create(log).expect("chromium log");
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
                "--password-store=basic",
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
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
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

    /// Waits for the event `method` in `session` (or takes one already seen).
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

    /// Opens a tab `width` px wide (a phone below 600: mobile emulation), sharing cookies
    /// with the other tabs.
    pub fn tab(&mut self, width: u32) -> Tab {
        self.tab_in(width, json!({ "url": "about:blank" }))
    }

    /// A tab of a new, separate browser context: a second person with cookies of their own.
    pub fn private_tab(&mut self, width: u32) -> Tab {
        let ctx = self.call(None, "Target.createBrowserContext", json!({}));
        let id = ctx["browserContextId"].clone();
        self.tab_in(
            width,
            json!({ "url": "about:blank", "browserContextId": id }),
        )
    }

    fn tab_in(&mut self, width: u32, params: Value) -> Tab {
        let target = self.call(None, "Target.createTarget", params);
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        let session = attached["sessionId"].as_str().unwrap().to_string();
        self.call(Some(&session), "Page.enable", json!({}));
        self.call(Some(&session), "Network.enable", json!({}));
        let tab = Tab { session, width };
        tab.resize(self, 800);
        tab
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab.
pub struct Tab {
    session: String,
    width: u32,
}

impl Tab {
    fn resize(&self, b: &mut Browser, height: u64) {
        b.call(
            Some(&self.session),
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": self.width < 600 }),
        );
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    pub fn eval(&self, b: &mut Browser, expr: &str) -> Value {
        let r = b.call(
            Some(&self.session),
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Runs `js` (which navigates: a click on a submit button, a form's submit) and waits
    /// for the new page to load; returns the HTTP status of the last document response.
    pub fn act(&self, b: &mut Browser, js: &str) -> i64 {
        let s = self.session.clone();
        b.events.retain(|e| e["sessionId"] != s.as_str());
        b.call(
            Some(&s),
            "Runtime.evaluate",
            json!({ "expression": format!("setTimeout(() => {{ {js} }}, 0); true"), "returnByValue": true }),
        );
        self.loaded(b)
    }

    /// Loads `url`; the HTTP status of the last document response.
    pub fn goto(&self, b: &mut Browser, url: &str) -> i64 {
        let s = self.session.clone();
        b.events.retain(|e| e["sessionId"] != s.as_str());
        b.call(Some(&s), "Page.navigate", json!({ "url": url }));
        self.loaded(b)
    }

    fn loaded(&self, b: &mut Browser) -> i64 {
        let s = self.session.clone();
        b.wait_event(&s, "Page.loadEventFired");
        b.events
            .iter()
            .filter(|e| e["method"] == "Network.responseReceived" && e["sessionId"] == s.as_str())
            .filter(|e| e["params"]["type"] == "Document")
            .filter_map(|e| e["params"]["response"]["status"].as_i64())
            .next_back()
            .unwrap_or(0)
    }

    /// The page's visible text.
    pub fn text(&self, b: &mut Browser) -> String {
        self.eval(b, "document.body.innerText")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The path of the page shown.
    pub fn path(&self, b: &mut Browser) -> String {
        self.eval(b, "location.pathname + location.search")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Elements that stick out of the viewport sideways, and how wide the document is
    /// against the viewport: nothing to scroll sideways on a phone.
    pub fn overflow(&self, b: &mut Browser) -> (Vec<String>, i64, i64) {
        let v = self.eval(
            b,
            r#"(() => {
                const w = window.innerWidth;
                const over = [];
                for (const el of document.body.querySelectorAll('*')) {
                    const r = el.getBoundingClientRect();
                    if (r.width > 0 && (r.right > w + 0.5 || r.left < -0.5)) {
                        over.push(el.tagName + '.' + el.className + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
                    }
                }
                return { over, inner: w, scroll: document.documentElement.scrollWidth };
            })()"#,
        );
        (
            v["over"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect(),
            v["inner"].as_i64().unwrap(),
            v["scroll"].as_i64().unwrap(),
        )
    }

    /// Screenshots the whole page (not only the viewport) as PNG to `path`.
    pub fn shot(&self, b: &mut Browser, path: &Path) {
        let height = self
            .eval(b, "Math.ceil(document.documentElement.scrollHeight)")
            .as_u64()
            .unwrap_or(800)
            .max(800);
        self.resize(b, height);
        let png = b.call(
            Some(&self.session),
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        self.resize(b, 800);
        let bytes = crate::page::base64_decode(png["data"].as_str().unwrap());
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(path, bytes).expect("save screenshot");
    }
}
