//! Pure rules: permissions and roles, tenants, principals, least-privilege policy, the key
//! format, time expressions and the audit event. No I/O and no async here, so every rule is
//! unit-tested directly.

pub mod at_rest;
pub mod audit;
pub mod audit_leaf;
pub mod bundle;
pub mod catalog;
pub mod checkpoint;
mod closed;
pub mod encoding;
pub mod error;
pub mod ids;
pub mod key;
pub mod limits;
pub mod lockout;
pub mod merkle;
pub mod oauth;
pub mod password;
pub mod permission;
pub mod policy;
pub mod principal;
pub mod role;
pub mod secrets;
pub mod session;
pub mod tenant;
pub mod text;
pub mod timespec;
pub mod username;

pub use error::DomainError;
