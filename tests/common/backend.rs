//! Real local backends for health-check tests: an HTTP server and a TCP listener that can be
//! killed and restarted on the same address, and made to misbehave.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How a running HTTP backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// "HTTP/1.1 <status>" with body "OK".
    Status(u16),
    /// Accept and never answer.
    Hang,
    /// 200 and 500 in turn, one per request: a backend flapping as fast as it is probed.
    Alternate,
}

/// A tiny HTTP/1.1 server on a fixed address; `stop` closes the socket, `start` reopens it.
pub struct HttpBackend {
    pub addr: SocketAddr,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
    /// Closes a connection that sends nothing for this long (0: never), like nginx's
    /// `client_header_timeout`; `idle_closed` counts those closings.
    idle_ms: Arc<AtomicU64>,
    idle_closed: Arc<AtomicU64>,
    task: Option<JoinHandle<()>>,
}

impl HttpBackend {
    /// Binds `addr` (port 0 picks one) and answers 200 "OK".
    pub async fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let mut b = Self {
            addr,
            status,
            hits: Arc::new(AtomicU64::new(0)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            idle_ms: Arc::new(AtomicU64::new(0)),
            idle_closed: Arc::new(AtomicU64::new(0)),
            task: None,
        };
        b.serve(listener);
        b
    }

    fn serve(&mut self, listener: TcpListener) {
        let status = self.status.clone();
        let hits = self.hits.clone();
        let delay_ms = self.delay_ms.clone();
        let idle_ms = self.idle_ms.clone();
        let idle_closed = self.idle_closed.clone();
        let flip = Arc::new(AtomicU16::new(0));
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                hits.fetch_add(1, Ordering::SeqCst);
                let mut code = status.load(Ordering::SeqCst);
                if code == 1 {
                    code = if flip.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                        200
                    } else {
                        500
                    };
                }
                let delay = std::time::Duration::from_millis(delay_ms.load(Ordering::SeqCst));
                let idle = idle_ms.load(Ordering::SeqCst);
                let idle_closed = idle_closed.clone();
                conns.spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    if idle == 0 {
                        let _ = s.read(&mut buf).await;
                    } else {
                        let wait = std::time::Duration::from_millis(idle);
                        if tokio::time::timeout(wait, s.read(&mut buf)).await.is_err() {
                            idle_closed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    tokio::time::sleep(delay).await;
                    if code == 0 {
                        // Hang: hold the connection open, say nothing.
                        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        return;
                    }
                    let body = if code == 200 { "OK" } else { "FAIL" };
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
                while conns.try_join_next().is_some() {}
            }
        }));
    }

    /// Answers with this mode from now on.
    pub fn set(&self, mode: Mode) {
        let code = match mode {
            Mode::Status(c) => c,
            Mode::Hang => 0,
            Mode::Alternate => 1,
        };
        self.status.store(code, Ordering::SeqCst);
    }

    /// Waits this long before answering each request from now on.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// From now on, closes connections that send nothing for `idle`.
    pub fn set_idle_close(&self, idle: std::time::Duration) {
        self.idle_ms
            .store(idle.as_millis() as u64, Ordering::SeqCst);
    }

    /// Connections closed so far for sending nothing.
    pub fn idle_closed(&self) -> u64 {
        self.idle_closed.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (one per probe).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Kills the server: the port is closed (connect refused) and open connections drop.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Restarts on the same address.
    pub async fn restart(&mut self) {
        self.stop();
        // The aborted task drops its listener asynchronously: retry the bind briefly.
        for _ in 0..100 {
            if let Ok(l) = TcpListener::bind(self.addr).await {
                self.serve(l);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("cannot rebind {}", self.addr);
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.stop();
    }
}
