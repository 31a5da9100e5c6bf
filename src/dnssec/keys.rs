//! A zone's signing keys on disk: a KSK and a ZSK per zone in its `keys_dir`, created when
//! absent. Each key is two files: `<role>-<tag>.pk8`, the private key (PKCS#8 DER, mode
//! 0600), and `<role>-<tag>.json`, what detour knows about it (role, algorithm, tag, when it
//! was created, its state).

use std::path::{Path, PathBuf};

use hickory_proto::dnssec::rdata::{DNSKEY, DS};
use hickory_proto::dnssec::{DigestType, PublicKey, PublicKeyBuf};
use hickory_proto::rr::Name;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

/// The signing algorithms detour offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256 (algorithm 13), the default.
    EcdsaP256Sha256,
    /// Ed25519 (algorithm 15).
    Ed25519,
}

impl Algorithm {
    /// The algorithm by its config name (`ecdsap256sha256`, `ed25519`), any case.
    pub fn from_name(s: &str) -> Option<Algorithm> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsap256sha256" => Some(Algorithm::EcdsaP256Sha256),
            "ed25519" => Some(Algorithm::Ed25519),
            _ => None,
        }
    }

    /// The algorithm of number `n`, if detour signs with it.
    pub fn from_number(n: u8) -> Result<Algorithm, String> {
        match n {
            13 => Ok(Algorithm::EcdsaP256Sha256),
            15 => Ok(Algorithm::Ed25519),
            _ => Err(format!("algorithm {n} is not one detour signs with")),
        }
    }

    /// Its number in DNSKEY, RRSIG and DS records.
    pub fn number(self) -> u8 {
        match self {
            Algorithm::EcdsaP256Sha256 => 13,
            Algorithm::Ed25519 => 15,
        }
    }

    /// hickory's name for it.
    pub fn hickory(self) -> hickory_proto::dnssec::Algorithm {
        match self {
            Algorithm::EcdsaP256Sha256 => hickory_proto::dnssec::Algorithm::ECDSAP256SHA256,
            Algorithm::Ed25519 => hickory_proto::dnssec::Algorithm::ED25519,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algorithm::EcdsaP256Sha256 => "ECDSAP256SHA256",
            Algorithm::Ed25519 => "ED25519",
        })
    }
}

/// What a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Key-signing key: signs the DNSKEY RRset (and CDS/CDNSKEY); its DS is at the parent.
    Ksk,
    /// Zone-signing key: signs everything else.
    Zsk,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Ksk => "ksk",
            Role::Zsk => "zsk",
        })
    }
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// In the DNSKEY RRset and signing.
    Active,
    /// In the DNSKEY RRset, not signing yet (pre-publication).
    Published,
    /// In the DNSKEY RRset, no longer signing: its signatures may still be in caches.
    Retiring,
    /// Neither published nor signing; kept on disk.
    Retired,
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyState::Active => "active",
            KeyState::Published => "published",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        })
    }
}

/// A key's metadata file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyMeta {
    /// KSK or ZSK.
    pub role: Role,
    /// DNSSEC algorithm number.
    pub algorithm: u8,
    /// Key tag (RFC 4034 Appendix B).
    pub tag: u16,
    /// Unix time the key was made.
    pub created: i64,
    /// Where it is in its life.
    pub state: KeyState,
    /// Unix time it started signing, when later than `created` (a rollover's new key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated: Option<i64>,
    /// Unix time a published key starts signing (pre-publication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activate: Option<i64>,
    /// Unix time a retiring key leaves the DNSKEY RRset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<i64>,
}

/// The private half of a key.
enum Private {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// One key: its metadata, public DNSKEY and private half.
pub struct Key {
    /// What the metadata file says.
    pub meta: KeyMeta,
    /// The DNSKEY record data.
    pub dnskey: DNSKEY,
    private: Private,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Signs `data` (the RRSIG's to-be-signed bytes): the raw signature an RRSIG holds.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        match &self.private {
            Private::Ecdsa(k) => k
                .sign(&SystemRandom::new(), data)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "ECDSA signing failed".to_string()),
            Private::Ed25519(k) => Ok(k.sign(data).as_ref().to_vec()),
        }
    }

    /// The DS record data for this key under `origin`, with a SHA-256 digest.
    pub fn ds(&self, origin: &Name) -> Result<DS, String> {
        let digest = self
            .dnskey
            .to_digest(origin, DigestType::SHA256)
            .map_err(|e| format!("DS digest: {e}"))?;
        Ok(DS::new(
            self.meta.tag,
            self.dnskey.public_key().algorithm(),
            DigestType::SHA256,
            digest.as_ref().to_vec(),
        ))
    }
}

/// A zone's keys as read from (or just written to) its `keys_dir`.
#[derive(Debug)]
pub struct Keyring {
    /// The folder they live in.
    pub dir: PathBuf,
    /// The algorithm of every key.
    pub algorithm: Algorithm,
    /// Every key not retired, KSKs first, then by tag.
    pub keys: Vec<Key>,
}

/// DNSKEY flags: zone key (256), plus secure entry point (1) for a KSK.
fn flags(role: Role) -> u16 {
    match role {
        Role::Ksk => 257,
        Role::Zsk => 256,
    }
}

fn private_from(alg: Algorithm, der: &[u8]) -> Result<Private, String> {
    match alg {
        Algorithm::EcdsaP256Sha256 => {
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map(Private::Ecdsa)
                .map_err(|e| format!("not an ECDSA P-256 PKCS#8 key: {e}"))
        }
        Algorithm::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(Private::Ed25519)
            .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}")),
    }
}

fn dnskey_of(alg: Algorithm, role: Role, private: &Private) -> DNSKEY {
    let public = match private {
        // ring gives the uncompressed point, 0x04 first; DNSSEC wants X and Y alone.
        Private::Ecdsa(k) => k.public_key().as_ref()[1..].to_vec(),
        Private::Ed25519(k) => k.public_key().as_ref().to_vec(),
    };
    DNSKEY::with_flags(flags(role), PublicKeyBuf::new(public, alg.hickory()))
}

fn generate(alg: Algorithm) -> Result<Vec<u8>, String> {
    let rng = SystemRandom::new();
    match alg {
        Algorithm::EcdsaP256Sha256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map(|d| d.as_ref().to_vec())
        }
        Algorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng).map(|d| d.as_ref().to_vec()),
    }
    .map_err(|_| "cannot generate a key".to_string())
}

impl Keyring {
    /// Reads the keys in `dir`; when it holds none, creates a KSK and a ZSK of `alg` (the
    /// folder made 0700, private keys written 0600). An error says what is wrong, for the
    /// zone file's `[dnssec]` diagnostic.
    pub fn load_or_create(dir: &Path, alg: Algorithm) -> Result<Keyring, String> {
        let mut ring = Keyring::load(dir, alg)?;
        if !ring.keys.iter().any(|k| k.meta.role == Role::Ksk) {
            ring.keys
                .push(create(dir, alg, Role::Ksk, KeyState::Active)?);
        }
        if !ring.keys.iter().any(|k| k.meta.role == Role::Zsk) {
            ring.keys
                .push(create(dir, alg, Role::Zsk, KeyState::Active)?);
        }
        ring.keys
            .sort_by_key(|k| (k.meta.role != Role::Ksk, k.meta.tag));
        Ok(ring)
    }

    /// Reads the keys in `dir` (none when it does not exist), without creating any.
    pub fn load(dir: &Path, alg: Algorithm) -> Result<Keyring, String> {
        let mut keys = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Keyring {
                    dir: dir.to_path_buf(),
                    algorithm: alg,
                    keys,
                });
            }
            Err(e) => return Err(format!("cannot read keys_dir {}: {e}", dir.display())),
        };
        let mut metas: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        metas.sort();
        for path in metas {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let meta: KeyMeta = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not a key description: {e}", path.display()))?;
            if meta.state == KeyState::Retired {
                continue;
            }
            if meta.algorithm != alg.number() {
                return Err(format!(
                    "{}: a key of algorithm {}, but the zone's algorithm is {alg} ({}); changing the algorithm of a signed zone is not supported (move the old keys away to start over)",
                    path.display(),
                    meta.algorithm,
                    alg.number()
                ));
            }
            let pk8 = path.with_extension("pk8");
            let der =
                std::fs::read(&pk8).map_err(|e| format!("cannot read {}: {e}", pk8.display()))?;
            let private = private_from(alg, &der).map_err(|e| format!("{}: {e}", pk8.display()))?;
            let dnskey = dnskey_of(alg, meta.role, &private);
            let tag = dnskey
                .calculate_key_tag()
                .map_err(|e| format!("{}: key tag: {e}", pk8.display()))?;
            if tag != meta.tag {
                return Err(format!(
                    "{}: says tag {} but the key's tag is {tag}",
                    path.display(),
                    meta.tag
                ));
            }
            keys.push(Key {
                meta,
                dnskey,
                private,
            });
        }
        keys.sort_by_key(|k| (k.meta.role != Role::Ksk, k.meta.tag));
        Ok(Keyring {
            dir: dir.to_path_buf(),
            algorithm: alg,
            keys,
        })
    }

    /// The keys that sign, of `role`: the active ZSKs; every published KSK (a KSK rollover
    /// signs the DNSKEY RRset with the old and the new key throughout, RFC 6781 §4.1.2).
    pub fn signing(&self, role: Role) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| {
            k.meta.role == role
                && match role {
                    Role::Zsk => k.meta.state == KeyState::Active,
                    Role::Ksk => k.meta.state != KeyState::Retired,
                }
        })
    }

    /// The KSKs the parent's DS should name: the new one during a KSK rollover, else the
    /// active ones. CDS and CDNSKEY publish these.
    pub fn ds_keys(&self) -> Vec<&Key> {
        let ksk = |state: KeyState| {
            self.keys
                .iter()
                .filter(move |k| k.meta.role == Role::Ksk && k.meta.state == state)
        };
        let new: Vec<&Key> = ksk(KeyState::Published).collect();
        if new.is_empty() {
            ksk(KeyState::Active).collect()
        } else {
            new
        }
    }

    /// The DNSKEY RRset: every key published or active.
    pub fn dnskeys(&self) -> impl Iterator<Item = &DNSKEY> {
        self.keys.iter().map(|k| &k.dnskey)
    }

    /// The DS records the parent should hold ([`Keyring::ds_keys`]).
    pub fn ds(&self, origin: &Name) -> Result<Vec<DS>, String> {
        self.ds_keys().into_iter().map(|k| k.ds(origin)).collect()
    }

    /// What identifies this set of keys in a Snapshot: the tags and states.
    pub fn fingerprint(&self) -> Vec<(u16, Role, KeyState)> {
        self.keys
            .iter()
            .map(|k| (k.meta.tag, k.meta.role, k.meta.state))
            .collect()
    }
}

/// Makes a key of `role` in `dir`: the private key 0600, then its metadata.
pub fn create(dir: &Path, alg: Algorithm, role: Role, state: KeyState) -> Result<Key, String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create keys_dir {}: {e}", dir.display()))?;
    let der = generate(alg)?;
    let private = private_from(alg, &der)?;
    let dnskey = dnskey_of(alg, role, &private);
    let tag = dnskey
        .calculate_key_tag()
        .map_err(|e| format!("key tag: {e}"))?;
    let meta = KeyMeta {
        role,
        algorithm: alg.number(),
        tag,
        created: chrono::Utc::now().timestamp(),
        state,
        activated: None,
        activate: None,
        remove: None,
    };
    let base = dir.join(format!("{role}-{tag}"));
    let pk8 = base.with_extension("pk8");
    crate::store::atomic_write_mode(&pk8, &der, 0o600)
        .map_err(|e| format!("cannot write {}: {e}", pk8.display()))?;
    write_meta(dir, &meta)?;
    tracing::info!(dir = %dir.display(), %role, tag, algorithm = %alg, "DNSSEC key created");
    Ok(Key {
        meta,
        dnskey,
        private,
    })
}

/// Writes a key's metadata file (`<role>-<tag>.json` in `dir`), atomically.
pub fn write_meta(dir: &Path, meta: &KeyMeta) -> Result<(), String> {
    let path = dir.join(format!("{}-{}.json", meta.role, meta.tag));
    let json = serde_json::to_vec_pretty(meta).map_err(|e| e.to_string())?;
    crate::store::atomic_write_mode(&path, &json, 0o644)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Every key's metadata in `dir` (retired ones included), without reading private keys.
pub fn metas(dir: &Path) -> Result<Vec<KeyMeta>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read keys_dir {}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        out.push(
            serde_json::from_str(&text)
                .map_err(|e| format!("{}: not a key description: {e}", path.display()))?,
        );
    }
    out.sort_by_key(|m: &KeyMeta| (m.role != Role::Ksk, m.tag));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_created_once_with_private_files_0600() {
        for alg in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
            let dir = tempfile::tempdir().unwrap();
            let kd = dir.path().join("keys/example.test");
            let ring = Keyring::load_or_create(&kd, alg).unwrap();
            assert_eq!(ring.keys.len(), 2);
            assert_eq!(ring.keys[0].meta.role, Role::Ksk);
            assert_eq!(ring.keys[0].dnskey.flags(), 257);
            assert_eq!(ring.keys[1].dnskey.flags(), 256);
            for k in &ring.keys {
                let pk8 = kd.join(format!("{}-{}.pk8", k.meta.role, k.meta.tag));
                let mode = std::fs::metadata(&pk8).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", pk8.display());
            }
            let again = Keyring::load_or_create(&kd, alg).unwrap();
            assert_eq!(again.fingerprint(), ring.fingerprint(), "no new keys");
            let origin = Name::from_ascii("example.test.").unwrap();
            let ds = again.ds(&origin).unwrap();
            assert_eq!(ds.len(), 1);
            assert_eq!(ds[0].key_tag(), ring.keys[0].meta.tag);
            assert_eq!(ds[0].digest().len(), 32);
        }
    }

    #[test]
    fn another_algorithm_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Keyring::load_or_create(dir.path(), Algorithm::Ed25519).unwrap();
        let e = Keyring::load_or_create(dir.path(), Algorithm::EcdsaP256Sha256).unwrap_err();
        assert!(e.contains("algorithm 15"), "{e}");
    }
}
