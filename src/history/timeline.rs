//! Pure arithmetic over recorded history (no I/O, time is an argument): how long each value
//! (a service state, what its records answered) held, split into the days of a time zone,
//! the stretches of trouble, and availability.
//!
//! A value holds from its change until the next change of the same run, or until the run
//! ends (detour stopped, or was last seen alive). Time outside every run is *no data*: it
//! counts neither for nor against a service.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Days, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::health::ServiceState;

/// Milliseconds since the Unix epoch.
pub type Ms = i64;

/// One day in milliseconds (days in a time zone may be 23 or 25 hours: see [`days`]).
pub const DAY_MS: Ms = 86_400_000;

/// One run of detour: from its start until it stopped, or was last seen alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Run {
    /// Row id (transitions name their run).
    pub id: i64,
    /// When it started.
    pub start: Ms,
    /// When it stopped, was last seen alive, or now for the run in progress.
    pub end: Ms,
}

/// A value that took effect at `at` during run `run`.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<V> {
    /// The run it happened in.
    pub run: i64,
    /// When.
    pub at: Ms,
    /// The new value.
    pub value: V,
}

/// A stretch of time during which `value` held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span<V> {
    /// Start (inclusive).
    pub start: Ms,
    /// End (exclusive).
    pub end: Ms,
    /// What held.
    pub value: V,
}

impl<V> Span<V> {
    /// Its length.
    pub fn len(&self) -> Ms {
        self.end - self.start
    }

    /// True when it has no length.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// The spans of one series of changes (sorted by time) within `[from, to)`.
pub fn spans<V: Copy>(runs: &[Run], changes: &[Change<V>], from: Ms, to: Ms) -> Vec<Span<V>> {
    let ends: HashMap<i64, Ms> = runs.iter().map(|r| (r.id, r.end)).collect();
    let mut out = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        let Some(&run_end) = ends.get(&c.run) else {
            continue;
        };
        let next = changes
            .get(i + 1)
            .filter(|n| n.run == c.run)
            .map_or(run_end, |n| n.at.min(run_end));
        let (start, end) = (c.at.max(from), next.min(to));
        if start < end {
            out.push(Span {
                start,
                end,
                value: c.value,
            });
        }
    }
    out
}

/// How bad a state is, for the colour of a day and the order of the legend: the worst
/// state of a day wins. Every state is ranked here and nowhere else; a new state (say
/// `degraded`, between up and maintenance) is one more arm.
pub fn rank(s: ServiceState) -> u8 {
    match s {
        ServiceState::Up => 1,
        ServiceState::Degraded => 2,
        ServiceState::Maintenance => 3,
        ServiceState::Impacted => 4,
        ServiceState::Down => 5,
    }
}

/// Every state, best first (the order of [`rank`]); a new state is added here too.
pub fn states_by_rank() -> Vec<ServiceState> {
    let mut all = vec![
        ServiceState::Up,
        ServiceState::Down,
        ServiceState::Impacted,
        ServiceState::Maintenance,
        ServiceState::Degraded,
    ];
    all.sort_by_key(|s| rank(*s));
    all
}

/// True when time in `s` counts against availability: the service could not be used and
/// nobody had planned it (maintenance is left out of the count altogether).
pub fn counts_as_down(s: ServiceState) -> bool {
    !s.usable() && s != ServiceState::Maintenance
}

/// Time per state over some stretch, and the time with any data at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Time with data.
    pub known: Ms,
    /// Time in each state that occurred (no zero entries), in no particular order.
    pub by_state: Vec<(ServiceState, Ms)>,
}

impl Totals {
    /// Adds `ms` in state `s`.
    pub fn add(&mut self, s: ServiceState, ms: Ms) {
        if ms <= 0 {
            return;
        }
        self.known += ms;
        match self.by_state.iter_mut().find(|(x, _)| *x == s) {
            Some((_, t)) => *t += ms,
            None => self.by_state.push((s, ms)),
        }
    }

    /// Time in `s`.
    pub fn of(&self, s: ServiceState) -> Ms {
        self.by_state
            .iter()
            .find(|(x, _)| *x == s)
            .map_or(0, |(_, t)| *t)
    }

    /// The worst state that occurred ([`rank`]), none without data.
    pub fn worst(&self) -> Option<ServiceState> {
        self.by_state
            .iter()
            .map(|(s, _)| *s)
            .max_by_key(|s| rank(*s))
    }

    /// Time counted against availability ([`counts_as_down`]).
    pub fn down(&self) -> Ms {
        self.by_state
            .iter()
            .filter(|(s, _)| counts_as_down(*s))
            .map(|(_, t)| *t)
            .sum()
    }

    /// Availability: the share of the time with data, maintenance left out, during which
    /// the service could be used; `None` when there is no such time.
    pub fn availability(&self) -> Option<f64> {
        let base = self.known - self.of(ServiceState::Maintenance);
        (base > 0).then(|| (base - self.down()) as f64 / base as f64)
    }

    /// Adds every span of `spans` that falls in `[from, to)`.
    pub fn of_spans(spans: &[Span<ServiceState>], from: Ms, to: Ms) -> Self {
        let mut t = Totals::default();
        for s in spans {
            let (a, b) = (s.start.max(from), s.end.min(to));
            if a < b {
                t.add(s.value, b - a);
            }
        }
        t
    }
}

/// Availability as people read it: two decimals, rounded down so that a service that was
/// down at all never shows "100%" ("99.99%" at most); `None` is "no data".
pub fn percent(a: Option<f64>) -> String {
    match a {
        None => "no data".into(),
        Some(a) if a >= 1.0 => "100%".into(),
        Some(a) => {
            let hundredths = ((a * 10_000.0).floor() as i64).min(9_999);
            format!("{}.{:02}%", hundredths / 100, hundredths % 100)
        }
    }
}

/// A time zone as `[page] timezone` gives it: a named zone, or the process's own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// An IANA zone.
    Named(Tz),
    /// The process's local zone (`TZ`).
    Local,
}

impl Zone {
    /// `[page] timezone` (`None`: the process's).
    pub fn of(tz: Option<Tz>) -> Self {
        tz.map_or(Zone::Local, Zone::Named)
    }

    /// The calendar date at `t` in this zone.
    pub fn date(self, t: Ms) -> NaiveDate {
        let t = DateTime::<Utc>::from_timestamp_millis(t).unwrap_or_default();
        match self {
            Zone::Named(tz) => t.with_timezone(&tz).date_naive(),
            Zone::Local => t.with_timezone(&Local).date_naive(),
        }
    }

    /// `t` formatted in this zone (`%Z`: the zone's abbreviation, or its offset).
    pub fn format(self, t: Ms, pattern: &str) -> String {
        let t = DateTime::<Utc>::from_timestamp_millis(t).unwrap_or_default();
        match self {
            Zone::Named(tz) => t.with_timezone(&tz).format(pattern).to_string(),
            Zone::Local => t
                .with_timezone(&Local)
                .format(&pattern.replace("%Z", "UTC%:z"))
                .to_string(),
        }
    }

    /// The first moment of `date` in this zone: its midnight, or where a clock change skips
    /// midnight, the first minute that exists.
    pub fn start_of(self, date: NaiveDate) -> Ms {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        for minutes in 0..=(26 * 60) {
            let local = midnight + chrono::Duration::minutes(minutes);
            if let Some(t) = self.earliest(local) {
                return t;
            }
        }
        // No zone skips a whole day's first 26 hours; this only keeps the function total.
        midnight.and_utc().timestamp_millis()
    }

    fn earliest(self, local: NaiveDateTime) -> Option<Ms> {
        match self {
            Zone::Named(tz) => tz
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.timestamp_millis()),
            Zone::Local => Local
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.timestamp_millis()),
        }
    }
}

/// One calendar day in a zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    /// The date.
    pub date: NaiveDate,
    /// Its first moment.
    pub start: Ms,
    /// The next day's first moment (23, 24 or 25 hours later).
    pub end: Ms,
    /// What happened in it (up to `now` for today).
    pub totals: Totals,
}

/// The last `n` days in `zone` up to and including the day of `now`, oldest first, with
/// the time each state held in each (today counted up to `now`).
pub fn days(spans: &[Span<ServiceState>], zone: Zone, now: Ms, n: u32) -> Vec<Day> {
    days_in(spans, &bounds(zone, now, n), now)
}

/// The dates and limits of the last `n` days in `zone` (the day of `now` last): computed
/// once for every service.
pub fn bounds(zone: Zone, now: Ms, n: u32) -> Vec<(NaiveDate, Ms, Ms)> {
    let today = zone.date(now);
    let mut out = Vec::with_capacity(n as usize);
    for back in (0..n).rev() {
        let Some(date) = today.checked_sub_days(Days::new(u64::from(back))) else {
            continue;
        };
        let start = zone.start_of(date);
        let end = date
            .checked_add_days(Days::new(1))
            .map_or(start + DAY_MS, |d| zone.start_of(d));
        out.push((date, start, end));
    }
    out
}

/// [`days`] over days already bounded ([`bounds`]).
pub fn days_in(spans: &[Span<ServiceState>], bounds: &[(NaiveDate, Ms, Ms)], now: Ms) -> Vec<Day> {
    bounds
        .iter()
        .map(|&(date, start, end)| Day {
            date,
            start,
            end,
            totals: Totals::of_spans(spans, start, end.min(now)),
        })
        .collect()
}

/// A stretch during which a value kept matching (a service not up, a record answering
/// with its backup), with what happened inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Period<V> {
    /// When it began.
    pub start: Ms,
    /// When it ended (or the end of what was looked at).
    pub end: Ms,
    /// Still going on at the end of what was looked at.
    pub ongoing: bool,
    /// The spans it is made of (gaps without data between them are inside the period).
    pub spans: Vec<Span<V>>,
}

impl<V> Period<V> {
    /// How long it lasted (gaps without data included).
    pub fn len(&self) -> Ms {
        self.end - self.start
    }

    /// True when it has no length.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// The periods of `spans` whose values match `bad`: consecutive matching spans form one
/// period, also across a gap without data (detour restarted during an outage); a span that
/// does not match ends it. `last_known` is the end of the data looked at: a period reaching
/// it is ongoing.
pub fn periods<V: Copy>(
    spans: &[Span<V>],
    bad: impl Fn(V) -> bool,
    last_known: Ms,
) -> Vec<Period<V>> {
    let mut out: Vec<Period<V>> = Vec::new();
    let mut open = false;
    for s in spans {
        if !bad(s.value) {
            open = false;
            continue;
        }
        match out.last_mut() {
            Some(p) if open => {
                p.end = s.end;
                p.spans.push(*s);
            }
            _ => {
                out.push(Period {
                    start: s.start,
                    end: s.end,
                    ongoing: false,
                    spans: vec![*s],
                });
                open = true;
            }
        }
    }
    if let Some(p) = out.last_mut()
        && open
        && p.end >= last_known
    {
        p.ongoing = true;
    }
    out
}

/// The median of `v` (the lower middle for an even count), `None` when empty.
pub fn median(v: &mut [Ms]) -> Option<Ms> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[(v.len() - 1) / 2])
}

/// `t` as a date-time, for JSON.
pub fn utc(t: Ms) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(t).unwrap_or_default()
}

/// A day's date as "Tue 3 Dec", with the year when it is not the year of `now`'s date.
pub fn short_date(d: NaiveDate, today: NaiveDate) -> String {
    if d.year() == today.year() {
        d.format("%a %-d %b").to_string()
    } else {
        d.format("%a %-d %b %Y").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceState::*;

    fn ms(s: &str) -> Ms {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    const H: Ms = 3_600_000;

    #[test]
    fn a_value_holds_until_the_next_change_or_the_end_of_its_run() {
        let runs = [
            Run {
                id: 1,
                start: 0,
                end: 10 * H,
            },
            Run {
                id: 2,
                start: 12 * H,
                end: 20 * H,
            },
        ];
        let c = |run, at, value| Change { run, at, value };
        let changes = [
            c(1, 0, Up),
            c(1, 4 * H, Down),
            c(2, 12 * H, Down),
            c(2, 15 * H, Up),
        ];
        let s = spans(&runs, &changes, 0, 24 * H);
        assert_eq!(
            s.iter()
                .map(|s| (s.start / H, s.end / H, s.value))
                .collect::<Vec<_>>(),
            vec![(0, 4, Up), (4, 10, Down), (12, 15, Down), (15, 20, Up)]
        );
        // Clipped to what is asked.
        let s = spans(&runs, &changes, 5 * H, 13 * H);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].start, s[0].end), (5 * H, 10 * H));
        assert_eq!((s[1].start, s[1].end), (12 * H, 13 * H));
        // The outage goes on across the restart: one period, ongoing when data ends in it.
        let all = spans(&runs, &changes, 0, 24 * H);
        let p = periods(&all, |v| v != Up, 20 * H);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].start, p[0].end, p[0].ongoing), (4 * H, 15 * H, false));
        let p = periods(&all[..3], |v| v != Up, 15 * H);
        assert!(p[0].ongoing);
        let t = Totals::of_spans(&all, 0, 24 * H);
        assert_eq!(t.known, 18 * H);
        assert_eq!(t.down(), 9 * H);
        assert_eq!(t.worst(), Some(Down));
    }

    #[test]
    fn maintenance_is_left_out_and_impacted_counts_as_available() {
        let mut t = Totals::default();
        t.add(Up, 70);
        t.add(Impacted, 10);
        t.add(Maintenance, 100);
        t.add(Down, 20);
        assert_eq!(t.availability(), Some(0.8));
        assert_eq!(t.worst(), Some(Down));
        assert_eq!(Totals::default().availability(), None);
        assert_eq!(percent(Some(0.999_99)), "99.99%");
        assert_eq!(percent(Some(1.0)), "100%");
        assert_eq!(percent(Some(0.5)), "50.00%");
        assert_eq!(percent(Some(0.123_456)), "12.34%");
        assert_eq!(percent(None), "no data");
        // Best first, the legend's order: up, degraded (slow), maintenance, impacted, down.
        assert_eq!(
            states_by_rank(),
            vec![Up, Degraded, Maintenance, Impacted, Down]
        );
        // Slow is available time.
        let mut slow = Totals::default();
        slow.add(Degraded, 50);
        slow.add(Up, 50);
        assert_eq!(slow.availability(), Some(1.0));
    }

    #[test]
    fn days_follow_the_zone_across_a_clock_change() {
        let ny = Zone::Named("America/New_York".parse().unwrap());
        // 2026-11-01: clocks go back at 02:00 EDT, the day has 25 hours.
        let now = ms("2026-11-02T12:00:00-05:00");
        let runs = [Run {
            id: 1,
            start: ms("2026-10-30T00:00:00-04:00"),
            end: now,
        }];
        let c = |at: &str, value| Change {
            run: 1,
            at: ms(at),
            value,
        };
        // Down from 23:00 EDT on 31 Oct to 01:30 EST on 1 Nov (that is 3.5 hours, the
        // repeated hour included), then up.
        let changes = [
            c("2026-10-30T00:00:00-04:00", Up),
            c("2026-10-31T23:00:00-04:00", Down),
            c("2026-11-01T01:30:00-05:00", Up),
        ];
        let s = spans(&runs, &changes, 0, now);
        let d = days(&s, ny, now, 4);
        let dates: Vec<String> = d.iter().map(|d| d.date.to_string()).collect();
        assert_eq!(
            dates,
            ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"]
        );
        assert_eq!(d[1].end - d[1].start, 24 * H);
        assert_eq!(d[2].end - d[2].start, 25 * H, "the day clocks go back");
        assert_eq!(d[1].totals.of(Down), H, "23:00 to midnight");
        assert_eq!(d[2].totals.of(Down), 5 * H / 2, "midnight to 01:30 EST");
        assert_eq!(d[2].totals.known, 25 * H);
        assert_eq!(d[3].totals.known, 12 * H, "today up to now");
        assert_eq!(d[0].totals.worst(), Some(Up));
        assert_eq!(d[2].totals.worst(), Some(Down));
        // Spring forward: 8 March 2026 has 23 hours.
        let spring = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        let next = NaiveDate::from_ymd_opt(2026, 3, 9).unwrap();
        assert_eq!(ny.start_of(next) - ny.start_of(spring), 23 * H);
    }

    #[test]
    fn a_zone_that_skips_midnight_starts_its_day_at_the_first_minute_that_exists() {
        // Santiago moved its clocks from 00:00 to 01:00 on 7 September 2025.
        let cl = Zone::Named("America/Santiago".parse().unwrap());
        let d = NaiveDate::from_ymd_opt(2025, 9, 7).unwrap();
        assert_eq!(cl.start_of(d), ms("2025-09-07T01:00:00-03:00"));
    }

    #[test]
    fn medians_and_dates() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [5, 1, 3]), Some(3));
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(2));
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        assert_eq!(short_date(today, today), "Thu 3 Dec");
        let last_year = NaiveDate::from_ymd_opt(2025, 12, 3).unwrap();
        assert_eq!(short_date(last_year, today), "Wed 3 Dec 2025");
    }
}
