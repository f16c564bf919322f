-- Platform and tenancy: businesses, venues, memberships, the module catalogue and gates, plans,
-- subscription lines and the audit log. Error codes are listed in docs/errors.md.

-- section schemas
create schema if not exists app;
revoke all on schema app from public;
grant usage on schema app to anon, authenticated, service_role;

-- section types
create type public.membership_role as enum ('owner', 'manager', 'staff', 'driver');

-- Needed by the table checks below, so it precedes them.
create function app.is_time_zone(p_name text) returns boolean
language sql stable
set search_path = ''
as $$
  select exists (select 1 from pg_catalog.pg_timezone_names where name = p_name)
$$;
revoke all on function app.is_time_zone(text) from public;
grant execute on function app.is_time_zone(text) to anon, authenticated, service_role;

-- section tables

/** Subscription plans of the platform (catalogue; issue 9 adds features and limits). Readable by all. */
create table public.plans (
  key text primary key constraint plans_key_format check (key ~ '^[a-z][a-z0-9_]{1,30}$'),
  name text not null,
  monthly_price_cents integer not null constraint plans_price_nonnegative check (monthly_price_cents >= 0),
  currency text not null default 'USD' constraint plans_currency_format check (currency ~ '^[A-Z]{3}$'),
  sort_order integer not null default 0,
  created_at timestamptz not null default now()
);
alter table public.plans enable row level security;

/** Modules a business can switch on (the keys of businesses.modules_json) with their monthly price. */
create table public.modules (
  key text primary key constraint modules_key_format check (key ~ '^[a-z][a-z0-9_]{1,30}$'),
  name text not null,
  description text not null default '',
  monthly_price_cents integer not null constraint modules_price_nonnegative check (monthly_price_cents >= 0),
  currency text not null default 'USD' constraint modules_currency_format check (currency ~ '^[A-Z]{3}$'),
  sort_order integer not null default 0,
  created_at timestamptz not null default now()
);
alter table public.modules enable row level security;

/** A tenant: one merchant (a café, a trainer, a franchise). modules_json gates its modules; only the
    platform operator (or service_role) may change modules_json, slug or status. */
create table public.businesses (
  id uuid primary key default extensions.gen_random_uuid(),
  name text not null constraint businesses_name_length check (length(name) between 1 and 200),
  slug text not null constraint businesses_slug_key unique
    constraint businesses_slug_format check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'),
  currency text not null default 'USD' constraint businesses_currency_format check (currency ~ '^[A-Z]{3}$'),
  time_zone text not null default 'UTC' constraint businesses_time_zone_valid check (app.is_time_zone(time_zone)),
  modules_json jsonb not null default '{"ordering": true}'::jsonb
    constraint businesses_modules_json_object check (jsonb_typeof(modules_json) = 'object'),
  status text not null default 'active' constraint businesses_status_valid check (status in ('active', 'suspended')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
alter table public.businesses enable row level security;

/** A place a business serves from: its own opening hours, time zone and menu availability. */
create table public.venues (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  name text not null constraint venues_name_length check (length(name) between 1 and 200),
  slug text not null constraint venues_slug_format check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'),
  time_zone text not null default 'UTC' constraint venues_time_zone_valid check (app.is_time_zone(time_zone)),
  phone text,
  address jsonb not null default '{}'::jsonb,
  latitude double precision constraint venues_latitude_range check (latitude between -90 and 90),
  longitude double precision constraint venues_longitude_range check (longitude between -180 and 180),
  is_published boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint venues_pkey primary key (business_id, id),
  constraint venues_business_slug_key unique (business_id, slug)
);
alter table public.venues enable row level security;

/** Who works for a business and as what. No membership_venues rows = every venue of the business. */
create table public.memberships (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  role public.membership_role not null,
  created_at timestamptz not null default now(),
  constraint memberships_pkey primary key (business_id, id),
  constraint memberships_business_user_key unique (business_id, user_id)
);
alter table public.memberships enable row level security;

/** Limits a membership to some venues of its business. */
create table public.membership_venues (
  business_id uuid not null,
  membership_id uuid not null,
  venue_id uuid not null,
  constraint membership_venues_pkey primary key (business_id, membership_id, venue_id),
  constraint membership_venues_membership_fkey foreign key (business_id, membership_id)
    references public.memberships (business_id, id) on delete cascade,
  constraint membership_venues_venue_fkey foreign key (business_id, venue_id)
    references public.venues (business_id, id) on delete cascade
);
alter table public.membership_venues enable row level security;

/** A business's subscription: its plan, status and period, and the monthly total of its open lines. */
create table public.business_subscriptions (
  business_id uuid not null references public.businesses (id) on delete cascade,
  plan_key text not null references public.plans (key),
  status text not null default 'trial'
    constraint business_subscriptions_status_valid check (status in ('trial', 'active', 'past_due', 'canceled')),
  current_period_start timestamptz not null default now(),
  current_period_end timestamptz not null default now() + interval '1 month',
  monthly_total_cents integer not null default 0,
  currency text not null default 'USD',
  updated_at timestamptz not null default now(),
  constraint business_subscriptions_pkey primary key (business_id)
);
alter table public.business_subscriptions enable row level security;

/** What a business pays for, line by line: the plan and each enabled module. A line is closed
    (ends_at) when its module is switched off or its price changes, so the history stays billable. */
create table public.business_subscription_lines (
  business_id uuid not null references public.business_subscriptions (business_id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  kind text not null constraint business_subscription_lines_kind_valid check (kind in ('plan', 'module')),
  item_key text not null,
  description text not null,
  unit_amount_cents integer not null constraint business_subscription_lines_amount_nonnegative check (unit_amount_cents >= 0),
  currency text not null,
  starts_at timestamptz not null default now(),
  ends_at timestamptz,
  constraint business_subscription_lines_pkey primary key (business_id, id),
  constraint business_subscription_lines_period check (ends_at is null or ends_at >= starts_at)
);
alter table public.business_subscription_lines enable row level security;

/** Append-only record of privileged actions (module toggles, plan changes, operator actions). */
create table public.audit_log (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id bigint generated always as identity,
  actor_user_id uuid,
  actor_role text not null,
  action text not null,
  details jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  constraint audit_log_pkey primary key (business_id, id)
);
alter table public.audit_log enable row level security;

-- section indexes
create index memberships_user_id_idx on public.memberships (user_id);
create index membership_venues_venue_idx on public.membership_venues (business_id, venue_id);
create index venues_published_idx on public.venues (business_id) where is_published;
create unique index business_subscription_lines_open_key
  on public.business_subscription_lines (business_id, kind, item_key) where ends_at is null;
create index audit_log_business_created_idx on public.audit_log (business_id, created_at desc);

-- section private helpers

/** True for the platform operator: app_role = platform_admin inside app_metadata (server-set only). */
create function app.is_platform_admin() returns boolean
language sql stable
set search_path = ''
as $$
  select coalesce(auth.jwt() -> 'app_metadata' ->> 'app_role', '') = 'platform_admin'
$$;
revoke all on function app.is_platform_admin() from public;
grant execute on function app.is_platform_admin() to anon, authenticated, service_role;

/** True for the operator and for the service role (the functions and worker acting for the platform). */
create function app.is_platform_or_service() returns boolean
language sql stable
set search_path = ''
as $$
  select app.is_platform_admin() or coalesce(auth.role(), '') = 'service_role'
$$;
revoke all on function app.is_platform_or_service() from public;
grant execute on function app.is_platform_or_service() to anon, authenticated, service_role;

/** Businesses the caller belongs to with one of the roles. Security definer: reads memberships
    without recursing into their own policies. */
create function app.my_business_ids(
  p_roles public.membership_role[] default '{owner,manager,staff,driver}'
) returns setof uuid
language sql stable security definer
set search_path = ''
as $$
  select m.business_id
  from public.memberships m
  where m.user_id = (select auth.uid()) and m.role = any (p_roles)
$$;
revoke all on function app.my_business_ids(public.membership_role[]) from public;
grant execute on function app.my_business_ids(public.membership_role[]) to authenticated, service_role;

/** (business, venue) pairs the caller may act on with one of the roles; an unlimited membership
    covers every venue of its business. */
create function app.my_venue_keys(
  p_roles public.membership_role[] default '{owner,manager,staff,driver}'
) returns table (business_id uuid, venue_id uuid)
language sql stable security definer
set search_path = ''
as $$
  select v.business_id, v.id
  from public.memberships m
  join public.venues v on v.business_id = m.business_id
  where m.user_id = (select auth.uid())
    and m.role = any (p_roles)
    and (
      not exists (select 1 from public.membership_venues mv
                  where mv.business_id = m.business_id and mv.membership_id = m.id)
      or exists (select 1 from public.membership_venues mv
                 where mv.business_id = m.business_id and mv.membership_id = m.id and mv.venue_id = v.id)
    )
$$;
revoke all on function app.my_venue_keys(public.membership_role[]) from public;
grant execute on function app.my_venue_keys(public.membership_role[]) to authenticated, service_role;

/** True when the caller is a member of the business with one of the roles. */
create function app.is_member(
  p_business_id uuid,
  p_roles public.membership_role[] default '{owner,manager,staff,driver}'
) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.memberships m
    where m.business_id = p_business_id and m.user_id = (select auth.uid()) and m.role = any (p_roles)
  )
$$;
revoke all on function app.is_member(uuid, public.membership_role[]) from public;
grant execute on function app.is_member(uuid, public.membership_role[]) to authenticated, service_role;

/** True when the caller may act on this venue with one of the roles (venue limits applied). */
create function app.has_venue_access(
  p_business_id uuid,
  p_venue_id uuid,
  p_roles public.membership_role[] default '{owner,manager,staff,driver}'
) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from app.my_venue_keys(p_roles) k
    where k.business_id = p_business_id and k.venue_id = p_venue_id
  )
$$;
revoke all on function app.has_venue_access(uuid, uuid, public.membership_role[]) from public;
grant execute on function app.has_venue_access(uuid, uuid, public.membership_role[]) to authenticated, service_role;

/** The module gate (contract): is module p_key switched on for the business? Used by the RLS
    policies of every module table and by every function. */
create function app.module_enabled(p_business_id uuid, p_key text) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select coalesce((
    select (b.modules_json ->> p_key)::boolean and b.status = 'active'
    from public.businesses b where b.id = p_business_id
  ), false)
$$;
revoke all on function app.module_enabled(uuid, text) from public;
grant execute on function app.module_enabled(uuid, text) to anon, authenticated, service_role;

/** Raises PT403 unless the module is on: the first line of every module's RPCs. */
create function app.require_module(p_business_id uuid, p_key text) returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if not app.module_enabled(p_business_id, p_key) then
    raise exception using
      errcode = 'PT403',
      message = format('module %s is disabled for this business', p_key),
      hint = 'module_disabled';
  end if;
end
$$;
revoke all on function app.require_module(uuid, text) from public;
grant execute on function app.require_module(uuid, text) to anon, authenticated, service_role;

/** Appends to audit_log with the caller taken from the JWT claims. */
create function app.audit(p_business_id uuid, p_action text, p_details jsonb) returns void
language sql volatile security definer
set search_path = ''
as $$
  insert into public.audit_log (business_id, actor_user_id, actor_role, action, details)
  values (
    p_business_id,
    auth.uid(),
    case when app.is_platform_admin() then 'platform_admin'
         else coalesce(nullif(auth.role(), ''), session_user::text) end,
    p_action,
    coalesce(p_details, '{}'::jsonb)
  )
$$;
revoke all on function app.audit(uuid, text, jsonb) from public;
grant execute on function app.audit(uuid, text, jsonb) to service_role;

/** What a business should be paying for now: its plan and each enabled module, at today's prices. */
create function app.wanted_subscription_lines(p_business_id uuid)
returns table (kind text, item_key text, description text, unit_amount_cents integer, currency text)
language sql stable security definer
set search_path = ''
as $$
  select 'plan', p.key, p.name || ' plan', p.monthly_price_cents, p.currency
  from public.business_subscriptions s join public.plans p on p.key = s.plan_key
  where s.business_id = p_business_id and s.status <> 'canceled'
  union all
  select 'module', m.key, m.name || ' module', m.monthly_price_cents, m.currency
  from public.businesses b
  join public.business_subscriptions s on s.business_id = b.id and s.status <> 'canceled'
  join public.modules m on coalesce((b.modules_json ->> m.key)::boolean, false)
  where b.id = p_business_id
$$;
revoke all on function app.wanted_subscription_lines(uuid) from public;
grant execute on function app.wanted_subscription_lines(uuid) to service_role;

/** Brings a business's subscription lines in line with its plan and enabled modules: closes the lines
    of modules switched off (or repriced), opens lines for modules switched on, updates the total. */
create function app.recalculate_subscription(p_business_id uuid) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_total integer;
begin
  insert into public.business_subscriptions (business_id, plan_key, currency)
  select b.id, 'starter', b.currency from public.businesses b where b.id = p_business_id
  on conflict (business_id) do nothing;

  update public.business_subscription_lines l
  set ends_at = now()
  where l.business_id = p_business_id and l.ends_at is null
    and not exists (
      select 1 from app.wanted_subscription_lines(p_business_id) w
      where w.kind = l.kind and w.item_key = l.item_key
        and w.unit_amount_cents = l.unit_amount_cents and w.currency = l.currency
    );

  insert into public.business_subscription_lines
    (business_id, kind, item_key, description, unit_amount_cents, currency)
  select p_business_id, w.kind, w.item_key, w.description, w.unit_amount_cents, w.currency
  from app.wanted_subscription_lines(p_business_id) w
  where not exists (
    select 1 from public.business_subscription_lines l
    where l.business_id = p_business_id and l.ends_at is null and l.kind = w.kind and l.item_key = w.item_key
  );

  select coalesce(sum(l.unit_amount_cents), 0)::integer into v_total
  from public.business_subscription_lines l
  where l.business_id = p_business_id and l.ends_at is null;

  update public.business_subscriptions
  set monthly_total_cents = v_total, updated_at = now()
  where business_id = p_business_id;
  return v_total;
end
$$;
revoke all on function app.recalculate_subscription(uuid) from public;
grant execute on function app.recalculate_subscription(uuid) to service_role;

-- section triggers

/** Stamps updated_at on tables that carry one. */
create function app.tg_touch_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;

/** Rejects UPDATE and DELETE on append-only tables, whoever the caller. */
create function app.tg_append_only() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception using
    errcode = 'BR006',
    message = format('%s is append-only: %s is not allowed', tg_table_name, lower(tg_op)),
    hint = 'append_only';
end
$$;

/** Validates modules_json (known keys, boolean values) and keeps clients away from the columns only
    the operator may set: modules_json, slug, status. */
create function app.tg_businesses_guard() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_key text;
  v_value jsonb;
begin
  for v_key, v_value in select * from jsonb_each(new.modules_json) loop
    if not exists (select 1 from public.modules m where m.key = v_key) then
      raise exception using errcode = 'BR001', message = format('unknown module %L', v_key),
        hint = 'unknown_module';
    end if;
    if jsonb_typeof(v_value) <> 'boolean' then
      raise exception using errcode = 'BR003', message = format('module %L must be true or false', v_key),
        hint = 'invalid_modules_json';
    end if;
  end loop;

  if current_user in ('anon', 'authenticated') and not app.is_platform_admin() then
    if tg_op = 'INSERT'
       or new.modules_json is distinct from old.modules_json
       or new.slug is distinct from old.slug
       or new.status is distinct from old.status then
      raise exception using errcode = '42501',
        message = 'only the platform operator may change modules, slug or status', hint = 'protected_column';
    end if;
  end if;
  return new;
end
$$;

/** An owner's membership always covers every venue; a business never loses its last owner. */
create function app.tg_memberships_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op in ('UPDATE', 'DELETE') and old.role = 'owner'
     and (tg_op = 'DELETE' or new.role <> 'owner')
     and exists (select 1 from public.businesses b where b.id = old.business_id)
     and not exists (
       select 1 from public.memberships m
       where m.business_id = old.business_id and m.role = 'owner' and m.id <> old.id
     ) then
    raise exception using errcode = 'BR004', message = 'a business must keep at least one owner',
      hint = 'last_owner';
  end if;
  if tg_op = 'DELETE' then
    return old;
  end if;
  return new;
end
$$;

create function app.tg_membership_venues_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if exists (select 1 from public.memberships m
             where m.business_id = new.business_id and m.id = new.membership_id and m.role = 'owner') then
    raise exception using errcode = 'BR005', message = 'an owner cannot be limited to some venues',
      hint = 'owner_all_venues';
  end if;
  return new;
end
$$;

/** A new business gets its subscription and lines right away; a change of modules_json, by any
    path, is audited module by module, re-bills the business and emits business.module_changed. */
create function app.tg_businesses_modules_changed() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_total integer;
  v_key text;
  v_enabled boolean;
begin
  v_total := app.recalculate_subscription(new.id);
  if tg_op = 'UPDATE' then
    for v_key in select m.key from public.modules m order by m.sort_order loop
      v_enabled := coalesce((new.modules_json ->> v_key)::boolean, false);
      continue when v_enabled = coalesce((old.modules_json ->> v_key)::boolean, false);
      perform app.audit(new.id, 'module.' || case when v_enabled then 'enabled' else 'disabled' end,
        jsonb_build_object('module', v_key, 'before', old.modules_json, 'after', new.modules_json,
                           'monthly_total_cents', v_total));
      perform app.emit('business.module_changed', new.id,
        jsonb_build_object('module', v_key, 'enabled', v_enabled));
    end loop;
  end if;
  return null;
end
$$;

create trigger businesses_guard before insert or update on public.businesses
  for each row execute function app.tg_businesses_guard();
create trigger businesses_touch before update on public.businesses
  for each row execute function app.tg_touch_updated_at();
create trigger businesses_subscribe after insert on public.businesses
  for each row execute function app.tg_businesses_modules_changed();
create trigger businesses_modules_changed after update of modules_json on public.businesses
  for each row when (old.modules_json is distinct from new.modules_json)
  execute function app.tg_businesses_modules_changed();
create trigger venues_touch before update on public.venues
  for each row execute function app.tg_touch_updated_at();
create trigger memberships_guard before update or delete on public.memberships
  for each row execute function app.tg_memberships_guard();
create trigger membership_venues_guard before insert or update on public.membership_venues
  for each row execute function app.tg_membership_venues_guard();
create trigger audit_log_append_only before update or delete on public.audit_log
  for each row execute function app.tg_append_only();

-- section policies

create policy "anyone reads plans" on public.plans for select to anon, authenticated using (true);
create policy "anyone reads modules" on public.modules for select to anon, authenticated using (true);

create policy "members read their businesses" on public.businesses for select to authenticated
  using (id in (select app.my_business_ids()));
create policy "operator reads every business" on public.businesses for select to authenticated
  using ((select app.is_platform_admin()));
create policy "operator creates businesses" on public.businesses for insert to authenticated
  with check ((select app.is_platform_admin()));
create policy "owners update their business" on public.businesses for update to authenticated
  using (id in (select app.my_business_ids('{owner}')))
  with check (id in (select app.my_business_ids('{owner}')));
create policy "operator updates every business" on public.businesses for update to authenticated
  using ((select app.is_platform_admin())) with check ((select app.is_platform_admin()));

create policy "anyone reads published venues" on public.venues for select to anon, authenticated
  using (is_published and app.module_enabled(business_id, 'ordering'));
create policy "members read their venues" on public.venues for select to authenticated
  using ((business_id, id) in (select k.business_id, k.venue_id from app.my_venue_keys() k));
create policy "operator reads every venue" on public.venues for select to authenticated
  using ((select app.is_platform_admin()));
create policy "owners create venues" on public.venues for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner}')));
create policy "owners and managers update their venues" on public.venues for update to authenticated
  using ((business_id, id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k))
  with check ((business_id, id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "owners delete venues" on public.venues for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));

create policy "members read their own membership" on public.memberships for select to authenticated
  using (user_id = (select auth.uid()));
create policy "owners and managers read the team" on public.memberships for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "operator reads every membership" on public.memberships for select to authenticated
  using ((select app.is_platform_admin()));
create policy "owners add members" on public.memberships for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner}')));
create policy "owners change members" on public.memberships for update to authenticated
  using (business_id in (select app.my_business_ids('{owner}')))
  with check (business_id in (select app.my_business_ids('{owner}')));
create policy "owners remove members" on public.memberships for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));

create policy "members read their own venue limits" on public.membership_venues for select to authenticated
  using (membership_id in (select m.id from public.memberships m where m.user_id = (select auth.uid())));
create policy "owners and managers read venue limits" on public.membership_venues for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "owners set venue limits" on public.membership_venues for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner}')));
create policy "owners lift venue limits" on public.membership_venues for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));

create policy "owners read their subscription" on public.business_subscriptions for select to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));
create policy "operator reads every subscription" on public.business_subscriptions for select to authenticated
  using ((select app.is_platform_admin()));
create policy "owners read their subscription lines" on public.business_subscription_lines for select
  to authenticated using (business_id in (select app.my_business_ids('{owner}')));
create policy "operator reads every subscription line" on public.business_subscription_lines for select
  to authenticated using ((select app.is_platform_admin()));

create policy "owners read their audit log" on public.audit_log for select to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));
create policy "operator reads every audit log" on public.audit_log for select to authenticated
  using ((select app.is_platform_admin()));

-- section grants (Supabase grants everything in public by default: take it back, then give what is meant)
revoke all on public.plans, public.modules, public.businesses, public.venues, public.memberships,
  public.membership_venues, public.business_subscriptions, public.business_subscription_lines,
  public.audit_log from anon, authenticated;
grant select on public.plans, public.modules to anon, authenticated;
-- A venue row is storefront data only (nothing private lives on it), so anon reads whole published
-- rows, exactly what a signed-in member of another business sees of them.
grant select on public.venues to anon;
grant select, insert, update, delete on public.venues to authenticated;
grant select, insert, update (name, currency, time_zone, modules_json, slug, status) on public.businesses
  to authenticated;
grant select, insert, update (role), delete on public.memberships to authenticated;
grant select, insert, delete on public.membership_venues to authenticated;
grant select on public.business_subscriptions, public.business_subscription_lines, public.audit_log
  to authenticated;
grant all on public.plans, public.modules, public.businesses, public.venues, public.memberships,
  public.membership_venues, public.business_subscriptions, public.business_subscription_lines,
  public.audit_log to service_role;

-- section rpc

/** Operator RPC: switch a module on or off for a business (the businesses trigger audits it,
    re-bills and emits business.module_changed). Callable by the platform operator and
    service_role. Raises 42501 (not the operator), PT404 (no such business), BR001 (unknown module). */
create function app.set_business_module(p_business_id uuid, p_module text, p_enabled boolean)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_before jsonb;
  v_after jsonb;
  v_total integer;
begin
  if not app.is_platform_or_service() then
    raise exception using errcode = '42501', message = 'only the platform operator may switch modules',
      hint = 'operator_only';
  end if;
  if p_enabled is null then
    raise exception using errcode = '22023', message = 'enabled must be true or false', hint = 'invalid_input';
  end if;
  if not exists (select 1 from public.modules m where m.key = p_module) then
    raise exception using errcode = 'BR001', message = format('unknown module %L', p_module),
      hint = 'unknown_module';
  end if;

  select b.modules_json into v_before from public.businesses b where b.id = p_business_id for update;
  if not found then
    raise exception using errcode = 'PT404', message = 'business not found', hint = 'not_found';
  end if;

  v_after := v_before || jsonb_build_object(p_module, p_enabled);
  if v_after is distinct from v_before then
    update public.businesses set modules_json = v_after where id = p_business_id;
  end if;
  select s.monthly_total_cents into v_total from public.business_subscriptions s
  where s.business_id = p_business_id;

  return jsonb_build_object('business_id', p_business_id, 'modules', v_after,
                            'changed', v_after is distinct from v_before,
                            'monthly_total_cents', v_total);
end
$$;
revoke all on function app.set_business_module(uuid, text, boolean) from public;
grant execute on function app.set_business_module(uuid, text, boolean) to authenticated, service_role;

/** PostgREST entry point for app.set_business_module (operator only; see there). */
create function public.set_business_module(business_id uuid, module text, enabled boolean)
returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.set_business_module(business_id, module, enabled)
$$;
revoke all on function public.set_business_module(uuid, text, boolean) from public, anon;
grant execute on function public.set_business_module(uuid, text, boolean) to authenticated, service_role;

/** The module map of a business, as the merchant dashboard's useModule() reads it on mount.
    Members and the operator only; raises 42501 otherwise. */
create function public.business_modules(business_id uuid) returns jsonb
language plpgsql stable
set search_path = ''
as $$
begin
  if not (app.is_member(business_modules.business_id) or app.is_platform_or_service()) then
    raise exception using errcode = '42501', message = 'not a member of this business', hint = 'not_member';
  end if;
  return (
    select jsonb_object_agg(m.key, coalesce((b.modules_json ->> m.key)::boolean, false) and b.status = 'active'
                            order by m.sort_order)
    from public.modules m cross join public.businesses b
    where b.id = business_modules.business_id
  );
end
$$;
revoke all on function public.business_modules(uuid) from public, anon;
grant execute on function public.business_modules(uuid) to authenticated, service_role;

-- section reference data
insert into public.plans (key, name, monthly_price_cents, sort_order) values
  ('starter', 'Starter', 2900, 1),
  ('growth', 'Growth', 7900, 2),
  ('professional', 'Professional', 19900, 3),
  ('enterprise', 'Enterprise', 49900, 4);

insert into public.modules (key, name, description, monthly_price_cents, sort_order) values
  ('ordering', 'Online ordering', 'Storefront, QR and phone orders paid through Stripe', 0, 1),
  ('bookings', 'Bookings', 'Timed sessions with capacity, paid holds and check-in', 2900, 2),
  ('crm', 'Customer CRM', 'Customer stats, segments, dossier and GDPR tools', 3900, 3),
  ('loyalty', 'Loyalty', 'Points, tiers and specific rewards', 2900, 4),
  ('campaigns', 'Campaigns', 'Automations and campaigns with revenue attribution', 4900, 5),
  ('voice', 'AI voice ordering', 'Phone orders over Twilio, billed in credits', 4900, 6),
  ('dispatch', 'Delivery dispatch', 'Own drivers first, then Uber Direct and DoorDash Drive', 5900, 7);
