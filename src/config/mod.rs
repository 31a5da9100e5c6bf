//! Configuration: `detour.toml` and `zones/*.toml`, parsed and validated into an immutable [`Config`].
//!
//! Loading is two steps. `schema` holds the TOML exactly as written (serde, unknown keys
//! rejected); `validate` checks everything serde cannot (addresses, names inside their zone,
//! CNAME beside other data, references between services) and builds the typed [`Config`].
//! Every problem becomes a [`Diagnostic`] naming file:line:col; all problems of a load are
//! reported together where the parser allows.

mod diag;
pub mod duration;
mod schema;
mod split;
mod validate;
mod zone;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;

pub use diag::{Diagnostic, Diagnostics, line_col};

/// The default config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/detour.toml";

/// A validated, immutable configuration: everything detour runs from.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from.
    pub path: PathBuf,
    /// `[server]`.
    pub server: Server,
    /// `[admin]`.
    pub admin: Admin,
    /// `[page]`.
    pub page: Page,
    /// `[services.*]`, by id.
    pub services: BTreeMap<String, Service>,
    /// `[[maintenance]]` windows.
    pub maintenance: Vec<Maintenance>,
    /// `[guard]`.
    pub guard: Guard,
    /// `[[notify]]` sinks.
    pub notify: Vec<Notify>,
    /// `[tsig.<name>]` keys, for zone transfers and NOTIFY.
    pub tsig: Vec<crate::proto::tsig::Key>,
    /// Zones from `zones_dir`, sorted by origin.
    pub zones: Vec<Zone>,
    /// `[cluster]`: shared state through etcd; `None` runs alone.
    pub cluster: Option<Cluster>,
    /// `[oncall]`: who is paged; `None` when no rotation is set.
    pub oncall: Option<crate::oncall::OnCall>,
    /// `[subscribers]`: visitors told by email or text; `None`: the page offers nothing.
    pub subscribers: Option<Subscribers>,
    /// `[history]`: the history database.
    pub history: History,
    /// `[views.*]`: source addresses that see their own drills, by name.
    pub views: Vec<View>,
    /// `[[safety]]` rules, checked before an operator change is applied.
    pub safety: Vec<SafetyRule>,
    /// `[console]`: the operator console's sessions and sign-in limits.
    pub console: Console,
    /// `[[incident_templates]]`: ready-made incidents the console's form offers.
    pub incident_templates: Vec<IncidentTemplate>,
    /// Things that are allowed but probably not meant; `detour check` prints them.
    pub warnings: Vec<String>,
}

/// `[views.NAME]`: queries (and page requests) from `sources` are answered from the view's
/// own Snapshot, which differs from everyone's only by the view's drills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The view's name (`staff`).
    pub name: String,
    /// The resolvers' (or browsers') addresses it covers.
    pub sources: Vec<ipnet::IpNet>,
}

/// A `[[safety]]` rule: what an operator change may not bring about without `--force`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyRule {
    /// Its name, as refusals and status say it (given, or made from the rule).
    pub name: String,
    /// What it asks.
    pub kind: SafetyKind,
}

/// What a `[[safety]]` rule asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SafetyKind {
    /// At least `count` of the services `of` are in `state` ("up" counts degraded too).
    AtLeast {
        /// How many.
        count: usize,
        /// Of which services.
        of: Vec<String>,
        /// In which state: up, down, maintenance, impacted or degraded.
        state: String,
    },
    /// No more than this many services overridden at once.
    MaxOverrides(usize),
}

/// `[history]`: transitions, operator actions and per-minute probe summaries, kept in
/// `state_dir/history.db`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// Record history at all (`enabled = false`: no database, no bars).
    pub enabled: bool,
    /// How long anything is kept (transitions, actions, daily probe roll-ups).
    pub keep: Duration,
    /// How long the per-minute probe summaries are kept before only their daily roll-up
    /// remains.
    pub detail: Duration,
}

impl Default for History {
    fn default() -> Self {
        Self {
            enabled: true,
            keep: Duration::from_secs(400 * 86_400),
            detail: Duration::from_secs(2 * 86_400),
        }
    }
}

/// `[console]`: how long a console session lasts, when sign-in stops being tried, and the
/// console's own HTTPS listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Console {
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, used or not.
    pub absolute_timeout: Duration,
    /// Wrong passwords in a row that lock an account.
    pub lockout_after: u32,
    /// How long a locked account stays locked.
    pub lockout: Duration,
    /// Sign-in attempts one source (an IPv4 address, an IPv6 /64) may make per `lockout`.
    pub source_limit: u32,
    /// HTTPS listeners of the console alone (it is always on `admin_listen` too, over TCP).
    pub listen: Vec<SocketAddr>,
    /// Their certificate/key pairs, chosen by SNI: `certs` here, else `[page.tls] certs`.
    pub certs: Vec<(PathBuf, PathBuf)>,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            lockout_after: 5,
            lockout: Duration::from_secs(15 * 60),
            source_limit: 20,
            listen: Vec::new(),
            certs: Vec::new(),
        }
    }
}

/// One `[[incident_templates]]`: a name, the services it is usually about, the first words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentTemplate {
    /// Shown in the console's list ("Sign-on outage").
    pub name: String,
    /// Services ticked in advance (may be empty).
    pub services: Vec<String>,
    /// The message the form starts with.
    pub message: String,
}

/// `[cluster]`: several instances share verdicts, overrides and incidents through etcd.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// This instance's name, unique in the cluster.
    pub instance: String,
    /// etcd endpoints (`http://` or `https://`).
    pub etcd: Vec<String>,
    /// Key prefix, starting and ending with `/`.
    pub prefix: String,
    /// The default quorum of every service.
    pub quorum: Quorum,
    /// A silent instance drops out of the count after this.
    pub lease_ttl: Duration,
    /// TLS to etcd: CA, and a client certificate and key.
    pub tls: Option<ClusterTls>,
    /// etcd user and password (read from `password_file` at load).
    pub auth: Option<(String, String)>,
}

/// TLS settings for etcd.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterTls {
    /// CA certificate (PEM) that signed etcd's; the system roots when absent.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM), for etcd's `--client-cert-auth`.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// How many live instances must see a service up for it to count as up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quorum {
    /// One instance seeing it up is enough: down only when every instance sees it down.
    One,
    /// At least half of the instances (a tie counts as up).
    #[default]
    Majority,
    /// Every instance: down as soon as one sees it down.
    All,
    /// At least N (or every instance, when fewer are live).
    AtLeast(u32),
}

impl Quorum {
    /// How many of `voters` must vote up for up (0 voters: 0).
    pub fn needed(self, voters: usize) -> usize {
        match self {
            Quorum::One => voters.min(1),
            Quorum::Majority => voters.div_ceil(2),
            Quorum::All => voters,
            Quorum::AtLeast(n) => (n as usize).min(voters),
        }
    }
}

impl std::fmt::Display for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quorum::One => f.write_str("one"),
            Quorum::Majority => f.write_str("majority"),
            Quorum::All => f.write_str("all"),
            Quorum::AtLeast(n) => write!(f, "at least {n}"),
        }
    }
}

/// `[server]`: where detour listens and keeps its files.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// DNS listeners; UDP and TCP on each.
    pub dns_listen: Vec<SocketAddr>,
    /// Outage/status page listeners (HTTP).
    pub page_listen: Vec<SocketAddr>,
    /// Admin API listener.
    pub admin_listen: AdminListen,
    /// Overrides, incidents, last states.
    pub state_dir: PathBuf,
    /// Folder of zone files.
    pub zones_dir: PathBuf,
    /// A TCP connection with no complete query for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// At most this many TCP connections at once; beyond it the longest-idle one is closed.
    pub tcp_max_connections: usize,
    /// At most this many TCP connections from one address (IPv6: one /64); more are closed.
    pub tcp_max_per_source: usize,
    /// Largest UDP answer detour sends, whatever the client's EDNS buffer says.
    pub udp_max_payload: u16,
    /// UDP sockets (SO_REUSEPORT) per listen address; 0 means one per CPU.
    pub udp_workers: usize,
    /// The secret of the DNS Cookies detour answers (`cookie_secret`, else one made at
    /// start); `None` with `cookies = false`.
    pub cookies: Option<crate::proto::cookie::Secret>,
    /// Limits on each page listener (the admin API has fixed, smaller ones).
    pub http: HttpLimits,
    /// The address every probe leaves from (`probe_source`); `None`: the system chooses.
    /// Read once at start: a change takes effect at the next restart.
    pub probe_source: Option<IpAddr>,
    /// Response-rate limiting of UDP answers (`[server.rrl]`; off by default).
    pub rrl: Rrl,
}

/// `[server.rrl]`: response-rate limiting (RRL) of UDP answers, as BIND, NSD and Knot do
/// it; see `crate::dns::rrl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rrl {
    /// Identical answers per second to one source prefix; 0 (the default) turns RRL off.
    pub rate: u32,
    /// Every `slip`-th limited answer goes out truncated (TC) instead of being dropped; 0
    /// drops them all, 1 truncates them all (default 2).
    pub slip: u32,
    /// IPv4 sources sharing a bucket: this many leading bits (default 24).
    pub ipv4_prefix: u8,
    /// IPv6 sources sharing a bucket: this many leading bits (default 56).
    pub ipv6_prefix: u8,
}

impl Rrl {
    /// Largest `rate`: far above what one prefix asks of one server, low enough to catch
    /// a typo.
    pub const MAX_RATE: u32 = 1_000_000;
    /// Largest `slip`, as in BIND.
    pub const MAX_SLIP: u32 = 10;
}

/// In words, for the start-up line and `detour check`.
impl std::fmt::Display for Rrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rate == 0 {
            return f.write_str("off");
        }
        write!(
            f,
            "{} identical answers/s per IPv4 /{} or IPv6 /{}; ",
            self.rate, self.ipv4_prefix, self.ipv6_prefix
        )?;
        match self.slip {
            0 => f.write_str("limited answers dropped"),
            1 => f.write_str("limited answers truncated (TC)"),
            n => {
                let th = match n {
                    2 => "nd",
                    3 => "rd",
                    _ => "th",
                };
                write!(
                    f,
                    "every {n}{th} limited answer truncated (TC), the rest dropped"
                )
            }
        }
    }
}

impl Default for Rrl {
    fn default() -> Self {
        Rrl {
            rate: 0,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        }
    }
}

/// Limits on one HTTP listener: what a slow or greedy client can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once on the listener; at the cap it stops accepting until one
    /// closes (`http_max_connections`, default 512).
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64); more are closed at once
    /// (`http_max_per_source`, default 64).
    pub max_per_source: usize,
    /// A request's headers must arrive within this (`http_header_timeout`, default 10s).
    pub header_timeout: Duration,
    /// A connection with no request in progress and no bytes moving for this long is closed
    /// (`http_idle_timeout`, default 30s).
    pub idle_timeout: Duration,
}

impl HttpLimits {
    /// The admin API's limits: few clients (the CLI, a script, a monitor), so a handful of
    /// connections; the timeouts of the page's.
    pub fn admin(&self) -> HttpLimits {
        HttpLimits {
            max_connections: 64,
            max_per_source: 16,
            ..*self
        }
    }
}

/// Where the admin API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminListen {
    /// TCP, bearer token required.
    Tcp(SocketAddr),
    /// A unix socket (file permissions guard it).
    Unix(PathBuf),
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// File holding the bearer token for the admin API over TCP.
    pub token_file: PathBuf,
}

/// `[page]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// Page title.
    pub title: String,
    /// Contact line shown on every page.
    pub contact: String,
    /// A local image served by detour.
    pub logo: Option<PathBuf>,
    /// The time zone the page shows times in (IANA name); `None`: the process's (`TZ`).
    pub timezone: Option<chrono_tz::Tz>,
    /// The status page's public address, as links in messages give it (`[page] url`);
    /// `None`: `http://<first page_listen>/`.
    pub url: Option<url::Url>,
    /// Links always shown.
    pub links: Vec<Link>,
    /// HTTPS listeners and certificates.
    pub tls: Option<PageTls>,
}

/// A labelled link on the page.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Text shown.
    pub label: String,
    /// Where it goes.
    pub url: String,
}

/// `[page.tls]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PageTls {
    /// HTTPS listeners.
    pub listen: Vec<SocketAddr>,
    /// Certificate/key pairs, chosen by SNI.
    pub certs: Vec<(PathBuf, PathBuf)>,
}

/// A watched service.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Id (the table key).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Direct link shown on the page.
    pub url: Option<String>,
    /// One line saying what it is for.
    pub description: Option<String>,
    /// Services this one is reached through.
    pub depends_on: Vec<String>,
    /// Its probes; empty means it is up unless an operator says otherwise.
    pub checks: Vec<Check>,
    /// How the probes combine.
    pub healthy_when: HealthyWhen,
    /// Its own quorum in a cluster (the `[cluster]` default when `None`).
    pub quorum: Option<Quorum>,
}

/// How a service's checks combine into healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthyWhen {
    /// Every check passes.
    All,
    /// One check passes.
    Any,
    /// At least N checks pass.
    AtLeast(u32),
}

/// Timing shared by every probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Steady-state pace.
    pub interval: Duration,
    /// Bound on one probe, whatever it does.
    pub timeout: Duration,
    /// Pace while rise/fall is deciding.
    pub confirm_interval: Duration,
    /// Pace while the verdict is down and no pass is being confirmed; `None`: the confirm
    /// pace (see [`Timing::down_pace`]).
    pub down_interval: Option<Duration>,
    /// Consecutive successes to become up.
    pub rise: u32,
    /// Consecutive failures to become down.
    pub fall: u32,
    /// Keep an idle TCP connection open to the target and probe at once when it closes (a
    /// killed backend is seen within one confirm interval instead of up to a whole
    /// interval). http and tcp checks only.
    pub watch: bool,
    /// A passing probe slower than this makes the check degraded (`degraded_after`): still
    /// up, shown as slow. Service checks of types that measure a response only.
    pub degraded_after: Option<Duration>,
}

impl Timing {
    /// How often a check whose verdict is down is probed: `down_interval`, else the confirm
    /// pace, because a down service is usually being fixed and its users wait to go back.
    pub fn down_pace(&self) -> Duration {
        self.down_interval.unwrap_or(self.confirm_interval)
    }
}

/// One probe with its timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// What it probes.
    pub kind: CheckKind,
    /// How often and how patiently.
    pub timing: Timing,
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// An HTTP(S) request.
    Http(HttpCheck),
    /// A TCP connect, optionally send/expect.
    Tcp(TcpCheck),
    /// A DNS lookup.
    Dns(DnsCheck),
    /// HTTP steps sharing a cookie jar (a sign-in, say), bounded by one timeout.
    Journey(JourneyCheck),
    /// A vendor's Statuspage-compatible `summary.json` and one of its components.
    Statuspage(StatuspageCheck),
    /// A job that must call `POST /api/v1/heartbeat/{check}` at least every `period`.
    Heartbeat(HeartbeatCheck),
}

impl CheckKind {
    /// The `type` as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Http(_) => "http",
            CheckKind::Tcp(_) => "tcp",
            CheckKind::Dns(_) => "dns",
            CheckKind::Journey(_) => "journey",
            CheckKind::Statuspage(_) => "statuspage",
            CheckKind::Heartbeat(_) => "heartbeat",
        }
    }
}

/// A secret read from a file at load (`password_file`): its `Debug` hides it, so that it
/// appears in no log line, status or page.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

/// A string with `{name}` placeholders, parsed at load: literal text and variable names
/// (`{{` and `}}` stand for braces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Piece>);

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text as written.
    Text(String),
    /// `{name}`: a captured value, or `{password}`.
    Var(String),
}

impl Template {
    /// The variables it uses.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(v.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Fills the placeholders from `vars` (a name it lacks becomes empty: load checks that
    /// every name is defined by then).
    pub fn fill(&self, vars: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => out.push_str(vars.get(v).map_or("", String::as_str)),
            }
        }
        out
    }
}

/// `type = "journey"`: HTTP steps in order, sharing cookies, each judged on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyCheck {
    /// The steps, in order.
    pub steps: Vec<JourneyStep>,
    /// `password_file`'s first line: `{password}` in a step.
    pub password: Option<Secret>,
    /// Verify TLS certificates.
    pub tls_verify: bool,
}

/// One step of a journey.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyStep {
    /// Request method.
    pub method: String,
    /// URL (placeholders filled before the request).
    pub url: Template,
    /// Extra headers.
    pub headers: Vec<(String, Template)>,
    /// Request body.
    pub body: Option<StepBody>,
    /// Accepted statuses; empty means 200-399.
    pub expect_status: Vec<u16>,
    /// The body must contain this.
    pub body_contains: Option<String>,
    /// The body must match this.
    pub body_regex: Option<Pattern>,
    /// Values taken from the response for later steps.
    pub capture: Vec<Capture>,
    /// Follow redirects (up to 10) within this step.
    pub follow_redirects: bool,
}

/// A step's request body.
#[derive(Debug, Clone, PartialEq)]
pub enum StepBody {
    /// `form = { ... }`: `application/x-www-form-urlencoded`.
    Form(Vec<(String, Template)>),
    /// `json = { ... }`: `application/json`; placeholders filled in string values.
    Json(serde_json::Value),
}

/// A value taken from a step's response into a variable.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    /// The variable's name.
    pub name: String,
    /// Where from: the body, or a header (`Location` is made absolute first).
    pub header: Option<String>,
    /// Its first group (or whole match) is the value; none: the whole header.
    pub regex: Option<Pattern>,
}

/// `type = "statuspage"`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatuspageCheck {
    /// The `summary.json` URL.
    pub url: url::Url,
    /// The component's name (any case) or id.
    pub component: String,
    /// Verify TLS certificates.
    pub tls_verify: bool,
}

/// `type = "heartbeat"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatCheck {
    /// The job calls at least this often.
    pub period: Duration,
    /// Slack on top of `period` before the check fails.
    pub grace: Duration,
}

/// An HTTP probe.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    /// Full URL.
    pub url: url::Url,
    /// Request method.
    pub method: String,
    /// Accepted status codes; empty means 200-399.
    pub expect_status: Vec<u16>,
    /// The body must contain this.
    pub body_contains: Option<String>,
    /// The body must match this.
    pub body_regex: Option<Pattern>,
    /// Headers sent.
    pub headers: BTreeMap<String, String>,
    /// Slower than this is a failure.
    pub max_response_time: Option<Duration>,
    /// Verify TLS certificates.
    pub tls_verify: bool,
    /// A certificate expiring sooner than this is a failure.
    pub tls_min_validity: Option<Duration>,
    /// Follow redirects.
    pub follow_redirects: bool,
}

/// A compiled regular expression, compared by its source text.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// A TCP probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpCheck {
    /// host:port.
    pub address: String,
    /// Bytes sent after connect.
    pub send: Option<String>,
    /// Bytes that must come back.
    pub expect: Option<String>,
}

/// A DNS probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCheck {
    /// Name looked up.
    pub name: Name,
    /// Server asked.
    pub server: SocketAddr,
    /// Record type asked for.
    pub record_type: RecordType,
    /// If set, the answer must contain exactly these values (order ignored).
    pub values: Vec<String>,
}

/// A planned maintenance window.
#[derive(Debug, Clone, PartialEq)]
pub struct Maintenance {
    /// Services it takes down.
    pub services: Vec<String>,
    /// Start, with the offset it was written in.
    pub start: DateTime<FixedOffset>,
    /// End.
    pub end: DateTime<FixedOffset>,
    /// What is being done.
    pub message: String,
}

/// `[guard]`: canaries outside the watched services.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Guard {
    /// When every canary is down, detour distrusts its own view.
    pub canaries: Vec<Check>,
}

/// A notification sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    /// Where it goes.
    pub sink: Sink,
    /// Event kinds sent.
    pub events: Vec<String>,
    /// Only these services (empty: all).
    pub services: Vec<String>,
    /// Bound on one delivery.
    pub timeout: Duration,
    /// Tries before giving up.
    pub attempts: u32,
    /// Longest wait between tries.
    pub max_delay: Duration,
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// HTTP POST.
    Webhook {
        /// Target.
        url: url::Url,
        /// Extra headers.
        headers: BTreeMap<String, String>,
        /// `json` or `slack`.
        format: String,
    },
    /// A command, event JSON on stdin; never through a shell.
    Exec {
        /// Program and arguments.
        command: Vec<String>,
    },
    /// Email through an SMTP server.
    Email(Email),
    /// Text messages through an HTTP SMS gateway (Twilio's form-POST shape).
    Sms(Sms),
}

/// `[subscribers]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribers {
    /// What the page offers: `"email"`, `"sms"` (each sent through the first sink of its type).
    pub channels: Vec<String>,
    /// At most one message per subscriber per this; later news waits and is folded in.
    pub min_gap: Duration,
    /// Reminders of a maintenance window this long before it starts.
    pub remind_before: Vec<Duration>,
    /// Outage and recovery notices (not only incidents and maintenance).
    pub automatic: bool,
    /// At most this many messages a second, all subscribers together.
    pub rate: u32,
}

/// Who an email or SMS sink writes to: fixed addresses, or whoever is on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// `"oncall"`: the person `[oncall]` names (and, unanswered, the escalation).
    OnCall,
    /// An email address or an E.164 phone number.
    Address(String),
}

/// `type = "email"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    /// `smtp://host:port` (STARTTLS when offered) or `smtps://host:port` (TLS from the start).
    pub smtp: url::Url,
    /// The From address.
    pub from: String,
    /// Recipients.
    pub to: Vec<Recipient>,
    /// SMTP AUTH user, with `password_file`.
    pub username: Option<String>,
    /// File holding the SMTP password (read at each delivery).
    pub password_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) to trust for the server's certificate.
    pub ca: Option<PathBuf>,
}

/// `type = "sms"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sms {
    /// The gateway's message endpoint.
    pub url: url::Url,
    /// The sending number.
    pub from: String,
    /// Recipients.
    pub to: Vec<Recipient>,
    /// File holding `user:secret` for HTTP basic auth (read at each delivery).
    pub credentials_file: Option<PathBuf>,
}

/// A served zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// The zone file.
    pub file: PathBuf,
    /// Apex, lowercase, fully qualified.
    pub origin: Name,
    /// Default TTL.
    pub ttl: u32,
    /// SOA fields.
    pub soa: Soa,
    /// Static records, apex NS included; names lowercase and fully qualified.
    pub records: Vec<Record>,
    /// Records that follow service health.
    pub dynamic: Vec<Dynamic>,
    /// Sources allowed to transfer the zone (AXFR/IXFR over TCP).
    pub allow_transfer: Vec<IpNet>,
    /// Secondaries sent NOTIFY when the zone changes.
    pub also_notify: Vec<SocketAddr>,
    /// The `[tsig]` keys a transfer may be signed with (any one; more than one while a key
    /// is rotated); the first signs NOTIFY. Empty: transfers need no signature.
    pub transfer_keys: Vec<crate::proto::tsig::Key>,
    /// `[dnssec]`: the zone is served signed.
    pub dnssec: Option<Dnssec>,
}

/// A zone's `[dnssec]`: how it is signed, and its keys (read, or created, at load).
#[derive(Debug, Clone)]
pub struct Dnssec {
    /// The keys' algorithm.
    pub algorithm: crate::dnssec::Algorithm,
    /// How absent names and types are proven.
    pub denial: crate::dnssec::Denial,
    /// Where the keys live.
    pub keys_dir: PathBuf,
    /// How long a signature is valid (RRSIG expiration less inception), seconds.
    pub lifetime: u32,
    /// How often every signature is made again, seconds (less than `lifetime`).
    pub refresh: u32,
    /// A ZSK's lifetime before it is rolled over, seconds; 0: never by itself.
    pub zsk_lifetime: u32,
    /// Margin for secondaries and caches in key rollovers, seconds.
    pub propagation_delay: u32,
    /// The keys, as read when the config was loaded.
    pub keys: std::sync::Arc<crate::dnssec::Keyring>,
}

impl PartialEq for Dnssec {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm
            && self.denial == other.denial
            && self.keys_dir == other.keys_dir
            && self.lifetime == other.lifetime
            && self.refresh == other.refresh
            && self.zsk_lifetime == other.zsk_lifetime
            && self.propagation_delay == other.propagation_delay
            && self.keys.fingerprint() == other.keys.fingerprint()
    }
}

impl Zone {
    /// The timings of this signed zone's key rollovers (`None` when it is not signed).
    pub fn rollover_policy(&self) -> Option<crate::dnssec::rollover::Policy> {
        let d = self.dnssec.as_ref()?;
        let max_ttl = self
            .records
            .iter()
            .map(|r| r.ttl)
            .chain(self.dynamic.iter().map(|d| d.ttl))
            .chain([self.soa.ttl, self.soa.minimum])
            .max()
            .unwrap_or(self.soa.ttl);
        Some(crate::dnssec::rollover::Policy {
            zsk_lifetime: d.zsk_lifetime,
            dnskey_ttl: self.soa.ttl,
            max_ttl,
            propagation: d.propagation_delay,
        })
    }
}

/// The longest chain of CNAMEs followed inside served zones (a loop ends there).
pub const MAX_CNAME_CHAIN: usize = 8;

impl Zone {
    /// The dynamic record a static CNAME chain starting at `name` ends at, inside this zone.
    pub fn cname_leads_to(&self, name: &Name) -> Option<&Dynamic> {
        let mut at = name.clone();
        for _ in 0..MAX_CNAME_CHAIN {
            let target = self.records.iter().find_map(|r| match &r.data {
                RData::CNAME(c) if r.name == at => Some(c.0.clone()),
                _ => None,
            })?;
            if let Some(d) = self.dynamic.iter().find(|d| d.name == target) {
                return Some(d);
            }
            at = target;
        }
        None
    }
}

/// SOA fields (the serial is the Snapshot's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    /// Primary name server.
    pub mname: Name,
    /// Responsible mailbox, as a name.
    pub rname: Name,
    /// Secondary refresh.
    pub refresh: u32,
    /// Secondary retry.
    pub retry: u32,
    /// Secondary expire.
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: u32,
    /// TTL of the SOA record itself.
    pub ttl: u32,
    /// Lowest serial to start from.
    pub serial: Option<u32>,
}

/// A `[[dynamic]]` record.
#[derive(Debug, Clone, PartialEq)]
pub struct Dynamic {
    /// Owner name, lowercase, fully qualified.
    pub name: Name,
    /// A, AAAA or CNAME.
    pub rtype: RecordType,
    /// TTL of every answer it can give.
    pub ttl: u32,
    /// Candidates in order of preference.
    pub answers: Vec<DynamicAnswer>,
    /// The outage answer.
    pub otherwise: Vec<RData>,
    /// Probe every address of an entry on its own.
    pub check_each: Option<CheckEach>,
}

impl Dynamic {
    /// The addresses `check_each` probes (each once, in answer order), with how; none
    /// without `check_each`.
    pub fn probed_addresses(&self) -> Vec<(std::net::IpAddr, &CheckEach)> {
        let Some(each) = &self.check_each else {
            return Vec::new();
        };
        let mut seen = std::collections::BTreeSet::new();
        self.answers
            .iter()
            .flat_map(|a| a.values.iter())
            .filter_map(address_of)
            .filter(|ip| seen.insert(*ip))
            .map(|ip| (ip, each))
            .collect()
    }
}

/// Why `target` cannot be probed from `source`: they are of different families (a probe
/// leaves from exactly one address, and an IPv4 one cannot reach an IPv6 one, nor the other
/// way round). `None` when they match.
pub fn cross_family(source: IpAddr, target: IpAddr) -> Option<String> {
    let family = |ip: IpAddr| if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    (source.is_ipv4() != target.is_ipv4()).then(|| {
        format!(
            "{} address {target} cannot be probed from probe_source {source} ({})",
            family(target),
            family(source)
        )
    })
}

/// The IP address of an A or AAAA value.
pub fn address_of(v: &RData) -> Option<std::net::IpAddr> {
    match v {
        RData::A(a) => Some(std::net::IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(std::net::IpAddr::V6(a.0)),
        _ => None,
    }
}

/// One candidate of a dynamic record.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicAnswer {
    /// Service that must be up (or impacted).
    pub if_up: String,
    /// Values answered.
    pub values: Vec<RData>,
}

/// Per-address probing of a dynamic record's entries.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckEach {
    /// `http` or `tcp`.
    pub kind: CheckEachKind,
    /// Port probed on each address.
    pub port: u16,
    /// Timing.
    pub timing: Timing,
}

/// What `check_each` does per address.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckEachKind {
    /// HTTP GET of `path`, with `host` as the Host header.
    Http {
        /// `http` or `https`.
        scheme: String,
        /// Path requested.
        path: String,
        /// Host header (default: the record's name).
        host: Option<String>,
        /// Accepted statuses; empty means 200-399.
        expect_status: Vec<u16>,
        /// Body must contain.
        body_contains: Option<String>,
    },
    /// TCP connect.
    Tcp,
}

/// What client commands read from the config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    /// Where the admin API listens.
    pub admin_listen: AdminListen,
    /// The token file.
    pub token_file: PathBuf,
    /// `[page] timezone`, the zone the CLI shows times in too (`None`: the machine's).
    pub timezone: Option<chrono_tz::Tz>,
}

impl ClientSettings {
    /// Reads only `[server] admin_listen`, `[admin] token_file` and `[page] timezone`,
    /// ignoring everything else (an unknown zone is the daemon's error to report).
    pub fn load(path: &Path) -> Result<ClientSettings, Diagnostics> {
        validate::client_settings(path)
    }
}

impl Config {
    /// Loads and validates `path` and the zones it names; every problem is in the error.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        validate::load(path)
    }

    /// Number of static records over all zones.
    pub fn record_count(&self) -> usize {
        self.zones.iter().map(|z| z.records.len()).sum()
    }

    /// Number of checks over all services, canaries and `check_each` entries.
    pub fn check_count(&self) -> usize {
        self.services
            .values()
            .map(|s| s.checks.len())
            .sum::<usize>()
            + self.guard.canaries.len()
    }
}
