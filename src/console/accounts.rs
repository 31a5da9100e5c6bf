//! The console's local accounts: `state_dir/accounts.json` (with `[cluster]`, the same
//! document in etcd's `accounts` key), one entry per person with a role and an Argon2id
//! password hash (PHC string). `detour user` writes it (atomically under a lock, or by a
//! compare-and-swap in etcd); the daemon only reads it, again whenever it changes.
//!
//! Accounts are local on purpose: the console must work when the company's single sign-on
//! is the thing that is down.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The shortest password taken, in characters.
pub const MIN_PASSWORD: usize = 12;

/// The longest password taken, in bytes (Argon2 hashes any length; this bounds the work).
pub const MAX_PASSWORD: usize = 1024;

/// What an account may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Incidents (open, update, resolve), maintenance announcements, previews: what people
    /// are told. Never DNS.
    Communicator,
    /// All a communicator does, plus overrides, maintenance overrides, reloads (and drills).
    Operator,
}

impl Role {
    /// "communicator" or "operator".
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Communicator => "communicator",
            Role::Operator => "operator",
        }
    }

    /// Parses "communicator" or "operator".
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "communicator" => Some(Role::Communicator),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }

    /// True when the role may change what DNS answers (overrides, reloads, drills).
    pub fn changes_dns(self) -> bool {
        self == Role::Operator
    }
}

/// One account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The sign-in name (lowercase letters, digits, `.`, `_`, `-`); also the name the audit
    /// log records.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The password's Argon2id hash, as a PHC string (`$argon2id$v=19$m=...`).
    pub hash: String,
    /// When it was added.
    pub created: DateTime<Utc>,
    /// When its password or role last changed.
    pub changed: DateTime<Utc>,
}

/// Every account, as `accounts.json` holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accounts {
    /// In the order they were added.
    pub accounts: Vec<Account>,
}

impl Accounts {
    /// The account called `name`.
    pub fn get(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

/// Why an account command failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Bad input: a name, a role or a password that is not taken.
    #[error("{0}")]
    Invalid(String),
    /// No such account.
    #[error("no account {0:?}")]
    NotFound(String),
    /// The account exists already.
    #[error("account {0:?} exists already (`detour user passwd` changes its password)")]
    Exists(String),
    /// The cluster's etcd could not be read or written.
    #[error("{0}")]
    Cluster(String),
    /// accounts.json could not be read, parsed or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// `state_dir/accounts.json`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("accounts.json")
}

/// Checks a sign-in name: 1 to 64 of lowercase letters, digits, `.`, `_`, `-`, starting with
/// a letter or digit.
pub fn check_name(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "invalid account name {name:?}: expected 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// Checks a new password: at least [`MIN_PASSWORD`] characters, at most [`MAX_PASSWORD`]
/// bytes.
pub fn check_password(password: &str) -> Result<(), AccountError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(AccountError::Invalid(format!(
            "the password is too short: {n} characters, at least {MIN_PASSWORD} (a few unrelated words make a good one)"
        )));
    }
    if password.len() > MAX_PASSWORD {
        return Err(AccountError::Invalid(format!(
            "the password is too long: at most {MAX_PASSWORD} bytes"
        )));
    }
    Ok(())
}

/// The Argon2id hash of `password` with a fresh random salt, as a PHC string. Argon2id with
/// the crate's defaults (19 MiB, 2 passes, 1 lane): OWASP's recommended minimum.
pub fn hash(password: &str) -> Result<String, AccountError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| AccountError::Invalid(format!("cannot make a salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Invalid(format!("cannot hash the password: {e}")))
}

/// True when `password` matches the PHC string `phc` (compared in constant time by the
/// crate). A hash that does not parse matches nothing.
pub fn verify(phc: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Checks `password` against account `name` of `accounts`: the account when it matches. An
/// unknown name costs the same hashing work as a wrong password, so the time taken does not
/// tell which names exist.
pub fn authenticate<'a>(accounts: &'a Accounts, name: &str, password: &str) -> Option<&'a Account> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    match accounts.get(name) {
        Some(a) => verify(&a.hash, password).then_some(a),
        None => {
            let dummy = DUMMY.get_or_init(|| hash("not a password of anyone").unwrap_or_default());
            let _ = verify(dummy, password);
            None
        }
    }
}

/// Parses the accounts document (`accounts.json`, or the cluster's `accounts` key).
pub fn parse(bytes: &[u8]) -> Result<Accounts, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not a valid accounts document: {e}"))
}

/// The accounts document, as written (pretty JSON, a final newline).
pub fn to_bytes(accounts: &Accounts) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(accounts).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Reads `accounts.json`: no file is no accounts; a file that cannot be read or parsed is an
/// error (nobody signs in, and `detour user` refuses to write over it) rather than set aside:
/// accounts are not state detour can rebuild.
pub fn load(state_dir: &Path) -> Result<Accounts, AccountError> {
    let p = path(state_dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Accounts::default()),
        Err(e) => {
            return Err(AccountError::File {
                path: p,
                message: format!("cannot read: {e}"),
            });
        }
    };
    parse(text.as_bytes()).map_err(|message| AccountError::File { path: p, message })
}

/// Writes `accounts.json` atomically, mode 0600 (it holds password hashes).
fn save(state_dir: &Path, accounts: &Accounts) -> Result<(), AccountError> {
    let p = path(state_dir);
    crate::store::atomic_write_mode(&p, &to_bytes(accounts), 0o600).map_err(|e| {
        AccountError::File {
            path: p,
            message: format!("cannot write: {e}"),
        }
    })
}

/// Runs `change` on the accounts under an exclusive lock (`state_dir/accounts.lock`), then
/// saves them: two `detour user` commands at once do not lose each other's change.
fn locked<T>(
    state_dir: &Path,
    change: impl FnOnce(&mut Accounts) -> Result<T, AccountError>,
) -> Result<T, AccountError> {
    let lock_path = state_dir.join("accounts.lock");
    let file_error = |e: io::Error| AccountError::File {
        path: lock_path.clone(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(state_dir).map_err(file_error)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(file_error)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| file_error(e.into()))?;
    let mut accounts = load(state_dir)?;
    let out = change(&mut accounts)?;
    save(state_dir, &accounts)?;
    Ok(out)
}

/// An account command, with any password already hashed: what `detour user` does to the
/// accounts, wherever they are kept.
#[derive(Debug, Clone)]
pub enum Change {
    /// Adds an account (name, role, PHC hash).
    Add(String, Role, String),
    /// Removes an account.
    Remove(String),
    /// Sets an account's hash (and role).
    Passwd(String, String, Option<Role>),
}

impl Change {
    /// Applies the change to `a`, or says why not.
    pub fn apply(&self, a: &mut Accounts) -> Result<(), AccountError> {
        let now = Utc::now();
        match self {
            Change::Add(name, role, phc) => {
                check_name(name)?;
                if a.get(name).is_some() {
                    return Err(AccountError::Exists(name.clone()));
                }
                a.accounts.push(Account {
                    name: name.clone(),
                    role: *role,
                    hash: phc.clone(),
                    created: now,
                    changed: now,
                });
            }
            Change::Remove(name) => {
                let before = a.accounts.len();
                a.accounts.retain(|x| &x.name != name);
                if a.accounts.len() == before {
                    return Err(AccountError::NotFound(name.clone()));
                }
            }
            Change::Passwd(name, phc, role) => {
                let acct = a
                    .accounts
                    .iter_mut()
                    .find(|x| &x.name == name)
                    .ok_or_else(|| AccountError::NotFound(name.clone()))?;
                acct.hash = phc.clone();
                if let Some(r) = role {
                    acct.role = *r;
                }
                acct.changed = now;
            }
        }
        Ok(())
    }
}

/// [`Change::Add`] for `password`, checked and hashed.
pub fn adding(name: &str, role: Role, password: &str) -> Result<Change, AccountError> {
    check_name(name)?;
    check_password(password)?;
    Ok(Change::Add(name.to_string(), role, hash(password)?))
}

/// [`Change::Passwd`] for `password`, checked and hashed.
pub fn changing(name: &str, password: &str, role: Option<Role>) -> Result<Change, AccountError> {
    check_password(password)?;
    Ok(Change::Passwd(name.to_string(), hash(password)?, role))
}

/// Applies `change` to `state_dir/accounts.json`.
pub fn apply(state_dir: &Path, change: &Change) -> Result<(), AccountError> {
    locked(state_dir, |a| change.apply(a))
}

/// Adds an account to `state_dir/accounts.json`.
pub fn add(state_dir: &Path, name: &str, role: Role, password: &str) -> Result<(), AccountError> {
    apply(state_dir, &adding(name, role, password)?)
}

/// Removes an account from `state_dir/accounts.json`; its sessions end at their next
/// request.
pub fn remove(state_dir: &Path, name: &str) -> Result<(), AccountError> {
    apply(state_dir, &Change::Remove(name.to_string()))
}

/// Sets an account's password (and its role, when given) in `state_dir/accounts.json`; its
/// sessions end at their next request.
pub fn passwd(
    state_dir: &Path,
    name: &str,
    password: &str,
    role: Option<Role>,
) -> Result<(), AccountError> {
    apply(state_dir, &changing(name, password, role)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_added_checked_changed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        add(d, "dana", Role::Communicator, "correct horse battery").unwrap();
        assert!(matches!(
            add(d, "dana", Role::Operator, "another long password"),
            Err(AccountError::Exists(_))
        ));
        assert!(matches!(
            add(d, "Dana", Role::Operator, "another long password"),
            Err(AccountError::Invalid(_))
        ));
        assert!(matches!(
            add(d, "sam", Role::Operator, "short"),
            Err(AccountError::Invalid(_))
        ));
        let a = load(d).unwrap();
        let dana = a.get("dana").unwrap();
        assert!(dana.hash.starts_with("$argon2id$v=19$"), "{}", dana.hash);
        assert!(!dana.hash.contains("correct horse"));
        assert!(authenticate(&a, "dana", "correct horse battery").is_some());
        assert!(authenticate(&a, "dana", "correct horse batterY").is_none());
        assert!(authenticate(&a, "nobody", "correct horse battery").is_none());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(d)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "accounts.json is private: {mode:o}");

        passwd(d, "dana", "a brand new passphrase", Some(Role::Operator)).unwrap();
        let a = load(d).unwrap();
        assert!(authenticate(&a, "dana", "correct horse battery").is_none());
        assert_eq!(
            authenticate(&a, "dana", "a brand new passphrase").map(|x| x.role),
            Some(Role::Operator)
        );
        assert!(matches!(
            passwd(d, "ghost", "a brand new passphrase", None),
            Err(AccountError::NotFound(_))
        ));
        remove(d, "dana").unwrap();
        assert!(load(d).unwrap().accounts.is_empty());
        assert!(matches!(remove(d, "dana"), Err(AccountError::NotFound(_))));

        std::fs::write(path(d), "{not json").unwrap();
        assert!(matches!(load(d), Err(AccountError::File { .. })));
        assert!(add(d, "sam", Role::Operator, "correct horse battery").is_err());
        assert_eq!(std::fs::read_to_string(path(d)).unwrap(), "{not json");
    }
}
