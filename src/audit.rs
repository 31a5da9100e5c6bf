//! The audit trail: every override, incident change and reload, one JSON line each, in
//! `state_dir/audit.log`.

use std::fs::OpenOptions;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When.
    pub time: DateTime<Utc>,
    /// "override.set", "override.clear", "override.expired", "incident.open",
    /// "incident.update", "incident.resolve", "reload".
    pub action: String,
    /// The service or incident concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The incident id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// Reason or message.
    #[serde(default)]
    pub reason: String,
    /// Who: the local user of a CLI call, a `--by` name, or "detour" for its own actions.
    pub who: String,
}

/// `state_dir/audit.log`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("audit.log")
}

/// Appends one entry and syncs it to disk.
pub fn append(state_dir: &Path, entry: &Entry) -> io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path(state_dir))?;
    f.write_all(&line)?;
    f.sync_data()
}

/// The most entries one request may ask [`tail`] for.
pub const MAX_TAIL: usize = 10_000;

/// The last `n` entries (at most [`MAX_TAIL`]), oldest first; lines that do not parse are
/// skipped.
pub fn tail(state_dir: &Path, n: usize) -> io::Result<Vec<Entry>> {
    let n = n.min(MAX_TAIL);
    let f = match std::fs::File::open(path(state_dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = std::collections::VecDeque::with_capacity(n.min(256));
    for line in io::BufReader::new(f).lines() {
        if let Ok(e) = serde_json::from_str::<Entry>(&line?) {
            if out.len() == n {
                out.pop_front();
            }
            out.push_back(e);
        }
    }
    Ok(out.into())
}
