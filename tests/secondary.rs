//! A real secondary: NSD transfers detour's zone (AXFR over TCP), and detour's NOTIFY makes
//! it follow changes (a reload, a health-driven swap) within moments, not its refresh time.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hickory_server::proto::rr::RecordType;

struct Nsd(Child);

impl Drop for Nsd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    // A port free for both UDP and TCP.
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

async fn a_at(addr: SocketAddr, name: &str) -> Option<Vec<String>> {
    let q = query(name, RecordType::A, None);
    let raw = udp_raw(addr, &q.to_vec().unwrap(), Duration::from_millis(300)).await?;
    let m = hickory_server::proto::op::Message::from_vec(&raw).ok()?;
    Some(a_values(&m))
}

async fn wait_for(addr: SocketAddr, name: &str, want: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if a_at(addr, name).await.as_deref().is_some_and(|v| v == want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{name} at {addr}: wanted {want:?}, got {:?}",
            a_at(addr, name).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nsd_transfers_the_zone_and_follows_notify() {
    let nsd_bin = ["/usr/sbin/nsd", "/usr/bin/nsd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("NSD is installed (Debian package nsd; .ci/run installs it)");
    let nsd_port = free_port();
    let zone = TEST_ZONE.replace(
        "allow_transfer = [\"127.0.0.1\"]",
        &format!("allow_transfer = [\"127.0.0.1\"]\nalso_notify = [\"127.0.0.1:{nsd_port}\"]"),
    );
    let s = Server::start(&config_toml(""), &[("example.test.toml", &zone)]).await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = format!(
        r#"server:
    ip-address: 127.0.0.1
    port: {nsd_port}
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "{d}"
    pidfile: "{d}/nsd.pid"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    zonelistfile: "{d}/zone.list"
    database: ""
    logfile: "{d}/nsd.log"
    verbosity: 2
remote-control:
    control-enable: no
zone:
    name: example.test
    zonefile: "example.test.zone"
    request-xfr: AXFR 127.0.0.1@{} NOKEY
    allow-notify: 127.0.0.1 NOKEY
"#,
        s.addr.port()
    );
    std::fs::write(dir.path().join("nsd.conf"), conf).unwrap();
    let _nsd = Nsd(Command::new(nsd_bin)
        .args(["-d", "-c"])
        .arg(dir.path().join("nsd.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nsd"));
    let nsd: SocketAddr = format!("127.0.0.1:{nsd_port}").parse().unwrap();
    let log = || std::fs::read_to_string(dir.path().join("nsd.log")).unwrap_or_default();

    // The first transfer: NSD asks for the zone as soon as it starts.
    let start = Instant::now();
    while a_at(nsd, "mail.example.test.").await.as_deref() != Some(&["192.0.2.25".to_string()][..])
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "NSD never loaded the zone:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        a_at(nsd, "mls.example.test.").await.unwrap(),
        ["127.0.0.10", "127.0.0.11"],
        "the dynamic record's current answer is transferred"
    );

    // A reload changes the zone: NOTIFY brings NSD along (its refresh would take an hour).
    write(
        &s.fixture.zone_path("example.test.toml"),
        &zone.replace("192.0.2.25", "192.0.2.26"),
    );
    s.running.reload().await.unwrap();
    let took = wait_for(
        nsd,
        "mail.example.test.",
        &["192.0.2.26"],
        Duration::from_secs(10),
    )
    .await;
    assert!(took < Duration::from_secs(10));

    // A swap (an operator takes mls down): the secondary answers the outage page too.
    s.running
        .control()
        .set_override(
            "mls",
            Some(detour::overrides::Override {
                state: detour::overrides::Forced::Down,
                reason: "test".into(),
                until: None,
                by: None,
                set_at: None,
            }),
            detour::states::Actor { who: "test".into() },
        )
        .await
        .unwrap();
    wait_for(
        nsd,
        "mls.example.test.",
        &["127.0.0.80"],
        Duration::from_secs(10),
    )
    .await;
    assert!(
        log().contains("notify"),
        "NSD logged the NOTIFY:\n{}",
        log()
    );
}
