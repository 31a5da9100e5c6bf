//! Helpers for the page tests (their config is `page_config`, in common/configs.rs): a raw
//! HTTP/1.1 client (so Host, Accept and methods are exactly what the test says), a small XML
//! well-formedness checker for the Atom feed, and base64 for screenshots.
#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The zone of the page tests: `mls` follows the MLS (then its standby), and two static
/// CNAMEs lead to it.
pub fn page_zone() -> String {
    format!("{PAGE_RECORDS}{}", crate::common::MLS_DYNAMIC)
}

/// `page_zone()` before its dynamic record.
const PAGE_RECORDS: &str = r#"
origin = "example.test."
soa = { mname = "ns1.example.test.", rname = "h.example.test.", minimum = 30 }
ns = ["ns1.example.test."]
records = [
  { name = "ns1", type = "A", value = "127.0.0.1" },
  { name = "www", type = "CNAME", value = "mls" },
  { name = "status", type = "A", value = "127.0.0.1" },
]
"#;

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("ephemeral port")
}

/// The address of a page URL such as "http://127.0.0.1:8080".
pub fn addr_of(url: &str) -> SocketAddr {
    url.split_once("://")
        .map_or(url, |(_, a)| a)
        .parse()
        .unwrap_or_else(|e| panic!("page address {url:?}: {e}"))
}

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy for binary bodies).
    pub body: String,
    /// The body as sent.
    pub bytes: Vec<u8>,
}

impl Resp {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Panics unless `parts` occur in `body` in this order; returns their positions.
    pub fn in_order(&self, parts: &[&str]) -> Vec<usize> {
        in_order(&self.body, parts)
    }
}

/// Panics unless `parts` occur in `text` in this order; returns their positions.
pub fn in_order(text: &str, parts: &[&str]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    for p in parts {
        match text[at..].find(p) {
            Some(i) => {
                out.push(at + i);
                at += i + p.len();
            }
            None => {
                panic!("{p:?} missing after position {at} (expected order {parts:?}) in:\n{text}")
            }
        }
    }
    out
}

/// One request over a fresh connection: `method path`, with `Host: host` and `headers`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect to the page");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("send request");
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("the page answers within 10 s")
        .expect("read response");
    parse(&raw, method == "HEAD")
}

/// GET with a Host.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    request(addr, "GET", host, path, &[]).await
}

fn parse(raw: &[u8], is_head: bool) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let bytes = raw[split + 4..].to_vec();
    let body = String::from_utf8_lossy(&bytes).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let resp = Resp {
        status,
        headers,
        body,
        bytes,
    };
    assert_ne!(
        resp.header("transfer-encoding"),
        Some("chunked"),
        "the test client reads content-length bodies only"
    );
    if let Some(len) = resp.header("content-length").filter(|_| !is_head) {
        assert_eq!(
            len.parse::<usize>().expect("numeric content-length"),
            resp.bytes.len(),
            "content-length matches the body"
        );
    }
    resp
}

/// An element of a parsed XML document.
#[derive(Debug, Clone, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// Text directly inside, entities decoded.
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn all(&self, name: &str) -> Vec<&Element> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    /// The text of the child `name`, panicking when there is none.
    pub fn text_of(&self, name: &str) -> &str {
        &self
            .child(name)
            .unwrap_or_else(|| panic!("<{}> has no <{name}>", self.name))
            .text
    }
}

fn decode_entities(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find(';')
            .ok_or_else(|| format!("unterminated entity in {s:?}"))?;
        let ent = &rest[i + 1..i + end];
        let c = match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ if ent.starts_with("#x") => u32::from_str_radix(&ent[2..], 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad character reference &{ent};"))?,
            _ if ent.starts_with('#') => ent[1..]
                .parse::<u32>()
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad character reference &{ent};"))?,
            _ => return Err(format!("undeclared entity &{ent}; (XML knows only five)")),
        };
        out.push(c);
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn xml_char_ok(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
        && !s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
}

/// Parses a whole XML document strictly enough to catch what a feed reader would reject:
/// one root, balanced and properly nested tags, quoted unique attributes, only the five
/// predefined entities, no bare `<` or `&` in text, no characters XML 1.0 forbids. Comments,
/// CDATA and DOCTYPE are refused (the feed has none).
pub fn parse_xml(doc: &str) -> Result<Element, String> {
    if let Some(bad) = doc.chars().find(|c| !xml_char_ok(*c)) {
        return Err(format!(
            "character U+{:04X} is not allowed in XML",
            bad as u32
        ));
    }
    let mut rest = doc.trim_start_matches('\u{feff}');
    if let Some(r) = rest.strip_prefix("<?xml") {
        let end = r.find("?>").ok_or("unterminated XML declaration")?;
        rest = &r[end + 2..];
    }
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let lt = rest.find('<');
        let text = &rest[..lt.unwrap_or(rest.len())];
        if text.contains("]]>") {
            return Err("]]> in text".into());
        }
        match stack.last_mut() {
            Some(top) => top.text.push_str(&decode_entities(text)?),
            None if !text.trim().is_empty() => {
                return Err(format!("text outside the root element: {text:?}"));
            }
            None => {}
        }
        let Some(lt) = lt else { break };
        rest = &rest[lt..];
        if rest.starts_with("<!") || rest.starts_with("<?") {
            return Err(format!(
                "unexpected markup {:?}",
                &rest[..rest.len().min(20)]
            ));
        }
        let gt = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let el = stack.pop().ok_or_else(|| format!("stray </{name}>"))?;
            if el.name != name.trim() {
                return Err(format!("</{}> closes <{}>", name.trim(), el.name));
            }
            match stack.last_mut() {
                Some(parent) => parent.children.push(el),
                None if root.is_none() => root = Some(el),
                None => return Err("two root elements".into()),
            }
            continue;
        }
        let (tag, empty) = match tag.strip_suffix('/') {
            Some(t) => (t, true),
            None => (tag, false),
        };
        let tag = tag.trim_end();
        let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
        let name = &tag[..name_end];
        if !is_name(name) {
            return Err(format!("bad element name {name:?}"));
        }
        let mut el = Element {
            name: name.to_string(),
            ..Element::default()
        };
        let mut a = tag[name_end..].trim_start();
        while !a.is_empty() {
            let eq = a
                .find('=')
                .ok_or_else(|| format!("attribute without value in <{name}>"))?;
            let an = a[..eq].trim();
            if !is_name(an) {
                return Err(format!("bad attribute name {an:?}"));
            }
            let v = a[eq + 1..].trim_start();
            let q = v.chars().next().ok_or("attribute value missing")?;
            if q != '"' && q != '\'' {
                return Err(format!("unquoted attribute {an} in <{name}>"));
            }
            let close = v[1..].find(q).ok_or("unterminated attribute value")?;
            let raw = &v[1..1 + close];
            if raw.contains('<') {
                return Err(format!("< in attribute {an}"));
            }
            if el.attrs.iter().any(|(n, _)| n == an) {
                return Err(format!("attribute {an} twice in <{name}>"));
            }
            el.attrs.push((an.to_string(), decode_entities(raw)?));
            a = v[close + 2..].trim_start();
        }
        if empty {
            match stack.last_mut() {
                Some(parent) => parent.children.push(el),
                None if root.is_none() => root = Some(el),
                None => return Err("two root elements".into()),
            }
        } else {
            stack.push(el);
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{}> is never closed", open.name));
    }
    root.ok_or_else(|| "no root element".into())
}

/// Standard base64 (with padding) to bytes.
pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let pad = chunk.iter().filter(|b| **b == b'=').count();
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            let v = if *b == b'=' { 0 } else { val(*b) };
            n |= v << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

/// Where test artifacts go: `$CARGO_TARGET_DIR` or `target/`, then `sub`.
pub fn artifact_dir(sub: &str) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join(sub);
    std::fs::create_dir_all(&dir).expect("create the artifact folder");
    dir
}

#[test]
fn the_xml_checker_rejects_what_feed_readers_reject() {
    assert!(parse_xml("<a><b x=\"1\">t &amp; u</b></a>").is_ok());
    for bad in [
        "<a><b></a></b>",
        "<a>x < y</a>",
        "<a>AT&T</a>",
        "<a>&nbsp;</a>",
        "<a x=1/>",
        "<a></a><b/>",
        "<a>\u{1}</a>",
        "<a>",
    ] {
        assert!(parse_xml(bad).is_err(), "accepted {bad:?}");
    }
    let root = parse_xml("<?xml version=\"1.0\"?>\n<f xmlns=\"u\"><e>&lt;s&gt;</e></f>").unwrap();
    assert_eq!(root.attr("xmlns"), Some("u"));
    assert_eq!(root.text_of("e"), "<s>");
    assert_eq!(base64_decode("Zm9vYmFy"), b"foobar");
    assert_eq!(base64_decode("Zm8="), b"fo");
}
