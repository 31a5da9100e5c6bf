//! Checks a parsed `detour.toml` and turns it into [`Config`]; collects every problem it finds.

pub(super) mod checks;
mod cluster;
mod comms;
mod console;
mod rehearsal;
mod server;
mod services;
mod sinks;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::DateTime;
use hickory_server::proto::rr::{Name, RecordType};
use serde::de::DeserializeOwned;
use toml::Spanned;

use super::diag::{Diagnostic, Diagnostics, Source};
use super::duration::Dur;
use super::schema::*;
use super::*;

use checks::*;
use cluster::cluster;
use server::*;
use services::*;
use sinks::*;

/// Parses `text` as TOML into `T`, reporting every syntax error (or the first type error).
pub(super) fn parse_toml<T: DeserializeOwned>(src: &mut Source<'_>, text: &str) -> Option<T> {
    match toml::from_str::<T>(text) {
        Ok(v) => Some(v),
        Err(e) => {
            // On failure, parse again to report every syntax error, not just the first;
            // valid files (the common case, and large zones) are parsed once.
            let (_, syntax) = toml::de::DeTable::parse_recoverable(text);
            if syntax.is_empty() {
                src.toml_error(&e);
            } else {
                for e in &syntax {
                    src.toml_error(e);
                }
            }
            None
        }
    }
}

/// Reads a file, turning an I/O error into a diagnostic.
pub(super) fn read(path: &Path) -> Result<String, Diagnostic> {
    std::fs::read_to_string(path).map_err(|e| Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        col: 0,
        message: format!("cannot read: {e}"),
    })
}

/// Loads `path` and every zone in its `zones_dir`.
pub(super) fn load(path: &Path) -> Result<Config, Diagnostics> {
    let text = read(path).map_err(|d| Diagnostics(vec![d]))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut src = Source::new(path, &text);
    let Some(raw) = parse_toml::<RawConfig>(&mut src, &text) else {
        return Err(Diagnostics(src.errors));
    };
    let mut warnings = Vec::new();
    let cfg = build(&mut src, raw, &dir, &mut warnings);
    let mut errors = std::mem::take(&mut src.errors);
    let Some(mut cfg) = cfg else {
        return Err(Diagnostics(errors));
    };
    match super::zone::load_dir(
        &cfg.server.zones_dir,
        &cfg.services,
        &cfg.tsig,
        cfg.server.probe_source,
        &cfg.server.state_dir,
    ) {
        Ok(zones) => cfg.zones = zones,
        Err(mut zone_errors) => errors.append(&mut zone_errors.0),
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    cfg.warnings = warnings;
    cfg.warnings.extend(zone_warnings(&cfg));
    cfg.warnings
        .extend(probe_source_warning(cfg.server.probe_source));
    Ok(cfg)
}

fn zone_warnings(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for z in &cfg.zones {
        if z.soa.minimum > 60 && !z.dynamic.is_empty() {
            out.push(format!(
                "zone {}: negative TTL (SOA minimum) is {} s; resolvers may cache a missing name that long (60 s or less suits failover)",
                z.origin, z.soa.minimum
            ));
        }
    }
    let now = chrono::Utc::now();
    for m in &cfg.maintenance {
        let until = (m.start.with_timezone(&chrono::Utc) - now).num_seconds();
        if until <= 0 {
            continue;
        }
        for z in &cfg.zones {
            for d in &z.dynamic {
                let redirects = d.answers.iter().any(|a| m.services.contains(&a.if_up));
                // The longest TTL a cache may hold on the way to this name.
                let chain_ttl = z
                    .records
                    .iter()
                    .filter(|r| z.cname_leads_to(&r.name).is_some_and(|t| t.name == d.name))
                    .map(|r| r.ttl)
                    .max()
                    .unwrap_or(0)
                    .max(d.ttl);
                if redirects && until < i64::from(chain_ttl) {
                    out.push(format!(
                        "maintenance of {} starts in {until} s, sooner than the {chain_ttl} s TTL on the way to {}: some caches will switch late",
                        m.services.join(", "),
                        d.name
                    ));
                }
            }
        }
    }
    let dynamic = cfg.zones.iter().map(|z| z.dynamic.len()).sum::<usize>();
    if dynamic > 0 && cfg.guard.canaries.is_empty() {
        out.push(
            "no [guard] canaries: an outage of detour's own network would look like every service failing and redirect everything".into(),
        );
    }
    out
}

/// A warning when `probe_source` is not an address of this host now (binding it fails): every
/// probe would fail. Not an error: the config may be checked on another machine, and an
/// address may come later (a VIP that moves here, IPv6 duplicate address detection at boot).
fn probe_source_warning(source: Option<IpAddr>) -> Option<String> {
    let ip = source?;
    let e = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).err()?;
    let e = e.to_string();
    // "Cannot assign requested address (os error 99)": the number says nothing more.
    let e = e.split(" (os error").next().unwrap_or(&e);
    Some(format!(
        "probe_source {ip} is not an address of this host now (cannot bind probe source {ip}: {e}): every probe fails until it is, which freezes states if every [guard] canary fails and otherwise takes every checked service down"
    ))
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn build(
    src: &mut Source<'_>,
    raw: RawConfig,
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Option<Config> {
    let before = src.errors.len();
    let server = server(src, raw.server, dir);
    let probe_source = server.as_ref().and_then(|s| s.probe_source);
    let admin = Admin {
        token_file: resolve(
            dir,
            raw.admin
                .token_file
                .as_deref()
                .unwrap_or("state/admin.token"),
        ),
    };
    let defaults = timing(src, &raw.check_defaults, &default_timing());
    let page = page(src, raw.page, dir);

    let ids: BTreeSet<String> = raw.services.keys().map(|k| k.get_ref().clone()).collect();
    let mut services = BTreeMap::new();
    for (id, rs) in raw.services {
        if !valid_id(id.get_ref()) {
            src.error(
                id.span(),
                format!(
                    "invalid service id {:?}: expected letters, digits, '_' or '-'",
                    id.get_ref()
                ),
            );
        }
        if let Some(s) = service(src, id.get_ref(), rs, &ids, &defaults, probe_source, dir) {
            if s.checks.is_empty() {
                warnings.push(format!(
                    "service {} has no check: it counts as up unless an operator says otherwise",
                    s.id
                ));
            }
            services.insert(id.into_inner(), s);
        }
    }
    dependency_cycles(src, &services);

    let mut maintenance = Vec::new();
    for m in raw.maintenance {
        let span = m.span();
        let m = m.into_inner();
        for s in &m.services {
            known_service(src, s, &ids, "maintenance window");
        }
        let start = time(src, &m.start);
        let end = time(src, &m.end);
        if let (Some(start), Some(end)) = (start, end) {
            if end <= start {
                src.error(m.end.span(), "maintenance `end` must be after `start`");
            }
            maintenance.push(Maintenance {
                services: m.services.into_iter().map(Spanned::into_inner).collect(),
                start,
                end,
                message: m.message,
            });
        } else if m.services.is_empty() {
            src.error(span, "maintenance window names no services");
        }
    }

    let mut canaries = Vec::new();
    for c in &raw.guard.canaries {
        let place = Place {
            source: probe_source,
            dir,
            canary: true,
        };
        if let Some(c) = check(src, c, &defaults, &place) {
            canaries.push(c);
        }
    }

    let written = raw.oncall.is_some();
    let oncall = raw
        .oncall
        .and_then(|o| comms::oncall(src, o, page.timezone));
    let rota = match (&oncall, written) {
        (Some(o), _) => comms::Rota::Valid(o),
        (None, true) => comms::Rota::Invalid,
        (None, false) => comms::Rota::Absent,
    };
    let mut notify = Vec::new();
    for n in raw.notify {
        if let Some(n) = notify_sink(src, n, &ids, dir, rota) {
            notify.push(n);
        }
    }

    let subscribers = raw
        .subscribers
        .and_then(|r| comms::subscribers(src, r, &notify));

    let mut tsig: Vec<crate::proto::tsig::Key> = Vec::new();
    let mut raw_keys: Vec<_> = raw.tsig.into_iter().collect();
    raw_keys.sort_by_key(|(name, _)| name.span().start); // in file order
    for (name, key) in raw_keys {
        if let Some(k) = tsig_key(src, &name, key, dir) {
            // `xfr`, `XFR` and `"xfr."` are one name: which secret would win is a guess.
            if tsig.iter().any(|t| t.name() == k.name()) {
                src.error(
                    name.span(),
                    format!(
                        "TSIG key {} is defined twice (names ignore case and the final dot)",
                        k.name()
                    ),
                );
            } else {
                if k.secret_len() < k.mac_len() {
                    warnings.push(format!(
                        "TSIG key {}: its {}-byte secret is shorter than the {}-byte MAC of {} (RFC 8945 §6 asks for at least as long; `openssl rand -base64 {}` makes one)",
                        k.name(),
                        k.secret_len(),
                        k.mac_len(),
                        k.algorithm(),
                        k.mac_len()
                    ));
                }
                tsig.push(k);
            }
        }
    }

    let cluster = raw.cluster.and_then(|c| cluster(src, c, dir));
    let history = history(src, raw.history);
    let views = rehearsal::views(src, raw.views);
    let safety = rehearsal::safety(src, raw.safety, &ids);
    let console_settings = console::console(src, raw.console, dir, page.tls.as_ref());
    let incident_templates = console::templates(src, raw.incident_templates, &ids);
    if cluster.is_none() {
        for s in services.values().filter(|s| s.quorum.is_some()) {
            warnings.push(format!(
                "service {} sets a quorum, which only counts in a [cluster]",
                s.id
            ));
        }
    }

    if src.errors.len() > before {
        return None;
    }
    Some(Config {
        path: src.path().to_path_buf(),
        server: server?,
        admin,
        page,
        services,
        maintenance,
        guard: Guard { canaries },
        notify,
        tsig,
        zones: Vec::new(),
        cluster,
        oncall,
        subscribers,
        history,
        views,
        safety,
        console: console_settings,
        incident_templates,
        warnings: Vec::new(),
    })
}

/// `[history]`: `keep` at least a day (the status page's bars are days), `detail` at least
/// an hour and no longer than `keep`.
fn history(src: &mut Source<'_>, raw: RawHistory) -> History {
    let d = History::default();
    let keep = match raw.keep {
        Some(k) if k.get_ref().0 < Duration::from_secs(86_400) => {
            src.error(
                k.span(),
                "[history] keep must be at least \"1d\" (the page shows days; \"400d\" keeps 13 months)",
            );
            d.keep
        }
        Some(k) => k.into_inner().0,
        None => d.keep,
    };
    let detail = match raw.detail {
        Some(x) if x.get_ref().0 < Duration::from_secs(3600) || x.get_ref().0 > keep => {
            src.error(
                x.span(),
                "[history] detail must be between \"1h\" and `keep` (per-minute probe summaries are kept this long, then only daily ones)",
            );
            d.detail.min(keep)
        }
        Some(x) => x.into_inner().0,
        None => d.detail.min(keep),
    };
    History {
        enabled: raw.enabled.unwrap_or(true),
        keep,
        detail,
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) struct TimingFields<'a> {
    interval: Option<&'a Spanned<Dur>>,
    timeout: Option<&'a Spanned<Dur>>,
    confirm_interval: Option<&'a Spanned<Dur>>,
    down_interval: Option<&'a Spanned<Dur>>,
    rise: Option<&'a Spanned<u32>>,
    fall: Option<&'a Spanned<u32>>,
}

/// `a, b, c` for messages; `(none defined)` when empty.
pub(super) fn list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = items.map(String::as_str).collect();
    if v.is_empty() {
        "(none defined)".into()
    } else {
        v.join(", ")
    }
}

/// Splits "host:port" (host may be a bracketed IPv6 address); None when malformed.
pub(super) fn host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse().ok()?;
    (!host.is_empty() && !host.contains(' ')).then_some((host, port))
}

/// A fully qualified, lowercase name from config text.
pub(super) fn fqdn(src: &mut Source<'_>, s: &Spanned<String>) -> Option<Name> {
    match Name::from_str(s.get_ref()) {
        Ok(mut n) => {
            n.set_fqdn(true);
            Some(n.to_lowercase())
        }
        Err(e) => {
            src.error(
                s.span(),
                format!("invalid domain name {:?}: {e}", s.get_ref()),
            );
            None
        }
    }
}

pub(super) fn record_type(src: &mut Source<'_>, s: &Spanned<String>) -> Option<RecordType> {
    match RecordType::from_str(&s.get_ref().to_ascii_uppercase()) {
        Ok(t) => Some(t),
        Err(_) => {
            src.error(s.span(), format!("unknown record type {:?}", s.get_ref()));
            None
        }
    }
}

/// The few settings a client command needs: where the admin API is and its token file.
/// Read leniently (other keys ignored) so that `detour reload` can reach a daemon even when
/// the files it is about to reload are broken.
pub(super) fn client_settings(path: &Path) -> Result<ClientSettings, Diagnostics> {
    #[derive(serde::Deserialize, Default)]
    struct View {
        #[serde(default)]
        server: ViewServer,
        #[serde(default)]
        admin: RawAdmin,
        #[serde(default)]
        page: ViewPage,
    }
    #[derive(serde::Deserialize, Default)]
    struct ViewPage {
        timezone: Option<String>,
    }
    #[derive(serde::Deserialize, Default)]
    struct ViewServer {
        admin_listen: Option<Spanned<String>>,
    }
    #[derive(serde::Deserialize, Default)]
    struct RawAdmin {
        token_file: Option<String>,
    }
    let text = read(path).map_err(|d| Diagnostics(vec![d]))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut src = Source::new(path, &text);
    let Some(v) = parse_toml::<View>(&mut src, &text) else {
        return Err(Diagnostics(src.errors));
    };
    let admin_listen = match v.server.admin_listen {
        None => AdminListen::Tcp("127.0.0.1:8053".parse().expect("default parses")),
        Some(s) => match s.get_ref().strip_prefix("unix:") {
            Some(p) if !p.is_empty() => AdminListen::Unix(resolve(&dir, p)),
            _ => match addr(&mut src, &s, "admin_listen") {
                Some(a) => AdminListen::Tcp(a),
                None => return Err(Diagnostics(src.errors)),
            },
        },
    };
    Ok(ClientSettings {
        admin_listen,
        token_file: resolve(
            &dir,
            v.admin.token_file.as_deref().unwrap_or("state/admin.token"),
        ),
        timezone: v.page.timezone.and_then(|z| z.parse().ok()),
    })
}
