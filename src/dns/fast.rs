//! The fast path: answers compiled ahead into wire format, served by patching the ID and
//! copying the question.
//!
//! Each zone keeps, per owner name, the bytes [`super::answer::compile`] produced through the
//! general path for every type held there (and a NODATA answer for every other type), plus
//! one NXDOMAIN answer for names the zone does not hold, when no wildcard could match them
//! and no delegation lies above them. A query takes this path only when it is plain: one
//! question, class IN, opcode QUERY, a name without compression (in any case: it is looked
//! up in lower case and echoed as sent), no records but an optional well-formed EDNS0 OPT
//! (version 0, no option but one well-formed COOKIE, answered here), nothing after it, and
//! the answer fits the limit.
//! Everything else goes to the general path, so correctness lives in one place; the
//! differential test in `tests/fast_path.rs` holds the two byte for byte.
//!
//! A failover flip changes a few records of a zone, and its serial. Compiling every name
//! again would cost a zone of 100,000 records a third of a second, so [`FastZone::update`]
//! compiles again only the names a change can show through (the changed owners, aliases,
//! names whose answers carry additional records, the apex) and shares the rest with the
//! previous Snapshot; answers that end with the zone's SOA get the current serial written
//! in as they are sent.

use std::collections::HashSet;
use std::sync::Arc;

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::rr::{LowerName, RData, RecordType};
use rustc_hash::FxHashMap;

use super::answer::{Client, compile};
use crate::proto::cookie;
use crate::snapshot::{Snapshot, ZoneData};

/// One compiled answer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Response header bytes 2..12 (flags and counts) for a query without RD, CD or EDNS.
    head: [u8; 10],
    /// Everything after the question.
    tail: Box<[u8]>,
    /// Where in `tail` the zone's SOA serial is, when the answer ends with the SOA (negative
    /// answers, the SOA itself): the current serial is written there as it is sent.
    serial_at: Option<u16>,
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
    /// For every other ordinary type (absent for aliases and delegations).
    nodata: Option<Entry>,
    /// A delegation point: every name below it is a referral.
    cut: bool,
}

/// A zone's NXDOMAIN answer, compiled for one made-up name and moved to any other absent
/// name by shifting its compression pointers (they all point at or after the origin in the
/// question, which moves with the length of the name's part before the origin).
#[derive(Debug)]
struct Missing {
    entry: Entry,
    /// Bytes of the made-up name before the origin.
    prefix: usize,
    /// Where each compression pointer starts in `entry.tail`.
    pointers: Box<[u16]>,
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

    /// The answer to `qname`, whose origin starts at byte `origin` of it.
    fn get(&self, qname: &[u8], origin: usize, labels: &[u8], qtype: u16) -> Option<Found<'_>> {
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
            return Some(Found::Missing(missing, origin));
        };
        if let Some((_, e)) = node.answers.iter().find(|(t, _)| *t == qtype) {
            return Some(Found::Entry(e));
        }
        if meta {
            return None;
        }
        node.nodata.as_ref().map(Found::Entry)
    }
}

/// What [`FastZone::get`] found.
enum Found<'a> {
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

/// Where the parts of a plain query are.
struct Plain {
    /// Offset just past the question's name.
    name_end: usize,
    /// Offsets where each label of the name starts.
    labels: [u8; 128],
    /// Number of labels (root excluded).
    count: usize,
    /// The name has upper-case letters (a resolver randomising case, DNS 0x20).
    upper: bool,
    /// Query type.
    qtype: u16,
    /// EDNS: the client's payload size and DO bit.
    edns: Option<(u16, bool)>,
    /// Where the data of the query's COOKIE option is, and its length.
    cookie: Option<(usize, usize)>,
}

fn u16_at(raw: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*raw.get(i)?, *raw.get(i + 1)?]))
}

/// Accepts only what the fast path answers exactly like the general path.
fn parse(raw: &[u8]) -> Option<Plain> {
    // QR=0, opcode QUERY; QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 0 or 1.
    if raw.len() < 17 || raw[2] & 0xf8 != 0 {
        return None;
    }
    if u16_at(raw, 4)? != 1 || u16_at(raw, 6)? != 0 || u16_at(raw, 8)? != 0 {
        return None;
    }
    let arcount = u16_at(raw, 10)?;
    if arcount > 1 {
        return None;
    }
    let mut labels = [0u8; 128];
    let mut count = 0;
    let mut upper = false;
    let mut i = 12;
    loop {
        let len = *raw.get(i)? as usize;
        if len == 0 {
            break;
        }
        if len > 63 || count == labels.len() {
            return None;
        }
        labels[count] = (i - 12) as u8;
        count += 1;
        let label = raw.get(i + 1..i + 1 + len)?;
        upper |= label.iter().any(u8::is_ascii_uppercase);
        i += 1 + len;
        if i - 12 > 255 {
            return None;
        }
    }
    let name_end = i + 1;
    let qtype = u16_at(raw, name_end)?;
    if u16_at(raw, name_end + 2)? != 1 {
        return None; // class IN only
    }
    let mut p = name_end + 4;
    let mut edns = None;
    let mut cookie = None;
    if arcount == 1 {
        // OPT: root name, type 41, class = payload, TTL = ext-rcode, version, flags.
        if *raw.get(p)? != 0 || u16_at(raw, p + 1)? != 41 {
            return None;
        }
        let payload = u16_at(raw, p + 3)?;
        if *raw.get(p + 5)? != 0 || *raw.get(p + 6)? != 0 {
            return None; // extended RCODE or version other than 0
        }
        let dnssec_ok = raw.get(p + 7)? & 0x80 != 0;
        let rdlen = usize::from(u16_at(raw, p + 9)?);
        let mut o = p + 11;
        let end = o + rdlen;
        while o < end {
            let code = u16_at(raw, o)?;
            let len = usize::from(u16_at(raw, o + 2)?);
            // One option only, a well-formed COOKIE (RFC 7873).
            if code != cookie::CODE || !cookie::well_formed(len) || cookie.is_some() {
                return None;
            }
            cookie = Some((o + 4, len));
            o += 4 + len;
        }
        if o != end {
            return None;
        }
        p = end;
        edns = Some((payload, dnssec_ok));
    }
    if p != raw.len() {
        return None;
    }
    Some(Plain {
        name_end,
        labels,
        count,
        upper,
        qtype,
        edns,
        cookie,
    })
}

/// Writes the fast answer to `raw` from `client` into `out` (cleared first) and returns
/// true, or returns false when the general path must answer.
pub fn answer(snap: &Snapshot, raw: &[u8], client: &Client, out: &mut Vec<u8>) -> bool {
    write(snap, raw, client, out).is_some()
}

fn write(snap: &Snapshot, raw: &[u8], client: &Client, out: &mut Vec<u8>) -> Option<()> {
    let q = parse(raw)?;
    // Looked up in lower case; the question is echoed as it came. The question is never a
    // compression target in hickory's encoding (its bytes are stored with type and class),
    // so the compiled tail does not depend on the question's case.
    let mut lower = [0u8; 256];
    let qname = if q.upper {
        let name = &raw[12..q.name_end];
        let lower = &mut lower[..name.len()];
        lower.copy_from_slice(name);
        // Length bytes are below 64, never letters.
        lower.make_ascii_lowercase();
        &*lower
    } else {
        &raw[12..q.name_end]
    };
    let labels = &q.labels[..q.count];
    // The longest served origin that ends the name.
    let (origin, zone) = labels
        .iter()
        .map(|&l| usize::from(l))
        .chain([qname.len() - 1])
        .find_map(|start| Some((start, snap.zone_by_wire(&qname[start..])?)))?;
    let found = zone.fast.get(qname, origin, labels, q.qtype)?;
    let (entry, moved) = match found {
        Found::Entry(e) => (e, None),
        Found::Missing(m, prefix) => (&m.entry, Some((m, prefix))),
    };
    let cap = snap.config.server.udp_max_payload;
    let limit = match (client.protocol, q.edns) {
        (Protocol::Udp, None) => 512,
        (Protocol::Udp, Some((payload, _))) => usize::from(payload.max(512).min(cap)),
        _ => usize::from(u16::MAX),
    };
    let question = &raw[12..q.name_end + 4];
    // The COOKIE option answering the query's, when cookies are on.
    let cookie = match (q.cookie, &snap.config.server.cookies) {
        (Some((at, len)), Some(secret)) => {
            Some(secret.answer(&raw[at..at + len], client.src.ip(), client.now)?)
        }
        _ => None,
    };
    let opt_len = match (q.edns, cookie) {
        (None, _) => 0,
        (Some(_), None) => 11,
        (Some(_), Some(_)) => 11 + 4 + cookie::ANSWER_LEN,
    };
    let len = 12 + question.len() + entry.tail.len() + opt_len;
    if len > limit {
        return None;
    }
    out.clear();
    out.reserve(len);
    out.extend_from_slice(&raw[..2]);
    out.extend_from_slice(&entry.head);
    // RD and CD are copied from the query.
    out[2] |= raw[2] & 0x01;
    out[3] |= raw[3] & 0x10;
    out.extend_from_slice(question);
    let base = out.len();
    out.extend_from_slice(&entry.tail);
    if let Some(at) = entry.serial_at {
        // Compiled under this serial or an earlier one of the same zone: write today's.
        let at = base + usize::from(at);
        out[at..at + 4].copy_from_slice(&zone.serial.to_be_bytes());
    }
    if let Some((m, prefix)) = moved {
        for &p in m.pointers.iter() {
            let at = base + usize::from(p);
            let target = u16::from_be_bytes([out[at], out[at + 1]]) & 0x3fff;
            // Both lengths are at most 255, so the target stays inside the message.
            let moved = (usize::from(target) + prefix - m.prefix) as u16 | 0xc000;
            out[at..at + 2].copy_from_slice(&moved.to_be_bytes());
        }
    }
    if let Some((_, dnssec_ok)) = q.edns {
        let ar = u16::from_be_bytes([out[10], out[11]]) + 1;
        out[10..12].copy_from_slice(&ar.to_be_bytes());
        let [hi, lo] = cap.to_be_bytes();
        let flags = if dnssec_ok { 0x80 } else { 0 };
        // Root owner, type OPT, class = payload, TTL = extended RCODE, version, flags.
        out.extend_from_slice(&[0, 0, 41, hi, lo, 0, 0, flags, 0]);
        match cookie {
            None => out.extend_from_slice(&[0, 0]),
            Some(c) => {
                let [_, len] = (cookie::ANSWER_LEN as u16).to_be_bytes();
                out.extend_from_slice(&[0, len + 4, 0, cookie::CODE as u8, 0, len]);
                out.extend_from_slice(&c);
            }
        }
    }
    Some(())
}
