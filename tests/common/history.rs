//! Writes a history database of known events before a detour starts on it, through the same
//! code the daemon writes with (`detour::history::db`).
#![allow(dead_code)]

use std::path::Path;

use chrono::{DateTime, Utc};
use detour::health::ServiceState;
use detour::history::Answered;
use detour::history::db::{AnsweredRow, Batch, Db, NotificationRow, TransitionRow};

/// One past run of detour and what happened in it.
pub struct PastRun {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// (when, service, new state)
    pub states: Vec<(DateTime<Utc>, &'static str, ServiceState)>,
    /// (when, service, answered, by an operator)
    pub answers: Vec<(DateTime<Utc>, &'static str, Answered, bool)>,
    /// (when, service) of delivered notifications
    pub notified: Vec<(DateTime<Utc>, &'static str)>,
}

impl PastRun {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self {
            start,
            end,
            states: Vec::new(),
            answers: Vec::new(),
            notified: Vec::new(),
        }
    }

    pub fn state(mut self, at: DateTime<Utc>, service: &'static str, s: ServiceState) -> Self {
        self.states.push((at, service, s));
        self
    }

    pub fn answer(
        mut self,
        at: DateTime<Utc>,
        service: &'static str,
        a: Answered,
        manual: bool,
    ) -> Self {
        self.answers.push((at, service, a, manual));
        self
    }

    pub fn notified(mut self, at: DateTime<Utc>, service: &'static str) -> Self {
        self.notified.push((at, service));
        self
    }
}

/// Writes `runs` into `state_dir/history.db` (created), each run stopped at its end.
pub fn seed(state_dir: &Path, runs: &[PastRun]) {
    let path = state_dir.join("history.db");
    let (mut db, problem) = Db::open(&path).expect("history.db opens");
    assert_eq!(problem, None);
    for r in runs {
        let id = db.begin_run(r.start.timestamp_millis()).expect("run");
        let mut batch = Batch::default();
        let mut last: std::collections::HashMap<&str, ServiceState> = Default::default();
        for (at, service, to) in &r.states {
            batch.transitions.push(TransitionRow {
                run: id,
                at: at.timestamp_millis(),
                service: service.to_string(),
                from: last.insert(service, *to),
                to: *to,
                reason: format!("seeded {to}"),
            });
        }
        for (at, service, answered, manual) in &r.answers {
            batch.answered.push(AnsweredRow {
                run: id,
                at: at.timestamp_millis(),
                service: service.to_string(),
                answered: *answered,
                manual: *manual,
            });
        }
        for (at, service) in &r.notified {
            batch.notifications.push(NotificationRow {
                at: at.timestamp_millis(),
                sink: "1".into(),
                kind: "down".into(),
                service: Some(service.to_string()),
            });
        }
        db.write(&batch, id, r.end.timestamp_millis(), true)
            .expect("seed written");
    }
}
