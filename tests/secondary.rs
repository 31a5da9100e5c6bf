//! A real secondary: NSD transfers detour's zone (AXFR over TCP), and detour's NOTIFY makes
//! it follow changes (a reload, a health-driven swap) within moments, not its refresh time;
//! the same with TSIG, where NSD requires every transfer and NOTIFY signed. Knot, requiring
//! TSIG too, transfers a zone of many messages and follows NOTIFY; BIND's `dig` checks the
//! signatures of such a transfer, and the refusals.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use detour::overrides::Forced;
use hickory_server::proto::rr::RecordType;

/// A secondary's process, killed when the test ends however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    // A port free for both UDP and TCP.
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

async fn a_at(addr: SocketAddr, name: &str) -> Option<Vec<String>> {
    let q = query(name, RecordType::A, None);
    let raw = udp_raw(addr, &q.to_vec().unwrap(), Duration::from_millis(300)).await?;
    let m = hickory_server::proto::op::Message::from_vec(&raw).ok()?;
    Some(a_values(&m))
}

async fn wait_for(addr: SocketAddr, name: &str, want: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if a_at(addr, name).await.as_deref().is_some_and(|v| v == want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{name} at {addr}: wanted {want:?}, got {:?}",
            a_at(addr, name).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 1,000 more records for a zone's `records`: a transfer of several messages.
fn many_records() -> String {
    (0..1000)
        .map(|i| {
            format!(
                "  {{ name = \"h{i}\", type = \"A\", value = \"192.0.2.{}\" }},\n",
                i % 250 + 1
            )
        })
        .collect()
}

/// The path of the daemon `bin` from Debian package `package` (which .ci/run installs).
fn installed(bin: &str, package: &str) -> String {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|d| format!("{d}/{bin}"))
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("{bin} is installed (Debian package {package}; .ci/run installs it)")
        })
}

/// The key both sides know in the TSIG tests.
const KEY: &str = "xfr-key";

/// A fresh random secret, base64, as `tsig-keygen` would print it.
fn new_secret() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

#[tokio::test(flavor = "multi_thread")]
async fn nsd_transfers_the_zone_and_follows_notify() {
    nsd_follows(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nsd_requiring_tsig_transfers_the_zone_and_follows_signed_notify() {
    nsd_follows(Some(new_secret())).await;
}

/// NSD as secondary of detour's example.test; with `secret`, both sides require the key
/// for transfers and NOTIFY (NSD drops an unsigned NOTIFY and a badly signed transfer).
async fn nsd_follows(secret: Option<String>) {
    let nsd_bin = installed("nsd", "nsd");
    let nsd_port = free_port();
    let mut zone = TEST_ZONE.replace(
        "allow_transfer = [\"127.0.0.1\"]",
        &format!("allow_transfer = [\"127.0.0.1\"]\nalso_notify = [\"127.0.0.1:{nsd_port}\"]"),
    );
    let mut extra = String::new();
    let (mut nsd_key, mut key_ref) = (String::new(), "NOKEY".to_string());
    if let Some(secret) = &secret {
        zone = zone.replace(
            "allow_transfer =",
            &format!("transfer_key = \"{KEY}\"\nallow_transfer ="),
        );
        extra = format!("\n[tsig.{KEY}]\nsecret = \"{secret}\"\n");
        nsd_key = format!(
            "key:\n    name: {KEY}\n    algorithm: hmac-sha256\n    secret: \"{secret}\"\n"
        );
        key_ref = KEY.to_string();
    }
    let s = Server::start(&config_toml(&extra), &[("example.test.toml", &zone)]).await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = format!(
        r#"server:
    ip-address: 127.0.0.1
    port: {nsd_port}
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "{d}"
    pidfile: "{d}/nsd.pid"
    xfrdfile: "{d}/xfrd.state"
    # NSD waits this long before serving a transfer (default 1 s): a failover should not.
    xfrd-reload-timeout: 0
    xfrdir: "{d}"
    zonelistfile: "{d}/zone.list"
    database: ""
    logfile: "{d}/nsd.log"
    verbosity: 2
remote-control:
    control-enable: no
{nsd_key}zone:
    name: example.test
    zonefile: "example.test.zone"
    request-xfr: AXFR 127.0.0.1@{} {key_ref}
    allow-notify: 127.0.0.1 {key_ref}
"#,
        s.addr.port()
    );
    std::fs::write(dir.path().join("nsd.conf"), conf).unwrap();
    let _nsd = Daemon(
        Command::new(nsd_bin)
            .args(["-d", "-c"])
            .arg(dir.path().join("nsd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nsd"),
    );
    let nsd: SocketAddr = format!("127.0.0.1:{nsd_port}").parse().unwrap();
    let log = || std::fs::read_to_string(dir.path().join("nsd.log")).unwrap_or_default();

    // The first transfer: NSD asks for the zone as soon as it starts.
    let start = Instant::now();
    while a_at(nsd, "mail.example.test.").await.as_deref() != Some(&["192.0.2.25".to_string()][..])
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "NSD never loaded the zone:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        a_at(nsd, "mls.example.test.").await.unwrap(),
        ["127.0.0.10", "127.0.0.11"],
        "the dynamic record's current answer is transferred"
    );

    // A reload changes the zone: NOTIFY brings NSD along (its refresh would take an hour).
    write(
        &s.fixture.zone_path("example.test.toml"),
        &zone.replace("192.0.2.25", "192.0.2.26"),
    );
    s.running.reload().await.unwrap();
    let took = wait_for(
        nsd,
        "mail.example.test.",
        &["192.0.2.26"],
        Duration::from_secs(10),
    )
    .await;
    assert!(took < Duration::from_secs(10));

    // A swap (an operator takes mls down): the secondary answers the outage page too.
    force(&s, "mls", Some(Forced::Down)).await;
    wait_for(
        nsd,
        "mls.example.test.",
        &["127.0.0.80"],
        Duration::from_secs(10),
    )
    .await;
    assert!(
        log().contains("notify"),
        "NSD logged the NOTIFY:\n{}",
        log()
    );
    // NSD acknowledged each NOTIFY (signed, with the key), and detour accepted the answers.
    let sent = |result: &str| {
        metric(&[
            "detour_dns_notify_total{",
            &format!("target=\"{nsd}\""),
            &format!("result=\"{result}\""),
        ])
    };
    let start = Instant::now();
    while sent("acknowledged") < 2.0 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sent("acknowledged") >= 2.0 && sent("failed") == 0.0);
}

/// Runs `dig` (BIND's, which checks TSIG on every message of a transfer) and returns its
/// output.
fn dig(args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["+time=5", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is installed (bind9-dnsutils; .ci/run installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_transfers_verify_message_by_message_and_the_rest_are_refused() {
    let secret = new_secret();
    // The transfer takes several messages, each signed over the last. Two keys are good
    // for it (a rotation: `next`, an HMAC-SHA1 key of an older secondary, is coming in);
    // `other` is a key of the config, not the zone's.
    let zone = TEST_ZONE
        .replace("records = [\n", &format!("records = [\n{}", many_records()))
        .replace(
            "allow_transfer =",
            &format!("transfer_keys = [\"{KEY}\", \"next\"]\nallow_transfer ="),
        );
    let (other, next) = (new_secret(), new_secret());
    let extra = format!(
        "\n[tsig.{KEY}]\nsecret = \"{secret}\"\n[tsig.other]\nsecret = \"{other}\"\nalgorithm = \"hmac-sha512\"\n[tsig.next]\nsecret = \"{next}\"\nalgorithm = \"hmac-sha1\"\n"
    );
    let s = Server::start(&config_toml(&extra), &[("example.test.toml", &zone)]).await;
    let at = format!("@{}", s.addr.ip());
    let port = s.addr.port().to_string();
    let axfr = |key: Option<String>| {
        let mut args = vec![at.clone(), "-p".into(), port.clone()];
        if let Some(k) = key {
            args.extend(["-y".into(), k]);
        }
        args.extend(["example.test".into(), "AXFR".into()]);
        dig(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let good = axfr(Some(format!("hmac-sha256:{KEY}:{secret}")));
    assert!(
        !good.contains("Couldn't verify"),
        "a signature failed:\n{good}"
    );
    let messages: usize = good
        .lines()
        .find_map(|l| l.split("messages ").nth(1))
        .and_then(|t| t.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no XFR size line:\n{good}"));
    assert!(messages >= 3, "the transfer fits in {messages} message(s)");
    assert_eq!(
        good.lines().filter(|l| l.contains("\tTSIG\t")).count(),
        messages,
        "every message carries a TSIG:\n{good}"
    );
    assert!(good.contains("h999.example.test."), "the whole zone came");
    let rotated = axfr(Some(format!("hmac-sha1:next:{next}")));
    assert!(
        rotated.contains("h999.example.test.") && !rotated.contains("Couldn't verify"),
        "the zone's second key works too:\n{rotated}"
    );
    assert_eq!(
        rotated
            .lines()
            .filter(|l| l.contains("\tTSIG\thmac-sha1."))
            .count(),
        messages,
        "every message is signed with HMAC-SHA1:\n{rotated}"
    );

    // Unsigned, signed with another good key, with a wrong secret, with an unknown key.
    let unsigned = axfr(None);
    assert!(
        unsigned.contains("Transfer failed") && !unsigned.contains("h999"),
        "{unsigned}"
    );
    let other_key = axfr(Some(format!("hmac-sha512:other:{other}")));
    assert!(other_key.contains("Transfer failed"), "{other_key}");
    assert!(
        !other_key.contains("Couldn't verify"),
        "the refusal is signed: {other_key}"
    );
    let bad_sig = axfr(Some(format!("hmac-sha256:{KEY}:{}", new_secret())));
    assert!(
        bad_sig.contains("BADSIG") && !bad_sig.contains("h999"),
        "{bad_sig}"
    );
    let bad_key = axfr(Some(format!("hmac-sha256:stranger:{secret}")));
    assert!(
        bad_key.contains("BADKEY") && !bad_key.contains("h999"),
        "{bad_key}"
    );

    // A signed ordinary query (a secondary's SOA check) gets a signed answer over UDP.
    let soa = dig(&[
        &at,
        "-p",
        &port,
        "-y",
        &format!("hmac-sha256:{KEY}:{secret}"),
        "example.test",
        "SOA",
        "+norec",
    ]);
    assert!(
        soa.contains("status: NOERROR") && soa.contains("TSIG PSEUDOSECTION"),
        "{soa}"
    );
    assert!(!soa.contains("Couldn't verify"), "{soa}");

    // What the operator sees: transfers by result, TSIG failures by kind.
    let xfr = ["detour_transfers_total{", "zone=\"example.test.\""];
    assert!(metric(&[xfr[0], xfr[1], "result=\"axfr\""]) >= 1.0);
    assert!(metric(&[xfr[0], xfr[1], "result=\"refused\""]) >= 2.0);
    assert!(metric(&["detour_tsig_errors_total{", "error=\"badsig\""]) >= 1.0);
    assert!(metric(&["detour_tsig_errors_total{", "error=\"badkey\""]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn knot_requiring_tsig_transfers_a_many_message_zone_and_follows_notify() {
    let knotd = installed("knotd", "knot");
    let secret = new_secret();
    let knot_port = free_port();
    let zone = TEST_ZONE
        .replace("records = [\n", &format!("records = [\n{}", many_records()))
        .replace(
            "allow_transfer =",
            &format!("transfer_key = \"{KEY}\"\nalso_notify = [\"127.0.0.1:{knot_port}\"]\nallow_transfer ="),
        );
    let extra = format!("\n[tsig.{KEY}]\nsecret = \"{secret}\"\nalgorithm = \"hmac-sha384\"\n");
    let s = Server::start(&config_toml(&extra), &[("example.test.toml", &zone)]).await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = format!(
        r#"server:
    listen: 127.0.0.1@{knot_port}
    rundir: "{d}"
log:
  - target: "{d}/knot.log"
    any: info
database:
    storage: "{d}"
key:
  - id: {KEY}
    algorithm: hmac-sha384
    secret: {secret}
remote:
  - id: primary
    address: 127.0.0.1@{}
    key: {KEY}
acl:
  - id: from_primary
    address: 127.0.0.1
    key: {KEY}
    action: notify
template:
  - id: default
    storage: "{d}"
    # Keep changes in the journal instead of rewriting the zone file after each one
    # (the default, which makes Knot serve a change ~0.6 s later here).
    zonefile-sync: -1
zone:
  - domain: example.test
    master: primary
    acl: from_primary
"#,
        s.addr.port()
    );
    std::fs::write(dir.path().join("knot.conf"), conf).unwrap();
    let _knot = Daemon(
        Command::new(knotd)
            .arg("-c")
            .arg(dir.path().join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start knotd"),
    );
    let knot: SocketAddr = format!("127.0.0.1:{knot_port}").parse().unwrap();
    let log = || std::fs::read_to_string(dir.path().join("knot.log")).unwrap_or_default();

    let start = Instant::now();
    while a_at(knot, "h999.example.test.")
        .await
        .is_none_or(|v| v.is_empty())
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "Knot never loaded the zone:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Knot says how many messages the transfer took; each was checked against the key.
    let messages: usize = log()
        .lines()
        .filter(|l| l.contains("AXFR, incoming") && l.contains("finished"))
        .find_map(|l| {
            l.split(" messages")
                .next()?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no finished transfer in Knot's log:\n{}", log()));
    assert!(messages >= 3, "the transfer took {messages} message(s)");

    // An operator takes mls down: the signed NOTIFY brings Knot along at once.
    force(&s, "mls", Some(Forced::Down)).await;
    wait_for(
        knot,
        "mls.example.test.",
        &["127.0.0.80"],
        Duration::from_secs(10),
    )
    .await;
    // Knot asked for the change alone (IXFR) and got it, not the zone again.
    let ixfr = log()
        .lines()
        .filter(|l| l.contains("IXFR, incoming") && l.contains("finished"))
        .count();
    assert!(ixfr >= 1 && !log().contains("AXFR-style"), "{}", log());
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_transfer_messages_still_fit_a_tcp_frame() {
    // TXT records sized so that messages of 256 of them (one per 256 records) grow by
    // about 8 bytes each, across the last ~150 bytes a TCP frame holds: signing must not push
    // one past 65,535 bytes. In the k-th run of 256 records, 8k are one byte longer.
    let recs: String = (0..5120)
        .map(|i| {
            let len = 232 + usize::from(i % 256 < 8 * (i / 256));
            format!(
                "  {{ name = \"t{i:04}\", type = \"TXT\", value = \"{}\" }},\n",
                "x".repeat(len)
            )
        })
        .collect();
    let secret = new_secret();
    let zone = big_zone(
        &format!("allow_transfer = [\"127.0.0.1\"]\ntransfer_key = \"{KEY}\"\n"),
        &recs,
    );
    let extra = format!("\n[tsig.{KEY}]\nsecret = \"{secret}\"\n");
    let s = Server::start(&config_toml(&extra), &[("big.toml", &zone)]).await;
    let snap = s.running.snapshots().load_full();

    let key = detour::proto::tsig::Key::new(
        hickory_server::proto::rr::Name::from_ascii(KEY).unwrap(),
        "hmac-sha256",
        {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(&secret)
                .unwrap()
        },
    )
    .unwrap();
    let mut q = query("big.test.", RecordType::AXFR, None);
    key.sign_request(&mut q).unwrap();
    let raw = q.to_vec().unwrap();
    let src: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let detour::dns::answer::Reply::Stream(msgs) = detour::dns::answer::general(
        &snap,
        &raw,
        &detour::dns::answer::Client::new(src, hickory_server::net::xfer::Protocol::Tcp),
    ) else {
        panic!("a transfer");
    };
    let longest = msgs.iter().map(Vec::len).max().unwrap();
    assert!(longest <= 65_535, "a {longest}-byte message");
    // Some chunks of 256 had to be split because of the signature: more messages than 20.
    assert!(msgs.len() > 5120 / 256 + 1, "{} messages", msgs.len());
    let records: usize = msgs
        .iter()
        .map(|m| {
            hickory_server::proto::op::Message::from_vec(m)
                .unwrap()
                .answers
                .len()
        })
        .sum();
    assert_eq!(records, 5120 + 1 + 2);
}
