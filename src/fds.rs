//! File descriptors: the soft limit raised to the hard one at start, a reserve kept for
//! probes, state files and notifications, and the rest shared among the listeners' caps, so
//! that no flood of connections can starve a health check into a false failover.

use std::fmt;

/// Descriptors detour needs whatever its checks: state files, the log, notification
/// deliveries, the runtime's own (epoll, eventfds, timers), libraries.
const BASE_RESERVE: u64 = 128;

/// Connections closed to make room (the longest idle, at a listener's cap) whose descriptor
/// is not yet released, at most, per listener: a listener holds at most its cap plus this.
pub const CLOSING: usize = 4;

/// The connection caps detour will run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Per DNS TCP listener.
    pub dns_tcp: usize,
    /// Per page listener (HTTP or HTTPS).
    pub page: usize,
    /// The admin API.
    pub admin: usize,
}

/// What `budget` decided, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// The caps to use (the configured ones, or less when descriptors are short).
    pub caps: Caps,
    /// The soft limit in force.
    pub limit: u64,
    /// Kept aside for probes and files.
    pub reserve: u64,
    /// Set when the configured caps did not fit and were lowered.
    pub lowered_from: Option<Caps>,
}

impl fmt::Display for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DNS TCP {} per listener, page {} per listener, admin API {}",
            self.dns_tcp, self.page, self.admin
        )
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as nginx, Knot and most daemons do)
/// and returns the limit in force.
pub fn raise_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let soft = now.current.unwrap_or(u64::MAX);
    if now.maximum.is_some_and(|hard| hard > soft) || (now.maximum.is_none() && soft != u64::MAX) {
        let raised = Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("cannot raise the open-file limit from {soft}: {e}");
            return soft;
        }
        return now.maximum.unwrap_or(u64::MAX);
    }
    soft
}

/// Shares `limit` descriptors: `probes` (every check's connection, and a watch connection
/// each), the connections each listener may have on their way out, and a base are reserved; the listeners' caps (`dns_listeners` x DNS TCP,
/// `page_listeners` x page, and the admin API) get the rest, lowered in proportion when the
/// configured ones do not fit (never below 8 each).
pub fn budget(
    limit: u64,
    wanted: Caps,
    dns_listeners: usize,
    page_listeners: usize,
    probes: usize,
) -> Budget {
    // Each listener may also hold CLOSING connections on their way out (see CLOSING).
    let closing = ((dns_listeners + page_listeners + 1) * CLOSING) as u64;
    let reserve = BASE_RESERVE + 2 * probes as u64 + closing;
    let share = limit.saturating_sub(reserve);
    let want =
        (dns_listeners * wanted.dns_tcp + page_listeners * wanted.page + wanted.admin) as u64;
    if want <= share {
        return Budget {
            caps: wanted,
            limit,
            reserve,
            lowered_from: None,
        };
    }
    let scale = |n: usize| {
        let scaled = (n as u128 * u128::from(share) / u128::from(want.max(1))) as usize;
        scaled.clamp(8.min(n), n)
    };
    let caps = Caps {
        dns_tcp: scale(wanted.dns_tcp),
        page: scale(wanted.page),
        admin: scale(wanted.admin),
    };
    Budget {
        caps,
        limit,
        reserve,
        lowered_from: Some(wanted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANTED: Caps = Caps {
        dns_tcp: 256,
        page: 512,
        admin: 64,
    };

    #[test]
    fn caps_fit_under_the_limit_with_the_reserve_kept() {
        let b = budget(1 << 20, WANTED, 1, 1, 10);
        assert_eq!(b.caps, WANTED);
        assert_eq!(b.lowered_from, None);
        assert_eq!(b.reserve, 148 + 3 * CLOSING as u64);

        // ulimit -n 1024, two DNS listeners, two page listeners, 100 checks.
        let b = budget(1024, WANTED, 2, 2, 100);
        assert_eq!(b.reserve, 328 + 5 * CLOSING as u64);
        assert_eq!(b.lowered_from, Some(WANTED));
        let used = 2 * b.caps.dns_tcp + 2 * b.caps.page + b.caps.admin;
        assert!(used as u64 + b.reserve <= 1024, "{:?} uses {used}", b.caps);
        assert!(b.caps.page > b.caps.dns_tcp && b.caps.admin >= 8);

        // Hopelessly short: every cap keeps a minimum of 8.
        let b = budget(100, WANTED, 1, 1, 10);
        assert_eq!(
            b.caps,
            Caps {
                dns_tcp: 8,
                page: 8,
                admin: 8
            }
        );
    }
}
