-- PostgreSQL indexes that FerretDB v1.24 can actually use. Local-infrastructure glue, applied by
-- scripts/infra/postgres.sh to the `ferretdb` database on every `up` (idempotent). Real MongoDB and
-- DynamoDB need nothing like it.
--
-- Why: FerretDB's PostgreSQL backend pushes a filter down only for top-level scalar equality, and
-- sends it as jsonb containment, `_jsonb -> 'field' @> '"value"'`. The indexes it creates for
-- MongoDB's `createIndexes` are btree expression indexes, `btree ((_jsonb -> 'field'))`, which
-- cannot serve containment. So without help every query is a sequential scan of the collection,
-- and the write store's cost grows with everything ever stored.
--
-- What: an event trigger gives each FerretDB index a GIN twin on the expression of its leading
-- field, `gin ((_jsonb -> 'field') jsonb_path_ops)`, which serves exactly that containment (a
-- Bitmap Index Scan, independent of the table's size). The leading field only, as MongoDB itself
-- can only use an index for an equality on a prefix. Existing FerretDB tables get their twins
-- when this file runs. `fastupdate = off`: a GIN pending list would be scanned by every query.
--
-- Two database settings go with it:
-- - `plan_cache_mode = force_custom_plan`: FerretDB sends the field name as a parameter
--   (`_jsonb -> $1 @> $2`); a cached generic plan cannot match an expression index and would
--   fall back to a sequential scan after a few executions of the same statement.
-- - The tables' autovacuum runs after a fixed number of changes rather than a fraction of the
--   table: marking commits published leaves dead tuples behind the `published` index entries,
--   which the relay's scan would otherwise wade through until 20 % of the history was dead.

SET client_min_messages = warning;  -- re-applied on every up: "already exists, skipping" is noise

CREATE OR REPLACE FUNCTION ferretdb_gin_twin(index_oid oid) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  definition text := pg_get_indexdef(index_oid);
  tbl regclass;
  field text;
BEGIN
  IF definition !~ ' USING btree \(\(\(_jsonb -> ''' THEN
    RETURN;  -- not a FerretDB index (or already a twin)
  END IF;
  SELECT indrelid::regclass INTO tbl FROM pg_index WHERE indexrelid = index_oid;
  field := substring(definition FROM ' USING btree \(\(\(_jsonb -> ''((?:[^'']|'''')*)''::text\)\)');
  IF tbl IS NULL OR field IS NULL THEN
    RETURN;
  END IF;
  field := replace(field, '''''', '''');
  EXECUTE format(
    'CREATE INDEX IF NOT EXISTS %I ON %s USING gin ((_jsonb -> %L) jsonb_path_ops) WITH (fastupdate = off)',
    left(split_part(tbl::text, '.', 2), 40) || '_' || left(md5(field), 8) || '_gin', tbl, field);
  EXECUTE format(
    'ALTER TABLE %s SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000, '
    'autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000)', tbl);
END
$fn$;

CREATE OR REPLACE FUNCTION ferretdb_gin_twins_on_create_index() RETURNS event_trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  command record;
BEGIN
  FOR command IN SELECT objid FROM pg_event_trigger_ddl_commands() WHERE object_type = 'index' LOOP
    PERFORM ferretdb_gin_twin(command.objid);
  END LOOP;
END
$fn$;

DROP EVENT TRIGGER IF EXISTS ferretdb_gin_twins;
CREATE EVENT TRIGGER ferretdb_gin_twins ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
  EXECUTE FUNCTION ferretdb_gin_twins_on_create_index();

-- Twins for the tables FerretDB created before this file first ran.
DO $$
BEGIN
  PERFORM ferretdb_gin_twin(i.indexrelid)
  FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema');
END
$$;

ALTER DATABASE ferretdb SET plan_cache_mode = force_custom_plan;
