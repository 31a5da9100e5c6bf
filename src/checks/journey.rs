//! Journey probes: HTTP steps in order, sharing one cookie jar, as a person signing in goes
//! through them.
//!
//! Each run starts with an empty jar and a client of its own (connections are kept within
//! the run, as a browser keeps them, and closed with it). A step fills its placeholders
//! (`{password}` from `password_file`, `{name}` from an earlier step's capture), sends its
//! request (redirects followed only when the step asks), judges the status (default
//! 200-399) and the body (at most [`BODY_LIMIT`] read), then takes its captures. The first
//! step that fails decides the reason, which names it: `step 2 (POST /login): HTTP 401
//! (expected 302)`. One timeout bounds the whole journey; at the deadline the reason names
//! the step that was running. The password never appears in a reason: any text that holds it
//! has it replaced by `(secret)` before it leaves this module.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};

use super::Observation;
use super::probe::{
    Graded, bounded_graded, client_builder, error_chain_reason, expected_statuses,
    http_error_reason, quote, redirect_policy, url_cross_family,
};
use crate::config::{Capture, JourneyCheck, JourneyStep, StepBody};

/// At most this much of each step's body is read (a sign-in page with its scripts inline is
/// larger than the 64 KiB an http check reads); checks and captures see only that.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What stands in for the password in any reason.
const HIDDEN: &str = "(secret)";

/// One run of `journey`, bounded by `timeout` as a whole.
pub async fn probe(
    source: Option<IpAddr>,
    journey: &JourneyCheck,
    timeout: Duration,
) -> Observation {
    let at = Arc::new(Mutex::new(String::from("step 1")));
    let run = steps(source, journey, at.clone());
    let mut o = bounded_graded(timeout, run, |late| {
        let step = at.lock().unwrap_or_else(PoisonError::into_inner).clone();
        format!("{step}: {late}")
    })
    .await;
    if let Some(secret) = &journey.password
        && !secret.0.is_empty()
    {
        o.reason = o.reason.replace(&secret.0, HIDDEN);
    }
    o
}

/// The two clients a run may need (redirects followed or not), sharing its cookie jar;
/// each built at first use.
struct Clients {
    source: Option<IpAddr>,
    tls_verify: bool,
    jar: Arc<reqwest::cookie::Jar>,
    built: [Option<reqwest::Client>; 2],
}

impl Clients {
    fn get(&mut self, follow: bool) -> Result<reqwest::Client, String> {
        if let Some(c) = &self.built[usize::from(follow)] {
            return Ok(c.clone());
        }
        let builder = || {
            client_builder(self.source)
                // Within a run connections are kept, as a browser keeps them; the client
                // (and they) go when the run ends.
                .pool_max_idle_per_host(8)
                .cookie_provider(self.jar.clone())
                .redirect(redirect_policy(follow, self.source))
                .tls_danger_accept_invalid_certs(!self.tls_verify)
        };
        let client = match builder().build() {
            Ok(c) => c,
            // No system trust store: plain HTTP still works, HTTPS fails verification.
            Err(_) if self.tls_verify => builder()
                .tls_certs_only(Vec::new())
                .build()
                .map_err(|e| format!("HTTP client: {}", error_chain_reason(&e)))?,
            Err(e) => return Err(format!("HTTP client: {}", error_chain_reason(&e))),
        };
        self.built[usize::from(follow)] = Some(client.clone());
        Ok(client)
    }
}

/// Runs every step in turn; `at` names the step running, for a timeout's reason.
async fn steps(source: Option<IpAddr>, journey: &JourneyCheck, at: Arc<Mutex<String>>) -> Graded {
    let mut clients = Clients {
        source,
        tls_verify: journey.tls_verify,
        jar: Arc::new(reqwest::cookie::Jar::default()),
        built: [None, None],
    };
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    if let Some(p) = &journey.password {
        vars.insert("password".into(), p.0.clone());
    }
    let mut last = String::new();
    for (i, step) in journey.steps.iter().enumerate() {
        let text = step.url.fill(&vars);
        let url = url::Url::parse(&text).ok();
        let label = format!(
            "step {} ({} {})",
            i + 1,
            step.method,
            url.as_ref().map_or("?", |u| u.path())
        );
        *at.lock().unwrap_or_else(PoisonError::into_inner) = label.clone();
        let url = match url {
            Some(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                return Err(format!(
                    "{label}: invalid URL '{}': expected http:// or https://",
                    quote(&text)
                ));
            }
        };
        last = one_step(&mut clients, step, url, &mut vars, source)
            .await
            .map_err(|why| format!("{label}: {why}"))?;
    }
    let n = journey.steps.len();
    let s = if n == 1 { "" } else { "s" };
    Ok((super::Grade::Normal, format!("{n} step{s} pass ({last})")))
}

/// One step: request, judgement, captures (into `vars`). `Ok` holds "HTTP 200".
async fn one_step(
    clients: &mut Clients,
    step: &JourneyStep,
    url: url::Url,
    vars: &mut BTreeMap<String, String>,
    source: Option<IpAddr>,
) -> Result<String, String> {
    if let Some(why) = url_cross_family(source, &url) {
        return Err(why);
    }
    let client = clients.get(step.follow_redirects)?;
    let method = reqwest::Method::from_bytes(step.method.as_bytes())
        .map_err(|_| format!("invalid method '{}'", quote(&step.method)))?;
    let mut req = client.request(method, url);
    for (name, value) in &step.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name '{}'", quote(name)))?;
        let value = HeaderValue::from_str(&value.fill(vars))
            .map_err(|_| format!("invalid value for header '{name}'"))?;
        req = req.header(name, value);
    }
    match &step.body {
        None => {}
        Some(StepBody::Form(fields)) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in fields {
                form.append_pair(k, &v.fill(vars));
            }
            req = req
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.finish());
        }
        Some(StepBody::Json(v)) => {
            let body = serde_json::to_string(&fill_json(v, vars))
                .map_err(|e| format!("JSON body: {e}"))?;
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
    }
    let mut response = req
        .send()
        .await
        .map_err(|e| http_error_reason(&e, source))?;
    let status = response.status().as_u16();
    let final_url = response.url().clone();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while body.len() < BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(BODY_LIMIT - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "HTTP {status}, body: {}",
                    http_error_reason(&e, source)
                ));
            }
        }
    }
    drop(response);
    let status_ok = if step.expect_status.is_empty() {
        (200..=399).contains(&status)
    } else {
        step.expect_status.contains(&status)
    };
    if !status_ok {
        return Err(format!(
            "HTTP {status} (expected {})",
            expected_statuses(&step.expect_status)
        ));
    }
    let text = String::from_utf8_lossy(&body);
    if let Some(needle) = &step.body_contains
        && !text.contains(needle.as_str())
    {
        return Err(format!("HTTP {status}, body lacks '{}'", quote(needle)));
    }
    if let Some(re) = &step.body_regex
        && !re.0.is_match(&text)
    {
        return Err(format!(
            "HTTP {status}, body does not match /{}/",
            quote(re.0.as_str())
        ));
    }
    for c in &step.capture {
        let value = capture(c, &text, &headers, &final_url)
            .map_err(|why| format!("HTTP {status}, capture {}: {why}", c.name))?;
        vars.insert(c.name.clone(), value);
    }
    Ok(format!("HTTP {status}"))
}

/// The value of one capture: from the body (its regex's first group, or the whole match), or
/// from a header (a `Location` or `Content-Location` made absolute against the URL that
/// answered, then the regex if any).
fn capture(
    c: &Capture,
    body: &str,
    headers: &reqwest::header::HeaderMap,
    answered: &url::Url,
) -> Result<String, String> {
    let haystack = match &c.header {
        None => body.to_string(),
        Some(h) => {
            let raw = headers
                .get(h.as_str())
                .ok_or_else(|| format!("no {h} header"))?
                .to_str()
                .map_err(|_| format!("{h} header is not text"))?;
            if h.eq_ignore_ascii_case("location") || h.eq_ignore_ascii_case("content-location") {
                answered
                    .join(raw)
                    .map_err(|e| format!("{h} header '{}' is not a URL: {e}", quote(raw)))?
                    .to_string()
            } else {
                raw.to_string()
            }
        }
    };
    let Some(re) = &c.regex else {
        return Ok(haystack);
    };
    let caps = re.0.captures(&haystack).ok_or_else(|| {
        let place = c.header.as_deref().unwrap_or("body");
        format!("{place} does not match /{}/", quote(re.0.as_str()))
    })?;
    Ok(caps
        .get(1)
        .or_else(|| caps.get(0))
        .map_or(String::new(), |m| m.as_str().to_string()))
}

/// A JSON body with the placeholders of its strings filled.
fn fill_json(v: &serde_json::Value, vars: &BTreeMap<String, String>) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(fill_text(s, vars)),
        Value::Array(a) => Value::Array(a.iter().map(|x| fill_json(x, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), fill_json(x, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `{name}` in `s` replaced from `vars` (`{{` and `}}` are braces); load has checked every
/// name.
fn fill_text(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                out.push_str(vars.get(&name).map_or("", String::as_str));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_get_their_placeholders_and_braces() {
        let vars = BTreeMap::from([
            ("password".to_string(), "s3cret".to_string()),
            ("csrf".to_string(), "abc".to_string()),
        ]);
        let v = serde_json::json!({ "p": "{password}", "t": ["x{csrf}y", 1], "b": "{{literal}}" });
        assert_eq!(
            fill_json(&v, &vars),
            serde_json::json!({ "p": "s3cret", "t": ["xabcy", 1], "b": "{literal}" })
        );
    }

    #[test]
    fn a_location_capture_is_made_absolute_before_its_regex() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("location", HeaderValue::from_static("/cb?code=XYZ&state=1"));
        let answered = url::Url::parse("http://127.0.0.1:9/login").unwrap();
        let whole = Capture {
            name: "next".into(),
            header: Some("Location".into()),
            regex: None,
        };
        assert_eq!(
            capture(&whole, "", &headers, &answered).unwrap(),
            "http://127.0.0.1:9/cb?code=XYZ&state=1"
        );
        let code = Capture {
            regex: Some(crate::config::Pattern(
                regex::Regex::new("code=([^&]+)").unwrap(),
            )),
            ..whole
        };
        assert_eq!(capture(&code, "", &headers, &answered).unwrap(), "XYZ");
        let missing = Capture {
            header: Some("X-Nope".into()),
            regex: None,
            name: "n".into(),
        };
        assert_eq!(
            capture(&missing, "", &headers, &answered).unwrap_err(),
            "no X-Nope header"
        );
    }
}
