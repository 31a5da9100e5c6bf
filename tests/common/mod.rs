//! Test harness: a detour started in-process on 127.0.0.1 with an ephemeral port, and a small
//! DNS client built on hickory's message types that speaks real UDP and TCP.
#![allow(dead_code)]

pub mod backend;
pub mod binary;
pub mod configs;
pub mod etcd;
pub mod hooks;

#[allow(unused_imports)] // Not every test file uses them.
pub use configs::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use detour::config::Config;
use detour::daemon::{self, Running};
use hickory_server::proto::op::{Edns, Message, Query};
use hickory_server::proto::rr::{DNSClass, Name, RData, RecordType};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The zone most DNS tests use: every static type, a delegation, a wildcard, a CNAME loop,
/// a big RRset and a dynamic record.
pub const TEST_ZONE: &str = r#"
origin = "example.test."
ttl = 3600
soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test.", minimum = 60, ttl = 300 }
ns  = ["ns1.example.test.", "ns2.example.test."]
allow_transfer = ["127.0.0.1"]
records = [
  { name = "ns1",   type = "A",     value = "127.0.0.1" },
  { name = "ns2",   type = "AAAA",  value = "::1" },
  { name = "www",   type = "CNAME", value = "mls" },
  { name = "@",     type = "MX",    value = "10 mail" },
  { name = "mail",  type = "A",     value = "192.0.2.25" },
  { name = "@",     type = "TXT",   value = "v=spf1 -all" },
  { name = "two",   type = "TXT",   value = '"hello benchmark" "second \"string\""' },
  { name = "@",     type = "CAA",   value = "0 issue \"letsencrypt.org\"" },
  { name = "_sip._tcp", type = "SRV", value = "10 5 5060 mail" },
  { name = "10.2.0.192.in-addr", type = "PTR", value = "mls.example.test." },
  { name = "loop1", type = "CNAME", value = "loop2" },
  { name = "loop2", type = "CNAME", value = "loop1" },
  { name = "out",   type = "CNAME", value = "elsewhere.invalid." },
  { name = "deep.a.b", type = "A",  value = "192.0.2.99" },
  { name = "*.wild", type = "A",    value = "192.0.2.77" },
  { name = "branch", type = "NS",   value = "ns.branch" },
  { name = "ns.branch", type = "A", value = "192.0.2.53" },
  { name = "into-branch", type = "CNAME", value = "host.branch" },
]

[[dynamic]]
name = "mls"
type = "A"
ttl  = 30
answers = [ { if_up = "mls", values = ["127.0.0.10", "127.0.0.11"] } ]
otherwise = ["127.0.0.80"]
"#;

/// A second zone, so that zone selection by longest suffix is exercised.
pub const SUB_ZONE: &str = r#"
origin = "sub.example.test."
soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test." }
ns  = ["ns1.example.test."]
records = [ { name = "host", type = "A", value = "192.0.2.1" } ]
"#;

/// A config with DNS on an ephemeral port; `extra` is appended to `[server]`.
pub fn config_toml(extra_server: &str) -> String {
    format!(
        r#"
[server]
dns_listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
page_listen = ["127.0.0.1:0"]
zones_dir = "zones"
udp_workers = 2
{extra_server}

[services.mls]
name = "MLS"
"#
    )
}

/// A temporary folder holding `detour.toml` and `zones/`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(config: &str, zones: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("detour.toml"), config).expect("write config");
        std::fs::create_dir(dir.path().join("zones")).expect("zones dir");
        for (name, text) in zones {
            std::fs::write(dir.path().join("zones").join(name), text).expect("write zone");
        }
        Self { dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("detour.toml")
    }

    pub fn zone_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("zones").join(name)
    }

    pub fn load(&self) -> Config {
        Config::load(&self.config_path()).unwrap_or_else(|e| panic!("config invalid:\n{e}"))
    }
}

/// A detour serving a fixture.
pub struct Server {
    pub fixture: Fixture,
    pub running: Running,
    pub addr: SocketAddr,
}

impl Server {
    pub async fn start(config: &str, zones: &[(&str, &str)]) -> Self {
        let fixture = Fixture::new(config, zones);
        let cfg = fixture.load();
        let running = daemon::start(cfg, &fixture.config_path())
            .await
            .expect("detour starts");
        let addr = running.dns_addrs()[0];
        Self {
            fixture,
            running,
            addr,
        }
    }

    /// The usual server: the test zone and a sub-zone.
    pub async fn standard() -> Self {
        Self::start(
            &config_toml(""),
            &[("example.test.toml", TEST_ZONE), ("sub.toml", SUB_ZONE)],
        )
        .await
    }
}

pub fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("valid name")
}

/// A query message; `edns` is the advertised UDP size, if any.
pub fn query(qname: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.id = rand::random();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.edns = Some(e);
    }
    m
}

pub fn query_class(qname: &str, qtype: RecordType, class: DNSClass) -> Message {
    let mut m = query(qname, qtype, None);
    let mut q = Query::query(name(qname), qtype);
    q.set_query_class(class);
    m.queries = vec![q];
    m
}

/// Sends raw bytes over UDP; the raw reply, or None after `wait`.
pub async fn udp_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.send_to(bytes, addr).await.expect("send");
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// The A addresses in a reply's answer section, sorted.
pub fn a_values(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// The A addresses `name` has at `addr`, asked over UDP, sorted.
pub async fn udp_a(addr: SocketAddr, name: &str) -> Vec<String> {
    let (m, _) = udp(addr, &query(name, RecordType::A, None)).await;
    a_values(&m)
}

/// One query over UDP; panics when no answer comes within 2 s.
pub async fn udp(addr: SocketAddr, msg: &Message) -> (Message, usize) {
    let bytes = msg.to_vec().expect("encode");
    let raw = udp_raw(addr, &bytes, Duration::from_secs(2))
        .await
        .expect("an answer over UDP");
    let reply = Message::from_vec(&raw).expect("parse reply");
    assert_eq!(reply.metadata.id, msg.metadata.id, "reply id matches");
    (reply, raw.len())
}

/// Writes one length-prefixed message on a TCP stream.
pub async fn tcp_send(stream: &mut TcpStream, bytes: &[u8]) {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    stream.write_all(&out).await.expect("tcp write");
}

/// Reads one length-prefixed message from a TCP stream (None at EOF or after 3 s).
pub async fn tcp_recv(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let read = async {
        let len = stream.read_u16().await.ok()? as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.ok()?;
        Some(buf)
    };
    tokio::time::timeout(Duration::from_secs(3), read)
        .await
        .ok()?
}

/// One query over a fresh TCP connection.
pub async fn tcp(addr: SocketAddr, msg: &Message) -> Message {
    let mut s = TcpStream::connect(addr).await.expect("tcp connect");
    tcp_send(&mut s, &msg.to_vec().expect("encode")).await;
    let raw = tcp_recv(&mut s).await.expect("an answer over TCP");
    let reply = Message::from_vec(&raw).expect("parse reply");
    assert_eq!(reply.metadata.id, msg.metadata.id);
    reply
}

/// Zone transfer over TCP: every message until the closing SOA (or EOF).
pub async fn axfr(addr: SocketAddr, msg: &Message) -> Vec<Message> {
    let mut s = TcpStream::connect(addr).await.expect("tcp connect");
    tcp_send(&mut s, &msg.to_vec().expect("encode")).await;
    let mut out = Vec::new();
    let mut soas = 0;
    while let Some(raw) = tcp_recv(&mut s).await {
        let m = Message::from_vec(&raw).expect("parse");
        soas += m
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        let done = m.answers.is_empty() || soas >= 2;
        out.push(m);
        if done {
            break;
        }
    }
    out
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// The value of the first series in this process's Prometheus exposition whose name and
/// labels start with `parts[0]` and hold every other part (`result="ok"`), 0 when none does.
/// Counters are process-wide: tests sharing a binary see each other's counts.
pub fn metric(parts: &[&str]) -> f64 {
    detour::telemetry::render()
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            series.starts_with(parts[0]) && parts[1..].iter().all(|p| series.contains(p))
        })
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// An operator override on `service` (`None` clears it), as `detour override` makes it.
pub async fn force(s: &Server, service: &str, state: Option<detour::overrides::Forced>) {
    let o = state.map(|state| detour::overrides::Override::new(state, "test"));
    s.running
        .control()
        .set_override(service, o, detour::states::Actor { who: "test".into() })
        .await
        .unwrap();
}

/// The admin API of a [`Server`], over real HTTP with its bearer token.
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn of(s: &Server) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let token = std::fs::read_to_string(s.fixture.dir.path().join("state/admin.token"))
            .expect("token file created at start")
            .trim()
            .to_string();
        Self {
            base: format!("http://{}", s.running.admin_addr()),
            token,
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = r.send().await.expect("admin API answers");
        let code = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}
