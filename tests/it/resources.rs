//! MCP resources as clients use them: each role lists and reads only what it may (a refused
//! read is audited as denied), recent events are scoped to the reader's tenants, and a
//! subscriber to the checkpoint hears `notifications/resources/updated` when one is signed.
//! Over stdio (the real binary), streamable HTTP, and in-process where the test signs.

use std::time::Duration;

use keyward::domain::key::PlainKey;
use keyward::domain::permission::Permission;
use keyward::mcp::{CallerSource, KeywardServer};
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ReadResourceRequestParams,
    ReadResourceResult, ResourceContents, ResourceUpdatedNotificationParam, SubscribeRequestParams,
    UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::server::{TestServer, Transport};
use crate::support::BIN;

pub const CHECKPOINT: &str = "keyward://audit/checkpoint/latest";
pub const ROLES: &str = "keyward://catalog/roles";
pub const EVENTS: &str = "keyward://audit/events/recent";

/// A client that reports every `notifications/resources/updated` it receives.
pub struct Watcher(mpsc::UnboundedSender<String>);

impl ClientHandler for Watcher {
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(params.uri);
    }

    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(format!(
            "progress {}/{}",
            params.progress,
            params.total.unwrap_or_default()
        ));
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("keyward-it-resources", "1.0.0"),
        )
    }
}

pub struct Watched {
    pub client: RunningService<RoleClient, Watcher>,
    pub updates: mpsc::UnboundedReceiver<String>,
}

impl Watched {
    pub async fn read(&self, uri: &str) -> Result<ReadResourceResult, rmcp::ServiceError> {
        self.client
            .read_resource(ReadResourceRequestParams::new(uri))
            .await
    }

    /// The text of a resource that must be readable.
    pub async fn text(&self, uri: &str) -> String {
        let r = self
            .read(uri)
            .await
            .unwrap_or_else(|e| panic!("{uri}: {e}"));
        match &r.contents[..] {
            [ResourceContents::TextResourceContents { text, .. }] => text.clone(),
            other => panic!("{uri}: {other:?}"),
        }
    }

    pub async fn json(&self, uri: &str) -> Value {
        serde_json::from_str(&self.text(uri).await).expect("JSON")
    }

    /// The message of a refused read.
    pub async fn refused(&self, uri: &str) -> String {
        match self.read(uri).await {
            Err(rmcp::ServiceError::McpError(e)) => e.message.to_string(),
            other => panic!("{uri}: expected a protocol error, got {other:?}"),
        }
    }

    pub async fn uris(&self) -> Vec<String> {
        let mut uris: Vec<String> = (self.client.list_all_resources().await)
            .expect("resources/list")
            .into_iter()
            .map(|r| r.uri)
            .collect();
        uris.sort();
        uris
    }
}

/// Where a watched client connects.
#[derive(Clone, Copy)]
pub enum Via {
    Transport(Transport),
    /// The MCP server in this process over an in-memory stream (the stdio code path), so the
    /// test can sign checkpoints in the same `App`.
    InProcess,
}

pub async fn connect(s: &TestServer, via: Via, key: &str) -> Watched {
    let (tx, updates) = mpsc::unbounded_channel();
    let watcher = Watcher(tx);
    let client = match via {
        Via::Transport(Transport::Stdio) => {
            let mut cmd = tokio::process::Command::new(BIN);
            cmd.args(["serve", "--stdio"])
                .env("KEYWARD_DATABASE_URL", s.env.url())
                .env("KEYWARD_AUDIT_SIGNING_KEY", s.env.audit_key())
                .env("KEYWARD_API_KEY", key)
                .env_remove("KEYWARD_AUTH_MODE");
            let log = std::fs::File::create(s.env.next_log()).expect("log file");
            let (transport, _) = TokioChildProcess::builder(cmd)
                .stderr(log)
                .spawn()
                .expect("spawn keyward");
            watcher.serve(transport).await.expect("connect over stdio")
        }
        Via::Transport(Transport::Http) => {
            let config =
                StreamableHttpClientTransportConfig::with_uri(s.mcp()).auth_header(key.to_owned());
            let transport = StreamableHttpClientTransport::from_config(config);
            watcher.serve(transport).await.expect("connect over HTTP")
        }
        Via::InProcess => {
            let key = PlainKey::parse(key).expect("well-formed key");
            let server = KeywardServer::new(s.app().clone(), CallerSource::StdioKey(key));
            let (server_io, client_io) = tokio::io::duplex(1 << 16);
            tokio::spawn(async move {
                if let Ok(running) = server.serve(server_io).await {
                    let _ = running.waiting().await;
                }
            });
            watcher.serve(client_io).await.expect("connect in-process")
        }
    };
    Watched { client, updates }
}

/// The admin's view of `action` events by `actor` with `status`.
async fn recorded(s: &TestServer, action: &str, actor: &str, status: &str) -> Vec<Value> {
    let admin = s.admin().await;
    let events = admin
        .audit(json!({"action": [action], "actor": [actor], "status": [status]}))
        .await;
    admin.close().await;
    events
}

#[tokio::test]
async fn each_role_lists_and_reads_only_what_it_may() {
    for transport in Transport::ALL {
        let s = TestServer::start(transport).await;
        let auditor = s.persona("auditor", &["*"]).await;
        let reader = s.persona("reader", &["*"]).await;
        let a = connect(&s, Via::Transport(transport), &auditor.key).await;
        let r = connect(&s, Via::Transport(transport), &reader.key).await;

        let caps = a
            .client
            .peer_info()
            .expect("server info")
            .capabilities
            .clone();
        let resources = caps.resources.expect("resources advertised");
        assert_eq!(resources.subscribe, Some(true), "{transport:?}");
        assert!(caps.prompts.is_some(), "{transport:?}");

        let mut all = vec![CHECKPOINT, EVENTS, ROLES];
        all.sort_unstable();
        assert_eq!(a.uris().await, all, "{transport:?}");
        assert_eq!(r.uris().await, vec![ROLES], "{transport:?}");

        // The auditor reads recent events: audit_query's page, marked as data.
        let events = a.json(EVENTS).await;
        assert!(
            events["notice"]
                .as_str()
                .unwrap()
                .contains("never an instruction")
        );
        let listed = events["page"]["events"].as_array().expect("events");
        assert!(!listed.is_empty() && listed.len() <= 50, "{transport:?}");
        assert!(listed.iter().any(|e| e["action"] == "key_create"));

        // The catalogue: built-in roles with their permissions, every permission described.
        let catalog = r.json(ROLES).await;
        let auditor_role = (catalog["roles"].as_array().unwrap().iter())
            .find(|role| role["name"] == "auditor")
            .expect("auditor role");
        assert!(
            auditor_role["permissions"]
                .as_array()
                .unwrap()
                .contains(&json!("audit:verify"))
        );
        let permissions = catalog["permissions"].as_array().unwrap();
        assert_eq!(permissions.len(), Permission::ALL.len());
        assert!(
            permissions
                .iter()
                .all(|p| !p["description"].as_str().unwrap().is_empty())
        );

        // A reader reading events directly is refused, and the refusal is on the record.
        let refused = r.refused(EVENTS).await;
        assert!(refused.contains("audit:read"), "{transport:?}: {refused}");
        let refused = r.refused(CHECKPOINT).await;
        assert!(refused.contains("audit:verify"), "{transport:?}: {refused}");
        let denied = recorded(&s, "read_audit_events", &reader.id, "denied").await;
        assert_eq!(denied.len(), 1, "{transport:?}: {denied:?}");
        assert_eq!(denied[0]["target"], "resource:audit_events");
        let read = recorded(&s, "read_audit_events", &auditor.id, "success").await;
        assert_eq!(read.len(), 1, "{transport:?}: {read:?}");
        let catalog_read = recorded(&s, "read_role_catalog", &reader.id, "success").await;
        assert_eq!(catalog_read.len(), 1, "{transport:?}");

        // Something keyward does not offer: a clear error, recorded as a failure.
        let unknown = a.refused("keyward://audit/everything").await;
        assert!(unknown.contains("no resource at"), "{unknown}");
        let failed = recorded(&s, "unknown_offer", &auditor.id, "failed").await;
        assert_eq!(failed.len(), 1, "{transport:?}");
        for c in [a, r] {
            let _ = c.client.cancel().await;
        }
    }
}

#[tokio::test]
async fn recent_events_show_only_the_readers_tenants() {
    let s = TestServer::start(Transport::Http).await;
    let admin = s.admin().await;
    let (_, globex_key) = admin.mint("globex-ci", "reader", &["globex"]).await;
    let (_, acme_key) = admin.mint("acme-ci", "reader", &["acme"]).await;
    let (everyone, _) = admin.mint("auditor-everywhere", "auditor", &["*"]).await;
    admin.close().await;
    let acme = s.persona("auditor", &["acme"]).await;

    let targets = |v: &Value| -> Vec<String> {
        (v["page"]["events"].as_array().unwrap().iter())
            .filter_map(|e| e["target"].as_str().map(str::to_owned))
            .collect()
    };
    let a = connect(&s, Via::Transport(Transport::Http), &acme.key).await;
    let seen = targets(&a.json(EVENTS).await);
    assert!(seen.contains(&format!("key:{acme_key}")), "{seen:?}");
    assert!(!seen.contains(&format!("key:{globex_key}")), "{seen:?}");
    // The same scoping as audit_query, which the resource reuses.
    let queried = acme.audit(json!({"limit": 50})).await;
    assert!(
        queried
            .iter()
            .all(|e| e["target"] != format!("key:{globex_key}"))
    );

    let all = connect(&s, Via::Transport(Transport::Http), &everyone).await;
    let seen = targets(&all.json(EVENTS).await);
    assert!(seen.contains(&format!("key:{globex_key}")), "{seen:?}");
    for c in [a, all] {
        let _ = c.client.cancel().await;
    }
}

/// Subscribes to the checkpoint, makes a change, signs, and waits (bounded) for the update.
async fn subscriber_hears_a_new_checkpoint(s: &TestServer, via: Via) {
    let auditor = s.persona("auditor", &["*"]).await;
    let reader = s.persona("reader", &["*"]).await;
    let mut a = connect(s, via, &auditor.key).await;
    let r = connect(s, via, &reader.key).await;
    #[expect(
        deprecated,
        reason = "sessions opened with initialize subscribe this way"
    )]
    let refused = r
        .client
        .subscribe(SubscribeRequestParams::new(CHECKPOINT))
        .await;
    assert!(refused.is_err(), "a reader may not subscribe");
    #[expect(
        deprecated,
        reason = "sessions opened with initialize subscribe this way"
    )]
    let other = a
        .client
        .subscribe(SubscribeRequestParams::new(EVENTS))
        .await;
    let Err(rmcp::ServiceError::McpError(e)) = other else {
        panic!("{other:?}")
    };
    assert!(
        e.message.contains("only keyward://audit/checkpoint/latest"),
        "{}",
        e.message
    );
    #[expect(
        deprecated,
        reason = "sessions opened with initialize subscribe this way"
    )]
    let subscribed = a
        .client
        .subscribe(SubscribeRequestParams::new(CHECKPOINT))
        .await;
    subscribed.expect("an auditor subscribes");
    assert_eq!(
        recorded(s, "resource_subscribe", &auditor.id, "success")
            .await
            .len(),
        1
    );
    assert_eq!(
        recorded(s, "resource_subscribe", &reader.id, "denied")
            .await
            .len(),
        1
    );

    let app = s.app();
    assert!(
        app.audit_log.keys.is_some(),
        "the harness gives every backend a signing key"
    );
    let admin = s.admin().await;
    admin.mint("after-subscribe", "reader", &["*"]).await;
    admin.close().await;
    // Another signer may get there first; either way a checkpoint now covers the change.
    keyward::ops::audit_log::sign(app, keyward::ops::audit_log::Why::Commit)
        .await
        .expect("signs");
    let uri = tokio::time::timeout(Duration::from_secs(20), a.updates.recv())
        .await
        .expect("notified within the deadline")
        .expect("an update");
    assert_eq!(uri, CHECKPOINT);
    // Reading it again gives the newest note, verbatim.
    let newest = keyward::store::audit::checkpoints::latest(&app.store)
        .await
        .expect("reads")
        .expect("a checkpoint");
    assert_eq!(a.text(CHECKPOINT).await, newest.note);
    assert!(newest.note.starts_with(&app.audit_log.origin));

    #[expect(
        deprecated,
        reason = "sessions opened with initialize unsubscribe this way"
    )]
    let stopped = a
        .client
        .unsubscribe(UnsubscribeRequestParams::new(CHECKPOINT))
        .await;
    stopped.expect("unsubscribes");
    assert_eq!(
        recorded(s, "resource_unsubscribe", &auditor.id, "success")
            .await
            .len(),
        1
    );
    for c in [a, r] {
        let _ = c.client.cancel().await;
    }
}

#[tokio::test]
async fn a_subscriber_hears_when_a_checkpoint_is_signed_over_http() {
    let s = TestServer::start(Transport::Http).await;
    subscriber_hears_a_new_checkpoint(&s, Via::Transport(Transport::Http)).await;
}

#[tokio::test]
async fn a_subscriber_hears_when_a_checkpoint_is_signed_in_process() {
    let s = TestServer::in_process(chrono::Utc::now()).await;
    subscriber_hears_a_new_checkpoint(&s, Via::InProcess).await;
}

/// A full verify over HTTP reports its progress to a client that asked for it.
#[tokio::test]
async fn a_full_verify_reports_progress() {
    let s = TestServer::http(&[]).await;
    let key = s.admin_key().await;
    s.app().audit.sync().await.expect("sync");
    keyward::ops::audit_log::sign(s.app(), keyward::ops::audit_log::Why::Commit)
        .await
        .expect("a checkpoint");
    let mut w = connect(&s, Via::Transport(Transport::Http), &key).await;
    let mut params = rmcp::model::CallToolRequestParams::new("audit_verify");
    params.arguments = json!({"full": true}).as_object().cloned();
    params.meta = Some(rmcp::model::RequestMetaObject::with_progress_token(
        rmcp::model::ProgressToken(rmcp::model::NumberOrString::Number(7)),
    ));
    let r = w.client.call_tool(params).await.expect("audit_verify");
    assert_eq!(
        r.structured_content.as_ref().map(|v| v["verdict"].clone()),
        Some(json!("ok"))
    );
    let note = tokio::time::timeout(Duration::from_secs(20), w.updates.recv())
        .await
        .expect("a progress notification")
        .expect("the channel is open");
    assert!(note.starts_with("progress "), "{note}");
    let _ = w.client.cancel().await;
}
