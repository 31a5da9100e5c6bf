//! A signed zone's DNSSEC data, made when the Snapshot is built, never on the query path:
//! the RRSIGs of every authoritative RRset, the SOA's for this serial, and the denial chain
//! (NSEC3 or NSEC) with its signatures.
//!
//! Every alternative of a dynamic record is signed once per signing window, on the first
//! build of the window ([`Signed::build`] pre-signs each `answers` entry and `otherwise`);
//! a swap finds those signatures in the window's [`SigCache`], and re-signs only the SOA.
//! The names of a zone are the same in every state, so the chain's order is shared by the
//! Snapshots of a window; only the records of names whose types changed are made again.
//!
//! [`add_dnssec`] adds to an answer, for a query with DO: the RRSIGs after each RRset, and
//! for a negative answer or a referral the denial records that prove it.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hickory_proto::dnssec::rdata::{CDNSKEY, CDS, DNSSECRData, NSEC, NSEC3, NSEC3PARAM};
use hickory_proto::dnssec::{DigestType, Nsec3HashAlgorithm, PublicKey};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::resolve::{Proof, Resolution, Zones};
use super::{Node, ZoneData, labels};
use crate::config::{Dnssec, Zone};
use crate::dnssec::{Denial, Role, SigCache, Window, nsec3_hash, nsec3_owner, rrsig};

/// An RRset's owner and type: what its RRSIGs are found by.
type SigKey = (LowerName, RecordType);

/// One denial record (NSEC3 or NSEC) and its signatures.
#[derive(Debug)]
pub struct DenialRecord {
    /// The NSEC3 or NSEC record.
    pub record: Record,
    /// Its RRSIGs.
    pub sigs: Vec<Record>,
}

/// The order of the denial chain: shared while the zone's names stay the same.
#[derive(Debug)]
struct Chain {
    /// NSEC3: the hashes, sorted; NSEC: empty.
    hashes: Vec<[u8; 20]>,
    /// The names in chain order (hash order for NSEC3, canonical order for NSEC).
    names: Vec<LowerName>,
    /// Position of each name in `names`.
    at: HashMap<LowerName, usize>,
}

/// A zone's DNSSEC data in one Snapshot.
#[derive(Debug)]
pub struct Signed {
    /// The zone's `[dnssec]`, its keys included.
    pub settings: Dnssec,
    /// The signing window of every signature here.
    pub window: Window,
    cache: Arc<SigCache>,
    sigs: HashMap<SigKey, Arc<[Record]>>,
    /// RRSIGs of the SOA (this serial), TTL as the SOA's.
    pub soa_sigs: Vec<Record>,
    /// The same with the negative SOA's TTL (RFC 2308), for negative answers.
    pub negative_soa_sigs: Vec<Record>,
    chain: Arc<Chain>,
    denial: Vec<Arc<DenialRecord>>,
}

/// The DNSKEY, CDS, CDNSKEY (and, for NSEC3, NSEC3PARAM) records a signed zone publishes at
/// its apex: these are part of its content, so that they are answered and transferred.
pub fn apex_records(zone: &Zone, d: &Dnssec) -> Vec<Record> {
    let origin = &zone.origin;
    let ttl = zone.soa.ttl;
    let mut out = Vec::new();
    for k in &d.keys.keys {
        out.push(Record::from_rdata(
            origin.clone(),
            ttl,
            RData::DNSSEC(DNSSECRData::DNSKEY(k.dnskey.clone())),
        ));
    }
    for k in d.keys.ds_keys() {
        let alg = k.dnskey.public_key().algorithm();
        if let Ok(ds) = k.ds(origin) {
            out.push(Record::from_rdata(
                origin.clone(),
                ttl,
                RData::DNSSEC(DNSSECRData::CDS(CDS::new(
                    ds.key_tag(),
                    Some(alg),
                    DigestType::SHA256,
                    ds.digest().to_vec(),
                ))),
            ));
        }
        out.push(Record::from_rdata(
            origin.clone(),
            ttl,
            RData::DNSSEC(DNSSECRData::CDNSKEY(CDNSKEY::with_flags(
                k.dnskey.flags(),
                Some(alg),
                k.dnskey.public_key().public_bytes().to_vec(),
            ))),
        ));
    }
    if d.denial == Denial::Nsec3 {
        out.push(Record::from_rdata(
            origin.clone(),
            0,
            RData::DNSSEC(DNSSECRData::NSEC3PARAM(NSEC3PARAM::new(
                Nsec3HashAlgorithm::SHA1,
                false,
                0,
                Vec::new(),
            ))),
        ));
    }
    out
}

/// Types signed with the KSK (RFC 7344 §4.1 for CDS and CDNSKEY).
fn ksk_signs(t: RecordType) -> bool {
    matches!(
        t,
        RecordType::DNSKEY | RecordType::CDS | RecordType::CDNSKEY
    )
}

impl Signed {
    /// The signing window `d` is in now.
    pub fn window_now(d: &Dnssec) -> Window {
        Window::at(crate::proto::unix_seconds() as u32, d.lifetime, d.refresh)
    }

    /// Whether `self` was made with the same keys in the same window as `d` would be now.
    pub fn current(&self, d: &Dnssec) -> bool {
        self.window == Signed::window_now(d) && self.settings == *d
    }

    /// Signs `z` (its content, nodes and SOA already built) for `zone`'s `[dnssec]` `d`.
    /// `prev` is the zone's previous version's signed data and `changed` the owners that
    /// changed since it (`None`: everything may have): when the window, keys and names are
    /// the same, only the changed owners and the SOA are signed again.
    pub fn build(
        zone: &Zone,
        d: &Dnssec,
        z: &ZoneData,
        prev: Option<&Signed>,
        changed: Option<&HashSet<LowerName>>,
    ) -> Result<Signed, String> {
        let window = Signed::window_now(d);
        let same_keys = prev.filter(|p| p.window == window && p.settings == *d);
        let cache = match same_keys {
            Some(p) => p.cache.clone(),
            None => SigCache::new(),
        };
        let fresh_cache = same_keys.is_none();
        let apex = LowerName::new(&z.origin);
        let cuts: HashSet<&LowerName> = z
            .nodes
            .iter()
            .filter(|(_, n)| n.cut)
            .map(|(k, _)| k)
            .collect();
        let below_cut = |name: &LowerName| {
            let mut n = name.base_name();
            while !cuts.is_empty() && labels(&n) > labels(&apex) {
                if cuts.contains(&n) {
                    return true;
                }
                n = n.base_name();
            }
            false
        };
        // Reuse what did not change: same window and keys, same names.
        let reuse = match (same_keys, changed) {
            (Some(p), Some(c)) => {
                let same_names = p.chain.names.len() == chain_len(z, d.denial, &below_cut)
                    && c.iter()
                        .all(|n| z.nodes.contains_key(n) == p.chain.at.contains_key(n));
                same_names.then_some((p, c))
            }
            _ => None,
        };
        let sign_owner = |name: &LowerName,
                          node: &Node,
                          out: &mut Vec<(SigKey, Arc<[Record]>)>|
         -> Result<(), String> {
            if below_cut(name) {
                return Ok(()); // not authoritative: the child signs its data
            }
            for set in &node.rrsets {
                if set.len == 0 {
                    continue; // the SOA, signed per serial below
                }
                if node.cut && set.rtype != RecordType::DS {
                    continue; // at a delegation, only the DS is the parent's to sign
                }
                let records = z.slice(set);
                let role = if ksk_signs(set.rtype) {
                    Role::Ksk
                } else {
                    Role::Zsk
                };
                let mut sigs = Vec::new();
                for key in d.keys.signing(role) {
                    sigs.push(rrsig(key, &z.origin, records, window, &cache)?);
                }
                out.push(((name.clone(), set.rtype), sigs.into()));
            }
            Ok(())
        };
        let mut sigs: HashMap<SigKey, Arc<[Record]>>;
        let chain: Arc<Chain>;
        let mut denial: Vec<Arc<DenialRecord>>;
        match reuse {
            Some((p, c)) => {
                sigs = p.sigs.clone();
                sigs.retain(|(n, _), _| !c.contains(n));
                let mut fresh = Vec::new();
                for name in c {
                    if let Some(node) = z.nodes.get(name) {
                        sign_owner(name, node, &mut fresh)?;
                    }
                }
                sigs.extend(fresh);
                chain = p.chain.clone();
                denial = p.denial.clone();
                for name in c {
                    if let Some(&i) = chain.at.get(name) {
                        denial[i] = Arc::new(denial_record(z, d, &chain, i, window, &cache)?);
                    }
                }
            }
            None => {
                let mut all = Vec::new();
                for (name, node) in &z.nodes {
                    sign_owner(name, node, &mut all)?;
                }
                sigs = all.into_iter().collect();
                chain = Arc::new(make_chain(z, d.denial, &below_cut)?);
                denial = Vec::with_capacity(chain.names.len());
                for i in 0..chain.names.len() {
                    denial.push(Arc::new(denial_record(z, d, &chain, i, window, &cache)?));
                }
            }
        }
        let mut soa_sigs = Vec::new();
        for key in d.keys.signing(Role::Zsk) {
            soa_sigs.push(rrsig(
                key,
                &z.origin,
                std::slice::from_ref(&z.soa),
                window,
                &cache,
            )?);
        }
        let negative_soa_sigs = soa_sigs
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.ttl = z.negative_soa.ttl;
                r
            })
            .collect();
        if fresh_cache {
            presign_alternatives(zone, d, window, &cache)?;
        }
        Ok(Signed {
            settings: d.clone(),
            window,
            cache,
            sigs,
            soa_sigs,
            negative_soa_sigs,
            chain,
            denial,
        })
    }

    /// How many signatures the window's cache holds (alternatives included).
    pub fn signatures_made(&self) -> usize {
        self.cache.len()
    }

    /// The RRSIGs of the RRset `name`/`rtype` (empty when it is not signed here).
    pub fn rrsigs(&self, name: &LowerName, rtype: RecordType) -> &[Record] {
        if rtype == RecordType::SOA {
            return &self.soa_sigs; // the apex's: the only SOA of the zone
        }
        self.sigs
            .get(&(name.clone(), rtype))
            .map_or(&[], |s| &s[..])
    }

    /// Every DNSSEC record of the zone but those in its content (RRSIGs, the SOA's
    /// included, and the denial chain), for zone transfers.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.soa_sigs
            .iter()
            .chain(self.sigs.values().flat_map(|s| s.iter()))
            .chain(
                self.denial
                    .iter()
                    .flat_map(|d| std::iter::once(&d.record).chain(d.sigs.iter())),
            )
    }

    /// The records proving that `name` exists without the type asked (NSEC3 or NSEC at the
    /// name; for an empty non-terminal under NSEC, the NSEC covering it).
    fn nodata<'a>(&'a self, name: &LowerName, out: &mut Vec<&'a DenialRecord>) {
        match self.chain.at.get(name) {
            Some(&i) => out.push(&self.denial[i]),
            None if self.settings.denial == Denial::Nsec => {
                out.push(&self.denial[self.nsec_cover(name)]);
            }
            None => {}
        }
    }

    /// The records proving that `name` does not exist: the closest encloser proof
    /// (RFC 5155 §7.2.2) and the denial of the wildcard, or the NSECs covering the name and
    /// the wildcard (RFC 4035 §3.1.3.2).
    fn nxdomain<'a>(&'a self, z: &ZoneData, name: &LowerName, out: &mut Vec<&'a DenialRecord>) {
        let apex = LowerName::new(&z.origin);
        // The closest encloser, and the name one label below it on the way to `name`.
        let mut next_closer = name.clone();
        let mut encloser = name.base_name();
        while labels(&encloser) > labels(&apex) && !z.nodes.contains_key(&encloser) {
            next_closer = encloser.clone();
            encloser = encloser.base_name();
        }
        let Ok(wildcard) = Name::from(encloser.clone()).prepend_label("*") else {
            return;
        };
        let mut push = |i: usize| {
            let d = &self.denial[i];
            if !out.iter().any(|o| std::ptr::eq(*o, &**d)) {
                out.push(d);
            }
        };
        match self.settings.denial {
            Denial::Nsec3 => {
                if let Some(&i) = self.chain.at.get(&encloser) {
                    push(i);
                }
                for n in [Name::from(next_closer), wildcard] {
                    if let Ok(h) = nsec3_hash(&n) {
                        push(self.nsec3_cover(&h));
                    }
                }
            }
            Denial::Nsec => {
                push(self.nsec_cover(name));
                push(self.nsec_cover(&LowerName::new(&wildcard)));
            }
        }
    }

    /// The NSEC3 whose span holds `hash` (the last hash below it, else the last of all).
    fn nsec3_cover(&self, hash: &[u8; 20]) -> usize {
        match self.chain.hashes.binary_search(hash) {
            Ok(i) => i,
            Err(0) => self.chain.hashes.len() - 1,
            Err(i) => i - 1,
        }
    }

    /// The NSEC whose span holds `name` (the last name before it in canonical order).
    fn nsec_cover(&self, name: &LowerName) -> usize {
        match self.chain.names.binary_search(name) {
            Ok(i) => i,
            Err(0) => self.chain.names.len() - 1,
            Err(i) => i - 1,
        }
    }
}

/// Whether `name` is in the denial chain: authoritative (not below a delegation), and for
/// NSEC holding data (empty non-terminals have no NSEC).
fn in_chain(
    node: &Node,
    name: &LowerName,
    denial: Denial,
    below_cut: &dyn Fn(&LowerName) -> bool,
) -> bool {
    !below_cut(name) && (denial == Denial::Nsec3 || !node.rrsets.is_empty())
}

fn chain_len(z: &ZoneData, denial: Denial, below_cut: &dyn Fn(&LowerName) -> bool) -> usize {
    z.nodes
        .iter()
        .filter(|(n, node)| in_chain(node, n, denial, below_cut))
        .count()
}

fn make_chain(
    z: &ZoneData,
    denial: Denial,
    below_cut: &dyn Fn(&LowerName) -> bool,
) -> Result<Chain, String> {
    let mut names: Vec<LowerName> = z
        .nodes
        .iter()
        .filter(|(n, node)| in_chain(node, n, denial, below_cut))
        .map(|(n, _)| n.clone())
        .collect();
    let mut hashes = Vec::new();
    match denial {
        Denial::Nsec3 => {
            let mut hashed = names
                .into_iter()
                .map(|n| Ok((nsec3_hash(&Name::from(n.clone()))?, n)))
                .collect::<Result<Vec<_>, String>>()?;
            hashed.sort_by_key(|a| a.0);
            if hashed.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err("two names of the zone have the same NSEC3 hash".into());
            }
            (hashes, names) = hashed.into_iter().unzip();
        }
        Denial::Nsec => names.sort(),
    }
    let at = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    Ok(Chain { hashes, names, at })
}

/// The types a denial record at `node` lists.
fn bitmap(node: &Node, denial: Denial) -> Vec<RecordType> {
    let mut types: Vec<RecordType> = node
        .rrsets
        .iter()
        .map(|s| s.rtype)
        .filter(|t| !node.cut || matches!(t, RecordType::NS | RecordType::DS))
        .collect();
    // At a delegation only the DS is signed (RFC 4035 §2.2).
    let signed = if node.cut {
        types.contains(&RecordType::DS)
    } else {
        !types.is_empty()
    };
    if signed {
        types.push(RecordType::RRSIG);
    }
    if denial == Denial::Nsec {
        types.extend([RecordType::NSEC, RecordType::RRSIG]);
    }
    types.sort_by_key(|t| u16::from(*t));
    types.dedup();
    types
}

/// The signed denial record at position `i` of `chain`.
fn denial_record(
    z: &ZoneData,
    d: &Dnssec,
    chain: &Chain,
    i: usize,
    window: Window,
    cache: &SigCache,
) -> Result<DenialRecord, String> {
    let name = &chain.names[i];
    let node = z.nodes.get(name).ok_or("a chain name without a node")?;
    let types = bitmap(node, d.denial);
    let next = (i + 1) % chain.names.len();
    let ttl = z.negative_soa.ttl;
    let record = match d.denial {
        Denial::Nsec3 => Record::from_rdata(
            nsec3_owner(&chain.hashes[i], &z.origin)?,
            ttl,
            RData::DNSSEC(DNSSECRData::NSEC3(NSEC3::new(
                Nsec3HashAlgorithm::SHA1,
                false,
                0,
                Vec::new(),
                chain.hashes[next].to_vec(),
                types,
            ))),
        ),
        Denial::Nsec => Record::from_rdata(
            Name::from(name.clone()),
            ttl,
            RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(
                Name::from(chain.names[next].clone()),
                types,
            ))),
        ),
    };
    let mut sigs = Vec::new();
    for key in d.keys.signing(Role::Zsk) {
        sigs.push(rrsig(
            key,
            &z.origin,
            std::slice::from_ref(&record),
            window,
            cache,
        )?);
    }
    Ok(DenialRecord { record, sigs })
}

/// Signs every RRset a dynamic record can answer (each `answers` entry and `otherwise`),
/// into `cache`, so that a swap finds them made.
fn presign_alternatives(
    zone: &Zone,
    d: &Dnssec,
    window: Window,
    cache: &SigCache,
) -> Result<(), String> {
    for dy in &zone.dynamic {
        let alternatives = dy
            .answers
            .iter()
            .map(|a| &a.values)
            .chain(std::iter::once(&dy.otherwise));
        for values in alternatives {
            let mut records: Vec<Record> = values
                .iter()
                .map(|v| Record::from_rdata(dy.name.clone(), dy.ttl, v.clone()))
                .collect();
            records.sort_by(|a, b| a.data.cmp(&b.data));
            records.dedup();
            if records.is_empty() {
                continue;
            }
            for key in d.keys.signing(Role::Zsk) {
                rrsig(key, &zone.origin, &records, window, cache)?;
            }
        }
    }
    Ok(())
}

/// Adds DNSSEC records to a resolution for a query with DO: each answer RRset's RRSIGs
/// after it, the negative SOA's RRSIGs and the denial proof for NXDOMAIN and NODATA, the
/// proof of no DS for a referral, and the RRSIGs of additional records. Zones not signed
/// add nothing.
pub fn add_dnssec<'a, Z: Zones>(snap: &'a Z, res: &mut Resolution<'a>) {
    let signed_of = |name: &Name| -> Option<(&'a ZoneData, &'a Signed, LowerName)> {
        let lower = LowerName::new(name);
        let z = snap.find_zone(&lower)?;
        Some((z, z.signed.as_deref()?, lower))
    };
    if !res.answer.is_empty() {
        let old = std::mem::take(&mut res.answer);
        let mut out = Vec::with_capacity(old.len() * 2);
        let mut i = 0;
        while i < old.len() {
            let (name, t) = (old[i].name.clone(), old[i].record_type());
            let mut j = i + 1;
            while j < old.len() && old[j].record_type() == t && old[j].name == name {
                j += 1;
            }
            out.extend(old[i..j].iter().cloned());
            if let Some((_, s, lower)) = signed_of(&name) {
                out.extend(s.rrsigs(&lower, t).iter().map(Cow::Borrowed));
            }
            i = j;
        }
        res.answer = out;
    }
    let mut proof: Vec<&'a DenialRecord> = Vec::new();
    match &res.proof {
        Some(Proof::NoData(z, name)) => {
            if let Some(s) = z.signed.as_deref() {
                res.authority.extend(s.negative_soa_sigs.iter());
                s.nodata(name, &mut proof);
            }
        }
        Some(Proof::NxDomain(z, name)) => {
            if let Some(s) = z.signed.as_deref() {
                res.authority.extend(s.negative_soa_sigs.iter());
                s.nxdomain(z, name, &mut proof);
            }
        }
        Some(Proof::Referral(z, cut)) => {
            if let Some(s) = z.signed.as_deref() {
                // The child's DS (signed), else the proof that it has none.
                match z.rrset(cut, RecordType::DS) {
                    Some(ds) => {
                        res.authority.extend(ds.iter());
                        res.authority.extend(s.rrsigs(cut, RecordType::DS).iter());
                    }
                    None => s.nodata(cut, &mut proof),
                }
            }
        }
        None => {}
    }
    for d in proof {
        res.authority.push(&d.record);
        res.authority.extend(d.sigs.iter());
    }
    if !res.additional.is_empty() {
        let old = std::mem::take(&mut res.additional);
        let mut out = Vec::with_capacity(old.len() * 2);
        let mut i = 0;
        while i < old.len() {
            let (name, t) = (&old[i].name, old[i].record_type());
            let mut j = i + 1;
            while j < old.len() && old[j].record_type() == t && old[j].name == *name {
                j += 1;
            }
            out.extend_from_slice(&old[i..j]);
            if let Some((_, s, lower)) = signed_of(name) {
                out.extend(s.rrsigs(&lower, t).iter());
            }
            i = j;
        }
        res.additional = out;
    }
}
