//! `[cluster]` and per-service `quorum`: the instance name, etcd endpoints, key prefix,
//! quorum, lease TTL and the credentials to reach etcd.

use super::*;

/// `quorum = "one" | "majority" | "all" | { at_least = N }`.
pub(super) fn quorum(src: &mut Source<'_>, q: &Spanned<RawQuorum>) -> Option<Quorum> {
    match q.get_ref() {
        RawQuorum::Word(w) if w == "one" => Some(Quorum::One),
        RawQuorum::Word(w) if w == "majority" => Some(Quorum::Majority),
        RawQuorum::Word(w) if w == "all" => Some(Quorum::All),
        RawQuorum::AtLeast { at_least } if *at_least >= 1 => Some(Quorum::AtLeast(*at_least)),
        RawQuorum::AtLeast { .. } => {
            src.error(q.span(), "quorum.at_least must be at least 1");
            None
        }
        RawQuorum::Word(w) => {
            src.error(
                q.span(),
                format!(
                    "invalid quorum {w:?}: expected \"one\", \"majority\", \"all\" or {{ at_least = N }}"
                ),
            );
            None
        }
    }
}

/// The shortest `lease_ttl`: etcd's own minimum lease is a few seconds, and a shorter one
/// would drop a live instance on one slow keep-alive.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

/// The longest `lease_ttl`: a dead instance's vote, and a dead leader's duties
/// (notifications, cluster time), wait this long for someone else.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(60);

/// `[cluster]`, with file:line:col on every problem.
pub(super) fn cluster(
    src: &mut Source<'_>,
    raw: Spanned<RawCluster>,
    dir: &Path,
) -> Option<Cluster> {
    let span = raw.span();
    let raw = raw.into_inner();
    let before = src.errors.len();
    if !cfg!(feature = "cluster") {
        src.error(
            span.clone(),
            "this detour was built without the cluster: build it with `--features cluster` (which needs protoc, Debian's protobuf-compiler), or install the .deb",
        );
        return None;
    }
    let instance = match &raw.instance {
        Some(i) if valid_id(i.get_ref()) && i.get_ref().len() <= 63 => i.get_ref().clone(),
        Some(i) => {
            src.error(
                i.span(),
                format!(
                    "invalid instance {:?}: expected a name of letters, digits, '_' or '-' (at most 63), unique in the cluster",
                    i.get_ref()
                ),
            );
            String::new()
        }
        None => {
            src.error(
                span.clone(),
                "[cluster] needs `instance`, this instance's unique name (such as \"office\")",
            );
            String::new()
        }
    };
    let mut etcd = Vec::new();
    match &raw.etcd {
        Some(list) if list.get_ref().is_empty() => {
            src.error(list.span(), "[cluster] etcd lists no endpoint");
        }
        Some(list) => {
            for e in list.get_ref() {
                match url::Url::parse(e.get_ref()) {
                    Ok(u)
                        if matches!(u.scheme(), "http" | "https")
                            && u.host().is_some()
                            && u.path() == "/" =>
                    {
                        etcd.push(e.get_ref().trim_end_matches('/').to_string())
                    }
                    _ => src.error(
                        e.span(),
                        format!(
                            "invalid etcd endpoint {:?}: expected \"http://HOST:PORT\" or \"https://HOST:PORT\"",
                            e.get_ref()
                        ),
                    ),
                }
            }
        }
        None => src.error(
            span.clone(),
            "[cluster] needs `etcd`, the list of etcd endpoints (such as [\"http://10.0.0.5:2379\"])",
        ),
    }
    let prefix = match &raw.prefix {
        None => "/detour/".to_string(),
        Some(p) => {
            let v = p.get_ref();
            if v.len() < 2
                || !v.starts_with('/')
                || !v.ends_with('/')
                || v.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                src.error(
                    p.span(),
                    format!(
                        "invalid prefix {v:?}: expected a key prefix that starts and ends with '/', such as \"/detour/realty/\""
                    ),
                );
            }
            v.clone()
        }
    };
    let quorum = match &raw.quorum {
        None => Quorum::Majority,
        Some(q) => super::cluster::quorum(src, q).unwrap_or(Quorum::Majority),
    };
    let lease_ttl = raw.lease_ttl.map_or(Duration::from_secs(10), |d| {
        if d.get_ref().0 < MIN_LEASE_TTL || d.get_ref().0 > MAX_LEASE_TTL {
            src.error(
                d.span(),
                "lease_ttl must be between 2s and 60s (a dead instance keeps its vote, and a dead leader its duties, this long)",
            );
        }
        d.into_inner().0
    });
    let tls = raw.tls.as_ref().map(|t| {
        let t = t.get_ref();
        if t.cert.is_some() != t.key.is_some() {
            src.error(
                raw.tls.as_ref().map_or(span.clone(), |t| t.span()),
                "[cluster] tls needs both `cert` and `key`, or neither",
            );
        }
        ClusterTls {
            ca: t.ca.as_deref().map(|p| resolve(dir, p)),
            identity: t
                .cert
                .as_deref()
                .zip(t.key.as_deref())
                .map(|(c, k)| (resolve(dir, c), resolve(dir, k))),
        }
    });
    let auth = match (&raw.username, &raw.password_file) {
        (None, None) => None,
        (Some(u), Some(f)) => match std::fs::read_to_string(resolve(dir, f.get_ref())) {
            Ok(p) => Some((
                u.get_ref().clone(),
                p.trim_end_matches(['\r', '\n']).to_string(),
            )),
            Err(e) => {
                src.error(
                    f.span(),
                    format!("cannot read password_file {:?}: {e}", f.get_ref()),
                );
                None
            }
        },
        (Some(u), None) => {
            src.error(u.span(), "[cluster] username needs password_file");
            None
        }
        (None, Some(f)) => {
            src.error(f.span(), "[cluster] password_file needs username");
            None
        }
    };
    (src.errors.len() == before).then_some(Cluster {
        instance,
        etcd,
        prefix,
        quorum,
        lease_ttl,
        tls,
        auth,
    })
}
