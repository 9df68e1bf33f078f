-- Calls from the command line and over stdio ("what was done from the CLI this week?"): a page
-- under such a source reads its events newest first and stops after a page, instead of walking
-- the week's HTTP calls. Calls over HTTP, most of a served trail, are left out (queries that
-- filter by other sources say `source <> 'http'`), so the HTTP write path keeps its cost.
-- Kept in step with ../sqlite/0012_audit_source_index.sql.
CREATE INDEX audit_events_source ON audit_events(source, at) WHERE source <> 'http';
