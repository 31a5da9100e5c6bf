//! Drills: a service forced to a state for one view's sources only, for a set time. Kept in
//! `state_dir/drills.json`; every drill ends by itself.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::overrides::Forced;
use crate::store;

/// One drill: `service` is `state` for the sources of `view` until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// The view whose sources see it.
    pub view: String,
    /// The service drilled.
    pub service: String,
    /// The state it is in for that view.
    pub state: Forced,
    /// Why (shown in status and the audit log).
    #[serde(default)]
    pub reason: String,
    /// Who started it.
    #[serde(default)]
    pub by: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ends by itself.
    pub until: DateTime<Utc>,
}

/// Every drill in force, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drills {
    /// The drills.
    #[serde(default)]
    pub list: Vec<Drill>,
}

/// `state_dir/drills.json`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("drills.json")
}

impl Drills {
    /// Reads the drills at start: a corrupt file is set aside and reported.
    pub fn load(state_dir: &Path) -> (Drills, Option<String>) {
        let parse = |t: &str| serde_json::from_str::<Drills>(t).map_err(|e| e.to_string());
        let (d, problem) = store::load_or_report(&path(state_dir), parse);
        (d.unwrap_or_default(), problem)
    }

    /// Writes them atomically.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        store::atomic_write(&path(state_dir), &bytes)
    }

    /// Adds `d`, replacing a drill of the same service in the same view.
    pub fn start(&mut self, d: Drill) {
        self.list
            .retain(|o| !(o.view == d.view && o.service == d.service));
        self.list.push(d);
    }

    /// Ends the drills of `service` (every drill when `None`); returns them.
    pub fn stop(&mut self, service: Option<&str>) -> Vec<Drill> {
        let (gone, kept) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|d| service.is_none_or(|s| d.service == s));
        self.list = kept;
        gone
    }

    /// Ends the drills whose time is up at `now`; returns them.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Vec<Drill> {
        let (gone, kept) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|d| d.until <= now);
        self.list = kept;
        gone
    }

    /// Drops drills whose view or service the config no longer has; returns them.
    pub fn retain_known(&mut self, config: &crate::config::Config) -> Vec<Drill> {
        let (kept, gone) = std::mem::take(&mut self.list).into_iter().partition(|d| {
            config.views.iter().any(|v| v.name == d.view)
                && config.services.contains_key(&d.service)
        });
        self.list = kept;
        gone
    }

    /// The drills one view sees.
    pub fn of_view<'a>(&'a self, view: &'a str) -> impl Iterator<Item = &'a Drill> + 'a {
        self.list.iter().filter(move |d| d.view == view)
    }

    /// When the next drill ends.
    pub fn next_end(&self) -> Option<DateTime<Utc>> {
        self.list.iter().map(|d| d.until).min()
    }

    /// True when no drill is in force.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(view: &str, service: &str, mins: i64) -> Drill {
        let t0 = DateTime::parse_from_rfc3339("2026-12-24T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Drill {
            view: view.into(),
            service: service.into(),
            state: Forced::Down,
            reason: "rehearsal".into(),
            by: "dana".into(),
            started: t0,
            until: t0 + chrono::Duration::minutes(mins),
        }
    }

    #[test]
    fn start_replaces_stop_and_expire_remove() {
        let mut d = Drills::default();
        d.start(drill("staff", "mls", 30));
        d.start(drill("staff", "sso", 10));
        d.start(drill("lab", "mls", 60));
        d.start(drill("staff", "mls", 45)); // replaces the first
        assert_eq!(d.list.len(), 3);
        assert_eq!(d.of_view("staff").count(), 2);
        assert_eq!(d.next_end(), Some(drill("x", "y", 10).until));
        let gone = d.expire(drill("x", "y", 10).until);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].service, "sso");
        let gone = d.stop(Some("mls"));
        assert_eq!(gone.len(), 2);
        assert!(d.is_empty());
    }

    #[test]
    fn saved_and_read_back() {
        let dir = std::env::temp_dir().join(format!("detour-drills-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut d = Drills::default();
        d.start(drill("staff", "mls", 30));
        d.save(&dir).unwrap();
        let (back, problem) = Drills::load(&dir);
        assert_eq!(problem, None);
        assert_eq!(back, d);
        std::fs::write(path(&dir), "{ not json").unwrap();
        let (back, problem) = Drills::load(&dir);
        assert!(back.is_empty());
        assert!(problem.is_some(), "a corrupt file is reported");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
