//! What the status page and `/status/history.json` show of the history, computed by the
//! history thread whenever it changes (a transition, each minute, a reload) and read by the
//! page without a lock: per service 90 day bars, availability over 30 and 90 days, 24 hours
//! of response times; and the stretches of trouble of the last 90 days.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::Serialize;

use super::Bucket;
use super::db::TransitionRow;
use super::timeline::{self, Change, Day, Ms, Run, Span, Totals, Zone};
use crate::health::ServiceState;

/// Days the status page shows.
pub const DAYS: u32 = 90;
/// Width of one response-time bucket.
pub const BUCKET_MS: Ms = 15 * 60_000;
/// Buckets in the 24-hour sparkline.
pub const BUCKETS: usize = 96;

/// One service's history as the page shows it.
#[derive(Debug, Clone, Default)]
pub struct ServiceHistory {
    /// The last [`DAYS`] days in the page's zone, oldest first, today last.
    pub days: Vec<Day>,
    /// Availability over the last 30 days (today included).
    pub availability_30: Option<f64>,
    /// Over the last 90.
    pub availability_90: Option<f64>,
    /// Passing probes' latency per 15 minutes over the last 24 hours, oldest first (`None`:
    /// no passing probe in that quarter hour).
    pub buckets: Vec<Option<Bucket>>,
}

/// A stretch of trouble: a service not up (down, impacted or in maintenance), with the
/// changes that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Trouble {
    /// Service id.
    pub service: String,
    /// When it began.
    pub start: Ms,
    /// When it ended (now, when ongoing).
    pub end: Ms,
    /// Not over yet.
    pub ongoing: bool,
    /// The worst state in it.
    pub worst: ServiceState,
    /// Time in each state in it.
    pub totals: Totals,
    /// The state changes from its start to its end, oldest first.
    pub changes: Vec<TransitionRow>,
}

/// Everything the page shows of the history.
#[derive(Debug, Clone, Default)]
pub struct PageView {
    /// Goes up with every rebuild: the page's cache key.
    pub version: u64,
    /// When it was computed.
    pub built: Ms,
    /// Today's date in the page's zone.
    pub today: Option<NaiveDate>,
    /// Per service id.
    pub services: HashMap<String, ServiceHistory>,
    /// Trouble of the last 90 days, newest first.
    pub trouble: Vec<Trouble>,
}

/// The page's view of `transitions` (sorted by time) in `runs` (the one in progress ending
/// at `now`), for `services`, in `zone`.
pub fn build(
    runs: &[Run],
    transitions: &[TransitionRow],
    buckets: &HashMap<String, BTreeMap<i64, Bucket>>,
    services: &[String],
    zone: Zone,
    now: Ms,
) -> PageView {
    let mut per: HashMap<&str, Vec<Change<ServiceState>>> = HashMap::new();
    let mut rows: HashMap<&str, Vec<&TransitionRow>> = HashMap::new();
    for t in transitions {
        per.entry(t.service.as_str()).or_default().push(Change {
            run: t.run,
            at: t.at,
            value: t.to,
        });
        rows.entry(t.service.as_str()).or_default().push(t);
    }
    let bounds = timeline::bounds(zone, now, DAYS);
    let first_bucket = now.div_euclid(BUCKET_MS) - BUCKETS as i64 + 1;
    let mut out = PageView {
        built: now,
        today: Some(zone.date(now)),
        ..PageView::default()
    };
    for id in services {
        let changes = per.get(id.as_str()).map_or(&[][..], |v| v.as_slice());
        // A day more than the bars, for a zone's offset.
        let from = now - i64::from(DAYS + 1) * timeline::DAY_MS;
        let spans = timeline::spans(runs, changes, from, now);
        let days = timeline::days_in(&spans, &bounds, now);
        let sum = |n: usize| {
            let mut t = Totals::default();
            for d in days.iter().rev().take(n) {
                for (s, ms) in &d.totals.by_state {
                    t.add(*s, *ms);
                }
            }
            t.availability()
        };
        let mine = buckets.get(id);
        let b = (0..BUCKETS as i64)
            .map(|i| mine.and_then(|m| m.get(&(first_bucket + i)).copied()))
            .collect();
        let start = days.first().map_or(now, |d| d.start);
        for p in timeline::periods(&spans, |s| s != ServiceState::Up, now) {
            if p.end <= start {
                continue;
            }
            let mine = rows.get(id.as_str()).map_or(&[][..], |v| v.as_slice());
            out.trouble.push(trouble(id, &p, mine));
        }
        out.services.insert(
            id.clone(),
            ServiceHistory {
                availability_30: sum(30),
                availability_90: sum(DAYS as usize),
                days,
                buckets: b,
            },
        );
    }
    out.trouble
        .sort_by(|a, b| b.start.cmp(&a.start).then(a.service.cmp(&b.service)));
    out
}

fn trouble(id: &str, p: &timeline::Period<ServiceState>, mine: &[&TransitionRow]) -> Trouble {
    let mut totals = Totals::default();
    for s in &p.spans {
        totals.add(s.value, s.len());
    }
    let changes = mine
        .iter()
        .filter(|t| t.at >= p.start && t.at <= p.end)
        .filter(|t| !p.ongoing || t.at < p.end || t.to != ServiceState::Up)
        .map(|t| (*t).clone())
        .collect();
    Trouble {
        service: id.to_string(),
        start: p.start,
        end: p.end,
        ongoing: p.ongoing,
        worst: totals.worst().unwrap_or(ServiceState::Down),
        totals,
        changes,
    }
}

/// The public JSON of one service (`/status/history.json`).
#[derive(Debug, Clone, Serialize)]
pub struct ServiceJson {
    /// Service id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Availability over 30 days, 0 to 1 (null: no data).
    pub availability_30d: Option<f64>,
    /// Over 90 days.
    pub availability_90d: Option<f64>,
    /// One entry per day, oldest first.
    pub days: Vec<DayJson>,
    /// Response times per 15 minutes over 24 hours, oldest first.
    pub response_times: Vec<BucketJson>,
}

/// One day, in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct DayJson {
    /// The date in the page's zone.
    pub date: NaiveDate,
    /// Its worst state; null without data.
    pub worst: Option<ServiceState>,
    /// Seconds with data.
    pub known_s: i64,
    /// Seconds in each state that occurred.
    pub seconds: BTreeMap<String, i64>,
}

/// One response-time bucket, in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct BucketJson {
    /// Its start.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Passing probes in it.
    pub probes: u32,
    /// Their average latency (ms).
    pub avg_ms: Option<f64>,
    /// The slowest (ms).
    pub max_ms: Option<f64>,
}

impl ServiceHistory {
    /// This history in JSON, for service `id` called `name`; `built` is the view's time.
    pub fn json(&self, id: &str, name: &str, built: Ms) -> ServiceJson {
        let first = built.div_euclid(BUCKET_MS) - BUCKETS as i64 + 1;
        ServiceJson {
            id: id.to_string(),
            name: name.to_string(),
            availability_30d: self.availability_30,
            availability_90d: self.availability_90,
            days: self
                .days
                .iter()
                .map(|d| DayJson {
                    date: d.date,
                    worst: d.totals.worst(),
                    known_s: d.totals.known / 1000,
                    seconds: d
                        .totals
                        .by_state
                        .iter()
                        .map(|(s, ms)| (s.to_string(), ms / 1000))
                        .collect(),
                })
                .collect(),
            response_times: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, b)| BucketJson {
                    at: timeline::utc((first + i as i64) * BUCKET_MS),
                    probes: b.map_or(0, |b| b.ok),
                    avg_ms: b.map(|b| b.avg_ms()),
                    max_ms: b.map(|b| f64::from(b.max_us) / 1000.0),
                })
                .collect(),
        }
    }
}

/// Spans of a service, for tests and the report.
pub fn spans_of(
    runs: &[Run],
    transitions: &[TransitionRow],
    service: &str,
    from: Ms,
    to: Ms,
) -> Vec<Span<ServiceState>> {
    let changes: Vec<Change<ServiceState>> = transitions
        .iter()
        .filter(|t| t.service == service)
        .map(|t| Change {
            run: t.run,
            at: t.at,
            value: t.to,
        })
        .collect();
    timeline::spans(runs, &changes, from, to)
}
