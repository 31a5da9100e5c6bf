//! `detour user`: the console's accounts in `state_dir/accounts.json`, changed in place (no
//! daemon needed; a running one sees the change at its next request). Passwords come from
//! stdin, or from a prompt without echo on a terminal; never from the command line, where
//! `ps` and shell history would keep them.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use serde_json::json;

use super::UserCmd;
use super::commands::Outcome;
use crate::config::Config;
use crate::console::accounts::{self, AccountError, Role};

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
    if cfg.cluster.is_some() {
        // Said on every command: accounts are per instance even in a cluster.
        eprintln!(
            "note: console accounts are kept in each instance's own state_dir ({}), not in etcd: run this on every instance whose console people use",
            dir.display()
        );
    }
    let result = match cmd {
        UserCmd::Add { name, role } => {
            let role = Role::parse(role).unwrap_or(Role::Communicator);
            read_password(&format!("New password for {name}: "))
                .and_then(|p| accounts::add(dir, name, role, &p))
                .map(|()| format!("account {name} added ({})\n", role.as_str()))
        }
        UserCmd::Remove { name } => accounts::remove(dir, name)
            .map(|()| format!("account {name} removed; its sessions end at their next request\n")),
        UserCmd::Passwd { name, role } => {
            let role = role.as_deref().and_then(Role::parse);
            read_password(&format!("New password for {name}: "))
                .and_then(|p| accounts::passwd(dir, name, &p, role))
                .map(|()| format!("password of {name} changed; its sessions end at their next request\n"))
        }
        UserCmd::List => accounts::load(dir).map(|a| {
            if json {
                let list: Vec<_> = a
                    .accounts
                    .iter()
                    .map(|x| json!({ "name": x.name, "role": x.role, "created": x.created, "changed": x.changed }))
                    .collect();
                format!("{}\n", serde_json::Value::Array(list))
            } else if a.accounts.is_empty() {
                "no console accounts (add one: detour user add NAME --role operator)\n".into()
            } else {
                let mut out = format!("{:<24} {:<13} {:<20} {}\n", "NAME", "ROLE", "ADDED", "CHANGED");
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
        }),
    };
    match result {
        Ok(out) => Outcome::ok(out),
        Err(e @ AccountError::Invalid(_)) => Outcome::fail(2, format!("error: {e}\n")),
        Err(e) => Outcome::fail(1, format!("error: {e}\n")),
    }
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
