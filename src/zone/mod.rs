//! Zone data as the query path reads it: every served zone's records, indexed by owner for
//! lookup, with its SOA and serial, its journal of changes for IXFR ([`journal`]), and its
//! answers compiled to wire format for the fast path ([`compiled`]); [`resolve`] holds the
//! answer rules both paths share.
//!
//! A [`ZoneData`] is built by [`ZoneData::compile`] from the config's zone and the selection's
//! current answers; its serial goes up exactly when its content differs from the previous
//! version's. It never changes afterwards: the Snapshot shares it until the next change.

pub mod compiled;
pub mod journal;
pub mod resolve;
pub mod signed;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hickory_server::proto::rr::rdata::SOA;
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;

use crate::config::Zone;
use crate::selection::Choice;
use compiled::FastZone;
use journal::{Delta, diff, trim};

/// One RRset: records of one name and type, held once in the zone's sorted content and
/// referred to here by position (the apex SOA, kept apart, has `len` 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RrSet {
    /// The type.
    pub rtype: RecordType,
    /// First record in `ZoneData::content`.
    start: u32,
    /// How many.
    len: u32,
}

/// Everything held at one owner name.
#[derive(Debug, Clone, Default)]
struct Node {
    /// RRsets, sorted by type.
    rrsets: Vec<RrSet>,
    /// True for a delegation point (NS below the apex).
    cut: bool,
}

impl Node {
    fn get(&self, t: RecordType) -> Option<&RrSet> {
        self.rrsets.iter().find(|r| r.rtype == t)
    }

    /// The types held here, and whether the name is an alias (holds a CNAME).
    fn describe(&self) -> (Vec<RecordType>, bool) {
        let types = self.rrsets.iter().map(|s| s.rtype).collect();
        (types, self.get(RecordType::CNAME).is_some())
    }
}

/// A zone as the query path reads it.
#[derive(Debug)]
pub struct ZoneData {
    /// Apex.
    pub origin: Name,
    /// SOA serial of this Snapshot's version of the zone.
    pub serial: u32,
    /// The SOA record (answers and transfers).
    pub soa: Record,
    /// The SOA for negative answers: TTL = min(SOA TTL, minimum) (RFC 2308).
    pub negative_soa: Record,
    nodes: HashMap<LowerName, Node>,
    has_cuts: bool,
    /// Every record but the SOA, sorted: the zone's content, compared to detect changes.
    content: Vec<Record>,
    /// Sources allowed to transfer the zone.
    pub allow_transfer: Vec<IpNet>,
    /// The TSIG keys a transfer may be signed with; empty when it needs none.
    pub transfer_keys: Vec<Name>,
    /// Origins of the other served zones inside this one: answers compiled ahead stop at
    /// them (a chain into a child zone is the general path's, which looks there).
    children: Vec<LowerName>,
    /// The zone's last changes, oldest first, each from one serial to the next; the last
    /// ends at `serial`. IXFR answers from it (kept in memory only: empty after a restart).
    journal: Vec<Arc<Delta>>,
    /// Answers compiled into wire format for the fast path.
    pub fast: FastZone,
    /// DNSSEC signatures and denial chain, for a zone with `[dnssec]`.
    pub signed: Option<Arc<signed::Signed>>,
}

/// The outcome of looking one name up in one zone.
#[derive(Debug)]
pub enum Found<'a> {
    /// The RRset asked for (owner possibly rewritten by a wildcard).
    Answer(Vec<Record>),
    /// The RRset asked for, borrowed (no wildcard).
    Borrowed(&'a [Record]),
    /// The name is an alias: follow it.
    Cname(&'a Record),
    /// The name exists but has no data of that type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// The name is at or below a delegation: NS records and glue.
    Referral {
        /// The delegation's NS RRset.
        ns: &'a [Record],
        /// In-zone addresses of those name servers.
        glue: Vec<&'a Record>,
    },
}

impl ZoneData {
    /// Builds the zone from the config's `zone` with the dynamic answers in `choices` (TTLs
    /// of records on the way to a maintenance window capped by `caps`); the serial continues
    /// from `prev` and never falls below `now`; `children` are the served zones inside it.
    pub fn compile(
        zone: &Zone,
        (choices, caps): &(Vec<&Choice>, Vec<(&Name, u32)>),
        prev: Option<&ZoneData>,
        now: u32,
        children: Vec<LowerName>,
    ) -> ZoneData {
        let origin = zone.origin.clone();
        let mut content: Vec<Record> = zone.records.clone();
        for r in content.iter_mut() {
            if let Some((_, ttl)) = caps.iter().find(|(n, _)| **n == r.name) {
                r.ttl = r.ttl.min(*ttl);
            }
        }
        for c in choices {
            let d = &zone.dynamic[c.record];
            for v in &c.values {
                content.push(Record::from_rdata(d.name.clone(), d.ttl, v.clone()));
            }
        }
        if let Some(d) = &zone.dnssec {
            content.extend(signed::apex_records(zone, d));
        }
        sort_content(&mut content);
        // An RRset is a set: a dynamic answer listing one address twice (or as "2001:db8::1"
        // and "2001:DB8::1") holds it once, as a secondary would.
        content.dedup();
        let floor = zone.soa.serial.unwrap_or(0);
        // Signatures made again (a new window, other keys) change the zone too.
        let signing_same = |p: &ZoneData| match (&p.signed, &zone.dnssec) {
            (None, None) => true,
            (Some(s), Some(d)) => s.current(d),
            _ => false,
        };
        let serial = match prev {
            Some(p)
                if same_content(&p.content, &content) && p.soa_matches(zone) && signing_same(p) =>
            {
                p.serial
            }
            Some(p) => p.serial.wrapping_add(1).max(now).max(floor),
            None => now.max(floor),
        };
        let soa_rdata = SOA::new(
            zone.soa.mname.clone(),
            zone.soa.rname.clone(),
            serial,
            zone.soa.refresh as i32,
            zone.soa.retry as i32,
            zone.soa.expire as i32,
            zone.soa.minimum,
        );
        let soa = Record::from_rdata(origin.clone(), zone.soa.ttl, RData::SOA(soa_rdata));
        let mut negative_soa = soa.clone();
        negative_soa.ttl = zone.soa.ttl.min(zone.soa.minimum);
        // Owners of the records that changed since `prev`, for compiling only what changed;
        // `None` (compile it all) when a delegation changed, which changes every name below.
        let mut changed: Option<HashSet<LowerName>> = prev.map(|_| HashSet::new());
        let journal = match prev {
            Some(p) if p.serial != serial => {
                let (deleted, added) = diff(&p.content, &content);
                let all = || deleted.iter().chain(&added);
                if all().any(|r| r.record_type() == RecordType::NS) {
                    changed = None;
                } else if let Some(c) = changed.as_mut() {
                    c.extend(all().map(|r| LowerName::new(&r.name)));
                }
                let mut journal = p.journal.clone();
                journal.push(Arc::new(Delta {
                    from: p.soa.clone(),
                    deleted,
                    to: soa.clone(),
                    added,
                }));
                trim(&mut journal, content.len());
                journal
            }
            Some(p) => p.journal.clone(),
            None => Vec::new(),
        };

        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        let apex = LowerName::new(&origin);
        nodes.entry(apex.clone()).or_default();
        for (i, r) in content.iter().enumerate() {
            let key = LowerName::new(&r.name);
            let node = nodes.entry(key.clone()).or_default();
            // Sorted by name and type: an RRset is a run of neighbours.
            match node.rrsets.last_mut() {
                Some(set)
                    if set.rtype == r.record_type() && (set.start + set.len) as usize == i =>
                {
                    set.len += 1
                }
                _ => node.rrsets.push(RrSet {
                    rtype: r.record_type(),
                    start: i as u32,
                    len: 1,
                }),
            }
            if r.record_type() == RecordType::NS && key != apex {
                node.cut = true;
            }
            // Empty non-terminals: every name between the apex and this one exists.
            let mut up = key.base_name();
            while labels(&up) > labels(&apex) {
                nodes.entry(up.clone()).or_default();
                up = up.base_name();
            }
        }
        for n in nodes.values_mut() {
            n.rrsets.sort_by_key(|s| u16::from(s.rtype));
        }
        let apex_node = nodes.get_mut(&apex).expect("apex inserted");
        apex_node.rrsets.insert(
            0,
            RrSet {
                rtype: RecordType::SOA,
                start: 0,
                len: 0,
            },
        );
        let has_cuts = nodes.values().any(|n| n.cut);
        let mut z = ZoneData {
            origin,
            serial,
            soa,
            negative_soa,
            nodes,
            has_cuts,
            content,
            allow_transfer: zone.allow_transfer.clone(),
            transfer_keys: zone
                .transfer_keys
                .iter()
                .map(|k| k.name().clone())
                .collect(),
            children,
            journal,
            fast: FastZone::default(),
            signed: None,
        };
        if let Some(d) = &zone.dnssec {
            let prev_signed = prev.and_then(|p| p.signed.as_deref());
            match signed::Signed::build(zone, d, &z, prev_signed, changed.as_ref()) {
                Ok(s) => z.signed = Some(Arc::new(s)),
                // Keys that loaded but cannot sign: served unsigned would be rejected by
                // validating resolvers all the same; say so loudly.
                Err(e) => tracing::error!(zone = %z.origin, "cannot sign the zone: {e}"),
            }
        }
        // Signed answers compiled under other signatures (a new window, other keys) are
        // all stale: compile everything again.
        let resigned = match (&z.signed, prev.and_then(|p| p.signed.as_ref())) {
            (Some(now), Some(before)) => {
                now.window != before.window || now.settings != before.settings
            }
            (None, None) => false,
            _ => true,
        };
        let changed = if resigned { None } else { changed };
        z.fast = match (prev, changed) {
            (Some(p), Some(c)) => {
                FastZone::update(&p.fast, p, &z, &c).unwrap_or_else(|| FastZone::build(&z))
            }
            _ => FastZone::build(&z),
        };
        z
    }

    /// Whether the zone is signed and its signatures are due to be made again (a new
    /// signing window has begun): the next Snapshot must compile it anew.
    pub fn signatures_due(&self) -> bool {
        self.signed
            .as_ref()
            .is_some_and(|s| !s.current(&s.settings))
    }

    /// Whether `name` is in this zone's data: under its origin and not under a child zone's.
    pub fn holds(&self, name: &LowerName) -> bool {
        LowerName::new(&self.origin).zone_of(name) && !self.children.iter().any(|c| c.zone_of(name))
    }

    /// How many names exist in the zone, empty non-terminals included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Whether `name` exists in the zone (empty non-terminals included).
    pub fn has_node(&self, name: &LowerName) -> bool {
        self.nodes.contains_key(name)
    }

    /// Every owner name with the types held there, and whether it is an alias (CNAME).
    pub fn owners(&self) -> impl Iterator<Item = (&LowerName, Vec<RecordType>, bool)> {
        self.nodes.iter().map(|(name, node)| {
            let (types, alias) = node.describe();
            (name, types, alias)
        })
    }

    /// The types held at `name` and whether it is an alias, if the name exists.
    pub fn owner(&self, name: &LowerName) -> Option<(Vec<RecordType>, bool)> {
        self.nodes.get(name).map(Node::describe)
    }

    fn soa_matches(&self, zone: &Zone) -> bool {
        match &self.soa.data {
            RData::SOA(s) => {
                s.mname == zone.soa.mname
                    && s.rname == zone.soa.rname
                    && s.refresh == zone.soa.refresh as i32
                    && s.retry == zone.soa.retry as i32
                    && s.expire == zone.soa.expire as i32
                    && s.minimum == zone.soa.minimum
                    && self.soa.ttl == zone.soa.ttl
            }
            _ => false,
        }
    }

    /// The records of the RRset `name`/`rtype`, if the zone holds it.
    pub fn rrset(&self, name: &LowerName, rtype: RecordType) -> Option<&[Record]> {
        let node = self.nodes.get(name)?;
        node.get(rtype).map(|set| self.slice(set))
    }

    /// The records of one RRset.
    fn slice(&self, set: &RrSet) -> &[Record] {
        if set.len == 0 {
            return std::slice::from_ref(&self.soa);
        }
        let start = set.start as usize;
        &self.content[start..start + set.len as usize]
    }

    /// A digest of the zone's content (records and TTLs, not the serial): two instances
    /// of a cluster with the same digest serve the same zone.
    pub fn digest(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for r in &self.content {
            ctx.update(r.to_string().as_bytes());
            ctx.update(b"\n");
        }
        ctx.finish().as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Every record of the zone but the SOA, sorted by name and type (for AXFR).
    pub fn records(&self) -> &[Record] {
        &self.content
    }

    /// How many changes the journal holds (how far back IXFR reaches).
    pub fn journal_len(&self) -> usize {
        self.journal.len()
    }

    /// The changes from serial `since` to the current one, oldest first, if the journal
    /// still holds them all and they are smaller than the zone itself; `None` means the
    /// whole zone is the better answer.
    pub fn changes_since(&self, since: u32) -> Option<&[Arc<Delta>]> {
        // The journal holds the content's changes, not the signatures': a signed zone is
        // sent whole.
        if self.signed.is_some() {
            return None;
        }
        let start = self
            .journal
            .iter()
            .position(|d| soa_serial(&d.from) == Some(since))?;
        let steps = &self.journal[start..];
        let records: usize = steps.iter().map(|d| d.records()).sum();
        (records < self.content.len()).then_some(steps)
    }

    /// Looks up `name` (inside this zone) for `qtype`.
    pub fn lookup(&self, name: &LowerName, qtype: RecordType) -> Found<'_> {
        if self.has_cuts
            && let Some(found) = self.delegation(name, qtype)
        {
            return found;
        }
        let node = match self.nodes.get(name) {
            Some(n) => n,
            None => return self.wildcard(name, qtype),
        };
        if let Some(c) = node.get(RecordType::CNAME)
            && qtype != RecordType::CNAME
        {
            return Found::Cname(&self.slice(c)[0]);
        }
        if qtype == RecordType::ANY {
            // RFC 8482: one RRset is enough.
            return match node.rrsets.first() {
                Some(set) => Found::Borrowed(self.slice(set)),
                None => Found::NoData,
            };
        }
        match node.get(qtype) {
            Some(set) => Found::Borrowed(self.slice(set)),
            None => Found::NoData,
        }
    }

    /// The closest delegation at or above `name`, if any (a DS query at the cut itself is
    /// the parent's to answer).
    fn delegation(&self, name: &LowerName, qtype: RecordType) -> Option<Found<'_>> {
        let apex_labels = labels(&LowerName::new(&self.origin));
        let mut ancestors = Vec::new();
        let mut n = name.clone();
        while labels(&n) > apex_labels {
            ancestors.push(n.clone());
            n = n.base_name();
        }
        // From the top down: the highest cut wins.
        for (i, a) in ancestors.iter().rev().enumerate() {
            let Some(node) = self.nodes.get(a) else {
                continue;
            };
            if !node.cut {
                continue;
            }
            let at_cut = i == ancestors.len() - 1;
            if at_cut && qtype == RecordType::DS {
                return None;
            }
            let ns = self.slice(node.get(RecordType::NS).expect("cut has NS"));
            return Some(Found::Referral {
                ns,
                glue: self.glue(ns),
            });
        }
        None
    }

    /// In-zone A and AAAA records of the targets of NS, MX or SRV records.
    pub fn glue<'a>(&'a self, records: &[Record]) -> Vec<&'a Record> {
        let mut out = Vec::new();
        for r in records {
            let target = match &r.data {
                RData::NS(ns) => &ns.0,
                RData::MX(mx) => &mx.exchange,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            if let Some(node) = self.nodes.get(&LowerName::new(target)) {
                for t in [RecordType::A, RecordType::AAAA] {
                    if let Some(set) = node.get(t) {
                        out.extend(self.slice(set).iter());
                    }
                }
            }
        }
        out
    }

    /// RFC 4592 wildcard synthesis for a name with no node of its own.
    fn wildcard(&self, name: &LowerName, qtype: RecordType) -> Found<'_> {
        let apex_labels = labels(&LowerName::new(&self.origin));
        let mut encloser = name.base_name();
        while labels(&encloser) >= apex_labels {
            if self.nodes.contains_key(&encloser) {
                let star = match Name::from(encloser.clone()).prepend_label("*") {
                    Ok(s) => LowerName::new(&s),
                    Err(_) => return Found::NxDomain,
                };
                let Some(node) = self.nodes.get(&star) else {
                    return Found::NxDomain;
                };
                let owner = Name::from(name.clone());
                let pick = if let Some(c) = node.get(RecordType::CNAME) {
                    Some(c)
                } else if qtype == RecordType::ANY {
                    node.rrsets.first()
                } else {
                    node.get(qtype)
                };
                return match pick {
                    Some(set) => Found::Answer(
                        self.slice(set)
                            .iter()
                            .map(|r| {
                                let mut r = r.clone();
                                r.name = owner.clone();
                                r
                            })
                            .collect(),
                    ),
                    None => Found::NoData,
                };
            }
            if labels(&encloser) == apex_labels {
                break;
            }
            encloser = encloser.base_name();
        }
        Found::NxDomain
    }
}

/// Sorts records by name (DNSSEC canonical order, RFC 4034 §6.1), type and data, so that
/// each RRset is a run of neighbours and equal contents compare equal. The name and type are
/// turned into one byte key per record first: comparing `Name`s walks their labels, and a
/// zone of 100,000 records would pay for millions of walks.
fn sort_content(content: &mut [Record]) {
    content.sort_by_cached_key(owner_type_key);
    for run in content.chunk_by_mut(|a, b| a.record_type() == b.record_type() && a.name == b.name) {
        if run.len() > 1 {
            run.sort_by_cached_key(|r| r.data.to_string());
        }
    }
}

/// A record's owner (labels reversed, lower case) and type, as one byte string that sorts
/// as [`sort_content`] wants.
fn owner_type_key(r: &Record) -> Vec<u8> {
    let mut key = Vec::with_capacity(r.name.len() + 4);
    for label in r.name.iter().rev() {
        key.extend(label.iter().map(u8::to_ascii_lowercase));
        key.push(0);
    }
    key.extend_from_slice(&u16::from(r.record_type()).to_be_bytes());
    key
}

/// Whether two sorted contents hold the same records with the same TTLs (hickory's record
/// equality leaves the TTL out, RFC 2136 §1.1.1, but a TTL change is a change of the zone).
fn same_content(a: &[Record], b: &[Record]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y && x.ttl == y.ttl)
}

/// The serial of an SOA record.
pub fn soa_serial(r: &Record) -> Option<u32> {
    match &r.data {
        RData::SOA(s) => Some(s.serial),
        _ => None,
    }
}

/// Labels of a name, a leading `*` included (hickory's `num_labels` leaves it out, as
/// DNSSEC counts them, which would misplace literal wildcard names).
pub fn labels(name: &LowerName) -> u8 {
    name.iter().count() as u8
}
