//! DNSSEC building blocks (issue 20): a zone's keys on disk ([`keys`]), and the pure pieces
//! of signing: RRSIGs over an RRset, NSEC3 owner hashing (RFC 9276: no salt, no extra
//! iteration), signature validity windows. What is signed, and how signed answers are
//! served, is `zone::signed`'s; this module knows records, not zones.

pub mod keys;
pub mod rollover;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hickory_proto::dnssec::Nsec3HashAlgorithm;
use hickory_proto::dnssec::rdata::sig::SigInput;
use hickory_proto::dnssec::rdata::{DNSSECRData, RRSIG};
use hickory_proto::dnssec::{PublicKey, TBS};
use hickory_proto::rr::{DNSClass, Name, RData, Record, SerialNumber};

pub use keys::{Algorithm, Key, Keyring, Role};

/// How a signed zone proves that a name or type does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// NSEC3 (RFC 5155) with SHA-1, no extra iterations, no salt, no opt-out (RFC 9276).
    Nsec3,
    /// NSEC (RFC 4034): names in the clear.
    Nsec,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Denial::Nsec3 => "nsec3",
            Denial::Nsec => "nsec",
        })
    }
}

/// When the signatures of one signing period start and end (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Start of the period: signatures are made again when `now` reaches the next one.
    pub period: u32,
    /// RRSIG inception: an hour before the period starts, for clocks behind ours.
    pub inception: u32,
    /// RRSIG expiration.
    pub expiration: u32,
}

impl Window {
    /// The window `now` falls in, for signatures valid `lifetime` seconds and made again
    /// every `refresh` seconds: periods start at multiples of `refresh`, so that every
    /// signature made in one period is the same and can be made once.
    pub fn at(now: u32, lifetime: u32, refresh: u32) -> Window {
        let period = now - now % refresh.max(1);
        Window {
            period,
            inception: period.saturating_sub(3600),
            expiration: period.saturating_add(lifetime),
        }
    }
}

/// Signatures already made, by what they sign: every alternative of a dynamic record is
/// signed once per window and found here when a swap picks it. Shared by the Snapshots
/// of one window and one set of keys.
#[derive(Debug, Default)]
pub struct SigCache {
    made: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
}

impl SigCache {
    /// A new, empty cache.
    pub fn new() -> Arc<SigCache> {
        Arc::new(SigCache::default())
    }

    /// How many signatures it holds.
    pub fn len(&self) -> usize {
        self.made.lock().map_or(0, |m| m.len())
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The RRSIG by `key` of `rrset` (records of one owner, type and TTL), signed by `signer`
/// (the zone's apex) for `window`; found in `cache` when made before.
pub fn rrsig(
    key: &Key,
    signer: &Name,
    rrset: &[Record],
    window: Window,
    cache: &SigCache,
) -> Result<Record, String> {
    let first = rrset.first().ok_or("an empty RRset")?;
    let input = SigInput {
        type_covered: first.record_type(),
        algorithm: key.dnskey.public_key().algorithm(),
        num_labels: first.name.num_labels(),
        original_ttl: first.ttl,
        sig_expiration: SerialNumber::new(window.expiration),
        sig_inception: SerialNumber::new(window.inception),
        key_tag: key.meta.tag,
        signer_name: signer.clone(),
    };
    let tbs = TBS::from_input(&first.name, DNSClass::IN, &input, rrset.iter()).map_err(|e| {
        format!(
            "cannot encode {} {} for signing: {e}",
            first.name,
            first.record_type()
        )
    })?;
    let cached = cache
        .made
        .lock()
        .ok()
        .and_then(|m| m.get(tbs.as_ref()).cloned());
    let sig = match cached {
        Some(s) => s,
        None => {
            let s = key.sign(tbs.as_ref())?;
            if let Ok(mut m) = cache.made.lock() {
                m.insert(tbs.as_ref().to_vec(), s.clone());
            }
            s
        }
    };
    let rdata = RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig)));
    Ok(Record::from_rdata(first.name.clone(), first.ttl, rdata))
}

/// The NSEC3 hash of `name` (SHA-1, no salt, no extra iteration).
pub fn nsec3_hash(name: &Name) -> Result<[u8; 20], String> {
    let d = Nsec3HashAlgorithm::SHA1
        .hash(&[], name, 0)
        .map_err(|e| format!("NSEC3 hash of {name}: {e}"))?;
    d.as_ref()
        .try_into()
        .map_err(|_| "a SHA-1 digest of another length".to_string())
}

/// The owner name of the NSEC3 record of `hash` in zone `origin`.
pub fn nsec3_owner(hash: &[u8], origin: &Name) -> Result<Name, String> {
    let label = data_encoding::BASE32_DNSSEC.encode(hash);
    Name::from_ascii(&label)
        .and_then(|l| l.append_domain(origin))
        .map_err(|e| format!("NSEC3 owner: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsec3_hash_matches_rfc5155_appendix_a_without_salt() {
        // ldns-nsec3-hash -t 0 -s - example  →  Computed with no salt and no iteration.
        let h = nsec3_hash(&Name::from_ascii("example.").unwrap()).unwrap();
        let owner = nsec3_owner(&h, &Name::from_ascii("example.").unwrap()).unwrap();
        assert_eq!(owner.num_labels(), 2);
        assert_eq!(owner.iter().next().unwrap().len(), 32);
    }

    #[test]
    fn windows_are_shared_by_a_whole_period() {
        let a = Window::at(1_000_000, 14 * 86_400, 7 * 86_400);
        let b = Window::at(1_000_000 + 100, 14 * 86_400, 7 * 86_400);
        assert_eq!(a, b);
        assert!(a.inception < 1_000_000 && a.expiration > 1_000_000 + 7 * 86_400);
    }
}
