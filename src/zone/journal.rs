//! A zone's journal of changes, for IXFR (RFC 1995): each change from one serial to the
//! next as the records removed and added, kept in memory (a restart starts it empty) and
//! trimmed to a bound in steps and records.

use std::sync::Arc;

use hickory_server::proto::rr::Record;

use super::owner_type_key;

/// One change of a zone, as IXFR sends it (RFC 1995): the SOA before, the records removed,
/// the SOA after, the records added.
#[derive(Debug)]
pub struct Delta {
    /// The SOA the change starts from.
    pub from: Record,
    /// Records removed (a TTL change is a removal and an addition).
    pub deleted: Vec<Record>,
    /// The SOA the change leads to.
    pub to: Record,
    /// Records added.
    pub added: Vec<Record>,
}

impl Delta {
    /// Records removed and added.
    pub fn records(&self) -> usize {
        self.deleted.len() + self.added.len()
    }
}

/// Changes kept per zone for IXFR; older ones are dropped, and a secondary further behind
/// gets the whole zone.
const JOURNAL_STEPS: usize = 256;
/// Records kept in a zone's journal, all changes together, beyond the first change.
const JOURNAL_RECORDS: usize = 100_000;

/// The records of `old` missing from `new` and those of `new` missing from `old`, both
/// sorted as the zone sorts its content (a merge, not a search: a flip in a zone of 100,000
/// records walks each once).
pub fn diff(old: &[Record], new: &[Record]) -> (Vec<Record>, Vec<Record>) {
    let key = |r: &Record| (owner_type_key(r), r.data.to_string());
    let (mut deleted, mut added) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        let (a, b) = (&old[i], &new[j]);
        if a == b {
            if a.ttl != b.ttl {
                deleted.push(a.clone());
                added.push(b.clone());
            }
            i += 1;
            j += 1;
            continue;
        }
        if key(a) < key(b) {
            deleted.push(a.clone());
            i += 1;
        } else {
            added.push(b.clone());
            j += 1;
        }
    }
    deleted.extend_from_slice(&old[i..]);
    added.extend_from_slice(&new[j..]);
    (deleted, added)
}

/// Drops the oldest changes beyond `JOURNAL_STEPS` or `JOURNAL_RECORDS` (the newest
/// change is always kept), and all of them when the newest alone is as large as the zone
/// (`zone_records`): no IXFR across it could be smaller than the zone, so none will be sent.
pub fn trim(journal: &mut Vec<Arc<Delta>>, zone_records: usize) {
    if journal.last().is_some_and(|d| d.records() >= zone_records) {
        journal.clear();
        return;
    }
    let mut records = 0;
    let keep = journal
        .iter()
        .rev()
        .take(JOURNAL_STEPS)
        .take_while(|d| {
            records += d.records();
            records <= JOURNAL_RECORDS
        })
        .count()
        .max(1);
    let drop = journal.len().saturating_sub(keep);
    journal.drain(..drop);
}
