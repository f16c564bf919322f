-- Deliveries: per-venue dispatch rules, the delivery status machine, offers to own drivers with
-- timeouts (delayed delivery.offer_expired events), fallback to Uber Direct / DoorDash Drive (the
-- worker books them), provider webhooks applied once and never backwards, live ETA from driver and
-- courier positions, proof of delivery closing the order, driver earnings and delivery costs.
-- Gated by the `dispatch` module. Error codes in docs/errors.md (BR5xx).

-- section types
create type public.delivery_status as enum
  ('pending', 'offering', 'booking', 'requested', 'assigned', 'picked_up', 'delivered', 'cancelled', 'failed');

-- section tables

/** How a venue dispatches: when (order ready, or ahead of it by the prep time), how long each offer
    stays open and to how many drivers at once, how long own drivers get before the courier networks
    (in which order), and the own-driver pay rules. A venue without a row uses the defaults. */
create table public.venue_dispatch_rules (
  business_id uuid not null,
  venue_id uuid not null,
  dispatch_on text not null default 'ready' constraint venue_dispatch_rules_dispatch_on_valid check (dispatch_on in ('ready', 'prep_time')),
  lead_minutes integer not null default 5 constraint venue_dispatch_rules_lead_range check (lead_minutes between 0 and 120),
  offer_timeout_seconds integer not null default 30 constraint venue_dispatch_rules_timeout_range check (offer_timeout_seconds between 5 and 600),
  offers_per_round integer not null default 1 constraint venue_dispatch_rules_offers_range check (offers_per_round between 1 and 10),
  own_driver_limit_seconds integer not null default 120 constraint venue_dispatch_rules_own_limit_range check (own_driver_limit_seconds between 0 and 3600),
  max_pickup_km numeric(6, 2) not null default 10 constraint venue_dispatch_rules_pickup_km_positive check (max_pickup_km > 0),
  fallback_providers text[] not null default '{uber,doordash}'
    constraint venue_dispatch_rules_providers_valid check (fallback_providers <@ '{uber,doordash}'::text[]),
  base_fee_cents integer not null default 300 constraint venue_dispatch_rules_base_fee_nonnegative check (base_fee_cents >= 0),
  per_km_cents integer not null default 80 constraint venue_dispatch_rules_per_km_nonnegative check (per_km_cents >= 0),
  surge_multiplier numeric(4, 2) not null default 1.00 constraint venue_dispatch_rules_surge_range check (surge_multiplier between 1 and 5),
  platform_fee_bps integer not null default 1000 constraint venue_dispatch_rules_platform_fee_range check (platform_fee_bps between 0 and 10000),
  average_speed_kmh numeric(5, 1) not null default 25 constraint venue_dispatch_rules_speed_positive check (average_speed_kmh > 0),
  load_penalty_km numeric(5, 2) not null default 2 constraint venue_dispatch_rules_load_penalty_nonnegative check (load_penalty_km >= 0),
  priority_penalty_km numeric(5, 2) not null default 0.5 constraint venue_dispatch_rules_priority_penalty_nonnegative check (priority_penalty_km >= 0),
  updated_at timestamptz not null default now(),
  constraint venue_dispatch_rules_pkey primary key (business_id, venue_id),
  constraint venue_dispatch_rules_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade
);
alter table public.venue_dispatch_rules enable row level security;

/** One delivery per delivery order (contract name `deliveries`): who holds it (an own driver or a
    courier network), its status (forward only), live ETA and courier position (Realtime), proof of
    delivery, and cost_cents — what the business pays for it (provider fee, or own driver's pay). */
create table public.deliveries (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  venue_id uuid not null,
  order_id uuid not null,
  status public.delivery_status not null default 'pending',
  provider text constraint deliveries_provider_valid check (provider in ('own', 'uber', 'doordash')),
  driver_business_id uuid,
  driver_id uuid,
  external_delivery_id text not null,
  provider_delivery_id text,
  quote_id text,
  tracking_url text,
  pickup jsonb not null,
  dropoff jsonb not null,
  pickup_latitude double precision,
  pickup_longitude double precision,
  dropoff_latitude double precision,
  dropoff_longitude double precision,
  distance_km numeric(8, 2),
  order_value_cents integer not null default 0,
  fee_cents integer not null default 0,
  tip_cents integer not null default 0,
  cost_cents bigint not null default 0 constraint deliveries_cost_nonnegative check (cost_cents >= 0),
  currency text not null,
  offer_round integer not null default 0,
  courier_name text,
  courier_phone text,
  courier_latitude double precision,
  courier_longitude double precision,
  courier_updated_at timestamptz,
  pickup_eta timestamptz,
  eta timestamptz,
  dropoff_pin text not null,
  proof_photo_url text,
  proof_signature_url text,
  proof_pin_verified boolean not null default false,
  proof_latitude double precision,
  proof_longitude double precision,
  rating smallint constraint deliveries_rating_range check (rating between 1 and 5),
  rated_at timestamptz,
  failure_reason text,
  cancel_reason text,
  cancel_requested_at timestamptz,
  cancel_refused_at timestamptz,
  cancel_refusal text,
  created_at timestamptz not null default now(),
  first_offered_at timestamptz,
  booked_at timestamptz,
  assigned_at timestamptz,
  picked_up_at timestamptz,
  delivered_at timestamptz,
  cancelled_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint deliveries_pkey primary key (business_id, id),
  constraint deliveries_order_key unique (business_id, order_id),
  constraint deliveries_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete cascade,
  constraint deliveries_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id),
  constraint deliveries_driver_fkey foreign key (driver_business_id, driver_id) references public.drivers (business_id, id),
  constraint deliveries_own_driver check (provider is distinct from 'own' or driver_id is not null)
);
alter table public.deliveries enable row level security;

/** An offer of a delivery to one own driver (contract name): open until expires_at, then accepted,
    declined, expired or withdrawn (another driver took it, or it was cancelled). */
create table public.delivery_offers (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  delivery_id uuid not null,
  venue_id uuid not null,
  driver_business_id uuid not null,
  driver_id uuid not null,
  round integer not null,
  score numeric(10, 3) not null,
  distance_km numeric(8, 2),
  status text not null default 'pending'
    constraint delivery_offers_status_valid check (status in ('pending', 'accepted', 'declined', 'expired', 'withdrawn')),
  decline_reason text,
  offered_at timestamptz not null default now(),
  expires_at timestamptz not null,
  responded_at timestamptz,
  constraint delivery_offers_pkey primary key (business_id, id),
  constraint delivery_offers_driver_key unique (business_id, delivery_id, driver_business_id, driver_id),
  constraint delivery_offers_delivery_fkey foreign key (business_id, delivery_id) references public.deliveries (business_id, id) on delete cascade,
  constraint delivery_offers_driver_fkey foreign key (driver_business_id, driver_id) references public.drivers (business_id, id) on delete cascade
);
alter table public.delivery_offers enable row level security;

/** Append-only ledger of what happened to a delivery (contract name): provider webhooks, recorded
    once by (source, external_event_id), with what applying them did; cancellations and refusals. */
create table public.delivery_events (
  business_id uuid not null,
  id bigint generated always as identity,
  delivery_id uuid not null,
  source text not null constraint delivery_events_source_valid check (source in ('uber', 'doordash', 'driver', 'system')),
  external_event_id text not null,
  kind text not null,
  mapped_status public.delivery_status,
  outcome text not null,
  payload jsonb not null default '{}'::jsonb,
  occurred_at timestamptz,
  received_at timestamptz not null default now(),
  constraint delivery_events_pkey primary key (business_id, id),
  constraint delivery_events_external_key unique (business_id, source, external_event_id),
  constraint delivery_events_delivery_fkey foreign key (business_id, delivery_id) references public.deliveries (business_id, id) on delete cascade
);
alter table public.delivery_events enable row level security;

/** What an own driver earned on one delivery (contract name): base, distance, tip, surge, the
    platform's fee and the net. business_id is the business the delivery was for. */
create table public.driver_earnings (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  delivery_id uuid not null,
  order_id uuid not null,
  venue_id uuid not null,
  driver_business_id uuid not null,
  driver_id uuid not null,
  base_fee_cents integer not null,
  distance_fee_cents integer not null,
  tip_cents integer not null,
  surge_multiplier numeric(4, 2) not null,
  surge_cents integer not null,
  platform_fee_cents integer not null,
  net_cents integer not null,
  currency text not null,
  payout_status text not null default 'pending' constraint driver_earnings_payout_status_valid check (payout_status in ('pending', 'paid')),
  earned_at timestamptz not null default now(),
  constraint driver_earnings_pkey primary key (business_id, id),
  constraint driver_earnings_delivery_key unique (business_id, delivery_id),
  constraint driver_earnings_delivery_fkey foreign key (business_id, delivery_id) references public.deliveries (business_id, id) on delete cascade,
  constraint driver_earnings_driver_fkey foreign key (driver_business_id, driver_id) references public.drivers (business_id, id),
  constraint driver_earnings_net check (net_cents = base_fee_cents + distance_fee_cents + surge_cents + tip_cents - platform_fee_cents)
);
alter table public.driver_earnings enable row level security;

-- section indexes
create index deliveries_venue_status_idx on public.deliveries (business_id, venue_id, status, created_at desc);
create index deliveries_driver_active_idx on public.deliveries (driver_business_id, driver_id)
  where status in ('assigned', 'picked_up');
create index deliveries_external_idx on public.deliveries (external_delivery_id);
create index deliveries_provider_delivery_idx on public.deliveries (provider, provider_delivery_id) where provider_delivery_id is not null;
create index delivery_offers_delivery_idx on public.delivery_offers (business_id, delivery_id, status);
create index delivery_offers_driver_idx on public.delivery_offers (driver_business_id, driver_id, status);
create index delivery_offers_pending_idx on public.delivery_offers (driver_business_id, driver_id) where status = 'pending';
create index delivery_events_delivery_idx on public.delivery_events (business_id, delivery_id, id);
create index driver_earnings_driver_idx on public.driver_earnings (driver_business_id, driver_id, earned_at);
create index driver_earnings_business_idx on public.driver_earnings (business_id, earned_at);

-- section private helpers

/** Order of the forward path; cancelled and failed end it from anywhere. */
create function app.delivery_rank(p_status public.delivery_status) returns integer
language sql immutable
set search_path = ''
as $$
  select case p_status when 'pending' then 0 when 'offering' then 1 when 'booking' then 2 when 'requested' then 3
                       when 'assigned' then 4 when 'picked_up' then 5 when 'delivered' then 9
                       when 'cancelled' then 9 when 'failed' then 9 end
$$;

/** The delivery status machine: forward along the path (skipping is fine: a courier network may not
    report every step), cancelled or failed from any open state; delivered, cancelled, failed are final. */
create function app.delivery_transition_allowed(p_from public.delivery_status, p_to public.delivery_status) returns boolean
language sql immutable
set search_path = ''
as $$
  select p_from not in ('delivered', 'cancelled', 'failed')
     and (p_to in ('cancelled', 'failed') or app.delivery_rank(p_to) > app.delivery_rank(p_from))
$$;

/** The venue's dispatch rules, created with the defaults on first use. */
create function app.dispatch_rules(p_business_id uuid, p_venue_id uuid) returns public.venue_dispatch_rules
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_rules public.venue_dispatch_rules;
begin
  select r.* into v_rules from public.venue_dispatch_rules r where r.business_id = p_business_id and r.venue_id = p_venue_id;
  if not found then
    insert into public.venue_dispatch_rules (business_id, venue_id) values (p_business_id, p_venue_id)
    on conflict do nothing;
    select r.* into v_rules from public.venue_dispatch_rules r where r.business_id = p_business_id and r.venue_id = p_venue_id;
  end if;
  return v_rules;
end
$$;
revoke all on function app.dispatch_rules(uuid, uuid) from public;
grant execute on function app.dispatch_rules(uuid, uuid) to service_role;

/** Estimated arrival at the drop-off from a position: via the pickup while the food is not picked up. */
create function app.delivery_eta(p_delivery public.deliveries, p_lat double precision, p_lon double precision,
                                 p_speed_kmh numeric, p_at timestamptz) returns timestamptz
language sql immutable
set search_path = ''
as $$
  select case
    when p_delivery.dropoff_latitude is null or p_lat is null then null
    when p_delivery.status in ('picked_up') or p_delivery.pickup_latitude is null then
      p_at + make_interval(secs => 3600 * app.distance_km(p_lat, p_lon, p_delivery.dropoff_latitude, p_delivery.dropoff_longitude) / p_speed_kmh)
    else
      p_at + make_interval(secs => 3600 * (app.distance_km(p_lat, p_lon, p_delivery.pickup_latitude, p_delivery.pickup_longitude)
                                           + app.distance_km(p_delivery.pickup_latitude, p_delivery.pickup_longitude,
                                                             p_delivery.dropoff_latitude, p_delivery.dropoff_longitude)) / p_speed_kmh)
  end
$$;

/** Estimated arrival at the pickup from a position (null once picked up or without coordinates). */
create function app.pickup_eta(p_delivery public.deliveries, p_lat double precision, p_lon double precision,
                               p_speed_kmh numeric, p_at timestamptz) returns timestamptz
language sql immutable
set search_path = ''
as $$
  select case when p_delivery.status in ('picked_up', 'delivered', 'cancelled', 'failed') or p_lat is null
                   or p_delivery.pickup_latitude is null then null
              else p_at + make_interval(secs => 3600 * app.distance_km(p_lat, p_lon, p_delivery.pickup_latitude,
                                                                       p_delivery.pickup_longitude) / p_speed_kmh) end
$$;

/** Own drivers who may take this delivery now, best first: active assignment to the business (and
    venue), online, available, inside an availability window, close enough, not offered this delivery
    before; dedicated before shared pool, then by score = km to the venue + load penalty × (deliveries
    in hand + offers open elsewhere) + priority penalty × (priority - 1). */
create function app.dispatch_candidates(p_delivery public.deliveries, p_rules public.venue_dispatch_rules)
returns table (driver_business_id uuid, driver_id uuid, pool text, distance_km double precision, score double precision)
language plpgsql stable security definer
set search_path = ''
as $$
#variable_conflict use_column
begin
  -- plpgsql, so the plan is cached across calls (a SQL function's body is planned on every call).
  -- set-based: the assigned, online drivers close enough first, then their load and windows in one
  -- pass each (not a query per driver), so a fleet of hundreds is scored in a few milliseconds
  return query
  with near as (
    select a.driver_business_id, a.driver_id, a.pool, a.priority, c.km
    from public.driver_business_assignments a
    join public.drivers d on d.business_id = a.driver_business_id and d.id = a.driver_id
    -- app.distance_km written out: a function with its own search_path is never inlined, and its
    -- per-row call cost dominated this query
    cross join lateral (select 2 * 6371.0 * asin(sqrt(
      power(sin(radians(p_delivery.pickup_latitude - d.latitude) / 2), 2)
      + cos(radians(d.latitude)) * cos(radians(p_delivery.pickup_latitude))
        * power(sin(radians(p_delivery.pickup_longitude - d.longitude) / 2), 2))) as km) c
    where a.business_id = p_delivery.business_id and a.is_active
      and (a.venue_id is null or a.venue_id = p_delivery.venue_id)
      and d.is_online and d.is_available
      and (c.km is null or c.km <= p_rules.max_pickup_km)
      and (a.driver_business_id = p_delivery.business_id or app.module_enabled(a.driver_business_id, 'dispatch'))
  ), load as (
    select x.driver_business_id, x.driver_id, count(*) as n
    from public.deliveries x join near using (driver_business_id, driver_id)
    where x.status in ('assigned', 'picked_up')
    group by 1, 2
    union all
    select y.driver_business_id, y.driver_id, count(*)
    from public.delivery_offers y join near using (driver_business_id, driver_id)
    where y.status = 'pending'
    group by 1, 2
  ), load_by_driver as (
    select l.driver_business_id, l.driver_id, sum(l.n) as n from load l group by 1, 2
  ), windows as (
    select w.business_id as driver_business_id, w.driver_id,
           bool_or((w.starts_at < w.ends_at and w.weekday = extract(dow from l.local)
                    and l.local::time >= w.starts_at and l.local::time < w.ends_at)
                or (w.starts_at > w.ends_at
                    and ((w.weekday = extract(dow from l.local) and l.local::time >= w.starts_at)
                      or ((w.weekday + 1) % 7 = extract(dow from l.local) and l.local::time < w.ends_at)))) as open_now
    from public.driver_availability_windows w
    join near on near.driver_business_id = w.business_id and near.driver_id = w.driver_id
    join public.businesses b on b.id = w.business_id
    cross join lateral (select (now() at time zone b.time_zone) as local) l
    where w.is_active
    group by 1, 2
  )
  select n.driver_business_id, n.driver_id, n.pool, n.km,
         coalesce(n.km, p_rules.max_pickup_km::float8)
           + p_rules.load_penalty_km::float8 * coalesce(lb.n, 0)
           + p_rules.priority_penalty_km::float8 * (n.priority - 1) as score
  from near n
  left join load_by_driver lb on lb.driver_business_id = n.driver_business_id and lb.driver_id = n.driver_id
  left join windows w on w.driver_business_id = n.driver_business_id and w.driver_id = n.driver_id
  where coalesce(w.open_now, true)
    and not exists (select 1 from public.delivery_offers o
                    where o.business_id = p_delivery.business_id and o.delivery_id = p_delivery.id
                      and o.driver_business_id = n.driver_business_id and o.driver_id = n.driver_id)
  order by (n.pool = 'dedicated') desc, 5, n.driver_id;
end
$$;
revoke all on function app.dispatch_candidates(public.deliveries, public.venue_dispatch_rules) from public;
grant execute on function app.dispatch_candidates(public.deliveries, public.venue_dispatch_rules) to service_role;

/** The next step of dispatching a delivery (caller holds its row lock): wait while offers are open;
    offer the next round to the best candidates; or, once no candidate is left or the venue's own-driver
    limit has passed, hand it to the courier networks (delivery.book_provider), or fail without them. */
create function app.offer_next(p_business_id uuid, p_delivery_id uuid) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_delivery public.deliveries;
  v_rules public.venue_dispatch_rules;
  v_candidate record;
  v_offer_id uuid;
  v_count integer := 0;
begin
  select d.* into v_delivery from public.deliveries d where d.business_id = p_business_id and d.id = p_delivery_id;
  if v_delivery.status not in ('pending', 'offering') then
    return 'not_dispatching';
  end if;
  if exists (select 1 from public.delivery_offers o where o.business_id = p_business_id and o.delivery_id = p_delivery_id
             and o.status = 'pending') then
    return 'waiting';
  end if;
  v_rules := app.dispatch_rules(v_delivery.business_id, v_delivery.venue_id);

  if v_rules.own_driver_limit_seconds > 0
     and (v_delivery.first_offered_at is null or now() < v_delivery.first_offered_at + make_interval(secs => v_rules.own_driver_limit_seconds)) then
    for v_candidate in select * from app.dispatch_candidates(v_delivery, v_rules) limit v_rules.offers_per_round loop
      insert into public.delivery_offers (business_id, delivery_id, venue_id, driver_business_id, driver_id, round, score,
                                          distance_km, expires_at)
      values (p_business_id, p_delivery_id, v_delivery.venue_id, v_candidate.driver_business_id, v_candidate.driver_id,
              v_delivery.offer_round + 1, round(v_candidate.score::numeric, 3), round(v_candidate.distance_km::numeric, 2),
              now() + make_interval(secs => v_rules.offer_timeout_seconds))
      returning id into v_offer_id;
      perform app.emit('delivery.offer_expired', p_business_id,
                       jsonb_build_object('offer_id', v_offer_id, 'delivery_id', p_delivery_id), v_rules.offer_timeout_seconds);
      v_count := v_count + 1;
    end loop;
  end if;

  if v_count > 0 then
    update public.deliveries set status = 'offering', offer_round = offer_round + 1,
      first_offered_at = coalesce(first_offered_at, now())
    where business_id = p_business_id and id = p_delivery_id;
    return 'offered';
  end if;

  if cardinality(v_rules.fallback_providers) = 0 then
    update public.deliveries set status = 'failed', failure_reason = 'no own driver accepted and no courier network is configured'
    where business_id = p_business_id and id = p_delivery_id;
    return 'failed';
  end if;
  update public.deliveries set status = 'booking' where business_id = p_business_id and id = p_delivery_id;
  perform app.emit('delivery.book_provider', p_business_id,
                   jsonb_build_object('delivery_id', p_delivery_id, 'providers', to_jsonb(v_rules.fallback_providers)));
  return 'booking';
end
$$;
revoke all on function app.offer_next(uuid, uuid) from public;
grant execute on function app.offer_next(uuid, uuid) to service_role;

/** Worker: create the delivery of a delivery order (once) and make its first dispatch step. Returns
    null when there is nothing to dispatch (not a delivery order, dispatch off, order closed). */
create function app.start_dispatch(p_business_id uuid, p_order_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_venue public.venues;
  v_id uuid := extensions.gen_random_uuid();
  v_delivery public.deliveries;
  v_step text;
  v_km numeric;
begin
  select o.* into v_order from public.orders o where o.business_id = p_business_id and o.id = p_order_id for update;
  if v_order.id is null or v_order.fulfilment <> 'delivery' or v_order.status in ('completed', 'cancelled')
     or not app.module_enabled(p_business_id, 'dispatch') then
    return null;
  end if;
  select v.* into v_venue from public.venues v where v.business_id = p_business_id and v.id = v_order.venue_id;
  if v_venue.latitude is not null and (v_order.delivery_address ->> 'latitude') is not null then
    v_km := round(app.distance_km(v_venue.latitude, v_venue.longitude, (v_order.delivery_address ->> 'latitude')::float8,
                                  (v_order.delivery_address ->> 'longitude')::float8)::numeric, 2);
  end if;
  insert into public.deliveries (business_id, id, venue_id, order_id, external_delivery_id, pickup, dropoff,
    pickup_latitude, pickup_longitude, dropoff_latitude, dropoff_longitude, distance_km, order_value_cents, fee_cents,
    tip_cents, currency, dropoff_pin)
  values (p_business_id, v_id, v_order.venue_id, v_order.id, 'brg-' || v_id::text,
    jsonb_build_object('name', v_venue.name, 'phone', v_venue.phone, 'address', v_venue.address),
    jsonb_build_object('name', v_order.guest_name, 'phone', v_order.guest_phone, 'address', v_order.delivery_address),
    v_venue.latitude, v_venue.longitude, (v_order.delivery_address ->> 'latitude')::float8,
    (v_order.delivery_address ->> 'longitude')::float8, v_km, v_order.subtotal_cents, v_order.delivery_fee_cents,
    v_order.tip_cents, v_order.currency, lpad((floor(random() * 10000))::int::text, 4, '0'))
  on conflict on constraint deliveries_order_key do nothing;

  select d.* into v_delivery from public.deliveries d where d.business_id = p_business_id and d.order_id = p_order_id for update;
  if v_delivery.status = 'pending' then
    v_step := app.offer_next(p_business_id, v_delivery.id);
  else
    v_step := 'already_' || v_delivery.status::text;
  end if;
  return jsonb_build_object('delivery_id', v_delivery.id, 'step', v_step);
end
$$;
revoke all on function app.start_dispatch(uuid, uuid) from public;
grant execute on function app.start_dispatch(uuid, uuid) to service_role;

/** Worker (delivery.offer_expired): close an offer still open at its expiry and take the next step.
    A message arriving before the expiry (a redelivery, a clock skew) is sent again for the rest. */
create function app.expire_offer(p_business_id uuid, p_offer_id uuid) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_offer public.delivery_offers;
begin
  select o.* into v_offer from public.delivery_offers o where o.business_id = p_business_id and o.id = p_offer_id;
  if v_offer.id is null then
    return 'unknown_offer';
  end if;
  perform 1 from public.deliveries d where d.business_id = p_business_id and d.id = v_offer.delivery_id for update;
  select o.* into v_offer from public.delivery_offers o where o.business_id = p_business_id and o.id = p_offer_id;
  if v_offer.status <> 'pending' then
    return 'already_' || v_offer.status;
  end if;
  if v_offer.expires_at > clock_timestamp() + interval '1 second' then
    perform app.emit('delivery.offer_expired', p_business_id,
                     jsonb_build_object('offer_id', p_offer_id, 'delivery_id', v_offer.delivery_id),
                     ceil(extract(epoch from v_offer.expires_at - clock_timestamp()))::integer);
    return 'not_yet';
  end if;
  update public.delivery_offers set status = 'expired', responded_at = now()
  where business_id = p_business_id and id = p_offer_id;
  return 'expired:' || app.offer_next(p_business_id, v_offer.delivery_id);
end
$$;
revoke all on function app.expire_offer(uuid, uuid) from public;
grant execute on function app.expire_offer(uuid, uuid) to service_role;

/** A driver answers an offer (see public.respond_offer). */
create function app.respond_offer(p_offer_id uuid, p_accept boolean, p_reason text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_offer public.delivery_offers;
  v_delivery public.deliveries;
  v_rules public.venue_dispatch_rules;
  v_driver public.drivers;
  v_next text;
begin
  select o.* into v_offer from public.delivery_offers o
  where o.id = p_offer_id
    and (o.driver_business_id, o.driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k);
  if v_offer.id is null then
    perform app.fail('PT404', 'offer_not_found', 'no such offer for you');
  end if;
  perform app.require_module(v_offer.business_id, 'dispatch');
  select d.* into v_delivery from public.deliveries d
  where d.business_id = v_offer.business_id and d.id = v_offer.delivery_id for update;
  select o.* into v_offer from public.delivery_offers o where o.business_id = v_offer.business_id and o.id = p_offer_id;
  if v_offer.status <> 'pending' or v_offer.expires_at <= now() or v_delivery.status <> 'offering' then
    perform app.fail('BR502', 'offer_closed', format('the offer is %s', case when v_offer.status = 'pending' then 'expired' else v_offer.status end));
  end if;

  if not coalesce(p_accept, false) then
    update public.delivery_offers set status = 'declined', responded_at = now(), decline_reason = left(p_reason, 200)
    where business_id = v_offer.business_id and id = p_offer_id;
    v_next := app.offer_next(v_offer.business_id, v_offer.delivery_id);
    return jsonb_build_object('offer_id', p_offer_id, 'status', 'declined', 'next', v_next);
  end if;

  update public.delivery_offers set status = 'accepted', responded_at = now()
  where business_id = v_offer.business_id and id = p_offer_id;
  update public.delivery_offers set status = 'withdrawn', responded_at = now()
  where business_id = v_offer.business_id and delivery_id = v_offer.delivery_id and status = 'pending';
  select d.* into v_driver from public.drivers d where d.business_id = v_offer.driver_business_id and d.id = v_offer.driver_id;
  v_rules := app.dispatch_rules(v_delivery.business_id, v_delivery.venue_id);
  v_delivery.status := 'assigned';
  update public.deliveries set status = 'assigned', provider = 'own', driver_business_id = v_offer.driver_business_id,
    driver_id = v_offer.driver_id, courier_name = v_driver.display_name, courier_phone = v_driver.phone,
    courier_latitude = v_driver.latitude, courier_longitude = v_driver.longitude, courier_updated_at = v_driver.location_at,
    eta = app.delivery_eta(v_delivery, v_driver.latitude, v_driver.longitude, v_rules.average_speed_kmh, now()),
    pickup_eta = app.pickup_eta(v_delivery, v_driver.latitude, v_driver.longitude, v_rules.average_speed_kmh, now())
  where business_id = v_offer.business_id and id = v_offer.delivery_id;
  return jsonb_build_object('offer_id', p_offer_id, 'status', 'accepted', 'delivery_id', v_offer.delivery_id);
end
$$;
revoke all on function app.respond_offer(uuid, boolean, text) from public;
grant execute on function app.respond_offer(uuid, boolean, text) to authenticated, service_role;

/** Worker: a courier network took the delivery (after quote and create). Idempotent; when the
    delivery was cancelled meanwhile, answers 'cancel_at_provider' so the worker cancels the booking. */
create function app.record_provider_booking(p_business_id uuid, p_delivery_id uuid, p_provider text, p_provider_delivery_id text,
                                            p_quote_id text, p_fee_cents integer, p_tracking_url text,
                                            p_pickup_eta timestamptz, p_dropoff_eta timestamptz) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_delivery public.deliveries;
begin
  select d.* into v_delivery from public.deliveries d where d.business_id = p_business_id and d.id = p_delivery_id for update;
  if v_delivery.id is null then
    return 'unknown_delivery';
  end if;
  if v_delivery.provider = p_provider and v_delivery.provider_delivery_id = p_provider_delivery_id then
    return 'already_booked';
  end if;
  if v_delivery.status = 'cancelled' then
    insert into public.delivery_events (business_id, delivery_id, source, external_event_id, kind, outcome, payload)
    values (p_business_id, p_delivery_id, 'system', 'booked-after-cancel:' || p_provider_delivery_id, 'booking', 'cancel_at_provider',
            jsonb_build_object('provider', p_provider, 'provider_delivery_id', p_provider_delivery_id))
    on conflict do nothing;
    return 'cancel_at_provider';
  end if;
  if v_delivery.status <> 'booking' then
    return 'not_booking';
  end if;
  update public.deliveries set status = 'requested', provider = p_provider, provider_delivery_id = p_provider_delivery_id,
    quote_id = p_quote_id, cost_cents = greatest(coalesce(p_fee_cents, 0), 0) + tip_cents, tracking_url = p_tracking_url,
    pickup_eta = p_pickup_eta, eta = p_dropoff_eta, booked_at = now()
  where business_id = p_business_id and id = p_delivery_id;
  insert into public.delivery_events (business_id, delivery_id, source, external_event_id, kind, mapped_status, outcome, payload)
  values (p_business_id, p_delivery_id, 'system', 'booked:' || p_provider || ':' || p_provider_delivery_id, 'booking', 'requested', 'applied',
          jsonb_build_object('provider', p_provider, 'provider_delivery_id', p_provider_delivery_id, 'fee_cents', p_fee_cents,
                             'quote_id', p_quote_id))
  on conflict do nothing;
  return 'booked';
end
$$;
revoke all on function app.record_provider_booking(uuid, uuid, text, text, text, integer, text, timestamptz, timestamptz) from public;
grant execute on function app.record_provider_booking(uuid, uuid, text, text, text, integer, text, timestamptz, timestamptz) to service_role;

/** Worker: every courier network refused (or failed); the delivery fails with the reasons. */
create function app.fail_delivery(p_business_id uuid, p_delivery_id uuid, p_reason text) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_status public.delivery_status;
begin
  select d.status into v_status from public.deliveries d where d.business_id = p_business_id and d.id = p_delivery_id for update;
  if v_status is distinct from 'booking' then
    return 'not_booking';
  end if;
  update public.deliveries set status = 'failed', failure_reason = left(p_reason, 1000)
  where business_id = p_business_id and id = p_delivery_id;
  return 'failed';
end
$$;
revoke all on function app.fail_delivery(uuid, uuid, text) from public;
grant execute on function app.fail_delivery(uuid, uuid, text) to service_role;

/** Completes the order of a delivered delivery (moving it through ready when dispatched ahead). */
create function app.complete_delivered_order(p_business_id uuid, p_order_id uuid) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_status public.order_status;
begin
  select o.status into v_status from public.orders o where o.business_id = p_business_id and o.id = p_order_id for update;
  if v_status in ('accepted', 'preparing') then
    update public.orders set status = 'ready' where business_id = p_business_id and id = p_order_id;
    v_status := 'ready';
  end if;
  if v_status = 'ready' then
    update public.orders set status = 'completed' where business_id = p_business_id and id = p_order_id;
  end if;
end
$$;
revoke all on function app.complete_delivered_order(uuid, uuid) from public;

/** Provider status word → our status (null: recorded, no status change). */
create function app.map_provider_status(p_provider text, p_kind text) returns public.delivery_status
language sql immutable
set search_path = ''
as $$
  select case p_provider
    when 'uber' then case p_kind
      when 'pending' then 'requested' when 'pickup' then 'assigned' when 'pickup_complete' then 'picked_up'
      when 'dropoff' then 'picked_up' when 'delivered' then 'delivered' when 'canceled' then 'cancelled'
      when 'returned' then 'cancelled' end
    when 'doordash' then case p_kind
      when 'DELIVERY_CREATED' then 'requested' when 'DASHER_CONFIRMED' then 'assigned'
      when 'DASHER_ENROUTE_TO_PICKUP' then 'assigned' when 'DASHER_CONFIRMED_PICKUP_ARRIVAL' then 'assigned'
      when 'DASHER_PICKED_UP' then 'picked_up' when 'DASHER_ENROUTE_TO_DROPOFF' then 'picked_up'
      when 'DASHER_CONFIRMED_DROPOFF_ARRIVAL' then 'picked_up' when 'DASHER_DROPPED_OFF' then 'delivered'
      when 'DELIVERY_CANCELLED' then 'cancelled' end
  end::public.delivery_status
$$;

/** Function delivery-webhook: apply one verified Uber Direct or DoorDash Drive webhook. Recorded once
    (Uber: the event id; DoorDash: event name + delivery + time); the status only moves forward and the
    courier position only to a newer one, so duplicates and any arrival order end in one state.
    Returns the outcome: applied, position, stale, duplicate, ignored, unknown_delivery. */
create function app.apply_delivery_webhook(p_provider text, p_event jsonb) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_data jsonb;
  v_kind text;
  v_event_id text;
  v_ours text;
  v_theirs text;
  v_at timestamptz;
  v_lat double precision;
  v_lon double precision;
  v_eta timestamptz;
  v_fee integer;
  v_delivery public.deliveries;
  v_status public.delivery_status;
  v_outcome text;
  v_new_position boolean;
  v_after public.deliveries;
begin
  if p_provider = 'uber' then
    v_data := coalesce(p_event -> 'data', '{}'::jsonb);
    v_kind := case when p_event ->> 'kind' = 'event.courier_update' then 'courier_update'
                   else coalesce(p_event ->> 'status', v_data ->> 'status') end;
    v_event_id := p_event ->> 'id';
    v_ours := v_data ->> 'external_id';
    v_theirs := coalesce(p_event ->> 'delivery_id', v_data ->> 'id');
    v_at := coalesce((p_event ->> 'created')::timestamptz, (v_data ->> 'updated')::timestamptz, now());
    v_lat := coalesce((v_data #>> '{courier,location,lat}')::float8, (p_event #>> '{location,lat}')::float8);
    v_lon := coalesce((v_data #>> '{courier,location,lng}')::float8, (p_event #>> '{location,lng}')::float8);
    v_eta := (v_data ->> 'dropoff_eta')::timestamptz;
    v_fee := (v_data ->> 'fee')::integer;
  elsif p_provider = 'doordash' then
    v_data := p_event;
    v_kind := p_event ->> 'event_name';
    v_ours := p_event ->> 'external_delivery_id';
    v_at := coalesce((p_event ->> 'created_at')::timestamptz, now());
    v_event_id := v_kind || ':' || coalesce(v_ours, '') || ':' || coalesce(p_event ->> 'created_at', '');
    v_lat := (p_event #>> '{dasher_location,lat}')::float8;
    v_lon := (p_event #>> '{dasher_location,lng}')::float8;
    v_eta := (p_event ->> 'dropoff_time_estimated')::timestamptz;
    v_fee := (p_event ->> 'fee')::integer;
  else
    perform app.fail('22023', 'unknown_provider', format('unknown delivery provider %L', p_provider));
  end if;
  if v_kind is null or v_event_id is null then
    perform app.fail('22023', 'invalid_event', 'the event has no id or kind');
  end if;

  select d.* into v_delivery from public.deliveries d
  where (v_ours is not null and d.external_delivery_id = v_ours)
     or (v_theirs is not null and d.provider = p_provider and d.provider_delivery_id = v_theirs)
  limit 1;
  if v_delivery.id is null then
    return 'unknown_delivery';
  end if;
  select d.* into v_delivery from public.deliveries d where d.business_id = v_delivery.business_id and d.id = v_delivery.id for update;

  -- the delivery's row lock serialises its events, so this check sees every earlier one
  if exists (select 1 from public.delivery_events e where e.business_id = v_delivery.business_id and e.source = p_provider
             and e.external_event_id = v_event_id) then
    return 'duplicate';
  end if;
  v_status := app.map_provider_status(p_provider, v_kind);

  if v_delivery.provider is distinct from p_provider then
    v_outcome := 'ignored';  -- another network (or an own driver) holds this delivery
  else
    v_new_position := v_lat is not null and v_delivery.status not in ('delivered', 'cancelled', 'failed')
                      and (v_delivery.courier_updated_at is null or v_at > v_delivery.courier_updated_at);
    -- the position first, while the delivery is open (a final event carries the last one); the ETA
    -- is computed for the status the event brings (picked up: straight to the drop-off)
    if v_new_position then
      v_after := v_delivery;
      if v_status is not null and app.delivery_transition_allowed(v_delivery.status, v_status) then
        v_after.status := v_status;
      end if;
      update public.deliveries x set courier_latitude = v_lat, courier_longitude = v_lon, courier_updated_at = v_at,
        eta = coalesce(v_eta, app.delivery_eta(v_after, v_lat, v_lon, (app.dispatch_rules(x.business_id, x.venue_id)).average_speed_kmh, v_at))
      where x.business_id = v_delivery.business_id and x.id = v_delivery.id;
    end if;
    if v_status is not null and app.delivery_transition_allowed(v_delivery.status, v_status) then
      v_outcome := 'applied';
      update public.deliveries set status = v_status,
        cost_cents = case when v_status = 'cancelled' and v_delivery.status in ('requested') then 0
                          when v_fee is not null and v_status <> 'cancelled' then v_fee + tip_cents else cost_cents end,
        failure_reason = case when v_kind = 'returned' then 'returned to the venue' else failure_reason end,
        cancel_reason = case when v_status = 'cancelled' then coalesce(cancel_reason, p_provider || ': ' || v_kind) else cancel_reason end,
        courier_name = coalesce(v_data #>> '{courier,name}', v_data ->> 'dasher_name', courier_name),
        courier_phone = coalesce(v_data #>> '{courier,phone_number}', v_data ->> 'dasher_dropoff_phone_number', courier_phone),
        tracking_url = coalesce(v_data ->> 'tracking_url', tracking_url),
        proof_photo_url = coalesce(v_data #>> '{dropoff,verification,picture,image_url}', v_data ->> 'dropoff_verification_image_url', proof_photo_url),
        proof_signature_url = coalesce(v_data #>> '{dropoff,verification,signature,image_url}', v_data ->> 'dropoff_signature_image_url', proof_signature_url)
      where business_id = v_delivery.business_id and id = v_delivery.id;
      if v_eta is not null and not v_new_position and v_status not in ('delivered', 'cancelled', 'failed') then
        update public.deliveries set eta = v_eta where business_id = v_delivery.business_id and id = v_delivery.id;
      end if;
    elsif v_new_position then
      v_outcome := 'position';
    else
      v_outcome := 'stale';
    end if;
  end if;
  insert into public.delivery_events (business_id, delivery_id, source, external_event_id, kind, mapped_status, outcome, payload, occurred_at)
  values (v_delivery.business_id, v_delivery.id, p_provider, v_event_id, v_kind, v_status, v_outcome, p_event, v_at);
  return v_outcome;
end
$$;
revoke all on function app.apply_delivery_webhook(text, jsonb) from public;
grant execute on function app.apply_delivery_webhook(text, jsonb) to service_role;

/** Staff (or the order's cancellation) cancel a delivery: at once when nobody outside holds it;
    through the courier network when one does (delivery.cancel_requested; its refusal is recorded on
    the delivery). Raises BR504 once delivered or closed. */
create function app.request_delivery_cancel(p_business_id uuid, p_delivery_id uuid, p_reason text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_delivery public.deliveries;
begin
  select d.* into v_delivery from public.deliveries d where d.business_id = p_business_id and d.id = p_delivery_id for update;
  if v_delivery.status in ('delivered', 'cancelled', 'failed') then
    perform app.fail('BR504', 'delivery_closed', format('the delivery is already %s', v_delivery.status));
  end if;
  if nullif(trim(p_reason), '') is null then
    perform app.fail('BR505', 'cancel_reason_required', 'cancelling a delivery needs a reason');
  end if;
  if v_delivery.provider in ('uber', 'doordash') then
    update public.deliveries set cancel_requested_at = now(), cancel_reason = left(p_reason, 500),
      cancel_refused_at = null, cancel_refusal = null
    where business_id = p_business_id and id = p_delivery_id;
    perform app.emit('delivery.cancel_requested', p_business_id,
                     jsonb_build_object('delivery_id', p_delivery_id, 'provider', v_delivery.provider,
                                        'provider_delivery_id', v_delivery.provider_delivery_id,
                                        'external_delivery_id', v_delivery.external_delivery_id));
    return jsonb_build_object('delivery_id', p_delivery_id, 'status', 'cancel_requested', 'provider', v_delivery.provider);
  end if;
  update public.delivery_offers set status = 'withdrawn', responded_at = now()
  where business_id = p_business_id and delivery_id = p_delivery_id and status = 'pending';
  update public.deliveries set status = 'cancelled', cancel_reason = left(p_reason, 500), cost_cents = 0
  where business_id = p_business_id and id = p_delivery_id;
  return jsonb_build_object('delivery_id', p_delivery_id, 'status', 'cancelled', 'provider', v_delivery.provider);
end
$$;
revoke all on function app.request_delivery_cancel(uuid, uuid, text) from public;
grant execute on function app.request_delivery_cancel(uuid, uuid, text) to service_role;

/** Worker: what the courier network answered to a cancellation. Accepted: cancelled (with the fee it
    charged, if any). Refused (too late): recorded on the delivery and in its events, status unchanged. */
create function app.record_cancel_result(p_business_id uuid, p_delivery_id uuid, p_cancelled boolean, p_message text,
                                         p_fee_cents integer default null) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_delivery public.deliveries;
begin
  select d.* into v_delivery from public.deliveries d where d.business_id = p_business_id and d.id = p_delivery_id for update;
  if v_delivery.id is null then
    return 'unknown_delivery';
  end if;
  insert into public.delivery_events (business_id, delivery_id, source, external_event_id, kind, mapped_status, outcome, payload)
  values (p_business_id, p_delivery_id, 'system', 'cancel:' || coalesce(v_delivery.cancel_requested_at::text, now()::text),
          'cancel', case when p_cancelled then 'cancelled'::public.delivery_status end,
          case when p_cancelled then 'cancelled' else 'refused' end,
          jsonb_build_object('provider', v_delivery.provider, 'message', p_message, 'fee_cents', p_fee_cents))
  on conflict do nothing;
  if p_cancelled then
    if v_delivery.status not in ('delivered', 'cancelled', 'failed') then
      update public.deliveries set status = 'cancelled', cost_cents = coalesce(p_fee_cents, 0)
      where business_id = p_business_id and id = p_delivery_id;
    end if;
    return 'cancelled';
  end if;
  update public.deliveries set cancel_refused_at = now(), cancel_refusal = left(coalesce(p_message, 'refused'), 500)
  where business_id = p_business_id and id = p_delivery_id;
  return 'refused';
end
$$;
revoke all on function app.record_cancel_result(uuid, uuid, boolean, text, integer) from public;
grant execute on function app.record_cancel_result(uuid, uuid, boolean, text, integer) to service_role;

/** What an own driver's delivery pays, by the venue's rules, as a driver_earnings row (once). */
create function app.record_driver_earnings(p_delivery public.deliveries) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_rules public.venue_dispatch_rules := app.dispatch_rules(p_delivery.business_id, p_delivery.venue_id);
  v_distance integer := round(coalesce(p_delivery.distance_km, 0) * v_rules.per_km_cents)::integer;
  v_surge integer := round((v_rules.base_fee_cents + v_distance) * (v_rules.surge_multiplier - 1))::integer;
  v_platform integer := round((v_rules.base_fee_cents + v_distance + v_surge) * v_rules.platform_fee_bps / 10000.0)::integer;
begin
  insert into public.driver_earnings (business_id, delivery_id, order_id, venue_id, driver_business_id, driver_id, base_fee_cents,
    distance_fee_cents, tip_cents, surge_multiplier, surge_cents, platform_fee_cents, net_cents, currency)
  values (p_delivery.business_id, p_delivery.id, p_delivery.order_id, p_delivery.venue_id, p_delivery.driver_business_id,
    p_delivery.driver_id, v_rules.base_fee_cents, v_distance, p_delivery.tip_cents, v_rules.surge_multiplier, v_surge, v_platform,
    v_rules.base_fee_cents + v_distance + v_surge + p_delivery.tip_cents - v_platform, p_delivery.currency)
  on conflict on constraint driver_earnings_delivery_key do nothing;
  -- the business pays the driver's gross (base, distance, surge and the customer's tip)
  return v_rules.base_fee_cents + v_distance + v_surge + p_delivery.tip_cents;
end
$$;
revoke all on function app.record_driver_earnings(public.deliveries) from public;

/** The assigned own driver moves the delivery along (see public.update_delivery_status and
    public.complete_delivery). */
create function app.driver_delivery_update(p_delivery_id uuid, p_status public.delivery_status, p_proof jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_delivery public.deliveries;
  v_driver public.drivers;
  v_pin text := nullif(trim(p_proof ->> 'pin'), '');
  v_photo text := nullif(trim(p_proof ->> 'photo_url'), '');
  v_signature text := nullif(trim(p_proof ->> 'signature_url'), '');
  v_cost integer;
begin
  select d.* into v_delivery from public.deliveries d
  where d.id = p_delivery_id
    and (d.driver_business_id, d.driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k)
  for update;
  if v_delivery.id is null then
    perform app.fail('PT404', 'delivery_not_found', 'no such delivery assigned to you');
  end if;
  perform app.require_module(v_delivery.business_id, 'dispatch');
  if p_status not in ('picked_up', 'delivered') then
    perform app.fail('22023', 'invalid_status', 'a driver reports picked_up or delivered');
  end if;
  if not app.delivery_transition_allowed(v_delivery.status, p_status) then
    perform app.fail('BR501', 'illegal_transition', format('a delivery cannot go from %s to %s', v_delivery.status, p_status));
  end if;
  if p_status = 'picked_up' then
    update public.deliveries set status = 'picked_up' where business_id = v_delivery.business_id and id = v_delivery.id;
    return jsonb_build_object('delivery_id', v_delivery.id, 'status', 'picked_up');
  end if;

  -- proof of delivery: a photo, a signature or the customer's PIN (a wrong PIN is refused)
  if v_pin is null and v_photo is null and v_signature is null then
    perform app.fail('BR506', 'proof_required', 'delivering needs a photo, a signature or the customer''s PIN');
  end if;
  if v_pin is not null and v_pin <> v_delivery.dropoff_pin then
    perform app.fail('BR507', 'wrong_pin', 'the PIN does not match');
  end if;
  if (v_photo is not null and v_photo !~ '^https?://') or (v_signature is not null and v_signature !~ '^https?://') then
    perform app.fail('22023', 'invalid_proof_url', 'proof URLs must be http(s) URLs');
  end if;
  select d.* into v_driver from public.drivers d where d.business_id = v_delivery.driver_business_id and d.id = v_delivery.driver_id;
  v_delivery.status := 'delivered';
  v_cost := app.record_driver_earnings(v_delivery);
  update public.deliveries set status = 'delivered', proof_photo_url = v_photo, proof_signature_url = v_signature,
    proof_pin_verified = v_pin is not null, cost_cents = v_cost,
    proof_latitude = coalesce((p_proof ->> 'latitude')::float8, v_driver.latitude),
    proof_longitude = coalesce((p_proof ->> 'longitude')::float8, v_driver.longitude)
  where business_id = v_delivery.business_id and id = v_delivery.id;
  update public.drivers set total_deliveries = total_deliveries + 1
  where business_id = v_delivery.driver_business_id and id = v_delivery.driver_id;
  return jsonb_build_object('delivery_id', v_delivery.id, 'status', 'delivered', 'cost_cents', v_cost);
end
$$;
revoke all on function app.driver_delivery_update(uuid, public.delivery_status, jsonb) from public;
grant execute on function app.driver_delivery_update(uuid, public.delivery_status, jsonb) to authenticated, service_role;

/** Contract for payouts (issue 9): what the deliveries of an order cost the business, in cents
    (provider fees, or own drivers' pay; 0 when none). */
create function app.order_delivery_cost(order_id uuid) returns bigint
language sql stable security definer
set search_path = ''
as $$
  select coalesce(sum(d.cost_cents), 0)::bigint from public.deliveries d where d.order_id = order_delivery_cost.order_id
$$;
revoke all on function app.order_delivery_cost(uuid) from public;
grant execute on function app.order_delivery_cost(uuid) to service_role;

-- section triggers

/** The status machine and its timestamps; an illegal or backwards move raises BR501. */
create function app.tg_deliveries_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status is distinct from old.status then
    if not app.delivery_transition_allowed(old.status, new.status) then
      perform app.fail('BR501', 'illegal_transition', format('a delivery cannot go from %s to %s', old.status, new.status));
    end if;
    case new.status
      when 'assigned' then new.assigned_at := coalesce(new.assigned_at, now());
      when 'picked_up' then new.picked_up_at := coalesce(new.picked_up_at, now()); new.assigned_at := coalesce(new.assigned_at, now());
      when 'delivered' then new.delivered_at := coalesce(new.delivered_at, now()); new.eta := null;
      when 'cancelled' then new.cancelled_at := coalesce(new.cancelled_at, now()); new.eta := null;
      else null;
    end case;
  end if;
  new.updated_at := now();
  return new;
end
$$;

/** After a status change: the customer's SMS with the tracking link (a notification_log row per
    status), the status event, and closing the order when delivered. */
create function app.tg_deliveries_status_changed() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_phone text;
  v_customer uuid;
begin
  if new.status in ('assigned', 'picked_up', 'delivered', 'cancelled') then
    select o.guest_phone, o.customer_id into v_phone, v_customer from public.orders o
    where o.business_id = new.business_id and o.id = new.order_id;
    if v_phone is not null then
      insert into public.notification_log (business_id, event_key, channel, recipient, template, order_id, customer_id, venue_id)
      values (new.business_id, 'delivery.' || new.status || ':' || new.id, 'sms', v_phone, 'delivery_' || new.status,
              new.order_id, v_customer, new.venue_id)
      on conflict on constraint notification_log_natural_key do nothing;
    end if;
  end if;
  perform app.emit('delivery.status_changed', new.business_id, jsonb_build_object(
    'delivery_id', new.id, 'order_id', new.order_id, 'from', old.status, 'to', new.status, 'provider', new.provider));
  if new.status = 'delivered' then
    perform app.complete_delivered_order(new.business_id, new.order_id);
  end if;
  return null;
end
$$;

/** Orders hook: a delivery order marked ready (or accepted, when the venue dispatches ahead by prep
    time) asks the worker to dispatch it; a cancelled order cancels its delivery. */
create function app.tg_orders_dispatch() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_rules public.venue_dispatch_rules;
  v_prep integer;
  v_delivery uuid;
begin
  if new.fulfilment <> 'delivery' or not app.module_enabled(new.business_id, 'dispatch') then
    return null;
  end if;
  if new.status = 'cancelled' then
    select d.id into v_delivery from public.deliveries d
    where d.business_id = new.business_id and d.order_id = new.id and d.status not in ('delivered', 'cancelled', 'failed');
    if v_delivery is not null then
      perform app.request_delivery_cancel(new.business_id, v_delivery, 'order cancelled: ' || coalesce(new.cancel_reason, ''));
    end if;
    return null;
  end if;
  v_rules := app.dispatch_rules(new.business_id, new.venue_id);
  if new.status = 'ready' then
    perform app.emit('delivery.requested', new.business_id, jsonb_build_object('order_id', new.id, 'trigger', 'ready'));
  elsif new.status = 'accepted' and v_rules.dispatch_on = 'prep_time' then
    select coalesce(max(p.prep_time_minutes), 0) into v_prep
    from public.order_items i join public.products p on p.business_id = i.business_id and p.id = i.product_id
    where i.business_id = new.business_id and i.order_id = new.id;
    perform app.emit('delivery.requested', new.business_id, jsonb_build_object('order_id', new.id, 'trigger', 'prep_time'),
                     greatest(0, (v_prep - v_rules.lead_minutes) * 60));
  end if;
  return null;
end
$$;

/** A driver's new position: their last known position, and the courier position and ETA of their
    open delivery (what the customer's tracking page shows through Realtime). Older positions
    arriving late change nothing. The transaction commits without waiting for its WAL flush: a
    position is superseded seconds later, so losing the last few hundred milliseconds of them in a
    crash costs nothing, and not waiting multiplies the positions a core can take. */
create function app.tg_driver_locations_apply() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  perform set_config('synchronous_commit', 'off', true);
  update public.drivers set latitude = new.latitude, longitude = new.longitude, location_at = new.recorded_at
  where business_id = new.business_id and id = new.driver_id
    and (location_at is null or location_at < new.recorded_at);
  if found then
    update public.deliveries x set courier_latitude = new.latitude, courier_longitude = new.longitude,
      courier_updated_at = new.recorded_at,
      eta = app.delivery_eta(x, new.latitude, new.longitude,
                             coalesce((select r.average_speed_kmh from public.venue_dispatch_rules r
                                       where r.business_id = x.business_id and r.venue_id = x.venue_id), 25), new.recorded_at),
      pickup_eta = case when x.status = 'assigned' then
                     app.pickup_eta(x, new.latitude, new.longitude,
                                    coalesce((select r.average_speed_kmh from public.venue_dispatch_rules r
                                              where r.business_id = x.business_id and r.venue_id = x.venue_id), 25), new.recorded_at)
                   else x.pickup_eta end
    where x.driver_business_id = new.business_id and x.driver_id = new.driver_id and x.status in ('assigned', 'picked_up');
  end if;
  return null;
end
$$;

create trigger deliveries_guard before update on public.deliveries
  for each row execute function app.tg_deliveries_guard();
create trigger deliveries_status_changed after update of status on public.deliveries
  for each row when (old.status is distinct from new.status) execute function app.tg_deliveries_status_changed();
create trigger orders_dispatch after update of status on public.orders
  for each row when (old.status is distinct from new.status and new.fulfilment = 'delivery')
  execute function app.tg_orders_dispatch();
create trigger driver_locations_apply after insert on public.driver_locations
  for each row execute function app.tg_driver_locations_apply();
create trigger delivery_events_append_only before update or delete on public.delivery_events
  for each row execute function app.tg_append_only();
create trigger venue_dispatch_rules_touch before update on public.venue_dispatch_rules
  for each row execute function app.tg_touch_updated_at();

-- section policies

create policy "staff read dispatch rules of their venues" on public.venue_dispatch_rules for select to authenticated
  using (app.module_enabled(business_id, 'dispatch')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "managers set dispatch rules" on public.venue_dispatch_rules for insert to authenticated
  with check (app.module_enabled(business_id, 'dispatch')
              and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers change dispatch rules" on public.venue_dispatch_rules for update to authenticated
  using (app.module_enabled(business_id, 'dispatch')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k))
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));

create policy "staff read deliveries of their venues" on public.deliveries for select to authenticated
  using (app.module_enabled(business_id, 'dispatch')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "drivers read their deliveries" on public.deliveries for select to authenticated
  using (app.module_enabled(business_id, 'dispatch')
         and (driver_business_id, driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));
create policy "customers read deliveries of their orders" on public.deliveries for select to authenticated
  using (app.module_enabled(business_id, 'dispatch')
         and (business_id, order_id) in (select o.business_id, o.id from public.orders o where o.user_id = (select auth.uid())));

create policy "staff read offers of their venues" on public.delivery_offers for select to authenticated
  using (app.module_enabled(business_id, 'dispatch')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "drivers read their offers" on public.delivery_offers for select to authenticated
  using (app.module_enabled(business_id, 'dispatch')
         and (driver_business_id, driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));

create policy "managers read delivery events" on public.delivery_events for select to authenticated
  using (app.module_enabled(business_id, 'dispatch') and business_id in (select app.my_business_ids('{owner,manager}')));

create policy "drivers read their earnings" on public.driver_earnings for select to authenticated
  using ((driver_business_id, driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));
create policy "owners and managers read driver earnings" on public.driver_earnings for select to authenticated
  using (app.module_enabled(business_id, 'dispatch') and business_id in (select app.my_business_ids('{owner,manager}')));

-- section grants
revoke all on public.venue_dispatch_rules, public.deliveries, public.delivery_offers, public.delivery_events,
  public.driver_earnings from anon, authenticated;
grant select, insert on public.venue_dispatch_rules to authenticated;
grant update (dispatch_on, lead_minutes, offer_timeout_seconds, offers_per_round, own_driver_limit_seconds, max_pickup_km,
              fallback_providers, base_fee_cents, per_km_cents, surge_multiplier, platform_fee_bps, average_speed_kmh,
              load_penalty_km, priority_penalty_km) on public.venue_dispatch_rules to authenticated;
-- every column but the drop-off PIN, which only the customer gets (track_delivery)
grant select (business_id, id, venue_id, order_id, status, provider, driver_business_id, driver_id, external_delivery_id,
              provider_delivery_id, quote_id, tracking_url, pickup, dropoff, pickup_latitude, pickup_longitude, dropoff_latitude,
              dropoff_longitude, distance_km, order_value_cents, fee_cents, tip_cents, cost_cents, currency, offer_round,
              courier_name, courier_phone, courier_latitude, courier_longitude, courier_updated_at, pickup_eta, eta,
              proof_photo_url, proof_signature_url, proof_pin_verified, proof_latitude, proof_longitude, rating, rated_at,
              failure_reason,
              cancel_reason, cancel_requested_at, cancel_refused_at, cancel_refusal, created_at, first_offered_at, booked_at,
              assigned_at, picked_up_at, delivered_at, cancelled_at, updated_at) on public.deliveries to authenticated;
grant select on public.delivery_offers, public.delivery_events, public.driver_earnings to authenticated;
grant all on public.venue_dispatch_rules, public.deliveries, public.delivery_offers, public.delivery_events,
  public.driver_earnings to service_role;

-- section realtime
alter publication supabase_realtime add table public.deliveries, public.delivery_offers;

-- section views

/** What each delivery cost and earned the business: the delivery fee and tip the customer paid, what
    the courier network charged or the own driver was paid, and the margin. Readable by owners and
    managers (RLS of deliveries). */
create view public.delivery_margins with (security_invoker = true) as
select d.business_id, d.venue_id, d.id as delivery_id, d.order_id, d.provider, d.status, d.currency,
       d.fee_cents as delivery_fee_cents, d.tip_cents, d.cost_cents,
       d.fee_cents + d.tip_cents - d.cost_cents as margin_cents,
       o.total_cents - o.refunded_cents - d.cost_cents as order_net_of_delivery_cents
from public.deliveries d
join public.orders o on o.business_id = d.business_id and o.id = d.order_id
where d.business_id in (select app.my_business_ids('{owner,manager}')) or app.is_platform_or_service();
revoke all on public.delivery_margins from anon, authenticated;
grant select on public.delivery_margins to authenticated, service_role;

-- section rpc

/** A driver accepts or declines an offer made to them. Accepting assigns the delivery (other open
    offers are withdrawn); declining offers it to the next candidate or hands it to the couriers.
    Raises PT404 (not your offer), PT403 (dispatch off), BR502 (offer no longer open). */
create function public.respond_offer(offer_id uuid, accept boolean, reason text default null) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.respond_offer(offer_id, accept, reason)
$$;
revoke all on function public.respond_offer(uuid, boolean, text) from public, anon;
grant execute on function public.respond_offer(uuid, boolean, text) to authenticated, service_role;

/** The assigned driver reports the food picked up. Raises PT404, BR501 (not from that status). */
create function public.update_delivery_status(delivery_id uuid, status public.delivery_status) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.driver_delivery_update(delivery_id, status, '{}'::jsonb)
$$;
revoke all on function public.update_delivery_status(uuid, public.delivery_status) from public, anon;
grant execute on function public.update_delivery_status(uuid, public.delivery_status) to authenticated, service_role;

/** The assigned driver closes the delivery with proof {photo_url, signature_url, pin, latitude,
    longitude} (at least one of the first three): records earnings and completes the order.
    Raises PT404, BR501, BR506 (no proof), BR507 (wrong PIN), 22023 (bad URL). */
create function public.complete_delivery(delivery_id uuid, proof jsonb) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.driver_delivery_update(delivery_id, 'delivered', coalesce(proof, '{}'::jsonb))
$$;
revoke all on function public.complete_delivery(uuid, jsonb) from public, anon;
grant execute on function public.complete_delivery(uuid, jsonb) to authenticated, service_role;

/** Staff of the venue cancel a delivery (see app.request_delivery_cancel). Raises PT404 (not at your
    venues), PT403, BR504 (already delivered or closed), BR505 (no reason). */
create function app.cancel_delivery(p_delivery_id uuid, p_reason text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_business uuid;
  v_venue uuid;
begin
  select d.business_id, d.venue_id into v_business, v_venue from public.deliveries d where d.id = p_delivery_id;
  if v_business is null or not (app.is_platform_or_service()
                                or app.has_venue_access(v_business, v_venue, '{owner,manager,staff}')) then
    perform app.fail('PT404', 'delivery_not_found', 'no such delivery at your venues');
  end if;
  perform app.require_module(v_business, 'dispatch');
  return app.request_delivery_cancel(v_business, p_delivery_id, p_reason);
end
$$;
revoke all on function app.cancel_delivery(uuid, text) from public;
grant execute on function app.cancel_delivery(uuid, text) to authenticated, service_role;

create function public.cancel_delivery(delivery_id uuid, reason text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.cancel_delivery(delivery_id, reason)
$$;
revoke all on function public.cancel_delivery(uuid, text) from public, anon;
grant execute on function public.cancel_delivery(uuid, text) to authenticated, service_role;

/** Staff give a delivery still being offered (or not yet) to a driver of their choice, who must be
    actively assigned to the business: open offers are withdrawn. Raises PT404 (not at your venues,
    or not your driver), PT403, BR501 (the delivery is past offering: booked, assigned or closed). */
create function app.assign_delivery(p_delivery_id uuid, p_driver_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_delivery public.deliveries;
  v_driver public.drivers;
  v_rules public.venue_dispatch_rules;
begin
  select d.* into v_delivery from public.deliveries d where d.id = p_delivery_id;
  if v_delivery.id is null or not (app.is_platform_or_service()
                                   or app.has_venue_access(v_delivery.business_id, v_delivery.venue_id, '{owner,manager,staff}')) then
    perform app.fail('PT404', 'delivery_not_found', 'no such delivery at your venues');
  end if;
  perform app.require_module(v_delivery.business_id, 'dispatch');
  select d.* into v_delivery from public.deliveries d where d.business_id = v_delivery.business_id and d.id = p_delivery_id for update;
  if v_delivery.status not in ('pending', 'offering') then
    perform app.fail('BR501', 'illegal_transition', format('a %s delivery cannot be given to a driver', v_delivery.status));
  end if;
  select dr.* into v_driver from public.driver_business_assignments a
  join public.drivers dr on dr.business_id = a.driver_business_id and dr.id = a.driver_id
  where a.business_id = v_delivery.business_id and a.driver_id = p_driver_id and a.is_active;
  if v_driver.id is null then
    perform app.fail('PT404', 'driver_not_found', 'no such driver serving this business');
  end if;
  update public.delivery_offers set status = 'withdrawn', responded_at = now()
  where business_id = v_delivery.business_id and delivery_id = v_delivery.id and status = 'pending';
  v_rules := app.dispatch_rules(v_delivery.business_id, v_delivery.venue_id);
  v_delivery.status := 'assigned';
  update public.deliveries set status = 'assigned', provider = 'own', driver_business_id = v_driver.business_id,
    driver_id = v_driver.id, courier_name = v_driver.display_name, courier_phone = v_driver.phone,
    courier_latitude = v_driver.latitude, courier_longitude = v_driver.longitude, courier_updated_at = v_driver.location_at,
    eta = app.delivery_eta(v_delivery, v_driver.latitude, v_driver.longitude, v_rules.average_speed_kmh, now()),
    pickup_eta = app.pickup_eta(v_delivery, v_driver.latitude, v_driver.longitude, v_rules.average_speed_kmh, now())
  where business_id = v_delivery.business_id and id = v_delivery.id;
  return jsonb_build_object('delivery_id', v_delivery.id, 'status', 'assigned', 'driver_id', v_driver.id);
end
$$;
revoke all on function app.assign_delivery(uuid, uuid) from public;
grant execute on function app.assign_delivery(uuid, uuid) to authenticated, service_role;

create function public.assign_delivery(delivery_id uuid, driver_id uuid) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.assign_delivery(delivery_id, driver_id)
$$;
revoke all on function public.assign_delivery(uuid, uuid) from public, anon;
grant execute on function public.assign_delivery(uuid, uuid) to authenticated, service_role;

/** The customer rates a delivered own-driver delivery once, 1-5 (order id and access token, as on
    the tracking page); the driver's rating is the running mean. Raises PT404, BR508 (not delivered by
    an own driver, or already rated), 22023 (rating outside 1-5). */
create function app.rate_delivery(p_order_id uuid, p_access_token uuid, p_rating integer) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_delivery public.deliveries;
  v_driver public.drivers;
begin
  select d.* into v_delivery from public.orders o
  join public.deliveries d on d.business_id = o.business_id and d.order_id = o.id
  where o.id = p_order_id and o.access_token = p_access_token
  for update of d;
  if v_delivery.id is null then
    perform app.fail('PT404', 'delivery_not_found', 'no delivery for that order and token');
  end if;
  if p_rating is null or p_rating not between 1 and 5 then
    perform app.fail('22023', 'invalid_rating', 'a rating is 1 to 5');
  end if;
  if v_delivery.status <> 'delivered' or v_delivery.provider is distinct from 'own' or v_delivery.rated_at is not null then
    perform app.fail('BR508', 'not_rateable', 'only a delivered own-driver delivery is rated, once');
  end if;
  update public.deliveries set rating = p_rating, rated_at = now()
  where business_id = v_delivery.business_id and id = v_delivery.id;
  update public.drivers set rating = round((rating * rating_count + p_rating) / (rating_count + 1), 2), rating_count = rating_count + 1
  where business_id = v_delivery.driver_business_id and id = v_delivery.driver_id
  returning * into v_driver;
  return jsonb_build_object('delivery_id', v_delivery.id, 'rating', p_rating, 'driver_rating', v_driver.rating,
                            'driver_rating_count', v_driver.rating_count);
end
$$;
revoke all on function app.rate_delivery(uuid, uuid, integer) from public;
grant execute on function app.rate_delivery(uuid, uuid, integer) to anon, authenticated, service_role;

create function public.rate_delivery(order_id uuid, access_token uuid, rating integer) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.rate_delivery(order_id, access_token, rating)
$$;
revoke all on function public.rate_delivery(uuid, uuid, integer) from public;
grant execute on function public.rate_delivery(uuid, uuid, integer) to anon, authenticated, service_role;

/** Earnings per driver over [from, to): deliveries, base, distance, tip, surge, platform fee, net.
    Invoker rights: a driver gets their own rows, owners and managers their business's drivers. */
create function public.driver_earnings_summary(from_at timestamptz, to_at timestamptz, driver_id uuid default null)
returns table (driver_business_id uuid, driver_id uuid, currency text, deliveries bigint, base_fee_cents bigint,
               distance_fee_cents bigint, tip_cents bigint, surge_cents bigint, platform_fee_cents bigint, net_cents bigint)
language sql stable
set search_path = ''
as $$
  select e.driver_business_id, e.driver_id, e.currency, count(*), sum(e.base_fee_cents), sum(e.distance_fee_cents),
         sum(e.tip_cents), sum(e.surge_cents), sum(e.platform_fee_cents), sum(e.net_cents)
  from public.driver_earnings e
  where e.earned_at >= from_at and e.earned_at < to_at
    and (driver_earnings_summary.driver_id is null or e.driver_id = driver_earnings_summary.driver_id)
  group by e.driver_business_id, e.driver_id, e.currency
  order by e.driver_id
$$;
revoke all on function public.driver_earnings_summary(timestamptz, timestamptz, uuid) from public, anon;
grant execute on function public.driver_earnings_summary(timestamptz, timestamptz, uuid) to authenticated, service_role;

/** The customer's tracking page (anon guests with the order's access token): status, ETA, the
    courier's position, the courier network's tracking link and the PIN to give the driver. PT404. */
create function app.track_delivery(p_order_id uuid, p_access_token uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  select jsonb_build_object('delivery_id', d.id, 'order_id', d.order_id, 'order_number', o.order_number, 'status', d.status,
    'provider', d.provider, 'eta', d.eta, 'pickup_eta', d.pickup_eta, 'courier_name', d.courier_name,
    'courier_latitude', d.courier_latitude, 'courier_longitude', d.courier_longitude, 'courier_updated_at', d.courier_updated_at,
    'tracking_url', d.tracking_url, 'pin', case when d.status not in ('delivered', 'cancelled', 'failed') then d.dropoff_pin end,
    'delivered_at', d.delivered_at, 'cancel_reason', d.cancel_reason)
  into v_result
  from public.orders o join public.deliveries d on d.business_id = o.business_id and d.order_id = o.id
  where o.id = p_order_id and o.access_token = p_access_token;
  if v_result is null then
    perform app.fail('PT404', 'delivery_not_found', 'no delivery for that order and token');
  end if;
  return v_result;
end
$$;
revoke all on function app.track_delivery(uuid, uuid) from public;
grant execute on function app.track_delivery(uuid, uuid) to anon, authenticated, service_role;

create function public.track_delivery(order_id uuid, access_token uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select app.track_delivery(order_id, access_token)
$$;
revoke all on function public.track_delivery(uuid, uuid) from public;
grant execute on function public.track_delivery(uuid, uuid) to anon, authenticated, service_role;
