//! detour: a DNS failover and maintenance-redirect controller.
//!
//! The modules follow the data flow of `DESIGN.md`:
//!
//! - [`config`]: `detour.toml` and zone files, validated into an immutable `Config`.
pub mod checks;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod selection;
pub mod snapshot;
pub mod states;
pub mod store;
