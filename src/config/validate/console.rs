//! `[console]` (sessions, sign-in limits) and `[[incident_templates]]`.

use super::*;

/// `[console]`, with file:line:col on every problem.
pub(super) fn console(
    src: &mut Source<'_>,
    raw: Option<Spanned<RawConsole>>,
    dir: &Path,
    page_tls: Option<&PageTls>,
) -> Console {
    let d = Console::default();
    let Some(raw) = raw else {
        return d;
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let listen: Vec<SocketAddr> = raw
        .listen
        .iter()
        .filter_map(|s| server::addr(src, s, "console listen address"))
        .collect();
    let mut certs = Vec::new();
    for c in &raw.certs {
        let pair = (
            resolve(dir, &c.get_ref().cert),
            resolve(dir, &c.get_ref().key),
        );
        for p in [&pair.0, &pair.1] {
            if !p.is_file() {
                src.error(
                    c.span(),
                    format!("[console] file {} does not exist", p.display()),
                );
            }
        }
        certs.push(pair);
    }
    if certs.is_empty() {
        certs = page_tls.map(|t| t.certs.clone()).unwrap_or_default();
    }
    if !raw.listen.is_empty() && certs.is_empty() {
        src.error(
            span,
            "[console] listen serves HTTPS only: it needs certificates, `certs = [{ cert = \"...\", key = \"...\" }]` here or in [page.tls]",
        );
    }
    // (the value, its key, the longest it may be and how that is written, the default)
    let mut dur = |v: Option<Spanned<Dur>>, what: &str, max: (u64, &str), or: Duration| match v {
        None => or,
        Some(x) if x.get_ref().0 < Duration::from_secs(60) || x.get_ref().0.as_secs() > max.0 => {
            src.error(
                x.span(),
                format!("[console] {what} must be between \"1m\" and \"{}\"", max.1),
            );
            or
        }
        Some(x) => x.into_inner().0,
    };
    let day = (86_400, "24h");
    let idle_timeout = dur(raw.idle_timeout, "idle_timeout", day, d.idle_timeout);
    let absolute_timeout = dur(
        raw.absolute_timeout,
        "absolute_timeout",
        (30 * 86_400, "30d"),
        d.absolute_timeout,
    );
    let lockout = dur(raw.lockout, "lockout", day, d.lockout);
    let mut count = |v: Option<Spanned<u32>>, max: u32, what: &str, or: u32| match v {
        None => or,
        Some(x) if *x.get_ref() == 0 || *x.get_ref() > max => {
            src.error(
                x.span(),
                format!("[console] {what} must be between 1 and {max}"),
            );
            or
        }
        Some(x) => x.into_inner(),
    };
    let lockout_after = count(raw.lockout_after, 100, "lockout_after", d.lockout_after);
    let source_limit = count(raw.source_limit, 10_000, "source_limit", d.source_limit);
    Console {
        idle_timeout,
        absolute_timeout: absolute_timeout.max(idle_timeout),
        lockout_after,
        lockout,
        source_limit,
        listen,
        certs,
    }
}

/// `[[incident_templates]]`: names unique, services known, messages short enough to post.
pub(super) fn templates(
    src: &mut Source<'_>,
    raw: Vec<Spanned<RawIncidentTemplate>>,
    ids: &BTreeSet<String>,
) -> Vec<IncidentTemplate> {
    let mut out: Vec<IncidentTemplate> = Vec::new();
    for t in raw {
        let t = t.into_inner();
        let name = t.name.get_ref().trim().to_string();
        if name.is_empty() {
            src.error(t.name.span(), "an incident template needs a name");
        } else if let Err(e) = crate::text::check_name("an incident template's name", &name) {
            src.error(t.name.span(), e.to_string());
        } else if out.iter().any(|o| o.name.eq_ignore_ascii_case(&name)) {
            src.error(
                t.name.span(),
                format!("incident template {name:?} is defined twice"),
            );
        }
        for s in &t.services {
            known_service(src, s, ids, "incident_templates");
        }
        let message = t.message.get_ref().trim().to_string();
        if message.is_empty() {
            src.error(t.message.span(), "an incident template needs a message");
        } else if let Err(e) = crate::text::check_text("an incident template's message", &message) {
            src.error(t.message.span(), e.to_string());
        }
        out.push(IncidentTemplate {
            name,
            services: t.services.into_iter().map(Spanned::into_inner).collect(),
            message,
        });
    }
    out
}
