//! Wire-level DNS helpers that know nothing of detour's config or state: TSIG (RFC 8945)
//! signing and verifying, and DNS Cookies (RFC 7873, Server Cookies per RFC 9018). The
//! config reads their keys and secrets; the DNS listeners use them per message.

pub mod cookie;
pub mod tsig;

/// Seconds since the Unix epoch: the one wall-clock reading TSIG, DNS Cookies and serial
/// floors take (0 for a clock set before 1970).
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whose share a connection counts against: its address, or its /64 for IPv6 (one host
/// often holds a whole /64); an IPv4-mapped address counts as the IPv4 one.
pub fn source_key(peer: std::net::SocketAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv6Addr};
    match peer.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = !0u128 << 64;
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
        v4 => v4,
    }
}

/// The big-endian `u16` at `i` of a wire message, if the message is long enough.
pub fn u16_at(raw: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*raw.get(i)?, *raw.get(i + 1)?]))
}
