//! Any bytes as a DNS query over UDP or TCP (the first byte chooses), answered from a
//! Snapshot of the shipped example with DNS Cookies on and a TSIG key on its zone: the
//! answer engine must not panic, and whenever the fast path answers, its bytes must be the
//! general path's (the property tests/fast_path.rs checks on chosen queries).
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use detour::dns::answer::{Client, Reply, general};
use detour::dns::fast;
use detour::snapshot::Snapshot;
use hickory_server::net::xfer::Protocol;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        std::fs::create_dir_all(dir.join("zones")).unwrap();
        let zone = include_str!("../../zones/example.test.toml").replacen(
            "ns  = [\"ns1.example.test.\"]",
            "ns  = [\"ns1.example.test.\"]\nallow_transfer = [\"127.0.0.1\"]\ntransfer_key = \"xfr\"",
            1,
        );
        std::fs::write(dir.join("zones/example.test.toml"), zone).unwrap();
        let config = include_str!("../../config/detour.toml")
            .replace("zones_dir    = \"../zones\"", "zones_dir    = \"zones\"")
            + "\n[tsig.xfr]\nsecret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=\"\n";
        std::fs::write(dir.join("detour.toml"), config).unwrap();
        let config = Arc::new(detour::config::Config::load(&dir.join("detour.toml")).unwrap());
        let engine = detour::states::Engine::new(config.clone(), None, chrono::Utc::now());
        detour::states::snapshot_of(config, engine.health(), Arc::default(), None, 1)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&how, raw)) = data.split_first() else {
        return;
    };
    let protocol = if how & 1 == 0 {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let client = Client::new(src, protocol);
    let snap = snapshot();
    let mut out = Vec::new();
    let fast = fast::answer(snap, raw, &client, &mut out);
    let slow = general(snap, raw, &client);
    if fast {
        match slow {
            Reply::Message(m) => assert_eq!(out, m, "the fast path and the general path differ"),
            other => panic!("the fast path answered what the general path answers as {other:?}"),
        }
    }
});
