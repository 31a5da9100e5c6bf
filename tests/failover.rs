//! The automatic swap, end to end: real local backends are killed, hung and restarted, and
//! real DNS queries watch the answers move.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::backend::{HttpBackend, Mode};
use common::*;
use detour::health::ServiceState;
use hickory_server::proto::rr::RecordType;

/// Timing that decides within a few hundred milliseconds.
const FAST: &str =
    "interval = \"200ms\", timeout = \"150ms\", confirm_interval = \"50ms\", rise = 2, fall = 2";

/// Polls every 20 ms until `name` answers `want`; panics after `within`.
async fn wait_udp_a(addr: SocketAddr, name: &str, want: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = udp_a(addr, name).await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{name}: wanted {want:?}, still {got:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn zone(dynamic: &str) -> String {
    format!(
        r#"
origin = "example.test."
soa = {{ mname = "ns1.example.test.", rname = "h.example.test.", minimum = 30 }}
ns = ["ns1.example.test."]
records = [ {{ name = "ns1", type = "A", value = "127.0.0.1" }} ]
{dynamic}
"#
    )
}

fn config(services: &str) -> String {
    page_config("", services)
}

fn http_service(id: &str, backend: SocketAddr, extra: &str) -> String {
    format!(
        "[services.{id}]\ncheck = {{ type = \"http\", url = \"http://{backend}/health\", {FAST} }}\n{extra}\n"
    )
}

async fn two_backends() -> (HttpBackend, HttpBackend) {
    let a = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let b = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    (a, b)
}

const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_backend_moves_the_record_to_dr_then_to_the_outage_page_and_back() {
    let (mut main, mut dr) = two_backends().await;
    let cfg = config(&(http_service("mls", main.addr, "") + &http_service("mls_dr", dr.addr, "")));
    let s = Server::start(&cfg, &[("z.toml", &zone(MLS_DYNAMIC))]).await;
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);

    main.stop();
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.20"], WITHIN).await;
    let health = s.running.snapshots().load().health.clone();
    assert_eq!(health.services["mls"].state, ServiceState::Down);
    assert!(
        health.services["mls"].reason.contains("refused"),
        "{}",
        health.services["mls"].reason
    );

    dr.stop();
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.80"], WITHIN).await;

    main.restart().await;
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.10"], WITHIN).await;
    let health = s.running.snapshots().load().health.clone();
    let history: Vec<_> = health.services["mls"]
        .history
        .iter()
        .map(|t| t.to)
        .collect();
    assert_eq!(
        history,
        [ServiceState::Up, ServiceState::Down, ServiceState::Up]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_failing_and_wrong_backends_are_down() {
    let b = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = config(&format!(
        "{}[services.body]\ncheck = {{ type = \"http\", url = \"http://{}/\", body_contains = \"READY\", {FAST} }}\n[services.port]\ncheck = {{ type = \"tcp\", address = \"{closed}\", {FAST} }}\n",
        http_service("mls", b.addr, ""),
        b.addr
    ));
    let s = Server::start(&cfg, &[("z.toml", &zone(""))]).await;
    let state = |id: &str| {
        let h = s.running.snapshots().load().health.clone();
        (h.services[id].state, h.services[id].reason.clone())
    };
    assert_eq!(state("mls").0, ServiceState::Up);
    // Wrong body and a closed port are down from the first round.
    assert_eq!(
        state("body"),
        (ServiceState::Down, "body lacks 'READY'".into())
    );
    assert_eq!(state("port").0, ServiceState::Down);
    assert!(state("port").1.contains("refused"), "{:?}", state("port"));

    b.set(Mode::Status(500));
    wait_state(&s, "mls", ServiceState::Down).await;
    assert!(state("mls").1.contains("HTTP 500"), "{:?}", state("mls"));
    b.set(Mode::Status(200));
    wait_state(&s, "mls", ServiceState::Up).await;
    b.set(Mode::Hang);
    wait_state(&s, "mls", ServiceState::Down).await;
    assert!(
        state("mls").1.starts_with("timed out after 150ms"),
        "{:?}",
        state("mls")
    );
}

async fn wait_state(s: &Server, id: &str, want: ServiceState) {
    let start = Instant::now();
    loop {
        let got = s.running.snapshots().load().health.services[id].state;
        if got == want {
            return;
        }
        assert!(start.elapsed() < WITHIN, "{id}: wanted {want}, still {got}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dependency_down_makes_a_service_impacted_but_still_answered() {
    let (mls, mut sso) = two_backends().await;
    let cfg = config(
        &(http_service("mls", mls.addr, "depends_on = [\"sso\"]")
            + &http_service("sso", sso.addr, "")
            + "[services.mls_dr]\n"),
    );
    let s = Server::start(&cfg, &[("z.toml", &zone(MLS_DYNAMIC))]).await;
    sso.stop();
    wait_state(&s, "mls", ServiceState::Impacted).await;
    let h = s.running.snapshots().load().health.clone();
    assert_eq!(h.services["sso"].state, ServiceState::Down);
    assert_eq!(h.services["mls"].reason, "depends on sso, which is down");
    // Impacted still satisfies if_up: the record keeps pointing at the MLS.
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    sso.restart().await;
    wait_state(&s, "mls", ServiceState::Up).await;
}

/// Services for a watched http check of mls at `addr` (confirm 50 ms, fall and rise 2),
/// and its DR site.
fn watched_mls(addr: SocketAddr, interval: &str, timeout: &str) -> String {
    format!(
        "[services.mls]\ncheck = {{ type = \"http\", url = \"http://{addr}/health\", interval = \"{interval}\", timeout = \"{timeout}\", confirm_interval = \"50ms\", fall = 2, rise = 2, watch = true }}\n[services.mls_dr]\n"
    )
}

/// Waits until `b`'s first probe has passed and the watch connection is open (it is one more
/// connection accepted).
async fn wait_watched(b: &HttpBackend) {
    let start = Instant::now();
    while b.hits() < 2 {
        assert!(start.elapsed() < WITHIN, "no watch connection");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Backends on 127.0.0.10 and 127.0.0.11 on one port, and detour answering mls with both
/// addresses, each probed on its own (`check_each`, with `timing`).
async fn each_pair(timing: &str) -> (HttpBackend, HttpBackend, Server) {
    let a = HttpBackend::start("127.0.0.10:0".parse().unwrap()).await;
    let port = a.addr.port();
    let b = match tokio::net::TcpListener::bind(("127.0.0.11", port)).await {
        Ok(l) => {
            drop(l);
            HttpBackend::start(SocketAddr::new("127.0.0.11".parse().unwrap(), port)).await
        }
        Err(e) => panic!("127.0.0.11:{port} not free: {e}"),
    };
    let dynamic = format!(
        r#"
[[dynamic]]
name = "mls"
type = "A"
ttl = 30
answers = [ {{ if_up = "mls", values = ["127.0.0.10", "127.0.0.11"] }} ]
otherwise = ["127.0.0.80"]
check_each = {{ type = "http", port = {port}, path = "/health", {timing} }}
"#
    );
    let s = Server::start(&config("[services.mls]\n"), &[("z.toml", &zone(&dynamic))]).await;
    assert_eq!(
        udp_a(s.addr, "mls.example.test.").await,
        ["127.0.0.10", "127.0.0.11"]
    );
    (a, b, s)
}

#[tokio::test(flavor = "multi_thread")]
async fn check_each_answers_only_the_live_addresses() {
    let (mut a, mut b, s) = each_pair(FAST).await;
    a.stop();
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.11"], WITHIN).await;
    b.stop();
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.80"], WITHIN).await;
    a.restart().await;
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.10"], WITHIN).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watched_address_is_dropped_as_soon_as_its_backend_dies() {
    let (mut a, _b, s) = each_pair(
        "interval = \"30s\", timeout = \"150ms\", confirm_interval = \"50ms\", watch = true",
    )
    .await;
    // Both first probes passed and both watch connections are open.
    wait_watched(&a).await;
    a.stop();
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.11"], WITHIN).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guard_freezes_states_while_every_canary_is_down() {
    let (mut main, mut canary) = two_backends().await;
    let cfg = config(&format!(
        "{}[services.mls_dr]\n[guard]\ncanaries = [{{ type = \"tcp\", address = \"{}\", {FAST} }}]\n",
        http_service("mls", main.addr, ""),
        canary.addr
    ));
    let s = Server::start(&cfg, &[("z.toml", &zone(MLS_DYNAMIC))]).await;
    // detour's own network "fails": the canary goes first, then the backend (the other order
    // is `when_detours_own_network_fails_nothing_is_sent_away`).
    canary.stop();
    let start = Instant::now();
    while !s.running.snapshots().load().health.guard.frozen {
        assert!(start.elapsed() < WITHIN, "guard never froze");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    main.stop();
    // Frozen: no redirect although the backend's check fails.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    assert_eq!(
        s.running.snapshots().load().health.services["mls"].state,
        ServiceState::Up
    );
    // A canary is back: states follow the checks again.
    canary.restart().await;
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.20"], WITHIN).await;
    assert!(!s.running.snapshots().load().health.guard.frozen);
}

/// detour with mls checked at `main`, mls_dr unchecked, and a canary at `canary` probed at a
/// slow steady pace (only the checks' requests make it probe sooner); mls answers its own
/// address.
async fn guarded(main: SocketAddr, canary: SocketAddr) -> Server {
    let cfg = config(&format!(
        "{}[services.mls_dr]\n[guard]\ncanaries = [{{ type = \"tcp\", address = \"{canary}\", interval = \"30s\", timeout = \"150ms\", confirm_interval = \"50ms\", fall = 2 }}]\n",
        http_service("mls", main, ""),
    ));
    let s = Server::start(&cfg, &[("z.toml", &zone(MLS_DYNAMIC))]).await;
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.10"], WITHIN).await;
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn when_detours_own_network_fails_nothing_is_sent_away() {
    let (mut main, mut canary) = two_backends().await;
    let s = guarded(main.addr, canary.addr).await;
    // Everything fails at once, as when detour's own uplink goes. The service's check (200 ms,
    // fall 2) reaches its fall long before the canary's steady pace (30 s) would probe again:
    // without corroboration mls would be sent to DR before the guard froze.
    main.stop();
    canary.stop();
    let start = Instant::now();
    let mut frozen = false;
    while start.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            udp_a(s.addr, "mls.example.test.").await,
            ["127.0.0.10"],
            "sent away after {:?}",
            start.elapsed()
        );
        let health = s.running.snapshots().load().health.clone();
        if health.guard.frozen {
            frozen = true;
            // What the status and the page say: held, not "checks pass".
            let reason = &health.services["mls"].reason;
            assert!(reason.starts_with("held at its last state"), "{reason}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        frozen,
        "the failing check asked the canary, which failed: guard frozen"
    );
    assert_eq!(
        s.running.snapshots().load().health.services["mls"]
            .history
            .len(),
        1
    );
    // The network is back but the backend stays dead: now the failure is the backend's.
    canary.restart().await;
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.20"], WITHIN).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_check_asks_the_canaries_at_once() {
    let (mut main, canary) = two_backends().await;
    let s = guarded(main.addr, canary.addr).await;
    // Only the backend dies. Its down verdict needs a canary pass during its failures; the
    // canary's own pace (30 s) is far beyond WITHIN, so this passes only because the first
    // failure asked the canary to probe at once.
    main.stop();
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.20"], WITHIN).await;
    let doc = detour::status::build(&s.running.snapshots().load(), None);
    assert!(doc.guard.canaries.iter().all(|c| c.verdict == "up"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watched_check_sees_a_killed_backend_at_once() {
    let (mut main, _dr) = two_backends().await;
    // A 30 s interval: without the watch the next probe would come 15-45 s after the first.
    let check = watched_mls(main.addr, "30s", "150ms");
    let s = Server::start(&config(&check), &[("z.toml", &zone(MLS_DYNAMIC))]).await;
    wait_watched(&main).await;
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    main.stop();
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.20"], WITHIN).await;
    assert!(counter("detour_watch_wakeups_total{check=\"mls#0\"}") >= 1);
    // Back: the down pace (confirm, 50 ms) finds it, and the watch is reopened.
    main.restart().await;
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.10"], WITHIN).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_drops_idle_connections_stays_watched() {
    let (mut main, _dr) = two_backends().await;
    // The backend drops a connection that sends nothing for 4.5 s (as nginx does after its
    // client_header_timeout), longer than the 3 s interval: the watch is reopened at once.
    main.set_idle_close(Duration::from_millis(4500));
    let check = watched_mls(main.addr, "3s", "1s");
    let s = Server::start(&config(&check), &[("z.toml", &zone(MLS_DYNAMIC))]).await;
    wait_watched(&main).await;
    let start = Instant::now();
    while main.idle_closed() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the watch was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed 0.4 s after the drop: the next scheduled probe is ~2.6 s away, so only a watch
    // reopened at once sees it this soon.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    main.stop();
    let took = wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.20"], WITHIN).await;
    assert!(took < Duration::from_millis(1500), "seen after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_drops_watch_connections_at_once_costs_a_probe_per_interval() {
    let (main, _dr) = two_backends().await;
    // Dropped after 100 ms, far less than the 3 s interval: no reopening at once, so per
    // round one probe, one watch connection and the probe its closing triggers, which sets
    // the next round 3 s later: two rounds (6 connections) in 3.5 s, not dozens. A 1 s
    // timeout keeps a slow machine's late answers from counting as failures (and adding
    // confirmation probes).
    main.set_idle_close(Duration::from_millis(100));
    let check = watched_mls(main.addr, "3s", "1s");
    let s = Server::start(&config(&check), &[("z.toml", &zone(MLS_DYNAMIC))]).await;
    wait_watched(&main).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(main.idle_closed() >= 1, "the watch connection was dropped");
    assert!(main.hits() <= 7, "{} connections in 3.5 s", main.hits());
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flapping_backend_does_not_flap_the_record() {
    let b = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let cfg = config(&(http_service("mls", b.addr, "") + "[services.mls_dr]\n"));
    let s = Server::start(&cfg, &[("z.toml", &zone(MLS_DYNAMIC))]).await;
    // Up, down, up, down... one per probe: never two in a row, so rise = fall = 2 holds.
    b.set(Mode::Alternate);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let h = s.running.snapshots().load().health.clone();
    assert_eq!(
        h.services["mls"].history.len(),
        1,
        "no transition: {:?}",
        h.services["mls"].history
    );
    let probes = h.checks.values().filter_map(|c| c.last.as_ref()).count();
    assert!(probes > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_restores_the_last_known_states() {
    let mut b = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    // A down check is probed every second: after the restart, two passes (rise) take more
    // than a second, so a loaded machine still asks before the restored verdict moves.
    let service = http_service("mls", b.addr, "").replace(
        "confirm_interval = \"50ms\"",
        "confirm_interval = \"50ms\", down_interval = \"1s\"",
    );
    assert!(service.contains("down_interval"));
    let cfg = config(&(service + "[services.mls_dr]\n"));
    let fixture = Fixture::new(&cfg, &[("z.toml", &zone(MLS_DYNAMIC))]);
    let path = fixture.config_path();
    let running = detour::daemon::start(fixture.load(), &path).await.unwrap();
    let addr = running.dns_addrs()[0];
    b.stop();
    wait_udp_a(addr, "mls.example.test.", &["127.0.0.20"], WITHIN).await;
    // Saved about a second after the transition (not at every one), before any shutdown:
    // a crash from here on restores it.
    let health = fixture.dir.path().join("state/health.json");
    let start = Instant::now();
    loop {
        let saved = std::fs::read_to_string(&health).unwrap_or_default();
        let p: Option<detour::states::Persisted> = serde_json::from_str(&saved).ok();
        if p.is_some_and(|p| p.services.get("mls").map(|s| s.0) == Some(ServiceState::Down)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not saved: {saved}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await.unwrap();
    let saved = std::fs::read_to_string(&health).unwrap();
    assert!(saved.contains("\"mls\""), "{saved}");

    // The backend recovers while detour is away. On restart the saved verdict (down) holds
    // until rise = 2 successes say otherwise: no probe-less guess, no flap.
    b.restart().await;
    let running = detour::daemon::start(fixture.load(), &path).await.unwrap();
    let addr = running.dns_addrs()[0];
    assert_eq!(
        udp_a(addr, "mls.example.test.").await,
        ["127.0.0.20"],
        "restored as down"
    );
    wait_udp_a(addr, "mls.example.test.", &["127.0.0.10"], WITHIN).await;
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_state_file_is_set_aside_and_detour_starts_anyway() {
    let b = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let cfg = config(&(http_service("mls", b.addr, "") + "[services.mls_dr]\n"));
    let fixture = Fixture::new(&cfg, &[("z.toml", &zone(MLS_DYNAMIC))]);
    std::fs::create_dir_all(fixture.dir.path().join("state")).unwrap();
    std::fs::write(fixture.dir.path().join("state/health.json"), "{ not json").unwrap();
    let running = detour::daemon::start(fixture.load(), &fixture.config_path())
        .await
        .unwrap();
    assert_eq!(
        udp_a(running.dns_addrs()[0], "mls.example.test.").await,
        ["127.0.0.10"]
    );
    let aside: Vec<_> = std::fs::read_dir(fixture.dir.path().join("state"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("health.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_maintenance_window_redirects_on_time_and_ends_on_time() {
    let b = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let now = chrono::Utc::now();
    let start = now + chrono::Duration::milliseconds(1500);
    let end = start + chrono::Duration::milliseconds(1500);
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let cfg = config(&format!(
        "{}[services.mls_dr]\n[[maintenance]]\nservices = [\"mls\"]\nstart = \"{}\"\nend = \"{}\"\nmessage = \"Database upgrade\"\n",
        http_service("mls", b.addr, ""),
        fmt(start),
        fmt(end)
    ));
    let s = Server::start(&cfg, &[("z.toml", &zone(MLS_DYNAMIC))]).await;
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.20"], WITHIN).await;
    let switched = chrono::Utc::now();
    assert!(switched >= start, "not before the window");
    assert!(
        (switched - start).num_milliseconds() < 500,
        "on time: {}",
        switched - start
    );
    let h = s.running.snapshots().load().health.clone();
    assert_eq!(h.services["mls"].state, ServiceState::Maintenance);
    assert_eq!(h.services["mls"].reason, "Database upgrade");
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.10"], WITHIN).await;
    assert!(chrono::Utc::now() >= end);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dns_check_against_a_local_server_drives_a_service() {
    // A second detour is the DNS server the check asks.
    let upstream = Server::standard().await;
    let cfg = config(&format!(
        "[services.mls]\ncheck = {{ type = \"dns\", name = \"mls.example.test.\", server = \"{}\", values = [\"127.0.0.10\", \"127.0.0.11\"], {FAST} }}\n[services.mls_dr]\n",
        upstream.addr
    ));
    let s = Server::start(&cfg, &[("z.toml", &zone(MLS_DYNAMIC))]).await;
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    // The upstream stops answering: the check times out and the service goes down.
    upstream.running.shutdown().await.unwrap();
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.20"], WITHIN).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_keeps_unchanged_checks_and_their_verdicts() {
    let (mut main, dr) = two_backends().await;
    let cfg = config(&(http_service("mls", main.addr, "") + &http_service("mls_dr", dr.addr, "")));
    let s = Server::start(&cfg, &[("z.toml", &zone(MLS_DYNAMIC))]).await;
    main.stop();
    wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.20"], WITHIN).await;
    let since = s.running.snapshots().load().health.services["mls"].since;
    // A reload that changes only the zone keeps mls down (no re-probing from scratch).
    let z = zone(MLS_DYNAMIC).replace("127.0.0.1\" }", "127.0.0.2\" }");
    write(&s.fixture.zone_path("z.toml"), &z);
    s.running.reload().await.unwrap();
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.20"]);
    assert_eq!(
        s.running.snapshots().load().health.services["mls"].since,
        since
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ttls_on_the_way_to_a_redirected_name_drop_one_old_ttl_before_maintenance() {
    let now = chrono::Utc::now();
    // www (TTL 2) -> mls (dynamic, TTL 1). The window starts in 3 s, so from 1 s on, www's
    // TTL is 1: a cache that took www just before the window lets go of it on time.
    let start = now + chrono::Duration::milliseconds(3000);
    let end = start + chrono::Duration::seconds(60);
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let cfg = config(&format!(
        "[services.mls]\n[services.mls_dr]\n[[maintenance]]\nservices = [\"mls\"]\nstart = \"{}\"\nend = \"{}\"\n",
        fmt(start),
        fmt(end)
    ));
    let z = zone(&MLS_DYNAMIC.replace("ttl = 30", "ttl = 1")).replace(
        "records = [",
        "records = [ { name = \"www\", type = \"CNAME\", value = \"mls\", ttl = 2 },",
    );
    let s = Server::start(&cfg, &[("z.toml", &z)]).await;
    let www_ttl = || async {
        let (m, _) = udp(s.addr, &query("www.example.test.", RecordType::CNAME, None)).await;
        m.answers[0].ttl
    };
    assert_eq!(www_ttl().await, 2);
    let started = Instant::now();
    while www_ttl().await != 1 {
        assert!(started.elapsed() < WITHIN, "TTL never lowered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lowered_at = chrono::Utc::now();
    assert!(
        lowered_at >= start - chrono::Duration::seconds(2),
        "not before one old TTL ahead"
    );
    assert!(lowered_at < start, "before the window starts");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_down_check_is_probed_at_the_confirm_pace_unless_down_interval_says_otherwise() {
    // Steady pace 2 s, confirm pace 100 ms: once down, the failing backend is probed at the
    // confirm pace (so its return is seen quickly), or at `down_interval` when given.
    for (down_interval, expect_fast) in [("", true), (", down_interval = \"2s\"", false)] {
        let backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
        backend.set(Mode::Status(500));
        let cfg = config(&format!(
            "[services.mls]\ncheck = {{ type = \"http\", url = \"http://{}/health\", interval = \"2s\", timeout = \"500ms\", confirm_interval = \"100ms\", rise = 2, fall = 1{down_interval} }}\n[services.mls_dr]\n",
            backend.addr
        ));
        let s = Server::start(&cfg, &[("z.toml", &zone(MLS_DYNAMIC))]).await;
        // mls is down; mls_dr, without a check, answers.
        wait_udp_a(s.addr, "mls.example.test.", &["127.0.0.20"], WITHIN).await;
        let before = backend.hits();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let probes = backend.hits() - before;
        if expect_fast {
            // About 15 at 100 ms; at the steady 2 s pace it would be at most 1.
            assert!(probes >= 5, "{probes} probes in 1.5 s while down");
        } else {
            assert!(
                probes <= 2,
                "{probes} probes in 1.5 s with down_interval 2s"
            );
        }
    }
}

/// The value of a counter in the Prometheus exposition, 0 when absent.
fn counter(name: &str) -> u64 {
    metric(&[name]) as u64
}

#[tokio::test(flavor = "current_thread")]
async fn a_starved_detour_does_not_blame_its_backends() {
    // One runtime thread, blocked again and again for longer than the probe timeout while
    // probes are in flight (each takes 300 ms, every 400 ms): the timeouts fire late, and
    // with fall = 1 a single counted failure would move the record.
    let backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    backend.set_delay(Duration::from_millis(300));
    let cfg = config(&format!(
        "[services.mls]\ncheck = {{ type = \"http\", url = \"http://{}/health\", interval = \"400ms\", timeout = \"400ms\", confirm_interval = \"100ms\", rise = 1, fall = 1 }}\n[services.mls_dr]\n",
        backend.addr
    ));
    let s = Server::start(&cfg, &[("z.toml", &zone(MLS_DYNAMIC))]).await;
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    let before = counter("detour_probes_discarded_total");
    // At least 4 times, and until a probe has been discarded (bounded: 20 times).
    for i in 0..20 {
        std::thread::sleep(Duration::from_millis(900));
        tokio::time::sleep(Duration::from_millis(250)).await;
        if i >= 3 && counter("detour_probes_discarded_total") > before {
            break;
        }
    }
    let health = s.running.snapshots().load().health.clone();
    let to: Vec<_> = health.services["mls"]
        .history
        .iter()
        .map(|t| t.to)
        .collect();
    assert!(
        !to.contains(&ServiceState::Down),
        "mls went down while detour was starved: {to:?}"
    );
    assert_eq!(udp_a(s.addr, "mls.example.test.").await, ["127.0.0.10"]);
    assert!(
        counter("detour_probes_discarded_total") > before,
        "no probe came back late enough to be discarded"
    );
}
