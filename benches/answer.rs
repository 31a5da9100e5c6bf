//! The answer engine alone, without sockets: nanoseconds per query for the fast path and
//! for the general (hickory) path, on the anchors' zone and query mix
//! (`bench/anchors/`, `../shared/bench-anchors/queries/example.test.txt`).
//!
//! `cargo bench --bench answer` prints, per path, the median of 15 rounds of 200,000
//! queries each, and the ratio; then the same mix with a client cookie on every EDNS query
//! (as BIND resolvers send), answered with a Server Cookie; then the listener path with
//! response-rate limiting on at a rate no bucket reaches (every answer keyed, hashed and
//! counted, none limited: what RRL costs legitimate traffic). Rounds are bounded in count;
//! nothing is sent anywhere.
//! Under `cargo test --all-targets` (no `--bench` argument) it runs one short round as a
//! smoke test.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use detour::config::{Config, Rrl};
use detour::dns::answer::{Client, Reply, general};
use detour::dns::fast;
use detour::dns::rrl::{Limiter, Outcome};
use detour::incidents::Incidents;
use detour::states::{Engine, snapshot_of};
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Message, Query};
use hickory_server::proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_server::proto::rr::{Name, RecordType};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, per_round) = if full { (15, 200_000) } else { (1, 2_000) };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Arc::new(
        Config::load(&root.join("bench/anchors/detour.toml")).expect("bench/anchors config"),
    );
    let engine = Engine::new(config.clone(), None, Utc::now());
    let snap = snapshot_of(
        config,
        engine.health(),
        Arc::new(Incidents::default()),
        None,
        0,
    );

    // The anchors' query mix, half of it with EDNS (as resolvers send).
    let mix =
        std::fs::read_to_string(root.join("../shared/bench-anchors/queries/example.test.txt"))
            .unwrap_or_else(|_| "www.example.test A\nnx1.example.test A\nexample.test MX\n".into());
    let mut queries = Vec::new();
    let mut cookied = Vec::new();
    for (i, line) in mix.lines().enumerate() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(t)) = (parts.next(), parts.next()) else {
            continue;
        };
        let mut m = Message::query();
        m.metadata.id = i as u16;
        m.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            t.parse::<RecordType>().expect("type"),
        ));
        if i % 2 == 0 {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            m.edns = Some(e);
        }
        queries.push(m.to_vec().expect("encode"));
        if let Some(e) = m.edns.as_mut() {
            let cookie = (i as u64).to_be_bytes().to_vec();
            e.options_mut()
                .insert(EdnsOption::Unknown(u16::from(EdnsCode::Cookie), cookie));
        }
        cookied.push(m.to_vec().expect("encode"));
    }
    let src: SocketAddr = "127.0.0.1:5300".parse().expect("addr");
    let client = Client::new(src, Protocol::Udp);
    let mut out = Vec::with_capacity(512);
    for (what, queries) in [("mix", &queries), ("mix with cookies", &cookied)] {
        let fast_ok = queries
            .iter()
            .filter(|q| fast::answer(&snap, q, &client, &mut out))
            .count();
        println!(
            "{} queries in the {what}, {fast_ok} answered by the fast path",
            queries.len()
        );
        // Every query of the anchors' mix is plain: all of them must take the fast path.
        assert_eq!(
            fast_ok,
            queries.len(),
            "a plain query fell to the general path"
        );
    }

    let time = |queries: &[Vec<u8>], f: &mut dyn FnMut(&[u8])| {
        let mut ns: Vec<f64> = (0..rounds)
            .map(|_| {
                let t = Instant::now();
                for i in 0..per_round {
                    f(black_box(&queries[i % queries.len()]));
                }
                t.elapsed().as_nanos() as f64 / per_round as f64
            })
            .collect();
        ns.sort_by(f64::total_cmp);
        ns[rounds / 2]
    };
    // The fast path where it answers, the general path where it does not: what a listener
    // does.
    let mut listener = |q: &[u8]| {
        if !fast::answer(&snap, q, &client, &mut out) {
            black_box(general(&snap, q, &client));
        }
        black_box(&out);
    };
    let fast_ns = time(&queries, &mut listener);
    let cookie_ns = time(&cookied, &mut listener);
    let general_ns = time(&queries, &mut |q| {
        if let Reply::Message(m) = general(&snap, q, &client) {
            black_box(m);
        }
    });
    println!("listener path (fast where it can): {fast_ns:.0} ns/query (median of {rounds})");
    println!("general path only:                 {general_ns:.0} ns/query (median of {rounds})");
    println!("ratio: {:.1}x", general_ns / fast_ns);
    println!("listener path, cookies on the EDNS half: {cookie_ns:.0} ns/query");

    let limiter = Limiter::new(&Rrl {
        rate: Rrl::MAX_RATE,
        ..Rrl::default()
    })
    .expect("a rate turns RRL on");
    let mut at = Instant::now();
    let mut n = 0u64;
    let mut limited = 0u64;
    let mut with_rrl = |q: &[u8]| {
        // The UDP listener reads the clock once per batch of up to 32 datagrams.
        if n.is_multiple_of(32) {
            at = Instant::now();
        }
        n += 1;
        if !fast::answer(&snap, q, &client, &mut out) {
            match general(&snap, q, &client) {
                Reply::Message(m) => out = m,
                _ => return,
            }
        }
        if limiter.check(&snap, q, &mut out, &client, at) != Outcome::Send {
            limited += 1;
        }
        black_box(&out);
    };
    let rrl_ns = time(&queries, &mut with_rrl);
    assert_eq!(limited, 0, "the rate is above what any bucket gets");
    println!(
        "listener path, RRL on (nothing limited): {rrl_ns:.0} ns/query, {:+.0} ns ({:.3}x)",
        rrl_ns - fast_ns,
        fast_ns / rrl_ns
    );
    // The limiter alone, on the answers made ahead.
    let answers: Vec<Vec<u8>> = queries
        .iter()
        .map(|q| {
            let mut a = Vec::new();
            assert!(fast::answer(&snap, q, &client, &mut a));
            a
        })
        .collect();
    let mut i = 0;
    let check_ns = time(&queries, &mut |q| {
        if i % 32 == 0 {
            at = Instant::now();
        }
        let mut a = answers[i % answers.len()].clone();
        i += 1;
        black_box(limiter.check(&snap, q, &mut a, &client, at));
    });
    let clone_ns = time(&queries, &mut |_| {
        black_box(answers[i % answers.len()].clone());
        i += 1;
    });
    println!(
        "the limiter's check alone: {:.0} ns/query",
        check_ns - clone_ns
    );
}
