//! The escaper every template uses (pages, feeds, emails): named entities for HTML and XML alike, and no
//! characters that XML 1.0 forbids, so operator text is safe in the page and in the feed.

use std::fmt::{self, Write};

/// Escapes `&`, `<`, `>`, `"` and `'`, and drops control characters that XML 1.0 does not
/// allow (everything below U+0020 but tab, newline and carriage return, and U+FFFE/U+FFFF).
#[derive(Debug, Clone, Copy, Default)]
pub struct Markup;

impl askama::filters::Escaper for Markup {
    fn write_escaped_str<W: Write>(&self, mut dest: W, string: &str) -> fmt::Result {
        let mut last = 0;
        for (i, c) in string.char_indices() {
            let replacement = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                '\t' | '\n' | '\r' => continue,
                c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => "",
                _ => continue,
            };
            dest.write_str(&string[last..i])?;
            dest.write_str(replacement)?;
            last = i + c.len_utf8();
        }
        dest.write_str(&string[last..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use askama::filters::Escaper;

    fn esc(s: &str) -> String {
        let mut out = String::new();
        Markup.write_escaped_str(&mut out, s).unwrap();
        out
    }

    #[test]
    fn escapes_markup_and_drops_forbidden_characters() {
        assert_eq!(
            esc("<script>alert('x' & \"y\")</script>"),
            "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
        assert_eq!(esc("a\u{0}b\u{7}c\td\ne\u{FFFF}"), "abc\td\ne");
        assert_eq!(esc("Crème brûlée — ok"), "Crème brûlée — ok");
        assert_eq!(esc(""), "");
    }
}
