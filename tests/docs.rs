//! Documentation links: every relative link in README.md and docs/*.md leads to a file that
//! exists, and every `#fragment` into a Markdown file to one of its headings.

use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, sorted.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let mut more: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("readable docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// The lines outside fenced code blocks (``` or ~~~), with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<(char, usize)> = None;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
        match (fence, marker) {
            (None, Some(c)) if run >= 3 => fence = Some((c, run)),
            (Some((c, n)), Some(m)) if m == c && run >= n && trimmed[run..].trim().is_empty() => {
                fence = None
            }
            (None, _) => lines.push((index + 1, line)),
            _ => {}
        }
    }
    lines
}

/// `line` with its inline code spans (`` `...` ``, ``` ``...`` ```) blanked out.
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        // The closing run of exactly as many backticks, if any.
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let other = chars[j..].iter().take_while(|c| **c == '`').count();
                if other == run {
                    close = Some(j);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                out.push(' ');
                i = j + run;
            }
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// The destination of an inline link whose `](` ends just before `rest`.
fn destination(rest: &str) -> Option<String> {
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        return inner.find('>').map(|end| inner[..end].to_string());
    }
    let mut depth = 0usize;
    let mut end = rest.len();
    for (at, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => {
                end = at;
                break;
            }
            ')' => depth -= 1,
            c if c.is_whitespace() => {
                end = at;
                break;
            }
            _ => {}
        }
    }
    let target = &rest[..end];
    (!target.is_empty()).then(|| target.to_string())
}

/// Every link destination in `text`: inline links `[text](target)` (images too) and
/// reference definitions `[label]: target`, with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in prose_lines(text) {
        let line = without_code_spans(line);
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some(close) = trimmed.find("]:")
            && let Some(target) = trimmed[close + 2..].split_whitespace().next()
        {
            let target = target.trim_start_matches('<').trim_end_matches('>');
            found.push((number, target.to_string()));
        }
        let mut from = 0;
        while let Some(at) = line[from..].find("](") {
            let start = from + at + 2;
            if let Some(target) = destination(&line[start..]) {
                found.push((number, target));
            }
            from = start;
        }
    }
    found
}

/// GitHub's anchor for a heading: lowercase, spaces to '-', punctuation other than '-' and
/// '_' dropped.
fn slug(heading: &str) -> String {
    let mut slug = String::new();
    for c in heading.trim().chars() {
        if c.is_alphanumeric() || c == '-' || c == '_' {
            slug.extend(c.to_lowercase());
        } else if c == ' ' {
            slug.push('-');
        }
    }
    slug
}

/// The anchors of a Markdown file's headings; a repeated slug gets `-1`, `-2`… as on GitHub.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = Vec::new();
    for (_, line) in prose_lines(text) {
        let trimmed = line.trim_start();
        let level = trimmed.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&level) || line.len() - trimmed.len() > 3 {
            continue;
        }
        let rest = &trimmed[level..];
        if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
            continue;
        }
        // An optional closing sequence of '#'s.
        let title = rest.trim().trim_end_matches('#').trim_end();
        let base = slug(title);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.push(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// `%XX` escapes decoded.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `target` leaves the repository's files (a scheme such as https: or mailto:).
fn is_external(target: &str) -> bool {
    let lower = target.to_ascii_lowercase();
    ["http:", "https:", "mailto:", "tel:", "ftp:", "//"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
}

/// `path` with `.` and `..` resolved lexically.
fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// What is wrong with each relative link of `doc`: a missing file, or a fragment that names
/// no heading of the Markdown file it points into.
fn broken_links(doc: &Path) -> Vec<String> {
    let text = fs::read_to_string(doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let shown = doc
        .strip_prefix(root())
        .unwrap_or(doc)
        .display()
        .to_string();
    let folder = doc.parent().expect("a document has a folder");
    let mut broken = Vec::new();
    for (line, target) in links(&text) {
        if is_external(&target) {
            continue;
        }
        let (path, fragment) = match target.split_once('#') {
            Some((path, fragment)) => (path, Some(fragment)),
            None => (target.as_str(), None),
        };
        let path = percent_decoded(path.split('?').next().unwrap_or(""));
        if path.is_empty() && fragment.is_none() {
            continue;
        }
        let file = if path.is_empty() {
            doc.to_path_buf()
        } else if let Some(absolute) = path.strip_prefix('/') {
            // GitHub resolves a leading '/' from the repository root.
            normalized(&root().join(absolute))
        } else {
            normalized(&folder.join(&path))
        };
        if !file.exists() {
            broken.push(format!(
                "{shown}:{line}: {target}: no file {}",
                file.display()
            ));
            continue;
        }
        let Some(fragment) = fragment else { continue };
        if file.extension().is_none_or(|ext| ext != "md") || fragment.is_empty() {
            continue;
        }
        let fragment = percent_decoded(fragment).to_lowercase();
        let heads = anchors(&fs::read_to_string(&file).expect("a linked Markdown file reads"));
        if !heads.contains(&fragment) {
            broken.push(format!(
                "{shown}:{line}: {target}: no heading with anchor #{fragment} in {}",
                file.strip_prefix(root()).unwrap_or(&file).display()
            ));
        }
    }
    broken
}

#[test]
fn every_relative_link_resolves() {
    let docs = documents();
    assert!(docs.len() > 1, "docs/ holds the reference: {docs:?}");
    let mut checked = 0;
    let mut broken = Vec::new();
    for doc in &docs {
        checked += links(&fs::read_to_string(doc).expect("document reads")).len();
        broken.extend(broken_links(doc));
    }
    assert!(
        checked > 0,
        "no links found at all: the link scanner is broken"
    );
    assert!(
        broken.is_empty(),
        "{} broken link(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn readme_links_every_docs_page() {
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md reads");
    let linked: Vec<PathBuf> = links(&readme)
        .into_iter()
        .filter(|(_, target)| !is_external(target))
        .map(|(_, target)| {
            let path = target.split('#').next().unwrap_or("").to_string();
            normalized(&root().join(percent_decoded(&path)))
        })
        .collect();
    let missing: Vec<String> = documents()
        .into_iter()
        .skip(1)
        .filter(|doc| !linked.contains(doc))
        .map(|doc| doc.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "docs pages README.md does not link: {missing:?}"
    );
}

#[test]
fn the_scanner_finds_links_and_anchors() {
    let sample = "# State (`state_dir`)\n\
                  See [a](docs/x.md#y) and [`b`](<c d.md>), ![i](img.png \"t\").\n\
                  `[not](a-link)` and\n\
                  ```\n[in](code)\n# not a heading\n```\n\
                  [ref]: https://example.test/\n\
                  ## Guard\n## Guard\n";
    let found: Vec<String> = links(sample).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        found,
        ["docs/x.md#y", "c d.md", "img.png", "https://example.test/"]
    );
    assert_eq!(anchors(sample), ["state-state_dir", "guard", "guard-1"]);
    assert_eq!(
        slug("DNS behaviour: TCP, TSIG & more"),
        "dns-behaviour-tcp-tsig--more"
    );
}
