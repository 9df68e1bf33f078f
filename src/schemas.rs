//! The JSON Schemas of every tool's input and output, generated from the Rust types exactly as
//! the server advertises them. `keyward schemas` writes them to `schemas/`; a test fails when
//! the committed files are stale.

use std::path::Path;

use crate::mcp::KeywardServer;

/// `(file name, pretty JSON)` for every tool's input and output schema, in name order.
pub fn generate() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for tool in KeywardServer::all_tools().list_all() {
        let input = serde_json::Value::Object((*tool.input_schema).clone());
        out.push((format!("{}.input.json", tool.name), pretty(&input)));
        if let Some(schema) = &tool.output_schema {
            let output = serde_json::Value::Object((**schema).clone());
            out.push((format!("{}.output.json", tool.name), pretty(&output)));
        }
    }
    out
}

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Files in `dir` that are missing or differ from what the code generates (and stray ones).
pub fn stale(dir: &Path) -> Vec<String> {
    let generated = generate();
    let mut problems: Vec<String> = generated
        .iter()
        .filter(|(name, json)| {
            std::fs::read_to_string(dir.join(name)).ok().as_deref() != Some(json.as_str())
        })
        .map(|(name, _)| name.clone())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !generated.iter().any(|(g, _)| *g == name) {
                problems.push(format!("{name} (no such tool)"));
            }
        }
    }
    problems.sort();
    problems
}

pub fn write(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with(".json") {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    let files = generate();
    for (name, json) in &files {
        std::fs::write(dir.join(name), json)?;
    }
    Ok(files.len())
}
