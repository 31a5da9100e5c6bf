//! Subscribers: visitors who asked, on the status page, to be told by email or text. Kept in
//! `state_dir/subscribers.db` (SQLite, WAL): who they are (personal data: never in
//! status.json or the logs, where addresses are masked), what they want, and an outbox of
//! what they have not been told yet. A message leaves the outbox only when its row is marked
//! sent, so a crash in the middle of a fan-out resumes where it stopped.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::payload::Notice;

/// The file inside `state_dir`.
pub const FILE: &str = "subscribers.db";

/// A confirmation is sent to one address at most this often.
pub const CONFIRM_EVERY: chrono::Duration = chrono::Duration::hours(1);

/// One subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscriber {
    /// Row id.
    pub id: i64,
    /// "email" or "sms".
    pub channel: String,
    /// Email address or E.164 number.
    pub address: String,
    /// Service ids they follow; empty: everything.
    pub services: Vec<String>,
    /// When they asked.
    pub created_at: DateTime<Utc>,
    /// When they confirmed (nothing but the confirmation is sent before).
    pub confirmed_at: Option<DateTime<Utc>>,
    /// When they were last sent news.
    pub last_sent_at: Option<DateTime<Utc>>,
}

/// What `subscribe` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribed {
    /// The subscriber as now stored.
    pub subscriber: Subscriber,
    /// True when a confirmation may be sent now (none was sent in the last hour).
    pub send_confirmation: bool,
}

/// One message waiting for a subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Outbox row id.
    pub id: i64,
    /// What to tell.
    pub notice: Notice,
}

/// The store.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn from_ts(s: Option<i64>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::from_timestamp(s, 0))
}

fn db<T>(r: rusqlite::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("subscribers database: {e}"))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subscribers (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    services TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    confirmed_at INTEGER,
    confirm_sent_at INTEGER,
    last_sent_at INTEGER,
    UNIQUE (channel, address)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    subscriber INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
    notice TEXT NOT NULL,
    queued_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_subscriber ON outbox(subscriber);
CREATE TABLE IF NOT EXISTS told (
    key TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);
";

impl Store {
    /// Opens (or makes) `state_dir/subscribers.db`. A file that is not a database of ours is
    /// set aside (renamed, never deleted) and a new one made; the problem is returned too.
    pub fn open(state_dir: &Path) -> Result<(Store, Option<String>), String> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| format!("cannot make {}: {e}", state_dir.display()))?;
        let path = state_dir.join(FILE);
        match Self::open_at(&path) {
            Ok(s) => Ok((s, None)),
            Err(reason) if path.exists() => {
                let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
                let aside = path.with_file_name(format!("{FILE}.corrupt-{stamp}"));
                std::fs::rename(&path, &aside)
                    .map_err(|e| format!("cannot set aside {}: {e}", path.display()))?;
                for ext in ["-wal", "-shm"] {
                    let p = PathBuf::from(format!("{}{ext}", path.display()));
                    let _ = std::fs::remove_file(p);
                }
                let s = Self::open_at(&path)?;
                Ok((
                    s,
                    Some(format!(
                        "{FILE} was unreadable ({reason}); set aside as {}",
                        aside.display()
                    )),
                ))
            }
            Err(e) => Err(e),
        }
    }

    fn open_at(path: &Path) -> Result<Store, String> {
        let conn = db(Connection::open(path))?;
        db(conn.busy_timeout(std::time::Duration::from_secs(5)))?;
        db(conn.pragma_update(None, "journal_mode", "WAL"))?;
        // WAL with NORMAL survives a crash of detour (what matters for a fan-out); only a
        // power cut may lose the last transactions.
        db(conn.pragma_update(None, "synchronous", "NORMAL"))?;
        db(conn.pragma_update(None, "foreign_keys", "ON"))?;
        db(conn.execute_batch(SCHEMA))?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscriber> {
        let services: String = r.get(3)?;
        Ok(Subscriber {
            id: r.get(0)?,
            channel: r.get(1)?,
            address: r.get(2)?,
            services: services
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            created_at: from_ts(r.get(4)?).unwrap_or_default(),
            confirmed_at: from_ts(r.get(5)?),
            last_sent_at: from_ts(r.get(6)?),
        })
    }

    const COLUMNS: &str = "id, channel, address, services, created_at, confirmed_at, last_sent_at";

    /// Adds a subscriber (or changes what an existing one follows); says whether a
    /// confirmation may go out now.
    pub fn subscribe(
        &self,
        channel: &str,
        address: &str,
        services: &[String],
        now: DateTime<Utc>,
    ) -> Result<Subscribed, String> {
        let mut c = self.conn();
        let tx = db(c.transaction())?;
        let list = services.join(",");
        db(tx.execute(
            "INSERT INTO subscribers (channel, address, services, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (channel, address) DO UPDATE SET services = excluded.services",
            params![channel, address, list, ts(now)],
        ))?;
        let (subscriber, confirm_sent_at): (Subscriber, Option<i64>) = db(tx.query_row(
            &format!(
                "SELECT {}, confirm_sent_at FROM subscribers WHERE channel = ?1 AND address = ?2",
                Self::COLUMNS
            ),
            params![channel, address],
            |r| Ok((Self::row(r)?, r.get(7)?)),
        ))?;
        let send_confirmation = subscriber.confirmed_at.is_none()
            && from_ts(confirm_sent_at).is_none_or(|t| now - t >= CONFIRM_EVERY);
        if send_confirmation {
            db(tx.execute(
                "UPDATE subscribers SET confirm_sent_at = ?1 WHERE id = ?2",
                params![ts(now), subscriber.id],
            ))?;
        }
        db(tx.commit())?;
        Ok(Subscribed {
            subscriber,
            send_confirmation,
        })
    }

    /// Confirms `address` on `channel`; false when no such subscriber.
    pub fn confirm(
        &self,
        channel: &str,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, String> {
        let n = db(self.conn().execute(
            "UPDATE subscribers SET confirmed_at = COALESCE(confirmed_at, ?1) WHERE channel = ?2 AND address = ?3",
            params![ts(now), channel, address],
        ))?;
        Ok(n > 0)
    }

    /// Removes `address` (on `channel`, or on every channel when `None`) and what waits for
    /// it; how many subscriptions went.
    pub fn remove(&self, channel: Option<&str>, address: &str) -> Result<usize, String> {
        let c = self.conn();
        let n = match channel {
            Some(ch) => db(c.execute(
                "DELETE FROM subscribers WHERE channel = ?1 AND address = ?2",
                params![ch, address],
            ))?,
            None => db(c.execute(
                "DELETE FROM subscribers WHERE address = ?1",
                params![address],
            ))?,
        };
        Ok(n)
    }

    /// Every subscriber, oldest first.
    pub fn list(&self) -> Result<Vec<Subscriber>, String> {
        let c = self.conn();
        let mut st = db(c.prepare(&format!(
            "SELECT {} FROM subscribers ORDER BY id",
            Self::COLUMNS
        )))?;
        let rows = db(st.query_map([], Self::row))?;
        db(rows.collect())
    }

    /// The confirmed subscribers who follow any of `services` (or everything).
    fn matching(tx: &rusqlite::Transaction<'_>, services: &[String]) -> Result<Vec<i64>, String> {
        let mut st =
            db(tx.prepare("SELECT id, services FROM subscribers WHERE confirmed_at IS NOT NULL"))?;
        let rows = db(st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))))?;
        let mut out = Vec::new();
        for r in rows {
            let (id, list) = db(r)?;
            let follows = list.is_empty()
                || services.is_empty()
                || list.split(',').any(|s| services.iter().any(|x| x == s));
            if follows {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// How many confirmed subscribers `services` news reaches.
    pub fn count(&self, services: &[String]) -> Result<usize, String> {
        let mut c = self.conn();
        let tx = db(c.transaction())?;
        let n = Self::matching(&tx, services)?.len();
        Ok(n)
    }

    /// Queues `notice` for every confirmed subscriber who follows its services, in one
    /// transaction; how many. With `key`, only once ever (maintenance announcements and
    /// reminders): 0 when it was queued before.
    pub fn enqueue(
        &self,
        notice: &Notice,
        services: &[String],
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<usize, String> {
        let body = serde_json::to_string(notice).map_err(|e| e.to_string())?;
        let mut c = self.conn();
        let tx = db(c.transaction())?;
        if let Some(k) = key {
            let fresh = db(tx.execute(
                "INSERT OR IGNORE INTO told (key, at) VALUES (?1, ?2)",
                params![k, ts(now)],
            ))?;
            if fresh == 0 {
                return Ok(0);
            }
        }
        let ids = Self::matching(&tx, services)?;
        {
            let mut st = db(tx.prepare(
                "INSERT INTO outbox (subscriber, notice, queued_at) VALUES (?1, ?2, ?3)",
            ))?;
            for id in &ids {
                db(st.execute(params![id, body, ts(now)]))?;
            }
        }
        db(tx.commit())?;
        Ok(ids.len())
    }

    /// True when the keyed message `key` was queued before.
    pub fn told(&self, key: &str) -> Result<bool, String> {
        let n: i64 = db(self.conn().query_row(
            "SELECT COUNT(*) FROM told WHERE key = ?1",
            params![key],
            |r| r.get(0),
        ))?;
        Ok(n > 0)
    }

    /// Marks `key` as told without queueing anything (a reminder made moot by the
    /// announcement that goes out at the same moment).
    pub fn mark_told(&self, key: &str, now: DateTime<Utc>) -> Result<(), String> {
        db(self.conn().execute(
            "INSERT OR IGNORE INTO told (key, at) VALUES (?1, ?2)",
            params![key, ts(now)],
        ))?;
        Ok(())
    }

    /// Subscribers with news waiting whose last message is at least `min_gap` old, with
    /// everything waiting for each (oldest first); at most `limit` subscribers.
    pub fn due(
        &self,
        now: DateTime<Utc>,
        min_gap: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<(Subscriber, Vec<Pending>)>, String> {
        let gap = i64::try_from(min_gap.as_secs()).unwrap_or(i64::MAX);
        let c = self.conn();
        let mut st = db(c.prepare(&format!(
            "SELECT {} FROM subscribers s WHERE confirmed_at IS NOT NULL
               AND EXISTS (SELECT 1 FROM outbox o WHERE o.subscriber = s.id)
               AND (last_sent_at IS NULL OR last_sent_at + ?1 <= ?2)
             ORDER BY id LIMIT ?3",
            Self::COLUMNS
        )))?;
        let subs: Vec<Subscriber> = db(db(st.query_map(
            params![gap, ts(now), i64::try_from(limit).unwrap_or(i64::MAX)],
            Self::row,
        ))?
        .collect())?;
        let mut pend =
            db(c.prepare("SELECT id, notice FROM outbox WHERE subscriber = ?1 ORDER BY id"))?;
        let mut out = Vec::with_capacity(subs.len());
        for s in subs {
            let rows: Vec<(i64, String)> =
                db(db(pend.query_map(params![s.id], |r| Ok((r.get(0)?, r.get(1)?))))?.collect())?;
            let pending = rows
                .into_iter()
                .filter_map(|(id, n)| {
                    serde_json::from_str(&n)
                        .ok()
                        .map(|notice| Pending { id, notice })
                })
                .collect();
            out.push((s, pending));
        }
        Ok(out)
    }

    /// The earliest moment a waiting message may go (now, or when a subscriber's gap ends).
    pub fn next_due(&self, min_gap: std::time::Duration) -> Result<Option<DateTime<Utc>>, String> {
        let gap = i64::try_from(min_gap.as_secs()).unwrap_or(i64::MAX);
        let t: Option<i64> = db(self
            .conn()
            .query_row(
                "SELECT MIN(COALESCE(last_sent_at + ?1, 0)) FROM subscribers s
                 WHERE confirmed_at IS NOT NULL
                   AND EXISTS (SELECT 1 FROM outbox o WHERE o.subscriber = s.id)",
                params![gap],
                |r| r.get(0),
            )
            .optional())?
        .flatten();
        Ok(from_ts(t))
    }

    /// Marks what a subscriber was just sent: the rows leave the outbox, their gap starts.
    pub fn sent(&self, subscriber: i64, rows: &[i64], now: DateTime<Utc>) -> Result<(), String> {
        let mut c = self.conn();
        let tx = db(c.transaction())?;
        {
            let mut del = db(tx.prepare("DELETE FROM outbox WHERE id = ?1"))?;
            for r in rows {
                db(del.execute(params![r]))?;
            }
        }
        db(tx.execute(
            "UPDATE subscribers SET last_sent_at = ?1 WHERE id = ?2",
            params![ts(now), subscriber],
        ))?;
        db(tx.commit())
    }

    /// Drops rows that could not be delivered (given up after the sink's attempts).
    pub fn drop_rows(&self, rows: &[i64]) -> Result<(), String> {
        let mut c = self.conn();
        let tx = db(c.transaction())?;
        {
            let mut del = db(tx.prepare("DELETE FROM outbox WHERE id = ?1"))?;
            for r in rows {
                db(del.execute(params![r]))?;
            }
        }
        db(tx.commit())
    }

    /// Messages waiting in the outbox.
    pub fn waiting(&self) -> Result<usize, String> {
        let n: i64 = db(self
            .conn()
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0)))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Kind};

    fn notice(service: &str) -> Notice {
        let mut e = Event::new(Kind::Down);
        e.service = Some(service.into());
        Notice::single(e)
    }

    #[test]
    fn double_opt_in_folding_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let (s, problem) = Store::open(dir.path()).unwrap();
        assert!(problem.is_none());
        let t0 = Utc::now();
        let a = s.subscribe("email", "a@example.test", &[], t0).unwrap();
        assert!(a.send_confirmation);
        // Asked again within the hour: no second confirmation.
        let again = s
            .subscribe("email", "a@example.test", &["mls".into()], t0)
            .unwrap();
        assert!(!again.send_confirmation);
        assert_eq!(again.subscriber.services, ["mls"]);
        s.subscribe("sms", "+15555550199", &["sso".into()], t0)
            .unwrap();
        // Nothing is queued for the unconfirmed.
        assert_eq!(
            s.enqueue(&notice("mls"), &["mls".into()], None, t0)
                .unwrap(),
            0
        );
        assert!(s.confirm("email", "a@example.test", t0).unwrap());
        assert!(s.confirm("sms", "+15555550199", t0).unwrap());
        assert!(!s.confirm("email", "nobody@example.test", t0).unwrap());
        // News of mls reaches the mls follower only; twice, folded into one due batch.
        assert_eq!(
            s.enqueue(&notice("mls"), &["mls".into()], None, t0)
                .unwrap(),
            1
        );
        assert_eq!(
            s.enqueue(&notice("mls"), &["mls".into()], None, t0)
                .unwrap(),
            1
        );
        let gap = std::time::Duration::from_secs(300);
        let due = s.due(t0, gap, 100).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.len(), 2);
        let rows: Vec<i64> = due[0].1.iter().map(|p| p.id).collect();
        s.sent(due[0].0.id, &rows, t0).unwrap();
        // Within the gap, later news waits.
        s.enqueue(&notice("mls"), &["mls".into()], None, t0)
            .unwrap();
        assert!(
            s.due(t0 + chrono::Duration::seconds(299), gap, 100)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.due(t0 + chrono::Duration::seconds(300), gap, 100)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            s.next_due(gap).unwrap(),
            Some(DateTime::from_timestamp(t0.timestamp() + 300, 0).unwrap())
        );
        // A keyed message is queued once ever.
        assert_eq!(s.enqueue(&notice("sso"), &[], Some("m1"), t0).unwrap(), 2);
        assert_eq!(s.enqueue(&notice("sso"), &[], Some("m1"), t0).unwrap(), 0);
        assert_eq!(s.remove(None, "a@example.test").unwrap(), 1);
        assert_eq!(s.list().unwrap().len(), 1);
        assert_eq!(
            s.waiting().unwrap(),
            1,
            "the removed subscriber's outbox went with them"
        );
    }

    #[test]
    fn a_corrupt_database_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            b"not a database at all, not even close....",
        )
        .unwrap();
        let (s, problem) = Store::open(dir.path()).unwrap();
        assert!(problem.unwrap().contains("set aside"));
        assert!(s.list().unwrap().is_empty());
    }
}
