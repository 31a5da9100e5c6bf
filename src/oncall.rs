//! Who is on call: the `[oncall]` rotation, its dated exceptions, and whom an unanswered page
//! escalates to.
//!
//! The rotation is counted in wall-clock time of `[page] timezone`: shift `k` starts at the
//! `k`-th hand-off after the first one on or after `start` (a `handoff = "Mon 09:00"` stays
//! at 09:00 local across daylight-saving changes), and belongs to `people[k mod n]`. A dated
//! exception puts its person on call from `from` to `to`, whatever the rotation says; where
//! exceptions overlap, the one listed first wins.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;
use serde::Serialize;

/// The first day of the rotation when `start` is not set: a Monday.
pub const DEFAULT_START: NaiveDate = match NaiveDate::from_ymd_opt(2024, 1, 1) {
    Some(d) => d,
    None => panic!("2024-01-01 is a date"),
};

/// How many escalation steps a page has: the person on call, the next one, everyone.
pub const LEVELS: u8 = 3;

/// One person of the rotation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Person {
    /// Name, as shown and as exceptions and acknowledgements refer to it.
    pub name: String,
    /// E.164 phone number for text messages (`+15555550101`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Email address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A dated exception: `person` is on call from `from` until `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exception {
    /// Index into `people`.
    pub person: usize,
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
}

/// When shifts change hands: a time of day, on one weekday or every day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// The weekday of the hand-off (`None`: any day, for daily or shorter-than-a-week shifts).
    pub weekday: Option<Weekday>,
    /// Local time of day.
    pub time: NaiveTime,
}

impl Handoff {
    /// Parses `"Mon 09:00"`, `"monday 9:00"` or `"09:00"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid handoff {s:?}: expected a weekday and a time such as \"Mon 09:00\", or a time such as \"09:00\""
            )
        };
        let mut parts = s.split_whitespace();
        let (day, time) = match (parts.next(), parts.next(), parts.next()) {
            (Some(t), None, None) => (None, t),
            (Some(d), Some(t), None) => (Some(d), t),
            _ => return Err(bad()),
        };
        let weekday = match day {
            None => None,
            Some(d) => Some(d.parse::<Weekday>().map_err(|_| bad())?),
        };
        let time = NaiveTime::parse_from_str(time, "%H:%M").map_err(|_| bad())?;
        Ok(Self { weekday, time })
    }
}

impl std::fmt::Display for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.weekday {
            Some(d) => write!(f, "{d} {}", self.time.format("%H:%M")),
            None => write!(f, "{}", self.time.format("%H:%M")),
        }
    }
}

/// `[oncall]`: the rotation.
#[derive(Debug, Clone, PartialEq)]
pub struct OnCall {
    /// When shifts change hands.
    pub handoff: Handoff,
    /// How long one shift lasts (in local wall-clock time).
    pub length: Duration,
    /// The day the first person's first shift starts (at the first hand-off on or after it).
    pub start: NaiveDate,
    /// An unacknowledged page goes to the next level after this.
    pub escalate_after: std::time::Duration,
    /// The people, in rotation order.
    pub people: Vec<Person>,
    /// Dated exceptions, in the order written.
    pub exceptions: Vec<Exception>,
}

/// One stretch of time with one person on call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shift {
    /// Index into `people`.
    #[serde(skip)]
    pub person: usize,
    /// The person's name.
    pub name: String,
    /// When it started.
    pub from: DateTime<Utc>,
    /// When it ends.
    pub until: DateTime<Utc>,
    /// True when a dated exception, not the rotation, put this person here.
    pub exception: bool,
}

/// `zone`'s wall-clock reading of `t` (the process's local zone when `None`).
pub fn local(t: DateTime<Utc>, zone: Option<Tz>) -> NaiveDateTime {
    match zone {
        Some(z) => t.with_timezone(&z).naive_local(),
        None => t.with_timezone(&chrono::Local).naive_local(),
    }
}

/// The moment `zone`'s clocks read `n`: the earlier of two in a repeated hour, the first
/// moment after a skipped hour.
pub fn instant(n: NaiveDateTime, zone: Option<Tz>) -> DateTime<Utc> {
    fn pick<T: TimeZone>(z: &T, n: NaiveDateTime) -> DateTime<Utc> {
        match z.from_local_datetime(&n) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
            LocalResult::None => {
                // A skipped hour (spring forward): walk forward minute by minute to the
                // first reading that exists (at most a few hours anywhere on earth).
                let mut m = n;
                for _ in 0..(24 * 60) {
                    m += Duration::minutes(1);
                    if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) =
                        z.from_local_datetime(&m)
                    {
                        return t.with_timezone(&Utc);
                    }
                }
                Utc.from_utc_datetime(&n)
            }
        }
    }
    match zone {
        Some(z) => pick(&z, n),
        None => pick(&chrono::Local, n),
    }
}

impl OnCall {
    /// The first hand-off of the rotation, in local wall-clock time.
    fn anchor(&self) -> NaiveDateTime {
        let mut day = self.start;
        if let Some(w) = self.handoff.weekday {
            while day.weekday() != w {
                day = day.succ_opt().unwrap_or(day);
            }
        }
        day.and_time(self.handoff.time)
    }

    /// The rotation's shift number at local time `n` (negative before the first hand-off).
    fn shift_number(&self, n: NaiveDateTime) -> i64 {
        let len = self.length.num_seconds().max(1);
        (n - self.anchor()).num_seconds().div_euclid(len)
    }

    /// The rotation's shift `k`: its person and its local bounds.
    fn rotation_shift(&self, k: i64) -> (usize, NaiveDateTime, NaiveDateTime) {
        let n = i64::try_from(self.people.len().max(1)).unwrap_or(1);
        let person = usize::try_from(k.rem_euclid(n)).unwrap_or(0);
        let from = self.anchor() + Duration::seconds(self.length.num_seconds().max(1) * k);
        (person, from, from + self.length)
    }

    /// Who is on call at `t`, and from when until when.
    pub fn at(&self, t: DateTime<Utc>, zone: Option<Tz>) -> Shift {
        if let Some(e) = self.exceptions.iter().find(|e| e.from <= t && t < e.to) {
            return Shift {
                person: e.person,
                name: self.name(e.person),
                from: e.from,
                until: e.to,
                exception: true,
            };
        }
        let (person, from, to) = self.rotation_shift(self.shift_number(local(t, zone)));
        let mut from = instant(from, zone);
        let mut until = instant(to, zone);
        // An exception that ends inside the shift starts it late; one that starts inside
        // it ends it early.
        for e in &self.exceptions {
            if e.to <= t && e.to > from {
                from = e.to;
            }
            if e.from > t && e.from < until {
                until = e.from;
            }
        }
        Shift {
            person,
            name: self.name(person),
            from,
            until,
            exception: false,
        }
    }

    /// The shift after the one at `t`.
    pub fn next(&self, t: DateTime<Utc>, zone: Option<Tz>) -> Shift {
        self.at(self.at(t, zone).until, zone)
    }

    fn name(&self, i: usize) -> String {
        self.people
            .get(i)
            .map_or_else(String::new, |p| p.name.clone())
    }

    /// Whom a page raised at `t` reaches at escalation `level`: 0 the person on call, 1 the
    /// next person in the rotation's order, 2 and beyond everyone.
    pub fn escalation(&self, t: DateTime<Utc>, zone: Option<Tz>, level: u8) -> Vec<&Person> {
        let now = self.at(t, zone).person;
        match level {
            0 => self.people.get(now).into_iter().collect(),
            1 if self.people.len() > 1 => self
                .people
                .get((now + 1) % self.people.len())
                .into_iter()
                .collect(),
            _ => self.people.iter().collect(),
        }
    }

    /// The person named `name` (case-insensitive), if listed.
    pub fn person(&self, name: &str) -> Option<usize> {
        self.people
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str) -> Person {
        Person {
            name: name.into(),
            phone: None,
            email: None,
        }
    }

    fn rotation() -> OnCall {
        OnCall {
            handoff: Handoff::parse("Mon 09:00").unwrap(),
            length: Duration::days(7),
            start: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            escalate_after: std::time::Duration::from_secs(600),
            people: vec![person("Dana"), person("Sam"), person("Lee")],
            exceptions: Vec::new(),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const NY: Option<Tz> = Some(chrono_tz::America::New_York);

    #[test]
    fn handoffs_parse_or_say_what_is_expected() {
        assert_eq!(
            Handoff::parse("Mon 09:00").unwrap().to_string(),
            "Mon 09:00"
        );
        assert_eq!(
            Handoff::parse("friday 17:30").unwrap().weekday,
            Some(Weekday::Fri)
        );
        assert_eq!(Handoff::parse("08:00").unwrap().weekday, None);
        for bad in ["", "Mon", "Mon 9", "Funday 09:00", "Mon 09:00 x", "25:00"] {
            let e = Handoff::parse(bad).unwrap_err();
            assert!(e.contains("expected a weekday"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_rotation_hands_over_weekly_at_local_time() {
        let r = rotation();
        // Monday 2026-11-30 09:00 EST = 14:00 UTC: Dana's first shift.
        let s = r.at(utc("2026-11-30T14:00:00Z"), NY);
        assert_eq!(s.name, "Dana");
        assert_eq!(s.from, utc("2026-11-30T14:00:00Z"));
        assert_eq!(s.until, utc("2026-12-07T14:00:00Z"));
        // A minute before the hand-off is still Dana; at it, Sam.
        assert_eq!(r.at(utc("2026-12-07T13:59:00Z"), NY).name, "Dana");
        assert_eq!(r.at(utc("2026-12-07T14:00:00Z"), NY).name, "Sam");
        assert_eq!(r.next(utc("2026-12-01T00:00:00Z"), NY).name, "Sam");
        // Three weeks on, round again; before the start, counted backwards.
        assert_eq!(r.at(utc("2026-12-21T15:00:00Z"), NY).name, "Dana");
        assert_eq!(r.at(utc("2026-11-29T15:00:00Z"), NY).name, "Lee");
    }

    #[test]
    fn the_handoff_stays_at_nine_local_across_daylight_saving() {
        let mut r = rotation();
        r.start = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        // 2026-03-08 clocks go forward in New York: the Monday after, 09:00 EDT = 13:00 UTC.
        let s = r.at(utc("2026-03-09T13:00:00Z"), NY);
        assert_eq!(s.name, "Sam");
        assert_eq!(s.from, utc("2026-03-09T13:00:00Z"));
        assert_eq!(r.at(utc("2026-03-09T12:59:00Z"), NY).name, "Dana");
        // The shift across the change lasted 7 days less an hour.
        let dana = r.at(utc("2026-03-05T00:00:00Z"), NY);
        assert_eq!(dana.until - dana.from, Duration::hours(7 * 24 - 1));
    }

    #[test]
    fn a_holiday_exception_takes_over_and_cuts_the_shifts_around_it() {
        let mut r = rotation();
        r.exceptions.push(Exception {
            person: 2,
            from: utc("2026-12-24T22:00:00Z"),
            to: utc("2026-12-26T14:00:00Z"),
        });
        // Shifts from 2026-11-30: Dana, Sam, Lee, then Dana again from 2026-12-21.
        let before = r.at(utc("2026-12-24T21:00:00Z"), NY);
        assert_eq!(before.name, "Dana");
        assert_eq!(before.until, utc("2026-12-24T22:00:00Z"));
        let during = r.at(utc("2026-12-25T12:00:00Z"), NY);
        assert_eq!(during.name, "Lee");
        assert!(during.exception);
        assert_eq!(r.next(utc("2026-12-25T12:00:00Z"), NY).name, "Dana");
        let after = r.at(utc("2026-12-26T15:00:00Z"), NY);
        assert_eq!(after.name, "Dana");
        assert_eq!(after.from, utc("2026-12-26T14:00:00Z"));
        assert_eq!(after.until, utc("2026-12-28T14:00:00Z"));
    }

    #[test]
    fn escalation_goes_to_the_next_person_then_everyone() {
        let r = rotation();
        let t = utc("2026-12-08T00:00:00Z"); // Sam's week
        let names = |l| {
            r.escalation(t, NY, l)
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(0), ["Sam"]);
        assert_eq!(names(1), ["Lee"]);
        assert_eq!(names(2), ["Dana", "Sam", "Lee"]);
        let mut alone = rotation();
        alone.people.truncate(1);
        assert_eq!(alone.escalation(t, NY, 1).len(), 1);
    }

    #[test]
    fn daily_handoffs_without_a_weekday() {
        let mut r = rotation();
        r.handoff = Handoff::parse("08:00").unwrap();
        r.length = Duration::days(1);
        // 2026-11-30 08:00 EST is Dana's, the next day Sam's.
        assert_eq!(r.at(utc("2026-11-30T13:00:00Z"), NY).name, "Dana");
        assert_eq!(r.at(utc("2026-12-01T13:00:00Z"), NY).name, "Sam");
        assert_eq!(r.at(utc("2026-12-01T12:59:00Z"), NY).name, "Dana");
    }
}
