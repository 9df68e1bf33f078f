//! The tool catalogue is closed and documented: every routed tool has a declared permission,
//! described inputs, an output schema and annotations, and schemas/ matches the code.

use keyward::domain::catalog::ToolName;
use keyward::mcp::KeywardServer;

#[test]
fn every_routed_tool_is_catalogued() {
    let routed = KeywardServer::all_tools().list_all();
    for tool in &routed {
        assert!(
            ToolName::parse(&tool.name).is_some(),
            "tool {} has no declared permission",
            tool.name
        );
    }
    for t in ToolName::ALL {
        assert!(
            routed.iter().any(|r| r.name == t.wire()),
            "catalogued tool {} is not routed",
            t.wire()
        );
    }
    assert_eq!(routed.len(), ToolName::ALL.len());
}

#[test]
fn every_tool_is_described_for_the_model_that_chooses_it() {
    for tool in KeywardServer::all_tools().list_all() {
        let name = &tool.name;
        assert!(
            tool.description.as_ref().is_some_and(|d| d.len() > 40),
            "{name}: description"
        );
        assert!(tool.output_schema.is_some(), "{name}: output schema");
        let a = tool
            .annotations
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: annotations"));
        assert!(a.read_only_hint.is_some(), "{name}: readOnlyHint");
        assert!(a.idempotent_hint.is_some(), "{name}: idempotentHint");
        if a.read_only_hint == Some(false) {
            assert!(a.destructive_hint.is_some(), "{name}: destructiveHint");
        }
        if let Some(props) = tool
            .input_schema
            .get("properties")
            .and_then(|p| p.as_object())
        {
            for (field, schema) in props {
                assert!(
                    schema.get("description").is_some(),
                    "{name}.{field} has no description"
                );
            }
        }
    }
}

#[test]
fn schemas_directory_matches_the_code() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        keyward::schemas::write(&dir).unwrap();
    }
    let stale = keyward::schemas::stale(&dir);
    assert!(
        stale.is_empty(),
        "schemas/ is stale ({}); run `cargo run -- schemas` or UPDATE_SCHEMAS=1 cargo test",
        stale.join(", ")
    );
}

#[test]
fn example_client_configs_start_the_stdio_server() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for (file, servers) in [
        ("claude_desktop_config.json", "mcpServers"),
        ("cursor_mcp.json", "mcpServers"),
        ("vscode_mcp.json", "servers"),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let server = &v[servers]["keyward"];
        assert_eq!(
            server["args"],
            serde_json::json!(["serve", "--stdio"]),
            "{file}"
        );
        assert!(server["env"]["KEYWARD_API_KEY"].is_string(), "{file}");
    }
    let sh = std::fs::read_to_string(dir.join("claude_code.sh")).unwrap();
    assert!(sh.contains("claude mcp add keyward") && sh.contains("-- keyward serve --stdio"));
}

#[test]
fn example_http_configs_send_the_bearer_header_to_mcp() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let port = keyward::cli::DEFAULT_PORT.to_string();
    for (file, servers) in [
        ("cursor_mcp_http.json", "mcpServers"),
        ("vscode_mcp_http.json", "servers"),
    ] {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        let server = &v[servers]["keyward"];
        let url = server["url"].as_str().unwrap();
        assert!(
            url.ends_with("/mcp") && url.contains(&port),
            "{file}: {url}"
        );
        assert!(
            server["headers"]["Authorization"]
                .as_str()
                .unwrap()
                .starts_with("Bearer "),
            "{file}"
        );
    }
    let desktop: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("claude_desktop_remote_config.json")).unwrap(),
    )
    .unwrap();
    let args = desktop["mcpServers"]["keyward"]["args"].to_string();
    assert!(
        args.contains("/mcp") && args.contains("Authorization: Bearer"),
        "{args}"
    );
    let sh = std::fs::read_to_string(dir.join("claude_code_http.sh")).unwrap();
    assert!(
        sh.contains("--transport http")
            && sh.contains(&format!("{port}/mcp"))
            && sh.contains("Authorization: Bearer")
    );
    for proxy in ["nginx.conf", "Caddyfile"] {
        let text = std::fs::read_to_string(dir.join(proxy)).unwrap();
        assert!(
            text.contains(&port) && text.contains("--public-url"),
            "{proxy}"
        );
    }
    assert!(
        std::fs::read_to_string(dir.join("nginx.conf"))
            .unwrap()
            .contains("X-Forwarded-Proto $scheme")
    );
}
