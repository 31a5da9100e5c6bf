//! `detour dnssec ...`: the keys of signed zones, read from their `keys_dir` through the
//! config (keys are created there when absent, as the daemon would).

use std::fmt::Write;

use crate::config::{Config, Zone};
use crate::dnssec::keys::KeyState;

/// The DS records of `zone`'s active KSKs as zone-file lines for the parent, or why not.
pub fn ds(cfg: &Config, zone: &str) -> Result<String, String> {
    let (z, d) = signed_zone(cfg, zone)?;
    let mut out = String::new();
    for ds in d.keys.ds(&z.origin)? {
        let _ = writeln!(out, "{} {} IN DS {ds}", z.origin, z.soa.ttl);
    }
    Ok(out)
}

/// Starts a KSK rollover of `zone` (a running daemon serves the new key within a second).
pub fn ksk_roll(cfg: &Config, zone: &str) -> Result<String, String> {
    let (z, d) = signed_zone(cfg, zone)?;
    let said = crate::dnssec::rollover::start_ksk_roll(&d.keys_dir, d.algorithm)?;
    Ok(format!("{}: {said}\n", z.origin))
}

/// Finishes a KSK rollover of `zone` once the parent's DS names the new key.
pub fn ksk_done(cfg: &Config, zone: &str) -> Result<String, String> {
    let (z, d) = signed_zone(cfg, zone)?;
    let policy = z.rollover_policy().ok_or("not signed")?;
    let now = chrono::Utc::now().timestamp();
    let steps = crate::dnssec::rollover::finish_ksk_roll(&d.keys_dir, &policy, now)?;
    Ok(steps
        .iter()
        .map(|s| format!("{}: {s}\n", z.origin))
        .collect())
}

/// What `detour dnssec status` prints: every signed zone, its settings, keys and DS; JSON
/// when `json`.
pub fn status(cfg: &Config, json: bool) -> Result<String, String> {
    let mut zones = Vec::new();
    for z in cfg.zones.iter() {
        let Some(d) = &z.dnssec else { continue };
        let window =
            crate::dnssec::Window::at(crate::proto::unix_seconds() as u32, d.lifetime, d.refresh);
        let ds: Vec<String> = d
            .keys
            .ds(&z.origin)?
            .iter()
            .map(|x| x.to_string())
            .collect();
        let keys: Vec<serde_json::Value> = d
            .keys
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "role": k.meta.role,
                    "tag": k.meta.tag,
                    "algorithm": k.meta.algorithm,
                    "state": k.meta.state,
                    "signs_from": k.meta.activate.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|t| t.to_rfc3339()),
                    "removed_at": k.meta.remove.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|t| t.to_rfc3339()),
                    "created": chrono::DateTime::from_timestamp(k.meta.created, 0)
                        .map(|t| t.to_rfc3339()),
                })
            })
            .collect();
        zones.push(serde_json::json!({
            "zone": z.origin.to_string(),
            "algorithm": d.algorithm.to_string(),
            "denial": d.denial.to_string(),
            "keys_dir": d.keys_dir.display().to_string(),
            "keys": keys,
            "ds": ds,
            "signature_inception": stamp(window.inception),
            "signature_expiration": stamp(window.expiration),
            "next_signing": stamp(window.period.saturating_add(d.refresh)),
        }));
    }
    if json {
        return Ok(format!("{}\n", serde_json::json!({ "zones": zones })));
    }
    if zones.is_empty() {
        return Ok("no zone has [dnssec]\n".into());
    }
    let mut out = String::new();
    for z in &zones {
        let s = |k: &str| z[k].as_str().unwrap_or("").to_string();
        let _ = writeln!(
            out,
            "{}  {} {}  keys in {}",
            s("zone"),
            s("algorithm"),
            s("denial"),
            s("keys_dir")
        );
        let _ = writeln!(
            out,
            "  signatures valid {} to {}; made again at {}",
            s("signature_inception"),
            s("signature_expiration"),
            s("next_signing")
        );
        for k in z["keys"].as_array().into_iter().flatten() {
            let _ = write!(
                out,
                "  {} {:>5}  {}  created {}",
                k["role"].as_str().unwrap_or("").to_uppercase(),
                k["tag"],
                k["state"].as_str().unwrap_or(""),
                k["created"].as_str().unwrap_or("")
            );
            if let Some(t) = k["signs_from"].as_str() {
                let _ = write!(out, "; signs from {t}");
            }
            if let Some(t) = k["removed_at"].as_str() {
                let _ = write!(out, "; leaves DNSKEY at {t}");
            }
            out.push('\n');
        }
        for ds in z["ds"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  DS {}", ds.as_str().unwrap_or(""));
        }
    }
    Ok(out)
}

fn stamp(t: u32) -> String {
    chrono::DateTime::from_timestamp(i64::from(t), 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

fn signed_zone<'a>(
    cfg: &'a Config,
    zone: &str,
) -> Result<(&'a Zone, &'a crate::config::Dnssec), String> {
    let want = format!("{}.", zone.trim_end_matches('.')).to_ascii_lowercase();
    let z = cfg
        .zones
        .iter()
        .find(|z| z.origin.to_string().to_ascii_lowercase() == want)
        .ok_or_else(|| {
            let names: Vec<String> = cfg.zones.iter().map(|z| z.origin.to_string()).collect();
            format!("no zone {want}; served: {}", names.join(", "))
        })?;
    let d = z
        .dnssec
        .as_ref()
        .ok_or_else(|| format!("zone {want} is not signed: it has no [dnssec] table"))?;
    if !d.keys.keys.iter().any(|k| k.meta.state == KeyState::Active) {
        return Err(format!("zone {want} has no active key"));
    }
    Ok((z, d))
}
