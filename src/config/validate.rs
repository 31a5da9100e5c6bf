//! Checks a parsed `detour.toml` and turns it into [`Config`]; collects every problem it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
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
    match super::zone::load_dir(&cfg.server.zones_dir, &cfg.services, &cfg.tsig) {
        Ok(zones) => cfg.zones = zones,
        Err(mut zone_errors) => errors.append(&mut zone_errors.0),
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    cfg.warnings = warnings;
    cfg.warnings.extend(zone_warnings(&cfg));
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

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn addr(src: &mut Source<'_>, s: &Spanned<String>, what: &str) -> Option<SocketAddr> {
    match SocketAddr::from_str(s.get_ref()) {
        Ok(a) => Some(a),
        Err(_) => {
            src.error(
                s.span(),
                format!(
                    "invalid {what} {:?}: expected an IP address and port such as \"127.0.0.1:5353\" or \"[::1]:5353\"",
                    s.get_ref()
                ),
            );
            None
        }
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
        if let Some(s) = service(src, id.get_ref(), rs, &ids, &defaults) {
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
        if let Some(c) = check(src, c, &defaults) {
            canaries.push(c);
        }
    }

    let mut notify = Vec::new();
    for n in raw.notify {
        if let Some(n) = notify_sink(src, n, &ids) {
            notify.push(n);
        }
    }

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
        warnings: Vec::new(),
    })
}

/// `[tsig.<name>]`: the name must be a domain name, the secret base64, given exactly once
/// (inline or in a file beside the config), and the algorithm one detour can compute.
fn tsig_key(
    src: &mut Source<'_>,
    name: &Spanned<String>,
    raw: RawTsigKey,
    dir: &Path,
) -> Option<crate::proto::tsig::Key> {
    use base64::Engine as _;
    let owner = match Name::from_ascii(name.get_ref()) {
        Ok(mut n) if !name.get_ref().is_empty() && !n.is_root() => {
            n.set_fqdn(true);
            n.to_lowercase()
        }
        _ => {
            src.error(
                name.span(),
                format!(
                    "invalid TSIG key name {:?}: expected a domain name such as \"xfr-key\" or \"xfr.example.test\"",
                    name.get_ref()
                ),
            );
            return None;
        }
    };
    let (text, at) = match (&raw.secret, &raw.secret_file) {
        (Some(s), None) => (s.get_ref().clone(), s.span()),
        (None, Some(f)) => match std::fs::read_to_string(resolve(dir, f.get_ref())) {
            Ok(t) => (t, f.span()),
            Err(e) => {
                src.error(
                    f.span(),
                    format!("cannot read TSIG secret_file {:?}: {e}", f.get_ref()),
                );
                return None;
            }
        },
        _ => {
            src.error(
                name.span(),
                "a TSIG key needs exactly one of `secret` (base64) or `secret_file` (a file holding it)",
            );
            return None;
        }
    };
    let secret = match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
        Ok(s) if !s.is_empty() => s,
        _ => {
            src.error(
                at,
                "the TSIG secret is not base64 (what tsig-keygen, keymgr or `openssl rand -base64 32` print)",
            );
            return None;
        }
    };
    let (alg, alg_at) = match &raw.algorithm {
        Some(a) => (a.get_ref().to_ascii_lowercase(), a.span()),
        None => ("hmac-sha256".to_string(), name.span()),
    };
    match crate::proto::tsig::Key::new(owner, &alg, secret) {
        Ok(k) => Some(k),
        Err(e) => {
            src.error(alg_at, e);
            None
        }
    }
}

/// A URL people may be sent to from the page: no `javascript:` or `data:` links.
fn linkable(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https" | "mailto" | "tel"))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn server(src: &mut Source<'_>, raw: RawServer, dir: &Path) -> Option<Server> {
    let mut ok = true;
    let mut addrs = |src: &mut Source<'_>,
                     list: Option<Vec<Spanned<String>>>,
                     default: &str,
                     what| {
        match list {
            None => vec![default.parse().expect("default address parses")],
            Some(list) => list
                .iter()
                .filter_map(|s| {
                    let a = addr(src, s, what);
                    ok &= a.is_some();
                    a
                })
                .collect(),
        }
    };
    let dns_listen = addrs(src, raw.dns_listen, "127.0.0.1:5353", "dns_listen address");
    let page_listen = addrs(
        src,
        raw.page_listen,
        "127.0.0.1:8080",
        "page_listen address",
    );
    let admin_listen = match raw.admin_listen {
        None => AdminListen::Tcp("127.0.0.1:8053".parse().expect("default parses")),
        Some(s) => match s.get_ref().strip_prefix("unix:") {
            Some(p) if !p.is_empty() => {
                let path = resolve(dir, p);
                if let Some(kind) = not_a_socket(&path) {
                    src.error(
                        s.span(),
                        format!(
                            "admin_listen: {} exists and is {kind}, not a socket; detour replaces only a socket left by an earlier run",
                            path.display()
                        ),
                    );
                }
                AdminListen::Unix(path)
            }
            _ => match addr(src, &s, "admin_listen") {
                Some(a) => AdminListen::Tcp(a),
                None => {
                    ok = false;
                    AdminListen::Tcp("127.0.0.1:8053".parse().expect("default parses"))
                }
            },
        },
    };
    let tcp_idle_timeout = raw.tcp_idle_timeout.map_or(Duration::from_secs(5), |d| {
        if d.get_ref().0 < Duration::from_millis(100) {
            src.error(d.span(), "tcp_idle_timeout must be at least 100ms");
            ok = false;
        }
        d.into_inner().0
    });
    let tcp_max_connections = raw.tcp_max_connections.map_or(256, |n| {
        if *n.get_ref() == 0 {
            src.error(n.span(), "tcp_max_connections must be at least 1");
            ok = false;
        }
        *n.get_ref() as usize
    });
    let udp_max_payload = raw.udp_max_payload.map_or(1232, |n| {
        if *n.get_ref() < 512 {
            src.error(n.span(), "udp_max_payload must be at least 512 (RFC 1035)");
            ok = false;
        }
        *n.get_ref()
    });
    let udp_workers = raw.udp_workers.map_or(0, |n| *n.get_ref() as usize);
    let mut count = |n: Option<Spanned<u32>>, default: usize, key: &str| {
        n.map_or(default, |n| {
            if *n.get_ref() == 0 {
                src.error(n.span(), format!("{key} must be at least 1"));
                ok = false;
            }
            *n.get_ref() as usize
        })
    };
    let max_connections = count(raw.http_max_connections, 512, "http_max_connections");
    let max_per_source = count(raw.http_max_per_source, 64, "http_max_per_source");
    let mut timeout = |d: Option<Spanned<Dur>>, default: u64, key: &str| {
        d.map_or(Duration::from_secs(default), |d| {
            if d.get_ref().0 < Duration::from_millis(100) {
                src.error(d.span(), format!("{key} must be at least 100ms"));
                ok = false;
            }
            d.into_inner().0
        })
    };
    let http = crate::config::HttpLimits {
        max_connections,
        max_per_source,
        header_timeout: timeout(raw.http_header_timeout, 10, "http_header_timeout"),
        idle_timeout: timeout(raw.http_idle_timeout, 30, "http_idle_timeout"),
    };
    // The secret is checked even with cookies off, so that turning them on finds no typo.
    let secret = raw.cookie_secret.map(|hex| {
        crate::proto::cookie::Secret::from_hex(hex.get_ref()).map_err(|e| {
            src.error(hex.span(), format!("cookie_secret: {e}"));
            ok = false;
        })
    });
    let cookies = match (raw.cookies.unwrap_or(true), secret) {
        (false, _) | (true, Some(Err(()))) => None,
        (true, Some(Ok(s))) => Some(s),
        (true, None) => crate::proto::cookie::Secret::process().cloned(),
    };
    ok.then(|| Server {
        dns_listen,
        page_listen,
        admin_listen,
        state_dir: resolve(dir, raw.state_dir.as_deref().unwrap_or("state")),
        zones_dir: resolve(dir, raw.zones_dir.as_deref().unwrap_or("zones")),
        tcp_idle_timeout,
        tcp_max_connections,
        udp_max_payload,
        udp_workers,
        cookies,
        http,
    })
}

fn page(src: &mut Source<'_>, raw: RawPage, dir: &Path) -> Page {
    let mut links = Vec::new();
    for l in raw.links {
        let l = l.into_inner();
        if !linkable(l.url.get_ref()) {
            src.error(
                l.url.span(),
                format!(
                    "invalid link URL {:?}: expected an absolute http, https, mailto or tel URL",
                    l.url.get_ref()
                ),
            );
        }
        links.push(Link {
            label: l.label,
            url: l.url.into_inner(),
        });
    }
    if let Some(t) = &raw.tls {
        if t.certs.is_empty() {
            src.error_nowhere("[page.tls] needs at least one certificate in `certs`");
        }
        for c in &t.certs {
            for f in [&c.get_ref().cert, &c.get_ref().key] {
                let p = resolve(dir, f);
                if !p.is_file() {
                    src.error(
                        c.span(),
                        format!("[page.tls] file {} does not exist", p.display()),
                    );
                }
            }
        }
    }
    let tls = raw.tls.map(|t| PageTls {
        listen: t
            .listen
            .iter()
            .filter_map(|s| addr(src, s, "page TLS listen address"))
            .collect(),
        certs: t
            .certs
            .into_iter()
            .map(|c| {
                let c = c.into_inner();
                (resolve(dir, &c.cert), resolve(dir, &c.key))
            })
            .collect(),
    });
    let timezone = raw.timezone.and_then(|z| match z.get_ref().parse::<chrono_tz::Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            src.error(
                z.span(),
                format!(
                    "unknown time zone {:?}: expected an IANA name such as \"America/New_York\", \"Europe/London\" or \"UTC\"",
                    z.get_ref()
                ),
            );
            None
        }
    });
    Page {
        timezone,
        title: raw.title.unwrap_or_else(|| "System status".into()),
        contact: raw.contact.unwrap_or_default(),
        logo: raw.logo.map(|l| resolve(dir, l.get_ref())),
        links,
        tls,
    }
}

/// Timing when `[check_defaults]` says nothing.
fn default_timing() -> Timing {
    Timing {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
        confirm_interval: Duration::from_millis(1250),
        down_interval: None,
        rise: 2,
        fall: 2,
        watch: false,
    }
}

/// The confirm pace when none is given: interval / 4, at least 250 ms.
fn default_confirm(interval: Duration) -> Duration {
    (interval / 4).max(Duration::from_millis(250)).min(interval)
}

pub(super) struct TimingFields<'a> {
    interval: Option<&'a Spanned<Dur>>,
    timeout: Option<&'a Spanned<Dur>>,
    confirm_interval: Option<&'a Spanned<Dur>>,
    down_interval: Option<&'a Spanned<Dur>>,
    rise: Option<&'a Spanned<u32>>,
    fall: Option<&'a Spanned<u32>>,
}

impl<'a> From<&'a RawCheckDefaults> for TimingFields<'a> {
    fn from(r: &'a RawCheckDefaults) -> Self {
        Self {
            interval: r.interval.as_ref(),
            timeout: r.timeout.as_ref(),
            confirm_interval: r.confirm_interval.as_ref(),
            down_interval: r.down_interval.as_ref(),
            rise: r.rise.as_ref(),
            fall: r.fall.as_ref(),
        }
    }
}

impl<'a> From<&'a RawCheck> for TimingFields<'a> {
    fn from(r: &'a RawCheck) -> Self {
        Self {
            interval: r.interval.as_ref(),
            timeout: r.timeout.as_ref(),
            confirm_interval: r.confirm_interval.as_ref(),
            down_interval: r.down_interval.as_ref(),
            rise: r.rise.as_ref(),
            fall: r.fall.as_ref(),
        }
    }
}

impl<'a> From<&'a RawCheckEach> for TimingFields<'a> {
    fn from(r: &'a RawCheckEach) -> Self {
        Self {
            interval: r.interval.as_ref(),
            timeout: r.timeout.as_ref(),
            confirm_interval: r.confirm_interval.as_ref(),
            down_interval: r.down_interval.as_ref(),
            rise: r.rise.as_ref(),
            fall: r.fall.as_ref(),
        }
    }
}

/// Timing from explicit fields, falling back to `base`; checks the values make sense.
pub(super) fn timing<'a>(
    src: &mut Source<'_>,
    raw: impl Into<TimingFields<'a>>,
    base: &Timing,
) -> Timing {
    let raw = raw.into();
    let interval = raw.interval.map_or(base.interval, |d| d.get_ref().0);
    let timeout = raw.timeout.map_or(base.timeout, |d| d.get_ref().0);
    let confirm_interval = match raw.confirm_interval {
        Some(d) => d.get_ref().0,
        None if raw.interval.is_some() => default_confirm(interval),
        None => base.confirm_interval.min(interval),
    };
    let down_interval = raw
        .down_interval
        .map(|d| d.get_ref().0)
        .or(base.down_interval);
    let rise = raw.rise.map_or(base.rise, |n| *n.get_ref());
    let fall = raw.fall.map_or(base.fall, |n| *n.get_ref());
    if let Some(d) = raw.interval
        && interval < Duration::from_millis(100)
    {
        src.error(d.span(), "interval must be at least 100ms");
    }
    if let Some(d) = raw.timeout {
        if timeout.is_zero() {
            src.error(d.span(), "timeout must be more than 0s");
        } else if timeout > interval {
            src.error(
                d.span(),
                format!(
                    "timeout ({}) must not exceed the interval ({})",
                    duration::display(timeout),
                    duration::display(interval)
                ),
            );
        }
    }
    if let Some(d) = raw.confirm_interval
        && (confirm_interval < Duration::from_millis(50) || confirm_interval > interval)
    {
        src.error(
            d.span(),
            "confirm_interval must be between 50ms and the interval",
        );
    }
    if let Some(d) = raw.down_interval
        && let Some(down) = down_interval
        && (down < Duration::from_millis(50) || down > Duration::from_secs(3600))
    {
        src.error(d.span(), "down_interval must be between 50ms and 1h");
    }
    for (n, what) in [(raw.rise, "rise"), (raw.fall, "fall")] {
        if let Some(n) = n
            && *n.get_ref() == 0
        {
            src.error(n.span(), format!("{what} must be at least 1"));
        }
    }
    Timing {
        interval,
        timeout,
        confirm_interval,
        down_interval,
        rise,
        fall,
        watch: false,
    }
}

fn known_service(src: &mut Source<'_>, s: &Spanned<String>, ids: &BTreeSet<String>, ctx: &str) {
    if !ids.contains(s.get_ref()) {
        src.error(
            s.span(),
            format!(
                "unknown service {:?} in {ctx}: expected one of {}",
                s.get_ref(),
                list(ids.iter())
            ),
        );
    }
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

fn service(
    src: &mut Source<'_>,
    id: &str,
    raw: RawService,
    ids: &BTreeSet<String>,
    defaults: &Timing,
) -> Option<Service> {
    let before = src.errors.len();
    for d in &raw.depends_on {
        known_service(src, d, ids, "depends_on");
        if d.get_ref() == id {
            src.error(d.span(), format!("service {id} cannot depend on itself"));
        }
    }
    if let Some(u) = &raw.url
        && !linkable(u.get_ref())
    {
        src.error(
            u.span(),
            format!(
                "invalid url {:?}: expected an absolute http, https, mailto or tel URL",
                u.get_ref()
            ),
        );
    }
    let mut raws: Vec<&Spanned<RawCheck>> = Vec::new();
    match (&raw.check, &raw.checks) {
        (Some(c), Some(_)) => src.error(
            c.span(),
            format!("service {id} sets both `check` and `checks`: use one"),
        ),
        (Some(c), None) => raws.push(c),
        (None, Some(cs)) => raws.extend(cs.iter()),
        (None, None) => {}
    }
    let checks: Vec<Check> = raws
        .into_iter()
        .filter_map(|c| check(src, c, defaults))
        .collect();
    let healthy_when = match &raw.healthy_when {
        None => HealthyWhen::All,
        Some(h) => match h.get_ref() {
            RawHealthyWhen::Word(w) if w == "all" => HealthyWhen::All,
            RawHealthyWhen::Word(w) if w == "any" => HealthyWhen::Any,
            RawHealthyWhen::AtLeast { at_least } => {
                if *at_least == 0 || *at_least as usize > checks.len() {
                    src.error(
                        h.span(),
                        format!(
                            "healthy_when.at_least must be between 1 and the number of checks ({})",
                            checks.len()
                        ),
                    );
                }
                HealthyWhen::AtLeast(*at_least)
            }
            RawHealthyWhen::Word(_) => {
                src.error(
                    h.span(),
                    "invalid healthy_when: expected \"all\", \"any\" or { at_least = N }",
                );
                HealthyWhen::All
            }
        },
    };
    (src.errors.len() == before).then(|| Service {
        id: id.to_string(),
        name: raw.name.unwrap_or_else(|| id.to_string()),
        url: raw.url.map(Spanned::into_inner),
        description: raw.description,
        depends_on: raw
            .depends_on
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        checks,
        healthy_when,
    })
}

/// Reports every dependency cycle once (at the service whose table starts it).
fn dependency_cycles(src: &mut Source<'_>, services: &BTreeMap<String, Service>) {
    // Depth-first search with colours; a grey node reached again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        White,
        Grey,
        Black,
    }
    fn visit(
        id: &str,
        services: &BTreeMap<String, Service>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        marks.insert(id.to_string(), Mark::Grey);
        path.push(id.to_string());
        if let Some(s) = services.get(id) {
            for d in &s.depends_on {
                match marks.get(d).copied().unwrap_or(Mark::White) {
                    Mark::Grey => {
                        let start = path.iter().position(|p| p == d).unwrap_or(0);
                        let mut cycle = path[start..].to_vec();
                        cycle.push(d.clone());
                        cycles.push(cycle);
                    }
                    Mark::White if services.contains_key(d) => {
                        visit(d, services, marks, path, cycles)
                    }
                    _ => {}
                }
            }
        }
        path.pop();
        marks.insert(id.to_string(), Mark::Black);
    }
    let mut marks = BTreeMap::new();
    let mut cycles = Vec::new();
    for id in services.keys() {
        if marks.get(id).copied().unwrap_or(Mark::White) == Mark::White {
            visit(id, services, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    for c in cycles {
        src.error_nowhere(format!("dependency cycle: {}", c.join(" -> ")));
    }
}

fn time(src: &mut Source<'_>, s: &Spanned<String>) -> Option<DateTime<FixedOffset>> {
    match DateTime::parse_from_rfc3339(s.get_ref()) {
        Ok(t) => Some(t),
        Err(e) => {
            src.error(
                s.span(),
                format!(
                    "invalid time {:?} ({e}): expected RFC 3339 with an offset, such as \"2026-12-24T22:00:00-05:00\"",
                    s.get_ref()
                ),
            );
            None
        }
    }
}

/// Fields that only some check types take, with the types that take them.
const HTTP_ONLY: &[&str] = &[
    "url",
    "method",
    "expect_status",
    "body_contains",
    "body_regex",
    "headers",
    "max_response_time",
    "tls_verify",
    "tls_min_validity",
    "follow_redirects",
    "watch",
];

fn present(raw: &RawCheck) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let mut v = Vec::new();
    macro_rules! p {
        ($($f:ident),*) => { $( if let Some(x) = &raw.$f { v.push((stringify!($f), x.span())); } )* };
    }
    p!(
        url,
        method,
        expect_status,
        body_contains,
        body_regex,
        headers,
        max_response_time,
        tls_verify,
        tls_min_validity,
        follow_redirects,
        watch,
        address,
        send,
        expect,
        name,
        server,
        record_type,
        values
    );
    v
}

/// Validates one probe definition.
pub(super) fn check(
    src: &mut Source<'_>,
    raw: &Spanned<RawCheck>,
    defaults: &Timing,
) -> Option<Check> {
    let before = src.errors.len();
    let span = raw.span();
    let r = raw.get_ref();
    let timing = Timing {
        watch: r.watch.as_ref().is_some_and(|w| *w.get_ref()),
        ..timing(src, r, defaults)
    };
    let Some(kind) = &r.kind else {
        src.error(
            span,
            "check has no `type`: expected \"http\", \"tcp\" or \"dns\"",
        );
        return None;
    };
    let allowed: &[&str] = match kind.get_ref().as_str() {
        "http" => HTTP_ONLY,
        "tcp" => &["address", "send", "expect", "watch"],
        "dns" => &["name", "server", "record_type", "values"],
        other => {
            src.error(
                kind.span(),
                format!("unknown check type {other:?}: expected \"http\", \"tcp\" or \"dns\""),
            );
            return None;
        }
    };
    for (field, fspan) in present(r) {
        if !allowed.contains(&field) {
            src.error(
                fspan,
                format!(
                    "`{field}` does not apply to {} checks (it takes: {})",
                    kind.get_ref(),
                    allowed.join(", ")
                ),
            );
        }
    }
    let required = |src: &mut Source<'_>, f: &Option<Spanned<String>>, name: &str| {
        if f.is_none() {
            src.error(
                span.clone(),
                format!("{} check needs `{name}`", kind.get_ref()),
            );
        }
    };
    let kind = match kind.get_ref().as_str() {
        "http" => {
            required(src, &r.url, "url");
            let url = r
                .url
                .as_ref()
                .and_then(|u| match url::Url::parse(u.get_ref()) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                    _ => {
                        src.error(
                            u.span(),
                            format!(
                                "invalid check url {:?}: expected an http:// or https:// URL",
                                u.get_ref()
                            ),
                        );
                        None
                    }
                });
            let method = r
                .method
                .as_ref()
                .map_or("GET".to_string(), |m| m.get_ref().to_ascii_uppercase());
            if let Some(m) = &r.method
                && !m.get_ref().chars().all(|c| c.is_ascii_alphabetic())
            {
                src.error(
                    m.span(),
                    "invalid HTTP method: expected a word such as GET or HEAD",
                );
            }
            let expect_status = r
                .expect_status
                .as_ref()
                .map(|s| {
                    if s.get_ref().iter().any(|c| !(100..=599).contains(c)) {
                        src.error(s.span(), "expect_status holds HTTP status codes (100-599)");
                    }
                    s.get_ref().clone()
                })
                .unwrap_or_default();
            let body_regex =
                r.body_regex
                    .as_ref()
                    .and_then(|re| match regex::Regex::new(re.get_ref()) {
                        Ok(x) => Some(Pattern(x)),
                        Err(e) => {
                            src.error(re.span(), format!("invalid body_regex: {e}"));
                            None
                        }
                    });
            url.map(|url| {
                CheckKind::Http(HttpCheck {
                    url,
                    method,
                    expect_status,
                    body_contains: r.body_contains.as_ref().map(|s| s.get_ref().clone()),
                    body_regex,
                    headers: r
                        .headers
                        .as_ref()
                        .map(|h| h.get_ref().clone())
                        .unwrap_or_default(),
                    max_response_time: r.max_response_time.as_ref().map(|d| d.get_ref().0),
                    tls_verify: r.tls_verify.as_ref().is_none_or(|b| *b.get_ref()),
                    tls_min_validity: r.tls_min_validity.as_ref().map(|d| d.get_ref().0),
                    follow_redirects: r.follow_redirects.as_ref().is_some_and(|b| *b.get_ref()),
                })
            })
        }
        "tcp" => {
            required(src, &r.address, "address");
            r.address.as_ref().and_then(|a| {
                if host_port(a.get_ref()).is_none() {
                    src.error(
                        a.span(),
                        format!(
                            "invalid tcp address {:?}: expected host:port such as \"127.0.0.1:9003\"",
                            a.get_ref()
                        ),
                    );
                    return None;
                }
                Some(CheckKind::Tcp(TcpCheck {
                    address: a.get_ref().clone(),
                    send: r.send.as_ref().map(|s| s.get_ref().clone()),
                    expect: r.expect.as_ref().map(|s| s.get_ref().clone()),
                }))
            })
        }
        _ => {
            required(src, &r.name, "name");
            required(src, &r.server, "server");
            let name = r.name.as_ref().and_then(|n| fqdn(src, n));
            let server = r.server.as_ref().and_then(|s| {
                // A bare IP means port 53.
                match s.get_ref().parse::<std::net::IpAddr>() {
                    Ok(ip) => Some(SocketAddr::new(ip, 53)),
                    Err(_) => addr(src, s, "dns check server"),
                }
            });
            let record_type = match &r.record_type {
                None => Some(RecordType::A),
                Some(t) => record_type(src, t),
            };
            match (name, server, record_type) {
                (Some(name), Some(server), Some(record_type)) => Some(CheckKind::Dns(DnsCheck {
                    name,
                    server,
                    record_type,
                    values: r
                        .values
                        .as_ref()
                        .map(|v| v.get_ref().clone())
                        .unwrap_or_default(),
                })),
                _ => None,
            }
        }
    };
    if src.errors.len() > before {
        return None;
    }
    kind.map(|kind| Check { kind, timing })
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

/// Event kinds a sink may ask for.
const EVENTS: &[&str] = &[
    "down",
    "up",
    "impacted",
    "maintenance",
    "override",
    "incident",
    "guard",
];

fn notify_sink(
    src: &mut Source<'_>,
    raw: Spanned<RawNotify>,
    ids: &BTreeSet<String>,
) -> Option<Notify> {
    let before = src.errors.len();
    let span = raw.span();
    let r = raw.into_inner();
    let events: Vec<String> = match &r.events {
        None => EVENTS.iter().map(|s| s.to_string()).collect(),
        Some(list) => list
            .iter()
            .map(|e| {
                if !EVENTS.contains(&e.get_ref().as_str()) {
                    src.error(
                        e.span(),
                        format!(
                            "unknown event {:?}: expected one of {}",
                            e.get_ref(),
                            EVENTS.join(", ")
                        ),
                    );
                }
                e.get_ref().clone()
            })
            .collect(),
    };
    for s in r.services.iter().flatten() {
        known_service(src, s, ids, "notify services");
    }
    let sink = match r.kind.get_ref().as_str() {
        "webhook" => {
            if r.command.is_some() {
                src.error(span.clone(), "`command` applies to exec sinks, not webhook");
            }
            let format = r
                .format
                .as_ref()
                .map_or("json".to_string(), |f| f.get_ref().clone());
            if let Some(f) = &r.format
                && !matches!(f.get_ref().as_str(), "json" | "slack")
            {
                src.error(f.span(), "invalid format: expected \"json\" or \"slack\"");
            }
            match &r.url {
                None => {
                    src.error(span, "webhook sink needs `url`");
                    None
                }
                Some(u) => match url::Url::parse(u.get_ref()) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Some(Sink::Webhook {
                        url,
                        headers: r.headers.clone().unwrap_or_default(),
                        format,
                    }),
                    _ => {
                        src.error(
                            u.span(),
                            format!(
                                "invalid webhook url {:?}: expected an http:// or https:// URL",
                                u.get_ref()
                            ),
                        );
                        None
                    }
                },
            }
        }
        "exec" => {
            for (f, present) in [
                ("url", r.url.is_some()),
                ("headers", r.headers.is_some()),
                ("format", r.format.is_some()),
            ] {
                if present {
                    src.error(
                        span.clone(),
                        format!("`{f}` applies to webhook sinks, not exec"),
                    );
                }
            }
            match &r.command {
                Some(c) if !c.get_ref().is_empty() => Some(Sink::Exec {
                    command: c.get_ref().clone(),
                }),
                Some(c) => {
                    src.error(c.span(), "exec `command` must name a program");
                    None
                }
                None => {
                    src.error(
                        span,
                        "exec sink needs `command = [\"program\", \"arg\", ...]`",
                    );
                    None
                }
            }
        }
        other => {
            src.error(
                r.kind.span(),
                format!("unknown notify type {other:?}: expected \"webhook\" or \"exec\""),
            );
            None
        }
    };
    let attempts = r.attempts.as_ref().map_or(5, |a| *a.get_ref());
    if let Some(a) = &r.attempts
        && *a.get_ref() == 0
    {
        src.error(a.span(), "attempts must be at least 1");
    }
    if src.errors.len() > before {
        return None;
    }
    Some(Notify {
        sink: sink?,
        events,
        services: r
            .services
            .unwrap_or_default()
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        timeout: r.timeout.map_or(Duration::from_secs(5), |d| d.0),
        attempts,
        max_delay: r.max_delay.map_or(Duration::from_secs(300), |d| d.0),
    })
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

/// What stands at `path` if it exists and is not a unix socket ("a regular file", "a
/// folder"): the admin socket must never replace it.
fn not_a_socket(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::symlink_metadata(path).ok()?.file_type();
    if t.is_socket() {
        None
    } else if t.is_dir() {
        Some("a folder")
    } else if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_file() {
        Some("a regular file")
    } else {
        Some("a special file")
    }
}
