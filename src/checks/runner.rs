//! Scheduling: one task per probe, with jitter, rise/fall hysteresis and adaptive pace.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use hickory_server::proto::rr::{Name, RecordType};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::probe::Prober;
use super::{Grade, Observation};
use crate::config::{CheckEachKind, CheckKind, Timing};

/// Identifies one probe task across reloads and restarts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckId {
    /// `services.<service>.checks[index]` (or its single `check`).
    Service {
        /// Service id.
        service: String,
        /// Position in the service's checks.
        index: usize,
    },
    /// `guard.canaries[index]`.
    Canary(usize),
    /// One address of a `check_each` dynamic record.
    Address {
        /// Owner name of the record.
        record: Name,
        /// Its type (A or AAAA).
        rtype: RecordType,
        /// The address probed.
        ip: IpAddr,
    },
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckId::Service { service, index } => write!(f, "{service}#{index}"),
            CheckId::Canary(i) => write!(f, "canary#{i}"),
            CheckId::Address { record, rtype, ip } => write!(f, "{record}/{rtype}/{ip}"),
        }
    }
}

/// What a task probes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A configured check.
    Check(CheckKind),
    /// One address of a `check_each` record.
    Address {
        /// How to probe it.
        kind: CheckEachKind,
        /// The address.
        ip: IpAddr,
        /// Port probed.
        port: u16,
        /// The record's name (Host header, SNI).
        record: Name,
    },
}

/// Rise/fall hysteresis of one check: `rise` passes in a row make it up, `fall` failures in a
/// row make it down. The first observation gives the first verdict on its own.
///
/// While up, its [`Grade`] has the same hysteresis: `fall` passes in a row graded worse
/// (slow, a vendor's "degraded" or "maintenance") make it that grade, `rise` passes in a row
/// graded better bring it back. A check that comes up takes the grade of the pass that
/// decided it; a down check has none ([`Grade::Normal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    up: Option<bool>,
    streak: u32,
    rise: u32,
    fall: u32,
    grade: Grade,
    /// The grade the passes in a row (`grade_streak` of them) disagree with `grade` for.
    pending: Grade,
    grade_streak: u32,
}

impl Hysteresis {
    /// Starts with a known verdict (restored) or none.
    pub fn new(rise: u32, fall: u32, initial: Option<bool>) -> Self {
        Self {
            up: initial,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
            grade: Grade::Normal,
            pending: Grade::Normal,
            grade_streak: 0,
        }
    }

    /// The current verdict: `Some(true)` up, `Some(false)` down, `None` before the first.
    pub fn verdict(&self) -> Option<bool> {
        self.up
    }

    /// The current grade of an up check ([`Grade::Normal`] otherwise).
    pub fn grade(&self) -> Grade {
        self.grade
    }

    /// Feeds one result of normal grade; returns the new verdict when it changed.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        self.observe_graded(ok, Grade::Normal).0
    }

    /// Feeds one result and its grade; returns the new verdict when it changed, and whether
    /// the grade changed.
    pub fn observe_graded(&mut self, ok: bool, grade: Grade) -> (Option<bool>, bool) {
        let before = self.grade;
        let flipped = match self.up {
            None => {
                self.up = Some(ok);
                self.streak = 0;
                self.set_grade(if ok { grade } else { Grade::Normal });
                Some(ok)
            }
            Some(true) if ok => {
                self.streak = 0;
                self.grade_step(grade);
                None
            }
            Some(false) if !ok => {
                self.streak = 0;
                None
            }
            Some(_) => {
                self.streak += 1;
                let needed = if ok { self.rise } else { self.fall };
                if self.streak >= needed {
                    self.up = Some(ok);
                    self.streak = 0;
                    self.set_grade(if ok { grade } else { Grade::Normal });
                    Some(ok)
                } else {
                    None
                }
            }
        };
        (flipped, self.grade != before)
    }

    fn set_grade(&mut self, grade: Grade) {
        self.grade = grade;
        self.pending = grade;
        self.grade_streak = 0;
    }

    /// One pass of an up check graded `grade`.
    fn grade_step(&mut self, grade: Grade) {
        if grade == self.grade {
            self.pending = grade;
            self.grade_streak = 0;
            return;
        }
        if grade == self.pending {
            self.grade_streak += 1;
        } else {
            self.pending = grade;
            self.grade_streak = 1;
        }
        let needed = if grade > self.grade {
            self.fall
        } else {
            self.rise
        };
        if self.grade_streak >= needed {
            self.set_grade(grade);
        }
    }

    /// True while results disagree with the verdict (or an up check's grade) and rise/fall
    /// has not decided yet.
    pub fn deciding(&self) -> bool {
        self.streak > 0 || self.grade_streak > 0
    }
}

/// One report from a probe task to the states task.
#[derive(Debug, Clone)]
pub struct Report {
    /// Which probe.
    pub id: CheckId,
    /// What it saw.
    pub observation: Observation,
    /// The check's verdict after this observation.
    pub verdict: Option<bool>,
    /// The grade of an up check after this observation.
    pub grade: Grade,
    /// The verdict (or the grade) changed with this observation.
    pub flipped: bool,
}

/// Where a probe task sends its reports, and how checks ask the canaries to probe at once.
///
/// A service or address check that starts failing bumps `canaries`; every canary task then
/// probes (no sooner than `NUDGE_GAP` (100 ms) after its previous probe), so that the states engine
/// learns quickly whether detour's own network works (see `states::Hold`).
#[derive(Debug, Clone)]
pub struct Links {
    /// Reports to the states task.
    pub tx: mpsc::Sender<Report>,
    /// Bumped when a non-canary check starts failing.
    pub canaries: watch::Sender<u64>,
}

/// The shortest time between two probes of a canary when checks keep asking.
const NUDGE_GAP: Duration = Duration::from_millis(100);

/// The first probe waits a random fraction of this (or of the interval, if shorter), so that
/// the first verdicts come quickly without every check firing in one tick.
const MAX_JITTER: Duration = Duration::from_secs(1);

/// Runs one probe task until `cancel` fires or the receiver is gone.
pub async fn run(
    id: CheckId,
    target: Target,
    timing: Timing,
    initial: Option<bool>,
    prober: Prober,
    links: Links,
    cancel: CancellationToken,
) {
    let mut h = Hysteresis::new(timing.rise, timing.fall, initial);
    let canary = matches!(id, CheckId::Canary(_));
    // A canary listens for checks that start failing; other checks ask.
    let mut asked = canary.then(|| links.canaries.subscribe());
    let mut last_ok = None;
    // `watch = true`: an idle connection to the target; its closing wakes the task at once.
    let watch_at = if timing.watch {
        watch_target(&target)
    } else {
        None
    };
    let mut watching: Option<TcpStream> = None;
    // When the watch connection was opened, and whether its closing woke this probe.
    let mut watched_since = tokio::time::Instant::now();
    let mut woken_by_watch = false;
    let mut reopen_now = false;
    let spread = timing.interval.min(MAX_JITTER);
    let jitter = spread.mul_f64(rand::random::<f64>());
    tokio::select! {
        _ = tokio::time::sleep(jitter) => {}
        _ = cancel.cancelled() => return,
    }
    let mut first = true;
    loop {
        let started = tokio::time::Instant::now();
        let observation = tokio::select! {
            o = probe(&prober, &target, timing.timeout) => o,
            _ = cancel.cancelled() => return,
        };
        let took = started.elapsed();
        let observation = grade_by_time(observation, timing.degraded_after);
        if !observation.ok && observation.own_fault {
            // Out of descriptors or memory: detour's trouble, not the target's.
            note_own_fault(&id, &observation.reason);
            tokio::select! {
                _ = tokio::time::sleep(timing.confirm_interval) => {}
                _ = cancel.cancelled() => return,
            }
            continue;
        }
        if !observation.ok && starved(took, timing.timeout) {
            // Every probe is bounded by its timeout: coming back much later means detour
            // itself was not scheduled (CPU starvation), and the failure says nothing about
            // the target. Do not count it; probe again shortly.
            note_starved(&id, took, timing.timeout);
            tokio::select! {
                _ = tokio::time::sleep(timing.confirm_interval) => {}
                _ = cancel.cancelled() => return,
            }
            continue;
        }
        if !canary && !observation.ok && last_ok != Some(false) {
            links.canaries.send_modify(|n| *n = n.wrapping_add(1));
        }
        last_ok = Some(observation.ok);
        let ok = observation.ok;
        let (verdict_flipped, grade_changed) = h.observe_graded(ok, observation.grade);
        let report = Report {
            id: id.clone(),
            observation,
            verdict: h.verdict(),
            grade: h.grade(),
            flipped: verdict_flipped.is_some() || grade_changed,
        };
        if links.tx.send(report).await.is_err() {
            return;
        }
        if !ok {
            watching = None;
        } else if watching.is_none() && (!woken_by_watch || reopen_now) {
            // Reopened after a scheduled probe passed, or at once after a closing that woke
            // this probe if that connection had lasted an interval (a target that drops
            // idle connections, as web servers do after 30-60 s, stays watched): either way
            // at most one extra probe per interval, never a loop.
            if let Some(addr) = &watch_at {
                // From the probe source, like the probes: the watch stands for them.
                watching = tokio::time::timeout(timing.timeout, prober.connect(addr))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .inspect(keep_alive);
                watched_since = tokio::time::Instant::now();
            }
        }
        woken_by_watch = false;
        reopen_now = false;
        // Confirm quickly while rise/fall is deciding; a down check at its own pace (by
        // default the confirm pace, so recovery is seen quickly); otherwise the steady pace.
        let pace = if h.deciding() {
            timing.confirm_interval
        } else if h.verdict() == Some(false) {
            timing.down_pace()
        } else if first {
            // Spread steady-state probes over the whole interval: after the quick first
            // probe, the next comes anywhere in [interval/2, 3 interval/2).
            timing.interval.mul_f64(0.5 + rand::random::<f64>())
        } else {
            timing.interval
        };
        first = false;
        tokio::select! {
            _ = tokio::time::sleep_until(started + pace) => {}
            asked_now = changed(&mut asked) => {
                if asked_now {
                    tokio::select! {
                        _ = tokio::time::sleep_until(started + NUDGE_GAP) => {}
                        _ = cancel.cancelled() => return,
                    }
                } else {
                    asked = None;
                }
            }
            () = closed(&mut watching) => {
                watching = None;
                woken_by_watch = true;
                reopen_now = watched_since.elapsed() >= timing.interval;
                metrics::counter!("detour_watch_wakeups_total", "check" => id.to_string())
                    .increment(1);
            }
            _ = cancel.cancelled() => return,
        }
    }
}

/// A passing observation slower than `degraded_after` is degraded: "slow: over 1.5s (HTTP
/// 200)". The reason names the threshold, not the time measured (the observation carries
/// that), so that it stays the same from one slow probe to the next.
fn grade_by_time(mut o: Observation, degraded_after: Option<Duration>) -> Observation {
    if let Some(limit) = degraded_after
        && o.ok
        && o.grade == Grade::Normal
        && o.latency > limit
    {
        o.grade = Grade::Degraded;
        o.reason = format!(
            "slow: over {} ({})",
            crate::config::duration::display(limit),
            o.reason
        );
    }
    o
}

/// Where a watched check keeps its idle connection, as [`Prober::connect`] takes it: the
/// address the probe connects to (none for DNS checks).
fn watch_target(target: &Target) -> Option<String> {
    match target {
        // host_str() keeps an IPv6 literal's brackets, as "host:port" needs them.
        Target::Check(CheckKind::Http(h)) => Some(format!(
            "{}:{}",
            h.url.host_str()?,
            h.url.port_or_known_default()?
        )),
        Target::Check(CheckKind::Tcp(t)) => Some(t.address.clone()),
        Target::Check(
            CheckKind::Dns(_)
            | CheckKind::Journey(_)
            | CheckKind::Statuspage(_)
            | CheckKind::Heartbeat(_),
        ) => None,
        Target::Address { ip, port, .. } => Some(std::net::SocketAddr::new(*ip, *port).to_string()),
    }
}

/// TCP keepalive on a watched connection: a firewall or NAT between detour and the target
/// that forgets idle connections (often after 5-60 minutes) would otherwise swallow the
/// close the watch waits for; a host that vanished is noticed too (after about a minute).
fn keep_alive(stream: &TcpStream) {
    let params = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&params) {
        tracing::warn!(error = %e, "cannot set TCP keepalive on a watch connection");
    }
}

/// Returns when the watched connection closes (the peer went away, or reset it); never
/// returns without one. Whatever the peer sends is read and dropped.
async fn closed(watching: &mut Option<TcpStream>) {
    let Some(stream) = watching else {
        return std::future::pending().await;
    };
    let mut buf = [0u8; 512];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Waits until a check asks the canaries to probe: true then, false once nobody can ask any
/// more; never returns for a task that does not listen.
async fn changed(asked: &mut Option<watch::Receiver<u64>>) -> bool {
    match asked {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// A failed probe that came back this much after its timeout failed because detour was not
/// run, not because of its target: more than half the timeout late, and at least 100 ms.
fn starved(took: Duration, timeout: Duration) -> bool {
    took > timeout + (timeout / 2).max(Duration::from_millis(100))
}

/// Counts a discarded probe, and says so in the log at most once a minute for all checks.
fn note_starved(id: &CheckId, took: Duration, timeout: Duration) {
    static SAID: crate::telemetry::Throttle =
        crate::telemetry::Throttle::new(Duration::from_secs(60));
    metrics::counter!("detour_probes_discarded_total").increment(1);
    if SAID.allow().is_some() {
        tracing::warn!(
            check = %id,
            took_ms = took.as_millis() as u64,
            timeout_ms = timeout.as_millis() as u64,
            "a failed probe came back long after its timeout: detour was not scheduled in time \
             (CPU starvation?), so the failure is not counted (detour_probes_discarded_total)"
        );
    }
}

/// Counts a probe that failed for detour's own lack of resources, and says so at most once a
/// minute for all checks.
fn note_own_fault(id: &CheckId, reason: &str) {
    static SAID: crate::telemetry::Throttle =
        crate::telemetry::Throttle::new(Duration::from_secs(60));
    metrics::counter!("detour_probes_discarded_total").increment(1);
    if let Some(held) = SAID.allow() {
        tracing::error!(
            check = %id,
            reason,
            "a probe failed for detour's own lack of resources, not its target's, so it is not \
             counted (detour_probes_discarded_total; {held} more since the last such line)"
        );
    }
}

async fn probe(prober: &Prober, target: &Target, timeout: Duration) -> Observation {
    match target {
        Target::Check(kind) => prober.check(kind, timeout).await,
        Target::Address {
            kind,
            ip,
            port,
            record,
        } => prober.address(kind, *ip, *port, record, timeout).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::net::{TcpListener, TcpSocket};
    use tokio::task::JoinHandle;

    /// Whole seconds.
    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Steady pace 10 s, confirm pace 1 s, timeout 500 ms; the given rise, fall and down pace.
    fn timing(rise: u32, fall: u32, down_interval: Option<Duration>) -> Timing {
        Timing {
            interval: secs(10),
            timeout: Duration::from_millis(500),
            confirm_interval: secs(1),
            down_interval,
            rise,
            fall,
            watch: false,
            degraded_after: None,
        }
    }

    /// Starts listening on `addr` (again): a tcp check of it passes.
    fn listen(addr: SocketAddr) -> TcpListener {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        socket.listen(64).unwrap()
    }

    /// A loopback address nothing listens on (bound, so that nobody else takes it while the
    /// test runs): a tcp check of it is refused until [`listen`] opens it.
    fn refusing() -> (TcpSocket, SocketAddr) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        (socket, addr)
    }

    /// Takes the first two reports of a check whose target is up: both pass, the first
    /// decides the verdict, the second is the first steady probe (randomly placed).
    async fn warm_up(p: &mut Probes) {
        let (gap, ok, verdict, flipped) = p.next().await;
        assert!(gap <= secs(1), "first probe after {gap:?}");
        assert_eq!((ok, verdict, flipped), (true, Some(true), true));
        let (gap, ok, verdict, flipped) = p.next().await;
        assert!(
            secs(5) <= gap && gap <= secs(15),
            "second probe after {gap:?}"
        );
        assert_eq!((ok, verdict, flipped), (true, Some(true), false));
    }

    /// One probe task of a tcp check of `addr` (the real prober, a real connection), run on
    /// the test's paused clock, and the reports it sends.
    struct Probes {
        rx: mpsc::Receiver<Report>,
        cancel: CancellationToken,
        task: JoinHandle<()>,
        /// When the previous report came.
        last: tokio::time::Instant,
    }

    impl Probes {
        /// Spawns the task, with the verdict `initial` (as restored at a start).
        fn start(addr: SocketAddr, timing: Timing, initial: Option<bool>) -> Self {
            let (tx, rx) = mpsc::channel(64);
            let links = Links {
                tx,
                canaries: watch::channel(0).0,
            };
            let target = Target::Check(CheckKind::Tcp(crate::config::TcpCheck {
                address: addr.to_string(),
                send: None,
                expect: None,
            }));
            let id = CheckId::Service {
                service: "mls".into(),
                index: 0,
            };
            let cancel = CancellationToken::new();
            let task = tokio::spawn(run(
                id,
                target,
                timing,
                initial,
                Prober::new(),
                links,
                cancel.clone(),
            ));
            Self {
                rx,
                cancel,
                task,
                last: tokio::time::Instant::now(),
            }
        }

        /// The next report: how long after the previous one (or the start) it came, whether
        /// the probe passed, the verdict after it, and whether that flipped.
        async fn next(&mut self) -> (Duration, bool, Option<bool>, bool) {
            let r = tokio::time::timeout(secs(3600), self.rx.recv())
                .await
                .expect("a probe within an hour")
                .expect("the task runs");
            assert!(
                !r.observation.reason.starts_with("timed out"),
                "a loopback probe timed out: {r:?}"
            );
            let now = tokio::time::Instant::now();
            let gap = now - self.last;
            self.last = now;
            (gap, r.observation.ok, r.verdict, r.flipped)
        }

        /// Cancels the task and waits for it to end.
        async fn stop(self) {
            self.cancel.cancel();
            self.task.await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_up_check_is_probed_once_per_interval_after_a_jittered_start() {
        let (_hold, addr) = refusing();
        let _open = listen(addr);
        let mut p = Probes::start(addr, timing(2, 3, Some(secs(5))), None);
        // The first probe within a second (the jitter), and its result is the first verdict;
        // the next anywhere in [interval/2, 3 interval/2], to spread checks over the interval.
        warm_up(&mut p).await;
        // Then exactly one per interval.
        for _ in 0..5 {
            assert_eq!(p.next().await, (secs(10), true, Some(true), false));
        }
        p.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn fall_failures_take_a_check_down_and_rise_passes_bring_it_back_each_at_its_pace() {
        let (_hold, addr) = refusing();
        let open = listen(addr);
        // rise 2, fall 3, down pace 5 s (confirm 1 s, interval 10 s).
        let mut p = Probes::start(addr, timing(2, 3, Some(secs(5))), None);
        warm_up(&mut p).await;
        drop(open);
        // The first failure at the steady pace; then fall = 3 decides at the confirm pace,
        // on exactly the third failure.
        assert_eq!(p.next().await, (secs(10), false, Some(true), false));
        assert_eq!(p.next().await, (secs(1), false, Some(true), false));
        assert_eq!(p.next().await, (secs(1), false, Some(false), true));
        // Down: probed at the down pace.
        assert_eq!(p.next().await, (secs(5), false, Some(false), false));
        assert_eq!(p.next().await, (secs(5), false, Some(false), false));
        let _open = listen(addr);
        // The first pass at the down pace; then rise = 2 decides at the confirm pace, on
        // exactly the second pass; then the steady pace again.
        assert_eq!(p.next().await, (secs(5), true, Some(false), false));
        assert_eq!(p.next().await, (secs(1), true, Some(true), true));
        assert_eq!(p.next().await, (secs(10), true, Some(true), false));
        assert_eq!(p.next().await, (secs(10), true, Some(true), false));
        p.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn without_down_interval_a_down_check_is_probed_at_the_confirm_pace() {
        let (_hold, addr) = refusing();
        // rise 2, fall 1, no down_interval.
        let mut p = Probes::start(addr, timing(2, 1, None), None);
        let (gap, ok, verdict, flipped) = p.next().await;
        assert!(gap <= secs(1), "first probe after {gap:?}");
        assert_eq!((ok, verdict, flipped), (false, Some(false), true));
        for _ in 0..5 {
            assert_eq!(p.next().await, (secs(1), false, Some(false), false));
        }
        let _open = listen(addr);
        assert_eq!(p.next().await, (secs(1), true, Some(false), false));
        assert_eq!(p.next().await, (secs(1), true, Some(true), true));
        assert_eq!(p.next().await, (secs(10), true, Some(true), false));
        p.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_fails_and_passes_in_turn_never_flips() {
        let (_hold, addr) = refusing();
        let mut open = Some(listen(addr));
        // rise = fall = 2: never two in a row, so never a flip.
        let mut p = Probes::start(addr, timing(2, 2, Some(secs(5))), None);
        warm_up(&mut p).await;
        for _ in 0..5 {
            drop(open.take());
            // A failure is confirmed at the confirm pace...
            assert_eq!(p.next().await, (secs(10), false, Some(true), false));
            open = Some(listen(addr));
            // ...and the pass that ends the run brings back the steady pace.
            assert_eq!(p.next().await, (secs(1), true, Some(true), false));
        }
        drop(open);
        p.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_restored_verdict_holds_until_rise_or_fall_says_otherwise() {
        // Restored down, the target is up: rise = 2 passes at the confirm pace.
        let (_hold, addr) = refusing();
        let open = listen(addr);
        let mut p = Probes::start(addr, timing(2, 3, Some(secs(5))), Some(false));
        let (gap, ok, verdict, flipped) = p.next().await;
        assert!(gap <= secs(1), "first probe after {gap:?}");
        assert_eq!((ok, verdict, flipped), (true, Some(false), false));
        assert_eq!(p.next().await, (secs(1), true, Some(true), true));
        assert_eq!(p.next().await, (secs(10), true, Some(true), false));
        p.stop().await;
        // Restored up, the target is down: fall = 3 failures at the confirm pace.
        drop(open);
        let mut p = Probes::start(addr, timing(2, 3, Some(secs(5))), Some(true));
        let (gap, ok, verdict, flipped) = p.next().await;
        assert!(gap <= secs(1), "first probe after {gap:?}");
        assert_eq!((ok, verdict, flipped), (false, Some(true), false));
        assert_eq!(p.next().await, (secs(1), false, Some(true), false));
        assert_eq!(p.next().await, (secs(1), false, Some(false), true));
        assert_eq!(p.next().await, (secs(5), false, Some(false), false));
        p.stop().await;
    }

    #[tokio::test]
    async fn a_watch_connection_keeps_itself_alive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        keep_alive(&stream);
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(30));
        assert_eq!(
            sock.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 3);
    }

    #[test]
    fn a_watch_connects_where_the_probe_goes() {
        let tcp = |a: &str| {
            Target::Check(CheckKind::Tcp(crate::config::TcpCheck {
                address: a.into(),
                send: None,
                expect: None,
            }))
        };
        let at = |h: &str, p: u16| {
            Some(if h.contains(':') {
                format!("[{h}]:{p}")
            } else {
                format!("{h}:{p}")
            })
        };
        assert_eq!(watch_target(&tcp("127.0.0.1:9003")), at("127.0.0.1", 9003));
        assert_eq!(watch_target(&tcp("[::1]:53")), at("::1", 53));
        assert_eq!(
            watch_target(&tcp("db.example.test:5432")),
            at("db.example.test", 5432)
        );
        let http = |u: &str| {
            Target::Check(CheckKind::Http(crate::config::HttpCheck {
                url: url::Url::parse(u).unwrap(),
                method: "GET".into(),
                expect_status: Vec::new(),
                body_contains: None,
                body_regex: None,
                headers: Default::default(),
                max_response_time: None,
                tls_verify: true,
                tls_min_validity: None,
                follow_redirects: false,
            }))
        };
        assert_eq!(
            watch_target(&http("https://mls.example.test/")),
            at("mls.example.test", 443)
        );
        assert_eq!(
            watch_target(&http("http://[::1]:8080/health")),
            at("::1", 8080)
        );
        assert_eq!(
            watch_target(&http("http://127.0.0.1/")),
            at("127.0.0.1", 80)
        );
    }

    #[test]
    fn only_probes_far_past_their_timeout_are_blamed_on_starvation() {
        let ms = Duration::from_millis;
        assert!(
            !starved(ms(500), ms(500)),
            "a timeout on time is the target's"
        );
        assert!(!starved(ms(740), ms(500)));
        assert!(starved(ms(760), ms(500)));
        assert!(!starved(ms(240), ms(150)), "at least 100 ms late");
        assert!(starved(ms(260), ms(150)));
    }

    #[test]
    fn first_observation_decides_then_rise_and_fall_apply() {
        let mut h = Hysteresis::new(2, 3, None);
        assert_eq!(h.observe(true), Some(true));
        assert_eq!(h.observe(false), None);
        assert!(h.deciding());
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), Some(false));
        assert!(!h.deciding());
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(false), None, "a failure resets the rise streak");
        assert!(!h.deciding());
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), Some(true));
    }

    #[test]
    fn a_grade_changes_after_fall_worse_passes_and_rise_better_ones() {
        let mut h = Hysteresis::new(2, 3, None);
        assert_eq!(h.observe_graded(true, Grade::Normal), (Some(true), false));
        assert_eq!(h.observe_graded(true, Grade::Degraded), (None, false));
        assert!(h.deciding());
        assert_eq!(h.observe_graded(true, Grade::Degraded), (None, false));
        assert_eq!(h.observe_graded(true, Grade::Degraded), (None, true));
        assert_eq!(h.grade(), Grade::Degraded);
        assert!(!h.deciding());
        // Maintenance is worse again: fall = 3; a different grade in between starts over.
        h.observe_graded(true, Grade::Maintenance);
        h.observe_graded(true, Grade::Maintenance);
        assert_eq!(h.observe_graded(true, Grade::Normal), (None, false));
        assert_eq!(h.grade(), Grade::Degraded);
        assert_eq!(
            h.observe_graded(true, Grade::Normal),
            (None, true),
            "rise = 2"
        );
        // Down: no grade; up again with the grade of the deciding pass.
        for _ in 0..3 {
            h.observe_graded(false, Grade::Normal);
        }
        assert_eq!((h.verdict(), h.grade()), (Some(false), Grade::Normal));
        h.observe_graded(true, Grade::Degraded);
        assert_eq!(h.observe_graded(true, Grade::Degraded), (Some(true), true));
        assert_eq!(h.grade(), Grade::Degraded);
    }

    #[test]
    fn a_pass_slower_than_degraded_after_is_graded_degraded_with_a_steady_reason() {
        let slow = Observation::pass(Duration::from_millis(1600), "HTTP 200");
        let o = grade_by_time(slow.clone(), Some(Duration::from_millis(1500)));
        assert_eq!(o.grade, Grade::Degraded);
        assert_eq!(o.reason, "slow: over 1.50s (HTTP 200)");
        assert_eq!(grade_by_time(slow.clone(), None).grade, Grade::Normal);
        let quick = Observation::pass(Duration::from_millis(200), "HTTP 200");
        assert_eq!(
            grade_by_time(quick, Some(Duration::from_millis(1500))).grade,
            Grade::Normal
        );
        let failed = Observation::fail(Duration::from_millis(1600), "HTTP 500");
        assert_eq!(
            grade_by_time(failed, Some(Duration::from_millis(1500))).grade,
            Grade::Normal
        );
    }

    #[test]
    fn alternating_results_never_flip_with_rise_and_fall_of_two() {
        let mut h = Hysteresis::new(2, 2, Some(true));
        for i in 0..100 {
            assert_eq!(h.observe(i % 2 == 0), None);
        }
        assert_eq!(h.verdict(), Some(true));
    }
}
