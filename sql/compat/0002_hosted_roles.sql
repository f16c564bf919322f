-- The roles a hosted Supabase project migrates with, for the local and test clusters. Applied by the
-- cluster's bootstrap superuser after 0001, never to a hosted project; idempotent like 0001.
--
-- Hosted, `postgres` is NOSUPERUSER (Supabase's demote-postgres image migration) and `supabase_admin`
-- is the superuser that privileged extensions such as pgmq are created by. Here the bootstrap
-- superuser is already called `postgres` (initdb), so hosted `postgres` is played by
-- `brigade_migrator`: same attributes, same memberships, and `brigade db migrate` applies every
-- migration as it (brigade.migrate.MIGRATION_ROLE).

-- section roles
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'supabase_admin') then
    create role supabase_admin login superuser createdb createrole replication bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'brigade_migrator') then
    create role brigade_migrator login;
  end if;
end
$$;

alter role brigade_migrator nosuperuser createdb createrole login replication bypassrls inherit;
-- Hosted grants the API roles to postgres (with admin option on PostgreSQL 16+; 15 has no such need,
-- CREATEROLE covers it), which is what lets the SQL editor and migrations `set role` to them.
grant anon, authenticated, service_role to brigade_migrator with admin option;

-- section privileges (demote-postgres: all on the database, auth and extensions)
do $$
begin
  execute format('grant all on database %I to brigade_migrator', current_database());
end
$$;
grant all on schema public to brigade_migrator;
grant all on schema auth, extensions to brigade_migrator;
grant all on all tables in schema auth, extensions to brigade_migrator;
grant all on all sequences in schema auth, extensions to brigade_migrator;
grant all on all routines in schema auth, extensions to brigade_migrator;

-- What hosted does for tables postgres creates in public: the API roles get everything, and each
-- migration revokes what it does not mean to expose.
alter default privileges for role brigade_migrator in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges for role brigade_migrator in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges for role brigade_migrator in schema public grant all on functions to anon, authenticated, service_role;

-- postgres owns supabase_realtime on hosted, so its migrations can add tables to it.
alter publication supabase_realtime owner to brigade_migrator;

-- section adopt objects migrated before migrations ran as brigade_migrator
-- A database migrated by an earlier `brigade db migrate` holds objects owned by the bootstrap
-- superuser. Hand the project's own schemas to the migrating role, as if it had created them, so
-- later migrations (and the seed) run against the same ownership a hosted project has. Nothing to
-- do on a fresh database.
do $$
declare
  r record;
begin
  for r in
    select n.nspname from pg_namespace n
    where n.nspname in ('app', 'supabase_migrations', 'pgmq') and n.nspowner = 'postgres'::regrole
  loop
    execute format('alter schema %I owner to brigade_migrator', r.nspname);
  end loop;
  for r in
    select c.relkind, n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('public', 'app', 'supabase_migrations', 'pgmq') and c.relowner = 'postgres'::regrole
      and (c.relkind in ('r', 'p', 'v', 'm', 'f', 'c')
           or (c.relkind = 'S' and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass
                                               and d.objid = c.oid and d.deptype in ('a', 'i'))))
  loop
    execute format(case r.relkind when 'S' then 'alter sequence %I.%I owner to brigade_migrator'
                                  when 'c' then 'alter type %I.%I owner to brigade_migrator'
                                  else 'alter table %I.%I owner to brigade_migrator' end, r.nspname, r.relname);
  end loop;
  for r in
    select p.oid::regprocedure as fn from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname in ('public', 'app', 'pgmq') and p.proowner = 'postgres'::regrole
  loop
    execute format('alter routine %s owner to brigade_migrator', r.fn);
  end loop;
  for r in
    select t.oid::regtype as typ from pg_type t join pg_namespace n on n.oid = t.typnamespace
    where n.nspname in ('public', 'app', 'pgmq') and t.typowner = 'postgres'::regrole
      and t.typrelid = 0 and t.typcategory <> 'A'
  loop
    execute format('alter type %s owner to brigade_migrator', r.typ);
  end loop;
end
$$;
