//! `[server]`, `[admin]`, `[page]` and `[tsig]`: listeners, folders, limits, the page, TSIG keys.

use super::*;

pub(super) fn addr(src: &mut Source<'_>, s: &Spanned<String>, what: &str) -> Option<SocketAddr> {
    match SocketAddr::from_str(s.get_ref()) {
        Ok(a) => Some(a),
        Err(_) => {
            src.error(
                s.span(),
                format!(
                    "invalid {what} {:?}: expected an IP address and port such as \"127.0.0.1:5353\" or \"[::1]:5353\"",
                    s.get_ref()
                ),
            );
            None
        }
    }
}

/// `probe_source`: one unicast address of this host, without a port. Refused: a port (probes
/// take a free one), the unspecified address (that is what leaving the key out means),
/// multicast and broadcast, IPv6 link-local (it needs an interface, which a bare address cannot
/// name) and IPv4-mapped IPv6 (written as the IPv4 address it maps).
pub(super) fn probe_source(src: &mut Source<'_>, s: &Spanned<String>) -> Option<IpAddr> {
    let text = s.get_ref();
    let expected = "expected an IP address of this host such as \"192.0.2.10\" or \"2001:db8::10\"";
    let problem = match text.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => format!(
            "probe_source {text:?} is the unspecified address: {expected}, or no probe_source to let the system choose"
        ),
        Ok(ip) if ip.is_multicast() || ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) => {
            format!("probe_source {text:?} is a multicast or broadcast address: {expected}")
        }
        Ok(IpAddr::V6(v6)) if v6.is_unicast_link_local() => format!(
            "probe_source {text:?} is IPv6 link-local, which needs an interface: {expected} (a global or unique local one)"
        ),
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some() => format!(
            "probe_source {text:?} is an IPv4-mapped IPv6 address: write the IPv4 address itself"
        ),
        Ok(ip) => return Some(ip),
        Err(_) if text.parse::<SocketAddr>().is_ok() => format!(
            "invalid probe_source {text:?}: {expected}, without a port (each probe takes a free port)"
        ),
        Err(_) => format!("invalid probe_source {text:?}: {expected}"),
    };
    src.error(s.span(), problem);
    None
}

/// `[tsig.<name>]`: the name must be a domain name, the secret base64, given exactly once
/// (inline or in a file beside the config), and the algorithm one detour can compute.
pub(super) fn tsig_key(
    src: &mut Source<'_>,
    name: &Spanned<String>,
    raw: RawTsigKey,
    dir: &Path,
) -> Option<crate::proto::tsig::Key> {
    use base64::Engine as _;
    let owner = match Name::from_ascii(name.get_ref()) {
        Ok(mut n) if !name.get_ref().is_empty() && !n.is_root() => {
            n.set_fqdn(true);
            n.to_lowercase()
        }
        _ => {
            src.error(
                name.span(),
                format!(
                    "invalid TSIG key name {:?}: expected a domain name such as \"xfr-key\" or \"xfr.example.test\"",
                    name.get_ref()
                ),
            );
            return None;
        }
    };
    let (text, at) = match (&raw.secret, &raw.secret_file) {
        (Some(s), None) => (s.get_ref().clone(), s.span()),
        (None, Some(f)) => match std::fs::read_to_string(resolve(dir, f.get_ref())) {
            Ok(t) => (t, f.span()),
            Err(e) => {
                src.error(
                    f.span(),
                    format!("cannot read TSIG secret_file {:?}: {e}", f.get_ref()),
                );
                return None;
            }
        },
        _ => {
            src.error(
                name.span(),
                "a TSIG key needs exactly one of `secret` (base64) or `secret_file` (a file holding it)",
            );
            return None;
        }
    };
    let secret = match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
        Ok(s) if !s.is_empty() => s,
        _ => {
            src.error(
                at,
                "the TSIG secret is not base64 (what tsig-keygen, keymgr or `openssl rand -base64 32` print)",
            );
            return None;
        }
    };
    let (alg, alg_at) = match &raw.algorithm {
        Some(a) => (a.get_ref().to_ascii_lowercase(), a.span()),
        None => ("hmac-sha256".to_string(), name.span()),
    };
    match crate::proto::tsig::Key::new(owner, &alg, secret) {
        Ok(k) => Some(k),
        Err(e) => {
            src.error(alg_at, e.to_string());
            None
        }
    }
}

/// A URL people may be sent to from the page: no `javascript:` or `data:` links.
pub(super) fn linkable(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https" | "mailto" | "tel"))
}

pub(super) fn server(src: &mut Source<'_>, raw: RawServer, dir: &Path) -> Option<Server> {
    let mut ok = true;
    let mut addrs = |src: &mut Source<'_>,
                     list: Option<Vec<Spanned<String>>>,
                     default: &str,
                     what| {
        match list {
            None => vec![default.parse().expect("default address parses")],
            Some(list) => list
                .iter()
                .filter_map(|s| {
                    let a = addr(src, s, what);
                    ok &= a.is_some();
                    a
                })
                .collect(),
        }
    };
    let dns_listen = addrs(src, raw.dns_listen, "127.0.0.1:5353", "dns_listen address");
    let page_listen = addrs(
        src,
        raw.page_listen,
        "127.0.0.1:8080",
        "page_listen address",
    );
    let admin_listen = match raw.admin_listen {
        None => AdminListen::Tcp("127.0.0.1:8053".parse().expect("default parses")),
        Some(s) => match s.get_ref().strip_prefix("unix:") {
            Some(p) if !p.is_empty() => {
                let path = resolve(dir, p);
                if let Some(kind) = not_a_socket(&path) {
                    src.error(
                        s.span(),
                        format!(
                            "admin_listen: {} exists and is {kind}, not a socket; detour replaces only a socket left by an earlier run",
                            path.display()
                        ),
                    );
                }
                AdminListen::Unix(path)
            }
            _ => match addr(src, &s, "admin_listen") {
                Some(a) => AdminListen::Tcp(a),
                None => {
                    ok = false;
                    AdminListen::Tcp("127.0.0.1:8053".parse().expect("default parses"))
                }
            },
        },
    };
    let tcp_idle_timeout = raw.tcp_idle_timeout.map_or(Duration::from_secs(5), |d| {
        if d.get_ref().0 < Duration::from_millis(100) {
            src.error(d.span(), "tcp_idle_timeout must be at least 100ms");
            ok = false;
        }
        d.into_inner().0
    });
    let tcp_max_connections = raw.tcp_max_connections.map_or(256, |n| {
        if *n.get_ref() == 0 {
            src.error(n.span(), "tcp_max_connections must be at least 1");
            ok = false;
        }
        *n.get_ref() as usize
    });
    let tcp_max_per_source = raw.tcp_max_per_source.map_or(64, |n| {
        if *n.get_ref() == 0 {
            src.error(n.span(), "tcp_max_per_source must be at least 1");
            ok = false;
        }
        *n.get_ref() as usize
    });
    let udp_max_payload = raw.udp_max_payload.map_or(1232, |n| {
        if *n.get_ref() < 512 {
            src.error(n.span(), "udp_max_payload must be at least 512 (RFC 1035)");
            ok = false;
        }
        *n.get_ref()
    });
    let udp_workers = raw.udp_workers.map_or(0, |n| *n.get_ref() as usize);
    let mut count = |n: Option<Spanned<u32>>, default: usize, key: &str| {
        n.map_or(default, |n| {
            if *n.get_ref() == 0 {
                src.error(n.span(), format!("{key} must be at least 1"));
                ok = false;
            }
            *n.get_ref() as usize
        })
    };
    let max_connections = count(raw.http_max_connections, 512, "http_max_connections");
    let max_per_source = count(raw.http_max_per_source, 64, "http_max_per_source");
    let mut timeout = |d: Option<Spanned<Dur>>, default: u64, key: &str| {
        d.map_or(Duration::from_secs(default), |d| {
            if d.get_ref().0 < Duration::from_millis(100) {
                src.error(d.span(), format!("{key} must be at least 100ms"));
                ok = false;
            }
            d.into_inner().0
        })
    };
    let http = crate::config::HttpLimits {
        max_connections,
        max_per_source,
        header_timeout: timeout(raw.http_header_timeout, 10, "http_header_timeout"),
        idle_timeout: timeout(raw.http_idle_timeout, 30, "http_idle_timeout"),
    };
    // The secret is checked even with cookies off, so that turning them on finds no typo.
    let secret = raw.cookie_secret.map(|hex| {
        crate::proto::cookie::Secret::from_hex(hex.get_ref()).map_err(|e| {
            src.error(hex.span(), format!("cookie_secret: {e}"));
            ok = false;
        })
    });
    let probe_source = raw.probe_source.and_then(|s| {
        let ip = probe_source(src, &s);
        ok &= ip.is_some();
        ip
    });
    let cookies = match (raw.cookies.unwrap_or(true), secret) {
        (false, _) | (true, Some(Err(()))) => None,
        (true, Some(Ok(s))) => Some(s),
        (true, None) => crate::proto::cookie::Secret::process().cloned(),
    };
    let rrl = rrl(src, raw.rrl.unwrap_or_default(), &mut ok);
    ok.then(|| Server {
        dns_listen,
        page_listen,
        admin_listen,
        state_dir: resolve(dir, raw.state_dir.as_deref().unwrap_or("state")),
        zones_dir: resolve(dir, raw.zones_dir.as_deref().unwrap_or("zones")),
        tcp_idle_timeout,
        tcp_max_connections,
        tcp_max_per_source,
        udp_max_payload,
        udp_workers,
        cookies,
        http,
        probe_source,
        rrl,
    })
}

/// `[server.rrl]`: every value within its range (a prefix length within its address).
fn rrl(src: &mut Source<'_>, raw: RawRrl, ok: &mut bool) -> crate::config::Rrl {
    use crate::config::Rrl;
    let default = Rrl::default();
    let mut read = |n: Option<Spanned<u32>>, default: u32, max: u32, what: &str| {
        n.map_or(default, |n| {
            if *n.get_ref() > max {
                src.error(
                    n.span(),
                    format!(
                        "[server.rrl] {what}: expected 0 to {max}, got {}",
                        n.get_ref()
                    ),
                );
                *ok = false;
            }
            *n.get_ref()
        })
    };
    let rate = read(
        raw.rate,
        default.rate,
        Rrl::MAX_RATE,
        "rate (identical answers per second to one prefix; 0 = off)",
    );
    let slip = read(
        raw.slip,
        default.slip,
        Rrl::MAX_SLIP,
        "slip (every slip-th limited answer is truncated; 0 = none)",
    );
    let v4 = read(
        raw.ipv4_prefix,
        default.ipv4_prefix.into(),
        32,
        "ipv4_prefix (bits)",
    );
    let v6 = read(
        raw.ipv6_prefix,
        default.ipv6_prefix.into(),
        128,
        "ipv6_prefix (bits)",
    );
    Rrl {
        rate,
        slip,
        ipv4_prefix: u8::try_from(v4).unwrap_or(32),
        ipv6_prefix: u8::try_from(v6).unwrap_or(128),
    }
}

pub(super) fn page(src: &mut Source<'_>, raw: RawPage, dir: &Path) -> Page {
    let mut links = Vec::new();
    for l in raw.links {
        let l = l.into_inner();
        if !linkable(l.url.get_ref()) {
            src.error(
                l.url.span(),
                format!(
                    "invalid link URL {:?}: expected an absolute http, https, mailto or tel URL",
                    l.url.get_ref()
                ),
            );
        }
        links.push(Link {
            label: l.label,
            url: l.url.into_inner(),
        });
    }
    if let Some(t) = &raw.tls {
        if t.certs.is_empty() {
            src.error_nowhere("[page.tls] needs at least one certificate in `certs`");
        }
        for c in &t.certs {
            for f in [&c.get_ref().cert, &c.get_ref().key] {
                let p = resolve(dir, f);
                if !p.is_file() {
                    src.error(
                        c.span(),
                        format!("[page.tls] file {} does not exist", p.display()),
                    );
                }
            }
        }
    }
    let tls = raw.tls.map(|t| PageTls {
        listen: t
            .listen
            .iter()
            .filter_map(|s| addr(src, s, "page TLS listen address"))
            .collect(),
        certs: t
            .certs
            .into_iter()
            .map(|c| {
                let c = c.into_inner();
                (resolve(dir, &c.cert), resolve(dir, &c.key))
            })
            .collect(),
    });
    let timezone = raw.timezone.and_then(|z| match z.get_ref().parse::<chrono_tz::Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            src.error(
                z.span(),
                format!(
                    "unknown time zone {:?}: expected an IANA name such as \"America/New_York\", \"Europe/London\" or \"UTC\"",
                    z.get_ref()
                ),
            );
            None
        }
    });
    let url = raw.url.and_then(|u| match url::Url::parse(u.get_ref()) {
        Ok(mut url)
            if matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some()
                && url.query().is_none() =>
        {
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
            Some(url)
        }
        _ => {
            src.error(
                u.span(),
                format!(
                    "invalid page url {:?}: expected the status page's public address, such as \"https://status.example.test/\"",
                    u.get_ref()
                ),
            );
            None
        }
    });
    Page {
        timezone,
        url,
        title: raw.title.unwrap_or_else(|| "System status".into()),
        contact: raw.contact.unwrap_or_default(),
        logo: raw.logo.map(|l| resolve(dir, l.get_ref())),
        links,
        tls,
    }
}

/// What stands at `path` if it exists and is not a unix socket ("a regular file", "a
/// folder"): the admin socket must never replace it.
pub(super) fn not_a_socket(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::symlink_metadata(path).ok()?.file_type();
    if t.is_socket() {
        None
    } else if t.is_dir() {
        Some("a folder")
    } else if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_file() {
        Some("a regular file")
    } else {
        Some("a special file")
    }
}
