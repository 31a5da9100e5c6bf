//! detour: a DNS failover and maintenance-redirect controller.
//!
//! The modules follow the data flow of `DESIGN.md`:
//!
//! - [`config`]: `detour.toml` and zone files, validated into an immutable `Config`.
pub mod admin;
pub mod audit;
pub mod checks;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dns;
pub mod events;
pub mod incidents;
pub mod notify;
pub mod overrides;
pub mod page;
pub mod selection;
pub mod snapshot;
pub mod states;
pub mod status;
pub mod store;
pub mod telemetry;
