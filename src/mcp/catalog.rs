//! Checks that the tools this surface routes, and the README, agree with the catalogue
//! declared in `domain::catalog`.

#[cfg(test)]
mod tests {
    use crate::domain::catalog::{Access, Offer, ToolName};
    use crate::domain::permission::Permission;
    use crate::mcp::KeywardServer;

    /// The annotation clients read agrees with the catalogue the guard enforces.
    #[test]
    fn every_catalogued_tool_is_routed_with_its_read_only_hint() {
        let routed = KeywardServer::all_tools().list_all();
        for t in ToolName::ALL {
            let tool = routed.iter().find(|r| r.name == t.wire());
            let hint = tool.and_then(|r| r.annotations.as_ref()?.read_only_hint);
            assert_eq!(hint, Some(t.read_only()), "{}", t.wire());
        }
    }

    /// The README's tool table names every tool with the permission it needs, and its
    /// permission list names every permission.
    #[test]
    fn the_readme_documents_every_tool_and_permission() {
        let readme = include_str!("../../README.md");
        for t in ToolName::ALL {
            let needs = match t.access() {
                Access::Authenticated => "(any caller)".to_owned(),
                Access::Needs(p) => format!("`{p}`"),
            };
            let row = readme
                .lines()
                .find(|l| l.starts_with('|') && l.contains(&format!("`{}`", t.wire())));
            assert!(
                row.is_some_and(|r| r.contains(&needs)),
                "README tool table: {} needs {needs}",
                t.wire()
            );
        }
        for p in Permission::ALL {
            assert!(readme.contains(&format!("`{p}`")), "README: {p}");
        }
    }

    /// The README's resources and prompts table names each with the permission it needs.
    #[test]
    fn the_readme_documents_every_resource_and_prompt() {
        let readme = include_str!("../../README.md");
        for o in Offer::ALL {
            let Access::Needs(p) = o.access() else {
                panic!("{o:?} needs a permission")
            };
            let name = o
                .uri()
                .map_or_else(|| format!("prompt `{}`", o.name()), |u| format!("`{u}`"));
            let row = readme.lines().find(|l| l.starts_with(&format!("| {name}")));
            assert!(
                row.is_some_and(|r| r.contains(&format!("`{p}`"))),
                "README: {name} needs {p}"
            );
        }
    }
}
