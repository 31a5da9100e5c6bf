//! Manual overrides: an operator says a service is up, down or in maintenance, whatever its
//! checks say. Kept in `state_dir/overrides.toml`, which people may edit by hand (then SIGHUP).
//!
//! ```toml
//! [mls]
//! state  = "down"                       # up | down | maintenance
//! reason = "Vendor is restoring the database"
//! until  = "2026-12-24T06:00:00Z"       # optional: the override ends by itself
//! by     = "alice"                      # who set it (optional)
//! set_at = "2026-12-24T02:10:00Z"       # when (optional)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Diagnostic;
use crate::store;

/// States an operator may force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forced {
    /// Treat as up, whatever the checks say.
    Up,
    /// Treat as down: records point elsewhere.
    Down,
    /// Planned work: records point elsewhere, shown as maintenance.
    Maintenance,
}

impl Forced {
    /// Parses "up", "down" or "maintenance".
    pub fn parse(s: &str) -> Option<Forced> {
        match s {
            "up" => Some(Forced::Up),
            "down" => Some(Forced::Down),
            "maintenance" => Some(Forced::Maintenance),
            _ => None,
        }
    }
}

/// One override.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// The forced state.
    pub state: Forced,
    /// Why, shown on the page and in status.
    #[serde(default)]
    pub reason: String,
    /// When it ends by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Who set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When it was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_at: Option<DateTime<Utc>>,
}

impl Override {
    /// An open-ended override to `state`, for `reason`, with no author or time recorded.
    pub fn new(state: Forced, reason: impl Into<String>) -> Self {
        Self {
            state,
            reason: reason.into(),
            until: None,
            by: None,
            set_at: None,
        }
    }

    /// The same override, ending by itself at `until`.
    #[must_use]
    pub fn until(self, until: DateTime<Utc>) -> Self {
        Self {
            until: Some(until),
            ..self
        }
    }

    /// The same override, set by `who`.
    #[must_use]
    pub fn by(self, who: impl Into<String>) -> Self {
        Self {
            by: Some(who.into()),
            ..self
        }
    }

    /// The same override, set at `at`.
    #[must_use]
    pub fn set_at(self, at: DateTime<Utc>) -> Self {
        Self {
            set_at: Some(at),
            ..self
        }
    }
}

/// Overrides by service id.
pub type Overrides = BTreeMap<String, Override>;

/// `state_dir/overrides.toml`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("overrides.toml")
}

/// The first line detour writes: it promises the [`END`] line.
const WRITTEN: &str = "# Written by detour; it ends with the line \"# end of overrides.toml\".";

/// The last line detour writes: a file that says it was written by detour and lacks it was
/// cut short (a full disk, a crash in a hand edit), and is not read as "fewer overrides".
pub const END: &str = "# end of overrides.toml";

/// Why `overrides.toml` was refused: where in the file (line and column, 0 when the whole
/// file is at fault) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if *.line == 0 { String::new() } else { format!("{}:{}: ", .line, .col) })]
pub struct ParseError {
    /// 1-based line, or 0.
    pub line: usize,
    /// 1-based column, or 0.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    fn whole(message: String) -> Self {
        Self {
            line: 0,
            col: 0,
            message,
        }
    }

    /// The error as a configuration diagnostic naming `file` (what a reload reports).
    pub fn in_file(self, file: &Path) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            line: self.line,
            col: self.col,
            message: self.message,
        }
    }
}

/// Parses the file's text; errors name line:column. An empty file, or one that detour wrote
/// and that lost its [`END`] line, is refused as truncated.
pub fn parse(text: &str) -> Result<Overrides, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::whole(
            "the file is empty, but detour always writes at least a header: \
             truncated? (to clear every override, delete the file)"
                .into(),
        ));
    }
    if text.lines().any(|l| l.trim_end() == WRITTEN)
        && text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::trim_end)
            != Some(END)
    {
        return Err(ParseError::whole(format!(
            "the file ends before its last line {END:?}: truncated? (when editing by hand, keep that line)"
        )));
    }
    toml::from_str::<Overrides>(text).map_err(|e| {
        let (line, col) = e
            .span()
            .map_or((0, 0), |s| crate::config::line_col(text, s.start));
        ParseError {
            line,
            col,
            message: e.message().trim().to_string(),
        }
    })
}

/// Reads overrides for a start: a corrupt file is set aside and reported, never fatal.
pub fn load_at_start(state_dir: &Path) -> (Overrides, Option<String>) {
    let parse = |t: &str| parse(t).map_err(|e| e.to_string());
    let (o, problem) = store::load_or_report(&path(state_dir), parse);
    (o.unwrap_or_default(), problem)
}

/// Reads overrides for a reload: a bad file fails the reload (and is left where it is, for
/// the operator who just edited it to fix) with a diagnostic naming it once.
pub fn load_for_reload(state_dir: &Path) -> Result<Overrides, Diagnostic> {
    let p = path(state_dir);
    match std::fs::read_to_string(&p) {
        Ok(text) => parse(&text).map_err(|e| e.in_file(&p)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Overrides::new()),
        Err(e) => Err(ParseError::whole(format!("cannot read: {e}")).in_file(&p)),
    }
}

/// Writes overrides atomically, with a header explaining the shape.
pub fn save(state_dir: &Path, overrides: &Overrides) -> std::io::Result<()> {
    let body = toml::to_string_pretty(overrides).map_err(std::io::Error::other)?;
    let text = format!(
        "{WRITTEN}\n# detour manual overrides: one table per service id.\n# state = \"up\" | \"down\" | \"maintenance\"; reason; optional until (RFC 3339).\n# Edit by hand, then `detour reload` (or SIGHUP).\n\n{body}\n{END}\n"
    );
    store::atomic_write(&path(state_dir), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_positions() {
        let mut o = Overrides::new();
        o.insert(
            "mls".into(),
            Override::new(Forced::Down, "vendor").by("alice"),
        );
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &o).unwrap();
        assert_eq!(load_for_reload(dir.path()).unwrap(), o);
        let e = parse("[mls]\nstate = \"sideways\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 9));
        assert!(
            e.to_string().starts_with("2:9: unknown variant `sideways`"),
            "{e}"
        );
    }

    #[test]
    fn the_constructor_starts_open_ended_and_each_builder_sets_its_field() {
        let o = Override::new(Forced::Maintenance, "patching");
        assert_eq!(
            o,
            Override {
                state: Forced::Maintenance,
                reason: "patching".into(),
                until: None,
                by: None,
                set_at: None,
            }
        );
        let (set, end) = (
            DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap(),
            DateTime::<Utc>::from_timestamp(1_800_003_600, 0).unwrap(),
        );
        assert_eq!(
            o.until(end).by("alice").set_at(set),
            Override {
                state: Forced::Maintenance,
                reason: "patching".into(),
                until: Some(end),
                by: Some("alice".into()),
                set_at: Some(set),
            }
        );
    }

    #[test]
    fn truncation_is_noticed() {
        let mut o = Overrides::new();
        for s in ["mls", "sso"] {
            o.insert(s.into(), Override::new(Forced::Down, "vendor"));
        }
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &o).unwrap();
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert_eq!(parse(&text).unwrap(), o);
        // Cut at every line boundary but the last: each is refused, none reads as fewer.
        let lines: Vec<&str> = text.lines().collect();
        for n in 0..lines.len() - 1 {
            let cut = lines[..n].join("\n");
            let e = parse(&cut).unwrap_err().to_string();
            assert!(e.contains("truncated?"), "cut after {n} lines: {e}");
        }
        // A file written by hand, without the marker, is read as it is.
        assert_eq!(parse("[mls]\nstate = \"up\"\n").unwrap().len(), 1);
        let e = parse("\n  \n").unwrap_err().to_string();
        assert!(e.contains("delete the file"), "{e}");
    }
}
