//! No storms: a service whose state changes more than [`FLAP_THRESHOLD`] times within
//! [`FLAP_WINDOW`] is flapping. Its further state events are held back and told as one
//! summary ("MLS flapped 6 times in 5 minutes, now down") once it settles (no change for
//! [`FLAP_SETTLE`]) or once [`FLAP_WINDOW`] has passed since holding began; a service that
//! keeps flapping gets one summary per window. The first [`FLAP_THRESHOLD`] changes are sent
//! as they happen, so the people on call hear about the first failure at once.
//!
//! Only state events (down, up, impacted, maintenance) are summarised; overrides, incidents
//! and guard flips are deliberate or rare and always sent.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::payload::{Flapping, Notice, span};
use crate::events::{Event, Kind};
use crate::health::ServiceState;

/// More state changes than this within [`FLAP_WINDOW`] make a service flapping.
pub const FLAP_THRESHOLD: usize = 4;
/// The window changes are counted in, and the longest a summary is held back.
pub const FLAP_WINDOW: Duration = Duration::from_secs(300);
/// A flapping service with no change for this long has settled: its summary goes out.
pub const FLAP_SETTLE: Duration = Duration::from_secs(60);

/// Flap tracking for every service.
#[derive(Debug)]
pub struct Flaps {
    threshold: usize,
    window: chrono::Duration,
    settle: chrono::Duration,
    tracks: BTreeMap<String, Track>,
}

#[derive(Debug, Default)]
struct Track {
    /// When recent changes arrived, oldest first, within the window.
    recent: VecDeque<DateTime<Utc>>,
    /// Set while the service's state events are held back.
    hold: Option<Hold>,
}

#[derive(Debug)]
struct Hold {
    /// When holding began (the window of a summary counts from here).
    started: DateTime<Utc>,
    /// The first change the summary counts.
    first_at: Option<DateTime<Utc>>,
    /// Changes the summary counts (for the first hold, the ones sent before it too).
    changes: u32,
    /// The latest change (settling counts from here).
    last_change: DateTime<Utc>,
    /// The state before the first held change.
    old_state: Option<ServiceState>,
    /// The latest held event.
    last: Option<Event>,
    /// Kinds held.
    kinds: Vec<Kind>,
}

fn is_state(e: &Event) -> bool {
    e.service.is_some()
        && matches!(
            e.kind,
            Kind::Down | Kind::Up | Kind::Impacted | Kind::Maintenance | Kind::Degraded
        )
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Default for Flaps {
    fn default() -> Self {
        Self::new(FLAP_THRESHOLD, FLAP_WINDOW, FLAP_SETTLE)
    }
}

impl Flaps {
    /// Tracking with the given limits (the defaults are the constants above).
    pub fn new(threshold: usize, window: Duration, settle: Duration) -> Self {
        Self {
            threshold,
            window: chrono(window),
            settle: chrono(settle),
            tracks: BTreeMap::new(),
        }
    }

    /// Changes the limits; what is held stays held.
    pub fn set_limits(&mut self, threshold: usize, window: Duration, settle: Duration) {
        self.threshold = threshold;
        self.window = chrono(window);
        self.settle = chrono(settle);
    }

    /// Takes one event arriving at `now`: `Some` when it is to be sent now, `None` when it
    /// is held for a summary.
    pub fn offer(&mut self, e: Event, now: DateTime<Utc>) -> Option<Notice> {
        if !is_state(&e) {
            return Some(Notice::single(e));
        }
        let key = e.service.clone().unwrap_or_default();
        let track = self.tracks.entry(key).or_default();
        track.recent.push_back(now);
        while track.recent.front().is_some_and(|t| now - *t > self.window) {
            track.recent.pop_front();
        }
        if let Some(h) = &mut track.hold {
            h.changes += 1;
            h.first_at.get_or_insert(now);
            if h.last.is_none() {
                h.old_state = e.old_state;
            }
            h.last_change = now;
            if !h.kinds.contains(&e.kind) {
                h.kinds.push(e.kind);
            }
            h.last = Some(e);
            return None;
        }
        if track.recent.len() > self.threshold {
            tracing::info!(
                service = e.service.as_deref().unwrap_or_default(),
                changes = track.recent.len(),
                "service is flapping: holding its notifications for a summary"
            );
            metrics::counter!("detour_notify_flapping_total").increment(1);
            track.hold = Some(Hold {
                started: now,
                first_at: track.recent.front().copied(),
                changes: u32::try_from(track.recent.len()).unwrap_or(u32::MAX),
                last_change: now,
                old_state: e.old_state,
                kinds: vec![e.kind],
                last: Some(e),
            });
            return None;
        }
        Some(Notice::single(e))
    }

    /// Summaries due at `now` (settled, or the window since holding began is over).
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Notice> {
        let mut out = Vec::new();
        for track in self.tracks.values_mut() {
            let Some(h) = &mut track.hold else { continue };
            let settled = now - h.last_change >= self.settle;
            let window_over = now - h.started >= self.window;
            if !settled && !window_over {
                continue;
            }
            if let Some(n) = summary(h) {
                out.push(n);
            }
            if settled {
                track.hold = None;
                track.recent.clear();
            } else {
                // Still flapping: hold on, one summary per window.
                *h = Hold {
                    started: now,
                    first_at: None,
                    changes: 0,
                    last_change: h.last_change,
                    old_state: None,
                    last: None,
                    kinds: Vec::new(),
                };
            }
        }
        self.tracks
            .retain(|_, t| t.hold.is_some() || !t.recent.is_empty());
        out
    }

    /// When [`Flaps::due`] next has something to do.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.tracks
            .values()
            .filter_map(|t| t.hold.as_ref())
            .map(|h| (h.last_change + self.settle).min(h.started + self.window))
            .min()
    }

    /// Every held summary now (at shutdown: held events are told, not lost).
    pub fn flush(&mut self) -> Vec<Notice> {
        let out = self
            .tracks
            .values_mut()
            .filter_map(|t| t.hold.as_mut().and_then(summary))
            .collect();
        self.tracks.clear();
        out
    }
}

/// The summary of a hold, if it held anything.
fn summary(h: &mut Hold) -> Option<Notice> {
    let mut e = h.last.take()?;
    let first_at = h.first_at.unwrap_or(h.last_change);
    let now_state = e.new_state.map_or("unknown".into(), |s| s.to_string());
    let last_reason = std::mem::take(&mut e.reason);
    e.reason = format!(
        "flapped {} times in {}, now {now_state} (last: {last_reason})",
        h.changes,
        span(h.last_change - first_at)
    );
    e.old_state = h.old_state;
    Some(Notice {
        event: e,
        flapping: Some(Flapping {
            changes: h.changes,
            first_at,
            last_at: h.last_change,
            held: std::mem::take(&mut h.kinds),
        }),
        text: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(to: ServiceState, from: ServiceState) -> Event {
        let mut e = Event::new(Kind::of_state(to));
        e.service = Some("mls".into());
        e.service_name = Some("MLS".into());
        e.old_state = Some(from);
        e.new_state = Some(to);
        e.reason = format!("went {to}");
        e
    }

    fn flip(i: usize) -> Event {
        if i.is_multiple_of(2) {
            change(ServiceState::Down, ServiceState::Up)
        } else {
            change(ServiceState::Up, ServiceState::Down)
        }
    }

    #[test]
    fn six_flips_give_four_events_then_one_summary_when_settled() {
        let mut f = Flaps::default();
        let t0 = Utc::now();
        let s = chrono::Duration::seconds;
        let sent: Vec<_> = (0..6)
            .filter_map(|i| f.offer(flip(i), t0 + s(10 * i as i64)))
            .collect();
        assert_eq!(sent.len(), 4);
        assert!(f.due(t0 + s(60)).is_empty());
        assert_eq!(f.next_deadline(), Some(t0 + s(50 + 60)));
        let sums = f.due(t0 + s(110));
        assert_eq!(sums.len(), 1);
        let n = &sums[0];
        assert_eq!(n.flapping.as_ref().map(|f| f.changes), Some(6));
        assert_eq!(n.event.new_state, Some(ServiceState::Up));
        assert_eq!(n.event.old_state, Some(ServiceState::Up));
        assert!(
            n.event
                .reason
                .starts_with("flapped 6 times in less than a minute, now up"),
            "{}",
            n.event.reason
        );
        // Settled: the next change is news again.
        assert!(f.offer(flip(0), t0 + s(200)).is_some());
        assert_eq!(f.next_deadline(), None);
    }

    #[test]
    fn endless_flapping_gives_one_summary_per_window_and_overrides_pass() {
        let mut f = Flaps::default();
        let t0 = Utc::now();
        let mut sent = 0;
        let mut sums = 0;
        for i in 0..200 {
            let now = t0 + chrono::Duration::seconds(5 * i as i64);
            sent += f.offer(flip(i), now).iter().count();
            sums += f.due(now).len();
        }
        // 1000 s of a change every 5 s: 4 events, then a summary per 300 s window.
        assert_eq!(sent, 4);
        assert_eq!(sums, 3);
        assert_eq!(f.flush().len(), 1);
        let mut o = Event::new(Kind::Override);
        o.service = Some("mls".into());
        assert!(f.offer(o, t0).is_some());
    }
}
