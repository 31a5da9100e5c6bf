//! Response-rate limiting (`[server.rrl]`) against a real detour on loopback: bursts of UDP
//! queries from one source are cut to the rate, every `slip`-th limited answer truncated;
//! other sources, TCP and queries with a valid Server Cookie are served all the same.
//!
//! Every burst is bounded (a few dozen datagrams, a few seconds at most), and the bounds
//! asserted follow from the time the burst actually took, so a slow machine (which lets
//! buckets refill during a burst) does not fail them.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::RecordType;
use hickory_server::proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use tokio::net::UdpSocket;

/// Queries per burst.
const BURST: usize = 60;

fn lo(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// A server for the test zone and its sub-zone; `rrl` is the inline `[server.rrl]` table.
async fn server(rrl: &str) -> Server {
    Server::start(
        &config_toml(&format!("rrl = {{ {rrl} }}")),
        &[("example.test.toml", TEST_ZONE), ("sub.toml", SUB_ZONE)],
    )
    .await
}

/// What came back for a burst.
#[derive(Debug, Default)]
struct Burst {
    /// Whole answers (TC clear), by response code.
    full: Vec<ResponseCode>,
    /// Truncated answers (TC set, no records): slipped.
    truncated: usize,
    /// No answer within a second of the last query.
    silent: usize,
    /// From the first query sent to the last whole answer received: every whole answer
    /// was let through within this window.
    window: Duration,
}

/// Sends `queries` from the loopback address `from` as fast as the socket takes them, then
/// collects the answers until a second after the last query (or all have come).
async fn burst(to: SocketAddr, from: IpAddr, queries: &[Message]) -> Burst {
    let sock = UdpSocket::bind(SocketAddr::new(from, 0))
        .await
        .expect("bind");
    let mut pending: HashMap<u16, &Message> = HashMap::new();
    let start = Instant::now();
    for q in queries {
        pending.insert(q.metadata.id, q);
        sock.send_to(&q.to_vec().expect("encode"), to)
            .await
            .expect("send");
    }
    assert_eq!(pending.len(), queries.len(), "query ids are distinct");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut got = Burst::default();
    let mut buf = vec![0u8; 65535];
    while !pending.is_empty() {
        let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await
        else {
            break;
        };
        let reply = Message::from_vec(&buf[..n]).expect("a parsable answer");
        let Some(q) = pending.remove(&reply.metadata.id) else {
            panic!("an answer to no query, or twice: {reply:?}");
        };
        assert_eq!(reply.queries, q.queries, "the question is echoed");
        if reply.metadata.truncation {
            assert!(
                reply.answers.is_empty() && reply.authorities.is_empty(),
                "a slipped answer carries no records: {reply:?}"
            );
            got.truncated += 1;
        } else {
            got.full.push(reply.metadata.response_code);
            got.window = start.elapsed();
        }
    }
    got.silent = pending.len();
    got
}

/// `n` queries for `qname` `qtype`, each with its own id.
fn same(qname: &str, qtype: RecordType, n: usize) -> Vec<Message> {
    numbered((0..n).map(|_| query(qname, qtype, None)).collect())
}

/// Gives the queries ids 1, 2, ... (random ones could repeat within a burst).
fn numbered(mut queries: Vec<Message>) -> Vec<Message> {
    for (i, q) in queries.iter_mut().enumerate() {
        q.metadata.id = i as u16 + 1;
    }
    queries
}

/// The most whole answers a bucket of `rate` lets through in `window`: one second's worth
/// at once, then `rate` a second (and one for rounding).
fn most(rate: usize, window: Duration) -> usize {
    rate + (rate as f64 * window.as_secs_f64()).ceil() as usize + 1
}

/// Asserts that `b` is what a bucket of `rate` with `slip = 2` makes of a burst of
/// [`BURST`] queries: at least `rate` whole answers and no more than the window allows,
/// and of the rest, every second one truncated, the others dropped.
fn limited_with_slip_2(b: &Burst, rate: usize) {
    let full = b.full.len();
    assert!(
        full >= rate && full <= most(rate, b.window),
        "{full} whole answers in {:?} at {rate}/s: {b:?}",
        b.window
    );
    let limited = BURST - full;
    assert_eq!(b.truncated + b.silent, limited, "{b:?}");
    assert!(
        b.truncated.abs_diff(limited / 2) <= 1,
        "every second limited answer is truncated: {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_identical_queries_is_cut_to_the_rate_and_every_second_one_slipped() {
    // /32: 127.0.0.1 and 127.0.0.2 are different sources.
    let s = server("rate = 5, slip = 2, ipv4_prefix = 32").await;
    let dropped = metric(&["detour_dns_rrl_dropped_total"]);
    let slipped = metric(&["detour_dns_rrl_slipped_total"]);
    let b = burst(
        s.addr,
        lo(1),
        &same("mls.example.test.", RecordType::A, BURST),
    )
    .await;
    limited_with_slip_2(&b, 5);
    assert!(b.full.iter().all(|&c| c == ResponseCode::NoError), "{b:?}");
    // Right after: another source is served in full, and so is the limited one over TCP.
    let other = burst(s.addr, lo(2), &same("mls.example.test.", RecordType::A, 3)).await;
    assert_eq!(other.full.len(), 3, "{other:?}");
    let m = query("mls.example.test.", RecordType::A, None);
    assert_eq!(
        a_values(&tcp(s.addr, &m).await),
        ["127.0.0.10", "127.0.0.11"]
    );
    // Counted (the counters are process-wide: other tests may add to them).
    assert!(metric(&["detour_dns_rrl_dropped_total"]) - dropped >= b.silent as f64);
    assert!(metric(&["detour_dns_rrl_slipped_total"]) - slipped >= b.truncated as f64);
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_is_served_while_a_udp_flood_is_limited() {
    let s = server("rate = 2, slip = 0").await;
    // A flood from the /24 of 127.0.0.1, in bounded rounds, while TCP queries are asked.
    let flood = async {
        let mut silent = 0;
        for _ in 0..5 {
            silent += burst(
                s.addr,
                lo(1),
                &same("mls.example.test.", RecordType::A, BURST),
            )
            .await
            .silent;
        }
        silent
    };
    let asks = async {
        let mut answered = 0;
        for _ in 0..10 {
            let m = query("mls.example.test.", RecordType::A, None);
            if !a_values(&tcp(s.addr, &m).await).is_empty() {
                answered += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        answered
    };
    let (silent, answered) = tokio::join!(flood, asks);
    assert_eq!(answered, 10, "every TCP query is answered");
    assert!(silent >= 200, "the UDP flood was limited: {silent} dropped");
}

/// A query for `mls.example.test. A` with `cookie` as its COOKIE option.
fn with_cookie(cookie: &[u8]) -> Message {
    let mut m = query("mls.example.test.", RecordType::A, Some(1232));
    if let Some(e) = m.edns.as_mut() {
        e.options_mut()
            .insert(EdnsOption::Unknown(10, cookie.to_vec()));
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_with_a_valid_server_cookie_are_never_limited() {
    let s = server("rate = 5, slip = 2").await;
    // Learn a Server Cookie from a first answer, from the address the burst comes from.
    let sock = UdpSocket::bind(SocketAddr::new(lo(3), 0)).await.unwrap();
    sock.send_to(&with_cookie(&[7; 8]).to_vec().unwrap(), s.addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    let cookie = match reply
        .edns
        .as_ref()
        .and_then(|e| e.options().get(EdnsCode::Cookie))
    {
        Some(EdnsOption::Unknown(_, data)) => data.clone(),
        other => panic!("no cookie in the answer: {other:?}"),
    };
    assert_eq!(cookie.len(), 24, "client and server cookie");
    let exempt = metric(&["detour_dns_rrl_exempt_total"]);
    // The burst with it: every answer whole.
    let queries = numbered((0..BURST).map(|_| with_cookie(&cookie)).collect());
    let b = burst(s.addr, lo(3), &queries).await;
    assert_eq!(b.full.len(), BURST, "{b:?}");
    assert!(
        metric(&["detour_dns_rrl_exempt_total"]) - exempt >= (BURST - most(5, b.window)) as f64
    );
    // The same burst without it, at once: limited (the cookie was what made the difference).
    let b = burst(
        s.addr,
        lo(3),
        &same("mls.example.test.", RecordType::A, BURST),
    )
    .await;
    assert!(b.full.len() < BURST / 2, "{b:?}");
    // A cookie sent from another address (a forger who saw it) does not count.
    let b = burst(s.addr, lo(4), &queries).await;
    assert!(b.full.len() < BURST / 2, "{b:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nxdomain_for_random_names_shares_one_bucket_per_zone_and_errors_one_per_source() {
    let s = server("rate = 5, slip = 2").await;
    let random = |zone: &str| -> Vec<Message> {
        numbered(
            (0..BURST)
                .map(|i| {
                    let label: u32 = rand::random();
                    query(&format!("r{label:x}-{i}.{zone}"), RecordType::A, None)
                })
                .collect(),
        )
    };
    let b = burst(s.addr, lo(5), &random("example.test.")).await;
    limited_with_slip_2(&b, 5);
    assert!(b.full.iter().all(|&c| c == ResponseCode::NXDomain), "{b:?}");
    // Another zone has its own bucket: answered at once.
    let sub = burst(
        s.addr,
        lo(5),
        &numbered(random("sub.example.test.")[..3].to_vec()),
    )
    .await;
    assert_eq!(sub.full, [ResponseCode::NXDomain; 3], "{sub:?}");
    // Names outside every zone: REFUSED, one "error" bucket for the source.
    let b = burst(s.addr, lo(6), &random("elsewhere.invalid.")).await;
    limited_with_slip_2(&b, 5);
    assert!(b.full.iter().all(|&c| c == ResponseCode::Refused), "{b:?}");
    // Positive answers to the same source are not in the error bucket.
    let ok = burst(s.addr, lo(6), &same("ns1.example.test.", RecordType::A, 3)).await;
    assert_eq!(ok.full, [ResponseCode::NoError; 3], "{ok:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_0_limits_nothing() {
    let s = server("rate = 0, slip = 1").await;
    let b = burst(
        s.addr,
        lo(7),
        &same("mls.example.test.", RecordType::A, BURST),
    )
    .await;
    assert_eq!(b.full.len(), BURST, "{b:?}");
    // And the default is off.
    let s = Server::standard().await;
    let b = burst(
        s.addr,
        lo(7),
        &same("mls.example.test.", RecordType::A, BURST),
    )
    .await;
    assert_eq!(b.full.len(), BURST, "{b:?}");
}
