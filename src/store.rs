//! Files in `state_dir`: atomic writes, and corrupt files set aside instead of crashing.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::error;

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename over the
/// target, fsync the folder. Readers see the old file or the new one, never a mix.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_mode(path, bytes, 0o644)
}

/// [`atomic_write`] with the file created with `mode` (less the umask) from its first byte:
/// a secret is never readable by others, not even between creation and a chmod.
pub fn atomic_write_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// What reading a state file found.
#[derive(Debug)]
pub enum Loaded<T> {
    /// No file: a first start.
    Missing,
    /// Parsed.
    Ok(T),
    /// Unreadable or corrupt: renamed to `aside`, with the reason.
    SetAside {
        /// Where the file went.
        aside: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Reads and parses a state file; a file that cannot be read or parsed is renamed to
/// `NAME.corrupt-YYYYmmddTHHMMSSZ` and reported, never deleted.
pub fn load<T>(path: &Path, parse: impl FnOnce(&str) -> Result<T, String>) -> Loaded<T> {
    let text = match fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => Err(format!("cannot read: {e}")),
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string()),
    };
    let reason = match text.and_then(|t| parse(&t)) {
        Ok(v) => return Loaded::Ok(v),
        Err(reason) => reason,
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = path.with_file_name(format!("{name}.corrupt-{stamp}"));
    if let Err(e) = fs::rename(path, &aside) {
        error!(file = %path.display(), error = %e, "cannot set aside corrupt state file");
    }
    error!(file = %path.display(), aside = %aside.display(), %reason, "corrupt state file set aside");
    Loaded::SetAside { aside, reason }
}

/// Reads a state file at start: its value (`None` when missing or set aside) and, when it was
/// set aside, the problem to show in `detour status` ("NAME was unreadable (why); set aside
/// as PATH").
pub fn load_or_report<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> (Option<T>, Option<String>) {
    match load(path, parse) {
        Loaded::Missing => (None, None),
        Loaded::Ok(v) => (Some(v), None),
        Loaded::SetAside { aside, reason } => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                None,
                Some(format!(
                    "{name} was unreadable ({reason}); set aside as {}",
                    aside.display()
                )),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_corrupt_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state.json");
        atomic_write(&p, b"1").unwrap();
        atomic_write(&p, b"2").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "2");
        let parse = |t: &str| t.trim().parse::<u32>().map_err(|e| e.to_string());
        assert!(matches!(load(&p, parse), Loaded::Ok(2)));
        fs::write(&p, "garbage").unwrap();
        match load(&p, parse) {
            Loaded::SetAside { aside, .. } => {
                assert!(!p.exists());
                assert_eq!(fs::read_to_string(aside).unwrap(), "garbage");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(load(&p, parse), Loaded::Missing));
    }

    #[test]
    fn secrets_are_created_with_their_final_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        atomic_write_mode(&p, b"s3cret", 0o600).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn load_or_report_names_the_file_and_where_it_went() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("thing.json");
        let parse = |t: &str| t.trim().parse::<u32>().map_err(|e| e.to_string());
        assert_eq!(load_or_report(&p, parse), (None, None));
        fs::write(&p, "7").unwrap();
        assert_eq!(load_or_report(&p, parse), (Some(7), None));
        fs::write(&p, "x").unwrap();
        let (v, problem) = load_or_report(&p, parse);
        assert_eq!(v, None);
        let problem = problem.unwrap();
        assert!(
            problem.starts_with(
                "thing.json was unreadable (invalid digit found in string); set aside as "
            ),
            "{problem}"
        );
    }
}
