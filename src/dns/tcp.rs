//! DNS over TCP (RFC 7766): length-prefixed queries answered in order, an idle timeout, and a
//! cap on connections that closes the longest-idle one rather than refusing newcomers.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_server::net::xfer::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::answer::{Reply, respond};
use crate::snapshot::SnapshotHandle;
use crate::telemetry;

/// TCP limits from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Close a connection with no complete query for this long.
    pub idle_timeout: Duration,
    /// Connections held at once.
    pub max_connections: usize,
}

/// Open connections: when a completed query last arrived, and how to close each.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, (Instant, CancellationToken)>>,
    next: AtomicU64,
}

impl Registry {
    /// Registers a connection; at the cap, first closes the one idle longest.
    fn admit(&self, max: usize) -> (u64, CancellationToken) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        while conns.len() >= max {
            let Some((&oldest, _)) = conns.iter().min_by_key(|(_, (t, _))| *t) else {
                break;
            };
            if let Some((_, t)) = conns.remove(&oldest) {
                t.cancel();
            }
        }
        conns.insert(id, (Instant::now(), token.clone()));
        (id, token)
    }

    fn touch(&self, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = conns.get_mut(&id) {
            e.0 = Instant::now();
        }
    }

    fn remove(&self, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.remove(&id);
    }
}

/// Accepts connections on `listener` until `cancel` fires; connections then finish the
/// answer they are writing and close.
pub async fn serve(
    listener: TcpListener,
    snapshots: SnapshotHandle,
    limits: Arc<Limits>,
    cancel: CancellationToken,
) -> io::Result<()> {
    let registry = Arc::new(Registry::default());
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, src) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep listening.
                    debug!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => break,
        };
        let (id, token) = registry.admit(limits.max_connections);
        let registry = registry.clone();
        let snapshots = snapshots.clone();
        let limits = limits.clone();
        let cancel = cancel.clone();
        conns.spawn(async move {
            let r = connection(
                stream, src, &snapshots, &limits, &cancel, &token, &registry, id,
            )
            .await;
            registry.remove(id);
            if let Err(e) = r {
                debug!(%src, error = %e, "TCP connection ended");
            }
        });
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    mut stream: TcpStream,
    src: SocketAddr,
    snapshots: &SnapshotHandle,
    limits: &Limits,
    shutdown: &CancellationToken,
    evicted: &CancellationToken,
    registry: &Registry,
    id: u64,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    loop {
        // Wait for a whole query: length prefix and body, within the idle timeout.
        let read = async {
            let len = stream.read_u16().await? as usize;
            buf.resize(len, 0);
            stream.read_exact(&mut buf).await?;
            io::Result::Ok(())
        };
        tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, read) => match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(()), // idle
            },
            _ = shutdown.cancelled() => return Ok(()),
            _ = evicted.cancelled() => return Ok(()),
        }
        registry.touch(id);
        let reply = {
            let snap = snapshots.load();
            respond(&snap, &buf, src, Protocol::Tcp)
        };
        telemetry::count_query(
            &buf,
            match &reply {
                Reply::Message(m) => Some(m),
                Reply::Stream(ms) => ms.first().map(Vec::as_slice),
                Reply::Drop => None,
            },
        );
        let messages = match reply {
            Reply::Drop => continue,
            Reply::Message(m) => vec![m],
            Reply::Stream(ms) => ms,
        };
        for m in messages {
            out.clear();
            out.extend_from_slice(&(m.len() as u16).to_be_bytes());
            out.extend_from_slice(&m);
            stream.write_all(&out).await?;
        }
    }
}
