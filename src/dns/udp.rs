//! DNS over UDP: one OS thread per socket (SO_REUSEPORT spreads clients across them), each
//! taking datagrams in batches with recvmmsg and sending the answers with one sendmmsg.
//!
//! Batching is what makes loopback and busy links cheap: one system call and one wake-up of
//! the peer per batch instead of per packet. A thread blocks at most `POLL` in recvmmsg, so
//! it notices shutdown quickly; it finishes the batch in hand before it stops.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::net::xfer::Protocol;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::answer::{Client, Reply, general};
use super::fast;
use super::rrl::{self, Limiter, Outcome};
use crate::proto::cookie;
use crate::snapshot::SnapshotHandle;
use crate::systemd::Beat;
use crate::telemetry::Tally;

/// Datagrams taken per system call.
const BATCH: usize = 32;
/// Largest query read; a longer datagram is cut, fails to parse, and gets FORMERR.
const MAX_QUERY: usize = 4096;
/// How long a thread waits for a datagram before it looks at the shutdown flag.
const POLL: Duration = Duration::from_millis(200);

/// Serves `sock` on the calling thread until `cancel` fires, answers passing through
/// `limiter` when response-rate limiting is on. Blocking: run it on its own thread
/// (`tokio::task::spawn_blocking`).
pub fn serve(
    sock: UdpSocket,
    snapshots: SnapshotHandle,
    limiter: Option<Arc<Limiter>>,
    beat: Beat,
    cancel: CancellationToken,
) -> io::Result<()> {
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(POLL))?;
    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; MAX_QUERY]; BATCH];
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    // One reply buffer per slot, reused: the fast path writes into it without allocating.
    let mut replies: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    let mut tally = Tally::default();
    let mut limited = rrl::Counts::default();
    while !cancel.is_cancelled() {
        // Alive (for systemd's watchdog): at least once per POLL, traffic or not.
        beat.beat();
        got.clear();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            match recvmmsg(
                fd,
                &mut recv_headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(msgs) => {
                    for m in msgs {
                        got.push((m.bytes, m.address));
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                // ICMP errors from earlier sends surface here; keep serving.
                Err(Errno::ECONNREFUSED | Errno::ECONNRESET) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let snap = snapshots.load();
        let now = cookie::now();
        // The rate limiter's clock, read once per batch like the cookie clock.
        let at = limiter.as_ref().map(|_| Instant::now());
        addrs.clear();
        for (i, (len, addr)) in got.iter().enumerate() {
            let Some((addr, src)) = addr.and_then(|a| Some((a, to_socket_addr(&a)?))) else {
                continue;
            };
            let query = &bufs[i][..(*len).min(MAX_QUERY)];
            let out = &mut replies[addrs.len()];
            let client = Client {
                src,
                protocol: Protocol::Udp,
                now,
            };
            let mut answered = fast::answer(snap.for_source(src.ip()), query, &client, out)
                || match general(&snap, query, &client) {
                    Reply::Message(m) => {
                        *out = m;
                        true
                    }
                    _ => false,
                };
            // Decided once the answer is known (its kind and zone are part of the key).
            if answered && let (Some(limiter), Some(at)) = (&limiter, at) {
                let outcome = limiter.check(&snap, query, out, &client, at);
                limited.note(outcome);
                answered = outcome != Outcome::Drop;
            }
            tally.count(query, answered.then_some(out.as_slice()));
            if answered {
                addrs.push(Some(addr));
            }
        }
        drop(snap);
        tally.flush();
        limited.flush();
        send_all(fd, &mut send_headers, &replies[..addrs.len()], &addrs);
    }
    Ok(())
}

/// Sends every reply, in as few sendmmsg calls as the kernel allows.
fn send_all(
    fd: i32,
    headers: &mut MultiHeaders<SockaddrStorage>,
    replies: &[Vec<u8>],
    addrs: &[Option<SockaddrStorage>],
) {
    let mut start = 0;
    while start < replies.len() {
        let slices: Vec<[IoSlice<'_>; 1]> =
            replies[start..].iter().map(|r| [IoSlice::new(r)]).collect();
        match sendmmsg(
            fd,
            headers,
            slices.iter(),
            &addrs[start..],
            [],
            MsgFlags::empty(),
        ) {
            Ok(sent) => {
                let n = sent.count();
                if n == 0 {
                    return;
                }
                start += n;
            }
            Err(Errno::EINTR) => {}
            // One answer larger than the interface allows unfragmented: skip it, send the rest.
            Err(Errno::EMSGSIZE) => start += 1,
            // The send queue is full or the peer is gone: drop the rest of this batch (the
            // clients retry), and say so only for unexpected errors.
            Err(Errno::EAGAIN | Errno::ENOBUFS | Errno::ECONNREFUSED) => return,
            Err(e) => {
                warn!(error = %e, "cannot send UDP answers");
                return;
            }
        }
    }
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}
