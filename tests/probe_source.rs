//! `[server] probe_source`, end to end: every probe (HTTP, TCP, DNS, `check_each`, canaries,
//! the watch connection) leaves from the configured address.
//!
//! The backends are real servers on loopback that serve only 127.0.0.3 and cut every other
//! peer off: they stand for services that one vantage point of detour cannot reach. Each also
//! records every peer address it saw, so a test can tell where the probes came from. (A TCP
//! server cannot refuse a connection by its source in user space: the kernel completes the
//! handshake before `accept`. So the TCP backend greets only 127.0.0.3, and its check
//! expects the greeting.)

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use detour::checks::runner::CheckId;
use detour::health::{Health, ServiceState};
use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{RData, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// The vantage point the backends serve.
const ALLOWED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
/// A vantage point the backends cut off.
const CUT_OFF: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));

/// Lenient enough for a loaded 2-core machine; a verdict still comes within a second or two.
const TIMING: &str = "interval = \"1s\", timeout = \"800ms\", confirm_interval = \"100ms\"";

/// Bound on every wait for a state.
const WITHIN: Duration = Duration::from_secs(10);

/// A backend that serves only [`ALLOWED`]; stopped when dropped.
struct Picky {
    addr: SocketAddr,
    /// Every peer address seen.
    peers: Arc<Mutex<BTreeSet<IpAddr>>>,
    /// Connections served and not yet closed (TCP only).
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Picky {
    fn peers(&self) -> BTreeSet<IpAddr> {
        self.peers.lock().unwrap().clone()
    }
}

impl Drop for Picky {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// TCP on `ip`: greets [`ALLOWED`] with "HELLO" and holds the connection until the peer closes
/// it (a watch connection stays); closes any other peer's connection at once, unread.
async fn picky_tcp(ip: &str) -> Picky {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind tcp backend");
    let addr = listener.local_addr().unwrap();
    let peers = Arc::new(Mutex::new(BTreeSet::new()));
    let open = Arc::new(AtomicUsize::new(0));
    let (seen, held) = (peers.clone(), open.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, peer)) = listener.accept().await else {
                continue;
            };
            seen.lock().unwrap().insert(peer.ip());
            if peer.ip() != ALLOWED {
                continue; // dropped: closed
            }
            let held = held.clone();
            held.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if s.write_all(b"HELLO\n").await.is_ok() {
                    let mut buf = [0u8; 512];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                }
                held.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Picky {
        addr,
        peers,
        open,
        task,
    }
}

/// HTTP/1.1 on `ip`: 200 "OK" to [`ALLOWED`]; any other peer's connection is closed at once,
/// unread.
async fn picky_http(ip: &str) -> Picky {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind http backend");
    let addr = listener.local_addr().unwrap();
    let peers = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = peers.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, peer)) = listener.accept().await else {
                continue;
            };
            seen.lock().unwrap().insert(peer.ip());
            if peer.ip() != ALLOWED {
                continue;
            }
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let reply = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK";
                if s.write_all(reply.as_bytes()).await.is_ok() {
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    Picky {
        addr,
        peers,
        open: Arc::new(AtomicUsize::new(0)),
        task,
    }
}

/// DNS over UDP on 127.0.0.1: any name is A 192.0.2.1 for [`ALLOWED`]; REFUSED for any
/// other peer.
async fn picky_dns() -> Picky {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind dns backend");
    let addr = socket.local_addr().unwrap();
    let peers = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = peers.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            seen.lock().unwrap().insert(peer.ip());
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(name) = query.queries.first().map(|q| q.name().clone()) else {
                continue;
            };
            let mut reply = query.into_response();
            reply.metadata.authoritative = true;
            if peer.ip() == ALLOWED {
                reply.add_answer(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, 1))));
            } else {
                reply.metadata.response_code = ResponseCode::Refused;
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    Picky {
        addr,
        peers,
        open: Arc::new(AtomicUsize::new(0)),
        task,
    }
}

/// The three checked services and a `check_each` record, all against picky backends.
struct Backends {
    http: Picky,
    tcp: Picky,
    dns: Picky,
}

impl Backends {
    async fn start() -> Self {
        // On 127.0.0.10: the address `check_each` probes, as the record answers it.
        let http = picky_http("127.0.0.10").await;
        let tcp = picky_tcp("127.0.0.1").await;
        let dns = picky_dns().await;
        Self { http, tcp, dns }
    }

    /// detour probing them from `source`.
    async fn detour(&self, source: IpAddr) -> Server {
        let services = format!(
            r#"
[services.web]
check = {{ type = "http", url = "http://{http}/health", {TIMING} }}
[services.shell]
check = {{ type = "tcp", address = "{tcp}", expect = "HELLO", watch = true, {TIMING} }}
[services.names]
check = {{ type = "dns", server = "{dns}", name = "mls.example.test", values = ["192.0.2.1"], {TIMING} }}
[services.pool]
"#,
            http = self.http.addr,
            tcp = self.tcp.addr,
            dns = self.dns.addr,
        );
        let zone = format!(
            r#"{BARE_ZONE}
[[dynamic]]
name = "www"
type = "A"
ttl = 30
answers = [ {{ if_up = "pool", values = ["127.0.0.10"] }} ]
otherwise = ["127.0.0.80"]
check_each = {{ type = "http", port = {port}, path = "/health", {TIMING} }}
"#,
            port = self.http.addr.port()
        );
        let config = page_config(&format!("probe_source = \"{source}\""), &services);
        Server::start(&config, &[("z.toml", &zone)]).await
    }
}

/// Waits until `done` holds for the published health; panics after [`WITHIN`], showing it.
async fn wait_for(s: &Server, what: &str, done: impl Fn(&Health) -> bool) -> Health {
    let start = Instant::now();
    loop {
        let health = s.running.snapshots().load().health.clone();
        if done(&health) {
            return (*health).clone();
        }
        assert!(
            start.elapsed() < WITHIN,
            "{what}: not after {WITHIN:?}; services: {:#?}",
            health.services
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `check_each` probe of 127.0.0.10.
fn each_id() -> CheckId {
    CheckId::Address {
        record: name("www.example.test."),
        rtype: hickory_server::proto::rr::RecordType::A,
        ip: "127.0.0.10".parse().unwrap(),
    }
}

const CHECKED: [&str; 3] = ["web", "shell", "names"];

#[tokio::test(flavor = "multi_thread")]
async fn from_the_allowed_source_every_service_is_up_and_every_probe_came_from_it() {
    let b = Backends::start().await;
    let s = b.detour(ALLOWED).await;
    let h = wait_for(&s, "every checked service up, www probed up", |h| {
        CHECKED
            .iter()
            .all(|id| h.services[*id].state == ServiceState::Up)
            && h.verdict(&each_id()) == Some(true)
    })
    .await;
    assert!(
        h.services.values().all(|svc| svc.state == ServiceState::Up),
        "{:#?}",
        h.services
    );
    assert_eq!(udp_a(s.addr, "www.example.test.").await, ["127.0.0.10"]);
    // The watch connection of `shell` opens after its first pass and stays open.
    let start = Instant::now();
    while b.tcp.open.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < WITHIN, "no watch connection");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let only = BTreeSet::from([ALLOWED]);
    assert_eq!(b.http.peers(), only, "HTTP and check_each probes");
    assert_eq!(b.tcp.peers(), only, "TCP probes and the watch connection");
    assert_eq!(b.dns.peers(), only, "DNS probes");
}

#[tokio::test(flavor = "multi_thread")]
async fn from_a_cut_off_source_every_service_is_down() {
    let b = Backends::start().await;
    let s = b.detour(CUT_OFF).await;
    let h = wait_for(&s, "every checked service down, www probed down", |h| {
        CHECKED
            .iter()
            .all(|id| h.services[*id].state == ServiceState::Down)
            && h.verdict(&each_id()) == Some(false)
    })
    .await;
    assert_eq!(h.services["shell"].reason, "expected 'HELLO', got nothing");
    assert_eq!(h.services["names"].reason, "DNS: REFUSED");
    assert!(
        !h.services["web"].reason.is_empty() && !h.services["web"].reason.starts_with("HTTP"),
        "{}",
        h.services["web"].reason
    );
    // No address of www is live: the outage page.
    assert_eq!(udp_a(s.addr, "www.example.test.").await, ["127.0.0.80"]);
    let only = BTreeSet::from([CUT_OFF]);
    assert_eq!(b.http.peers(), only, "HTTP and check_each probes");
    assert_eq!(b.tcp.peers(), only, "TCP probes");
    assert_eq!(b.dns.peers(), only, "DNS probes");
}

/// detour with one TCP canary on the picky backend, probing from `source`.
async fn guarded(canary: &Picky, source: IpAddr) -> Server {
    let rest = format!(
        "[services.mls]\n[guard]\ncanaries = [{{ type = \"tcp\", address = \"{}\", expect = \"HELLO\", {TIMING} }}]\n",
        canary.addr
    );
    let config = page_config(&format!("probe_source = \"{source}\""), &rest);
    Server::start(&config, &[("z.toml", BARE_ZONE)]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn canaries_probe_from_the_source_too() {
    let canary = picky_tcp("127.0.0.1").await;
    let s = guarded(&canary, ALLOWED).await;
    let h = wait_for(&s, "the canary up", |h| {
        h.verdict(&CheckId::Canary(0)) == Some(true)
    })
    .await;
    assert!(!h.guard.frozen);
    s.running.shutdown().await.unwrap();
    assert_eq!(canary.peers(), BTreeSet::from([ALLOWED]));

    let canary = picky_tcp("127.0.0.1").await;
    let s = guarded(&canary, CUT_OFF).await;
    let h = wait_for(&s, "the guard frozen", |h| h.guard.frozen).await;
    assert_eq!(h.verdict(&CheckId::Canary(0)), Some(false));
    assert_eq!(canary.peers(), BTreeSet::from([CUT_OFF]));
}
