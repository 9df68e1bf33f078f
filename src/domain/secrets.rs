//! Finding secrets in text a client sent, before the text is kept anywhere (audit records,
//! error messages, logs): keyward keys, session tokens and OAuth tokens by their prefix, key
//! and OAuth token bodies pasted without their prefix by their checksum, and both again behind invisible characters, inside
//! percent-encoded text and inside base64. A key split into pieces that carry no checksum
//! cannot be recognised in general; the size caps on what the trail keeps bound that case.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use super::oauth::token::{self, TokenKind};
use super::{key, session};

/// Prefixed secrets, and how many characters after the prefix a redaction keeps: a key's
/// preview identifies it without exposing it; session and OAuth tokens show nothing.
const PREFIXED: [(&str, usize); 8] = [
    (key::PREFIX, 8),
    (session::PREFIX, 0),
    (session::SETUP_PREFIX, 0),
    (TokenKind::Access.prefix(), 0),
    (TokenKind::Refresh.prefix(), 0),
    (TokenKind::Code.prefix(), 0),
    (TokenKind::ClientSecret.prefix(), 0),
    (TokenKind::Request.prefix(), 0),
];
/// A prefix followed by this many letters or digits is treated as a secret: a key cut short
/// is still most of a key.
const MIN_TAIL: usize = 8;
/// The shortest base64 that can hold a key body (49 bytes: 66 characters unpadded).
const BASE64_MIN: usize = 64;
/// How much of one string is examined. Callers keep far less than this (the trail clips
/// strings to 512 characters after scrubbing), so nothing examined-away is ever kept.
pub const SCAN_LIMIT: usize = 4096;

/// `text` with every secret found replaced: a key by its preview and `…[redacted]`, anything
/// else by a marker. When a secret is found behind invisible characters or percent-encoding,
/// the decoded text is what is returned (scrubbed).
pub fn scrub(text: &str) -> String {
    let text = clip(text, SCAN_LIMIT);
    // Most of what passes here (request ids, client names, user agents) is short plain ASCII:
    // too short for a bare key body or its encodings, and with no prefix to start one.
    if text.len() < key::KEY_LEN - key::PREFIX.len()
        && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !text.contains("kw")
        && !text.contains('%')
    {
        return text.to_owned();
    }
    let mut t: Cow<'_, str> = Cow::Borrowed(text);
    // What the text says once everything that is not printable ASCII is taken out: a key
    // interleaved with invisible characters (of any category) reads whole again.
    if let Some(skeleton) = ascii_skeleton(&t)
        && has_secret(&skeleton)
    {
        t = Cow::Owned(skeleton);
    }
    if t.contains('%') {
        let decoded = percent_encoding::percent_decode_str(&t)
            .decode_utf8_lossy()
            .into_owned();
        if has_secret(&decoded) {
            t = Cow::Owned(decoded);
        }
    }
    let t = redact_base64(&t);
    scrub_plain(&t)
}

/// `text` without its non-ASCII and non-printable characters, when it has any.
fn ascii_skeleton(text: &str) -> Option<String> {
    let printable = |c: char| c.is_ascii_graphic() || c == ' ';
    (!text.chars().all(printable)).then(|| text.chars().filter(|c| printable(*c)).collect())
}

/// A secret in plain text or in base64.
fn has_secret(text: &str) -> bool {
    has_plain(text) || matches!(redact_base64(text), Cow::Owned(_))
}

/// Whether `text` holds a secret in any form `scrub` recognises.
pub fn contains_secret(text: &str) -> bool {
    scrub(text) != clip(text, SCAN_LIMIT)
}

fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

fn has_plain(text: &str) -> bool {
    scrub_plain(text) != text
}

/// Prefixed secrets, then bare key bodies.
fn scrub_plain(text: &str) -> String {
    let out = prefixed(text);
    bare_keys(&out).unwrap_or(out)
}

fn alnum_run(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_alphanumeric).count()
}

fn prefixed(text: &str) -> String {
    let next = |s: &str| {
        PREFIXED
            .iter()
            .filter_map(|(p, keep)| s.find(p).map(|at| (at, *p, *keep)))
            .min_by_key(|(at, _, _)| *at)
    };
    if next(text).is_none() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((pos, prefix, keep)) = next(rest) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos + prefix.len()..];
        let run = alnum_run(tail);
        // Another secret may start inside this run ("kw_kw_…", "kw_abckw_…"): stop before it.
        let run = next(tail)
            .map(|(at, _, _)| at)
            .filter(|&at| at < run)
            .unwrap_or(run);
        out.push_str(prefix);
        if run >= MIN_TAIL {
            out.push_str(&tail[..keep.min(run)]);
            out.push_str("…[redacted]");
        } else {
            out.push_str(&tail[..run]);
        }
        rest = &tail[run..];
    }
    out.push_str(rest);
    out
}

/// Key and OAuth token bodies pasted without their prefix: 49 letters and digits whose last
/// six are the checksum of a prefix and the rest. `None` when there are none.
fn bare_keys(text: &str) -> Option<String> {
    // The two formats share the body length, so one scan finds both.
    const _: () = assert!(key::KEY_LEN - key::PREFIX.len() == token::TOKEN_LEN - 5);
    let body = key::KEY_LEN - key::PREFIX.len();
    let bytes = text.as_bytes();
    let mut found: Vec<(usize, usize, &str)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let run = alnum_run(&text[i..]);
        if run == 0 {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let mut at = i;
        while at + body <= i + run {
            let window = &text[at..at + body];
            let marker = if key::is_body(window) {
                Some("[redacted key]")
            } else {
                token::bare_kind(window).map(|_| "[redacted token]")
            };
            if let Some(marker) = marker {
                found.push((at, at + body, marker));
                at += body;
            } else {
                at += 1;
            }
        }
        i += run;
    }
    if found.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (from, to, marker) in found {
        out.push_str(&text[last..from]);
        out.push_str(marker);
        last = to;
    }
    out.push_str(&text[last..]);
    Some(out)
}

/// Base64 runs long enough to hold a key, decoded: one that holds a secret is replaced.
fn redact_base64(text: &str) -> Cow<'_, str> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !is_b64(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_b64(bytes[i]) {
            i += 1;
        }
        let mut end = i;
        while end < bytes.len() && bytes[end] == b'=' {
            end += 1;
        }
        if i - start >= BASE64_MIN && decodes_to_secret(&text[start..i]) {
            let o = out.get_or_insert_with(String::new);
            o.push_str(&text[last..start]);
            o.push_str("[redacted base64]");
            last = end;
        }
        i = end;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[last..]);
            Cow::Owned(o)
        }
    }
}

fn decodes_to_secret(run: &str) -> bool {
    let run = if run.len() % 4 == 1 {
        &run[..run.len() - 1]
    } else {
        run
    };
    let engine = if run.contains(['-', '_']) {
        &URL_SAFE_NO_PAD
    } else {
        &STANDARD_NO_PAD
    };
    engine
        .decode(run)
        .is_ok_and(|bytes| has_plain(&String::from_utf8_lossy(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::key::PlainKey;
    use crate::domain::oauth::token::OAuthSecret;
    use crate::domain::session::SessionToken;

    fn leaks(k: &PlainKey, out: &str) -> bool {
        out.contains(&k.expose()[3..20]) || out.contains(&k.expose()[30..])
    }

    #[test]
    fn keys_are_found_in_every_disguise() {
        let k = PlainKey::generate();
        let key = k.expose();
        let body = &key[3..];
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("token={key}"));
        let b64url = URL_SAFE_NO_PAD.encode(format!("{{\"k\":\"{key}\"}}"));
        let pct: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
        for text in [
            format!("use {key} please"),
            format!("kw_{key}"),
            format!("kw_kw_x {key} kw_"),
            format!("'kw_ab{key}'"),
            format!("bare {body} body"),
            format!("xx{body}yy"),
            format!("kw%5F{}", &key[3..]),
            pct.clone(),
            format!("kw_\u{200B}{body}"),
            format!("k\u{200D}w_{body}"),
            format!("data:{b64}"),
            format!("see {b64url}"),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(body),
            format!(
                "q={}",
                b64.replace('+', "%2B")
                    .replace('/', "%2F")
                    .replace('=', "%3D")
            ),
            body.chars().flat_map(|c| [c, '\u{034F}']).collect(),
            body.chars().flat_map(|c| [c, '\u{FE0F}']).collect(),
            format!("kw_\u{3164}{body}"),
        ] {
            let out = scrub(&text);
            assert!(!leaks(&k, &out), "{text:?} -> {out:?}");
            assert!(contains_secret(&text), "{text:?}");
        }
        assert!(scrub(&format!("use {key}")).contains(&k.preview()));
    }

    #[test]
    fn a_key_behind_a_false_start_is_found() {
        let k = PlainKey::generate();
        for text in [
            format!("kw_{}", k.expose()),
            format!("kw_kw_x {} kw_", k.expose()),
            format!("'kw_ab{}'", k.expose()),
            format!("kw_abcdefghijk{}", k.expose()),
            format!("invalid value: string \"{}\", expected id", k.expose()),
        ] {
            let clean = scrub(&text);
            assert!(!clean.contains(k.expose()), "{clean}");
            assert!(clean.contains(&k.preview()), "{clean}");
        }
        assert_eq!(scrub("kw_ kw_ab kw_"), "kw_ kw_ab kw_");
        assert!(!contains_secret("kw_short and kw_"));
    }

    #[test]
    fn session_tokens_are_found_and_show_nothing() {
        let t = SessionToken::generate();
        let out = scrub(&format!("cookie {}", t.expose()));
        assert_eq!(out, "cookie kws_…[redacted]");
        let setup = SessionToken::setup();
        assert_eq!(scrub(&format!("token {setup}")), "token kwsu_…[redacted]");
    }

    #[test]
    fn oauth_tokens_are_found_in_every_disguise_and_show_nothing() {
        for kind in TokenKind::ALL {
            let t = OAuthSecret::generate(kind);
            let text = t.expose();
            let prefix = kind.prefix();
            let body = &text[prefix.len()..];
            assert_eq!(
                scrub(&format!("Bearer {text}, then")),
                format!("Bearer {prefix}…[redacted], then")
            );
            let pct: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
            for disguised in [
                format!("refresh_token={text}&x=1"),
                format!("{prefix}{text}"),
                format!("bare {body} body"),
                format!("{}\u{200B}{}", &prefix[..2], &text[2..]),
                pct,
                base64::engine::general_purpose::STANDARD.encode(format!("t={text}")),
                URL_SAFE_NO_PAD.encode(format!("{{\"t\":\"{text}\"}}")),
            ] {
                let out = scrub(&disguised);
                assert!(!out.contains(&body[..20]), "{disguised:?} -> {out:?}");
                assert!(!out.contains(&body[30..]), "{disguised:?} -> {out:?}");
                assert!(contains_secret(&disguised), "{disguised:?}");
            }
            assert_eq!(scrub(&format!("x {body} y")), "x [redacted token] y");
        }
        // Short tails after a prefix are not secrets.
        assert_eq!(scrub("kwat_ kwrt_abc kwcs_"), "kwat_ kwrt_abc kwcs_");
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "nothing here",
            "kw_ab",
            "a fairly long line of words with no secret in it at all, none",
            "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4Y5z6aAbBcCdDeEfFgG",
            "100%",
            "%E2%9C%93",
        ] {
            assert_eq!(scrub(text), text);
            assert!(!contains_secret(text), "{text}");
        }
    }
}
