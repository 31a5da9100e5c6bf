//! Probe tests against real servers on loopback: a small configurable HTTP(S) backend on
//! tokio, TCP echo-ish servers, and detour's own DNS server (`common::Server`).
//!
//! Two tests need a process of their own (`child_*`): the leak test counts this process's
//! open file descriptors, and the HTTPS `check_each` test needs `SSL_CERT_FILE` set before the
//! trust store is read. Their parent tests re-run this binary with `--exact child_…` and an
//! environment variable saying so; run any other way, the `child_*` tests do nothing.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use detour::checks::Observation;
use detour::checks::probe::Prober;
use detour::config::{CheckEachKind, CheckKind, DnsCheck, HttpCheck, Pattern, TcpCheck};
use hickory_server::proto::rr::{Name, RecordType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const CHILD_ENV: &str = "DETOUR_PROBES_CHILD";
const CHILD_DIR_ENV: &str = "DETOUR_PROBES_CHILD_DIR";

// ---------------------------------------------------------------------------------------------
// A configurable backend

/// What the backend does with a connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Read the request, answer it.
    Respond,
    /// Read the request, never answer (hold the connection until the client closes it).
    Hang,
    /// Accept and never read or write: a TLS handshake that never completes.
    Silent,
    /// Send headers promising a large body, then one byte every 50 ms.
    Slowloris,
}

#[derive(Clone, Debug)]
struct Reply {
    mode: Mode,
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
    delay: Duration,
}

impl Reply {
    fn status(status: u16) -> Self {
        Reply {
            mode: Mode::Respond,
            status,
            body: "OK".into(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
    fn ok() -> Self {
        Self::status(200)
    }
    fn mode(mode: Mode) -> Self {
        Reply { mode, ..Self::ok() }
    }
    fn body(mut self, body: &str) -> Self {
        self.body = body.into();
        self
    }
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Stats {
    /// Connections accepted.
    accepted: AtomicUsize,
    /// Connections not yet closed (by the client, or by stopping the backend).
    open: AtomicUsize,
    /// Request heads received, as text.
    requests: Mutex<Vec<String>>,
    /// SNI of each TLS ClientHello.
    sni: Mutex<Vec<Option<String>>>,
    /// The peer address of each connection.
    peers: Mutex<Vec<IpAddr>>,
}

impl Stats {
    fn last_request(&self) -> String {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request was received")
    }
}

struct OpenGuard(Arc<Stats>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A backend on loopback; dropping or stopping it closes the listener and every connection.
struct Backend {
    addr: SocketAddr,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Backend {
    async fn start(ip: IpAddr, reply: Reply) -> Self {
        Self::bind(SocketAddr::new(ip, 0), reply, None).await
    }

    async fn start_tls(reply: Reply, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::bind(SocketAddr::new(LOCAL, 0), reply, Some(tls)).await
    }

    async fn bind(addr: SocketAddr, reply: Reply, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        Self::serve(listener, reply, tls)
    }

    fn serve(listener: TcpListener, reply: Reply, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in this set, so aborting the backend ends them too.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((sock, peer)) = accepted else { continue };
                        st.peers.lock().unwrap().push(peer.ip());
                        st.accepted.fetch_add(1, Ordering::SeqCst);
                        st.open.fetch_add(1, Ordering::SeqCst);
                        let guard = OpenGuard(st.clone());
                        let (reply, tls, st) = (reply.clone(), tls.clone(), st.clone());
                        conns.spawn(async move {
                            let _guard = guard;
                            connection(sock, reply, tls, st).await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Backend { addr, stats, task }
    }

    /// Stops the backend (listener and connections closed) and returns its address.
    async fn stop(mut self) -> SocketAddr {
        self.task.abort();
        let _ = (&mut self.task).await;
        self.addr
    }

    fn url(&self, path: &str) -> url::Url {
        url::Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    fn https_url(&self, path: &str) -> url::Url {
        url::Url::parse(&format!("https://{}{path}", self.addr)).unwrap()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connection(
    sock: TcpStream,
    reply: Reply,
    tls: Option<Arc<rustls::ServerConfig>>,
    stats: Arc<Stats>,
) {
    if reply.mode == Mode::Silent {
        drain(sock).await;
        return;
    }
    match tls {
        None => http_exchange(sock, reply, stats).await,
        Some(config) => {
            let acceptor =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), sock);
            let Ok(start) = acceptor.await else { return };
            let sni = start.client_hello().server_name().map(str::to_string);
            stats.sni.lock().unwrap().push(sni);
            if let Ok(stream) = start.into_stream(config).await {
                http_exchange(stream, reply, stats).await;
            }
        }
    }
}

/// Reads until the peer closes (bounded by the peer, which is the point: it shows the client
/// side closed the connection).
async fn drain<S: AsyncRead + Unpin>(mut s: S) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    reply: Reply,
    stats: Arc<Stats>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    stats
        .requests
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&head).into_owned());
    match reply.mode {
        Mode::Hang => {
            drain(s).await;
            return;
        }
        Mode::Slowloris => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                .await;
            // Bounded: 100000 bytes at 20 a second outlives any test; the client's close ends it.
            for _ in 0..100_000 {
                if s.write_all(b"x").await.is_err() || s.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return;
        }
        Mode::Respond | Mode::Silent => {}
    }
    tokio::time::sleep(reply.delay).await;
    let mut out = format!(
        "HTTP/1.1 {} Status\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&reply.body);
    let _ = s.write_all(out.as_bytes()).await;
    let _ = s.shutdown().await;
    drain(s).await;
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn http(url: url::Url) -> HttpCheck {
    HttpCheck {
        url,
        method: "GET".into(),
        expect_status: Vec::new(),
        body_contains: None,
        body_regex: None,
        headers: BTreeMap::new(),
        max_response_time: None,
        tls_verify: true,
        tls_min_validity: None,
        follow_redirects: false,
    }
}

async fn probe_http(prober: &Prober, check: HttpCheck, timeout: Duration) -> Observation {
    prober.check(&CheckKind::Http(check), timeout).await
}

const T: Duration = Duration::from_secs(2);

fn assert_pass(o: &Observation, reason: &str) {
    assert!(o.ok, "expected a pass, got {o:?}");
    assert_eq!(o.reason, reason, "{o:?}");
}

fn assert_fail(o: &Observation, reason: &str) {
    assert!(!o.ok, "expected a failure, got {o:?}");
    assert_eq!(o.reason, reason, "{o:?}");
}

/// A self-signed certificate for `names`, with `not_after` if given, as a rustls server config.
fn self_signed(names: &[&str], not_after: Option<SystemTime>) -> Arc<rustls::ServerConfig> {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    if let Some(t) = not_after {
        params.not_after = t.into();
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    server_config(
        cert.der().clone(),
        PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    )
}

fn server_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    )
}

/// A port free on loopback right now.
async fn free_port() -> SocketAddr {
    TcpListener::bind((LOCAL, 0))
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

// ---------------------------------------------------------------------------------------------
// HTTP

#[tokio::test]
async fn http_200_passes_and_500_fails_with_its_status() {
    let prober = Prober::new();
    let ok = Backend::start(LOCAL, Reply::ok()).await;
    let o = probe_http(&prober, http(ok.url("/health")), T).await;
    assert_pass(&o, "HTTP 200");
    assert!(o.latency < T);
    assert!(
        ok.stats
            .last_request()
            .starts_with("GET /health HTTP/1.1\r\n")
    );

    let bad = Backend::start(LOCAL, Reply::status(500)).await;
    let o = probe_http(&prober, http(bad.url("/")), T).await;
    assert_fail(&o, "HTTP 500 (expected 200-399)");

    // A custom expectation: 204 only.
    let mut c = http(ok.url("/"));
    c.expect_status = vec![204];
    assert_fail(&probe_http(&prober, c, T).await, "HTTP 200 (expected 204)");
    let no_content = Backend::start(LOCAL, Reply::status(204).body("")).await;
    let mut c = http(no_content.url("/"));
    c.expect_status = vec![204];
    assert_pass(&probe_http(&prober, c, T).await, "HTTP 204");
    // ... and 500 may be what is expected.
    let mut c = http(bad.url("/"));
    c.expect_status = vec![200, 500];
    assert_pass(&probe_http(&prober, c, T).await, "HTTP 500");
    let mut c = http(ok.url("/"));
    c.expect_status = vec![201, 202];
    assert_fail(
        &probe_http(&prober, c, T).await,
        "HTTP 200 (expected 201, 202)",
    );
}

#[tokio::test]
async fn body_contains_and_regex() {
    let prober = Prober::new();
    let b = Backend::start(LOCAL, Reply::ok().body("status: all systems GO\n")).await;

    let mut c = http(b.url("/"));
    c.body_contains = Some("systems GO".into());
    assert_pass(&probe_http(&prober, c, T).await, "HTTP 200");

    let mut c = http(b.url("/"));
    c.body_contains = Some("OK".into());
    assert_fail(&probe_http(&prober, c, T).await, "body lacks 'OK'");

    let mut c = http(b.url("/"));
    c.body_regex = Some(Pattern(
        regex::Regex::new(r"^status: (all|most) systems").unwrap(),
    ));
    assert_pass(&probe_http(&prober, c, T).await, "HTTP 200");

    let mut c = http(b.url("/"));
    c.body_regex = Some(Pattern(regex::Regex::new(r"systems (UP|OK)$").unwrap()));
    assert_fail(
        &probe_http(&prober, c, T).await,
        "body does not match /systems (UP|OK)$/",
    );

    // The status is judged before the body.
    let e = Backend::start(LOCAL, Reply::status(503).body("maintenance")).await;
    let mut c = http(e.url("/"));
    c.body_contains = Some("OK".into());
    assert_fail(
        &probe_http(&prober, c, T).await,
        "HTTP 503 (expected 200-399)",
    );
}

#[tokio::test]
async fn body_checks_only_see_the_first_64_kib() {
    let prober = Prober::new();
    let mut big = "a".repeat(64 * 1024);
    big.push_str("NEEDLE");
    let b = Backend::start(LOCAL, Reply::ok().body(&big)).await;
    let mut c = http(b.url("/"));
    c.body_contains = Some("NEEDLE".into());
    assert_fail(&probe_http(&prober, c, T).await, "body lacks 'NEEDLE'");
    let mut c = http(b.url("/"));
    c.body_contains = Some("aaaa".into());
    assert_pass(&probe_http(&prober, c, T).await, "HTTP 200");
}

#[tokio::test]
async fn method_and_headers_are_sent() {
    let prober = Prober::new();
    let b = Backend::start(LOCAL, Reply::ok()).await;
    let mut c = http(b.url("/api/ping?x=1"));
    c.method = "post".into();
    c.headers.insert("X-Probe".into(), "detour".into());
    c.headers
        .insert("Authorization".into(), "Bearer abc".into());
    assert_pass(&probe_http(&prober, c, T).await, "HTTP 200");
    let req = b.stats.last_request();
    assert!(req.starts_with("POST /api/ping?x=1 HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("x-probe: detour\r\n"), "{req}");
    assert!(req.contains("authorization: Bearer abc\r\n"), "{req}");
    assert!(req.contains("user-agent: detour/"), "{req}");

    let mut c = http(b.url("/"));
    c.method = "HEAD".into();
    assert_pass(&probe_http(&prober, c, T).await, "HTTP 200");
    assert!(b.stats.last_request().starts_with("HEAD / HTTP/1.1\r\n"));
}

#[tokio::test]
async fn redirects_are_followed_only_when_asked() {
    let prober = Prober::new();
    let target = Backend::start(LOCAL, Reply::status(503).body("down")).await;
    let redirect = Backend::start(
        LOCAL,
        Reply::status(302).header("Location", target.url("/real").as_str()),
    )
    .await;

    // Not followed: the 302 itself is judged, and 302 is inside the default 200-399.
    let o = probe_http(&prober, http(redirect.url("/")), T).await;
    assert_pass(&o, "HTTP 302");
    assert_eq!(target.stats.accepted.load(Ordering::SeqCst), 0);

    // Followed: the target's status counts.
    let mut c = http(redirect.url("/"));
    c.follow_redirects = true;
    let o = probe_http(&prober, c, T).await;
    assert_fail(&o, "HTTP 503 (expected 200-399)");
    assert_eq!(target.stats.accepted.load(Ordering::SeqCst), 1);
    assert!(target.stats.last_request().starts_with("GET /real "));

    // An explicit expectation of 200 fails the unfollowed 302.
    let mut c = http(redirect.url("/"));
    c.expect_status = vec![200];
    assert_fail(&probe_http(&prober, c, T).await, "HTTP 302 (expected 200)");
}

#[tokio::test]
async fn max_response_time_fails_slow_answers() {
    let prober = Prober::new();
    let slow = Backend::start(LOCAL, Reply::ok().delay(Duration::from_millis(300))).await;
    let mut c = http(slow.url("/"));
    c.max_response_time = Some(Duration::from_millis(100));
    let o = probe_http(&prober, c, T).await;
    assert!(!o.ok, "{o:?}");
    assert!(o.reason.starts_with("slow: "), "{o:?}");
    assert!(o.reason.ends_with("ms > 100ms"), "{o:?}");
    assert!(o.latency >= Duration::from_millis(300), "{o:?}");

    let mut c = http(slow.url("/"));
    c.max_response_time = Some(Duration::from_secs(1));
    assert_pass(&probe_http(&prober, c, T).await, "HTTP 200");
}

/// Runs one probe with a 400 ms timeout and checks that it ended as a timeout, on time.
async fn assert_times_out(prober: &Prober, check: HttpCheck) {
    let timeout = Duration::from_millis(400);
    let start = Instant::now();
    let o = probe_http(prober, check, timeout).await;
    let elapsed = start.elapsed();
    assert!(!o.ok, "{o:?}");
    assert!(o.reason.starts_with("timed out after"), "{o:?}");
    assert_eq!(o.reason, "timed out after 400ms");
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_millis(300),
        "{elapsed:?}"
    );
}

/// Waits (bounded) until every connection the backend accepted is closed.
async fn assert_all_closed(b: &Backend) {
    for _ in 0..100 {
        if b.stats.open.load(Ordering::SeqCst) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{} of {} connections still open",
        b.stats.open.load(Ordering::SeqCst),
        b.stats.accepted.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn a_backend_that_never_answers_times_out() {
    let prober = Prober::new();
    let b = Backend::start(LOCAL, Reply::mode(Mode::Hang)).await;
    assert_times_out(&prober, http(b.url("/"))).await;
    assert_eq!(b.stats.accepted.load(Ordering::SeqCst), 1);
    assert_all_closed(&b).await;
}

#[tokio::test]
async fn a_slowloris_body_times_out() {
    let prober = Prober::new();
    let b = Backend::start(LOCAL, Reply::mode(Mode::Slowloris)).await;
    assert_times_out(&prober, http(b.url("/"))).await;
    assert_all_closed(&b).await;
}

#[tokio::test]
async fn a_tls_handshake_that_hangs_times_out() {
    let prober = Prober::new();
    let b = Backend::start(LOCAL, Reply::mode(Mode::Silent)).await;
    assert_times_out(&prober, http(b.https_url("/"))).await;
    let mut c = http(b.https_url("/"));
    c.tls_verify = false;
    assert_times_out(&prober, c).await;
    assert_all_closed(&b).await;
}

#[tokio::test]
async fn a_backend_that_closes_without_answering_fails() {
    let prober = Prober::new();
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        // Dropped: closed with no response.
    });
    let url = url::Url::parse(&format!("http://{addr}/")).unwrap();
    let o = probe_http(&prober, http(url), T).await;
    assert_fail(&o, "connection closed before message completed");
    server.await.unwrap();
}

#[tokio::test]
async fn a_closed_port_is_connect_refused_and_a_restart_flips_it() {
    let prober = Prober::new();
    let b = Backend::start(LOCAL, Reply::ok()).await;
    let check = http(b.url("/"));
    assert_pass(&probe_http(&prober, check.clone(), T).await, "HTTP 200");

    let addr = b.stop().await;
    let o = probe_http(&prober, check.clone(), T).await;
    assert_fail(&o, "connect refused");
    assert!(o.latency < Duration::from_millis(500), "{o:?}");

    // Same port again: the next probe connects anew and passes.
    let b = Backend::bind(addr, Reply::ok(), None).await;
    assert_pass(&probe_http(&prober, check.clone(), T).await, "HTTP 200");
    // Every probe makes its own connection.
    assert_pass(&probe_http(&prober, check, T).await, "HTTP 200");
    assert_eq!(b.stats.accepted.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------------
// TLS

#[tokio::test]
async fn a_self_signed_certificate_fails_verification_unless_disabled() {
    let prober = Prober::new();
    let b = Backend::start_tls(Reply::ok(), self_signed(&["localhost", "127.0.0.1"], None)).await;

    let o = probe_http(&prober, http(b.https_url("/")), T).await;
    assert!(!o.ok, "{o:?}");
    assert!(o.reason.starts_with("TLS: "), "{o:?}");
    assert_eq!(o.reason, "TLS: invalid peer certificate: UnknownIssuer");

    let mut c = http(b.https_url("/secure"));
    c.tls_verify = false;
    assert_pass(&probe_http(&prober, c.clone(), T).await, "HTTP 200");
    assert!(
        b.stats
            .last_request()
            .starts_with("GET /secure HTTP/1.1\r\n")
    );

    // A far-away notAfter (rcgen's default) satisfies tls_min_validity.
    c.tls_min_validity = Some(Duration::from_secs(30 * 86400));
    assert_pass(&probe_http(&prober, c, T).await, "HTTP 200");
}

#[tokio::test]
async fn tls_min_validity_fails_a_certificate_expiring_soon() {
    let prober = Prober::new();
    let soon = SystemTime::now() + Duration::from_secs(3 * 86400);
    let b = Backend::start_tls(Reply::ok(), self_signed(&["localhost"], Some(soon))).await;

    let mut c = http(b.https_url("/"));
    c.tls_verify = false;
    assert_pass(&probe_http(&prober, c.clone(), T).await, "HTTP 200");

    c.tls_min_validity = Some(Duration::from_secs(30 * 86400));
    let o = probe_http(&prober, c.clone(), T).await;
    assert!(!o.ok, "{o:?}");
    assert!(o.reason.contains("certificate expires in"), "{o:?}");
    assert_eq!(o.reason, "certificate expires in 3 days");

    c.tls_min_validity = Some(Duration::from_secs(2 * 86400));
    assert_pass(&probe_http(&prober, c, T).await, "HTTP 200");

    let past = SystemTime::now() - Duration::from_secs(86400);
    let expired = Backend::start_tls(Reply::ok(), self_signed(&["localhost"], Some(past))).await;
    let mut c = http(expired.https_url("/"));
    c.tls_verify = false;
    c.tls_min_validity = Some(Duration::from_secs(86400));
    assert_fail(&probe_http(&prober, c, T).await, "certificate expired");
}

// ---------------------------------------------------------------------------------------------
// TCP

/// A line server: answers every line received with `answer`; keeps the connection open.
async fn line_server(answer: &'static str) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut sock, _)) = accepted else { continue };
                    conns.spawn(async move {
                        let mut buf = [0u8; 1024];
                        while let Ok(n) = sock.read(&mut buf).await {
                            if n == 0 || sock.write_all(answer.as_bytes()).await.is_err() {
                                break;
                            }
                        }
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    (addr, task)
}

fn tcp(addr: SocketAddr, send: Option<&str>, expect: Option<&str>) -> CheckKind {
    CheckKind::Tcp(TcpCheck {
        address: addr.to_string(),
        send: send.map(Into::into),
        expect: expect.map(Into::into),
    })
}

#[tokio::test]
async fn tcp_connect_send_and_expect() {
    let prober = Prober::new();
    let (pong, pong_task) = line_server("+PONG\r\n").await;
    let (nope, nope_task) = line_server("NOPE\n").await;

    assert_pass(&prober.check(&tcp(pong, None, None), T).await, "connected");
    assert_pass(
        &prober
            .check(&tcp(pong, Some("PING\r\n"), Some("PONG")), T)
            .await,
        "got 'PONG'",
    );

    // The server keeps the connection open: the probe reports what it got at its deadline.
    let start = Instant::now();
    let o = prober
        .check(
            &tcp(nope, Some("PING\r\n"), Some("PONG")),
            Duration::from_millis(300),
        )
        .await;
    assert_fail(&o, "expected 'PONG', got 'NOPE'");
    assert!(start.elapsed() < Duration::from_millis(600));

    // Nothing sent, nothing comes back: a timeout.
    let o = prober
        .check(&tcp(pong, None, Some("PONG")), Duration::from_millis(200))
        .await;
    assert_fail(&o, "timed out after 200ms");

    pong_task.abort();
    nope_task.abort();
    let _ = pong_task.await;
    let closed = prober.check(&tcp(pong, None, None), T).await;
    assert_fail(&closed, "connect refused");
}

#[tokio::test]
async fn tcp_reply_that_closes_early_is_reported() {
    let prober = Prober::new();
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.write_all(b"220 mail ready\r\n").await;
        }
    });
    assert_pass(
        &prober.check(&tcp(addr, None, Some("220 ")), T).await,
        "got '220 '",
    );
    assert_fail(
        &prober.check(&tcp(addr, None, Some("SSH-2.0")), T).await,
        "expected 'SSH-2.0', got '220 mail ready'",
    );
    server.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// DNS

fn dns(server: SocketAddr, qname: &str, rtype: RecordType, values: &[&str]) -> CheckKind {
    CheckKind::Dns(DnsCheck {
        name: name(qname),
        server,
        record_type: rtype,
        values: values.iter().map(|v| v.to_string()).collect(),
    })
}

#[tokio::test]
async fn dns_checks_against_detour_itself() {
    let server = common::Server::standard().await;
    let prober = Prober::new();
    let a = server.addr;

    let o = prober
        .check(&dns(a, "mls.example.test.", RecordType::A, &[]), T)
        .await;
    assert!(o.ok, "{o:?}");
    assert!(o.reason.contains("127.0.0.10"), "{o:?}");

    // Values in any order match.
    let o = prober
        .check(
            &dns(
                a,
                "mls.example.test.",
                RecordType::A,
                &["127.0.0.11", "127.0.0.10"],
            ),
            T,
        )
        .await;
    assert!(o.ok, "{o:?}");

    let o = prober
        .check(
            &dns(a, "mls.example.test.", RecordType::A, &["127.0.0.9"]),
            T,
        )
        .await;
    assert_fail(
        &o,
        "DNS: answered 127.0.0.10, 127.0.0.11; expected 127.0.0.9",
    );

    // A subset is not the set.
    let o = prober
        .check(
            &dns(a, "mls.example.test.", RecordType::A, &["127.0.0.10"]),
            T,
        )
        .await;
    assert!(!o.ok, "{o:?}");

    let o = prober
        .check(&dns(a, "nope.example.test.", RecordType::A, &[]), T)
        .await;
    assert_fail(&o, "DNS: NXDOMAIN");

    // The name exists without that type.
    let o = prober
        .check(&dns(a, "mail.example.test.", RecordType::AAAA, &[]), T)
        .await;
    assert_fail(&o, "DNS: no AAAA records");

    // Names compare without case or trailing dot.
    let o = prober
        .check(
            &dns(
                a,
                "example.test.",
                RecordType::NS,
                &["NS1.example.test", "ns2.example.test."],
            ),
            T,
        )
        .await;
    assert!(o.ok, "{o:?}");

    // Outside every served zone: detour refuses.
    let o = prober
        .check(&dns(a, "somewhere.else.", RecordType::A, &[]), T)
        .await;
    assert_fail(&o, "DNS: REFUSED");
}

#[tokio::test]
async fn dns_against_a_silent_server_times_out() {
    let prober = Prober::new();
    // A UDP socket that never answers.
    let silent = tokio::net::UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let addr = silent.local_addr().unwrap();
    let start = Instant::now();
    let o = prober
        .check(
            &dns(addr, "mls.example.test.", RecordType::A, &[]),
            Duration::from_millis(300),
        )
        .await;
    assert_fail(&o, "timed out after 300ms");
    assert!(start.elapsed() < Duration::from_millis(600));
}

// ---------------------------------------------------------------------------------------------
// check_each

/// Backends on 127.0.0.10 and 127.0.0.11, on one port (`check_each` probes one port on each).
async fn backend_pair(reply: Reply) -> (Backend, Backend) {
    let ten: IpAddr = "127.0.0.10".parse().unwrap();
    let eleven: IpAddr = "127.0.0.11".parse().unwrap();
    for _ in 0..20 {
        let first = Backend::start(ten, reply.clone()).await;
        if let Ok(l) = TcpListener::bind((eleven, first.addr.port())).await {
            let second = Backend::serve(l, reply.clone(), None);
            return (first, second);
        }
    }
    panic!("no port free on both 127.0.0.10 and 127.0.0.11");
}

#[tokio::test]
async fn check_each_http_probes_every_address_with_the_record_as_host() {
    let prober = Prober::new();
    let (ten, eleven) = backend_pair(Reply::ok().body("mls OK")).await;
    let port = ten.addr.port();
    let record = name("mls.example.test.");
    let kind = CheckEachKind::Http {
        scheme: "http".into(),
        path: "/health".into(),
        host: None,
        expect_status: Vec::new(),
        body_contains: Some("OK".into()),
    };

    for b in [&ten, &eleven] {
        let o = prober.address(&kind, b.addr.ip(), port, &record, T).await;
        assert_pass(&o, "HTTP 200");
        let req = b.stats.last_request();
        assert!(req.starts_with("GET /health HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("host: mls.example.test\r\n"), "{req}");
    }

    // An explicit host wins; a path without its slash still works.
    let kind2 = CheckEachKind::Http {
        scheme: "http".into(),
        path: "status".into(),
        host: Some("portal.example.test".into()),
        expect_status: vec![200],
        body_contains: None,
    };
    assert_pass(
        &prober
            .address(&kind2, eleven.addr.ip(), port, &record, T)
            .await,
        "HTTP 200",
    );
    let req = eleven.stats.last_request();
    assert!(req.starts_with("GET /status HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("host: portal.example.test\r\n"), "{req}");

    // One address down: only it fails.
    let ip11 = eleven.addr.ip();
    eleven.stop().await;
    assert_fail(
        &prober.address(&kind, ip11, port, &record, T).await,
        "connect refused",
    );
    assert_pass(
        &prober.address(&kind, ten.addr.ip(), port, &record, T).await,
        "HTTP 200",
    );

    // A body that lacks the text.
    let kind3 = CheckEachKind::Http {
        scheme: "http".into(),
        path: "/".into(),
        host: None,
        expect_status: Vec::new(),
        body_contains: Some("READY".into()),
    };
    assert_fail(
        &prober
            .address(&kind3, ten.addr.ip(), port, &record, T)
            .await,
        "body lacks 'READY'",
    );
}

#[tokio::test]
async fn check_each_tcp_connects_to_every_address() {
    let prober = Prober::new();
    let (ten, eleven) = backend_pair(Reply::ok()).await;
    let port = ten.addr.port();
    let record = name("mls.example.test.");
    for b in [&ten, &eleven] {
        let o = prober
            .address(&CheckEachKind::Tcp, b.addr.ip(), port, &record, T)
            .await;
        assert_pass(&o, "connected");
    }
    let ip = ten.addr.ip();
    ten.stop().await;
    assert_fail(
        &prober
            .address(&CheckEachKind::Tcp, ip, port, &record, T)
            .await,
        "connect refused",
    );
    // A hanging address times out at the deadline.
    let hang = Backend::start(ip, Reply::mode(Mode::Hang)).await;
    let kind = CheckEachKind::Http {
        scheme: "http".into(),
        path: "/".into(),
        host: None,
        expect_status: Vec::new(),
        body_contains: None,
    };
    let o = prober
        .address(
            &kind,
            ip,
            hang.addr.port(),
            &record,
            Duration::from_millis(200),
        )
        .await;
    assert_fail(&o, "timed out after 200ms");
}

#[tokio::test]
async fn check_each_https_sends_the_record_as_sni_and_verifies() {
    let prober = Prober::new();
    let tls = self_signed(&["mls.example.test"], None);
    let b = Backend::start_tls(Reply::ok(), tls).await;
    let kind = CheckEachKind::Http {
        scheme: "https".into(),
        path: "/health".into(),
        host: None,
        expect_status: Vec::new(),
        body_contains: None,
    };
    let o = prober
        .address(&kind, LOCAL, b.addr.port(), &name("mls.example.test."), T)
        .await;
    // Verification stays on: a self-signed certificate is refused.
    assert!(!o.ok, "{o:?}");
    assert!(o.reason.contains("UnknownIssuer"), "{o:?}");
    assert_eq!(
        b.stats.sni.lock().unwrap().as_slice(),
        &[Some("mls.example.test".to_string())]
    );
}

// ---------------------------------------------------------------------------------------------
// Tests in a process of their own

/// Re-runs this test binary for the one test `name`, with `envs`; fails if it fails.
fn run_child(name: &str, envs: &[(&str, &Path)]) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(name)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn concurrent_timeouts_leak_no_sockets() {
    run_child("child_concurrent_timeouts_leak_no_sockets", &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_concurrent_timeouts_leak_no_sockets() {
    if !is_child("child_concurrent_timeouts_leak_no_sockets") {
        return;
    }
    let prober = Prober::new();
    let b = Backend::start(LOCAL, Reply::mode(Mode::Hang)).await;
    let check = CheckKind::Http(http(b.url("/")));
    let timeout = Duration::from_millis(100);
    // Warm up: the client exists, the runtime's threads are up.
    assert!(!prober.check(&check, timeout).await.ok);
    assert_all_closed(&b).await;
    let baseline = open_fds();

    let start = Instant::now();
    let mut probes = JoinSet::new();
    for _ in 0..200 {
        let (p, c) = (prober.clone(), check.clone());
        probes.spawn(async move { p.check(&c, timeout).await });
    }
    // Midway, the sockets are really open (so the count below measures something).
    tokio::time::sleep(timeout / 2).await;
    let peak = open_fds();
    assert!(
        peak > baseline + 100,
        "{peak} fds while probing, baseline {baseline}"
    );
    let mut n = 0;
    while let Some(o) = probes.join_next().await {
        let o = o.unwrap();
        assert_eq!(o.reason, "timed out after 100ms");
        n += 1;
    }
    assert_eq!(n, 200);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // Some probes time out before the backend gets round to accepting (or before they
    // connect at all); those the backend did accept must be closed by the client below.
    assert!(b.stats.accepted.load(Ordering::SeqCst) > 1);

    // Every connection is closed by the client (the server only closes on EOF), and the
    // process is back to where it was.
    assert_all_closed(&b).await;
    let mut fds = open_fds();
    for _ in 0..100 {
        if fds <= baseline + 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        fds = open_fds();
    }
    eprintln!(
        "leak test: baseline {baseline} fds, {peak} while probing, {fds} after; {} accepted",
        b.stats.accepted.load(Ordering::SeqCst)
    );
    assert!(fds <= baseline + 4, "{fds} fds open, baseline {baseline}");

    // The same for TCP probes waiting for a reply and DNS probes waiting for an answer.
    let silent_udp = tokio::net::UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let kinds = [
        tcp(b.addr, Some("PING\r\n"), Some("PONG")),
        dns(
            silent_udp.local_addr().unwrap(),
            "mls.example.test.",
            RecordType::A,
            &[],
        ),
    ];
    for kind in kinds {
        let mut probes = JoinSet::new();
        for _ in 0..100 {
            let (p, k) = (prober.clone(), kind.clone());
            probes.spawn(async move { p.check(&k, timeout).await });
        }
        while let Some(o) = probes.join_next().await {
            assert_eq!(o.unwrap().reason, "timed out after 100ms");
        }
        assert_all_closed(&b).await;
        let mut fds = open_fds();
        for _ in 0..100 {
            if fds <= baseline + 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            fds = open_fds();
        }
        eprintln!("leak test: {fds} fds after 100 probes of {kind:?}");
        assert!(
            fds <= baseline + 5,
            "{fds} fds open, baseline {baseline}: {kind:?}"
        );
    }
}

#[test]
fn check_each_https_passes_with_a_trusted_certificate() {
    // A CA the child trusts through SSL_CERT_FILE, and a leaf for the record's name.
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "detour test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["mls.example.test".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("leaf.der"), leaf.der()).unwrap();
    std::fs::write(dir.path().join("leaf.key"), leaf_key.serialize_der()).unwrap();
    run_child(
        "child_check_each_https_passes_with_a_trusted_certificate",
        &[
            ("SSL_CERT_FILE", &dir.path().join("ca.pem")),
            (CHILD_DIR_ENV, dir.path()),
        ],
    );
}

#[tokio::test]
async fn child_check_each_https_passes_with_a_trusted_certificate() {
    if !is_child("child_check_each_https_passes_with_a_trusted_certificate") {
        return;
    }
    let dir = std::path::PathBuf::from(std::env::var(CHILD_DIR_ENV).unwrap());
    let cert = CertificateDer::from(std::fs::read(dir.join("leaf.der")).unwrap());
    let key = PrivatePkcs8KeyDer::from(std::fs::read(dir.join("leaf.key")).unwrap());
    let tls = server_config(cert, key.into());
    let ten: IpAddr = "127.0.0.10".parse().unwrap();
    let b = Backend::bind(
        SocketAddr::new(ten, 0),
        Reply::ok().body("MLS OK"),
        Some(tls),
    )
    .await;
    let kind = CheckEachKind::Http {
        scheme: "https".into(),
        path: "/health".into(),
        host: None,
        expect_status: vec![200],
        body_contains: Some("OK".into()),
    };
    let record = name("mls.example.test.");
    let o = prober_address_twice(&kind, ten, b.addr.port(), &record).await;
    assert_pass(&o, "HTTP 200");
    let req = b.stats.last_request();
    assert!(req.starts_with("GET /health HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("host: mls.example.test\r\n"), "{req}");
    assert_eq!(
        b.stats.sni.lock().unwrap().as_slice(),
        &[
            Some("mls.example.test".to_string()),
            Some("mls.example.test".to_string())
        ]
    );

    // The same certificate for another name does not verify.
    let other = CheckEachKind::Http {
        scheme: "https".into(),
        path: "/".into(),
        host: Some("forms.example.test".into()),
        expect_status: Vec::new(),
        body_contains: None,
    };
    let o = Prober::new()
        .address(&other, ten, b.addr.port(), &record, T)
        .await;
    assert!(!o.ok, "{o:?}");
    assert!(o.reason.starts_with("TLS: "), "{o:?}");
    assert_eq!(o.reason, "TLS: invalid peer certificate: NotValidForName");
}

/// Two probes of one address through one prober (the second reuses the cached client).
async fn prober_address_twice(
    kind: &CheckEachKind,
    ip: IpAddr,
    port: u16,
    record: &Name,
) -> Observation {
    let prober = Prober::new();
    let first = prober.address(kind, ip, port, record, T).await;
    assert!(first.ok, "{first:?}");
    prober.address(kind, ip, port, record, T).await
}

#[tokio::test]
async fn a_port_nobody_listens_on_is_refused_for_every_kind() {
    let prober = Prober::new();
    let addr = free_port().await;
    assert_fail(
        &probe_http(
            &prober,
            http(url::Url::parse(&format!("http://{addr}/")).unwrap()),
            T,
        )
        .await,
        "connect refused",
    );
    assert_fail(
        &probe_http(
            &prober,
            http(url::Url::parse(&format!("https://{addr}/")).unwrap()),
            T,
        )
        .await,
        "connect refused",
    );
    assert_fail(
        &prober.check(&tcp(addr, None, None), T).await,
        "connect refused",
    );
}

// ---------------------------------------------------------------------------------------------
// probe_source

/// Not an address of this host (TEST-NET-2, RFC 5737).
const ABSENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10));

#[tokio::test]
async fn a_probe_source_not_on_this_host_fails_every_kind_with_a_clear_reason() {
    let b = Backend::start(LOCAL, Reply::ok()).await;
    let prober = Prober::with_source(Some(ABSENT));
    let reason = "cannot bind probe source 198.51.100.10: Cannot assign requested address";
    assert_fail(&probe_http(&prober, http(b.url("/")), T).await, reason);
    assert_fail(&prober.check(&tcp(b.addr, None, None), T).await, reason);
    let server = SocketAddr::new(LOCAL, free_port().await.port());
    assert_fail(
        &prober
            .check(&dns(server, "mls.example.test.", RecordType::A, &[]), T)
            .await,
        reason,
    );
    let record = name("mls.example.test.");
    for kind in [CheckEachKind::Tcp, each_http()] {
        assert_fail(
            &prober
                .address(&kind, LOCAL, b.addr.port(), &record, T)
                .await,
            reason,
        );
    }
    assert_eq!(
        prober.connect(&b.addr.to_string()).await.err().as_deref(),
        Some(reason)
    );
    assert_eq!(
        b.stats.accepted.load(Ordering::SeqCst),
        0,
        "nothing left from elsewhere"
    );
}

/// `check_each = { type = "http" }` on `/`.
fn each_http() -> CheckEachKind {
    CheckEachKind::Http {
        scheme: "http".into(),
        path: "/".into(),
        host: None,
        expect_status: Vec::new(),
        body_contains: None,
    }
}

#[tokio::test]
async fn a_target_of_the_other_family_fails_and_is_not_reached_from_another_address() {
    let source: IpAddr = "127.0.0.3".parse().unwrap();
    let prober = Prober::with_source(Some(source));
    let v6 = Backend::start("::1".parse().unwrap(), Reply::ok()).await;
    let reason = "IPv6 address ::1 cannot be probed from probe_source 127.0.0.3 (IPv4)";
    assert_fail(&probe_http(&prober, http(v6.url("/")), T).await, reason);
    assert_fail(&prober.check(&tcp(v6.addr, None, None), T).await, reason);
    assert_fail(
        &prober
            .check(&dns(v6.addr, "mls.example.test.", RecordType::A, &[]), T)
            .await,
        reason,
    );
    let record = name("mls.example.test.");
    for kind in [CheckEachKind::Tcp, each_http()] {
        assert_fail(
            &prober
                .address(&kind, v6.addr.ip(), v6.addr.port(), &record, T)
                .await,
            reason,
        );
    }
    // Nor through a redirect: the connector would reach it from an address of its choosing.
    let redirect = Backend::start(
        LOCAL,
        Reply::status(302).header("Location", v6.url("/").as_str()),
    )
    .await;
    let mut follow = http(redirect.url("/"));
    follow.follow_redirects = true;
    assert_fail(&probe_http(&prober, follow, T).await, reason);
    assert_eq!(*redirect.stats.peers.lock().unwrap(), [source]);
    assert_eq!(v6.stats.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn names_resolve_to_the_probe_source_family_and_probes_leave_from_it() {
    let source: IpAddr = "127.0.0.3".parse().unwrap();
    let prober = Prober::with_source(Some(source));
    let b = Backend::start(LOCAL, Reply::ok()).await;
    let port = b.addr.port();
    let by_name = url::Url::parse(&format!("http://localhost:{port}/")).unwrap();
    assert_pass(&probe_http(&prober, http(by_name), T).await, "HTTP 200");
    let check = CheckKind::Tcp(TcpCheck {
        address: format!("localhost:{port}"),
        send: None,
        expect: None,
    });
    assert_pass(&prober.check(&check, T).await, "connected");
    // The connection is up before the backend accepts it.
    let start = Instant::now();
    while b.stats.accepted.load(Ordering::SeqCst) < 2 && start.elapsed() < T {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(*b.stats.peers.lock().unwrap(), [source, source]);

    // A name with no address of the source's family.
    let v6 = Prober::with_source(Some("::1".parse().unwrap()));
    let check = CheckKind::Tcp(TcpCheck {
        address: format!("127.0.0.1:{port}"),
        send: None,
        expect: None,
    });
    assert_fail(
        &v6.check(&check, T).await,
        "IPv4 address 127.0.0.1 cannot be probed from probe_source ::1 (IPv6)",
    );
    let by_name = url::Url::parse(&format!("http://localhost:{port}/")).unwrap();
    assert_fail(
        &probe_http(&v6, http(by_name), T).await,
        "no IPv6 address for localhost (probe_source ::1 is IPv6)",
    );
    assert_eq!(b.stats.accepted.load(Ordering::SeqCst), 2);
}
