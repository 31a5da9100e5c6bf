//! The CLI's side of the admin API: finds the address and token through the config file and
//! speaks HTTP/1.1 (hyper) over TCP or the unix socket.

use std::fmt;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::config::{AdminListen, ClientSettings, Config};

/// Why a call failed.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing listens there (exit 1).
    Unreachable(String),
    /// The daemon answered with an error (exit 1).
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// The `error` field of the answer.
        message: String,
        /// The whole answer.
        body: serde_json::Value,
    },
    /// Something else went wrong talking to it (exit 1).
    Protocol(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable(m) | ClientError::Protocol(m) => f.write_str(m),
            ClientError::Refused {
                status, message, ..
            } => write!(f, "detour refused ({status}): {message}"),
        }
    }
}

/// A connection target with its credentials.
#[derive(Debug, Clone)]
pub struct Client {
    listen: AdminListen,
    /// The token (TCP), or why it could not be read (reported only if the daemon answers).
    token: Option<Result<String, String>>,
}

impl Client {
    /// Reads the admin address and, for TCP, the token from `config`.
    pub fn from_config(config: &Config) -> Result<Self, ClientError> {
        Self::from_settings(&ClientSettings {
            admin_listen: config.server.admin_listen.clone(),
            token_file: config.admin.token_file.clone(),
            timezone: config.page.timezone,
        })
    }

    /// Reads the token named by `settings`.
    pub fn from_settings(config: &ClientSettings) -> Result<Self, ClientError> {
        let token = match &config.admin_listen {
            AdminListen::Unix(_) => None,
            AdminListen::Tcp(_) => Some(
                std::fs::read_to_string(&config.token_file)
                    .map(|t| t.trim().to_string())
                    .map_err(|e| {
                        format!(
                            "cannot read the admin token {} ({e}); detour creates it at start",
                            config.token_file.display()
                        )
                    }),
            ),
        };
        Ok(Self {
            listen: config.admin_listen.clone(),
            token,
        })
    }

    fn target(&self) -> String {
        match &self.listen {
            AdminListen::Tcp(a) => a.to_string(),
            AdminListen::Unix(p) => format!("unix:{}", p.display()),
        }
    }

    /// Sends one request; a 2xx answer's JSON body, else the error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let (status, bytes) = self.raw(method, path, body).await?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        if status.is_success() {
            Ok(value)
        } else {
            let message = value
                .get("error")
                .and_then(|e| e.as_str())
                .map_or_else(|| value.to_string(), str::to_string);
            // It may echo what was typed (a service name): printed to a terminal as text.
            let message = crate::text::escape(&message).into_owned();
            Err(ClientError::Refused {
                status,
                message,
                body: value,
            })
        }
    }

    /// Sends one request; the status and raw body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let unreachable = |e: std::io::Error| {
            ClientError::Unreachable(format!(
                "cannot reach detour's admin API ({e}): is detour running? tried {}",
                self.target()
            ))
        };
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "detour")
            .header(hyper::header::CONTENT_TYPE, "application/json");
        let mut token_problem = None;
        match &self.token {
            Some(Ok(t)) => req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}")),
            Some(Err(e)) => token_problem = Some(e.clone()),
            None => {}
        }
        let req = req
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let timeout = std::time::Duration::from_secs(30);
        let fut = async {
            match &self.listen {
                AdminListen::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a)
                        .await
                        .map_err(unreachable)?;
                    if let Some(problem) = token_problem {
                        return Err(ClientError::Protocol(problem));
                    }
                    send(TokioIo::new(s), req).await
                }
                AdminListen::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p)
                        .await
                        .map_err(unreachable)?;
                    send(TokioIo::new(s), req).await
                }
            }
        };
        tokio::time::timeout(timeout, fut).await.map_err(|_| {
            ClientError::Unreachable(format!(
                "detour did not answer within 30 s at {}",
                self.target()
            ))
        })?
    }
}

async fn send<T>(io: T, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), ClientError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let proto = |e: hyper::Error| ClientError::Protocol(format!("admin API: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(proto)?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(proto)?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map_err(proto)?.to_bytes();
    driver.abort();
    Ok((status, bytes))
}
