//! `detour report`: per service, over a period, how available it was, its outages and how
//! long they took to mend (MTTR), how long its records answered with the backup and with
//! the outage page, how often they swapped (automatically or by an operator), and the
//! notifications sent. Computed from [`Rows`] alone (pure), so the same numbers come from
//! the admin API, the CLI and the tests.

use serde::{Deserialize, Serialize};

use super::Answered;
use super::db::Rows;
use super::timeline::{self, Ms, Totals};
use crate::health::ServiceState;

/// One service in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// Service id.
    pub id: String,
    /// Display name (the id when the service is no longer configured).
    pub name: String,
    /// Availability, 0 to 1 ([`Totals::availability`]); null without data.
    pub availability: Option<f64>,
    /// Seconds with data.
    pub known_s: i64,
    /// Seconds down (counted against availability).
    pub down_s: i64,
    /// Seconds impacted (working, not through the usual way in).
    pub impacted_s: i64,
    /// Seconds in maintenance (left out of availability).
    pub maintenance_s: i64,
    /// Outages: stretches down, a restart of detour inside one not splitting it.
    pub outages: usize,
    /// Their median length in seconds (time to recover).
    pub mttr_median_s: Option<i64>,
    /// The longest, in seconds.
    pub mttr_worst_s: Option<i64>,
    /// An outage is still going on at the end of the period.
    pub ongoing: bool,
    /// Seconds its records answered with a backup (a later `answers` entry).
    pub backup_s: i64,
    /// Seconds they answered with the outage page (`otherwise`).
    pub outage_page_s: i64,
    /// Changes of what its records answered, made by checks, windows or expiries.
    pub swaps_automatic: usize,
    /// Changes made by an operator's override.
    pub swaps_manual: usize,
    /// Notifications delivered about it.
    pub notifications: usize,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Start of the period.
    pub since: chrono::DateTime<chrono::Utc>,
    /// End of the period.
    pub until: chrono::DateTime<chrono::Utc>,
    /// Seconds of the period detour was running (the rest is no data).
    pub running_s: i64,
    /// Per service, in id order.
    pub services: Vec<ServiceReport>,
    /// Notifications delivered, about services or not (guard, incidents).
    pub notifications: usize,
    /// Operator actions (overrides, incidents, reloads).
    pub operator_actions: usize,
}

/// The report over `[from, until)` of `rows`, for `services` (id, name; services met in
/// the rows but no longer configured are added by id).
pub fn build(rows: &Rows, services: &[(String, String)], from: Ms, until: Ms) -> Report {
    let mut all: Vec<(String, String)> = services.to_vec();
    for t in &rows.transitions {
        if !all.iter().any(|(id, _)| *id == t.service) {
            all.push((t.service.clone(), t.service.clone()));
        }
    }
    all.sort();
    let running_s = rows
        .runs
        .iter()
        .map(|r| (r.end.min(until) - r.start.max(from)).max(0))
        .sum::<Ms>()
        / 1000;
    let services = all
        .into_iter()
        .map(|(id, name)| service(rows, id, name, from, until))
        .collect();
    Report {
        since: timeline::utc(from),
        until: timeline::utc(until),
        running_s,
        services,
        notifications: rows
            .notifications
            .iter()
            .filter(|n| n.at >= from && n.at < until)
            .count(),
        operator_actions: rows
            .actions
            .iter()
            .filter(|a| {
                let t = a.time.timestamp_millis();
                t >= from && t < until
            })
            .count(),
    }
}

fn service(rows: &Rows, id: String, name: String, from: Ms, until: Ms) -> ServiceReport {
    let states = timeline::spans(&rows.runs, &rows.states_of(&id), from, until);
    let totals = Totals::of_spans(&states, from, until);
    let last_known = states.last().map_or(from, |s| s.end);
    let outages = timeline::periods(&states, timeline::counts_as_down, last_known);
    let mut lengths: Vec<Ms> = outages.iter().map(|p| p.len()).collect();
    let worst = lengths.iter().copied().max();
    let median = timeline::median(&mut lengths);
    let answers_changes = rows.answers_of(&id);
    let answers = timeline::spans(&rows.runs, &answers_changes, from, until);
    let time_in = |a: Answered| {
        answers
            .iter()
            .filter(|s| s.value == a)
            .map(|s| s.len())
            .sum::<Ms>()
            / 1000
    };
    let (mut automatic, mut manual) = (0, 0);
    let mine: Vec<_> = rows.answered.iter().filter(|a| a.service == id).collect();
    for w in mine.windows(2) {
        let (before, now) = (w[0], w[1]);
        if now.run == before.run
            && now.answered != before.answered
            && now.at >= from
            && now.at < until
        {
            if now.manual {
                manual += 1;
            } else {
                automatic += 1;
            }
        }
    }
    ServiceReport {
        availability: totals.availability(),
        known_s: totals.known / 1000,
        down_s: totals.down() / 1000,
        impacted_s: totals.of(ServiceState::Impacted) / 1000,
        maintenance_s: totals.of(ServiceState::Maintenance) / 1000,
        outages: outages.len(),
        mttr_median_s: median.map(|m| m / 1000),
        mttr_worst_s: worst.map(|m| m / 1000),
        ongoing: outages.last().is_some_and(|p| p.ongoing),
        backup_s: time_in(Answered::Backup),
        outage_page_s: time_in(Answered::OutagePage),
        swaps_automatic: automatic,
        swaps_manual: manual,
        notifications: rows
            .notifications
            .iter()
            .filter(|n| n.service.as_deref() == Some(id.as_str()) && n.at >= from && n.at < until)
            .count(),
        id,
        name,
    }
}

/// `s` seconds as "3h 12m", "45s", "2d 4h".
pub fn duration(s: i64) -> String {
    let s = s.max(0);
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, m) => format!("{m}m {sec:02}s"),
        (0, h, m) => format!("{h}h {m:02}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The report as a table for people.
pub fn render(r: &Report, zone: timeline::Zone) -> String {
    use std::fmt::Write as _;
    let when =
        |t: chrono::DateTime<chrono::Utc>| zone.format(t.timestamp_millis(), "%Y-%m-%d %H:%M %Z");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Report from {} to {} (detour ran {} of it)\n",
        when(r.since),
        when(r.until),
        duration(r.running_s)
    );
    let _ = writeln!(
        out,
        "{:<20} {:>9} {:>7} {:>10} {:>10} {:>10} {:>10} {:>11} {:>6}",
        "SERVICE",
        "AVAIL",
        "OUTAGES",
        "MTTR MED",
        "MTTR MAX",
        "BACKUP",
        "OUTAGE PG",
        "SWAPS A/M",
        "NOTIF"
    );
    for s in &r.services {
        let opt = |v: Option<i64>| v.map_or("-".to_string(), duration);
        let name = if s.name.chars().count() > 20 {
            format!("{}…", s.name.chars().take(19).collect::<String>())
        } else {
            s.name.clone()
        };
        let _ = writeln!(
            out,
            "{:<20} {:>9} {:>7} {:>10} {:>10} {:>10} {:>10} {:>11} {:>6}",
            name,
            timeline::percent(s.availability),
            format!("{}{}", s.outages, if s.ongoing { "*" } else { "" }),
            opt(s.mttr_median_s),
            opt(s.mttr_worst_s),
            duration(s.backup_s),
            duration(s.outage_page_s),
            format!("{}/{}", s.swaps_automatic, s.swaps_manual),
            s.notifications
        );
    }
    let _ = writeln!(
        out,
        "\nAvailability leaves out maintenance and time detour was not running; impacted counts as available.\nMTTR: how long outages lasted (median, longest); * an outage still going on.\nSWAPS A/M: changes of what the records answered, automatic / by an operator.\nNotifications delivered: {} in all; operator actions: {}.",
        r.notifications, r.operator_actions
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::db::{AnsweredRow, NotificationRow, TransitionRow};
    use crate::history::timeline::Run;
    use ServiceState::*;

    const M: Ms = 60_000;

    fn t(run: i64, at: Ms, service: &str, to: ServiceState) -> TransitionRow {
        TransitionRow {
            run,
            at,
            service: service.into(),
            from: None,
            to,
            reason: String::new(),
        }
    }

    fn a(run: i64, at: Ms, answered: Answered, manual: bool) -> AnsweredRow {
        AnsweredRow {
            run,
            at,
            service: "mls".into(),
            answered,
            manual,
        }
    }

    /// Two runs of 100 and 50 minutes with a 10-minute gap. mls: down 10..30 (checks,
    /// answered by the backup), maintenance 40..50 (an operator; outage page), down from 90
    /// across the restart to 120, then up.
    fn known() -> Rows {
        Rows {
            runs: vec![
                Run {
                    id: 1,
                    start: 0,
                    end: 100 * M,
                },
                Run {
                    id: 2,
                    start: 110 * M,
                    end: 160 * M,
                },
            ],
            transitions: vec![
                t(1, 0, "mls", Up),
                t(1, 0, "tax", Up),
                t(1, 10 * M, "mls", Down),
                t(1, 30 * M, "mls", Up),
                t(1, 40 * M, "mls", Maintenance),
                t(1, 50 * M, "mls", Up),
                t(1, 90 * M, "mls", Down),
                t(2, 110 * M, "mls", Down),
                t(2, 110 * M, "tax", Up),
                t(2, 120 * M, "mls", Up),
            ],
            answered: vec![
                a(1, 0, Answered::Usual, false),
                a(1, 10 * M, Answered::Backup, false),
                a(1, 30 * M, Answered::Usual, false),
                a(1, 40 * M, Answered::OutagePage, true),
                a(1, 50 * M, Answered::Usual, true),
                a(1, 90 * M, Answered::Backup, false),
                // A new run starts with what it finds: not a swap.
                a(2, 110 * M, Answered::Backup, false),
                a(2, 120 * M, Answered::Usual, false),
            ],
            actions: Vec::new(),
            notifications: vec![
                NotificationRow {
                    at: 11 * M,
                    sink: "1".into(),
                    kind: "down".into(),
                    service: Some("mls".into()),
                },
                NotificationRow {
                    at: 31 * M,
                    sink: "1".into(),
                    kind: "up".into(),
                    service: Some("mls".into()),
                },
                NotificationRow {
                    at: 95 * M,
                    sink: "1".into(),
                    kind: "guard".into(),
                    service: None,
                },
            ],
        }
    }

    #[test]
    fn a_report_from_known_events() {
        let services = vec![
            ("mls".to_string(), "MLS".to_string()),
            ("tax".to_string(), "Tax".to_string()),
        ];
        let r = build(&known(), &services, 0, 200 * M);
        assert_eq!(r.running_s, 150 * 60);
        assert_eq!(r.notifications, 3);
        let mls = &r.services[0];
        assert_eq!(mls.id, "mls");
        assert_eq!(mls.known_s, 150 * 60);
        assert_eq!(mls.down_s, (20 + 10 + 10) * 60);
        assert_eq!(mls.maintenance_s, 10 * 60);
        // 140 minutes count; 40 of them down.
        assert_eq!(mls.availability, Some(100.0 / 140.0));
        assert_eq!(mls.outages, 2);
        // 20 minutes; 90 to 120 across the restart, the gap included: 30.
        assert_eq!(mls.mttr_median_s, Some(20 * 60));
        assert_eq!(mls.mttr_worst_s, Some(30 * 60));
        assert!(!mls.ongoing);
        assert_eq!(mls.backup_s, (20 + 10 + 10) * 60);
        assert_eq!(mls.outage_page_s, 10 * 60);
        assert_eq!((mls.swaps_automatic, mls.swaps_manual), (4, 2));
        assert_eq!(mls.notifications, 2);
        let tax = &r.services[1];
        assert_eq!(tax.availability, Some(1.0));
        assert_eq!((tax.outages, tax.backup_s, tax.notifications), (0, 0, 0));
        // A period that cuts an outage short: it is ongoing at the end.
        let r = build(&known(), &services, 0, 20 * M);
        assert_eq!(r.services[0].down_s, 10 * 60);
        assert!(r.services[0].ongoing);
        assert_eq!(r.services[0].outages, 1);
        let text = render(&r, timeline::Zone::Named(chrono_tz::UTC));
        assert!(text.contains("MLS"), "{text}");
        assert!(text.contains("50.00%"), "{text}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(125), "2m 05s");
        assert_eq!(duration(3 * 3600 + 12 * 60), "3h 12m");
        assert_eq!(duration(2 * 86_400 + 4 * 3600 + 5), "2d 4h");
    }
}
