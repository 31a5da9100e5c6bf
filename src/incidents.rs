//! Incidents: what the operators tell people, with timestamped updates. Kept in
//! `state_dir/incidents.json`; shown on the outage page and in the feed.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store;

/// One message in an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// When it was posted.
    pub at: DateTime<Utc>,
    /// What it says.
    pub message: String,
    /// Who posted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The incident's status after this update: "investigating" or "resolved".
    pub status: String,
}

/// An incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Short id, easy to type ("k7q2").
    pub id: String,
    /// Services it concerns.
    pub services: Vec<String>,
    /// When it was opened.
    pub opened_at: DateTime<Utc>,
    /// When it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// Updates, oldest first (the first is the opening message).
    pub updates: Vec<Update>,
}

impl Incident {
    /// True until resolved.
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }

    /// Updates newest first, as the page shows them.
    pub fn newest_first(&self) -> impl Iterator<Item = &Update> {
        self.updates.iter().rev()
    }
}

/// Every incident, oldest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Incidents {
    /// The incidents.
    pub list: Vec<Incident>,
}

/// Letters and digits that cannot be mistaken for each other when typed or read aloud.
const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";

impl Incidents {
    /// A new id of four characters, unused so far.
    pub fn new_id(&self) -> String {
        loop {
            let id: String = (0..4)
                .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
                .collect();
            if !self.list.iter().any(|i| i.id == id) {
                return id;
            }
        }
    }

    /// The incident with `id`.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Incident> {
        self.list.iter_mut().find(|i| i.id == id)
    }

    /// Open incidents, newest first.
    pub fn open(&self) -> impl Iterator<Item = &Incident> {
        self.list.iter().rev().filter(|i| i.is_open())
    }
}

/// `state_dir/incidents.json`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("incidents.json")
}

/// Reads incidents at start: a corrupt file is set aside and reported.
pub fn load(state_dir: &Path) -> (Incidents, Option<String>) {
    let parse = |t: &str| serde_json::from_str::<Incidents>(t).map_err(|e| e.to_string());
    let (i, problem) = store::load_or_report(&path(state_dir), parse);
    (i.unwrap_or_default(), problem)
}

/// Writes incidents atomically.
pub fn save(state_dir: &Path, incidents: &Incidents) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(incidents).map_err(std::io::Error::other)?;
    store::atomic_write(&path(state_dir), &bytes)
}
