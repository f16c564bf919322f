-- Time zone checks without reading the zone database: pg_timezone_names lists every file of the tz
-- database on each call (about 60 ms), and app.is_time_zone runs in the CHECK of every business and venue
-- row written. The names are kept in a table once; a name missing there (a zone newer than this
-- migration, or a typo) still gets the full look-up, so nothing valid is refused.

-- section tables

/** The IANA zone names PostgreSQL knows, copied from pg_timezone_names (refreshable with
    app.refresh_time_zone_names()). Private: only app.is_time_zone reads it. */
create table app.time_zone_names (
  name text not null,
  constraint time_zone_names_pkey primary key (name)
);
revoke all on table app.time_zone_names from public;
grant select on table app.time_zone_names to anon, authenticated, service_role;  -- the venue CHECK runs as the caller

-- section private helpers

create function app.refresh_time_zone_names() returns integer
language sql volatile security definer
set search_path = ''
as $$
  with added as (
    insert into app.time_zone_names (name) select name from pg_catalog.pg_timezone_names
    on conflict do nothing returning 1)
  select count(*)::integer from added
$$;
revoke all on function app.refresh_time_zone_names() from public;
grant execute on function app.refresh_time_zone_names() to service_role;

select app.refresh_time_zone_names();

create or replace function app.is_time_zone(p_name text) returns boolean
language sql stable
set search_path = ''
as $$
  select exists (select 1 from app.time_zone_names where name = p_name)
      or exists (select 1 from pg_catalog.pg_timezone_names where name = p_name)
$$;
revoke all on function app.is_time_zone(text) from public;
grant execute on function app.is_time_zone(text) to anon, authenticated, service_role;
