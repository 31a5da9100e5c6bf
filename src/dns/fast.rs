//! The fast path: a plain query answered from the zone's compiled answers
//! ([`crate::zone::compiled`]) by patching the ID and copying the question.
//!
//! A query takes this path only when it is plain: one question, class IN, opcode QUERY, a
//! name without compression (in any case: it is looked up in lower case and echoed as sent),
//! no records but an optional well-formed EDNS0 OPT (version 0, no option but one well-formed
//! COOKIE, answered here), nothing after it, and the answer fits the limit. Everything else
//! goes to the general path, so correctness lives in one place; the differential test in
//! `tests/fast_path.rs` holds the two byte for byte.

use hickory_server::net::xfer::Protocol;

use super::answer::Client;
use crate::proto::{cookie, u16_at};
use crate::snapshot::Snapshot;
use crate::zone::compiled::Hit;

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
    // A signed zone's answers to DO queries carry signatures: compiled apart, positive
    // answers only (the rest is the general path's).
    let found = if zone.signed.is_some() && q.edns.is_some_and(|(_, dnssec_ok)| dnssec_ok) {
        Hit::Entry(zone.fast.get_signed(qname, q.qtype)?)
    } else {
        zone.fast.get(qname, origin, labels, q.qtype)?
    };
    let (entry, moved) = match found {
        Hit::Entry(e) => (e, None),
        Hit::Missing(m, prefix) => (&m.entry, Some((m, prefix))),
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
