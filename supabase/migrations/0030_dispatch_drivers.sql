-- Drivers: profiles owned by a home business, assignments to the businesses they serve (dedicated or
-- shared pool, with a priority), weekly availability windows, and the location stream the driver app
-- writes through PostgREST. Gated by the `dispatch` module. Error codes in docs/errors.md (BR5xx).
--
-- A driver row belongs to the business that onboarded the driver (business_id, its tenant). A
-- shared-pool driver also serves other businesses through driver_business_assignments rows owned by
-- the serving business, which name the driver by (driver_business_id, driver_id): the one deliberate
-- reference across tenants, created only by the platform operator (or by a business for its own drivers).

-- section types
create type public.driver_kind as enum ('dedicated', 'shared_pool');

-- section tables

/** A driver's profile (contract name `drivers`): vehicle, rating, online/available and the last known
    position (kept up to date from driver_locations). The driver (user_id) edits their own status and
    vehicle; owners and managers of the home business manage their drivers. */
create table public.drivers (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  display_name text not null constraint drivers_name_length check (length(display_name) between 1 and 120),
  phone text,
  kind public.driver_kind not null default 'dedicated',
  vehicle_type text not null default 'car'
    constraint drivers_vehicle_type_valid check (vehicle_type in ('bicycle', 'scooter', 'motorbike', 'car', 'van', 'walker')),
  vehicle_plate text,
  license_number text,
  rating numeric(3, 2) not null default 5.00 constraint drivers_rating_range check (rating between 0 and 5),
  rating_count integer not null default 0,
  total_deliveries integer not null default 0,
  is_online boolean not null default false,
  is_available boolean not null default true,
  latitude double precision constraint drivers_latitude_range check (latitude between -90 and 90),
  longitude double precision constraint drivers_longitude_range check (longitude between -180 and 180),
  location_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint drivers_pkey primary key (business_id, id),
  constraint drivers_business_user_key unique (business_id, user_id)
);
alter table public.drivers enable row level security;

/** Which businesses a driver delivers for (contract name): dedicated drivers first, then the shared
    pool, each with a priority (1 = first) and optionally limited to one venue. business_id is the
    serving business; (driver_business_id, driver_id) names the driver in its home business. */
create table public.driver_business_assignments (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  driver_business_id uuid not null,
  driver_id uuid not null,
  venue_id uuid,
  pool text not null default 'dedicated' constraint driver_business_assignments_pool_valid check (pool in ('dedicated', 'shared')),
  priority smallint not null default 5 constraint driver_business_assignments_priority_range check (priority between 1 and 10),
  is_active boolean not null default true,
  assigned_at timestamptz not null default now(),
  constraint driver_business_assignments_pkey primary key (business_id, id),
  constraint driver_business_assignments_driver_key unique (business_id, driver_business_id, driver_id),
  constraint driver_business_assignments_driver_fkey foreign key (driver_business_id, driver_id)
    references public.drivers (business_id, id) on delete cascade,
  constraint driver_business_assignments_venue_fkey foreign key (business_id, venue_id)
    references public.venues (business_id, id) on delete cascade
);
alter table public.driver_business_assignments enable row level security;

/** Weekly windows in which a driver takes offers (home business time zone). A driver without active
    windows takes offers whenever online. */
create table public.driver_availability_windows (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  driver_id uuid not null,
  weekday smallint not null constraint driver_availability_windows_weekday_range check (weekday between 0 and 6),
  starts_at time not null,
  ends_at time not null,
  is_active boolean not null default true,
  constraint driver_availability_windows_pkey primary key (business_id, id),
  constraint driver_availability_windows_driver_fkey foreign key (business_id, driver_id)
    references public.drivers (business_id, id) on delete cascade,
  constraint driver_availability_windows_span check (starts_at <> ends_at)
);
alter table public.driver_availability_windows enable row level security;

/** The position stream of the driver app (contract name): a driver inserts only their own positions;
    the businesses they serve read them. Each insert moves the driver's last position and the ETA of
    their active delivery. Append-only. */
create table public.driver_locations (
  business_id uuid not null,
  id bigint generated always as identity,
  driver_id uuid not null,
  latitude double precision not null constraint driver_locations_latitude_range check (latitude between -90 and 90),
  longitude double precision not null constraint driver_locations_longitude_range check (longitude between -180 and 180),
  accuracy_m real constraint driver_locations_accuracy_nonnegative check (accuracy_m >= 0),
  heading real constraint driver_locations_heading_range check (heading >= 0 and heading < 360),
  speed_mps real constraint driver_locations_speed_nonnegative check (speed_mps >= 0),
  recorded_at timestamptz not null default now(),
  created_at timestamptz not null default now(),
  constraint driver_locations_pkey primary key (business_id, id),
  constraint driver_locations_driver_fkey foreign key (business_id, driver_id)
    references public.drivers (business_id, id) on delete cascade
);
alter table public.driver_locations enable row level security;

-- section indexes
create index drivers_user_idx on public.drivers (user_id);
create index drivers_online_idx on public.drivers (business_id, id) where is_online and is_available;
create index driver_business_assignments_driver_idx on public.driver_business_assignments (driver_business_id, driver_id);
create index driver_business_assignments_active_idx on public.driver_business_assignments (business_id) where is_active;
create index driver_availability_windows_driver_idx on public.driver_availability_windows (business_id, driver_id, weekday);
create index driver_locations_driver_idx on public.driver_locations (business_id, driver_id, recorded_at desc);

-- section private helpers

/** (home business, driver) of the caller's own driver profiles, wherever dispatch is on. */
create function app.my_driver_keys() returns table (business_id uuid, driver_id uuid)
language sql stable security definer
set search_path = ''
as $$
  select d.business_id, d.id from public.drivers d
  where d.user_id = (select auth.uid()) and app.module_enabled(d.business_id, 'dispatch')
$$;
revoke all on function app.my_driver_keys() from public;
grant execute on function app.my_driver_keys() to authenticated, service_role;

/** Drivers (home business, driver) actively serving a business where the caller is owner, manager
    or staff with dispatch on: whose profiles and positions the caller may read. */
create function app.served_driver_keys() returns table (business_id uuid, driver_id uuid)
language sql stable security definer
set search_path = ''
as $$
  select a.driver_business_id, a.driver_id
  from public.driver_business_assignments a
  where a.is_active
    and a.business_id in (select app.my_business_ids('{owner,manager,staff}'))
    and app.module_enabled(a.business_id, 'dispatch')
$$;
revoke all on function app.served_driver_keys() from public;
grant execute on function app.served_driver_keys() to authenticated, service_role;

/** Is the driver inside one of their availability windows at p_at (no active windows: always)? */
create function app.driver_in_window(p_business_id uuid, p_driver_id uuid, p_at timestamptz) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select not exists (select 1 from public.driver_availability_windows w
                     where w.business_id = p_business_id and w.driver_id = p_driver_id and w.is_active)
    or exists (
      select 1
      from public.driver_availability_windows w
      join public.businesses b on b.id = w.business_id
      cross join lateral (select (p_at at time zone b.time_zone) as local) l
      where w.business_id = p_business_id and w.driver_id = p_driver_id and w.is_active
        and ((w.starts_at < w.ends_at and w.weekday = extract(dow from l.local)
              and l.local::time >= w.starts_at and l.local::time < w.ends_at)
          or (w.starts_at > w.ends_at  -- overnight: from starts_at on weekday to ends_at the next day
              and ((w.weekday = extract(dow from l.local) and l.local::time >= w.starts_at)
                or ((w.weekday + 1) % 7 = extract(dow from l.local) and l.local::time < w.ends_at)))))
$$;
revoke all on function app.driver_in_window(uuid, uuid, timestamptz) from public;
grant execute on function app.driver_in_window(uuid, uuid, timestamptz) to authenticated, service_role;

-- section triggers

/** The driver edits only their status and vehicle; rating, counters and position move only through
    the platform (ratings, deliveries, driver_locations). */
create function app.tg_drivers_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if current_user in ('anon', 'authenticated') and tg_op = 'UPDATE'
     and (new.rating is distinct from old.rating or new.rating_count is distinct from old.rating_count
          or new.total_deliveries is distinct from old.total_deliveries or new.user_id is distinct from old.user_id
          or new.kind is distinct from old.kind) then
    perform app.fail('42501', 'protected_column', 'rating, counters, kind and user are set by the platform');
  end if;
  new.updated_at := now();
  return new;
end
$$;

create trigger drivers_guard before update on public.drivers
  for each row execute function app.tg_drivers_guard();
-- Positions are never rewritten; only the retention job (the worker, not an API role) deletes old ones.
create trigger driver_locations_append_only before update on public.driver_locations
  for each row execute function app.tg_append_only();
create trigger driver_locations_no_api_delete before delete on public.driver_locations
  for each row when (current_user in ('anon', 'authenticated')) execute function app.tg_append_only();

-- section policies

create policy "drivers read their own profile" on public.drivers for select to authenticated
  using ((business_id, id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));
create policy "served businesses read their drivers" on public.drivers for select to authenticated
  using ((business_id, id) in (select k.business_id, k.driver_id from app.served_driver_keys() k));
create policy "owners and managers read their drivers" on public.drivers for select to authenticated
  using (app.module_enabled(business_id, 'dispatch') and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "owners and managers add drivers" on public.drivers for insert to authenticated
  with check (app.module_enabled(business_id, 'dispatch') and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "drivers update their own status" on public.drivers for update to authenticated
  using ((business_id, id) in (select k.business_id, k.driver_id from app.my_driver_keys() k))
  with check ((business_id, id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));
create policy "owners and managers update their drivers" on public.drivers for update to authenticated
  using (app.module_enabled(business_id, 'dispatch') and business_id in (select app.my_business_ids('{owner,manager}')))
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "owners remove drivers" on public.drivers for delete to authenticated
  using (app.module_enabled(business_id, 'dispatch') and business_id in (select app.my_business_ids('{owner}')));

create policy "managers read their assignments" on public.driver_business_assignments for select to authenticated
  using (app.module_enabled(business_id, 'dispatch') and business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "drivers read where they serve" on public.driver_business_assignments for select to authenticated
  using ((driver_business_id, driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));
create policy "owners and managers assign their own drivers" on public.driver_business_assignments for insert to authenticated
  with check (app.module_enabled(business_id, 'dispatch') and driver_business_id = business_id
              and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "operator assigns shared drivers" on public.driver_business_assignments for insert to authenticated
  with check ((select app.is_platform_admin()));
create policy "owners and managers change assignments" on public.driver_business_assignments for update to authenticated
  using (app.module_enabled(business_id, 'dispatch') and business_id in (select app.my_business_ids('{owner,manager}')))
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "owners and managers end assignments" on public.driver_business_assignments for delete to authenticated
  using (app.module_enabled(business_id, 'dispatch') and business_id in (select app.my_business_ids('{owner,manager}')));

create policy "drivers read their windows" on public.driver_availability_windows for select to authenticated
  using ((business_id, driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));
create policy "owners and managers read driver windows" on public.driver_availability_windows for select to authenticated
  using (app.module_enabled(business_id, 'dispatch') and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "drivers add windows" on public.driver_availability_windows for insert to authenticated
  with check ((business_id, driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));
create policy "drivers change windows" on public.driver_availability_windows for update to authenticated
  using ((business_id, driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k))
  with check ((business_id, driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));
create policy "drivers remove windows" on public.driver_availability_windows for delete to authenticated
  using ((business_id, driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));

create policy "drivers write their own position" on public.driver_locations for insert to authenticated
  with check ((business_id, driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));
create policy "drivers read their own positions" on public.driver_locations for select to authenticated
  using ((business_id, driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));
create policy "served businesses read driver positions" on public.driver_locations for select to authenticated
  using ((business_id, driver_id) in (select k.business_id, k.driver_id from app.served_driver_keys() k));

-- section grants
revoke all on public.drivers, public.driver_business_assignments, public.driver_availability_windows,
  public.driver_locations from anon, authenticated;
grant select, delete on public.drivers to authenticated;
grant insert (business_id, id, user_id, display_name, phone, kind, vehicle_type, vehicle_plate, license_number)
  on public.drivers to authenticated;
grant update (display_name, phone, vehicle_type, vehicle_plate, is_online, is_available) on public.drivers to authenticated;
grant select, insert, delete on public.driver_business_assignments to authenticated;
grant update (venue_id, pool, priority, is_active) on public.driver_business_assignments to authenticated;
grant select, insert, delete on public.driver_availability_windows to authenticated;
grant update (weekday, starts_at, ends_at, is_active) on public.driver_availability_windows to authenticated;
grant select on public.driver_locations to authenticated;
grant insert (business_id, driver_id, latitude, longitude, accuracy_m, heading, speed_mps, recorded_at)
  on public.driver_locations to authenticated;
grant all on public.drivers, public.driver_business_assignments, public.driver_availability_windows,
  public.driver_locations to service_role;
