//! Checks and their timing: `[check_defaults]`, each service's `check`/`checks`, canaries and
//! `check_each`, with the rules on which keys each check type takes.

use super::*;

/// Timing when `[check_defaults]` says nothing.
pub(super) fn default_timing() -> Timing {
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
pub(super) fn default_confirm(interval: Duration) -> Duration {
    (interval / 4).max(Duration::from_millis(250)).min(interval)
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
pub(in crate::config) fn timing<'a>(
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

/// Fields that only some check types take, with the types that take them.
pub(super) const HTTP_ONLY: &[&str] = &[
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

pub(super) fn present(raw: &RawCheck) -> Vec<(&'static str, std::ops::Range<usize>)> {
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

/// An error at `span` when `target`, written as a literal address, is of the other family
/// than `probe_source`: every probe of it would fail.
fn literal_family(
    src: &mut Source<'_>,
    source: Option<IpAddr>,
    target: IpAddr,
    span: std::ops::Range<usize>,
) {
    if let Some(why) = source.and_then(|s| crate::config::cross_family(s, target)) {
        src.error(
            span,
            format!("{why}: probes leave from probe_source, so a target written as an address must be of its family"),
        );
    }
}

/// Validates one probe definition; `source` is `[server] probe_source`, which a target
/// written as an address must match in family.
pub(super) fn check(
    src: &mut Source<'_>,
    raw: &Spanned<RawCheck>,
    defaults: &Timing,
    source: Option<IpAddr>,
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
            if let Some(u) = &r.url
                && let Some(url) = &url
            {
                match url.host() {
                    Some(url::Host::Ipv4(ip)) => literal_family(src, source, ip.into(), u.span()),
                    Some(url::Host::Ipv6(ip)) => literal_family(src, source, ip.into(), u.span()),
                    _ => {}
                }
            }
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
                if let Some((host, _)) = host_port(a.get_ref())
                    && let Ok(ip) = host.parse::<IpAddr>()
                {
                    literal_family(src, source, ip, a.span());
                }
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
                let server = match s.get_ref().parse::<std::net::IpAddr>() {
                    Ok(ip) => Some(SocketAddr::new(ip, 53)),
                    Err(_) => addr(src, s, "dns check server"),
                };
                if let Some(server) = server {
                    literal_family(src, source, server.ip(), s.span());
                }
                server
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
