//! The cluster, for real: a 3-member etcd cluster (Debian's `etcd-server`) and three detour
//! processes on loopback, each probing from its own source address (127.0.0.2-4). A
//! backend that refuses one source address stands for "one vantage point cut off".
//! Built with the `cluster` feature (as `.ci/run` does).
#![cfg(feature = "cluster")]

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::binary::{Daemon, cli};
use common::etcd::Etcd;
use common::hooks::Hooks;
use common::{query, udp, udp_a, write};
use hickory_server::proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTP backend that answers 200 "OK", 403 to sources in `blocked`, and closes every
/// connection while `down`.
#[derive(Clone, Default)]
struct Backend {
    blocked: Arc<Mutex<BTreeSet<IpAddr>>>,
    down: Arc<Mutex<bool>>,
}

impl Backend {
    async fn start(self) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, peer)) = l.accept().await else {
                    continue;
                };
                let me = self.clone();
                tokio::spawn(async move {
                    if *me.down.lock().unwrap() {
                        return;
                    }
                    let mut buf = [0u8; 2048];
                    let _ = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await;
                    let status = if me.blocked.lock().unwrap().contains(&peer.ip()) {
                        "403 Forbidden"
                    } else {
                        "200 OK"
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        addr
    }
}

const ZONE: &str = r#"
origin = "example.test."
ttl = 60
soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test.", minimum = 60 }
ns  = ["ns1.example.test."]
records = [ { name = "ns1", type = "A", value = "127.0.0.1" } ]

[[dynamic]]
name = "mls"
type = "A"
ttl  = 30
answers = [ { if_up = "mls", values = ["127.0.0.10"] } ]
otherwise = ["127.0.0.80"]

[[dynamic]]
name = "strict"
type = "A"
ttl  = 30
answers = [ { if_up = "strict", values = ["127.0.0.20"] } ]
otherwise = ["127.0.0.80"]
"#;

/// One detour instance of the cluster.
struct Instance {
    daemon: Option<Daemon>,
    dns: SocketAddr,
}

fn instance_config(
    dir: &Path,
    i: usize,
    etcd: &[String],
    backend: SocketAddr,
    hooks: SocketAddr,
) -> PathBuf {
    let endpoints: Vec<String> = etcd.iter().map(|e| format!("{e:?}")).collect();
    let text = format!(
        r#"
[server]
dns_listen = ["127.0.0.1:0"]
admin_listen = "unix:state/detour.sock"
page_listen = ["127.0.0.1:0"]
zones_dir = "../zones"
udp_workers = 1
probe_source = "127.0.0.{src}"

[check_defaults]
interval = "200ms"
timeout = "200ms"
rise = 1
fall = 1

[services.mls]
name = "MLS"
check = {{ type = "http", url = "http://{backend}/" }}

[services.strict]
name = "MLS, strictly"
quorum = "all"
check = {{ type = "http", url = "http://{backend}/" }}

[[notify]]
type = "webhook"
url = "http://{hooks}/hook"
events = ["down", "up", "override"]

[cluster]
instance = "i{i}"
etcd = [{endpoints}]
prefix = "/detour/test/"
quorum = "majority"
lease_ttl = "2s"
"#,
        src = i + 2,
        endpoints = endpoints.join(", ")
    );
    let d = dir.join(format!("i{i}"));
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join("detour.toml");
    write(&p, &text);
    p
}

impl Instance {
    fn start(config: PathBuf) -> Instance {
        let mut daemon = Daemon::start(&config);
        let dns = daemon.dns_addr();
        daemon.wait_for("ready");
        Instance {
            daemon: Some(daemon),
            dns,
        }
    }

    fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }
}

/// etcd, the backend, the webhook receiver and the instances' configs (not started).
struct Setup {
    etcd: Etcd,
    backend: Backend,
    hooks: Hooks,
    configs: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(members: usize, instances: usize) -> Setup {
        let etcd = Etcd::start(members);
        let backend = Backend::default();
        let backend_addr = backend.clone().start().await;
        let hooks = Hooks::default();
        let hooks_addr = hooks.start().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("zones")).unwrap();
        write(&dir.path().join("zones/example.test.toml"), ZONE);
        let configs = (0..instances)
            .map(|i| instance_config(dir.path(), i, &etcd.endpoints(), backend_addr, hooks_addr))
            .collect();
        Setup {
            etcd,
            backend,
            hooks,
            configs,
            dir,
        }
    }
}

async fn serial(dns: SocketAddr) -> u32 {
    let (m, _) = udp(dns, &query("example.test.", RecordType::SOA, None)).await;
    match &m.answers[0].data {
        RData::SOA(s) => s.serial,
        other => panic!("not an SOA: {other:?}"),
    }
}

/// What every live instance answers for `name`, and its serial.
async fn answers(live: &[&Instance], name: &str) -> Vec<(Vec<String>, u32)> {
    let mut out = Vec::new();
    for i in live {
        out.push((udp_a(i.dns, name).await, serial(i.dns).await));
    }
    out
}

/// Waits (up to 15 s) until every live instance answers `want` for `name` with one serial.
async fn agree(live: &[&Instance], name: &str, want: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = answers(live, name).await;
        let same_serial = got.iter().all(|(_, s)| *s == got[0].1);
        if got.iter().all(|(a, _)| a == &[want.to_string()]) && same_serial {
            return got[0].1;
        }
        assert!(
            Instant::now() < deadline,
            "instances do not agree on {name} = {want} with one serial: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_vote_share_commands_and_survive_etcd_and_instance_failures() {
    let Setup {
        mut etcd,
        backend,
        hooks,
        configs,
        dir: _dir,
    } = Setup::new(3, 3).await;
    let mut inst: Vec<Instance> = configs.iter().cloned().map(Instance::start).collect();

    // Up for everyone: no redirect anywhere, one serial.
    let all: Vec<&Instance> = inst.iter().collect();
    agree(&all, "mls.example.test.", "127.0.0.10").await;
    agree(&all, "strict.example.test.", "127.0.0.20").await;

    // One vantage point cut off: up for two of three. Under "majority" nobody redirects,
    // under "all" everybody does.
    backend
        .blocked
        .lock()
        .unwrap()
        .insert("127.0.0.2".parse().unwrap());
    agree(&all, "strict.example.test.", "127.0.0.80").await;
    agree(&all, "mls.example.test.", "127.0.0.10").await;
    // (Each check flips on its own probe: mls's may follow strict's by a probe or two.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, out, _) = cli(&configs[1], &["status"]);
        assert_eq!(code, 0);
        if out.contains("(i0: down, i1: up, i2: up; majority)") {
            assert!(out.contains("(i0: down, i1: up, i2: up; all)"), "{out}");
            assert!(out.contains("leader i0"), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "status lacks the views:\n{out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    backend.blocked.lock().unwrap().clear();
    agree(&all, "strict.example.test.", "127.0.0.20").await;

    // Down for all: every instance redirects; the cluster tells it once.
    *backend.down.lock().unwrap() = true;
    let s_down = agree(&all, "mls.example.test.", "127.0.0.80").await;
    *backend.down.lock().unwrap() = false;
    let s_up = agree(&all, "mls.example.test.", "127.0.0.10").await;
    assert!(s_up > s_down);

    // An override set on instance 0 answers on 1 and 2 at once.
    let (code, _, err) = cli(
        &configs[0],
        &[
            "override", "set", "mls", "down", "--reason", "cutover", "--until", "6s",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let all: Vec<&Instance> = inst.iter().collect();
    agree(&all, "mls.example.test.", "127.0.0.80").await;

    // (Its notifications delivered first: a leader killed with deliveries in flight loses
    // them, see docs/cluster.md, Limits.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while hooks.count("down", "mls") < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Instance 0 (the leader) is killed: the override stays; its vote drops out after
    // lease_ttl; the survivors keep one serial and a new leader.
    inst[0].kill();
    let rest: Vec<&Instance> = inst[1..].iter().collect();
    agree(&rest, "mls.example.test.", "127.0.0.80").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out, _) = cli(&configs[1], &["status"]);
        if out.contains("members: i1, i2") && out.contains("leader i1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance 0 still counted:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The override expires by itself everywhere (the new leader moves cluster time).
    agree(&rest, "mls.example.test.", "127.0.0.10").await;

    // Incidents and the audit log are the cluster's: opened on one instance, shown by the
    // other, with the override's trail from instance 0.
    let (code, id, err) = cli(
        &configs[1],
        &[
            "incident",
            "open",
            "--service",
            "mls",
            "Cutover to the new MLS",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = cli(&configs[2], &["status", "--history"]);
    assert!(out.contains("Cutover to the new MLS"), "{out}");
    assert!(out.contains(id.trim()), "{out}");
    assert!(out.contains("cutover"), "the override's audit entry: {out}");

    // One etcd member killed: nothing changes, commands work.
    etcd.kill(2);
    let (code, _, err) = cli(
        &configs[1],
        &[
            "override",
            "set",
            "strict",
            "maintenance",
            "--reason",
            "upgrade",
        ],
    );
    assert_eq!(code, 0, "{err}");
    agree(&rest, "strict.example.test.", "127.0.0.80").await;

    // Two killed: etcd has no quorum. Answers stay; commands are refused with a clear
    // message (exit 1); status says why.
    etcd.kill(1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, _, err) = cli(&configs[2], &["override", "clear", "strict"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("etcd cannot be reached or has lost its quorum"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    agree(&rest, "strict.example.test.", "127.0.0.80").await;
    agree(&rest, "mls.example.test.", "127.0.0.10").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out, _) = cli(&configs[2], &["status"]);
        if out.contains("etcd: UNREACHABLE") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status does not say etcd is down:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Back: commands work again, answers follow.
    etcd.restart(1);
    etcd.restart(2);
    etcd.wait_healthy(1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, _, err) = cli(&configs[2], &["override", "clear", "strict"]);
        if code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "commands still refused after etcd came back: {err}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    agree(&rest, "strict.example.test.", "127.0.0.20").await;

    // Each event was told once for the whole cluster, not once per instance: no body
    // arrived twice (instances build identical events: same cluster time, same facts), and
    // each of mls's four changes arrived.
    let deadline = Instant::now() + Duration::from_secs(5);
    while hooks.count("up", "mls") < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bodies = hooks.0.lock().unwrap().clone();
    for (n, b) in bodies.iter().enumerate() {
        assert!(
            !bodies[..n].contains(b),
            "an event arrived twice: {b}\nall: {bodies:#?}"
        );
    }
    assert_eq!(
        hooks.count("down", "mls"),
        2,
        "backend down, then the override: {bodies:#?}"
    );
    assert_eq!(
        hooks.count("up", "mls"),
        2,
        "backend back, then the override expired: {bodies:#?}"
    );
    assert!(hooks.count("override", "mls") >= 1, "{bodies:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_while_etcd_is_down_serves_the_last_agreed_state() {
    let Setup {
        mut etcd,
        configs,
        dir: _dir,
        ..
    } = Setup::new(1, 1).await;
    let config = configs[0].clone();
    let mut one = Instance::start(config.clone());
    agree(&[&one], "mls.example.test.", "127.0.0.10").await;
    let (code, _, err) = cli(
        &config,
        &["override", "set", "mls", "down", "--reason", "db move"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, id, err) = cli(
        &config,
        &[
            "incident",
            "open",
            "--service",
            "mls",
            "Moving the database",
        ],
    );
    assert_eq!(code, 0, "{err}");
    agree(&[&one], "mls.example.test.", "127.0.0.80").await;
    one.kill();

    // etcd is gone; the instance starts again: it serves the state the cluster agreed on
    // last (the override), not what its own probes say (up), and refuses commands.
    etcd.kill(0);
    let again = Instance::start(config.clone());
    agree(&[&again], "mls.example.test.", "127.0.0.80").await;
    let (code, out, _) = cli(&config, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("etcd could not be reached at start"), "{out}");
    assert!(
        out.contains("Moving the database"),
        "the cached incident is shown:\n{out}"
    );
    let (code, _, err) = cli(&config, &["override", "clear", "mls"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nothing was changed"), "{err}");

    // etcd back: the instance syncs, commands work, the incident is still the cluster's.
    etcd.restart(0);
    etcd.wait_healthy(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, _, err) = cli(&config, &["override", "clear", "mls"]);
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "commands still refused: {err}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    agree(&[&again], "mls.example.test.", "127.0.0.10").await;
    let (code, _, err) = cli(&config, &["incident", "resolve", id.trim(), "Done"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = cli(&config, &["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["incidents"].as_array().map(Vec::len), Some(0), "{out}");
    assert_eq!(doc["cluster"]["instance"], "i0", "{out}");
    assert_eq!(doc["cluster"]["etcd"]["reachable"], true, "{out}");
    drop(again);
}

/// A CA-signed certificate for `name` (a DNS name or an IP address), written in `dir`.
fn signed(
    dir: &Path,
    ca: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
    name: &str,
    file: &str,
) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.signed_by(&key, ca).unwrap();
    let (c, k) = (
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// The instance's config with `extra` added to its `[cluster]` table (the last one).
fn with_cluster_extra(config: &Path, extra: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    write(config, &format!("{text}{extra}\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_needs_the_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "detour etcd test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let ca_file = certs.path().join("ca.crt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (server_crt, server_key) = signed(certs.path(), &ca, "127.0.0.1", "server");
    let (client_crt, client_key) = signed(certs.path(), &ca, "detour", "client");
    let etcd = Etcd::start_with(1, Some((ca_file.clone(), server_crt, server_key)));
    let backend = Backend::default();
    let backend_addr = backend.start().await;
    let hooks = Hooks::default();
    let hooks_addr = hooks.start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("zones")).unwrap();
    write(&dir.path().join("zones/example.test.toml"), ZONE);
    let good = instance_config(dir.path(), 0, &etcd.endpoints(), backend_addr, hooks_addr);
    with_cluster_extra(
        &good,
        &format!(
            "tls = {{ ca = {:?}, cert = {:?}, key = {:?} }}",
            ca_file, client_crt, client_key
        ),
    );
    let one = Instance::start(good.clone());
    agree(&[&one], "mls.example.test.", "127.0.0.10").await;
    let (code, _, err) = cli(&good, &["override", "set", "mls", "down"]);
    assert_eq!(code, 0, "{err}");
    agree(&[&one], "mls.example.test.", "127.0.0.80").await;

    // Without a client certificate etcd turns it away: it says so and takes no command.
    let bad = instance_config(dir.path(), 1, &etcd.endpoints(), backend_addr, hooks_addr);
    with_cluster_extra(&bad, &format!("tls = {{ ca = {:?} }}", ca_file));
    let _two = Instance::start(bad.clone());
    let (_, out, _) = cli(&bad, &["status"]);
    assert!(out.contains("etcd: UNREACHABLE"), "{out}");
    let (code, _, err) = cli(&bad, &["override", "clear", "mls"]);
    assert_eq!(code, 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_with_authentication_takes_the_user_and_password_file() {
    let Setup {
        etcd,
        configs,
        dir: _dir,
        ..
    } = Setup::new(1, 2).await;
    let mut c = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    c.user_add("root", "root-pw", None).await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.role_add("detour").await.unwrap();
    let perm = etcd_client::Permission::read_write("/detour/test/").with_prefix();
    c.role_grant_permission("detour", perm).await.unwrap();
    c.user_add("detour", "s3cret", None).await.unwrap();
    c.user_grant_role("detour", "detour").await.unwrap();
    c.auth_enable().await.unwrap();

    let pw = configs[0].parent().unwrap().join("etcd.password");
    write(&pw, "s3cret\n");
    with_cluster_extra(
        &configs[0],
        "username = \"detour\"\npassword_file = \"etcd.password\"",
    );
    let one = Instance::start(configs[0].clone());
    agree(&[&one], "mls.example.test.", "127.0.0.10").await;
    let (code, _, err) = cli(&configs[0], &["override", "set", "mls", "down"]);
    assert_eq!(code, 0, "{err}");
    agree(&[&one], "mls.example.test.", "127.0.0.80").await;

    // A wrong password: no way in, said in status, no command taken.
    let wrong = configs[1].parent().unwrap().join("etcd.password");
    write(&wrong, "guess\n");
    with_cluster_extra(
        &configs[1],
        "username = \"detour\"\npassword_file = \"etcd.password\"",
    );
    let _two = Instance::start(configs[1].clone());
    let (_, out, _) = cli(&configs[1], &["status"]);
    assert!(out.contains("etcd: UNREACHABLE"), "{out}");
    let (code, _, err) = cli(&configs[1], &["override", "clear", "mls"]);
    assert_eq!(code, 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_canaries_are_all_down_abstains() {
    let Setup {
        etcd: _etcd,
        backend,
        configs,
        dir: _dir,
        ..
    } = Setup::new(1, 3).await;
    // The canary is reachable from everywhere but instance 0's source address.
    let canary = Backend::default();
    let canary_addr = canary.clone().start().await;
    canary
        .blocked
        .lock()
        .unwrap()
        .insert("127.0.0.2".parse().unwrap());
    for c in &configs {
        let text = std::fs::read_to_string(c).unwrap();
        let guard = format!(
            "\n[guard]\ncanaries = [{{ type = \"http\", url = \"http://{canary_addr}/\" }}]\n"
        );
        write(c, &format!("{text}{guard}"));
    }
    let inst: Vec<Instance> = configs.iter().cloned().map(Instance::start).collect();
    let all: Vec<&Instance> = inst.iter().collect();
    agree(&all, "strict.example.test.", "127.0.0.20").await;

    // Instance 0 cannot reach the backend either: its own view is suspect (every canary
    // down), so its "down" is not counted, and "all" still holds.
    backend
        .blocked
        .lock()
        .unwrap()
        .insert("127.0.0.2".parse().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out, _) = cli(&configs[1], &["status"]);
        if out.contains("i0 (guard frozen: abstains)") {
            assert!(out.contains("(i0: abstains, i1: up, i2: up; all)"), "{out}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance 0 never abstained:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..10 {
        for i in &all {
            assert_eq!(udp_a(i.dns, "strict.example.test.").await, ["127.0.0.20"]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Its canary back: it votes again, and under "all" its "down" counts.
    canary.blocked.lock().unwrap().clear();
    agree(&all, "strict.example.test.", "127.0.0.80").await;
    agree(&all, "mls.example.test.", "127.0.0.10").await;
}

/// One UDP query for `name`'s A records sent from `src`.
async fn a_from(src: &str, dns: SocketAddr, name: &str) -> Vec<String> {
    let sock = tokio::net::UdpSocket::bind((src, 0)).await.unwrap();
    let q = query(name, RecordType::A, None);
    sock.send_to(&q.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    common::a_values(&hickory_server::proto::op::Message::from_vec(&buf[..n]).unwrap())
}

/// Waits (up to 15 s) until every instance answers `want` to queries from `src`.
async fn views_agree(live: &[&Instance], src: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut got = Vec::new();
        for i in live {
            got.push(a_from(src, i.dns, "mls.example.test.").await);
        }
        if got.iter().all(|a| a == &[want.to_string()]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "instances do not answer {want} to {src}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_is_shared_by_every_instance_and_ends_once() {
    let Setup {
        etcd: _etcd,
        hooks,
        configs,
        dir: _dir,
        ..
    } = Setup::new(1, 2).await;
    for c in &configs {
        let text = std::fs::read_to_string(c).unwrap().replace(
            r#"events = ["down", "up", "override"]"#,
            r#"events = ["down", "up", "override", "drill"]"#,
        ) + "\n[views.staff]\nsources = [\"127.0.0.9/32\"]\n";
        write(c, &text);
    }
    let a = Instance::start(configs[0].clone());
    let b = Instance::start(configs[1].clone());
    agree(&[&a, &b], "mls.example.test.", "127.0.0.10").await;

    // Started on one instance, seen by the view's source on both; nobody else sees it.
    let (code, out, err) = cli(
        &configs[0],
        &[
            "drill",
            "start",
            "mls",
            "--view",
            "staff",
            "--for",
            "3s",
            "--reason",
            "rehearsal",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    views_agree(&[&a, &b], "127.0.0.9", "127.0.0.80").await;
    views_agree(&[&a, &b], "127.0.0.1", "127.0.0.10").await;
    let (_, out, _) = cli(&configs[1], &["status"]);
    assert!(out.contains("DRILL in view staff: mls is down"), "{out}");

    // It ends by itself at cluster time, everywhere; the leader removes it and tells once.
    views_agree(&[&a, &b], "127.0.0.9", "127.0.0.10").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while hooks.count("drill", "mls") < 2 {
        assert!(
            Instant::now() < deadline,
            "the drill's start and end were not both told"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hooks.count("drill", "mls"),
        2,
        "start and end, each told once"
    );
    let (_, out, _) = cli(&configs[0], &["status", "--history"]);
    assert!(out.contains("drill.end"), "{out}");

    // Started on one, stopped from the other.
    let (code, _, err) = cli(
        &configs[1],
        &["drill", "start", "mls", "--view", "staff", "--for", "30m"],
    );
    assert_eq!(code, 0, "{err}");
    views_agree(&[&a, &b], "127.0.0.9", "127.0.0.80").await;
    let (code, out, err) = cli(&configs[0], &["drill", "stop", "mls"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("drill ended: mls in view staff"), "{out}");
    views_agree(&[&a, &b], "127.0.0.9", "127.0.0.10").await;

    // explain shows the instances' votes and the quorum behind the answer.
    let (code, out, err) = cli(&configs[1], &["explain", "mls.example.test"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cluster quorum majority: "), "{out}");
    assert!(
        out.contains("i0 sees up") && out.contains("i1 sees up"),
        "{out}"
    );
}
