//! DNS Cookies (RFC 7873): answers echo a client's cookie with a Server Cookie built as
//! RFC 9018 says, so that every server of an anycast set sharing `cookie_secret` hands out
//! and accepts the same cookies, whatever software each runs.
//!
//! A client that gets its cookie back knows the answer is not an off-path forgery; a
//! resolver that sends the server cookie back proves it saw an earlier answer. detour never
//! requires cookies: a query without one, or with a stale one, is answered as usual, with a
//! fresh cookie when it sent one (only a question-less query for a cookie gets BADCOOKIE
//! for a bad one, RFC 7873 §5.4; see `answer.rs`).

use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::OnceLock;

use siphasher::sip::SipHasher24;

/// EDNS option code of COOKIE.
pub const CODE: u16 = 10;
/// Bytes of a client cookie.
pub const CLIENT_LEN: usize = 8;
/// Bytes of the COOKIE option data in detour's answers: the client cookie and a 16-byte
/// Server Cookie (version 1, reserved, timestamp, hash).
pub const ANSWER_LEN: usize = CLIENT_LEN + 16;
/// A Server Cookie older than this (seconds) is replaced by a fresh one (RFC 9018 §4.3).
const REFRESH: u32 = 1800;
/// A Server Cookie is valid for an hour, and up to five minutes ahead of our clock (§4.3).
const LIFETIME: u32 = 3600;
const AHEAD: u32 = 300;

/// Whether `len` bytes of COOKIE option data are well formed: a client cookie alone, or
/// with a server cookie of 8 to 32 bytes (RFC 7873 §4). Anything else is FORMERR.
pub fn well_formed(len: usize) -> bool {
    len == CLIENT_LEN || (CLIENT_LEN + 8..=CLIENT_LEN + 32).contains(&len)
}

/// Seconds since the epoch, modulo 2^32, as Server Cookies count time (serial arithmetic).
pub fn now() -> u32 {
    // Modulo 2^32 on purpose: cookie times compare in serial arithmetic.
    super::unix_seconds() as u32
}

/// The Server Secret: the SipHash-2-4 key of every Server Cookie detour makes. Its `Debug`
/// never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 16]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A `cookie_secret` that is not 32 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected 32 hexadecimal digits (16 bytes, e.g. `openssl rand -hex 16`), got {0} characters"
)]
pub struct SecretError(pub usize);

impl Secret {
    /// A secret from 32 hexadecimal digits (`cookie_secret`), as BIND's `cookie-secret`
    /// and PowerDNS's `edns-cookie-secret` take it.
    pub fn from_hex(hex: &str) -> Result<Secret, SecretError> {
        let digits = hex.as_bytes();
        let refused = || SecretError(hex.chars().count());
        if digits.len() != 32 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(refused());
        }
        let mut key = [0u8; 16];
        for (k, pair) in key.iter_mut().zip(digits.chunks(2)) {
            let text = std::str::from_utf8(pair).map_err(|_| refused())?;
            *k = u8::from_str_radix(text, 16).map_err(|_| refused())?;
        }
        Ok(Secret(key))
    }

    /// The random secret this process made at its first use, for a config that sets none:
    /// reloads keep it, a restart makes another (clients then get fresh cookies). `None`
    /// only if the system had no random bytes (cookies are then off, and a warning says so).
    pub fn process() -> Option<&'static Secret> {
        static SECRET: OnceLock<Option<Secret>> = OnceLock::new();
        SECRET
            .get_or_init(|| {
                let mut key = [0u8; 16];
                match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key) {
                    Ok(()) => Some(Secret(key)),
                    Err(_) => {
                        tracing::warn!("no random bytes for a DNS cookie secret: cookies are off");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// The COOKIE option data answering `data` from `ip` at `now`: the client cookie, then
    /// the server cookie the client sent if it is ours and less than half an hour old, else
    /// a fresh one. `None` when `data` is not [`well_formed`].
    pub fn answer(&self, data: &[u8], ip: IpAddr, now: u32) -> Option<[u8; ANSWER_LEN]> {
        if !well_formed(data.len()) {
            return None;
        }
        let mut out = [0u8; ANSWER_LEN];
        out[..CLIENT_LEN].copy_from_slice(&data[..CLIENT_LEN]);
        let sent = &data[CLIENT_LEN..];
        let keep = sent.len() == 16 && {
            let age = now.wrapping_sub(u32::from_be_bytes([sent[4], sent[5], sent[6], sent[7]]));
            // Issued within the last half hour (not ahead of our clock), and ours.
            age < REFRESH && self.valid(&data[..CLIENT_LEN], sent, ip, now)
        };
        if keep {
            out[CLIENT_LEN..].copy_from_slice(sent);
        } else {
            out[CLIENT_LEN..].copy_from_slice(&self.server_cookie(&data[..CLIENT_LEN], ip, now));
        }
        Some(out)
    }

    /// Whether `server` is a Server Cookie this secret made for `client` and `ip`, issued
    /// at most an hour before `now` and at most five minutes after it.
    pub fn valid(&self, client: &[u8], server: &[u8], ip: IpAddr, now: u32) -> bool {
        if server.len() != 16 || server[0] != 1 {
            return false;
        }
        let issued = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
        let age = now.wrapping_sub(issued);
        let ahead = issued.wrapping_sub(now);
        if age > LIFETIME && ahead > AHEAD {
            return false;
        }
        // The version and reserved bytes are hashed as sent (RFC 9018 §4.2).
        let mut head = [0u8; 8];
        head.copy_from_slice(&server[..8]);
        // Compared in constant time, so that timing tells nothing about the right hash.
        let hash = self.hash(client, &head, ip);
        hash.iter()
            .zip(&server[8..16])
            .fold(0, |diff, (a, b)| diff | (a ^ b))
            == 0
    }

    /// A fresh Server Cookie: version 1, three reserved zero bytes, the timestamp, and the
    /// SipHash-2-4 of the client cookie, those eight bytes and the client's address.
    fn server_cookie(&self, client: &[u8], ip: IpAddr, now: u32) -> [u8; 16] {
        let mut head = [0u8; 8];
        head[0] = 1;
        head[4..].copy_from_slice(&now.to_be_bytes());
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&head);
        out[8..].copy_from_slice(&self.hash(client, &head, ip));
        out
    }

    fn hash(&self, client: &[u8], head: &[u8; 8], ip: IpAddr) -> [u8; 8] {
        let mut h = SipHasher24::new_with_key(&self.0);
        h.write(client);
        h.write(head);
        // A v4-mapped IPv6 source (a dual-stack socket) is the IPv4 client it stands for.
        match ip.to_canonical() {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        h.finish().to_le_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn secret(h: &str) -> Secret {
        Secret::from_hex(h).unwrap()
    }

    // RFC 9018 Appendix A, each exchange in turn.

    #[test]
    fn a1_a_client_cookie_alone_learns_a_server_cookie() {
        let s = secret("e5e973e5a6b2a43f48e7dc849e37bfcf");
        let ip: IpAddr = "198.51.100.100".parse().unwrap();
        let got = s
            .answer(&bytes("2464c4abcf10c957"), ip, 1559731985)
            .unwrap();
        assert_eq!(
            hex(&got),
            "2464c4abcf10c957010000005cf79f111f8130c3eee29480"
        );
        // Sent back within the half hour, it is ours and echoed as it is.
        assert_eq!(s.answer(&got, ip, 1559731985 + 600), Some(got));
        // From another address, it is not ours: a fresh one.
        let elsewhere: IpAddr = "198.51.100.101".parse().unwrap();
        assert_ne!(s.answer(&got, elsewhere, 1559731985 + 600), Some(got));
    }

    #[test]
    fn a2_a_cookie_older_than_half_an_hour_is_renewed() {
        let s = secret("e5e973e5a6b2a43f48e7dc849e37bfcf");
        let ip: IpAddr = "198.51.100.100".parse().unwrap();
        let sent = bytes("2464c4abcf10c957010000005cf79f111f8130c3eee29480");
        assert!(s.valid(&sent[..8], &sent[8..], ip, 1559734385));
        assert_eq!(
            hex(&s.answer(&sent, ip, 1559734385).unwrap()),
            "2464c4abcf10c957010000005cf7a871d4a564a1442aca77"
        );
    }

    #[test]
    fn a3_reserved_bytes_are_hashed_as_sent() {
        let s = secret("e5e973e5a6b2a43f48e7dc849e37bfcf");
        let ip: IpAddr = "203.0.113.203".parse().unwrap();
        let sent = bytes("fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5");
        assert!(s.valid(&sent[..8], &sent[8..], ip, 1559727985));
        assert_eq!(
            hex(&s.answer(&sent, ip, 1559734700).unwrap()),
            "fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e"
        );
    }

    #[test]
    fn a4_ipv6_and_a_new_secret() {
        let old = secret("dd3bdf9344b678b185a6f5cb60fca715");
        let new = secret("445536bcd2513298075a5d379663c962");
        let ip: IpAddr = "2001:db8:220:1:59de:d0f4:8769:82b8".parse().unwrap();
        let sent = bytes("22681ab97d52c298010000005cf7c57926556bd0934c72f8");
        assert!(old.valid(&sent[..8], &sent[8..], ip, 1559741961));
        assert!(!new.valid(&sent[..8], &sent[8..], ip, 1559741961));
        assert_eq!(
            hex(&new.answer(&sent, ip, 1559741961).unwrap()),
            "22681ab97d52c298010000005cf7c609a6bb79d16625507a"
        );
    }

    #[test]
    fn lifetimes_lengths_and_secrets() {
        let s = secret("e5e973e5a6b2a43f48e7dc849e37bfcf");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let c = s.answer(&[9; 8], ip, 1_000_000).unwrap();
        let valid_at = |now| s.valid(&c[..8], &c[8..], ip, now);
        assert!(valid_at(1_000_000 + 3600) && !valid_at(1_000_000 + 3601));
        assert!(valid_at(1_000_000 - 300) && !valid_at(1_000_000 - 301));
        // Across the 2^32 wrap of the clock (serial arithmetic).
        let w = s.answer(&[9; 8], ip, u32::MAX - 10).unwrap();
        assert!(s.valid(&w[..8], &w[8..], ip, 20));
        // A v4-mapped source is the IPv4 client.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(s.valid(&c[..8], &c[8..], mapped, 1_000_000));
        assert!(well_formed(8) && well_formed(16) && well_formed(40));
        assert!(!well_formed(7) && !well_formed(9) && !well_formed(15) && !well_formed(41));
        assert!(Secret::from_hex("e5e973e5a6b2a43f48e7dc849e37bfc").is_err());
        assert!(Secret::from_hex("e5e973e5a6b2a43f48e7dc849e37bfcg").is_err());
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert!(s.answer(&[9; 7], ip, 0).is_none() && s.answer(&[9; 12], ip, 0).is_none());
        // A forged hash, one bit off, is not valid.
        let mut forged = c;
        forged[23] ^= 1;
        assert!(!s.valid(&forged[..8], &forged[8..], ip, 1_000_000));
    }
}
