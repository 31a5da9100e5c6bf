//! The answer engine: one DNS message in, the authoritative reply out, read from a Snapshot.
//!
//! Pure and synchronous: no I/O, no locks, and no clock but the time a TSIG-signed answer
//! carries. The listeners hand it raw bytes and send back what it returns, so every rule of
//! the DNS contract lives here and is tested here.
//! Parsing and encoding use hickory-server's request and response types.

use std::net::SocketAddr;

use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::Request;
use hickory_server::zone_handler::MessageResponseBuilder;

use super::fast;
use crate::proto::cookie;
use crate::proto::tsig::{Signer, Verdict};
use crate::snapshot::Snapshot;
use crate::zone::resolve::{HEADER_LEN, encode, resolve};
use crate::zone::soa_serial;

/// Who sent a query, how, and when: what an answer depends on besides the query and the
/// Snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The source (transfer ACLs; the address a Server Cookie is made for).
    pub src: SocketAddr,
    /// UDP or TCP: how large the answer may be.
    pub protocol: Protocol,
    /// The cookie clock ([`cookie::now`]), read once per batch of queries.
    pub now: u32,
}

impl Client {
    /// A client asking now.
    pub fn new(src: SocketAddr, protocol: Protocol) -> Client {
        Client {
            src,
            protocol,
            now: cookie::now(),
        }
    }
}

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

/// Records per AXFR message before the size check splits further.
const AXFR_CHUNK: usize = 256;

/// Answers one raw DNS message from `client`: from the answers compiled into the Snapshot
/// when the query is plain, else through [`general`].
pub fn respond(snap: &Snapshot, raw: &[u8], client: &Client) -> Reply {
    let mut out = Vec::new();
    if fast::answer(snap.for_source(client.src.ip()), raw, client, &mut out) {
        Reply::Message(out)
    } else {
        general(snap, raw, client)
    }
}

/// The general path: parses with hickory and applies every rule of the DNS contract. The
/// fast path must answer byte for byte what this answers.
///
/// A query signed with TSIG is checked against the `[tsig]` keys: an unknown key or a bad MAC
/// gets NOTAUTH with an unsigned TSIG saying which; otherwise the answer (NOTAUTH if the
/// signature's time is off) is signed, every message of a transfer included.
pub fn general(snap: &Snapshot, raw: &[u8], client: &Client) -> Reply {
    let Client { src, protocol, .. } = *client;
    if raw.len() < HEADER_LEN || raw[2] & 0x80 != 0 {
        return Reply::Drop;
    }
    let req = match Request::from_bytes(raw.to_vec(), src, protocol) {
        Ok(r) => r,
        Err(_) => return Reply::Message(header_only(raw, ResponseCode::FormErr)),
    };
    let (edns, cookie) = response_edns(snap, &req, client);
    let verdict = req
        .signature
        .as_deref()
        .map(|t| crate::proto::tsig::verify(&snap.config.tsig, raw, t));
    match verdict {
        None => body(snap, &req, raw, protocol, edns.as_ref(), cookie, None),
        Some(Verdict::Unsigned(record)) => {
            tsig_error(record.data.error, &record.name, src, protocol);
            let mut out = error_msg(&req, raw, edns.as_ref(), ResponseCode::NotAuth);
            match crate::proto::tsig::append(&mut out, &record) {
                Ok(()) => Reply::Message(out),
                Err(_) => Reply::Message(header_only(raw, ResponseCode::NotAuth)),
            }
        }
        Some(Verdict::Signed(mut signer)) => {
            let reply = if signer.rejected() {
                tsig_error(Some(TsigError::BadTime), signer.key_name(), src, protocol);
                Reply::Message(error_msg(&req, raw, edns.as_ref(), ResponseCode::NotAuth))
            } else {
                body(
                    snap,
                    &req,
                    raw,
                    protocol,
                    edns.as_ref(),
                    cookie,
                    Some(&signer),
                )
            };
            sign(reply, &mut signer, raw)
        }
    }
}

/// Counts a signed query turned away (`detour_tsig_errors_total{error}`) and says so: at
/// info over TCP, where the source is real, at debug over UDP, where anyone can forge it.
fn tsig_error(error: Option<TsigError>, key: &Name, src: SocketAddr, protocol: Protocol) {
    let (error, why) = match error {
        Some(TsigError::BadKey) => ("badkey", "no [tsig] key of that name and algorithm"),
        Some(TsigError::BadSig) => ("badsig", "the MAC does not match: a different secret?"),
        Some(TsigError::BadTime) => ("badtime", "signed further from our clock than its fudge"),
        _ => ("other", "unexpected TSIG error"),
    };
    metrics::counter!("detour_tsig_errors_total", "error" => error).increment(1);
    if protocol == Protocol::Tcp {
        tracing::info!(%key, %src, "TSIG {error}: {why}");
    } else {
        tracing::debug!(%key, %src, "TSIG {error}: {why}");
    }
}

/// Signs every message of `reply`; a message that cannot be signed becomes SERVFAIL.
fn sign(reply: Reply, signer: &mut Signer, raw: &[u8]) -> Reply {
    let fail = |e: crate::proto::tsig::Error| {
        tracing::warn!(error = %e, "cannot sign a TSIG answer");
        Reply::Message(header_only(raw, ResponseCode::ServFail))
    };
    match reply {
        Reply::Drop => Reply::Drop,
        Reply::Message(m) => signer.sign(m).map(Reply::Message).unwrap_or_else(fail),
        Reply::Stream(ms) => ms
            .into_iter()
            .map(|m| signer.sign(m))
            .collect::<Result<Vec<_>, _>>()
            .map(Reply::Stream)
            .unwrap_or_else(fail),
    }
}

/// What the query's COOKIE option was, when cookies are on (else always `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SentCookie {
    /// No COOKIE option, or cookies are off (RFC 7873 §5.2.1: as if not implemented).
    None,
    /// A client cookie alone.
    Client,
    /// A client cookie and a server cookie, ours and in date or not.
    Server { valid: bool },
    /// A length no cookie has (§5.2.2): FORMERR.
    Malformed,
}

/// The OPT record of the answer, if the query had EDNS: ours, echoing the query's DO bit,
/// with a COOKIE option answering the query's when cookies are on; and what that option was.
fn response_edns(snap: &Snapshot, req: &Request, client: &Client) -> (Option<Edns>, SentCookie) {
    let Some(e) = req.edns.as_ref() else {
        return (None, SentCookie::None);
    };
    let mut out = Edns::new();
    out.set_max_payload(snap.config.server.udp_max_payload);
    out.set_version(0);
    out.set_dnssec_ok(e.flags().dnssec_ok);
    let (Some(secret), Some(option)) = (
        &snap.config.server.cookies,
        // Only the first COOKIE option counts (RFC 7873 §5.2).
        e.options().get(EdnsCode::Cookie),
    ) else {
        return (Some(out), SentCookie::None);
    };
    let data = match option {
        EdnsOption::Unknown(_, data) => data.as_slice(),
        _ => &[],
    };
    let Some(answer) = secret.answer(data, client.src.ip(), client.now) else {
        return (Some(out), SentCookie::Malformed);
    };
    out.options_mut()
        .insert(EdnsOption::Unknown(cookie::CODE, answer.to_vec()));
    let sent = match data.split_at_checked(cookie::CLIENT_LEN) {
        Some((_, [])) | None => SentCookie::Client,
        Some((c, server)) => SentCookie::Server {
            valid: secret.valid(c, server, client.src.ip(), client.now),
        },
    };
    (Some(out), sent)
}

/// An answer with no records and `code`.
fn error_msg(req: &Request, raw: &[u8], edns: Option<&Edns>, code: ResponseCode) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    let msg = MessageResponseBuilder::new(&req.queries, edns).error_msg(&req.metadata, code);
    match msg.destructive_emit(&mut BinEncoder::new(&mut buf)) {
        Ok(_) => buf,
        Err(_) => header_only(raw, code),
    }
}

/// The answer before any TSIG: `signer` is the verified signature of the query, if it had
/// one (its key may authorize a transfer, and its record needs room in a UDP answer).
fn body(
    snap: &Snapshot,
    req: &Request,
    raw: &[u8],
    protocol: Protocol,
    edns: Option<&Edns>,
    cookie: SentCookie,
    signer: Option<&Signer>,
) -> Reply {
    let cap = snap.config.server.udp_max_payload;
    let limit = match protocol {
        Protocol::Udp => usize::from(match &req.edns {
            Some(e) => e.max_payload().max(512).min(cap),
            None => 512,
        }),
        _ => u16::MAX as usize,
    }
    .saturating_sub(signer.map_or(0, Signer::overhead));
    let error = |code: ResponseCode| error_msg(req, raw, edns, code);
    if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Reply::Message(error(ResponseCode::BADVERS));
    }
    if req.metadata.op_code != OpCode::Query {
        return Reply::Message(error(ResponseCode::NotImp));
    }
    match cookie {
        SentCookie::Malformed => return Reply::Message(error(ResponseCode::FormErr)),
        // A query without a question asks for a cookie (RFC 7873 §5.4): NOERROR with one,
        // or BADCOOKIE (with a fresh one) when the server cookie it sent is not valid.
        _ if req.queries.is_empty() && cookie != SentCookie::None => {
            let code = if cookie == (SentCookie::Server { valid: false }) {
                ResponseCode::BADCOOKIE
            } else {
                ResponseCode::NoError
            };
            return Reply::Message(error(code));
        }
        _ => {}
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
        return transfer(snap, req, q.name(), qtype, protocol, edns, signer)
            .unwrap_or_else(|code| Reply::Message(error(code)));
    }
    // A view's drills change answers; transfers (above) always carry everyone's zone, so
    // that a secondary inside a view never copies a drill.
    let view = snap.for_source(req.src().ip());
    let mut res = resolve(view, q.name(), qtype);
    if edns.is_some_and(|e| e.flags().dnssec_ok) {
        crate::zone::signed::add_dnssec(view, &mut res);
    }
    if res.rcode == ResponseCode::Refused {
        return Reply::Message(error(ResponseCode::Refused));
    }
    let mut meta = Metadata::response_from_request(&req.metadata);
    meta.authoritative = res.aa;
    meta.response_code = res.rcode;
    let out = encode(&req.queries, meta, edns, &res, limit)
        .unwrap_or_else(|| header_only(raw, ResponseCode::ServFail));
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

/// AXFR and IXFR over TCP to allowed sources, signed with one of the zone's transfer keys
/// when it has any. IXFR (RFC 1995) gets the changes since the secondary's serial from the
/// zone's journal, just the SOA when it is current, and the whole zone when the journal does
/// not reach back that far (or the changes outweigh the zone). IXFR over UDP gets the SOA
/// alone (§2): "current", or "ask again over TCP".
fn transfer(
    snap: &Snapshot,
    req: &Request,
    qname: &LowerName,
    qtype: RecordType,
    protocol: Protocol,
    edns: Option<&Edns>,
    signer: Option<&Signer>,
) -> Result<Reply, ResponseCode> {
    let udp = protocol != Protocol::Tcp;
    if udp && qtype != RecordType::IXFR {
        return Err(ResponseCode::Refused);
    }
    let Some(zone) = snap.find_zone(qname) else {
        return Err(ResponseCode::Refused);
    };
    // Over TCP the source is real: say why a secondary is turned away, as it cannot tell.
    let src = req.src();
    let refuse = |why: String| {
        if !udp {
            tracing::info!(zone = %zone.origin, %src, "zone transfer refused: {why}");
        }
        metrics::counter!("detour_transfers_total", "zone" => zone.origin.to_string(), "result" => "refused")
            .increment(1);
        Err(ResponseCode::Refused)
    };
    if !zone.allow_transfer.iter().any(|n| n.contains(&src.ip())) {
        return refuse("the address is not in allow_transfer".into());
    }
    if !zone.transfer_keys.is_empty() {
        let wanted = || {
            let names: Vec<String> = zone.transfer_keys.iter().map(Name::to_string).collect();
            names.join(" or ")
        };
        match signer.map(Signer::key_name) {
            None => return refuse(format!("not signed; the zone wants {}", wanted())),
            Some(k) if !zone.transfer_keys.contains(k) => {
                return refuse(format!("signed with {k}; the zone wants {}", wanted()));
            }
            Some(_) => {}
        }
    }
    if LowerName::new(&zone.origin) != *qname {
        return Err(ResponseCode::NotAuth);
    }
    // The secondary's serial: the SOA in the authority section of an IXFR query.
    let since = (qtype == RecordType::IXFR)
        .then(|| req.authorities.iter().find_map(soa_serial))
        .flatten();
    let mut all: Vec<&Record> = vec![&zone.soa];
    // Current, or ahead (RFC 1982 order): the SOA alone says so.
    let current = since.is_some_and(|s| zone.serial.wrapping_sub(s) as i32 <= 0);
    let kind = match since.and_then(|s| zone.changes_since(s)) {
        _ if udp => "ixfr_udp",
        _ if current => "ixfr",
        Some(steps) => {
            for d in steps {
                all.push(&d.from);
                all.extend(d.deleted.iter());
                all.push(&d.to);
                all.extend(d.added.iter());
            }
            all.push(&zone.soa);
            "ixfr"
        }
        _ => {
            all.extend(zone.records().iter());
            if let Some(s) = &zone.signed {
                all.extend(s.records());
            }
            all.push(&zone.soa);
            if qtype == RecordType::IXFR {
                "ixfr_whole_zone"
            } else {
                "axfr"
            }
        }
    };
    let mut meta = Metadata::response_from_request(&req.metadata);
    meta.authoritative = true;
    let mut out = Vec::new();
    // A TCP frame holds 65,535 bytes, the TSIG record signing adds included.
    let room = u16::MAX as usize - signer.map_or(0, Signer::overhead);
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
        if header.truncation || buf.len() > room {
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
    metrics::counter!("detour_transfers_total", "zone" => zone.origin.to_string(), "result" => kind)
        .increment(1);
    if udp {
        return out.pop().map(Reply::Message).ok_or(ResponseCode::ServFail);
    }
    Ok(Reply::Stream(out))
}
