//! What this instance knows of the cluster: a mirror of the keys under the prefix, folded
//! from etcd's snapshot and watch events (pure: no I/O), and the quorum over it.
//!
//! Every instance folds the same events in the same order (etcd's revisions), so every
//! function of a [`View`] gives the same result on every instance at the same revision:
//! that is what makes their answers and serials agree.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit;
use crate::checks::Grade;
use crate::config::{Config, HealthyWhen, Quorum};
use crate::incidents::{Incident, Incidents};
use crate::overrides::Overrides;

/// What an instance says of itself, under its lease (`members/<instance>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Its guard is frozen (every canary down): it abstains.
    pub frozen: bool,
    /// When it joined.
    pub started: DateTime<Utc>,
    /// detour's version.
    pub version: String,
    /// A digest of its services and checks: instances with different ones disagree on
    /// what a vote means.
    pub config: String,
}

/// One instance's verdict on one check (`votes/<instance>/<check id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// Passing.
    pub up: bool,
    /// Why it fails, or why a passing check is not of normal grade (the probe's reason when
    /// it flipped), or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
    /// How well a passing check works (absent: normal; older instances never write it).
    #[serde(default, skip_serializing_if = "Grade::is_normal")]
    pub grade: Grade,
}

/// The serial the cluster gives a zone's content (written by the leader).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    /// The serial.
    pub serial: u32,
    /// The content's digest (`ZoneData::digest`).
    pub digest: String,
}

/// A member as the view knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    /// What it says.
    pub member: Member,
    /// The etcd revision that created its key: the oldest live member leads.
    pub created: i64,
}

/// The mirror of the cluster's keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// The etcd revision this view is at.
    pub revision: i64,
    /// Live members (their lease holds), by instance name.
    pub members: BTreeMap<String, Known>,
    /// Votes by instance, then check id.
    pub votes: BTreeMap<String, BTreeMap<String, Vote>>,
    /// Overrides, by service.
    pub overrides: Overrides,
    /// Incidents, by id.
    pub incidents: BTreeMap<String, Incident>,
    /// Drills, by `<view>/<service>`.
    pub drills: BTreeMap<String, crate::rehearsal::Drill>,
    /// Cluster time: the latest wall-clock time any writer put in `clock`.
    pub clock: Option<DateTime<Utc>>,
    /// The base every serial is counted from (`serial_base`, written once).
    pub serial_base: Option<u32>,
    /// The serial agreed for each zone's content, by origin (`zones/<origin>`).
    pub zones: BTreeMap<String, Pin>,
    /// The console's accounts (`accounts`), as written by `detour user`: JSON, parsed by
    /// the console.
    pub accounts: Option<Vec<u8>>,
    /// The latest audit entries that arrived by watch, with their revisions (not those
    /// present at the first read: they are history, not news); at most [`NEWS`].
    pub news: std::collections::VecDeque<(i64, audit::Entry)>,
}

/// How many audit entries [`View::news`] keeps for the states task to act on.
pub const NEWS: usize = 256;

/// The keys, relative to the prefix.
pub mod keys {
    /// A member's key.
    pub const MEMBERS: &str = "members/";
    /// Votes: `votes/<instance>/<check>`.
    pub const VOTES: &str = "votes/";
    /// Overrides: `overrides/<service>`.
    pub const OVERRIDES: &str = "overrides/";
    /// Incidents: `incidents/<id>`.
    pub const INCIDENTS: &str = "incidents/";
    /// Drills: `drills/<view>/<service>`.
    pub const DRILLS: &str = "drills/";
    /// The audit log: `audit/<unix ms, 16 digits>-<instance>`.
    pub const AUDIT: &str = "audit/";
    /// Cluster time, unix milliseconds as 16 digits (so that etcd's byte-wise comparison
    /// is numeric).
    pub const CLOCK: &str = "clock";
    /// The serial base.
    pub const SERIAL_BASE: &str = "serial_base";
    /// Agreed serials: `zones/<origin>`.
    pub const ZONES: &str = "zones/";
    /// The console's accounts, one JSON document (`detour user` writes it).
    pub const ACCOUNTS: &str = "accounts";

    /// `clock`'s value for `t`.
    pub fn clock_value(t: chrono::DateTime<chrono::Utc>) -> String {
        format!("{:016}", t.timestamp_millis().max(0))
    }
}

/// A key that could not be read (kept out of the view, logged by the caller).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot read etcd key {key}: {why}")]
pub struct BadKey {
    /// The key (relative to the prefix).
    pub key: String,
    /// What was wrong.
    pub why: String,
}

fn parse<T: for<'de> Deserialize<'de>>(key: &str, value: &[u8]) -> Result<T, BadKey> {
    serde_json::from_slice(value).map_err(|e| BadKey {
        key: key.to_string(),
        why: e.to_string(),
    })
}

impl View {
    /// Folds a put of `key` (relative to the prefix) made at revision `modified`, the key
    /// created at `created`. `news` is true for a watch event.
    pub fn put(
        &mut self,
        key: &str,
        value: &[u8],
        (created, modified): (i64, i64),
        news: bool,
    ) -> Result<(), BadKey> {
        if let Some(name) = key.strip_prefix(keys::MEMBERS) {
            let member = parse(key, value)?;
            self.members
                .insert(name.to_string(), Known { member, created });
        } else if let Some(rest) = key.strip_prefix(keys::VOTES) {
            let (instance, check) = rest.split_once('/').ok_or_else(|| BadKey {
                key: key.to_string(),
                why: "expected votes/<instance>/<check>".into(),
            })?;
            let vote = parse(key, value)?;
            self.votes
                .entry(instance.to_string())
                .or_default()
                .insert(check.to_string(), vote);
        } else if let Some(service) = key.strip_prefix(keys::OVERRIDES) {
            self.overrides
                .insert(service.to_string(), parse(key, value)?);
        } else if let Some(id) = key.strip_prefix(keys::INCIDENTS) {
            self.incidents.insert(id.to_string(), parse(key, value)?);
        } else if let Some(id) = key.strip_prefix(keys::DRILLS) {
            self.drills.insert(id.to_string(), parse(key, value)?);
        } else if let Some(origin) = key.strip_prefix(keys::ZONES) {
            self.zones.insert(origin.to_string(), parse(key, value)?);
        } else if key.starts_with(keys::AUDIT) {
            if news {
                self.news.push_back((modified, parse(key, value)?));
                while self.news.len() > NEWS {
                    self.news.pop_front();
                }
            }
        } else if key == keys::CLOCK {
            let ms: i64 = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| BadKey {
                    key: key.to_string(),
                    why: "expected unix milliseconds".into(),
                })?;
            let t = DateTime::from_timestamp_millis(ms);
            self.clock = self.clock.max(t);
        } else if key == keys::ACCOUNTS {
            self.accounts = Some(value.to_vec());
        } else if key == keys::SERIAL_BASE {
            let base: u32 = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| BadKey {
                    key: key.to_string(),
                    why: "expected a serial number".into(),
                })?;
            self.serial_base = Some(base);
        }
        Ok(())
    }

    /// Folds a delete of `key` (relative to the prefix): a lease that expired, an override
    /// cleared.
    pub fn delete(&mut self, key: &str) {
        if let Some(name) = key.strip_prefix(keys::MEMBERS) {
            self.members.remove(name);
        } else if let Some(rest) = key.strip_prefix(keys::VOTES) {
            if let Some((instance, check)) = rest.split_once('/')
                && let Some(v) = self.votes.get_mut(instance)
            {
                v.remove(check);
                if v.is_empty() {
                    self.votes.remove(instance);
                }
            }
        } else if let Some(service) = key.strip_prefix(keys::OVERRIDES) {
            self.overrides.remove(service);
        } else if let Some(id) = key.strip_prefix(keys::INCIDENTS) {
            self.incidents.remove(id);
        } else if let Some(id) = key.strip_prefix(keys::DRILLS) {
            self.drills.remove(id);
        } else if let Some(origin) = key.strip_prefix(keys::ZONES) {
            self.zones.remove(origin);
        } else if key == keys::ACCOUNTS {
            self.accounts = None;
        }
    }

    /// The leader: the live member whose key is oldest (etcd's election recipe: the lowest
    /// create revision under a prefix of leased keys wins, and the next one takes over when
    /// its lease ends).
    pub fn leader(&self) -> Option<&str> {
        self.members
            .iter()
            .min_by_key(|(_, k)| k.created)
            .map(|(n, _)| n.as_str())
    }

    /// Incidents, oldest first.
    pub fn incidents(&self) -> Incidents {
        let mut list: Vec<Incident> = self.incidents.values().cloned().collect();
        list.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then(a.id.cmp(&b.id)));
        Incidents { list }
    }

    /// Drills still in force at `now`, oldest first (an expired one is ignored until its
    /// key goes).
    pub fn drills_at(&self, now: DateTime<Utc>) -> crate::rehearsal::Drills {
        let mut list: Vec<crate::rehearsal::Drill> = self
            .drills
            .values()
            .filter(|d| d.until > now)
            .cloned()
            .collect();
        list.sort_by_key(|d| d.started);
        crate::rehearsal::Drills { list }
    }

    /// Overrides still in force at `now` (an expired one is ignored until its key goes).
    pub fn overrides_at(&self, now: DateTime<Utc>) -> Overrides {
        self.overrides
            .iter()
            .filter(|(_, o)| o.until.is_none_or(|u| u > now))
            .map(|(s, o)| (s.clone(), o.clone()))
            .collect()
    }

    /// Instances that vote: live and not frozen.
    pub fn voters(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|(_, k)| !k.member.frozen)
            .map(|(n, _)| n.as_str())
    }

    /// The tally for one check under `quorum`.
    pub fn tally(&self, check: &str, quorum: Quorum) -> Tally {
        let mut t = Tally {
            quorum,
            ..Tally::default()
        };
        for name in self.voters() {
            match self.votes.get(name).and_then(|v| v.get(check)) {
                Some(v) if v.up => {
                    t.up.push(name.to_string());
                    t.grades.push((v.grade, v.why.clone()));
                }
                Some(v) => t.down.push((name.to_string(), v.why.clone())),
                None => {}
            }
        }
        t
    }

    /// One instance's view of a service: down when its votes fail `healthy_when` (a check
    /// it has no vote on counts as passing); `None` when it has no vote on any check.
    pub fn service_seen_by(&self, config: &Config, service: &str, instance: &str) -> Option<bool> {
        let svc = config.services.get(service)?;
        let votes = self.votes.get(instance)?;
        let ids: Vec<String> = (0..svc.checks.len())
            .map(|index| format!("{service}#{index}"))
            .collect();
        if !ids.iter().any(|id| votes.contains_key(id)) {
            return if svc.checks.is_empty() {
                Some(true)
            } else {
                None
            };
        }
        let passing = ids
            .iter()
            .filter(|id| votes.get(*id).is_none_or(|v| v.up))
            .count();
        Some(match svc.healthy_when {
            HealthyWhen::All => passing == ids.len(),
            HealthyWhen::Any => passing > 0,
            HealthyWhen::AtLeast(k) => passing >= k as usize,
        })
    }
}

/// How the voters stand on one check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// The rule.
    pub quorum: Quorum,
    /// Who sees it pass.
    pub up: Vec<String>,
    /// Who sees it fail, and why.
    pub down: Vec<(String, String)>,
    /// The grade each of `up` sees, and why (in `up`'s order).
    pub grades: Vec<(Grade, String)>,
}

impl Tally {
    /// The agreed verdict: `None` when nobody votes (the caller keeps the last one).
    pub fn verdict(&self) -> Option<bool> {
        let voters = self.up.len() + self.down.len();
        (voters > 0).then(|| self.up.len() >= self.quorum.needed(voters))
    }

    /// The agreed grade of a check agreed up: the best grade that a quorum of the voters
    /// see it at or better (with `majority` of three, normal needs two instances seeing it
    /// normal; one normal, one degraded and one down is degraded). `one`: the best any
    /// voter sees; `all`: the worst.
    pub fn grade(&self) -> Grade {
        let voters = self.up.len() + self.down.len();
        let needed = self.quorum.needed(voters);
        for g in [Grade::Normal, Grade::Degraded] {
            if self.grades.iter().filter(|(x, _)| *x <= g).count() >= needed {
                return g;
            }
        }
        Grade::Maintenance
    }

    /// Why the check is of grade `g`: the first voter's words that see it so (or the grade).
    pub fn grade_why(&self, g: Grade) -> String {
        self.grades
            .iter()
            .filter(|(x, w)| *x == g && !w.is_empty())
            .map(|(_, w)| w.clone())
            .next()
            .unwrap_or_else(|| g.as_str().to_string())
    }

    /// Why it is down, for the status: "seen down from office, dc (2 of 3; majority): <why>".
    pub fn why(&self) -> String {
        let names: Vec<&str> = self.down.iter().map(|(n, _)| n.as_str()).collect();
        let first = self
            .down
            .iter()
            .map(|(_, w)| w.as_str())
            .find(|w| !w.is_empty())
            .unwrap_or("failing");
        format!(
            "seen down from {} ({} of {}; quorum {}): {first}",
            names.join(", "),
            self.down.len(),
            self.up.len() + self.down.len(),
            self.quorum
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(frozen: bool) -> Vec<u8> {
        serde_json::to_vec(&Member {
            frozen,
            started: Utc::now(),
            version: "0".into(),
            config: "x".into(),
        })
        .unwrap()
    }

    fn vote(up: bool) -> Vec<u8> {
        serde_json::to_vec(&Vote {
            up,
            why: if up { String::new() } else { "refused".into() },
            grade: Grade::Normal,
        })
        .unwrap()
    }

    #[test]
    fn the_agreed_grade_is_the_best_a_quorum_sees_at_or_above() {
        let mut v = three([true, true, false]);
        let slow = Vote {
            up: true,
            why: "slow: over 1.5s (HTTP 200)".into(),
            grade: Grade::Degraded,
        };
        v.put(
            "votes/dc/mls#0",
            &serde_json::to_vec(&slow).unwrap(),
            (21, 21),
            false,
        )
        .unwrap();
        // office normal, dc degraded, cloud down.
        let t = v.tally("mls#0", Quorum::Majority);
        assert_eq!(t.verdict(), Some(true));
        assert_eq!(
            t.grade(),
            Grade::Degraded,
            "only one of three sees it normal"
        );
        assert_eq!(t.grade_why(Grade::Degraded), "slow: over 1.5s (HTTP 200)");
        assert_eq!(v.tally("mls#0", Quorum::One).grade(), Grade::Normal);
        // An older instance's vote has no grade: normal.
        let old: Vote = serde_json::from_str(r#"{"up":true}"#).unwrap();
        assert_eq!(old.grade, Grade::Normal);
        assert!(!serde_json::to_string(&old).unwrap().contains("grade"));
    }

    fn three(up: [bool; 3]) -> View {
        let mut v = View::default();
        for (i, (name, up)) in ["office", "dc", "cloud"].iter().zip(up).enumerate() {
            v.put(
                &format!("members/{name}"),
                &member(false),
                (10 + i as i64, 10),
                false,
            )
            .unwrap();
            v.put(&format!("votes/{name}/mls#0"), &vote(up), (20, 20), false)
                .unwrap();
        }
        v
    }

    #[test]
    fn quorum_counts_instances_that_see_it_up() {
        assert_eq!(Quorum::Majority.needed(3), 2);
        assert_eq!(Quorum::Majority.needed(2), 1, "a tie counts as up");
        assert_eq!(Quorum::Majority.needed(4), 2);
        assert_eq!(Quorum::All.needed(3), 3);
        assert_eq!(Quorum::One.needed(3), 1);
        assert_eq!(Quorum::AtLeast(2).needed(3), 2);
        assert_eq!(Quorum::AtLeast(5).needed(3), 3, "capped at the live voters");
        assert_eq!(Quorum::One.needed(0), 0);
    }

    #[test]
    fn two_of_three_up_is_up_under_majority_and_down_under_all() {
        let v = three([false, true, true]);
        assert_eq!(v.tally("mls#0", Quorum::Majority).verdict(), Some(true));
        assert_eq!(v.tally("mls#0", Quorum::All).verdict(), Some(false));
        assert_eq!(v.tally("mls#0", Quorum::One).verdict(), Some(true));
        let down = three([false, false, true]);
        assert_eq!(down.tally("mls#0", Quorum::Majority).verdict(), Some(false));
        assert_eq!(down.tally("mls#0", Quorum::One).verdict(), Some(true));
        let t = down.tally("mls#0", Quorum::Majority);
        assert!(
            t.why()
                .starts_with("seen down from dc, office (2 of 3; quorum majority)"),
            "{}",
            t.why()
        );
    }

    #[test]
    fn frozen_and_dead_instances_do_not_vote() {
        let mut v = three([false, false, true]);
        v.put("members/office", &member(true), (10, 30), false)
            .unwrap();
        assert_eq!(
            v.tally("mls#0", Quorum::Majority).verdict(),
            Some(true),
            "dc down, cloud up: a tie"
        );
        v.delete("members/dc");
        assert_eq!(v.tally("mls#0", Quorum::All).verdict(), Some(true));
        v.delete("members/cloud");
        assert_eq!(
            v.tally("mls#0", Quorum::Majority).verdict(),
            None,
            "no voter left"
        );
    }

    #[test]
    fn the_oldest_member_leads_and_the_next_takes_over() {
        let mut v = three([true; 3]);
        assert_eq!(v.leader(), Some("office"));
        v.delete("members/office");
        assert_eq!(v.leader(), Some("dc"));
        v.delete("votes/office/mls#0");
        assert!(!v.votes.contains_key("office"));
    }

    #[test]
    fn clock_only_goes_forward_and_bad_values_are_refused() {
        let mut v = View::default();
        v.put("clock", b"0001700000000000", (1, 1), true).unwrap();
        v.put("clock", b"0001600000000000", (1, 2), true).unwrap();
        assert_eq!(
            v.clock.map(|c| c.timestamp_millis()),
            Some(1_700_000_000_000)
        );
        assert!(v.put("clock", b"soon", (1, 3), true).is_err());
        assert!(v.put("votes/office", &vote(true), (3, 3), true).is_err());
        assert!(v.put("overrides/mls", b"{", (3, 3), true).is_err());
        assert_eq!(
            keys::clock_value(DateTime::from_timestamp_millis(5).unwrap()),
            "0000000000000005"
        );
    }
}
