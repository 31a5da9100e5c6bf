//! Answers compiled ahead into wire format, per zone, for the fast path (`dns::fast`).
//!
//! Each zone keeps, per owner name, the bytes [`super::resolve::compile`] produces for every
//! type held there (and a NODATA answer for every other type), plus one NXDOMAIN answer for
//! names the zone does not hold, when no wildcard could match them and no delegation lies
//! above them. The differential test in `tests/fast_path.rs` holds these answers to the
//! general path's, byte for byte.
//!
//! A failover flip changes a few records of a zone, and its serial. Compiling every name
//! again would cost a zone of 100,000 records a third of a second, so [`FastZone::update`]
//! compiles again only the names a change can show through (the changed owners, aliases,
//! names whose answers carry additional records, the apex) and shares the rest with the
//! previous Snapshot; answers that end with the zone's SOA get the current serial written
//! in as they are sent.

use std::collections::HashSet;
use std::sync::Arc;

use hickory_server::proto::rr::{LowerName, RData, RecordType};
use rustc_hash::FxHashMap;

use super::ZoneData;
use super::resolve::{compile, compile_signed};
use crate::proto::u16_at;

/// One compiled answer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Response header bytes 2..12 (flags and counts) for a query without RD, CD or EDNS.
    pub head: [u8; 10],
    /// Everything after the question.
    pub tail: Box<[u8]>,
    /// Where in `tail` the zone's SOA serial is, when the answer ends with the SOA (negative
    /// answers, the SOA itself): the current serial is written there as it is sent.
    pub serial_at: Option<u16>,
}

impl Entry {
    fn new(head: [u8; 10], tail: Vec<u8>) -> Entry {
        // Answer, authority and additional counts (header bytes 6..12).
        let records: usize = [4, 6, 8]
            .iter()
            .map(|&i| usize::from(u16::from_be_bytes([head[i], head[i + 1]])))
            .sum();
        let serial_at = last_soa_serial(&tail, records).and_then(|at| u16::try_from(at).ok());
        Entry {
            head,
            tail: tail.into(),
            serial_at,
        }
    }
}

/// Where the serial is when the last of the `records` records that fill `tail` is an SOA.
fn last_soa_serial(tail: &[u8], records: usize) -> Option<usize> {
    fn skip_name(tail: &[u8], mut i: usize) -> Option<usize> {
        loop {
            let len = *tail.get(i)?;
            match len {
                0 => return Some(i + 1),
                l if l & 0xc0 == 0xc0 => return Some(i + 2),
                l if l & 0xc0 != 0 => return None,
                l => i += 1 + usize::from(l),
            }
        }
    }
    let (mut i, mut last) = (0, None);
    for _ in 0..records {
        let t = skip_name(tail, i)?;
        let rtype = u16_at(tail, t)?;
        let end = t + 10 + usize::from(u16_at(tail, t + 8)?);
        last = (rtype == u16::from(RecordType::SOA) && end >= t + 10 + 20).then(|| end - 20);
        i = end;
    }
    if i == tail.len() { last } else { None }
}

/// Compiled answers at one owner name.
#[derive(Debug, Default)]
struct Node {
    /// By query type.
    answers: Vec<(u16, Entry)>,
    /// With signatures, by query type, for queries with DO to a signed zone (positive
    /// answers only; the rest is the general path's).
    signed: Vec<(u16, Entry)>,
    /// For every other ordinary type (absent for aliases and delegations).
    nodata: Option<Entry>,
    /// A delegation point: every name below it is a referral.
    cut: bool,
}

/// A zone's NXDOMAIN answer, compiled for one made-up name and moved to any other absent
/// name by shifting its compression pointers (they all point at or after the origin in the
/// question, which moves with the length of the name's part before the origin).
#[derive(Debug)]
pub struct Missing {
    /// The answer as compiled for the made-up name.
    pub entry: Entry,
    /// Bytes of the made-up name before the origin.
    pub prefix: usize,
    /// Where each compression pointer starts in `entry.tail`.
    pub pointers: Box<[u16]>,
}

/// A zone's compiled answers, keyed by the owner's lowercase wire name.
#[derive(Debug, Default)]
pub struct FastZone {
    /// Every name that exists in the zone, empty non-terminals included; a name whose
    /// answers could not be compiled is here without them. Compiled when the zone was last
    /// compiled whole, and shared by the Snapshots since.
    shared: Arc<FxHashMap<Box<[u8]>, Node>>,
    /// Names compiled again since then: these answers win over `shared`'s.
    overlay: FxHashMap<Box<[u8]>, Arc<Node>>,
    /// The NXDOMAIN answer for names absent from `nodes`; `None` when the zone has a
    /// wildcard (absence alone does not decide) or it could not be compiled.
    missing: Option<Missing>,
    /// Some node is a delegation point: absent names must be checked for one above them.
    has_cuts: bool,
    /// Some name is a wildcard: no update in part (which names a change shows through is
    /// harder to tell), the zone is compiled whole.
    wildcard: bool,
    /// The names holding a [`REACHING`] type, compiled again on every update.
    reaching: Arc<Vec<LowerName>>,
}

/// Types whose answers show other names' records (a chain, additional addresses): their
/// owners are compiled again whenever anything in the zone changes.
const REACHING: &[RecordType] = &[
    RecordType::CNAME,
    RecordType::NS,
    RecordType::MX,
    RecordType::SRV,
];

/// A type no zone holds: asks for the NODATA answer of a name.
const ABSENT: RecordType = RecordType::Unknown(65280);

impl FastZone {
    /// Compiles every answer of `zone` that can be compiled.
    pub fn build(zone: &ZoneData) -> FastZone {
        let apex = LowerName::new(&zone.origin);
        let mut nodes = FxHashMap::default();
        let mut wildcard = false;
        let mut reaching = Vec::new();
        for (name, types, alias) in zone.owners() {
            wildcard |= name.is_wildcard();
            if types.iter().any(|t| REACHING.contains(t)) {
                reaching.push(name.clone());
            }
            nodes.insert(wire(name), compile_node(zone, &apex, name, types, alias));
        }
        let has_cuts = nodes.values().any(|n| n.cut);
        let missing = if wildcard {
            None
        } else {
            Missing::compile(zone, |w| nodes.contains_key(w))
        };
        FastZone {
            shared: Arc::new(nodes),
            overlay: FxHashMap::default(),
            missing,
            has_cuts,
            wildcard,
            reaching: Arc::new(reaching),
        }
    }

    /// `zone`'s answers, given `prev`, those of the zone's previous version, and `changed`,
    /// the owners of every record added or removed since: names a change cannot show through
    /// keep `prev`'s answers (their serial is written as they are sent); the caller leaves
    /// delegation changes out (they change every name below). `None` when only a whole
    /// compile is right: a wildcard, a name that appeared or vanished, an SOA that changed
    /// beyond its serial, or too much changed.
    pub fn update(
        prev: &FastZone,
        prev_zone: &ZoneData,
        zone: &ZoneData,
        changed: &HashSet<LowerName>,
    ) -> Option<FastZone> {
        // Everything of the SOA but its serial, names in the case they are written.
        let soa_rest = |z: &ZoneData| match &z.soa.data {
            RData::SOA(s) => Some((
                s.mname.to_ascii(),
                s.rname.to_ascii(),
                (s.refresh, s.retry, s.expire, s.minimum),
                [z.soa.ttl, z.negative_soa.ttl],
            )),
            _ => None,
        };
        if prev.wildcard
            || zone.node_count() != prev_zone.node_count()
            || soa_rest(zone) != soa_rest(prev_zone)
            || changed
                .iter()
                .any(|n| !zone.has_node(n) || !prev_zone.has_node(n))
        {
            return None;
        }
        let apex = LowerName::new(&zone.origin);
        let reaches = |n: &LowerName| {
            zone.owner(n)
                .is_some_and(|(types, _)| types.iter().any(|t| REACHING.contains(t)))
        };
        // A changed name may have gained or lost an alias or a mail exchanger.
        let reaching = if changed
            .iter()
            .any(|n| reaches(n) != prev.reaching.contains(n))
        {
            let mut r: Vec<LowerName> = prev
                .reaching
                .iter()
                .filter(|n| !changed.contains(*n))
                .cloned()
                .collect();
            r.extend(changed.iter().filter(|n| reaches(n)).cloned());
            Arc::new(r)
        } else {
            prev.reaching.clone()
        };
        // Compiled again: the changed names, the apex, and every name reaching others.
        let mut overlay = FxHashMap::default();
        for name in changed.iter().chain(reaching.iter()).chain([&apex]) {
            if overlay.contains_key(&*wire(name)) {
                continue; // the apex is usually among the names reaching others
            }
            if let Some((types, alias)) = zone.owner(name) {
                let node = compile_node(zone, &apex, name, types, alias);
                overlay.insert(wire(name), Arc::new(node));
            }
        }
        // Names compiled again by earlier updates keep those answers.
        for (key, node) in &prev.overlay {
            overlay.entry(key.clone()).or_insert_with(|| node.clone());
        }
        if overlay.len() > prev.shared.len() / 4 {
            return None;
        }
        let missing = Missing::compile(zone, |w| {
            overlay.contains_key(w) || prev.shared.contains_key(w)
        });
        Some(FastZone {
            shared: prev.shared.clone(),
            overlay,
            missing,
            has_cuts: prev.has_cuts,
            wildcard: false,
            reaching,
        })
    }

    /// Whether this and `other` share the answers of names that did not change.
    pub fn shares_with(&self, other: &FastZone) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    fn node(&self, wire: &[u8]) -> Option<&Node> {
        match self.overlay.get(wire) {
            Some(n) => Some(n),
            None => self.shared.get(wire),
        }
    }

    /// The answer to `qname` (lowercase wire form; `labels` are where its labels start),
    /// whose origin starts at byte `origin` of it; `None` when the general path must answer.
    pub fn get(&self, qname: &[u8], origin: usize, labels: &[u8], qtype: u16) -> Option<Hit<'_>> {
        // Meta types (AXFR, ANY, TSIG...) are the general path's unless compiled.
        let meta = (128..=255).contains(&qtype);
        let Some(node) = self.node(qname) else {
            let missing = self.missing.as_ref()?;
            if meta {
                return None;
            }
            // Below a delegation point the answer is a referral.
            if self.has_cuts
                && labels
                    .iter()
                    .map(|&l| usize::from(l))
                    .filter(|&l| l > 0 && l < origin)
                    .any(|l| self.node(&qname[l..]).is_some_and(|n| n.cut))
            {
                return None;
            }
            return Some(Hit::Missing(missing, origin));
        };
        if let Some((_, e)) = node.answers.iter().find(|(t, _)| *t == qtype) {
            return Some(Hit::Entry(e));
        }
        if meta {
            return None;
        }
        node.nodata.as_ref().map(Hit::Entry)
    }
}

impl FastZone {
    /// The signed answer to `qname` (lowercase wire form) for a query with DO, when one
    /// was compiled; `None` sends the query to the general path.
    pub fn get_signed(&self, qname: &[u8], qtype: u16) -> Option<&Entry> {
        let node = self.node(qname)?;
        node.signed
            .iter()
            .find(|(t, _)| *t == qtype)
            .map(|(_, e)| e)
    }
}

/// What [`FastZone::get`] found.
pub enum Hit<'a> {
    /// An answer compiled for this very name.
    Entry(&'a Entry),
    /// NXDOMAIN, moved to a name whose part before the origin is this many bytes.
    Missing(&'a Missing, usize),
}

impl Missing {
    /// Compiles the NXDOMAIN answer of `zone` for a name that does not `exist`.
    fn compile(zone: &ZoneData, exists: impl Fn(&[u8]) -> bool) -> Option<Missing> {
        let origin = &zone.origin;
        let name = (0..)
            .map(|i| origin.prepend_label(format!("nx{i}")))
            .take(1000)
            .filter_map(Result::ok)
            .map(|n| LowerName::new(&n))
            .find(|n| !exists(&wire(n)))?;
        let (head, tail) = compile(zone, &name, RecordType::A)?;
        // Header byte 3 (head[1]) holds the RCODE: NXDOMAIN is 3.
        if head[1] & 0x0f != 3 {
            return None;
        }
        let prefix = wire(&name).len() - wire(&LowerName::new(origin)).len();
        let records: usize = [4, 6, 8]
            .iter()
            .map(|&i| usize::from(u16::from_be_bytes([head[i], head[i + 1]])))
            .sum();
        let pointers = pointers(&tail, records)?;
        // Every pointer must aim at the origin or after it, never into the made-up label.
        let first = 12 + prefix;
        let movable = pointers.iter().all(|&p| {
            let p = usize::from(p);
            usize::from(u16::from_be_bytes([tail[p], tail[p + 1]]) & 0x3fff) >= first
        });
        movable.then(|| Missing {
            entry: Entry::new(head, tail),
            prefix,
            pointers: pointers.into(),
        })
    }
}

/// Compiles the answers at `name`, which holds `types` (an alias when `alias`).
fn compile_node(
    zone: &ZoneData,
    apex: &LowerName,
    name: &LowerName,
    types: Vec<RecordType>,
    alias: bool,
) -> Node {
    let mut node = Node {
        cut: name != apex && types.contains(&RecordType::NS),
        ..Node::default()
    };
    let mut wanted = types;
    if alias {
        // Aliases answer the chain; compile the types people ask for most.
        wanted.extend([RecordType::A, RecordType::AAAA]);
    }
    wanted.sort_by_key(|t| u16::from(*t));
    wanted.dedup();
    for t in wanted {
        if let Some((head, tail)) = compile(zone, name, t) {
            node.answers.push((u16::from(t), Entry::new(head, tail)));
        }
        if zone.signed.is_some()
            && let Some((head, tail)) = compile_signed(zone, name, t)
        {
            node.signed.push((u16::from(t), Entry::new(head, tail)));
        }
    }
    if !alias && let Some((head, tail)) = compile(zone, name, ABSENT) {
        node.nodata = Some(Entry::new(head, tail));
    }
    node
}

/// The offsets of the compression pointers in `records` resource records encoded at the
/// start of `tail`; `None` unless the records are SOA records only (all a negative answer
/// holds) and fill `tail` exactly.
fn pointers(tail: &[u8], records: usize) -> Option<Vec<u16>> {
    /// Steps over the name at `*i`, noting a pointer that ends it.
    fn name(tail: &[u8], i: &mut usize, out: &mut Vec<u16>) -> Option<()> {
        loop {
            let len = *tail.get(*i)?;
            if len == 0 {
                *i += 1;
                return Some(());
            }
            if len & 0xc0 == 0xc0 {
                tail.get(*i + 1)?;
                out.push(u16::try_from(*i).ok()?);
                *i += 2;
                return Some(());
            }
            if len & 0xc0 != 0 {
                return None;
            }
            *i += 1 + usize::from(len);
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    for _ in 0..records {
        name(tail, &mut i, &mut out)?;
        let rtype = u16_at(tail, i)?;
        let end = i + 10 + usize::from(u16_at(tail, i + 8)?);
        if rtype != u16::from(RecordType::SOA) || end > tail.len() {
            return None;
        }
        let mut j = i + 10;
        name(tail, &mut j, &mut out)?;
        name(tail, &mut j, &mut out)?;
        if j + 20 != end {
            return None;
        }
        i = end;
    }
    (i == tail.len()).then_some(out)
}

/// A name's lowercase wire form, uncompressed.
pub fn wire(name: &LowerName) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into()
}
