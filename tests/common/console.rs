//! The console over real HTTP, as a browser without a cookie jar of its own would use it:
//! cookies and CSRF tokens are kept here, redirects are not followed (the tests look at
//! them), and every POST carries the `Origin` a browser sends unless a test forges one.
#![allow(dead_code)]

use detour::console::accounts::{self, Role};

/// A console account for tests: its password is long enough to be taken.
pub const PASSWORD: &str = "correct horse battery staple";

/// The config of the console tests: an MLS with a standby, the sign-on it depends on, two
/// incident templates, and `extra` after them.
pub fn console_config(extra: &str) -> String {
    crate::common::page_config(
        "",
        &format!(
            r#"
[page]
title = "Example Realty — system status"

[services.sso]
name = "MLS Sign-On"

[services.mls]
name = "MLS"
depends_on = ["sso"]

[services.mls_dr]
name = "MLS (disaster-recovery site)"

[[incident_templates]]
name = "Sign-on outage"
services = ["sso", "mls"]
message = "Sign-on is down. Forms and tax records work: use their direct links."

[[incident_templates]]
name = "Planned maintenance"
message = "Planned maintenance tonight from 22:00 to 02:00."
{extra}
"#
        ),
    )
}

/// Adds account `name` with `role` to the state folder `state_dir`.
pub fn add_account(state_dir: &std::path::Path, name: &str, role: Role) {
    accounts::add(state_dir, name, role, PASSWORD).expect("account added");
}

/// One person's browser, reduced to what the console needs.
pub struct Agent {
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Cookies as sent back (name=value).
    pub cookies: Vec<(String, String)>,
    /// The last CSRF token seen in a page.
    pub csrf: String,
}

/// A response, read.
pub struct Got {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub headers: reqwest::header::HeaderMap,
}

impl Agent {
    pub fn new(admin_addr: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self::with(http, format!("http://{admin_addr}"))
    }

    /// An agent using `http` (its own TLS roots, name resolution) against `base`.
    pub fn with(http: reqwest::Client, base: String) -> Self {
        Self {
            http,
            base,
            cookies: Vec::new(),
            csrf: String::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, resp: reqwest::Response) -> Got {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let set_cookies: Vec<String> = headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for c in &set_cookies {
            let first = c.split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !v.is_empty() && !c.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
        let location = headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.text().await.unwrap();
        if let Some(t) = csrf_in(&body) {
            self.csrf = t;
        }
        Got {
            status,
            body,
            location,
            set_cookies,
            headers,
        }
    }

    pub async fn get(&mut self, path: &str) -> Got {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("the console answers");
        self.read(resp).await
    }

    /// POSTs `fields` (plus this agent's CSRF token when `csrf`), with `origin` as `Origin`
    /// (the console's own when `None`).
    pub async fn post_as(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        csrf: bool,
        origin: Option<&str>,
    ) -> Got {
        let mut form: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if csrf {
            form.push(("csrf".into(), self.csrf.clone()));
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("origin", origin.unwrap_or(&self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("the console answers");
        self.read(resp).await
    }

    /// A form POST as the console's own page sends it.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Got {
        self.post_as(path, fields, true, None).await
    }

    /// Signs in (GET the form, POST it); the POST's response.
    pub async fn sign_in(&mut self, name: &str, password: &str) -> Got {
        let form = self.get("/console/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        self.post("/console/login", &[("name", name), ("password", password)])
            .await
    }
}

/// The value of the first `name="csrf"` field of a page.
pub fn csrf_in(body: &str) -> Option<String> {
    let at = body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = body[at..].find('"')?;
    Some(body[at..at + end].to_string())
}
