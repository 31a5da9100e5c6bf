//! Serving HTTP for the page and the admin API: one accept loop for TCP, TLS and unix
//! listeners that bounds what a client can hold.
//!
//! A slow or greedy client must not take the daemon's file descriptors, which its probes and
//! state files need too. So each listener has a cap on open connections (at the cap the
//! connection idle longest is closed to let a newcomer in, as the DNS TCP listener does) and
//! a cap per source address (IPv6: per /64; more are closed at once). A request's headers must arrive within
//! `header_timeout`; a connection with no request in progress and no bytes moving for
//! `idle_timeout` is closed; a TLS handshake gets `header_timeout` too. Accept errors (out of
//! descriptors) back off and are logged at most once a minute.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;
use tracing::{debug, warn};

use crate::config::HttpLimits;
use crate::telemetry::Throttle;

/// After cancel, connections get this long to finish before they are cut.
pub const DRAIN: Duration = Duration::from_secs(5);

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// TCP, optionally with TLS on top.
    Tcp(TcpListener),
    /// A unix socket (the admin API).
    Unix(UnixListener),
}

type Conn = Either<TcpStream, UnixStream>;

impl Listener {
    /// The next connection and, for TCP, who it is from.
    async fn accept(&self) -> io::Result<(Conn, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                // Small answers go out at once.
                s.set_nodelay(true)?;
                Ok((Either::Left(s), Some(peer)))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Either::Right(s), None))
            }
        }
    }
}

/// What `serve` needs besides the listener.
#[derive(Clone)]
pub struct Site {
    /// The routes.
    pub router: Router,
    /// TLS on top of TCP, if any.
    pub tls: Option<TlsAcceptor>,
    /// Caps and timeouts.
    pub limits: HttpLimits,
    /// For logs: "page", "page (HTTPS)", "admin API".
    pub name: &'static str,
}

/// Accept errors and refusals are logged at most this often, per kind, for every listener.
static ACCEPT_FAILED: Throttle = Throttle::new(Duration::from_secs(60));
static SOURCE_CAPPED: Throttle = Throttle::new(Duration::from_secs(60));

/// One open connection, as the accept loop sees it.
struct Open {
    activity: Arc<Activity>,
    /// Closes it at once (evicted to make room).
    stop: CancellationToken,
    src: Option<IpAddr>,
}

/// Open connections by task, and how many each source holds.
#[derive(Default)]
struct Registry {
    open: HashMap<tokio::task::Id, Open>,
    per_source: HashMap<IpAddr, usize>,
}

impl Registry {
    fn remove(&mut self, id: tokio::task::Id) {
        let Some(gone) = self.open.remove(&id) else {
            return;
        };
        if let Some(src) = gone.src
            && let Some(n) = self.per_source.get_mut(&src)
        {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&src);
            }
        }
    }

    /// The connection idle longest (no request in progress), if any.
    fn longest_idle(&self) -> Option<(tokio::task::Id, Duration)> {
        self.open
            .iter()
            .filter_map(|(id, o)| o.activity.idle_for().map(|d| (*id, d)))
            .max_by_key(|(_, d)| *d)
    }
}

/// Serves `site` on `listener` until `cancel`; then stops accepting, asks each connection to
/// finish, and cuts those still open after [`DRAIN`].
///
/// At `max_connections` a newcomer still gets in: the connection idle longest (a slowloris
/// that never finishes its headers, a browser's spare keep-alive) is closed to make room.
/// Only when every connection has a request in progress does the loop stop accepting.
pub async fn serve(listener: Listener, site: Site, cancel: CancellationToken) -> io::Result<()> {
    let limits = site.limits;
    let mut conns: JoinSet<()> = JoinSet::new();
    let mut reg = Registry::default();
    // While every connection is busy, look again this often for one that became idle.
    let mut recheck = tokio::time::interval(Duration::from_millis(100));
    loop {
        // Counted by live tasks: an evicted connection holds its descriptor until its task
        // has run, so at most CLOSING of them may be on their way out at once.
        let room = conns.len() < limits.max_connections
            || (conns.len() < limits.max_connections + crate::fds::CLOSING
                && reg.longest_idle().is_some());
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(done) = conns.join_next_with_id(), if !conns.is_empty() => {
                reg.remove(match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                });
            }
            _ = recheck.tick(), if !room => {}
            accepted = listener.accept(), if room => match accepted {
                Ok((io, peer)) => {
                    let src = peer.map(crate::proto::source_key);
                    if let Some(src) = src
                        && reg.per_source.get(&src).copied().unwrap_or(0) >= limits.max_per_source
                    {
                        refuse(&site, "per_source");
                        if let Some(held) = SOURCE_CAPPED.allow() {
                            warn!(
                                source = %src,
                                "{}: closing a connection from a source already holding {} (http_max_per_source); {held} more closed since the last such line",
                                site.name, limits.max_per_source
                            );
                        }
                        continue;
                    }
                    if conns.len() >= limits.max_connections
                        && let Some((id, _)) = reg.longest_idle()
                    {
                        refuse(&site, "evicted");
                        if let Some(o) = reg.open.get(&id) {
                            o.stop.cancel();
                        }
                        reg.remove(id);
                    }
                    let activity = Arc::new(Activity::new());
                    let stop = CancellationToken::new();
                    let task = conns.spawn(connection(
                        io,
                        peer,
                        site.clone(),
                        activity.clone(),
                        stop.clone(),
                        cancel.clone(),
                    ));
                    if let Some(src) = src {
                        *reg.per_source.entry(src).or_default() += 1;
                    }
                    reg.open.insert(task.id(), Open { activity, stop, src });
                }
                Err(e) => {
                    metrics::counter!("detour_http_accept_errors_total", "listener" => site.name).increment(1);
                    if let Some(held) = ACCEPT_FAILED.allow() {
                        warn!("{}: accept failed: {e} ({held} more since the last such line)", site.name);
                    }
                    // Out of descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        debug!(
            "{}: cutting connections still open after {DRAIN:?}",
            site.name
        );
        conns.shutdown().await;
    }
    Ok(())
}

/// Counts a connection closed by a cap.
fn refuse(site: &Site, why: &'static str) {
    metrics::counter!("detour_http_closed_total", "listener" => site.name, "why" => why)
        .increment(1);
}

/// One connection: the TLS handshake if any (bounded), then HTTP; `stop` closes it at once.
async fn connection(
    io: Conn,
    peer: Option<SocketAddr>,
    site: Site,
    activity: Arc<Activity>,
    stop: CancellationToken,
    cancel: CancellationToken,
) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = serve_connection(io, peer, &site, activity, &cancel) => {}
    }
}

async fn serve_connection(
    io: Conn,
    peer: Option<SocketAddr>,
    site: &Site,
    activity: Arc<Activity>,
    cancel: &CancellationToken,
) {
    let Some(acceptor) = &site.tls else {
        return http(io, peer, site, activity, cancel).await;
    };
    let handshake = tokio::time::timeout(site.limits.header_timeout, acceptor.accept(io));
    let stream = tokio::select! {
        _ = cancel.cancelled() => return,
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(?peer, "{}: TLS handshake failed: {e}", site.name);
                return;
            }
            Err(_) => {
                debug!(?peer, "{}: TLS handshake timed out", site.name);
                return;
            }
        },
    };
    http(stream, peer, site, activity, cancel).await;
}

/// HTTP/1.1 (and HTTP/2 when TLS negotiated it) on `io` until the client is done, it idles
/// past `idle_timeout`, or cancel.
async fn http<IO>(
    io: IO,
    peer: Option<SocketAddr>,
    site: &Site,
    activity: Arc<Activity>,
    cancel: &CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = Watched {
        io,
        activity: activity.clone(),
    };
    let router = site.router.clone();
    let busy = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        if let Some(p) = peer {
            req.extensions_mut().insert(ConnectInfo(p));
        }
        let request = Busy::new(busy.clone());
        // A Router is always ready: calling it without poll_ready is what axum's own
        // server does too.
        let answer = router.clone().call(req);
        async move {
            let r = answer.await;
            drop(request);
            r
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(site.limits.header_timeout);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = site.limits.idle_timeout;
    let check = tokio::time::sleep(idle);
    tokio::pin!(check);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(?peer, "{}: connection ended: {e}", site.name);
                }
                return;
            }
            _ = cancel.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = check.as_mut() => {
                match activity.idle_for() {
                    Some(quiet) if quiet >= idle => {
                        debug!(?peer, "{}: closing a connection idle for {quiet:?}", site.name);
                        return;
                    }
                    Some(quiet) => check.as_mut().reset(tokio::time::Instant::now() + (idle - quiet)),
                    // A request is being answered: look again later.
                    None => check.as_mut().reset(tokio::time::Instant::now() + idle),
                }
            }
        }
    }
}

/// When a connection last moved bytes, and how many of its requests are being answered.
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last read or write that moved bytes.
    last: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long nothing moved, or `None` while a request is being answered.
    fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        Some(self.start.elapsed().saturating_sub(last))
    }
}

/// Marks a request in progress for as long as it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: Arc<Activity>) -> Self {
        a.busy.fetch_add(1, Ordering::Relaxed);
        Busy(a)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// An I/O stream that records when bytes last moved.
struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        use crate::proto::source_key as source_of;
        let a: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        assert_eq!(source_of(a), "192.0.2.7".parse::<IpAddr>().unwrap());
        let b: SocketAddr = "[2001:db8:1:2:aaaa::1]:443".parse().unwrap();
        let c: SocketAddr = "[2001:db8:1:2:bbbb::9]:443".parse().unwrap();
        assert_eq!(source_of(b), source_of(c));
        assert_eq!(source_of(b), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:1".parse().unwrap();
        assert_eq!(source_of(mapped), source_of(a));
    }
}
