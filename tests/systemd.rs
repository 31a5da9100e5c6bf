//! systemd's notify protocol, heard by a NOTIFY_SOCKET listener of the test's own (no systemd
//! needed): READY=1 with a STATUS= line once detour serves, WATCHDOG=1 pings at half the
//! asked interval, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 on SIGTERM.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::binary::Daemon;
use common::*;

/// Datagrams received within `within`, each as its lines, until `stop` says so.
fn listen(
    sock: &UnixDatagram,
    within: Duration,
    mut stop: impl FnMut(&[String]) -> bool,
) -> Vec<Vec<String>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok(n) = sock.recv(&mut buf) else { break };
        let lines: Vec<String> = String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_string)
            .collect();
        let done = stop(&lines);
        got.push(lines);
        if done {
            break;
        }
    }
    got
}

#[test]
fn detour_tells_systemd_when_it_is_ready_alive_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let f = Fixture::new(&config_toml(""), &[("z.toml", TEST_ZONE)]);
    let mut d = Daemon::start_with_env(
        &f.config_path(),
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "500000"),
        ],
    );
    let ready = listen(&sock, Duration::from_secs(10), |l| {
        l.iter().any(|x| x == "READY=1")
    });
    let first = ready.last().expect("READY=1 within 10 s");
    assert!(first.contains(&"READY=1".to_string()), "{ready:?}");
    assert!(
        first
            .iter()
            .any(|l| l == "STATUS=serving 1 zone; 1 service: all up"),
        "{first:?}"
    );
    // Ready means answering.
    let dns = d.dns_addr();
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(
        rt.block_on(udp_a(dns, "mls.example.test.")),
        ["127.0.0.10", "127.0.0.11"]
    );

    // Pings every 250 ms (half of WATCHDOG_USEC) while the workers and the states task run.
    let t = Instant::now();
    let pings = listen(&sock, Duration::from_millis(1500), |_| false)
        .into_iter()
        .filter(|l| l.iter().any(|x| x == "WATCHDOG=1"))
        .count();
    assert!(
        (3..=9).contains(&pings),
        "{pings} pings in {:?}",
        t.elapsed()
    );

    d.signal("-HUP");
    let reload = listen(&sock, Duration::from_secs(5), |l| {
        l.iter().any(|x| x == "READY=1")
    });
    let reloading = reload
        .iter()
        .position(|l| l.iter().any(|x| x == "RELOADING=1"))
        .expect("RELOADING=1");
    assert!(
        reload[reloading]
            .iter()
            .any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reload:?}"
    );
    let again = reload
        .iter()
        .position(|l| l.iter().any(|x| x == "READY=1"))
        .expect("READY=1 after the reload");
    assert!(again > reloading, "{reload:?}");

    d.signal("-TERM");
    let stopping = listen(&sock, Duration::from_secs(5), |l| {
        l.iter().any(|x| x == "STOPPING=1")
    });
    assert!(
        stopping.iter().any(|l| l.iter().any(|x| x == "STOPPING=1")),
        "{stopping:?}"
    );
    assert_eq!(d.child.wait().unwrap().code(), Some(0));
}
