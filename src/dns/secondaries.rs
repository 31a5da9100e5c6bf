//! NOTIFY (RFC 1996): tells a zone's `also_notify` secondaries that its serial changed, so
//! they transfer it now instead of at their next refresh. Signed with the zone's
//! first transfer key when it has one, as secondaries that require TSIG expect.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{DNSClass, Name, Record, RecordType};
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use crate::proto::tsig::Key;
use crate::snapshot::Snapshot;

/// Tries per secondary.
const TRIES: u32 = 3;
/// Wait for an answer per try.
const WAIT: Duration = Duration::from_secs(1);

/// One zone's NOTIFY: what to announce, to whom, signed with what.
#[derive(Debug)]
pub struct Notify {
    /// The zone's origin.
    pub zone: Name,
    /// Its new SOA.
    pub soa: Record,
    /// Its `also_notify` secondaries.
    pub targets: Vec<SocketAddr>,
    /// Its first transfer key, if it has one.
    pub key: Option<Key>,
}

/// Zones of `next` whose serial differs from `prev`'s (or that are new), with their SOA,
/// where to send NOTIFY and the key to sign it with.
pub fn changed(prev: &Snapshot, next: &Snapshot) -> Vec<Notify> {
    next.config
        .zones
        .iter()
        .zip(next.zones.iter())
        .filter(|(z, _)| !z.also_notify.is_empty())
        .filter(|(z, data)| {
            prev.zone_by_origin(&z.origin)
                .is_none_or(|p| p.serial != data.serial)
        })
        .map(|(z, data)| Notify {
            zone: z.origin.clone(),
            soa: data.soa.clone(),
            targets: z.also_notify.clone(),
            key: z.transfer_keys.first().cloned(),
        })
        .collect()
}

/// Sends NOTIFY for every zone whose serial a newly stored Snapshot changed, once it is
/// live (the store comes first), until `cancel`.
pub async fn run(
    snapshots: crate::snapshot::SnapshotHandle,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let mut stored = snapshots.watch();
    let mut last = snapshots.load_full();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = stored.changed() => {
                if r.is_err() {
                    return Ok(());
                }
            }
        }
        let next = snapshots.load_full();
        for n in changed(&last, &next) {
            send(n);
        }
        last = next;
    }
}

/// Sends `n` to every target (in the background; never blocks the caller).
pub fn send(n: Notify) {
    for target in n.targets {
        let (zone, soa, key) = (n.zone.clone(), n.soa.clone(), n.key.clone());
        tokio::spawn(async move {
            let result = match notify_one(&zone, &soa, key.as_ref(), target).await {
                Ok(()) => {
                    debug!(%zone, %target, "secondary notified");
                    "acknowledged"
                }
                Err(e) => {
                    warn!(%zone, %target, error = %e, "NOTIFY not acknowledged");
                    "failed"
                }
            };
            metrics::counter!("detour_dns_notify_total", "target" => target.to_string(), "result" => result)
                .increment(1);
        });
    }
}

async fn notify_one(
    zone: &Name,
    soa: &Record,
    key: Option<&Key>,
    target: SocketAddr,
) -> Result<(), String> {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().map_err(|_| "address")?
    } else {
        "[::]:0".parse().map_err(|_| "address")?
    };
    let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    let mut last = String::from("no answer");
    for _ in 0..TRIES {
        let id: u16 = rand::random();
        let mut m = Message::new(id, MessageType::Query, OpCode::Notify);
        m.metadata.authoritative = true;
        let mut q = Query::query(zone.clone(), RecordType::SOA);
        q.set_query_class(DNSClass::IN);
        m.add_query(q);
        m.add_answer(soa.clone());
        // A signed NOTIFY must be acknowledged signed: anyone can send an unsigned NOERROR.
        let mut check = key
            .map(|k| k.sign_request(&mut m))
            .transpose()
            .map_err(|e| e.to_string())?;
        let bytes = m.to_vec().map_err(|e| e.to_string())?;
        sock.send_to(&bytes, target)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 512];
        match tokio::time::timeout(WAIT, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from == target => match Message::from_vec(&buf[..n]) {
                Ok(r) if r.metadata.id == id => {
                    let code = r.metadata.response_code;
                    let signed = check.as_mut().map_or(Ok(()), |c| c.check(&buf[..n]));
                    match (r.signature().and_then(|t| t.data.error), signed) {
                        (Some(e), _) => last = format!("answered {code}, TSIG error {e:?}"),
                        (None, Err(e)) => last = format!("answer fails the TSIG check: {e}"),
                        (None, Ok(())) if code == ResponseCode::NoError => return Ok(()),
                        (None, Ok(())) => last = format!("answered {code}"),
                    }
                }
                _ => last = "unreadable answer".into(),
            },
            Ok(Ok(_)) => last = "answer from elsewhere".into(),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no answer".into(),
        }
    }
    Err(last)
}
