//! One delivery attempt to one sink, bounded by the sink's timeout as a whole: an HTTP POST
//! (connect, request, response), a command run without a shell (spawn, stdin, exit), an
//! email handed to an SMTP server, or a text message handed to an HTTP SMS gateway.
//! A timeout is a failure like any other; a command that outlives it is killed.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::message::{self, Addressing};
use super::payload::{self, Context, Notice};
use crate::config::duration::display;
use crate::config::{Email, Sink, Sms};

/// Longest piece of a failing answer (HTTP body, stderr) quoted in a failure reason.
const QUOTE_MAX: usize = 160;
/// At most this much of a response body or of stderr is read.
const READ_LIMIT: usize = 16 * 1024;
/// How long stderr is still read after a command exited.
const STDERR_GRACE: Duration = Duration::from_millis(200);

/// The HTTP client notifications share: no proxy, no redirects, TLS verified; or why there
/// is none (then every webhook try fails with that reason).
pub fn http_client() -> Result<reqwest::Client, String> {
    // Idempotent: fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = || {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .tcp_nodelay(true)
            .user_agent(concat!(
                "detour/",
                env!("CARGO_PKG_VERSION"),
                " (notification)"
            ))
    };
    match builder().build() {
        Ok(c) => Ok(c),
        Err(e) => {
            // The usual cause is a system without CA certificates: plain HTTP still works,
            // HTTPS then fails verification, which is the truth.
            tracing::warn!(error = %e, "notifications: no system trust store; HTTPS webhooks will fail");
            builder()
                .tls_certs_only(Vec::new())
                .build()
                .map_err(|e| format!("no HTTP client: {}", cause(&e)))
        }
    }
}

/// Where a sink delivers, for logs and `detour notify test`: "webhook URL" or "exec PROGRAM".
pub fn target(sink: &Sink) -> String {
    match sink {
        Sink::Webhook { url, .. } => format!("webhook {url}"),
        Sink::Exec { command } => format!("exec {}", command.join(" ")),
        Sink::Email(e) => format!("email {}", e.smtp),
        Sink::Sms(s) => format!("sms {}", s.url),
    }
}

/// One recipient of an email or SMS sink, with the links that are theirs.
#[derive(Debug, Clone, Default)]
pub struct Recipient {
    /// The address or phone number.
    pub to: String,
    /// Their links and why they get it.
    pub addressing: Addressing,
}

/// One attempt: `Ok` when delivered, else why not, in one line.
pub async fn attempt(
    client: &Result<reqwest::Client, String>,
    sink: &Sink,
    base: &Path,
    notice: &Notice,
    ctx: &Context,
    timeout: Duration,
    recipient: Option<&Recipient>,
) -> Result<(), String> {
    let work = async {
        match sink {
            Sink::Webhook {
                url,
                headers,
                format,
            } => {
                let body = if format == "slack" {
                    payload::slack(notice, ctx)
                } else {
                    payload::document(notice, ctx)
                };
                match client {
                    Ok(client) => webhook(client, url, headers, &body).await,
                    Err(e) => Err(e.clone()),
                }
            }
            Sink::Exec { command } => exec(command, base, notice, ctx).await,
            Sink::Email(e) => {
                let r = recipient.ok_or("an email needs a recipient")?;
                email(e, r, notice, ctx).await
            }
            Sink::Sms(s) => {
                let r = recipient.ok_or("a text message needs a recipient")?;
                let body = message::sms(notice, ctx, &r.addressing);
                match client {
                    Ok(client) => sms(client, s, &r.to, &body).await,
                    Err(e) => Err(e.clone()),
                }
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}", display(timeout))),
    }
}

/// Reads a secret file, trimmed; the error names the file, never its content.
fn secret(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The SMTP client of an email sink: STARTTLS when an `smtp://` server offers it (the
/// certificate must then verify), TLS from the start for `smtps://`, AUTH when configured
/// (the password file read now). It keeps its connections open for reuse (lettre's pool):
/// one per try for staff messages, one for a whole fan-out to subscribers.
pub type Smtp = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;

/// Builds the SMTP client of `cfg` (see [`Smtp`]).
pub fn smtp(cfg: &Email) -> Result<Smtp, String> {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let host = cfg
        .smtp
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']']);
    let implicit = cfg.smtp.scheme() == "smtps";
    let port = cfg.smtp.port().unwrap_or(if implicit { 465 } else { 25 });
    let mut tls = TlsParameters::builder(host.to_string());
    if let Some(ca) = &cfg.ca {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| format!("invalid CA certificate {}: {e}", ca.display()))?;
        tls = tls.add_root_certificate(cert);
    }
    let tls = tls
        .build_rustls()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let mut transport = Smtp::builder_dangerous(host).port(port).tls(if implicit {
        Tls::Wrapper(tls)
    } else {
        Tls::Opportunistic(tls)
    });
    if let (Some(user), Some(file)) = (&cfg.username, &cfg.password_file) {
        transport = transport.credentials(
            lettre::transport::smtp::authentication::Credentials::new(user.clone(), secret(file)?),
        );
    }
    Ok(transport.build())
}

/// Hands one email to the SMTP server through a new client.
async fn email(cfg: &Email, r: &Recipient, notice: &Notice, ctx: &Context) -> Result<(), String> {
    email_via(&smtp(cfg)?, cfg, r, notice, ctx).await
}

/// Hands one email to the SMTP server through `transport` (bounded by the caller).
pub async fn email_via(
    transport: &Smtp,
    cfg: &Email,
    r: &Recipient,
    notice: &Notice,
    ctx: &Context,
) -> Result<(), String> {
    use lettre::message::{Mailbox, MultiPart};
    use lettre::{AsyncTransport, Message};

    let m = message::build(notice, ctx, &r.addressing);
    let (text, html) = message::bodies(&m)?;
    let from: Mailbox = cfg
        .from
        .parse()
        .map_err(|e| format!("invalid from address: {e}"))?;
    let to: Mailbox =
        r.to.parse()
            .map_err(|e| format!("invalid address {:?}: {e}", r.to))?;
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(m.subject.clone())
        .message_id(r.addressing.message_id.clone())
        .header(lettre::message::header::MIME_VERSION_1_0);
    if let Some(u) = &r.addressing.unsubscribe_url {
        // RFC 8058: mail clients show an unsubscribe button that POSTs to the link.
        builder = builder
            .raw_header(lettre::message::header::HeaderValue::new(
                lettre::message::header::HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{u}>"),
            ))
            .raw_header(lettre::message::header::HeaderValue::new(
                lettre::message::header::HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_string(),
            ));
    }
    let mail = builder
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| format!("cannot build the email: {e}"))?;
    match transport.send(mail).await {
        Ok(resp) if resp.is_positive() => Ok(()),
        Ok(resp) => Err(format!(
            "SMTP {}: {}",
            resp.code(),
            quote(resp.message().collect::<Vec<_>>().join(" ").as_bytes())
        )),
        Err(e) => Err(format!("SMTP: {}", cause(&e))),
    }
}

/// Hands one text message to the gateway: a form POST of `To`, `From` and `Body` (Twilio's
/// shape), with HTTP basic auth from `credentials_file` (`user:secret`).
async fn sms(client: &reqwest::Client, cfg: &Sms, to: &str, body: &str) -> Result<(), String> {
    let mut req = client.post(cfg.url.clone()).form(&[
        ("To", to),
        ("From", cfg.from.as_str()),
        ("Body", body),
    ]);
    if let Some(f) = &cfg.credentials_file {
        let creds = secret(f)?;
        let (user, pass) = creds
            .split_once(':')
            .ok_or_else(|| format!("{} must hold user:secret", f.display()))?;
        req = req.basic_auth(user, Some(pass));
    }
    let resp = req.send().await.map_err(|e| cause(&e))?;
    answer(resp).await
}

/// `Ok` for a 2xx answer; else "HTTP 503: the first part of its body".
async fn answer(mut resp: reqwest::Response) -> Result<(), String> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let mut got = Vec::new();
    while got.len() < READ_LIMIT {
        match resp.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            _ => break,
        }
    }
    let body = quote(&got);
    if body.is_empty() {
        Err(format!("HTTP {}", status.as_u16()))
    } else {
        Err(format!("HTTP {}: {body}", status.as_u16()))
    }
}

fn quote(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    let mut out: String = s.chars().take(QUOTE_MAX).collect();
    if s.chars().count() > QUOTE_MAX {
        out.push('…');
    }
    out.replace(['\n', '\r'], " ")
}

/// The innermost cause of an error chain ("connection refused"), for one-line reasons.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(s) = inner.source() {
        inner = s;
    }
    let outer = e.to_string();
    let innermost = inner.to_string();
    if outer == innermost {
        outer
    } else {
        format!("{outer}: {innermost}")
    }
}

async fn webhook(
    client: &reqwest::Client,
    url: &url::Url,
    headers: &std::collections::BTreeMap<String, String>,
    body: &serde_json::Value,
) -> Result<(), String> {
    let mut map = HeaderMap::new();
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("invalid header name {k:?}"))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| format!("invalid value for header {k}"))?;
        map.insert(name, value);
    }
    let resp = client
        .post(url.clone())
        .headers(map)
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| cause(&e))?;
    answer(resp).await
}

/// The program to run: a relative path with a slash is relative to the config's folder;
/// a bare name is looked up in PATH.
fn program(name: &str, base: &Path) -> std::path::PathBuf {
    let p = Path::new(name);
    if p.is_relative() && name.contains('/') {
        base.join(p)
    } else {
        p.to_path_buf()
    }
}

/// Kills a hook's whole process group when dropped before the hook ended (at the timeout):
/// a shell script's children (`curl`, `sleep`) go with it instead of running on.
struct GroupKiller(u32);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        let Ok(pgid) = i32::try_from(self.0) else {
            return;
        };
        // ESRCH: every process of the group has already gone, which is the goal.
        if let Err(e) = killpg(Pid::from_raw(pgid), Signal::SIGKILL)
            && e != nix::errno::Errno::ESRCH
        {
            tracing::warn!("cannot kill the process group {pgid} of a notification command: {e}");
        }
    }
}

async fn exec(
    command: &[String],
    base: &Path,
    notice: &Notice,
    ctx: &Context,
) -> Result<(), String> {
    let Some((name, args)) = command.split_first() else {
        return Err("empty command".into());
    };
    let input = payload::document(notice, ctx).to_string();
    let mut cmd = tokio::process::Command::new(program(name, base));
    cmd.args(args)
        .envs(payload::env(notice, ctx))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // A group of its own, so that what it starts can be killed with it.
        .process_group(0)
        // Dropped at the timeout: killed, never left running.
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {name}: {e}"))?;
    let group = child.id().map(GroupKiller);
    let stdin = child.stdin.take();
    let stderr = child.stderr.take();
    let write = async move {
        if let Some(mut s) = stdin {
            // A command that does not read its input is fine: ignore a closed pipe.
            let _ = s.write_all(input.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    };
    let read = async move {
        let mut got = Vec::new();
        if let Some(s) = stderr {
            let _ = s.take(READ_LIMIT as u64).read_to_end(&mut got).await;
        }
        got
    };
    // A JoinSet aborts the reader when dropped, at the timeout included.
    let mut reader = tokio::task::JoinSet::new();
    reader.spawn(read);
    let (_, status) = tokio::join!(write, child.wait());
    // It ended by itself: what it left running in the background is its own business.
    if let Some(g) = group {
        std::mem::forget(g);
    }
    let status = status.map_err(|e| format!("{name}: {e}"))?;
    // Something the command left running may hold stderr open: do not wait for it.
    let err = match tokio::time::timeout(STDERR_GRACE, reader.join_next()).await {
        Ok(Some(Ok(err))) => err,
        _ => Vec::new(),
    };
    if status.success() {
        return Ok(());
    }
    let last = String::from_utf8_lossy(&err)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| quote(l.as_bytes()))
        .unwrap_or_default();
    let how = match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_string(),
    };
    if last.is_empty() {
        Err(format!("{name}: {how}"))
    } else {
        Err(format!("{name}: {how}: {last}"))
    }
}
