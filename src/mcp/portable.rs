//! Tool schemas every client can read. schemars writes an optional field as
//! `"type": ["string", "null"]`; clients that map tool schemas onto a single-`type` dialect
//! (Gemini function declarations, for one) reject or mangle that. Optional fields are instead
//! left out of `required` (and, in answers, left out rather than sent as null), so the null is
//! dropped here: the schema is still generated from the types, then made portable once.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::JsonObject;
use serde_json::Value;

/// Rewrites every tool's input and output schema in place.
pub fn make_portable<S>(router: &mut ToolRouter<S>) {
    for route in router.map.values_mut() {
        let tool = &mut route.attr;
        tool.input_schema = Arc::new(portable(&tool.input_schema));
        if let Some(output) = &tool.output_schema {
            tool.output_schema = Some(Arc::new(portable(output)));
        }
    }
}

fn portable(schema: &JsonObject) -> JsonObject {
    let mut v = Value::Object(schema.clone());
    drop_null(&mut v);
    match v {
        Value::Object(map) => map,
        _ => schema.clone(),
    }
}

/// `"type": [T, "null"]` becomes `"type": T`, and `"default": null` (which `T` no longer
/// admits) goes, everywhere in the schema.
fn drop_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("default").is_some_and(Value::is_null) {
                map.remove("default");
            }
            // An optional struct: `anyOf: [{"$ref": …}, {"type": "null"}]` becomes the ref.
            if let Some(Value::Array(alts)) = map.get_mut("anyOf") {
                alts.retain(|a| a.get("type").is_none_or(|t| t != "null"));
                if alts.len() == 1
                    && let Some(Value::Object(only)) = alts.pop()
                {
                    map.remove("anyOf");
                    for (k, v) in only {
                        map.entry(k).or_insert(v);
                    }
                }
            }
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            map.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

/// Where a schema is not portable: a `type` that is not one string, a null type or default, or
/// a `format` validators do not know (schemars' `uint64` for Rust's unsigned integers, which
/// the MCP Inspector warns about on every call).
pub fn problems(schema: &Value, path: &str, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(t) = map.get("type")
                && (!t.is_string() || t == "null")
            {
                out.push(format!("{path}/type: {t}"));
            }
            if map.get("default").is_some_and(Value::is_null) {
                out.push(format!("{path}/default: null"));
            }
            if let Some(f) = map.get("format").and_then(Value::as_str)
                && f.starts_with("uint")
            {
                out.push(format!("{path}/format: {f}"));
            }
            for (k, v) in map {
                problems(v, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                problems(v, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nullable_type_becomes_one_type() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": ["string", "null"], "default": null},
            "b": {"type": "array", "items": {"type": ["integer", "null"]}}
        }});
        let Value::Object(map) = schema else { panic!() };
        let out = Value::Object(portable(&map));
        assert_eq!(out["properties"]["a"], json!({"type": "string"}));
        assert_eq!(out["properties"]["b"]["items"]["type"], "integer");
        let mut found = Vec::new();
        problems(&out, "", &mut found);
        assert!(found.is_empty(), "{found:?}");
        problems(&json!({"x": {"type": ["string", "null"]}}), "", &mut found);
        assert_eq!(found, vec!["/x/type: [\"string\",\"null\"]"]);
    }
}

#[cfg(test)]
mod committed {
    use super::*;

    /// Every schema the server advertises, and every committed one in `schemas/`, is portable.
    #[test]
    fn every_tool_schema_is_portable() {
        let mut found = Vec::new();
        for tool in crate::mcp::KeywardServer::all_tools().list_all() {
            let input = Value::Object((*tool.input_schema).clone());
            problems(&input, &format!("{}.input", tool.name), &mut found);
            if let Some(output) = &tool.output_schema {
                let output = Value::Object((**output).clone());
                problems(&output, &format!("{}.output", tool.name), &mut found);
            }
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let mut files = 0;
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let schema: Value = serde_json::from_str(&text).unwrap();
            problems(&schema, &entry.file_name().to_string_lossy(), &mut found);
            files += 1;
        }
        assert!(files > 0);
        assert!(found.is_empty(), "not portable: {found:#?}");
    }
}
