//! DNS over UDP: one receive loop per socket, each answering in turn from the Snapshot.

use std::io;

use hickory_server::net::xfer::Protocol;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::answer::{Reply, respond};
use crate::snapshot::SnapshotHandle;
use crate::telemetry;

/// Largest datagram read; anything longer is cut and then fails to parse (FORMERR).
const MAX_DATAGRAM: usize = 65_535;

/// Receives and answers datagrams on `sock` until `cancel` fires.
pub async fn serve(
    sock: UdpSocket,
    snapshots: SnapshotHandle,
    cancel: CancellationToken,
) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, src) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(e),
            },
            _ = cancel.cancelled() => return Ok(()),
        };
        let reply = {
            let snap = snapshots.load();
            respond(&snap, &buf[..len], src, Protocol::Udp)
        };
        telemetry::count_query(
            &buf[..len],
            match &reply {
                Reply::Message(m) => Some(m),
                _ => None,
            },
        );
        if let Reply::Message(m) = reply
            && let Err(e) = sock.send_to(&m, src).await
            && !is_transient(&e)
        {
            warn!(%src, error = %e, "cannot send UDP answer");
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc_enobufs())
}

/// ENOBUFS on Linux: the send queue is momentarily full.
const fn libc_enobufs() -> i32 {
    105
}
