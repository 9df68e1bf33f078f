//! Use cases: domain rules plus storage. MCP tools and CLI commands both call these, so no
//! rule is written twice. Every function takes the authenticated caller and checks its
//! permission again (the guard already did: defence in depth). Changes commit together with
//! their audit record, in one transaction.

pub mod app;
pub mod at_rest;
pub mod audit;
pub mod audit_export;
pub mod audit_log;
pub mod auth;
pub mod bootstrap;
pub mod cache;
pub mod call;
pub mod conversation;
pub mod error;
pub mod keys;
pub mod lockout;
pub mod oauth;
pub mod operators;
pub mod password_work;
pub mod roles;
pub mod sessions;
mod views;

pub use call::{Call, CallMeta};
pub use error::{ErrorKind, OpsError};
pub use views::*;
