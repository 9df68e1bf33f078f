//! Free text that callers control (descriptions, arguments, error reasons, client claims),
//! made safe to keep and to put in front of a model: control, bidirectional and other
//! invisible format characters become visible escapes like `<U+202E>`, so nothing in the trail
//! can hide, reorder or disguise what it says.

use std::borrow::Cow;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` changes how text reads without showing itself: controls (Cc), format characters
/// (Cf: bidi overrides and isolates, zero-width joiners and spaces, the BOM…), line or
/// paragraph separators, and the other code points Unicode marks default-ignorable (fillers,
/// variation selectors, the combining grapheme joiner), which render as nothing.
pub fn is_hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    ) || matches!(
        u32::from(c),
        0x034F
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFFA0
            | 0xE0100..=0xE01EF
    )
}

/// `text` with every hidden character written out as `<U+XXXX>`; with `multiline`, newlines
/// and tabs stay as they are.
pub fn neutralize(text: &str, multiline: bool) -> Cow<'_, str> {
    // Printable ASCII hides nothing: the common case, without a category lookup per character.
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Cow::Borrowed(text);
    }
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

/// Every string (and member name) in a JSON value neutralised: for showing records written
/// before free text was neutralised on the way in.
pub fn neutralize_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(neutralize(s, true).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(neutralize_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (neutralize(k, false).into_owned(), neutralize_json(v)))
                .collect(),
        ),
        other => other.clone(),
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
        assert_eq!(
            neutralize("a\u{034F}b\u{3164}c\u{FE0F}", false),
            "a<U+034F>b<U+3164>c<U+FE0F>"
        );
    }
}
