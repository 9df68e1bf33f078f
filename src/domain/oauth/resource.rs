//! The `resource` parameter (RFC 8707): a token is bound to this server's MCP endpoint, so a
//! client cannot obtain here a token meant for somebody else's server. Clients spell the URL
//! differently (Claude adds a trailing slash), so both sides are normalised before comparing.

use url::Url;

/// A `resource` that names another server. The canonical URL is public, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the resource parameter must be this server's MCP URL, {canonical}")]
pub struct ResourceError {
    pub canonical: String,
}

/// The resource a token will be bound to: `canonical` when the client names it (in any
/// harmless spelling) or names none; an error when it names anything else.
pub fn resolve(presented: Option<&str>, canonical: &str) -> Result<String, ResourceError> {
    let presented = match presented {
        None | Some("") => return Ok(canonical.to_owned()),
        Some(p) => p,
    };
    match (normalise(presented), normalise(canonical)) {
        (Some(p), Some(c)) if p == c => Ok(canonical.to_owned()),
        _ => Err(ResourceError {
            canonical: canonical.to_owned(),
        }),
    }
}

/// Scheme, host, explicit non-default port and path without one trailing slash. The `url`
/// crate already lowercases scheme and host and drops a default port. RFC 8707 §2 forbids a
/// fragment; a query would name a different resource, so both refuse.
fn normalise(uri: &str) -> Option<(String, String, Option<u16>, String)> {
    if uri.contains('#') {
        return None;
    }
    let url = Url::parse(uri).ok()?;
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let host = url.host_str().filter(|h| !h.is_empty())?.to_owned();
    let path = url.path();
    let path = path.strip_suffix('/').unwrap_or(path).to_owned();
    Some((url.scheme().to_owned(), host, url.port(), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MCP: &str = "https://keys.example.com/mcp";

    #[test]
    fn absent_or_empty_means_this_server() {
        assert_eq!(resolve(None, MCP).as_deref(), Ok(MCP));
        assert_eq!(resolve(Some(""), MCP).as_deref(), Ok(MCP));
    }

    #[test]
    fn harmless_spellings_resolve_to_the_canonical_url() {
        for same in [
            MCP,
            "https://keys.example.com/mcp/", // Claude's form
            "https://KEYS.Example.COM/mcp",
            "HTTPS://keys.example.com/mcp",
            "https://keys.example.com:443/mcp",
        ] {
            assert_eq!(resolve(Some(same), MCP).as_deref(), Ok(MCP), "{same}");
        }
        // The canonical one may itself carry the slash.
        assert_eq!(
            resolve(Some(MCP), "https://keys.example.com/mcp/").as_deref(),
            Ok("https://keys.example.com/mcp/")
        );
        let local = "http://127.0.0.1:8080/mcp";
        assert_eq!(
            resolve(Some("http://127.0.0.1:8080/mcp/"), local).as_deref(),
            Ok(local)
        );
        assert_eq!(
            resolve(Some("http://localhost:80/mcp"), "http://localhost/mcp").as_deref(),
            Ok("http://localhost/mcp")
        );
    }

    #[test]
    fn other_resources_are_refused_naming_the_canonical_url() {
        for other in [
            "https://keys.example.com/other",
            "https://keys.example.com/MCP",
            "https://keys.example.com/mcp//",
            "https://keys.example.com/",
            "https://evil.example.com/mcp",
            "http://keys.example.com/mcp",
            "https://keys.example.com:8443/mcp",
            "https://keys.example.com/mcp?x=1",
            "https://keys.example.com/mcp#",
            "https://u@keys.example.com/mcp",
            "keys.example.com/mcp",
            "not a url",
        ] {
            let err = resolve(Some(other), MCP).unwrap_err();
            assert_eq!(err.canonical, MCP, "{other}");
            assert_eq!(
                err.to_string(),
                "the resource parameter must be this server's MCP URL, https://keys.example.com/mcp"
            );
        }
    }
}
