//! detour: a DNS failover and maintenance-redirect controller.
//!
//! The modules follow the data flow of `DESIGN.md`, from configuration to the answers:
//!
//! 1. [`config`]: `detour.toml` and zone files, validated into an immutable `Config`.
//! 2. [`checks`]: one task per probe (HTTP, TCP, DNS), rise/fall, adaptive pace.
//! 3. [`overrides`], [`incidents`], [`audit`]: what operators say, kept in `state_dir`
//!    (written atomically by [`store`]).
//! 4. [`states`]: the single writer: verdicts, overrides and maintenance become
//!    up / down / impacted / maintenance, with the guard; it publishes Snapshots and
//!    [`events`]. [`control`] is how SIGHUP and the admin API reach it.
//! 5. [`selection`]: which answer each dynamic record gives (pure).
//! 6. [`snapshot`]: zones compiled for lookup and into wire format (a flip compiles again
//!    only what it changes), each zone's journal of changes, health and incidents, swapped
//!    atomically and read without locks.
//! 7. Readers of the Snapshot: [`dns`] (fast and general paths, UDP and TCP, transfers with
//!    TSIG, NOTIFY), [`page`]
//!    (outage and status pages, feeds), [`admin`] (API; [`status`] is its document),
//!    [`telemetry`] (`/metrics`); and [`notify`], which delivers events.
//! 8. [`daemon`] wires it all; [`cli`] is the command line.
pub mod admin;
pub mod audit;
pub mod checks;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dns;
pub mod events;
pub mod fds;
pub mod health;
pub mod http;
pub mod incidents;
pub mod notify;
pub mod overrides;
pub mod page;
pub mod proto;
pub mod selection;
pub mod snapshot;
pub mod states;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod zone;
