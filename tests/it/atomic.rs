//! Every change commits together with its audit record (`Call::commit_with`). Debug builds
//! refuse to answer a write tool's success that bypassed it, so this test, which makes every
//! write tool in the catalogue succeed once, fails for an op that commits by itself.

use keyward::domain::catalog::ToolName;
use serde_json::{Value, json};

use crate::server::TestServer;
use crate::support::{Client, write_tools};

async fn key(admin: &Client, n: usize) -> String {
    admin.mint(&format!("atomic-{n}"), "reader", &["*"]).await.1
}

async fn operator(admin: &Client, n: usize) -> String {
    let v = admin
        .ok(
            "operator_create",
            json!({"username": format!("atomic{n}"), "password": "a long enough password",
                   "role": "reader", "tenants": ["*"]}),
        )
        .await;
    v["operator"]["id"].as_str().unwrap().to_owned()
}

/// A live OAuth grant signed by the admin's key, stored as the consent step stores one.
async fn grant(admin: &Client, url: &str) -> String {
    let who = admin.ok("whoami", json!({})).await;
    let store = keyward::store::Store::open(url).await.unwrap();
    let id = format!("gr_atomic{}", rand_suffix());
    let row = keyward::store::oauth::GrantRow {
        id: id.clone(),
        client_id: "kwc_atomic".into(),
        client_name: None,
        signer_kind: "key".into(),
        signer_id: who["key_id"].as_str().unwrap().into(),
        signer_digest: None,
        role_name: "admin".into(),
        permissions: "key:read".into(),
        tenants: "*".into(),
        resource: "http://127.0.0.1/mcp".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        created_at: 0,
        expires_at: i64::MAX,
        last_used_at: None,
        revoked_at: None,
        revoked_why: None,
    };
    let mut tx = store.begin().await.unwrap();
    keyward::store::oauth::insert_grant(&mut tx, &row)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.close().await;
    id
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

async fn role(admin: &Client, n: usize) -> String {
    let name = format!("atomic-role-{n}");
    let permissions = json!({"name": name, "permissions": ["key:read"]});
    admin.ok("role_create", permissions).await;
    name
}

/// Arguments that make `tool` succeed, after creating what it acts on. Exhaustive: a new
/// write tool does not compile here until it is covered.
async fn succeeding_args(admin: &Client, tool: ToolName, n: usize, url: &str) -> Option<Value> {
    Some(match tool {
        ToolName::Whoami
        | ToolName::KeyList
        | ToolName::KeyGet
        | ToolName::RoleList
        | ToolName::RoleGet
        | ToolName::AuditQuery
        | ToolName::AuditGet
        | ToolName::AuditSummary
        | ToolName::AuditVerify
        | ToolName::AuditExport
        | ToolName::OperatorList
        | ToolName::GrantList => return None,
        ToolName::KeyCreate => {
            json!({"name": format!("atomic-new-{n}"), "role": "reader", "tenants": ["*"]})
        }
        ToolName::KeyRotate | ToolName::KeyDisable | ToolName::KeyRevoke => {
            json!({"key_id": key(admin, n).await})
        }
        ToolName::KeyEnable => {
            let id = key(admin, n).await;
            admin.ok("key_disable", json!({"key_id": id})).await;
            json!({"key_id": id})
        }
        ToolName::RoleCreate => json!({"name": format!("atomic-new-role-{n}"),
                                       "permissions": ["key:read"]}),
        ToolName::RoleUpdate => json!({"name": role(admin, n).await, "description": "changed"}),
        ToolName::RoleDelete => json!({"name": role(admin, n).await}),
        ToolName::OperatorCreate => {
            json!({"username": format!("atomicnew{n}"), "password": "a long enough password",
                   "role": "reader", "tenants": ["*"]})
        }
        ToolName::OperatorDisable => json!({"operator_id": operator(admin, n).await}),
        ToolName::OperatorEnable => {
            let id = operator(admin, n).await;
            admin
                .ok("operator_disable", json!({"operator_id": id}))
                .await;
            json!({"operator_id": id})
        }
        ToolName::OperatorSetRole => {
            json!({"operator_id": operator(admin, n).await, "role": "auditor"})
        }
        ToolName::OperatorSetPassword => {
            json!({"operator_id": operator(admin, n).await,
                   "new_password": "another long enough password"})
        }
        ToolName::GrantRevoke => json!({"grant_id": grant(admin, url).await}),
    })
}

#[tokio::test]
async fn every_write_tool_commits_its_change_with_its_record() {
    let s = TestServer::stdio().await;
    let admin = s.admin().await;
    let writes = write_tools();
    assert!(!writes.is_empty());
    for (n, tool) in writes.into_iter().enumerate() {
        let args = succeeding_args(&admin, tool, n, &s.env.url())
            .await
            .unwrap_or_else(|| panic!("{} is a write tool", tool.wire()));
        // `ok` fails the test on an error result, which is what debug builds answer for a
        // change that bypassed `commit_with`.
        admin.ok(tool.wire(), args).await;
        let events = admin
            .audit(json!({"action": [tool.wire()], "status": ["success"]}))
            .await;
        assert!(!events.is_empty(), "{}: no success record", tool.wire());
    }
}
