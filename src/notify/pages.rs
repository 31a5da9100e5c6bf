//! On-call pages: bad news sent to whoever is on call, waiting for someone to acknowledge it.
//! Unacknowledged after `escalate_after`, a page goes to the next person of the rotation;
//! after as long again, to everyone listed. It ends when someone acknowledges it or the
//! trouble ends by itself (the service is up again, the incident resolved). Kept in
//! `state_dir/pages.json`, so a restart neither forgets a page nor escalates it twice.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::payload::{self, Notice};
use crate::events::Kind;
use crate::oncall::LEVELS;

/// The file inside `state_dir`.
pub const FILE: &str = "pages.json";

/// Ended pages kept for status and `detour oncall`.
const KEEP_ENDED: usize = 50;

/// Letters and digits that cannot be mistaken for each other (as incident ids).
const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";

/// Who acknowledged a page, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// A name: the person the link was sent to, or the CLI user / `--by`.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// Short id (`detour ack ID`).
    pub id: String,
    /// What it is about.
    pub notice: Notice,
    /// When it was raised.
    pub opened_at: DateTime<Utc>,
    /// 0: the person on call; 1: the next one; 2: everyone.
    pub level: u8,
    /// Everyone paged so far (names), in order.
    pub paged: Vec<String>,
    /// When it escalates next, if it still can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<DateTime<Utc>>,
    /// Set when acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<Ack>,
    /// Set when the trouble ended by itself, with what ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<(DateTime<Utc>, String)>,
}

impl Page {
    /// True while nobody acknowledged it and the trouble lasts.
    pub fn open(&self) -> bool {
        self.acked.is_none() && self.ended.is_none()
    }

    /// One line: "k7q2 MLS is DOWN: connect refused".
    pub fn headline(&self) -> String {
        payload::headline(&self.notice)
    }
}

/// What `detour ack` got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acked {
    /// The page after the acknowledgement.
    pub page: Page,
    /// True when it had been acknowledged (or had ended) before this call.
    pub already: bool,
}

/// Every page (open ones, and the last ended ones).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pages {
    /// Oldest first.
    pub list: Vec<Page>,
}

/// True when `n` needs someone to react: a service down or impacted, the guard, an incident
/// not resolved, a flapping service that ended down.
pub fn pages(n: &Notice) -> bool {
    let e = &n.event;
    match e.kind {
        Kind::Down | Kind::Impacted | Kind::Guard => true,
        Kind::Incident => e.incident.as_ref().is_some_and(|i| i.resolved_at.is_none()),
        Kind::Up | Kind::Maintenance => {
            n.flapping.is_some()
                && matches!(
                    e.new_state,
                    Some(crate::health::ServiceState::Down | crate::health::ServiceState::Impacted)
                )
        }
        // Slow is not down: told, not paged.
        // Drills are rehearsals; a broken safety rule follows states that page already.
        Kind::Override | Kind::Test | Kind::Degraded | Kind::Drill | Kind::Safety => false,
    }
}

impl Pages {
    fn new_id(&self) -> String {
        loop {
            let id: String = (0..4)
                .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
                .collect();
            if !self.list.iter().any(|p| p.id == id) {
                return id;
            }
        }
    }

    /// Raises a page for `notice`, paging `first` (names) now; it escalates after `after`.
    pub fn raise(
        &mut self,
        notice: Notice,
        first: Vec<String>,
        now: DateTime<Utc>,
        after: std::time::Duration,
    ) -> Page {
        let page = Page {
            id: self.new_id(),
            notice,
            opened_at: now,
            level: 0,
            paged: first,
            next_at: chrono::Duration::from_std(after).ok().map(|d| now + d),
            acked: None,
            ended: None,
        };
        self.list.push(page.clone());
        self.prune();
        page
    }

    /// The pages due to escalate at `now`: their level goes up by one (and their next
    /// escalation is set, unless everyone is paged now). Returns them, escalated.
    pub fn escalate_due(&mut self, now: DateTime<Utc>, after: std::time::Duration) -> Vec<Page> {
        let mut out = Vec::new();
        for p in self.list.iter_mut().filter(|p| p.open()) {
            if p.next_at.is_none_or(|t| t > now) {
                continue;
            }
            p.level = (p.level + 1).min(LEVELS - 1);
            p.next_at = if p.level + 1 < LEVELS {
                chrono::Duration::from_std(after).ok().map(|d| now + d)
            } else {
                None
            };
            out.push(p.clone());
        }
        out
    }

    /// Notes who a page reached.
    pub fn paged(&mut self, id: &str, names: &[String]) {
        if let Some(p) = self.list.iter_mut().find(|p| p.id == id) {
            for n in names {
                if !p.paged.contains(n) {
                    p.paged.push(n.clone());
                }
            }
        }
    }

    /// The earliest escalation ahead.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.list
            .iter()
            .filter(|p| p.open())
            .filter_map(|p| p.next_at)
            .min()
    }

    /// Acknowledges page `id` (ids ignore case) by `by`; `None` when there is no such page.
    pub fn ack(&mut self, id: &str, by: &str, now: DateTime<Utc>) -> Option<Acked> {
        let p = self
            .list
            .iter_mut()
            .find(|p| p.id.eq_ignore_ascii_case(id))?;
        let already = !p.open();
        if p.acked.is_none() {
            p.acked = Some(Ack {
                by: by.to_string(),
                at: now,
            });
            p.next_at = None;
        }
        Some(Acked {
            page: p.clone(),
            already,
        })
    }

    /// Ends the open pages the event `n` settles: a service up again ends its own down or
    /// impacted pages; a resolved incident ends its pages. Returns them.
    pub fn settle(&mut self, n: &Notice, now: DateTime<Utc>) -> Vec<Page> {
        let e = &n.event;
        let mut out = Vec::new();
        for p in self.list.iter_mut().filter(|p| p.open()) {
            let pe = &p.notice.event;
            let ends = match e.kind {
                Kind::Up | Kind::Maintenance | Kind::Degraded => {
                    e.service.is_some()
                        && pe.service == e.service
                        && matches!(pe.kind, Kind::Down | Kind::Impacted | Kind::Up)
                }
                Kind::Incident => {
                    let (Some(new), Some(old)) = (&e.incident, &pe.incident) else {
                        continue;
                    };
                    new.resolved_at.is_some() && new.id == old.id
                }
                _ => false,
            };
            if ends {
                p.ended = Some((now, payload::headline(n)));
                p.next_at = None;
                out.push(p.clone());
            }
        }
        out
    }

    /// The open pages.
    pub fn open(&self) -> Vec<&Page> {
        self.list.iter().filter(|p| p.open()).collect()
    }

    /// Drops the oldest ended pages beyond [`KEEP_ENDED`].
    fn prune(&mut self) {
        let ended = self.list.iter().filter(|p| !p.open()).count();
        let mut drop = ended.saturating_sub(KEEP_ENDED);
        self.list.retain(|p| {
            if drop > 0 && !p.open() {
                drop -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// `state_dir/pages.json`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Reads the pages (none when missing or set aside) and the problem to report.
pub fn load(state_dir: &Path) -> (Pages, Option<String>) {
    let (p, problem) = crate::store::load_or_report(&path(state_dir), |t| {
        serde_json::from_str::<Pages>(t).map_err(|e| e.to_string())
    });
    (p.unwrap_or_default(), problem)
}

/// Writes the pages atomically.
pub fn save(state_dir: &Path, pages: &Pages) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(pages).map_err(io::Error::other)?;
    crate::store::atomic_write(&path(state_dir), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use std::time::Duration;

    fn state(kind: Kind, service: &str) -> Notice {
        let mut e = Event::new(kind);
        e.service = Some(service.into());
        Notice::single(e)
    }

    #[test]
    fn a_page_escalates_twice_then_stops_and_an_ack_ends_it() {
        let mut p = Pages::default();
        let t0 = Utc::now();
        let ten = Duration::from_secs(600);
        let page = p.raise(state(Kind::Down, "mls"), vec!["Dana".into()], t0, ten);
        assert_eq!(p.next_deadline(), Some(t0 + chrono::Duration::minutes(10)));
        assert!(
            p.escalate_due(t0 + chrono::Duration::minutes(9), ten)
                .is_empty()
        );
        let t1 = t0 + chrono::Duration::minutes(10);
        let up = p.escalate_due(t1, ten);
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].level, 1);
        let t2 = t1 + chrono::Duration::minutes(10);
        assert_eq!(p.escalate_due(t2, ten)[0].level, 2);
        assert_eq!(p.next_deadline(), None, "everyone has it: no further step");
        assert!(
            p.escalate_due(t2 + chrono::Duration::hours(1), ten)
                .is_empty()
        );
        let a = p.ack(&page.id.to_uppercase(), "Sam", t2).unwrap();
        assert!(!a.already);
        assert_eq!(a.page.acked.as_ref().unwrap().by, "Sam");
        assert!(p.ack(&page.id, "Dana", t2).unwrap().already);
        assert!(p.ack("zzzz", "Dana", t2).is_none());
        assert!(p.open().is_empty());
    }

    #[test]
    fn recovery_ends_the_services_pages_only() {
        let mut p = Pages::default();
        let t = Utc::now();
        let ten = Duration::from_secs(600);
        p.raise(state(Kind::Down, "mls"), vec![], t, ten);
        p.raise(state(Kind::Down, "sso"), vec![], t, ten);
        let ended = p.settle(&state(Kind::Up, "mls"), t);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].notice.event.service.as_deref(), Some("mls"));
        assert_eq!(p.open().len(), 1);
        assert!(pages(&state(Kind::Down, "mls")));
        assert!(!pages(&state(Kind::Up, "mls")));
        assert!(!pages(&state(Kind::Override, "mls")));
    }

    #[test]
    fn pages_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Pages::default();
        p.raise(
            state(Kind::Down, "mls"),
            vec!["Dana".into()],
            Utc::now(),
            Duration::from_secs(600),
        );
        save(dir.path(), &p).unwrap();
        assert_eq!(load(dir.path()), (p, None));
    }
}
