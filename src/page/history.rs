//! What the pages show of the history ([`crate::history::view::PageView`]): each service's
//! 90 day bars, availability and 24-hour response times on the status page (inline SVG,
//! each chart with a text equivalent), the `/history` page of past incidents, and
//! `/status/history.json`. Built from the history thread's view and the Snapshot; the page
//! caches what it renders until either changes.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::view::{Clock, When, state_class, state_label};
use crate::config::Config;
use crate::health::ServiceState;
use crate::history::timeline::{self, Ms, Totals, percent, short_date};
use crate::history::view::{BUCKETS, PageView, ServiceHistory, ServiceJson, Trouble};
use crate::incidents::Incidents;

/// Width of one day in the bars' coordinates (a bar and its gap).
pub const DAY_W: u32 = 4;
/// Height of the sparkline's drawing.
pub const SPARK_H: f64 = 30.0;

/// One day's mark.
#[derive(Debug, Clone)]
pub struct DayMark {
    /// Left edge.
    pub x: u32,
    /// Colour class: the worst state's badge class, `none` without data.
    pub class: &'static str,
    /// What the day's `<title>` says.
    pub title: String,
}

/// One service's history on the status page.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// The bars, oldest first.
    pub days: Vec<DayMark>,
    /// The bars' drawing width.
    pub width: u32,
    /// The bars in words (their `aria-label`).
    pub summary: String,
    /// Days that had trouble, newest first, in words (the bars' text equivalent).
    pub trouble_days: Vec<String>,
    /// "99.95%" over 30 days.
    pub uptime_30: String,
    /// Over 90 days.
    pub uptime_90: String,
    /// The response-time sparkline, when there were passing probes in the last 24 hours.
    pub spark: Option<Spark>,
}

/// A 24-hour response-time sparkline.
#[derive(Debug, Clone)]
pub struct Spark {
    /// `points` of each polyline (a gap without probes starts a new one).
    pub lines: Vec<String>,
    /// Drawing width.
    pub width: usize,
    /// In words, also its `aria-label`.
    pub summary: String,
}

/// A phrase for `ms` milliseconds of something: "12 min", "3 h 5 min", "under a minute".
fn minutes(ms: Ms) -> String {
    let m = ms / 60_000;
    match m {
        0 => "under a minute".into(),
        m if m < 60 => format!("{m} min"),
        m if m % 60 == 0 => format!("{} h", m / 60),
        m => format!("{} h {} min", m / 60, m % 60),
    }
}

/// What a day's totals say: "down 12 min, maintenance 2 h" or "no problems".
fn day_words(t: &Totals) -> String {
    if t.known == 0 {
        return "no data".into();
    }
    let mut parts = Vec::new();
    for s in timeline::states_by_rank().into_iter().rev() {
        let ms = t.of(s);
        if s != ServiceState::Up && ms > 0 {
            parts.push(format!("{} {}", state_word(s), minutes(ms)));
        }
    }
    if parts.is_empty() {
        "no problems".into()
    } else {
        parts.join(", ")
    }
}

/// A state as a short word for a day's summary (a state without its own word here says
/// its label).
fn state_word(s: ServiceState) -> String {
    match s {
        ServiceState::Up => "working".into(),
        ServiceState::Down => "down".into(),
        ServiceState::Impacted => "limited access".into(),
        other => state_label(&other).to_lowercase(),
    }
}

/// The history row of one service.
pub fn row(h: &ServiceHistory, today: chrono::NaiveDate) -> HistoryRow {
    let days: Vec<DayMark> = h
        .days
        .iter()
        .enumerate()
        .map(|(i, d)| DayMark {
            x: i as u32 * DAY_W,
            class: d.totals.worst().map_or("none", |s| state_class(&s)),
            title: format!("{}: {}", short_date(d.date, today), day_words(&d.totals)),
        })
        .collect();
    let mut counts: Vec<(ServiceState, usize)> = Vec::new();
    let mut no_data = 0;
    let mut trouble_days = Vec::new();
    for d in h.days.iter().rev() {
        match d.totals.worst() {
            None => no_data += 1,
            Some(s) => {
                match counts.iter_mut().find(|(x, _)| *x == s) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((s, 1)),
                }
                if s != ServiceState::Up {
                    trouble_days.push(format!(
                        "{}: {}",
                        short_date(d.date, today),
                        day_words(&d.totals)
                    ));
                }
            }
        }
    }
    counts.sort_by_key(|(s, _)| std::cmp::Reverse(timeline::rank(*s)));
    let plural = |n: usize| if n == 1 { "day" } else { "days" };
    let mut parts: Vec<String> = counts
        .iter()
        .map(|(s, n)| {
            let what = match s {
                ServiceState::Up => "without problems".to_string(),
                ServiceState::Down => "with downtime".to_string(),
                ServiceState::Impacted => "with limited access".to_string(),
                other => format!("with {}", state_label(other).to_lowercase()),
            };
            format!("{n} {} {what}", plural(*n))
        })
        .collect();
    if no_data > 0 {
        parts.push(format!("{no_data} {} without data", plural(no_data)));
    }
    let summary = format!("Last {} days: {}.", h.days.len(), parts.join("; "));
    HistoryRow {
        width: h.days.len() as u32 * DAY_W,
        days,
        summary,
        trouble_days,
        uptime_30: percent(h.availability_30),
        uptime_90: percent(h.availability_90),
        spark: spark(h),
    }
}

fn spark(h: &ServiceHistory) -> Option<Spark> {
    let avgs: Vec<Option<f64>> = h.buckets.iter().map(|b| b.map(|b| b.avg_ms())).collect();
    let known: Vec<f64> = avgs.iter().flatten().copied().collect();
    if known.is_empty() {
        return None;
    }
    let top = known.iter().copied().fold(0.0, f64::max).max(1.0);
    let low = known.iter().copied().fold(f64::INFINITY, f64::min);
    let (ok, sum) = h.buckets.iter().flatten().fold((0u64, 0u64), |(n, s), b| {
        (n + u64::from(b.ok), s + b.sum_us)
    });
    let avg = sum as f64 / ok.max(1) as f64 / 1000.0;
    let mut lines = Vec::new();
    let mut cur = String::new();
    for (i, a) in avgs.iter().enumerate() {
        match a {
            Some(v) => {
                let y = SPARK_H - 1.0 - (v / top) * (SPARK_H - 2.0);
                if !cur.is_empty() {
                    cur.push(' ');
                }
                cur.push_str(&format!("{}.5,{y:.1}", i));
            }
            None if !cur.is_empty() => lines.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    // A lone point is drawn as a short flat line.
    for l in lines.iter_mut() {
        if !l.contains(' ') {
            let (x, y) = l.split_once(',').unwrap_or(("0", "0"));
            let x: f64 = x.parse().unwrap_or(0.0);
            *l = format!("{:.1},{y} {:.1},{y}", x - 0.4, x + 0.4);
        }
    }
    let ms = |v: f64| {
        if v < 10.0 {
            format!("{v:.1} ms")
        } else {
            format!("{v:.0} ms")
        }
    };
    Some(Spark {
        lines,
        width: BUCKETS,
        summary: format!(
            "Response time over the last 24 hours: {} on average; per quarter hour from {} to {}.",
            ms(avg),
            ms(low),
            ms(top)
        ),
    })
}

/// One entry of the `/history` page: an incident operators posted, or trouble detour's
/// checks (or a window, or an override) found.
#[derive(Debug, Clone, Serialize)]
pub struct PastIncident {
    /// "incident" (posted by operators) or "outage", "impacted", "maintenance" (found).
    pub kind: String,
    /// What its badge says.
    #[serde(skip)]
    pub badge: &'static str,
    /// Anchor.
    pub id: String,
    /// One line.
    pub title: String,
    /// Names of the services concerned.
    pub services: String,
    /// When it began.
    pub start: When,
    /// When it ended; none while it goes on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<When>,
    /// How long it lasted (so far).
    pub duration: String,
    /// Seconds.
    pub duration_s: i64,
    /// Its timeline, oldest first.
    pub timeline: Vec<Moment>,
    /// The badge class of its worst state.
    #[serde(skip)]
    pub class: &'static str,
    /// Its start, for sorting.
    #[serde(skip)]
    pub at: DateTime<Utc>,
}

/// One moment of a timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Moment {
    /// When.
    pub at: When,
    /// What happened.
    pub text: String,
}

/// Days the `/history` page looks back.
pub const PAST_DAYS: i64 = 90;

/// The incidents of the last [`PAST_DAYS`] days, newest first: every incident operators
/// opened, and every stretch of trouble found.
pub fn past(
    config: &Config,
    incidents: &Incidents,
    view: Option<&PageView>,
    now: DateTime<Utc>,
) -> Vec<PastIncident> {
    let clock = Clock::new(config, now);
    let since = now - chrono::Duration::days(PAST_DAYS);
    let name = |id: &str| {
        config
            .services
            .get(id)
            .map_or_else(|| id.to_string(), |s| s.name.clone())
    };
    let mut out = Vec::new();
    for i in &incidents.list {
        let end = i.resolved_at;
        if end.is_some_and(|e| e < since) {
            continue;
        }
        let names: Vec<String> = i.services.iter().map(|s| name(s)).collect();
        let last = end.unwrap_or(now);
        let secs = (last - i.opened_at).num_seconds().max(0);
        out.push(PastIncident {
            kind: "incident".into(),
            badge: "Incident",
            id: format!("incident-{}", i.id),
            title: i
                .updates
                .first()
                .map(|u| first_line(&u.message))
                .unwrap_or_default(),
            services: names.join(", "),
            start: clock.when(i.opened_at),
            end: end.map(|e| clock.when(e)),
            duration: crate::text::span(secs),
            duration_s: secs,
            timeline: i
                .updates
                .iter()
                .map(|u| Moment {
                    at: clock.when(u.at),
                    text: if u.status.is_empty() {
                        u.message.clone()
                    } else {
                        format!("{}: {}", capitalized(&u.status), u.message)
                    },
                })
                .collect(),
            class: if end.is_some() { "ok" } else { "down" },
            at: i.opened_at,
        });
    }
    if let Some(v) = view {
        for t in &v.trouble {
            out.push(found(t, &clock, &name));
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.at));
    out
}

fn found(t: &Trouble, clock: &Clock, name: &dyn Fn(&str) -> String) -> PastIncident {
    let start = timeline::utc(t.start);
    let secs = (t.end - t.start) / 1000;
    // A state without words of its own here (a new one) says its label.
    let (kind, what, badge) = match t.worst {
        ServiceState::Down => (
            "outage".to_string(),
            "unavailable".to_string(),
            "Unavailable",
        ),
        ServiceState::Impacted => (
            "impacted".into(),
            "reachable only by its direct link".into(),
            "Limited access",
        ),
        ServiceState::Maintenance => ("maintenance".into(), "in maintenance".into(), "Maintenance"),
        other => (
            other.to_string(),
            state_label(&other).to_lowercase(),
            state_label(&other),
        ),
    };
    let n = name(&t.service);
    PastIncident {
        kind,
        badge,
        id: format!("{}-{}", t.service, t.start),
        title: format!("{n} {what}"),
        services: n.clone(),
        start: clock.when(start),
        end: (!t.ongoing).then(|| clock.when(timeline::utc(t.end))),
        duration: crate::text::span(secs),
        duration_s: secs,
        timeline: t
            .changes
            .iter()
            .map(|c| Moment {
                at: clock.when(timeline::utc(c.at)),
                text: if c.reason.is_empty() {
                    state_label(&c.to).to_string()
                } else {
                    format!("{}: {}", state_label(&c.to), c.reason)
                },
            })
            .collect(),
        class: state_class(&t.worst),
        at: start,
    }
}

fn first_line(s: &str) -> String {
    let l = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if l.chars().count() > 120 {
        format!("{}…", l.chars().take(119).collect::<String>())
    } else {
        l.to_string()
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// `/status/history.json`: the same facts as the pages, for anyone (no operator names).
#[derive(Debug, Clone, Serialize)]
pub struct HistoryJson {
    /// When the history view was computed.
    pub generated_at: DateTime<Utc>,
    /// The zone days are counted in.
    pub timezone: String,
    /// Every service, in id order.
    pub services: Vec<ServiceJson>,
    /// The incidents of the last 90 days, newest first.
    pub incidents: Vec<PastIncident>,
}

/// The public JSON document.
pub fn json(
    config: &Config,
    incidents: &Incidents,
    v: &PageView,
    now: DateTime<Utc>,
) -> HistoryJson {
    HistoryJson {
        generated_at: timeline::utc(v.built),
        timezone: config
            .page
            .timezone
            .map_or_else(|| "local".to_string(), |t| t.name().to_string()),
        services: config
            .services
            .values()
            .filter_map(|s| {
                v.services
                    .get(&s.id)
                    .map(|h| h.json(&s.id, &s.name, v.built))
            })
            .collect(),
        incidents: past(config, incidents, Some(v), now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Bucket;

    #[test]
    fn day_bars_follow_the_page_zone_across_a_clock_change() {
        use crate::history::db::TransitionRow;
        use crate::history::timeline::{Run, Zone};
        use std::collections::HashMap;
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
        // [page] timezone = "America/New_York": clocks go back at 02:00 EDT on 1 Nov 2026.
        let zone = Zone::Named("America/New_York".parse().unwrap());
        let now = at("2026-11-02T12:00:00-05:00");
        let runs = [Run {
            id: 1,
            start: at("2026-10-01T00:00:00-04:00"),
            end: now,
        }];
        let t = |when: &str, to| TransitionRow {
            run: 1,
            at: at(when),
            service: "mls".into(),
            from: None,
            to,
            reason: String::new(),
        };
        // Down from 23:00 EDT on Saturday to 01:30 EST on Sunday: 1 hour on Saturday, 2.5
        // on Sunday (midnight to 01:30 EST, the repeated hour included).
        let transitions = [
            t("2026-10-01T00:00:00-04:00", ServiceState::Up),
            t("2026-10-31T23:00:00-04:00", ServiceState::Down),
            t("2026-11-01T01:30:00-05:00", ServiceState::Up),
        ];
        let v = crate::history::view::build(
            &runs,
            &transitions,
            &HashMap::new(),
            &["mls".to_string()],
            zone,
            now,
        );
        let h = &v.services["mls"];
        let r = row(h, v.today.unwrap());
        let last: Vec<(&str, &str)> = r.days[87..]
            .iter()
            .map(|d| (d.class, d.title.as_str()))
            .collect();
        assert_eq!(
            last,
            [
                ("down", "Sat 31 Oct: down 1 h"),
                ("down", "Sun 1 Nov: down 2 h 30 min"),
                ("ok", "Mon 2 Nov: no problems"),
            ]
        );
        let j = h.json("mls", "MLS", v.built);
        assert_eq!(j.days[88].known_s, 25 * 3600, "Sunday has 25 hours");
        assert_eq!(j.days[88].seconds["down"], 9000);
        assert_eq!(j.days[89].known_s, 12 * 3600, "today, to noon");
        // Before the run: no data.
        assert_eq!(r.days[0].class, "none");
        assert_eq!(r.days[0].title, "Wed 5 Aug: no data");
        assert!(
            r.summary
                .starts_with("Last 90 days: 2 days with downtime; "),
            "{}",
            r.summary
        );
        assert_eq!(
            r.trouble_days,
            ["Sun 1 Nov: down 2 h 30 min", "Sat 31 Oct: down 1 h"]
        );
    }

    #[test]
    fn days_are_said_in_words() {
        let mut t = Totals::default();
        assert_eq!(day_words(&t), "no data");
        t.add(ServiceState::Up, 3_600_000);
        assert_eq!(day_words(&t), "no problems");
        t.add(ServiceState::Down, 12 * 60_000);
        t.add(ServiceState::Maintenance, 125 * 60_000);
        assert_eq!(day_words(&t), "down 12 min, maintenance 2 h 5 min");
        assert_eq!(minutes(30_000), "under a minute");
    }

    #[test]
    fn a_sparkline_breaks_where_no_probe_passed() {
        let b = |ms: u64| {
            Some(Bucket {
                ok: 1,
                sum_us: ms * 1000,
                max_us: (ms * 1000) as u32,
            })
        };
        let mut buckets = vec![None; BUCKETS];
        buckets[0] = b(10);
        buckets[1] = b(20);
        buckets[5] = b(40);
        let h = ServiceHistory {
            buckets,
            ..Default::default()
        };
        let s = spark(&h).unwrap();
        assert_eq!(s.lines.len(), 2, "{:?}", s.lines);
        assert_eq!(s.lines[0], "0.5,22.0 1.5,15.0");
        assert!(s.lines[1].starts_with("5.1,1.0 5.9,1.0"), "{:?}", s.lines);
        assert!(s.summary.contains("from 10 ms to 40 ms"), "{}", s.summary);
        assert!(spark(&ServiceHistory::default()).is_none());
    }
}
