-- Bookings, part 1: activities a venue sells (duration, price tiers, party limits), weekly schedules,
-- blackout dates and the timed sessions generated from them, each with its capacity. Gated by the
-- `bookings` module. Error codes in docs/errors.md (BR6xx).

-- section tables

/** Something a venue sells by the session (an escape room, a class, a trainer's hour). price_tiers is
    [{key, name, price_cents}] (adult/child...); a party is counts per tier key. The widget reads
    published activities (anon); staff of the venue read all; owners and managers edit them. */
create table public.activities (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  venue_id uuid not null,
  name text not null constraint activities_name_length check (length(name) between 1 and 200),
  description text not null default '',
  duration_minutes integer not null constraint activities_duration_range check (duration_minutes between 5 and 1440),
  price_tiers jsonb not null default '[]'::jsonb,
  min_party integer not null default 1,
  max_party integer not null default 10,
  hold_minutes integer not null default 10 constraint activities_hold_range check (hold_minutes between 1 and 60),
  cancel_cutoff_hours integer not null default 24 constraint activities_cutoff_range check (cancel_cutoff_hours between 0 and 720),
  is_published boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint activities_pkey primary key (business_id, id),
  constraint activities_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade,
  constraint activities_party_range check (min_party >= 1 and max_party >= min_party and max_party <= 500)
);
alter table public.activities enable row level security;

/** A weekly rule: on weekday (0 = Sunday) at start_time (venue time) a session with this capacity,
    between starts_on and ends_on. Sessions are generated from these ahead of time. */
create table public.activity_schedules (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  activity_id uuid not null,
  weekday smallint not null constraint activity_schedules_weekday_range check (weekday between 0 and 6),
  start_time time not null,
  capacity integer not null constraint activity_schedules_capacity_range check (capacity between 1 and 10000),
  starts_on date not null default current_date,
  ends_on date,
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  constraint activity_schedules_pkey primary key (business_id, id),
  constraint activity_schedules_activity_fkey foreign key (business_id, activity_id)
    references public.activities (business_id, id) on delete cascade,
  constraint activity_schedules_slot_key unique (business_id, activity_id, weekday, start_time),
  constraint activity_schedules_period check (ends_on is null or ends_on >= starts_on)
);
alter table public.activity_schedules enable row level security;

/** Dates (venue time) with no sessions: the whole venue (activity_id null) or one activity. */
create table public.activity_blackouts (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  venue_id uuid not null,
  activity_id uuid,
  starts_on date not null,
  ends_on date not null,
  reason text not null default '',
  created_at timestamptz not null default now(),
  constraint activity_blackouts_pkey primary key (business_id, id),
  constraint activity_blackouts_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade,
  constraint activity_blackouts_activity_fkey foreign key (business_id, activity_id)
    references public.activities (business_id, id) on delete cascade,
  constraint activity_blackouts_period check (ends_on >= starts_on)
);
alter table public.activity_blackouts enable row level security;

/** One bookable occurrence of an activity. held_seats (pending-payment holds) and booked_seats
    (confirmed and checked-in) are kept by the bookings trigger only; their sum never exceeds
    capacity (a constraint, so no writer can overbook). */
create table public.activity_sessions (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  activity_id uuid not null,
  venue_id uuid not null,
  schedule_id uuid,
  starts_at timestamptz not null,
  ends_at timestamptz not null,
  capacity integer not null constraint activity_sessions_capacity_range check (capacity between 0 and 10000),
  held_seats integer not null default 0 constraint activity_sessions_held_nonnegative check (held_seats >= 0),
  booked_seats integer not null default 0 constraint activity_sessions_booked_nonnegative check (booked_seats >= 0),
  status text not null default 'scheduled' constraint activity_sessions_status_valid check (status in ('scheduled', 'cancelled')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint activity_sessions_pkey primary key (business_id, id),
  constraint activity_sessions_activity_fkey foreign key (business_id, activity_id)
    references public.activities (business_id, id) on delete cascade,
  constraint activity_sessions_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade,
  constraint activity_sessions_activity_start_key unique (business_id, activity_id, starts_at),
  constraint activity_sessions_period check (ends_at > starts_at),
  constraint activity_sessions_no_overbooking check (held_seats + booked_seats <= capacity)
);
alter table public.activity_sessions enable row level security;

-- section indexes
create index activities_id_idx on public.activities (id);  -- lookups by id alone (RPC arguments)
create index activity_sessions_id_idx on public.activity_sessions (id);
create index activities_venue_idx on public.activities (business_id, venue_id);
create index activities_published_idx on public.activities (business_id) where is_published;
create index activity_schedules_activity_idx on public.activity_schedules (business_id, activity_id);
create index activity_blackouts_venue_idx on public.activity_blackouts (business_id, venue_id, starts_on);
create index activity_sessions_activity_time_idx on public.activity_sessions (business_id, activity_id, starts_at);
create index activity_sessions_venue_time_idx on public.activity_sessions (business_id, venue_id, starts_at);

-- section private helpers

/** True when price tiers are [{key, name, price_cents >= 0}] with distinct keys (at least one). */
create function app.price_tiers_valid(p_tiers jsonb) returns boolean
language sql immutable
set search_path = ''
as $$
  select jsonb_typeof(p_tiers) = 'array' and jsonb_array_length(p_tiers) between 1 and 20
    and not exists (
      select 1 from jsonb_array_elements(p_tiers) t
      where jsonb_typeof(t) <> 'object' or coalesce(t ->> 'key', '') !~ '^[a-z][a-z0-9_]{0,30}$'
         or nullif(trim(t ->> 'name'), '') is null or jsonb_typeof(t -> 'price_cents') <> 'number'
         or (t ->> 'price_cents')::numeric < 0 or (t ->> 'price_cents')::numeric <> trunc((t ->> 'price_cents')::numeric))
    and (select count(distinct t ->> 'key') from jsonb_array_elements(p_tiers) t) = jsonb_array_length(p_tiers)
$$;
revoke all on function app.price_tiers_valid(jsonb) from public;
grant execute on function app.price_tiers_valid(jsonb) to anon, authenticated, service_role;

/** True when the widget may show an activity: published, at a published venue, bookings on. */
create function app.activity_is_public(p_business_id uuid, p_venue_id uuid, p_published boolean) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select coalesce(p_published, false) and app.module_enabled(p_business_id, 'bookings')
    and exists (select 1 from public.venues v where v.business_id = p_business_id and v.id = p_venue_id and v.is_published)
$$;
revoke all on function app.activity_is_public(uuid, uuid, boolean) from public;
grant execute on function app.activity_is_public(uuid, uuid, boolean) to anon, authenticated, service_role;

/** Sessions for the next p_days days (venue time) from every active weekly schedule of activities of
    businesses with bookings on, skipping blackout dates; existing sessions are left alone, so it can
    run as often as wanted. Returns how many sessions it created. */
create function app.generate_sessions(p_business_id uuid default null, p_days integer default 28) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  if p_days is null or p_days < 1 or p_days > 366 then
    perform app.fail('22023', 'invalid_days', 'days must be between 1 and 366');
  end if;
  with slots as (
    select s.business_id, s.activity_id, a.venue_id, s.id as schedule_id, s.capacity, a.duration_minutes,
           ((d.day + s.start_time) at time zone v.time_zone) as starts_at, d.day
    from public.activity_schedules s
    join public.activities a on a.business_id = s.business_id and a.id = s.activity_id
    join public.venues v on v.business_id = a.business_id and v.id = a.venue_id
    cross join lateral (
      select g::date as day
      from generate_series((now() at time zone v.time_zone)::date,
                           (now() at time zone v.time_zone)::date + (p_days - 1), interval '1 day') g
    ) d
    where s.is_active and (p_business_id is null or s.business_id = p_business_id)
      and app.module_enabled(s.business_id, 'bookings')
      and extract(dow from d.day) = s.weekday
      and d.day >= s.starts_on and (s.ends_on is null or d.day <= s.ends_on)
      and not exists (
        select 1 from public.activity_blackouts b
        where b.business_id = s.business_id and b.venue_id = a.venue_id
          and (b.activity_id is null or b.activity_id = s.activity_id)
          and d.day between b.starts_on and b.ends_on)
  ), created as (
    insert into public.activity_sessions (business_id, activity_id, venue_id, schedule_id, starts_at, ends_at, capacity)
    select business_id, activity_id, venue_id, schedule_id, starts_at, starts_at + make_interval(mins => duration_minutes), capacity
    from slots
    where starts_at > now()
    on conflict on constraint activity_sessions_activity_start_key do nothing
    returning 1
  )
  select count(*) into v_count from created;
  return v_count;
end
$$;
revoke all on function app.generate_sessions(uuid, integer) from public;
grant execute on function app.generate_sessions(uuid, integer) to service_role;

-- section triggers

/** Price tiers and party limits are validated whoever writes the activity. */
create function app.tg_activities_validate() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if not app.price_tiers_valid(new.price_tiers) then
    perform app.fail('BR611', 'invalid_price_tiers', 'price_tiers must be 1 to 20 tiers {key, name, price_cents} with distinct keys');
  end if;
  new.updated_at := now();
  return new;
end
$$;

/** Clients may change a session's capacity and status, never below the seats it has taken (BR610), and
    never its seat counters (only the bookings trigger moves those). */
create function app.tg_activity_sessions_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    if new.held_seats <> 0 or new.booked_seats <> 0 then
      perform app.fail('BR610', 'seat_counters_protected', 'a new session starts with no seats taken');
    end if;
    -- a session is at its activity's venue, whatever the writer sent
    new.venue_id := (select a.venue_id from public.activities a where a.business_id = new.business_id and a.id = new.activity_id);
    return new;
  end if;
  if new.capacity < new.held_seats + new.booked_seats then
    perform app.fail('BR610', 'capacity_below_reserved',
                     format('%s seats are taken, capacity cannot go to %s', new.held_seats + new.booked_seats, new.capacity));
  end if;
  if new.status = 'cancelled' and old.status <> 'cancelled' and new.held_seats + new.booked_seats > 0 then
    perform app.fail('BR610', 'session_has_bookings', 'move or cancel the bookings of a session before cancelling it');
  end if;
  new.updated_at := now();
  return new;
end
$$;

/** A blackout added later cancels the sessions it covers that nobody has booked. */
create function app.tg_activity_blackouts_apply() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  update public.activity_sessions s set status = 'cancelled'
  from public.venues v
  where s.business_id = new.business_id and s.venue_id = new.venue_id
    and (new.activity_id is null or s.activity_id = new.activity_id)
    and v.business_id = s.business_id and v.id = s.venue_id
    and (s.starts_at at time zone v.time_zone)::date between new.starts_on and new.ends_on
    and s.status = 'scheduled' and s.held_seats + s.booked_seats = 0;
  return null;
end
$$;

create trigger activities_validate before insert or update on public.activities
  for each row execute function app.tg_activities_validate();
create trigger activity_sessions_guard before insert or update on public.activity_sessions
  for each row execute function app.tg_activity_sessions_guard();
create trigger activity_blackouts_apply after insert on public.activity_blackouts
  for each row execute function app.tg_activity_blackouts_apply();

-- section policies

create policy "anyone reads published activities" on public.activities for select to anon, authenticated
  using (app.activity_is_public(business_id, venue_id, is_published));
create policy "staff read activities of their venues" on public.activities for select to authenticated
  using (app.module_enabled(business_id, 'bookings')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "managers create activities" on public.activities for insert to authenticated
  with check (app.module_enabled(business_id, 'bookings')
              and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers update activities" on public.activities for update to authenticated
  using (app.module_enabled(business_id, 'bookings')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k))
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers delete activities" on public.activities for delete to authenticated
  using (app.module_enabled(business_id, 'bookings')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));

create policy "staff read schedules" on public.activity_schedules for select to authenticated
  using (app.module_enabled(business_id, 'bookings')
         and (business_id, activity_id) in (select a.business_id, a.id from public.activities a
                                            where (a.business_id, a.venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k)));
create policy "managers create schedules" on public.activity_schedules for insert to authenticated
  with check (app.module_enabled(business_id, 'bookings')
              and (business_id, activity_id) in (select a.business_id, a.id from public.activities a
                                                 where (a.business_id, a.venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k)));
create policy "managers update schedules" on public.activity_schedules for update to authenticated
  using (app.module_enabled(business_id, 'bookings')
         and (business_id, activity_id) in (select a.business_id, a.id from public.activities a
                                            where (a.business_id, a.venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k)))
  with check ((business_id, activity_id) in (select a.business_id, a.id from public.activities a
                                             where (a.business_id, a.venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k)));
create policy "managers delete schedules" on public.activity_schedules for delete to authenticated
  using (app.module_enabled(business_id, 'bookings')
         and (business_id, activity_id) in (select a.business_id, a.id from public.activities a
                                            where (a.business_id, a.venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k)));

create policy "staff read blackouts" on public.activity_blackouts for select to authenticated
  using (app.module_enabled(business_id, 'bookings')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "managers create blackouts" on public.activity_blackouts for insert to authenticated
  with check (app.module_enabled(business_id, 'bookings')
              and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers delete blackouts" on public.activity_blackouts for delete to authenticated
  using (app.module_enabled(business_id, 'bookings')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));

create policy "staff read sessions of their venues" on public.activity_sessions for select to authenticated
  using (app.module_enabled(business_id, 'bookings')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "managers create sessions" on public.activity_sessions for insert to authenticated
  with check (app.module_enabled(business_id, 'bookings')
              and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers update sessions" on public.activity_sessions for update to authenticated
  using (app.module_enabled(business_id, 'bookings')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k))
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));

-- section grants
revoke all on public.activities, public.activity_schedules, public.activity_blackouts, public.activity_sessions
  from anon, authenticated;
grant select on public.activities to anon;
grant select, insert, update, delete on public.activities, public.activity_schedules to authenticated;
grant select, insert, delete on public.activity_blackouts to authenticated;
grant select, update (capacity, status) on public.activity_sessions to authenticated;
grant insert (business_id, activity_id, venue_id, starts_at, ends_at, capacity) on public.activity_sessions to authenticated;
grant all on public.activities, public.activity_schedules, public.activity_blackouts, public.activity_sessions to service_role;

-- section realtime
alter publication supabase_realtime add table public.activity_sessions;

-- section rpc

/** Managers generate sessions on demand for their business (the scheduled job does it nightly for
    all). Raises 42501 (not an owner or manager), PT403 (bookings off), 22023 (days). */
create function app.manager_generate_sessions(p_business_id uuid, p_days integer) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if not (app.is_member(p_business_id, '{owner,manager}') or app.is_platform_or_service()) then
    perform app.fail('42501', 'not_member', 'only owners and managers generate sessions');
  end if;
  perform app.require_module(p_business_id, 'bookings');
  return app.generate_sessions(p_business_id, coalesce(p_days, 28));
end
$$;
revoke all on function app.manager_generate_sessions(uuid, integer) from public;
grant execute on function app.manager_generate_sessions(uuid, integer) to authenticated, service_role;

create function public.generate_sessions(business_id uuid, days integer default 28) returns integer
language sql volatile
set search_path = ''
as $$
  select app.manager_generate_sessions(business_id, days)
$$;
revoke all on function public.generate_sessions(uuid, integer) from public;
grant execute on function public.generate_sessions(uuid, integer) to authenticated, service_role;

/** The widget's availability: scheduled, future sessions of a published activity between two times,
    with the seats left (anon). Raises PT404 (no such published activity). */
create function app.available_sessions(p_activity_id uuid, p_from timestamptz, p_to timestamptz)
returns table (session_id uuid, starts_at timestamptz, ends_at timestamptz, capacity integer, seats_left integer)
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_activity public.activities;
begin
  select a.* into v_activity from public.activities a where a.id = p_activity_id;
  if v_activity.id is null or not app.activity_is_public(v_activity.business_id, v_activity.venue_id, v_activity.is_published) then
    perform app.fail('PT404', 'activity_not_found', 'no published activity with that id');
  end if;
  return query
  select s.id, s.starts_at, s.ends_at, s.capacity, s.capacity - s.held_seats - s.booked_seats
  from public.activity_sessions s
  where s.business_id = v_activity.business_id and s.activity_id = v_activity.id and s.status = 'scheduled'
    and s.starts_at > now() and s.starts_at >= coalesce(p_from, now())
    and s.starts_at < coalesce(p_to, now() + interval '31 days')
  order by s.starts_at
  limit 1000;
end
$$;
revoke all on function app.available_sessions(uuid, timestamptz, timestamptz) from public;
grant execute on function app.available_sessions(uuid, timestamptz, timestamptz) to anon, authenticated, service_role;

create function public.available_sessions(activity_id uuid, "from" timestamptz default null, "to" timestamptz default null)
returns table (session_id uuid, starts_at timestamptz, ends_at timestamptz, capacity integer, seats_left integer)
language sql stable
set search_path = ''
as $$
  select * from app.available_sessions(activity_id, "from", "to")
$$;
revoke all on function public.available_sessions(uuid, timestamptz, timestamptz) from public;
grant execute on function public.available_sessions(uuid, timestamptz, timestamptz) to anon, authenticated, service_role;
