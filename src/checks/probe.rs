//! Single probes: HTTP, TCP, DNS and per-address checks, each bounded by a timeout.
//!
//! Every probe runs inside one `tokio::time::timeout`: connect, TLS, headers and body
//! together never take longer than the check's `timeout`, whatever the other side does
//! (never answers, drips the body, stalls the handshake). At the deadline the probe's future
//! is dropped, which closes its connection; the result is "timed out after 400ms".
//!
//! - HTTP: redirects are not followed unless `follow_redirects`; with no `expect_status`,
//!   200-399 passes; at most 64 KiB of the body is read and body checks see only that;
//!   `max_response_time` is compared with the whole probe's time, body included. The status
//!   is judged first, then the certificate (`tls_min_validity`), the body, the time.
//! - TCP: connect; then `send`, then read until `expect` is seen, 64 KiB were read, the peer
//!   closes, or time is up (a wrong reply is reported as "expected 'X', got 'Y'").
//! - DNS: one query, no cache, no retries, to the configured server only.
//!
//! With `[server] probe_source`, every probe leaves from that address: HTTP clients bind it
//! (`local_address`) and resolve names to its family only, TCP sockets bind it before
//! connecting, the resolver's sockets bind it. A target of the other family fails with a
//! reason ("IPv6 address ::1 cannot be probed from probe_source 127.0.0.3 (IPv4)"), never
//! leaves from another address; so does a redirect to one. An address that is not on this
//! host fails every probe with "cannot bind probe source 192.0.2.10: Cannot assign requested
//! address", logged at most once a minute.
//!
//! HTTP probes share a handful of `reqwest::Client`s: one per `(tls_verify,
//! follow_redirects)`, plus one per `(host, address)` for `check_each` over HTTPS, whose SNI
//! must name the record while the connection goes to one given address. None keeps idle
//! connections and none uses a proxy, so every probe really connects to its target.
//! Reasons are one short line for people: "HTTP 502 (expected 200)", "connect refused",
//! "TLS: invalid peer certificate: UnknownIssuer", "DNS: NXDOMAIN".

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use hickory_resolver::Resolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::Name;
use reqwest::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{Grade, Observation};
use crate::config::duration::display;
use crate::config::{CheckEachKind, CheckKind, DnsCheck, HttpCheck, TcpCheck, cross_family};

/// At most this much of a response body (or of a TCP reply) is read.
const READ_LIMIT: usize = 64 * 1024;
/// Redirects followed when `follow_redirects` is on.
const MAX_REDIRECTS: usize = 10;
/// Bound on the per-address client cache; past it the cache starts over.
const PINNED_CLIENTS_MAX: usize = 4096;
/// Longest piece of foreign text (body needle, TCP reply, error) quoted in a reason.
const QUOTE_MAX: usize = 80;

/// What a probe body returns: `Ok(reason)` passes, `Err(reason)` fails.
type Outcome = Result<String, String>;

/// What a probe body that grades its pass returns: `Ok((grade, reason))` passes.
pub(super) type Graded = Result<(Grade, String), String>;

/// Runs probes; holds the shared HTTP clients. Cheap to clone (Arc inside) and shared by every check task.
#[derive(Clone, Debug, Default)]
pub struct Prober {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `[server] probe_source`: the address every probe leaves from, if set.
    source: Option<IpAddr>,
    /// Clients for configured checks, by `(tls_verify, follow_redirects)`.
    shared: Mutex<HashMap<(bool, bool), reqwest::Client>>,
    /// Clients for `check_each` over HTTPS, by `(host, address)`: the host resolves to the
    /// address, so the request carries the host as SNI and Host while reaching that address.
    pinned: Mutex<HashMap<(String, SocketAddr), reqwest::Client>>,
}

/// One HTTP request to make and judge.
struct HttpSpec<'a> {
    url: url::Url,
    method: &'a str,
    headers: HeaderMap,
    expect_status: &'a [u16],
    body_contains: Option<&'a str>,
    body_regex: Option<&'a regex::Regex>,
    max_response_time: Option<Duration>,
    tls_min_validity: Option<Duration>,
}

impl Prober {
    /// A prober with no clients yet; they are built on first use.
    pub fn new() -> Prober {
        Prober::default()
    }

    /// A prober whose probes all leave from `source` (`[server] probe_source`); `None` lets
    /// the system choose, as [`Prober::new`] does.
    pub fn with_source(source: Option<IpAddr>) -> Prober {
        Prober {
            inner: Arc::new(Inner {
                source,
                ..Inner::default()
            }),
        }
    }

    /// The address probes leave from, if one is set.
    pub fn source(&self) -> Option<IpAddr> {
        self.inner.source
    }

    /// A TCP connection to `address` ("host:port"), from the probe source when one is set;
    /// `Err` is a reason for people. Not bounded in time: callers bound it.
    pub async fn connect(&self, address: &str) -> Result<TcpStream, String> {
        connect(self.inner.source, address).await
    }

    /// One probe of a configured check, bounded by `timeout` as a whole (connect, TLS, headers, body).
    pub async fn check(&self, kind: &CheckKind, timeout: Duration) -> Observation {
        match kind {
            CheckKind::Http(h) => bounded(timeout, self.http_check(h)).await,
            CheckKind::Tcp(t) => {
                // The reply wait ends just before the probe's own deadline, so that a wrong
                // reply is reported as such rather than as a bare timeout.
                let deadline =
                    tokio::time::Instant::now() + timeout.saturating_sub(Duration::from_millis(1));
                bounded(timeout, tcp_probe(self.inner.source, t, deadline, timeout)).await
            }
            CheckKind::Dns(d) => bounded(timeout, dns_probe(self.inner.source, d, timeout)).await,
            CheckKind::Journey(j) => super::journey::probe(self.inner.source, j, timeout).await,
            CheckKind::Statuspage(s) => {
                let client = match self.shared_client(s.tls_verify, false) {
                    Ok(c) => c,
                    Err(why) => return Observation::fail(Duration::ZERO, why),
                };
                let probe = super::vendor::probe(client, s, self.inner.source);
                bounded_graded(timeout, probe, |late| late).await
            }
            // Nothing to probe: its task waits for the job's calls (`super::heartbeat`), and
            // `runner::run` never hands it here. Said plainly should that ever change.
            CheckKind::Heartbeat(_) => Observation::fail(
                Duration::ZERO,
                "a heartbeat check is not probed: it waits for POST /api/v1/heartbeat/{check}",
            ),
        }
    }

    /// One probe of one address of a `check_each` dynamic record (`record` is its owner name, the default Host header / SNI).
    pub async fn address(
        &self,
        kind: &CheckEachKind,
        ip: IpAddr,
        port: u16,
        record: &Name,
        timeout: Duration,
    ) -> Observation {
        let addr = SocketAddr::new(ip, port);
        if let Some(why) = self.inner.source.and_then(|s| cross_family(s, ip)) {
            return Observation::fail(Duration::ZERO, why);
        }
        match kind {
            CheckEachKind::Tcp => bounded(timeout, tcp_connect(self.inner.source, addr)).await,
            CheckEachKind::Http {
                scheme,
                path,
                host,
                expect_status,
                body_contains,
            } => {
                let host = match host {
                    Some(h) => h.trim_end_matches('.').to_string(),
                    None => record.to_ascii().trim_end_matches('.').to_string(),
                };
                let probe = self.http_address(
                    scheme,
                    path,
                    &host,
                    addr,
                    expect_status,
                    body_contains.as_deref(),
                );
                bounded(timeout, probe).await
            }
        }
    }

    async fn http_check(&self, h: &HttpCheck) -> Outcome {
        if let Some(why) = url_cross_family(self.inner.source, &h.url) {
            return Err(why);
        }
        let client = self.shared_client(h.tls_verify, h.follow_redirects)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &h.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name '{}'", quote(name)))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("invalid value for header '{name}'"))?;
            headers.append(name, value);
        }
        let spec = HttpSpec {
            url: h.url.clone(),
            method: &h.method,
            headers,
            expect_status: &h.expect_status,
            body_contains: h.body_contains.as_deref(),
            body_regex: h.body_regex.as_ref().map(|p| &p.0),
            max_response_time: h.max_response_time,
            tls_min_validity: h.tls_min_validity,
        };
        http_probe(&client, spec, self.inner.source).await
    }

    async fn http_address(
        &self,
        scheme: &str,
        path: &str,
        host: &str,
        addr: SocketAddr,
        expect_status: &[u16],
        body_contains: Option<&str>,
    ) -> Outcome {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        // The name to put in the URL for SNI: the host without any port, when it is a name.
        let sni_host = host_without_port(host);
        let pin = scheme.eq_ignore_ascii_case("https")
            && !sni_host.is_empty()
            && sni_host.parse::<IpAddr>().is_err();
        let (client, authority) = if pin {
            let authority = format!("{sni_host}:{}", addr.port());
            (self.pinned_client(sni_host, addr)?, authority)
        } else {
            (self.shared_client(true, false)?, addr.to_string())
        };
        let url = url::Url::parse(&format!("{scheme}://{authority}{path}"))
            .map_err(|e| format!("invalid URL {scheme}://{authority}{path}: {e}"))?;
        let mut headers = HeaderMap::new();
        if !host.is_empty() {
            let value = HeaderValue::from_str(host)
                .map_err(|_| format!("invalid Host header '{}'", quote(host)))?;
            headers.insert(HOST, value);
        }
        let spec = HttpSpec {
            url,
            method: "GET",
            headers,
            expect_status,
            body_contains,
            body_regex: None,
            max_response_time: None,
            tls_min_validity: None,
        };
        http_probe(&client, spec, self.inner.source).await
    }

    fn shared_client(
        &self,
        tls_verify: bool,
        follow_redirects: bool,
    ) -> Result<reqwest::Client, String> {
        let mut clients = self
            .inner
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&(tls_verify, follow_redirects)) {
            return Ok(c.clone());
        }
        let source = self.inner.source;
        let builder = || {
            client_builder(source)
                .redirect(redirect_policy(follow_redirects, source))
                .tls_danger_accept_invalid_certs(!tls_verify)
        };
        let client = match builder().build() {
            Ok(client) => client,
            // The usual cause is a system with no CA certificates at all. Plain HTTP must
            // still work; HTTPS then fails verification, which is the truth.
            Err(e) if tls_verify => {
                tracing::warn!(
                    "HTTP probes: no system trust store ({}); HTTPS checks with tls_verify will fail",
                    error_chain_reason(&e)
                );
                builder()
                    .tls_certs_only(Vec::new())
                    .build()
                    .map_err(|e| format!("HTTP client: {}", error_chain_reason(&e)))?
            }
            Err(e) => return Err(format!("HTTP client: {}", error_chain_reason(&e))),
        };
        clients.insert((tls_verify, follow_redirects), client.clone());
        Ok(client)
    }

    fn pinned_client(&self, host: &str, addr: SocketAddr) -> Result<reqwest::Client, String> {
        let key = (host.to_ascii_lowercase(), addr);
        let mut clients = self
            .inner
            .pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = client_builder(self.inner.source)
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&key.0, addr)
            .build()
            .map_err(|e| format!("HTTP client: {}", error_chain_reason(&e)))?;
        if clients.len() >= PINNED_CLIENTS_MAX {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Settings every probe client shares: no proxy, no idle connections, TLS details kept; with
/// a probe source, connections bind it and names resolve to its family only (the connector
/// would otherwise reach an address of the other family from an address of the system's
/// choosing).
pub(super) fn client_builder(source: Option<IpAddr>) -> reqwest::ClientBuilder {
    // Idempotent: fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .tcp_nodelay(true)
        .user_agent(concat!(
            "detour/",
            env!("CARGO_PKG_VERSION"),
            " (health check)"
        ));
    match source {
        None => builder,
        Some(ip) => builder
            .local_address(ip)
            .dns_resolver(Arc::new(SameFamily(ip))),
    }
}

/// Redirects: none, or up to [`MAX_REDIRECTS`]; with a probe source, never to an address of
/// the other family (the connector would reach it from another address).
pub(super) fn redirect_policy(follow: bool, source: Option<IpAddr>) -> reqwest::redirect::Policy {
    use reqwest::redirect::Policy;
    match (follow, source) {
        (false, _) => Policy::none(),
        (true, None) => Policy::limited(MAX_REDIRECTS),
        (true, Some(_)) => {
            let limited = Policy::limited(MAX_REDIRECTS);
            Policy::custom(
                move |attempt| match url_cross_family(source, attempt.url()) {
                    Some(why) => attempt.error(SourceError(why)),
                    None => limited.redirect(attempt),
                },
            )
        }
    }
}

/// Why `url` cannot be probed from `source`: its host is an address of the other family.
pub(super) fn url_cross_family(source: Option<IpAddr>, url: &url::Url) -> Option<String> {
    let target = match url.host()? {
        url::Host::Ipv4(a) => IpAddr::V4(a),
        url::Host::Ipv6(a) => IpAddr::V6(a),
        url::Host::Domain(_) => return None,
    };
    cross_family(source?, target)
}

/// A probe that cannot leave from the probe source; its text is the reason.
#[derive(Debug)]
struct SourceError(String);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for SourceError {}

/// Resolves names for HTTP probes as the system does (getaddrinfo), keeping only the
/// addresses of the probe source's family.
struct SameFamily(IpAddr);

impl reqwest::dns::Resolve for SameFamily {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let source = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = all.filter(|a| a.is_ipv4() == source.is_ipv4()).collect();
            if kept.is_empty() {
                return Err(Box::new(SourceError(no_address_of_family(source, &host))) as _);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// "no IPv6 address for mls.example.test (probe_source 2001:db8::10 is IPv6)".
fn no_address_of_family(source: IpAddr, host: &str) -> String {
    let family = if source.is_ipv4() { "IPv4" } else { "IPv6" };
    format!(
        "no {family} address for {} (probe_source {source} is {family})",
        quote(host)
    )
}

/// The reason for a probe that could not bind the probe source (usually: the address is not
/// on this host, "Cannot assign requested address"); said in the log at most once a minute
/// for all probes.
fn bind_failure(source: IpAddr, e: &io::Error) -> String {
    static SAID: crate::telemetry::Throttle =
        crate::telemetry::Throttle::new(Duration::from_secs(60));
    let reason = format!("cannot bind probe source {source}: {}", io_reason(e));
    if let Some(held) = SAID.allow() {
        tracing::error!(
            probe_source = %source,
            "{reason}: every probe fails until this address is on this host again ([server] \
             probe_source; {held} more such failures since the last line)"
        );
    }
    reason
}

tokio::task_local! {
    /// Set by [`io_reason`] when a probe met an error of detour's own making (out of
    /// descriptors, memory or buffers), wherever in the probe's layers that error surfaced.
    static OWN_FAULT: std::cell::Cell<bool>;
}

/// Errors that say detour, not the target, is short of something: out of file descriptors
/// (process or system), of memory, of socket buffers.
fn is_own_fault(e: &io::Error) -> bool {
    use rustix::io::Errno;
    e.raw_os_error().is_some_and(|n| {
        [Errno::MFILE, Errno::NFILE, Errno::NOMEM, Errno::NOBUFS]
            .iter()
            .any(|e| e.raw_os_error() == n)
    })
}

/// Runs `probe` under `timeout`, measuring latency; the deadline wins over anything the probe does.
async fn bounded(timeout: Duration, probe: impl Future<Output = Outcome>) -> Observation {
    let graded = async { probe.await.map(|r| (Grade::Normal, r)) };
    bounded_graded(timeout, graded, |_| timed_out(timeout)).await
}

/// [`bounded`] for a probe that grades its passes; `late` says why it timed out (given
/// [`timed_out`]'s words), for a probe that knows where it was (a journey's step).
pub(super) async fn bounded_graded(
    timeout: Duration,
    probe: impl Future<Output = Graded>,
    late: impl FnOnce(String) -> String,
) -> Observation {
    let start = Instant::now();
    let (result, own_fault) = OWN_FAULT
        .scope(std::cell::Cell::new(false), async {
            let r = tokio::time::timeout(timeout, probe).await;
            (r, OWN_FAULT.with(std::cell::Cell::get))
        })
        .await;
    let latency = start.elapsed();
    let mut o = match result {
        Ok(Ok((grade, reason))) => return Observation::graded(latency, grade, reason),
        Ok(Err(reason)) => Observation::fail(latency, reason),
        Err(_) => Observation::fail(latency, late(timed_out(timeout))),
    };
    o.own_fault = own_fault;
    o
}

pub(super) fn timed_out(timeout: Duration) -> String {
    format!("timed out after {}", display(timeout))
}

// ---------------------------------------------------------------------------------------------
// HTTP

async fn http_probe(
    client: &reqwest::Client,
    spec: HttpSpec<'_>,
    source: Option<IpAddr>,
) -> Outcome {
    let start = Instant::now();
    let method = if spec.method.trim().is_empty() {
        reqwest::Method::GET
    } else {
        reqwest::Method::from_bytes(spec.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("invalid method '{}'", quote(spec.method)))?
    };
    let mut response = client
        .request(method, spec.url)
        .headers(spec.headers)
        .send()
        .await
        .map_err(|e| http_error_reason(&e, source))?;

    let status = response.status().as_u16();
    // After redirects, the certificate that matters is the final server's.
    let is_https = response.url().scheme().eq_ignore_ascii_case("https");
    // Judge the certificate now, while the response still holds the connection's TLS details.
    let cert = match spec.tls_min_validity {
        Some(min) if is_https => {
            let der = response
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|info| info.peer_certificate());
            match der {
                Some(der) => cert_validity(der, min),
                None => Err("TLS: no peer certificate".to_string()),
            }
        }
        _ => Ok(()),
    };

    let mut body = Vec::new();
    while body.len() < READ_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(READ_LIMIT - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "HTTP {status}, body: {}",
                    http_error_reason(&e, source)
                ));
            }
        }
    }
    drop(response);
    let elapsed = start.elapsed();

    let status_ok = if spec.expect_status.is_empty() {
        (200..=399).contains(&status)
    } else {
        spec.expect_status.contains(&status)
    };
    if !status_ok {
        return Err(format!(
            "HTTP {status} (expected {})",
            expected_statuses(spec.expect_status)
        ));
    }
    cert?;
    if spec.body_contains.is_some() || spec.body_regex.is_some() {
        let text = String::from_utf8_lossy(&body);
        if let Some(needle) = spec.body_contains
            && !text.contains(needle)
        {
            return Err(format!("body lacks '{}'", quote(needle)));
        }
        if let Some(re) = spec.body_regex
            && !re.is_match(&text)
        {
            return Err(format!("body does not match /{}/", quote(re.as_str())));
        }
    }
    if let Some(max) = spec.max_response_time
        && elapsed > max
    {
        return Err(format!("slow: {} > {}", display_ms(elapsed), display(max)));
    }
    Ok(format!("HTTP {status}"))
}

pub(super) fn expected_statuses(expect: &[u16]) -> String {
    if expect.is_empty() {
        "200-399".to_string()
    } else {
        expect
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Milliseconds, always: "812ms", "1520ms" (a measured time, not a configured one).
fn display_ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Fails when the certificate's notAfter is sooner than now + `min`.
fn cert_validity(der: &[u8], min: Duration) -> Result<(), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("TLS: unreadable certificate: {}", quote(&e.to_string())))?;
    let left = cert.validity().not_after.timestamp() - Utc::now().timestamp();
    if left <= 0 {
        return Err("certificate expired".to_string());
    }
    let min = i64::try_from(min.as_secs()).unwrap_or(i64::MAX);
    if left < min {
        return Err(format!("certificate expires in {}", human_span(left)));
    }
    Ok(())
}

/// "3 days", "5 hours", "12 minutes", "40 seconds" (rounded to the nearest unit).
fn human_span(secs: i64) -> String {
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    let (n, unit) = if secs >= 2 * DAY - DAY / 2 {
        ((secs + DAY / 2) / DAY, "day")
    } else if secs >= 2 * HOUR - HOUR / 2 {
        ((secs + HOUR / 2) / HOUR, "hour")
    } else if secs >= 2 * MINUTE - MINUTE / 2 {
        ((secs + MINUTE / 2) / MINUTE, "minute")
    } else {
        (secs, "second")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// A short reason for a failed request: "connect refused", "TLS: invalid peer certificate: …";
/// with a probe `source`, "cannot bind probe source …" or why the target is out of its reach.
pub(super) fn http_error_reason(e: &reqwest::Error, source: Option<IpAddr>) -> String {
    let chain = error_chain(e);
    if let Some(s) = chain.iter().find_map(|e| e.downcast_ref::<SourceError>()) {
        return s.0.clone();
    }
    if let Some(source) = source
        && let Some(io) = chain
            .iter()
            .filter_map(|e| e.downcast_ref::<io::Error>())
            .find(|io| io.kind() == io::ErrorKind::AddrNotAvailable)
    {
        return bind_failure(source, io);
    }
    if e.is_redirect() {
        return "too many redirects".to_string();
    }
    if e.is_timeout() {
        return "timed out".to_string();
    }
    let reason = error_chain_reason(e);
    if e.is_connect() && !reason.starts_with("connect") && !reason.starts_with("TLS") {
        format!("connect: {reason}")
    } else {
        reason
    }
}

/// Walks an error's sources (including errors wrapped inside `io::Error`s) for the most
/// telling one: a TLS error, then an I/O error, then the innermost message.
pub(super) fn error_chain_reason(e: &(dyn StdError + 'static)) -> String {
    let chain = error_chain(e);
    if let Some(tls) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return format!("TLS: {}", tls_reason(tls));
    }
    if let Some(io) = chain.iter().find_map(|e| e.downcast_ref::<io::Error>())
        && io.get_ref().is_none()
    {
        return io_reason(io);
    }
    match chain.last() {
        Some(last) => quote(&last.to_string()),
        None => "unknown error".to_string(),
    }
}

/// An error and its sources, outermost first, including errors wrapped inside `io::Error`s
/// (at most 32).
fn error_chain<'a>(e: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut chain: Vec<&(dyn StdError + 'static)> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        if chain.len() >= 32 {
            break;
        }
        chain.push(err);
        next = match err.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            // `io::Error::source` skips the wrapped error itself; look at it directly.
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => err.source(),
        };
    }
    chain
}

/// rustls' message, short: certificate errors by their name ("invalid peer certificate:
/// UnknownIssuer", "… NotValidForName"), others up to their first clause.
fn tls_reason(e: &rustls::Error) -> String {
    if let rustls::Error::InvalidCertificate(ce) = e {
        let debug = format!("{ce:?}");
        let ident: String = debug
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        let ident = ident.strip_suffix("Context").unwrap_or(&ident);
        if !ident.is_empty() && ident != "Other" {
            return format!("invalid peer certificate: {ident}");
        }
    }
    let text = e.to_string();
    quote(text.split(';').next().unwrap_or(&text))
}

/// "connect refused", "connection reset", or the OS message without its error number; an
/// error of detour's own ([`is_own_fault`]) marks the probe as not counting.
fn io_reason(e: &io::Error) -> String {
    if is_own_fault(e) {
        // Outside a probe (a unit test) there is nothing to mark.
        let _ = OWN_FAULT.try_with(|f| f.set(true));
        return format!(
            "detour itself is short of resources: {}",
            quote(&e.to_string())
        );
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connect refused".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        io::ErrorKind::ConnectionAborted => "connection aborted".to_string(),
        io::ErrorKind::UnexpectedEof => "connection closed early".to_string(),
        _ => {
            let text = e.to_string();
            let text = match text.find(" (os error") {
                Some(i) => &text[..i],
                None => &text,
            };
            quote(text)
        }
    }
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        // "[::1]:443" or "[::1]"
        return host
            .split_once(']')
            .map(|(h, _)| h.trim_start_matches('['))
            .unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

// ---------------------------------------------------------------------------------------------
// TCP

/// A connection to `address` ("host:port", or anything `TcpStream::connect` takes), from
/// `source` when set: the name's addresses of that family are tried in turn, each from a
/// socket bound to `source` first.
async fn connect(source: Option<IpAddr>, address: &str) -> Result<TcpStream, String> {
    let Some(source) = source else {
        return TcpStream::connect(address).await.map_err(|e| io_reason(&e));
    };
    let all: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|e| io_reason(&e))?
        .collect();
    let mut last = None;
    for addr in all.iter().filter(|a| a.is_ipv4() == source.is_ipv4()) {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| io_reason(&e))?;
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| bind_failure(source, &e))?;
        match socket.connect(*addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    if let Some(e) = last {
        return Err(io_reason(&e));
    }
    if all.is_empty() {
        return Err("could not resolve to any address".to_string());
    }
    // Only addresses of the other family: say which, for a target written as an address.
    Err(match address.parse::<SocketAddr>() {
        Ok(a) => {
            cross_family(source, a.ip()).unwrap_or_else(|| no_address_of_family(source, address))
        }
        Err(_) => no_address_of_family(
            source,
            address.rsplit_once(':').map_or(address, |(host, _)| host),
        ),
    })
}

async fn tcp_connect(source: Option<IpAddr>, addr: SocketAddr) -> Outcome {
    connect(source, &addr.to_string()).await?;
    Ok("connected".to_string())
}

async fn tcp_probe(
    source: Option<IpAddr>,
    check: &TcpCheck,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Outcome {
    let mut stream = connect(source, check.address.as_str()).await?;
    if let Some(send) = &check.send {
        stream
            .write_all(send.as_bytes())
            .await
            .map_err(|e| format!("send: {}", io_reason(&e)))?;
    }
    let Some(expect) = check.expect.as_deref() else {
        return Ok("connected".to_string());
    };
    let wanted = expect.as_bytes();
    if wanted.is_empty() {
        return Ok("connected".to_string());
    }
    let mut got: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let room = READ_LIMIT.saturating_sub(got.len()).min(chunk.len());
        if room == 0 {
            break;
        }
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk[..room])).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) if got.is_empty() => return Err(format!("read: {}", io_reason(&e))),
            Ok(Err(_)) => break,
            // Out of time: say what came back, if anything did.
            Err(_) if got.is_empty() => return Err(timed_out(timeout)),
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        // Only the new bytes (plus an overlap) can complete a match.
        let from = got.len().saturating_sub(wanted.len() - 1);
        got.extend_from_slice(&chunk[..n]);
        if got[from..].windows(wanted.len()).any(|w| w == wanted) {
            return Ok(format!("got '{}'", quote(expect)));
        }
    }
    if got.is_empty() {
        Err(format!("expected '{}', got nothing", quote(expect)))
    } else {
        let text = String::from_utf8_lossy(&got);
        Err(format!(
            "expected '{}', got '{}'",
            quote(expect),
            quote(text.trim())
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// DNS

async fn dns_probe(source: Option<IpAddr>, check: &DnsCheck, timeout: Duration) -> Outcome {
    if let Some(why) = source.and_then(|s| cross_family(s, check.server.ip())) {
        return Err(why);
    }
    // Port 0: the resolver picks a random source port (RFC 6056) of the source address.
    let bind_addr = source.map(|ip| SocketAddr::new(ip, 0));
    let mut udp = ConnectionConfig::udp();
    udp.port = check.server.port();
    udp.bind_addr = bind_addr;
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = check.server.port();
    tcp.bind_addr = bind_addr;
    let server = NameServerConfig::new(check.server.ip(), true, vec![udp, tcp]);
    let config = ResolverConfig::from_name_servers(vec![server]);
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 1;
    opts.timeout = timeout;
    opts.recursion_desired = false;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| format!("DNS: resolver: {}", quote(&e.to_string())))?;

    let mut name = check.name.clone();
    name.set_fqdn(true);
    let rtype = check.record_type;
    let lookup = match resolver.lookup(name, rtype).await {
        Ok(lookup) => lookup,
        Err(e) => return Err(dns_error_reason(&e, rtype, timeout, source)),
    };
    let mut answered: Vec<String> = lookup
        .answers()
        .iter()
        .filter(|r| r.record_type() == rtype)
        .map(|r| r.data.to_string())
        .collect();
    if answered.is_empty() {
        return Err(format!("DNS: no {rtype} records"));
    }
    // Sorted, so that a server rotating its answers does not change the reason every time.
    answered.sort();
    let shown = quote(&answered.join(", "));
    if !check.values.is_empty() {
        let mut got: Vec<String> = answered.iter().map(|v| normalize_value(v)).collect();
        let mut want: Vec<String> = check.values.iter().map(|v| normalize_value(v)).collect();
        got.sort();
        got.dedup();
        want.sort();
        want.dedup();
        if got != want {
            return Err(format!(
                "DNS: answered {shown}; expected {}",
                quote(&check.values.join(", "))
            ));
        }
    }
    Ok(format!("DNS: {shown}"))
}

/// Lowercase, without a trailing dot or surrounding quotes, so that `MLS.example.test.`,
/// `mls.example.test` and `"mls.example.test"` compare equal.
fn normalize_value(v: &str) -> String {
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v);
    v.trim_end_matches('.').to_ascii_lowercase()
}

fn dns_error_reason(
    e: &NetError,
    rtype: hickory_server::proto::rr::RecordType,
    timeout: Duration,
    source: Option<IpAddr>,
) -> String {
    // The resolver reports a socket it could not bind as "no connections available": when a
    // query failed without an answer, see whether the source can be bound at all.
    if let Some(source) = source
        && !matches!(e, NetError::Dns(_) | NetError::Timeout)
        && let Err(bind) = std::net::UdpSocket::bind(SocketAddr::new(source, 0))
    {
        return bind_failure(source, &bind);
    }
    if e.is_nx_domain() {
        return "DNS: NXDOMAIN".to_string();
    }
    match e {
        NetError::Dns(DnsError::NoRecordsFound(_)) => format!("DNS: no {rtype} records"),
        NetError::Dns(DnsError::ResponseCode(code)) => format!("DNS: {}", rcode_name(*code)),
        NetError::Timeout => timed_out(timeout),
        NetError::Io(io) => format!("DNS: {}", io_reason(io)),
        other => format!("DNS: {}", quote(&other.to_string())),
    }
}

fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".to_string(),
        ResponseCode::FormErr => "FORMERR".to_string(),
        ResponseCode::ServFail => "SERVFAIL".to_string(),
        ResponseCode::NXDomain => "NXDOMAIN".to_string(),
        ResponseCode::NotImp => "NOTIMP".to_string(),
        ResponseCode::Refused => "REFUSED".to_string(),
        ResponseCode::NotAuth => "NOTAUTH".to_string(),
        ResponseCode::NotZone => "NOTZONE".to_string(),
        other => format!("rcode {}", u16::from(other)),
    }
}

// ---------------------------------------------------------------------------------------------
// Text

/// Foreign text made fit for a one-line reason: control characters escaped, at most
/// `QUOTE_MAX` characters (then "…").
pub(super) fn quote(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i >= QUOTE_MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
