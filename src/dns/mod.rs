//! The DNS server: UDP and TCP listeners on every `dns_listen`, answering from the Snapshot.
//!
//! [`answer`] turns one message into its reply (transfers included: AXFR, and IXFR from each
//! zone's journal in the Snapshot), with DNS Cookies and TSIG from [`crate::proto`]; [`fast`]
//! serves the answers [`crate::zone::compiled`] holds, which most queries get;
//! [`secondaries`] sends NOTIFY; [`udp`] and [`tcp`] move bytes, UDP answers passing
//! through [`rrl`] (response-rate limiting) when `[server.rrl]` turns it on. Listeners are
//! detour's own (not hickory's `Server`) for two reasons: hickory spawns a task per datagram,
//! and it has no cap on TCP connections, which the contract needs so that idle TCP clients
//! cannot starve anyone else.

pub mod answer;
pub mod fast;
pub mod rrl;
pub mod secondaries;
pub mod tcp;
pub mod udp;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::snapshot::SnapshotHandle;

/// Sockets bound for one `dns_listen` address (UDP and TCP share the port).
#[derive(Debug)]
pub struct Bound {
    /// The address actually bound (port resolved when 0 was asked for).
    pub addr: SocketAddr,
    udp: Vec<std::net::UdpSocket>,
    tcp: std::net::TcpListener,
}

/// Binds UDP (`workers` sockets with SO_REUSEPORT) and TCP on `addr`. With port 0, UDP picks
/// the port and TCP binds the same one. `max_payload` (`udp_max_payload`) decides whether UDP
/// answers may be fragmented.
pub fn bind(addr: SocketAddr, workers: usize, max_payload: u16) -> io::Result<Bound> {
    // With port 0 the port UDP picks may be taken for TCP: try a few ports.
    let tries = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        match bind_once(addr, workers.max(1), max_payload) {
            Ok(b) => return Ok(b),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

fn bind_once(addr: SocketAddr, workers: usize, max_payload: u16) -> io::Result<Bound> {
    let first = udp_socket(addr, max_payload)?;
    let addr = first.local_addr()?;
    let mut udp = vec![first];
    for _ in 1..workers {
        udp.push(udp_socket(addr, max_payload)?);
    }
    let tcp = tcp_listener(addr)?;
    Ok(Bound { addr, udp, tcp })
}

fn udp_socket(addr: SocketAddr, max_payload: u16) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM,
        Some(SockProtocol::UDP),
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    // Room for bursts while a worker is busy.
    let _ = s.set_recv_buffer_size(4 << 20);
    no_fragments(&s, addr.is_ipv6(), max_payload)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Largest `udp_max_payload` whose answers fit any path of the IPv6 minimum MTU (1280 bytes
/// less 48 of headers), the figure of DNS Flag Day 2020.
const FITS_ANY_PATH: u16 = 1232;

/// How answers meet the path MTU (RFC 9715). Answers capped at [`FITS_ANY_PATH`] are sent
/// with DF set and never fragmented, ignoring the kernel's path MTU cache (PROBE): an
/// answer is never split into fragments an attacker could forge, and a spoofed ICMP
/// "fragmentation needed" cannot make sends fail. With a larger cap, answers may still be
/// fragmented, but the cache is ignored too (OMIT, as Knot does). Both also spare the
/// kernel a path MTU lookup per packet, and PROBE the IP ID generator.
fn no_fragments(s: &Socket, v6: bool, max_payload: u16) -> io::Result<()> {
    use rustix::net::sockopt::{
        Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery, set_ip_mtu_discover, set_ipv6_mtu_discover,
    };
    let fits = max_payload <= FITS_ANY_PATH;
    if v6 {
        let mode = if fits {
            Ipv6PathMtuDiscovery::PROBE
        } else {
            Ipv6PathMtuDiscovery::OMIT
        };
        set_ipv6_mtu_discover(s, mode)?;
    } else {
        let mode = if fits {
            Ipv4PathMtuDiscovery::PROBE
        } else {
            Ipv4PathMtuDiscovery::OMIT
        };
        set_ip_mtu_discover(s, mode)?;
    }
    Ok(())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Starts every listener of `bound` on the current tokio runtime. Tasks stop when `cancel`
/// fires, after finishing the answers they are writing.
///
/// Each UDP worker registers with `liveness`, so that a stuck one stops systemd's watchdog.
/// The UDP workers of every address share one response-rate limiter (`[server.rrl]`, read
/// here once: like the rest of `[server]`, a change takes effect at the next start).
pub fn serve(
    bound: Vec<Bound>,
    caps: crate::fds::Caps,
    snapshots: SnapshotHandle,
    liveness: &crate::systemd::Liveness,
    cancel: CancellationToken,
    tasks: &mut JoinSet<io::Result<()>>,
) -> io::Result<()> {
    tasks.spawn(secondaries::run(snapshots.clone(), cancel.clone()));
    let limits = snapshots.load().config.server.rrl;
    let limiter = rrl::Limiter::new(&limits).map(Arc::new);
    if limiter.is_some() {
        tracing::info!("DNS/UDP response-rate limiting: {limits}");
    }
    for b in bound {
        for (i, s) in b.udp.into_iter().enumerate() {
            let snapshots = snapshots.clone();
            let limiter = limiter.clone();
            let cancel = cancel.clone();
            let beat = liveness.register(format!("DNS/UDP worker {} on {}", i + 1, b.addr));
            let work = move || udp::serve(s, snapshots, limiter, beat, cancel);
            tasks.spawn(async move {
                tokio::task::spawn_blocking(work)
                    .await
                    .map_err(io::Error::other)?
            });
        }
        let listener = tokio::net::TcpListener::from_std(b.tcp)?;
        let limits = {
            let snap = snapshots.load();
            tcp::Limits {
                idle_timeout: snap.config.server.tcp_idle_timeout,
                max_connections: caps.dns_tcp,
                max_per_source: snap.config.server.tcp_max_per_source,
            }
        };
        tasks.spawn(tcp::serve(
            listener,
            snapshots.clone(),
            Arc::new(limits),
            cancel.clone(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::sockopt::{
        Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery, ip_mtu_discover, ipv6_mtu_discover,
    };

    #[test]
    fn udp_answers_are_never_fragmented_when_they_fit_any_path() {
        let v4: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let s = udp_socket(v4, 1232).unwrap();
        assert_eq!(ip_mtu_discover(&s).unwrap(), Ipv4PathMtuDiscovery::PROBE);
        let s = udp_socket(v4, 4096).unwrap();
        assert_eq!(ip_mtu_discover(&s).unwrap(), Ipv4PathMtuDiscovery::OMIT);
        let v6: SocketAddr = "[::1]:0".parse().unwrap();
        if let Ok(s) = udp_socket(v6, 1232) {
            assert_eq!(ipv6_mtu_discover(&s).unwrap(), Ipv6PathMtuDiscovery::PROBE);
        }
    }
}
