//! The real `detour` binary run as a child process, its log lines read as they come.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_detour");

/// A `detour run` child whose stderr lines arrive on a channel.
pub struct Daemon {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Daemon {
    pub fn start(config: &Path) -> Self {
        Self::spawn(Command::new(BIN), config)
    }

    /// Runs detour with these extra environment variables (NOTIFY_SOCKET, say).
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.envs(env.iter().copied());
        Self::spawn(cmd, config)
    }

    /// Runs detour with its open-file limit (soft and hard) set to `nofile`, as `ulimit -n`.
    pub fn start_limited(config: &Path, nofile: u32) -> Self {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(BIN);
        Self::spawn(sh, config)
    }

    /// Runs `cmd` (which must end by running the binary, e.g. `ip netns exec NS BIN`) with
    /// `run --config CONFIG` appended.
    pub fn start_cmd(cmd: Command, config: &Path) -> Self {
        Self::spawn(cmd, config)
    }

    fn spawn(mut cmd: Command, config: &Path) -> Self {
        let mut child = cmd
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn detour");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits (up to 10 s) for a log line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.log.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log line with {needle:?}; log so far:\n{}",
            self.log.join("\n")
        );
    }

    /// Every line read so far (after `wait_for` calls), and any waiting now.
    pub fn log(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
        self.log.clone()
    }

    /// The address of the first log line "NEEDLE ADDR".
    pub fn addr_after(&mut self, needle: &str) -> SocketAddr {
        let line = self.wait_for(needle);
        let rest = line.split(needle).nth(1).unwrap();
        let word = rest.split_whitespace().next().unwrap();
        word.trim_start_matches("http://").parse().unwrap()
    }

    pub fn dns_addr(&mut self) -> SocketAddr {
        let line = self.wait_for("listening for DNS on ");
        let rest = line.split("listening for DNS on ").nth(1).unwrap();
        rest.split_whitespace().next().unwrap().parse().unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("USER", "tester")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
