-- An audit filter that names a key ("what did ci-deploy do?") looks up the keys so named, every
-- key ever so named (names are unique only among live keys), before it reads the trail: by
-- this index, however many keys there are, rather than reading every key.
-- Kept in step with ../postgres/0013_api_keys_name.sql.
CREATE INDEX api_keys_name ON api_keys(name);
