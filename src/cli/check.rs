//! `detour check`: the summary of a valid config, with each dynamic record's failover budget.

use crate::config::{self, AdminListen, Config};

/// `detour check`: the summary printed for a valid config.
pub fn summary(cfg: &Config) -> String {
    let mut out = String::new();
    let line = |out: &mut String, s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(&mut out, format!("{}: OK", cfg.path.display()));
    let dynamic: usize = cfg.zones.iter().map(|z| z.dynamic.len()).sum();
    line(
        &mut out,
        format!(
            "  zones:    {} ({} static records, {} dynamic)",
            cfg.zones.len(),
            cfg.record_count(),
            dynamic
        ),
    );
    for z in &cfg.zones {
        line(
            &mut out,
            format!(
                "    {:<24} {} records, {} dynamic, negative TTL {} s",
                z.origin.to_string(),
                z.records.len(),
                z.dynamic.len(),
                z.soa.minimum.min(z.soa.ttl)
            ),
        );
        if !z.allow_transfer.is_empty() {
            let from: Vec<String> = z.allow_transfer.iter().map(|n| n.to_string()).collect();
            let key = if z.transfer_keys.is_empty() {
                "unsigned".to_string()
            } else {
                let names: Vec<String> = z
                    .transfer_keys
                    .iter()
                    .map(|k| k.name().to_string())
                    .collect();
                format!("TSIG key {}", names.join(" or "))
            };
            let notify = if z.also_notify.is_empty() {
                String::new()
            } else {
                format!(", NOTIFY to {}", z.also_notify.len())
            };
            line(
                &mut out,
                format!(
                    "    {:<24} transfers from {} ({key}){notify}",
                    "",
                    from.join(", ")
                ),
            );
        }
    }
    let ids: Vec<&str> = cfg.services.keys().map(String::as_str).collect();
    line(
        &mut out,
        format!(
            "  services: {} ({}), {} checks",
            cfg.services.len(),
            ids.join(", "),
            cfg.check_count()
        ),
    );
    let dns: Vec<String> = cfg
        .server
        .dns_listen
        .iter()
        .map(|a| a.to_string())
        .collect();
    let page: Vec<String> = cfg
        .server
        .page_listen
        .iter()
        .map(|a| a.to_string())
        .collect();
    let admin = match &cfg.server.admin_listen {
        AdminListen::Tcp(a) => a.to_string(),
        AdminListen::Unix(p) => format!("unix:{}", p.display()),
    };
    line(
        &mut out,
        format!(
            "  listen:   dns {} (UDP+TCP), page {}, admin {}",
            dns.join(" "),
            page.join(" "),
            admin
        ),
    );
    let cookies = match &cfg.server.cookies {
        None => "off".to_string(),
        Some(s) if Some(s) == crate::proto::cookie::Secret::process() => {
            "on, secret made at each start (set cookie_secret to share it across servers)".into()
        }
        Some(_) => "on, cookie_secret from the config".into(),
    };
    line(&mut out, format!("  cookies:  {cookies}"));
    if let Some(ip) = cfg.server.probe_source {
        line(
            &mut out,
            format!("  probes:   leave from {ip} (probe_source)"),
        );
    }
    line(&mut out, format!("  rrl:      {}", cfg.server.rrl));
    for z in &cfg.zones {
        for d in &z.dynamic {
            line(
                &mut out,
                format!("  failover: {} {}: {}", d.name, d.rtype, budget(cfg, d)),
            );
        }
    }
    for w in &cfg.warnings {
        line(&mut out, format!("warning: {w}"));
    }
    out
}

/// Worst case from a failure to every cache following (detection plus the record's TTL),
/// and from the service's return to every cache following back.
///
/// Detection, worst case: the failure starts just after a passing probe, so the first failing
/// probe comes one `interval` later; `fall - 1` more follow, each at the confirm pace or, when
/// a failing probe uses its whole `timeout`, right after it; the last may take the whole
/// `timeout`. Recovery the same way: the service is back just after a failing probe started,
/// the next comes at the down pace (or when that one timed out), `rise - 1` more at the
/// confirm pace.
pub fn budget(cfg: &Config, d: &config::Dynamic) -> String {
    let checks: Vec<&config::Check> = match &d.check_each {
        Some(_) => Vec::new(),
        None => d
            .answers
            .first()
            .and_then(|a| cfg.services.get(&a.if_up))
            .map(|s| s.checks.iter().collect())
            .unwrap_or_default(),
    };
    // A heartbeat is not probed: it fails `period + grace` after the job's last call.
    let heartbeat = checks
        .iter()
        .filter_map(|c| match &c.kind {
            config::CheckKind::Heartbeat(h) => Some(h.period + h.grace),
            _ => None,
        })
        .max()
        .map(|w| {
            format!(
                "a heartbeat check: within {} of the job's last call (period + grace {}; then TTL {} s), back at its next call (then TTL)",
                config::duration::display(w + std::time::Duration::from_secs(u64::from(d.ttl))),
                config::duration::display(w),
                d.ttl
            )
        });
    let timings: Vec<config::Timing> = match &d.check_each {
        Some(each) => vec![each.timing],
        None => checks
            .iter()
            .filter(|c| !matches!(c.kind, config::CheckKind::Heartbeat(_)))
            .map(|c| c.timing)
            .collect(),
    };
    let probed = budget_of(&timings, cfg, d);
    match (probed, heartbeat) {
        (Some(p), Some(h)) => format!("{p}; {h}"),
        (Some(p), None) => p,
        (None, Some(h)) => h,
        (None, None) => format!(
            "no check on the first entry's service: only an operator moves it (TTL {} s)",
            d.ttl
        ),
    }
}

/// The budget of probed checks with these timings (the slowest decides); `None` without any.
fn budget_of(timings: &[config::Timing], cfg: &Config, d: &config::Dynamic) -> Option<String> {
    let detect = |t: &config::Timing| {
        t.interval + t.confirm_interval.max(t.timeout) * (t.fall - 1) + t.timeout
    };
    let t = timings.iter().max_by_key(|t| detect(t))?;
    // With canaries a down verdict waits for a canary pass during the failures: with fall 1
    // there is only one failure, so it waits for the next one.
    let wait_canary =
        (!cfg.guard.canaries.is_empty() && t.fall == 1).then(|| t.down_pace().max(t.timeout));
    let detection = detect(t) + wait_canary.unwrap_or_default();
    let ttl = std::time::Duration::from_secs(u64::from(d.ttl));
    let recovery =
        t.down_pace().max(t.timeout) + t.confirm_interval.max(t.timeout) * (t.rise - 1) + t.timeout;
    let show = config::duration::display;
    // Watched: a killed backend closes the idle connection and is probed at once (refused,
    // no timeout spent); `fall - 1` more failures follow at the confirm pace.
    let watched = if t.watch {
        let killed = t.confirm_interval * (t.fall - 1) + wait_canary.unwrap_or_default();
        format!(
            "; a killed backend (watch): within {}",
            config::duration::display(killed + ttl)
        )
    } else {
        String::new()
    };
    let canary = wait_canary.map_or(String::new(), |w| {
        format!(
            " + {} for a second failure after a canary passed (guard, fall 1)",
            show(w)
        )
    });
    Some(format!(
        "within {} (detect {}: interval {} + {} x max(confirm {}, timeout {}) + timeout {}{canary}; then TTL {} s){watched}; back within {} (max(down pace {}, timeout) + {} x max(confirm, timeout) + timeout; then TTL {} s)",
        show(detection + ttl),
        show(detection),
        show(t.interval),
        t.fall - 1,
        show(t.confirm_interval),
        show(t.timeout),
        show(t.timeout),
        d.ttl,
        show(recovery + ttl),
        show(t.down_pace()),
        t.rise - 1,
        d.ttl
    ))
}
