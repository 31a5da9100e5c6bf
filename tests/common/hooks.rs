//! A webhook receiver for tests: collects the JSON bodies detour posts, answers 204.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Collects webhook bodies.
#[derive(Clone, Default)]
pub struct Hooks(pub Arc<Mutex<Vec<serde_json::Value>>>);

impl Hooks {
    pub async fn start(&self) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let bodies = self.0.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let bodies = bodies.clone();
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 8192];
                    loop {
                        let Ok(Ok(n)) =
                            tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await
                        else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        data.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&data).into_owned();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let len: usize = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse().ok())?
                                })
                                .unwrap_or(0);
                            if body.len() >= len {
                                if let Ok(v) = serde_json::from_str(&body[..len]) {
                                    bodies.lock().unwrap().push(v);
                                }
                                let _ = s
                                    .write_all(
                                        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
                                    )
                                    .await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    /// How many events of `kind` about `service` arrived.
    pub fn count(&self, kind: &str, service: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == kind && v["service"] == service)
            .count()
    }
}
