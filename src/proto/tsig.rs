//! TSIG (RFC 8945): checks signed queries against the `[tsig.<name>]` keys, signs what
//! answers them (a zone transfer message by message), and signs the NOTIFY detour sends.
//!
//! hickory-proto supplies the HMACs and the TSIG record; the message layout around them is
//! here, because hickory signs only single responses: every message of a transfer after the
//! first is signed over the previous MAC, the message and the timers alone (§5.3.1).

use std::fmt;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::tsig::{
    TSIG, TsigAlgorithm, TsigError, make_tsig_record, signed_bitmessage_to_buf,
};
use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use ring::hmac;

/// Seconds a signature's time may differ from ours, either way (RFC 8945 §10 suggests 300).
pub const FUDGE: u16 = 300;

/// The algorithms a key may use: the two RFC 8945 requires (HMAC-SHA256, and HMAC-SHA1 for
/// older peers) and the optional SHA-384 and SHA-512; not MD5, which the RFC deprecates.
pub const ALGORITHMS: &[&str] = &["hmac-sha256", "hmac-sha1", "hmac-sha384", "hmac-sha512"];

/// A shared secret from `[tsig.<name>]` and its algorithm. Its `Debug` shows the name and
/// algorithm, never the secret.
///
/// The HMACs are ring's, not hickory's `TSigner`, which computes only the SHA-2 ones.
#[derive(Clone)]
pub struct Key {
    name: Name,
    algorithm: TsigAlgorithm,
    secret: Vec<u8>,
    hmac: hmac::Key,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} {})", self.name, self.algorithm)
    }
}

/// Keys are equal when their name, algorithm and secret are: a reload that changes a secret
/// changes the zone that uses it.
impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.name == other.name && self.algorithm == other.algorithm && self.secret == other.secret
    }
}

/// Why a TSIG key could not be made, a request not signed, or an answer not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The algorithm is not one of [`ALGORITHMS`].
    #[error("unsupported TSIG algorithm {0:?}: expected one of {list}", list = ALGORITHMS.join(", "))]
    Algorithm(String),
    /// The message could not be encoded or parsed.
    #[error("{0}")]
    Wire(String),
    /// The answer was signed with another key.
    #[error("signed with {signed}, not {expected}")]
    OtherKey {
        /// The key that signed it.
        signed: String,
        /// The key that should have.
        expected: String,
    },
    /// The answer carries a TSIG error.
    #[error("TSIG error {0}")]
    Refused(String),
    /// The MAC does not verify.
    #[error("the MAC does not match")]
    BadMac,
    /// Signed too far from our clock.
    #[error("signed at {0}, outside the fudge of our clock")]
    Time(u64),
}

fn wire(e: impl std::fmt::Display) -> Error {
    Error::Wire(e.to_string())
}

impl Key {
    /// A key named `name` (as the secondaries know it) using `algorithm`, one of
    /// [`ALGORITHMS`].
    pub fn new(mut name: Name, algorithm: &str, secret: Vec<u8>) -> Result<Key, Error> {
        // Key names are absolute, as in every TSIG record (names compare their FQDN flag).
        name.set_fqdn(true);
        let (alg, hmac_alg) = match algorithm {
            "hmac-sha1" => (TsigAlgorithm::HmacSha1, hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
            "hmac-sha256" => (TsigAlgorithm::HmacSha256, hmac::HMAC_SHA256),
            "hmac-sha384" => (TsigAlgorithm::HmacSha384, hmac::HMAC_SHA384),
            "hmac-sha512" => (TsigAlgorithm::HmacSha512, hmac::HMAC_SHA512),
            _ => return Err(Error::Algorithm(algorithm.to_string())),
        };
        Ok(Key {
            name,
            algorithm: alg,
            hmac: hmac::Key::new(hmac_alg, &secret),
            secret,
        })
    }

    /// The key's name, fully qualified.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The algorithm's name (`hmac-sha256.`).
    pub fn algorithm(&self) -> Name {
        self.algorithm.to_name()
    }

    /// Bytes of the shared secret.
    pub fn secret_len(&self) -> usize {
        self.secret.len()
    }

    /// Bytes of the algorithm's MAC.
    pub fn mac_len(&self) -> usize {
        self.hmac.algorithm().digest_algorithm().output_len()
    }

    /// The MAC of `data`.
    fn mac(&self, data: &[u8]) -> Vec<u8> {
        hmac::sign(&self.hmac, data).as_ref().to_vec()
    }

    /// Whether `mac` is this key's whole MAC of `data` (compared in constant time; a
    /// truncated MAC, RFC 8945 §5.2.2.1, is not accepted).
    fn verifies(&self, data: &[u8], mac: &[u8]) -> bool {
        mac.len() == self.mac_len() && hmac::verify(&self.hmac, data, mac).is_ok()
    }

    /// Whether a TSIG record names this key: the same name and algorithm, compared without
    /// regard to case (one algorithm per key name, RFC 8945 §5.5).
    fn signed(&self, tsig: &Record<TSIG>) -> bool {
        self.name == tsig.name && self.algorithm.to_name() == tsig.data.algorithm.to_name()
    }

    /// Signs an outgoing request (NOTIFY) in place; its answer must pass [`Reply::check`].
    pub fn sign_request(&self, msg: &mut Message) -> Result<Reply, Error> {
        let stub = TSIG::new(
            self.algorithm.clone(),
            now(),
            FUDGE,
            Vec::new(),
            msg.id,
            None,
            Vec::new(),
        );
        // A request's MAC covers the message and the TSIG variables (RFC 8945 §4.3.3).
        let mut tbs = msg.to_vec().map_err(wire)?;
        let mut vars = Vec::with_capacity(128);
        stub.emit_tsig_for_mac(&mut BinEncoder::new(&mut vars), &self.name)
            .map_err(wire)?;
        tbs.extend_from_slice(&vars);
        let request_mac = self.mac(&tbs);
        let record = make_tsig_record(self.name.clone(), stub.set_mac(request_mac.clone()));
        msg.set_signature(Box::new(record));
        Ok(Reply {
            key: self.clone(),
            request_mac,
        })
    }
}

/// Checks the answer to a request detour signed.
pub struct Reply {
    key: Key,
    request_mac: Vec<u8>,
}

impl Reply {
    /// Whether `raw`, the answer, is signed with the request's key over the request's MAC,
    /// within the fudge of our clock (checked here, not by hickory's verifier, whose time
    /// window underflows for a Time Signed below the fudge).
    pub fn check(&mut self, raw: &[u8]) -> Result<(), Error> {
        let (tbv, record) =
            signed_bitmessage_to_buf(raw, Some(&self.request_mac), true).map_err(wire)?;
        let t = &record.data;
        if !self.key.signed(&record) {
            return Err(Error::OtherKey {
                signed: record.name.to_string(),
                expected: self.key.name().to_string(),
            });
        }
        if let Some(e) = t.error {
            return Err(Error::Refused(format!("{e:?}")));
        }
        if !self.key.verifies(&tbv, &t.mac) {
            return Err(Error::BadMac);
        }
        if now().abs_diff(t.time) > u64::from(t.fudge) {
            return Err(Error::Time(t.time));
        }
        Ok(())
    }
}

/// Seconds since the epoch, as TSIG counts time.
fn now() -> u64 {
    super::unix_seconds()
}

/// What a request's TSIG record says about it.
pub enum Verdict {
    /// Signed with a known key and a good MAC. The answer must be signed with `Signer`; if
    /// the time is off, the answer must be NOTAUTH (`Signer::rejected` says so).
    Signed(Signer),
    /// An unknown key or a bad MAC: the answer is NOTAUTH with this TSIG record added,
    /// itself unsigned (RFC 8945 §5.2).
    Unsigned(Record<TSIG>),
}

/// Checks the TSIG record `tsig` of the raw request `raw` against `keys`.
pub fn verify(keys: &[Key], raw: &[u8], tsig: &Record<TSIG>) -> Verdict {
    verify_at(keys, raw, tsig, now())
}

fn verify_at(keys: &[Key], raw: &[u8], tsig: &Record<TSIG>, now: u64) -> Verdict {
    let unsigned = |error: TsigError| {
        Verdict::Unsigned(make_tsig_record(
            tsig.name.clone(),
            TSIG::new(
                tsig.data.algorithm.clone(),
                now,
                FUDGE,
                Vec::new(),
                tsig.data.oid,
                Some(error),
                Vec::new(),
            ),
        ))
    };
    // A name with another algorithm is an unknown key.
    let Some(key) = keys.iter().find(|k| k.signed(tsig)) else {
        return unsigned(TsigError::BadKey);
    };
    // The MAC input is built here rather than by hickory's verify_message_byte, whose time
    // window underflows for a Time Signed below the fudge.
    let good = signed_bitmessage_to_buf(raw, None, true)
        .is_ok_and(|(tbv, _)| key.verifies(&tbv, &tsig.data.mac));
    if !good {
        return unsigned(TsigError::BadSig);
    }
    let late = now.abs_diff(tsig.data.time) > u64::from(tsig.data.fudge);
    Verdict::Signed(Signer {
        key: key.clone(),
        mac: tsig.data.mac.clone(),
        id: tsig.data.oid,
        // A BADTIME answer carries the request's time and, in Other Data, ours (§5.2.3).
        time: if late { tsig.data.time } else { now },
        error: late.then_some(TsigError::BadTime),
        other: if late {
            now.to_be_bytes()[2..].to_vec()
        } else {
            Vec::new()
        },
        first: true,
    })
}

/// Signs the answer to a verified request: one message, or each message of a stream in turn.
pub struct Signer {
    key: Key,
    /// The request's MAC, then the MAC of the last message signed.
    mac: Vec<u8>,
    id: u16,
    time: u64,
    error: Option<TsigError>,
    other: Vec<u8>,
    first: bool,
}

impl Signer {
    /// Whether the request's time was outside the fudge: then the answer is NOTAUTH, signed.
    pub fn rejected(&self) -> bool {
        self.error.is_some()
    }

    /// The key that signed the request.
    pub fn key_name(&self) -> &Name {
        self.key.name()
    }

    /// Bytes the TSIG record adds to a message, so a UDP answer can leave room for it.
    pub fn overhead(&self) -> usize {
        let mac = self.key.mac_len();
        // `Name::len` counts the text form, trailing dot included: one less than the wire.
        let name = |n: &Name| n.len() + 1;
        // owner, type, class, TTL, RDLENGTH; algorithm, time, fudge, MAC size, MAC, id,
        // error, other length, other.
        name(self.key.name())
            + 10
            + name(&self.key.algorithm())
            + 6
            + 2
            + 2
            + mac
            + 6
            + self.other.len()
    }

    /// Signs `msg` (a whole DNS message without TSIG) and returns it with the TSIG record
    /// appended. The first call signs over the request's MAC and every TSIG variable; later
    /// calls, for the following messages of a transfer, over the previous MAC and the timers.
    pub fn sign(&mut self, mut msg: Vec<u8>) -> Result<Vec<u8>, Error> {
        let tsig = TSIG::new(
            self.key.algorithm.clone(),
            self.time,
            FUDGE,
            Vec::new(),
            self.id,
            self.error,
            self.other.clone(),
        );
        let mut tbs = Vec::with_capacity(msg.len() + self.mac.len() + 128);
        {
            let mut enc = BinEncoder::new(&mut tbs);
            let len = u16::try_from(self.mac.len()).map_err(|_| wire("MAC too long"))?;
            enc.emit_u16(len).map_err(wire)?;
            enc.emit_vec(&self.mac).map_err(wire)?;
            // The MAC covers the message with the request's Original ID in its header
            // (§4.3.2), which differs from the header's when a forwarder changed it.
            enc.emit_vec(&self.id.to_be_bytes()).map_err(wire)?;
            enc.emit_vec(
                msg.get(2..)
                    .ok_or_else(|| wire("message shorter than an ID"))?,
            )
            .map_err(wire)?;
            if self.first {
                tsig.emit_tsig_for_mac(&mut enc, self.key.name())
                    .map_err(wire)?;
            } else {
                enc.emit_u16((self.time >> 32) as u16).map_err(wire)?;
                enc.emit_u32(self.time as u32).map_err(wire)?;
                enc.emit_u16(FUDGE).map_err(wire)?;
            }
        }
        let mac = self.key.mac(&tbs);
        let record = make_tsig_record(self.key.name().clone(), tsig.set_mac(mac.clone()));
        append(&mut msg, &record)?;
        self.mac = mac;
        self.first = false;
        Ok(msg)
    }
}

/// Appends `record` to the additional section of the encoded message `msg`.
pub fn append(msg: &mut Vec<u8>, record: &Record<TSIG>) -> Result<(), Error> {
    if msg.len() < 12 {
        return Err(wire("message shorter than a header"));
    }
    let count = u16::from_be_bytes([msg[10], msg[11]])
        .checked_add(1)
        .ok_or_else(|| wire("additional section full"))?;
    let mut tail = Vec::with_capacity(128);
    record.emit(&mut BinEncoder::new(&mut tail)).map_err(wire)?;
    msg.extend_from_slice(&tail);
    msg[10..12].copy_from_slice(&count.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::{RecordType, TSigner};

    fn key(secret: &[u8]) -> Key {
        Key::new(
            Name::from_ascii("xfr.").unwrap(),
            "hmac-sha256",
            secret.to_vec(),
        )
        .unwrap()
    }

    /// hickory's own signer for a SHA-2 key: an independent check of detour's MACs.
    fn hickory(k: &Key) -> TSigner {
        TSigner::new(k.secret.clone(), k.algorithm.clone(), k.name.clone(), FUDGE).unwrap()
    }

    fn signed_query(k: &Key) -> (Vec<u8>, Record<TSIG>) {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("example.test.").unwrap(),
            RecordType::SOA,
        ));
        k.sign_request(&mut m).unwrap();
        let raw = m.to_vec().unwrap();
        let parsed = Message::from_vec(&raw).unwrap();
        let tsig = parsed.signature().unwrap().clone();
        (raw, tsig)
    }

    fn answer(id: u16, n: u8) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii(format!("m{n}.example.test.")).unwrap(),
            RecordType::SOA,
        ));
        m.to_vec().unwrap()
    }

    /// The TSIG record of the encoded message `raw`.
    fn tsig_of(raw: &[u8]) -> Record<TSIG> {
        Message::from_vec(raw).unwrap().signature().unwrap().clone()
    }

    /// The signer for a request `k` signed: it must verify.
    fn accepted(k: &Key, raw: &[u8], tsig: &Record<TSIG>) -> Signer {
        match verify(std::slice::from_ref(k), raw, tsig) {
            Verdict::Signed(s) => s,
            Verdict::Unsigned(r) => panic!("a good signature is refused: {:?}", r.data.error),
        }
    }

    #[test]
    fn a_stream_verifies_with_hickorys_own_chain_check() {
        let k = key(b"0123456789abcdef0123456789abcdef");
        let (raw, tsig) = signed_query(&k);
        let mut s = accepted(&k, &raw, &tsig);
        assert!(!s.rejected());
        // The first answer over the request's MAC, the next two over the previous MAC with
        // the timers only: hickory's verifier of RFC 8945 §5.3.1 must accept each in turn.
        let mut prev = tsig.data.mac.clone();
        for n in 0..3 {
            let msg = s.sign(answer(0x1234, n)).unwrap();
            let (mac, _, _) = hickory(&k)
                .verify_message_byte(&msg, Some(&prev), n == 0)
                .unwrap_or_else(|e| panic!("message {n} fails to verify: {e}"));
            prev = mac;
            assert!(Message::from_vec(&msg).unwrap().signature().is_some());
        }
        // A message verified as the wrong link of the chain fails: the check is real.
        let msg = s.sign(answer(0x1234, 9)).unwrap();
        assert!(
            hickory(&k)
                .verify_message_byte(&msg, Some(&tsig.data.mac), false)
                .is_err()
        );
    }

    #[test]
    fn unknown_keys_bad_macs_and_stale_times_are_told_apart() {
        let k = key(b"0123456789abcdef0123456789abcdef");
        let other = key(b"another secret, same name.......");
        let (raw, tsig) = signed_query(&k);
        match verify(std::slice::from_ref(&other), &raw, &tsig) {
            Verdict::Unsigned(r) => {
                assert_eq!(r.data.error, Some(TsigError::BadSig));
                assert!(r.data.mac.is_empty());
            }
            Verdict::Signed(_) => panic!("a MAC made with another secret is accepted"),
        }
        let stranger = Key::new(
            Name::from_ascii("stranger.").unwrap(),
            "hmac-sha256",
            b"x".to_vec(),
        )
        .unwrap();
        match verify(&[stranger], &raw, &tsig) {
            Verdict::Unsigned(r) => assert_eq!(r.data.error, Some(TsigError::BadKey)),
            Verdict::Signed(_) => panic!("an unknown key name is accepted"),
        }
        let later = tsig.data.time + u64::from(FUDGE) + 1;
        let Verdict::Signed(mut s) = verify_at(std::slice::from_ref(&k), &raw, &tsig, later) else {
            panic!("a good MAC at a bad time is still answered signed");
        };
        assert!(s.rejected());
        let msg = s.sign(answer(0x1234, 0)).unwrap();
        let parsed = Message::from_vec(&msg).unwrap();
        let t = &parsed.signature().unwrap().data;
        assert_eq!(t.error, Some(TsigError::BadTime));
        assert_eq!(t.time, tsig.data.time, "BADTIME echoes the request's time");
        assert_eq!(t.other, later.to_be_bytes()[2..].to_vec(), "and gives ours");
        hickory(&k)
            .verify_message_byte(&msg, Some(&tsig.data.mac), true)
            .expect("the BADTIME answer is signed");
    }

    #[test]
    fn answers_are_signed_over_the_original_id_a_forwarder_replaced() {
        let k = key(b"0123456789abcdef0123456789abcdef");
        let (mut raw, _) = signed_query(&k);
        // A forwarder gave the query a new ID; the TSIG keeps the original (0x1234).
        raw[..2].copy_from_slice(&0xbeefu16.to_be_bytes());
        let tsig = tsig_of(&raw);
        let mut s = accepted(&k, &raw, &tsig);
        let msg = s.sign(answer(0xbeef, 0)).unwrap();
        hickory(&k)
            .verify_message_byte(&msg, Some(&tsig.data.mac), true)
            .expect("the answer verifies with the original ID in place");
    }

    #[test]
    fn a_time_signed_below_the_fudge_is_badtime_not_a_panic() {
        let k = key(b"0123456789abcdef0123456789abcdef");
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("example.test.").unwrap(),
            RecordType::SOA,
        ));
        // A clock near 1970 (a box without a real-time clock, just booted).
        let (record, _) = hickory(&k).sign_message(&m, 100).unwrap();
        m.set_signature(record);
        let raw = m.to_vec().unwrap();
        let tsig = tsig_of(&raw);
        let s = accepted(&k, &raw, &tsig);
        assert!(s.rejected());
    }

    #[test]
    fn the_answer_to_a_signed_notify_is_checked() {
        let k = key(b"0123456789abcdef0123456789abcdef");
        let notify = |op| {
            let mut m = Message::new(9, op, OpCode::Notify);
            m.add_query(Query::query(
                Name::from_ascii("example.test.").unwrap(),
                RecordType::SOA,
            ));
            m
        };
        let mut m = notify(MessageType::Query);
        let mut reply = k.sign_request(&mut m).unwrap();
        let raw = m.to_vec().unwrap();
        let tsig = tsig_of(&raw);
        let ack = notify(MessageType::Response).to_vec().unwrap();
        // Unsigned, or signed with another secret: refused. Signed by the secondary: passes.
        assert!(reply.check(&ack).is_err(), "an unsigned answer passes");
        let mut forger = Signer {
            key: key(b"another secret, same name......."),
            mac: tsig.data.mac.clone(),
            id: 9,
            time: now(),
            error: None,
            other: Vec::new(),
            first: true,
        };
        assert!(reply.check(&forger.sign(ack.clone()).unwrap()).is_err());
        let mut s = accepted(&k, &raw, &tsig);
        reply
            .check(&s.sign(ack).unwrap())
            .expect("the secondary's signed answer passes");
    }

    #[test]
    fn overhead_is_what_signing_adds() {
        let k = key(b"0123456789abcdef0123456789abcdef");
        let (raw, tsig) = signed_query(&k);
        let mut s = accepted(&k, &raw, &tsig);
        let plain = answer(0x1234, 0);
        let want = s.overhead();
        assert_eq!(s.sign(plain.clone()).unwrap().len() - plain.len(), want);
    }

    #[test]
    fn algorithms_outside_the_list_are_refused_and_debug_hides_the_secret() {
        let name = Name::from_ascii("k.").unwrap();
        assert!(Key::new(name.clone(), "hmac-md5", b"s".to_vec()).is_err());
        assert!(Key::new(name.clone(), "hmac-sha224", b"s".to_vec()).is_err());
        let k = Key::new(name, "hmac-sha512", b"very secret".to_vec()).unwrap();
        let shown = format!("{k:?}");
        assert!(
            shown.contains("k.") && shown.contains("hmac-sha512"),
            "{shown}"
        );
        assert!(!shown.contains("very secret"));
    }

    #[test]
    fn each_algorithm_computes_its_own_hmac() {
        // RFC 2202 and RFC 4231 test case 1: key 0x0b x 20, data "Hi There".
        let name = Name::from_ascii("k.").unwrap();
        for (alg, want) in [
            ("hmac-sha1", "b617318655057264e28bc0b6fb378c8ef146be00"),
            (
                "hmac-sha256",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                "hmac-sha384",
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
                 faea9ea9076ede7f4af152e8b2fa9cb6",
            ),
            (
                "hmac-sha512",
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                 daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            ),
        ] {
            let k = Key::new(name.clone(), alg, vec![0x0b; 20]).unwrap();
            let hex: String = k
                .mac(b"Hi There")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(hex, want, "{alg}");
            assert_eq!(k.mac_len(), want.len() / 2, "{alg}");
            assert!(k.verifies(b"Hi There", &k.mac(b"Hi There")));
            assert!(
                !k.verifies(b"Hi There", &k.mac(b"Hi There")[..10]),
                "{alg} truncated"
            );
        }
    }

    #[test]
    fn a_notify_detour_signs_verifies_with_hickory() {
        let k = key(b"0123456789abcdef0123456789abcdef");
        let mut m = Message::new(9, MessageType::Query, OpCode::Notify);
        m.add_query(Query::query(
            Name::from_ascii("example.test.").unwrap(),
            RecordType::SOA,
        ));
        k.sign_request(&mut m).unwrap();
        let raw = m.to_vec().unwrap();
        hickory(&k)
            .verify_message_byte(&raw, None, true)
            .expect("hickory accepts the NOTIFY's signature");
        // And detour accepts its own, for every algorithm (SHA-1 included, which hickory
        // cannot check: tests/secondary.rs has BIND's dig check it).
        for alg in ALGORITHMS {
            let k = Key::new(Name::from_ascii("xfr.").unwrap(), alg, vec![7; 32]).unwrap();
            let (raw, tsig) = signed_query(&k);
            let mut s = accepted(&k, &raw, &tsig);
            let signed = s.sign(answer(0x1234, 0)).unwrap();
            assert_eq!(tsig_of(&signed).data.mac.len(), k.mac_len(), "{alg}");
        }
    }
}
