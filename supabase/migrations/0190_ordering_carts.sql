-- Server-side carts (issue 16, item 1): a customer session per business (guest or signed in) holding a
-- cart the database prices on every change with the same line pricing as place_order
-- (app.price_order_line: variants, modifiers, availability at the venue), plus opening hours, tax,
-- delivery fee, tip and a voucher preview. Checkout calls app.place_order itself with the prices the
-- customer last saw (so place_order re-checks every one of them), once per cart. A guest cart merges
-- into the signed-in customer's; idle carts of signed-in customers feed the `cart.abandoned`
-- automation. Codes BR19x (docs/errors.md).

-- section tables

/** A customer's session at one business: guest (user_id null, the token is the key) or signed in
    (only that user, with the token). Only the hash of the token is kept. expires_at slides forward
    with every use (app.cart_session_ttl). status: open → ordered (order_id, order_result kept for an
    idempotent checkout) or merged (merged_into: the cart that took its items) or expired. Reached
    only through the cart RPCs; no API role reads the table. */
create table public.customer_sessions (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  venue_id uuid not null,
  token_hash text not null,
  user_id uuid,
  customer_id uuid,
  status text not null default 'open' constraint customer_sessions_status_valid check (status in ('open', 'ordered', 'merged', 'expired')),
  merged_into uuid,
  fulfilment text not null default 'pickup' constraint customer_sessions_fulfilment_valid check (fulfilment in ('pickup', 'delivery', 'dine_in')),
  table_ref text,
  scheduled_for timestamptz,
  delivery_address jsonb,
  contact jsonb not null default '{}'::jsonb,
  tip_cents integer not null default 0 constraint customer_sessions_tip_range check (tip_cents between 0 and 100000),
  voucher_code text,
  notes text not null default '' constraint customer_sessions_notes_length check (length(notes) <= 1000),
  order_id uuid,
  order_result jsonb,
  abandoned_at timestamptz,
  last_activity_at timestamptz not null default now(),
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint customer_sessions_pkey primary key (business_id, id),
  constraint customer_sessions_token_key unique (business_id, token_hash),
  constraint customer_sessions_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade,
  constraint customer_sessions_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id)
    on delete set null (customer_id),
  constraint customer_sessions_merged_fkey foreign key (business_id, merged_into) references public.customer_sessions (business_id, id)
    on delete set null (merged_into),
  constraint customer_sessions_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id)
    on delete set null (order_id),
  constraint customer_sessions_ordered check (status <> 'ordered' or order_result is not null),
  constraint customer_sessions_merged check ((status = 'merged') = (merged_into is not null))
);
alter table public.customer_sessions enable row level security;

/** A line of a cart: what the customer chose (product, variant, options, quantity, notes) and the
    unit price they were last shown (seen_unit_price_cents), which a price change is compared with. */
create table public.cart_items (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  session_id uuid not null,
  product_id uuid not null,
  variant_id uuid,
  modifier_ids uuid[] not null default '{}',
  quantity integer not null constraint cart_items_quantity_range check (quantity between 1 and 99),
  notes text not null default '' constraint cart_items_notes_length check (length(notes) <= 500),
  seen_unit_price_cents integer,
  created_at timestamptz not null default clock_timestamp(),
  updated_at timestamptz not null default now(),
  constraint cart_items_pkey primary key (business_id, id),
  constraint cart_items_session_fkey foreign key (business_id, session_id) references public.customer_sessions (business_id, id) on delete cascade
);
alter table public.cart_items enable row level security;

-- section automations: the abandoned-cart trigger and its idle time
alter table public.automations drop constraint automations_trigger_valid;
alter table public.automations add constraint automations_trigger_valid check (trigger in (
  'customer.dormant', 'customer.birthday', 'stock.critical', 'loyalty.tier_changed', 'order.first', 'order.review_request',
  'cart.abandoned'));
alter table public.automations add column cart_idle_minutes integer not null default 120
  constraint automations_cart_idle_range check (cart_idle_minutes between 15 and 10080);
grant insert (cart_idle_minutes), update (cart_idle_minutes) on public.automations to authenticated;

-- section indexes
create index customer_sessions_token_idx on public.customer_sessions (token_hash);
create index customer_sessions_user_idx on public.customer_sessions (business_id, user_id) where user_id is not null and status = 'open';
create index customer_sessions_idle_idx on public.customer_sessions (business_id, last_activity_at)
  where status = 'open' and user_id is not null and abandoned_at is null;
create index customer_sessions_venue_idx on public.customer_sessions (business_id, venue_id);
create index customer_sessions_customer_idx on public.customer_sessions (business_id, customer_id);
create index customer_sessions_order_idx on public.customer_sessions (business_id, order_id);
create index customer_sessions_merged_idx on public.customer_sessions (business_id, merged_into);
create index cart_items_session_idx on public.cart_items (business_id, session_id, created_at);

-- section private helpers

/** How long an unused cart lives: 7 days, or the database setting brigade.cart_session_ttl. */
create function app.cart_session_ttl() returns interval
language sql stable
set search_path = ''
as $$
  select coalesce(nullif(current_setting('brigade.cart_session_ttl', true), '')::interval, interval '7 days')
$$;
revoke all on function app.cart_session_ttl() from public;
grant execute on function app.cart_session_ttl() to service_role;

/** Prices one order line exactly as place_order does (the same checks, in the same order, with the
    same errors: BR102 quantity, BR105 unknown product, BR103 unavailable at the venue, BR106 variant,
    BR107 modifiers, BR104 a client price that differs). Returns the priced line with costs. The cart
    prices through it; place_order's own loop is the same rules and the property test in
    tests/db/test_carts.py holds them equal (place_order can be switched to call it). */
create function app.price_order_line(p_business_id uuid, p_venue_id uuid, p_line integer, p_item jsonb) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_product public.products;
  v_variant public.product_variants;
  v_qty integer;
  v_mod_ids uuid[];
  v_mods jsonb;
  v_unit_price integer;
  v_unit_cost integer;
  v_bad record;
begin
  v_qty := (p_item ->> 'quantity')::integer;
  if v_qty is null or v_qty < 1 or v_qty > 99 then
    perform app.fail('BR102', 'invalid_quantity', format('line %s: quantity must be 1 to 99', p_line));
  end if;

  select p.* into v_product from public.products p
  where p.business_id = p_business_id and p.id = (p_item ->> 'product_id')::uuid;
  if v_product.id is null then
    perform app.fail('BR105', 'unknown_product', format('line %s: no such product at this business', p_line));
  end if;
  if not app.product_available(p_business_id, p_venue_id, v_product.id) then
    perform app.fail('BR103', 'product_unavailable', format('line %s: %s is not available', p_line, v_product.name));
  end if;

  if p_item ? 'variant_id' and p_item ->> 'variant_id' is not null then
    select pv.* into v_variant from public.product_variants pv
    where pv.business_id = p_business_id and pv.product_id = v_product.id and pv.id = (p_item ->> 'variant_id')::uuid
      and pv.is_available;
    if v_variant.id is null then
      perform app.fail('BR106', 'invalid_variant', format('line %s: that variant of %s is not available', p_line, v_product.name));
    end if;
  elsif exists (select 1 from public.product_variants pv
                where pv.business_id = p_business_id and pv.product_id = v_product.id and pv.is_available) then
    select pv.* into v_variant from public.product_variants pv
    where pv.business_id = p_business_id and pv.product_id = v_product.id and pv.is_available and pv.is_default
    limit 1;
    if v_variant.id is null then
      perform app.fail('BR106', 'variant_required', format('line %s: choose a variant of %s', p_line, v_product.name));
    end if;
  end if;

  select coalesce(array_agg(distinct x::uuid), '{}') into v_mod_ids
  from jsonb_array_elements_text(coalesce(p_item -> 'modifier_ids', '[]'::jsonb)) x;
  if exists (
    select 1 from unnest(v_mod_ids) mid
    where not exists (
      select 1 from public.modifiers m
      join public.product_modifier_groups pmg on pmg.business_id = m.business_id and pmg.group_id = m.group_id
      where m.business_id = p_business_id and m.id = mid and m.is_available and pmg.product_id = v_product.id)) then
    perform app.fail('BR107', 'invalid_modifier', format('line %s: a chosen option does not apply to %s', p_line, v_product.name));
  end if;
  select g.name, g.min_choices, g.max_choices, count(m.id) as chosen into v_bad
  from public.product_modifier_groups pmg
  join public.modifier_groups g on g.business_id = pmg.business_id and g.id = pmg.group_id
  left join public.modifiers m on m.business_id = g.business_id and m.group_id = g.id and m.id = any (v_mod_ids)
  where pmg.business_id = p_business_id and pmg.product_id = v_product.id
  group by g.id, g.name, g.min_choices, g.max_choices
  having count(m.id) < g.min_choices or count(m.id) > g.max_choices
  limit 1;
  if v_bad.name is not null then
    perform app.fail('BR107', 'modifier_rules', format('line %s: %s needs %s to %s choice(s), got %s',
                                                       p_line, v_bad.name, v_bad.min_choices, v_bad.max_choices, v_bad.chosen));
  end if;
  select coalesce(jsonb_agg(jsonb_build_object('id', m.id, 'group_id', m.group_id, 'name', m.name,
                                               'price_cents', m.price_cents, 'cost_cents', m.cost_cents) order by m.sort_order, m.name), '[]'::jsonb)
  into v_mods
  from public.modifiers m where m.business_id = p_business_id and m.id = any (v_mod_ids);

  v_unit_price := v_product.price_cents + coalesce(v_variant.price_adjustment_cents, 0)
                  + coalesce((select sum((m ->> 'price_cents')::integer) from jsonb_array_elements(v_mods) m), 0);
  v_unit_cost := v_product.cost_cents + coalesce(v_variant.cost_adjustment_cents, 0)
                 + coalesce((select sum((m ->> 'cost_cents')::integer) from jsonb_array_elements(v_mods) m), 0);
  if v_unit_price < 0 then
    v_unit_price := 0;
  end if;
  if p_item ? 'unit_price_cents' and (p_item ->> 'unit_price_cents')::integer is distinct from v_unit_price then
    perform app.fail('BR104', 'price_mismatch', format('line %s: %s costs %s, not %s', p_line, v_product.name,
                                                        v_unit_price, p_item ->> 'unit_price_cents'));
  end if;

  return jsonb_build_object(
    'line_number', p_line, 'product_id', v_product.id, 'variant_id', v_variant.id, 'name', v_product.name,
    'variant_name', v_variant.name, 'modifiers', v_mods, 'quantity', v_qty, 'unit_price_cents', v_unit_price,
    'unit_cost_cents', v_unit_cost, 'line_total_cents', v_unit_price * v_qty,
    'notes', left(coalesce(p_item ->> 'notes', ''), 500));
end
$$;
revoke all on function app.price_order_line(uuid, uuid, integer, jsonb) from public;
grant execute on function app.price_order_line(uuid, uuid, integer, jsonb) to service_role;

/** What a voucher would take off a cart, checked the way app.apply_voucher checks it at placing
    (issued, unexpired, loyalty on, owned by whoever orders: the signed-in user, the phone or the
    email). {ok, code, reason, message, discount_cents, free_line}. Changes nothing. */
create function app.preview_voucher(p_session public.customer_sessions, p_delivery_fee integer) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_voucher public.reward_redemptions;
  v_reward public.rewards;
  v_owner public.customers;
  v_product public.products;
  v_phone text := app.normalize_phone(p_session.contact ->> 'phone');
  v_email text := nullif(lower(trim(p_session.contact ->> 'email')), '');
  v_credit integer;
begin
  if p_session.user_id is not null then
    v_email := coalesce(v_email, (select nullif(lower(u.email), '') from auth.users u where u.id = p_session.user_id));
  end if;
  select r.* into v_voucher from public.reward_redemptions r
  where r.business_id = p_session.business_id and r.code = upper(p_session.voucher_code) and r.status = 'issued' and r.expires_at > now();
  select c.* into v_owner from public.customers c where c.business_id = p_session.business_id and c.id = v_voucher.customer_id;
  if v_voucher.id is null or not app.module_enabled(p_session.business_id, 'loyalty')
     or not coalesce(v_owner.user_id = p_session.user_id or v_owner.phone = v_phone or lower(v_owner.email) = v_email, false) then
    return jsonb_build_object('ok', false, 'code', 'BR115', 'reason', 'invalid_voucher', 'message', 'no such voucher for you');
  end if;
  select w.* into v_reward from public.rewards w where w.business_id = p_session.business_id and w.id = v_voucher.reward_id;
  if v_reward.kind = 'free_product' then
    select p.* into v_product from public.products p where p.business_id = p_session.business_id and p.id = v_reward.product_id;
    if not app.product_available(p_session.business_id, p_session.venue_id, v_product.id) then
      return jsonb_build_object('ok', false, 'code', 'BR103', 'reason', 'product_unavailable',
                                'message', format('%s is not available', v_product.name));
    end if;
    return jsonb_build_object('ok', true, 'code', upper(p_session.voucher_code), 'discount_cents', 0,
      'free_line', jsonb_build_object('product_id', v_product.id, 'name', v_product.name, 'quantity', 1,
                                      'unit_price_cents', 0, 'line_total_cents', 0, 'notes', 'reward: ' || v_reward.name));
  end if;
  v_credit := least(v_reward.credit_cents, p_delivery_fee);
  if p_session.fulfilment <> 'delivery' or v_credit <= 0 then
    return jsonb_build_object('ok', false, 'code', 'BR116', 'reason', 'voucher_not_applicable',
                              'message', 'a delivery credit applies to delivery orders');
  end if;
  return jsonb_build_object('ok', true, 'code', upper(p_session.voucher_code), 'discount_cents', v_credit);
end
$$;
revoke all on function app.preview_voucher(public.customer_sessions, integer) from public;
grant execute on function app.preview_voucher(public.customer_sessions, integer) to service_role;

/** The session a token opens, locked, with its expiry slid forward: a merged session leads to the
    one that took its items (for its owner). Raises PT404 cart_not_found (unknown token, another
    user's cart) or cart_expired. */
create function app.cart_session(p_token text, p_lock boolean default true) returns public.customer_sessions
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_session public.customer_sessions;
  v_hops integer := 0;
begin
  if p_token is null or length(p_token) < 20 or length(p_token) > 200 then
    perform app.fail('PT404', 'cart_not_found', 'no cart with that token');
  end if;
  select s.* into v_session from public.customer_sessions s
  where s.token_hash = encode(extensions.digest(convert_to(p_token, 'UTF8'), 'sha256'), 'hex')
  for update;
  while v_session.status = 'merged' and v_hops < 5 loop
    select s.* into v_session from public.customer_sessions s
    where s.business_id = v_session.business_id and s.id = v_session.merged_into
    for update;
    v_hops := v_hops + 1;
  end loop;
  if v_session.id is null or (v_session.user_id is not null and v_session.user_id is distinct from auth.uid()) then
    perform app.fail('PT404', 'cart_not_found', 'no cart with that token');
  end if;
  if v_session.status = 'expired' or (v_session.status = 'open' and v_session.expires_at <= now()) then
    update public.customer_sessions set status = 'expired', updated_at = now()
    where business_id = v_session.business_id and id = v_session.id and status = 'open';
    perform app.fail('PT404', 'cart_expired', 'the cart has expired');
  end if;
  perform app.require_module(v_session.business_id, 'ordering');
  if v_session.status = 'open' then
    update public.customer_sessions
    set expires_at = now() + app.cart_session_ttl(), last_activity_at = now(), updated_at = now()
    where business_id = v_session.business_id and id = v_session.id
    returning * into v_session;
  end if;
  return v_session;
end
$$;
revoke all on function app.cart_session(text, boolean) from public;
grant execute on function app.cart_session(text, boolean) to service_role;

/** Refuses changes to a cart that was ordered (BR192 cart_closed). */
create function app.cart_require_open(p_session public.customer_sessions) returns void
language plpgsql immutable
set search_path = ''
as $$
begin
  if p_session.status <> 'open' then
    perform app.fail('BR192', 'cart_closed', 'this cart was already turned into an order');
  end if;
end
$$;
revoke all on function app.cart_require_open(public.customer_sessions) from public;
grant execute on function app.cart_require_open(public.customer_sessions) to service_role;

/** The priced cart: every line priced now through app.price_order_line; a line that can no longer be
    ordered (gone, switched off, variant or options withdrawn) is listed with its reason and left out
    of the totals; a line whose unit price moved since the customer last saw it is listed under
    `changes` (was/now). With p_ack the prices shown become the seen prices (a change is reported once,
    on the next read). Totals as place_order computes them: tax rounded on the subtotal, the venue's
    delivery fee for delivery, the tip, the voucher's discount. */
create function app.cart_json(p_session public.customer_sessions, p_ack boolean) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_venue public.venues;
  v_item public.cart_items;
  v_priced jsonb;
  v_lines jsonb := '[]'::jsonb;
  v_unavailable jsonb := '[]'::jsonb;
  v_changes jsonb := '[]'::jsonb;
  v_line integer := 0;
  v_subtotal integer := 0;
  v_tax integer;
  v_delivery integer := 0;
  v_discount integer := 0;
  v_voucher jsonb;
  v_open boolean;
  v_problems jsonb := '[]'::jsonb;
  v_state text;
  v_hint text;
  v_message text;
begin
  select v.* into v_venue from public.venues v where v.business_id = p_session.business_id and v.id = p_session.venue_id;
  for v_item in
    select i.* from public.cart_items i
    where i.business_id = p_session.business_id and i.session_id = p_session.id
    order by i.created_at, i.id
  loop
    v_line := v_line + 1;
    begin
      v_priced := app.price_order_line(p_session.business_id, p_session.venue_id, v_line, jsonb_strip_nulls(jsonb_build_object(
        'product_id', v_item.product_id, 'variant_id', v_item.variant_id, 'modifier_ids', to_jsonb(v_item.modifier_ids),
        'quantity', v_item.quantity, 'notes', v_item.notes)));
    exception when others then
      get stacked diagnostics v_state = returned_sqlstate, v_hint = pg_exception_hint, v_message = message_text;
      if v_state not like 'BR%' then
        raise;
      end if;
      v_unavailable := v_unavailable || jsonb_build_object('item_id', v_item.id, 'product_id', v_item.product_id,
        'quantity', v_item.quantity, 'code', v_state, 'reason', v_hint, 'message', v_message);
      continue;
    end;
    if v_item.seen_unit_price_cents is not null and v_item.seen_unit_price_cents <> (v_priced ->> 'unit_price_cents')::integer then
      v_changes := v_changes || jsonb_build_object('item_id', v_item.id, 'product_id', v_item.product_id, 'name', v_priced ->> 'name',
        'was_unit_price_cents', v_item.seen_unit_price_cents, 'unit_price_cents', (v_priced ->> 'unit_price_cents')::integer);
    end if;
    if p_ack and v_item.seen_unit_price_cents is distinct from (v_priced ->> 'unit_price_cents')::integer then
      update public.cart_items set seen_unit_price_cents = (v_priced ->> 'unit_price_cents')::integer, updated_at = now()
      where business_id = v_item.business_id and id = v_item.id;
    end if;
    v_lines := v_lines || (v_priced - 'unit_cost_cents' - 'line_number'
      || jsonb_build_object('item_id', v_item.id,
                            'modifiers', (select coalesce(jsonb_agg(m - 'cost_cents'), '[]'::jsonb) from jsonb_array_elements(v_priced -> 'modifiers') m)));
    v_subtotal := v_subtotal + (v_priced ->> 'line_total_cents')::integer;
  end loop;

  v_tax := round(v_subtotal * v_venue.tax_rate_bps / 10000.0);
  if p_session.fulfilment = 'delivery' then
    v_delivery := v_venue.delivery_fee_cents;
  end if;
  if p_session.voucher_code is not null then
    v_voucher := app.preview_voucher(p_session, v_delivery);
    if (v_voucher ->> 'ok')::boolean then
      v_discount := (v_voucher ->> 'discount_cents')::integer;
      if v_voucher ? 'free_line' then
        v_lines := v_lines || (v_voucher -> 'free_line' || jsonb_build_object('reward', true));
      end if;
    else
      v_problems := v_problems || (v_voucher - 'ok');
    end if;
  end if;
  v_open := app.venue_is_open(p_session.business_id, p_session.venue_id, coalesce(p_session.scheduled_for, now()));
  if not v_open then
    v_problems := v_problems || jsonb_build_object('code', 'BR101', 'reason', 'venue_closed',
      'message', case when p_session.scheduled_for is null then 'the venue is closed now' else 'the venue is closed at the scheduled time' end);
  end if;

  return jsonb_build_object(
    'cart_id', p_session.id, 'business_id', p_session.business_id, 'venue_id', p_session.venue_id, 'status', p_session.status,
    'order_id', p_session.order_id, 'signed_in', p_session.user_id is not null, 'expires_at', p_session.expires_at,
    'fulfilment', p_session.fulfilment, 'table_ref', p_session.table_ref, 'scheduled_for', p_session.scheduled_for,
    'delivery_address', p_session.delivery_address, 'customer', p_session.contact, 'voucher_code', p_session.voucher_code,
    'currency', (select b.currency from public.businesses b where b.id = p_session.business_id),
    'lines', v_lines, 'unavailable', v_unavailable, 'changes', v_changes, 'problems', v_problems, 'venue_open', v_open,
    'item_count', (select coalesce(sum((l ->> 'quantity')::integer), 0) from jsonb_array_elements(v_lines) l where not (l ? 'reward')),
    'subtotal_cents', v_subtotal, 'discount_cents', v_discount, 'tax_cents', v_tax, 'tip_cents', p_session.tip_cents,
    'delivery_fee_cents', v_delivery, 'total_cents', v_subtotal - v_discount + v_tax + p_session.tip_cents + v_delivery);
end
$$;
revoke all on function app.cart_json(public.customer_sessions, boolean) from public;
grant execute on function app.cart_json(public.customer_sessions, boolean) to service_role;

/** Adds one item's choices to a cart, merging with an identical line (quantities add, at most 99). */
create function app.cart_put_item(p_session public.customer_sessions, p_product uuid, p_variant uuid, p_mods uuid[],
                                  p_quantity integer, p_notes text, p_seen integer) returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  update public.cart_items i set quantity = least(i.quantity + p_quantity, 99), seen_unit_price_cents = coalesce(p_seen, i.seen_unit_price_cents),
                                 updated_at = now()
  where i.business_id = p_session.business_id and i.session_id = p_session.id and i.product_id = p_product
    and i.variant_id is not distinct from p_variant
    and (select coalesce(array_agg(x order by x), '{}') from unnest(i.modifier_ids) x)
        = (select coalesce(array_agg(x order by x), '{}') from unnest(p_mods) x)
    and i.notes = coalesce(p_notes, '')
  returning i.id into v_id;
  if v_id is null then
    if (select count(*) from public.cart_items i where i.business_id = p_session.business_id and i.session_id = p_session.id) >= 100 then
      perform app.fail('BR102', 'too_many_items', 'a cart has at most 100 lines');
    end if;
    insert into public.cart_items (business_id, session_id, product_id, variant_id, modifier_ids, quantity, notes, seen_unit_price_cents)
    values (p_session.business_id, p_session.id, p_product, p_variant, coalesce(p_mods, '{}'), p_quantity, coalesce(p_notes, ''), p_seen)
    returning id into v_id;
  end if;
  return v_id;
end
$$;
revoke all on function app.cart_put_item(public.customer_sessions, uuid, uuid, uuid[], integer, text, integer) from public;
grant execute on function app.cart_put_item(public.customer_sessions, uuid, uuid, uuid[], integer, text, integer) to service_role;

-- section rpc functions

/** Opens a cart at a published venue (ordering on). Signed in: the cart is the user's (and their
    customer record's at this business). Returns {session_token, cart}; keep the token, it is shown
    once. Raises PT404 venue_not_found, PT403 module_disabled. */
create function app.start_cart(p_venue_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_venue public.venues;
  v_token text := translate(encode(extensions.gen_random_bytes(32), 'base64'), '+/=', '-_');
  v_session public.customer_sessions;
begin
  select v.* into v_venue from public.venues v where v.id = p_venue_id and v.is_published;
  if v_venue.id is null then
    perform app.fail('PT404', 'venue_not_found', 'no published venue with that id');
  end if;
  perform app.require_module(v_venue.business_id, 'ordering');
  insert into public.customer_sessions (business_id, venue_id, token_hash, user_id, customer_id, expires_at)
  values (v_venue.business_id, v_venue.id, encode(extensions.digest(convert_to(v_token, 'UTF8'), 'sha256'), 'hex'), auth.uid(),
          (select c.id from public.customers c where c.business_id = v_venue.business_id and c.user_id = auth.uid()
             and auth.uid() is not null and c.merged_into is null limit 1),
          now() + app.cart_session_ttl())
  returning * into v_session;
  return jsonb_build_object('session_token', v_token, 'cart', app.cart_json(v_session, true));
end
$$;
revoke all on function app.start_cart(uuid) from public;
grant execute on function app.start_cart(uuid) to anon, authenticated, service_role;

/** Adds {product_id, variant_id?, modifier_ids?, quantity, notes?} to the cart, priced and checked
    by app.price_order_line first (its errors, and nothing changes). Returns the priced cart. */
create function app.add_to_cart(p_token text, p_item jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_session public.customer_sessions := app.cart_session(p_token);
  v_priced jsonb;
begin
  perform app.cart_require_open(v_session);
  if jsonb_typeof(p_item) is distinct from 'object' then
    perform app.fail('22023', 'invalid_input', 'item must be an object {product_id, quantity, ...}');
  end if;
  v_priced := app.price_order_line(v_session.business_id, v_session.venue_id, 1, p_item - 'unit_price_cents');
  perform app.cart_put_item(v_session, (v_priced ->> 'product_id')::uuid, (v_priced ->> 'variant_id')::uuid,
    (select coalesce(array_agg((m ->> 'id')::uuid), '{}') from jsonb_array_elements(v_priced -> 'modifiers') m),
    (v_priced ->> 'quantity')::integer, nullif(v_priced ->> 'notes', ''), (v_priced ->> 'unit_price_cents')::integer);
  return app.cart_json(v_session, true);
end
$$;
revoke all on function app.add_to_cart(text, jsonb) from public;
grant execute on function app.add_to_cart(text, jsonb) to anon, authenticated, service_role;

/** Changes a line: {quantity (0 removes), variant_id, modifier_ids, notes}, re-priced and checked
    like an add. Raises PT404 item_not_found. Returns the priced cart. */
create function app.update_cart_item(p_token text, p_item_id uuid, p_changes jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_session public.customer_sessions := app.cart_session(p_token);
  v_item public.cart_items;
  v_next jsonb;
  v_priced jsonb;
begin
  perform app.cart_require_open(v_session);
  select i.* into v_item from public.cart_items i
  where i.business_id = v_session.business_id and i.session_id = v_session.id and i.id = p_item_id for update;
  if v_item.id is null then
    perform app.fail('PT404', 'item_not_found', 'no such line in this cart');
  end if;
  if jsonb_typeof(p_changes) is distinct from 'object' then
    perform app.fail('22023', 'invalid_input', 'changes must be an object {quantity, variant_id, modifier_ids, notes}');
  end if;
  if (p_changes ->> 'quantity') = '0' then
    delete from public.cart_items where business_id = v_item.business_id and id = v_item.id;
    return app.cart_json(v_session, true);
  end if;
  v_next := jsonb_build_object('product_id', v_item.product_id, 'variant_id', v_item.variant_id,
                               'modifier_ids', to_jsonb(v_item.modifier_ids), 'quantity', v_item.quantity, 'notes', v_item.notes)
            || (p_changes - 'product_id' - 'unit_price_cents');
  v_priced := app.price_order_line(v_session.business_id, v_session.venue_id, 1, v_next);
  update public.cart_items
  set variant_id = (v_priced ->> 'variant_id')::uuid,
      modifier_ids = (select coalesce(array_agg((m ->> 'id')::uuid), '{}') from jsonb_array_elements(v_priced -> 'modifiers') m),
      quantity = (v_priced ->> 'quantity')::integer, notes = v_priced ->> 'notes',
      seen_unit_price_cents = (v_priced ->> 'unit_price_cents')::integer, updated_at = now()
  where business_id = v_item.business_id and id = v_item.id;
  return app.cart_json(v_session, true);
end
$$;
revoke all on function app.update_cart_item(text, uuid, jsonb) from public;
grant execute on function app.update_cart_item(text, uuid, jsonb) to anon, authenticated, service_role;

/** Removes a line (PT404 item_not_found). Returns the priced cart. */
create function app.remove_from_cart(p_token text, p_item_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_session public.customer_sessions := app.cart_session(p_token);
begin
  perform app.cart_require_open(v_session);
  delete from public.cart_items i where i.business_id = v_session.business_id and i.session_id = v_session.id and i.id = p_item_id;
  if not found then
    perform app.fail('PT404', 'item_not_found', 'no such line in this cart');
  end if;
  return app.cart_json(v_session, true);
end
$$;
revoke all on function app.remove_from_cart(text, uuid) from public;
grant execute on function app.remove_from_cart(text, uuid) to anon, authenticated, service_role;

/** Sets how and for whom: {fulfilment, table_ref, scheduled_for, delivery_address, customer: {name,
    phone, email}, tip_cents, notes} (keys present replace; null clears). Checked again by place_order
    at checkout; here only the shape: 22023 invalid_input. Returns the priced cart. */
create function app.set_cart_details(p_token text, p_details jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_session public.customer_sessions := app.cart_session(p_token);
begin
  perform app.cart_require_open(v_session);
  if jsonb_typeof(p_details) is distinct from 'object' then
    perform app.fail('22023', 'invalid_input', 'details must be an object');
  end if;
  if p_details ? 'fulfilment' and coalesce(p_details ->> 'fulfilment', '') not in ('pickup', 'delivery', 'dine_in') then
    perform app.fail('22023', 'invalid_fulfilment', 'fulfilment must be pickup, delivery or dine_in');
  end if;
  if p_details ? 'tip_cents' and (jsonb_typeof(p_details -> 'tip_cents') <> 'number'
                                  or (p_details ->> 'tip_cents')::numeric not between 0 and 100000) then
    perform app.fail('22023', 'invalid_tip', 'tip_cents must be between 0 and 100000');
  end if;
  if p_details ? 'customer' and jsonb_typeof(p_details -> 'customer') not in ('object', 'null') then
    perform app.fail('22023', 'invalid_input', 'customer must be an object {name, phone, email}');
  end if;
  if p_details ? 'delivery_address' and jsonb_typeof(p_details -> 'delivery_address') not in ('object', 'null') then
    perform app.fail('22023', 'invalid_input', 'delivery_address must be an object');
  end if;
  begin
    update public.customer_sessions s set
      fulfilment = case when p_details ? 'fulfilment' then p_details ->> 'fulfilment' else s.fulfilment end,
      table_ref = case when p_details ? 'table_ref' then nullif(trim(p_details ->> 'table_ref'), '') else s.table_ref end,
      scheduled_for = case when p_details ? 'scheduled_for' then (p_details ->> 'scheduled_for')::timestamptz else s.scheduled_for end,
      delivery_address = case when p_details ? 'delivery_address' then nullif(p_details -> 'delivery_address', 'null'::jsonb) else s.delivery_address end,
      contact = case when p_details ? 'customer' then coalesce(nullif(p_details -> 'customer', 'null'::jsonb), '{}'::jsonb) else s.contact end,
      tip_cents = case when p_details ? 'tip_cents' then (p_details ->> 'tip_cents')::integer else s.tip_cents end,
      notes = case when p_details ? 'notes' then left(coalesce(p_details ->> 'notes', ''), 1000) else s.notes end,
      updated_at = now()
    where s.business_id = v_session.business_id and s.id = v_session.id
    returning * into v_session;
  exception when invalid_datetime_format or datetime_field_overflow then
    perform app.fail('22023', 'invalid_input', 'scheduled_for must be a timestamp');
  end;
  return app.cart_json(v_session, true);
end
$$;
revoke all on function app.set_cart_details(text, jsonb) from public;
grant execute on function app.set_cart_details(text, jsonb) to anon, authenticated, service_role;

/** Applies a voucher code to the cart (null removes it). The code must apply now, as place_order
    would take it (BR115 invalid_voucher, BR116 voucher_not_applicable, BR103 the free product is
    unavailable); a voucher that stops applying later is reported under `problems`. */
create function app.apply_cart_voucher(p_token text, p_code text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_session public.customer_sessions := app.cart_session(p_token);
  v_preview jsonb;
begin
  perform app.cart_require_open(v_session);
  v_session.voucher_code := nullif(upper(trim(p_code)), '');
  if v_session.voucher_code is not null then
    v_preview := app.preview_voucher(v_session,
      case when v_session.fulfilment = 'delivery'
           then (select v.delivery_fee_cents from public.venues v where v.business_id = v_session.business_id and v.id = v_session.venue_id)
           else 0 end);
    if not (v_preview ->> 'ok')::boolean then
      perform app.fail(v_preview ->> 'code', v_preview ->> 'reason', v_preview ->> 'message');
    end if;
  end if;
  update public.customer_sessions set voucher_code = v_session.voucher_code, updated_at = now()
  where business_id = v_session.business_id and id = v_session.id;
  return app.cart_json(v_session, true);
end
$$;
revoke all on function app.apply_cart_voucher(text, text) from public;
grant execute on function app.apply_cart_voucher(text, text) to anon, authenticated, service_role;

/** The priced cart (see app.cart_json); reading it acknowledges reported price changes. */
create function app.get_cart(p_token text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  return app.cart_json(app.cart_session(p_token), true);
end
$$;
revoke all on function app.get_cart(text) from public;
grant execute on function app.get_cart(text) to anon, authenticated, service_role;

/** Turns the cart into an order through app.place_order, once: the session row is locked, so a second
    or concurrent checkout waits and gets the same order back. The lines go with the prices the
    customer last saw and the total they were shown, so place_order itself refuses anything that moved
    (BR104). Raises BR190 cart_empty, BR191 cart_changed (a line became unavailable, a price changed
    or the voucher stopped applying since the last read: read the cart again), and whatever
    place_order raises (closed, contact, address...). */
create function app.checkout_cart(p_token text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_session public.customer_sessions := app.cart_session(p_token);
  v_cart jsonb;
  v_result jsonb;
begin
  if v_session.status = 'ordered' then
    return v_session.order_result || jsonb_build_object('already_placed', true);
  end if;
  v_cart := app.cart_json(v_session, false);
  if jsonb_array_length(v_cart -> 'lines') = 0 and jsonb_array_length(v_cart -> 'unavailable') = 0 then
    perform app.fail('BR190', 'cart_empty', 'the cart is empty');
  end if;
  if jsonb_array_length(v_cart -> 'unavailable') > 0 or jsonb_array_length(v_cart -> 'changes') > 0
     or exists (select 1 from jsonb_array_elements(v_cart -> 'problems') p where p ->> 'code' in ('BR115', 'BR116', 'BR103')) then
    perform app.fail('BR191', 'cart_changed', 'the cart changed since you last saw it: read it again');
  end if;
  v_result := app.place_order(jsonb_strip_nulls(jsonb_build_object(
    'venue_id', v_session.venue_id, 'channel', 'web', 'fulfilment', v_session.fulfilment, 'table_ref', v_session.table_ref,
    'scheduled_for', v_session.scheduled_for, 'delivery_address', v_session.delivery_address, 'customer', v_session.contact,
    'tip_cents', v_session.tip_cents, 'notes', nullif(v_session.notes, ''), 'voucher_code', v_session.voucher_code,
    'expected_total_cents', (v_cart ->> 'total_cents')::integer + (v_cart ->> 'discount_cents')::integer,  -- compared before the voucher
    'items', (select jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                'product_id', i.product_id, 'variant_id', i.variant_id, 'modifier_ids', to_jsonb(i.modifier_ids),
                'quantity', i.quantity, 'notes', nullif(i.notes, ''), 'unit_price_cents', i.seen_unit_price_cents))
              order by i.created_at, i.id)
              from public.cart_items i where i.business_id = v_session.business_id and i.session_id = v_session.id))));
  update public.customer_sessions
  set status = 'ordered', order_id = (v_result ->> 'order_id')::uuid, order_result = v_result, updated_at = now()
  where business_id = v_session.business_id and id = v_session.id;
  return v_result;
end
$$;
revoke all on function app.checkout_cart(text) from public;
grant execute on function app.checkout_cart(text) to anon, authenticated, service_role;

/** Sign-in: the guest cart this token opens becomes the signed-in user's, and the user's other open
    carts at the business are merged into it (identical lines add up, at most 99; the older cart's
    details fill what the guest did not set) and marked merged, so their tokens lead here. Signed-in
    callers only (42501). Returns the priced cart. */
create function app.claim_cart(p_token text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_session public.customer_sessions := app.cart_session(p_token);
  v_other public.customer_sessions;
  v_item public.cart_items;
begin
  if auth.uid() is null then
    perform app.fail('42501', 'sign_in_required', 'sign in to keep this cart');
  end if;
  perform app.cart_require_open(v_session);
  for v_other in
    select s.* from public.customer_sessions s
    where s.business_id = v_session.business_id and s.user_id = auth.uid() and s.status = 'open' and s.id <> v_session.id
    order by s.created_at
    for update
  loop
    for v_item in select i.* from public.cart_items i
                  where i.business_id = v_other.business_id and i.session_id = v_other.id order by i.created_at, i.id loop
      perform app.cart_put_item(v_session, v_item.product_id, v_item.variant_id, v_item.modifier_ids, v_item.quantity,
                                nullif(v_item.notes, ''), v_item.seen_unit_price_cents);
    end loop;
    delete from public.cart_items where business_id = v_other.business_id and session_id = v_other.id;
    update public.customer_sessions s set
      contact = case when s.contact = '{}'::jsonb then v_other.contact else s.contact end,
      voucher_code = coalesce(s.voucher_code, v_other.voucher_code),
      delivery_address = coalesce(s.delivery_address, v_other.delivery_address)
    where s.business_id = v_session.business_id and s.id = v_session.id;
    update public.customer_sessions set status = 'merged', merged_into = v_session.id, updated_at = now()
    where business_id = v_other.business_id and id = v_other.id;
  end loop;
  update public.customer_sessions s
  set user_id = auth.uid(),
      customer_id = coalesce(s.customer_id, (select c.id from public.customers c where c.business_id = s.business_id
                                               and c.user_id = auth.uid() and c.merged_into is null limit 1)),
      updated_at = now()
  where s.business_id = v_session.business_id and s.id = v_session.id
  returning * into v_session;
  return app.cart_json(v_session, true);
end
$$;
revoke all on function app.claim_cart(text) from public;
grant execute on function app.claim_cart(text) to authenticated, service_role;

/** The abandoned-cart evaluator, set-based: for every active `cart.abandoned` rule, each open cart
    of a signed-in customer with at least one line, idle for the rule's cart_idle_minutes (and not
    older than its 7-day life), gets one send per cart (trigger_key cart:<id>); consent, suppression
    and caps are checked at send time by app.claim_marketing_send as for every marketing send. Guest
    carts never trigger it (there is no consenting customer behind them). Returns sends created. */
create function app.evaluate_abandoned_carts(p_business_id uuid default null, p_now timestamptz default now()) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_rule record;
  v_ids jsonb[];
  v_count integer := 0;
begin
  for v_rule in
    select a.business_id, a.id, a.venue_id, a.segment_id, a.cart_idle_minutes, a.delay_seconds, a.channel
    from public.automations a
    where a.trigger = 'cart.abandoned' and a.is_active
      and (p_business_id is null or a.business_id = p_business_id)
      and app.module_enabled(a.business_id, 'campaigns')
    order by a.business_id, a.id
  loop
    with idle as (
      select s.id, s.venue_id, s.last_activity_at,
             coalesce(s.customer_id, (select c.id from public.customers c where c.business_id = s.business_id and c.user_id = s.user_id
                                        and c.merged_into is null limit 1)) as customer_id,
             (select sum(i.quantity) from public.cart_items i where i.business_id = s.business_id and i.session_id = s.id) as items
      from public.customer_sessions s
      where s.business_id = v_rule.business_id and s.status = 'open' and s.user_id is not null and s.abandoned_at is null
        and s.last_activity_at <= p_now - make_interval(mins => v_rule.cart_idle_minutes)
        and s.expires_at > p_now
        and (v_rule.venue_id is null or s.venue_id = v_rule.venue_id)
    ), created as (
      insert into public.campaign_sends (business_id, automation_id, customer_id, venue_id, channel, trigger_key, context, due_at)
      select v_rule.business_id, v_rule.id, i.customer_id, i.venue_id, v_rule.channel, 'cart:' || i.id,
             jsonb_build_object('cart_id', i.id, 'cart_items', i.items, 'idle_since', i.last_activity_at),
             p_now + make_interval(secs => v_rule.delay_seconds)
      from idle i
      join public.customers c on c.business_id = v_rule.business_id and c.id = i.customer_id
      where i.items > 0 and c.anonymised_at is null
        and (v_rule.segment_id is null or exists (
          select 1 from public.segment_memberships m
          where m.business_id = v_rule.business_id and m.segment_id = v_rule.segment_id and m.customer_id = i.customer_id))
      on conflict (business_id, automation_id, trigger_key) where automation_id is not null do nothing
      returning id
    )
    select array_agg(jsonb_build_object('topic', 'automation.due', 'business_id', v_rule.business_id,
                                        'payload', jsonb_build_object('send_id', id), 'emitted_at', clock_timestamp()))
    into v_ids from created;
    if v_ids is not null then
      perform pgmq.send_batch('brigade_events', v_ids, v_rule.delay_seconds);
      perform pg_notify('brigade_events', '');
      v_count := v_count + cardinality(v_ids);
    end if;
  end loop;
  return v_count;
end
$$;
revoke all on function app.evaluate_abandoned_carts(uuid, timestamptz) from public;
grant execute on function app.evaluate_abandoned_carts(uuid, timestamptz) to service_role;

-- section grants
revoke all on public.customer_sessions, public.cart_items from anon, authenticated;
grant all on public.customer_sessions, public.cart_items to service_role;

-- section public rpc (PostgREST)
create function public.start_cart(venue_id uuid) returns jsonb language sql volatile set search_path = ''
as $$ select app.start_cart(venue_id) $$;
create function public.add_to_cart(session_token text, item jsonb) returns jsonb language sql volatile set search_path = ''
as $$ select app.add_to_cart(session_token, item) $$;
create function public.update_cart_item(session_token text, item_id uuid, changes jsonb) returns jsonb language sql volatile set search_path = ''
as $$ select app.update_cart_item(session_token, item_id, changes) $$;
create function public.remove_from_cart(session_token text, item_id uuid) returns jsonb language sql volatile set search_path = ''
as $$ select app.remove_from_cart(session_token, item_id) $$;
create function public.set_cart_details(session_token text, details jsonb) returns jsonb language sql volatile set search_path = ''
as $$ select app.set_cart_details(session_token, details) $$;
create function public.apply_cart_voucher(session_token text, code text) returns jsonb language sql volatile set search_path = ''
as $$ select app.apply_cart_voucher(session_token, code) $$;
create function public.get_cart(session_token text) returns jsonb language sql volatile set search_path = ''
as $$ select app.get_cart(session_token) $$;
create function public.checkout_cart(session_token text) returns jsonb language sql volatile set search_path = ''
as $$ select app.checkout_cart(session_token) $$;
create function public.claim_cart(session_token text) returns jsonb language sql volatile set search_path = ''
as $$ select app.claim_cart(session_token) $$;
revoke all on function public.start_cart(uuid), public.add_to_cart(text, jsonb), public.update_cart_item(text, uuid, jsonb),
  public.remove_from_cart(text, uuid), public.set_cart_details(text, jsonb), public.apply_cart_voucher(text, text),
  public.get_cart(text), public.checkout_cart(text), public.claim_cart(text) from public;
grant execute on function public.start_cart(uuid), public.add_to_cart(text, jsonb), public.update_cart_item(text, uuid, jsonb),
  public.remove_from_cart(text, uuid), public.set_cart_details(text, jsonb), public.apply_cart_voucher(text, text),
  public.get_cart(text), public.checkout_cart(text) to anon, authenticated, service_role;
grant execute on function public.claim_cart(text) to authenticated, service_role;
