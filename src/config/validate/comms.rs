//! `[oncall]` and the email and SMS sinks of `[[notify]]`: people, hand-offs, exceptions,
//! SMTP and gateway addresses, recipients.

use chrono::{NaiveDate, NaiveDateTime, Utc};

use super::*;
use crate::oncall::{Exception, Handoff, OnCall, Person};

/// The shortest shift: a rotation that changes hands more often pages nobody for long.
const MIN_LENGTH: Duration = Duration::from_secs(3600);

/// True for an E.164 number: `+`, then 8 to 15 digits.
pub(super) fn e164(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// True for an address lettre can send to (`local@domain`).
pub(super) fn email_address(s: &str) -> bool {
    s.parse::<lettre::Address>().is_ok()
}

/// A time written as RFC 3339 with an offset, or as a local time in `[page] timezone`
/// (`2026-12-24T17:00` or `2026-12-24 17:00`).
fn moment(
    src: &mut Source<'_>,
    s: &Spanned<String>,
    zone: Option<chrono_tz::Tz>,
) -> Option<chrono::DateTime<Utc>> {
    let text = s.get_ref();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(text, f) {
            return Some(crate::oncall::instant(n, zone));
        }
    }
    src.error(
        s.span(),
        format!(
            "invalid time {text:?}: expected RFC 3339 such as \"2026-12-24T17:00:00-05:00\", or a local time in [page] timezone such as \"2026-12-24T17:00\""
        ),
    );
    None
}

/// `[oncall]`, with file:line:col on every problem.
pub(super) fn oncall(
    src: &mut Source<'_>,
    raw: Spanned<RawOnCall>,
    zone: Option<chrono_tz::Tz>,
) -> Option<OnCall> {
    let span = raw.span();
    let raw = raw.into_inner();
    let before = src.errors.len();
    let handoff = match &raw.handoff {
        None => Handoff::parse("Mon 09:00").ok(),
        Some(h) => match Handoff::parse(h.get_ref()) {
            Ok(h) => Some(h),
            Err(e) => {
                src.error(h.span(), e);
                None
            }
        },
    };
    let length = match &raw.length {
        None => Duration::from_secs(7 * 86_400),
        Some(l) => {
            if l.get_ref().0 < MIN_LENGTH {
                src.error(l.span(), "[oncall] length must be at least 1h");
            }
            l.get_ref().0
        }
    };
    let start = match &raw.start {
        None => crate::oncall::DEFAULT_START,
        Some(s) => match NaiveDate::parse_from_str(s.get_ref(), "%Y-%m-%d") {
            Ok(d) => d,
            Err(_) => {
                src.error(
                    s.span(),
                    format!(
                        "invalid start {:?}: expected the date the first person's first shift begins, such as \"2026-11-30\"",
                        s.get_ref()
                    ),
                );
                crate::oncall::DEFAULT_START
            }
        },
    };
    let escalate_after = match &raw.escalate_after {
        None => Duration::from_secs(600),
        Some(e) => {
            if e.get_ref().0 < Duration::from_secs(5) {
                src.error(e.span(), "[oncall] escalate_after must be at least 5s");
            }
            e.get_ref().0
        }
    };
    if raw.people.is_empty() {
        src.error(span, "[oncall] needs `people = [{ name = \"...\", phone = \"+1...\", email = \"...\" }, ...]`");
    }
    let mut people: Vec<Person> = Vec::new();
    for p in raw.people {
        let p = p.into_inner();
        let name = p.name.get_ref().trim().to_string();
        if name.is_empty() {
            src.error(p.name.span(), "an on-call person needs a name");
        } else if people.iter().any(|q| q.name.eq_ignore_ascii_case(&name)) {
            src.error(
                p.name.span(),
                format!("{name:?} is listed twice in [oncall] people"),
            );
        }
        if let Some(ph) = &p.phone
            && !e164(ph.get_ref())
        {
            src.error(
                ph.span(),
                format!(
                    "invalid phone {:?}: expected an E.164 number such as \"+15555550101\"",
                    ph.get_ref()
                ),
            );
        }
        if let Some(e) = &p.email
            && !email_address(e.get_ref())
        {
            src.error(e.span(), format!("invalid email address {:?}", e.get_ref()));
        }
        if p.phone.is_none() && p.email.is_none() {
            src.error(
                p.name.span(),
                format!("{name} has neither `phone` nor `email`: nothing can reach them"),
            );
        }
        people.push(Person {
            name,
            phone: p.phone.map(Spanned::into_inner),
            email: p.email.map(Spanned::into_inner),
        });
    }
    let mut exceptions = Vec::new();
    for e in raw.exceptions {
        let e = e.into_inner();
        let person = people
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(e.name.get_ref().trim()));
        if person.is_none() {
            src.error(
                e.name.span(),
                format!(
                    "exception names {:?}, who is not in [oncall] people ({})",
                    e.name.get_ref(),
                    list(people.iter().map(|p| &p.name))
                ),
            );
        }
        let (from, to) = (moment(src, &e.from, zone), moment(src, &e.to, zone));
        if let (Some(f), Some(t)) = (from, to)
            && t <= f
        {
            src.error(e.to.span(), "an exception's `to` must be after its `from`");
        }
        if let (Some(person), Some(from), Some(to)) = (person, from, to) {
            exceptions.push(Exception { person, from, to });
        }
    }
    if src.errors.len() > before {
        return None;
    }
    Some(OnCall {
        handoff: handoff?,
        length: chrono::Duration::from_std(length).ok()?,
        start,
        escalate_after,
        people,
        exceptions,
    })
}

/// The `[oncall]` table as the sinks see it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rota<'a> {
    /// Not written.
    Absent,
    /// Written, with errors (reported where they are).
    Invalid,
    /// Written and valid.
    Valid(&'a OnCall),
}

/// `to = [...]` of an email (`phone = false`) or SMS (`phone = true`) sink.
pub(super) fn recipients(
    src: &mut Source<'_>,
    span: std::ops::Range<usize>,
    to: Option<&Spanned<Vec<Spanned<String>>>>,
    phone: bool,
    oncall: Rota<'_>,
) -> Vec<Recipient> {
    let what = if phone { "sms" } else { "email" };
    let Some(to) = to else {
        src.error(
            span,
            format!("{what} sink needs `to = [\"oncall\", ...]` (\"oncall\" or addresses)"),
        );
        return Vec::new();
    };
    if to.get_ref().is_empty() {
        src.error(to.span(), format!("{what} sink `to` is empty"));
    }
    let mut out = Vec::new();
    for r in to.get_ref() {
        let s = r.get_ref().trim();
        if s == "oncall" {
            match oncall {
                // Its own errors are reported already.
                Rota::Invalid => {}
                Rota::Absent => src.error(
                    r.span(),
                    "\"oncall\" needs an [oncall] rotation (handoff, length, people)",
                ),
                Rota::Valid(o) => {
                    let field = |p: &Person| {
                        if phone {
                            p.phone.is_some()
                        } else {
                            p.email.is_some()
                        }
                    };
                    for p in o.people.iter().filter(|p| !field(p)) {
                        src.error(
                            r.span(),
                            format!(
                                "{} in [oncall] has no {}: an {what} sink addressed to \"oncall\" cannot reach them",
                                p.name,
                                if phone { "phone" } else { "email" }
                            ),
                        );
                    }
                }
            }
            out.push(Recipient::OnCall);
        } else if phone && !e164(s) {
            src.error(
                r.span(),
                format!("invalid phone {s:?}: expected \"oncall\" or an E.164 number such as \"+15555550101\""),
            );
        } else if !phone && !email_address(s) {
            src.error(
                r.span(),
                format!("invalid email address {s:?}: expected \"oncall\" or an address"),
            );
        } else {
            out.push(Recipient::Address(s.to_string()));
        }
    }
    out
}

/// A secret file named in the config: resolved against the config's folder, and readable now
/// (it is read again at each delivery, so a rotated secret takes effect without a reload).
pub(super) fn secret_file(
    src: &mut Source<'_>,
    s: &Spanned<String>,
    dir: &Path,
) -> Option<PathBuf> {
    let p = resolve(dir, s.get_ref());
    match std::fs::read_to_string(&p) {
        Ok(t) if !t.trim().is_empty() => Some(p),
        Ok(_) => {
            src.error(s.span(), format!("{} is empty", p.display()));
            None
        }
        Err(e) => {
            src.error(s.span(), format!("cannot read {}: {e}", p.display()));
            None
        }
    }
}

/// `type = "email"`.
pub(super) fn email_sink(
    src: &mut Source<'_>,
    span: std::ops::Range<usize>,
    r: &RawNotify,
    dir: &Path,
    oncall: Rota<'_>,
) -> Option<Sink> {
    let smtp = match &r.smtp {
        None => {
            src.error(span.clone(), "email sink needs `smtp = \"smtp://host:port\"` (STARTTLS when offered) or \"smtps://host:port\"");
            None
        }
        Some(u) => match url::Url::parse(u.get_ref()) {
            Ok(url) if matches!(url.scheme(), "smtp" | "smtps") && url.host_str().is_some() => {
                Some(url)
            }
            _ => {
                src.error(
                    u.span(),
                    format!(
                        "invalid smtp {:?}: expected smtp://host:port (STARTTLS when the server offers it) or smtps://host:port (TLS from the start)",
                        u.get_ref()
                    ),
                );
                None
            }
        },
    };
    let from = match &r.from {
        Some(f) if email_address(f.get_ref()) => Some(f.get_ref().clone()),
        Some(f) => {
            src.error(f.span(), format!("invalid from address {:?}", f.get_ref()));
            None
        }
        None => {
            src.error(
                span.clone(),
                "email sink needs `from = \"status@example.test\"`",
            );
            None
        }
    };
    let to = recipients(src, span.clone(), r.to.as_ref(), false, oncall);
    if r.username.is_some() != r.password_file.is_some() {
        src.error(
            span,
            "email sink: `username` and `password_file` go together",
        );
    }
    let password_file = r
        .password_file
        .as_ref()
        .and_then(|p| secret_file(src, p, dir));
    let ca = r.ca.as_ref().and_then(|c| {
        let p = resolve(dir, c.get_ref());
        if p.is_file() {
            Some(p)
        } else {
            src.error(c.span(), format!("CA file {} does not exist", p.display()));
            None
        }
    });
    Some(Sink::Email(Email {
        smtp: smtp?,
        from: from?,
        to,
        username: r.username.as_ref().map(|u| u.get_ref().clone()),
        password_file,
        ca,
    }))
}

/// `type = "sms"`.
pub(super) fn sms_sink(
    src: &mut Source<'_>,
    span: std::ops::Range<usize>,
    r: &RawNotify,
    dir: &Path,
    oncall: Rota<'_>,
) -> Option<Sink> {
    let url = match &r.url {
        None => {
            src.error(span.clone(), "sms sink needs `url` (the gateway's message endpoint, such as Twilio's https://api.twilio.com/2010-04-01/Accounts/AC.../Messages.json)");
            None
        }
        Some(u) => match url::Url::parse(u.get_ref()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            _ => {
                src.error(
                    u.span(),
                    format!(
                        "invalid sms url {:?}: expected an http:// or https:// URL",
                        u.get_ref()
                    ),
                );
                None
            }
        },
    };
    let from = match &r.from {
        Some(f) if e164(f.get_ref()) => Some(f.get_ref().clone()),
        Some(f) => {
            src.error(
                f.span(),
                format!(
                    "invalid from {:?}: expected an E.164 number such as \"+15555550100\"",
                    f.get_ref()
                ),
            );
            None
        }
        None => {
            src.error(span.clone(), "sms sink needs `from = \"+15555550100\"`");
            None
        }
    };
    let to = recipients(src, span, r.to.as_ref(), true, oncall);
    let credentials_file = match &r.credentials_file {
        None => None,
        Some(c) => {
            let p = secret_file(src, c, dir);
            if let Some(p) = &p
                && !std::fs::read_to_string(p).is_ok_and(|t| t.trim().contains(':'))
            {
                src.error(c.span(), format!("{} must hold `user:secret`", p.display()));
            }
            p
        }
    };
    Some(Sink::Sms(Sms {
        url: url?,
        from: from?,
        to,
        credentials_file,
    }))
}

/// `[subscribers]`; `sinks` are the validated `[[notify]]` sinks (a channel needs one).
pub(super) fn subscribers(
    src: &mut Source<'_>,
    raw: Spanned<RawSubscribers>,
    sinks: &[Notify],
) -> Option<Subscribers> {
    let span = raw.span();
    let raw = raw.into_inner();
    let before = src.errors.len();
    let mut channels = Vec::new();
    match &raw.channels {
        None => {
            for (c, has) in [
                (
                    "email",
                    sinks.iter().any(|s| matches!(s.sink, Sink::Email(_))),
                ),
                ("sms", sinks.iter().any(|s| matches!(s.sink, Sink::Sms(_)))),
            ] {
                if has {
                    channels.push(c.to_string());
                }
            }
            if channels.is_empty() {
                src.error(
                    span,
                    "[subscribers] needs an email or sms [[notify]] sink to send through",
                );
            }
        }
        Some(list) => {
            for c in list {
                let ok = match c.get_ref().as_str() {
                    "email" => sinks.iter().any(|s| matches!(s.sink, Sink::Email(_))),
                    "sms" => sinks.iter().any(|s| matches!(s.sink, Sink::Sms(_))),
                    other => {
                        src.error(
                            c.span(),
                            format!("unknown channel {other:?}: expected \"email\" or \"sms\""),
                        );
                        continue;
                    }
                };
                if !ok {
                    src.error(
                        c.span(),
                        format!(
                            "channel {:?} needs a [[notify]] sink of type {:?} to send through",
                            c.get_ref(),
                            c.get_ref()
                        ),
                    );
                } else if !channels.contains(c.get_ref()) {
                    channels.push(c.get_ref().clone());
                }
            }
            if list.is_empty() {
                src.error(span, "[subscribers] channels is empty");
            }
        }
    }
    let min_gap = raw
        .min_gap
        .as_ref()
        .map_or(Duration::from_secs(300), |d| d.get_ref().0);
    let remind_before = match &raw.remind_before {
        None => vec![Duration::from_secs(86_400), Duration::from_secs(3600)],
        Some(list) => list.iter().map(|d| d.get_ref().0).collect(),
    };
    let rate = match &raw.rate {
        None => 200,
        Some(r) if *r.get_ref() == 0 => {
            src.error(
                r.span(),
                "[subscribers] rate must be at least 1 (messages a second)",
            );
            1
        }
        Some(r) => *r.get_ref(),
    };
    if src.errors.len() > before {
        return None;
    }
    Some(Subscribers {
        channels,
        min_gap,
        remind_before,
        automatic: raw.automatic.unwrap_or(true),
        rate,
    })
}
