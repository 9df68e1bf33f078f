//! A minimal MCP client for keyward over stdio, built on rmcp: it starts `keyward serve
//! --stdio` as a child process (the way Claude Desktop or Cursor do), lists the tools this key
//! may use, and calls `whoami`.
//!
//!     KEYWARD_API_KEY=kw_… cargo run --example stdio_client
//!
//! KEYWARD_BIN selects the server binary (default: the one built next to this example).

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin = std::env::var("KEYWARD_BIN").unwrap_or_else(|_| default_bin());
    anyhow::ensure!(
        std::env::var_os("KEYWARD_API_KEY").is_some(),
        "set KEYWARD_API_KEY to a key (create the first with `keyward bootstrap`)"
    );
    let mut command = tokio::process::Command::new(bin);
    command.args(["serve", "--stdio"]);
    // The child inherits KEYWARD_API_KEY and KEYWARD_DATABASE_URL from this process.
    let client = ().serve(TokioChildProcess::new(command)?).await?;

    let tools = client.list_all_tools().await?;
    println!("tools this key may call:");
    for tool in &tools {
        println!(
            "  {:<14} {}",
            tool.name,
            tool.annotations
                .as_ref()
                .and_then(|a| a.title.as_deref())
                .unwrap_or_default()
        );
    }
    let me = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await?;
    println!(
        "whoami: {}",
        serde_json::to_string_pretty(&me.structured_content)?
    );
    client.cancel().await?;
    Ok(())
}

fn default_bin() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/examples/stdio_client → target/<profile>/keyward
    exe.parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("keyward").display().to_string())
        .unwrap_or_else(|| "keyward".to_owned())
}
