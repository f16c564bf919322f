-- pgmq_installed --
-- Whether pgmq is present in any form (as an extension or as the SQL-only install).
select to_regclass('pgmq.meta') is not null as installed,
       to_regnamespace('pgmq') is not null as schema_exists,
       exists (select 1 from pg_available_extensions where name = 'pgmq') as available

-- pgmq_after_create --
-- What Supabase's pgmq after-create hook does: every pgmq object supabase_admin created goes to the
-- migrating role (hosted: postgres); the schema keeps the owner it had.
do $$
declare
  r record;
begin
  for r in
    select c.relkind, c.relname from pg_class c
    where c.relnamespace = 'pgmq'::regnamespace and c.relowner = 'supabase_admin'::regrole
      and (c.relkind in ('r', 'p', 'v', 'm', 'f', 'c')
           or (c.relkind = 'S' and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass
                                               and d.objid = c.oid and d.deptype in ('a', 'i'))))
  loop
    execute format(case r.relkind when 'S' then 'alter sequence pgmq.%I owner to brigade_migrator'
                                  when 'c' then 'alter type pgmq.%I owner to brigade_migrator'
                                  else 'alter table pgmq.%I owner to brigade_migrator' end, r.relname);
  end loop;
  for r in
    select p.oid::regprocedure as fn from pg_proc p
    where p.pronamespace = 'pgmq'::regnamespace and p.proowner = 'supabase_admin'::regrole
  loop
    execute format('alter routine %s owner to brigade_migrator', r.fn);
  end loop;
  for r in
    select t.oid::regtype as typ from pg_type t
    where t.typnamespace = 'pgmq'::regnamespace and t.typowner = 'supabase_admin'::regrole
      and t.typrelid = 0 and t.typcategory <> 'A'
  loop
    execute format('alter type %s owner to brigade_migrator', r.typ);
  end loop;
end
$$
