//! Prometheus metrics: requests, tool calls by tool and outcome, authentication failures,
//! lockouts, and a latency histogram. One registry per `App` (no global recorder), so
//! in-process test servers do not share counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    pub tool: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_latency: HistogramFamily,
    pub tool_calls: Family<ToolLabels, Counter>,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub lockouts: Counter,
    /// Live MCP sessions (set when metrics are read).
    pub mcp_sessions: Gauge,
    /// `initialize` calls refused at the global session cap.
    pub sessions_refused: Counter,
    /// 1 while the audit log's integrity check has failed (at start, or when signing).
    pub audit_integrity_violation: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keyward");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let tool_calls = Family::<ToolLabels, Counter>::default();
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let lockouts = Counter::default();
        let mcp_sessions = Gauge::default();
        let sessions_refused = Counter::default();
        let audit_integrity_violation = Gauge::default();
        registry.register(
            "audit_integrity_violation",
            "1 while the audit log failed its integrity check (see readiness detail)",
            audit_integrity_violation.clone(),
        );
        registry.register(
            "mcp_sessions",
            "Live MCP sessions (streamable HTTP)",
            mcp_sessions.clone(),
        );
        registry.register(
            "mcp_sessions_refused",
            "New MCP sessions refused at the --max-sessions cap",
            sessions_refused.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to the start of the response)",
            http_latency.clone(),
        );
        registry.register(
            "tool_calls",
            "MCP tool calls by tool and outcome",
            tool_calls.clone(),
        );
        registry.register(
            "auth_failures",
            "Refused credentials by reason",
            auth_failures.clone(),
        );
        registry.register(
            "lockouts",
            "Client IPs locked out after repeated failures",
            lockouts.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_latency,
            tool_calls,
            auth_failures,
            lockouts,
            mcp_sessions,
            sessions_refused,
            audit_integrity_violation,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
