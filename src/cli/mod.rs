//! The command line: the daemon (`run`), validation (`check`), and the client commands that
//! talk to a running daemon through its admin API. `--config` may come anywhere.

pub mod check;
pub mod commands;
pub mod dnssec;
pub mod rehearse;
pub mod user;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config;

pub use check::summary;

/// detour: DNS failover and maintenance redirects.
#[derive(Debug, Parser)]
#[command(name = "detour", version, about)]
pub struct Cli {
    /// Configuration file (client commands find the daemon's admin address and token here).
    #[arg(long, short = 'c', global = true, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Print JSON instead of text (client commands).
    #[arg(long, global = true)]
    pub json: bool,
    /// Who is acting, for the audit log (default: the local user).
    #[arg(long, global = true, value_parser = name_arg)]
    pub by: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: probe, answer DNS, serve the page and the admin API.
    Run,
    /// Validate the config and zones, print a summary; exit 0 when valid, 2 when not.
    Check,
    /// Services, states, overrides, and what DNS answers now and why.
    Status {
        /// Also show the audit log (overrides, incidents, reloads).
        #[arg(long)]
        history: bool,
    },
    /// Force a service up, down or into maintenance, or clear that.
    #[command(subcommand)]
    Override(OverrideCmd),
    /// Tell people what is going on.
    #[command(subcommand)]
    Incident(IncidentCmd),
    /// Re-read config, zones and overrides (same as SIGHUP).
    Reload,
    /// Print the phone announcement (the words of /announcement.txt on the page).
    Announce,
    /// Notifications: `detour notify test [--sink N]`.
    #[command(subcommand)]
    Notify(NotifyCmd),
    /// Who is on call now (or `--at` a time) and next, and the open pages.
    Oncall {
        /// A moment: an RFC 3339 time, or a duration from now ("3d").
        #[arg(long, value_parser = until_arg)]
        at: Option<String>,
    },
    /// Subscribers: list them (the export of their data) or erase one.
    #[command(subcommand)]
    Subscribers(SubscribersCmd),
    /// Acknowledge a page: tells the others someone is on it and stops its escalation.
    Ack {
        /// The page id (in the message, and in `detour oncall`).
        id: String,
    },
    /// Availability, outages and their length (MTTR), time on the backup and on the outage
    /// page, swaps and notifications, per service, from the history database.
    Report {
        /// Start: a duration back from now ("30d", "12h"), a date (2026-10-01, from its
        /// start in [page] timezone) or an RFC 3339 time. Default: 30 days ago.
        #[arg(long, value_parser = bound_arg)]
        since: Option<String>,
        /// End: a date (included), an RFC 3339 time or a duration back from now. Default:
        /// now.
        #[arg(long, value_parser = bound_arg)]
        until: Option<String>,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
    },
    /// DNSSEC: the DS records for the parent, the keys and signatures of signed zones.
    #[command(subcommand)]
    Dnssec(DnssecCmd),
    /// What would happen if services were in these states (nothing changes): answers,
    /// impacted services, outage pages and who would be told, next to what happens now.
    Simulate {
        /// SERVICE=STATE, STATE up, down or maintenance: `detour simulate sso=down`.
        #[arg(required = true, value_parser = assumption_arg)]
        states: Vec<String>,
        /// Evaluate at this moment (maintenance windows then): RFC 3339 or a duration
        /// from now ("3h").
        #[arg(long, value_parser = until_arg)]
        at: Option<String>,
    },
    /// Drills: show a service's outage to one view's sources (staff) only, for a while.
    #[command(subcommand)]
    Drill(DrillCmd),
    /// The answer detour gives for NAME now, and every step that chose it.
    Explain {
        /// The name asked.
        name: String,
        /// The type asked (A by default).
        #[arg(default_value = "A")]
        rtype: String,
        /// Ask as this source address (views are chosen by it; 127.0.0.1 by default).
        #[arg(long)]
        from: Option<String>,
    },
    /// Console accounts (the operator console at /console/ on admin_listen): add, remove,
    /// change a password, list. Acts on state_dir/accounts.json directly; the daemon sees
    /// the change at the next request. Passwords are read from stdin (or prompted for on a
    /// terminal), never from the command line.
    #[command(subcommand)]
    User(UserCmd),
    /// Writes man pages or shell completions into a folder (for packaging).
    #[command(hide = true)]
    Generate {
        /// `man` (detour.1 and one page per subcommand) or `completions` (bash, zsh, fish).
        #[arg(value_parser = ["man", "completions"])]
        what: String,
        /// The folder to write into (created when missing).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Writes `what` ("man" or "completions") for the whole CLI into `out`; returns the files.
pub fn generate(what: &str, out: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    use clap::CommandFactory;
    std::fs::create_dir_all(out)?;
    let cmd = Cli::command();
    let mut written = Vec::new();
    if what == "man" {
        clap_mangen::generate_to(cmd, out)?;
        for e in std::fs::read_dir(out)? {
            written.push(e?.path());
        }
        written.sort();
    } else {
        use clap_complete::Shell;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            written.push(clap_complete::generate_to(
                shell,
                &mut cmd.clone(),
                "detour",
                out,
            )?);
        }
    }
    Ok(written)
}

/// `detour dnssec ...`.
#[derive(Debug, Subcommand)]
pub enum DnssecCmd {
    /// Print the DS records of ZONE's key-signing keys, to give to the parent zone.
    Ds {
        /// The zone, e.g. example.test.
        zone: String,
    },
    /// Every signed zone: algorithm, denial, keys, DS, signature validity.
    Status,
    /// Start a KSK rollover: a new KSK, published and signing the DNSKEY RRset beside the
    /// old one; `detour dnssec ds` then prints its DS for the parent.
    KskRoll {
        /// The zone.
        zone: String,
    },
    /// The parent's DS names the new KSK now: finish the rollover (the old KSK retires).
    KskDone {
        /// The zone.
        zone: String,
    },
}

/// `detour drill ...`.
#[derive(Debug, Subcommand)]
pub enum DrillCmd {
    /// Start one: `detour drill start mls --view staff --for 30m --reason "rehearsal"`.
    Start {
        /// SERVICE or SERVICE=STATE (STATE up, down or maintenance; down by default).
        #[arg(value_parser = drill_arg)]
        service: String,
        /// The view whose sources see it (`[views.NAME]`).
        #[arg(long)]
        view: String,
        /// How long it lasts ("30m"); it ends by itself then. At most 7 days.
        #[arg(long = "for", value_parser = duration_arg)]
        lasts: String,
        /// Why (audit log, notifications).
        #[arg(long, default_value = "", value_parser = text_arg)]
        reason: String,
    },
    /// End drills early: those of SERVICE, or every one.
    Stop {
        /// The service (every drill when absent).
        service: Option<String>,
    },
}

/// `detour notify ...`.
#[derive(Debug, Subcommand)]
pub enum NotifyCmd {
    /// Send a test event through every `[[notify]]` sink (or one), print each result; exit 0
    /// when every sink took it, 1 otherwise.
    Test {
        /// Only this sink: 1 is the first `[[notify]]` table.
        #[arg(long)]
        sink: Option<usize>,
    },
}

/// `detour user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add an account: `detour user add dana --role communicator` (then type the password).
    Add {
        /// Sign-in name: lowercase letters, digits, '.', '_', '-'.
        name: String,
        /// communicator (incidents, announcements, previews) or operator (also overrides,
        /// maintenance, reload).
        #[arg(long, value_parser = ["communicator", "operator"])]
        role: String,
    },
    /// Remove an account; its sessions end at their next request.
    Remove {
        /// Sign-in name.
        name: String,
    },
    /// Set an account's password (and, with --role, its role); its sessions end.
    Passwd {
        /// Sign-in name.
        name: String,
        /// A new role, if it changes.
        #[arg(long, value_parser = ["communicator", "operator"])]
        role: Option<String>,
    },
    /// Every account: name, role, when added and last changed (never the hashes).
    List,
}

/// `detour subscribers ...`.
#[derive(Debug, Subcommand)]
pub enum SubscribersCmd {
    /// Every subscriber: channel, address, what they follow, when they confirmed.
    List,
    /// Erase a subscriber (every channel of ADDRESS) and the messages waiting for them.
    Remove {
        /// Email address or phone number, as listed.
        address: String,
    },
}

/// `detour override ...`.
#[derive(Debug, Subcommand)]
pub enum OverrideCmd {
    /// Set an override: `detour override set mls down --reason "vendor is on it" --until 2h`.
    Set(OverrideSet),
    /// Clear an override: checks decide again.
    Clear {
        /// Service id.
        service: String,
        /// Why (kept in the audit log, sent with the notification).
        #[arg(long, value_parser = text_arg)]
        reason: Option<String>,
        /// Clear it even if that breaks a [[safety]] rule (needs --reason; audited).
        #[arg(long, requires = "reason")]
        force: bool,
    },
}

/// `detour override set`.
#[derive(Debug, Args)]
pub struct OverrideSet {
    /// Service id.
    pub service: String,
    /// up, down or maintenance.
    #[arg(value_parser = ["up", "down", "maintenance"])]
    pub state: String,
    /// Why (shown on the page).
    #[arg(long, default_value = "", value_parser = text_arg)]
    pub reason: String,
    /// When it ends by itself: a duration ("2h", at most 10 years) or an RFC 3339 time.
    #[arg(long, value_parser = until_arg)]
    pub until: Option<String>,
    /// Apply it even if it breaks a [[safety]] rule (needs --reason; audited).
    #[arg(long, requires = "reason")]
    pub force: bool,
}

/// `detour incident ...`.
#[derive(Debug, Subcommand)]
pub enum IncidentCmd {
    /// Open an incident; prints its id alone on stdout.
    Open {
        /// Services concerned, comma-separated.
        #[arg(long = "service", value_delimiter = ',', required = true)]
        services: Vec<String>,
        /// The first message.
        #[arg(value_parser = text_arg)]
        text: String,
    },
    /// Post an update.
    Update {
        /// Incident id.
        id: String,
        /// The message.
        #[arg(value_parser = text_arg)]
        text: String,
    },
    /// Resolve it.
    Resolve {
        /// Incident id.
        id: String,
        /// A last word (optional).
        #[arg(value_parser = text_arg)]
        text: Option<String>,
    },
}

/// `--since` / `--until`: refused here (exit 2) when the daemon would refuse it.
fn bound_arg(s: &str) -> Result<String, String> {
    let zone = crate::history::timeline::Zone::Local;
    crate::history::parse_bound(s, chrono::Utc::now().timestamp_millis(), zone, false)
        .map(|_| s.to_string())
}

/// A reason or message: refused here (exit 2) when the daemon would refuse it.
fn text_arg(s: &str) -> Result<String, String> {
    crate::text::check_text("the text", s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// A `--by` name: short, no control characters.
fn name_arg(s: &str) -> Result<String, String> {
    crate::text::check_name("the name", s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// `SERVICE=STATE` for `detour simulate`.
fn assumption_arg(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((service, state))
            if !service.is_empty() && crate::overrides::Forced::parse(state).is_some() =>
        {
            Ok(s.to_string())
        }
        _ => Err(format!(
            "expected SERVICE=STATE with STATE up, down or maintenance, e.g. sso=down; got {s:?}"
        )),
    }
}

/// `SERVICE` or `SERVICE=STATE` for `detour drill start`.
fn drill_arg(s: &str) -> Result<String, String> {
    if s.contains('=') {
        assumption_arg(s)
    } else if s.is_empty() {
        Err("name a service".into())
    } else {
        Ok(s.to_string())
    }
}

/// A duration such as "30m".
fn duration_arg(s: &str) -> Result<String, String> {
    crate::config::duration::parse(s)
        .map(|_| s.to_string())
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30m, 2h"))
}

/// `--until`: a duration or an RFC 3339 time, checked here as the daemon will check it.
fn until_arg(s: &str) -> Result<String, String> {
    crate::admin::parse_until(s, chrono::Utc::now()).map(|_| s.to_string())
}
