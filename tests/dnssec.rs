//! DNSSEC (issue 20), checked by real validators: Unbound in a network namespace of the
//! test's own, with a fake root (a second detour, signed, delegating example.test. with its
//! DS) and the root's DS as its trust anchor, validates detour's answers (AD) before a swap,
//! after the swap to the DR address and to the outage page, for NXDOMAIN and NODATA, over
//! UDP and over TCP; `ldns-verify-zone` accepts an AXFR of the signed zone; and the wire
//! itself: RRSIGs only with DO, byte-identical answers without it, DNSKEY/CDS/CDNSKEY at the
//! apex, NSEC3 and NSEC proofs, a swap that signs nothing but the SOA.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::binary::{BIN, Daemon};
use common::*;
use detour::overrides::Forced;
use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::{RData, RecordType};

/// The signed zone of these tests: a dynamic record with a DR entry and an outage answer,
/// a CNAME to it, an empty non-terminal, mail with glue, a delegation without DS.
fn zone(ns_addr: &str, dnssec: &str) -> String {
    format!(
        r#"
origin = "example.test."
ttl = 3600
soa = {{ mname = "ns1.example.test.", rname = "hostmaster.example.test.", minimum = 60, ttl = 300 }}
ns  = ["ns1.example.test."]
allow_transfer = ["127.0.0.1", "10.53.0.0/24"]
records = [
  {{ name = "ns1",   type = "A",     value = "{ns_addr}" }},
  {{ name = "www",   type = "CNAME", value = "mls" }},
  {{ name = "@",     type = "MX",    value = "10 mail" }},
  {{ name = "mail",  type = "A",     value = "192.0.2.25" }},
  {{ name = "@",     type = "TXT",   value = "v=spf1 -all" }},
  {{ name = "deep.a.b", type = "A",  value = "192.0.2.99" }},
  {{ name = "branch", type = "NS",   value = "ns.branch" }},
  {{ name = "ns.branch", type = "A", value = "192.0.2.53" }},
]

[[dynamic]]
name = "mls"
type = "A"
ttl  = 30
answers = [
  {{ if_up = "mls",    values = ["192.0.2.10", "192.0.2.11"] }},
  {{ if_up = "mls_dr", values = ["192.0.2.20"] }},
]
otherwise = ["192.0.2.80"]

[dnssec]
{dnssec}
"#
    )
}

/// The services: mls and mls_dr without checks (up until an override says otherwise).
const SERVICES: &str = "[services.mls]\nname = \"MLS\"\n[services.mls_dr]\nname = \"MLS DR\"\n";

/// A query with EDNS and the DO bit.
fn do_query(qname: &str, qtype: RecordType) -> Message {
    let mut m = query(qname, qtype, Some(1232));
    if let Some(e) = m.edns.as_mut() {
        e.set_dnssec_ok(true);
    }
    m
}

fn count(records: &[hickory_server::proto::rr::Record], t: RecordType) -> usize {
    records.iter().filter(|r| r.record_type() == t).count()
}

/// RRSIGs in a section covering `t`.
fn sigs_over(records: &[hickory_server::proto::rr::Record], t: RecordType) -> usize {
    records
        .iter()
        .filter(|r| match &r.data {
            RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(s)) => {
                s.input().type_covered == t
            }
            _ => false,
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_carry_signatures_only_with_do() {
    let s = Server::start(
        &page_config("", SERVICES),
        &[("example.test.toml", &zone("127.0.0.1", ""))],
    )
    .await;
    let a = s.addr;

    // Without DO (and without EDNS): no DNSSEC records at all.
    for q in [
        query("mls.example.test.", RecordType::A, None),
        query("mls.example.test.", RecordType::A, Some(1232)),
    ] {
        let (m, _) = udp(a, &q).await;
        assert_eq!(a_values(&m), ["192.0.2.10", "192.0.2.11"]);
        assert_eq!(count(&m.answers, RecordType::RRSIG), 0);
    }
    let (m, _) = udp(a, &query("nope.example.test.", RecordType::A, Some(1232))).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities.len(), 1, "the SOA alone: {m:?}");

    // With DO: the A RRset and its RRSIG.
    let (m, _) = udp(a, &do_query("mls.example.test.", RecordType::A)).await;
    assert_eq!(a_values(&m), ["192.0.2.10", "192.0.2.11"]);
    assert_eq!(sigs_over(&m.answers, RecordType::A), 1);
    assert!(m.edns.as_ref().unwrap().flags().dnssec_ok, "DO echoed");
    // The chain: CNAME and A, each signed.
    let (m, _) = udp(a, &do_query("www.example.test.", RecordType::A)).await;
    assert_eq!(sigs_over(&m.answers, RecordType::CNAME), 1);
    assert_eq!(sigs_over(&m.answers, RecordType::A), 1);
    let (m, _) = udp(a, &do_query("example.test.", RecordType::SOA)).await;
    assert_eq!(sigs_over(&m.answers, RecordType::SOA), 1, "the SOA signed");
    // The apex: DNSKEY (KSK and ZSK, signed), CDS and CDNSKEY, NSEC3PARAM.
    let (m, _) = tcp_msg(a, &do_query("example.test.", RecordType::DNSKEY)).await;
    assert_eq!(count(&m.answers, RecordType::DNSKEY), 2);
    assert_eq!(sigs_over(&m.answers, RecordType::DNSKEY), 1);
    for t in [RecordType::CDS, RecordType::CDNSKEY, RecordType::NSEC3PARAM] {
        let (m, _) = udp(a, &do_query("example.test.", t)).await;
        assert_eq!(count(&m.answers, t), 1, "{t}");
    }
    // NXDOMAIN: SOA and its RRSIG, closest encloser proof (up to three NSEC3, signed).
    let (m, _) = udp(a, &do_query("nope.example.test.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(sigs_over(&m.authorities, RecordType::SOA), 1);
    let n3 = count(&m.authorities, RecordType::NSEC3);
    assert!((2..=3).contains(&n3), "NSEC3s: {n3}");
    assert_eq!(sigs_over(&m.authorities, RecordType::NSEC3), n3);
    // NODATA: the NSEC3 matching the name; an empty non-terminal too.
    for name in ["mls.example.test.", "a.b.example.test."] {
        let (m, _) = udp(a, &do_query(name, RecordType::TXT)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(count(&m.authorities, RecordType::NSEC3), 1, "{name}");
        assert_eq!(sigs_over(&m.authorities, RecordType::NSEC3), 1);
    }
    // A referral to an unsigned child: NS and the NSEC3 proving there is no DS.
    let (m, _) = udp(a, &do_query("host.branch.example.test.", RecordType::A)).await;
    assert!(!m.metadata.authoritative);
    assert_eq!(count(&m.authorities, RecordType::NS), 1);
    assert_eq!(count(&m.authorities, RecordType::NSEC3), 1);
}

/// One query over TCP, as [`udp`] returns it.
async fn tcp_msg(addr: std::net::SocketAddr, q: &Message) -> (Message, ()) {
    (tcp(addr, q).await, ())
}

#[tokio::test(flavor = "multi_thread")]
async fn nsec_and_ed25519_prove_absence_too() {
    let s = Server::start(
        &page_config("", SERVICES),
        &[(
            "example.test.toml",
            &zone("127.0.0.1", "algorithm = \"ed25519\"\ndenial = \"nsec\""),
        )],
    )
    .await;
    let (m, _) = udp(s.addr, &do_query("nope.example.test.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(count(&m.authorities, RecordType::NSEC3), 0);
    let n = count(&m.authorities, RecordType::NSEC);
    assert!((1..=2).contains(&n), "NSECs: {n}");
    assert_eq!(sigs_over(&m.authorities, RecordType::NSEC), n);
    let (m, _) = udp(s.addr, &do_query("mls.example.test.", RecordType::TXT)).await;
    assert_eq!(count(&m.authorities, RecordType::NSEC), 1);
    let (m, _) = udp(s.addr, &do_query("example.test.", RecordType::DNSKEY)).await;
    let alg = m.answers.iter().find_map(|r| match &r.data {
        RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::DNSKEY(k)) => Some(u8::from(
            hickory_proto::dnssec::PublicKey::algorithm(k.public_key()),
        )),
        _ => None,
    });
    assert_eq!(alg, Some(15), "Ed25519 keys");
    let axfr = dig_axfr(s.addr);
    ldns_verify(&axfr, "NSEC, Ed25519");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swap_signs_nothing_but_the_soa() {
    let s = Server::start(
        &page_config("", SERVICES),
        &[("example.test.toml", &zone("127.0.0.1", ""))],
    )
    .await;
    let made = |s: &Server| {
        let snap = s.running.snapshots().load();
        snap.zones[0].signed.as_ref().unwrap().signatures_made()
    };
    let before = made(&s);
    force(&s, "mls", Some(Forced::Down)).await;
    let (m, _) = udp(s.addr, &do_query("mls.example.test.", RecordType::A)).await;
    assert_eq!(a_values(&m), ["192.0.2.20"]);
    assert_eq!(sigs_over(&m.answers, RecordType::A), 1);
    // The DR answer was signed with the first Snapshot: only the new SOA's RRSIG is new.
    assert_eq!(made(&s), before + 1);
    force(&s, "mls_dr", Some(Forced::Down)).await;
    let (m, _) = udp(s.addr, &do_query("mls.example.test.", RecordType::A)).await;
    assert_eq!(a_values(&m), ["192.0.2.80"]);
    assert_eq!(made(&s), before + 2);
    // The transfer after the swaps is signed and whole.
    ldns_verify(&dig_axfr(s.addr), "after two swaps");
}

/// `dig AXFR` of example.test. from `addr`, as zone-file text.
fn dig_axfr(addr: std::net::SocketAddr) -> String {
    let out = Command::new("dig")
        .args([
            &format!("@{}", addr.ip()),
            "-p",
            &addr.port().to_string(),
            "example.test.",
            "AXFR",
            "+nocmd",
            "+nostats",
        ])
        .output()
        .expect("dig runs (bind9-dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("RRSIG"), "a signed transfer:\n{text}");
    text
}

/// Runs `ldns-verify-zone` on `zone` text; panics with its output unless it verifies.
fn ldns_verify(zone: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zone");
    std::fs::write(&path, zone).unwrap();
    let out = Command::new("ldns-verify-zone")
        .arg(&path)
        .output()
        .expect("ldns-verify-zone runs (ldnsutils)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("Zone is verified and complete"),
        "{what}: ldns-verify-zone said:\n{text}\nzone:\n{zone}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn axfr_of_the_signed_zone_passes_ldns_verify_zone() {
    let s = Server::start(
        &page_config("", SERVICES),
        &[("example.test.toml", &zone("127.0.0.1", ""))],
    )
    .await;
    let axfr = dig_axfr(s.addr);
    for t in ["DNSKEY", "CDS", "CDNSKEY", "NSEC3PARAM", "NSEC3"] {
        assert!(
            axfr.lines().any(|l| l.split_whitespace().nth(3) == Some(t)),
            "{t} in the transfer"
        );
    }
    ldns_verify(&axfr, "NSEC3, ECDSA");
}

#[test]
fn dnssec_ds_prints_the_ds_of_the_served_ksk() {
    let f = Fixture::new(
        &page_config("", SERVICES),
        &[("example.test.toml", &zone("127.0.0.1", ""))],
    );
    let (code, out, err) = common::binary::cli(&f.config_path(), &["dnssec", "ds", "example.test"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().next().expect("a DS line");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&words[..4], ["example.test.", "300", "IN", "DS"], "{line}");
    assert_eq!(words[5], "13");
    assert_eq!(words[6], "2");
    assert_eq!(words[7].len(), 64);
    // The same key the zone serves: its tag is the KSK's.
    let cfg = f.load();
    let d = cfg.zones[0].dnssec.as_ref().unwrap();
    let ksk = &d.keys.keys[0];
    assert_eq!(words[4], ksk.meta.tag.to_string());
    // Private keys are 0600.
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(&d.keys_dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "pk8") {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }
    let (code, out, _) = common::binary::cli(&f.config_path(), &["dnssec", "status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("KSK") && out.contains("ZSK") && out.contains("nsec3"),
        "{out}"
    );
    let (code, _, err) = common::binary::cli(&f.config_path(), &["dnssec", "ds", "other.test"]);
    assert_eq!(code, 2);
    assert!(err.contains("no zone other.test."), "{err}");
}

#[test]
fn bad_dnssec_settings_name_file_line_and_column() {
    let cases = [
        ("algorithm = \"rsasha1\"", "unknown DNSSEC algorithm"),
        ("denial = \"compact\"", "not implemented yet"),
        ("denial = \"nsec5\"", "unknown denial"),
        (
            "signature_refresh = \"10d\"",
            "at most half of signature_lifetime",
        ),
        ("colour = \"blue\"", "unknown field"),
    ];
    for (setting, want) in cases {
        let f = Fixture::new(
            &page_config("", SERVICES),
            &[("example.test.toml", &zone("127.0.0.1", setting))],
        );
        let err = detour::config::Config::load(&f.config_path())
            .expect_err(setting)
            .to_string();
        assert!(err.contains(want), "{setting}: {err}");
        // The line of the setting: the zone's last line but one.
        let text = zone("127.0.0.1", setting);
        let line = text.lines().position(|l| l.contains(setting)).unwrap() + 1;
        assert!(
            err.contains(&format!("example.test.toml:{line}:")),
            "{setting}: line {line} in {err}"
        );
    }
    // A wildcard cannot be signed yet: said, not served unsigned.
    let text = zone("127.0.0.1", "").replace(
        "records = [",
        "records = [\n  { name = \"*.wild\", type = \"A\", value = \"192.0.2.77\" },",
    );
    let f = Fixture::new(&page_config("", SERVICES), &[("example.test.toml", &text)]);
    let err = detour::config::Config::load(&f.config_path())
        .expect_err("wildcard")
        .to_string();
    assert!(
        err.contains("wildcard") && err.contains("example.test.toml:8:"),
        "{err}"
    );
    // A DS belongs at a delegation point.
    let text = zone("127.0.0.1", "").replace(
        "records = [",
        "records = [\n  { name = \"mail\", type = \"DS\", value = \"12345 13 2 2BB183AF5F22588179A53B0A98631FAD1A292118F5D5B8A6F2D1F3A5F6A1C0D2\" },",
    );
    let f = Fixture::new(&page_config("", SERVICES), &[("example.test.toml", &text)]);
    let err = detour::config::Config::load(&f.config_path())
        .expect_err("DS off a cut")
        .to_string();
    assert!(err.contains("DS without NS"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Unbound in a network namespace.

/// A network namespace of this test's own, with addresses 10.53.0.1-9 on its loopback;
/// deleted (its processes killed first by their owners' Drop) when dropped.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "detour-dnssec-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip runs");
            assert!(
                out.status.success(),
                "ip {}: {} (the test needs root to make a network namespace)",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        for i in 1..=9 {
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("10.53.0.{i}/32"),
                "dev",
                "lo",
            ]);
        }
        ns
    }

    /// `program` run inside the namespace.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A process killed when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A folder with `detour.toml` listening on `ip` (port 53, admin on 8053) and one zone.
fn instance(dir: &Path, ip: &str, zone_file: &str, zone_text: &str, services: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    let config = format!(
        "[server]\ndns_listen = [\"{ip}:53\"]\npage_listen = [\"{ip}:8080\"]\nadmin_listen = \"{ip}:8053\"\nzones_dir = \"zones\"\nstate_dir = \"state\"\nudp_workers = 1\n\n{services}"
    );
    std::fs::write(dir.join("detour.toml"), config).unwrap();
    std::fs::write(dir.join("zones").join(zone_file), zone_text).unwrap();
    dir.join("detour.toml")
}

/// The DS line `detour dnssec ds ZONE` prints, as "TAG ALG TYPE DIGEST".
fn ds_of(config: &Path, zone: &str) -> (String, String) {
    let (code, out, err) = common::binary::cli(config, &["dnssec", "ds", zone]);
    assert_eq!(code, 0, "detour dnssec ds {zone}: {err}");
    let line = out.lines().next().expect("a DS line").to_string();
    let rdata = line
        .split_whitespace()
        .skip(4)
        .collect::<Vec<_>>()
        .join(" ");
    (line, rdata)
}

/// What `dig` says, run in the namespace.
struct Dig {
    status: String,
    flags: Vec<String>,
    answer: Vec<String>,
    text: String,
}

fn dig(ns: &Netns, server: &str, args: &[&str]) -> Dig {
    let out: Output = ns
        .cmd("dig")
        .arg(format!("@{server}"))
        .args(["+dnssec", "+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("dig runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_string();
    let flags = text
        .split(";; flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let answer = text
        .split(";; ANSWER SECTION:\n")
        .nth(1)
        .map(|s| {
            s.lines()
                .take_while(|l| !l.is_empty())
                .filter(|l| l.split_whitespace().nth(3) == Some("A"))
                .filter_map(|l| l.split_whitespace().nth(4))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Dig {
        status,
        flags,
        answer,
        text,
    }
}

/// Asks `resolver` until the answer to `name` `qtype` is `status` with `answer` (A
/// addresses) and validated (AD), within 20 s; panics with the last answer and the
/// resolver's log otherwise.
fn validated(
    ns: &Netns,
    resolver: &str,
    name: &str,
    qtype: &str,
    status: &str,
    answer: &[&str],
    extra: &[&str],
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut args = vec![name, qtype];
        args.extend_from_slice(extra);
        let d = dig(ns, resolver, &args);
        let mut got = d.answer.clone();
        got.sort();
        if d.status == status && got == answer && d.flags.iter().any(|f| f == "ad") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {qtype} via {resolver} {extra:?}: wanted {status} {answer:?} with AD, got {} {got:?} flags {:?}\n{}",
            d.status,
            d.flags,
            d.text
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Unbound's config: the fake root as its only hint, the root's DS as its trust anchor,
/// queries to the authorities over TCP when `tcp`.
fn unbound_conf(dir: &Path, ip: &str, tcp: bool, anchor: &str) -> PathBuf {
    let conf = format!(
        r#"server:
  verbosity: 1
  interface: {ip}
  port: 53
  do-ip6: no
  do-not-query-localhost: no
  chroot: ""
  username: ""
  directory: "{dir}"
  pidfile: "{dir}/unbound-{ip}.pid"
  use-syslog: no
  logfile: ""
  log-servfail: yes
  root-hints: "{dir}/root.hints"
  trust-anchor-file: "{dir}/{anchor}"
  module-config: "validator iterator"
  val-log-level: 2
  access-control: 10.53.0.0/24 allow
  harden-dnssec-stripped: yes
  # test. is a special-use name (RFC 6761) Unbound answers itself unless told not to.
  local-zone: "test." nodefault
  tcp-upstream: {tcp}
  cache-max-ttl: 1
  cache-max-negative-ttl: 1
  infra-host-ttl: 1
remote-control:
  control-enable: no
"#,
        dir = dir.display(),
        tcp = if tcp { "yes" } else { "no" },
    );
    let path = dir.join(format!("unbound-{ip}.conf"));
    std::fs::write(&path, conf).unwrap();
    path
}

#[test]
fn unbound_validates_answers_before_and_after_swaps() {
    let ns = Netns::new();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();

    // example.test. on 10.53.0.2, signed; its DS goes into the root zone.
    // NSD on 10.53.0.6 is its secondary (IXFR asked, NOTIFY followed).
    let child = instance(
        &base.join("child"),
        "10.53.0.2",
        "example.test.toml",
        &zone("10.53.0.2", "").replace(
            "allow_transfer =",
            "also_notify = [\"10.53.0.6:53\"]\nallow_transfer =",
        ),
        SERVICES,
    );
    let (_, child_ds) = ds_of(&child, "example.test.");
    // The fake root on 10.53.0.1, signed, delegating example.test. with that DS.
    let root_zone = format!(
        r#"
origin = "."
ttl = 3600
soa = {{ mname = "a.root-servers.test.", rname = "hostmaster.root-servers.test.", minimum = 60, ttl = 300 }}
ns  = ["a.root-servers.test."]
records = [
  {{ name = "a.root-servers.test.", type = "A",  value = "10.53.0.1" }},
  {{ name = "example.test.",        type = "NS", value = "ns1.example.test." }},
  {{ name = "ns1.example.test.",    type = "A",  value = "10.53.0.2" }},
  {{ name = "example.test.",        type = "DS", value = "{child_ds}" }},
]

[dnssec]
"#
    );
    let root = instance(&base.join("root"), "10.53.0.1", "root.toml", &root_zone, "");
    let (root_ds, _) = ds_of(&root, ".");
    std::fs::write(base.join("root.ds"), format!("{root_ds}\n")).unwrap();
    std::fs::write(
        base.join("root.hints"),
        ".\t3600000\tIN\tNS\ta.root-servers.test.\na.root-servers.test.\t3600000\tIN\tA\t10.53.0.1\n",
    )
    .unwrap();

    let mut root_d = Daemon::start_cmd(ns.cmd(BIN), &root);
    root_d.wait_for("ready");
    let mut child_d = Daemon::start_cmd(ns.cmd(BIN), &child);
    child_d.wait_for("ready");
    let mut unbounds = Vec::new();
    // A third Unbound trusts a root key that is not the root's: it must fail to validate,
    // so that the AD of the other two means something.
    let mut wrong = root_ds.clone();
    let last = wrong.pop().expect("a digest");
    wrong.push(if last == '0' { '1' } else { '0' });
    std::fs::write(base.join("wrong.ds"), format!("{wrong}\n")).unwrap();
    for (ip, tcp, anchor) in [
        ("10.53.0.3", false, "root.ds"),
        ("10.53.0.4", true, "root.ds"),
        ("10.53.0.5", false, "wrong.ds"),
    ] {
        let conf = unbound_conf(base, ip, tcp, anchor);
        let child = ns
            .cmd("unbound")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unbound runs (Debian unbound)");
        unbounds.push(Proc(child));
    }

    let nsd_dir = base.join("nsd");
    std::fs::create_dir_all(&nsd_dir).unwrap();
    let nsd_conf = format!(
        r#"server:
    ip-address: 10.53.0.6
    port: 53
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "{d}"
    pidfile: "{d}/nsd.pid"
    xfrdfile: "{d}/xfrd.state"
    xfrd-reload-timeout: 0
    xfrdir: "{d}"
    zonelistfile: "{d}/zone.list"
    database: ""
    logfile: "{d}/nsd.log"
remote-control:
    control-enable: no
zone:
    name: example.test
    zonefile: "example.test.zone"
    request-xfr: 10.53.0.2@53 NOKEY
    allow-notify: 10.53.0.0/24 NOKEY
    provide-xfr: 0.0.0.0/0 NOKEY
"#,
        d = nsd_dir.display()
    );
    std::fs::write(nsd_dir.join("nsd.conf"), nsd_conf).unwrap();
    let _nsd = Proc(
        ns.cmd("nsd")
            .args(["-d", "-c"])
            .arg(nsd_dir.join("nsd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nsd runs (Debian nsd)"),
    );
    let nsd_log = || std::fs::read_to_string(nsd_dir.join("nsd.log")).unwrap_or_default();

    // The control: with the wrong anchor, the same answer is bogus (SERVFAIL, no AD).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = dig(&ns, "10.53.0.5", &["mls.example.test.", "A"]);
        if d.status == "SERVFAIL" {
            assert!(!d.flags.iter().any(|f| f == "ad"));
            break;
        }
        assert!(Instant::now() < deadline, "wrong anchor, yet: {}", d.text);
        std::thread::sleep(Duration::from_millis(300));
    }

    // Before any swap: the primary's addresses, validated; over UDP and over TCP (both
    // between the client and Unbound, and between Unbound and detour).
    for r in ["10.53.0.3", "10.53.0.4"] {
        validated(
            &ns,
            r,
            "mls.example.test.",
            "A",
            "NOERROR",
            &["192.0.2.10", "192.0.2.11"],
            &[],
        );
        validated(
            &ns,
            r,
            "www.example.test.",
            "A",
            "NOERROR",
            &["192.0.2.10", "192.0.2.11"],
            &["+tcp"],
        );
        validated(&ns, r, "nope.example.test.", "A", "NXDOMAIN", &[], &[]);
        validated(
            &ns,
            r,
            "x.deep.a.b.example.test.",
            "A",
            "NXDOMAIN",
            &[],
            &["+tcp"],
        );
        validated(&ns, r, "mls.example.test.", "TXT", "NOERROR", &[], &[]);
        validated(&ns, r, "a.b.example.test.", "A", "NOERROR", &[], &[]);
        validated(&ns, r, "example.test.", "DNSKEY", "NOERROR", &[], &[]);
        validated(
            &ns,
            r,
            "mail.example.test.",
            "A",
            "NOERROR",
            &["192.0.2.25"],
            &[],
        );
    }

    // Swap to the DR address: mls down by an operator's override.
    let admin = |args: &[&str]| {
        let out = ns
            .cmd(BIN)
            .args(args)
            .arg("--config")
            .arg(&child)
            .env("USER", "tester")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    admin(&["override", "set", "mls", "down", "--reason", "DNSSEC test"]);
    for r in ["10.53.0.3", "10.53.0.4"] {
        validated(
            &ns,
            r,
            "mls.example.test.",
            "A",
            "NOERROR",
            &["192.0.2.20"],
            &[],
        );
        validated(
            &ns,
            r,
            "www.example.test.",
            "A",
            "NOERROR",
            &["192.0.2.20"],
            &["+tcp"],
        );
    }
    // The secondary follows (NOTIFY, then IXFR: the whole signed zone) and serves it signed.
    secondary_serves_signed(&ns, &["192.0.2.20"], &nsd_log);

    // Swap to the outage page: the DR down too.
    admin(&[
        "override",
        "set",
        "mls_dr",
        "down",
        "--reason",
        "DNSSEC test",
    ]);
    for r in ["10.53.0.3", "10.53.0.4"] {
        validated(
            &ns,
            r,
            "mls.example.test.",
            "A",
            "NOERROR",
            &["192.0.2.80"],
            &[],
        );
        validated(
            &ns,
            r,
            "www.example.test.",
            "A",
            "NOERROR",
            &["192.0.2.80"],
            &["+tcp"],
        );
        validated(&ns, r, "nope.example.test.", "A", "NXDOMAIN", &[], &[]);
        validated(&ns, r, "mls.example.test.", "AAAA", "NOERROR", &[], &[]);
    }
    secondary_serves_signed(&ns, &["192.0.2.80"], &nsd_log);

    // And back.
    admin(&["override", "clear", "mls"]);
    validated(
        &ns,
        "10.53.0.3",
        "mls.example.test.",
        "A",
        "NOERROR",
        &["192.0.2.10", "192.0.2.11"],
        &[],
    );
    // Zonemaster's DNSSEC test cases, from the same fake root: nothing above NOTICE.
    let out = ns
        .cmd("zonemaster-cli")
        .arg("example.test")
        .arg("--hints")
        .arg(base.join("root.hints"))
        .args([
            "--test",
            "DNSSEC",
            "--level",
            "INFO",
            "--raw",
            "--show-level",
            "--show-testcase",
            "--no-ipv6",
            "--no-progress",
        ])
        .output()
        .expect("zonemaster-cli runs (Debian zonemaster-cli)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let above: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["WARNING", "ERROR", "CRITICAL"]
                .iter()
                .any(|lvl| l.split_whitespace().any(|w| w == *lvl))
        })
        .collect();
    assert!(
        out.status.success() && above.is_empty(),
        "Zonemaster reported above NOTICE:\n{}\n---\n{text}\n{}",
        above.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("Zonemaster:\n{text}");
    drop(unbounds);
    drop(child_d);
    drop(root_d);
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_are_made_again_when_their_window_turns() {
    let s = Server::start(
        &page_config("", SERVICES),
        &[(
            "example.test.toml",
            &zone(
                "127.0.0.1",
                "signature_lifetime = \"1m\"\nsignature_refresh = \"10s\"",
            ),
        )],
    )
    .await;
    let sig = |m: &Message| {
        m.answers.iter().find_map(|r| match &r.data {
            RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(s)) => Some((
                s.input().sig_inception.get(),
                s.input().sig_expiration.get(),
            )),
            _ => None,
        })
    };
    let serial = |m: &Message| {
        m.answers.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
    };
    let (m, _) = udp(s.addr, &do_query("mls.example.test.", RecordType::A)).await;
    let (inception, expiration) = sig(&m).expect("signed");
    assert_eq!(
        expiration - inception,
        60 + 3600,
        "lifetime, plus an hour of clock skew"
    );
    let (m, _) = udp(s.addr, &do_query("example.test.", RecordType::SOA)).await;
    let first_serial = serial(&m).unwrap();
    // Within one refresh period (10 s) and a beat, the window turns.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (m, _) = udp(s.addr, &do_query("mls.example.test.", RecordType::A)).await;
        let (i, _) = sig(&m).expect("signed");
        if i > inception {
            assert_eq!((i - inception) % 10, 0);
            break;
        }
        assert!(Instant::now() < deadline, "not signed again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (m, _) = udp(s.addr, &do_query("example.test.", RecordType::SOA)).await;
    assert!(
        serial(&m).unwrap() > first_serial,
        "new signatures, new serial"
    );
    ldns_verify(&dig_axfr(s.addr), "after signing again");
}

/// Waits (20 s at most) for NSD on 10.53.0.6 to answer mls.example.test. with `want` and
/// its RRSIG, then checks an AXFR of NSD's copy with ldns-verify-zone.
fn secondary_serves_signed(ns: &Netns, want: &[&str], log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = dig(ns, "10.53.0.6", &["+norec", "mls.example.test.", "A"]);
        let mut got = d.answer.clone();
        got.sort();
        let signed = d
            .text
            .lines()
            .any(|l| l.split_whitespace().nth(3) == Some("RRSIG"));
        if got == want && signed && d.flags.iter().any(|f| f == "aa") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "NSD: wanted {want:?} signed, got {got:?}\n{}\nNSD log:\n{}",
            d.text,
            log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = ns
        .cmd("dig")
        .args(["@10.53.0.6", "example.test.", "AXFR", "+nocmd", "+nostats"])
        .output()
        .expect("dig runs");
    ldns_verify(&String::from_utf8_lossy(&out.stdout), "NSD's copy");
}

/// The tags of the DNSKEYs at `addr`, and of the key signing mls's A RRset.
async fn keys_at(addr: std::net::SocketAddr) -> (Vec<u16>, Vec<u16>) {
    use hickory_proto::dnssec::rdata::DNSSECRData;
    let (m, _) = udp(addr, &do_query("example.test.", RecordType::DNSKEY)).await;
    let mut tags: Vec<u16> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::DNSKEY(k)) => k.calculate_key_tag().ok(),
            _ => None,
        })
        .collect();
    tags.sort();
    let (m, _) = udp(addr, &do_query("mls.example.test.", RecordType::A)).await;
    let signers = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(s)) => Some(s.input().key_tag),
            _ => None,
        })
        .collect();
    (tags, signers)
}

#[tokio::test(flavor = "multi_thread")]
async fn zsk_rolls_over_by_itself_by_pre_publication() {
    // TTLs of 2 s and a 1 s propagation delay: the whole rollover takes seconds.
    let text = zone(
        "127.0.0.1",
        "signature_lifetime = \"1m\"\nsignature_refresh = \"10s\"\nzsk_lifetime = \"10s\"\npropagation_delay = \"1s\"",
    )
    .replace("ttl = 3600", "ttl = 2")
    .replace("ttl = 300", "ttl = 2")
    .replace("ttl  = 30", "ttl  = 2")
    .replace("minimum = 60", "minimum = 2");
    let s = Server::start(&page_config("", SERVICES), &[("example.test.toml", &text)]).await;
    let (first_keys, first_signer) = keys_at(s.addr).await;
    assert_eq!(first_keys.len(), 2);
    assert_eq!(first_signer.len(), 1);
    // Published: three DNSKEYs, the old ZSK still signing.
    let deadline = Instant::now() + Duration::from_secs(20);
    let new_zsk = loop {
        let (keys, signer) = keys_at(s.addr).await;
        if keys.len() == 3 {
            assert_eq!(signer, first_signer, "a published ZSK does not sign yet");
            ldns_verify(&dig_axfr(s.addr), "ZSK published");
            break *keys.iter().find(|k| !first_keys.contains(k)).unwrap();
        }
        assert!(Instant::now() < deadline, "no ZSK published: {keys:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Active: the new ZSK signs, the old one still in DNSKEY (retiring).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (keys, signer) = keys_at(s.addr).await;
        if signer == [new_zsk] {
            assert_eq!(keys.len(), 3, "the old ZSK stays published a while");
            ldns_verify(&dig_axfr(s.addr), "new ZSK signing");
            break;
        }
        assert!(Instant::now() < deadline, "new ZSK not signing: {signer:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Removed: two DNSKEYs, the KSK and the new ZSK.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (keys, _) = keys_at(s.addr).await;
        if keys.len() == 2 {
            assert!(keys.contains(&new_zsk));
            ldns_verify(&dig_axfr(s.addr), "old ZSK removed");
            break;
        }
        assert!(Instant::now() < deadline, "old ZSK not removed: {keys:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, out, _) = common::binary::cli(&s.fixture.config_path(), &["dnssec", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("ZSK {new_zsk:>5}  active")), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ksk_rolls_over_when_the_operator_says_the_ds_is_at_the_parent() {
    let s = Server::start(
        &page_config("", SERVICES),
        &[("example.test.toml", &zone("127.0.0.1", ""))],
    )
    .await;
    let config = s.fixture.config_path();
    let (_, old_ds) = ds_of(&config, "example.test.");
    let (first_keys, _) = keys_at(s.addr).await;
    let (code, out, err) = common::binary::cli(&config, &["dnssec", "ksk-roll", "example.test"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("published"), "{out}");
    let (code, _, err) = common::binary::cli(&config, &["dnssec", "ksk-roll", "example.test"]);
    assert_eq!(code, 2, "one rollover at a time");
    assert!(err.contains("already under way"), "{err}");
    // The daemon serves the new KSK within moments: three DNSKEYs, signed by both KSKs,
    // CDS naming the new one only; `dnssec ds` prints the new DS.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (keys, _) = keys_at(s.addr).await;
        if keys.len() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "new KSK not served: {keys:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (m, _) = udp(s.addr, &do_query("example.test.", RecordType::DNSKEY)).await;
    assert_eq!(
        sigs_over(&m.answers, RecordType::DNSKEY),
        2,
        "double signature"
    );
    let (_, new_ds) = ds_of(&config, "example.test.");
    assert_ne!(new_ds, old_ds);
    let (m, _) = udp(s.addr, &do_query("example.test.", RecordType::CDS)).await;
    assert_eq!(count(&m.answers, RecordType::CDS), 1);
    assert!(
        m.answers[0]
            .data
            .to_string()
            .starts_with(new_ds.split(' ').next().unwrap())
    );
    ldns_verify(&dig_axfr(s.addr), "KSK rollover under way");
    let (code, out, err) = common::binary::cli(&config, &["dnssec", "ksk-done", "example.test"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("retiring"), "{out}");
    let (code, out, _) = common::binary::cli(&config, &["dnssec", "status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("retiring") && out.contains("leaves DNSKEY at"),
        "{out}"
    );
    assert!(first_keys.len() == 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_fast_answers_are_the_general_paths_byte_for_byte() {
    use detour::dns::answer::{Client, Reply, general};
    use hickory_server::net::xfer::Protocol;
    for dnssec in ["", "algorithm = \"ed25519\"\ndenial = \"nsec\""] {
        let s = Server::start(
            &page_config("", SERVICES),
            &[("example.test.toml", &zone("127.0.0.1", dnssec))],
        )
        .await;
        let mut fast_signed = 0;
        for round in 0..2 {
            if round == 1 {
                // After a swap: the answers compiled again in part.
                force(&s, "mls", Some(Forced::Down)).await;
            }
            let snap = s.running.snapshots().load_full();
            let names = [
                "example.test.",
                "mls.example.test.",
                "MLS.Example.TEST.",
                "www.example.test.",
                "mail.example.test.",
                "ns1.example.test.",
                "deep.a.b.example.test.",
                "a.b.example.test.",
                "nope.example.test.",
                "branch.example.test.",
                "host.branch.example.test.",
            ];
            let types = [
                RecordType::A,
                RecordType::AAAA,
                RecordType::CNAME,
                RecordType::MX,
                RecordType::TXT,
                RecordType::NS,
                RecordType::SOA,
                RecordType::DNSKEY,
                RecordType::CDS,
                RecordType::CDNSKEY,
                RecordType::NSEC3PARAM,
                RecordType::DS,
                RecordType::ANY,
            ];
            for name in names {
                for t in types {
                    for (size, proto) in [
                        (1232, Protocol::Udp),
                        (512, Protocol::Udp),
                        (4096, Protocol::Tcp),
                    ] {
                        for dnssec_ok in [false, true] {
                            let mut q = query(name, t, Some(size));
                            q.edns.as_mut().unwrap().set_dnssec_ok(dnssec_ok);
                            let bytes = q.to_vec().unwrap();
                            let asker = Client {
                                src: "127.0.0.1:5300".parse().unwrap(),
                                protocol: proto,
                                now: 1_800_000_000,
                            };
                            let slow = match general(&snap, &bytes, &asker) {
                                Reply::Message(m) => m,
                                other => panic!("{other:?}"),
                            };
                            let mut quick = Vec::new();
                            if detour::dns::fast::answer(&snap, &bytes, &asker, &mut quick) {
                                assert_eq!(
                                    quick, slow,
                                    "{name} {t} DO={dnssec_ok} {size} {proto:?}: fast and general differ"
                                );
                                if dnssec_ok {
                                    fast_signed += 1;
                                    let m = Message::from_vec(&quick).unwrap();
                                    assert!(
                                        count(&m.answers, RecordType::RRSIG) > 0,
                                        "{name} {t}: a signed fast answer"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(
            fast_signed > 20,
            "the fast path answers DO queries: {fast_signed}"
        );
    }
}
