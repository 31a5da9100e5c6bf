//! The fast path: answers compiled ahead into wire format, served by patching the ID and
//! copying the question.
//!
//! Each zone keeps, per owner name, the bytes [`super::answer::compile`] produced through the
//! general path for every type held there (and a NODATA answer for every other type). A
//! query takes this path only when it is plain: one question, class IN, opcode QUERY, a name
//! in lowercase without compression, no records but an optional well-formed EDNS0 OPT
//! (version 0, no options but cookies), nothing after it, and the answer fits the limit.
//! Everything else goes to the general path, so correctness lives in one place; the
//! differential test in `tests/fast_path.rs` holds the two byte for byte.

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::rr::{LowerName, RecordType};
use rustc_hash::FxHashMap;

use super::answer::compile;
use crate::snapshot::{Snapshot, ZoneData};

/// One compiled answer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Response header bytes 2..12 (flags and counts) for a query without RD, CD or EDNS.
    head: [u8; 10],
    /// Everything after the question.
    tail: Box<[u8]>,
}

/// Compiled answers at one owner name.
#[derive(Debug, Default)]
struct Node {
    /// By query type.
    answers: Vec<(u16, Entry)>,
    /// For every other ordinary type (absent for aliases and delegations).
    nodata: Option<Entry>,
}

/// A zone's compiled answers, keyed by the owner's lowercase wire name.
#[derive(Debug, Default)]
pub struct FastZone {
    nodes: FxHashMap<Box<[u8]>, Node>,
}

/// A type no zone holds: asks for the NODATA answer of a name.
const ABSENT: RecordType = RecordType::Unknown(65280);

impl FastZone {
    /// Compiles every answer of `zone` that can be compiled.
    pub fn build(zone: &ZoneData) -> FastZone {
        let mut nodes = FxHashMap::default();
        for (name, types, alias) in zone.owners() {
            let mut node = Node::default();
            let mut wanted = types;
            if alias {
                // Aliases answer the chain; compile the types people ask for most.
                wanted.extend([RecordType::A, RecordType::AAAA]);
            }
            wanted.sort_by_key(|t| u16::from(*t));
            wanted.dedup();
            for t in wanted {
                if let Some((head, tail)) = compile(zone, name, t) {
                    node.answers.push((
                        u16::from(t),
                        Entry {
                            head,
                            tail: tail.into(),
                        },
                    ));
                }
            }
            if !alias && let Some((head, tail)) = compile(zone, name, ABSENT) {
                node.nodata = Some(Entry {
                    head,
                    tail: tail.into(),
                });
            }
            if !node.answers.is_empty() || node.nodata.is_some() {
                nodes.insert(wire(name), node);
            }
        }
        FastZone { nodes }
    }

    fn get(&self, qname: &[u8], qtype: u16) -> Option<&Entry> {
        let node = self.nodes.get(qname)?;
        if let Some((_, e)) = node.answers.iter().find(|(t, _)| *t == qtype) {
            return Some(e);
        }
        // Meta types (AXFR, ANY, TSIG...) are the general path's.
        if (128..=255).contains(&qtype) {
            return None;
        }
        node.nodata.as_ref()
    }
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
    /// Query type.
    qtype: u16,
    /// EDNS: the client's payload size and DO bit.
    edns: Option<(u16, bool)>,
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
        if label.iter().any(u8::is_ascii_uppercase) {
            return None;
        }
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
            // Only cookies (RFC 7873): well-formed, and ignored like the general path does.
            if code != 10 || !(len == 8 || (16..=40).contains(&len)) {
                return None;
            }
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
        qtype,
        edns,
    })
}

/// The fast answer to `raw`, or `None` when the general path must answer.
pub fn answer(snap: &Snapshot, raw: &[u8], protocol: Protocol) -> Option<Vec<u8>> {
    let q = parse(raw)?;
    let qname = &raw[12..q.name_end];
    // The longest served origin that ends the name.
    let zone = (0..=q.count).find_map(|i| {
        let start = if i == q.count {
            qname.len() - 1
        } else {
            q.labels[i] as usize
        };
        snap.zone_by_wire(&qname[start..])
    })?;
    let entry = zone.fast.get(qname, q.qtype)?;
    let cap = snap.config.server.udp_max_payload;
    let limit = match (protocol, q.edns) {
        (Protocol::Udp, None) => 512,
        (Protocol::Udp, Some((payload, _))) => usize::from(payload.max(512).min(cap)),
        _ => usize::from(u16::MAX),
    };
    let question = &raw[12..q.name_end + 4];
    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    let len = 12 + question.len() + entry.tail.len() + opt_len;
    if len > limit {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&raw[..2]);
    out.extend_from_slice(&entry.head);
    // RD and CD are copied from the query.
    out[2] |= raw[2] & 0x01;
    out[3] |= raw[3] & 0x10;
    out.extend_from_slice(question);
    out.extend_from_slice(&entry.tail);
    if let Some((_, dnssec_ok)) = q.edns {
        let ar = u16::from_be_bytes([out[10], out[11]]) + 1;
        out[10..12].copy_from_slice(&ar.to_be_bytes());
        let [hi, lo] = cap.to_be_bytes();
        let flags = if dnssec_ok { 0x80 } else { 0 };
        out.extend_from_slice(&[0, 0, 41, hi, lo, 0, 0, flags, 0, 0, 0]);
    }
    Some(out)
}
