//! The cluster: several instances share their verdicts, overrides, incidents and audit log
//! through etcd (v3 API), so that all of them serve the same answers and any of them takes
//! commands.
//!
//! [`view`] is the pure part: the mirror of the keys under the prefix and the quorum over
//! it. [`Cluster::start`] runs the two tasks that talk to etcd: the *session* (a lease, this
//! instance's member key and votes under it, kept alive and rewritten after any outage) and
//! the *mirror* (a full read, then a watch from the next revision; again after any break).
//! Writes for operators go straight to etcd in one transaction with their audit entry
//! ([`Cluster::write`]); they fail, and change nothing, while etcd is unreachable or has
//! lost its quorum.

pub mod view;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use view::{Member, Tally, View, Vote, keys};

use crate::config::Config;

#[cfg(not(feature = "cluster"))]
mod absent;
#[cfg(feature = "cluster")]
mod etcd;
#[cfg(not(feature = "cluster"))]
pub use absent::{Cluster, Cond, Op, edit, read};
#[cfg(feature = "cluster")]
pub use etcd::{Cluster, Cond, Op, edit, read};

/// Whether this build has the cluster: the `cluster` cargo feature, which needs protoc
/// (Debian's protobuf-compiler) to compile etcd's API. The .deb has it.
pub const BUILT_IN: bool = cfg!(feature = "cluster");

/// How the link to etcd stands, for status, logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The last request to etcd succeeded (and the lease is alive).
    pub reachable: bool,
    /// Since when it has been so.
    pub since: DateTime<Utc>,
    /// The last error while unreachable.
    pub error: Option<String>,
    /// The mirror has read everything at least once: the view can be trusted.
    pub synced: bool,
    /// etcd's revision at the last keep-alive: how far the view may be behind.
    pub etcd_revision: i64,
}

/// What this instance says: its verdicts and whether its guard is frozen.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ballot {
    /// Every canary is down: this instance abstains.
    pub frozen: bool,
    /// Its verdicts, by check id (checks without a verdict are left out).
    pub votes: BTreeMap<String, Vote>,
}

/// A write refused because etcd cannot take it; nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "the cluster's etcd cannot be reached or has lost its quorum ({0}); nothing was changed, so that no instance goes its own way: try again once etcd is back (`detour status` shows the cluster's health)"
)]
pub struct Unavailable(pub String);

/// How long an operator's write may wait for etcd, all tries together: long enough for
/// etcd to elect a new leader when its leader dies.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A short digest of what a vote means here (the checks and what they probe), so that
/// instances running different configs show it.
pub fn config_digest(config: &Config) -> String {
    let plan = crate::checks::plan(config);
    let text = format!("{plan:?}");
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}
