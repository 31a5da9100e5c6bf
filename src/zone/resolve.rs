//! What a question's answer is in the served zones, and its wire form: the one place the
//! DNS contract's answer rules live (AA, NXDOMAIN and NODATA with the SOA, in-zone CNAMEs
//! followed, referrals with glue, additional records for NS/MX/SRV, sizes within a limit:
//! whole, else without additional data, else truncated). The general path (`dns::answer`)
//! answers through it per query; [`compile`] runs it ahead of time for the fast path.

use std::borrow::Cow;

use hickory_server::proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{DNSClass, LowerName, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};

use super::{Found, ZoneData};
use crate::config::MAX_CNAME_CHAIN;

/// Length of a DNS message header.
pub const HEADER_LEN: usize = 12;

/// Finds the served zone holding a name: the whole Snapshot on the query path, one zone when
/// answers are compiled ahead.
pub trait Zones {
    /// The zone with the longest origin that `name` is in.
    fn find_zone(&self, name: &LowerName) -> Option<&ZoneData>;
}

impl Zones for ZoneData {
    fn find_zone(&self, name: &LowerName) -> Option<&ZoneData> {
        self.holds(name).then_some(self)
    }
}

/// Encodes a resolution within `limit` bytes: whole if it fits, else without additional
/// data (RFC 2181 §9), else truncated (TC, no records). `None` if hickory cannot encode it.
pub fn encode(
    queries: &Queries,
    meta: Metadata,
    edns: Option<&Edns>,
    res: &Resolution<'_>,
    limit: usize,
) -> Option<Vec<u8>> {
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
        let msg = MessageResponseBuilder::new(queries, edns).build(
            meta,
            ans,
            auth.iter().copied(),
            none.iter(),
            add.iter().copied(),
        );
        msg.destructive_emit(&mut BinEncoder::new(&mut buf)).ok()?;
        Some(buf)
    };
    match emit(true, true, false) {
        Some(b) if b.len() <= limit => Some(b),
        _ => match emit(true, false, false) {
            Some(b) if b.len() <= limit && !res.additional.is_empty() => Some(b),
            _ => emit(false, false, true),
        },
    }
}

/// Compiles the answer to `qname`/`qtype` inside `zone` ahead of time, for the fast path:
/// the response header (bytes 2..12) and everything after the question, as the general path
/// would send it over TCP to a query without EDNS, RD or CD. `None` for answers that cannot be
/// compiled this way: referrals, chains that leave the zone, and failures.
pub fn compile(
    zone: &ZoneData,
    qname: &LowerName,
    qtype: RecordType,
) -> Option<([u8; 10], Vec<u8>)> {
    let res = resolve(zone, qname, qtype);
    if !res.aa || res.left_zones || res.rcode == ResponseCode::Refused {
        return None;
    }
    encode_compiled(qname, qtype, &res)
}

/// [`compile`] for a query with DO to a signed zone: the answer with its RRSIGs, to which
/// the fast path appends an OPT record with DO. `None` also for answers holding the SOA
/// (negative answers, the SOA itself): its RRSIG changes with every serial, so those are
/// the general path's.
pub fn compile_signed(
    zone: &ZoneData,
    qname: &LowerName,
    qtype: RecordType,
) -> Option<([u8; 10], Vec<u8>)> {
    let mut res = resolve(zone, qname, qtype);
    if !res.aa || res.left_zones || res.rcode != ResponseCode::NoError || res.answer.is_empty() {
        return None;
    }
    let soa = |r: &Record| r.record_type() == RecordType::SOA;
    if res.answer.iter().any(|r| soa(r)) || res.authority.iter().any(|r| soa(r)) {
        return None;
    }
    super::signed::add_dnssec(zone, &mut res);
    encode_compiled(qname, qtype, &res)
}

/// Encodes a resolution as [`compile`] returns it.
fn encode_compiled(
    qname: &LowerName,
    qtype: RecordType,
    res: &Resolution<'_>,
) -> Option<([u8; 10], Vec<u8>)> {
    let mut question = Vec::with_capacity(qname.len() + 6);
    {
        let mut enc = BinEncoder::new(&mut question);
        hickory_server::proto::serialize::binary::BinEncodable::emit(qname, &mut enc).ok()?;
        enc.emit_u16(u16::from(qtype)).ok()?;
        enc.emit_u16(u16::from(DNSClass::IN)).ok()?;
    }
    let queries = Queries::read(
        &mut hickory_server::proto::serialize::binary::BinDecoder::new(&question),
        1,
    )
    .ok()?;
    let mut meta = Metadata::new(0, MessageType::Response, OpCode::Query);
    meta.authoritative = res.aa;
    meta.response_code = res.rcode;
    let bytes = encode(&queries, meta, None, res, u16::MAX as usize)?;
    let head: [u8; 10] = bytes.get(2..12)?.try_into().ok()?;
    let tail = bytes.get(HEADER_LEN + question.len()..)?.to_vec();
    Some((head, tail))
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
    /// A CNAME chain led out of the zones searched.
    pub left_zones: bool,
    /// What a negative answer or a referral must prove, for a query with DO.
    pub proof: Option<Proof<'a>>,
}

/// Where a resolution ended without the data asked for: what DNSSEC must prove there.
#[derive(Debug)]
pub enum Proof<'a> {
    /// The name exists in this zone, without the type.
    NoData(&'a ZoneData, LowerName),
    /// The name does not exist in this zone.
    NxDomain(&'a ZoneData, LowerName),
    /// The name is at or below this zone's delegation point, which has no DS.
    Referral(&'a ZoneData, LowerName),
}

/// Resolves `qname`/`qtype` inside the served zones, following in-zone CNAMEs.
/// `Refused` when the name is in no served zone.
pub fn resolve<'a, Z: Zones>(snap: &'a Z, qname: &LowerName, qtype: RecordType) -> Resolution<'a> {
    let mut res = Resolution {
        rcode: ResponseCode::NoError,
        aa: true,
        answer: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        left_zones: false,
        proof: None,
    };
    let mut name = Cow::Borrowed(qname);
    for hop in 0..=MAX_CNAME_CHAIN {
        let Some(zone) = snap.find_zone(&name) else {
            if hop == 0 {
                res.rcode = ResponseCode::Refused;
                res.aa = false;
            } else {
                res.left_zones = true;
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
                if zone.signed.is_some() {
                    res.proof = Some(Proof::NoData(zone, name.into_owned()));
                }
                return res;
            }
            Found::NxDomain => {
                res.rcode = ResponseCode::NXDomain;
                res.authority.push(&zone.negative_soa);
                if zone.signed.is_some() {
                    res.proof = Some(Proof::NxDomain(zone, name.into_owned()));
                }
                return res;
            }
            Found::Referral { ns, glue } => {
                // AA stays set when an authoritative CNAME led here.
                res.aa = hop > 0;
                if zone.signed.is_some()
                    && let Some(first) = ns.first()
                {
                    res.proof = Some(Proof::Referral(zone, LowerName::new(&first.name)));
                }
                res.authority.extend(ns.iter());
                res.additional = glue;
                return res;
            }
        }
    }
    // Chain longer than the bound: answer what was followed.
    res.left_zones = true;
    res
}

fn additional<'a>(zone: &'a ZoneData, qtype: RecordType, records: &[Record]) -> Vec<&'a Record> {
    match qtype {
        RecordType::NS | RecordType::MX | RecordType::SRV => zone.glue(records),
        _ => Vec::new(),
    }
}
