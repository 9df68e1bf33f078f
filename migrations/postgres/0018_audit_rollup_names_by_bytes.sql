-- A roll-up row keeps the greatest of its events' actor previews, actor names and target
-- names: what a group shows. From this build PostgreSQL compares them by their bytes, as
-- SQLite does and as a summary counted from the events now does. Rows folded before it, on a
-- database whose collation orders text otherwise (most locales: letters before case, accents
-- after), may hold another of a group's names, and neither merging nor reading them can find
-- the right one again. On such a database the roll-ups are dropped and folded again from the
-- events, as a rekey drops them: until the folder has caught up (33–44 s for a million events),
-- summaries count the events, exactly and more slowly. A database that orders text by
-- its bytes (C, POSIX, C.UTF-8) keeps its roll-ups.
-- Numbered in step with ../sqlite/0018_audit_rollup_names_by_bytes.sql, which changes nothing.
DO $$
BEGIN
    -- By bytes, 'B' (0x42) sorts before 'a' (0x61) and 'f' before 'é' (0xC3 0xA9).
    IF NOT ('B' < 'a' AND 'f' < 'é') THEN
        TRUNCATE audit_buckets_wide, audit_buckets_core, audit_buckets_target,
            audit_buckets_actor;
        UPDATE audit_buckets_progress
            SET folded_seq = 0, compacted_until = 0, generation = generation + 1;
    END IF;
END
$$;
