//! detour: a DNS failover and maintenance-redirect controller.
//!
//! The modules, in the order data flows through them (imports only run down this list;
//! `python3 ../shared/tools/layers.py src` shows the graph):
//!
//! 1. Ground: [`proto`] (TSIG, DNS Cookies: wire helpers), [`text`] (operator text: limits,
//!    escaping), [`store`] (atomic state files), [`telemetry`] (metrics, log throttling),
//!    [`fds`] (the descriptor budget), [`oncall`] (who is on call: the rotation, pure),
//!    [`markup`] (the templates' HTML/XML escaper), [`dnssec`] (a zone's keys on disk,
//!    RRSIGs, NSEC3 hashing).
//! 2. [`config`]: `detour.toml` and zone files, validated into an immutable `Config`.
//! 3. [`checks`]: one task per probe (HTTP, TCP, DNS, journeys, vendor status pages),
//!    heartbeats, rise/fall, adaptive pace.
//! 4. What operators say, kept in `state_dir`: [`overrides`], [`incidents`], [`audit`].
//! 5. [`selection`]: which answer each dynamic record gives (pure); [`rehearsal`]: views,
//!    drills and safety rules (pure); [`health`]: the shared
//!    state types (up / down / impacted / maintenance / degraded).
//! 6. [`zone`]: zone data for lookup, the IXFR journal, the answer rules, answers compiled
//!    to wire format, DNSSEC signatures and denial chains; [`snapshot`]: all of it with health and incidents, swapped atomically
//!    and read without locks.
//! 7. [`states`]: the single writer: verdicts, overrides and maintenance become states, with
//!    the guard; it publishes Snapshots and [`events`]. [`control`] is how SIGHUP, the admin
//!    API and the CLI reach it.
//!    [`history`] keeps what happened (transitions, operator actions, probe summaries) in
//!    `state_dir/history.db`, written by the states task and read by the page, the admin
//!    API and `detour report`.
//! 8. Readers of the Snapshot: [`dns`] (fast and general paths, UDP and TCP, transfers,
//!    NOTIFY), [`page`] (outage and status pages, feeds), [`admin`] (the API; [`status`] is
//!    its document), both served by [`http`]; [`simulate`] and [`explain`] (what would
//!    change, why a name answers what it does); [`announce`] (the phone announcement, its words
//!    and its audio, which both serve); and [`notify`], which delivers events.
//!    [`console`]: the operator console in the browser (local accounts, sessions, the same
//!    operations as the admin API), served beside it on `admin_listen`.
//! 9. [`daemon`] wires it all (and tells systemd how it goes: [`systemd`]); [`cli`] is the
//!    command line.
pub mod admin;
pub mod announce;
pub mod audit;
pub mod checks;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
pub mod dns;
pub mod dnssec;
pub mod events;
pub mod explain;
pub mod fds;
pub mod health;
pub mod history;
pub mod http;
pub mod incidents;
pub mod markup;
pub mod notify;
pub mod oncall;
pub mod overrides;
pub mod page;
pub mod proto;
pub mod rehearsal;
pub mod selection;
pub mod simulate;
pub mod snapshot;
pub mod states;
pub mod status;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod text;
pub mod zone;
