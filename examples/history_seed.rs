//! Fills `STATE_DIR/history.db` with days of made-up history for services `s001`..:
//! `bench/history.sh` uses it to measure the status page with full 90-day bars.
//!
//! usage: cargo run --release --example history_seed -- STATE_DIR SERVICES DAYS
//!
//! One run of detour from DAYS days ago until a minute ago; every service up, except that
//! service k is down for (k mod 50) + 5 minutes every (k mod 7) + 3 days, in maintenance for
//! 2 hours every 30 days, and impacted for 20 minutes every 11 days. Deterministic.

use std::path::PathBuf;
use std::process::ExitCode;

use detour::health::ServiceState;
use detour::history::db::{Batch, Db, TransitionRow};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, services, days] = args.as_slice() else {
        eprintln!("usage: history_seed STATE_DIR SERVICES DAYS");
        return ExitCode::from(2);
    };
    let (Ok(services), Ok(days)) = (services.parse::<u32>(), days.parse::<i64>()) else {
        eprintln!("SERVICES and DAYS are whole numbers");
        return ExitCode::from(2);
    };
    match seed(PathBuf::from(dir), services, days) {
        Ok(n) => {
            println!("{n} transitions for {services} services over {days} days");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn seed(dir: PathBuf, services: u32, days: i64) -> Result<usize, String> {
    const MIN: i64 = 60_000;
    const DAY: i64 = 1440 * MIN;
    let (mut db, _) = Db::open(&dir.join("history.db"))?;
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - days * DAY;
    let run = db.begin_run(start).map_err(|e| e.to_string())?;
    let mut batch = Batch::default();
    for k in 1..=services {
        let id = format!("s{k:03}");
        let mut events = vec![(start, ServiceState::Up)];
        let every = i64::from(k % 7) + 3;
        for d in (1..days).step_by(every as usize) {
            let at = start + d * DAY + i64::from(k % 24) * 60 * MIN;
            events.push((at, ServiceState::Down));
            events.push((at + (i64::from(k % 50) + 5) * MIN, ServiceState::Up));
        }
        for d in (5..days).step_by(30) {
            let at = start + d * DAY + 14 * 60 * MIN;
            events.push((at, ServiceState::Maintenance));
            events.push((at + 120 * MIN, ServiceState::Up));
        }
        for d in (2..days).step_by(11) {
            let at = start + d * DAY + 9 * 60 * MIN;
            events.push((at, ServiceState::Impacted));
            events.push((at + 20 * MIN, ServiceState::Up));
        }
        events.sort_by_key(|(at, _)| *at);
        let mut from = None;
        for (at, to) in events {
            batch.transitions.push(TransitionRow {
                run,
                at,
                service: id.clone(),
                from,
                to,
                reason: format!("made up by history_seed ({to})"),
            });
            from = Some(to);
        }
    }
    let n = batch.transitions.len();
    db.write(&batch, run, now - MIN, true)
        .map_err(|e| e.to_string())?;
    Ok(n)
}
