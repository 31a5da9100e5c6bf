//! The answer engine: one DNS message in, the authoritative reply out, read from a Snapshot.
//!
//! Pure and synchronous: no I/O, no locks, no clock. The listeners hand it raw bytes and send
//! back what it returns, so every rule of the DNS contract lives here and is tested here.
//! Parsing and encoding use hickory-server's request and response types.

use std::borrow::Cow;
use std::net::SocketAddr;

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{DNSClass, LowerName, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::Request;
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::snapshot::{Found, MAX_CNAME_CHAIN, Snapshot, ZoneData};

/// What to send back for one received message.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Nothing: the packet was too short to answer or was itself a response.
    Drop,
    /// One message.
    Message(Vec<u8>),
    /// Several messages, in order (a zone transfer over TCP).
    Stream(Vec<Vec<u8>>),
}

/// Smallest message with a header.
const HEADER_LEN: usize = 12;
/// Records per AXFR message before the size check splits further.
const AXFR_CHUNK: usize = 256;

/// Answers one raw DNS message received from `src` over `protocol`.
pub fn respond(snap: &Snapshot, raw: &[u8], src: SocketAddr, protocol: Protocol) -> Reply {
    if raw.len() < HEADER_LEN || raw[2] & 0x80 != 0 {
        return Reply::Drop;
    }
    let req = match Request::from_bytes(raw.to_vec(), src, protocol) {
        Ok(r) => r,
        Err(_) => return Reply::Message(header_only(raw, ResponseCode::FormErr)),
    };
    let cap = snap.config.server.udp_max_payload;
    let edns = req.edns.as_ref().map(|e| {
        let mut out = Edns::new();
        out.set_max_payload(cap);
        out.set_version(0);
        out.set_dnssec_ok(e.flags().dnssec_ok);
        out
    });
    let limit = match protocol {
        Protocol::Udp => usize::from(match &req.edns {
            Some(e) => e.max_payload().max(512).min(cap),
            None => 512,
        }),
        _ => u16::MAX as usize,
    };
    let error = |code: ResponseCode| {
        let mut buf = Vec::with_capacity(64);
        let msg =
            MessageResponseBuilder::new(&req.queries, edns.as_ref()).error_msg(&req.metadata, code);
        match msg.destructive_emit(&mut BinEncoder::new(&mut buf)) {
            Ok(_) => buf,
            Err(_) => header_only(raw, code),
        }
    };
    if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Reply::Message(error(ResponseCode::BADVERS));
    }
    if req.metadata.op_code != OpCode::Query {
        return Reply::Message(error(ResponseCode::NotImp));
    }
    if req.queries.len() != 1 {
        return Reply::Message(error(ResponseCode::FormErr));
    }
    let q = &req.queries.queries()[0];
    if q.query_class() != DNSClass::IN {
        return Reply::Message(error(ResponseCode::Refused));
    }
    let qtype = q.query_type();
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return transfer(snap, &req, q.name(), src, protocol, edns.as_ref())
            .unwrap_or_else(|code| Reply::Message(error(code)));
    }
    let res = resolve(snap, q.name(), qtype);
    if res.rcode == ResponseCode::Refused {
        return Reply::Message(error(ResponseCode::Refused));
    }
    let mut meta = Metadata::response_from_request(&req.metadata);
    meta.authoritative = res.aa;
    meta.response_code = res.rcode;
    let emit = |answers: bool, additional: bool, tc: bool| -> Option<Vec<u8>> {
        let mut buf = Vec::with_capacity(512);
        let mut meta = meta;
        meta.truncation = tc;
        let none: &[Record] = &[];
        let (ans, auth, add): (Vec<&Record>, &[&Record], &[&Record]) = if answers {
            (
                res.answer.iter().map(|c| c.as_ref()).collect(),
                &res.authority,
                if additional { &res.additional } else { &[] },
            )
        } else {
            (Vec::new(), &[], &[])
        };
        let msg = MessageResponseBuilder::new(&req.queries, edns.as_ref()).build(
            meta,
            ans,
            auth.iter().copied(),
            none.iter(),
            add.iter().copied(),
        );
        msg.destructive_emit(&mut BinEncoder::new(&mut buf)).ok()?;
        Some(buf)
    };
    let full = emit(true, true, false);
    let out = match full {
        Some(b) if b.len() <= limit => b,
        _ => match emit(true, false, false) {
            // Additional data is optional: drop it before truncating (RFC 2181 §9).
            Some(b) if b.len() <= limit && !res.additional.is_empty() => b,
            _ => match emit(false, false, true) {
                Some(b) => b,
                None => header_only(raw, ResponseCode::ServFail),
            },
        },
    };
    Reply::Message(out)
}

/// A reply of only a header: the query's id, opcode and RD, with `code`. Used when the
/// question cannot be parsed.
fn header_only(raw: &[u8], code: ResponseCode) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN];
    h[0] = raw[0];
    h[1] = raw[1];
    // QR=1, opcode and RD copied.
    h[2] = 0x80 | (raw[2] & 0x79);
    h[3] = (u16::from(code) & 0x0f) as u8;
    h
}

/// The sections of an answer before encoding.
#[derive(Debug)]
pub struct Resolution<'a> {
    /// Response code.
    pub rcode: ResponseCode,
    /// Authoritative answer bit (clear on referrals).
    pub aa: bool,
    /// Answer section.
    pub answer: Vec<Cow<'a, Record>>,
    /// Authority section.
    pub authority: Vec<&'a Record>,
    /// Additional section.
    pub additional: Vec<&'a Record>,
}

/// Resolves `qname`/`qtype` inside the served zones, following in-zone CNAMEs.
/// `Refused` when the name is in no served zone.
pub fn resolve<'a>(snap: &'a Snapshot, qname: &LowerName, qtype: RecordType) -> Resolution<'a> {
    let mut res = Resolution {
        rcode: ResponseCode::NoError,
        aa: true,
        answer: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
    };
    let mut name = Cow::Borrowed(qname);
    for hop in 0..=MAX_CNAME_CHAIN {
        let Some(zone) = snap.find_zone(&name) else {
            if hop == 0 {
                res.rcode = ResponseCode::Refused;
                res.aa = false;
            }
            // The chain leaves our zones: the resolver follows it from here.
            return res;
        };
        match zone.lookup(&name, qtype) {
            Found::Borrowed(records) => {
                res.answer.extend(records.iter().map(Cow::Borrowed));
                res.additional = additional(zone, qtype, records);
                return res;
            }
            Found::Answer(records) => {
                res.answer.extend(records.into_iter().map(Cow::Owned));
                return res;
            }
            Found::Cname(rec) => {
                res.answer.push(Cow::Borrowed(rec));
                let target = match &rec.data {
                    hickory_server::proto::rr::RData::CNAME(c) => LowerName::new(&c.0),
                    _ => return res,
                };
                name = Cow::Owned(target);
            }
            Found::NoData => {
                res.authority.push(&zone.negative_soa);
                return res;
            }
            Found::NxDomain => {
                res.rcode = ResponseCode::NXDomain;
                res.authority.push(&zone.negative_soa);
                return res;
            }
            Found::Referral { ns, glue } => {
                // AA stays set when an authoritative CNAME led here.
                res.aa = hop > 0;
                res.authority.extend(ns.iter());
                res.additional = glue;
                return res;
            }
        }
    }
    // Chain longer than the bound: answer what was followed.
    res
}

fn additional<'a>(zone: &'a ZoneData, qtype: RecordType, records: &[Record]) -> Vec<&'a Record> {
    match qtype {
        RecordType::NS | RecordType::MX | RecordType::SRV => zone.glue(records),
        _ => Vec::new(),
    }
}

/// AXFR, and IXFR answered with the whole zone (RFC 1995 §4), over TCP to allowed sources.
fn transfer(
    snap: &Snapshot,
    req: &Request,
    qname: &LowerName,
    src: SocketAddr,
    protocol: Protocol,
    edns: Option<&Edns>,
) -> Result<Reply, ResponseCode> {
    if protocol != Protocol::Tcp {
        return Err(ResponseCode::Refused);
    }
    let Some(zone) = snap.find_zone(qname) else {
        return Err(ResponseCode::Refused);
    };
    if !zone.allow_transfer.iter().any(|n| n.contains(&src.ip())) {
        return Err(ResponseCode::Refused);
    }
    if LowerName::new(&zone.origin) != *qname {
        return Err(ResponseCode::NotAuth);
    }
    let mut all: Vec<&Record> = Vec::with_capacity(zone.records().len() + 2);
    all.push(&zone.soa);
    all.extend(zone.records().iter());
    all.push(&zone.soa);
    let mut meta = Metadata::response_from_request(&req.metadata);
    meta.authoritative = true;
    let mut out = Vec::new();
    let mut chunks: Vec<&[&Record]> = all.chunks(AXFR_CHUNK).collect();
    chunks.reverse();
    while let Some(chunk) = chunks.pop() {
        let none: &[Record] = &[];
        let msg = MessageResponseBuilder::new(&req.queries, edns).build(
            meta,
            chunk.iter().copied(),
            none.iter(),
            none.iter(),
            none.iter(),
        );
        let mut buf = Vec::new();
        let mut enc = BinEncoder::new(&mut buf);
        let header = msg
            .destructive_emit(&mut enc)
            .map_err(|_| ResponseCode::ServFail)?;
        if header.truncation || buf.len() > u16::MAX as usize {
            if chunk.len() == 1 {
                return Err(ResponseCode::ServFail);
            }
            let (a, b) = chunk.split_at(chunk.len() / 2);
            chunks.push(b);
            chunks.push(a);
            continue;
        }
        out.push(buf);
    }
    Ok(Reply::Stream(out))
}
