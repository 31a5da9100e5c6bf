//! systemd's notify protocol (`Type=notify`, `sd_notify(3)`), spoken without libsystemd:
//! `READY=1` once the listeners are open and the first verdicts are in, `STATUS=` lines,
//! `RELOADING=1` around a SIGHUP, `STOPPING=1`, and `WATCHDOG=1` pings that stop when a DNS
//! worker or the states task stops making progress ([`Liveness`]), so that systemd restarts
//! a stuck daemon. Without `NOTIFY_SOCKET` (not under systemd) every call does nothing.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where to tell systemd: `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// The notifier of this process, if systemd (or a test) set `NOTIFY_SOCKET`.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let addr = match path.to_str().and_then(|p| p.strip_prefix('@')) {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
        };
        let socket = UnixDatagram::unbound().ok()?;
        Some(Notifier { socket, addr })
    }

    /// Sends `lines` (`KEY=value` each) as one datagram.
    pub fn send(&self, lines: &[String]) -> io::Result<()> {
        let mut msg = lines.join("\n");
        msg.push('\n');
        self.socket.send_to_addr(msg.as_bytes(), &self.addr)?;
        Ok(())
    }

    /// The watchdog interval systemd asks for (`WatchdogSec=`), if it asks and means this
    /// process (`WATCHDOG_PID`, when set, is ours).
    pub fn watchdog() -> Option<Duration> {
        if let Some(pid) = std::env::var_os("WATCHDOG_PID")
            && pid.to_str() != Some(&std::process::id().to_string())
        {
            return None;
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec))
    }
}

/// `STATUS=` text: one line, no control characters.
pub fn status(text: &str) -> String {
    format!("STATUS={}", crate::text::escape(text))
}

/// `MONOTONIC_USEC=` as systemd wants it with `RELOADING=1`.
pub fn monotonic_usec() -> String {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000
        + u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000;
    format!("MONOTONIC_USEC={usec}")
}

/// Progress counters of the tasks that must keep running: each bumps its [`Beat`] as it
/// loops (the UDP workers at least every 200 ms, the states task every 250 ms), and the
/// watchdog pings only while every one has moved since the last ping.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    beats: Arc<Mutex<Vec<Registered>>>,
}

/// A task's name and counter.
type Registered = (String, Arc<AtomicU64>);

/// One task's progress counter.
#[derive(Debug, Clone)]
pub struct Beat(Arc<AtomicU64>);

impl Beat {
    /// The task made progress.
    pub fn beat(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Liveness {
    /// Registers a task (`name` for the log) and returns its counter.
    pub fn register(&self, name: impl Into<String>) -> Beat {
        let counter = Arc::new(AtomicU64::new(0));
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.push((name.into(), counter.clone()));
        Beat(counter)
    }

    /// The counters now, in registration order.
    fn read(&self) -> Vec<(String, u64)> {
        let beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats
            .iter()
            .map(|(n, c)| (n.clone(), c.load(Ordering::Relaxed)))
            .collect()
    }

    /// The tasks that made no progress between `before` and `now` (by registration order;
    /// tasks registered after `before` count as alive).
    fn stalled(before: &[(String, u64)], now: &[(String, u64)]) -> Vec<String> {
        before
            .iter()
            .zip(now)
            .filter(|((_, a), (_, b))| a == b)
            .map(|((n, _), _)| n.clone())
            .collect()
    }

    /// Pings `notifier` every half `interval` while every registered task has made progress
    /// within the last `interval`; stops pinging (and logs which task is stuck) while one
    /// has not, so that systemd restarts the daemon. Runs until `cancel`. Tasks beat at
    /// least every 250 ms, so any `WatchdogSec=` of half a second or more works.
    pub async fn watchdog(
        self,
        notifier: Arc<Notifier>,
        interval: Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        // Readings at the last two ticks: a task must have moved since the older one.
        let mut seen = std::collections::VecDeque::from([self.read()]);
        let mut ticker = tokio::time::interval(interval / 2);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let now = self.read();
            let stalled = Self::stalled(&seen[0], &now);
            if stalled.is_empty() {
                if let Err(e) = notifier.send(&["WATCHDOG=1".into()]) {
                    tracing::warn!("cannot ping systemd's watchdog: {e}");
                }
            } else {
                tracing::error!(
                    "no watchdog ping: {} made no progress for {:?}; systemd will restart detour",
                    stalled.join(", "),
                    interval
                );
            }
            seen.push_back(now);
            if seen.len() > 2 {
                seen.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_that_stops_beating_is_named() {
        let l = Liveness::default();
        let udp = l.register("DNS/UDP worker 1");
        let states = l.register("states task");
        let before = l.read();
        udp.beat();
        states.beat();
        assert!(Liveness::stalled(&before, &l.read()).is_empty());
        let before = l.read();
        udp.beat();
        assert_eq!(Liveness::stalled(&before, &l.read()), ["states task"]);
        // One registered since is not blamed for the time before it existed.
        let before = l.read();
        let _late = l.register("late");
        udp.beat();
        states.beat();
        assert!(Liveness::stalled(&before, &l.read()).is_empty());
    }

    #[test]
    fn status_lines_stay_one_line() {
        assert_eq!(
            status("serving 1 zone\nREADY=1"),
            "STATUS=serving 1 zone\\nREADY=1"
        );
    }
}
