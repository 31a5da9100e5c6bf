//! The phone announcement: a few spoken sentences for the help desk's phone system (what is
//! down and since when, the newest incident update, what still works, when the next word
//! comes), built from one Snapshot; [`speech`] turns them into telephone audio.
//!
//! Served as `/announcement.txt` and `/announcement.wav` on the page listener, and printed by
//! `detour announce` (through `GET /api/v1/announcement`): all three say the same words.
//!
//! The words change only when what they describe changes (a state, an update, the day of a
//! date): nothing says "12 minutes ago", so the audio is made again only when needed. Times
//! are spoken in `[page] timezone` as a caller says them: "since 2:15 PM Eastern".

pub mod speech;

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Timelike, Utc};
use chrono_tz::{OffsetName, Tz};

use crate::health::ServiceState;
use crate::snapshot::Snapshot;

/// What the announcement says when every service works.
pub const ALL_WELL: &str = "All systems are working normally.";

/// How it ends while something is wrong: incidents carry no "next update at", so it promises
/// only what is true (the words change with every update and every change of state).
pub const NEXT: &str = "We will update this message as we learn more.";

/// Names listed before "and N other services".
const MAX_NAMES: usize = 4;

/// Words the whole announcement aims at: espeak-ng speaks about 160 a minute, so 100 words
/// take under 40 seconds, about what a caller listens to on hold.
const BUDGET: usize = 100;

/// Words of an operator's update read out, at most (it gets what the rest leaves of
/// [`BUDGET`]) and at least.
const MAX_UPDATE: usize = 45;
const MIN_UPDATE: usize = 15;

/// A service that is not working.
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    /// Display name.
    pub name: String,
    /// Since when.
    pub since: DateTime<Utc>,
    /// When it is expected back: an override's `until`, a maintenance window's end.
    pub until: Option<DateTime<Utc>>,
}

/// A service that works but not through its usual way in (one it depends on is down).
#[derive(Debug, Clone, PartialEq)]
pub struct Dependent {
    /// Display name.
    pub name: String,
    /// Host of its direct link, to say out loud ("forms.example.net").
    pub host: Option<String>,
}

/// What the announcement is made of, gathered from a Snapshot ([`facts`]) and put into words
/// by [`Facts::words`].
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// When the words are made.
    pub now: DateTime<Utc>,
    /// The zone times are spoken in.
    pub zone: Tz,
    /// Services down (checks, or an operator), in config order.
    pub down: Vec<Out>,
    /// Services in planned maintenance.
    pub maintenance: Vec<Out>,
    /// Working services reached directly while what they sit behind is down.
    pub dependents: Vec<Dependent>,
    /// Services working normally.
    pub up: Vec<String>,
    /// The newest update of an open incident: when, and what it says.
    pub latest: Option<(DateTime<Utc>, String)>,
}

/// The announcement of `snap` at `now`: one line, two to four sentences.
pub fn text(snap: &Snapshot, now: DateTime<Utc>) -> String {
    facts(snap, now).words()
}

/// The zone times are spoken in: `[page] timezone`, else the process's (`TZ`, else the
/// machine's), else UTC.
pub fn zone(configured: Option<Tz>) -> Tz {
    configured
        .or_else(|| {
            std::env::var("TZ")
                .ok()
                .and_then(|z| z.trim_start_matches(':').parse().ok())
        })
        .or_else(|| {
            iana_time_zone::get_timezone()
                .ok()
                .and_then(|z| z.parse().ok())
        })
        .unwrap_or(Tz::UTC)
}

/// Gathers what the announcement says from `snap`.
pub fn facts(snap: &Snapshot, now: DateTime<Utc>) -> Facts {
    let config = &snap.config;
    let h = &snap.health;
    let mut f = Facts {
        now,
        zone: zone(config.page.timezone),
        down: Vec::new(),
        maintenance: Vec::new(),
        dependents: Vec::new(),
        up: Vec::new(),
        latest: None,
    };
    for svc in config.services.values() {
        let st = h.services.get(&svc.id);
        let state = st.map_or(ServiceState::Up, |s| s.state);
        let since = st.map_or(now, |s| s.since);
        let out = |until| Out {
            name: svc.name.clone(),
            since,
            until,
        };
        let overridden = h.overrides.get(&svc.id).and_then(|o| o.until);
        match state {
            // Slow still works: callers are told it works (the page says how slow).
            ServiceState::Up | ServiceState::Degraded => f.up.push(svc.name.clone()),
            ServiceState::Impacted => f.dependents.push(Dependent {
                name: svc.name.clone(),
                host: svc.url.as_deref().and_then(host),
            }),
            ServiceState::Down => f.down.push(out(overridden)),
            ServiceState::Maintenance => {
                let window = config
                    .maintenance
                    .iter()
                    .filter(|m| m.services.contains(&svc.id) && m.start <= now && now < m.end)
                    .map(|m| m.end.with_timezone(&Utc))
                    .max();
                f.maintenance.push(out(overridden.or(window)));
            }
        }
    }
    // Newest first; of two at the same moment, the one posted later.
    f.latest = snap
        .incidents
        .list
        .iter()
        .filter(|i| i.is_open())
        .flat_map(|i| i.updates.iter())
        .filter(|u| !u.message.trim().is_empty())
        .fold(
            None,
            |best: Option<&crate::incidents::Update>, u| match best {
                Some(b) if b.at > u.at => Some(b),
                _ => Some(u),
            },
        )
        .map(|u| (u.at, u.message.clone()));
    f
}

/// The host of a direct link, to be read out: `https://forms.example.net/login` →
/// `forms.example.net`.
fn host(url: &str) -> Option<String> {
    let u = url::Url::parse(url.trim()).ok()?;
    matches!(u.scheme(), "http" | "https")
        .then(|| u.host_str().map(str::to_string))
        .flatten()
}

impl Facts {
    /// The announcement in words.
    pub fn words(&self) -> String {
        let mut clock = Speaker::new(self.now, self.zone);
        let mut out: Vec<String> = Vec::new();
        if self.down.is_empty() && self.maintenance.is_empty() {
            out.push(if self.dependents.is_empty() {
                ALL_WELL.into()
            } else {
                // Impacted without anything down: a check_each record whose addresses are
                // all dead. Say what is true and nothing more.
                let names = self.dependent_names();
                format!(
                    "{} {} only if you go to {} directly.",
                    names,
                    verb(self.dependents.len(), "works", "work"),
                    pronoun(self.dependents.len())
                )
            });
            if let Some((at, message)) = &self.latest {
                out.push(format!("The latest update, {}:", clock.at(*at)));
                let slot = out.len() - 1;
                return with_update(out, slot, message);
            }
            return out.join(" ");
        }

        // What is down, since when, and until when where an operator said so for each.
        let mut first = Vec::new();
        if !self.down.is_empty() {
            let since = self.down.iter().map(|o| o.since).min().unwrap_or(self.now);
            let mut s = format!(
                "{} {} been unavailable {}",
                list(&names(&self.down)),
                verb(self.down.len(), "has", "have"),
                clock.phrase("since", since)
            );
            if let Some(back) = latest(self.down.iter().map(|o| o.until)) {
                s.push_str(", expected back ");
                s.push_str(&clock.phrase("by", back));
            }
            first.push(s);
        }
        if !self.maintenance.is_empty() {
            let mut s = format!(
                "{} {} down for planned maintenance",
                list(&names(&self.maintenance)),
                verb(self.maintenance.len(), "is", "are")
            );
            if let Some(u) = latest(self.maintenance.iter().map(|o| o.until)) {
                s.push(' ');
                s.push_str(&clock.phrase("until", u));
            }
            first.push(s);
        }
        out.push(format!("{}.", first.join(", and ")));

        // The newest word from the team (its words are counted last, see below).
        let slot = self.latest.as_ref().map(|(at, _)| {
            out.push(format!("The latest update, {}:", clock.at(*at)));
            out.len() - 1
        });

        // What still works: the dependents first (the way in is what is broken), then the rest.
        let mut works = Vec::new();
        if !self.dependents.is_empty() {
            let n = self.dependents.len();
            let mut s = format!(
                "{} still {} if you go to {} directly",
                self.dependent_names(),
                verb(n, "works", "work"),
                pronoun(n)
            );
            let hosts: Option<Vec<String>> =
                self.dependents.iter().map(|d| d.host.clone()).collect();
            if let Some(hosts) = hosts.filter(|h| h.len() <= MAX_NAMES) {
                s.push_str(", at ");
                s.push_str(&list(&hosts));
            }
            works.push(s);
        }
        if !self.up.is_empty() {
            let (who, n) = if self.up.len() > MAX_NAMES {
                let who = if works.is_empty() {
                    "Everything else"
                } else {
                    "everything else"
                };
                (who.to_string(), 1)
            } else {
                (list(&self.up), self.up.len())
            };
            works.push(format!("{} {} working normally", who, verb(n, "is", "are")));
        }
        if !works.is_empty() {
            out.push(format!("{}.", works.join("; ")));
        }
        out.push(NEXT.into());
        match (slot, &self.latest) {
            (Some(slot), Some((_, message))) => with_update(out, slot, message),
            _ => out.join(" "),
        }
    }

    fn dependent_names(&self) -> String {
        list(
            &self
                .dependents
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>(),
        )
    }
}

/// `out` joined, with the update's words after `out[slot]` (its lead-in): as many as the
/// other sentences leave of [`BUDGET`], within [`MIN_UPDATE`]..=[`MAX_UPDATE`].
fn with_update(mut out: Vec<String>, slot: usize, message: &str) -> String {
    let used: usize = out.iter().map(|s| s.split_whitespace().count()).sum();
    let room = BUDGET.saturating_sub(used).clamp(MIN_UPDATE, MAX_UPDATE);
    if let Some(lead) = out.get_mut(slot) {
        lead.push(' ');
        lead.push_str(&update_words(message, room));
    }
    out.join(" ")
}

/// The latest of `times` when every one is known.
fn latest(times: impl Iterator<Item = Option<DateTime<Utc>>>) -> Option<DateTime<Utc>> {
    times.collect::<Option<Vec<_>>>()?.into_iter().max()
}

fn names(outs: &[Out]) -> Vec<String> {
    outs.iter().map(|o| o.name.clone()).collect()
}

fn verb(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

fn pronoun(n: usize) -> &'static str {
    if n == 1 { "it" } else { "them" }
}

/// Names as said aloud: "A", "A and B", "A, B and C"; past [`MAX_NAMES`], "A, B, C and 3
/// other services".
pub fn list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        _ if names.len() > MAX_NAMES => {
            let shown = MAX_NAMES - 1;
            format!(
                "{} and {} other services",
                names[..shown].join(", "),
                names.len() - shown
            )
        }
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// An operator's update as read out: one line of at most `max` words (cut at the end of a
/// sentence where one is not too far back, else after a word, marked "…"), ending like a
/// sentence.
pub fn update_words(message: &str, max: usize) -> String {
    let words: Vec<String> = message
        .split_whitespace()
        .map(|w| w.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect();
    let mut s = if words.len() <= max {
        words.join(" ")
    } else {
        let head = &words[..max];
        match head
            .iter()
            .rposition(|w| w.ends_with(['.', '!', '?']))
            .filter(|&i| i + 1 >= max / 3)
        {
            Some(i) => head[..=i].join(" "),
            None => format!("{}…", head.join(" ").trim_end_matches([',', ';', ':', '-'])),
        }
    };
    if !s.ends_with(['.', '!', '?', '…']) {
        s.push('.');
    }
    s
}

/// Says times as a caller would hear them, naming the zone the first time only.
#[derive(Debug)]
pub struct Speaker {
    now: DateTime<Utc>,
    zone: Tz,
    zone_said: bool,
}

impl Speaker {
    /// Times seen from `now`, in `zone`.
    pub fn new(now: DateTime<Utc>, zone: Tz) -> Self {
        Self {
            now,
            zone,
            zone_said: false,
        }
    }

    /// "since 2:15 PM Eastern", "until tomorrow at 6 AM", "by Friday, January 9 at noon":
    /// `word` then the moment.
    pub fn phrase(&mut self, word: &str, t: DateTime<Utc>) -> String {
        let (day, clock) = self.parts(t);
        match day {
            None => format!("{word} {clock}"),
            Some(d) => format!("{word} {d} at {clock}"),
        }
    }

    /// When something happened: "at 2:40 PM", "yesterday at 9 AM", "on Tuesday at 9 AM".
    pub fn at(&mut self, t: DateTime<Utc>) -> String {
        let (day, clock) = self.parts(t);
        match day {
            None => format!("at {clock}"),
            Some(d) if d == "yesterday" || d == "tomorrow" => format!("{d} at {clock}"),
            Some(d) => format!("on {d} at {clock}"),
        }
    }

    /// The day as a word where it is not today, and the clock time (with the zone, the
    /// first time).
    fn parts(&mut self, t: DateTime<Utc>) -> (Option<String>, String) {
        let local = t.with_timezone(&self.zone);
        let today = self.now.with_timezone(&self.zone).date_naive();
        let mut clock = clock_words(local.hour(), local.minute());
        if !self.zone_said {
            self.zone_said = true;
            clock.push(' ');
            clock.push_str(&zone_words(self.zone, t));
        }
        (day_words(local.date_naive(), today), clock)
    }
}

/// "2:15 PM", "9 AM", "noon", "midnight".
pub fn clock_words(hour: u32, minute: u32) -> String {
    match (hour, minute) {
        (0, 0) => "midnight".into(),
        (12, 0) => "noon".into(),
        _ => {
            let h12 = match hour % 12 {
                0 => 12,
                h => h,
            };
            let half = if hour < 12 { "AM" } else { "PM" };
            if minute == 0 {
                format!("{h12} {half}")
            } else {
                format!("{h12}:{minute:02} {half}")
            }
        }
    }
}

/// `date` seen from `today`: none for today, "yesterday", "tomorrow", the weekday within a
/// week, else "Tuesday, December 24" (and the year when it is not this one).
pub fn day_words(date: NaiveDate, today: NaiveDate) -> Option<String> {
    let days = (date - today).num_days();
    match days {
        0 => None,
        -1 => Some("yesterday".into()),
        1 => Some("tomorrow".into()),
        -6..=6 => Some(date.format("%A").to_string()),
        _ if date.year() == today.year() => Some(date.format("%A, %B %-d").to_string()),
        _ => Some(date.format("%A, %B %-d, %Y").to_string()),
    }
}

/// The zone as a caller knows it: "Eastern", "Pacific" in North America; "UTC" (or "UTC
/// minus 3") for UTC and fixed offsets; elsewhere the zone's city: "Berlin time".
pub fn zone_words(zone: Tz, at: DateTime<Utc>) -> String {
    let name = zone.name();
    let local = zone.from_utc_datetime(&at.naive_utc());
    let offset = local.offset();
    let american = ["America/", "US/", "Canada/", "Pacific/Honolulu"]
        .iter()
        .any(|p| name.starts_with(p))
        || matches!(
            name,
            "EST5EDT" | "CST6CDT" | "MST7MDT" | "PST8PDT" | "EST" | "MST" | "HST"
        );
    if american {
        let region = match offset.abbreviation().unwrap_or("") {
            "EST" | "EDT" => Some("Eastern"),
            "CST" | "CDT" => Some("Central"),
            "MST" | "MDT" => Some("Mountain"),
            "PST" | "PDT" => Some("Pacific"),
            "AKST" | "AKDT" => Some("Alaska"),
            "HST" | "HDT" => Some("Hawaii"),
            "AST" | "ADT" => Some("Atlantic"),
            "NST" | "NDT" => Some("Newfoundland"),
            _ => None,
        };
        if let Some(r) = region {
            return r.into();
        }
    }
    match name.rsplit_once('/') {
        Some((area, city)) if area != "Etc" && area != "SystemV" => {
            format!("{} time", city.replace('_', " "))
        }
        _ => {
            let secs = offset.fix().local_minus_utc();
            if secs == 0 {
                return "UTC".into();
            }
            let sign = if secs < 0 { "minus" } else { "plus" };
            let (h, m) = (secs.abs() / 3600, secs.abs() % 3600 / 60);
            if m == 0 {
                format!("UTC {sign} {h}")
            } else {
                format!("UTC {sign} {h}:{m:02}")
            }
        }
    }
}

/// An ETag for `text` (stable across restarts of the same build), quoted; `suffix` tells
/// representations apart.
pub fn etag(text: &str, suffix: &str) -> String {
    // FNV-1a, 64 bits: not for security, only to tell one text from another.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{h:016x}{suffix}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn ny() -> Tz {
        "America/New_York".parse().unwrap()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// 3:30 PM in New York on Thursday 24 December 2026.
    fn now() -> DateTime<Utc> {
        at("2026-12-24T20:30:00Z")
    }

    fn calm() -> Facts {
        Facts {
            now: now(),
            zone: ny(),
            down: Vec::new(),
            maintenance: Vec::new(),
            dependents: Vec::new(),
            up: s(&["MLS", "Forms"]),
            latest: None,
        }
    }

    #[test]
    fn lists_read_like_speech() {
        assert_eq!(list(&s(&[])), "");
        assert_eq!(list(&s(&["A"])), "A");
        assert_eq!(list(&s(&["A", "B"])), "A and B");
        assert_eq!(list(&s(&["A", "B", "C"])), "A, B and C");
        assert_eq!(list(&s(&["A", "B", "C", "D"])), "A, B, C and D");
        assert_eq!(
            list(&s(&["A", "B", "C", "D", "E", "F"])),
            "A, B, C and 3 other services"
        );
    }

    #[test]
    fn clock_times_are_said_the_american_way() {
        assert_eq!(clock_words(14, 15), "2:15 PM");
        assert_eq!(clock_words(9, 5), "9:05 AM");
        assert_eq!(clock_words(9, 0), "9 AM");
        assert_eq!(clock_words(0, 0), "midnight");
        assert_eq!(clock_words(0, 30), "12:30 AM");
        assert_eq!(clock_words(12, 0), "noon");
        assert_eq!(clock_words(12, 45), "12:45 PM");
        assert_eq!(clock_words(23, 59), "11:59 PM");
    }

    #[test]
    fn days_are_words_near_today_and_dates_further_off() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let today = d("2026-12-24");
        assert_eq!(day_words(today, today), None);
        assert_eq!(day_words(d("2026-12-23"), today).unwrap(), "yesterday");
        assert_eq!(day_words(d("2026-12-25"), today).unwrap(), "tomorrow");
        assert_eq!(day_words(d("2026-12-21"), today).unwrap(), "Monday");
        assert_eq!(day_words(d("2026-12-30"), today).unwrap(), "Wednesday");
        assert_eq!(
            day_words(d("2026-12-01"), today).unwrap(),
            "Tuesday, December 1"
        );
        assert_eq!(
            day_words(d("2027-01-08"), today).unwrap(),
            "Friday, January 8, 2027"
        );
    }

    #[test]
    fn zones_are_named_as_callers_know_them() {
        let winter = at("2026-12-24T20:30:00Z");
        let summer = at("2026-07-04T16:00:00Z");
        assert_eq!(zone_words(ny(), winter), "Eastern");
        assert_eq!(zone_words(ny(), summer), "Eastern");
        let la: Tz = "America/Los_Angeles".parse().unwrap();
        assert_eq!(zone_words(la, summer), "Pacific");
        let chicago: Tz = "America/Chicago".parse().unwrap();
        assert_eq!(zone_words(chicago, winter), "Central");
        let denver: Tz = "America/Denver".parse().unwrap();
        assert_eq!(zone_words(denver, winter), "Mountain");
        let honolulu: Tz = "Pacific/Honolulu".parse().unwrap();
        assert_eq!(zone_words(honolulu, winter), "Hawaii");
        // No North American abbreviation: the zone's city.
        let sp: Tz = "America/Sao_Paulo".parse().unwrap();
        assert_eq!(zone_words(sp, winter), "Sao Paulo time");
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(zone_words(berlin, winter), "Berlin time");
        assert_eq!(zone_words(Tz::UTC, winter), "UTC");
        let fixed: Tz = "Etc/GMT+3".parse().unwrap();
        assert_eq!(zone_words(fixed, winter), "UTC minus 3");
    }

    #[test]
    fn the_zone_is_named_once() {
        let mut sp = Speaker::new(now(), ny());
        assert_eq!(
            sp.phrase("since", at("2026-12-24T19:15:00Z")),
            "since 2:15 PM Eastern"
        );
        assert_eq!(sp.at(at("2026-12-24T20:05:00Z")), "at 3:05 PM");
        assert_eq!(
            sp.phrase("until", at("2026-12-25T11:00:00Z")),
            "until tomorrow at 6 AM"
        );
        assert_eq!(sp.at(at("2026-12-23T14:00:00Z")), "yesterday at 9 AM");
        assert_eq!(sp.at(at("2026-12-21T17:00:00Z")), "on Monday at noon");
        // The date follows the zone: 03:00 UTC on the 24th is still the 23rd in New York.
        assert_eq!(
            sp.phrase("since", at("2026-12-24T03:00:00Z")),
            "since yesterday at 10 PM"
        );
    }

    #[test]
    fn all_well_is_one_calm_sentence() {
        assert_eq!(calm().words(), "All systems are working normally.");
    }

    #[test]
    fn an_outage_says_what_since_when_what_works_and_what_comes_next() {
        let f = Facts {
            down: vec![
                Out {
                    name: "MLS Sign-On".into(),
                    since: at("2026-12-24T19:20:00Z"),
                    until: None,
                },
                Out {
                    name: "MLS".into(),
                    since: at("2026-12-24T19:15:00Z"),
                    until: None,
                },
            ],
            dependents: vec![Dependent {
                name: "Forms".into(),
                host: Some("forms.example.net".into()),
            }],
            up: s(&["Tax records"]),
            latest: Some((
                at("2026-12-24T19:40:00Z"),
                "The vendor is restoring\nthe database".into(),
            )),
            ..calm()
        };
        assert_eq!(
            f.words(),
            "MLS Sign-On and MLS have been unavailable since 2:15 PM Eastern. \
             The latest update, at 2:40 PM: The vendor is restoring the database. \
             Forms still works if you go to it directly, at forms.example.net; \
             Tax records is working normally. \
             We will update this message as we learn more."
        );
    }

    #[test]
    fn maintenance_and_expected_returns_are_said() {
        let f = Facts {
            down: vec![Out {
                name: "MLS".into(),
                since: at("2026-12-23T23:00:00Z"),
                until: Some(at("2026-12-25T13:00:00Z")),
            }],
            maintenance: vec![Out {
                name: "Document library".into(),
                since: at("2026-12-24T19:00:00Z"),
                until: Some(at("2026-12-24T22:00:00Z")),
            }],
            up: s(&["A", "B", "C", "D", "E"]),
            ..calm()
        };
        assert_eq!(
            f.words(),
            "MLS has been unavailable since yesterday at 6 PM Eastern, expected back by tomorrow \
             at 8 AM, and Document library is down for planned maintenance until 5 PM. \
             Everything else is working normally. We will update this message as we learn more."
        );
    }

    #[test]
    fn an_update_while_all_is_well_is_read_too() {
        let f = Facts {
            latest: Some((
                at("2026-12-24T20:00:00Z"),
                "Slow searches are fixed!".into(),
            )),
            ..calm()
        };
        assert_eq!(
            f.words(),
            "All systems are working normally. The latest update, at 3 PM Eastern: Slow searches are fixed!"
        );
    }

    #[test]
    fn long_updates_are_cut_where_a_sentence_ends() {
        let long = format!(
            "The vendor found the fault in the database cluster. {}",
            "They are copying data to new disks and checking every table. ".repeat(5)
        );
        let w = update_words(&long, 30);
        assert!(w.split_whitespace().count() <= 30, "{w}");
        assert!(w.ends_with("table."), "{w}");
        let one = "word, ".repeat(100);
        let w = update_words(&one, 20);
        assert_eq!(w.split_whitespace().count(), 20, "{w}");
        assert!(w.ends_with("word…"), "{w}");
        assert_eq!(update_words("  Back\n soon  ", 20), "Back soon.");
        assert_eq!(update_words("Fixed!", 20), "Fixed!");
    }

    #[test]
    fn the_worst_case_stays_short() {
        let out = |n: &str| Out {
            name: n.into(),
            since: at("2026-12-20T10:00:00Z"),
            until: Some(at("2026-12-29T10:00:00Z")),
        };
        let f = Facts {
            down: (0..9)
                .map(|i| out(&format!("Service number {i}")))
                .collect(),
            maintenance: (0..9).map(|i| out(&format!("Maintained {i}"))).collect(),
            dependents: (0..9)
                .map(|i| Dependent {
                    name: format!("Dependent {i}"),
                    host: Some(format!("dep{i}.example.net")),
                })
                .collect(),
            up: (0..30).map(|i| format!("Up {i}")).collect(),
            latest: Some((now(), "blah ".repeat(400))),
            ..calm()
        };
        let w = f.words();
        // espeak-ng speaks about 160 words a minute: 110 words is about 40 seconds.
        let words = w.split_whitespace().count();
        assert!(words <= 110, "{words} words: {w}");
        assert!(
            w.contains("The latest update, at 3:30 PM: blah blah"),
            "{w}"
        );
        // With less to say about services, more of the update is read.
        let short = Facts {
            latest: Some((now(), "blah ".repeat(400))),
            down: vec![out("MLS")],
            ..calm()
        }
        .words();
        assert_eq!(short.matches("blah").count(), MAX_UPDATE, "{short}");
    }

    #[test]
    fn hosts_come_from_web_links_only() {
        assert_eq!(
            host("https://forms.example.net/login").as_deref(),
            Some("forms.example.net")
        );
        assert_eq!(host("mailto:help@example.test"), None);
        assert_eq!(host("not a url"), None);
    }

    #[test]
    fn etags_differ_with_the_text() {
        assert_eq!(etag("a", ""), etag("a", ""));
        assert_ne!(etag("a", ""), etag("b", ""));
        assert_ne!(etag("a", ""), etag("a", "-wav"));
    }
}
