//! The cluster's link to etcd (the `cluster` feature): the client, the session and the
//! mirror (see the module above).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Ballot, Link, Member, Unavailable, View, WRITE_TIMEOUT, config_digest, keys, view};
use crate::audit;
use crate::config::Cluster as Settings;
use crate::config::Config;

/// An operation of a transaction (a put or a delete).
pub type Op = TxnOp;
/// A condition of a transaction.
pub type Cond = Compare;

static SESSION_LOG: crate::telemetry::Throttle =
    crate::telemetry::Throttle::new(Duration::from_secs(60));
static WATCH_LOG: crate::telemetry::Throttle =
    crate::telemetry::Throttle::new(Duration::from_secs(60));

/// How long the view may stay behind etcd's revision before the mirror reads again.
const STALL: Duration = Duration::from_secs(3);

/// One try of a write: a request to a member that just died hangs until then.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// The pause between tries.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Most operations etcd takes in one transaction (its `--max-txn-ops` default is 128).
const TXN_OPS: usize = 100;

/// The running cluster link.
#[derive(Clone)]
pub struct Cluster {
    settings: Settings,
    /// Set once the client is made: with etcd users, making it logs in, which needs etcd.
    client: Arc<tokio::sync::OnceCell<Client>>,
    view: watch::Receiver<Arc<View>>,
    link: watch::Receiver<Link>,
    ballot: watch::Sender<Ballot>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("instance", &self.settings.instance)
            .field("prefix", &self.settings.prefix)
            .finish()
    }
}

fn connect_options(s: &Settings) -> Result<ConnectOptions, String> {
    let mut o = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true)
        // Without a leader etcd cannot agree on anything: requests and watches fail at once
        // instead of hanging on a member cut off from the others.
        .with_require_leader(true);
    if let Some((user, password)) = &s.auth {
        // etcd's tokens expire (--auth-token-ttl): log in again rather than fail.
        o = o
            .with_user(user.clone(), password.clone())
            .with_auto_token_refresh(true);
    }
    if let Some(tls) = &s.tls {
        let mut t = etcd_client::TlsOptions::new();
        if let Some(ca) = &tls.ca {
            let pem =
                std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
            t = t.ca_certificate(etcd_client::Certificate::from_pem(pem));
        }
        if let Some((cert, key)) = &tls.identity {
            let c =
                std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
            let k =
                std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
            t = t.identity(etcd_client::Identity::from_pem(c, k));
        }
        o = o.with_tls(t);
    }
    Ok(o)
}

/// A client of its own for a command (`detour user`): no lease, no member key, no vote.
async fn command_client(settings: &Settings) -> Result<Client, Unavailable> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = connect_options(settings).map_err(Unavailable)?;
    tokio::time::timeout(
        WRITE_TIMEOUT,
        Client::connect(&settings.etcd, Some(options)),
    )
    .await
    .map_err(|_| {
        Unavailable(format!(
            "no answer from etcd in {}s",
            WRITE_TIMEOUT.as_secs()
        ))
    })?
    .map_err(|e| Unavailable(format!("cannot connect to etcd: {e}")))
}

/// The value of `rel` (under the prefix) and its modification revision (0: no such key).
async fn get_one(client: &mut Client, key: &str) -> Result<(Option<Vec<u8>>, i64), Unavailable> {
    let r = tokio::time::timeout(WRITE_TIMEOUT, client.get(key, None))
        .await
        .map_err(|_| Unavailable("no answer from etcd".into()))?
        .map_err(|e| Unavailable(e.to_string()))?;
    Ok(match r.kvs().first() {
        Some(kv) => (Some(kv.value().to_vec()), kv.mod_revision()),
        None => (None, 0),
    })
}

/// Reads the key `rel` under the cluster's prefix with a client of its own (a command's).
pub async fn read(settings: &Settings, rel: &str) -> Result<Option<Vec<u8>>, Unavailable> {
    let mut client = command_client(settings).await?;
    let key = format!("{}{rel}", settings.prefix);
    get_one(&mut client, &key).await.map(|(v, _)| v)
}

/// Rewrites the key `rel` under the cluster's prefix with what `change` makes of its value
/// (`None`: no such key), if nobody changed it in between (tried again, five times at
/// most): a command's edit of one shared document (`detour user`). `change`'s own refusal
/// is the inner error.
pub async fn edit<E>(
    settings: &Settings,
    rel: &str,
    mut change: impl FnMut(Option<&[u8]>) -> Result<Vec<u8>, E>,
) -> Result<Result<(), E>, Unavailable> {
    let mut client = command_client(settings).await?;
    let key = format!("{}{rel}", settings.prefix);
    for _ in 0..5 {
        let (value, revision) = get_one(&mut client, &key).await?;
        let new = match change(value.as_deref()) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then(vec![TxnOp::put(key.clone(), new, None)]);
        let r = tokio::time::timeout(WRITE_TIMEOUT, client.txn(txn))
            .await
            .map_err(|_| Unavailable("no answer from etcd".into()))?
            .map_err(|e| Unavailable(e.to_string()))?;
        if r.succeeded() {
            return Ok(Ok(()));
        }
    }
    Err(Unavailable(format!(
        "{rel} was changed by someone else five times in a row: try again"
    )))
}

impl Cluster {
    /// Starts connecting (in the background: etcd may be down now, or refuse the
    /// password; status says so) and starts the session and the mirror.
    pub async fn start(
        config: &Config,
        settings: Settings,
        serial_floor: u32,
        cancel: CancellationToken,
    ) -> Result<Cluster, String> {
        // The process's rustls provider, for TLS to etcd (ring, like every other TLS here).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let options = connect_options(&settings)?;
        let client = Arc::new(tokio::sync::OnceCell::new());
        let (view_tx, view) = watch::channel(Arc::new(View::default()));
        let (link_tx, link) = watch::channel(Link {
            reachable: false,
            since: Utc::now(),
            error: Some("not connected yet".into()),
            synced: false,
            etcd_revision: 0,
        });
        let (ballot, ballot_rx) = watch::channel(Ballot::default());
        let c = Cluster {
            settings,
            client,
            view,
            link,
            ballot,
        };
        let member = Member {
            frozen: false,
            started: Utc::now(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            config: config_digest(config),
        };
        let link_tx = Arc::new(link_tx);
        tokio::spawn(c.clone().connect(options, link_tx.clone(), cancel.clone()));
        tokio::spawn(c.clone().session(
            member,
            serial_floor,
            ballot_rx,
            link_tx.clone(),
            cancel.clone(),
        ));
        tokio::spawn(c.clone().mirror(view_tx, link_tx, cancel));
        Ok(c)
    }

    /// Makes the client, trying again every second until it works (with etcd users,
    /// making it logs in).
    async fn connect(
        self,
        options: ConnectOptions,
        link: Arc<watch::Sender<Link>>,
        cancel: CancellationToken,
    ) {
        loop {
            let attempt = Client::connect(&self.settings.etcd, Some(options.clone()));
            let r = tokio::select! {
                r = tokio::time::timeout(WRITE_TIMEOUT, attempt) => r,
                _ = cancel.cancelled() => return,
            };
            let e = match r {
                Ok(Ok(c)) => {
                    let _ = self.client.set(c);
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer in {}s", WRITE_TIMEOUT.as_secs()),
            };
            set_link(&link, false, Some(format!("cannot connect: {e}")));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// The client, once made.
    fn client(&self) -> Result<Client, Unavailable> {
        self.client.get().cloned().ok_or_else(|| {
            Unavailable(
                self.link
                    .borrow()
                    .error
                    .clone()
                    .unwrap_or_else(|| "not connected yet".into()),
            )
        })
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.settings.instance
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The latest view (watch it for changes).
    pub fn view(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// The link to etcd (watch it for changes).
    pub fn link(&self) -> watch::Receiver<Link> {
        self.link.clone()
    }

    /// Hands this instance's verdicts to the session, which writes what changed.
    pub fn vote(&self, ballot: Ballot) {
        self.ballot.send_if_modified(|b| {
            let changed = *b != ballot;
            *b = ballot;
            changed
        });
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.settings.prefix)
    }

    /// Puts `clock` forward to now, unless it is already ahead.
    fn tick(&self, txn_ops: &mut Vec<TxnOp>) -> Compare {
        let now = keys::clock_value(Utc::now());
        txn_ops.push(TxnOp::put(self.key(keys::CLOCK), now.clone(), None));
        Compare::value(self.key(keys::CLOCK), CompareOp::Less, now)
    }

    /// Runs `ops` in one transaction with the clock put forward, if `when` holds; returns
    /// the revision it made and whether `when` held.
    async fn txn(&self, when: Vec<Compare>, ops: Vec<TxnOp>) -> Result<(i64, bool), Unavailable> {
        self.txn_marked(when, ops, None).await
    }

    /// [`Self::txn`]; `mark`, a key the transaction creates (an audit entry's, unique),
    /// tells a try that timed out but committed from one that did not: before trying
    /// again, if the mark exists, the change is done.
    async fn txn_marked(
        &self,
        when: Vec<Compare>,
        ops: Vec<TxnOp>,
        mark: Option<&str>,
    ) -> Result<(i64, bool), Unavailable> {
        let mut client = self.client()?;
        let mut with_clock = ops.clone();
        let ahead = self.tick(&mut with_clock);
        // Two tries: the clock moves forward only if it is behind (etcd's transactions
        // have no "max"), so the first try includes it and the second does without.
        let mut first = when.clone();
        first.push(ahead);
        let txn = Txn::new()
            .when(first)
            .and_then(with_clock)
            .or_else(vec![TxnOp::txn(Txn::new().when(when).and_then(ops))]);
        // A request that went to a member that just died hangs until its connection is
        // found dead: try again (on another member) rather than wait. A try that timed out
        // may still have committed: `mark` tells (without one, the transactions here are
        // idempotent puts of the same values).
        let mut last = String::new();
        let mut answer = None;
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        // An etcd member that lost its leader ("no leader") answers at once: its cluster
        // is electing a new one, which takes about an election timeout. Keep trying until
        // the deadline rather than refuse a command one member down would not refuse.
        while let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) {
            match tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), client.txn(txn.clone())).await {
                Ok(Ok(r)) => {
                    answer = Some(r);
                    break;
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("no answer in {}s", ATTEMPT_TIMEOUT.as_secs()),
            }
            if let Some(mark) = mark
                && let Ok(Ok(r)) =
                    tokio::time::timeout(ATTEMPT_TIMEOUT, client.get(mark, None)).await
                && let Some(kv) = r.kvs().first()
            {
                return Ok((kv.mod_revision(), true));
            }
            tokio::time::sleep(
                RETRY_PAUSE.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            )
            .await;
        }
        let r = answer.ok_or(Unavailable(last))?;
        let revision = r.header().map_or(0, |h| h.revision());
        let held = r.succeeded()
            || r.op_responses().iter().any(|o| match o {
                etcd_client::TxnOpResponse::Txn(t) => t.succeeded(),
                _ => false,
            });
        Ok((revision, held))
    }

    /// An operator's change: `ops` and an audit entry in one transaction, if `when` holds
    /// (false: somebody else changed it first). Returns the revision.
    pub async fn write(
        &self,
        when: Vec<Compare>,
        mut ops: Vec<TxnOp>,
        entry: &audit::Entry,
    ) -> Result<(i64, bool), Unavailable> {
        let line = serde_json::to_vec(entry).map_err(|e| Unavailable(e.to_string()))?;
        let key = format!(
            "{}{:016}-{}-{:04x}",
            keys::AUDIT,
            entry.time.timestamp_millis().max(0),
            self.settings.instance,
            rand::random::<u16>()
        );
        let mark = self.key(&key);
        ops.push(TxnOp::put(mark.clone(), line, None));
        self.txn_marked(when, ops, Some(&mark)).await
    }

    /// Writes `ops` in one transaction (no condition, no audit entry).
    pub async fn write_plain(&self, ops: Vec<TxnOp>) -> Result<i64, Unavailable> {
        self.txn(Vec::new(), ops).await.map(|(r, _)| r)
    }

    /// The put of `value` (JSON) at `rel`.
    pub fn put_json<T: serde::Serialize>(
        &self,
        rel: &str,
        value: &T,
    ) -> Result<TxnOp, Unavailable> {
        let v = serde_json::to_vec(value).map_err(|e| Unavailable(e.to_string()))?;
        Ok(TxnOp::put(self.key(rel), v, None))
    }

    /// The delete of `rel`.
    pub fn delete(&self, rel: &str) -> TxnOp {
        TxnOp::delete(self.key(rel), None)
    }

    /// "`rel` does not exist yet".
    pub fn absent(&self, rel: &str) -> Compare {
        Compare::create_revision(self.key(rel), CompareOp::Equal, 0)
    }

    /// "`rel` holds `value` (JSON) as it was read".
    pub fn holds<T: serde::Serialize>(&self, rel: &str, value: &T) -> Compare {
        let v = serde_json::to_vec(value).unwrap_or_default();
        Compare::value(self.key(rel), CompareOp::Equal, v)
    }

    /// The leader's clock tick: time-driven changes (a maintenance window, an override's
    /// `until`) happen at a revision, the same on every instance.
    pub async fn tick_clock(&self) -> Result<i64, Unavailable> {
        self.txn(Vec::new(), Vec::new()).await.map(|(r, _)| r)
    }

    /// Waits until the view reaches `revision` (bounded).
    pub async fn caught_up(&self, revision: i64) -> bool {
        let mut v = self.view.clone();
        tokio::time::timeout(WRITE_TIMEOUT, v.wait_for(|v| v.revision >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The audit log's last `limit` entries, newest last.
    pub async fn audit_tail(&self, limit: usize) -> Result<Vec<audit::Entry>, Unavailable> {
        let mut client = self.client()?;
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(
                etcd_client::SortTarget::Key,
                etcd_client::SortOrder::Descend,
            )
            .with_limit(limit as i64);
        let r = tokio::time::timeout(WRITE_TIMEOUT, client.get(self.key(keys::AUDIT), Some(opts)))
            .await
            .map_err(|_| Unavailable("no answer".into()))?
            .map_err(|e| Unavailable(e.to_string()))?;
        let mut out: Vec<audit::Entry> = r
            .kvs()
            .iter()
            .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
            .collect();
        out.reverse();
        Ok(out)
    }

    /// Keeps a lease, this instance's member key and votes under it; after any failure,
    /// starts over with a new lease (a lease that ran out took the keys with it).
    async fn session(
        self,
        mut member: Member,
        serial_floor: u32,
        mut ballot: watch::Receiver<Ballot>,
        link: Arc<watch::Sender<Link>>,
        cancel: CancellationToken,
    ) {
        let ttl = self.settings.lease_ttl.as_secs().max(2) as i64;
        let mut lease = None;
        loop {
            let r = tokio::select! {
                r = self.lease_once(&mut member, serial_floor, &mut ballot, &link, ttl, &mut lease) => r,
                _ = cancel.cancelled() => break,
            };
            if let Err(e) = r {
                set_link(&link, false, Some(e.clone()));
                metrics::counter!("detour_cluster_errors_total", "task" => "session").increment(1);
                if let Some(held) = SESSION_LOG.allow() {
                    warn!(error = %e, repeated = held, "cluster: etcd session lost; serving the last agreed state, refusing commands and retrying every 0.5s (logged once a minute)");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = cancel.cancelled() => break,
            }
        }
        // Leave at once rather than after lease_ttl: the others recount without this vote.
        if let (Some(id), Ok(mut c)) = (lease, self.client()) {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(id)).await;
        }
    }

    async fn lease_once(
        &self,
        member: &mut Member,
        serial_floor: u32,
        ballot: &mut watch::Receiver<Ballot>,
        link: &watch::Sender<Link>,
        ttl: i64,
        lease: &mut Option<i64>,
    ) -> Result<(), String> {
        let mut client = self.client().map_err(|e| e.0)?;
        // Keep the lease etcd still holds (a member restarted, etcd elected a new leader):
        // this instance's votes then never leave the count. Otherwise a new one.
        let kept = match *lease {
            Some(id) => client
                .lease_time_to_live(id, None)
                .await
                .is_ok_and(|r| r.ttl() > 0),
            None => false,
        };
        let id = match (*lease, kept) {
            (Some(id), true) => id,
            _ => {
                let granted = client
                    .lease_grant(ttl, None)
                    .await
                    .map_err(|e| format!("lease grant: {e}"))?;
                *lease = Some(granted.id());
                granted.id()
            }
        };
        let (mut keeper, mut stream) = client
            .lease_keep_alive(id)
            .await
            .map_err(|e| format!("lease keep-alive: {e}"))?;
        // Two live instances with one name would overwrite each other's votes.
        let member_key = self.key(&format!("{}{}", keys::MEMBERS, self.settings.instance));
        let held = client
            .get(member_key.clone(), None)
            .await
            .map_err(|e| format!("read member key: {e}"))?;
        if let Some(kv) = held.kvs().first()
            && kv.lease() != id
            && kv.lease() != 0
            && kept_elsewhere(&mut client, kv.lease()).await
        {
            return Err(format!(
                "another live instance is named {:?} (or this instance's previous run, whose lease ends within lease_ttl): every instance needs its own [cluster] instance",
                self.settings.instance
            ));
        }
        // The serial base, once per cluster: above every serial this instance has served.
        let base = (crate::snapshot::unix_now()).max(serial_floor).to_string();
        let _ = self
            .txn(
                vec![self.absent(keys::SERIAL_BASE)],
                vec![TxnOp::put(self.key(keys::SERIAL_BASE), base, None)],
            )
            .await
            .map_err(|e| e.0)?;
        // Cluster time starts here (etcd compares a missing key's value as false, so the
        // "put it forward if behind" of every write needs it to exist).
        let now = keys::clock_value(Utc::now());
        let start = Txn::new()
            .when(vec![self.absent(keys::CLOCK)])
            .and_then(vec![TxnOp::put(self.key(keys::CLOCK), now, None)]);
        tokio::time::timeout(ATTEMPT_TIMEOUT, client.txn(start))
            .await
            .map_err(|_| "cluster time: no answer".to_string())?
            .map_err(|e| format!("cluster time: {e}"))?;
        // Every current vote is written (under this lease) before anything is removed, so
        // that no revision shows this instance without its votes; then the keys of checks
        // it no longer votes on (a previous run's, a lost lease's) go.
        let mut written = Ballot::default();
        let current = ballot.borrow_and_update().clone();
        self.publish(id, member, &mut written, &current, true)
            .await?;
        let mine = self.key(&format!("{}{}/", keys::VOTES, self.settings.instance));
        let present = client
            .get(
                mine.clone(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .map_err(|e| format!("read own votes: {e}"))?;
        let stale: Vec<TxnOp> = present
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                let check = key.strip_prefix(mine.as_str())?;
                (!current.votes.contains_key(check)).then(|| TxnOp::delete(kv.key(), None))
            })
            .collect();
        for chunk in stale.chunks(TXN_OPS) {
            self.txn(Vec::new(), chunk.to_vec())
                .await
                .map_err(|e| e.0)?;
        }
        info!(instance = %self.settings.instance, lease = id, kept, "cluster: joined");
        set_link(link, true, None);
        let every = Duration::from_millis((ttl as u64 * 1000 / 3).max(500));
        // The lease is kept alive on its own, whatever publishing waits for.
        let keep_alive = async {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                keeper
                    .keep_alive()
                    .await
                    .map_err(|e| format!("keep-alive: {e}"))?;
                let r = tokio::time::timeout(Duration::from_secs(ttl as u64), stream.message())
                    .await
                    .map_err(|_| "keep-alive: no answer".to_string())?
                    .map_err(|e| format!("keep-alive: {e}"))?
                    .ok_or("keep-alive stream ended")?;
                if r.ttl() <= 0 {
                    return Err::<(), String>("the lease ran out".into());
                }
                if let Some(h) = r.header() {
                    let rev = h.revision();
                    link.send_if_modified(|l| std::mem::replace(&mut l.etcd_revision, rev) != rev);
                }
                set_link(link, true, None);
            }
        };
        let publishing = async {
            loop {
                if ballot.changed().await.is_err() {
                    return Ok(());
                }
                let current = ballot.borrow_and_update().clone();
                self.publish(id, member, &mut written, &current, false)
                    .await?;
            }
        };
        tokio::select! {
            r = keep_alive => r,
            r = publishing => r,
        }
    }

    /// Writes what changed between `written` and `current` (everything when `all`), under
    /// `lease`, in transactions of at most [`TXN_OPS`] operations.
    async fn publish(
        &self,
        lease: i64,
        member: &mut Member,
        written: &mut Ballot,
        current: &Ballot,
        all: bool,
    ) -> Result<(), String> {
        let leased = || Some(PutOptions::new().with_lease(lease));
        let mut ops = Vec::new();
        let vote_key = |check: &str| {
            self.key(&format!(
                "{}{}/{check}",
                keys::VOTES,
                self.settings.instance
            ))
        };
        for (check, v) in &current.votes {
            if all || written.votes.get(check) != Some(v) {
                let bytes = serde_json::to_vec(v).map_err(|e| e.to_string())?;
                ops.push(TxnOp::put(vote_key(check), bytes, leased()));
            }
        }
        for check in written.votes.keys() {
            if !current.votes.contains_key(check) {
                ops.push(TxnOp::delete(vote_key(check), None));
            }
        }
        // The member key last: an instance counts once its votes are in.
        if all || current.frozen != written.frozen {
            member.frozen = current.frozen;
            let v = serde_json::to_vec(&*member).map_err(|e| e.to_string())?;
            ops.push(TxnOp::put(
                self.key(&format!("{}{}", keys::MEMBERS, self.settings.instance)),
                v,
                leased(),
            ));
        }
        let n = ops.len();
        for chunk in ops.chunks(TXN_OPS) {
            self.txn(Vec::new(), chunk.to_vec())
                .await
                .map_err(|e| e.0)?;
        }
        if n > 0 {
            metrics::counter!("detour_cluster_writes_total").increment(n as u64);
        }
        *written = current.clone();
        Ok(())
    }

    /// Mirrors the prefix into the view: a full read, then a watch from the next revision;
    /// starts over after a break or a compaction.
    async fn mirror(
        self,
        view: watch::Sender<Arc<View>>,
        link: Arc<watch::Sender<Link>>,
        cancel: CancellationToken,
    ) {
        loop {
            let r = tokio::select! {
                r = self.mirror_once(&view, &link) => r,
                _ = cancel.cancelled() => return,
            };
            if let Err(e) = r {
                set_link(&link, false, Some(e.clone()));
                metrics::counter!("detour_cluster_errors_total", "task" => "watch").increment(1);
                if let Some(held) = WATCH_LOG.allow() {
                    warn!(error = %e, repeated = held, "cluster: etcd watch lost; serving the last agreed state and retrying every 0.5s (logged once a minute)");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    async fn mirror_once(
        &self,
        view: &watch::Sender<Arc<View>>,
        link: &watch::Sender<Link>,
    ) -> Result<(), String> {
        let mut client = self.client().map_err(|e| e.0)?;
        let prefix = self.settings.prefix.clone();
        let before = view.borrow().revision;
        // Everything but the audit log, family by family at one revision (the audit log
        // grows with every operator action: a single read of it all would one day exceed
        // what one answer may carry).
        let first = client
            .get(
                format!("{prefix}{}", keys::MEMBERS),
                Some(GetOptions::new().with_prefix()),
            )
            .await
            .map_err(|e| format!("read: {e}"))?;
        let revision = first.header().map_or(0, |h| h.revision());
        let mut next = View {
            revision,
            // Cluster time never goes back, even across a re-read.
            clock: view.borrow().clock,
            ..View::default()
        };
        let mut kvs: Vec<etcd_client::KeyValue> = first.kvs().to_vec();
        for family in [
            keys::VOTES,
            keys::OVERRIDES,
            keys::INCIDENTS,
            keys::DRILLS,
            keys::ZONES,
        ] {
            let r = client
                .get(
                    format!("{prefix}{family}"),
                    Some(GetOptions::new().with_prefix().with_revision(revision)),
                )
                .await
                .map_err(|e| format!("read {family}: {e}"))?;
            kvs.extend(r.kvs().iter().cloned());
        }
        for key in [keys::CLOCK, keys::SERIAL_BASE] {
            let r = client
                .get(
                    format!("{prefix}{key}"),
                    Some(GetOptions::new().with_revision(revision)),
                )
                .await
                .map_err(|e| format!("read {key}: {e}"))?;
            kvs.extend(r.kvs().iter().cloned());
        }
        // Audit entries written while the watch was broken are news all the same (the
        // leader tells them); at the first read, history is not news.
        if before > 0 {
            let r = client
                .get(
                    format!("{prefix}{}", keys::AUDIT),
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_revision(revision)
                            .with_min_mod_revision(before + 1)
                            .with_sort(
                                etcd_client::SortTarget::Key,
                                etcd_client::SortOrder::Descend,
                            )
                            .with_limit(view::NEWS as i64),
                    ),
                )
                .await
                .map_err(|e| format!("read audit: {e}"))?;
            let mut news: Vec<etcd_client::KeyValue> = r.kvs().to_vec();
            news.reverse();
            for kv in news {
                let key = String::from_utf8_lossy(kv.key());
                let rel = key.strip_prefix(prefix.as_str()).unwrap_or(&key);
                if let Err(e) = next.put(
                    rel,
                    kv.value(),
                    (kv.create_revision(), kv.mod_revision()),
                    true,
                ) {
                    warn!("cluster: {e}");
                }
            }
        }
        for kv in &kvs {
            let key = String::from_utf8_lossy(kv.key());
            let rel = key.strip_prefix(prefix.as_str()).unwrap_or(&key);
            if let Err(e) = next.put(
                rel,
                kv.value(),
                (kv.create_revision(), kv.mod_revision()),
                false,
            ) {
                warn!("cluster: {e}");
            }
        }
        let start = next.revision + 1;
        view.send_replace(Arc::new(next));
        link.send_modify(|l| l.synced = true);
        set_link(link, true, None);
        let mut stream = client
            .watch(
                prefix.clone(),
                Some(WatchOptions::new().with_prefix().with_start_revision(start)),
            )
            .await
            .map_err(|e| format!("watch: {e}"))?;
        // A watch can stall without an error (its member cut off but its connection not
        // yet found dead): when etcd's revision, as the keep-alives report it, stays ahead
        // of the view for STALL, read everything again.
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut behind_since: Option<tokio::time::Instant> = None;
        loop {
            let r = tokio::select! {
                r = stream.message() => r.map_err(|e| format!("watch: {e}"))?,
                _ = check.tick() => {
                    let ahead = link.borrow().etcd_revision > view.borrow().revision;
                    if ahead {
                        // etcd answers with its current revision once every event before
                        // it was sent (other prefixes' writes move it too).
                        stream
                            .request_progress()
                            .await
                            .map_err(|e| format!("watch progress: {e}"))?;
                    }
                    let now = tokio::time::Instant::now();
                    match (ahead, behind_since) {
                        (false, _) => behind_since = None,
                        (true, None) => behind_since = Some(now),
                        (true, Some(t)) if now - t >= STALL => {
                            return Err(format!(
                                "watch stalled: etcd is at revision {}, the view at {}",
                                link.borrow().etcd_revision,
                                view.borrow().revision
                            ));
                        }
                        (true, Some(_)) => {}
                    }
                    continue;
                }
            };
            let Some(r) = r else { break };
            if r.canceled() {
                return Err(format!(
                    "watch cancelled ({}; compacted at {})",
                    r.cancel_reason(),
                    r.compact_revision()
                ));
            }
            let revision = r.header().map_or(0, |h| h.revision());
            if r.events().is_empty() {
                // A progress report: nothing under the prefix changed up to `revision`.
                view.send_if_modified(|v| {
                    let later = revision > v.revision;
                    if later {
                        Arc::make_mut(v).revision = revision;
                    }
                    later
                });
                continue;
            }
            view.send_modify(|v| {
                let v = Arc::make_mut(v);
                for e in r.events() {
                    let Some(kv) = e.kv() else { continue };
                    let key = String::from_utf8_lossy(kv.key());
                    let rel = key.strip_prefix(prefix.as_str()).unwrap_or(&key);
                    match e.event_type() {
                        EventType::Put => {
                            if let Err(e) = v.put(
                                rel,
                                kv.value(),
                                (kv.create_revision(), kv.mod_revision()),
                                true,
                            ) {
                                warn!("cluster: {e}");
                            }
                        }
                        EventType::Delete => v.delete(rel),
                    }
                }
                v.revision = v.revision.max(revision);
            });
        }
        Err("watch ended".into())
    }
}

/// True when etcd still holds `lease` (another session's).
async fn kept_elsewhere(client: &mut Client, lease: i64) -> bool {
    client
        .lease_time_to_live(lease, None)
        .await
        .is_ok_and(|r| r.ttl() > 0)
}

fn set_link(link: &watch::Sender<Link>, reachable: bool, error: Option<String>) {
    link.send_if_modified(|l| {
        if l.reachable == reachable && (reachable || l.error == error) {
            return false;
        }
        if l.reachable != reachable {
            l.since = Utc::now();
            if reachable {
                info!("cluster: etcd reachable");
            } else {
                warn!(error = error.as_deref().unwrap_or(""), "cluster: etcd unreachable or without quorum: serving the last agreed state; operator commands are refused until it is back");
            }
        }
        l.reachable = reachable;
        l.error = error;
        metrics::gauge!("detour_cluster_etcd_reachable").set(if reachable { 1.0 } else { 0.0 });
        true
    });
}
