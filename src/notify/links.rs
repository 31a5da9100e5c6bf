//! Signed, expiring links in messages: acknowledge a page, confirm or cancel a subscription.
//! A link carries what it acts on and when it expires, with an HMAC-SHA-256 over both (and
//! its purpose) under a key kept in `state_dir/links.key` (0600, made at first start). No
//! admin token ever appears in a message; a link does one thing, for one page or address,
//! until it expires.
//!
//! Token: `base64url(payload) "." expiry "." base64url(mac[..16])`.

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ring::hmac;

/// The key file inside `state_dir`.
pub const FILE: &str = "links.key";

/// Bytes of MAC kept in a token: 128 bits.
const MAC_LEN: usize = 16;

/// What a link does; part of what is signed, so a link for one purpose never works for
/// another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Acknowledge an on-call page.
    Ack,
    /// Confirm a subscription (double opt-in).
    Confirm,
    /// Cancel a subscription.
    Unsubscribe,
}

impl Purpose {
    fn tag(self) -> &'static [u8] {
        match self {
            Purpose::Ack => b"ack",
            Purpose::Confirm => b"confirm",
            Purpose::Unsubscribe => b"unsubscribe",
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not a token of ours (garbled, cut, or signed with another key).
    #[error("this link is not valid (it may have been cut short when copied)")]
    Invalid,
    /// Ours, but too old.
    #[error("this link expired on {0}")]
    Expired(DateTime<Utc>),
}

/// Signs and checks tokens.
#[derive(Clone)]
pub struct Signer {
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer")
    }
}

/// `state_dir/links.key`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

impl Signer {
    /// A signer with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The signer of `state_dir`: its key file, made (32 random bytes, mode 0600) when absent.
    pub fn load_or_create(state_dir: &Path) -> io::Result<Self> {
        let p = path(state_dir);
        match std::fs::read(&p) {
            Ok(bytes) if bytes.len() >= 32 => return Ok(Self::new(&bytes)),
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is shorter than 32 bytes: remove it to have a new one made (links already sent stop working)",
                    p.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
        }
        let secret: [u8; 32] = rand::random();
        crate::store::atomic_write_mode(&p, &secret, 0o600)?;
        Ok(Self::new(&secret))
    }

    fn mac(&self, purpose: Purpose, payload: &[u8], expiry: i64) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(purpose.tag());
        ctx.update(&[0]);
        ctx.update(&expiry.to_be_bytes());
        ctx.update(payload);
        ctx.sign().as_ref()[..MAC_LEN].to_vec()
    }

    /// A token for `payload`, good until `expires`.
    pub fn sign(&self, purpose: Purpose, payload: &str, expires: DateTime<Utc>) -> String {
        let expiry = expires.timestamp();
        let mac = self.mac(purpose, payload.as_bytes(), expiry);
        format!(
            "{}.{expiry}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// The payload of `token` if it is ours, for `purpose`, and not expired at `now`.
    pub fn verify(
        &self,
        purpose: Purpose,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<String, Refused> {
        let mut parts = token.split('.');
        let (Some(p), Some(e), Some(m), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refused::Invalid);
        };
        let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| Refused::Invalid)?;
        let expiry: i64 = e.parse().map_err(|_| Refused::Invalid)?;
        let mac = URL_SAFE_NO_PAD.decode(m).map_err(|_| Refused::Invalid)?;
        let want = self.mac(purpose, &payload, expiry);
        // Constant time: a forger learns nothing from how long a refusal takes.
        if mac.len() != MAC_LEN || !bool::from(subtle::ConstantTimeEq::ct_eq(&mac[..], &want[..])) {
            return Err(Refused::Invalid);
        }
        let expires = DateTime::from_timestamp(expiry, 0).ok_or(Refused::Invalid)?;
        if now >= expires {
            return Err(Refused::Expired(expires));
        }
        String::from_utf8(payload).map_err(|_| Refused::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_for_its_purpose_until_it_expires() {
        let s = Signer::new(&[7; 32]);
        let now = Utc::now();
        let later = now + chrono::Duration::hours(1);
        let t = s.sign(Purpose::Ack, "k7q2:Dana", later);
        assert_eq!(s.verify(Purpose::Ack, &t, now).unwrap(), "k7q2:Dana");
        assert_eq!(
            s.verify(Purpose::Confirm, &t, now),
            Err(Refused::Invalid),
            "another purpose"
        );
        assert!(matches!(
            s.verify(Purpose::Ack, &t, later),
            Err(Refused::Expired(_))
        ));
        let other = Signer::new(&[8; 32]);
        assert_eq!(other.verify(Purpose::Ack, &t, now), Err(Refused::Invalid));
        // A changed payload or expiry, a cut token: refused.
        let (_, rest) = t.split_once('.').unwrap();
        let forged = format!("{}.{rest}", URL_SAFE_NO_PAD.encode("k7q2:Sam"));
        assert_eq!(s.verify(Purpose::Ack, &forged, now), Err(Refused::Invalid));
        let mut parts: Vec<&str> = t.split('.').collect();
        let far = (later + chrono::Duration::days(9)).timestamp().to_string();
        parts[1] = &far;
        assert_eq!(
            s.verify(Purpose::Ack, &parts.join("."), now),
            Err(Refused::Invalid)
        );
        assert_eq!(
            s.verify(Purpose::Ack, &t[..t.len() - 3], now),
            Err(Refused::Invalid)
        );
        assert_eq!(s.verify(Purpose::Ack, "", now), Err(Refused::Invalid));
    }

    #[test]
    fn the_key_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Signer::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
        let b = Signer::load_or_create(dir.path()).unwrap();
        let t = a.sign(
            Purpose::Unsubscribe,
            "x",
            Utc::now() + chrono::Duration::hours(1),
        );
        assert_eq!(b.verify(Purpose::Unsubscribe, &t, Utc::now()).unwrap(), "x");
        std::fs::write(path(dir.path()), b"short").unwrap();
        assert!(Signer::load_or_create(dir.path()).is_err());
    }
}
