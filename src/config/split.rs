//! Large zone files parsed in pieces, so that loading one costs little more memory than the
//! zone itself.
//!
//! The toml crate builds a whole document tree before deserializing it: about 2.4 KB per
//! record of a generated zone (a token list, an event list and a B-tree node per inline
//! table), which made a 100,000-record file peak at 240 MB. A big zone is nearly all
//! `records`, so that array is cut out: the rest of the file is parsed with the array's
//! content blanked (same length, same newlines, so every position stays exact), and the
//! records are parsed a few thousand at a time from verbatim slices of the file, their
//! positions shifted back. Anything the cutter does not understand falls back to parsing
//! the whole file at once, so errors are reported exactly as before.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml_parser::lexer::TokenKind;

use super::diag::Source;
use super::schema::{RawRecord, RawZone};
use super::validate::parse_toml;

/// Files smaller than this are parsed whole: the tree is small, and one parse is faster.
const SPLIT_ABOVE: usize = 1 << 20;
/// Records parsed per piece.
const CHUNK: usize = 2000;
/// What each piece is wrapped in to make a document of it.
const PREFIX: &str = "records = [";

/// One piece of the `records` array, wrapped as a document.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Piece {
    records: Vec<Spanned<RawRecord>>,
}

/// The top-level `records` array of a zone file: where its content is, and each element.
#[derive(Debug, PartialEq)]
struct Records {
    /// Between the brackets.
    inner: Range<usize>,
    /// Each element (an inline table), in order.
    elements: Vec<Range<usize>>,
}

/// Parses a zone file, in pieces when it is large (see the module documentation).
pub(super) fn parse_zone(src: &mut Source<'_>, text: &str) -> Option<RawZone> {
    if text.len() <= SPLIT_ABOVE {
        return parse_toml(src, text);
    }
    let Some(records) = find_records(text) else {
        return parse_toml(src, text);
    };
    let mut rest = text.as_bytes().to_vec();
    for b in &mut rest[records.inner.clone()] {
        if *b != b'\n' && *b != b'\r' {
            *b = b' ';
        }
    }
    // Every byte replaced was part of a character replaced whole: still UTF-8.
    let rest = String::from_utf8(rest).ok()?;
    let mut zone = parse_toml::<RawZone>(src, &rest)?;
    drop(rest);
    let mut all = Vec::with_capacity(records.elements.len());
    let mut ok = true;
    for piece in records.elements.chunks(CHUNK) {
        let (first, last) = (piece[0].start, piece[piece.len() - 1].end);
        let doc = format!("{PREFIX}{}]", &text[first..last]);
        // A position in `doc` is this far from the same byte in `text`.
        let shift = |r: Range<usize>| {
            let at = |i: usize| (i.saturating_sub(PREFIX.len()) + first).min(text.len());
            at(r.start)..at(r.end)
        };
        match toml::from_str::<Piece>(&doc) {
            Ok(p) => all.extend(p.records.into_iter().map(|r| {
                let span = shift(r.span());
                let r = r.into_inner();
                let moved = |s: Spanned<String>| {
                    let span = shift(s.span());
                    Spanned::new(span, s.into_inner())
                };
                Spanned::new(
                    span,
                    RawRecord {
                        name: moved(r.name),
                        rtype: moved(r.rtype),
                        value: moved(r.value),
                        ttl: r.ttl,
                    },
                )
            })),
            Err(e) => {
                ok = false;
                let message = e.message().trim().to_string();
                match e.span() {
                    Some(span) => src.error(shift(span), message),
                    None => src.error_nowhere(message),
                }
            }
        }
    }
    zone.records = all;
    ok.then_some(zone)
}

/// Finds the top-level `records = [ {...}, ... ]` of `text`, or `None` when it is not
/// there in that plain form (before any table header, every element an inline table).
fn find_records(text: &str) -> Option<Records> {
    let mut tokens = toml_parser::Source::new(text)
        .lex()
        .filter(|t| !matches!(t.kind(), TokenKind::Whitespace));
    // At the top level, line by line, until `records =` opens an array.
    let mut line_start = true;
    let open = loop {
        let t = tokens.next()?;
        match t.kind() {
            TokenKind::Newline | TokenKind::Comment => line_start = t.kind() == TokenKind::Newline,
            // A table header: whatever follows belongs to that table.
            TokenKind::LeftSquareBracket if line_start => return None,
            TokenKind::Atom
                if line_start && &text[t.span().start()..t.span().end()] == "records" =>
            {
                if tokens.next()?.kind() != TokenKind::Equals {
                    return None;
                }
                let bracket = tokens.next()?;
                if bracket.kind() != TokenKind::LeftSquareBracket {
                    return None;
                }
                break bracket.span().end();
            }
            TokenKind::Eof => return None,
            // Any other key and its value: skip to the end of the line, or past the last
            // line of a value whose brackets span several.
            _ => {
                line_start = false;
                let mut depth = 0i32;
                for t in tokens.by_ref() {
                    match t.kind() {
                        TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
                        TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => depth -= 1,
                        TokenKind::Newline if depth <= 0 => {
                            line_start = true;
                            break;
                        }
                        TokenKind::Eof => return None,
                        _ => {}
                    }
                }
            }
        }
    };
    let mut elements = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for t in tokens {
        let span = t.span();
        match (t.kind(), depth) {
            (TokenKind::LeftCurlyBracket, 0) => {
                start = span.start();
                depth = 1;
            }
            (TokenKind::LeftCurlyBracket | TokenKind::LeftSquareBracket, d) if d > 0 => depth += 1,
            (TokenKind::RightCurlyBracket | TokenKind::RightSquareBracket, d) if d > 1 => {
                depth -= 1
            }
            (TokenKind::RightCurlyBracket, 1) => {
                elements.push(start..span.end());
                depth = 0;
            }
            (TokenKind::RightSquareBracket, 0) => {
                return (!elements.is_empty()).then_some(Records {
                    inner: open..span.start(),
                    elements,
                });
            }
            (TokenKind::Comma | TokenKind::Newline | TokenKind::Comment, 0) => {}
            (TokenKind::Eof, _) => return None,
            (_, 0) => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_records_array_and_each_element() {
        let text = "origin = \"a.test.\"\n# c\nsoa = { mname = \"ns\", rname = \"h\" }\nrecords = [\n  { name = \"x\", type = \"A\", value = \"1.2.3.4\" }, # one\n  { name = \"}\", type = \"TXT\", value = \"]{\" },\n]\n[[dynamic]]\nname = \"m\"\n";
        let r = find_records(text).unwrap();
        assert_eq!(r.elements.len(), 2);
        assert_eq!(
            &text[r.elements[1].clone()],
            "{ name = \"}\", type = \"TXT\", value = \"]{\" }"
        );
        assert!(text[r.inner.clone()].contains("# one"));
        // Not split: no records, records under a table, an element that is not a table.
        assert_eq!(find_records("origin = \"a.\"\n"), None);
        assert_eq!(find_records("[x]\nrecords = [ {a = 1} ]\n"), None);
        assert_eq!(find_records("records = [ \"a\" ]\n"), None);
        assert_eq!(find_records("records = [ { a = 1 }\n"), None);
    }

    #[test]
    fn a_large_file_is_parsed_in_pieces_with_positions_in_the_file() {
        let mut text = String::from(
            "origin = \"a.test.\"\nsoa = { mname = \"ns\", rname = \"h\" }\nns = [\"ns\"]\nrecords = [\n",
        );
        let n = 3 * CHUNK + 17;
        for i in 0..n {
            text.push_str(&format!(
                "  {{ name = \"h{i}\", type = \"TXT\", value = \"é {i} {}\" }},\n",
                "x".repeat(400)
            ));
        }
        text.push_str("]\nallow_transfer = [\"127.0.0.1\"]\n");
        assert!(text.len() > SPLIT_ABOVE);
        assert_eq!(find_records(&text).unwrap().elements.len(), n);
        let mut src = Source::new(std::path::Path::new("z.toml"), &text);
        let zone = parse_zone(&mut src, &text).unwrap();
        assert!(src.errors.is_empty());
        assert_eq!(zone.records.len(), n);
        assert_eq!(zone.allow_transfer.len(), 1);
        for (i, r) in zone.records.iter().enumerate() {
            let r = r.get_ref();
            assert_eq!(r.name.get_ref(), &format!("h{i}"));
            // Spans point into the file, not into the piece.
            assert_eq!(&text[r.name.span()], format!("\"h{i}\""));
            assert!(text[r.value.span()].starts_with(&format!("\"é {i} ")));
        }
    }

    #[test]
    fn windows_line_ends_and_a_bad_piece_are_handled() {
        let mut text = String::from(
            "origin = \"a.test.\"\r\nsoa = { mname = \"ns\", rname = \"h\" }\r\nns = [\"ns\"]\r\nrecords = [\r\n",
        );
        for i in 0..2 * CHUNK + 1 {
            let value = if i == CHUNK + 5 {
                "\"x\", oops = 1"
            } else {
                "\"y\""
            };
            text.push_str(&format!(
                "  {{ name = \"h{i}\", type = \"TXT\", value = {value}, ttl = {} }},\r\n{}",
                i + 1,
                "# padding\r\n".repeat(40)
            ));
        }
        text.push_str("]\r\n");
        assert!(text.len() > SPLIT_ABOVE);
        assert!(find_records(&text).is_some());
        let mut src = Source::new(std::path::Path::new("z.toml"), &text);
        assert!(parse_zone(&mut src, &text).is_none());
        // The unknown key in the second piece is named at its place in the file.
        assert_eq!(src.errors.len(), 1, "{:?}", src.errors);
        let bad = text.find("oops").unwrap();
        let (line, col) = super::super::diag::line_col(&text, bad);
        assert_eq!((src.errors[0].line, src.errors[0].col), (line, col));
        assert!(
            src.errors[0].message.contains("oops"),
            "{}",
            src.errors[0].message
        );
    }
}
