//! `detour user`: the console's accounts, in `state_dir/accounts.json` or, with `[cluster]`,
//! in etcd under the cluster's prefix; changed in place (no daemon needed; a running one
//! sees the change at its next request, every instance of a cluster through its watch). Passwords come from
//! stdin, or from a prompt without echo on a terminal; never from the command line, where
//! `ps` and shell history would keep them.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use serde_json::json;

use super::UserCmd;
use super::commands::Outcome;
use crate::config::Config;
use crate::console::accounts::{self, AccountError, Accounts, Change, Role};

/// Runs `cmd` against the state folder of the config at `config`.
pub fn run(config: &Path, cmd: &UserCmd, json: bool) -> Outcome {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(errors) => {
            let mut text = String::new();
            for e in errors.iter() {
                text.push_str(&format!("error: {e}\n"));
            }
            return Outcome::fail(2, text);
        }
    };
    let dir = &cfg.server.state_dir;
    let change = match cmd {
        UserCmd::Add { name, role } => {
            let role = Role::parse(role).unwrap_or(Role::Communicator);
            read_password(&format!("New password for {name}: "))
                .and_then(|p| accounts::adding(name, role, &p))
                .map(|c| (c, format!("account {name} added ({})\n", role.as_str())))
        }
        UserCmd::Remove { name } => Ok((
            Change::Remove(name.clone()),
            format!("account {name} removed; its sessions end at their next request\n"),
        )),
        UserCmd::Passwd { name, role } => {
            let role = role.as_deref().and_then(Role::parse);
            read_password(&format!("New password for {name}: "))
                .and_then(|p| accounts::changing(name, &p, role))
                .map(|c| {
                    (
                        c,
                        format!(
                            "password of {name} changed; its sessions end at their next request\n"
                        ),
                    )
                })
        }
        UserCmd::List => {
            let listed = match &cfg.cluster {
                Some(settings) => in_cluster(|| async {
                    match crate::cluster::read(settings, crate::cluster::keys::ACCOUNTS).await {
                        Ok(None) => Ok(Accounts::default()),
                        Ok(Some(raw)) => accounts::parse(&raw).map_err(AccountError::Invalid),
                        Err(e) => Err(AccountError::Cluster(e.to_string())),
                    }
                }),
                None => accounts::load(dir),
            };
            return match listed {
                Ok(a) => Outcome::ok(list(&a, json)),
                Err(e) => failed(e),
            };
        }
    };
    let (change, said) = match change {
        Ok(x) => x,
        Err(e) => return failed(e),
    };
    let done = match &cfg.cluster {
        Some(settings) => in_cluster(|| async {
            let edited = crate::cluster::edit(settings, crate::cluster::keys::ACCOUNTS, |raw| {
                let mut a = match raw {
                    None => Accounts::default(),
                    Some(r) => accounts::parse(r).map_err(AccountError::Invalid)?,
                };
                change.apply(&mut a)?;
                Ok::<_, AccountError>(accounts::to_bytes(&a))
            })
            .await;
            match edited {
                Ok(r) => r,
                Err(e) => Err(AccountError::Cluster(e.to_string())),
            }
        }),
        None => accounts::apply(dir, &change),
    };
    match done {
        Ok(()) => Outcome::ok(said),
        Err(e) => failed(e),
    }
}

/// Runs `f` on a runtime of its own (a command's etcd client).
fn in_cluster<F, T>(f: impl FnOnce() -> F) -> Result<T, AccountError>
where
    F: std::future::Future<Output = Result<T, AccountError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AccountError::Cluster(format!("cannot start the runtime: {e}")))?;
    rt.block_on(f())
}

/// Exit 2 for what was asked wrong, 1 for what went wrong.
fn failed(e: AccountError) -> Outcome {
    let code = if matches!(e, AccountError::Invalid(_)) {
        2
    } else {
        1
    };
    Outcome::fail(code, format!("error: {e}\n"))
}

/// `detour user list`, for people or as JSON (never the hashes).
fn list(a: &Accounts, json: bool) -> String {
    if json {
        let list: Vec<_> = a
            .accounts
            .iter()
            .map(|x| json!({ "name": x.name, "role": x.role, "created": x.created, "changed": x.changed }))
            .collect();
        return format!("{}\n", serde_json::Value::Array(list));
    }
    if a.accounts.is_empty() {
        return "no console accounts (add one: detour user add NAME --role operator)\n".into();
    }
    let mut out = format!(
        "{:<24} {:<13} {:<20} {}\n",
        "NAME", "ROLE", "ADDED", "CHANGED"
    );
    for x in &a.accounts {
        out.push_str(&format!(
            "{:<24} {:<13} {:<20} {}\n",
            x.name,
            x.role.as_str(),
            x.created.format("%Y-%m-%d %H:%M UTC"),
            x.changed.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    out
}

/// The new password: typed twice without echo on a terminal, else the first line of stdin.
fn read_password(prompt: &str) -> Result<String, AccountError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map_err(|e| {
            AccountError::Invalid(format!("cannot read the password from stdin: {e}"))
        })?;
        let p = line.strip_suffix('\n').unwrap_or(&line);
        let p = p.strip_suffix('\r').unwrap_or(p);
        return Ok(p.to_string());
    }
    let first = prompt_hidden(prompt)?;
    let second = prompt_hidden("Again: ")?;
    if first != second {
        return Err(AccountError::Invalid("the two passwords differ".into()));
    }
    Ok(first)
}

/// Reads one line from the terminal with echo off (restored afterwards, even on error).
fn prompt_hidden(prompt: &str) -> Result<String, AccountError> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let mut err = std::io::stderr();
    let _ = write!(err, "{prompt}");
    let _ = err.flush();
    let saved = tcgetattr(&stdin)
        .map_err(|e| AccountError::Invalid(format!("cannot read the terminal: {e}")))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)
        .map_err(|e| AccountError::Invalid(format!("cannot turn echo off: {e}")))?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let restored = tcsetattr(&stdin, OptionalActions::Now, &saved);
    let _ = writeln!(err);
    read.map_err(|e| AccountError::Invalid(format!("cannot read the password: {e}")))?;
    restored.map_err(|e| AccountError::Invalid(format!("cannot turn echo back on: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
