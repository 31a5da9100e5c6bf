//! The fast path answers byte for byte what the general path answers (ignoring only the ID),
//! for every name and type of the example and generated zones, and for the odd cases.

mod common;

use std::net::SocketAddr;

use common::*;
use detour::dns::answer::{Client, Reply, general, respond};
use detour::dns::fast;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Message, OpCode, Query};
use hickory_server::proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_server::proto::rr::{DNSClass, Name, RecordType};

const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::NS,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::PTR,
    RecordType::DS,
    RecordType::ANY,
    RecordType::HINFO,
    RecordType::Unknown(65280),
];

fn src() -> SocketAddr {
    "127.0.0.1:5300".parse().unwrap()
}

/// The cookie clock every comparison runs at: answers to cookies depend on it.
const NOW: u32 = 1_800_000_000;

/// The asker from `from`, at [`NOW`]: answers to cookies depend on the source too.
fn client(from: SocketAddr, protocol: Protocol) -> Client {
    Client {
        src: from,
        protocol,
        now: NOW,
    }
}

/// Both paths' answers to `msg`, with the IDs zeroed.
fn both(
    snap: &detour::snapshot::Snapshot,
    bytes: &[u8],
    asker: &Client,
) -> (Option<Vec<u8>>, Vec<u8>) {
    let slow = match general(snap, bytes, asker) {
        Reply::Message(m) => m,
        other => panic!("general path gave {other:?}"),
    };
    let mut quick = Vec::new();
    let quick = fast::answer(snap, bytes, asker, &mut quick).then_some(quick);
    let strip = |mut v: Vec<u8>| {
        v[0] = 0;
        v[1] = 0;
        v
    };
    (quick.map(strip), strip(slow))
}

struct Tally {
    compared: usize,
    fast: usize,
    /// Fast answers that are NXDOMAIN (moved from the zone's compiled one).
    fast_nx: usize,
    /// Fast answers to names with upper-case letters.
    fast_cased: usize,
}

fn check(snap: &detour::snapshot::Snapshot, msg: &Message, t: &mut Tally) {
    check_from(snap, msg, t, src());
}

fn check_from(snap: &detour::snapshot::Snapshot, msg: &Message, t: &mut Tally, from: SocketAddr) {
    let bytes = msg.to_vec().unwrap();
    for proto in [Protocol::Udp, Protocol::Tcp] {
        let (quick, slow) = both(snap, &bytes, &client(from, proto));
        t.compared += 1;
        if let Some(q) = quick {
            t.fast += 1;
            if q[3] & 0x0f == 3 {
                t.fast_nx += 1;
            }
            assert_eq!(
                q, slow,
                "fast path differs for {:?} over {proto:?}",
                msg.queries
            );
        }
        // And `respond`, whichever path it takes, answers what the general path does.
        match respond(snap, &bytes, &client(from, proto)) {
            Reply::Message(mut m) => {
                m[0] = 0;
                m[1] = 0;
                assert_eq!(m, slow);
            }
            other => panic!("{other:?}"),
        }
    }
}

fn variants(name: &Name, t: RecordType) -> Vec<Message> {
    let mut out = Vec::new();
    for edns in [
        None,
        Some((512u16, false)),
        Some((1232, false)),
        Some((4096, true)),
        Some((1400, false)),
        Some((1300, false)),
    ] {
        for rd in [false, true] {
            let mut m = Message::query();
            m.metadata.id = 0x1234;
            m.metadata.recursion_desired = rd;
            m.metadata.checking_disabled = rd;
            m.add_query(Query::query(name.clone(), t));
            if let Some((size, dok)) = edns {
                let mut e = Edns::new();
                e.set_max_payload(size);
                e.set_dnssec_ok(dok);
                let cookie = match size {
                    // A client cookie, as BIND sends at first.
                    1400 => Some(vec![7; 8]),
                    // With a server cookie, not one of ours: answered with a fresh one.
                    1300 => Some([vec![7; 8], vec![1, 0, 0, 0], vec![0x6b; 12]].concat()),
                    _ => None,
                };
                if let Some(c) = cookie {
                    e.options_mut()
                        .insert(EdnsOption::Unknown(u16::from(EdnsCode::Cookie), c));
                }
                m.edns = Some(e);
            }
            out.push(m);
        }
    }
    out
}

fn names_of(snap: &detour::snapshot::Snapshot) -> Vec<Name> {
    let mut names: Vec<Name> = snap
        .zones
        .iter()
        .flat_map(|z| {
            z.owners()
                .map(|(n, _, _)| Name::from(n.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    // Plus the misses: NXDOMAIN, wildcard matches, below a cut, outside every zone.
    for extra in [
        "nope.example.test.",
        "a.b.c.nope.example.test.",
        "x.wild.example.test.",
        "host.branch.example.test.",
        "example.com.",
        "nope.sub.example.test.",
        // The generated zone has no wildcard, so its misses take the fast path: short and
        // long names (the NXDOMAIN answer's pointers move with the length), the made-up
        // name it was compiled for, empty non-terminals, and names below its delegation.
        "nope.gen.test.",
        "nx0.gen.test.",
        "a.b.c.d.e.f.nope.gen.test.",
        "a123456789b123456789c123456789d123456789e123456789f123456789abc.x.gen.test.",
        "b.ent.gen.test.",
        "c.b.ent.gen.test.",
        "deleg.gen.test.",
        "x.deleg.gen.test.",
        "y.x.deleg.gen.test.",
    ] {
        names.push(Name::from_ascii(extra).unwrap());
    }
    names
}

fn run(snap: &detour::snapshot::Snapshot) -> Tally {
    let mut t = Tally {
        compared: 0,
        fast: 0,
        fast_nx: 0,
        fast_cased: 0,
    };
    for name in names_of(snap) {
        for &ty in TYPES {
            for m in variants(&name, ty) {
                check(snap, &m, &mut t);
            }
        }
        // Upper and mixed case, as resolvers randomising case (DNS 0x20) send them: looked up
        // in lower case, the question echoed as sent.
        let ascii = name.to_ascii();
        let mixed: String = ascii
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        for cased in [ascii.to_uppercase(), mixed] {
            let cased = Name::from_ascii(&cased).unwrap();
            for &ty in TYPES {
                let v = variants(&cased, ty);
                for m in [&v[0], &v[7]] {
                    let before = t.fast;
                    check(snap, m, &mut t);
                    t.fast_cased += t.fast - before;
                }
            }
        }
        // Other classes, other opcodes, a second question: general path only.
        for class in [DNSClass::CH, DNSClass::ANY] {
            let mut m = variants(&name, RecordType::A).remove(0);
            let mut q = Query::query(name.clone(), RecordType::A);
            q.set_query_class(class);
            m.queries = vec![q];
            check(snap, &m, &mut t);
        }
        let mut m = variants(&name, RecordType::A).remove(0);
        m.metadata.op_code = OpCode::Notify;
        check(snap, &m, &mut t);
        let mut m = variants(&name, RecordType::A).remove(0);
        m.add_query(Query::query(name.clone(), RecordType::AAAA));
        check(snap, &m, &mut t);
        let mut m = variants(&name, RecordType::A).remove(2);
        m.edns.as_mut().unwrap().set_version(1);
        check(snap, &m, &mut t);
        // Cookies: our own server cookie, ten minutes old (echoed as sent), and a client
        // cookie from an IPv6 source (its server cookie hashes 16 address bytes).
        let secret = snap.config.server.cookies.as_ref().expect("cookies are on");
        let ours = secret.answer(&[3; 8], src().ip(), NOW - 600).unwrap();
        let mut m = variants(&name, RecordType::A).remove(2);
        let opt = m.edns.as_mut().unwrap().options_mut();
        opt.insert(EdnsOption::Unknown(10, ours.to_vec()));
        check(snap, &m, &mut t);
        let v6: SocketAddr = "[2001:db8::1]:5300".parse().unwrap();
        check_from(snap, &variants(&name, RecordType::A).remove(8), &mut t, v6);
    }
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fast_path_matches_the_general_path_on_the_test_zones() {
    let s = Server::standard().await;
    let t = run(&s.running.snapshots().load_full());
    assert!(t.compared > 5000, "{}", t.compared);
    // Most plain queries take the fast path (the rest are misses and odd cases).
    assert!(t.fast * 3 > t.compared, "fast {} of {}", t.fast, t.compared);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fast_path_matches_the_general_path_on_the_example_and_a_generated_zone() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("zones/example.test.toml")).unwrap();
    let mut recs = String::new();
    for i in 0..500 {
        recs.push_str(&format!(
            "  {{ name = \"h{i}\", type = \"A\", value = \"10.1.{}.{}\" }},\n  {{ name = \"h{i}\", type = \"TXT\", value = \"host {i}\" }},\n",
            i / 256,
            i % 256
        ));
        if i % 10 == 0 {
            recs.push_str(&format!(
                "  {{ name = \"alias{i}\", type = \"CNAME\", value = \"h{i}\" }},\n"
            ));
        }
    }
    // A dynamic record, an alias to it and a mail exchanger named by it: what a flip
    // changes, and what it shows through.
    let generated = format!(
        "origin = \"gen.test.\"\nsoa = {{ mname = \"ns.gen.test.\", rname = \"h.gen.test.\" }}\nns = [\"ns.gen.test.\"]\nrecords = [\n  {{ name = \"ns\", type = \"A\", value = \"10.0.0.1\" }},\n{recs}  {{ name = \"deleg\", type = \"NS\", value = \"ns.deleg.gen.test.\" }},\n  {{ name = \"ns.deleg\", type = \"A\", value = \"10.0.0.2\" }},\n  {{ name = \"a.b.ent\", type = \"A\", value = \"10.0.0.3\" }},\n  {{ name = \"to-dyn\", type = \"CNAME\", value = \"dyn\" }},\n  {{ name = \"mx\", type = \"MX\", value = \"10 dyn\" }},\n  {{ name = \"to-kid\", type = \"CNAME\", value = \"host.kid.gen.test.\" }},\n]\n[[dynamic]]\nname = \"dyn\"\ntype = \"A\"\nttl = 30\nanswers = [ {{ if_up = \"mls\", values = [\"10.9.0.1\", \"10.9.0.2\"] }} ]\notherwise = [\"10.9.0.80\"]\n[[dynamic]]\nname = \"@\"\ntype = \"A\"\nanswers = [ {{ if_up = \"mls\", values = [\"10.9.1.1\"] }} ]\notherwise = [\"10.9.1.80\"]\n"
    );
    let cfg = config_toml("").replace(
        "[services.mls]\nname = \"MLS\"\n",
        "[services.mls]\n[services.mls_dr]\n[services.sso]\n",
    );
    // A child zone served beside it: a chain into it is the general path's to follow.
    let kid = "origin = \"kid.gen.test.\"\nsoa = { mname = \"ns.gen.test.\", rname = \"h.gen.test.\" }\nns = [\"ns.gen.test.\"]\nrecords = [ { name = \"host\", type = \"A\", value = \"10.7.0.1\" } ]\n";
    let s = Server::start(
        &cfg,
        &[
            ("example.test.toml", &example),
            ("gen.toml", &generated),
            ("kid.toml", kid),
        ],
    )
    .await;
    let snap = s.running.snapshots().load_full();
    let t = run(&snap);
    assert!(t.fast > 1000, "fast {} of {}", t.fast, t.compared);
    assert!(t.fast_nx > 50, "fast NXDOMAIN answers: {}", t.fast_nx);
    assert!(
        t.fast_cased > 500,
        "fast answers to 0x20 names: {}",
        t.fast_cased
    );

    // Flips: the generated zone is compiled again only where the change shows (its other
    // answers are shared with the Snapshot before, their serials written as they are sent),
    // and still answers byte for byte what the general path answers, down and up again.
    let generated_origin = Name::from_ascii("gen.test.").unwrap();
    let gen_zone = |snap: &detour::snapshot::Snapshot| {
        std::sync::Arc::clone(
            snap.zones
                .iter()
                .find(|z| z.origin == generated_origin)
                .unwrap(),
        )
    };
    let shared = |a: &detour::snapshot::Snapshot, b: &detour::snapshot::Snapshot| {
        gen_zone(a).fast.shares_with(&gen_zone(b).fast)
    };
    // The differential run on the Snapshot now served.
    let compare = || {
        let snap = s.running.snapshots().load_full();
        let t = run(&snap);
        assert!(t.fast > 1000, "fast {} of {}", t.fast, t.compared);
        snap
    };
    let reload_with = |text: String| {
        write(&s.fixture.zone_path("gen.toml"), &text);
        s.running.reload()
    };
    let mut before = snap;
    for state in [
        Some(detour::overrides::Forced::Down),
        None,
        Some(detour::overrides::Forced::Down),
    ] {
        force(&s, "mls", state).await;
        let after = compare();
        assert_ne!(
            gen_zone(&after).serial,
            gen_zone(&before).serial,
            "the flip changed the zone"
        );
        assert!(
            shared(&after, &before),
            "the unchanged names' answers are shared"
        );
        before = after;
    }
    // A reload that gives an existing name a mail exchanger named by the dynamic record:
    // from then on a flip must compile that name again too (its additional section holds
    // the flipped address).
    reload_with(generated.replace(
        "records = [\n",
        "records = [\n  { name = \"h7\", type = \"MX\", value = \"10 dyn\" },\n",
    ))
    .await
    .expect("reload");
    force(&s, "mls", None).await;
    let after = compare();
    assert!(
        shared(&after, &before),
        "a reload and a flip, still in part"
    );
    let before = after;

    // A reload that changes the SOA's names but no record: the zone is compiled whole.
    let renamed = generated.replace(
        "rname = \"h.gen.test.\"",
        "rname = \"Hostmaster.gen.test.\"",
    );
    reload_with(renamed.clone()).await.expect("reload");
    assert!(!shared(&compare(), &before));

    // A reload that adds a delegation above an existing name (a.b.ent becomes a referral):
    // every name below it changes, so the zone is compiled whole again.
    reload_with(renamed.replace(
        "records = [\n",
        "records = [\n  { name = \"b.ent\", type = \"NS\", value = \"ns.deleg.gen.test.\" },\n",
    ))
    .await
    .expect("reload");
    compare();
}
