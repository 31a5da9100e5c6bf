//! `state_dir/history.db`: the SQLite schema, opening (a corrupt, foreign or locked file is
//! set aside and a new one made), batched writes, daily roll-ups, retention, and the reads
//! the admin API and the report make.
//!
//! Times are milliseconds since the Unix epoch (UTC); probe latencies are microseconds.
//! WAL mode with `synchronous = NORMAL`: a write is one transaction appended to the WAL,
//! readers (the admin API, on their own connection) never wait for the writer.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use serde::de::IntoDeserializer;
use tracing::{error, info};

use super::Answered;
use super::timeline::{Change, Ms, Run};
use crate::audit;
use crate::health::ServiceState;

/// `PRAGMA application_id` of a detour history database ("dtrh").
const APPLICATION_ID: i64 = 0x6474_7268;
/// `PRAGMA user_version`: the schema's version.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY,
  started INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  stopped INTEGER
);
CREATE TABLE IF NOT EXISTS transitions (
  id INTEGER PRIMARY KEY,
  run INTEGER NOT NULL,
  at INTEGER NOT NULL,
  service TEXT NOT NULL,
  from_state TEXT,
  to_state TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_at ON transitions (at);
CREATE TABLE IF NOT EXISTS answered (
  id INTEGER PRIMARY KEY,
  run INTEGER NOT NULL,
  at INTEGER NOT NULL,
  service TEXT NOT NULL,
  answered TEXT NOT NULL,
  manual INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS answered_at ON answered (at);
CREATE TABLE IF NOT EXISTS actions (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  action TEXT NOT NULL,
  service TEXT,
  incident TEXT,
  reason TEXT NOT NULL,
  who TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_at ON actions (at);
CREATE TABLE IF NOT EXISTS notifications (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  sink TEXT NOT NULL,
  kind TEXT NOT NULL,
  service TEXT
);
CREATE INDEX IF NOT EXISTS notifications_at ON notifications (at);
CREATE TABLE IF NOT EXISTS checks (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  service TEXT
);
CREATE TABLE IF NOT EXISTS probe_minutes (
  minute INTEGER NOT NULL,
  check_id INTEGER NOT NULL,
  probes INTEGER NOT NULL,
  failures INTEGER NOT NULL,
  lat_min INTEGER,
  lat_med INTEGER,
  lat_max INTEGER,
  lat_sum INTEGER NOT NULL,
  PRIMARY KEY (minute, check_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS probe_days (
  day INTEGER NOT NULL,
  check_id INTEGER NOT NULL,
  probes INTEGER NOT NULL,
  failures INTEGER NOT NULL,
  lat_min INTEGER,
  lat_med INTEGER,
  lat_max INTEGER,
  lat_sum INTEGER NOT NULL,
  PRIMARY KEY (day, check_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// `state_dir/history.db`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("history.db")
}

/// A state change as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionRow {
    /// The run it happened in.
    #[serde(skip)]
    pub run: i64,
    /// When (ms).
    #[serde(serialize_with = "as_time")]
    pub at: Ms,
    /// Service id.
    pub service: String,
    /// Previous state; none for the first of a run (the state detour found at start).
    pub from: Option<ServiceState>,
    /// New state.
    pub to: ServiceState,
    /// Why, in one line.
    pub reason: String,
}

/// What a service's records answered from `at` on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnsweredRow {
    /// The run.
    #[serde(skip)]
    pub run: i64,
    /// When (ms).
    #[serde(serialize_with = "as_time")]
    pub at: Ms,
    /// Service id (the usual target of the records).
    pub service: String,
    /// What they answered.
    pub answered: Answered,
    /// The change followed an operator's override (else checks, windows or an expiry).
    pub manual: bool,
}

/// A notification a sink delivered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationRow {
    /// When it was delivered (ms).
    #[serde(serialize_with = "as_time")]
    pub at: Ms,
    /// The sink ("1", "webhook", as the notifier labels it).
    pub sink: String,
    /// The event kind ("down", "up", "override", ...).
    pub kind: String,
    /// The service concerned, if any.
    pub service: Option<String>,
}

/// One check's probes during one minute (or one UTC day, rolled up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeRow {
    /// The check's row id.
    pub check: i64,
    /// Minute (or day) since the epoch.
    pub slot: i64,
    /// Probes.
    pub probes: u32,
    /// Failed probes.
    pub failures: u32,
    /// Latency of passing probes (µs): least, median, most, sum.
    pub min: Option<u32>,
    /// Median.
    pub med: Option<u32>,
    /// Most.
    pub max: Option<u32>,
    /// Sum (for averages).
    pub sum: u64,
}

/// Everything one flush writes, in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    /// State changes.
    pub transitions: Vec<TransitionRow>,
    /// Answer changes.
    pub answered: Vec<AnsweredRow>,
    /// Operator actions.
    pub actions: Vec<audit::Entry>,
    /// Delivered notifications.
    pub notifications: Vec<NotificationRow>,
    /// Closed minutes of probes.
    pub minutes: Vec<ProbeRow>,
}

impl Batch {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.transitions.len()
            + self.answered.len()
            + self.actions.len()
            + self.notifications.len()
            + self.minutes.len()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn as_time<S: serde::Serializer>(t: &Ms, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&super::timeline::utc(*t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A state's name as stored ("up", "down", ...), read back; `None` for a name this version
/// does not know (a newer detour wrote it): such rows are skipped.
pub fn state_named(s: &str) -> Option<ServiceState> {
    ServiceState::deserialize_str(s)
}

trait FromName: Sized {
    fn deserialize_str(s: &str) -> Option<Self>;
}

impl<T: serde::de::DeserializeOwned> FromName for T {
    fn deserialize_str(s: &str) -> Option<Self> {
        let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            s.into_deserializer();
        T::deserialize(d).ok()
    }
}

fn answered_named(s: &str) -> Option<Answered> {
    Answered::deserialize_str(s)
}

/// Why the database could not be used as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// Damaged, or not a SQLite database at all.
    Corrupt,
    /// Another process holds a lock on it.
    Locked,
    /// Something else (permissions, a full disk): renaming would not help.
    Other,
}

fn trouble(e: &rusqlite::Error) -> Trouble {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Trouble::Corrupt,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Trouble::Locked,
        _ => Trouble::Other,
    }
}

/// True when `e` means the file is damaged (set it aside and start a new one).
pub fn is_corrupt(e: &rusqlite::Error) -> bool {
    trouble(e) == Trouble::Corrupt
}

/// The writer's connection.
pub struct Db {
    conn: Connection,
    /// Check name to row id.
    checks: HashMap<String, i64>,
}

/// Opens `path` read-write with the schema in place. The first element of the error says
/// whether setting the file aside would help.
fn try_open(path: &Path) -> Result<Connection, (Trouble, String)> {
    let fail = |e: rusqlite::Error| (trouble(&e), e.to_string());
    let conn = Connection::open(path).map_err(fail)?;
    conn.busy_timeout(Duration::from_millis(1000))
        .map_err(fail)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err((Trouble::Other, format!("cannot use WAL mode (got {mode})")));
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL")
        .map_err(fail)?;
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(fail)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(fail)?;
    if tables > 0 && app != APPLICATION_ID {
        return Err((
            Trouble::Corrupt,
            "not a detour history database (another application's SQLite file)".into(),
        ));
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(fail)?;
    if version > SCHEMA_VERSION {
        return Err((
            Trouble::Corrupt,
            format!(
                "written by a newer detour (schema {version}, this one knows {SCHEMA_VERSION})"
            ),
        ));
    }
    // No integrity check of every page here (it reads the whole file, seconds for a large
    // one, at every start): damage found later by a write or a read sets the file aside
    // then (see `is_corrupt`).
    // Takes the write lock: a database another process is writing is found here.
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .map_err(fail)?;
    Ok(conn)
}

/// Renames `path` (and its `-wal` and `-shm` files) to `NAME.WHY-YYYYmmddTHHMMSSZ`; returns
/// where it went.
pub fn set_aside(path: &Path, why: &str) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = path.with_file_name(format!("{name}.{why}-{stamp}"));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        let to = PathBuf::from(format!("{}{suffix}", aside.display()));
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                error!(file = %from.display(), error = %e, "cannot set aside the history database")
            }
        }
    }
    aside
}

impl Db {
    /// Opens (or creates) the database at `path`. One that is corrupt, not detour's, or
    /// locked by another process is set aside (renamed, never deleted) and a new one made;
    /// the second value says so, for `detour status`. `Err` when no database can be had
    /// (detour then runs without history and says why).
    pub fn open(path: &Path) -> Result<(Db, Option<String>), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let (conn, problem) = match try_open(path) {
            Ok(c) => (c, None),
            Err((Trouble::Other, why)) => {
                return Err(format!("cannot open {}: {why}", path.display()));
            }
            Err((t, why)) => {
                let what = if t == Trouble::Locked {
                    "locked"
                } else {
                    "corrupt"
                };
                let aside = set_aside(path, what);
                let problem = format!(
                    "history.db was unusable ({what}: {why}); set aside as {} and a new one started",
                    aside.display()
                );
                error!(file = %path.display(), aside = %aside.display(), reason = %why, "history database set aside");
                let conn = try_open(path)
                    .map_err(|(_, e)| format!("cannot open {}: {e}", path.display()))?;
                (conn, Some(problem))
            }
        };
        let mut db = Db {
            conn,
            checks: HashMap::new(),
        };
        db.load_checks().map_err(|e| e.to_string())?;
        info!(file = %path.display(), "history database open");
        Ok((db, problem))
    }

    fn load_checks(&mut self) -> rusqlite::Result<()> {
        let mut st = self.conn.prepare("SELECT name, id FROM checks")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for r in rows {
            let (name, id) = r?;
            self.checks.insert(name, id);
        }
        Ok(())
    }

    /// The row id of check `name` (a service's, when `service` is given), made when new.
    pub fn check_id(&mut self, name: &str, service: Option<&str>) -> rusqlite::Result<i64> {
        if let Some(id) = self.checks.get(name) {
            return Ok(*id);
        }
        self.conn.execute(
            "INSERT INTO checks (name, service) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![name, service],
        )?;
        let id: i64 = self.conn.query_row(
            "SELECT id FROM checks WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )?;
        self.checks.insert(name.to_string(), id);
        Ok(id)
    }

    /// Starts a run at `at`; returns its id.
    pub fn begin_run(&mut self, at: Ms) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO runs (started, last_seen) VALUES (?1, ?1)",
            params![at],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Writes `batch` and moves run `run`'s last sign of life to `seen` (and its end to
    /// `seen`, when `stopped`), in one transaction.
    pub fn write(
        &mut self,
        batch: &Batch,
        run: i64,
        seen: Ms,
        stopped: bool,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO transitions (run, at, service, from_state, to_state, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for t in &batch.transitions {
                st.execute(params![
                    t.run,
                    t.at,
                    t.service,
                    t.from.map(|s| s.to_string()),
                    t.to.to_string(),
                    t.reason
                ])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO answered (run, at, service, answered, manual) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for a in &batch.answered {
                st.execute(params![
                    a.run,
                    a.at,
                    a.service,
                    a.answered.as_str(),
                    a.manual
                ])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO actions (at, action, service, incident, reason, who) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for e in &batch.actions {
                st.execute(params![
                    e.time.timestamp_millis(),
                    e.action,
                    e.service,
                    e.incident,
                    e.reason,
                    e.who
                ])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO notifications (at, sink, kind, service) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for n in &batch.notifications {
                st.execute(params![n.at, n.sink, n.kind, n.service])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO probe_minutes (minute, check_id, probes, failures, lat_min, lat_med, lat_max, lat_sum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (minute, check_id) DO UPDATE SET
                   probes = probes + excluded.probes, failures = failures + excluded.failures,
                   lat_min = min(coalesce(lat_min, excluded.lat_min), coalesce(excluded.lat_min, lat_min)),
                   lat_med = coalesce(excluded.lat_med, lat_med),
                   lat_max = max(coalesce(lat_max, excluded.lat_max), coalesce(excluded.lat_max, lat_max)),
                   lat_sum = lat_sum + excluded.lat_sum",
            )?;
            for m in &batch.minutes {
                st.execute(params![
                    m.slot,
                    m.check,
                    m.probes,
                    m.failures,
                    m.min,
                    m.med,
                    m.max,
                    m.sum as i64
                ])?;
            }
            tx.execute(
                "UPDATE runs SET last_seen = max(last_seen, ?2), stopped = CASE WHEN ?3 THEN ?2 ELSE stopped END WHERE id = ?1",
                params![run, seen, stopped],
            )?;
        }
        tx.commit()
    }

    /// Rolls every complete UTC day before `today` (days since the epoch) whose minutes are
    /// not rolled up yet into `probe_days` (the day's median is the median of its minutes'
    /// medians). Returns the days rolled up.
    pub fn roll_up(&mut self, today: i64) -> rusqlite::Result<usize> {
        let done: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'rolled_up_before'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let first: Option<i64> =
            self.conn
                .query_row("SELECT min(minute) FROM probe_minutes", [], |r| r.get(0))?;
        let Some(first) = first else {
            return Ok(0);
        };
        let from = done.unwrap_or(i64::MIN).max(first.div_euclid(1440));
        let mut n = 0;
        for day in from..today {
            let tx = self.conn.transaction()?;
            {
                let mut per: BTreeMap<i64, (ProbeRow, Vec<u32>)> = BTreeMap::new();
                let mut st = tx.prepare_cached(
                    "SELECT check_id, probes, failures, lat_min, lat_med, lat_max, lat_sum FROM probe_minutes WHERE minute >= ?1 AND minute < ?2",
                )?;
                let mut rows = st.query(params![day * 1440, (day + 1) * 1440])?;
                while let Some(r) = rows.next()? {
                    let check: i64 = r.get(0)?;
                    let e = per.entry(check).or_insert_with(|| {
                        (
                            ProbeRow {
                                check,
                                slot: day,
                                probes: 0,
                                failures: 0,
                                min: None,
                                med: None,
                                max: None,
                                sum: 0,
                            },
                            Vec::new(),
                        )
                    });
                    e.0.probes += r.get::<_, u32>(1)?;
                    e.0.failures += r.get::<_, u32>(2)?;
                    let (min, med, max): (Option<u32>, Option<u32>, Option<u32>) =
                        (r.get(3)?, r.get(4)?, r.get(5)?);
                    e.0.min = opt_min(e.0.min, min);
                    e.0.max = e.0.max.max(max);
                    e.0.sum += r.get::<_, i64>(6)?.max(0) as u64;
                    e.1.extend(med);
                }
                let mut ins = tx.prepare_cached(
                    "INSERT OR REPLACE INTO probe_days (day, check_id, probes, failures, lat_min, lat_med, lat_max, lat_sum) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for (_, (mut row, mut meds)) in per {
                    meds.sort_unstable();
                    row.med = meds.get(meds.len().saturating_sub(1) / 2).copied();
                    ins.execute(params![
                        row.slot,
                        row.check,
                        row.probes,
                        row.failures,
                        row.min,
                        row.med,
                        row.max,
                        row.sum as i64
                    ])?;
                }
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('rolled_up_before', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![day + 1],
                )?;
            }
            tx.commit()?;
            n += 1;
        }
        Ok(n)
    }

    /// Deletes what is older than `keep_from` (ms), minutes older than `detail_from` (ms),
    /// keeping each service's last state and answer before the cut, so the state at the cut
    /// is still known. Freed pages are reused by later writes: the file stops growing once
    /// `keep` is reached.
    pub fn prune(&mut self, keep_from: Ms, detail_from: Ms) -> rusqlite::Result<usize> {
        let tx = self.conn.transaction()?;
        let mut n = 0;
        n += tx.execute(
            "DELETE FROM transitions WHERE at < ?1 AND id NOT IN (SELECT max(id) FROM transitions WHERE at < ?1 GROUP BY service, run)",
            params![keep_from],
        )?;
        n += tx.execute(
            "DELETE FROM answered WHERE at < ?1 AND id NOT IN (SELECT max(id) FROM answered WHERE at < ?1 GROUP BY service, run)",
            params![keep_from],
        )?;
        n += tx.execute(
            "DELETE FROM runs WHERE max(last_seen, coalesce(stopped, 0)) < ?1",
            params![keep_from],
        )?;
        n += tx.execute(
            "DELETE FROM transitions WHERE run NOT IN (SELECT id FROM runs)",
            [],
        )?;
        n += tx.execute(
            "DELETE FROM answered WHERE run NOT IN (SELECT id FROM runs)",
            [],
        )?;
        n += tx.execute("DELETE FROM actions WHERE at < ?1", params![keep_from])?;
        n += tx.execute(
            "DELETE FROM notifications WHERE at < ?1",
            params![keep_from],
        )?;
        n += tx.execute(
            "DELETE FROM probe_days WHERE day < ?1",
            params![keep_from.div_euclid(86_400_000)],
        )?;
        n += tx.execute(
            "DELETE FROM probe_minutes WHERE minute < ?1",
            params![detail_from.div_euclid(60_000)],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Runs and state changes since `from` (with each service's last change before it).
    pub fn recent(&self, from: Ms, now: Ms) -> rusqlite::Result<(Vec<Run>, Vec<TransitionRow>)> {
        let rows = read(&self.conn, from, now, now, false)?;
        Ok((rows.runs, rows.transitions))
    }

    /// Per service, the passing probes' latency per 15-minute bucket since `from` (ms).
    pub fn buckets(
        &self,
        from: Ms,
    ) -> rusqlite::Result<HashMap<String, BTreeMap<i64, super::Bucket>>> {
        let mut st = self.conn.prepare(
            "SELECT c.service, m.minute / 15, sum(m.probes - m.failures), sum(m.lat_sum), max(m.lat_max)
             FROM probe_minutes m JOIN checks c ON c.id = m.check_id
             WHERE m.minute >= ?1 AND c.service IS NOT NULL GROUP BY 1, 2",
        )?;
        let mut out: HashMap<String, BTreeMap<i64, super::Bucket>> = HashMap::new();
        let mut rows = st.query(params![from.div_euclid(60_000)])?;
        while let Some(r) = rows.next()? {
            let service: String = r.get(0)?;
            let ok: i64 = r.get(2)?;
            if ok <= 0 {
                continue;
            }
            out.entry(service).or_default().insert(
                r.get(1)?,
                super::Bucket {
                    ok: ok as u32,
                    sum_us: r.get::<_, i64>(3)?.max(0) as u64,
                    max_us: r.get::<_, Option<u32>>(4)?.unwrap_or(0),
                },
            );
        }
        Ok(out)
    }
}

fn opt_min(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the admin API, the report and the public JSON read.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    /// Runs overlapping the range (the run in progress ends now).
    pub runs: Vec<Run>,
    /// State changes in the range, each service's last one before it included.
    pub transitions: Vec<TransitionRow>,
    /// Answer changes likewise.
    pub answered: Vec<AnsweredRow>,
    /// Operator actions in the range.
    pub actions: Vec<audit::Entry>,
    /// Notifications delivered in the range.
    pub notifications: Vec<NotificationRow>,
}

impl Rows {
    /// One service's state changes, as timeline changes.
    pub fn states_of(&self, service: &str) -> Vec<Change<ServiceState>> {
        self.transitions
            .iter()
            .filter(|t| t.service == service)
            .map(|t| Change {
                run: t.run,
                at: t.at,
                value: t.to,
            })
            .collect()
    }

    /// One service's answer changes, as timeline changes.
    pub fn answers_of(&self, service: &str) -> Vec<Change<Answered>> {
        self.answered
            .iter()
            .filter(|a| a.service == service)
            .map(|a| Change {
                run: a.run,
                at: a.at,
                value: a.answered,
            })
            .collect()
    }
}

/// A run counts as in progress (its end is now) when it has not stopped and was seen
/// alive this recently.
const ALIVE_WITHIN: Ms = 30_000;

/// Reads `[from, until)`; `now` ends the run in progress. With `all_actions` the operator
/// actions and notifications are read too.
fn read(conn: &Connection, from: Ms, until: Ms, now: Ms, all: bool) -> rusqlite::Result<Rows> {
    let mut rows = Rows::default();
    let latest: Option<i64> = conn.query_row("SELECT max(id) FROM runs", [], |r| r.get(0))?;
    let mut st = conn.prepare(
        "SELECT id, started, last_seen, stopped FROM runs WHERE started < ?2 AND max(last_seen, coalesce(stopped, 0)) >= ?1 - ?3 ORDER BY started",
    )?;
    let mut q = st.query(params![from, until, ALIVE_WITHIN])?;
    while let Some(r) = q.next()? {
        let (id, start, seen, stopped): (i64, Ms, Ms, Option<Ms>) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let end = match stopped {
            Some(s) => s,
            None if Some(id) == latest && now - seen <= ALIVE_WITHIN => now,
            None => seen,
        };
        if end >= from {
            rows.runs.push(Run { id, start, end });
        }
    }
    let ids: Vec<i64> = rows.runs.iter().map(|r| r.id).collect();
    let in_runs = |run: i64| ids.contains(&run);
    // Each service's last change before `from` in a run that reaches into the range, and
    // everything inside it.
    let mut st = conn.prepare(
        "SELECT run, at, service, from_state, to_state, reason FROM transitions
         WHERE (at >= ?1 AND at < ?2)
            OR id IN (SELECT max(id) FROM transitions WHERE at < ?1 GROUP BY service, run)
         ORDER BY at, id",
    )?;
    let mut q = st.query(params![from, until])?;
    while let Some(r) = q.next()? {
        let run: i64 = r.get(0)?;
        let to: String = r.get(4)?;
        let (Some(to), true) = (state_named(&to), in_runs(run)) else {
            continue;
        };
        rows.transitions.push(TransitionRow {
            run,
            at: r.get(1)?,
            service: r.get(2)?,
            from: r
                .get::<_, Option<String>>(3)?
                .as_deref()
                .and_then(state_named),
            to,
            reason: r.get(5)?,
        });
    }
    if !all {
        return Ok(rows);
    }
    let mut st = conn.prepare(
        "SELECT run, at, service, answered, manual FROM answered
         WHERE (at >= ?1 AND at < ?2)
            OR id IN (SELECT max(id) FROM answered WHERE at < ?1 GROUP BY service, run)
         ORDER BY at, id",
    )?;
    let mut q = st.query(params![from, until])?;
    while let Some(r) = q.next()? {
        let run: i64 = r.get(0)?;
        let a: String = r.get(3)?;
        let (Some(answered), true) = (answered_named(&a), in_runs(run)) else {
            continue;
        };
        rows.answered.push(AnsweredRow {
            run,
            at: r.get(1)?,
            service: r.get(2)?,
            answered,
            manual: r.get(4)?,
        });
    }
    let mut st = conn.prepare(
        "SELECT at, action, service, incident, reason, who FROM actions WHERE at >= ?1 AND at < ?2 ORDER BY at, id",
    )?;
    let mut q = st.query(params![from, until])?;
    while let Some(r) = q.next()? {
        rows.actions.push(audit::Entry {
            time: super::timeline::utc(r.get(0)?),
            action: r.get(1)?,
            service: r.get(2)?,
            incident: r.get(3)?,
            reason: r.get(4)?,
            who: r.get(5)?,
        });
    }
    let mut st = conn.prepare(
        "SELECT at, sink, kind, service FROM notifications WHERE at >= ?1 AND at < ?2 ORDER BY at, id",
    )?;
    let mut q = st.query(params![from, until])?;
    while let Some(r) = q.next()? {
        rows.notifications.push(NotificationRow {
            at: r.get(0)?,
            sink: r.get(1)?,
            kind: r.get(2)?,
            service: r.get(3)?,
        });
    }
    Ok(rows)
}

/// Per-check probe summaries as the admin API gives them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeSummary {
    /// Start of the minute or UTC day.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Probes.
    pub probes: u32,
    /// Failed probes.
    pub failures: u32,
    /// Latency of passing probes, in milliseconds: least, median, most.
    pub min_ms: Option<f64>,
    /// Median.
    pub median_ms: Option<f64>,
    /// Most.
    pub max_ms: Option<f64>,
}

/// A read-only connection for the admin API and the report (never the writer's).
pub struct Reader {
    conn: Connection,
}

impl Reader {
    /// Opens `path` read-only.
    pub fn open(path: &Path) -> Result<Reader, String> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        Ok(Reader { conn })
    }

    /// Everything in `[from, until)`; `now` ends the run in progress.
    pub fn rows(&self, from: Ms, until: Ms, now: Ms) -> Result<Rows, String> {
        read(&self.conn, from, until, now, true).map_err(|e| e.to_string())
    }

    /// Probe summaries per check of `service` (every check when `None`) in `[from, until)`:
    /// per minute when `minutes`, else per UTC day.
    pub fn probes(
        &self,
        service: Option<&str>,
        from: Ms,
        until: Ms,
        minutes: bool,
    ) -> Result<BTreeMap<String, Vec<ProbeSummary>>, String> {
        let (table, slot, unit) = if minutes {
            ("probe_minutes", "minute", 60_000)
        } else {
            ("probe_days", "day", 86_400_000)
        };
        let sql = format!(
            "SELECT c.name, p.{slot}, p.probes, p.failures, p.lat_min, p.lat_med, p.lat_max
             FROM {table} p JOIN checks c ON c.id = p.check_id
             WHERE p.{slot} >= ?1 AND p.{slot} < ?2 AND (?3 IS NULL OR c.service = ?3)
             ORDER BY c.name, p.{slot}"
        );
        let run = || -> rusqlite::Result<BTreeMap<String, Vec<ProbeSummary>>> {
            let mut st = self.conn.prepare(&sql)?;
            let mut q = st.query(params![
                from.div_euclid(unit),
                (until + unit - 1).div_euclid(unit),
                service
            ])?;
            let mut out: BTreeMap<String, Vec<ProbeSummary>> = BTreeMap::new();
            let ms = |us: Option<u32>| us.map(|u| f64::from(u) / 1000.0);
            while let Some(r) = q.next()? {
                out.entry(r.get(0)?).or_default().push(ProbeSummary {
                    at: super::timeline::utc(r.get::<_, i64>(1)? * unit),
                    probes: r.get(2)?,
                    failures: r.get(3)?,
                    min_ms: ms(r.get(4)?),
                    median_ms: ms(r.get(5)?),
                    max_ms: ms(r.get(6)?),
                });
            }
            Ok(out)
        };
        run().map_err(|e| e.to_string())
    }
}
