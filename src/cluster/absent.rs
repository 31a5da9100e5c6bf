//! The cluster in a build without the `cluster` feature: there is no etcd client, so no
//! [`Cluster`] can exist (the type has no values) and `[cluster]` is refused when the
//! config is checked. Everything that takes a cluster compiles the same either way.

use std::convert::Infallible;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Ballot, Link, Unavailable, View};
use crate::audit;
use crate::config::Cluster as Settings;
use crate::config::Config;

/// An operation of a transaction (only a [`Cluster`] makes one, and none exists here).
#[derive(Debug, Clone)]
pub struct Op(());

/// A condition of a transaction (only a [`Cluster`] makes one, and none exists here).
#[derive(Debug, Clone)]
pub struct Cond(());

/// The cluster link; in this build it cannot be made.
#[derive(Debug, Clone)]
pub struct Cluster(Infallible);

/// Why `[cluster]` cannot run here.
pub const WITHOUT: &str = "this detour was built without the cluster: build it with `--features cluster` (which needs protoc, Debian's protobuf-compiler), or install the .deb";

/// Refuses: this build has no etcd client.
pub async fn read(_settings: &Settings, _rel: &str) -> Result<Option<Vec<u8>>, Unavailable> {
    Err(Unavailable(WITHOUT.into()))
}

/// Refuses: this build has no etcd client.
pub async fn edit<E>(
    _settings: &Settings,
    _rel: &str,
    _change: impl FnMut(Option<&[u8]>) -> Result<Vec<u8>, E>,
) -> Result<Result<(), E>, Unavailable> {
    Err(Unavailable(WITHOUT.into()))
}

impl Cluster {
    /// Refuses: this build has no etcd client.
    pub async fn start(
        _config: &Config,
        _settings: Settings,
        _serial_floor: u32,
        _cancel: CancellationToken,
    ) -> Result<Cluster, String> {
        Err(WITHOUT.into())
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        match self.0 {}
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        match self.0 {}
    }

    /// The latest view.
    pub fn view(&self) -> watch::Receiver<Arc<View>> {
        match self.0 {}
    }

    /// The link to etcd.
    pub fn link(&self) -> watch::Receiver<Link> {
        match self.0 {}
    }

    /// Hands this instance's verdicts to the session.
    pub fn vote(&self, _ballot: Ballot) {
        match self.0 {}
    }

    /// An operator's change with its audit entry.
    pub async fn write(
        &self,
        _when: Vec<Cond>,
        _ops: Vec<Op>,
        _entry: &audit::Entry,
    ) -> Result<(i64, bool), Unavailable> {
        match self.0 {}
    }

    /// Writes `ops` in one transaction.
    pub async fn write_plain(&self, _ops: Vec<Op>) -> Result<i64, Unavailable> {
        match self.0 {}
    }

    /// The put of `value` (JSON) at `rel`.
    pub fn put_json<T: serde::Serialize>(&self, _rel: &str, _value: &T) -> Result<Op, Unavailable> {
        match self.0 {}
    }

    /// The delete of `rel`.
    pub fn delete(&self, _rel: &str) -> Op {
        match self.0 {}
    }

    /// "`rel` does not exist yet".
    pub fn absent(&self, _rel: &str) -> Cond {
        match self.0 {}
    }

    /// "`rel` holds `value` (JSON) as it was read".
    pub fn holds<T: serde::Serialize>(&self, _rel: &str, _value: &T) -> Cond {
        match self.0 {}
    }

    /// Moves cluster time forward.
    pub async fn tick_clock(&self) -> Result<i64, Unavailable> {
        match self.0 {}
    }

    /// The audit log's last `limit` entries.
    pub async fn audit_tail(&self, _limit: usize) -> Result<Vec<audit::Entry>, Unavailable> {
        match self.0 {}
    }
}
