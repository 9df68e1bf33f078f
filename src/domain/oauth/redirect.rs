//! Redirect URIs: which ones a client may register, and when a presented one matches.
//!
//! The authorization code travels to the redirect URI, so a URI that lets anyone else receive
//! it (plain http over a network, a script URL, userinfo tricks, a fragment) is refused.
//! Native apps get the loopback rule of RFC 8252 §7.3 (any port) and private-use schemes only
//! when the operator lists the exact URI.

use url::Url;

/// Longer URIs are refused before parsing: no honest callback needs more.
const MAX_LEN: usize = 2000;
/// Schemes that execute or read locally instead of carrying the code to a client.
const FORBIDDEN_SCHEMES: [&str; 6] = ["javascript", "data", "file", "about", "blob", "vbscript"];
/// The loopback hosts of RFC 8252 §7.3, as the `url` crate spells them.
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "[::1]", "localhost"];

/// Why a redirect URI cannot be registered. Messages name the rule, not the URI.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedirectError {
    #[error("redirect URI is longer than 2000 bytes")]
    TooLong,
    #[error("redirect URI contains spaces or control characters")]
    BadCharacters,
    #[error("redirect URI is not an absolute URI")]
    Unparsable,
    #[error("redirect URI must not contain a fragment ('#')")]
    Fragment,
    #[error("redirect URI must not contain user information ('user@' before the host)")]
    UserInfo,
    #[error("redirect URI scheme '{0}:' is never allowed")]
    ForbiddenScheme(String),
    #[error("an https redirect URI needs a host")]
    MissingHost,
    #[error(
        "http redirect URIs are allowed only for 127.0.0.1, [::1] and localhost; use https for any other host"
    )]
    InsecureHttp,
    #[error(
        "redirect URI scheme '{0}:' is not https; other schemes are allowed only for URIs the server operator has listed"
    )]
    UnlistedScheme(String),
}

/// Whether a client may register `uri`. `private_uris` are the exact private-use-scheme URIs
/// the operator allows (e.g. `cursor://anysphere.cursor-mcp/oauth/callback`).
pub fn check(uri: &str, private_uris: &[String]) -> Result<(), RedirectError> {
    if uri.len() > MAX_LEN {
        return Err(RedirectError::TooLong);
    }
    // The `url` crate silently strips some whitespace; matching is on the exact string, so
    // such a URI would never match what the parser approved.
    if uri
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(RedirectError::BadCharacters);
    }
    // Checked on the raw text: the parser drops an empty fragment (`https://a/#`).
    if uri.contains('#') {
        return Err(RedirectError::Fragment);
    }
    let url = Url::parse(uri).map_err(|_| RedirectError::Unparsable)?;
    let scheme = url.scheme();
    if FORBIDDEN_SCHEMES.contains(&scheme) {
        return Err(RedirectError::ForbiddenScheme(clip(scheme)));
    }
    if has_userinfo(uri, &url) {
        return Err(RedirectError::UserInfo);
    }
    match scheme {
        "https" => match url.host_str() {
            Some(h) if !h.is_empty() => Ok(()),
            _ => Err(RedirectError::MissingHost),
        },
        "http" if url.host_str().is_some_and(is_loopback_host) => Ok(()),
        "http" => Err(RedirectError::InsecureHttp),
        _ if private_uris.iter().any(|p| p == uri) => Ok(()),
        _ => Err(RedirectError::UnlistedScheme(clip(scheme))),
    }
}

/// Whether `presented` is the `registered` redirect URI: the exact bytes, or (RFC 8252 §7.3)
/// the same loopback http URI on another port, since native apps pick a free port per run.
pub fn matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    match (loopback_parts(registered), loopback_parts(presented)) {
        (Some((h1, rest1)), Some((h2, rest2))) => h1.eq_ignore_ascii_case(h2) && rest1 == rest2,
        _ => false,
    }
}

/// What the consent page shows as the destination: the host (and a non-default port), or for
/// a private-use scheme the scheme and host (`cursor://anysphere.cursor-mcp`).
pub fn host(uri: &str) -> Option<String> {
    let url = Url::parse(uri).ok()?;
    let host = url.host_str().filter(|h| !h.is_empty());
    match url.scheme() {
        "http" | "https" => {
            let host = host?;
            Some(match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
        }
        scheme => Some(match host {
            Some(host) => format!("{scheme}://{host}"),
            // Reverse-domain schemes (`com.example.app:/cb`) name the app in the scheme.
            None => format!("{scheme}:"),
        }),
    }
}

/// Whether `uri` is an http or https URI on this machine (127.0.0.1, [::1] or localhost).
pub fn is_loopback(uri: &str) -> bool {
    Url::parse(uri).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(is_loopback_host)
    })
}

fn is_loopback_host(host: &str) -> bool {
    LOOPBACK_HOSTS.iter().any(|h| h.eq_ignore_ascii_case(host))
}

/// The parser drops an empty userinfo (`https://@host/`), so the raw authority is checked too.
fn has_userinfo(raw: &str, url: &Url) -> bool {
    if !url.username().is_empty() || url.password().is_some() {
        return true;
    }
    raw.split_once("://").is_some_and(|(_, after)| {
        after
            .split(['/', '?'])
            .next()
            .is_some_and(|authority| authority.contains('@'))
    })
}

/// A loopback http URI split, on its raw text, into host and everything after the authority,
/// the port dropped: compared on the raw text so no normalisation can make two differing
/// paths equal.
fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    let url = Url::parse(uri).ok()?;
    if url.scheme() != "http" || !url.host_str().is_some_and(is_loopback_host) {
        return None;
    }
    let (scheme, after) = uri.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") {
        return None;
    }
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.contains('@') {
        return None;
    }
    let host = match authority.rfind(':') {
        // A colon inside brackets belongs to the IPv6 address, not to a port.
        Some(at) if !authority[at..].contains(']') => &authority[..at],
        _ => authority,
    };
    is_loopback_host(host).then_some((host, rest))
}

/// Schemes are short; a hostile one is clipped before it reaches a message.
fn clip(scheme: &str) -> String {
    scheme.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURSOR: &str = "cursor://anysphere.cursor-mcp/oauth/callback";

    fn private() -> Vec<String> {
        vec![CURSOR.to_owned()]
    }

    #[test]
    fn accepts_https_loopback_http_and_listed_private_uris() {
        for ok in [
            "https://claude.ai/api/mcp/auth_callback",
            "https://example.com:8443/cb?x=1",
            "http://127.0.0.1/callback",
            "http://127.0.0.1:33418/callback",
            "http://[::1]:8080/cb",
            "http://localhost:6274/oauth/callback",
            "http://localhost",
            CURSOR,
        ] {
            assert_eq!(check(ok, &private()), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_dangerous_and_unlisted_uris() {
        use RedirectError::*;
        let long = format!("https://example.com/{}", "a".repeat(2000));
        let cases: Vec<(&str, RedirectError)> = vec![
            ("javascript:alert(1)", ForbiddenScheme("javascript".into())),
            ("JavaScript:alert(1)", ForbiddenScheme("javascript".into())),
            ("data:text/html,hi", ForbiddenScheme("data".into())),
            ("file:///etc/passwd", ForbiddenScheme("file".into())),
            ("about:blank", ForbiddenScheme("about".into())),
            ("blob:https://a.example/x", ForbiddenScheme("blob".into())),
            ("VBScript:msgbox", ForbiddenScheme("vbscript".into())),
            ("https://example.com/cb#", Fragment),
            ("https://example.com/cb#frag", Fragment),
            ("https://user@example.com/cb", UserInfo),
            ("https://user:pw@example.com/cb", UserInfo),
            ("https://@example.com/cb", UserInfo),
            ("http://user@127.0.0.1/cb", UserInfo),
            ("not a uri", BadCharacters),
            ("/relative/path", Unparsable),
            ("", Unparsable),
            (long.as_str(), TooLong),
            ("https://example.com/cb\n", BadCharacters),
            ("http://example.com/cb", InsecureHttp),
            ("http://127.0.0.1.example.com/cb", InsecureHttp),
            ("http://10.0.0.1/cb", InsecureHttp),
            (
                "cursor://anysphere.cursor-mcp/other",
                UnlistedScheme("cursor".into()),
            ),
            ("myapp://cb", UnlistedScheme("myapp".into())),
        ];
        for (uri, want) in cases {
            assert_eq!(check(uri, &private()), Err(want), "{uri}");
        }
        // Listing does not override the always-refused rules.
        let listed = vec!["javascript:alert(1)".to_owned(), "myapp://cb#x".to_owned()];
        assert!(check("javascript:alert(1)", &listed).is_err());
        assert_eq!(check("myapp://cb#x", &listed), Err(RedirectError::Fragment));
    }

    #[test]
    fn errors_do_not_echo_the_uri() {
        let err = check("http://secret-host.example/cb?token=abc", &[]).unwrap_err();
        assert!(!err.to_string().contains("secret-host"));
        assert!(!err.to_string().contains("abc"));
    }

    #[test]
    fn exact_match_or_loopback_with_any_port() {
        assert!(matches("https://a.example/cb", "https://a.example/cb"));
        assert!(!matches("https://a.example/cb", "https://a.example/cb/"));
        assert!(!matches("https://a.example/cb", "https://A.example/cb"));
        assert!(!matches("https://a.example:1/cb", "https://a.example:2/cb"));
        assert!(matches("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb"));
        assert!(matches("http://127.0.0.1:1/cb", "http://127.0.0.1:2/cb"));
        assert!(matches("http://127.0.0.1:1/cb", "http://127.0.0.1/cb"));
        assert!(matches("http://[::1]/cb?a=1", "http://[::1]:9/cb?a=1"));
        assert!(matches("http://localhost/cb", "http://localhost:3000/cb"));
        // Host, path and query must still agree.
        assert!(!matches("http://127.0.0.1/cb", "http://localhost:3000/cb"));
        assert!(!matches("http://[::1]/cb", "http://127.0.0.1/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:2/cb2"));
        assert!(!matches(
            "http://127.0.0.1/cb?a=1",
            "http://127.0.0.1:2/cb?a=2"
        ));
        assert!(!matches(
            "http://127.0.0.1/a/../cb",
            "http://127.0.0.1:2/cb"
        ));
        // Not loopback, or not http: no port freedom.
        assert!(!matches("https://127.0.0.1/cb", "https://127.0.0.1:2/cb"));
        assert!(!matches("http://example.com/cb", "http://example.com:2/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://u@127.0.0.1:2/cb"));
    }

    #[test]
    fn host_for_display() {
        assert_eq!(
            host("https://claude.ai/api/cb").as_deref(),
            Some("claude.ai")
        );
        assert_eq!(
            host("https://a.example:443/cb").as_deref(),
            Some("a.example")
        );
        assert_eq!(
            host("https://a.example:8443/cb").as_deref(),
            Some("a.example:8443")
        );
        assert_eq!(
            host("http://127.0.0.1:5000/cb").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(host("http://[::1]/cb").as_deref(), Some("[::1]"));
        assert_eq!(
            host(CURSOR).as_deref(),
            Some("cursor://anysphere.cursor-mcp")
        );
        assert_eq!(
            host("com.example.app:/cb").as_deref(),
            Some("com.example.app:")
        );
        assert_eq!(host("not a uri"), None);
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("http://127.0.0.1:8/cb"));
        assert!(is_loopback("http://[::1]/cb"));
        assert!(is_loopback("http://LOCALHOST:3000/cb"));
        assert!(is_loopback("https://localhost/cb"));
        assert!(!is_loopback("http://127.0.0.2/cb"));
        assert!(!is_loopback("http://localhost.example.com/cb"));
        assert!(!is_loopback(CURSOR));
        assert!(!is_loopback("nonsense"));
    }
}
