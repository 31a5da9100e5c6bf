//! Response-rate limiting (RRL) of UDP answers, as BIND, NSD and Knot do it: a source
//! prefix gets at most `rate` identical answers a second; above that its answers are
//! dropped, and every `slip`-th one goes out truncated (TC, no records) so that a real
//! client retries over TCP. A forged source then gets little reflected at it, while a real
//! one still gets through. TCP, where the source is real, is never limited.
//!
//! Which answers are identical: positive answers by (qname, qtype); NODATA by qname alone
//! (its answer section has no type, as in BIND); NXDOMAIN by zone and referrals by
//! delegation, so that a flood of random names under one zone (or one delegation) shares
//! one bucket; every error (REFUSED for names outside our zones, FORMERR, NOTIMP, ...) in
//! one "error" bucket per prefix. A query carrying a valid Server Cookie (RFC 7873) is
//! never limited: its source is proven.
//!
//! The buckets are a fixed table shared by every UDP worker, indexed by a keyed hash of
//! (prefix, kind, name, type), each slot a GCRA token bucket in one atomic: no lock, no
//! allocation per query, bounded memory however many sources there are. Two keys landing
//! on one slot just share it.

use std::fmt::Write as _;
use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use siphasher::sip::SipHasher13;

use super::answer::Client;
use crate::config::Rrl;
use crate::proto::{cookie, u16_at};
use crate::snapshot::Snapshot;

/// Buckets in the table (a power of two): 16 bytes each, 1 MiB in all.
const SLOTS: usize = 1 << 16;
/// Slots remembering when a prefix was last logged (a power of two).
const LOG_SLOTS: usize = 1 << 10;
/// A prefix is logged at most once per this many seconds.
const LOG_EVERY: u32 = 60;
/// Lines logged per `LOG_EVERY` over all prefixes, however many are limited.
const LOG_BUDGET: u32 = 20;
/// Microseconds in a second: the bucket clock's unit.
const SECOND: u64 = 1_000_000;

/// What becomes of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Within the rate: sent as it is.
    Send,
    /// Above the rate, but the query had a valid Server Cookie: sent as it is.
    Exempt,
    /// Above the rate: the answer was cut to a truncated one (TC, no records) to send.
    Slip,
    /// Above the rate: not sent.
    Drop,
}

/// What an answer is counted as; the kind is part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Records for (qname, qtype), or a TC answer to them.
    Answer = 1,
    /// The name exists, the type does not: keyed by qname.
    Nodata = 2,
    /// The name does not exist: keyed by zone.
    Nxdomain = 3,
    /// A delegation below the zone: keyed by the delegation point.
    Referral = 4,
    /// Any error (or an answer without a question): one bucket per prefix.
    Error = 5,
}

impl Kind {
    /// Reads the kind off an answer's header.
    fn of(reply: &[u8]) -> Kind {
        let Some(&[_, _, flags, low]) = reply.first_chunk::<4>() else {
            return Kind::Error;
        };
        let count = |i| u16_at(reply, i).unwrap_or(0);
        let (qd, an, ns) = (count(4), count(6), count(8));
        let aa = flags & 0x04 != 0;
        let tc = flags & 0x02 != 0;
        match low & 0x0f {
            _ if qd != 1 => Kind::Error,
            0 if an > 0 || tc => Kind::Answer,
            0 if ns > 0 && aa => Kind::Nodata,
            0 if ns > 0 => Kind::Referral,
            3 => Kind::Nxdomain,
            _ => Kind::Error,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Answer => "answers",
            Kind::Nodata => "NODATA",
            Kind::Nxdomain => "NXDOMAIN",
            Kind::Referral => "referrals",
            Kind::Error => "errors",
        }
    }
}

/// One bucket: GCRA's theoretical arrival time of the next answer (microseconds on the
/// limiter's clock), and how many answers it has limited (for `slip`).
#[derive(Default)]
struct Slot {
    tat: AtomicU64,
    limited: AtomicU32,
}

/// A source prefix: the address with its host bits cleared, and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The network address.
    pub addr: IpAddr,
    /// Its length in bits.
    pub len: u8,
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// What one answer is counted under: its kind, the source prefix, the question type
/// (answers only) and the name (where it is in the query: the question name, the zone's
/// part of it, or nothing for errors).
struct Key {
    kind: Kind,
    prefix: Prefix,
    qtype: u16,
    name: Range<usize>,
}

/// The response-rate limiter of every UDP worker of the process.
pub struct Limiter {
    rate: u32,
    slip: u32,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    /// Microseconds between answers at `rate`.
    interval: u64,
    /// How far ahead of now a bucket's next answer may be and still be sent: one second's
    /// worth of answers, less one, may go at once.
    tolerance: u64,
    table: Box<[Slot]>,
    /// The SipHash key: random per process, so nobody can aim two keys at one slot.
    hash_key: (u64, u64),
    epoch: Instant,
    /// Per log slot: the prefix's hash (high half) and the second it was last logged.
    logged: Box<[AtomicU64]>,
    /// The log window's start (high half, seconds) and lines said in it.
    budget: AtomicU64,
    /// Lines held back since the last one said.
    held: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("rate", &self.rate)
            .field("slip", &self.slip)
            .field("ipv4_prefix", &self.ipv4_prefix)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter for `[server.rrl]`; `None` when `rate` is 0 (off).
    pub fn new(cfg: &Rrl) -> Option<Limiter> {
        if cfg.rate == 0 {
            return None;
        }
        let interval = (SECOND / u64::from(cfg.rate)).max(1);
        Some(Limiter {
            rate: cfg.rate,
            slip: cfg.slip,
            ipv4_prefix: cfg.ipv4_prefix.min(32),
            ipv6_prefix: cfg.ipv6_prefix.min(128),
            interval,
            tolerance: SECOND.saturating_sub(interval),
            table: (0..SLOTS).map(|_| Slot::default()).collect(),
            hash_key: (rand::random(), rand::random()),
            epoch: Instant::now(),
            logged: (0..LOG_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            budget: AtomicU64::new(0),
            held: AtomicU64::new(0),
        })
    }

    /// Decides what becomes of `reply`, the answer to `query` from `client`, at `at` (read
    /// once per batch); on [`Outcome::Slip`] `reply` has been cut to a truncated answer.
    pub fn check(
        &self,
        snap: &Snapshot,
        query: &[u8],
        reply: &mut Vec<u8>,
        client: &Client,
        at: Instant,
    ) -> Outcome {
        let now = self.micros(at);
        let is_zone = |wire: &[u8]| snap.zone_by_wire(wire).is_some();
        self.decide(
            query,
            reply,
            client,
            now,
            &is_zone,
            snap.config.server.cookies.as_ref(),
        )
    }

    fn micros(&self, at: Instant) -> u64 {
        // Never 0: a slot's `tat` of 0 means "never used".
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX) + 1
    }

    /// [`Limiter::check`] on the limiter's clock (`now`, microseconds), with `is_zone`
    /// telling which lowercase wire names are served zones.
    fn decide(
        &self,
        query: &[u8],
        reply: &mut Vec<u8>,
        client: &Client,
        now: u64,
        is_zone: &dyn Fn(&[u8]) -> bool,
        cookies: Option<&cookie::Secret>,
    ) -> Outcome {
        let key = self.key(query, reply, client.src, is_zone);
        let slot = &self.table[self.slot_of(&key, query)];
        if self.admit(slot, now) {
            return Outcome::Send;
        }
        if cookies.is_some_and(|s| valid_cookie(query, s, client)) {
            return Outcome::Exempt;
        }
        let n = slot.limited.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let outcome = if self.slip != 0 && n.is_multiple_of(self.slip) && truncate(reply).is_some()
        {
            Outcome::Slip
        } else {
            Outcome::Drop
        };
        self.log(&key, query, now);
        outcome
    }

    /// GCRA: sends when the bucket's next answer is due no more than `tolerance` from now,
    /// and books the one after it; a limited answer books nothing.
    fn admit(&self, slot: &Slot, now: u64) -> bool {
        let mut tat = slot.tat.load(Ordering::Relaxed);
        loop {
            let due = tat.max(now);
            if due - now > self.tolerance {
                return false;
            }
            match slot.tat.compare_exchange_weak(
                tat,
                due + self.interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }

    /// The slot of `key`: a SipHash-1-3 of the kind, the prefix, the type and the name in
    /// lower case, read eight bytes at a time (no copy of the name).
    fn slot_of(&self, key: &Key, query: &[u8]) -> usize {
        let mut head = [0u8; 24];
        head[0] = key.kind as u8;
        match key.prefix.addr {
            IpAddr::V4(a) => {
                head[1] = 4;
                head[2..6].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                head[1] = 6;
                head[2..18].copy_from_slice(&a.octets());
            }
        }
        head[18..20].copy_from_slice(&key.qtype.to_be_bytes());
        head[20] = key.name.len() as u8;
        let mut h = SipHasher13::new_with_keys(self.hash_key.0, self.hash_key.1);
        h.write(&head);
        let name = &query[key.name.clone()];
        let mut words = name.chunks_exact(8);
        for w in &mut words {
            h.write_u64(lower8(u64::from_le_bytes(w.try_into().unwrap_or_default())));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            // Composed in a register: a copy through memory would stall the load after it.
            let last = rest.iter().rev().fold(0, |w, &b| (w << 8) | u64::from(b));
            h.write_u64(lower8(last));
        }
        h.finish() as usize & (SLOTS - 1)
    }

    /// The source prefix `src` counts under (an IPv4-mapped address as the IPv4 one).
    fn prefix(&self, src: IpAddr) -> Prefix {
        match src.to_canonical() {
            IpAddr::V4(a) => {
                let len = self.ipv4_prefix;
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Prefix {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask)),
                    len,
                }
            }
            IpAddr::V6(a) => {
                let len = self.ipv6_prefix;
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Prefix {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask)),
                    len,
                }
            }
        }
    }

    /// The key `reply` (the answer to `query`) counts under.
    fn key(
        &self,
        query: &[u8],
        reply: &[u8],
        src: SocketAddr,
        is_zone: &dyn Fn(&[u8]) -> bool,
    ) -> Key {
        let prefix = self.prefix(src.ip());
        let kind = Kind::of(reply);
        let error = Key {
            kind: Kind::Error,
            prefix,
            qtype: 0,
            name: 0..0,
        };
        if kind == Kind::Error {
            return error;
        }
        let Some(q) = question(query) else {
            return error;
        };
        let name_end = 12 + q.len;
        let start = match kind {
            Kind::Nxdomain | Kind::Referral => zone_start(query, reply, &q, is_zone),
            _ => 0,
        };
        Key {
            kind,
            prefix,
            qtype: if kind == Kind::Answer { q.qtype } else { 0 },
            name: 12 + start..name_end,
        }
    }

    /// Says that `key`'s prefix is limited: at most once a minute per prefix, and at most
    /// [`LOG_BUDGET`] lines a minute in all (the rest are counted in the next line).
    fn log(&self, key: &Key, query: &[u8], now: u64) {
        let secs = (now / SECOND) as u32;
        let mut h = SipHasher13::new_with_keys(self.hash_key.1, self.hash_key.0);
        match key.prefix.addr {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        let tag = h.finish();
        let entry = &self.logged[tag as usize & (LOG_SLOTS - 1)];
        let mine = (tag >> 32) << 32;
        let last = entry.load(Ordering::Relaxed);
        let fresh = last >> 32 != tag >> 32 || secs.wrapping_sub(last as u32) >= LOG_EVERY;
        if !fresh
            || entry
                .compare_exchange(
                    last,
                    mine | u64::from(secs),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let Some(held) = self.spend(secs) else {
            return;
        };
        let name = name_text(&query[key.name.clone()]);
        let what = match key.kind {
            Kind::Answer => format!("{name} type {} answers", key.qtype),
            Kind::Nodata => format!("NODATA for {name}"),
            Kind::Nxdomain | Kind::Referral => format!("{} in {name}", key.kind.label()),
            Kind::Error => key.kind.label().to_string(),
        };
        tracing::info!(
            source = %key.prefix,
            "DNS/UDP: response-rate limiting {what} to {} (over {}/s; see detour_dns_rrl_*_total); {held} more such lines held back",
            key.prefix,
            self.rate,
        );
    }

    /// Takes one line from the log budget; `Some(lines held back since the last)` if any
    /// was left.
    fn spend(&self, secs: u32) -> Option<u64> {
        let mut cur = self.budget.load(Ordering::Relaxed);
        loop {
            let (start, used) = ((cur >> 32) as u32, cur as u32);
            let next = if secs.wrapping_sub(start) >= LOG_EVERY || cur == 0 {
                (u64::from(secs) << 32) | 1
            } else if used < LOG_BUDGET {
                cur + 1
            } else {
                self.held.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            match self
                .budget
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(self.held.swap(0, Ordering::Relaxed)),
                Err(c) => cur = c,
            }
        }
    }
}

/// Outcomes counted by one UDP worker and added to the metrics once per batch.
#[derive(Debug, Default)]
pub struct Counts {
    dropped: u64,
    slipped: u64,
    exempt: u64,
}

impl Counts {
    /// Counts one outcome.
    pub fn note(&mut self, o: Outcome) {
        match o {
            Outcome::Send => {}
            Outcome::Exempt => self.exempt += 1,
            Outcome::Slip => self.slipped += 1,
            Outcome::Drop => self.dropped += 1,
        }
    }

    /// Adds the counts to `detour_dns_rrl_{dropped,slipped,exempt}_total` and starts again.
    pub fn flush(&mut self) {
        let c = std::mem::take(self);
        if c.dropped > 0 {
            metrics::counter!("detour_dns_rrl_dropped_total").increment(c.dropped);
        }
        if c.slipped > 0 {
            metrics::counter!("detour_dns_rrl_slipped_total").increment(c.slipped);
        }
        if c.exempt > 0 {
            metrics::counter!("detour_dns_rrl_exempt_total").increment(c.exempt);
        }
    }
}

/// Where a query's question name is (its length; it starts at 12), and the question type.
struct Question {
    len: usize,
    qtype: u16,
}

/// The question of `query`; `None` unless it has one question with an uncompressed name (a
/// first name cannot be compressed).
fn question(query: &[u8]) -> Option<Question> {
    if u16_at(query, 4)? != 1 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        if len == 0 {
            break;
        }
        if len > 63 || i - 12 + len + 2 > 255 {
            return None;
        }
        i += 1 + len;
    }
    Some(Question {
        len: i + 1 - 12,
        qtype: u16_at(query, i + 1)?,
    })
}

/// Where, in the question name, the zone of an NXDOMAIN or the delegation of a referral
/// starts: the owner of the answer's first authority record (the SOA, the NS), which our
/// answers compress into a pointer to the question name. Failing that, the longest served
/// zone ending the name (`is_zone` takes lowercase wire names); failing that, the root.
fn zone_start(query: &[u8], reply: &[u8], q: &Question, is_zone: &dyn Fn(&[u8]) -> bool) -> usize {
    let name = &query[12..12 + q.len];
    // Where each label starts, the root's included.
    let labels = || {
        let mut at = Some(0);
        std::iter::from_fn(move || {
            let start = at?;
            let len = usize::from(*name.get(start)?);
            at = (len > 0).then_some(start + 1 + len);
            Some(start)
        })
    };
    let owner = || {
        let mut i = 12 + q.len + 4;
        for _ in 0..u16_at(reply, 6)? {
            i = skip_record(reply, i)?.0;
        }
        let target = usize::from(u16_at(reply, i)?);
        let at = (target & 0xc000 == 0xc000).then(|| (target & 0x3fff).checked_sub(12))??;
        labels().find(|&l| l == at)
    };
    if let Some(start) = owner() {
        return start;
    }
    let mut lower = [0u8; 255];
    let lower = &mut lower[..q.len];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    labels()
        .find(|&s| is_zone(&lower[s..]))
        .unwrap_or(q.len - 1)
}

/// Eight bytes with ASCII letters in lower case (others as they are), at once.
fn lower8(x: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low = x & LOW7;
    // Bit 7 of each byte: at least 'A' and not above 'Z', for bytes below 0x80.
    let from_a = low + 0x3f3f_3f3f_3f3f_3f3f;
    let past_z = low + 0x2525_2525_2525_2525;
    let upper = from_a & !past_z & !x & HIGH;
    x | (upper >> 2)
}

/// Where the name starting at `i` ends.
fn skip_name(m: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let b = *m.get(i)?;
        match b & 0xc0 {
            0 if b == 0 => return Some(i + 1),
            0 => i += 1 + usize::from(b),
            0xc0 => return (i + 2 <= m.len()).then_some(i + 2),
            _ => return None,
        }
    }
}

/// Where the resource record starting at `i` ends, and its type.
fn skip_record(m: &[u8], i: usize) -> Option<(usize, u16)> {
    let at = skip_name(m, i)?;
    let rtype = u16_at(m, at)?;
    let end = at + 10 + usize::from(u16_at(m, at + 8)?);
    (end <= m.len()).then_some((end, rtype))
}

/// Where the OPT record of message `m` is, if it has one; and where its question ends.
fn sections(m: &[u8]) -> Option<(usize, Option<(usize, usize)>)> {
    let [qd, an, ns, ar] = [4, 6, 8, 10].map(|i| u16_at(m, i).unwrap_or(0));
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(m, i)? + 4;
    }
    if i > m.len() {
        return None;
    }
    let question_end = i;
    for _ in 0..u32::from(an) + u32::from(ns) {
        i = skip_record(m, i)?.0;
    }
    for _ in 0..ar {
        let (end, rtype) = skip_record(m, i)?;
        if rtype == 41 {
            return Some((question_end, Some((i, end))));
        }
        i = end;
    }
    Some((question_end, None))
}

/// Cuts an answer to its header, question and OPT record (a COOKIE in it stays, so the
/// client learns a Server Cookie), with TC set: the "slip" answer, about the query's size.
fn truncate(reply: &mut Vec<u8>) -> Option<()> {
    let (question_end, opt) = sections(reply)?;
    reply[2] |= 0x02;
    reply[6..10].fill(0);
    reply[10..12].copy_from_slice(&u16::from(opt.is_some()).to_be_bytes());
    let end = match opt {
        Some((start, end)) => {
            reply.copy_within(start..end, question_end);
            question_end + (end - start)
        }
        None => question_end,
    };
    reply.truncate(end);
    Some(())
}

/// Whether `query` carries a Server Cookie that `secret` made for `client`'s address and
/// that is still in date.
fn valid_cookie(query: &[u8], secret: &cookie::Secret, client: &Client) -> bool {
    let find = || {
        let (start, end) = sections(query)?.1?;
        let mut o = skip_name(query, start)? + 10;
        while o + 4 <= end {
            let code = u16_at(query, o)?;
            let len = usize::from(u16_at(query, o + 2)?);
            let data = query.get(o + 4..o + 4 + len)?;
            // Only the first COOKIE option counts (RFC 7873 §5.2).
            if code == cookie::CODE {
                return Some(data);
            }
            o += 4 + len;
        }
        None
    };
    match find() {
        Some(data) if data.len() > cookie::CLIENT_LEN => {
            let (c, s) = data.split_at(cookie::CLIENT_LEN);
            secret.valid(c, s, client.src.ip(), client.now)
        }
        _ => false,
    }
}

/// A wire name as text for a log line, in lower case, with anything but letters, digits, `-`
/// and `_` escaped as `\DDD`, so that a name from the wire cannot forge a line.
fn name_text(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while let Some(&len) = wire.get(i) {
        if len == 0 {
            break;
        }
        let label = wire
            .get(i + 1..i + 1 + usize::from(len))
            .unwrap_or_default();
        for b in label.iter().map(u8::to_ascii_lowercase) {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "\\{b:03}");
            }
        }
        out.push('.');
        i += 1 + usize::from(len);
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::net::xfer::Protocol;

    fn limiter(rate: u32, slip: u32, v4: u8) -> Limiter {
        Limiter::new(&Rrl {
            rate,
            slip,
            ipv4_prefix: v4,
            ipv6_prefix: 56,
        })
        .unwrap()
    }

    fn client(ip: &str) -> Client {
        Client {
            src: SocketAddr::new(ip.parse().unwrap(), 5300),
            protocol: Protocol::Udp,
            now: 1_000_000,
        }
    }

    /// A query for `name` (dotted, no trailing dot) of `qtype`, with `opt` as the OPT
    /// record's options when given.
    fn query(name: &str, qtype: u16, opt: Option<&[u8]>) -> Vec<u8> {
        let mut q = vec![
            0x12,
            0x34,
            0x01,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(opt.is_some()),
        ];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        if let Some(o) = opt {
            q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
            q.extend_from_slice(&(o.len() as u16).to_be_bytes());
            q.extend_from_slice(o);
        }
        q
    }

    /// An answer to `q` with `rcode`, AA, and `an`/`ns` counts (the records themselves
    /// are not needed by the key), followed by `q`'s OPT if it had one.
    fn reply(q: &[u8], rcode: u8, aa: bool, an: u16, ns: u16) -> Vec<u8> {
        let mut r = q.to_vec();
        r[2] = 0x80 | if aa { 0x04 } else { 0 };
        r[3] = rcode;
        r[6..8].copy_from_slice(&an.to_be_bytes());
        r[8..10].copy_from_slice(&ns.to_be_bytes());
        r
    }

    const ZONE: &[u8] = b"\x07example\x04test\x00";

    fn is_zone(w: &[u8]) -> bool {
        w == ZONE
    }

    fn slot_for(l: &Limiter, q: &[u8], r: &[u8], from: &str) -> usize {
        l.slot_of(&l.key(q, r, client(from).src, &is_zone), q)
    }

    #[test]
    fn a_bucket_sends_rate_at_once_then_one_per_interval() {
        let l = limiter(5, 2, 24);
        let slot = &l.table[0];
        let t0 = 10 * SECOND;
        let sent = (0..20).filter(|_| l.admit(slot, t0)).count();
        assert_eq!(sent, 5, "a burst of one second's worth");
        // 200 ms later one more is due, not two.
        assert!(l.admit(slot, t0 + 200_000));
        assert!(!l.admit(slot, t0 + 200_000));
        // After a quiet second and more, a whole burst again (no more: the bucket is full).
        let t1 = t0 + 3 * SECOND;
        assert_eq!((0..20).filter(|_| l.admit(slot, t1)).count(), 5);
        // Sustained: over 10 s at any pace, about rate per second.
        let t2 = t1 + 5 * SECOND;
        let sent = (0..10_000u64)
            .filter(|i| l.admit(slot, t2 + i * 1_000))
            .count();
        assert!((50..=55).contains(&sent), "{sent}");
    }

    #[test]
    fn identical_answers_share_a_bucket_and_others_do_not() {
        let l = limiter(5, 2, 24);
        let a = query("www.example.test", 1, None);
        let ok = reply(&a, 0, true, 1, 0);
        let www = slot_for(&l, &a, &ok, "192.0.2.1");
        // The same /24, any case: the same bucket.
        let upper = query("WWW.Example.TEST", 1, None);
        assert_eq!(
            slot_for(&l, &upper, &reply(&upper, 0, true, 1, 0), "192.0.2.200"),
            www
        );
        // Another type, name or prefix: (almost surely) another.
        let aaaa = query("www.example.test", 28, None);
        assert_ne!(
            slot_for(&l, &aaaa, &reply(&aaaa, 0, true, 1, 0), "192.0.2.1"),
            www
        );
        assert_ne!(slot_for(&l, &a, &ok, "192.0.3.1"), www);
        // NXDOMAIN: random names under one zone share the zone's bucket, whatever the type.
        let nx = |n: &str, t| {
            let q = query(n, t, None);
            let r = reply(&q, 3, true, 0, 1);
            slot_for(&l, &q, &r, "192.0.2.1")
        };
        assert_eq!(nx("a1b2.example.test", 1), nx("zz.q.example.test", 28));
        assert_ne!(nx("a1b2.example.test", 1), nx("a1b2.example.org", 1));
        // NODATA: by name, whatever the type.
        let nodata = |t| {
            let q = query("www.example.test", t, None);
            slot_for(&l, &q, &reply(&q, 0, true, 0, 1), "192.0.2.1")
        };
        assert_eq!(nodata(15), nodata(16));
        // Errors: one bucket per prefix, whatever the name.
        let refused = |n: &str| {
            let q = query(n, 1, None);
            slot_for(&l, &q, &reply(&q, 5, false, 0, 0), "192.0.2.1")
        };
        assert_eq!(refused("x.invalid"), refused("y.other"));
        assert_eq!(
            refused("x.invalid"),
            slot_for(&l, b"short", b"\x12\x34\x81\x01", "192.0.2.9")
        );
    }

    #[test]
    fn the_zone_of_an_nxdomain_is_read_off_its_authority_section() {
        let l = limiter(5, 2, 24);
        // No zone is known to `is_zone`: only the SOA's owner, a pointer into the question
        // at "example.test", tells where the zone starts.
        let nowhere = |_: &[u8]| false;
        let nx = |name: &str| {
            let q = query(name, 1, None);
            let mut r = reply(&q, 3, true, 0, 1);
            let apex = 12 + name.to_ascii_lowercase().find("example").unwrap() as u8;
            r.extend_from_slice(&[0xc0, apex, 0, 6, 0, 1, 0, 0, 0, 60, 0, 0]);
            l.slot_of(&l.key(&q, &r, client("192.0.2.1").src, &nowhere), &q)
        };
        assert_eq!(nx("a.example.test"), nx("b.c.EXAMPLE.test"));
        // A pointer that is not to a label of the question is not trusted: the name's zone
        // is looked up instead (here: none, so the root, which all names share).
        let q = query("zz.example.org", 1, None);
        let mut r = reply(&q, 3, true, 0, 1);
        r.extend_from_slice(&[0xc0, 14, 0, 6, 0, 1, 0, 0, 0, 60, 0, 0]);
        let key = l.key(&q, &r, client("192.0.2.1").src, &nowhere);
        assert_eq!(&q[key.name], b"\x00");
    }

    #[test]
    fn eight_bytes_are_lowercased_at_once_exactly_as_one_by_one() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let word = [a, b, b'Z', a, 0x80 | b, b'@', b, b'['];
                let want = word.map(|c| c.to_ascii_lowercase());
                assert_eq!(
                    lower8(u64::from_le_bytes(word)).to_le_bytes(),
                    want,
                    "{word:?}"
                );
            }
        }
    }

    #[test]
    fn kinds_are_read_off_the_header() {
        let q = query("www.example.test", 1, None);
        assert_eq!(Kind::of(&reply(&q, 0, true, 2, 0)), Kind::Answer);
        assert_eq!(Kind::of(&reply(&q, 0, true, 0, 1)), Kind::Nodata);
        assert_eq!(Kind::of(&reply(&q, 0, false, 0, 1)), Kind::Referral);
        assert_eq!(Kind::of(&reply(&q, 3, true, 1, 1)), Kind::Nxdomain);
        assert_eq!(Kind::of(&reply(&q, 5, false, 0, 0)), Kind::Error);
        assert_eq!(Kind::of(&reply(&q, 1, false, 0, 0)), Kind::Error);
        let mut tc = reply(&q, 0, true, 0, 0);
        tc[2] |= 0x02;
        assert_eq!(Kind::of(&tc), Kind::Answer);
        // No question (a request for a cookie), or too short to read.
        let mut none = reply(&q, 0, false, 0, 0);
        none[5] = 0;
        assert_eq!(Kind::of(&none), Kind::Error);
        assert_eq!(Kind::of(&[1, 2]), Kind::Error);
    }

    #[test]
    fn prefixes_mask_host_bits() {
        let l = limiter(5, 2, 24);
        let p = |ip: &str| l.prefix(ip.parse().unwrap()).to_string();
        assert_eq!(p("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(p("::ffff:192.0.2.77"), "192.0.2.0/24");
        assert_eq!(p("2001:db8:1:2345:6789::1"), "2001:db8:1:2300::/56");
        let whole = limiter(5, 2, 32);
        assert_eq!(
            whole.prefix("127.0.0.2".parse().unwrap()).to_string(),
            "127.0.0.2/32"
        );
        let none = limiter(5, 2, 0);
        assert_eq!(
            none.prefix("127.0.0.2".parse().unwrap()).to_string(),
            "0.0.0.0/0"
        );
    }

    #[test]
    fn every_slip_th_limited_answer_is_truncated_and_the_rest_dropped() {
        for (slip, slipped) in [(0, 0), (1, 30), (2, 15), (3, 10)] {
            let l = limiter(5, slip, 24);
            let q = query("www.example.test", 1, Some(&[]));
            let mut outcomes = Vec::new();
            for _ in 0..35 {
                let mut r = reply(&q, 0, true, 0, 0);
                r[2] |= 0x02;
                outcomes.push(l.decide(&q, &mut r, &client("192.0.2.1"), SECOND, &is_zone, None));
            }
            let count = |o| outcomes.iter().filter(|&&x| x == o).count();
            assert_eq!(count(Outcome::Send), 5, "slip {slip}");
            assert_eq!(count(Outcome::Slip), slipped, "slip {slip}");
            assert_eq!(count(Outcome::Drop), 30 - slipped, "slip {slip}");
        }
    }

    #[test]
    fn a_slip_keeps_the_question_and_the_opt_record_only() {
        let cookie = [9u8; 8];
        let mut opt = vec![0, 10, 0, 8];
        opt.extend_from_slice(&cookie);
        let q = query("nx.example.test", 1, Some(&opt));
        // An NXDOMAIN with its SOA (compressed against the question), then the OPT.
        let mut r = q[..q.len() - (11 + opt.len())].to_vec();
        r[2] = 0x84;
        r[3] = 3;
        r[8..10].copy_from_slice(&[0, 1]);
        r.extend_from_slice(&[0xc0, 15, 0, 6, 0, 1, 0, 0, 0, 60, 0, 3, 1, 2, 3]);
        r.extend_from_slice(&q[q.len() - (11 + opt.len())..]);
        let before = r.clone();
        truncate(&mut r).unwrap();
        assert_eq!(r[2], 0x86, "TC set, AA kept");
        assert_eq!(r[3], 3, "RCODE kept");
        assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 1]);
        let question_end = 12 + 17 + 4;
        assert_eq!(r[12..question_end], before[12..question_end]);
        assert_eq!(r[question_end..], q[q.len() - (11 + opt.len())..]);
        // Without an OPT record: header and question alone.
        let plain = query("nx.example.test", 1, None);
        let mut r = reply(&plain, 3, true, 0, 0);
        truncate(&mut r).unwrap();
        assert_eq!(r.len(), plain.len());
        assert_eq!(u16_at(&r, 10), Some(0));
        // A message whose counts lie is left alone (and dropped by the caller).
        let mut liar = reply(&plain, 3, true, 0, 4);
        assert!(truncate(&mut liar).is_none());
    }

    #[test]
    fn a_valid_server_cookie_is_exempt_and_others_are_not() {
        let secret = cookie::Secret::from_hex("e5e973e5a6b2a43f48e7dc849e37bfcf").unwrap();
        let c = client("192.0.2.1");
        let issued = secret.answer(&[7u8; 8], c.src.ip(), c.now).unwrap();
        let with = |data: &[u8]| {
            let mut opt = vec![0, 10, 0, data.len() as u8];
            opt.extend_from_slice(data);
            query("www.example.test", 1, Some(&opt))
        };
        let l = limiter(1, 0, 24);
        let run = |q: &[u8], from: &Client| {
            let mut r = reply(q, 0, true, 1, 0);
            l.decide(q, &mut r, from, SECOND, &is_zone, Some(&secret))
        };
        let good = with(&issued);
        assert_eq!(run(&good, &c), Outcome::Send);
        assert_eq!(run(&good, &c), Outcome::Exempt);
        // A forged or foreign cookie, a client cookie alone, none at all: limited.
        let mut forged = issued;
        forged[23] ^= 1;
        assert_eq!(run(&with(&forged), &c), Outcome::Drop);
        assert_eq!(run(&with(&issued[..8]), &c), Outcome::Drop);
        assert_eq!(run(&query("www.example.test", 1, None), &c), Outcome::Drop);
        // The same cookie from another address (spoofed from the same /24) is not valid.
        assert_eq!(run(&good, &client("192.0.2.2")), Outcome::Drop);
    }

    #[test]
    fn logged_names_cannot_forge_lines() {
        assert_eq!(
            name_text(b"\x03www\x07example\x04test\x00"),
            "www.example.test."
        );
        assert_eq!(name_text(b"\x04a\nb.\x00"), "a\\010b\\046.");
        assert_eq!(name_text(b"\x00"), ".");
    }

    #[test]
    fn the_log_budget_holds_lines_back_and_counts_them() {
        let l = limiter(5, 2, 24);
        let said = (0..LOG_BUDGET + 5)
            .filter(|_| l.spend(100).is_some())
            .count();
        assert_eq!(said, LOG_BUDGET as usize);
        assert_eq!(l.spend(100 + LOG_EVERY), Some(5));
    }
}
