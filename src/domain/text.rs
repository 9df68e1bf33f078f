//! Free text that callers control (descriptions, arguments, error reasons, client claims),
//! made safe to keep and to put in front of a model: control, bidirectional and other
//! invisible format characters become visible escapes like `<U+202E>`, so nothing in the trail
//! can hide, reorder or disguise what it says.

use std::borrow::Cow;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` changes how text reads without showing itself: controls (Cc), format characters
/// (Cf: bidi overrides and isolates, zero-width joiners and spaces, the BOM…) and line or
/// paragraph separators.
pub fn is_hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// `text` with every hidden character written out as `<U+XXXX>`; with `multiline`, newlines
/// and tabs stay as they are.
pub fn neutralize(text: &str, multiline: bool) -> Cow<'_, str> {
    let keep = |c: char| multiline && (c == '\n' || c == '\t');
    if !text.chars().any(|c| is_hidden(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_hidden(c) && !keep(c) {
            out.push_str(&format!("<U+{:04X}>", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` without hidden characters, to see what it says once they are ignored (a key split by
/// a zero-width space is still a key).
pub fn without_hidden(text: &str) -> Cow<'_, str> {
    if text.chars().any(is_hidden) {
        Cow::Owned(text.chars().filter(|c| !is_hidden(*c)).collect())
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_become_visible() {
        assert_eq!(neutralize("plain text", false), "plain text");
        assert_eq!(
            neutralize("evil\u{202E}txt.exe", false),
            "evil<U+202E>txt.exe"
        );
        assert_eq!(
            neutralize("a\u{200B}b\u{2066}c", false),
            "a<U+200B>b<U+2066>c"
        );
        assert_eq!(
            neutralize("line\nnext\u{7}", false),
            "line<U+000A>next<U+0007>"
        );
        assert_eq!(neutralize("line\nnext\u{7}", true), "line\nnext<U+0007>");
        assert_eq!(
            neutralize("\u{FEFF}bom\u{2028}", false),
            "<U+FEFF>bom<U+2028>"
        );
        assert_eq!(neutralize("ключ 鍵 ✓", false), "ключ 鍵 ✓");
        assert_eq!(without_hidden("kw_\u{200B}abc"), "kw_abc");
    }
}
