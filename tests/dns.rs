//! The DNS behaviour contract, checked with real queries over UDP and TCP against a detour
//! bound to 127.0.0.1 on an ephemeral port.

mod common;

use std::time::Duration;

use common::*;
use detour::overrides::Forced;
use detour::proto::cookie::Secret;
use hickory_server::proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::rdata::SOA;
use hickory_server::proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_server::proto::rr::{DNSClass, RData, Record, RecordType};
use tokio::net::TcpStream;

/// The serial of the SOA a reply answers with.
fn answer_serial(m: &Message) -> u32 {
    match &m.answers[0].data {
        RData::SOA(soa) => soa.serial,
        _ => panic!("SOA expected: {m:?}"),
    }
}

fn soa_in_authority(m: &Message) -> u32 {
    let soa: Vec<_> = m
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .collect();
    assert_eq!(soa.len(), 1, "exactly one SOA in authority: {m:?}");
    soa[0].ttl
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_authoritatively_over_udp_and_tcp() {
    let s = Server::standard().await;
    for reply in [
        udp(s.addr, &query("mls.example.test.", RecordType::A, None))
            .await
            .0,
        tcp(s.addr, &query("mls.example.test.", RecordType::A, None)).await,
    ] {
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative, "AA set");
        assert!(!reply.metadata.recursion_available, "RA clear");
        assert!(reply.metadata.recursion_desired, "RD copied");
        assert_eq!(a_values(&reply), vec!["127.0.0.10", "127.0.0.11"]);
        assert!(reply.answers.iter().all(|r| r.ttl == 30), "dynamic TTL");
        assert_eq!(reply.queries[0].name().to_string(), "mls.example.test.");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn names_are_case_insensitive_and_the_question_keeps_its_case() {
    let s = Server::standard().await;
    let (reply, _) = udp(s.addr, &query("MlS.ExAmple.TEST.", RecordType::A, None)).await;
    assert_eq!(a_values(&reply), vec!["127.0.0.10", "127.0.0.11"]);
    assert_eq!(reply.queries[0].name().to_string(), "MlS.ExAmple.TEST.");
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_names_outside_served_zones() {
    let s = Server::standard().await;
    for q in ["example.com.", "test.", "."] {
        let (reply, _) = udp(s.addr, &query(q, RecordType::A, None)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused, "{q}");
        assert!(reply.answers.is_empty());
        assert!(!reply.metadata.recursion_available);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nxdomain_and_nodata_carry_the_soa_with_the_negative_ttl() {
    let s = Server::standard().await;
    let (nx, _) = udp(s.addr, &query("nope.example.test.", RecordType::A, None)).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    // SOA TTL 300, minimum 60: negative answers use min(TTL, minimum) (RFC 2308).
    assert_eq!(soa_in_authority(&nx), 60);

    let (nodata, _) = udp(s.addr, &query("mls.example.test.", RecordType::MX, None)).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(soa_in_authority(&nodata), 60);

    // An empty non-terminal exists: NODATA, not NXDOMAIN.
    let (ent, _) = udp(s.addr, &query("a.b.example.test.", RecordType::A, None)).await;
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    assert_eq!(soa_in_authority(&ent), 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_zone_cnames_are_followed_and_loops_are_bounded() {
    let s = Server::standard().await;
    let (reply, _) = udp(s.addr, &query("www.example.test.", RecordType::A, None)).await;
    assert_eq!(reply.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(a_values(&reply), vec!["127.0.0.10", "127.0.0.11"]);

    // A CNAME query gets the CNAME alone.
    let (reply, _) = udp(s.addr, &query("www.example.test.", RecordType::CNAME, None)).await;
    assert_eq!(reply.answers.len(), 1);

    let (reply, _) = udp(s.addr, &query("loop1.example.test.", RecordType::A, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(
        reply.answers.len() <= 9,
        "chain bounded: {}",
        reply.answers.len()
    );
    assert!(reply.answers.len() >= 2);

    // A chain that leaves our zones stops there; the resolver follows it.
    let (reply, _) = udp(s.addr, &query("out.example.test.", RecordType::A, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1);
    assert!(reply.metadata.authoritative);
}

#[tokio::test(flavor = "multi_thread")]
async fn edns_is_echoed_and_udp_answers_are_capped_at_1232() {
    let s = Server::standard().await;
    let (reply, _) = udp(
        s.addr,
        &query("mls.example.test.", RecordType::A, Some(4096)),
    )
    .await;
    let edns = reply.edns.expect("OPT in reply to an EDNS query");
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(edns.version(), 0);

    let (reply, _) = udp(s.addr, &query("mls.example.test.", RecordType::A, None)).await;
    assert!(reply.edns.is_none(), "no OPT without EDNS in the query");
}

fn big_txt_zone() -> String {
    // 30 TXT records of 60 bytes: about 2 KB, more than 1232 and 512.
    let mut recs = String::new();
    for i in 0..30 {
        recs.push_str(&format!(
            "  {{ name = \"big\", type = \"TXT\", value = \"{i:02}-{}\" }},\n",
            "x".repeat(57)
        ));
    }
    // 8 records: between 512 and 1232 bytes.
    for i in 0..8 {
        recs.push_str(&format!(
            "  {{ name = \"mid\", type = \"TXT\", value = \"{i:02}-{}\" }},\n",
            "y".repeat(77)
        ));
    }
    recs.push_str(&format!(
        "  {{ name = \"long\", type = \"TXT\", value = \"{}\" }},\n",
        "z".repeat(600)
    ));
    big_zone("", &recs)
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_udp_answers_are_truncated_and_complete_over_tcp() {
    let s = Server::start(&config_toml(""), &[("big.toml", &big_txt_zone())]).await;
    // No EDNS: 512 bytes at most.
    let (reply, len) = udp(s.addr, &query("mid.big.test.", RecordType::TXT, None)).await;
    assert!(reply.metadata.truncation, "TC set without EDNS");
    assert!(len <= 512);
    // EDNS 1232: fits.
    let (reply, len) = udp(s.addr, &query("mid.big.test.", RecordType::TXT, Some(1232))).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 8);
    assert!(len > 512 && len <= 1232, "{len}");
    // EDNS 4096 asked, but detour caps UDP at 1232.
    let (reply, len) = udp(s.addr, &query("big.big.test.", RecordType::TXT, Some(4096))).await;
    assert!(reply.metadata.truncation, "TC above the 1232 cap");
    assert!(len <= 1232, "{len}");
    assert!(reply.edns.is_some(), "OPT kept in a truncated reply");
    // TCP: the whole RRset.
    let reply = tcp(s.addr, &query("big.big.test.", RecordType::TXT, Some(4096))).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn long_txt_values_are_split_into_255_byte_strings() {
    let s = Server::start(&config_toml(""), &[("big.toml", &big_txt_zone())]).await;
    let reply = tcp(s.addr, &query("long.big.test.", RecordType::TXT, None)).await;
    let RData::TXT(txt) = &reply.answers[0].data else {
        panic!("TXT expected")
    };
    let parts: Vec<usize> = txt.txt_data.iter().map(|p| p.len()).collect();
    assert_eq!(parts, vec![255, 255, 90]);
}

#[tokio::test(flavor = "multi_thread")]
async fn any_is_answered_minimally() {
    let s = Server::standard().await;
    let (reply, _) = udp(s.addr, &query("example.test.", RecordType::ANY, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(!reply.answers.is_empty());
    let first = reply.answers[0].record_type();
    assert!(
        reply.answers.iter().all(|r| r.record_type() == first),
        "one RRset only (RFC 8482): {:?}",
        reply.answers
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delegations_are_referrals_with_glue_and_aa_clear() {
    let s = Server::standard().await;
    for q in ["branch.example.test.", "host.deep.branch.example.test."] {
        let (reply, _) = udp(s.addr, &query(q, RecordType::A, None)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "{q}");
        assert!(!reply.metadata.authoritative, "AA clear on a referral");
        assert!(reply.answers.is_empty());
        assert_eq!(reply.authorities.len(), 1);
        assert_eq!(reply.authorities[0].record_type(), RecordType::NS);
        assert_eq!(reply.additionals.len(), 1, "glue: {:?}", reply.additionals);
        assert_eq!(
            reply.additionals[0].name.to_string(),
            "ns.branch.example.test."
        );
    }
    // DS at the cut belongs to the parent: authoritative NODATA.
    let (reply, _) = udp(s.addr, &query("branch.example.test.", RecordType::DS, None)).await;
    assert!(reply.metadata.authoritative);
    assert_eq!(soa_in_authority(&reply), 60);
    // A CNAME into the delegation: the CNAME, then the referral.
    let (reply, _) = udp(
        s.addr,
        &query("into-branch.example.test.", RecordType::A, None),
    )
    .await;
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(reply.authorities[0].record_type(), RecordType::NS);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_static_type_is_served() {
    let s = Server::standard().await;
    let cases = [
        ("example.test.", RecordType::SOA),
        ("example.test.", RecordType::NS),
        ("example.test.", RecordType::MX),
        ("example.test.", RecordType::TXT),
        ("example.test.", RecordType::CAA),
        ("_sip._tcp.example.test.", RecordType::SRV),
        ("10.2.0.192.in-addr.example.test.", RecordType::PTR),
        ("ns2.example.test.", RecordType::AAAA),
        ("ns1.example.test.", RecordType::A),
        ("www.example.test.", RecordType::CNAME),
    ];
    for (q, t) in cases {
        let reply = tcp(s.addr, &query(q, t, None)).await;
        assert!(
            reply.answers.iter().any(|r| r.record_type() == t),
            "{q} {t}: {reply:?}"
        );
    }
    // A TXT value written as quoted strings is served as those strings.
    let (reply, _) = udp(s.addr, &query("two.example.test.", RecordType::TXT, None)).await;
    match &reply.answers[0].data {
        hickory_server::proto::rr::RData::TXT(t) => assert_eq!(
            t.txt_data.iter().map(|b| b.to_vec()).collect::<Vec<_>>(),
            vec![b"hello benchmark".to_vec(), b"second \"string\"".to_vec()]
        ),
        other => panic!("{other:?}"),
    }
    // NS and MX answers carry in-zone addresses as additional data.
    let (reply, _) = udp(s.addr, &query("example.test.", RecordType::MX, None)).await;
    assert!(
        reply
            .additionals
            .iter()
            .any(|r| r.name.to_string() == "mail.example.test.")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcards_synthesise_the_query_name() {
    let s = Server::standard().await;
    let (reply, _) = udp(
        s.addr,
        &query("anything.wild.example.test.", RecordType::A, None),
    )
    .await;
    assert_eq!(a_values(&reply), vec!["192.0.2.77"]);
    assert_eq!(
        reply.answers[0].name.to_string(),
        "anything.wild.example.test."
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_longest_matching_zone_answers() {
    let s = Server::standard().await;
    let (reply, _) = udp(
        s.addr,
        &query("host.sub.example.test.", RecordType::A, None),
    )
    .await;
    assert_eq!(a_values(&reply), vec!["192.0.2.1"]);
    let (reply, _) = udp(
        s.addr,
        &query("nope.sub.example.test.", RecordType::A, None),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        reply.authorities[0].name.to_string(),
        "sub.example.test.",
        "the sub-zone's SOA"
    );
}

/// A query for `mls.example.test. A` carrying `cookie` as its COOKIE option.
fn with_cookie(cookie: &[u8]) -> Message {
    let mut m = query("mls.example.test.", RecordType::A, Some(1232));
    m.edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(10, cookie.to_vec()));
    m
}

/// The COOKIE option data of a reply, if it has one.
fn cookie_of(m: &Message) -> Option<Vec<u8>> {
    match m.edns.as_ref()?.options().get(EdnsCode::Cookie)? {
        EdnsOption::Unknown(_, data) => Some(data.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_cookies_are_answered_over_udp_and_tcp() {
    // Two servers sharing a cookie secret (an anycast pair), and one with cookies off.
    let shared = "cookie_secret = \"e5e973e5a6b2a43f48e7dc849e37bfcf\"\n";
    let zones = [("example.test.toml", TEST_ZONE)];
    let a = Server::start(&config_toml(shared), &zones).await;
    let b = Server::start(&config_toml(shared), &zones).await;
    let off = Server::start(&config_toml("cookies = false\n"), &zones).await;
    let client = [0x5a; 8];

    // A client cookie alone gets a Server Cookie: version 1, reserved zero, our time.
    let (reply, _) = udp(a.addr, &with_cookie(&client)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 2);
    let got = cookie_of(&reply).expect("a COOKIE in the answer");
    assert_eq!(got.len(), 24);
    assert_eq!(got[..8], client, "the client cookie echoed");
    assert_eq!(got[8..12], [1, 0, 0, 0]);
    let issued = u32::from_be_bytes(got[12..16].try_into().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert!(now.abs_diff(issued) <= 2, "issued {issued}, now {now}");

    // A cookie either server of the pair issued ten minutes ago, sent to either, over UDP
    // or TCP: valid, so echoed as it is (a fresh one would carry today's time).
    let secret = Secret::from_hex("e5e973e5a6b2a43f48e7dc849e37bfcf").unwrap();
    let local = a.addr.ip();
    let older = secret.answer(&client, local, now - 600).unwrap().to_vec();
    for addr in [a.addr, b.addr] {
        assert_eq!(
            cookie_of(&udp(addr, &with_cookie(&older)).await.0),
            Some(older.clone())
        );
        assert_eq!(
            cookie_of(&tcp(addr, &with_cookie(&older)).await),
            Some(older.clone())
        );
    }
    // Forty minutes old: still valid, but renewed (RFC 9018 §4.3).
    let stale = secret.answer(&client, local, now - 2400).unwrap().to_vec();
    let renewed = cookie_of(&udp(a.addr, &with_cookie(&stale)).await.0).unwrap();
    assert_ne!(renewed, stale);
    assert!(secret.valid(&renewed[..8], &renewed[8..], local, now));
    // A forged or damaged server cookie is not ours: answered anyway, with a fresh one.
    let mut forged = got.clone();
    forged[20] ^= 0xff;
    let (reply, _) = udp(a.addr, &with_cookie(&forged)).await;
    assert_eq!(reply.answers.len(), 2);
    let fresh = cookie_of(&reply).unwrap();
    assert_eq!(fresh[..8], client);
    assert_ne!(fresh, forged);
    // Through the general path too (a chain out of our zones, which is never compiled
    // ahead), and in a negative answer.
    let mut out = with_cookie(&client);
    out.queries[0] = Query::query(name("out.example.test."), RecordType::A);
    let (reply, _) = udp(a.addr, &out).await;
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(cookie_of(&reply).unwrap()[..8], client);
    let mut nx = with_cookie(&client);
    nx.queries[0] = Query::query(name("nope.example.test."), RecordType::A);
    let (reply, _) = udp(a.addr, &nx).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(cookie_of(&reply).unwrap()[..8], client);

    // Malformed lengths (RFC 7873 §5.2.2) get FORMERR, over UDP and TCP.
    for bad in [&[1u8; 5][..], &[1u8; 12][..], &[1u8; 41][..]] {
        let (reply, _) = udp(a.addr, &with_cookie(bad)).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::FormErr,
            "{}",
            bad.len()
        );
        assert!(cookie_of(&reply).is_none());
        let reply = tcp(a.addr, &with_cookie(bad)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    }

    // A query without a question asks for a cookie (RFC 7873 §5.4): NOERROR with one; with
    // a server cookie that is not ours, BADCOOKIE (extended RCODE 23) with a fresh one.
    let bare = |cookie: &[u8]| {
        let mut m = with_cookie(cookie);
        m.queries.clear();
        m
    };
    let (reply, _) = udp(a.addr, &bare(&client)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.queries.is_empty() && reply.answers.is_empty());
    assert_eq!(cookie_of(&reply).unwrap()[..8], client);
    let (reply, _) = udp(a.addr, &bare(&older)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    let (reply, _) = udp(a.addr, &bare(&forged)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::BADCOOKIE);
    let fresh = cookie_of(&reply).unwrap();
    assert!(secret.valid(&fresh[..8], &fresh[8..], local, now));

    // An option cut short (a cookie's length says 8, 3 bytes follow): FORMERR (RFC 6891),
    // with cookies on or off, never an answer as if the OPT had no options.
    let mut raw = query("mls.example.test.", RecordType::A, Some(1232))
        .to_vec()
        .unwrap();
    let n = raw.len();
    raw[n - 2..].copy_from_slice(&7u16.to_be_bytes());
    raw.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3]);
    for addr in [a.addr, off.addr] {
        let reply = udp_raw(addr, &raw, Duration::from_secs(2))
            .await
            .expect("an answer");
        assert_eq!(reply[3] & 0x0f, 1, "FORMERR");
    }

    // With cookies off, a cookie is ignored (RFC 7873 §5.2.1: as if not implemented), even
    // a malformed one; so is a query without a question.
    for sent in [&client[..], &[1u8; 12][..]] {
        let (reply, _) = udp(off.addr, &with_cookie(sent)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 2);
        assert!(reply.edns.is_some() && cookie_of(&reply).is_none());
    }
    let (reply, _) = udp(off.addr, &bare(&client)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

    // Without cookie_secret, the secret made at start survives a reload: a cookie from
    // before it is echoed after it (a second later, so a new one would differ).
    let plain = Server::start(&config_toml(""), &zones).await;
    let mine = cookie_of(&udp(plain.addr, &with_cookie(&client)).await.0).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    plain.running.reload().await.expect("reload");
    assert_eq!(
        cookie_of(&udp(plain.addr, &with_cookie(&mine)).await.0),
        Some(mine)
    );

    // BIND's dig, which sends a client cookie by default, finds its cookie in the answer.
    let port = a.addr.port().to_string();
    let out = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port,
            "mls.example.test",
            "+tries=1",
            "+time=2",
        ])
        .output()
        .expect("dig is installed (bind9-dnsutils; .ci/run installs it)");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("; COOKIE: ") && l.ends_with("(good)")),
        "{out}"
    );
    // And its question-less query for a cookie (`+header-only`).
    let out = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port,
            "+header-only",
            "+tries=1",
            "+time=2",
        ])
        .output()
        .expect("dig runs");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("status: NOERROR") && out.contains("(good)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn badvers_other_classes_and_opcodes() {
    let s = Server::standard().await;
    let mut m = query("mls.example.test.", RecordType::A, Some(1232));
    m.edns.as_mut().unwrap().set_version(1);
    let (reply, _) = udp(s.addr, &m).await;
    // BADVERS and BADSIG share code 16; hickory's parser names it BADSIG.
    assert_eq!(u16::from(reply.metadata.response_code), 16, "BADVERS");
    assert_eq!(reply.edns.as_ref().map(|e| e.version()), Some(0));

    let (reply, _) = udp(
        s.addr,
        &query_class("mls.example.test.", RecordType::A, DNSClass::CH),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);

    let mut m = query("example.test.", RecordType::SOA, None);
    m.metadata.op_code = OpCode::Update;
    let (reply, _) = udp(s.addr, &m).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_and_runt_packets_are_dropped() {
    let s = Server::standard().await;
    let mut m = query("mls.example.test.", RecordType::A, None);
    m.metadata.message_type = hickory_server::proto::op::MessageType::Response;
    let bytes = m.to_vec().unwrap();
    assert_eq!(
        udp_raw(s.addr, &bytes, Duration::from_millis(500)).await,
        None,
        "QR=1 dropped"
    );
    assert_eq!(
        udp_raw(s.addr, &[1, 2, 3], Duration::from_millis(300)).await,
        None
    );
    // Still answering.
    udp(s.addr, &query("mls.example.test.", RecordType::A, None)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_garbled_question_gets_formerr() {
    let s = Server::standard().await;
    let mut bytes = query("mls.example.test.", RecordType::A, None)
        .to_vec()
        .unwrap();
    bytes.truncate(20); // header plus half a name
    let raw = udp_raw(s.addr, &bytes, Duration::from_secs(2))
        .await
        .expect("a reply");
    assert_eq!(raw[..2], bytes[..2], "id copied");
    assert_eq!(raw[2] & 0x80, 0x80, "QR set");
    assert_eq!(raw[3] & 0x0f, 1, "FORMERR");
}

#[tokio::test(flavor = "multi_thread")]
async fn zone_transfers_only_over_tcp_from_listed_sources() {
    let s = Server::standard().await;
    // UDP: refused.
    let (reply, _) = udp(s.addr, &query("example.test.", RecordType::AXFR, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());
    // The sub-zone lists no sources: refused over TCP too.
    let msgs = axfr(s.addr, &query("sub.example.test.", RecordType::AXFR, None)).await;
    assert_eq!(msgs[0].metadata.response_code, ResponseCode::Refused);
    assert!(msgs[0].answers.is_empty());
    // Listed: the whole zone between two SOAs; IXFR gets the same.
    for t in [RecordType::AXFR, RecordType::IXFR] {
        let msgs = axfr(s.addr, &query("example.test.", t, None)).await;
        let records: Vec<_> = msgs.iter().flat_map(|m| m.answers.iter()).collect();
        assert_eq!(records.first().unwrap().record_type(), RecordType::SOA);
        assert_eq!(records.last().unwrap().record_type(), RecordType::SOA);
        assert!(
            records
                .iter()
                .any(|r| r.name.to_string() == "mls.example.test.")
        );
        // 2 NS, 18 static records, 2 dynamic values, 2 SOA.
        assert_eq!(records.len(), 2 + 18 + 2 + 2, "{t}");
    }
}

/// An IXFR query from a secondary holding `serial`.
fn ixfr(serial: u32) -> Message {
    let mut q = query("example.test.", RecordType::IXFR, None);
    let soa = SOA::new(
        name("ns1.example.test."),
        name("h.example.test."),
        serial,
        0,
        0,
        0,
        0,
    );
    q.add_authority(Record::from_rdata(
        name("example.test."),
        0,
        RData::SOA(soa),
    ));
    q
}

/// A transfer's records in order, shortened to what tells them apart: `SOA <serial>` or
/// `<name> <type> <ttl> <value>`.
async fn transfer_lines(s: &Server, q: &Message) -> Vec<String> {
    let m = tcp(s.addr, q).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::SOA(soa) => format!("SOA {}", soa.serial),
            d => format!("{} {} {} {d}", r.name, r.record_type(), r.ttl),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ixfr_sends_what_changed_since_the_secondarys_serial() {
    let s = Server::standard().await;
    let serial = |lines: &[String]| -> u32 { lines[0][4..].parse().unwrap() };
    let s0 = serial(&transfer_lines(&s, &ixfr(1)).await);
    // Current: the SOA alone.
    assert_eq!(transfer_lines(&s, &ixfr(s0)).await, [format!("SOA {s0}")]);

    // An operator takes mls down, then a reload changes only a TTL (which must change the
    // serial too: hickory's record equality ignores TTLs).
    force(&s, "mls", Some(Forced::Down)).await;
    let s1 = serial(&transfer_lines(&s, &ixfr(s0)).await);
    write(
        &s.fixture.zone_path("example.test.toml"),
        &TEST_ZONE.replace(
            r#"{ name = "mail",  type = "A",     value = "192.0.2.25" }"#,
            r#"{ name = "mail",  type = "A",     value = "192.0.2.25", ttl = 60 }"#,
        ),
    );
    s.running.reload().await.expect("reload");
    let lines = transfer_lines(&s, &ixfr(s0)).await;
    let s2 = serial(&lines);
    assert!(s0 < s1 && s1 < s2, "{s0} {s1} {s2}");
    assert_eq!(
        lines,
        [
            format!("SOA {s2}"),
            format!("SOA {s0}"),
            "mls.example.test. A 30 127.0.0.10".into(),
            "mls.example.test. A 30 127.0.0.11".into(),
            format!("SOA {s1}"),
            "mls.example.test. A 30 127.0.0.80".into(),
            format!("SOA {s1}"),
            "mail.example.test. A 3600 192.0.2.25".into(),
            format!("SOA {s2}"),
            "mail.example.test. A 60 192.0.2.25".into(),
            format!("SOA {s2}"),
        ]
    );
    // From the middle: the last change only.
    assert_eq!(
        transfer_lines(&s, &ixfr(s1)).await[1..4],
        [
            format!("SOA {s1}"),
            "mail.example.test. A 3600 192.0.2.25".into(),
            format!("SOA {s2}"),
        ]
    );
    // A serial the journal never saw: the whole zone, as AXFR sends it.
    let whole = transfer_lines(&s, &ixfr(s0 - 1000)).await;
    assert_eq!(whole.len(), 2 + 18 + 1 + 2, "{whole:?}");
    assert_eq!(whole.first(), whole.last());

    // Over UDP, the SOA alone (RFC 1995 §2): "ask again over TCP". From a source the zone
    // does not list, REFUSED, as over TCP.
    let (m, _) = udp(s.addr, &ixfr(s0)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
    assert!(matches!(&m.answers[0].data, RData::SOA(soa) if soa.serial == s2));
    let mut sub = ixfr(1);
    sub.queries[0].set_name(name("sub.example.test."));
    let (m, _) = udp(s.addr, &sub).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_never_serves_an_older_serial() {
    // Changes faster than one a second run the serial ahead of the clock; a restart must
    // continue above it, or secondaries holding the higher serial would ignore it.
    let s = Server::standard().await;
    let soa_serial = |addr| async move {
        answer_serial(
            &udp(addr, &query("example.test.", RecordType::SOA, None))
                .await
                .0,
        )
    };
    let clock = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32
    };
    // Flips until the serial is 5 ahead of the clock (at most 200: a slow machine needs more).
    for i in 0..200 {
        if soa_serial(s.addr).await > clock() + 5 {
            break;
        }
        force(&s, "mls", (i % 2 == 0).then_some(Forced::Down)).await;
    }
    let before = soa_serial(s.addr).await;
    assert!(
        before > clock() + 5,
        "the serial {before} ran ahead of the clock"
    );
    // serials.json reserves above what is served (safe against a crash, where no shutdown
    // writes anything), and a few more flips inside the reservation do not write it again.
    let serials = s.fixture.dir.path().join("state/serials.json");
    let reserved = || {
        let text = std::fs::read_to_string(&serials).unwrap();
        serde_json::from_str::<std::collections::BTreeMap<String, u32>>(&text).unwrap()["example.test."]
    };
    let ceiling = reserved();
    assert!(ceiling > before, "reserved {ceiling}, serving {before}");
    let written = std::fs::metadata(&serials).unwrap().modified().unwrap();
    for i in 0..3 {
        force(&s, "mls", (i % 2 == 0).then_some(Forced::Down)).await;
    }
    let before = soa_serial(s.addr).await;
    assert!(before < ceiling);
    assert_eq!(reserved(), ceiling);
    assert_eq!(
        std::fs::metadata(&serials).unwrap().modified().unwrap(),
        written
    );
    let Server {
        fixture, running, ..
    } = s;
    running.shutdown().await.unwrap();
    let running = detour::daemon::start(fixture.load(), &fixture.config_path())
        .await
        .unwrap();
    let after = soa_serial(running.dns_addrs()[0]).await;
    assert!(after > before, "{after} after a restart, {before} before");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zone_removed_and_added_again_comes_back_with_a_higher_serial() {
    let s = Server::standard().await;
    let q = query("sub.example.test.", RecordType::SOA, None);
    let first = answer_serial(&udp(s.addr, &q).await.0);
    let path = s.fixture.zone_path("sub.toml");
    std::fs::remove_file(&path).unwrap();
    s.running.reload().await.expect("reload without the zone");
    let (m, _) = udp(s.addr, &q).await;
    assert_ne!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    write(&path, SUB_ZONE);
    s.running.reload().await.expect("reload with it again");
    let again = answer_serial(&udp(s.addr, &q).await.0);
    assert!(
        again > first,
        "{again} after {first}: a secondary still holding {first} would ignore it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dynamic_answer_holds_each_address_once() {
    // Written twice (once in capitals): one record, in answers and in transfers alike, so an
    // IXFR never deletes what a secondary holds once and AXFR sends twice.
    let zone = TEST_ZONE.to_string()
        + "\n[[dynamic]]\nname = \"v6\"\ntype = \"AAAA\"\nanswers = [ { if_up = \"mls\", values = [\"2001:db8::1\", \"2001:DB8::1\", \"2001:db8::2\"] } ]\notherwise = [\"2001:db8::80\"]\n";
    let s = Server::start(&config_toml(""), &[("example.test.toml", &zone)]).await;
    let (m, _) = udp(s.addr, &query("v6.example.test.", RecordType::AAAA, None)).await;
    assert_eq!(m.answers.len(), 2, "{m:?}");
    let lines = transfer_lines(&s, &ixfr(1)).await;
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("v6.example.test."))
            .count(),
        2,
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_zones_transfer_in_several_messages() {
    let mut recs = String::new();
    for i in 0..3000 {
        recs.push_str(&format!(
            "  {{ name = \"host{i}\", type = \"A\", value = \"10.0.{}.{}\" }},\n",
            i / 256,
            i % 256
        ));
    }
    let zone = big_zone("allow_transfer = [\"127.0.0.0/8\"]\n", &recs);
    let s = Server::start(&config_toml(""), &[("big.toml", &zone)]).await;
    let msgs = axfr(s.addr, &query("big.test.", RecordType::AXFR, None)).await;
    assert!(msgs.len() > 1, "several messages");
    let total: usize = msgs.iter().map(|m| m.answers.len()).sum();
    assert_eq!(total, 3000 + 1 + 2);
    assert!(msgs.iter().all(|m| !m.metadata.truncation));
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_pipelined_queries_are_answered_in_order() {
    let s = Server::standard().await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let qs = [
        query("mls.example.test.", RecordType::A, None),
        query("nope.example.test.", RecordType::A, None),
        query("example.test.", RecordType::MX, None),
    ];
    let mut all = Vec::new();
    for q in &qs {
        let b = q.to_vec().unwrap();
        all.extend_from_slice(&(b.len() as u16).to_be_bytes());
        all.extend_from_slice(&b);
    }
    tokio::io::AsyncWriteExt::write_all(&mut stream, &all)
        .await
        .unwrap();
    for q in &qs {
        let r = Message::from_vec(&tcp_recv(&mut stream).await.unwrap()).unwrap();
        assert_eq!(r.metadata.id, q.metadata.id);
    }

    // A long burst (more than one read's worth) written in odd-sized pieces that split
    // length prefixes and queries, fast-path and general-path questions mixed.
    let names = ["mls.example.test.", "nope.example.test.", "EXAMPLE.test."];
    let mut all = Vec::new();
    let mut ids = Vec::new();
    for i in 0..1200u16 {
        let mut q = query(names[usize::from(i) % 3], RecordType::A, None);
        q.metadata.id = i;
        ids.push(i);
        let b = q.to_vec().unwrap();
        all.extend_from_slice(&(b.len() as u16).to_be_bytes());
        all.extend_from_slice(&b);
    }
    assert!(all.len() > 40_000);
    let writer = async {
        for piece in all.chunks(7) {
            tokio::io::AsyncWriteExt::write_all(&mut stream, piece)
                .await
                .unwrap();
        }
        stream
    };
    let mut stream = writer.await;
    for id in ids {
        let r = Message::from_vec(&tcp_recv(&mut stream).await.unwrap()).unwrap();
        assert_eq!(r.metadata.id, id);
        assert_eq!(r.queries[0].name().to_ascii(), names[usize::from(id) % 3]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_client_that_stops_reading_is_dropped_at_the_idle_timeout() {
    // 30 TXT records of 2000 bytes: every answer is about 60 KB.
    let mut recs = String::new();
    for i in 0..30 {
        recs.push_str(&format!(
            "  {{ name = \"huge\", type = \"TXT\", value = \"{i:02}-{}\" }},\n",
            "h".repeat(1997)
        ));
    }
    let zone = big_zone("", &recs);
    let s = Server::start(
        &config_toml("tcp_idle_timeout = \"300ms\""),
        &[("big.toml", &zone)],
    )
    .await;
    // 400 queries: about 24 MB of answers, more than loopback's socket buffers hold.
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let mut all = Vec::new();
    for _ in 0..400 {
        let b = query("huge.big.test.", RecordType::TXT, None)
            .to_vec()
            .unwrap();
        all.extend_from_slice(&(b.len() as u16).to_be_bytes());
        all.extend_from_slice(&b);
    }
    tokio::io::AsyncWriteExt::write_all(&mut stream, &all)
        .await
        .unwrap();
    // Read nothing for a while: the server's writes stall, and it gives up on the client.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut answers = 0;
    while let Some(m) = tcp_recv(&mut stream).await {
        assert!(m.len() > 50_000);
        answers += 1;
    }
    assert!(answers > 0, "some answers were sent before the stall");
    assert!(
        answers < 400,
        "the server kept writing to a client that did not read"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_trickling_in_does_not_hold_a_tcp_connection_past_the_idle_timeout() {
    let s = Server::start(
        &config_toml("tcp_idle_timeout = \"300ms\""),
        &[("example.test.toml", TEST_ZONE)],
    )
    .await;
    let stream = TcpStream::connect(s.addr).await.unwrap();
    let (mut rx, mut tx) = stream.into_split();
    let b = query("mls.example.test.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let mut framed = (b.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&b);
    // One byte every 100 ms: the whole query would take over three seconds.
    let trickle = tokio::spawn(async move {
        for byte in framed.iter().take(framed.len() - 1) {
            if tokio::io::AsyncWriteExt::write_all(&mut tx, &[*byte])
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Closed by the server (end of stream or reset) while the bytes still trickle in.
    let mut one = [0u8; 1];
    let r = tokio::time::timeout(
        Duration::from_millis(2500),
        tokio::io::AsyncReadExt::read(&mut rx, &mut one),
    )
    .await;
    trickle.abort();
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_tcp_connections_time_out() {
    let s = Server::start(
        &config_toml("tcp_idle_timeout = \"300ms\""),
        &[("example.test.toml", TEST_ZONE)],
    )
    .await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(tcp_recv(&mut stream).await, None, "closed by the server");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_idle_tcp_connections_does_not_lock_out_new_clients_or_udp() {
    let s = Server::start(
        &config_toml("tcp_max_connections = 8"),
        &[("example.test.toml", TEST_ZONE)],
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // New clients still get answers over TCP, and UDP is unaffected.
    for _ in 0..3 {
        tcp(s.addr, &query("mls.example.test.", RecordType::A, None)).await;
    }
    udp(s.addr, &query("mls.example.test.", RecordType::A, None)).await;
    // The oldest idle connections were closed to make room.
    assert_eq!(tcp_recv(&mut idle[0]).await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_ipv6_listeners() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; skipping");
        return;
    }
    let cfg = config_toml("").replace("[\"127.0.0.1:0\"]", "[\"[::1]:0\"]");
    let s = Server::start(&cfg, &[("example.test.toml", TEST_ZONE)]).await;
    assert!(s.addr.is_ipv6());
    let sock = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let q = query("mls.example.test.", RecordType::A, None);
    sock.send_to(&q.to_vec().unwrap(), s.addr).await.unwrap();
    let mut buf = vec![0; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a_values(&Message::from_vec(&buf[..n]).unwrap()).len(), 2);
    let reply = tcp(s.addr, &q).await;
    assert_eq!(a_values(&reply).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_serial_rises_only_when_a_zone_changes() {
    let s = Server::standard().await;
    let q = query("example.test.", RecordType::SOA, None);
    let first = answer_serial(&udp(s.addr, &q).await.0);
    let sub_first = answer_serial(
        &udp(s.addr, &query("sub.example.test.", RecordType::SOA, None))
            .await
            .0,
    );

    // Reload with nothing changed: same serial.
    s.running.reload().await.expect("reload");
    assert_eq!(answer_serial(&udp(s.addr, &q).await.0), first);

    // Change one zone: its serial goes up, the other's does not.
    let changed = TEST_ZONE.replace("192.0.2.25", "192.0.2.26");
    write(&s.fixture.zone_path("example.test.toml"), &changed);
    s.running.reload().await.expect("reload");
    let second = answer_serial(&udp(s.addr, &q).await.0);
    assert!(second > first, "{second} > {first}");
    assert_eq!(
        answer_serial(
            &udp(s.addr, &query("sub.example.test.", RecordType::SOA, None))
                .await
                .0
        ),
        sub_first
    );
    let (reply, _) = udp(s.addr, &query("mail.example.test.", RecordType::A, None)).await;
    assert_eq!(a_values(&reply), vec!["192.0.2.26"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_reload_keeps_the_old_snapshot_serving() {
    let s = Server::standard().await;
    write(
        &s.fixture.zone_path("example.test.toml"),
        &TEST_ZONE.replace("value = \"192.0.2.25\"", "value = \"not-an-ip\""),
    );
    let errors = s.running.reload().await.expect_err("invalid zone rejected");
    let text = errors.to_string();
    assert!(text.contains("example.test.toml:"), "{text}");
    assert!(text.contains("invalid A value \"not-an-ip\""), "{text}");
    let (reply, _) = udp(s.addr, &query("mail.example.test.", RecordType::A, None)).await;
    assert_eq!(a_values(&reply), vec!["192.0.2.25"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_packets_never_stop_the_server() {
    let s = Server::standard().await;
    let valid = query("mls.example.test.", RecordType::A, Some(1232))
        .to_vec()
        .unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Bounded: 3000 random packets and every truncation of a valid one, over UDP.
    for i in 0..3000 {
        let len = (rand::random::<u16>() % 600) as usize;
        let mut p: Vec<u8> = (0..len).map(|_| rand::random()).collect();
        if i % 3 == 0 && p.len() > 5 {
            // Keep a plausible header so parsing goes deeper.
            p[2] = 0;
            p[4] = 0;
            p[5] = 1;
        }
        sock.send_to(&p, s.addr).await.unwrap();
    }
    for cut in 0..valid.len() {
        sock.send_to(&valid[..cut], s.addr).await.unwrap();
    }
    // Bit flips of a valid query.
    for i in 0..valid.len() * 8 {
        let mut p = valid.clone();
        p[i / 8] ^= 1 << (i % 8);
        sock.send_to(&p, s.addr).await.unwrap();
    }
    // And over TCP: garbage, a truncated frame, a length that lies.
    for junk in [
        vec![0u8, 3, 1, 2, 3],
        vec![0xff, 0xff, 1, 2],
        valid[..10].to_vec(),
    ] {
        let mut st = TcpStream::connect(s.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut st, &junk)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (reply, _) = udp(s.addr, &query("mls.example.test.", RecordType::A, None)).await;
    assert_eq!(a_values(&reply).len(), 2);
    let reply = tcp(s.addr, &query("mls.example.test.", RecordType::A, None)).await;
    assert_eq!(a_values(&reply).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_answer_engine_never_panics_on_mutated_queries() {
    // Straight into the engine, so a panic fails the test instead of killing one worker.
    // Signed seeds too: mutations reach TSIG parsing, verification and signing.
    use detour::dns::answer::{Client, Reply, respond};
    use detour::proto::tsig::Key;
    use hickory_server::net::xfer::Protocol;
    let secret = b"0123456789abcdef0123456789abcdef".to_vec();
    let s = Server::start(
        &config_toml(
            "\n[tsig.xfr-key]\nsecret = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\n",
        ),
        &[("example.test.toml", TEST_ZONE), ("sub.toml", SUB_ZONE)],
    )
    .await;
    let snap = s.running.snapshots().load_full();
    let src: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let signed = |mut m: Message, key: &str| {
        Key::new(name(key), "hmac-sha256", secret.clone())
            .unwrap()
            .sign_request(&mut m)
            .unwrap();
        m
    };
    let seeds: Vec<Vec<u8>> = [
        query("mls.example.test.", RecordType::A, Some(1232)),
        query("www.example.test.", RecordType::ANY, None),
        query("example.test.", RecordType::AXFR, None),
        query("host.branch.example.test.", RecordType::A, Some(512)),
        signed(query("example.test.", RecordType::AXFR, None), "xfr-key."),
        signed(
            query("example.test.", RecordType::SOA, Some(1232)),
            "xfr-key.",
        ),
        signed(query("mls.example.test.", RecordType::A, None), "stranger."),
        // A client and a server cookie; a malformed cookie in a signed query.
        with_cookie(&[&[5u8; 8][..], &[1, 0, 0, 0], &[9u8; 12]].concat()),
        signed(with_cookie(&[1u8; 12]), "xfr-key."),
    ]
    .iter()
    .map(|m| m.to_vec().unwrap())
    .collect();
    // The signed seeds are answered as such before any mutation; the malformed cookie gets
    // FORMERR, signed (the signature is good, so the error is authenticated).
    let formerr =
        Message::from_vec(
            &match respond(&snap, &seeds[8], &Client::new(src, Protocol::Udp)) {
                Reply::Message(m) => m,
                other => panic!("{other:?}"),
            },
        )
        .unwrap();
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
    assert!(formerr.signature().is_some_and(|t| t.data.error.is_none()));
    for (seed, want) in [(4, "stream"), (5, "signed"), (6, "badkey"), (8, "signed")] {
        let got = match respond(&snap, &seeds[seed], &Client::new(src, Protocol::Tcp)) {
            Reply::Stream(ms) if ms.len() == 1 => "stream",
            Reply::Message(m) => match Message::from_vec(&m).unwrap().signature() {
                Some(t) if t.data.error.is_some() => "badkey",
                Some(_) => "signed",
                None => "unsigned",
            },
            _ => "other",
        };
        assert_eq!(got, want, "seed {seed}");
    }
    let mut answered = 0;
    for round in 0..20_000u32 {
        let mut p = seeds[round as usize % seeds.len()].clone();
        let flips = 1 + rand::random::<u8>() % 4;
        for _ in 0..flips {
            let i = rand::random::<u32>() as usize % p.len();
            p[i] = rand::random();
        }
        if round % 5 == 0 {
            p.truncate(rand::random::<u32>() as usize % (p.len() + 1));
        }
        for proto in [Protocol::Udp, Protocol::Tcp] {
            if let Reply::Message(m) = respond(&snap, &p, &Client::new(src, proto)) {
                assert!(m.len() >= 12);
                if proto == Protocol::Udp {
                    assert!(m.len() <= 1232);
                }
                answered += 1;
            }
        }
    }
    assert!(
        answered > 10_000,
        "most mutated queries get a reply: {answered}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_and_swaps_drop_no_query() {
    let s = Server::standard().await;
    let addr = s.addr;
    // A client asking over and over (bounded: 2,000 queries) while the config reloads.
    let asker = tokio::spawn(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut answered = 0;
        for i in 0..2000u16 {
            let mut q = query("mls.example.test.", RecordType::A, None);
            q.metadata.id = i;
            sock.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await;
            let (n, _) = got.expect("an answer for every query").unwrap();
            let m = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(m.metadata.id, i);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert_eq!(a_values(&m).len(), 2, "never a half-built answer");
            answered += 1;
        }
        answered
    });
    let zone = s.fixture.zone_path("example.test.toml");
    for i in 0..10 {
        write(
            &zone,
            &TEST_ZONE.replace("192.0.2.25", &format!("192.0.2.{}", 100 + i)),
        );
        s.running.reload().await.expect("reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(asker.await.unwrap(), 2000);
}
