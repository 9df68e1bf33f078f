//! Identifiers handed out by keyward: a type prefix and random base62, so an id says what it
//! names and reveals nothing about order or count.

use super::error::DomainError;

fn random(prefix: &str) -> String {
    format!("{prefix}{}", super::encoding::random_base62(16))
}

pub fn new_key_id() -> String {
    random("key_")
}

pub fn new_operator_id() -> String {
    random("op_")
}

/// Validates an id received from a caller before it reaches storage or a message.
pub fn check_id(kind: &str, text: &str) -> Result<String, DomainError> {
    let ok = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(DomainError::Invalid(format!(
            "invalid {kind} id: expected letters, digits and '_' (like key_Ab12Cd34Ef56Gh78)"
        )))
    }
}

/// Key names: 1-64 ASCII letters, digits, '.', '_' and '-', like role names and usernames, so
/// no look-alike letters, invisible or direction-changing characters can make two names look
/// the same; not starting with `kw_`, which reads as a key. Never echoed back: whatever was typed
/// might be a secret.
pub fn check_key_name(text: &str) -> Result<String, DomainError> {
    let text = text.trim();
    let ok = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !text.to_ascii_lowercase().starts_with(super::key::PREFIX);
    if ok && !super::secrets::contains_secret(text) {
        Ok(text.to_owned())
    } else {
        Err(DomainError::Invalid(
            "invalid key name: use 1-64 characters a-z, A-Z, 0-9, '.', '_' or '-', not starting \
             with 'kw_' (e.g. \"ci-deployer\")"
                .into(),
        ))
    }
}

/// Descriptions are free text shown to people and models: bounded, control characters other
/// than newlines and tabs refused, invisible format characters (bidi overrides, zero-width
/// spaces) made visible, and never a secret.
pub fn check_label(
    field: &str,
    text: &str,
    max: usize,
    multiline: bool,
) -> Result<String, DomainError> {
    let text = text.trim();
    if field == "name" && text.is_empty() {
        return Err(DomainError::Invalid("name must not be empty".into()));
    }
    if text.chars().count() > max {
        return Err(DomainError::Invalid(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t')))
    {
        return Err(DomainError::Invalid(format!(
            "{field} contains control characters"
        )));
    }
    // Labels are stored and shown in plain text: a pasted secret must not end up there, in
    // whatever disguise.
    if super::secrets::contains_secret(text) {
        return Err(DomainError::Invalid(format!(
            "{field} appears to contain an API key; never put secrets in names or descriptions"
        )));
    }
    Ok(super::text::neutralize(text, multiline).into_owned())
}
