//! Text that operators and clients type: length limits before it is kept, and escaping of
//! control characters before it reaches a terminal or the log (the page, Atom and JSON escape
//! on their own).

use std::borrow::Cow;
use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Longest reason or incident message, in characters: a page paragraph, not a document. Each
/// one is kept, published in status.json and the feed, and queued for every notification sink.
pub const MAX_TEXT: usize = 2_000;

/// Longest name of who acted (`--by`, `X-Detour-By`), in characters.
pub const MAX_NAME: usize = 100;

/// Why a piece of text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Longer than its limit.
    #[error("{field} is too long: {len} characters, at most {max}")]
    TooLong {
        /// What the text is ("the reason", "by").
        field: String,
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A name with control characters.
    #[error("{field} must not contain control characters")]
    Control {
        /// What the text is.
        field: String,
    },
}

/// Checks a reason or message: at most [`MAX_TEXT`] characters.
pub fn check_text(field: &str, s: &str) -> Result<(), TextError> {
    check_len(field, s, MAX_TEXT)
}

/// Checks a name (who acted): at most [`MAX_NAME`] characters, no control characters.
pub fn check_name(field: &str, s: &str) -> Result<(), TextError> {
    check_len(field, s, MAX_NAME)?;
    if s.chars().any(is_unsafe) {
        return Err(TextError::Control {
            field: field.to_string(),
        });
    }
    Ok(())
}

fn check_len(field: &str, s: &str, max: usize) -> Result<(), TextError> {
    // Bytes bound characters from above: the count is only needed for long strings.
    if s.len() > max && s.chars().count() > max {
        return Err(TextError::TooLong {
            field: field.to_string(),
            len: s.chars().count(),
            max,
        });
    }
    Ok(())
}

/// Characters that change what a terminal or a log line shows rather than being shown: C0 and
/// C1 controls (ESC, CR, LF, NUL, ...), DEL, and the Unicode bidirectional controls that can
/// reorder a line (U+202A-U+202E, U+2066-U+2069, U+200E/U+200F, U+061C).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// `s` with every [`is_unsafe`] character written as a visible escape (`\n`, `\t`, `\u{1b}`),
/// borrowed when nothing needs it: one line stays one line, and nothing typed can move the
/// cursor, recolour the terminal or reorder what follows.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A time span in words, the one wording the page, the CLI and notifications use: "less than
/// a minute", "12 minutes", "2 hours 5 minutes", "3 days", "1 day 4 hours" (rounded down).
pub fn span(secs: i64) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    let minutes = secs.max(0) / 60;
    if minutes == 0 {
        return "less than a minute".into();
    }
    if minutes < 60 {
        return plural(minutes, "minute");
    }
    let (hours, m) = (minutes / 60, minutes % 60);
    if hours < 24 {
        return match m {
            0 => plural(hours, "hour"),
            m => format!("{} {}", plural(hours, "hour"), plural(m, "minute")),
        };
    }
    let (days, h) = (hours / 24, hours % 24);
    match h {
        0 => plural(days, "day"),
        h => format!("{} {}", plural(days, "day"), plural(h, "hour")),
    }
}

/// The daemon log's field formatter: `name=value` as tracing's default, with every value
/// (and the message) passed through [`escape`], so a reason with a newline cannot forge a
/// log line and one with ESC sequences cannot rewrite the operator's terminal.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogFields;

impl<'w> FormatFields<'w> for LogFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = LogVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct LogVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visit for LogVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

impl LogVisitor<'_> {
    fn write(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        let value = escape(value);
        self.result = match field.name() {
            "message" => write!(self.writer, "{sep}{value}"),
            name if name.starts_with("log.") => Ok(()),
            name => write!(self.writer, "{sep}{name}={value}"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_characters() {
        assert!(check_text("reason", &"é".repeat(MAX_TEXT)).is_ok());
        let e = check_text("reason", &"x".repeat(MAX_TEXT + 1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "reason is too long: 2001 characters, at most 2000"
        );
        assert!(check_name("by", "alice").is_ok());
        assert!(check_name("by", "al\nice").is_err());
        assert!(check_name("by", &"a".repeat(MAX_NAME + 1)).is_err());
    }

    #[test]
    fn escapes_what_a_terminal_would_obey() {
        assert!(matches!(escape("plain text, é"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape("x\0y\r"), "x\\u{0}y\\r");
        assert_eq!(escape("abc\u{202E}def"), "abc\\u{202e}def");
        assert_eq!(escape("\u{9b}"), "\\u{9b}", "C1 CSI");
    }

    #[test]
    fn spans_read_as_words() {
        assert_eq!(span(-5), "less than a minute");
        assert_eq!(span(0), "less than a minute");
        assert_eq!(span(59), "less than a minute");
        assert_eq!(span(60), "1 minute");
        assert_eq!(span(12 * 60 + 5), "12 minutes");
        assert_eq!(span(3600), "1 hour");
        assert_eq!(span(2 * 3600 + 5 * 60), "2 hours 5 minutes");
        assert_eq!(span(86400 * 3), "3 days");
        assert_eq!(span(86400 + 3600 * 4 + 60), "1 day 4 hours");
    }

    #[test]
    fn log_lines_stay_one_line() {
        use std::io::Write;
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(LogFields)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        let reason = "vendor\n2026-12-03T08:00:00Z  INFO forged line\u{1b}[2J\u{202E}";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(reason = %reason, who = "bob\r", "override set: {reason}");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{202E}'));
        assert!(text.contains("override set: vendor\\n2026"), "{text}");
        assert!(text.contains("reason=vendor\\n2026"), "{text}");
        assert!(text.contains("who=\"bob\\r\""), "{text}");
    }
}
