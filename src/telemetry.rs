//! Logging: `tracing` to stderr only (stdout carries the stdio protocol), filtered by RUST_LOG
//! (default `info`, with the MCP library at `warn`). Log lines name ids and previews, never
//! secrets.
//!
//! rmcp logs every request and response body at DEBUG, and a response can hold a freshly
//! minted key. So whatever RUST_LOG says, rmcp events above INFO are dropped by a hard filter
//! that no directive can lift.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Libraries whose verbose levels carry message bodies.
const BODY_LOGGING_TARGETS: &[&str] = &["rmcp"];

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    let no_bodies = filter_fn(|meta| {
        *meta.level() <= Level::INFO
            || !BODY_LOGGING_TARGETS
                .iter()
                .any(|t| meta.target().starts_with(t))
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(no_bodies)
        .with_filter(filter);
    let _ = tracing_subscriber::registry().with(fmt).try_init();
}
