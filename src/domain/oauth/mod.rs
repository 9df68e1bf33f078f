//! Pure rules of the built-in OAuth 2.1 authorization server: which redirect URIs a client may
//! use, which resource a token is for, scopes, PKCE, the token format, sealed refresh
//! successors, a grant's ceiling and which addresses a metadata fetch may reach. No I/O here.

pub mod address;
pub mod ceiling;
pub mod pkce;
pub mod redirect;
pub mod resource;
pub mod scope;
pub mod seal;
pub mod token;
