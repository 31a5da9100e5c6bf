//! Console sessions, kept in memory (a restart signs everyone out), and the sign-in gate:
//! wrong passwords lock an account for a while, and each source has a budget of attempts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::accounts::{Account, Role};

/// The most sessions kept at once; past it, the one idle longest ends.
const MAX_SESSIONS: usize = 1_000;

/// The most names and sources the gate remembers; past it, the stalest are forgotten.
const MAX_TRACKED: usize = 10_000;

/// 32 random bytes as hex: session ids and CSRF tokens.
pub fn token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True when `a` and `b` are the same token (constant time).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct Session {
    /// The account's name (what the audit log records).
    pub account: String,
    /// Its role when it signed in.
    pub role: Role,
    /// The token every form of this session carries.
    pub csrf: String,
    /// The account's hash at sign-in: a changed password (or a removed account) ends it.
    stamp: String,
    /// Sign-in.
    created: Instant,
    /// The last request.
    last: Instant,
    /// One line to show on the next page ("Incident opened").
    pub flash: Option<String>,
}

/// Every session, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `account`: its id (the cookie's value).
    pub fn create(&self, account: &Account, now: Instant) -> String {
        let id = token();
        let s = Session {
            account: account.name.clone(),
            role: account.role,
            csrf: token(),
            stamp: account.hash.clone(),
            created: now,
            last: now,
            flash: None,
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), s);
        id
    }

    /// The session `id`, if it is live: not idle longer than `idle`, not older than
    /// `absolute`, and its account (looked up with `account`) still there with the same
    /// password and role. Marks it used; takes its flash line. A dead session is dropped.
    pub fn get(
        &self,
        id: &str,
        now: Instant,
        idle: Duration,
        absolute: Duration,
        account: impl FnOnce(&str) -> Option<Account>,
    ) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.get_mut(id)?;
        let live = now.duration_since(s.last) <= idle
            && now.duration_since(s.created) <= absolute
            && account(&s.account).is_some_and(|a| a.hash == s.stamp && a.role == s.role);
        if !live {
            map.remove(id);
            return None;
        }
        s.last = now;
        let out = s.clone();
        s.flash = None;
        Some(out)
    }

    /// Leaves a line for the session's next page.
    pub fn flash(&self, id: &str, line: String) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get_mut(id) {
            s.flash = Some(line);
        }
    }

    /// Ends the session `id`.
    pub fn remove(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }
}

/// The key of a source: an IPv4 address, or an IPv6 address's /64 (one subscriber's
/// network).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Failed sign-ins of one name.
#[derive(Debug, Clone)]
struct Failures {
    /// Wrong passwords in a row.
    count: u32,
    /// Locked until then.
    locked_until: Option<Instant>,
    /// The last failure.
    last: Instant,
    /// The account's password hash then (`None`: no such account): a new password lifts
    /// the lock.
    stamp: Option<String>,
}

/// Attempts from one source in the current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

/// Why a sign-in is not even tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The name is locked for this much longer.
    Locked(Duration),
    /// The source has used its budget; it may try again after this.
    Source(Duration),
}

/// The sign-in gate. Names are counted whether an account exists or not, so the lock says
/// nothing about which names exist.
#[derive(Debug, Default)]
pub struct Gate {
    names: Mutex<HashMap<String, Failures>>,
    sources: Mutex<HashMap<IpAddr, Window>>,
}

/// The gate's settings (from `[console]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wrong passwords in a row that lock a name.
    pub lockout_after: u32,
    /// How long it stays locked, and the window of the source budget.
    pub lockout: Duration,
    /// Attempts per source per window.
    pub source_limit: u32,
}

impl Gate {
    /// Counts an attempt of `name` (whose account's hash is `stamp` now) from `source`;
    /// refuses it when the name is locked or the source has used its budget. A lock taken
    /// before the password changed is lifted.
    pub fn admit(
        &self,
        name: &str,
        stamp: Option<&str>,
        source: Option<IpAddr>,
        now: Instant,
        l: Limits,
    ) -> Result<(), Refusal> {
        if let Some(ip) = source {
            let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
            prune(&mut sources, |w| now.duration_since(w.start) > l.lockout);
            let w = sources.entry(source_key(ip)).or_insert(Window {
                start: now,
                count: 0,
            });
            if now.duration_since(w.start) > l.lockout {
                *w = Window {
                    start: now,
                    count: 0,
                };
            }
            if w.count >= l.source_limit {
                return Err(Refusal::Source(
                    l.lockout.saturating_sub(now.duration_since(w.start)),
                ));
            }
            w.count += 1;
        }
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if names.get(name).is_some_and(|f| f.stamp.as_deref() != stamp) {
            names.remove(name);
        }
        if let Some(until) = names.get(name).and_then(|f| f.locked_until)
            && until > now
        {
            return Err(Refusal::Locked(until - now));
        }
        Ok(())
    }

    /// A wrong password (or an unknown name): the name locks after `lockout_after` in a row.
    /// True when this failure locked it.
    pub fn failed(&self, name: &str, stamp: Option<&str>, now: Instant, l: Limits) -> bool {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut names, |f| {
            now.duration_since(f.last) > l.lockout && f.locked_until.is_none_or(|u| u <= now)
        });
        let f = names.entry(name.to_string()).or_insert(Failures {
            count: 0,
            locked_until: None,
            last: now,
            stamp: stamp.map(str::to_string),
        });
        if f.locked_until.is_some_and(|u| u <= now) {
            // The lock has run out: a fresh count.
            f.count = 0;
            f.locked_until = None;
        }
        f.count += 1;
        f.last = now;
        if f.count >= l.lockout_after {
            f.locked_until = Some(now + l.lockout);
            return true;
        }
        false
    }

    /// The right password: the name's count starts again.
    pub fn succeeded(&self, name: &str) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names.remove(name);
    }
}

/// Drops the entries `stale` says are stale once `map` is at [`MAX_TRACKED`]; if none are,
/// an arbitrary one, so that the map stays bounded.
fn prune<K: Clone + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, stale: impl Fn(&V) -> bool) {
    if map.len() < MAX_TRACKED {
        return;
    }
    map.retain(|_, v| !stale(v));
    if map.len() >= MAX_TRACKED
        && let Some(k) = map.keys().next().cloned()
    {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn account(name: &str, role: Role, hash: &str) -> Account {
        Account {
            name: name.into(),
            role,
            hash: hash.into(),
            created: Utc::now(),
            changed: Utc::now(),
        }
    }

    #[test]
    fn sessions_end_when_idle_old_or_their_account_changes() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let dana = account("dana", Role::Operator, "h1");
        let id = s.create(&dana, t0);
        let idle = Duration::from_secs(60);
        let abs = Duration::from_secs(300);
        let same_account = |_: &str| Some(dana.clone());
        let live = s.get(&id, t0 + Duration::from_secs(50), idle, abs, same_account);
        assert_eq!(live.map(|x| x.account), Some("dana".to_string()));
        // Used at 50 s, so 100 s is 50 s idle: still live.
        assert!(
            s.get(&id, t0 + Duration::from_secs(100), idle, abs, same_account)
                .is_some()
        );
        // Idle too long: gone, and gone for good.
        assert!(
            s.get(&id, t0 + Duration::from_secs(161), idle, abs, same_account)
                .is_none()
        );
        assert!(
            s.get(&id, t0 + Duration::from_secs(162), idle, abs, same_account)
                .is_none()
        );

        // Used every minute, it still ends at the absolute limit.
        let id = s.create(&dana, t0);
        for m in 1..=5 {
            let at = t0 + Duration::from_secs(m * 59);
            assert!(
                s.get(&id, at, idle, abs, same_account).is_some(),
                "minute {m}"
            );
        }
        assert!(
            s.get(&id, t0 + Duration::from_secs(301), idle, abs, same_account)
                .is_none()
        );

        // A changed password, a changed role or a removed account ends it.
        let id = s.create(&dana, t0);
        let other = account("dana", Role::Operator, "h2");
        assert!(s.get(&id, t0, idle, abs, |_| Some(other.clone())).is_none());
        let id = s.create(&dana, t0);
        let demoted = account("dana", Role::Communicator, "h1");
        assert!(
            s.get(&id, t0, idle, abs, |_| Some(demoted.clone()))
                .is_none()
        );
        let id = s.create(&dana, t0);
        assert!(s.get(&id, t0, idle, abs, |_| None).is_none());
        assert!(
            s.get("not a session", t0, idle, abs, same_account)
                .is_none()
        );
    }

    #[test]
    fn the_gate_locks_a_name_and_bounds_a_source() {
        let g = Gate::default();
        let l = Limits {
            lockout_after: 5,
            lockout: Duration::from_secs(900),
            source_limit: 8,
        };
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..4 {
            assert_eq!(g.admit("dana", None, Some(ip), t0, l), Ok(()));
            assert!(
                !g.failed("dana", None, t0, l),
                "failure {i} does not lock yet"
            );
        }
        assert_eq!(g.admit("dana", None, Some(ip), t0, l), Ok(()));
        assert!(g.failed("dana", None, t0, l), "the fifth locks");
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            g.admit("dana", None, None, later, l),
            Err(Refusal::Locked(Duration::from_secs(840)))
        );
        // Another name from elsewhere is not locked; the lock runs out.
        assert_eq!(g.admit("sam", None, None, later, l), Ok(()));
        let after = t0 + Duration::from_secs(901);
        assert_eq!(g.admit("dana", None, None, after, l), Ok(()));
        assert!(
            !g.failed("dana", None, after, l),
            "a fresh count after the lock"
        );
        g.succeeded("dana");

        // A new password lifts a lock taken before it.
        for _ in 0..5 {
            g.failed("cal", Some("h1"), t0, l);
        }
        assert!(g.admit("cal", Some("h1"), None, later, l).is_err());
        assert_eq!(g.admit("cal", Some("h2"), None, later, l), Ok(()));

        // The source has used 5 of its 8 attempts; 3 more, then it is refused, whatever
        // the name. Another address of the same IPv6 /64 shares a budget.
        for _ in 0..3 {
            assert_eq!(g.admit("x", None, Some(ip), t0, l), Ok(()));
        }
        assert!(matches!(
            g.admit("y", None, Some(ip), t0, l),
            Err(Refusal::Source(_))
        ));
        assert_eq!(
            g.admit("y", None, Some(ip), after, l),
            Ok(()),
            "a new window"
        );
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        for _ in 0..8 {
            assert_eq!(g.admit("z", None, Some(a), t0, l), Ok(()));
        }
        assert!(g.admit("z", None, Some(b), t0, l).is_err());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
