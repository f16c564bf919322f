-- Orders: server-priced placement, the status machine, kitchen tickets, pickup codes, payments and
-- refunds, the Stripe event ledger, and the paid-order fan-out. Gated by the `ordering` module.
-- Error codes in docs/errors.md (BR1xx).

-- section business payment settings
alter table public.businesses
  add column stripe_account_id text,
  add column application_fee_bps integer not null default 0
    constraint businesses_application_fee_range check (application_fee_bps between 0 and 10000);

-- section types
create type public.order_status as enum ('placed', 'accepted', 'preparing', 'ready', 'completed', 'cancelled');
create type public.payment_status as enum ('unpaid', 'pending', 'failed', 'paid', 'partially_refunded', 'refunded', 'disputed');

-- section tables

/** Server-side secrets (the pickup-code pepper). No API role can read them. */
create table app.secrets (
  name text primary key,
  value bytea not null,
  created_at timestamptz not null default now()
);
insert into app.secrets (name, value) values ('pickup_code_pepper', extensions.gen_random_bytes(32));

/** Per-business counters for human numbers (order numbers). */
create table app.business_counters (
  business_id uuid not null references public.businesses (id) on delete cascade,
  name text not null,
  value bigint not null default 0,
  constraint business_counters_pkey primary key (business_id, name)
);

/** An order, priced by the database. status (kitchen) and payment_status (money) move separately,
    each only forward. The placer gets access_token to pay and follow it without an account. */
create table public.orders (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  venue_id uuid not null,
  order_number integer not null,
  access_token uuid not null default extensions.gen_random_uuid(),
  channel text not null constraint orders_channel_valid check (channel in ('web', 'qr', 'phone')),
  fulfilment text not null constraint orders_fulfilment_valid check (fulfilment in ('pickup', 'delivery', 'dine_in')),
  table_ref text,
  scheduled_for timestamptz,
  status public.order_status not null default 'placed',
  payment_status public.payment_status not null default 'unpaid',
  user_id uuid,
  customer_id uuid,
  guest_name text,
  guest_phone text,
  guest_email text,
  delivery_address jsonb,
  notes text not null default '',
  currency text not null,
  subtotal_cents integer not null,
  discount_cents integer not null default 0,
  tax_cents integer not null default 0,
  tip_cents integer not null default 0,
  delivery_fee_cents integer not null default 0,
  total_cents integer not null,
  cost_cents integer not null default 0,
  refunded_cents integer not null default 0,
  checkout_session_id text,
  checkout_url text,
  checkout_expires_at timestamptz,
  payment_intent_id text,
  pickup_code_hash text,
  pickup_code_expires_at timestamptz,
  pickup_code_attempts integer not null default 0,
  cancel_reason text,
  placed_at timestamptz not null default now(),
  paid_at timestamptz,
  accepted_at timestamptz,
  ready_at timestamptz,
  completed_at timestamptz,
  cancelled_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint orders_pkey primary key (business_id, id),
  constraint orders_business_number_key unique (business_id, order_number),
  constraint orders_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id),
  constraint orders_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id),
  constraint orders_amounts_valid check (subtotal_cents >= 0 and discount_cents >= 0 and tax_cents >= 0 and tip_cents >= 0
    and delivery_fee_cents >= 0 and total_cents = subtotal_cents - discount_cents + tax_cents + tip_cents + delivery_fee_cents
    and refunded_cents between 0 and total_cents),
  constraint orders_delivery_address check (fulfilment <> 'delivery' or delivery_address is not null),
  constraint orders_cancel_reason check (status <> 'cancelled' or cancel_reason is not null)
);
alter table public.orders enable row level security;

/** A line of an order with name, price and cost snapshotted when it was placed. */
create table public.order_items (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  order_id uuid not null,
  venue_id uuid not null,
  line_number integer not null,
  product_id uuid not null,
  variant_id uuid,
  name text not null,
  variant_name text,
  modifiers jsonb not null default '[]'::jsonb,
  quantity integer not null constraint order_items_quantity_range check (quantity between 1 and 99),
  unit_price_cents integer not null,
  unit_cost_cents integer not null,
  line_total_cents integer not null,
  refunded_quantity integer not null default 0,
  notes text not null default '',
  constraint order_items_pkey primary key (business_id, id),
  constraint order_items_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete cascade,
  constraint order_items_order_line_key unique (business_id, order_id, line_number),
  constraint order_items_refunded_range check (refunded_quantity between 0 and quantity)
);
alter table public.order_items enable row level security;

/** Append-only: every status change of an order, who made it and why. */
create table public.order_status_history (
  business_id uuid not null,
  id bigint generated always as identity,
  order_id uuid not null,
  venue_id uuid not null,
  from_status public.order_status,
  to_status public.order_status not null,
  changed_by uuid,
  reason text,
  created_at timestamptz not null default now(),
  constraint order_status_history_pkey primary key (business_id, id),
  constraint order_status_history_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete cascade
);
alter table public.order_status_history enable row level security;

/** Money received for an order (one row per payment intent). fee_cents is Stripe's fee, estimated
    (2.9% + 30) until the balance transaction says otherwise. */
create table public.payments (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  order_id uuid not null,
  venue_id uuid not null,
  provider text not null default 'stripe',
  payment_intent_id text,
  checkout_session_id text,
  amount_cents integer not null,
  fee_cents integer not null default 0,
  fee_estimated boolean not null default true,
  application_fee_cents integer not null default 0,
  currency text not null,
  status text not null default 'succeeded' constraint payments_status_valid check (status in ('succeeded', 'disputed')),
  source_event_id text,
  created_at timestamptz not null default now(),
  constraint payments_pkey primary key (business_id, id),
  constraint payments_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete cascade,
  constraint payments_business_intent_key unique (business_id, payment_intent_id)
);
alter table public.payments enable row level security;

/** Money given back: full, an amount, or chosen lines. Applied once (applied_at) when it succeeds,
    reversing stats, points and, when restock is set, stock. */
create table public.refunds (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  order_id uuid not null,
  venue_id uuid not null,
  amount_cents integer not null constraint refunds_amount_positive check (amount_cents > 0),
  currency text not null,
  lines jsonb not null default '[]'::jsonb,
  restock boolean not null default false,
  reason text not null default '',
  status text not null default 'pending'
    constraint refunds_status_valid check (status in ('pending', 'succeeded', 'failed', 'canceled')),
  provider_refund_id text,
  idempotency_key text not null,
  failure_reason text,
  requested_by uuid,
  source text not null default 'brigade' constraint refunds_source_valid check (source in ('brigade', 'stripe')),
  applied_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint refunds_pkey primary key (business_id, id),
  constraint refunds_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete cascade,
  constraint refunds_business_provider_key unique (business_id, provider_refund_id),
  constraint refunds_business_idempotency_key unique (business_id, idempotency_key)
);
alter table public.refunds enable row level security;

/** What the kitchen screen shows (Realtime): one ticket per paid order, with the customer's allergens. */
create table public.kitchen_tickets (
  business_id uuid not null,
  venue_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  order_id uuid not null,
  order_number integer not null,
  fulfilment text not null,
  table_ref text,
  scheduled_for timestamptz,
  items jsonb not null,
  allergens text[] not null default '{}',
  notes text not null default '',
  status text not null default 'new'
    constraint kitchen_tickets_status_valid check (status in ('new', 'accepted', 'in_progress', 'ready', 'done', 'cancelled')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint kitchen_tickets_pkey primary key (business_id, id),
  constraint kitchen_tickets_order_key unique (business_id, order_id),
  constraint kitchen_tickets_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete cascade
);
alter table public.kitchen_tickets enable row level security;

/** Every Stripe event received, once (its id), with what applying it did. Service only. */
create table public.stripe_events (
  id text primary key,
  type text not null,
  business_id uuid,
  order_id uuid,
  livemode boolean not null default false,
  outcome text,
  payload jsonb not null,
  received_at timestamptz not null default now()
);
alter table public.stripe_events enable row level security;

-- section indexes
create index orders_venue_status_idx on public.orders (business_id, venue_id, status, placed_at desc);
create index orders_customer_idx on public.orders (business_id, customer_id, placed_at desc) where customer_id is not null;
create index orders_user_idx on public.orders (user_id) where user_id is not null;
create index orders_payment_intent_idx on public.orders (payment_intent_id) where payment_intent_id is not null;
create index orders_checkout_session_idx on public.orders (checkout_session_id) where checkout_session_id is not null;
create index orders_paid_at_idx on public.orders (business_id, venue_id, paid_at) where paid_at is not null;
create index order_items_order_idx on public.order_items (business_id, order_id);
create index order_status_history_order_idx on public.order_status_history (business_id, order_id, id);
create index payments_order_idx on public.payments (business_id, order_id);
create index refunds_order_idx on public.refunds (business_id, order_id);
create index kitchen_tickets_venue_status_idx on public.kitchen_tickets (business_id, venue_id, status, created_at);
create index stripe_events_order_idx on public.stripe_events (business_id, order_id);

-- section private helpers

/** Raise a Brigade error (one place for the shape of every error this module raises). */
create function app.fail(p_code text, p_hint text, p_message text) returns void
language plpgsql immutable
set search_path = ''
as $$
begin
  raise exception using errcode = p_code, message = p_message, hint = p_hint;
end
$$;
revoke all on function app.fail(text, text, text) from public;
grant execute on function app.fail(text, text, text) to anon, authenticated, service_role;

/** The next value of a per-business counter. */
create function app.next_number(p_business_id uuid, p_name text) returns bigint
language sql volatile security definer
set search_path = ''
as $$
  insert into app.business_counters as c (business_id, name, value) values (p_business_id, p_name, 1)
  on conflict (business_id, name) do update set value = c.value + 1
  returning value
$$;
revoke all on function app.next_number(uuid, text) from public;
grant execute on function app.next_number(uuid, text) to service_role;

/** HMAC of a pickup code, bound to its order, with the server-side pepper. */
create function app.pickup_code_hash(p_order_id uuid, p_code text) returns text
language sql stable security definer
set search_path = ''
as $$
  select encode(extensions.hmac(convert_to(p_order_id::text || ':' || p_code, 'UTF8'),
                                (select s.value from app.secrets s where s.name = 'pickup_code_pepper'), 'sha256'), 'hex')
$$;
revoke all on function app.pickup_code_hash(uuid, text) from public;

/** Which status changes the kitchen flow allows. */
create function app.order_transition_allowed(p_from public.order_status, p_to public.order_status) returns boolean
language sql immutable
set search_path = ''
as $$
  select (p_from, p_to) in (
    ('placed', 'accepted'), ('placed', 'cancelled'),
    ('accepted', 'preparing'), ('accepted', 'ready'), ('accepted', 'cancelled'),
    ('preparing', 'ready'), ('preparing', 'cancelled'),
    ('ready', 'completed'), ('ready', 'cancelled'))
$$;

/** Payment states never go back: once money arrived, no late failure or expiry un-pays an order. */
create function app.payment_transition_allowed(p_from public.payment_status, p_to public.payment_status) returns boolean
language sql immutable
set search_path = ''
as $$
  select p_from = p_to or (p_from, p_to) in (
    ('unpaid', 'pending'), ('unpaid', 'failed'), ('unpaid', 'paid'),
    ('pending', 'failed'), ('pending', 'paid'), ('pending', 'unpaid'),
    ('failed', 'pending'), ('failed', 'paid'), ('failed', 'unpaid'),
    ('paid', 'partially_refunded'), ('paid', 'refunded'), ('paid', 'disputed'),
    ('partially_refunded', 'refunded'), ('partially_refunded', 'disputed'),
    ('disputed', 'partially_refunded'), ('disputed', 'refunded'))
$$;

/** Applies a loyalty voucher to an order being placed. Without the rewards engine (migration
    0009 replaces this) there are no vouchers: BR115. */
create function app.apply_voucher(p_business_id uuid, p_order_id uuid, p_code text) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  perform app.fail('BR115', 'invalid_voucher', 'no such voucher');
end
$$;
revoke all on function app.apply_voucher(uuid, uuid, text) from public;

/** Prices an order from the database (client prices are only compared, never used), validates it
    and writes it. See public.place_order for the payload and the errors. */
create function app.place_order(p_order jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_venue public.venues;
  v_business public.businesses;
  v_channel text := coalesce(p_order ->> 'channel', 'web');
  v_fulfilment text := coalesce(p_order ->> 'fulfilment', 'pickup');
  v_scheduled timestamptz;
  v_user uuid := auth.uid();
  v_name text := nullif(trim(p_order -> 'customer' ->> 'name'), '');
  v_phone text := app.normalize_phone(p_order -> 'customer' ->> 'phone');
  v_email text := nullif(lower(trim(p_order -> 'customer' ->> 'email')), '');
  v_address jsonb := p_order -> 'delivery_address';
  v_tip integer := coalesce((p_order ->> 'tip_cents')::integer, 0);
  v_item jsonb;
  v_line integer := 0;
  v_product public.products;
  v_variant public.product_variants;
  v_qty integer;
  v_mod_ids uuid[];
  v_mods jsonb;
  v_unit_price integer;
  v_unit_cost integer;
  v_lines jsonb := '[]'::jsonb;
  v_subtotal integer := 0;
  v_cost integer := 0;
  v_tax integer;
  v_delivery integer := 0;
  v_total integer;
  v_discount integer := 0;
  v_order_id uuid := extensions.gen_random_uuid();
  v_number integer;
  v_token uuid := extensions.gen_random_uuid();
  v_bad record;
begin
  -- where
  select v.* into v_venue from public.venues v where v.id = (p_order ->> 'venue_id')::uuid and v.is_published;
  if v_venue.id is null then
    perform app.fail('PT404', 'venue_not_found', 'no published venue with that id');
  end if;
  select b.* into v_business from public.businesses b where b.id = v_venue.business_id;
  perform app.require_module(v_business.id, 'ordering');

  -- how
  if v_channel not in ('web', 'qr', 'phone') then
    perform app.fail('22023', 'invalid_channel', format('channel must be web, qr or phone, not %L', v_channel));
  end if;
  if v_fulfilment not in ('pickup', 'delivery', 'dine_in') then
    perform app.fail('22023', 'invalid_fulfilment', format('fulfilment must be pickup, delivery or dine_in, not %L', v_fulfilment));
  end if;
  if (v_fulfilment = 'pickup' and not v_venue.accepts_pickup) or (v_fulfilment = 'delivery' and not v_venue.accepts_delivery)
     or (v_fulfilment = 'dine_in' and not v_venue.accepts_dine_in) then
    perform app.fail('BR114', 'fulfilment_not_offered', format('this venue does not offer %s', v_fulfilment));
  end if;
  if v_fulfilment = 'dine_in' and nullif(trim(p_order ->> 'table_ref'), '') is null then
    perform app.fail('BR110', 'table_required', 'a dine-in order needs the table reference');
  end if;

  -- when
  v_scheduled := (p_order ->> 'scheduled_for')::timestamptz;
  if v_scheduled is not null and v_scheduled < now() - interval '1 minute' then
    perform app.fail('BR112', 'scheduled_in_past', 'the scheduled time has passed');
  end if;
  if not app.venue_is_open(v_business.id, v_venue.id, coalesce(v_scheduled, now())) then
    perform app.fail('BR101', 'venue_closed', case when v_scheduled is null then 'the venue is closed now'
                                                   else 'the venue is closed at the scheduled time' end);
  end if;

  -- who
  if v_user is not null then
    v_email := coalesce(v_email, nullif(lower(auth.email()), ''));
  end if;
  if nullif(trim(p_order -> 'customer' ->> 'phone'), '') is not null and coalesce(v_phone, '') !~ '^\+?[0-9]{7,15}$' then
    perform app.fail('BR113', 'invalid_phone', 'the phone number is not valid');
  end if;
  if v_email is not null and v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
    perform app.fail('BR113', 'invalid_email', 'the email address is not valid');
  end if;
  if v_phone is null and v_email is null then
    perform app.fail('BR111', 'contact_required', 'a phone number or an email address is required');
  end if;

  -- delivery
  if v_fulfilment = 'delivery' then
    if v_address is null or jsonb_typeof(v_address) <> 'object' or nullif(trim(v_address ->> 'line1'), '') is null then
      perform app.fail('BR108', 'delivery_address_required', 'a delivery order needs an address (line1)');
    end if;
    if v_address ? 'latitude' and v_address ? 'longitude' and v_venue.latitude is not null
       and app.distance_km(v_venue.latitude, v_venue.longitude, (v_address ->> 'latitude')::float8,
                           (v_address ->> 'longitude')::float8) > v_venue.delivery_radius_km then
      perform app.fail('BR109', 'outside_delivery_area', 'the address is outside the delivery area');
    end if;
    v_delivery := v_venue.delivery_fee_cents;
  else
    v_address := null;
  end if;
  if v_tip < 0 or v_tip > 100000 then
    perform app.fail('22023', 'invalid_tip', 'tip_cents must be between 0 and 100000');
  end if;

  -- what
  if jsonb_typeof(p_order -> 'items') is distinct from 'array' or jsonb_array_length(p_order -> 'items') = 0 then
    perform app.fail('BR102', 'no_items', 'an order needs at least one item');
  end if;
  if jsonb_array_length(p_order -> 'items') > 100 then
    perform app.fail('BR102', 'too_many_items', 'an order has at most 100 lines');
  end if;
  for v_item in select * from jsonb_array_elements(p_order -> 'items') loop
    v_line := v_line + 1;
    v_qty := (v_item ->> 'quantity')::integer;
    if v_qty is null or v_qty < 1 or v_qty > 99 then
      perform app.fail('BR102', 'invalid_quantity', format('line %s: quantity must be 1 to 99', v_line));
    end if;

    select p.* into v_product from public.products p
    where p.business_id = v_business.id and p.id = (v_item ->> 'product_id')::uuid;
    if v_product.id is null then
      perform app.fail('BR105', 'unknown_product', format('line %s: no such product at this business', v_line));
    end if;
    if not app.product_available(v_business.id, v_venue.id, v_product.id) then
      perform app.fail('BR103', 'product_unavailable', format('line %s: %s is not available', v_line, v_product.name));
    end if;

    v_variant := null;
    if v_item ? 'variant_id' and v_item ->> 'variant_id' is not null then
      select pv.* into v_variant from public.product_variants pv
      where pv.business_id = v_business.id and pv.product_id = v_product.id and pv.id = (v_item ->> 'variant_id')::uuid
        and pv.is_available;
      if v_variant.id is null then
        perform app.fail('BR106', 'invalid_variant', format('line %s: that variant of %s is not available', v_line, v_product.name));
      end if;
    elsif exists (select 1 from public.product_variants pv
                  where pv.business_id = v_business.id and pv.product_id = v_product.id and pv.is_available) then
      select pv.* into v_variant from public.product_variants pv
      where pv.business_id = v_business.id and pv.product_id = v_product.id and pv.is_available and pv.is_default
      limit 1;
      if v_variant.id is null then
        perform app.fail('BR106', 'variant_required', format('line %s: choose a variant of %s', v_line, v_product.name));
      end if;
    end if;

    -- modifiers: each must belong to a group the product offers; each group's min/max must hold
    select coalesce(array_agg(distinct x::uuid), '{}') into v_mod_ids
    from jsonb_array_elements_text(coalesce(v_item -> 'modifier_ids', '[]'::jsonb)) x;
    if exists (
      select 1 from unnest(v_mod_ids) mid
      where not exists (
        select 1 from public.modifiers m
        join public.product_modifier_groups pmg on pmg.business_id = m.business_id and pmg.group_id = m.group_id
        where m.business_id = v_business.id and m.id = mid and m.is_available and pmg.product_id = v_product.id)) then
      perform app.fail('BR107', 'invalid_modifier', format('line %s: a chosen option does not apply to %s', v_line, v_product.name));
    end if;
    select g.name, g.min_choices, g.max_choices, count(m.id) as chosen into v_bad
    from public.product_modifier_groups pmg
    join public.modifier_groups g on g.business_id = pmg.business_id and g.id = pmg.group_id
    left join public.modifiers m on m.business_id = g.business_id and m.group_id = g.id and m.id = any (v_mod_ids)
    where pmg.business_id = v_business.id and pmg.product_id = v_product.id
    group by g.id, g.name, g.min_choices, g.max_choices
    having count(m.id) < g.min_choices or count(m.id) > g.max_choices
    limit 1;
    if v_bad.name is not null then
      perform app.fail('BR107', 'modifier_rules', format('line %s: %s needs %s to %s choice(s), got %s',
                                                         v_line, v_bad.name, v_bad.min_choices, v_bad.max_choices, v_bad.chosen));
    end if;
    select coalesce(jsonb_agg(jsonb_build_object('id', m.id, 'group_id', m.group_id, 'name', m.name,
                                                 'price_cents', m.price_cents, 'cost_cents', m.cost_cents) order by m.sort_order, m.name), '[]'::jsonb)
    into v_mods
    from public.modifiers m where m.business_id = v_business.id and m.id = any (v_mod_ids);

    v_unit_price := v_product.price_cents + coalesce(v_variant.price_adjustment_cents, 0)
                    + coalesce((select sum((m ->> 'price_cents')::integer) from jsonb_array_elements(v_mods) m), 0);
    v_unit_cost := v_product.cost_cents + coalesce(v_variant.cost_adjustment_cents, 0)
                   + coalesce((select sum((m ->> 'cost_cents')::integer) from jsonb_array_elements(v_mods) m), 0);
    if v_unit_price < 0 then
      v_unit_price := 0;
    end if;
    if v_item ? 'unit_price_cents' and (v_item ->> 'unit_price_cents')::integer is distinct from v_unit_price then
      perform app.fail('BR104', 'price_mismatch', format('line %s: %s costs %s, not %s', v_line, v_product.name,
                                                          v_unit_price, v_item ->> 'unit_price_cents'));
    end if;

    v_lines := v_lines || jsonb_build_object(
      'line_number', v_line, 'product_id', v_product.id, 'variant_id', v_variant.id, 'name', v_product.name,
      'variant_name', v_variant.name, 'modifiers', v_mods, 'quantity', v_qty, 'unit_price_cents', v_unit_price,
      'unit_cost_cents', v_unit_cost, 'line_total_cents', v_unit_price * v_qty,
      'notes', left(coalesce(v_item ->> 'notes', ''), 500));
    v_subtotal := v_subtotal + v_unit_price * v_qty;
    v_cost := v_cost + v_unit_cost * v_qty;
  end loop;

  v_tax := round(v_subtotal * v_venue.tax_rate_bps / 10000.0);
  v_total := v_subtotal + v_tax + v_tip + v_delivery;
  if p_order ? 'expected_total_cents' and (p_order ->> 'expected_total_cents')::integer is distinct from v_total then
    perform app.fail('BR104', 'total_mismatch', format('the total is %s, not %s', v_total, p_order ->> 'expected_total_cents'));
  end if;

  v_number := app.next_number(v_business.id, 'order');
  insert into public.orders (business_id, id, venue_id, order_number, access_token, channel, fulfilment, table_ref,
    scheduled_for, user_id, guest_name, guest_phone, guest_email, delivery_address, notes, currency,
    subtotal_cents, tax_cents, tip_cents, delivery_fee_cents, total_cents, cost_cents)
  values (v_business.id, v_order_id, v_venue.id, v_number, v_token, v_channel, v_fulfilment,
    nullif(trim(p_order ->> 'table_ref'), ''), v_scheduled, v_user, v_name, v_phone, v_email, v_address,
    left(coalesce(p_order ->> 'notes', ''), 1000), v_business.currency, v_subtotal, v_tax, v_tip, v_delivery, v_total, v_cost);

  insert into public.order_items (business_id, order_id, venue_id, line_number, product_id, variant_id, name, variant_name,
    modifiers, quantity, unit_price_cents, unit_cost_cents, line_total_cents, notes)
  select v_business.id, v_order_id, v_venue.id, (l ->> 'line_number')::integer, (l ->> 'product_id')::uuid,
    (l ->> 'variant_id')::uuid, l ->> 'name', l ->> 'variant_name', l -> 'modifiers', (l ->> 'quantity')::integer,
    (l ->> 'unit_price_cents')::integer, (l ->> 'unit_cost_cents')::integer, (l ->> 'line_total_cents')::integer, l ->> 'notes'
  from jsonb_array_elements(v_lines) l;

  if nullif(trim(p_order ->> 'voucher_code'), '') is not null then
    perform app.apply_voucher(v_business.id, v_order_id, trim(p_order ->> 'voucher_code'));
    select o.subtotal_cents, o.discount_cents, o.total_cents into v_subtotal, v_discount, v_total
    from public.orders o where o.business_id = v_business.id and o.id = v_order_id;
  end if;

  return jsonb_build_object(
    'order_id', v_order_id, 'order_number', v_number, 'access_token', v_token, 'business_id', v_business.id,
    'venue_id', v_venue.id, 'status', 'placed', 'payment_status', 'unpaid', 'currency', v_business.currency,
    'subtotal_cents', v_subtotal, 'tax_cents', v_tax, 'tip_cents', v_tip, 'delivery_fee_cents', v_delivery,
    'discount_cents', v_discount, 'total_cents', v_total,
    'lines', (select jsonb_agg(jsonb_build_object('line_number', i.line_number, 'product_id', i.product_id, 'variant_id', i.variant_id,
                'name', i.name, 'variant_name', i.variant_name, 'quantity', i.quantity,
                'modifiers', (select coalesce(jsonb_agg(m - 'cost_cents'), '[]'::jsonb) from jsonb_array_elements(i.modifiers) m),
                'unit_price_cents', i.unit_price_cents, 'line_total_cents', i.line_total_cents, 'notes', i.notes) order by i.line_number)
              from public.order_items i where i.business_id = v_business.id and i.order_id = v_order_id));
end
$$;
revoke all on function app.place_order(jsonb) from public;
grant execute on function app.place_order(jsonb) to anon, authenticated, service_role;

/** The paid-order fan-out, in the transaction that marks the order paid: payment row, customer and
    per-venue stats, kitchen ticket with allergens, stock through the recipes, loyalty points,
    pickup code (HMAC only), notification rows and the order.paid event. Idempotent: an order
    already paid only gets a missing payment row recorded. Returns true when it paid the order. */
create function app.mark_order_paid(p_business_id uuid, p_order_id uuid, p_payment_intent_id text,
                                    p_session_id text, p_amount_cents integer, p_event_id text) returns boolean
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_customer uuid;
  v_allergens text[];
  v_code text;
  v_fee_est integer;
begin
  select o.* into v_order from public.orders o where o.business_id = p_business_id and o.id = p_order_id for update;
  if v_order.id is null then
    return false;
  end if;

  if p_payment_intent_id is not null then
    v_fee_est := round(coalesce(p_amount_cents, v_order.total_cents) * 0.029) + 30;
    insert into public.payments (business_id, order_id, venue_id, payment_intent_id, checkout_session_id,
                                 amount_cents, fee_cents, application_fee_cents, currency, source_event_id)
    select v_order.business_id, v_order.id, v_order.venue_id, p_payment_intent_id, p_session_id,
           coalesce(p_amount_cents, v_order.total_cents), v_fee_est,
           round(coalesce(p_amount_cents, v_order.total_cents) * b.application_fee_bps / 10000.0), v_order.currency, p_event_id
    from public.businesses b where b.id = v_order.business_id
    on conflict (business_id, payment_intent_id) do update
      set checkout_session_id = coalesce(public.payments.checkout_session_id, excluded.checkout_session_id);
  end if;

  if v_order.payment_status not in ('unpaid', 'pending', 'failed') then
    -- already paid (or further along): the fan-out ran once; only fill in what this event knows
    update public.orders set checkout_session_id = coalesce(checkout_session_id, p_session_id)
    where business_id = v_order.business_id and id = v_order.id and checkout_session_id is null and p_session_id is not null;
    return false;
  end if;

  if v_order.status = 'cancelled' then
    -- money for an order staff already cancelled: record it, send nothing to the kitchen, ask for a refund
    update public.orders set payment_status = 'paid', paid_at = now(),
      payment_intent_id = coalesce(payment_intent_id, p_payment_intent_id),
      checkout_session_id = coalesce(p_session_id, checkout_session_id), checkout_url = null, checkout_expires_at = null
    where business_id = v_order.business_id and id = v_order.id;
    perform app.emit('order.paid_after_cancellation', v_order.business_id, jsonb_build_object(
      'order_id', v_order.id, 'order_number', v_order.order_number, 'amount_cents', coalesce(p_amount_cents, v_order.total_cents),
      'cancel_reason', v_order.cancel_reason));
    return true;
  end if;

  -- customer and per-venue stats
  v_customer := coalesce(v_order.customer_id,
    app.find_or_create_customer(v_order.business_id, v_order.user_id, v_order.guest_name, v_order.guest_phone, v_order.guest_email));
  select c.allergens into v_allergens from public.customers c where c.business_id = v_order.business_id and c.id = v_customer;

  -- pickup code: six digits from the CSPRNG, stored only as an HMAC
  if v_order.fulfilment = 'pickup' then
    v_code := lpad(((('x' || encode(extensions.gen_random_bytes(4), 'hex'))::bit(32)::bigint) % 1000000)::text, 6, '0');
  end if;

  update public.orders set
    payment_status = 'paid', paid_at = now(), customer_id = v_customer,
    payment_intent_id = coalesce(payment_intent_id, p_payment_intent_id),
    checkout_session_id = coalesce(p_session_id, checkout_session_id), checkout_url = null, checkout_expires_at = null,
    pickup_code_hash = case when v_code is not null then app.pickup_code_hash(v_order.id, v_code) end,
    pickup_code_expires_at = case when v_code is not null then now() + interval '60 minutes' end,
    pickup_code_attempts = 0
  where business_id = v_order.business_id and id = v_order.id;

  insert into public.customer_venue_stats as s (business_id, venue_id, customer_id, total_orders, total_spent_cents,
                                                first_order_at, last_order_at)
  values (v_order.business_id, v_order.venue_id, v_customer, 1, v_order.total_cents, now(), now())
  on conflict (business_id, venue_id, customer_id) do update set
    total_orders = s.total_orders + 1, total_spent_cents = s.total_spent_cents + excluded.total_spent_cents,
    first_order_at = least(s.first_order_at, excluded.first_order_at),
    last_order_at = greatest(s.last_order_at, excluded.last_order_at), updated_at = now();

  -- kitchen ticket
  insert into public.kitchen_tickets (business_id, venue_id, order_id, order_number, fulfilment, table_ref, scheduled_for,
                                      items, allergens, notes)
  select v_order.business_id, v_order.venue_id, v_order.id, v_order.order_number, v_order.fulfilment, v_order.table_ref,
         v_order.scheduled_for,
         jsonb_agg(jsonb_build_object('name', i.name, 'variant', i.variant_name, 'quantity', i.quantity,
                                      'modifiers', (select coalesce(jsonb_agg(m ->> 'name'), '[]'::jsonb) from jsonb_array_elements(i.modifiers) m),
                                      'notes', i.notes) order by i.line_number),
         coalesce(v_allergens, '{}'), v_order.notes
  from public.order_items i where i.business_id = v_order.business_id and i.order_id = v_order.id
  on conflict (business_id, order_id) do nothing;

  -- loyalty (the rule lives in app.earn_points)
  if app.module_enabled(v_order.business_id, 'loyalty') then
    perform app.earn_points(v_order.business_id, v_customer, v_order.id, v_order.total_cents);
  end if;

  -- notifications the worker will send: the pickup code by SMS, the receipt by email
  insert into public.notification_log (business_id, event_key, channel, recipient, template, order_id, customer_id, venue_id)
  select v_order.business_id, 'order.paid:' || v_order.id, r.channel, r.recipient, r.template, v_order.id, v_customer, v_order.venue_id
  from (values ('sms', v_order.guest_phone, case when v_code is not null then 'pickup_code' else 'order_confirmation' end),
               ('email', v_order.guest_email, 'receipt')) as r (channel, recipient, template)
  where r.recipient is not null
  on conflict on constraint notification_log_natural_key do nothing;

  perform app.emit('order.paid', v_order.business_id, jsonb_build_object(
    'order_id', v_order.id, 'order_number', v_order.order_number, 'venue_id', v_order.venue_id,
    'customer_id', v_customer, 'total_cents', v_order.total_cents, 'pickup_code', v_code));

  -- stock through the recipes, in stock-item order so concurrent orders cannot deadlock; last, because
  -- a venue's stock rows are what concurrent paid orders wait on, and they stay locked until commit
  perform app.move_stock_for_order(v_order.business_id, v_order.id, -1, 'order', null);

  -- what arrived before the payment it is about: refunds Stripe already reported, deferred events
  perform app.apply_refund(r.business_id, r.id) from public.refunds r
  where r.business_id = v_order.business_id and r.order_id = v_order.id and r.status = 'succeeded' and r.applied_at is null;
  if p_payment_intent_id is not null then
    perform app.apply_deferred_stripe_events(p_payment_intent_id);
  end if;
  return true;
end
$$;
revoke all on function app.mark_order_paid(uuid, uuid, text, text, integer, text) from public;
grant execute on function app.mark_order_paid(uuid, uuid, text, text, integer, text) to service_role;

/** Stock movements for an order's lines through the recipes: sign -1 deducts (paid), +1 restores
    (refund with restock). p_lines limits it to {order_item_id: quantity}; null means every line. */
create function app.move_stock_for_order(p_business_id uuid, p_order_id uuid, p_sign integer, p_reason text, p_lines jsonb)
returns void
language sql volatile security definer
set search_path = ''
as $$
  insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason, order_id)
  select o.business_id, o.venue_id, s.id, p_sign * sum(r.quantity * q.quantity), p_reason, o.id
  from public.orders o
  join lateral (
    select i.*, coalesce((p_lines ->> i.id::text)::integer, i.quantity) as qty
    from public.order_items i
    where i.business_id = o.business_id and i.order_id = o.id and (p_lines is null or p_lines ? i.id::text)
  ) i on true
  cross join lateral (select i.qty as quantity) q
  join public.recipe_lines r on r.business_id = i.business_id and (
       r.product_id = i.product_id
    or r.variant_id = i.variant_id
    or r.modifier_id in (select (m ->> 'id')::uuid from jsonb_array_elements(i.modifiers) m))
  join public.stock_items s on s.business_id = o.business_id and s.venue_id = o.venue_id and s.sku = r.stock_sku
  where o.business_id = p_business_id and o.id = p_order_id
  group by o.business_id, o.venue_id, o.id, s.id
  having sum(r.quantity * q.quantity) <> 0
  order by s.id
$$;
revoke all on function app.move_stock_for_order(uuid, uuid, integer, text, jsonb) from public;
grant execute on function app.move_stock_for_order(uuid, uuid, integer, text, jsonb) to service_role;

-- section triggers

/** The status machines: kitchen status and payment status each move only along allowed edges;
    a pickup order completes only through verify_pickup_code; an order is accepted only once paid. */
create function app.tg_orders_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status is distinct from old.status then
    if not app.order_transition_allowed(old.status, new.status) then
      perform app.fail('BR120', 'illegal_transition', format('an order cannot go from %s to %s', old.status, new.status));
    end if;
    if new.status = 'accepted' and new.payment_status not in ('paid') then
      perform app.fail('BR121', 'order_not_paid', 'an order is accepted only once it is paid');
    end if;
    if new.status = 'completed' and new.fulfilment = 'pickup'
       and coalesce(current_setting('brigade.pickup_verified', true), '') <> new.id::text then
      perform app.fail('BR122', 'pickup_code_required', 'a pickup order completes when its pickup code is verified');
    end if;
    if new.status = 'cancelled' and nullif(trim(new.cancel_reason), '') is null then
      perform app.fail('BR123', 'cancel_reason_required', 'cancelling an order needs a reason');
    end if;
    case new.status
      when 'accepted' then new.accepted_at := now();
      when 'ready' then new.ready_at := now();
      when 'completed' then new.completed_at := now();
      when 'cancelled' then new.cancelled_at := now();
      else null;
    end case;
  end if;
  if not app.payment_transition_allowed(old.payment_status, new.payment_status) then
    perform app.fail('BR124', 'illegal_payment_transition',
                     format('payment cannot go from %s to %s', old.payment_status, new.payment_status));
  end if;
  new.updated_at := now();
  return new;
end
$$;

/** History, kitchen ticket, events and the ready call follow every status change. */
create function app.tg_orders_status_changed() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  insert into public.order_status_history (business_id, order_id, venue_id, from_status, to_status, changed_by, reason)
  values (new.business_id, new.id, new.venue_id, case when tg_op = 'UPDATE' then old.status end, new.status, auth.uid(),
          case when new.status = 'cancelled' then new.cancel_reason end);
  if tg_op = 'INSERT' then
    perform app.emit('order.placed', new.business_id, jsonb_build_object('order_id', new.id, 'venue_id', new.venue_id,
                                                                         'channel', new.channel, 'total_cents', new.total_cents));
    return null;
  end if;

  update public.kitchen_tickets t set
    status = case new.status when 'accepted' then 'accepted' when 'preparing' then 'in_progress' when 'ready' then 'ready'
                             when 'completed' then 'done' when 'cancelled' then 'cancelled' else t.status end,
    updated_at = now()
  where t.business_id = new.business_id and t.order_id = new.id;

  perform app.emit('order.status_changed', new.business_id, jsonb_build_object(
    'order_id', new.id, 'venue_id', new.venue_id, 'from', old.status, 'to', new.status));
  if new.status = 'ready' and new.guest_phone is not null then
    insert into public.notification_log (business_id, event_key, channel, recipient, template, order_id, customer_id, venue_id)
    values (new.business_id, 'order.ready:' || new.id, 'voice', new.guest_phone, 'order_ready', new.id, new.customer_id, new.venue_id)
    on conflict on constraint notification_log_natural_key do nothing;
    perform app.emit('order.ready', new.business_id, jsonb_build_object('order_id', new.id, 'order_number', new.order_number,
                                                                        'venue_id', new.venue_id));
  elsif new.status = 'cancelled' then
    perform app.emit('order.cancelled', new.business_id, jsonb_build_object('order_id', new.id, 'reason', new.cancel_reason,
                                                                            'payment_status', new.payment_status));
  end if;
  return null;
end
$$;

create trigger orders_guard before update on public.orders
  for each row execute function app.tg_orders_guard();
create trigger orders_status_placed after insert on public.orders
  for each row execute function app.tg_orders_status_changed();
create trigger orders_status_changed after update of status on public.orders
  for each row when (old.status is distinct from new.status) execute function app.tg_orders_status_changed();
create trigger order_status_history_append_only before update or delete on public.order_status_history
  for each row execute function app.tg_append_only();
create trigger stripe_events_append_only before delete on public.stripe_events
  for each row execute function app.tg_append_only();
create trigger refunds_touch before update on public.refunds
  for each row execute function app.tg_touch_updated_at();
create trigger kitchen_tickets_touch before update on public.kitchen_tickets
  for each row execute function app.tg_touch_updated_at();

-- section policies

create policy "staff read orders of their venues" on public.orders for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "customers read their orders" on public.orders for select to authenticated
  using (user_id = (select auth.uid()) and app.module_enabled(business_id, 'ordering'));
create policy "staff move orders of their venues" on public.orders for update to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k))
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));

create policy "staff read order lines of their venues" on public.order_items for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "customers read their order lines" on public.order_items for select to authenticated
  using ((business_id, order_id) in (select o.business_id, o.id from public.orders o where o.user_id = (select auth.uid())));

create policy "staff read order history of their venues" on public.order_status_history for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));

create policy "managers read payments" on public.payments for select to authenticated
  using ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers read refunds" on public.refunds for select to authenticated
  using ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));

create policy "staff read tickets of their venues" on public.kitchen_tickets for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));

-- section grants
revoke all on public.orders, public.order_items, public.order_status_history, public.payments, public.refunds,
  public.kitchen_tickets, public.stripe_events from anon, authenticated;
revoke all on app.secrets, app.business_counters from public, anon, authenticated;
grant select (business_id, id, venue_id, order_number, channel, fulfilment, table_ref, scheduled_for, status, payment_status,
              user_id, customer_id, guest_name, guest_phone, guest_email, delivery_address, notes, currency, subtotal_cents,
              discount_cents, tax_cents, tip_cents, delivery_fee_cents, total_cents, cost_cents, refunded_cents,
              payment_intent_id, pickup_code_expires_at, pickup_code_attempts, cancel_reason, placed_at, paid_at,
              accepted_at, ready_at, completed_at, cancelled_at, updated_at),
      update (status, cancel_reason) on public.orders to authenticated;
grant select on public.order_items, public.order_status_history, public.payments, public.refunds, public.kitchen_tickets
  to authenticated;
grant all on public.orders, public.order_items, public.order_status_history, public.payments, public.refunds,
  public.kitchen_tickets, public.stripe_events to service_role;

-- section realtime
alter publication supabase_realtime add table public.orders, public.kitchen_tickets;

-- section rpc

/** Place an order (anon guests and signed-in customers). Payload:
    {venue_id, channel: web|qr|phone, fulfilment: pickup|delivery|dine_in, table_ref, scheduled_for,
     customer: {name, phone, email}, delivery_address: {line1, city, postal_code, latitude, longitude},
     items: [{product_id, variant_id, modifier_ids: [], quantity, notes, unit_price_cents?}],
     tip_cents, notes, expected_total_cents?}
    The database prices every line; a client price that differs is refused (BR104), never used.
    Returns the order id, number, access token and the priced lines. Raises PT404 (venue), PT403
    (ordering off), BR101 closed, BR102 items, BR103 unavailable, BR104 price, BR105 unknown product,
    BR106 variant, BR107 modifiers, BR108 address, BR109 outside area, BR110 table, BR111 contact,
    BR112 past schedule, BR113 phone/email format, BR114 fulfilment not offered, 22023 bad values. */
create function public.place_order("order" jsonb) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.place_order("order")
$$;
revoke all on function public.place_order(jsonb) from public;
grant execute on function public.place_order(jsonb) to anon, authenticated, service_role;

/** Staff move an order along the kitchen flow (RLS: their venues). Raises PT404 (not visible),
    BR120 illegal transition, BR121 not paid, BR122 pickup code required, BR123 reason required. */
create function public.set_order_status(order_id uuid, status public.order_status, reason text default null)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_row record;
begin
  update public.orders o set status = set_order_status.status,
    cancel_reason = case when set_order_status.status = 'cancelled' then reason else o.cancel_reason end
  where o.id = set_order_status.order_id
  returning o.id, o.order_number, o.status, o.payment_status into v_row;
  if v_row.id is null then
    perform app.fail('PT404', 'order_not_found', 'no such order at your venues');
  end if;
  return to_jsonb(v_row);
end
$$;
revoke all on function public.set_order_status(uuid, public.order_status, text) from public;
grant execute on function public.set_order_status(uuid, public.order_status, text) to authenticated, service_role;

/** Staff check the code a customer shows at pickup. Five tries, 60 minutes; the sixth try, an
    expired code or a wrong one answer verified = false with the reason (attempts are counted, so
    the refusal is not an error that would roll the count back). A right code completes the order. */
create function app.verify_pickup_code(p_order_id uuid, p_code text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
begin
  select o.* into v_order from public.orders o where o.id = p_order_id for update;
  if v_order.id is null or not app.has_venue_access(v_order.business_id, v_order.venue_id, '{owner,manager,staff}') then
    perform app.fail('PT404', 'order_not_found', 'no such order at your venues');
  end if;
  perform app.require_module(v_order.business_id, 'ordering');
  if v_order.fulfilment <> 'pickup' or v_order.pickup_code_hash is null then
    perform app.fail('BR125', 'no_pickup_code', 'this order has no pickup code');
  end if;
  if v_order.status <> 'ready' then
    perform app.fail('BR126', 'order_not_ready', format('the order is %s, not ready', v_order.status));
  end if;
  if v_order.pickup_code_attempts >= 5 then
    return jsonb_build_object('verified', false, 'reason', 'too_many_attempts', 'attempts_left', 0);
  end if;
  update public.orders set pickup_code_attempts = pickup_code_attempts + 1
  where business_id = v_order.business_id and id = v_order.id;
  if v_order.pickup_code_expires_at < now() then
    return jsonb_build_object('verified', false, 'reason', 'expired', 'attempts_left', 4 - v_order.pickup_code_attempts);
  end if;
  if coalesce(p_code, '') !~ '^[0-9]{6}$' or app.pickup_code_hash(v_order.id, p_code) <> v_order.pickup_code_hash then
    return jsonb_build_object('verified', false, 'reason', 'wrong_code', 'attempts_left', 4 - v_order.pickup_code_attempts);
  end if;
  perform set_config('brigade.pickup_verified', v_order.id::text, true);
  update public.orders set status = 'completed', pickup_code_hash = null
  where business_id = v_order.business_id and id = v_order.id;
  perform set_config('brigade.pickup_verified', '', true);
  return jsonb_build_object('verified', true, 'reason', null, 'order_number', v_order.order_number);
end
$$;
revoke all on function app.verify_pickup_code(uuid, text) from public;
grant execute on function app.verify_pickup_code(uuid, text) to authenticated, service_role;

/** PostgREST entry point for app.verify_pickup_code. */
create function public.verify_pickup_code(order_id uuid, code text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.verify_pickup_code(order_id, code)
$$;
revoke all on function public.verify_pickup_code(uuid, text) from public;
grant execute on function public.verify_pickup_code(uuid, text) to authenticated, service_role;

/** The placer's view of an order, by its access token (anon guests). Raises PT404. */
create function app.get_order(p_order_id uuid, p_access_token uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  select jsonb_build_object('order_id', o.id, 'business_id', o.business_id, 'venue_id', o.venue_id, 'order_number', o.order_number,
    'status', o.status, 'payment_status', o.payment_status, 'fulfilment', o.fulfilment, 'currency', o.currency,
    'subtotal_cents', o.subtotal_cents, 'tax_cents', o.tax_cents, 'tip_cents', o.tip_cents,
    'delivery_fee_cents', o.delivery_fee_cents, 'discount_cents', o.discount_cents, 'total_cents', o.total_cents,
    'refunded_cents', o.refunded_cents, 'checkout_url', o.checkout_url, 'placed_at', o.placed_at, 'paid_at', o.paid_at,
    'ready_at', o.ready_at, 'completed_at', o.completed_at,
    'lines', (select jsonb_agg(jsonb_build_object('name', i.name, 'variant', i.variant_name, 'quantity', i.quantity,
                                                  'unit_price_cents', i.unit_price_cents, 'line_total_cents', i.line_total_cents,
                                                  'modifiers', (select coalesce(jsonb_agg(m - 'cost_cents'), '[]'::jsonb) from jsonb_array_elements(i.modifiers) m)) order by i.line_number)
              from public.order_items i where i.business_id = o.business_id and i.order_id = o.id))
  into v_result
  from public.orders o where o.id = p_order_id and o.access_token = p_access_token;
  if v_result is null then
    perform app.fail('PT404', 'order_not_found', 'no order with that id and token');
  end if;
  return v_result;
end
$$;
revoke all on function app.get_order(uuid, uuid) from public;
grant execute on function app.get_order(uuid, uuid) to anon, authenticated, service_role;

create function public.get_order(order_id uuid, access_token uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select app.get_order(order_id, access_token)
$$;
revoke all on function public.get_order(uuid, uuid) from public;
grant execute on function public.get_order(uuid, uuid) to anon, authenticated, service_role;
