//! Health checks: one task per probe, each sending what it saw to the states task.
//!
//! [`probe`] performs single probes (HTTP, TCP, DNS, and per-address probes for
//! `check_each`), each bounded by its timeout whatever the other side does. [`runner`]
//! schedules them: jittered start, steady `interval`, faster `confirm_interval` while
//! rise/fall is deciding, and rise/fall hysteresis per check.

pub mod probe;

use std::time::Duration;

use chrono::{DateTime, Utc};

/// What one probe saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The probe passed.
    pub ok: bool,
    /// How long it took (up to the timeout).
    pub latency: Duration,
    /// One line for people: "HTTP 200", "HTTP 502", "connect refused",
    /// "timed out after 400ms", "body lacks 'OK'", "certificate expires in 3 days".
    pub reason: String,
    /// When it finished.
    pub at: DateTime<Utc>,
}

impl Observation {
    /// A passing observation.
    pub fn pass(latency: Duration, reason: impl Into<String>) -> Self {
        Self {
            ok: true,
            latency,
            reason: reason.into(),
            at: Utc::now(),
        }
    }

    /// A failing observation.
    pub fn fail(latency: Duration, reason: impl Into<String>) -> Self {
        Self {
            ok: false,
            latency,
            reason: reason.into(),
            at: Utc::now(),
        }
    }
}
