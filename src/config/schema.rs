//! The TOML shape of `detour.toml` and zone files, exactly as written; `validate` turns it into `Config`.
//!
//! Every struct rejects unknown keys. Values that need checking beyond their TOML type are kept
//! `Spanned` so that the check can name the line and column.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::duration::Dur;

/// A TTL in seconds as written: 0 to 2^31 - 1. RFC 2181 §8 has resolvers read a larger
/// value as 0, so serving one would quietly disable caching; it is refused where it is
/// written, with its line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(pub u32);

/// The largest TTL (and SOA timer) a zone may give, RFC 2181 §8.
pub const MAX_TTL: u32 = i32::MAX as u32;

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        u32::try_from(v)
            .ok()
            .filter(|v| *v <= MAX_TTL)
            .map(Ttl)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{v} is out of range: a TTL is 0 to {MAX_TTL} seconds (RFC 2181 section 8)"
                ))
            })
    }
}

/// `detour.toml` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub check_defaults: RawCheckDefaults,
    #[serde(default)]
    pub page: RawPage,
    #[serde(default)]
    pub services: BTreeMap<Spanned<String>, RawService>,
    #[serde(default)]
    pub maintenance: Vec<Spanned<RawMaintenance>>,
    #[serde(default)]
    pub guard: RawGuard,
    #[serde(default)]
    pub notify: Vec<Spanned<RawNotify>>,
    #[serde(default)]
    pub tsig: BTreeMap<Spanned<String>, RawTsigKey>,
    pub cluster: Option<Spanned<RawCluster>>,
    pub oncall: Option<Spanned<RawOnCall>>,
    pub subscribers: Option<Spanned<RawSubscribers>>,
    #[serde(default)]
    pub history: RawHistory,
    #[serde(default)]
    pub views: BTreeMap<Spanned<String>, Spanned<RawView>>,
    #[serde(default)]
    pub safety: Vec<Spanned<RawSafety>>,
    pub console: Option<Spanned<RawConsole>>,
    #[serde(default)]
    pub incident_templates: Vec<Spanned<RawIncidentTemplate>>,
}

/// `[views.NAME]`: the resolvers (by source address) that see the view's drills.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawView {
    #[serde(default)]
    pub sources: Vec<Spanned<String>>,
}

/// One `[[safety]]` rule: either `at_least`/`of`/`state`, or `max_overrides`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSafety {
    pub name: Option<Spanned<String>>,
    pub at_least: Option<Spanned<i64>>,
    pub of: Option<Vec<Spanned<String>>>,
    pub state: Option<Spanned<String>>,
    pub max_overrides: Option<Spanned<i64>>,
}

/// `[console]`: the operator console's sessions and sign-in limits.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    pub idle_timeout: Option<Spanned<Dur>>,
    pub absolute_timeout: Option<Spanned<Dur>>,
    pub lockout_after: Option<Spanned<u32>>,
    pub lockout: Option<Spanned<Dur>>,
    pub source_limit: Option<Spanned<u32>>,
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    #[serde(default)]
    pub certs: Vec<Spanned<RawCertPair>>,
}

/// One `[[incident_templates]]`: a ready-made incident for the console's form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncidentTemplate {
    pub name: Spanned<String>,
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
    pub message: Spanned<String>,
}

/// `[history]`: what `state_dir/history.db` keeps, and for how long.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    pub enabled: Option<bool>,
    pub keep: Option<Spanned<Dur>>,
    pub detail: Option<Spanned<Dur>>,
}

/// `[subscribers]`: visitors who asked to be told, by email or text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubscribers {
    pub channels: Option<Vec<Spanned<String>>>,
    pub min_gap: Option<Spanned<Dur>>,
    pub remind_before: Option<Vec<Spanned<Dur>>>,
    pub automatic: Option<bool>,
    pub rate: Option<Spanned<u32>>,
}

/// `[oncall]`: the rotation of people who are paged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnCall {
    pub handoff: Option<Spanned<String>>,
    pub length: Option<Spanned<Dur>>,
    pub start: Option<Spanned<String>>,
    pub escalate_after: Option<Spanned<Dur>>,
    #[serde(default)]
    pub people: Vec<Spanned<RawPerson>>,
    #[serde(default)]
    pub exceptions: Vec<Spanned<RawException>>,
}

/// One person of `[oncall] people`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPerson {
    pub name: Spanned<String>,
    pub phone: Option<Spanned<String>>,
    pub email: Option<Spanned<String>>,
}

/// One of `[oncall] exceptions`: `name` is on call from `from` to `to`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawException {
    pub name: Spanned<String>,
    pub from: Spanned<String>,
    pub to: Spanned<String>,
}

/// `[cluster]`: several instances sharing state through etcd.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub instance: Option<Spanned<String>>,
    pub etcd: Option<Spanned<Vec<Spanned<String>>>>,
    pub prefix: Option<Spanned<String>>,
    pub quorum: Option<Spanned<RawQuorum>>,
    pub lease_ttl: Option<Spanned<Dur>>,
    pub tls: Option<Spanned<RawClusterTls>>,
    pub username: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
}

/// `[cluster] tls = { ca = "...", cert = "...", key = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClusterTls {
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// `quorum = "one" | "majority" | "all" | { at_least = N }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawQuorum {
    Word(String),
    AtLeast { at_least: u32 },
}

/// `[tsig.<name>]`: a shared key for zone transfers and NOTIFY. Its `Debug` leaves the
/// secret out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTsigKey {
    pub algorithm: Option<Spanned<String>>,
    pub secret: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
}

impl std::fmt::Debug for RawTsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawTsigKey")
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "(hidden)"))
            .field("secret_file", &self.secret_file)
            .finish()
    }
}

/// `[server]`: listeners and folders.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub dns_listen: Option<Vec<Spanned<String>>>,
    pub page_listen: Option<Vec<Spanned<String>>>,
    pub admin_listen: Option<Spanned<String>>,
    pub state_dir: Option<String>,
    pub zones_dir: Option<String>,
    pub tcp_idle_timeout: Option<Spanned<Dur>>,
    pub tcp_max_connections: Option<Spanned<u32>>,
    pub tcp_max_per_source: Option<Spanned<u32>>,
    pub udp_max_payload: Option<Spanned<u16>>,
    pub udp_workers: Option<Spanned<u16>>,
    pub cookies: Option<bool>,
    pub cookie_secret: Option<Spanned<String>>,
    pub http_max_connections: Option<Spanned<u32>>,
    pub http_max_per_source: Option<Spanned<u32>>,
    pub http_header_timeout: Option<Spanned<Dur>>,
    pub http_idle_timeout: Option<Spanned<Dur>>,
    pub probe_source: Option<Spanned<String>>,
    pub rrl: Option<RawRrl>,
}

/// `[server.rrl]`: response-rate limiting of UDP answers.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRrl {
    pub rate: Option<Spanned<u32>>,
    pub slip: Option<Spanned<u32>>,
    pub ipv4_prefix: Option<Spanned<u32>>,
    pub ipv6_prefix: Option<Spanned<u32>>,
}

/// `[admin]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub token_file: Option<String>,
}

/// `[check_defaults]`: timing every check falls back to.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCheckDefaults {
    pub interval: Option<Spanned<Dur>>,
    pub timeout: Option<Spanned<Dur>>,
    pub confirm_interval: Option<Spanned<Dur>>,
    pub down_interval: Option<Spanned<Dur>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
}

/// `[page]`: the outage and status page.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPage {
    pub title: Option<String>,
    pub contact: Option<String>,
    pub logo: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub links: Vec<Spanned<RawLink>>,
    pub tls: Option<RawPageTls>,
}

/// One extra link on the page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    pub label: String,
    pub url: Spanned<String>,
}

/// `[page.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPageTls {
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    pub certs: Vec<Spanned<RawCertPair>>,
}

/// A PEM certificate chain and its key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertPair {
    pub cert: String,
    pub key: String,
}

/// `[services.ID]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: Option<String>,
    pub url: Option<Spanned<String>>,
    pub description: Option<String>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    pub check: Option<Spanned<RawCheck>>,
    pub checks: Option<Vec<Spanned<RawCheck>>>,
    pub healthy_when: Option<Spanned<RawHealthyWhen>>,
    pub quorum: Option<Spanned<RawQuorum>>,
}

/// `healthy_when = "all" | "any" | { at_least = N }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawHealthyWhen {
    Word(String),
    AtLeast { at_least: u32 },
}

/// One probe as written: the fields that apply depend on `type`; `validate` says which do.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub interval: Option<Spanned<Dur>>,
    pub timeout: Option<Spanned<Dur>>,
    pub confirm_interval: Option<Spanned<Dur>>,
    pub down_interval: Option<Spanned<Dur>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
    pub watch: Option<Spanned<bool>>,
    // http
    pub url: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<Vec<u16>>>,
    pub body_contains: Option<Spanned<String>>,
    pub body_regex: Option<Spanned<String>>,
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
    pub max_response_time: Option<Spanned<Dur>>,
    pub tls_verify: Option<Spanned<bool>>,
    pub tls_min_validity: Option<Spanned<Dur>>,
    pub follow_redirects: Option<Spanned<bool>>,
    // tcp
    pub address: Option<Spanned<String>>,
    pub send: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    // dns
    pub name: Option<Spanned<String>>,
    pub server: Option<Spanned<String>>,
    pub record_type: Option<Spanned<String>>,
    pub values: Option<Spanned<Vec<String>>>,
    // any check that measures a response
    pub degraded_after: Option<Spanned<Dur>>,
    // journey
    pub password_file: Option<Spanned<String>>,
    pub steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
    // statuspage
    pub component: Option<Spanned<String>>,
    // heartbeat
    pub period: Option<Spanned<Dur>>,
    pub grace: Option<Spanned<Dur>>,
}

/// One step of a journey check as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub method: Option<Spanned<String>>,
    pub url: Spanned<String>,
    pub form: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub json: Option<Spanned<toml::Value>>,
    pub headers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub expect_status: Option<Spanned<Vec<u16>>>,
    pub body_contains: Option<Spanned<String>>,
    pub body_regex: Option<Spanned<String>>,
    pub capture: Option<BTreeMap<Spanned<String>, Spanned<RawCapture>>>,
    pub follow_redirects: Option<bool>,
}

/// `capture = { name = { regex = '...' } }` or `{ header = "Location" }` (with an optional
/// `regex` over the header).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    pub regex: Option<Spanned<String>>,
    pub header: Option<Spanned<String>>,
}

/// `[[maintenance]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    pub services: Vec<Spanned<String>>,
    pub start: Spanned<String>,
    pub end: Spanned<String>,
    #[serde(default)]
    pub message: String,
}

/// `[guard]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGuard {
    #[serde(default)]
    pub canaries: Vec<Spanned<RawCheck>>,
}

/// `[[notify]]`: one sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub url: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<String>>>,
    pub events: Option<Vec<Spanned<String>>>,
    pub services: Option<Vec<Spanned<String>>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub format: Option<Spanned<String>>,
    pub timeout: Option<Dur>,
    pub attempts: Option<Spanned<u32>>,
    pub max_delay: Option<Dur>,
    pub smtp: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<Vec<Spanned<String>>>>,
    pub username: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub ca: Option<Spanned<String>>,
    pub credentials_file: Option<Spanned<String>>,
}

/// A zone file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    pub origin: Spanned<String>,
    pub ttl: Option<Ttl>,
    pub soa: Spanned<RawSoa>,
    pub ns: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub records: Vec<Spanned<RawRecord>>,
    #[serde(default)]
    pub dynamic: Vec<Spanned<RawDynamic>>,
    #[serde(default)]
    pub allow_transfer: Vec<Spanned<String>>,
    #[serde(default)]
    pub also_notify: Vec<Spanned<String>>,
    pub transfer_key: Option<Spanned<String>>,
    pub transfer_keys: Option<Spanned<Vec<Spanned<String>>>>,
    pub dnssec: Option<Spanned<RawDnssec>>,
}

/// `[dnssec]` in a zone file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnssec {
    pub algorithm: Option<Spanned<String>>,
    pub denial: Option<Spanned<String>>,
    pub keys_dir: Option<Spanned<String>>,
    pub signature_lifetime: Option<Spanned<Dur>>,
    pub signature_refresh: Option<Spanned<Dur>>,
    pub zsk_lifetime: Option<Spanned<Dur>>,
    pub propagation_delay: Option<Spanned<Dur>>,
}

/// `soa = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoa {
    pub mname: Spanned<String>,
    pub rname: Spanned<String>,
    pub minimum: Option<Ttl>,
    pub refresh: Option<Ttl>,
    pub retry: Option<Ttl>,
    pub expire: Option<Ttl>,
    pub serial: Option<u32>,
    pub ttl: Option<Ttl>,
}

/// A static record: `{ name = "www", type = "CNAME", value = "mls.example.test." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub rtype: Spanned<String>,
    pub value: Spanned<String>,
    pub ttl: Option<Ttl>,
}

/// `[[dynamic]]`: a record that follows service health.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDynamic {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub rtype: Spanned<String>,
    pub ttl: Option<Ttl>,
    #[serde(default)]
    pub answers: Vec<Spanned<RawAnswer>>,
    pub otherwise: Option<Spanned<Vec<Spanned<String>>>>,
    pub check_each: Option<Spanned<RawCheckEach>>,
}

/// One `answers` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnswer {
    pub if_up: Spanned<String>,
    pub values: Vec<Spanned<String>>,
}

/// `check_each = { type = "http", port = 80, path = "/health" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheckEach {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub port: Spanned<u16>,
    pub path: Option<String>,
    pub scheme: Option<Spanned<String>>,
    pub host: Option<String>,
    pub expect_status: Option<Vec<u16>>,
    pub body_contains: Option<String>,
    pub interval: Option<Spanned<Dur>>,
    pub timeout: Option<Spanned<Dur>>,
    pub confirm_interval: Option<Spanned<Dur>>,
    pub down_interval: Option<Spanned<Dur>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
    pub watch: Option<bool>,
}
