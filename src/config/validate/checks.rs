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
        degraded_after: None,
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
        degraded_after: None,
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
    "degraded_after",
];

/// The check types, for messages.
const TYPES: &str = "\"http\", \"tcp\", \"dns\", \"journey\", \"statuspage\" or \"heartbeat\"";

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
        values,
        degraded_after,
        password_file,
        steps,
        component,
        period,
        grace,
        interval,
        timeout,
        confirm_interval,
        down_interval,
        rise,
        fall
    );
    v
}

/// The timing keys every type but `heartbeat` takes.
const TIMING: &[&str] = &[
    "interval",
    "timeout",
    "confirm_interval",
    "down_interval",
    "rise",
    "fall",
];

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

/// Where a check is written, for the rules that depend on it.
pub(super) struct Place<'a> {
    /// `[server] probe_source`: a target written as an address must match its family.
    pub source: Option<IpAddr>,
    /// The config file's folder: `password_file` is relative to it.
    pub dir: &'a Path,
    /// A `[guard]` canary (not a service's check).
    pub canary: bool,
}

/// An http(s) URL from config text, or an error at its span.
fn http_url(src: &mut Source<'_>, u: &Spanned<String>, what: &str) -> Option<url::Url> {
    match url::Url::parse(u.get_ref()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
        _ => {
            src.error(
                u.span(),
                format!(
                    "invalid {what} {:?}: expected an http:// or https:// URL",
                    u.get_ref()
                ),
            );
            None
        }
    }
}

/// The family rule for a URL whose host is written as an address.
fn url_family(src: &mut Source<'_>, source: Option<IpAddr>, url: &url::Url, span: Range) {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => literal_family(src, source, ip.into(), span),
        Some(url::Host::Ipv6(ip)) => literal_family(src, source, ip.into(), span),
        _ => {}
    }
}

type Range = std::ops::Range<usize>;

/// `expect_status` as written, checked to hold status codes.
fn statuses(src: &mut Source<'_>, s: &Option<Spanned<Vec<u16>>>) -> Vec<u16> {
    s.as_ref()
        .map(|s| {
            if s.get_ref().iter().any(|c| !(100..=599).contains(c)) {
                src.error(s.span(), "expect_status holds HTTP status codes (100-599)");
            }
            s.get_ref().clone()
        })
        .unwrap_or_default()
}

/// A regular expression from config text, or an error at its span naming `what`.
fn pattern(src: &mut Source<'_>, re: &Spanned<String>, what: &str) -> Option<Pattern> {
    match regex::Regex::new(re.get_ref()) {
        Ok(x) => Some(Pattern(x)),
        Err(e) => {
            src.error(re.span(), format!("invalid {what}: {e}"));
            None
        }
    }
}

/// An HTTP method: a word such as GET.
fn method(src: &mut Source<'_>, m: &Option<Spanned<String>>) -> String {
    if let Some(m) = m
        && !m.get_ref().chars().all(|c| c.is_ascii_alphabetic())
    {
        src.error(
            m.span(),
            "invalid HTTP method: expected a word such as GET or HEAD",
        );
    }
    m.as_ref()
        .map_or("GET".to_string(), |m| m.get_ref().to_ascii_uppercase())
}

/// Timing of journey and statuspage checks when the check sets none: a minute apart and 10
/// s patient. A sign-in every 5 s would open a session every 5 s, and vendors' status pages
/// are cached for about a minute; `[check_defaults]` still gives rise, fall and the paces.
fn slow_base(defaults: &Timing) -> Timing {
    let interval = Duration::from_secs(60);
    Timing {
        interval,
        timeout: Duration::from_secs(10),
        confirm_interval: default_confirm(interval),
        ..*defaults
    }
}

/// Validates one probe definition (see [`Place`] for where it is written).
pub(super) fn check(
    src: &mut Source<'_>,
    raw: &Spanned<RawCheck>,
    defaults: &Timing,
    place: &Place<'_>,
) -> Option<Check> {
    let source = place.source;
    let before = src.errors.len();
    let span = raw.span();
    let r = raw.get_ref();
    let Some(kind) = &r.kind else {
        src.error(span, format!("check has no `type`: expected {TYPES}"));
        return None;
    };
    let base = match kind.get_ref().as_str() {
        "journey" | "statuspage" => slow_base(defaults),
        _ => *defaults,
    };
    let mut timing = Timing {
        watch: r.watch.as_ref().is_some_and(|w| *w.get_ref()),
        ..timing(src, r, &base)
    };
    let only = |extra: &[&'static str]| -> Vec<&'static str> {
        TIMING.iter().chain(extra).copied().collect()
    };
    let allowed: Vec<&str> = match kind.get_ref().as_str() {
        "http" => only(HTTP_ONLY),
        "tcp" => only(&["address", "send", "expect", "watch", "degraded_after"]),
        "dns" => only(&["name", "server", "record_type", "values", "degraded_after"]),
        "journey" => only(&["steps", "password_file", "tls_verify", "degraded_after"]),
        "statuspage" => only(&["url", "component", "tls_verify"]),
        "heartbeat" => vec!["period", "grace"],
        other => {
            src.error(
                kind.span(),
                format!("unknown check type {other:?}: expected {TYPES}"),
            );
            return None;
        }
    };
    for (field, fspan) in present(r) {
        if !allowed.contains(&field) {
            let why = if kind.get_ref() == "heartbeat" && TIMING.contains(&field) {
                " (a heartbeat's verdict follows `period` and `grace`)".to_string()
            } else {
                String::new()
            };
            src.error(
                fspan,
                format!(
                    "`{field}` does not apply to {} checks{why} (it takes: {})",
                    kind.get_ref(),
                    allowed.join(", ")
                ),
            );
        }
    }
    if let Some(d) = &r.degraded_after {
        let after = d.get_ref().0;
        if place.canary {
            src.error(
                d.span(),
                "`degraded_after` does not apply to [guard] canaries: a canary only passes or fails",
            );
        } else if after.is_zero() || after >= timing.timeout {
            src.error(
                d.span(),
                format!(
                    "degraded_after ({}) must be more than 0s and less than the timeout ({}): a probe never takes longer than its timeout",
                    duration::display(after),
                    duration::display(timing.timeout)
                ),
            );
        } else if let Some(max) = &r.max_response_time
            && after >= max.get_ref().0
        {
            src.error(
                d.span(),
                format!(
                    "degraded_after ({}) must be less than max_response_time ({}): slower than that already fails",
                    duration::display(after),
                    duration::display(max.get_ref().0)
                ),
            );
        }
        timing.degraded_after = Some(after);
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
            let url = r.url.as_ref().and_then(|u| http_url(src, u, "check url"));
            if let (Some(u), Some(url)) = (&r.url, &url) {
                url_family(src, source, url, u.span());
            }
            let method = method(src, &r.method);
            let expect_status = statuses(src, &r.expect_status);
            let body_regex = r
                .body_regex
                .as_ref()
                .and_then(|re| pattern(src, re, "body_regex"));
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
        "dns" => {
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
        "journey" => journey(src, r, span.clone(), place),
        "statuspage" => {
            required(src, &r.url, "url");
            required(src, &r.component, "component");
            let url = r
                .url
                .as_ref()
                .and_then(|u| http_url(src, u, "statuspage url"));
            if let (Some(u), Some(url)) = (&r.url, &url) {
                url_family(src, source, url, u.span());
            }
            if let Some(c) = &r.component
                && c.get_ref().trim().is_empty()
            {
                src.error(c.span(), "component must name a component (or give its id)");
            }
            match (url, &r.component) {
                (Some(url), Some(c)) => Some(CheckKind::Statuspage(StatuspageCheck {
                    url,
                    component: c.get_ref().trim().to_string(),
                    tls_verify: r.tls_verify.as_ref().is_none_or(|b| *b.get_ref()),
                })),
                _ => None,
            }
        }
        _ => heartbeat(src, r, span.clone(), place),
    };
    if src.errors.len() > before {
        return None;
    }
    kind.map(|kind| Check { kind, timing })
}

/// A heartbeat check: `period` (required, at least 1 s) and `grace` (default: a fifth of
/// the period, at least 30 s); not a canary.
fn heartbeat(
    src: &mut Source<'_>,
    r: &RawCheck,
    span: Range,
    place: &Place<'_>,
) -> Option<CheckKind> {
    if place.canary {
        src.error(
            span.clone(),
            "a heartbeat cannot be a [guard] canary: a canary is something detour reaches out to, a heartbeat comes to detour",
        );
    }
    let Some(period) = &r.period else {
        src.error(
            span,
            "heartbeat check needs `period`: how often the job calls (e.g. \"5m\")",
        );
        return None;
    };
    let p = period.get_ref().0;
    if p < Duration::from_secs(1) {
        src.error(period.span(), "period must be at least 1s");
    }
    let grace = match &r.grace {
        Some(g) => g.get_ref().0,
        None => (p / 5).max(Duration::from_secs(30)),
    };
    Some(CheckKind::Heartbeat(HeartbeatCheck { period: p, grace }))
}

/// Variable names: letters, digits and '_'.
fn valid_var(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `{name}` placeholders (`{{` and `}}` are braces); every name must be in `known`
/// (`{password}` needs `password_file`). Errors at `span`.
fn template(
    src: &mut Source<'_>,
    text: &str,
    span: Range,
    known: &BTreeSet<String>,
    has_password: bool,
) -> Option<Template> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = text.chars().peekable();
    let mut ok = true;
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed || !valid_var(&name) {
                    src.error(
                        span.clone(),
                        format!(
                            "invalid placeholder in {text:?}: expected {{name}} with letters, digits or '_' (write {{{{ and }}}} for braces)"
                        ),
                    );
                    ok = false;
                    break;
                }
                if name == "password" && !has_password {
                    src.error(
                        span.clone(),
                        "{password} needs `password_file` on the journey check",
                    );
                    ok = false;
                } else if name != "password" && !known.contains(&name) {
                    src.error(
                        span.clone(),
                        format!(
                            "{{{name}}} is not captured by an earlier step (captured so far: {})",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                list(known.iter())
                            }
                        ),
                    );
                    ok = false;
                }
                if !lit.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Var(name));
            }
            '}' => {
                src.error(
                    span.clone(),
                    format!("unmatched '}}' in {text:?} (write }}}} for a brace)"),
                );
                ok = false;
                break;
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        pieces.push(Piece::Text(lit));
    }
    ok.then_some(Template(pieces))
}

/// The placeholders of every string in a JSON body, checked like [`template`]'s.
fn json_templates(
    src: &mut Source<'_>,
    v: &serde_json::Value,
    span: Range,
    known: &BTreeSet<String>,
    has_password: bool,
) {
    match v {
        serde_json::Value::String(s) => {
            template(src, s, span, known, has_password);
        }
        serde_json::Value::Array(a) => {
            for x in a {
                json_templates(src, x, span.clone(), known, has_password);
            }
        }
        serde_json::Value::Object(o) => {
            for x in o.values() {
                json_templates(src, x, span.clone(), known, has_password);
            }
        }
        _ => {}
    }
}

/// A journey check: its steps, their placeholders (each defined by `password_file` or an
/// earlier step's capture), captures, bodies; the password read from its file now.
fn journey(
    src: &mut Source<'_>,
    r: &RawCheck,
    span: Range,
    place: &Place<'_>,
) -> Option<CheckKind> {
    let password = match &r.password_file {
        None => None,
        Some(f) => match std::fs::read_to_string(resolve(place.dir, f.get_ref())) {
            Ok(p) => {
                let p = p.lines().next().unwrap_or("").to_string();
                if p.is_empty() {
                    src.error(
                        f.span(),
                        format!(
                            "password_file {:?} is empty: its first line is the password",
                            f.get_ref()
                        ),
                    );
                }
                Some(Secret(p))
            }
            Err(e) => {
                src.error(
                    f.span(),
                    format!("cannot read password_file {:?}: {e}", f.get_ref()),
                );
                None
            }
        },
    };
    let has_password = r.password_file.is_some();
    let Some(raw_steps) = &r.steps else {
        src.error(
            span,
            "journey check needs `steps = [ { method = \"GET\", url = \"...\" }, ... ]`",
        );
        return None;
    };
    if raw_steps.get_ref().is_empty() {
        src.error(raw_steps.span(), "a journey needs at least one step");
    }
    let mut known: BTreeSet<String> = BTreeSet::new();
    let mut steps = Vec::new();
    let mut uses_password = false;
    for rs in raw_steps.get_ref() {
        let s = rs.get_ref();
        let url = template(src, s.url.get_ref(), s.url.span(), &known, has_password);
        if let Some(t) = &url {
            uses_password |= t.vars().any(|v| v == "password");
            // A URL that starts with a placeholder (a captured redirect) is checked when used.
            if let Some(Piece::Text(t0)) = t.0.first() {
                let literal = t0.to_string();
                if t.0.len() == 1 {
                    if let Some(u) = http_url(src, &s.url, "step url") {
                        url_family(src, place.source, &u, s.url.span());
                    }
                } else if !(literal.starts_with("http://") || literal.starts_with("https://")) {
                    src.error(
                        s.url.span(),
                        format!(
                            "invalid step url {:?}: expected an http:// or https:// URL, or one placeholder holding one",
                            s.url.get_ref()
                        ),
                    );
                }
            }
        }
        let method = method(src, &s.method);
        let mut headers = Vec::new();
        if let Some(h) = &s.headers {
            for (name, value) in h.get_ref() {
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    src.error(h.span(), format!("invalid header name {name:?}"));
                }
                if let Some(t) = template(src, value.get_ref(), value.span(), &known, has_password)
                {
                    uses_password |= t.vars().any(|v| v == "password");
                    headers.push((name.clone(), t));
                }
            }
        }
        let body = match (&s.form, &s.json) {
            (Some(f), Some(_)) => {
                src.error(f.span(), "a step sends `form` or `json`, not both");
                None
            }
            (Some(f), None) => {
                let mut fields = Vec::new();
                for (name, value) in f.get_ref() {
                    if let Some(t) =
                        template(src, value.get_ref(), value.span(), &known, has_password)
                    {
                        uses_password |= t.vars().any(|v| v == "password");
                        fields.push((name.clone(), t));
                    }
                }
                Some(StepBody::Form(fields))
            }
            (None, Some(j)) => match serde_json::to_value(j.get_ref()) {
                Ok(v) => {
                    json_templates(src, &v, j.span(), &known, has_password);
                    uses_password |= v.to_string().contains("{password}");
                    Some(StepBody::Json(v))
                }
                Err(e) => {
                    src.error(j.span(), format!("json body cannot be sent as JSON: {e}"));
                    None
                }
            },
            (None, None) => None,
        };
        let expect_status = statuses(src, &s.expect_status);
        let body_regex = s
            .body_regex
            .as_ref()
            .and_then(|re| pattern(src, re, "body_regex"));
        let mut capture = Vec::new();
        for (name, c) in s.capture.iter().flatten() {
            let n = name.get_ref();
            if !valid_var(n) {
                src.error(
                    name.span(),
                    format!("invalid capture name {n:?}: expected letters, digits or '_'"),
                );
            } else if n == "password" {
                src.error(
                    name.span(),
                    "`password` is password_file's: capture another name",
                );
            }
            let c = c.get_ref();
            let regex = c.regex.as_ref().and_then(|re| {
                let p = pattern(src, re, "capture regex")?;
                if p.0.captures_len() > 2 {
                    src.error(
                        re.span(),
                        "a capture regex has at most one group: its value (or the whole match without one)",
                    );
                }
                Some(p)
            });
            if let Some(h) = &c.header
                && reqwest::header::HeaderName::from_bytes(h.get_ref().as_bytes()).is_err()
            {
                src.error(h.span(), format!("invalid header name {:?}", h.get_ref()));
            }
            if c.regex.is_none() && c.header.is_none() {
                src.error(
                    name.span(),
                    "a capture needs `regex` (over the body) or `header` (optionally with `regex`)",
                );
            }
            capture.push(Capture {
                name: n.clone(),
                header: c.header.as_ref().map(|h| h.get_ref().clone()),
                regex,
            });
        }
        for c in &capture {
            known.insert(c.name.clone());
        }
        if let Some(url) = url {
            steps.push(JourneyStep {
                method,
                url,
                headers,
                body,
                expect_status,
                body_contains: s.body_contains.as_ref().map(|b| b.get_ref().clone()),
                body_regex,
                capture,
                follow_redirects: s.follow_redirects.unwrap_or(false),
            });
        }
    }
    if let Some(f) = &r.password_file
        && !uses_password
    {
        src.error(
            f.span(),
            "password_file is read but no step uses {password}",
        );
    }
    Some(CheckKind::Journey(JourneyCheck {
        steps,
        password,
        tls_verify: r.tls_verify.as_ref().is_none_or(|b| *b.get_ref()),
    }))
}
