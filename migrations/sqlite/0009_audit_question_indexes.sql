-- Indexes for the audit questions people ask most on a large trail (issue 15's matrix,
-- examples/audit_scale.rs). Each ends in `at`, so a page under one value reads its events
-- newest first and stops after a page, and a window is one index range.
-- Built inside the migration's transaction: on a large trail, writes wait until they are built
-- (README, "PostgreSQL and replicas").
-- Kept in step with ../postgres/0009_audit_question_indexes.sql.

-- A tenant-scoped caller's events, by their exact (sorted, space-joined) tenants text.
-- All-tenant events ('*', most of them in a single-tenant deployment) are never looked up so.
CREATE INDEX audit_events_tenants ON audit_events(tenants, at) WHERE tenants <> '*';

-- One action ("who revoked keys last night?"), however rare.
CREATE INDEX audit_events_action ON audit_events(action, at);

-- One client address (sealed for equality when encryption is on, so equal values still match).
CREATE INDEX audit_events_client_ip ON audit_events(client_ip, at) WHERE client_ip IS NOT NULL;

-- Denials, failures and errors ("which keys keep getting denied?"); successes, most of the
-- trail, are left out (queries that filter by other statuses say `status <> 'success'`). The
-- actor's columns ride along, so counting them by actor reads this index alone.
CREATE INDEX audit_events_status ON audit_events(status, at, actor_kind, actor_id, actor_preview, actor_name)
    WHERE status <> 'success';
