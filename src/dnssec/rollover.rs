//! Key rollovers, driven by the key files' own metadata (the files are the state: a
//! restart picks up where it was).
//!
//! ZSK, by pre-publication (RFC 6781 §4.1.1.1), by itself on `zsk_lifetime`: a new ZSK is
//! published (in DNSKEY, not signing) once the active one is older than its lifetime; after
//! the DNSKEY TTL and the propagation delay it signs and the old one retires (still in
//! DNSKEY, signing nothing); after the zone's largest TTL and the propagation delay the old
//! one leaves DNSKEY.
//!
//! KSK, by double signature (RFC 6781 §4.1.2), started by the operator (`detour dnssec
//! ksk-roll ZONE`): a new KSK is published and signs the DNSKEY RRset beside the old one;
//! CDS/CDNSKEY name the new one only. Once the parent's DS names the new key (`detour dnssec
//! ksk-done ZONE`, the operator's word that it does), the old KSK retires and, after the DS
//! TTL and the propagation delay, leaves DNSKEY.

use std::path::Path;

use super::keys::{self, Algorithm, KeyMeta, KeyState, Role};

/// The timings of a zone's rollovers, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A ZSK's lifetime before its successor is published; 0: no automatic rollover.
    pub zsk_lifetime: u32,
    /// TTL of the DNSKEY RRset.
    pub dnskey_ttl: u32,
    /// The largest TTL in the zone (how long a signature may stay in caches).
    pub max_ttl: u32,
    /// Margin for secondaries to follow and clocks to differ.
    pub propagation: u32,
}

/// Moves the keys in `dir` on as far as `now` (Unix seconds) allows under `policy`;
/// returns what was done, one line per step (empty when nothing was due).
pub fn step(dir: &Path, alg: Algorithm, policy: &Policy, now: i64) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let mut metas = keys::metas(dir)?;
    // Published keys whose time has come sign; the keys of the role they replace retire.
    let due: Vec<KeyMeta> = metas
        .iter()
        .filter(|m| m.state == KeyState::Published && m.activate.is_some_and(|t| t <= now))
        .cloned()
        .collect();
    for new in due {
        // How long the old key's work may stay in caches: its signatures (ZSK), or the
        // parent's old DS pointing at it (KSK; the propagation delay must cover the DS TTL).
        let linger = match new.role {
            Role::Zsk => policy.max_ttl,
            Role::Ksk => policy.dnskey_ttl.max(policy.max_ttl),
        };
        for m in metas.iter_mut() {
            if m.tag == new.tag && m.role == new.role {
                m.state = KeyState::Active;
                m.activate = None;
                m.activated = Some(now);
                keys::write_meta(dir, m)?;
                done.push(format!("{} {} active: signing", m.role, m.tag));
            } else if m.role == new.role && m.state == KeyState::Active {
                m.state = KeyState::Retiring;
                m.remove = Some(now + i64::from(linger) + i64::from(policy.propagation));
                keys::write_meta(dir, m)?;
                done.push(format!(
                    "{} {} retiring: no longer signing, in DNSKEY until {}",
                    m.role,
                    m.tag,
                    stamp(m.remove)
                ));
            }
        }
    }
    for m in metas.iter_mut() {
        if m.state == KeyState::Retiring && m.remove.is_some_and(|t| t <= now) {
            m.state = KeyState::Retired;
            m.remove = None;
            keys::write_meta(dir, m)?;
            done.push(format!("{} {} retired: removed from DNSKEY", m.role, m.tag));
        }
    }
    // A ZSK past its lifetime, and no successor yet: publish one.
    let successor = metas
        .iter()
        .any(|m| m.role == Role::Zsk && m.state == KeyState::Published);
    let oldest_due = metas.iter().any(|m| {
        m.role == Role::Zsk
            && m.state == KeyState::Active
            && policy.zsk_lifetime > 0
            && m.activated.unwrap_or(m.created) + i64::from(policy.zsk_lifetime) <= now
    });
    if oldest_due && !successor {
        let wait = i64::from(policy.dnskey_ttl) + i64::from(policy.propagation);
        let key = publish(dir, alg, Role::Zsk, now + wait)?;
        done.push(format!(
            "zsk {} published: signs from {} (ZSK lifetime reached)",
            key.tag,
            stamp(key.activate)
        ));
    }
    Ok(done)
}

/// Starts a KSK rollover: a new KSK published now, signing the DNSKEY RRset beside the old
/// one at once (double signature), named alone by CDS/CDNSKEY. Refused while one runs.
pub fn start_ksk_roll(dir: &Path, alg: Algorithm) -> Result<String, String> {
    let metas = keys::metas(dir)?;
    if metas
        .iter()
        .any(|m| m.role == Role::Ksk && m.state == KeyState::Published)
    {
        return Err("a KSK rollover is already under way: confirm the new DS with `detour dnssec ksk-done` first".into());
    }
    let key = keys::create(dir, alg, Role::Ksk, KeyState::Published)?;
    Ok(format!(
        "ksk {} published and signing the DNSKEY RRset; give the parent its DS (detour dnssec ds), then run detour dnssec ksk-done",
        key.meta.tag
    ))
}

/// Ends a KSK rollover once the parent's DS names the new KSK: it alone is active, the old
/// one retires (removed after the DNSKEY TTL and the propagation delay).
pub fn finish_ksk_roll(dir: &Path, policy: &Policy, now: i64) -> Result<Vec<String>, String> {
    let mut metas = keys::metas(dir)?;
    let Some(new) = metas
        .iter()
        .find(|m| m.role == Role::Ksk && m.state == KeyState::Published)
        .cloned()
    else {
        return Err("no KSK rollover under way (start one with `detour dnssec ksk-roll`)".into());
    };
    if let Some(m) = metas
        .iter_mut()
        .find(|m| m.tag == new.tag && m.role == Role::Ksk)
    {
        m.activate = Some(now);
        keys::write_meta(dir, m)?;
    }
    step(dir, Algorithm::from_number(new.algorithm)?, policy, now)
}

fn publish(dir: &Path, alg: Algorithm, role: Role, activate: i64) -> Result<KeyMeta, String> {
    let key = keys::create(dir, alg, role, KeyState::Published)?;
    let mut meta = key.meta;
    meta.activate = Some(activate);
    keys::write_meta(dir, &meta)?;
    Ok(meta)
}

fn stamp(t: Option<i64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        zsk_lifetime: 100,
        dnskey_ttl: 10,
        max_ttl: 30,
        propagation: 5,
    };

    fn states(dir: &Path) -> Vec<(Role, KeyState)> {
        keys::metas(dir)
            .unwrap()
            .iter()
            .map(|m| (m.role, m.state))
            .collect()
    }

    #[test]
    fn zsk_rolls_by_pre_publication() {
        let dir = tempfile::tempdir().unwrap();
        let alg = Algorithm::EcdsaP256Sha256;
        keys::Keyring::load_or_create(dir.path(), alg).unwrap();
        let t0 = keys::metas(dir.path()).unwrap()[1].created;
        assert!(step(dir.path(), alg, &POLICY, t0 + 50).unwrap().is_empty());
        let s = step(dir.path(), alg, &POLICY, t0 + 100).unwrap();
        assert!(s[0].contains("published"), "{s:?}");
        let mut st = states(dir.path());
        st.sort_by_key(|(r, s)| (*r != Role::Ksk, *s as u8));
        assert_eq!(
            st,
            [
                (Role::Ksk, KeyState::Active),
                (Role::Zsk, KeyState::Active),
                (Role::Zsk, KeyState::Published)
            ]
        );
        // Not before the DNSKEY TTL and the propagation delay.
        assert!(step(dir.path(), alg, &POLICY, t0 + 114).unwrap().is_empty());
        let s = step(dir.path(), alg, &POLICY, t0 + 115).unwrap();
        assert_eq!(s.len(), 2, "{s:?}");
        let ring = keys::Keyring::load(dir.path(), alg).unwrap();
        assert_eq!(ring.signing(Role::Zsk).count(), 1);
        assert_eq!(ring.dnskeys().count(), 3, "the old ZSK still published");
        // Removed after the largest TTL and the propagation delay.
        assert!(step(dir.path(), alg, &POLICY, t0 + 149).unwrap().is_empty());
        let s = step(dir.path(), alg, &POLICY, t0 + 150).unwrap();
        assert!(s[0].contains("retired"), "{s:?}");
        let ring = keys::Keyring::load(dir.path(), alg).unwrap();
        assert_eq!(ring.dnskeys().count(), 2);
    }

    #[test]
    fn ksk_rolls_when_the_operator_says_the_ds_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let alg = Algorithm::Ed25519;
        keys::Keyring::load_or_create(dir.path(), alg).unwrap();
        start_ksk_roll(dir.path(), alg).unwrap();
        assert!(start_ksk_roll(dir.path(), alg).is_err(), "one at a time");
        let ring = keys::Keyring::load(dir.path(), alg).unwrap();
        assert_eq!(ring.dnskeys().count(), 3);
        let now = chrono::Utc::now().timestamp();
        // Waits for the operator: nothing happens by itself.
        let no_zsk_roll = Policy {
            zsk_lifetime: 0,
            ..POLICY
        };
        assert!(
            step(dir.path(), alg, &no_zsk_roll, now + 1_000)
                .unwrap()
                .is_empty()
        );
        let s = finish_ksk_roll(dir.path(), &POLICY, now).unwrap();
        assert_eq!(s.len(), 2, "{s:?}");
        let ring = keys::Keyring::load(dir.path(), alg).unwrap();
        let ds = ring.ds_keys();
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0].meta.state, KeyState::Active);
        // The old KSK still signs the DNSKEY RRset while the old DS may be cached.
        assert_eq!(ring.signing(Role::Ksk).count(), 2);
        let s = step(dir.path(), alg, &POLICY, now + 35).unwrap();
        assert!(s[0].contains("retired"), "{s:?}");
        let ring = keys::Keyring::load(dir.path(), alg).unwrap();
        assert_eq!(ring.signing(Role::Ksk).count(), 1);
        assert!(finish_ksk_roll(dir.path(), &POLICY, now).is_err());
    }
}
