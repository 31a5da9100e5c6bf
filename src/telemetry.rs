//! Metrics in Prometheus text format: DNS query counters kept in plain atomics (the query
//! path must stay cheap), everything else through the `metrics` facade.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Query types counted by name; everything else is "other".
const QTYPES: &[(u16, &str)] = &[
    (1, "A"),
    (2, "NS"),
    (5, "CNAME"),
    (6, "SOA"),
    (12, "PTR"),
    (15, "MX"),
    (16, "TXT"),
    (28, "AAAA"),
    (33, "SRV"),
    (43, "DS"),
    (65, "HTTPS"),
    (251, "IXFR"),
    (252, "AXFR"),
    (255, "ANY"),
    (257, "CAA"),
];
const OTHER_TYPE: usize = QTYPES.len();
/// RCODE names by value 0..=10; 11 counts everything else; 12 counts dropped packets.
const RCODES: &[&str] = &[
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE", "other", "dropped",
];
const SLOTS: usize = (QTYPES.len() + 1) * 13;

static DNS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histogram samples are folded into their buckets.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the Prometheus recorder once per process (later calls reuse it), with a thread
/// that folds histogram samples every few seconds. Without it every probe's latency sample
/// is kept until someone scrapes `/metrics` (measured: ~35 bytes per probe).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            // Probe latencies as a histogram with buckets (summable across instances and
            // over time, unlike the exporter's default summary), from 5 ms to a 10 s timeout.
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("detour_check_duration_seconds".into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
                .ok()?
                .install_recorder()
                .ok()?;
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// The question's type, read straight from the wire (None when the packet is too short).
fn qtype(query: &[u8]) -> Option<u16> {
    let mut i = 12;
    loop {
        let len = *query.get(i)? as usize;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        i += len + 1;
    }
    Some(u16::from_be_bytes([*query.get(i + 1)?, *query.get(i + 2)?]))
}

/// The counter of one query and its answer.
fn slot(query: &[u8], response: Option<&[u8]>) -> usize {
    let t = qtype(query)
        .and_then(|t| QTYPES.iter().position(|(v, _)| *v == t))
        .unwrap_or(OTHER_TYPE);
    let r = match response {
        None => 12,
        Some(resp) => match resp.get(3) {
            Some(b) if usize::from(b & 0x0f) <= 10 => usize::from(b & 0x0f),
            _ => 11,
        },
    };
    t * 13 + r
}

/// Query counts gathered by one listener thread and added to the shared counters once per
/// batch: one atomic add per counter touched instead of one per query, so threads on other
/// cores do not fight over the counters' cache lines.
#[derive(Debug)]
pub struct Tally {
    counts: [u32; SLOTS],
    touched: Vec<u16>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            counts: [0; SLOTS],
            touched: Vec::with_capacity(SLOTS),
        }
    }
}

impl Tally {
    /// Counts one query and its answer (`None` when nothing was sent back).
    pub fn count(&mut self, query: &[u8], response: Option<&[u8]>) {
        let s = slot(query, response);
        if self.counts[s] == 0 {
            self.touched.push(s as u16);
        }
        self.counts[s] += 1;
    }

    /// Adds what was counted to the shared counters and starts again.
    pub fn flush(&mut self) {
        for s in self.touched.drain(..) {
            let s = usize::from(s);
            DNS[s].fetch_add(u64::from(self.counts[s]), Ordering::Relaxed);
            self.counts[s] = 0;
        }
    }
}

/// The whole exposition: DNS counters, then everything recorded through the facade.
pub fn render() -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP detour_dns_queries_total DNS queries answered, by query type and response code.\n",
    );
    out.push_str("# TYPE detour_dns_queries_total counter\n");
    for (ti, name) in QTYPES.iter().map(|(_, n)| *n).chain(["other"]).enumerate() {
        for (ri, rcode) in RCODES.iter().enumerate() {
            let n = DNS[ti * 13 + ri].load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "detour_dns_queries_total{{qtype=\"{name}\",rcode=\"{rcode}\"}} {n}"
                );
            }
        }
    }
    if let Some(h) = install() {
        out.push_str(&h.render());
    }
    out
}

/// A short class for a failure reason, to keep label values few.
pub fn reason_class(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.starts_with("timed out") {
        "timeout"
    } else if r.starts_with("http ") {
        "http_status"
    } else if r.contains("refused") || r.contains("connect") || r.contains("closed") {
        "connect"
    } else if r.starts_with("body") {
        "body"
    } else if r.contains("certificate") || r.starts_with("tls") {
        "tls"
    } else if r.starts_with("dns") {
        "dns"
    } else if r.starts_with("slow") {
        "slow"
    } else if r.starts_with("expected") {
        "unexpected_reply"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_adds_its_counts_once_flushed() {
        // Type 99 (counted as "other") is asked by no other test in this process.
        let mut q = vec![0u8; 12];
        q.extend_from_slice(&[3, b'w', b'w', b'w', 0, 0, 99, 0, 1]);
        let mut nxdomain = vec![0u8; 12];
        nxdomain[3] = 3;
        let (answered, dropped) = (slot(&q, Some(&nxdomain)), slot(&q, None));
        let read = |s: usize| DNS[s].load(Ordering::Relaxed);
        let before = (read(answered), read(dropped));
        let mut t = Tally::default();
        for _ in 0..5 {
            t.count(&q, Some(&nxdomain));
        }
        t.count(&q, None);
        assert_eq!(
            (read(answered), read(dropped)),
            before,
            "nothing before the flush"
        );
        t.flush();
        assert_eq!(
            (read(answered), read(dropped)),
            (before.0 + 5, before.1 + 1)
        );
        t.flush();
        assert_eq!(
            (read(answered), read(dropped)),
            (before.0 + 5, before.1 + 1)
        );
        assert!(render().contains("detour_dns_queries_total{qtype=\"other\",rcode=\"NXDOMAIN\"}"));
    }

    #[test]
    fn reads_the_question_type_from_the_wire() {
        let mut q = vec![0u8; 12];
        q.extend_from_slice(&[3, b'w', b'w', b'w', 0, 0, 28, 0, 1]);
        assert_eq!(qtype(&q), Some(28));
        assert_eq!(qtype(&q[..14]), None);
        assert_eq!(reason_class("timed out after 400ms"), "timeout");
        assert_eq!(reason_class("HTTP 502 (expected 200)"), "http_status");
    }
}

/// A log line said at most once per period, however often its cause repeats (refused admin
/// requests, accept errors, discarded probes): a flood must not become a flood of log lines.
/// Each time it may speak it says how many it held back since it last spoke.
#[derive(Debug)]
pub struct Throttle {
    every: std::time::Duration,
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Throttle {
    /// A throttle that lets one line through per `every`.
    pub const fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last line)` when this occurrence may be logged, else
    /// `None` (and it is counted).
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(std::time::Instant::now())
    }

    fn allow_at(&self, now: std::time::Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.0.is_none_or(|t| now.duration_since(t) >= self.every) {
            s.0 = Some(now);
            Some(std::mem::take(&mut s.1))
        } else {
            s.1 += 1;
            None
        }
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::Throttle;
    use std::time::Duration;

    #[test]
    fn speaks_once_per_period_and_counts_the_rest() {
        let t = Throttle::new(Duration::from_secs(60));
        let start = std::time::Instant::now();
        assert_eq!(t.allow_at(start), Some(0));
        for s in 1..=5 {
            assert_eq!(t.allow_at(start + Duration::from_secs(s)), None);
        }
        let later = start + Duration::from_secs(60);
        assert_eq!(t.allow_at(later), Some(5));
        assert_eq!(t.allow_at(later), None);
    }
}
