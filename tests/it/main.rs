//! keyward's integration suite: every test starts from one `server::TestServer` (the real binary
//! over stdio, the HTTP server, the MCP server in-process on a manual clock where time matters,
//! or `keyward serve` processes) and drives it with rmcp clients as MCP clients do, as
//! `Persona`s (a key and its connection). Tests that need PostgreSQL are
//! `#[ignore = "needs PostgreSQL"]`: `cargo test --test it -- --ignored`.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a failed set-up step should fail the test loudly"
)]
#![expect(
    clippy::disallowed_methods,
    reason = "tests compare server-computed expiries with the real time"
)]
mod access;
mod at_rest;
mod atomic;
mod audit;
mod audit_attacks;
mod audit_export;
mod audit_export_bundle;
mod audit_names;
mod audit_plans;
mod audit_proof;
mod audit_replicas;
mod audit_retention;
mod audit_rollup;
mod audit_writer;
mod auth;
mod bootstrap;
mod bounds;
mod connections;
mod crash;
mod development;
mod fail_closed;
mod http_auth;
mod http_edge;
mod http_limits;
mod http_malformed_arguments;
mod http_malformed_bodies;
mod http_malformed_headers;
mod http_malformed_names;
mod http_malformed_times;
mod http_mcp;
mod http_operators;
mod http_sessions;
mod jsonrpc_errors;
mod keys;
mod layers;
mod lifetimes;
mod lockout;
mod malformed;
mod malformed_inputs;
mod mcp_sessions;
mod oauth_attacks;
mod oauth_browser;
mod oauth_edges;
mod oauth_endings;
mod oauth_flow;
mod oauth_lifecycle;
mod oauth_replicas;
mod oauth_rmcp;
mod oauth_support;
mod oauth_token_attacks;
mod prompts;
mod protocol;
mod races;
mod replicas;
mod resources;
mod roles;
mod schemas;
mod secrets;
mod server;
mod sign_in;
mod soak;
mod support;
mod trail_hygiene;
