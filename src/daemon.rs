//! Wiring: load the config, build the first Snapshot, bind every listener, and run until a
//! signal says stop. SIGHUP reloads; a reload that fails validation keeps the old Snapshot.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::checks::Checks;
use crate::checks::probe::Prober;
use crate::config::{Config, Diagnostics};
use crate::control::Control;
use crate::snapshot::SnapshotHandle;
use crate::states::{self, Actor, Engine, StatesTask};
use crate::{admin, dns, fds, incidents, overrides, page, systemd};

/// Why `detour run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid (exit 2).
    #[error("{0}")]
    Config(#[from] Diagnostics),
    /// A listener could not be bound or a task failed (exit 1).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// A running detour: its Snapshot, bound addresses and tasks.
pub struct Running {
    /// Progress of the tasks systemd's watchdog watches.
    liveness: crate::systemd::Liveness,
    snapshots: SnapshotHandle,
    dns_addrs: Vec<SocketAddr>,
    admin_addr: String,
    page_addrs: Vec<String>,
    console_addrs: Vec<String>,
    control: Arc<Control>,
    cancel: CancellationToken,
    tasks: JoinSet<io::Result<()>>,
}

/// Slack on top of the longest probe timeout when waiting for the first verdicts.
const FIRST_ROUND_SLACK: Duration = Duration::from_millis(1500);

/// Starts the checks and waits for every check's first verdict (unless restored from
/// `state_dir`), bounded by the longest timeout plus the start-up jitter. Nothing is
/// answered before this returns, so no query gets an answer chosen without evidence.
async fn first_verdicts(
    config: &Arc<Config>,
    overrides: overrides::Overrides,
    cancel: &CancellationToken,
    problems: &mut Vec<String>,
) -> (
    Engine,
    Checks,
    mpsc::Receiver<crate::checks::runner::Report>,
) {
    let now = Utc::now();
    let (saved, problem) = states::restore(config, now);
    problems.extend(problem);
    let mut engine = Engine::new(config.clone(), saved.as_ref(), now);
    engine.set_overrides(overrides);
    let (tx, mut rx) = mpsc::channel(4096);
    // Built once: a changed probe_source takes effect at the next restart, like the rest of
    // [server] (`Control::try_reload` says so).
    let prober = Prober::with_source(config.server.probe_source);
    if let Some(ip) = prober.source() {
        info!(probe_source = %ip, "probes leave from {ip}");
    }
    let mut checks = Checks::new(prober, tx, cancel.child_token());
    let health = engine.health();
    checks.apply(config, |id| health.verdict(id));
    if !engine.all_known() {
        let plan = crate::checks::plan(config);
        let slowest = |f: fn(&crate::config::Timing) -> Duration| {
            let longest = plan.values().map(|(_, t)| f(t)).max().unwrap_or_default();
            tokio::time::Instant::now() + longest + FIRST_ROUND_SLACK
        };
        take_reports(
            &mut engine,
            &mut rx,
            slowest(|t| t.timeout),
            Engine::all_known,
        )
        .await;
        if !engine.all_known() {
            warn!(
                "some checks gave no verdict in the first round; they count as passing until they do"
            );
        }
        // A check that failed in the first round waits for a canary that passed after its
        // failure, then for its next failure (the failure asked the canaries to probe at once):
        // give it that long, so the first answers already send people away from a dead service.
        if engine.awaiting_any() && engine.canary_passed() {
            let deadline = slowest(|t| t.down_pace() + t.timeout);
            take_reports(&mut engine, &mut rx, deadline, |e| !e.awaiting_any()).await;
        }
    }
    for c in engine.evaluate(Utc::now()) {
        states::log_change(&c);
    }
    (engine, checks, rx)
}

/// Feeds probe reports to `engine` until `done` says so or `deadline` passes.
async fn take_reports(
    engine: &mut Engine,
    rx: &mut mpsc::Receiver<crate::checks::runner::Report>,
    deadline: tokio::time::Instant,
    done: impl Fn(&Engine) -> bool,
) {
    while !done(engine) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(r)) => {
                engine.report(r);
            }
            _ => break,
        }
    }
}

/// The longest start-up waits for etcd before serving from the cache.
const JOIN_WAIT: Duration = Duration::from_secs(5);

/// Joins the cluster: hands this instance's first verdicts to etcd, waits (at most
/// `lease_ttl`, at most [`JOIN_WAIT`]) to see them in the view, and builds the first Snapshot from the cluster's
/// agreement. If etcd cannot be reached by then, the first Snapshot is the last agreed
/// state this instance cached in `state_dir` (verdicts, overrides, incidents): the state
/// the others also keep serving through an etcd outage, rather than this instance's own
/// view, which would diverge from theirs; commands are refused until etcd is back.
async fn join_cluster(
    config: &Arc<Config>,
    link: crate::cluster::Cluster,
    local: Engine,
    cached_incidents: &Arc<incidents::Incidents>,
    floor: u32,
    problems: &mut Vec<String>,
) -> (
    Engine,
    Option<states::ClusterMode>,
    Arc<incidents::Incidents>,
    crate::snapshot::Snapshot,
) {
    let ballot = states::cluster::ballot(&local, &Default::default());
    link.vote(ballot.clone());
    let me = link.instance().to_string();
    let mut view = link.view();
    // Bounded, since nothing is answered meanwhile: etcd answers in milliseconds when it
    // is there at all.
    let wait = config
        .cluster
        .as_ref()
        .map_or(JOIN_WAIT, |c| c.lease_ttl.min(JOIN_WAIT));
    let joined = tokio::time::timeout(
        wait,
        view.wait_for(|v| {
            v.members.contains_key(&me)
                && ballot
                    .votes
                    .keys()
                    .all(|k| v.votes.get(&me).is_some_and(|m| m.contains_key(k)))
        }),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let now = Utc::now();
    let (saved, _) = states::restore(config, now);
    let mut agreed = Engine::new(config.clone(), saved.as_ref(), now);
    if !joined && saved.is_none() {
        // Nothing agreed to fall back on (a first start, or a cache too old to trust):
        // this instance's own verdicts, until etcd is back.
        let own = local.health();
        for (id, c) in &own.checks {
            let why = c.last.as_ref().map_or("", |o| o.reason.as_str());
            agreed.set_agreed(id, c.verdict, c.grade, why, now);
        }
    }
    let (cached_overrides, _) = overrides::load_at_start(&config.server.state_dir);
    agreed.set_overrides(cached_overrides.clone());
    let current = view.borrow_and_update().clone();
    let (incidents, at, serial) = if joined {
        let at = states::cluster::agree(&mut agreed, &current);
        info!(instance = %me, members = current.members.len(), revision = current.revision, "cluster: agreed state read");
        (
            Arc::new(current.incidents()),
            at,
            states::cluster::serial_at(&current, floor),
        )
    } else {
        let why = link.link().borrow().error.clone().unwrap_or_default();
        let p = format!(
            "etcd could not be reached at start ({why}): serving the last agreed state cached in state_dir until it is back; commands are refused meanwhile"
        );
        warn!("{p}");
        problems.push(p);
        (cached_incidents.clone(), now, floor)
    };
    for c in agreed.evaluate(at) {
        states::log_change(&c);
    }
    let health = agreed.health();
    let selection = crate::selection::select(config, &health, at);
    let first = crate::snapshot::Snapshot::build(
        config.clone(),
        selection,
        Arc::new(health),
        incidents.clone(),
        None,
        serial,
    );
    // The serials the cluster agreed for this content: from etcd, or when it cannot be
    // reached, as cached (so a restart during an outage serves what the others serve).
    let (cached_pins, p) = states::cluster::cached_pins(config);
    problems.extend(p);
    let pins = if joined { &current.zones } else { &cached_pins };
    let first = first.pin_serials(|origin, digest, _| {
        pins.get(origin)
            .filter(|p| p.digest == digest)
            .map(|p| p.serial)
    });
    let (applied, _) = tokio::sync::watch::channel(current.revision);
    let mode = states::ClusterMode {
        link,
        local,
        view,
        applied,
        news_seen: current.revision,
        ballot,
        tick_after: tokio::time::Instant::now(),
        tick_backoff: Duration::from_secs(1),
        busy: Default::default(),
        cached: (cached_overrides, (**cached_incidents).clone(), cached_pins),
    };
    (agreed, Some(mode), incidents, first)
}

/// Raises the open-file limit and shares it among the listeners' connection caps, keeping a
/// reserve for probes and state files; says so when the configured caps do not fit.
fn connection_caps(config: &Config) -> fds::Caps {
    let s = &config.server;
    let wanted = fds::Caps {
        dns_tcp: s.tcp_max_connections,
        page: s.http.max_connections,
        admin: s.http.admin().max_connections,
    };
    let pages = s.page_listen.len() + config.page.tls.as_ref().map_or(0, |t| t.listen.len());
    let probes = crate::checks::plan(config).len();
    let b = fds::budget(
        fds::raise_limit(),
        wanted,
        s.dns_listen.len(),
        pages,
        probes,
    );
    if let Some(from) = b.lowered_from {
        warn!(
            "only {} open files are allowed (ulimit -n / LimitNOFILE); {} are kept for probes and state files, so connection caps are lowered from ({from}) to ({})",
            b.limit, b.reserve, b.caps
        );
    }
    b.caps
}

/// Binds every listener of `config` and starts serving; `config_path` is re-read on reload.
pub async fn start(config: Config, config_path: &Path) -> Result<Running, RunError> {
    let config = Arc::new(config);
    let cancel = CancellationToken::new();
    let state_dir = &config.server.state_dir;
    std::fs::create_dir_all(state_dir).map_err(|source| RunError::Io {
        context: format!("cannot create state_dir {}", state_dir.display()),
        source,
    })?;
    let mut problems = Vec::new();
    let (saved_overrides, p) = overrides::load_at_start(state_dir);
    problems.extend(p);
    let (saved_incidents, p) = incidents::load(state_dir);
    problems.extend(p);
    // In a cluster, drills live in etcd (the view brings them): drills.json is not read.
    let (drills, p) = if config.cluster.is_none() {
        crate::rehearsal::Drills::load(state_dir)
    } else {
        (crate::rehearsal::Drills::default(), None)
    };
    problems.extend(p);
    let caps = connection_caps(&config);
    let (floor, p) = states::serial_floor(&config);
    problems.extend(p);
    let cluster = match &config.cluster {
        Some(settings) => Some(
            crate::cluster::Cluster::start(&config, settings.clone(), floor, cancel.clone())
                .await
                .map_err(|e| RunError::Io {
                    context: "cannot start the cluster link".into(),
                    source: io::Error::other(e),
                })?,
        ),
        None => None,
    };
    let (engine, checks, reports) =
        first_verdicts(&config, saved_overrides, &cancel, &mut problems).await;
    let incidents = Arc::new(saved_incidents);
    let (engine, cluster_mode, incidents, first) = match cluster {
        None => {
            let first = states::snapshot_of(
                config.clone(),
                engine.health(),
                incidents.clone(),
                None,
                floor,
            );
            (engine, None, incidents, first)
        }
        Some(link) => join_cluster(&config, link, engine, &incidents, floor, &mut problems).await,
    };
    let serial_ceilings = states::save_serials(&first);
    let snapshots = SnapshotHandle::new(first);
    let workers = match config.server.udp_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut bound = Vec::new();
    for addr in &config.server.dns_listen {
        let b = dns::bind(*addr, workers, config.server.udp_max_payload).map_err(|source| {
            RunError::Io {
                context: format!("cannot listen for DNS on {addr}"),
                source,
            }
        })?;
        bound.push(b);
    }
    let dns_addrs: Vec<SocketAddr> = bound.iter().map(|b| b.addr).collect();
    let mut tasks = JoinSet::new();
    let liveness = crate::systemd::Liveness::default();
    let (commands, command_rx) = mpsc::channel(16);
    // Events for notifications: unbounded, so the states task never waits on delivery.
    let (events, event_rx) = mpsc::unbounded_channel();
    let control = Arc::new(Control::new(
        config_path.to_path_buf(),
        commands,
        snapshots.clone(),
        problems,
    ));
    let (history, p) = crate::history::start(&config);
    if let Some(p) = p {
        control.add_problem(p);
    }
    if let Some(h) = &history {
        control.set_history(h.clone());
    }
    // The operator console, beside the API on admin_listen (plain HTTP there).
    let console = crate::console::router(control.clone(), false);
    let admin_addr = admin::serve(
        &config,
        caps,
        control.clone(),
        Some(console),
        cancel.clone(),
        &mut tasks,
    )
    .await
    .map_err(|source| RunError::Io {
        context: "cannot start the admin API".into(),
        source,
    })?;
    let console_addrs =
        crate::console::serve(&config, caps, control.clone(), cancel.clone(), &mut tasks)
            .await
            .map_err(|source| RunError::Io {
                context: "cannot start the console's HTTPS listener".into(),
                source,
            })?;
    let page_addrs = page::serve(
        &config,
        caps,
        snapshots.clone(),
        Some(control.clone()),
        history.clone(),
        cancel.clone(),
        &mut tasks,
    )
    .await
    .map_err(|source| RunError::Io {
        context: "cannot start the outage page".into(),
        source,
    })?;
    control.set_heartbeats(checks.heartbeats());
    let cluster_mode_link = cluster_mode.as_ref().map(|c| c.link.clone());

    let states_task = StatesTask {
        engine,
        checks,
        reports,
        commands: command_rx,
        snapshots: snapshots.clone(),
        incidents: (*incidents).clone(),
        events: Some(events),
        serial_ceilings,
        unsaved_since: None,
        beat: liveness.register("states task"),
        cluster: cluster_mode,
        history: history.clone(),
        drills,
        breaches: Vec::new(),
    };
    if let Some(c) = &cluster_mode_link {
        control.set_cluster(c.clone());
    }
    tasks.spawn(key_rollovers(
        snapshots.clone(),
        control.clone(),
        cancel.clone(),
    ));
    let states_cancel = cancel.clone();
    tasks.spawn(async move {
        states_task.run(states_cancel).await;
        Ok(())
    });
    let notifier = crate::notify::Notifier::start(
        &config,
        snapshots.clone(),
        event_rx,
        cancel.clone(),
        &mut tasks,
    );
    if let Some(p) = notifier.problem() {
        control.add_problem(p.to_string());
    }
    if let Some(h) = &history {
        notifier.record_into(h.clone());
    }
    control.set_notifier(notifier);
    dns::serve(
        bound,
        caps,
        snapshots.clone(),
        &liveness,
        cancel.clone(),
        &mut tasks,
    )
    .map_err(|source| RunError::Io {
        context: "cannot start DNS listeners".into(),
        source,
    })?;
    for a in &dns_addrs {
        info!("listening for DNS on {a} (UDP and TCP)");
    }
    info!("listening for the admin API on {admin_addr} (and the console, /console/)");
    for a in &console_addrs {
        info!("listening for the console on {}", page::label(a));
    }
    for a in &page_addrs {
        info!("listening for the page on {}", page::label(a));
    }
    for p in control.problems() {
        warn!("{p}");
    }
    let snap = snapshots.load();
    for z in &snap.zones {
        info!(zone = %z.origin, serial = z.serial, records = z.records().len(), "serving zone");
    }
    Ok(Running {
        liveness,
        snapshots: snapshots.clone(),
        dns_addrs,
        admin_addr,
        page_addrs,
        console_addrs,
        control,
        cancel,
        tasks,
    })
}

impl Drop for Running {
    /// A Running dropped without `shutdown` (a test, a panic) still stops its listener
    /// threads, which would otherwise keep the runtime from shutting down.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Running {
    /// The DNS addresses actually bound (ports resolved).
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.dns_addrs
    }

    /// The Snapshot handle readers use.
    pub fn snapshots(&self) -> &SnapshotHandle {
        &self.snapshots
    }

    /// Where the admin API listens ("127.0.0.1:8053" or "unix:PATH").
    pub fn admin_addr(&self) -> &str {
        &self.admin_addr
    }

    /// Where the page listens: URLs such as "http://127.0.0.1:8080", HTTP listeners first,
    /// then HTTPS ones.
    pub fn page_addrs(&self) -> &[String] {
        &self.page_addrs
    }

    /// Where the console's own HTTPS listeners are ("https://127.0.0.1:8443"); empty
    /// without `[console] listen` (it is on the admin listener in any case).
    pub fn console_addrs(&self) -> &[String] {
        &self.console_addrs
    }

    /// The control surface (reload, overrides, incidents).
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Re-reads config, zones and overrides.toml; on success swaps in a new Snapshot (serials
    /// go up where content changed), on failure keeps serving the old one and returns every
    /// error.
    pub async fn reload(&self) -> Result<(), Diagnostics> {
        self.control
            .reload(Actor {
                who: "SIGHUP".into(),
            })
            .await
    }

    /// Stops accepting, lets in-flight answers finish, and waits for every task.
    pub async fn shutdown(mut self) -> Result<(), RunError> {
        self.cancel.cancel();
        let mut result = Ok(());
        while let Some(r) = self.tasks.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    result = Err(RunError::Io {
                        context: "listener failed".into(),
                        source,
                    })
                }
                Err(e) => {
                    result = Err(RunError::Io {
                        context: "task failed".into(),
                        source: io::Error::other(e.to_string()),
                    })
                }
            }
        }
        result
    }

    /// Waits until a listener task ends by itself (an error) or returns `None` when
    /// cancelled; used to notice a dead listener while running.
    async fn next_failure(&mut self) -> Option<RunError> {
        loop {
            match self.tasks.join_next().await {
                None => std::future::pending::<()>().await,
                Some(Ok(Ok(()))) => {
                    if self.cancel.is_cancelled() {
                        return None;
                    }
                }
                Some(Ok(Err(source))) => {
                    return Some(RunError::Io {
                        context: "a listener task failed (DNS, page, admin or states)".into(),
                        source,
                    });
                }
                Some(Err(e)) => {
                    return Some(RunError::Io {
                        context: "task failed".into(),
                        source: io::Error::other(e.to_string()),
                    });
                }
            }
        }
    }
}

/// One line on what detour serves, for systemd's `STATUS=`: "serving 2 zones; 4 services:
/// 1 down, 1 in maintenance; guard frozen".
fn summary(snapshots: &SnapshotHandle) -> String {
    use crate::health::ServiceState;
    let snap = snapshots.load();
    let zones = snap.zones.len();
    let services = &snap.health.services;
    let count = |s: ServiceState| services.values().filter(|v| v.state == s).count();
    let mut parts = Vec::new();
    for (state, n) in [
        ("down", count(ServiceState::Down)),
        ("impacted", count(ServiceState::Impacted)),
        ("in maintenance", count(ServiceState::Maintenance)),
        ("slow", count(ServiceState::Degraded)),
    ] {
        if n > 0 {
            parts.push(format!("{n} {state}"));
        }
    }
    let how = if parts.is_empty() {
        "all up".to_string()
    } else {
        parts.join(", ")
    };
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut line = format!(
        "serving {}; {}: {how}",
        plural(zones, "zone"),
        plural(services.len(), "service")
    );
    if snap.health.guard.frozen {
        line.push_str("; guard frozen (every canary down)");
    }
    line
}

/// DNSSEC key rollovers (`dnssec::rollover`): once a second, each signed zone's keys are
/// moved on as their times come, and when the keys on disk differ from those served (a step
/// here, or `detour dnssec ksk-roll`/`ksk-done`), the config is reloaded to serve them.
async fn key_rollovers(
    snapshots: crate::snapshot::SnapshotHandle,
    control: Arc<Control>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    use crate::dnssec::keys::{KeyState, metas};
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    // The keys last reloaded for, per zone: a reload that fails is not retried every second.
    let mut tried: std::collections::HashMap<String, Vec<(u16, KeyState)>> = Default::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let config = snapshots.load_full().config.clone();
        let mut reload = false;
        for z in &config.zones {
            let (Some(d), Some(policy)) = (&z.dnssec, z.rollover_policy()) else {
                continue;
            };
            let now = chrono::Utc::now().timestamp();
            match crate::dnssec::rollover::step(&d.keys_dir, d.algorithm, &policy, now) {
                Ok(steps) => {
                    for s in steps {
                        info!(zone = %z.origin, "DNSSEC key rollover: {s}");
                    }
                }
                Err(e) => warn!(zone = %z.origin, "DNSSEC key rollover: {e}"),
            }
            let on_disk: Vec<(u16, KeyState)> = match metas(&d.keys_dir) {
                Ok(m) => m
                    .iter()
                    .filter(|m| m.state != KeyState::Retired)
                    .map(|m| (m.tag, m.state))
                    .collect(),
                Err(_) => continue,
            };
            let served: Vec<(u16, KeyState)> = d
                .keys
                .keys
                .iter()
                .map(|k| (k.meta.tag, k.meta.state))
                .collect();
            let mut sorted = (on_disk.clone(), served);
            sorted.0.sort_by_key(|k| k.0);
            sorted.1.sort_by_key(|k| k.0);
            let zone = z.origin.to_string();
            if sorted.0 != sorted.1 && tried.get(&zone) != Some(&sorted.0) {
                tried.insert(zone, sorted.0);
                reload = true;
            }
        }
        if reload {
            info!("DNSSEC keys changed on disk: reloading to serve them");
            let actor = crate::states::Actor {
                who: "DNSSEC key rollover".into(),
            };
            if control.reload(actor).await.is_err() {
                warn!("reload for the new DNSSEC keys failed; still serving the old keys");
            }
        }
    }
}

/// `detour run`: serve until SIGTERM or SIGINT; reload on SIGHUP.
pub async fn run(config_path: &Path) -> Result<(), RunError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Register first: SIGHUP's default action would kill the process.
    let sig = |kind| {
        signal(kind).map_err(|source| RunError::Io {
            context: "cannot install signal handler".into(),
            source,
        })
    };
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;

    let config = Config::load(config_path)?;
    for w in &config.warnings {
        warn!("{w}");
    }
    let mut running = start(config, config_path).await?;
    let systemd = systemd::Notifier::from_env().map(Arc::new);
    let tell = |lines: &[String]| {
        if let Some(n) = &systemd
            && let Err(e) = n.send(lines)
        {
            warn!("cannot notify systemd: {e}");
        }
    };
    tell(&[
        "READY=1".into(),
        systemd::status(&summary(&running.snapshots)),
    ]);
    if let (Some(n), Some(every)) = (&systemd, systemd::Notifier::watchdog()) {
        let watchdog = running
            .liveness
            .clone()
            .watchdog(n.clone(), every, running.cancel.clone());
        running.tasks.spawn(async move {
            watchdog.await;
            Ok(())
        });
    }
    let mut stored = running.snapshots.watch();
    info!("ready");
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading {}", config_path.display());
                tell(&["RELOADING=1".into(), systemd::monotonic_usec()]);
                let result = running.reload().await;
                let status = match &result {
                    Ok(()) => summary(&running.snapshots),
                    Err(d) => format!(
                        "reload failed ({} error(s)), still serving the previous config; {}",
                        d.0.len(),
                        summary(&running.snapshots)
                    ),
                };
                tell(&["READY=1".into(), systemd::status(&status)]);
                if result.is_ok() {
                    info!("reload done");
                }
            }
            _ = stored.changed(), if systemd.is_some() => {
                tell(&[systemd::status(&summary(&running.snapshots))]);
            }
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
            failure = running.next_failure() => {
                if let Some(e) = failure {
                    return Err(e);
                }
            }
        }
    }
    tell(&["STOPPING=1".into()]);
    running.shutdown().await?;
    info!("stopped");
    Ok(())
}
