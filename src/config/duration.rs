//! Durations written as strings in the config: `"250ms"`, `"5s"`, `"2m"`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A `std::time::Duration` read from a human string such as `"250ms"` or `"2m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"250ms\", \"5s\" or \"2m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse(v).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// The longest duration detour accepts anywhere (config, `--until`, the admin API): ten
/// years. Far more than any interval, timeout or override needs, and small enough that
/// adding it to a clock reading or multiplying it by a rise/fall count never overflows.
pub const MAX: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration at all.
    #[error("invalid duration {0:?} ({1}): expected a string such as \"250ms\", \"5s\" or \"2m\"")]
    Invalid(String, String),
    /// Longer than [`MAX`].
    #[error("duration {0:?} is too long: at most 10 years (\"3650d\")")]
    TooLong(String),
}

/// Parses `"250ms"`, `"5s"`, `"1m30s"`, at most [`MAX`]; the error says what was expected.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| DurationError::Invalid(s.to_string(), e.to_string()))?;
    if d > MAX {
        return Err(DurationError::TooLong(s.to_string()));
    }
    Ok(d)
}

/// Formats a duration the way the config writes it ("1.25s", "250ms", "2m").
pub fn display(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert!(
            parse("five")
                .unwrap_err()
                .to_string()
                .contains("expected a string such as")
        );
        assert_eq!(display(Duration::from_millis(250)), "250ms");
        assert_eq!(display(Duration::from_secs(120)), "2m");
        assert_eq!(display(Duration::from_millis(1250)), "1.25s");
    }

    #[test]
    fn durations_past_ten_years_are_refused() {
        assert_eq!(parse("3650d").unwrap(), MAX);
        for s in ["3651d", "99999999999h"] {
            assert_eq!(parse(s), Err(DurationError::TooLong(s.into())));
        }
        // Past what humantime itself can hold.
        assert!(matches!(
            parse("18446744073709551615000s"),
            Err(DurationError::Invalid(..))
        ));
        assert!(
            parse("3651d")
                .unwrap_err()
                .to_string()
                .contains("at most 10 years")
        );
    }
}
