//! Least privilege over the wire: each role sees exactly its tools, denied calls change
//! nothing and are audited, and nobody mints or manages beyond their own reach.

use keyward::domain::catalog::{Access, ToolName};
use keyward::domain::role::BuiltinRole;
use serde_json::{Value, json};

use crate::server::{TestServer, Transport};
use crate::support::{all_tools, role_tools, text};

/// Valid-looking arguments for each tool (naming things that do not exist where a tool acts
/// on one). Exhaustive: a new tool does not compile here until the matrix covers it.
fn example_args(tool: ToolName) -> Value {
    match tool {
        ToolName::Whoami
        | ToolName::KeyList
        | ToolName::RoleList
        | ToolName::AuditQuery
        | ToolName::OperatorList => json!({}),
        ToolName::KeyCreate => json!({"name": "matrix", "role": "reader", "tenants": ["*"]}),
        ToolName::KeyGet
        | ToolName::KeyRotate
        | ToolName::KeyDisable
        | ToolName::KeyEnable
        | ToolName::KeyRevoke => json!({"key_id": "key_doesnotexist"}),
        ToolName::RoleGet | ToolName::RoleDelete => json!({"name": "no-such-role"}),
        ToolName::RoleCreate => json!({"name": "matrix-role", "permissions": ["key:read"]}),
        ToolName::RoleUpdate => json!({"name": "no-such-role", "description": "x"}),
        ToolName::AuditGet => json!({"id": i64::MAX}),
        ToolName::AuditSummary => json!({"group_by": ["action"]}),
        ToolName::OperatorCreate => {
            json!({"username": "matrix", "password": "a long enough password",
            "role": "reader", "tenants": ["*"]})
        }
        ToolName::OperatorDisable | ToolName::OperatorEnable => {
            json!({"operator_id": "op_doesnotexist"})
        }
        ToolName::OperatorSetRole => json!({"operator_id": "op_doesnotexist", "role": "reader"}),
        ToolName::OperatorSetPassword => {
            json!({"operator_id": "op_doesnotexist", "new_password": "a long enough password"})
        }
        ToolName::GrantList => json!({}),
        ToolName::GrantRevoke => json!({"grant_id": "gr_doesnotexist"}),
        ToolName::AuditVerify => json!({}),
        ToolName::AuditExport => json!({"since": "1h"}),
    }
}

/// The access matrix, over both transports: each built-in role lists exactly the tools its
/// permissions reach, and every tool × role call is allowed or denied as the catalogue says.
#[tokio::test]
async fn each_role_sees_and_calls_exactly_its_tools_over_both_transports() {
    for transport in Transport::ALL {
        let s = TestServer::start(transport).await;
        let admin = s.admin().await;
        assert_eq!(admin.tool_names().await, all_tools(), "{transport:?}");
        admin.close().await;
        for role in BuiltinRole::ALL {
            let p = s.persona(role.name(), &["*"]).await;
            assert_eq!(
                p.tool_names().await,
                role_tools(role),
                "{transport:?} {role:?}"
            );
            for tool in ToolName::ALL {
                let allowed = match tool.access() {
                    Access::Authenticated => true,
                    Access::Needs(needed) => role.permissions().contains(needed),
                };
                let r = p.call(tool.wire(), example_args(tool)).await;
                let message = text(&r);
                // Setting another operator's password is a reset, which needs operator:write
                // (the example names someone else): only one's own needs no permission.
                let resets_another = tool == ToolName::OperatorSetPassword
                    && !role
                        .permissions()
                        .contains(keyward::domain::permission::Permission::OperatorWrite);
                if allowed && resets_another {
                    assert!(message.contains("requires operator:write"), "{message}");
                } else if allowed {
                    assert!(
                        !message.starts_with("permission denied"),
                        "{transport:?} {role:?} {tool:?}: {message}"
                    );
                } else {
                    let Access::Needs(needed) = tool.access() else {
                        unreachable!("whoami is always allowed")
                    };
                    assert_eq!(r.is_error, Some(true), "{transport:?} {role:?} {tool:?}");
                    assert_eq!(
                        message,
                        format!(
                            "permission denied: this requires {needed}, which role '{}' does not grant",
                            role.name()
                        ),
                        "{transport:?} {role:?} {tool:?}"
                    );
                }
            }
            p.close().await;
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn a_denied_call_names_the_permission_changes_nothing_and_is_audited() {
    let s = TestServer::stdio().await;
    let admin = s.admin().await;
    let reader = s.persona("reader", &["*"]).await;
    let (reader_key, reader_id) = (reader.key.clone(), reader.id.clone());

    // Hidden tools are still guarded when called by name.
    let msg = reader
        .err(
            "key_create",
            json!({"name": "sneaky", "role": "admin", "tenants": ["*"]}),
        )
        .await;
    assert_eq!(
        msg,
        "permission denied: this requires key:create, which role 'reader' does not grant"
    );
    let msg = reader.err("audit_query", json!({})).await;
    assert!(msg.contains("requires audit:read"), "{msg}");

    let keys = admin.ok("key_list", json!({})).await;
    assert_eq!(
        keys["keys"].as_array().unwrap().len(),
        2,
        "nothing was created"
    );

    let denied = admin
        .audit_full(json!({"status": ["denied"], "actor": [reader_id]}))
        .await;
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[1]["action"], "key_create");
    assert_eq!(denied[1]["established"]["role"], "reader");
    assert!(denied[1]["reason"].as_str().unwrap().contains("key:create"));
    // The same actor can be found by its key preview.
    let by_preview = admin
        .audit(json!({"status": ["denied"], "actor": [&reader_key[..11]]}))
        .await;
    assert_eq!(by_preview.len(), 2);
    reader.close().await;
    admin.close().await;
}

#[tokio::test]
async fn key_manager_cannot_mint_admin_or_foreign_tenant_keys() {
    let s = TestServer::stdio().await;
    let admin = s.admin().await;
    let km = s.persona("key_manager", &["acme"]).await;
    let km_id = km.id.clone();

    let msg = km
        .err(
            "key_create",
            json!({"name": "x", "role": "admin", "tenants": ["acme"]}),
        )
        .await;
    assert_eq!(
        msg,
        "cannot create a key with role 'admin': it holds role:write, audit:read, audit:verify, audit:export, operator:read, operator:write, grant:read, grant:revoke which you lack"
    );
    let msg = km
        .err(
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["globex"]}),
        )
        .await;
    assert_eq!(
        msg,
        "cannot create a key with role 'reader': it covers tenant(s) globex outside your scope"
    );
    let msg = km
        .err(
            "key_create",
            json!({"name": "x", "role": "reader", "tenants": ["*"]}),
        )
        .await;
    assert!(msg.contains("tenant(s) * outside your scope"), "{msg}");
    let msg = km
        .err(
            "key_create",
            json!({"name": "x", "role": "auditor", "tenants": ["acme"]}),
        )
        .await;
    assert!(
        msg.contains("audit:read, audit:verify, audit:export which you lack"),
        "{msg}"
    );

    // Within reach it works.
    let (_, reader_id) = km.mint("ok", "reader", &["acme"]).await;

    // Managing a key beyond reach is refused too: rotating the admin key would hand over its secret.
    let admin_id = admin.ok("whoami", json!({})).await["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let msg = km.err("key_rotate", json!({"key_id": admin_id})).await;
    assert!(
        msg.contains("no key with id"),
        "the admin key is outside km's tenants: {msg}"
    );
    let (other_km, other_km_id) = admin.mint("peer", "admin", &["acme"]).await;
    let _ = other_km;
    let msg = km.err("key_revoke", json!({"key_id": other_km_id})).await;
    assert!(msg.starts_with("cannot revoke key"), "{msg}");
    assert!(
        msg.contains("role:write, audit:read, audit:verify, audit:export, operator:read, operator:write, grant:read, grant:revoke which you lack"),
        "{msg}"
    );

    let all = admin.ok("key_list", json!({})).await;
    assert_eq!(
        all["keys"].as_array().unwrap().len(),
        4,
        "only the reader was added"
    );
    let denied = admin
        .audit(json!({"actor": [km_id], "status": ["denied"]}))
        .await;
    assert_eq!(denied.len(), 5);
    let created = admin
        .audit(json!({"actor": [km_id], "action": ["key_create"], "status": ["success"]}))
        .await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["target"], format!("key:{reader_id}"));
    km.close().await;
    admin.close().await;
}

#[tokio::test]
async fn tenants_bound_what_a_caller_sees() {
    let s = TestServer::stdio().await;
    let admin = s.admin().await;
    let (acme_admin, _) = admin.mint("acme-admin", "admin", &["acme"]).await;
    let (_, globex_id) = admin.mint("globex-bot", "reader", &["globex"]).await;
    let (_, both_id) = admin.mint("both", "reader", &["acme", "globex"]).await;
    let (_, acme_id) = admin.mint("acme-bot", "reader", &["acme"]).await;

    let acme = s.client(&acme_admin).await;
    let listed = acme.ok("key_list", json!({})).await;
    let ids: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&acme_id.as_str()));
    assert!(
        !ids.contains(&globex_id.as_str()) && !ids.contains(&both_id.as_str()),
        "{ids:?}"
    );
    let msg = acme.err("key_get", json!({"key_id": globex_id})).await;
    assert!(msg.contains("outside your tenants"), "{msg}");
    let msg = acme.err("key_disable", json!({"key_id": both_id})).await;
    assert!(msg.contains("no key with id"), "{msg}");

    // Audit: the acme admin sees events about acme keys, not the all-tenant bootstrap or globex.
    let seen = acme.audit(json!({"limit": 100})).await;
    assert!(!seen.is_empty());
    for e in &seen {
        let full = acme.ok("audit_get", json!({"id": e["id"]})).await;
        let tenants = full["event"]["tenants"].as_array().unwrap();
        assert!(tenants.iter().all(|t| t == "acme"), "leaked: {full:#}");
    }
    let all = admin.audit(json!({"limit": 100})).await;
    assert!(all.len() > seen.len());
    acme.close().await;
    admin.close().await;
}
