//! Regression tests for what an outside attack run found (issue 21's list), each against a
//! real detour: bounded client-supplied numbers, slow and greedy HTTP clients, descriptor
//! starvation, corrupt or misplaced state files, over-long or hostile operator text.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::binary::{Daemon, cli};
use common::single_worker_config as cfg;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// example.test. with one dynamic record, `mls`, that follows the MLS.
fn zone() -> String {
    format!("{BARE_ZONE}{MLS_ONLY_DYNAMIC}")
}

async fn server(extra_server: &str) -> Server {
    Server::start(&cfg(extra_server), &[("z.toml", &zone())]).await
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.0/8 is all ours).
async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

/// reqwest here is built without a default TLS provider.
fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn lo(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// Reads until EOF, an error, or `within`; `Some(bytes)` when the peer closed in time.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|()| got)
}

/// One whole GET on a fresh connection from `from`; the status line.
async fn get_from(from: IpAddr, to: SocketAddr, path: &str) -> String {
    let mut s = connect_from(from, to).await.expect("connect");
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: status.example.test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let got = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    let text = String::from_utf8_lossy(&got);
    text.lines().next().unwrap_or_default().to_string()
}

/// Half a request: the headers never end (a slowloris).
const HALF: &[u8] = b"GET / HTTP/1.1\r\nHost: status.example.test\r\nX-Slow: 1\r\n";

// ---------------------------------------------------------------------------------------------
// 1. Client-supplied counts are bounded before use.

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_limit_out_of_range_is_refused_not_allocated() {
    let s = server("").await;
    let api = Api::of(&s);
    for limit in ["1000000000", "0", "10001"] {
        let (code, body) = api
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/audit?limit={limit}"),
                None,
            )
            .await;
        assert_eq!(code, 400, "limit={limit}: {body}");
        assert_eq!(body["error"], "limit must be between 1 and 10000");
    }
    let (code, _) = api
        .send(reqwest::Method::GET, "/api/v1/audit?limit=10000", None)
        .await;
    assert_eq!(code, 200);
    // Still alive and answering.
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
}

// ---------------------------------------------------------------------------------------------
// 2. Slow and greedy HTTP clients.

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_requests_and_idle_connections_are_closed() {
    let s = server("http_header_timeout = \"1s\"\nhttp_idle_timeout = \"1s\"").await;
    let page: SocketAddr = s.running.page_addrs()[0]
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let admin: SocketAddr = s.running.admin_addr().parse().unwrap();
    for to in [page, admin] {
        // Headers that never end: closed at the header timeout.
        let mut slow = connect_from(lo(1), to).await.unwrap();
        slow.write_all(HALF).await.unwrap();
        let t = Instant::now();
        assert!(
            closed_within(&mut slow, Duration::from_secs(5))
                .await
                .is_some(),
            "{to}: a slowloris stays open"
        );
        assert!(
            t.elapsed() >= Duration::from_millis(800),
            "{:?}",
            t.elapsed()
        );
        // Nothing at all: closed as idle.
        let mut silent = connect_from(lo(1), to).await.unwrap();
        assert!(
            closed_within(&mut silent, Duration::from_secs(5))
                .await
                .is_some(),
            "{to}: a silent connection stays open"
        );
    }
    // A keep-alive connection is served, then closed once idle.
    let mut ka = connect_from(lo(1), page).await.unwrap();
    ka.write_all(b"GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = closed_within(&mut ka, Duration::from_secs(5))
        .await
        .expect("closed after the idle timeout");
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_source_cannot_hold_more_than_its_share_and_newcomers_evict_the_idle() {
    let s = server("http_max_per_source = 4\nhttp_max_connections = 6").await;
    let page: SocketAddr = s.running.page_addrs()[0]
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = connect_from(lo(2), page).await.unwrap();
        c.write_all(HALF).await.unwrap();
        held.push(c);
    }
    // The fifth from the same source is closed at once, unanswered.
    let mut fifth = connect_from(lo(2), page).await.unwrap();
    let _ = fifth.write_all(HALF).await;
    let got = closed_within(&mut fifth, Duration::from_secs(2))
        .await
        .expect("closed at once");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    // Another source fills the listener to its cap of 6 ...
    for _ in 0..2 {
        let mut c = connect_from(lo(3), page).await.unwrap();
        c.write_all(HALF).await.unwrap();
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ... and a newcomer is still served: the connection idle longest makes room.
    assert_eq!(get_from(lo(4), page, "/").await, "HTTP/1.1 200 OK");
    let mut evicted = 0;
    for c in &mut held {
        if closed_within(c, Duration::from_millis(200)).await.is_some() {
            evicted += 1;
        }
    }
    assert_eq!(evicted, 1, "exactly the longest idle is closed");
    assert!(metric(&["detour_http_closed_total", "per_source"]) >= 1.0);
    assert!(metric(&["detour_http_closed_total", "evicted"]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_source_cannot_hold_more_than_its_share_of_dns_over_tcp() {
    let s = server("tcp_max_per_source = 3").await;
    let q = query(
        "mls.example.test.",
        hickory_server::proto::rr::RecordType::A,
        None,
    )
    .to_vec()
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(lo(2), s.addr).await.unwrap());
    }
    // The fourth from the same source is closed at once (the idle timeout is 5 s).
    let mut fourth = connect_from(lo(2), s.addr).await.unwrap();
    let t = Instant::now();
    assert!(
        closed_within(&mut fourth, Duration::from_secs(2))
            .await
            .is_some(),
        "a fourth connection from one source stays open"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    // Those it holds still answer, and another source is served.
    tcp_send(&mut held[0], &q).await;
    assert!(
        tcp_recv(&mut held[0]).await.is_some(),
        "a held connection answers"
    );
    let mut other = connect_from(lo(3), s.addr).await.unwrap();
    tcp_send(&mut other, &q).await;
    assert!(
        tcp_recv(&mut other).await.is_some(),
        "another source is served"
    );
    assert!(metric(&["detour_dns_tcp_refused_total", "per_source"]) >= 1.0);
}

/// The attack run's worst finding, end to end: detour under `ulimit -n 256` (the budget then
/// lowers every cap) while floods of half-sent requests and idle connections from eight
/// loopback sources hit the page, the admin API and DNS over TCP for four seconds. A healthy
/// service must stay up (no probe fails for lack of descriptors), DNS keeps answering over
/// UDP and TCP, and well-behaved clients of the page and the admin API are served.
#[tokio::test(flavor = "multi_thread")]
async fn floods_under_a_low_descriptor_limit_cause_no_false_failover() {
    tls_provider();
    raise_own_limit();
    let backend = backend::HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let text = cfg("http_header_timeout = \"2s\"")
        + &format!(
            "check = {{ type = \"http\", url = \"http://{}/\" }}\n[check_defaults]\ninterval = \"500ms\"\ntimeout = \"500ms\"\nrise = 1\nfall = 2\n",
            backend.addr
        );
    let f = Fixture::new(&text, &[("z.toml", &zone())]);
    let mut d = Daemon::start_limited(&f.config_path(), 256);
    let lowered = d.wait_for("connection caps are lowered");
    assert!(lowered.contains("only 256 open files"), "{lowered}");
    let dns = d.dns_addr();
    let admin = d.addr_after("listening for the admin API on ");
    let page = d.addr_after("listening for the page on ");
    d.wait_for("ready");
    assert_eq!(udp_a(dns, "mls.example.test.").await, ["127.0.0.10"]);

    let stop_at = Instant::now() + Duration::from_secs(4);
    let mut floods = tokio::task::JoinSet::new();
    for (to, per_source, payload) in [
        (page, 120usize, HALF),
        (admin, 40, HALF),
        (dns, 60, &b""[..]),
    ] {
        for n in 2..=9u8 {
            floods.spawn(flood(lo(n), to, per_source, payload, stop_at));
        }
    }
    let token = std::fs::read_to_string(f.dir.path().join("state/admin.token"))
        .unwrap()
        .trim()
        .to_string();
    // A new connection per call, as the CLI makes: a pooled idle one may be closed to make
    // room at any time (as any server may close an idle keep-alive connection).
    let http = reqwest::Client::builder()
        .local_address(lo(1))
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let mut rounds = 0;
    let mut admin_retries = 0;
    let rss_before = rss_kib(d.child.id());
    let mut rss_peak = rss_before;
    while Instant::now() < stop_at {
        rss_peak = rss_peak.max(rss_kib(d.child.id()));
        rounds += 1;
        assert_eq!(
            udp_a(dns, "mls.example.test.").await,
            ["127.0.0.10"],
            "a healthy service was redirected during the flood; log:\n{}",
            d.log().join("\n")
        );
        let answer = tcp(
            dns,
            &query(
                "mls.example.test.",
                hickory_server::proto::rr::RecordType::A,
                None,
            ),
        )
        .await;
        assert_eq!(a_values(&answer), ["127.0.0.10"]);
        assert_eq!(get_from(lo(1), page, "/").await, "HTTP/1.1 200 OK");
        // The admin API's cap is 9 here and eight sources keep hundreds of connections
        // coming: a newcomer gets in by closing the longest idle, but one of its attempts may
        // itself be closed before its request is read. A person retries; so does this.
        let mut answered = None;
        for _ in 0..5 {
            let r = http
                .get(format!("http://{admin}/api/v1/status"))
                .bearer_auth(&token)
                .send()
                .await;
            if let Ok(r) = r {
                answered = Some(r.status());
                break;
            }
            admin_retries += 1;
        }
        assert_eq!(
            answered,
            Some(reqwest::StatusCode::OK),
            "the admin API answers during the flood"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut opened = 0;
    while let Some(n) = floods.join_next().await {
        opened += n.unwrap();
    }
    assert!(rounds >= 3, "{rounds} rounds");
    assert!(
        admin_retries <= rounds,
        "{admin_retries} retries in {rounds} rounds"
    );
    assert!(opened > 1500, "the floods opened only {opened} connections");
    // Memory stays bounded: the caps bound connections, and each holds little. (Idle RSS is
    // ~16 MB; 128 MB above it would mean something grows per connection.)
    assert!(
        rss_peak < rss_before + 128 * 1024,
        "RSS grew from {rss_before} KiB to {rss_peak} KiB under the flood"
    );
    let log = d.log();
    let bad: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("Too many open files") || l.contains("to=down"))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(backend.hits() >= 6, "the backend was probed throughout");
}

/// Keeps `per_source` connections from `from` to `to` open until `until`, each sending
/// `payload` and never finishing; reopens those the server closes. Returns how many it opened.
async fn flood(
    from: IpAddr,
    to: SocketAddr,
    per_source: usize,
    payload: &'static [u8],
    until: Instant,
) -> usize {
    let mut open: Vec<TcpStream> = Vec::new();
    let mut opened = 0;
    // Bounded in count as well as time.
    while Instant::now() < until && opened < 5_000 {
        open.retain(|s| {
            let mut b = [0u8; 64];
            match s.try_read(&mut b) {
                // Closed by the server: make room for a new one.
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            }
        });
        let mut this_round = 0;
        while open.len() < per_source && this_round < 10 && Instant::now() < until {
            this_round += 1;
            match tokio::time::timeout(Duration::from_millis(500), connect_from(from, to)).await {
                Ok(Ok(mut s)) => {
                    opened += 1;
                    if !payload.is_empty() {
                        let _ = s.write_all(payload).await;
                    }
                    open.push(s);
                }
                _ => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    opened
}

/// A process's resident memory in KiB (VmRSS), from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The floods need about 2,000 descriptors in this process.
fn raise_own_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        },
    )
    .expect("raise this test's open-file limit");
}

// ---------------------------------------------------------------------------------------------
// 3. A corrupt admin token.

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_admin_token_is_set_aside_and_replaced() {
    tls_provider();
    for corrupt in [&[0xff, 0xfe, b'x'][..], &[0u8; 64][..]] {
        let f = Fixture::new(&cfg(""), &[("z.toml", &zone())]);
        let token_file = f.dir.path().join("state/admin.token");
        std::fs::create_dir_all(token_file.parent().unwrap()).unwrap();
        std::fs::write(&token_file, corrupt).unwrap();
        let running = detour::daemon::start(f.load(), &f.config_path())
            .await
            .expect("starts despite the token");
        let problems = running.control().problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("admin.token was unreadable (")
                && problems[0].contains("set aside as")
                && problems[0]
                    .contains(&format!("a new admin token is in {}", token_file.display())),
            "{problems:?}"
        );
        let aside: Vec<_> = std::fs::read_dir(token_file.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("admin.token.corrupt-")
            })
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(aside[0].path()).unwrap(), corrupt);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let token = std::fs::read_to_string(&token_file).unwrap();
        let status = reqwest::Client::new()
            .get(format!("http://{}/api/v1/status", running.admin_addr()))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap();
        assert_eq!(status.status(), 200);
        let doc: Value = serde_json::from_str(&status.text().await.unwrap()).unwrap();
        assert!(
            doc["problems"][0].as_str().unwrap().contains("admin.token"),
            "{doc}"
        );
        running.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Durations in range, arithmetic that cannot overflow.

#[tokio::test(flavor = "multi_thread")]
async fn an_until_too_far_away_is_refused_by_the_api() {
    let s = server("").await;
    let api = Api::of(&s);
    for until in ["99999999999h", "3651d"] {
        let (code, body) = api
            .send(
                reqwest::Method::PUT,
                "/api/v1/overrides/mls",
                Some(json!({"state": "down", "until": until})),
            )
            .await;
        assert_eq!(code, 400, "{until}: {body}");
    }
    let (code, _) = api
        .send(
            reqwest::Method::PUT,
            "/api/v1/overrides/mls",
            Some(json!({"state": "down", "until": "3650d"})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.80"]);
}

#[test]
fn huge_durations_in_the_config_are_errors_with_their_position() {
    let huge = "\"18446744073709551615s\"";
    let eleven_years = "\"4015d\"";
    for (line, text) in [
        (7, cfg(&format!("tcp_idle_timeout = {huge}"))),
        (7, cfg(&format!("http_idle_timeout = {eleven_years}"))),
        (
            11,
            cfg("") + &format!("[check_defaults]\ninterval = {huge}\n"),
        ),
        (
            11,
            cfg("") + &format!("[check_defaults]\ninterval = {eleven_years}\n"),
        ),
    ] {
        let f = Fixture::new(&text, &[("z.toml", &zone())]);
        let (code, _, err) = cli(&f.config_path(), &["check"]);
        assert_eq!(code, 2, "{text}\n{err}");
        assert!(
            err.contains(&format!("detour.toml:{line}:"))
                && (err.contains("at most 10 years") || err.contains("invalid duration")),
            "{text}\n{err}"
        );
    }
}

#[test]
fn the_cli_refuses_what_the_daemon_would_with_exit_2() {
    let f = Fixture::new(&cfg(""), &[("z.toml", &zone())]);
    let long = "x".repeat(2001);
    for args in [
        vec!["override", "set", "mls", "down", "--until", "99999999999h"],
        vec!["override", "set", "mls", "down", "--reason", &long],
        vec!["override", "clear", "mls", "--reason", &long],
        vec!["incident", "open", "--service", "mls", &long],
        vec!["incident", "update", "1", &long],
        vec!["--by", "a\u{1b}[2Jb", "status"],
    ] {
        // No daemon runs: the refusal comes before any connection.
        let (code, _, err) = cli(&f.config_path(), &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("too long")
                || err.contains("control characters")
                || err.contains("too far")
                || err.contains("at most 10 years"),
            "{args:?}: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Operator text has a length limit.

#[tokio::test(flavor = "multi_thread")]
async fn over_long_operator_text_is_refused_and_nothing_changes() {
    let s = server("").await;
    let api = Api::of(&s);
    let long = "é".repeat(2001);
    let cases = [
        (
            reqwest::Method::PUT,
            "/api/v1/overrides/mls".to_string(),
            json!({"state": "down", "reason": long}),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/incidents".to_string(),
            json!({"services": ["mls"], "message": long}),
        ),
        (
            reqwest::Method::PUT,
            "/api/v1/overrides/mls".to_string(),
            json!({"state": "down", "by": "x".repeat(101)}),
        ),
    ];
    for (method, path, body) in cases {
        let (code, answer) = api.send(method, &path, Some(body)).await;
        assert_eq!(code, 400, "{path}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("too long"),
            "{answer}"
        );
    }
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    let (_, doc) = api.send(reqwest::Method::GET, "/api/v1/status", None).await;
    assert!(doc["incidents"].as_array().unwrap().is_empty(), "{doc}");
    // 2,000 characters are fine.
    let (code, _) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/incidents",
            Some(json!({"services": ["mls", "mls", "mls"], "message": "é".repeat(2000)})),
        )
        .await;
    assert_eq!(code, 201);
    let (_, doc) = api.send(reqwest::Method::GET, "/api/v1/status", None).await;
    assert_eq!(
        doc["incidents"][0]["services"],
        json!(["mls"]),
        "duplicates folded"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Control characters never reach a terminal or the log raw; 12. refusals are throttled.

#[test]
fn hostile_text_is_escaped_in_status_and_the_log_and_refusals_are_throttled() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = Fixture::new(
        &cfg("").replace(
            "admin_listen = \"127.0.0.1:0\"",
            &format!("admin_listen = \"127.0.0.1:{port}\""),
        ),
        &[("z.toml", &zone())],
    );
    let mut d = Daemon::start(&f.config_path());
    d.wait_for("ready");
    let reason = "vendor\n2026-12-03T08:00:00Z  INFO forged: all clear\u{1b}[2J\u{202E}";
    let (code, _, err) = cli(
        &f.config_path(),
        &["override", "set", "mls", "down", "--reason", reason],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&f.config_path(), &["status", "--history"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{202E}'),
        "{out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.contains("INFO forged") && !l.contains("vendor\\n")),
        "a forged line in:\n{out}"
    );
    assert!(
        out.contains("vendor\\n2026-12-03T08:00:00Z  INFO forged: all clear\\u{1b}[2J\\u{202e}"),
        "{out}"
    );

    // Fifty requests with a wrong token: a line or two in the log, not fifty.
    tls_provider();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        for _ in 0..50 {
            let r = c
                .get(format!("http://127.0.0.1:{port}/api/v1/status"))
                .bearer_auth("guess")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let log = d.log();
    let refused = log
        .iter()
        .filter(|l| l.contains("admin request refused"))
        .count();
    assert!(
        (1..=2).contains(&refused),
        "{refused} refusal lines:\n{}",
        log.join("\n")
    );
    assert!(
        !log.iter()
            .any(|l| l.starts_with("2026-12-03T08:00:00Z  INFO forged")),
        "the reason forged a log line:\n{}",
        log.join("\n")
    );
    assert!(
        !log.iter().any(|l| l.contains('\u{1b}')),
        "raw ESC in the log"
    );
}

// ---------------------------------------------------------------------------------------------
// 7, 8. The admin socket: created 0600, never replacing what is not a stale socket.

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_socket_replaces_only_a_stale_socket() {
    let f = Fixture::new(
        &cfg("").replace(
            "admin_listen = \"127.0.0.1:0\"",
            "admin_listen = \"unix:state/important.txt\"",
        ),
        &[("z.toml", &zone())],
    );
    let file = f.dir.path().join("state/important.txt");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "keep me").unwrap();
    let (code, _, err) = cli(&f.config_path(), &["check"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("detour.toml:3:16: admin_listen: ")
            && err.contains("important.txt exists and is a regular file, not a socket"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    // A stale socket (its process gone) is replaced, and the new one is 0600 with nothing
    // left beside it.
    std::fs::remove_file(&file).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&file).unwrap());
    let running = detour::daemon::start(f.load(), &f.config_path())
        .await
        .expect("replaces a stale socket");
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(&file).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let left: Vec<String> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".bind."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // A second detour on the same socket is refused: the first answers on it.
    let second = detour::daemon::start(f.load(), &f.config_path()).await;
    let err = second.err().expect("refused").to_string();
    assert!(err.contains("another process answers on it"), "{err}");
    running.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 9, 11. Corrupt or truncated state files show in status.

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_health_and_truncated_overrides_are_reported() {
    let f = Fixture::new(&cfg(""), &[("z.toml", &zone())]);
    let state = f.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("health.json"), "{ not json").unwrap();
    // An overrides.toml detour wrote, cut short after its first table.
    let mut o = detour::overrides::Overrides::new();
    for s in ["mls", "other"] {
        o.insert(
            s.into(),
            detour::overrides::Override::new(detour::overrides::Forced::Down, "vendor"),
        );
    }
    detour::overrides::save(&state, &o).unwrap();
    let text = std::fs::read_to_string(state.join("overrides.toml")).unwrap();
    let cut = &text[..text.find("[other]").unwrap()];
    std::fs::write(state.join("overrides.toml"), cut).unwrap();

    let running = detour::daemon::start(f.load(), &f.config_path())
        .await
        .unwrap();
    let problems = running.control().problems();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("health.json was unreadable")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p
                .starts_with("overrides.toml was unreadable (the file ends before its last line")),
        "{problems:?}"
    );
    let doc = detour::cli::commands::render_status(
        &detour::status::build(&running.snapshots().load(), Some((None, problems))),
        None,
    );
    assert!(doc.contains("Problem: health.json was unreadable"), "{doc}");
    running.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 10. TTLs past 2^31 - 1.

#[test]
fn ttls_past_2_31_are_refused_where_written() {
    for (line, text) in [
        (5, zone().replace("records = [ { name = \"ns1\", type = \"A\", value = \"127.0.0.1\" } ]", "records = [ { name = \"ns1\", type = \"A\", value = \"127.0.0.1\", ttl = 2147483648 } ]")),
        (10, zone().replace("ttl = 30", "ttl = 4294967295")),
        (3, zone().replace("rname = \"hostmaster.example.test.\" }", "rname = \"hostmaster.example.test.\", minimum = 3000000000 }")),
    ] {
        let f = Fixture::new(&cfg(""), &[("z.toml", &text)]);
        let (code, _, err) = cli(&f.config_path(), &["check"]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&format!("z.toml:{line}:")) && err.contains("a TTL is 0 to 2147483647 seconds"),
            "{err}"
        );
    }
}
