//! Pending deliveries in `state_dir/notify-queue.json`, so a restart does not lose them.
//! Written atomically whenever the pending set changes (bursts coalesce into one write);
//! read once at start; a corrupt file is set aside and reported.
//!
//! ```json
//! {"version": 1, "pending": [
//!   {"sink": 1, "target": "webhook http://127.0.0.1:9100/hook", "id": 7,
//!    "queued_at": "2026-12-24T22:01:05Z", "attempts": 2, "notice": {"event": {...}}}
//! ]}
//! ```
//!
//! After a restart an entry goes back to the sink with the same number and target, else to
//! the first sink with the same target; with no such sink left it is reported and dropped.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::payload::Notice;
use crate::store;

/// The file name inside `state_dir`.
pub const FILE: &str = "notify-queue.json";

/// One pending delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Unique within this state dir (ascending).
    pub id: u64,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// Attempts made so far.
    pub attempts: u32,
    /// What to tell.
    pub notice: Notice,
    /// For email and SMS sinks: the one person or address it goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
}

/// The recipient of one email or text message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    /// Email address or E.164 number.
    pub to: String,
    /// The on-call person's name, when paged as such (their acknowledge link names them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// The page this message belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// The page's escalation level when sent.
    #[serde(default)]
    pub level: u8,
    /// Why they get it, printed at the end of the message.
    #[serde(default)]
    pub why: String,
}

/// An entry with the sink it waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// Sink number (1-based position in `[[notify]]`).
    pub sink: usize,
    /// The sink's destination ("webhook URL", "exec PROGRAM ARGS").
    pub target: String,
    /// The delivery.
    #[serde(flatten)]
    pub entry: Entry,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    pending: Vec<Stored>,
}

/// `state_dir/notify-queue.json`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Reads the pending deliveries (none when the file is missing or was set aside) and the
/// problem to report, if the file was corrupt.
pub fn load(state_dir: &Path) -> (Vec<Stored>, Option<String>) {
    let (file, problem) = store::load_or_report(&path(state_dir), |text| {
        serde_json::from_str::<File>(text).map_err(|e| e.to_string())
    });
    let problem = problem.map(|p| format!("{p}; pending notifications in it were not sent"));
    (file.map(|f| f.pending).unwrap_or_default(), problem)
}

/// Writes the pending deliveries atomically.
pub fn save(state_dir: &Path, pending: Vec<Stored>) -> io::Result<()> {
    let f = File {
        version: 1,
        pending,
    };
    let bytes = serde_json::to_vec_pretty(&f).map_err(io::Error::other)?;
    store::atomic_write(&path(state_dir), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Kind};

    #[test]
    fn pending_deliveries_round_trip_and_a_corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), (Vec::new(), None));
        let s = Stored {
            sink: 2,
            target: "webhook http://127.0.0.1:1/".into(),
            entry: Entry {
                id: 7,
                queued_at: Utc::now(),
                attempts: 1,
                notice: Notice::single(Event::new(Kind::Guard)),
                recipient: None,
            },
        };
        save(dir.path(), vec![s.clone()]).unwrap();
        assert_eq!(load(dir.path()), (vec![s], None));
        std::fs::write(path(dir.path()), "{ nope").unwrap();
        let (pending, problem) = load(dir.path());
        assert!(pending.is_empty());
        assert!(problem.unwrap().contains("set aside"));
        assert!(!path(dir.path()).exists());
    }
}
