//! Notifications end to end, with real local receivers: a tiny HTTP server that records what
//! it is sent and can be told to fail or hang, and commands run by exec sinks. Events come
//! from the real states task, driven by overrides, incidents and a real backend.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::backend::HttpBackend;
use common::*;
use detour::daemon;
use detour::health::ServiceState;
use detour::overrides::{Forced, Override};
use detour::states::{Actor, IncidentOp};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------
// A webhook receiver.

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reply {
    Ok,
    Fail,
    Hang,
}

/// One request the receiver saw.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
    reply: Reply,
}

/// Records every request; answers them as `plan` says (then 200).
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    plan: Arc<Mutex<VecDeque<Reply>>>,
    task: Option<JoinHandle<()>>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut r = Self {
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            plan: Arc::default(),
            task: None,
        };
        r.serve(listener);
        r
    }

    /// The next requests get these replies, in order.
    fn plan(&self, replies: &[Reply]) {
        self.plan.lock().unwrap().extend(replies);
    }

    fn serve(&mut self, listener: TcpListener) {
        let (hits, plan) = (self.hits.clone(), self.plan.clone());
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let (hits, plan) = (hits.clone(), plan.clone());
                conns.spawn(async move {
                    let Some((path, headers, body)) = read_request(&mut s).await else {
                        return;
                    };
                    let reply = plan.lock().unwrap().pop_front().unwrap_or(Reply::Ok);
                    let body = serde_json::from_slice(&body)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
                    hits.lock().unwrap().push(Hit {
                        path,
                        headers,
                        body,
                        reply,
                    });
                    let status = match reply {
                        Reply::Ok => "200 OK",
                        Reply::Fail => "500 Internal Server Error",
                        Reply::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope"
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
                while conns.try_join_next().is_some() {}
            }
        }));
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    async fn restart(&mut self) {
        self.stop();
        for _ in 0..100 {
            if let Ok(l) = TcpListener::bind(self.addr).await {
                self.serve(l);
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("cannot rebind {}", self.addr);
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Requests to `path` answered 200.
    fn delivered(&self, path: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.reply == Reply::Ok && h.path == path)
            .collect()
    }

    /// Waits until `path` got at least `n` deliveries; returns them.
    async fn wait(&self, path: &str, n: usize, within: Duration) -> Vec<Hit> {
        let start = Instant::now();
        loop {
            let got = self.delivered(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < within,
                "{path}: wanted {n} deliveries, got {} after {within:?}: {:#?}",
                got.len(),
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads one HTTP/1.1 request: its path, headers (names lowercase) and body.
async fn read_request(
    s: &mut tokio::net::TcpStream,
) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, headers, body))
}

// ---------------------------------------------------------------------------------------
// detour set-up and operator actions.

const ZONE: &str = r#"
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "h.example.test." }
ns = ["ns1.example.test."]
records = [ { name = "ns1", type = "A", value = "127.0.0.1" } ]
"#;

fn config(services: &str, sinks: &str) -> String {
    page_config(
        "",
        &format!(
            r#"
[page]
title = "Example Realty"

[services.mls]
name = "MLS"
{services}
[services.sso]
name = "Sign-On"

{sinks}
"#
        ),
    )
}

async fn start(services: &str, sinks: &str) -> Server {
    Server::start(&config(services, sinks), &[("z.toml", ZONE)]).await
}

fn tester() -> Actor {
    Actor {
        who: "tester".into(),
    }
}

async fn force(s: &Server, service: &str, state: Option<Forced>) {
    let o = state.map(|state| {
        Override::new(state, "vendor is on it")
            .by("tester")
            .set_at(Utc::now())
    });
    s.running
        .control()
        .set_override(service, o, tester())
        .await
        .expect("override applies");
}

async fn open_incident(s: &Server, services: &[&str], message: &str) -> String {
    let op = IncidentOp::Open {
        services: services.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
    };
    s.running
        .control()
        .incident(op, tester())
        .await
        .expect("incident opens")
        .id
}

fn queue_file(dir: &Path) -> std::path::PathBuf {
    dir.join("state/notify-queue.json")
}

fn pending(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(queue_file(dir))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["pending"].as_array().cloned())
        .unwrap_or_default()
}

async fn until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const WITHIN: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Delivery: retries, timeouts, exec.

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_failing_twice_gets_exactly_one_delivery_with_the_documented_body() {
    let rx = Receiver::start().await;
    rx.plan(&[Reply::Fail, Reply::Fail]);
    let sinks = format!(
        r#"[[notify]]
type = "webhook"
url = "{}"
headers = {{ Authorization = "Bearer s3cret" }}
events = ["override"]
attempts = 5
max_delay = "200ms"
timeout = "1s"
"#,
        rx.url("/hook")
    );
    let s = start("", &sinks).await;
    force(&s, "mls", Some(Forced::Down)).await;

    let got = rx.wait("/hook", 1, WITHIN).await;
    // Give a duplicate every chance to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.delivered("/hook").len(), 1, "{:#?}", rx.hits());
    assert_eq!(rx.hits().len(), 3, "two failures, then the delivery");

    let h = &got[0];
    let header = |k: &str| {
        h.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("authorization").as_deref(), Some("Bearer s3cret"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    let b = &h.body;
    assert_eq!(b["version"], 1);
    assert_eq!(b["event"], "override");
    assert_eq!(b["service"], "mls");
    assert_eq!(b["service_name"], "MLS");
    assert_eq!(b["services"], serde_json::json!(["mls"]));
    assert_eq!(b["new_state"], "down");
    assert_eq!(b["reason"], "vendor is on it");
    assert_eq!(b["who"], "tester");
    assert_eq!(b["override"]["state"], "down");
    assert_eq!(b["title"], "Example Realty");
    assert_eq!(b["links"]["status_page"], "http://127.0.0.1:0/");
    assert_eq!(b["links"]["status_json"], "http://127.0.0.1:0/status.json");
    assert_eq!(b["incident"], Value::Null);
    assert_eq!(b["flapping"], Value::Null);
    assert!(
        b["text"]
            .as_str()
            .unwrap()
            .starts_with("tester forced MLS DOWN"),
        "{b}"
    );
    // Every try leaves its trace in the metrics.
    let m = detour::telemetry::render();
    assert!(m.contains("result=\"retried\""), "{m}");
    assert!(m.contains("result=\"delivered\""), "{m}");
    // Nothing left pending.
    until("queue file empty", WITHIN, || {
        pending(s.fixture.dir.path()).is_empty()
    })
    .await;
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_receiver_is_timed_out_and_retried() {
    let rx = Receiver::start().await;
    rx.plan(&[Reply::Hang]);
    let sinks = format!(
        "[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\nevents = [\"down\"]\ntimeout = \"300ms\"\nattempts = 3\nmax_delay = \"100ms\"\n",
        rx.url("/hook")
    );
    let s = start("", &sinks).await;
    let t0 = Instant::now();
    force(&s, "mls", Some(Forced::Down)).await;
    let got = rx.wait("/hook", 1, WITHIN).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "delivered after {took:?}: the hanging try was not waited for"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    let hits = rx.hits();
    assert_eq!(hits.len(), 2, "{hits:#?}");
    assert_eq!(hits[0].reply, Reply::Hang);
    assert_eq!(got[0].body["event"], "down");
    assert_eq!(got[0].body["old_state"], "up");
    assert_eq!(got[0].body["new_state"], "down");
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_sink_gets_the_json_on_stdin_and_the_environment_without_a_shell() {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("got.json");
    let script = "import sys, os, json\n\
        d = json.load(sys.stdin)\n\
        env = {k: v for k, v in os.environ.items() if k.startswith('DETOUR_')}\n\
        json.dump({'stdin': d, 'env': env, 'argv': sys.argv[2:]}, open(sys.argv[1], 'w'))\n";
    let sinks = format!(
        r#"[[notify]]
type = "exec"
command = ["python3", "-c", {script:?}, {file:?}, "$HOME `id`; echo hi"]
events = ["incident"]
timeout = "5s"
"#,
        file = file.display().to_string()
    );
    let s = start("", &sinks).await;
    let id = open_incident(&s, &["mls"], "The MLS is down; the vendor is on it").await;
    until("the command ran", WITHIN, || file.exists()).await;
    // The file is written by a running command: wait until it parses.
    let mut got = Value::Null;
    until("the command finished writing", WITHIN, || {
        got = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        !got.is_null()
    })
    .await;
    let d = &got["stdin"];
    assert_eq!(d["event"], "incident");
    assert_eq!(d["incident"]["id"], id.as_str());
    assert_eq!(d["incident"]["status"], "investigating");
    assert_eq!(
        d["incident"]["message"],
        "The MLS is down; the vendor is on it"
    );
    assert_eq!(d["services"], serde_json::json!(["mls"]));
    let env = &got["env"];
    assert_eq!(env["DETOUR_EVENT"], "incident");
    assert_eq!(env["DETOUR_INCIDENT_ID"], id.as_str());
    assert_eq!(
        env["DETOUR_INCIDENT_MESSAGE"],
        "The MLS is down; the vendor is on it"
    );
    assert_eq!(env["DETOUR_SERVICES"], "mls");
    assert_eq!(env["DETOUR_WHO"], "tester");
    assert_eq!(env["DETOUR_SERVICE"], "");
    assert!(env["DETOUR_AT"].as_str().unwrap().ends_with('Z'), "{env}");
    assert_eq!(env["DETOUR_STATUS_URL"], "http://127.0.0.1:0/");
    // Arguments reach the program as written: no shell expanded them.
    assert_eq!(got["argv"], serde_json::json!(["$HOME `id`; echo hi"]));
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_past_its_timeout_is_killed_with_everything_it_started() {
    // A shell that starts a background child and waits: at the timeout both must go, not
    // only the shell (the child would run on, holding whatever it holds).
    let marker = format!("{}.{}", 31, std::process::id());
    let sinks = format!(
        "[[notify]]\ntype = \"exec\"\ncommand = [\"sh\", \"-c\", \"sleep {marker} & sleep {marker}; wait\"]\ntimeout = \"300ms\"\n"
    );
    let s = start("", &sinks).await;
    let alive = || {
        std::process::Command::new("pgrep")
            .args(["-f", &format!("sleep {marker}")])
            .output()
            .map(|o| o.status.success())
            .unwrap()
    };
    let notifier = s.running.control().notifier().expect("notifier running");
    let results = notifier.test(Some(1), "tester").await.unwrap();
    assert_eq!(results[0].error.as_deref(), Some("timed out after 300ms"));
    until("the command's children are gone", WITHIN, || !alive()).await;
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_and_slow_commands_fail_and_the_test_event_reports_each_sink() {
    let rx = Receiver::start().await;
    let sinks = format!(
        r#"[[notify]]
type = "webhook"
url = "{}"

[[notify]]
type = "exec"
command = ["python3", "-c", "import sys; print('no modem', file=sys.stderr); sys.exit(3)"]
attempts = 2
max_delay = "50ms"

[[notify]]
type = "exec"
command = ["sleep", "10"]
timeout = "300ms"
events = ["guard"]

[[notify]]
type = "exec"
command = ["./no-such-program"]
events = ["guard"]
"#,
        rx.url("/hook")
    );
    let s = start("", &sinks).await;
    let notifier = s.running.control().notifier().expect("notifier running");
    let t0 = Instant::now();
    let results = notifier.test(None, "tester").await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let summary: Vec<(usize, bool)> = results.iter().map(|r| (r.sink, r.delivered)).collect();
    assert_eq!(summary, [(1, true), (2, false), (3, false), (4, false)]);
    let err = |i: usize| results[i].error.clone().unwrap_or_default();
    assert_eq!(err(1), "python3: exit status 3: no modem");
    assert_eq!(err(2), "timed out after 300ms");
    assert!(
        err(3).starts_with("cannot run ./no-such-program"),
        "{}",
        err(3)
    );
    assert!(results[0].target.starts_with("webhook http://127.0.0.1:"));
    let got = rx.wait("/hook", 1, WITHIN).await;
    assert_eq!(got[0].body["event"], "test");
    assert_eq!(got[0].body["who"], "tester");
    // One sink only; an unknown number is an error.
    let one = notifier.test(Some(1), "tester").await.unwrap();
    assert_eq!(one.len(), 1);
    assert!(one[0].delivered);
    assert!(notifier.test(Some(5), "tester").await.is_err());

    // A real event: the webhook takes it, the failing command is tried twice, then given
    // up on (logged and counted), and nothing stays pending.
    force(&s, "mls", Some(Forced::Down)).await;
    rx.wait("/hook", 4, WITHIN).await;
    until("the failing sink gave up", WITHIN, || {
        detour::telemetry::render().lines().any(|l| {
            l.starts_with("detour_notifications_total{") && l.contains("result=\"failed\"")
        })
    })
    .await;
    until("queue file empty", WITHIN, || {
        pending(s.fixture.dir.path()).is_empty()
    })
    .await;
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_adds_a_sink_keeps_the_old_one_and_starts_the_new_one() {
    let rx = Receiver::start().await;
    let sink = |path: &str| {
        format!(
            "[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\nevents = [\"override\"]\n",
            rx.url(path)
        )
    };
    let s = start("", &sink("/old")).await;
    force(&s, "mls", Some(Forced::Down)).await;
    rx.wait("/old", 1, WITHIN).await;
    let both = format!("{}\n{}", sink("/new"), sink("/old"));
    std::fs::write(s.fixture.config_path(), config("", &both)).unwrap();
    s.running.reload().await.expect("reload is valid");
    force(&s, "mls", None).await;
    let new = rx.wait("/new", 1, WITHIN).await;
    let old = rx.wait("/old", 2, WITHIN).await;
    assert_eq!(new[0].body["event"], "override");
    assert_eq!(
        old[1].body["reason"],
        "override cleared; checks decide again"
    );
    let notifier = s.running.control().notifier().unwrap();
    let r = notifier.test(None, "tester").await.unwrap();
    let targets: Vec<&str> = r.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            format!("webhook {}", rx.url("/new")),
            format!("webhook {}", rx.url("/old"))
        ]
    );
    s.running.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Filters, persistence, flapping.

#[tokio::test(flavor = "multi_thread")]
async fn event_and_service_filters_hold() {
    let rx = Receiver::start().await;
    let sinks = format!(
        r#"[[notify]]
type = "webhook"
url = "{down_mls}"
events = ["down"]
services = ["mls"]

[[notify]]
type = "webhook"
url = "{inc_mls}"
events = ["incident"]
services = ["mls"]

[[notify]]
type = "webhook"
url = "{all}"

[[notify]]
type = "webhook"
url = "{slack}"
format = "slack"
events = ["down"]
"#,
        down_mls = rx.url("/down-mls"),
        inc_mls = rx.url("/inc-mls"),
        all = rx.url("/all"),
        slack = rx.url("/slack"),
    );
    let s = start("", &sinks).await;
    force(&s, "mls", Some(Forced::Down)).await; // override + down (mls)
    force(&s, "sso", Some(Forced::Down)).await; // override + down (sso)
    force(&s, "mls", None).await; // override + up (mls)
    open_incident(&s, &["sso"], "SSO is slow").await;
    let both = open_incident(&s, &["sso", "mls"], "Both are down").await;

    let all = rx.wait("/all", 8, WITHIN).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kinds: Vec<String> = rx
        .delivered("/all")
        .iter()
        .map(|h| format!("{} {}", h.body["event"], h.body["service"]))
        .collect();
    assert_eq!(
        kinds,
        [
            r#""override" "mls""#,
            r#""down" "mls""#,
            r#""override" "sso""#,
            r#""down" "sso""#,
            r#""override" "mls""#,
            r#""up" "mls""#,
            r#""incident" null"#,
            r#""incident" null"#,
        ]
    );
    assert_eq!(all.len(), 8);

    let down = rx.delivered("/down-mls");
    assert_eq!(down.len(), 1, "{down:#?}");
    assert_eq!(down[0].body["event"], "down");
    assert_eq!(down[0].body["service"], "mls");

    let inc = rx.delivered("/inc-mls");
    assert_eq!(inc.len(), 1, "{inc:#?}");
    assert_eq!(inc[0].body["incident"]["id"], both.as_str());

    let slack = rx.delivered("/slack");
    assert_eq!(slack.len(), 2, "{slack:#?}");
    let text = slack[0].body["text"].as_str().unwrap();
    assert_eq!(
        slack[0].body.as_object().unwrap().len(),
        1,
        "only `text`: {}",
        slack[0].body
    );
    assert!(text.starts_with("[Example Realty] MLS is DOWN: "), "{text}");
    assert!(text.ends_with("\nStatus: http://127.0.0.1:0/"), "{text}");
    assert!(
        slack[1].body["text"]
            .as_str()
            .unwrap()
            .contains("Sign-On is DOWN"),
        "{}",
        slack[1].body
    );
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_delivery_survives_a_restart_and_is_delivered_after_it() {
    let mut rx = Receiver::start().await;
    rx.stop();
    let sinks = format!(
        "[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\nevents = [\"override\"]\nattempts = 50\nmax_delay = \"100ms\"\ntimeout = \"300ms\"\n",
        rx.url("/hook")
    );
    let s = start("", &sinks).await;
    let dir = s.fixture.dir.path().to_path_buf();
    force(&s, "mls", Some(Forced::Down)).await;
    // Tried and failed at least twice (the receiver is down), and saved.
    until("a pending delivery tried twice", WITHIN, || {
        pending(&dir)
            .first()
            .is_some_and(|p| p["attempts"].as_u64() >= Some(2))
    })
    .await;
    let Server {
        fixture, running, ..
    } = s;
    running.shutdown().await.unwrap();
    let saved = pending(&dir);
    assert_eq!(saved.len(), 1, "{saved:#?}");
    assert_eq!(saved[0]["sink"], 1);
    assert_eq!(saved[0]["notice"]["event"]["kind"], "override");
    assert!(rx.hits().is_empty());

    rx.restart().await;
    let running = daemon::start(fixture.load(), &fixture.config_path())
        .await
        .expect("detour restarts");
    let got = rx.wait("/hook", 1, WITHIN).await;
    assert_eq!(got[0].body["event"], "override");
    assert_eq!(got[0].body["service"], "mls");
    assert_eq!(got[0].body["new_state"], "down");
    until("queue file empty", WITHIN, || pending(&dir).is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.hits().len(), 1, "{:#?}", rx.hits());
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_queue_file_is_set_aside_and_notifications_go_on() {
    let rx = Receiver::start().await;
    let sinks = format!(
        "[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\nevents = [\"override\"]\n",
        rx.url("/hook")
    );
    let f = Fixture::new(&config("", &sinks), &[("z.toml", ZONE)]);
    std::fs::create_dir_all(f.dir.path().join("state")).unwrap();
    std::fs::write(queue_file(f.dir.path()), "{ not json").unwrap();
    let running = daemon::start(f.load(), &f.config_path()).await.unwrap();
    let aside: Vec<String> = std::fs::read_dir(f.dir.path().join("state"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("notify-queue.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "set aside, not deleted");
    // And said where operators look: among the problems `detour status` shows.
    let problems = running.control().problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("notify-queue.json") && p.contains("set aside")),
        "{problems:?}"
    );
    running
        .control()
        .set_override("mls", None, tester())
        .await
        .unwrap();
    let got = rx.wait("/hook", 1, WITHIN).await;
    assert_eq!(got[0].body["event"], "override");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flapping_backend_gives_a_summary_not_a_storm() {
    let rx = Receiver::start().await;
    let mut backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let check = format!(
        "check = {{ type = \"http\", url = \"http://{}/health\", interval = \"300ms\", timeout = \"300ms\", confirm_interval = \"50ms\", rise = 1, fall = 1 }}",
        backend.addr
    );
    let sinks = format!(
        "[[notify]]\ntype = \"webhook\"\nurl = \"{}\"\nevents = [\"down\", \"up\"]\nservices = [\"mls\"]\n",
        rx.url("/hook")
    );
    let s = start(&check, &sinks).await;
    // Production limits are 4 changes in 5 minutes, settled after 60 s; the same logic with
    // a settle time a test can wait for.
    s.running
        .control()
        .notifier()
        .expect("notifier running")
        .set_flap_limits(4, Duration::from_secs(60), Duration::from_millis(800));
    let state = || s.running.snapshots().load().health.services["mls"].state;
    assert_eq!(state(), ServiceState::Up);
    for _ in 0..3 {
        backend.stop();
        until("mls down", WITHIN, || state() == ServiceState::Down).await;
        backend.restart().await;
        until("mls up", WITHIN, || state() == ServiceState::Up).await;
    }
    // Six changes: the first four as they happened, then one summary once it settled.
    let got = rx.wait("/hook", 5, WITHIN).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let got_after = rx.delivered("/hook");
    assert_eq!(got_after.len(), 5, "{got_after:#?}");
    let events: Vec<&str> = got[..4]
        .iter()
        .map(|h| h.body["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["down", "up", "down", "up"]);
    assert!(got[..4].iter().all(|h| h.body["flapping"].is_null()));
    let sum = &got[4].body;
    assert_eq!(sum["flapping"]["changes"], 6, "{sum}");
    assert_eq!(sum["event"], "up");
    assert_eq!(sum["old_state"], "up");
    assert_eq!(sum["new_state"], "up");
    let text = sum["text"].as_str().unwrap();
    assert!(text.starts_with("MLS flapped 6 times in "), "{text}");
    assert!(text.ends_with(", now up"), "{text}");
    s.running.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// `detour notify test` through the real binary.

use common::binary::{BIN, Daemon};

fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("USER", "tester")
        .env_remove("SUDO_USER")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn detour_notify_test_prints_each_sink_and_exits_1_when_one_fails() {
    let rx = Receiver::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sinks = format!(
        r#"[[notify]]
type = "webhook"
url = "{}"

[[notify]]
type = "exec"
command = ["python3", "-c", "import sys; print('no modem', file=sys.stderr); sys.exit(3)"]
"#,
        rx.url("/hook")
    );
    let cfg = config("", &sinks).replace(
        "admin_listen = \"127.0.0.1:0\"",
        &format!("admin_listen = \"127.0.0.1:{port}\""),
    );
    let f = Fixture::new(&cfg, &[("z.toml", ZONE)]);
    let mut d = Daemon::start(&f.config_path());
    d.wait_for("ready");

    let (code, out, err) = tokio::task::spawn_blocking({
        let p = f.config_path();
        move || cli(&p, &["notify", "test"])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "sink 1 (webhook {}): delivered in ",
            rx.url("/hook")
        )),
        "{out}"
    );
    assert!(lines[1].starts_with("sink 2 (exec python3 -c "), "{out}");
    assert!(lines[1].contains("): FAILED after "), "{out}");
    assert!(
        lines[1].ends_with(" ms: python3: exit status 3: no modem"),
        "{out}"
    );
    assert_eq!(err, "1 of 2 sink(s) failed\n");
    let got = rx.wait("/hook", 1, WITHIN).await;
    assert_eq!(got[0].body["event"], "test");
    assert_eq!(got[0].body["who"], "tester");

    let (code, out, err) = tokio::task::spawn_blocking({
        let p = f.config_path();
        move || cli(&p, &["notify", "test", "--sink", "1"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");

    let (code, _, err) = tokio::task::spawn_blocking({
        let p = f.config_path();
        move || cli(&p, &["notify", "test", "--sink", "3"])
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(
        err.contains("no sink 3: 2 [[notify]] sink(s) configured"),
        "{err}"
    );
    assert_eq!(rx.delivered("/hook").len(), 2);
}
