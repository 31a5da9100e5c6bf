//! The status document: what `GET /api/v1/status`, `detour status` and the page's
//! `status.json` tell, built from one Snapshot.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::checks::runner::CheckId;
use crate::control::ReloadStatus;
use crate::health::{ServiceState, Transition};
use crate::incidents::Incident;
use crate::overrides::Override;
use crate::selection::Chosen;
use crate::snapshot::Snapshot;

/// Everything about detour's current view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    /// When this document was made.
    pub generated_at: DateTime<Utc>,
    /// The Snapshot's generation (1 for the first).
    pub generation: u64,
    /// Every service, in id order.
    pub services: Vec<ServiceDoc>,
    /// Every dynamic record and what it answers now.
    pub records: Vec<RecordDoc>,
    /// Open incidents, newest first.
    pub incidents: Vec<Incident>,
    /// Maintenance windows not yet over, soonest first.
    pub maintenance: Vec<MaintenanceDoc>,
    /// The guard.
    pub guard: GuardDoc,
    /// Served zones and their serials.
    pub zones: Vec<ZoneDoc>,
    /// The last reload (admin view only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadDoc>,
    /// Problems found at start, such as a state file set aside (admin view only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// The cluster, when `[cluster]` is set (admin view only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterDoc>,
    /// Who is on call, when `[oncall]` is set (admin view only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oncall: Option<OnCallDoc>,
    /// Drills in force, by view (admin view only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drills: Vec<crate::rehearsal::Drill>,
    /// `[[safety]]` rules the current states break (admin view only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safety: Vec<crate::rehearsal::Breach>,
}

/// Who is on call and the pages nobody acknowledged yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnCallDoc {
    /// The person on call now.
    pub now: String,
    /// Until when.
    pub until: DateTime<Utc>,
    /// Who comes next.
    pub next: String,
    /// Unacknowledged pages: id and headline, newest first.
    pub open_pages: Vec<(String, String)>,
}

/// The cluster as this instance sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterDoc {
    /// This instance.
    pub instance: String,
    /// The instance that sends notifications and ticks cluster time (the oldest live one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Live members.
    pub members: Vec<MemberDoc>,
    /// The default quorum.
    pub quorum: String,
    /// etcd as this instance reaches it.
    pub etcd: EtcdDoc,
    /// The etcd revision this instance's view is at.
    pub revision: i64,
    /// How many revisions the view is behind etcd's latest known one (0: in step).
    pub lag: i64,
}

/// A live member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberDoc {
    /// Name.
    pub name: String,
    /// Its guard is frozen: it abstains.
    pub frozen: bool,
    /// detour's version there.
    pub version: String,
    /// Its checks differ from this instance's (another config): its votes may mean
    /// something else.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub config_differs: bool,
}

/// The link to etcd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdDoc {
    /// Requests succeed and the lease is alive.
    pub reachable: bool,
    /// Since when.
    pub since: DateTime<Utc>,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One instance's view of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    /// The instance.
    pub instance: String,
    /// "up", "down", or "unknown" (no vote yet); "abstains" when its guard is frozen.
    pub sees: String,
}

/// A service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDoc {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Direct link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// One line on what it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// State in force.
    pub state: ServiceState,
    /// Since when.
    pub since: DateTime<Utc>,
    /// Why.
    pub reason: String,
    /// What checks and windows alone say (differs under an override).
    pub observed: ServiceState,
    /// Why they say so.
    pub observed_reason: String,
    /// The operator's override, if any.
    #[serde(rename = "override", default, skip_serializing_if = "Option::is_none")]
    pub override_: Option<Override>,
    /// Services it is reached through.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Its checks.
    pub checks: Vec<CheckDoc>,
    /// Latest transitions, newest last.
    pub history: Vec<Transition>,
    /// In a cluster: each live instance's view of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<InstanceView>,
    /// In a cluster: the quorum that decides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<String>,
}

/// A check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckDoc {
    /// Id ("mls#0", "canary#0", "mls.example.test./A/127.0.0.10").
    pub id: String,
    /// "up", "down" or "unknown".
    pub verdict: String,
    /// How well an up check works: "degraded" (slow, or its vendor says so) or
    /// "maintenance" (its vendor says so); absent when normal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<String>,
    /// Since when.
    pub since: DateTime<Utc>,
    /// The latest observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<ObservationDoc>,
    /// Failing, but its down verdict waits for a canary to pass (`verdict` is the one in
    /// force meanwhile); present only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_canary: bool,
}

/// One observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservationDoc {
    /// Passed.
    pub ok: bool,
    /// One line.
    pub reason: String,
    /// Milliseconds.
    pub latency_ms: u64,
    /// When.
    pub at: DateTime<Utc>,
}

/// A dynamic record's current answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordDoc {
    /// Owner name.
    pub name: String,
    /// A, AAAA or CNAME.
    #[serde(rename = "type")]
    pub rtype: String,
    /// TTL.
    pub ttl: u32,
    /// Values answered now.
    pub values: Vec<String>,
    /// The service whose entry is answered; none when the outage answer is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// True when the record points at the outage page (`otherwise`).
    pub outage: bool,
    /// Why, in one line.
    pub because: String,
}

/// A maintenance window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceDoc {
    /// Services.
    pub services: Vec<String>,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// What is done.
    pub message: String,
    /// Under way now.
    pub active: bool,
}

/// The guard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardDoc {
    /// States frozen because every canary is down.
    pub frozen: bool,
    /// Since when.
    pub since: DateTime<Utc>,
    /// Canary checks.
    pub canaries: Vec<CheckDoc>,
}

/// A zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneDoc {
    /// Origin.
    pub origin: String,
    /// Current serial.
    pub serial: u32,
}

/// The last reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadDoc {
    /// When.
    pub at: DateTime<Utc>,
    /// It worked.
    pub ok: bool,
    /// Errors with file:line:col.
    pub errors: Vec<String>,
}

fn verdict(v: Option<bool>) -> String {
    match v {
        Some(true) => "up",
        Some(false) => "down",
        None => "unknown",
    }
    .into()
}

fn check_doc(id: &CheckId, c: &crate::health::CheckStatus) -> CheckDoc {
    CheckDoc {
        id: id.to_string(),
        verdict: verdict(c.verdict),
        grade: (c.verdict == Some(true) && c.grade != crate::checks::Grade::Normal)
            .then(|| c.grade.as_str().to_string()),
        since: c.since,
        last: c.last.as_ref().map(|o| ObservationDoc {
            ok: o.ok,
            reason: o.reason.clone(),
            latency_ms: o.latency.as_millis() as u64,
            at: o.at,
        }),
        awaiting_canary: c.awaiting_canary,
    }
}

/// Builds the document from `snap`; `admin` adds the reload outcome and start-up problems.
/// The public view (`admin` = None, served on the page listener) leaves out who did what:
/// operator names on overrides and incident updates.
pub fn build(snap: &Snapshot, admin: Option<(Option<ReloadStatus>, Vec<String>)>) -> StatusDoc {
    let public = admin.is_none();
    let now = Utc::now();
    let cfg = &snap.config;
    let h = &snap.health;
    let services = cfg
        .services
        .values()
        .map(|svc| {
            let st = h.services.get(&svc.id);
            let checks = h
                .checks
                .iter()
                .filter(
                    |(id, _)| matches!(id, CheckId::Service { service, .. } if *service == svc.id),
                )
                .map(|(id, c)| check_doc(id, c))
                .collect();
            ServiceDoc {
                id: svc.id.clone(),
                name: svc.name.clone(),
                url: svc.url.clone(),
                description: svc.description.clone(),
                state: st.map_or(ServiceState::Up, |s| s.state),
                since: st.map_or(now, |s| s.since),
                reason: st.map_or_else(String::new, |s| s.reason.clone()),
                observed: st.map_or(ServiceState::Up, |s| s.observed),
                observed_reason: st.map_or_else(String::new, |s| s.observed_reason.clone()),
                override_: h.overrides.get(&svc.id).cloned().map(|mut o| {
                    if public {
                        o.by = None;
                    }
                    o
                }),
                depends_on: svc.depends_on.clone(),
                checks,
                history: st
                    .map(|s| s.history.iter().cloned().collect())
                    .unwrap_or_default(),
                views: Vec::new(),
                quorum: None,
            }
        })
        .collect();
    let records = snap
        .dynamic
        .iter()
        .map(|d| {
            let zone = &cfg.zones[d.choice.zone];
            let def = &zone.dynamic[d.choice.record];
            let state_of = |s: &str| h.services.get(s).map_or(ServiceState::Up, |x| x.state);
            let (service, outage, because) = match d.choice.chosen {
                Chosen::Entry(i) => {
                    let svc = def.answers[i].if_up.clone();
                    let skipped: Vec<String> = def.answers[..i]
                        .iter()
                        .map(|a| format!("{} is {}", a.if_up, state_of(&a.if_up)))
                        .collect();
                    let mut why = format!("{svc} is {}", state_of(&svc));
                    if !skipped.is_empty() {
                        why = format!("{}; {why}", skipped.join("; "));
                    }
                    (Some(svc), false, why)
                }
                Chosen::Otherwise => {
                    let why: Vec<String> = def
                        .answers
                        .iter()
                        .map(|a| format!("{} is {}", a.if_up, state_of(&a.if_up)))
                        .collect();
                    (None, true, format!("{}: outage page", why.join("; ")))
                }
            };
            RecordDoc {
                name: d.name.to_string(),
                rtype: d.rtype.to_string(),
                ttl: def.ttl,
                values: d.choice.values.iter().map(|v| v.to_string()).collect(),
                service,
                outage,
                because,
            }
        })
        .collect();
    let mut maintenance: Vec<MaintenanceDoc> = cfg
        .maintenance
        .iter()
        .filter(|m| m.end > now)
        .map(|m| MaintenanceDoc {
            services: m.services.clone(),
            start: m.start.with_timezone(&Utc),
            end: m.end.with_timezone(&Utc),
            message: m.message.clone(),
            active: m.start <= now,
        })
        .collect();
    maintenance.sort_by_key(|m| m.start);
    let canaries = h
        .checks
        .iter()
        .filter(|(id, _)| matches!(id, CheckId::Canary(_)))
        .map(|(id, c)| check_doc(id, c))
        .collect();
    let (reload, problems) = match admin {
        Some((r, p)) => (
            r.map(|r| ReloadDoc {
                at: r.at,
                ok: r.errors.is_empty(),
                errors: r.errors,
            }),
            p,
        ),
        None => (None, Vec::new()),
    };
    StatusDoc {
        generated_at: now,
        generation: snap.generation,
        services,
        records,
        incidents: snap
            .incidents
            .open()
            .cloned()
            .map(|mut i| {
                if public {
                    i.updates.iter_mut().for_each(|u| u.by = None);
                }
                i
            })
            .collect(),
        maintenance,
        guard: GuardDoc {
            frozen: h.guard.frozen,
            since: h.guard.since,
            canaries,
        },
        zones: snap
            .zones
            .iter()
            .map(|z| ZoneDoc {
                origin: z.origin.to_string(),
                serial: z.serial,
            })
            .collect(),
        reload,
        problems,
        cluster: None,
        oncall: None,
        drills: if public {
            Vec::new()
        } else {
            snap.view_snapshots()
                .into_iter()
                .filter_map(|(_, v)| v.drill.as_ref())
                .flat_map(|d| d.drills.iter().cloned())
                .collect()
        },
        safety: if public {
            Vec::new()
        } else {
            crate::rehearsal::breaches(&cfg.safety, h)
        },
    }
}

/// Adds the cluster's part: each instance's view of every service, the members, etcd.
pub fn add_cluster(doc: &mut StatusDoc, cluster: &crate::cluster::Cluster, snap: &Snapshot) {
    let view = cluster.view().borrow().clone();
    let link = cluster.link().borrow().clone();
    let config = &snap.config;
    let settings = cluster.settings();
    let mine = crate::cluster::config_digest(config);
    for s in &mut doc.services {
        let quorum = config
            .services
            .get(&s.id)
            .and_then(|svc| svc.quorum)
            .unwrap_or(settings.quorum);
        s.quorum = Some(quorum.to_string());
        s.views = view
            .members
            .iter()
            .map(|(name, k)| InstanceView {
                instance: name.clone(),
                sees: if k.member.frozen {
                    "abstains".into()
                } else {
                    match view.service_seen_by(config, &s.id, name) {
                        Some(true) => "up".into(),
                        Some(false) => "down".into(),
                        None => "unknown".into(),
                    }
                },
            })
            .collect();
    }
    doc.cluster = Some(ClusterDoc {
        instance: settings.instance.clone(),
        leader: view.leader().map(str::to_string),
        members: view
            .members
            .iter()
            .map(|(name, k)| MemberDoc {
                name: name.clone(),
                frozen: k.member.frozen,
                version: k.member.version.clone(),
                config_differs: k.member.config != mine,
            })
            .collect(),
        quorum: settings.quorum.to_string(),
        etcd: EtcdDoc {
            reachable: link.reachable,
            since: link.since,
            error: link.error.clone(),
        },
        revision: view.revision,
        lag: (link.etcd_revision - view.revision).max(0),
    });
}
