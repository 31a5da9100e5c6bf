//! A real etcd cluster (Debian's `etcd-server`) on loopback for cluster tests: members on
//! free ports, each in its own data folder, that can be killed and started again.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One member.
struct Member {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    child: Option<Child>,
}

/// A running etcd cluster.
pub struct Etcd {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    /// Client TLS: CA, server certificate and key (PEM files); clients must present a
    /// certificate the CA signed.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

/// `n` distinct free ports: every listener is held until all are chosen (a port freed at
/// once can be handed out again by the next bind).
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter().map(|l| l.local_addr().unwrap()).collect()
}

impl Etcd {
    /// Starts `n` members and waits until the cluster has a leader.
    pub fn start(n: usize) -> Etcd {
        Self::start_with(n, None)
    }

    /// Starts `n` members serving clients over TLS only (`tls`: CA, certificate, key) and
    /// requiring a client certificate the CA signed.
    pub fn start_with(n: usize, tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Etcd {
        let mut e = Etcd {
            tls,
            dir: tempfile::tempdir().unwrap(),
            members: {
                let ports = free_addrs(2 * n);
                (0..n)
                    .map(|i| Member {
                        name: format!("m{i}"),
                        client: ports[2 * i],
                        peer: ports[2 * i + 1],
                        child: None,
                    })
                    .collect()
            },
        };
        for i in 0..n {
            e.spawn(i, "new");
        }
        if e.tls.is_none() {
            e.wait_healthy(0);
        }
        e
    }

    fn scheme(&self) -> &str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The client endpoints, as `[cluster] etcd` lists them.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://{}", self.scheme(), m.client))
            .collect()
    }

    fn data(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).unwrap();
        let client = format!("{}://{}", self.scheme(), m.client);
        let mut cmd = Command::new("etcd");
        if let Some((ca, cert, key)) = &self.tls {
            cmd.arg("--trusted-ca-file")
                .arg(ca)
                .arg("--cert-file")
                .arg(cert)
                .arg("--key-file")
                .arg(key)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.data(i))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &format!("http://{}", m.peer)])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://{}", m.peer),
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "detour-test"])
            // Fast elections, so that a test does not wait seconds for a new leader.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian package etcd-server) runs");
        self.members[i].child = Some(child);
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i, "existing");
    }

    /// True when member `i` says it is healthy (it has a leader and can commit).
    pub fn healthy(&self, i: usize) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.members[i].client, Duration::from_secs(1))
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = "GET /health HTTP/1.0\r\nHost: etcd\r\n\r\n";
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }

    /// Waits (up to 20 s) until member `i` is healthy.
    pub fn wait_healthy(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.healthy(i) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("{}.log", self.members[i].name)),
        )
        .unwrap_or_default();
        panic!("etcd member {i} not healthy within 20 s; its log:\n{log}");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
