//! DNS over TCP (RFC 7766): length-prefixed queries answered in order, an idle timeout, and a
//! cap on connections that closes the longest-idle one rather than refusing newcomers.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_server::net::xfer::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::answer::{Client, Reply, general};
use super::fast;
use crate::snapshot::SnapshotHandle;
use crate::telemetry::Tally;

/// TCP limits from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Close a connection with no complete query for this long.
    pub idle_timeout: Duration,
    /// Connections held at once.
    pub max_connections: usize,
    /// Connections held at once from one address (IPv6: one /64).
    pub max_per_source: usize,
}

/// Open connections: when a completed query last arrived, how to close each, and how many
/// each source holds.
#[derive(Default)]
struct Registry {
    open: Mutex<Open>,
    next: AtomicU64,
}

#[derive(Default)]
struct Open {
    conns: HashMap<u64, (Instant, CancellationToken, IpAddr)>,
    per_source: HashMap<IpAddr, usize>,
}

impl Open {
    fn remove(&mut self, id: u64) -> Option<CancellationToken> {
        let (_, token, src) = self.conns.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&src) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&src);
            }
        }
        Some(token)
    }
}

impl Registry {
    /// Registers a connection from `src`; at the cap, first closes the one idle longest.
    /// `None` when `src` already holds its share: the newcomer is to be closed.
    fn admit(&self, limits: &Limits, src: IpAddr) -> Option<(u64, CancellationToken)> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.per_source.get(&src).copied().unwrap_or(0) >= limits.max_per_source {
            return None;
        }
        while open.conns.len() >= limits.max_connections {
            let Some((&oldest, _)) = open.conns.iter().min_by_key(|(_, (t, _, _))| *t) else {
                break;
            };
            if let Some(t) = open.remove(oldest) {
                t.cancel();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        open.conns.insert(id, (Instant::now(), token.clone(), src));
        *open.per_source.entry(src).or_default() += 1;
        Some((id, token))
    }

    fn touch(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = open.conns.get_mut(&id) {
            e.0 = Instant::now();
        }
    }

    fn remove(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(id);
    }
}

/// Per-source refusals are logged at most once a minute.
static SOURCE_CAPPED: crate::telemetry::Throttle =
    crate::telemetry::Throttle::new(Duration::from_secs(60));

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
        // A connection closed to make room holds its descriptor until its task has run: at
        // most CLOSING of them at once, or the cap would not bound descriptors.
        while conns.len() >= limits.max_connections + crate::fds::CLOSING {
            tokio::select! {
                _ = conns.join_next() => {}
                _ = cancel.cancelled() => break,
            }
        }
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
        let Some((id, token)) = registry.admit(&limits, crate::proto::source_key(src)) else {
            metrics::counter!("detour_dns_tcp_refused_total", "why" => "per_source").increment(1);
            if let Some(held) = SOURCE_CAPPED.allow() {
                warn!(
                    source = %crate::proto::source_key(src),
                    "DNS/TCP: closing a connection from a source already holding {} (tcp_max_per_source); {held} more closed since the last such line",
                    limits.max_per_source
                );
            }
            continue;
        };
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

/// Bytes asked of the socket per read; a pipelining client's queries arrive several at once.
const READ: usize = 16 * 1024;
/// Answers gathered before they are written, so one write carries many.
const FLUSH: usize = 64 * 1024;

/// Serves one connection: reads whatever has arrived, answers every whole query in it, in
/// order, and writes the answers with one write, so a client that pipelines costs one read
/// and one write per batch rather than per query.
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
    let mut input: Vec<u8> = Vec::with_capacity(READ);
    let mut out: Vec<u8> = Vec::with_capacity(READ);
    let mut msg: Vec<u8> = Vec::with_capacity(512);
    let mut tally = Tally::default();
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    loop {
        // Answer every whole query in hand: a length prefix and that many bytes. One clock
        // reading (for cookies) serves the batch, as on UDP.
        let client = Client::new(src, Protocol::Tcp);
        let mut used = 0;
        while let Some(len) = input
            .get(used..used + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            && input.len() >= used + 2 + len
        {
            let query = &input[used + 2..used + 2 + len];
            used += 2 + len;
            // The Snapshot is let go before anything is awaited.
            let reply = {
                let snap = snapshots.load();
                if fast::answer(snap.for_source(src.ip()), query, &client, &mut msg) {
                    None
                } else {
                    Some(general(&snap, query, &client))
                }
            };
            let answered = match reply {
                None => {
                    frame(&mut out, &msg)?;
                    Some(&msg[..])
                }
                Some(Reply::Drop) => None,
                Some(Reply::Message(m)) => {
                    frame(&mut out, &m)?;
                    msg = m;
                    Some(&msg[..])
                }
                Some(Reply::Stream(ms)) => {
                    for m in &ms {
                        frame(&mut out, m)?;
                        if !flush(&mut stream, &mut out, FLUSH, limits, evicted).await? {
                            return Ok(());
                        }
                    }
                    msg = ms.into_iter().next().unwrap_or_default();
                    Some(&msg[..])
                }
            };
            tally.count(query, answered);
            if !flush(&mut stream, &mut out, FLUSH, limits, evicted).await? {
                return Ok(());
            }
        }
        if used > 0 {
            input.drain(..used);
            tally.flush();
            registry.touch(id);
            idle.as_mut()
                .reset(tokio::time::Instant::now() + limits.idle_timeout);
            if !flush(&mut stream, &mut out, 1, limits, evicted).await? {
                return Ok(());
            }
        }
        if input.capacity() - input.len() < READ / 4 {
            input.reserve(READ);
        }
        // Wait for more, within the idle timeout (a query trickling in does not reset it).
        tokio::select! {
            r = stream.read_buf(&mut input) => match r {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            },
            _ = &mut idle => return Ok(()),
            _ = shutdown.cancelled() => return Ok(()),
            _ = evicted.cancelled() => return Ok(()),
        }
    }
}

/// Writes and empties `out` once it holds at least `min` bytes; false when the connection
/// should close instead: the client has not taken the answers within the idle timeout (it
/// stopped reading), or the connection was evicted to admit another. A shutdown does not
/// interrupt it: the answer in hand is finished.
async fn flush(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    min: usize,
    limits: &Limits,
    evicted: &CancellationToken,
) -> io::Result<bool> {
    if out.len() < min {
        return Ok(true);
    }
    let written = tokio::select! {
        r = tokio::time::timeout(limits.idle_timeout, stream.write_all(out)) => match r {
            Ok(r) => r.map(|()| true)?,
            Err(_) => false,
        },
        _ = evicted.cancelled() => false,
    };
    out.clear();
    Ok(written)
}

/// Appends `m` to `out` with its two-byte length prefix. A message the prefix cannot
/// describe is an error (the connection closes) rather than a corrupt stream.
fn frame(out: &mut Vec<u8>, m: &[u8]) -> io::Result<()> {
    let len = u16::try_from(m.len()).map_err(|_| {
        io::Error::other(format!(
            "a {}-byte answer does not fit a TCP frame",
            m.len()
        ))
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(m);
    Ok(())
}
