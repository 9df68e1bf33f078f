//! The house's shape, checked: imports between `src/` files run one way (surfaces → ops →
//! domain and store), and no file imports another that imports it back (directly or through
//! others). Read from the source text: every `crate::`, `super::` and `self::` path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`ops::auth::key`) → source text, outside `#[cfg(test)] mod tests { … }`.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>, root: &Path) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out, root);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let text = match text.find("#[cfg(test)]\nmod tests {") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            out.insert(parts.join("::"), text);
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &mut out, &root);
    out
}

/// Every module path a file names, as the longest known module prefix.
fn imports(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let here: Vec<&str> = if module.is_empty() {
        vec![]
    } else {
        module.split("::").collect()
    };
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .any(|p| rest.starts_with(p));
        if !starts || (i > 0 && ident(bytes[i - 1])) {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let path: Vec<&str> = rest[..end].split("::").filter(|s| !s.is_empty()).collect();
        // `use a::b::{c, d::e}`: each member is a path too.
        let mut paths = vec![path.clone()];
        if rest[end..].starts_with('{')
            && let Some(close) = rest[end..].find('}')
        {
            for member in rest[end + 1..end + close].split(',') {
                let member = member.split(" as ").next().unwrap_or_default().trim();
                if !member.is_empty() && member != "self" {
                    let mut p = path.clone();
                    p.extend(member.split("::"));
                    paths.push(p);
                }
            }
        }
        for p in paths {
            let mut full: Vec<&str> = Vec::new();
            let mut segs = p.as_slice();
            match segs.first() {
                Some(&"crate") => segs = &segs[1..],
                Some(&"super") => {
                    full.extend(&here);
                    while segs.first() == Some(&"super") {
                        full.pop();
                        segs = &segs[1..];
                    }
                }
                _ => {
                    full.extend(&here);
                    segs = &segs[1..];
                }
            }
            full.extend(segs);
            let target = (1..=full.len())
                .rev()
                .map(|n| full[..n].join("::"))
                .find(|m| known.contains(m));
            if let Some(t) = target
                && t != module
                && !module.starts_with(&format!("{t}::"))
            {
                out.insert(t);
            }
        }
        i += end.max(1);
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    mods.iter()
        .map(|(m, text)| (m.clone(), imports(m, text, &known)))
        .collect()
}

/// How high a module sits; imports may only go to the same rank or lower.
fn rank(module: &str) -> Option<u8> {
    Some(match module.split("::").next()? {
        "domain" | "clock" | "config" => 0,
        "store" => 1,
        "ops" | "metrics" => 2,
        "mcp" | "http" | "stdio" | "stdio_lines" | "cli" | "audit_command" | "rekey_command"
        | "telemetry" | "schemas" => 3,
        "" | "main" => 4,
        _ => return None,
    })
}

#[test]
fn no_import_runs_back_up() {
    let mut upward = Vec::new();
    for (from, to) in graph() {
        let from_rank = rank(&from).unwrap_or_else(|| panic!("{from}: no layer assigned"));
        for t in to {
            let to_rank = rank(&t).unwrap_or_else(|| panic!("{t}: no layer assigned"));
            if to_rank > from_rank {
                upward.push(format!("{from} -> {t}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports that run up: {upward:#?}");
    // `config` is a leaf: plain validated data, no dependency on the rest of keyward.
    assert!(graph()["config"].is_empty(), "{:?}", graph()["config"]);
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let g = graph();
    let mut cycles = Vec::new();
    for start in g.keys() {
        // Depth-first from each module: a path back to it is a cycle.
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((m, path)) = stack.pop() {
            for next in &g[&m] {
                if next == start {
                    cycles.push(path.join(" -> ") + " -> " + start);
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import circles: {cycles:#?}");
}

#[test]
fn the_checks_see_imports() {
    let g = graph();
    assert!(
        g["ops::keys"].contains("store::keys"),
        "{:?}",
        g["ops::keys"]
    );
    assert!(
        g["mcp::guard"].contains("ops::call"),
        "{:?}",
        g["mcp::guard"]
    );
    assert!(g["ops::auth::key"].contains("ops::auth::refusal"));
}

/// The README's Layout table and CONTRIBUTING's map name everything at the top of `src/`.
#[test]
fn the_layout_tables_match_the_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let contributing = std::fs::read_to_string(root.join("CONTRIBUTING.md")).unwrap();
    for entry in std::fs::read_dir(root.join("src")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let shown = if entry.path().is_dir() {
            format!("`src/{name}/`")
        } else {
            format!("`src/{name}`")
        };
        assert!(readme.contains(&shown), "README Layout lacks {shown}");
        assert!(
            contributing.contains(&shown),
            "CONTRIBUTING map lacks {shown}"
        );
    }
}
