//! What the states task keeps on disk besides operator state: the last verdicts
//! (`health.json`, restored at start when recent) and the serial reservation
//! (`serials.json`, so that serials never go back across restarts, crashes included).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::Config;
use crate::health::{Health, ServiceState};
use crate::incidents::Incidents;
use crate::selection;
use crate::snapshot::{Snapshot, unix_now};
use crate::store;

/// Verdicts saved in `state_dir/health.json`, restored at start when recent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    /// When written.
    pub saved_at: DateTime<Utc>,
    /// Verdict per check id (its display form).
    pub checks: BTreeMap<String, bool>,
    /// State and since per service.
    pub services: BTreeMap<String, (ServiceState, DateTime<Utc>)>,
}

/// How old saved verdicts may be and still be trusted at start.
pub const RESTORE_WINDOW: Duration = Duration::from_secs(300);

/// Builds the Snapshot for `config` and `health`; new serials are at least `floor` (and
/// the current Unix time).
pub fn snapshot_of(
    config: Arc<Config>,
    health: Health,
    incidents: Arc<Incidents>,
    prev: Option<&Snapshot>,
    floor: u32,
) -> Snapshot {
    let selection = selection::select(&config, &health, Utc::now());
    Snapshot::build(
        config,
        selection,
        Arc::new(health),
        incidents,
        prev,
        unix_now().max(floor),
    )
}

/// How far above a zone's serial `serials.json` reserves: the file is written again only
/// when a serial passes what it holds (a storm of flips writes it once, not per flip), and
/// a restart starts above it, at most this far ahead of the last serial served.
pub const SERIAL_LEASE: u32 = 600;

/// The file holding, per zone, a serial this run does not pass without first writing a
/// higher one, so that a restart, even after a crash, never goes back.
pub fn serials_path(config: &Config) -> PathBuf {
    config.server.state_dir.join("serials.json")
}

/// The floor for serials at start: one above the highest the last run reserved, so above
/// every serial it served, crash or not (1 on a first start). Serials run ahead of the
/// clock when zones change more than once a second, and a restart that went back to the
/// clock would serve a serial a secondary already holds, for other content: it would stay
/// stale. A corrupt file is set aside (the message says so).
pub fn serial_floor(config: &Config) -> (u32, Option<String>) {
    let parse =
        |t: &str| serde_json::from_str::<BTreeMap<String, u32>>(t).map_err(|e| e.to_string());
    let (saved, problem) = store::load_or_report(&serials_path(config), parse);
    let floor = saved
        .and_then(|m| m.values().max().copied())
        .map_or(1, |s| s.saturating_add(1));
    (
        floor,
        problem.map(|p| format!("{p}: serials restart from the clock")),
    )
}

/// The entry of `serials.json` that reserves above the highest serial any zone has had,
/// removed zones included (a zone dropped by a reload and added back after a restart
/// must still start above what it served).
pub const HIGHEST: &str = "*";

/// Reserves serials: writes each zone's serial plus [`SERIAL_LEASE`], and the highest
/// serial served plus as much under [`HIGHEST`] (see [`serial_floor`]); returns what it
/// wrote, or nothing if the write failed (then the next change tries again).
pub fn save_serials(snap: &Snapshot) -> BTreeMap<String, u32> {
    let ceilings: BTreeMap<String, u32> = snap
        .zones
        .iter()
        .map(|z| (z.origin.to_string(), z.serial))
        .chain([(HIGHEST.to_string(), snap.serial_high())])
        .map(|(k, v)| (k, v.saturating_add(SERIAL_LEASE)))
        .collect();
    let path = serials_path(&snap.config);
    let written = serde_json::to_vec_pretty(&ceilings)
        .map_err(|e| e.to_string())
        .and_then(|b| store::atomic_write(&path, &b).map_err(|e| e.to_string()));
    match written {
        Ok(()) => ceilings,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot save zone serials");
            BTreeMap::new()
        }
    }
}

/// Whether `snap` serves a serial past what `ceilings` reserved (the highest is above
/// every zone's), or a zone with nothing reserved: then [`save_serials`] must run first.
pub(crate) fn passes(snap: &Snapshot, ceilings: &BTreeMap<String, u32>) -> bool {
    ceilings
        .get(HIGHEST)
        .is_none_or(|&c| snap.serial_high() > c)
        || snap
            .zones
            .iter()
            .any(|z| !ceilings.contains_key(&z.origin.to_string()))
}

/// The path of saved verdicts.
pub fn persisted_path(config: &Config) -> PathBuf {
    config.server.state_dir.join("health.json")
}

/// Loads saved verdicts if present, parseable and recent; a corrupt file is set aside and
/// the second value says so, for `detour status`.
pub fn restore(config: &Config, now: DateTime<Utc>) -> (Option<Persisted>, Option<String>) {
    let path = persisted_path(config);
    let (saved, problem) = store::load_or_report(&path, |t| {
        serde_json::from_str::<Persisted>(t).map_err(|e| e.to_string())
    });
    let recent = saved.filter(|p| {
        let age = (now - p.saved_at).to_std().unwrap_or(Duration::MAX);
        if age <= RESTORE_WINDOW {
            info!(file = %path.display(), age_s = age.as_secs(), "restored last known states");
            true
        } else {
            info!(file = %path.display(), age_s = age.as_secs(), "saved states too old; probing first");
            false
        }
    });
    (recent, problem)
}
