//! The engine's unit tests: a config with one checked service (and, with the guard, one
//! canary), fed probe reports through real hysteresis at explicit times.

use super::*;
use crate::checks::runner::Hysteresis;
use crate::checks::{Grade, Observation};
use crate::incidents::Incidents;
use crate::overrides::Forced;
use crate::states::health_differs;
use crate::states::persist::{
    HIGHEST, SERIAL_LEASE, passes, save_serials, serial_floor, snapshot_of,
};

/// A moment `ms` milliseconds into the test.
fn t(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap() + chrono::Duration::milliseconds(ms)
}

/// The same moment on the monotonic clock.
fn m(ms: i64) -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now) + Duration::from_millis(ms as u64)
}

const MLS: fn() -> CheckId = || CheckId::Service {
    service: "mls".into(),
    index: 0,
};
const CANARY: CheckId = CheckId::Canary(0);

/// An engine over a config with one checked service and, with `guard`, one canary; probes
/// are fed through real hysteresis.
struct Rig {
    _dir: tempfile::TempDir,
    engine: Engine,
    h: BTreeMap<CheckId, Hysteresis>,
    /// Added to the wall clock only (a step of the system time), in ms.
    skew: i64,
}

impl Rig {
    fn new(guard: bool, fall: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("zones")).unwrap();
        std::fs::write(
            dir.path().join("zones/z.toml"),
            "origin = \"example.test.\"\nsoa = { mname = \"ns1.example.test.\", rname = \"h.example.test.\" }\nns = [\"ns1.example.test.\"]\n",
        )
        .unwrap();
        let canary = if guard {
            "[guard]\ncanaries = [{ type = \"tcp\", address = \"127.0.0.1:9\", fall = 2 }]\n"
        } else {
            ""
        };
        let cfg = format!(
            "[server]\ndns_listen = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\nstate_dir = \"state\"\n\
             [services.mls]\ncheck = {{ type = \"tcp\", address = \"127.0.0.1:9\", fall = {fall}, rise = 2 }}\n{canary}"
        );
        let path = dir.path().join("detour.toml");
        std::fs::write(&path, cfg).unwrap();
        let config = Arc::new(Config::load(&path).unwrap());
        let mut engine = Engine::new(config, None, t(0));
        engine.evaluate(t(0));
        Self {
            _dir: dir,
            engine,
            h: BTreeMap::new(),
            skew: 0,
        }
    }

    /// Reports one probe of `id` that started at `start` ms and took `took` ms; returns
    /// what `Engine::report` says (a verdict in force may have changed).
    fn report(&mut self, id: CheckId, ok: bool, start: i64, took: i64) -> bool {
        self.report_graded(id, ok, Grade::Normal, start, took)
    }

    /// [`Rig::report`] of a probe graded `grade` (a pass slow, or a vendor's word).
    fn report_graded(
        &mut self,
        id: CheckId,
        ok: bool,
        grade: Grade,
        start: i64,
        took: i64,
    ) -> bool {
        let timing = self.engine.plan[&id].1;
        let h = self
            .h
            .entry(id.clone())
            .or_insert_with(|| Hysteresis::new(timing.rise, timing.fall, None));
        let (flipped, regraded) = h.observe_graded(ok, grade);
        let reason = match (ok, grade) {
            (false, _) => "timed out",
            (true, Grade::Normal) => "connected",
            (true, Grade::Degraded) => "slow: over 1.5s (connected)",
            (true, Grade::Maintenance) => "under maintenance: Database upgrade",
        };
        let observation = Observation {
            ok,
            latency: Duration::from_millis(took as u64),
            reason: reason.into(),
            at: t(start + took + self.skew),
            finished: m(start + took),
            own_fault: false,
            grade: if ok { grade } else { Grade::Normal },
        };
        self.engine.report(Report {
            id,
            observation,
            verdict: h.verdict(),
            grade: h.grade(),
            flipped: flipped.is_some() || regraded,
        })
    }

    /// One probe of `id` that started at `start` ms and took 10 ms; returns mls's state
    /// once the engine has evaluated at the probe's end.
    fn probe(&mut self, id: CheckId, ok: bool, start: i64) -> ServiceState {
        self.report(id, ok, start, 10);
        self.engine.evaluate(t(start + 10 + self.skew));
        self.engine.services["mls"].state
    }
}

#[test]
fn without_canaries_a_down_verdict_acts_at_once() {
    let mut r = Rig::new(false, 2);
    assert_eq!(r.engine.services["mls"].reason, "no verdict yet");
    assert_eq!(r.probe(MLS(), true, 0), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 100), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 200), ServiceState::Down);
}

#[test]
fn a_down_verdict_acts_once_a_canary_passed_during_the_failures() {
    let mut r = Rig::new(true, 2);
    assert_eq!(r.probe(MLS(), true, 0), ServiceState::Up);
    assert_eq!(r.probe(CANARY, true, 5), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 100), ServiceState::Up);
    // The canary probe the failure asked for: detour reaches the outside world.
    assert_eq!(r.probe(CANARY, true, 115), ServiceState::Up);
    assert_eq!(
        r.probe(MLS(), false, 200),
        ServiceState::Down,
        "fall 2, corroborated"
    );
    assert!(!r.engine.awaiting_canary(&MLS()));
    // Once corroborated, the verdict stands until rise says otherwise.
    assert_eq!(r.probe(MLS(), true, 300), ServiceState::Down);
    assert_eq!(r.probe(MLS(), true, 400), ServiceState::Up);
}

#[test]
fn when_detours_own_network_fails_no_service_is_sent_away() {
    let mut r = Rig::new(true, 2);
    assert_eq!(r.probe(MLS(), true, 0), ServiceState::Up);
    assert_eq!(r.probe(CANARY, true, 5), ServiceState::Up);
    // Everything fails; the service's check reaches its fall before the canary does.
    assert_eq!(r.probe(MLS(), false, 100), ServiceState::Up);
    assert_eq!(r.probe(CANARY, false, 115), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 200), ServiceState::Up, "held");
    assert!(r.engine.awaiting_canary(&MLS()));
    let h = r.engine.health();
    assert_eq!(
        h.checks[&MLS()].verdict,
        Some(true),
        "in force: the earlier verdict"
    );
    assert!(h.checks[&MLS()].awaiting_canary);
    assert!(
        r.engine.persisted(t(250)).checks["mls#0"],
        "saved as in force"
    );
    // The state says why it is up though its check fails.
    let reason = |r: &Rig| r.engine.services["mls"].reason.clone();
    assert_eq!(
        reason(&r),
        "a failing check waits for a canary to pass before it counts"
    );
    // The canary reaches its fall: the guard freezes with the service up.
    assert_eq!(r.probe(CANARY, false, 300), ServiceState::Up);
    assert!(r.engine.frozen());
    assert_eq!(r.probe(MLS(), false, 400), ServiceState::Up);
    assert!(
        reason(&r).starts_with("held at its last state: the guard is frozen"),
        "{}",
        reason(&r)
    );
    // The network is back: the canary passes first, but after the check's latest
    // failure, so it says nothing about that failure; then the check passes.
    assert_eq!(r.probe(CANARY, true, 1000), ServiceState::Up);
    assert_eq!(r.probe(CANARY, true, 1050), ServiceState::Up);
    assert!(!r.engine.frozen());
    assert_eq!(r.probe(MLS(), true, 1100), ServiceState::Up);
    assert_eq!(r.probe(MLS(), true, 1200), ServiceState::Up);
    assert!(!r.engine.awaiting_canary(&MLS()));
    assert_eq!(reason(&r), "checks pass");
    assert_eq!(r.engine.services["mls"].history.len(), 1, "never left up");
    // A real failure afterwards still takes it down.
    assert_eq!(r.probe(MLS(), false, 2000), ServiceState::Up);
    assert_eq!(r.probe(CANARY, true, 2015), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 2100), ServiceState::Down);
}

#[test]
fn a_canary_report_that_corroborates_asks_for_a_new_evaluation() {
    let mut r = Rig::new(true, 2);
    assert_eq!(r.probe(MLS(), true, 0), ServiceState::Up);
    assert_eq!(r.probe(CANARY, true, 5), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 100), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 200), ServiceState::Up, "held");
    // A slow canary probe that started between the two failures comes back now: no
    // verdict of its own flips, but mls's down verdict is corroborated by it.
    assert!(r.report(CANARY, true, 150, 100));
    r.engine.evaluate(t(250));
    assert_eq!(r.engine.services["mls"].state, ServiceState::Down);
    // A canary pass that changes nothing does not.
    assert!(!r.report(CANARY, true, 300, 10));
}

#[test]
fn with_fall_one_the_verdict_waits_for_the_next_failure_after_a_canary_pass() {
    let mut r = Rig::new(true, 1);
    assert_eq!(r.probe(MLS(), true, 0), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 100), ServiceState::Up, "held");
    // The canary passes after the only failure so far: not yet evidence.
    assert_eq!(r.probe(CANARY, true, 120), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 300), ServiceState::Down);
}

#[test]
fn a_wall_clock_step_does_not_confuse_corroboration() {
    let mut r = Rig::new(true, 2);
    assert_eq!(r.probe(MLS(), true, 0), ServiceState::Up);
    r.skew = 9_900;
    assert_eq!(r.probe(MLS(), false, 90), ServiceState::Up);
    // The wall clock steps back ten seconds; the canary's pass is still after the failure.
    r.skew = 0;
    assert_eq!(r.probe(CANARY, true, 120), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 190), ServiceState::Down);
}

#[test]
fn a_reload_without_canaries_releases_held_verdicts() {
    let mut r = Rig::new(true, 2);
    assert_eq!(r.probe(MLS(), true, 0), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 100), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 200), ServiceState::Up, "held");
    let unguarded = Rig::new(false, 2).engine.config().clone();
    r.engine.set_config(unguarded, t(300));
    r.engine.evaluate(t(300));
    assert_eq!(r.engine.services["mls"].state, ServiceState::Down);
}

#[test]
fn a_restored_down_verdict_is_not_held_again() {
    let mut r = Rig::new(true, 2);
    assert_eq!(
        r.probe(MLS(), false, 0),
        ServiceState::Up,
        "first verdict held"
    );
    assert_eq!(r.probe(CANARY, true, 15), ServiceState::Up);
    assert_eq!(r.probe(MLS(), false, 100), ServiceState::Down);
    let saved = r.engine.persisted(t(150));
    let config = r.engine.config().clone();
    let mut e = Engine::new(config, Some(&saved), t(200));
    e.evaluate(t(200));
    assert_eq!(e.services["mls"].state, ServiceState::Down);
    e.report(Report {
        id: MLS(),
        observation: Observation {
            ok: false,
            latency: Duration::from_millis(10),
            reason: "timed out".into(),
            at: t(310),
            finished: m(310),
            own_fault: false,
            grade: Grade::Normal,
        },
        verdict: Some(false),
        grade: Grade::Normal,
        flipped: false,
    });
    e.evaluate(t(310));
    assert_eq!(e.services["mls"].state, ServiceState::Down);
}

#[test]
fn an_override_with_until_ends_at_that_moment_and_not_before() {
    let mut r = Rig::new(false, 2);
    assert_eq!(r.probe(MLS(), true, 0), ServiceState::Up);
    let o = Override::new(Forced::Maintenance, "patching").until(t(60_000));
    r.engine.set_override("mls", Some(o.clone())).unwrap();
    assert_eq!(r.engine.evaluate(t(100)).len(), 1);
    assert_eq!(r.engine.services["mls"].state, ServiceState::Maintenance);
    // The states task sleeps until the next boundary: the override's end.
    assert_eq!(r.engine.next_boundary(t(100)), Some(t(60_000)));
    assert_eq!(r.engine.next_boundary(t(59_999)), Some(t(60_000)));
    // A millisecond before its end it is still in force.
    assert!(r.engine.expire_overrides(t(59_999)).is_empty());
    assert!(r.engine.evaluate(t(59_999)).is_empty());
    assert_eq!(r.engine.services["mls"].state, ServiceState::Maintenance);
    // At its end it is removed, once, and the checks decide again.
    assert_eq!(
        r.engine.expire_overrides(t(60_000)),
        [("mls".to_string(), o)]
    );
    assert!(r.engine.overrides().is_empty());
    assert!(r.engine.expire_overrides(t(60_001)).is_empty());
    let changes = r.engine.evaluate(t(60_000));
    assert_eq!(changes.len(), 1, "{changes:?}");
    let c = &changes[0].transition;
    assert_eq!(
        (c.from, c.to, c.at, c.reason.as_str()),
        (
            Some(ServiceState::Maintenance),
            ServiceState::Up,
            t(60_000),
            "checks pass"
        )
    );
    assert_eq!(changes[0].lasted, Some(Duration::from_millis(59_900)));
    assert_eq!(r.engine.next_boundary(t(60_000)), None);
}

#[test]
fn an_override_without_until_stays_until_cleared() {
    let mut r = Rig::new(false, 2);
    assert_eq!(r.probe(MLS(), true, 0), ServiceState::Up);
    r.engine
        .set_override("mls", Some(Override::new(Forced::Down, "vendor")))
        .unwrap();
    r.engine.evaluate(t(100));
    let years = 10 * 365 * 24 * 3_600_000;
    assert_eq!(r.engine.next_boundary(t(100)), None, "nothing to wake for");
    assert!(r.engine.expire_overrides(t(years)).is_empty());
    assert!(r.engine.evaluate(t(years)).is_empty());
    assert_eq!(r.engine.services["mls"].state, ServiceState::Down);
    r.engine.set_override("mls", None).unwrap();
    assert_eq!(r.engine.evaluate(t(years + 1)).len(), 1);
    assert_eq!(r.engine.services["mls"].state, ServiceState::Up);
}

#[test]
fn the_next_wake_up_is_the_earliest_override_end_strictly_ahead() {
    let mut r = Rig::new(false, 2);
    // overrides.toml may hold several (here one for a service no longer configured: it
    // changes no state, but still ends on time).
    let late = Override::new(Forced::Down, "vendor").until(t(5_000));
    let early = Override::new(Forced::Maintenance, "patching").until(t(2_000));
    r.engine.set_overrides(Overrides::from([
        ("mls".to_string(), late.clone()),
        ("old".to_string(), early.clone()),
    ]));
    assert_eq!(r.engine.next_boundary(t(0)), Some(t(2_000)));
    // An end at `now` is not ahead: the task applies it now instead of sleeping for it.
    assert_eq!(r.engine.next_boundary(t(2_000)), Some(t(5_000)));
    assert_eq!(
        r.engine.expire_overrides(t(2_000)),
        [("old".to_string(), early)]
    );
    assert_eq!(r.engine.next_boundary(t(2_000)), Some(t(5_000)));
    assert_eq!(r.engine.next_boundary(t(5_000)), None);
    assert_eq!(
        r.engine.expire_overrides(t(5_000)),
        [("mls".to_string(), late)]
    );
}

#[test]
fn serials_are_reserved_ahead_and_written_again_only_past_the_reservation() {
    let rig = Rig::new(false, 2);
    let config = rig.engine.config().clone();
    std::fs::create_dir_all(&config.server.state_dir).unwrap();
    let health = rig.engine.health();
    // Built afresh with a floor above the clock: the serial is the floor.
    let build = |floor: u32| {
        snapshot_of(
            config.clone(),
            health.clone(),
            Arc::new(Incidents::default()),
            None,
            floor,
        )
    };
    let first = build(3_000_000_000);
    let serial = first.zones[0].serial;
    assert_eq!(serial, 3_000_000_000);
    let ceilings = save_serials(&first);
    assert_eq!(ceilings["example.test."], serial + SERIAL_LEASE);
    assert_eq!(ceilings[HIGHEST], first.serial_high() + SERIAL_LEASE);
    // What a restart starts from: above every serial reserved.
    assert_eq!(serial_floor(&config).0, serial + SERIAL_LEASE + 1);
    assert!(!passes(&first, &ceilings));
    // Inside the reservation: no write; past it: a write.
    let inside = build(serial + SERIAL_LEASE);
    assert!(!passes(&inside, &ceilings));
    let past = build(serial + SERIAL_LEASE + 1);
    assert!(passes(&past, &ceilings));
    // A zone not reserved yet (added by a reload), or nothing reserved (a failed write).
    let mut renamed = ceilings.clone();
    renamed.remove("example.test.");
    assert!(passes(&first, &renamed));
    assert!(passes(&first, &BTreeMap::new()));
    // Near the top of the range the reservation stops at u32::MAX, never wraps below.
    let top = build(u32::MAX - 10);
    assert_eq!(save_serials(&top)[HIGHEST], u32::MAX);
    assert_eq!(serial_floor(&config).0, u32::MAX);
}

#[test]
fn what_the_status_shows_of_health_is_published() {
    let r = Rig::new(true, 2);
    let a = r.engine.health();
    assert!(!health_differs(&a, &a.clone()));
    // A reason alone (a check held for a canary, the guard, a new failure mode) or a
    // check's hold alone: a new Snapshot, so the status and the page say it.
    let mut b = a.clone();
    b.services.get_mut("mls").unwrap().reason = "held".into();
    assert!(health_differs(&a, &b));
    let mut c = a.clone();
    c.checks.get_mut(&MLS()).unwrap().awaiting_canary = true;
    assert!(health_differs(&a, &c));
}

/// One graded probe of mls (started at `start` ms, 10 ms long) and its state after.
fn graded(r: &mut Rig, grade: Grade, start: i64) -> ServiceState {
    r.report_graded(MLS(), true, grade, start, 10);
    r.engine.evaluate(t(start + 10));
    r.engine.services["mls"].state
}

#[test]
fn slow_passes_make_a_service_degraded_after_fall_and_normal_ones_bring_it_back_after_rise() {
    // rise 2, fall 3.
    let mut r = Rig::new(false, 3);
    assert_eq!(graded(&mut r, Grade::Normal, 0), ServiceState::Up);
    assert_eq!(graded(&mut r, Grade::Degraded, 100), ServiceState::Up);
    assert_eq!(graded(&mut r, Grade::Degraded, 200), ServiceState::Up);
    // A normal pass in between starts the count again.
    assert_eq!(graded(&mut r, Grade::Normal, 300), ServiceState::Up);
    for i in 0..2 {
        assert_eq!(
            graded(&mut r, Grade::Degraded, 400 + i * 100),
            ServiceState::Up
        );
    }
    assert_eq!(graded(&mut r, Grade::Degraded, 600), ServiceState::Degraded);
    let s = &r.engine.services["mls"];
    assert_eq!(s.reason, "slow: over 1.5s (connected)");
    assert!(s.state.usable(), "degraded is answered as up");
    assert_eq!(r.engine.health().checks[&MLS()].grade, Grade::Degraded);
    // A failure while degraded does not change the grade by itself...
    assert_eq!(r.probe(MLS(), false, 700), ServiceState::Degraded);
    // ...and two normal passes (rise) make it up again.
    assert_eq!(graded(&mut r, Grade::Normal, 800), ServiceState::Degraded);
    assert_eq!(graded(&mut r, Grade::Normal, 900), ServiceState::Up);
    // Down then up again: the grade of the pass that brings it up.
    for i in 0..3 {
        r.probe(MLS(), false, 1000 + i * 100);
    }
    assert_eq!(r.engine.services["mls"].state, ServiceState::Down);
    assert_eq!(graded(&mut r, Grade::Degraded, 1400), ServiceState::Down);
    assert_eq!(
        graded(&mut r, Grade::Degraded, 1500),
        ServiceState::Degraded
    );
}

#[test]
fn a_vendors_maintenance_is_maintenance_and_an_override_wins_over_degraded() {
    let mut r = Rig::new(false, 1);
    assert_eq!(
        graded(&mut r, Grade::Maintenance, 0),
        ServiceState::Maintenance
    );
    assert_eq!(
        r.engine.services["mls"].reason,
        "under maintenance: Database upgrade"
    );
    assert!(!ServiceState::Maintenance.usable());
    assert_eq!(
        graded(&mut r, Grade::Normal, 100),
        ServiceState::Maintenance
    );
    assert_eq!(graded(&mut r, Grade::Normal, 200), ServiceState::Up);
    assert_eq!(graded(&mut r, Grade::Degraded, 300), ServiceState::Degraded);
    // An override wins over a degraded verdict, as over any other.
    r.engine
        .set_override(
            "mls",
            Some(crate::overrides::Override::new(Forced::Up, "fine")),
        )
        .unwrap();
    r.engine.evaluate(t(400));
    assert_eq!(r.engine.services["mls"].state, ServiceState::Up);
    assert_eq!(r.engine.services["mls"].observed, ServiceState::Degraded);
}
