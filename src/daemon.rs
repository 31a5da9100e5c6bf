//! Wiring: load the config, build the first Snapshot, bind every listener, and run until a
//! signal says stop. SIGHUP reloads; a reload that fails validation keeps the old Snapshot.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, Diagnostics};
use crate::dns;
use crate::selection::{self, AllUp};
use crate::snapshot::{Snapshot, SnapshotHandle, unix_now};

/// Why `detour run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid (exit 2).
    #[error("{0}")]
    Config(#[from] Diagnostics),
    /// A listener could not be bound or a task failed (exit 1).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// A running detour: its Snapshot, bound addresses and tasks.
pub struct Running {
    config_path: PathBuf,
    snapshots: SnapshotHandle,
    dns_addrs: Vec<SocketAddr>,
    cancel: CancellationToken,
    tasks: JoinSet<io::Result<()>>,
}

/// Builds the Snapshot of `config` as it stands before any health verdict.
fn snapshot_of(config: Arc<Config>, prev: Option<&Snapshot>) -> Snapshot {
    let choices = selection::select(&config, &AllUp);
    Snapshot::build(config, &choices, prev, unix_now())
}

/// Binds every listener of `config` and starts serving; `config_path` is re-read on reload.
pub async fn start(config: Config, config_path: &Path) -> Result<Running, RunError> {
    let config = Arc::new(config);
    let snapshots = SnapshotHandle::new(snapshot_of(config.clone(), None));
    let workers = match config.server.udp_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut bound = Vec::new();
    for addr in &config.server.dns_listen {
        let b = dns::bind(*addr, workers).map_err(|source| RunError::Io {
            context: format!("cannot listen for DNS on {addr}"),
            source,
        })?;
        bound.push(b);
    }
    let dns_addrs: Vec<SocketAddr> = bound.iter().map(|b| b.addr).collect();
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    dns::serve(bound, snapshots.clone(), cancel.clone(), &mut tasks).map_err(|source| {
        RunError::Io {
            context: "cannot start DNS listeners".into(),
            source,
        }
    })?;
    for a in &dns_addrs {
        info!("listening for DNS on {a} (UDP and TCP)");
    }
    let snap = snapshots.load();
    for z in &snap.zones {
        info!(zone = %z.origin, serial = z.serial, records = z.records().len(), "serving zone");
    }
    Ok(Running {
        config_path: config_path.to_path_buf(),
        snapshots: snapshots.clone(),
        dns_addrs,
        cancel,
        tasks,
    })
}

impl Running {
    /// The DNS addresses actually bound (ports resolved).
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.dns_addrs
    }

    /// The Snapshot handle readers use.
    pub fn snapshots(&self) -> &SnapshotHandle {
        &self.snapshots
    }

    /// Re-reads the config file and zones; on success swaps in a new Snapshot (serials go up
    /// where content changed), on failure keeps serving the old one and returns every error.
    pub fn reload(&self) -> Result<(), Diagnostics> {
        let config = Config::load(&self.config_path)?;
        let current = self.snapshots.load_full();
        if config.server != current.config.server {
            warn!("[server] changed: listeners and limits take effect at the next restart");
        }
        let next = snapshot_of(Arc::new(config), Some(&current));
        for z in &next.zones {
            info!(zone = %z.origin, serial = z.serial, "zone loaded");
        }
        self.snapshots.store(next);
        Ok(())
    }

    /// Stops accepting, lets in-flight answers finish, and waits for every task.
    pub async fn shutdown(mut self) -> Result<(), RunError> {
        self.cancel.cancel();
        let mut result = Ok(());
        while let Some(r) = self.tasks.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    result = Err(RunError::Io {
                        context: "listener failed".into(),
                        source,
                    })
                }
                Err(e) => {
                    result = Err(RunError::Io {
                        context: "task failed".into(),
                        source: io::Error::other(e.to_string()),
                    })
                }
            }
        }
        result
    }

    /// Waits until a listener task ends by itself (an error) or returns `None` when
    /// cancelled; used to notice a dead listener while running.
    async fn next_failure(&mut self) -> Option<RunError> {
        loop {
            match self.tasks.join_next().await {
                None => std::future::pending::<()>().await,
                Some(Ok(Ok(()))) => {
                    if self.cancel.is_cancelled() {
                        return None;
                    }
                }
                Some(Ok(Err(source))) => {
                    return Some(RunError::Io {
                        context: "DNS listener failed".into(),
                        source,
                    });
                }
                Some(Err(e)) => {
                    return Some(RunError::Io {
                        context: "task failed".into(),
                        source: io::Error::other(e.to_string()),
                    });
                }
            }
        }
    }
}

/// `detour run`: serve until SIGTERM or SIGINT; reload on SIGHUP.
pub async fn run(config_path: &Path) -> Result<(), RunError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Register first: SIGHUP's default action would kill the process.
    let sig = |kind| {
        signal(kind).map_err(|source| RunError::Io {
            context: "cannot install signal handler".into(),
            source,
        })
    };
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;

    let config = Config::load(config_path)?;
    for w in &config.warnings {
        warn!("{w}");
    }
    let mut running = start(config, config_path).await?;
    info!("ready");
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading {}", config_path.display());
                match running.reload() {
                    Ok(()) => info!("reload done"),
                    Err(errors) => {
                        for e in errors.iter() {
                            error!("reload failed, still serving the previous config: {e}");
                        }
                    }
                }
            }
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
            failure = running.next_failure() => {
                if let Some(e) = failure {
                    return Err(e);
                }
            }
        }
    }
    running.shutdown().await?;
    info!("stopped");
    Ok(())
}
