//! Zone files (`zones/*.toml`): parsed, checked and turned into [`Zone`]s of hickory records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_server::proto::rr::rdata::{CNAME, MX, NS, PTR, SRV, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;
use toml::Spanned;

use super::diag::{Diagnostic, Diagnostics, Source};
use super::schema::{RawCheckEach, RawDynamic, RawZone};
use super::validate::checks::timing;
use super::validate::{fqdn, list, read};
use super::*;

/// Static record types a zone file may hold.
pub const STATIC_TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::NS,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::PTR,
    RecordType::DS,
];

/// Record types a `[[dynamic]]` entry may have.
pub const DYNAMIC_TYPES: &[RecordType] = &[RecordType::A, RecordType::AAAA, RecordType::CNAME];

/// Loads every `*.toml` in `dir` (sorted by file name); `services` are the ids `if_up` may
/// name, `keys` the TSIG keys `transfer_key`/`transfer_keys` may name, `probe_source` the
/// address `check_each` probes leave from (their records must be of its family).
pub(super) fn load_dir(
    dir: &Path,
    services: &BTreeMap<String, Service>,
    keys: &[crate::proto::tsig::Key],
    probe_source: Option<IpAddr>,
    state_dir: &Path,
) -> Result<Vec<Zone>, Diagnostics> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => {
            return Err(Diagnostics(vec![Diagnostic {
                file: dir.to_path_buf(),
                line: 0,
                col: 0,
                message: format!("cannot read zones_dir: {e}"),
            }]));
        }
    };
    files.sort();
    if files.is_empty() {
        return Err(Diagnostics(vec![Diagnostic {
            file: dir.to_path_buf(),
            line: 0,
            col: 0,
            message: "no zone files (*.toml) in zones_dir: detour would serve nothing".into(),
        }]));
    }
    let mut errors = Vec::new();
    let mut zones: Vec<Zone> = Vec::new();
    let mut seen: BTreeMap<Name, PathBuf> = BTreeMap::new();
    for file in files {
        let text = match read(&file) {
            Ok(t) => t,
            Err(d) => {
                errors.push(d);
                continue;
            }
        };
        let mut src = Source::new(&file, &text);
        if let Some(raw) = super::split::parse_zone(&mut src, &text) {
            let origin_span = raw.origin.span();
            if let Some(zone) = zone(&mut src, raw, services, keys, probe_source, state_dir) {
                if let Some(first) = seen.get(&zone.origin) {
                    src.error(
                        origin_span,
                        format!(
                            "duplicate zone {}: already served from {}",
                            zone.origin,
                            first.display()
                        ),
                    );
                } else {
                    seen.insert(zone.origin.clone(), file.clone());
                    zones.push(zone);
                }
            }
        }
        errors.append(&mut src.errors);
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    zones.sort_by(|a, b| a.origin.cmp(&b.origin));
    Ok(zones)
}

/// An owner name from a zone file: `@`, relative to the origin, or absolute inside the zone.
fn owner(src: &mut Source<'_>, origin: &Name, s: &Spanned<String>) -> Option<Name> {
    let text = s.get_ref().trim();
    let name = if text == "@" {
        origin.clone()
    } else if text.ends_with('.') {
        fqdn(src, s)?
    } else {
        relative(src, origin, s)?
    };
    if !origin.zone_of(&name) {
        src.error(
            s.span(),
            format!("name {name} is outside zone {origin}: expected a name ending in {origin}"),
        );
        return None;
    }
    Some(name)
}

/// A name written relative to `origin` (no trailing dot).
fn relative(src: &mut Source<'_>, origin: &Name, s: &Spanned<String>) -> Option<Name> {
    match Name::from_str(s.get_ref().trim()).and_then(|n| n.append_domain(origin)) {
        Ok(n) => Some(n.to_lowercase()),
        Err(e) => {
            src.error(
                s.span(),
                format!("invalid domain name {:?}: {e}", s.get_ref()),
            );
            None
        }
    }
}

/// A target name in record data: absolute with a trailing dot, else relative to the origin.
fn target(src: &mut Source<'_>, origin: &Name, text: &str, span: Range<usize>) -> Option<Name> {
    let s = Spanned::new(span, text.to_string());
    if text == "@" {
        Some(origin.clone())
    } else if text.ends_with('.') {
        fqdn(src, &s)
    } else {
        relative(src, origin, &s)
    }
}

fn type_name(
    src: &mut Source<'_>,
    s: &Spanned<String>,
    allowed: &[RecordType],
) -> Option<RecordType> {
    let t = RecordType::from_str(&s.get_ref().to_ascii_uppercase()).ok();
    match t {
        Some(t) if allowed.contains(&t) => Some(t),
        Some(RecordType::SOA) => {
            src.error(
                s.span(),
                "the SOA record comes from the zone's `soa` table, not from `records`",
            );
            None
        }
        _ => {
            let names: Vec<String> = allowed.iter().map(|t| t.to_string()).collect();
            src.error(
                s.span(),
                format!(
                    "unsupported record type {:?}: expected one of {}",
                    s.get_ref(),
                    names.join(", ")
                ),
            );
            None
        }
    }
}

/// Splits text into TXT character-strings of at most 255 bytes, on character boundaries.
pub fn txt_chunks(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while rest.len() > 255 {
        let mut cut = 255;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    out.push(rest.to_string());
    out
}

/// A TXT value written as a zone file writes it: one or more quoted character-strings,
/// separated by blanks, with `\"`, `\\` and `\DDD` escapes; each at most 255 bytes.
pub fn txt_quoted(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c != '"' {
            return Err(format!("{c:?} outside quotes"));
        }
        let mut bytes = Vec::new();
        loop {
            match chars.next() {
                None => return Err("a quote is not closed".into()),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some(d) if d.is_ascii_digit() => {
                        let mut code = d.to_digit(10).unwrap_or(0);
                        for _ in 0..2 {
                            match chars.next().and_then(|d| d.to_digit(10)) {
                                Some(n) => code = code * 10 + n,
                                None => return Err("\\DDD needs three digits".into()),
                            }
                        }
                        bytes.push(u8::try_from(code).map_err(|_| "\\DDD above 255")?);
                    }
                    Some(e) => bytes.extend_from_slice(e.encode_utf8(&mut [0; 4]).as_bytes()),
                    None => return Err("a quote is not closed".into()),
                },
                Some(c) => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        if bytes.len() > 255 {
            return Err(format!("a string of {} bytes", bytes.len()));
        }
        if let Some(&next) = chars.peek()
            && !next.is_whitespace()
        {
            return Err(format!("{next:?} right after a closing quote"));
        }
        out.push(String::from_utf8(bytes).map_err(|_| "\\DDD escapes that are not UTF-8")?);
    }
    if out.is_empty() {
        return Err("no string".into());
    }
    Ok(out)
}

/// Record data of `rtype` from its text form.
fn rdata(
    src: &mut Source<'_>,
    origin: &Name,
    rtype: RecordType,
    v: &Spanned<String>,
) -> Option<RData> {
    let text = v.get_ref().trim();
    let span = v.span();
    let bad = |src: &mut Source<'_>, expected: &str| {
        src.error(
            span.clone(),
            format!("invalid {rtype} value {text:?}: expected {expected}"),
        );
        None
    };
    let fields: Vec<&str> = text.split_whitespace().collect();
    match rtype {
        RecordType::A => match Ipv4Addr::from_str(text) {
            Ok(a) => Some(RData::A(a.into())),
            Err(_) => bad(src, "an IPv4 address such as \"192.0.2.10\""),
        },
        RecordType::AAAA => match Ipv6Addr::from_str(text) {
            Ok(a) => Some(RData::AAAA(a.into())),
            Err(_) => bad(src, "an IPv6 address such as \"2001:db8::10\""),
        },
        RecordType::CNAME | RecordType::NS | RecordType::PTR => {
            if fields.len() != 1 {
                return bad(src, "one domain name");
            }
            let n = target(src, origin, text, span.clone())?;
            Some(match rtype {
                RecordType::CNAME => RData::CNAME(CNAME(n)),
                RecordType::NS => RData::NS(NS(n)),
                _ => RData::PTR(PTR(n)),
            })
        }
        RecordType::MX => match fields.as_slice() {
            [pref, host] => match pref.parse::<u16>() {
                Ok(p) => Some(RData::MX(MX::new(
                    p,
                    target(src, origin, host, span.clone())?,
                ))),
                Err(_) => bad(src, "\"PREFERENCE HOST\" such as \"10 mail.example.test.\""),
            },
            _ => bad(src, "\"PREFERENCE HOST\" such as \"10 mail.example.test.\""),
        },
        RecordType::SRV => match fields.as_slice() {
            [p, w, port, host] => match (p.parse::<u16>(), w.parse::<u16>(), port.parse::<u16>()) {
                (Ok(p), Ok(w), Ok(port)) => Some(RData::SRV(SRV::new(
                    p,
                    w,
                    port,
                    target(src, origin, host, span.clone())?,
                ))),
                _ => bad(
                    src,
                    "\"PRIORITY WEIGHT PORT TARGET\" such as \"10 5 443 sso.example.test.\"",
                ),
            },
            _ => bad(
                src,
                "\"PRIORITY WEIGHT PORT TARGET\" such as \"10 5 443 sso.example.test.\"",
            ),
        },
        RecordType::TXT if text.starts_with('"') => match txt_quoted(text) {
            Ok(strings) => Some(RData::TXT(TXT::new(strings))),
            Err(why) => bad(
                src,
                &format!(
                    "quoted strings of at most 255 bytes each, as in a zone file, such as \
                     '\"v=DKIM1; k=rsa; p=MIIB...\" \"...IDAQAB\"' ({why})"
                ),
            ),
        },
        RecordType::TXT => Some(RData::TXT(TXT::new(txt_chunks(v.get_ref())))),
        RecordType::DS => match RData::try_from_str(RecordType::DS, text) {
            Ok(r) => Some(r),
            Err(_) => bad(
                src,
                "\"KEYTAG ALGORITHM DIGESTTYPE DIGEST\" as `detour dnssec ds` prints it, such as \"12345 13 2 3A6F...\"",
            ),
        },
        RecordType::CAA => match RData::try_from_str(RecordType::CAA, text) {
            Ok(r) => Some(r),
            Err(_) => bad(
                src,
                "\"FLAGS TAG VALUE\" such as '0 issue \"letsencrypt.org\"'",
            ),
        },
        _ => bad(src, "a supported type"),
    }
}

fn ip_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Where each owner's data came from, to find conflicts.
#[derive(Default)]
struct Owners {
    /// (type, span, dynamic?) per name. Hashed, not ordered: a name comparison walks labels,
    /// and zones of 100,000 records would pay for millions of them.
    at: HashMap<Name, Vec<(RecordType, Range<usize>, bool)>>,
}

fn zone(
    src: &mut Source<'_>,
    raw: RawZone,
    services: &BTreeMap<String, Service>,
    keys: &[crate::proto::tsig::Key],
    probe_source: Option<IpAddr>,
    state_dir: &Path,
) -> Option<Zone> {
    let before = src.errors.len();
    let origin = fqdn(src, &raw.origin)?;
    let ttl = raw.ttl.map_or(3600, |t| t.0);
    let soa_raw = raw.soa.get_ref();
    let mname = target(src, &origin, soa_raw.mname.get_ref(), soa_raw.mname.span());
    let rname = target(
        src,
        &origin,
        &soa_raw.rname.get_ref().replacen('@', ".", 1),
        soa_raw.rname.span(),
    );
    let soa = Soa {
        mname: mname.unwrap_or_else(|| origin.clone()),
        rname: rname.unwrap_or_else(|| origin.clone()),
        refresh: soa_raw.refresh.map_or(3600, |t| t.0),
        retry: soa_raw.retry.map_or(600, |t| t.0),
        expire: soa_raw.expire.map_or(1_209_600, |t| t.0),
        minimum: soa_raw.minimum.map_or(60, |t| t.0),
        ttl: soa_raw.ttl.map_or(ttl, |t| t.0),
        serial: soa_raw.serial,
    };

    let mut owners = Owners::default();
    let mut records: Vec<Record> = Vec::new();
    if raw.ns.get_ref().is_empty() {
        src.error(
            raw.ns.span(),
            "a zone needs at least one name server in `ns`",
        );
    }
    for ns in raw.ns.get_ref() {
        if let Some(n) = target(src, &origin, ns.get_ref(), ns.span()) {
            records.push(Record::from_rdata(origin.clone(), ttl, RData::NS(NS(n))));
            owners
                .at
                .entry(origin.clone())
                .or_default()
                .push((RecordType::NS, ns.span(), false));
        }
    }

    let mut seen: std::collections::HashSet<(Name, RData)> = std::collections::HashSet::new();
    let mut rrset_ttl: HashMap<(Name, RecordType), u32> = HashMap::new();
    for r in &raw.records {
        let r = r.get_ref();
        let Some(rtype) = type_name(src, &r.rtype, STATIC_TYPES) else {
            continue;
        };
        let Some(name) = owner(src, &origin, &r.name) else {
            continue;
        };
        if rtype == RecordType::NS && name == origin {
            src.error(
                r.rtype.span(),
                "apex NS records come from the zone's `ns` list",
            );
            continue;
        }
        let Some(data) = rdata(src, &origin, rtype, &r.value) else {
            continue;
        };
        let rec = Record::from_rdata(name.clone(), r.ttl.map_or(ttl, |t| t.0), data);
        // Hash lookups, not scans: zones of 100,000 records load in well under a second.
        if !seen.insert((rec.name.clone(), rec.data.clone())) {
            src.error(
                r.name.span(),
                format!("duplicate record: {name} {rtype} {}", r.value.get_ref()),
            );
            continue;
        }
        match rrset_ttl.get(&(rec.name.clone(), rtype)) {
            Some(&first) if first != rec.ttl => {
                src.error(
                    r.name.span(),
                    format!(
                        "records of one RRset must share a TTL: {name} {rtype} has TTL {} here and {first} before",
                        rec.ttl
                    ),
                );
                continue;
            }
            Some(_) => {}
            None => {
                rrset_ttl.insert((rec.name.clone(), rtype), rec.ttl);
            }
        }
        owners
            .at
            .entry(name)
            .or_default()
            .push((rtype, r.name.span(), false));
        records.push(rec);
    }

    let mut dynamic = Vec::new();
    for d in &raw.dynamic {
        if let Some(d) = dynamic_record(src, &origin, d, services, &mut owners, probe_source) {
            dynamic.push(d);
        }
    }
    conflicts(src, &origin, &owners);

    let mut allow_transfer = Vec::new();
    for a in &raw.allow_transfer {
        match ip_net(a.get_ref()) {
            Some(n) => allow_transfer.push(n),
            None => src.error(
                a.span(),
                format!(
                    "invalid allow_transfer entry {:?}: expected an IP address or prefix such as \"127.0.0.1\" or \"192.0.2.0/24\"",
                    a.get_ref()
                ),
            ),
        }
    }
    let mut also_notify = Vec::new();
    for a in &raw.also_notify {
        let s = a.get_ref();
        match s.parse::<SocketAddr>().ok().or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))) {
            Some(x) => also_notify.push(x),
            None => src.error(
                a.span(),
                format!("invalid also_notify entry {s:?}: expected an IP address, optionally with a port"),
            ),
        }
    }

    let names: Vec<&Spanned<String>> = match (&raw.transfer_key, &raw.transfer_keys) {
        (Some(one), None) => vec![one],
        (None, Some(many)) if many.get_ref().is_empty() => {
            src.error(
                many.span(),
                "transfer_keys is empty: name at least one [tsig] key",
            );
            Vec::new()
        }
        (None, Some(many)) => many.get_ref().iter().collect(),
        (Some(one), Some(_)) => {
            src.error(
                one.span(),
                "transfer_key and transfer_keys together: use transfer_keys = [...] alone",
            );
            Vec::new()
        }
        (None, None) => Vec::new(),
    };
    let mut transfer_keys = Vec::new();
    for k in names {
        let want = Name::from_ascii(k.get_ref()).ok().map(|mut n| {
            n.set_fqdn(true);
            n.to_lowercase()
        });
        match keys.iter().find(|key| Some(key.name()) == want.as_ref()) {
            Some(key) if raw.allow_transfer.is_empty() => {
                src.error(
                    k.span(),
                    "a transfer key without allow_transfer: no address may transfer the zone (use [\"0.0.0.0/0\", \"::/0\"] to rely on the key alone)",
                );
                transfer_keys.push(key.clone());
            }
            Some(key) => transfer_keys.push(key.clone()),
            None => src.error(
                k.span(),
                format!(
                    "transfer key {:?} is not a [tsig] key of the config; known: {}",
                    k.get_ref(),
                    if keys.is_empty() {
                        "none".to_string()
                    } else {
                        keys.iter()
                            .map(|k| k.name().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ),
        }
    }

    // Keys are read (or made) last, and only for a zone otherwise valid.
    let dnssec = match &raw.dnssec {
        Some(d) if src.errors.len() == before => {
            if let Some(star) = records.iter().find(|r| r.name.is_wildcard()) {
                let span = raw
                    .records
                    .iter()
                    .find(|r| r.get_ref().name.get_ref().trim().starts_with('*'))
                    .map_or(d.span(), |r| r.span());
                src.error(
                    span,
                    format!(
                        "wildcard {} in a signed zone: detour does not sign wildcard answers yet; remove [dnssec] or the wildcard",
                        star.name
                    ),
                );
                return None;
            }
            dnssec(src, &origin, d, state_dir)
        }
        _ => None,
    };
    (src.errors.len() == before).then(|| Zone {
        file: src.path().to_path_buf(),
        origin,
        ttl,
        soa,
        records,
        dynamic,
        allow_transfer,
        also_notify,
        transfer_keys,
        dnssec,
    })
}

/// Knot's defaults: signatures valid 14 days, made again after 7.
const SIGNATURE_LIFETIME: u32 = 14 * 86_400;
const SIGNATURE_REFRESH: u32 = 7 * 86_400;
/// Knot's defaults: a ZSK rolled over after 30 days; an hour for secondaries and caches.
const ZSK_LIFETIME: u32 = 30 * 86_400;
const PROPAGATION_DELAY: u32 = 3600;

/// `[dnssec]`: settings checked, then the keys read from `keys_dir` (made when absent).
fn dnssec(
    src: &mut Source<'_>,
    origin: &Name,
    d: &Spanned<super::schema::RawDnssec>,
    state_dir: &Path,
) -> Option<Dnssec> {
    let before = src.errors.len();
    let raw = d.get_ref();
    let algorithm = match &raw.algorithm {
        None => crate::dnssec::Algorithm::EcdsaP256Sha256,
        Some(a) => match crate::dnssec::Algorithm::from_name(a.get_ref()) {
            Some(x) => x,
            None => {
                src.error(
                    a.span(),
                    format!(
                        "unknown DNSSEC algorithm {:?}: expected \"ecdsap256sha256\" or \"ed25519\"",
                        a.get_ref()
                    ),
                );
                crate::dnssec::Algorithm::EcdsaP256Sha256
            }
        },
    };
    let denial = match raw.denial.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None => crate::dnssec::Denial::Nsec3,
        Some((_, "nsec3")) => crate::dnssec::Denial::Nsec3,
        Some((_, "nsec")) => crate::dnssec::Denial::Nsec,
        Some((s, "compact")) => {
            src.error(
                s.span(),
                "denial = \"compact\" (RFC 9824) is not implemented yet: use \"nsec3\" or \"nsec\"",
            );
            crate::dnssec::Denial::Nsec3
        }
        Some((s, other)) => {
            src.error(
                s.span(),
                format!("unknown denial {other:?}: expected \"nsec3\" or \"nsec\""),
            );
            crate::dnssec::Denial::Nsec3
        }
    };
    let secs = |d: &Spanned<super::duration::Dur>| u32::try_from(d.get_ref().0.as_secs()).ok();
    let lifetime = raw
        .signature_lifetime
        .as_ref()
        .map_or(Some(SIGNATURE_LIFETIME), secs);
    let refresh = raw
        .signature_refresh
        .as_ref()
        .map_or(Some(SIGNATURE_REFRESH), secs);
    let (lifetime, refresh) = match (lifetime, refresh) {
        (Some(l), Some(r)) if r >= 10 && l >= 2 * r && l <= 366 * 86_400 => (l, r),
        _ => {
            let span = raw
                .signature_refresh
                .as_ref()
                .or(raw.signature_lifetime.as_ref())
                .map_or(d.span(), |s| s.span());
            src.error(
                span,
                "signature_refresh must be at least 10s and at most half of signature_lifetime (at most 366 days); the defaults are 7 days and 14 days",
            );
            return None;
        }
    };
    let zsk_lifetime = match &raw.zsk_lifetime {
        None => ZSK_LIFETIME,
        Some(l) => match secs(l) {
            Some(v) if v == 0 || v >= refresh => v,
            _ => {
                src.error(
                    l.span(),
                    "zsk_lifetime must be \"0s\" (no automatic rollover) or at least signature_refresh; the default is 30 days",
                );
                return None;
            }
        },
    };
    let propagation_delay = match &raw.propagation_delay {
        None => PROPAGATION_DELAY,
        Some(p) => match secs(p) {
            Some(v) => v,
            None => {
                src.error(p.span(), "propagation_delay is too long");
                return None;
            }
        },
    };
    let zone_name = origin.to_string();
    let default_dir = format!("keys/{}", zone_name.trim_end_matches('.'));
    let keys_dir = match &raw.keys_dir {
        Some(k) if k.get_ref().trim().is_empty() => {
            src.error(k.span(), "keys_dir is empty: expected a folder");
            return None;
        }
        Some(k) => state_dir.join(k.get_ref()),
        None => state_dir.join(default_dir),
    };
    if src.errors.len() != before {
        return None;
    }
    match crate::dnssec::Keyring::load_or_create(&keys_dir, algorithm) {
        Ok(keys) => Some(Dnssec {
            algorithm,
            denial,
            keys_dir,
            lifetime,
            refresh,
            zsk_lifetime,
            propagation_delay,
            keys: std::sync::Arc::new(keys),
        }),
        Err(e) => {
            let span = raw.keys_dir.as_ref().map_or(d.span(), |k| k.span());
            src.error(span, format!("DNSSEC keys: {e}"));
            None
        }
    }
}

fn dynamic_record(
    src: &mut Source<'_>,
    origin: &Name,
    d: &Spanned<RawDynamic>,
    services: &BTreeMap<String, Service>,
    owners: &mut Owners,
    probe_source: Option<IpAddr>,
) -> Option<Dynamic> {
    let before = src.errors.len();
    let span = d.span();
    let d = d.get_ref();
    let rtype = type_name(src, &d.rtype, DYNAMIC_TYPES);
    let name = owner(src, origin, &d.name);
    let (Some(rtype), Some(name)) = (rtype, name) else {
        return None;
    };
    let values = |src: &mut Source<'_>, vs: &[Spanned<String>], at: Range<usize>| -> Vec<RData> {
        if vs.is_empty() {
            src.error(at.clone(), "expected at least one value");
        }
        if rtype == RecordType::CNAME && vs.len() > 1 {
            src.error(at, "a CNAME answer has exactly one value");
        }
        vs.iter()
            .filter_map(|v| rdata(src, origin, rtype, v))
            .collect()
    };
    let mut answers = Vec::new();
    for a in &d.answers {
        let a_span = a.span();
        let a = a.get_ref();
        if !services.contains_key(a.if_up.get_ref()) {
            src.error(
                a.if_up.span(),
                format!(
                    "if_up names unknown service {:?}: expected one of {}",
                    a.if_up.get_ref(),
                    list(services.keys())
                ),
            );
        }
        answers.push(DynamicAnswer {
            if_up: a.if_up.get_ref().clone(),
            values: values(src, &a.values, a_span),
        });
    }
    let otherwise = match &d.otherwise {
        None => {
            src.error(
                span.clone(),
                format!(
                    "dynamic record {name} has no `otherwise`: expected the outage answer, e.g. otherwise = [\"<detour's page address>\"]"
                ),
            );
            Vec::new()
        }
        Some(o) => values(src, o.get_ref(), o.span()),
    };
    let check_each = match &d.check_each {
        Some(c) if rtype == RecordType::CNAME => {
            src.error(
                c.span(),
                "check_each probes addresses: it applies to A and AAAA records",
            );
            None
        }
        Some(c) => {
            // An A record's addresses are IPv4, an AAAA record's IPv6.
            if let Some(source) = probe_source
                && source.is_ipv4() != (rtype == RecordType::A)
            {
                let (mine, theirs) = if source.is_ipv4() {
                    ("IPv4", "IPv6")
                } else {
                    ("IPv6", "IPv4")
                };
                src.error(
                    c.span(),
                    format!(
                        "check_each would probe the {theirs} addresses of this {rtype} record from probe_source {source} ({mine}): every probe would fail"
                    ),
                );
            }
            check_each(src, c.get_ref(), &name)
        }
        None => None,
    };
    owners
        .at
        .entry(name.clone())
        .or_default()
        .push((rtype, d.name.span(), true));
    (src.errors.len() == before).then(|| Dynamic {
        name,
        rtype,
        ttl: d.ttl.map_or(30, |t| t.0),
        answers,
        otherwise,
        check_each,
    })
}

fn check_each(src: &mut Source<'_>, c: &RawCheckEach, _name: &Name) -> Option<CheckEach> {
    let base = Timing {
        interval: std::time::Duration::from_secs(5),
        timeout: std::time::Duration::from_secs(2),
        confirm_interval: std::time::Duration::from_millis(1250),
        down_interval: None,
        rise: 2,
        fall: 2,
        watch: false,
        degraded_after: None,
    };
    let timing = Timing {
        watch: c.watch.unwrap_or(false),
        ..timing(src, c, &base)
    };
    let kind = match c.kind.get_ref().as_str() {
        "http" => {
            let scheme = c
                .scheme
                .as_ref()
                .map_or("http".to_string(), |s| s.get_ref().clone());
            if let Some(s) = &c.scheme
                && !matches!(s.get_ref().as_str(), "http" | "https")
            {
                src.error(s.span(), "invalid scheme: expected \"http\" or \"https\"");
            }
            CheckEachKind::Http {
                scheme,
                path: c.path.clone().unwrap_or_else(|| "/".into()),
                host: c.host.clone(),
                expect_status: c.expect_status.clone().unwrap_or_default(),
                body_contains: c.body_contains.clone(),
            }
        }
        "tcp" => CheckEachKind::Tcp,
        other => {
            src.error(
                c.kind.span(),
                format!("unknown check_each type {other:?}: expected \"http\" or \"tcp\""),
            );
            return None;
        }
    };
    Some(CheckEach {
        kind,
        port: *c.port.get_ref(),
        timing,
    })
}

/// CNAME beside other data, dynamic beside static of one type, data hidden below a delegation.
fn conflicts(src: &mut Source<'_>, origin: &Name, owners: &Owners) {
    let cuts: BTreeSet<&Name> = owners
        .at
        .iter()
        .filter(|(n, v)| *n != origin && v.iter().any(|(t, _, _)| *t == RecordType::NS))
        .map(|(n, _)| n)
        .collect();
    // In the order the names first appear in the file, so errors come out in file order.
    let mut names: Vec<_> = owners.at.iter().collect();
    names.sort_by_key(|(_, v)| v.first().map_or(0, |(_, span, _)| span.start));
    for (name, v) in names {
        let cname = v.iter().filter(|(t, _, _)| *t == RecordType::CNAME).count();
        if cname > 0 && (v.len() > 1 || name == origin) {
            let (_, span, _) = v
                .iter()
                .rev()
                .find(|(t, _, _)| *t == RecordType::CNAME)
                .or(v.last())
                .expect("non-empty");
            let what = if name == origin {
                "the zone apex holds SOA and NS, so it cannot be a CNAME".to_string()
            } else {
                let others: Vec<String> = v
                    .iter()
                    .filter(|(t, _, _)| *t != RecordType::CNAME || cname > 1)
                    .map(|(t, _, d)| {
                        if *d {
                            format!("dynamic {t}")
                        } else {
                            t.to_string()
                        }
                    })
                    .collect();
                format!(
                    "a CNAME must be the only record at its name, but {name} also has {}",
                    others.join(", ")
                )
            };
            src.error(span.clone(), format!("CNAME beside other data: {what}"));
        }
        let mut dyn_types = BTreeSet::new();
        for (t, span, dynamic) in v {
            if *dynamic {
                if !dyn_types.insert(*t) {
                    src.error(
                        span.clone(),
                        format!("two [[dynamic]] entries for {name} {t}"),
                    );
                }
                if v.iter().any(|(t2, _, d2)| !d2 && t2 == t) {
                    src.error(
                        span.clone(),
                        format!("{name} {t} is both a static record and [[dynamic]]: keep one"),
                    );
                }
            }
        }
        if !cuts.contains(name)
            && let Some((_, span, _)) = v.iter().find(|(t, _, _)| *t == RecordType::DS)
        {
            src.error(
                span.clone(),
                format!("{name} DS without NS: a DS record belongs at a delegation point (a name with NS records below the apex)"),
            );
        }
        for cut in &cuts {
            let below = name != *cut && cut.zone_of(name);
            for (t, span, dynamic) in v {
                let glue = matches!(t, RecordType::A | RecordType::AAAA) && !dynamic;
                let at_cut_ok =
                    name == *cut && (matches!(t, RecordType::NS | RecordType::DS) || glue);
                if (below && !glue) || (name == *cut && !at_cut_ok) {
                    src.error(
                        span.clone(),
                        format!("{name} {t} is hidden by the delegation at {cut}: only NS and glue (A/AAAA) belong at or below a zone cut"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_chunks_split_at_255_bytes_on_char_boundaries() {
        let long = "é".repeat(200); // 400 bytes
        let chunks = txt_chunks(&long);
        assert!(chunks.iter().all(|c| c.len() <= 255));
        assert_eq!(chunks.concat(), long);
        assert_eq!(txt_chunks("short"), vec!["short".to_string()]);
    }

    #[test]
    fn quoted_txt_values_read_like_a_zone_file() {
        assert_eq!(
            txt_quoted(r#""hello benchmark" "second string""#).unwrap(),
            vec!["hello benchmark", "second string"]
        );
        assert_eq!(
            txt_quoted(r#"  "a \"q\" \\ \065"  "" "#).unwrap(),
            vec![r#"a "q" \ A"#, ""]
        );
        assert_eq!(
            txt_quoted(&format!("\"{}\"", "x".repeat(255)))
                .unwrap()
                .len(),
            1
        );
        for (bad, why) in [
            (r#""open"#, "not closed"),
            (r#""a" b"#, "outside quotes"),
            (r#""a""b""#, "right after a closing quote"),
            (r#""\06""#, "three digits"),
            (r#""\300""#, "above 255"),
            ("   ", "no string"),
        ] {
            let e = txt_quoted(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = txt_quoted(&format!("\"{}\"", "x".repeat(256))).unwrap_err();
        assert!(e.contains("256 bytes"), "{e}");
    }
}
