-- Supabase Queues (pgmq) in the form Supabase documents, before 0002 creates the outbox queues.
--
-- Why 0000: 0002 (landed, so never edited) creates the queues, and on hosted Supabase `postgres` is
-- not a superuser. A bare `create extension pgmq` there runs as supabase_admin, which then owns the
-- schema pgmq it creates, and `pgmq.create` fails with "permission denied for schema pgmq". Creating
-- the schema first, as the migrating role, leaves postgres owning it; the extension (created by
-- supabase_admin, its objects handed to postgres by Supabase's after-create hook) goes into it.
-- 0000 sorts before every landed migration, by text and by number, so a fresh project gets it
-- first; on a project migrated before it existed it changes nothing (README: `--include-all`).
--
-- On plain PostgreSQL pgmq is no extension at all: `brigade db migrate` installs the SQL bundled in
-- the pgmq Python package into the schema this migration created (brigade.migrate).

-- section extensions
create schema if not exists pgmq;

do $$
begin
  -- The catalogs, not to_regclass: a pgmq schema someone else owns may deny us even a lookup.
  if not exists (select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                 where n.nspname = 'pgmq' and c.relname = 'meta')
     and exists (select 1 from pg_catalog.pg_available_extensions where name = 'pgmq') then
    create extension if not exists pgmq with schema pgmq;
  end if;
end
$$;
