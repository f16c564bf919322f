-- Cash on delivery and pay at counter (issue 23 item 5). A venue lists the cash methods it takes
-- (venues.cash_methods) and optionally a ceiling (cash_max_order_cents); place_order takes a
-- payment_method. A cash order enters the kitchen unpaid (app.admit_cash_order: customer, kitchen
-- ticket, stock) and may be accepted unpaid. The driver of its delivery or staff with collect_cash
-- record the cash once (record_cash_collection): a `cash` payments row and then app.mark_order_paid,
-- the card payment's fan-out, so stats, points, profit, the platform fee, events and receipts follow
-- as for a card. Cash never collected is recorded as refused (record_cash_refused), which cancels the
-- order without restocking. Staff with reconcile_cash take a driver's (or the counter's) cash
-- (record_cash_handover) and read cash_reconciliation per venue, local business day and collector.
-- The platform fee of a cash payment is owed: the payout nets it (compute_payout leaves cash out of
-- the gross). Codes BR150-BR157.

-- section tables

alter table public.venues
  add column cash_methods text[] not null default '{}'
    constraint venues_cash_methods_valid check (cash_methods <@ array['cash_on_delivery', 'pay_at_counter']),
  add column cash_max_order_cents integer
    constraint venues_cash_max_positive check (cash_max_order_cents is null or cash_max_order_cents > 0);

alter table public.orders
  add column payment_method text not null default 'card'
    constraint orders_payment_method_valid check (payment_method in ('card', 'cash_on_delivery', 'pay_at_counter')),
  add column cash_admitted_at timestamptz;

alter table public.deliveries add column cash_due_cents integer not null default 0;

/** Cash taken (or refused) for one cash order, exactly once: who (a driver of the delivery, or a
    member), when (collected_at: the driver app may sync later; business_day follows the venue's
    zone), what was due, received and given back. Append-only except handover_id, set once when
    the cash reaches the venue (cash_handovers). */
create table public.cash_collections (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  venue_id uuid not null,
  order_id uuid not null,
  outcome text not null constraint cash_collections_outcome_valid check (outcome in ('collected', 'refused')),
  amount_due_cents integer not null constraint cash_collections_due_nonnegative check (amount_due_cents >= 0),
  received_cents integer not null default 0,
  change_cents integer not null default 0,
  collected_cents integer generated always as (received_cents - change_cents) stored,
  difference_cents integer generated always as (received_cents - change_cents - amount_due_cents) stored,
  currency text not null,
  driver_business_id uuid,
  driver_id uuid,
  recorded_by uuid,
  collected_at timestamptz not null,
  business_day date not null,
  note text not null default '',
  handover_id uuid,
  created_at timestamptz not null default now(),
  constraint cash_collections_pkey primary key (business_id, id),
  constraint cash_collections_order_key unique (business_id, order_id),
  constraint cash_collections_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete cascade,
  constraint cash_collections_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id),
  constraint cash_collections_driver_fkey foreign key (driver_business_id, driver_id) references public.drivers (business_id, id),
  constraint cash_collections_amounts_valid check (received_cents >= 0 and change_cents between 0 and received_cents
    and (outcome = 'collected' or received_cents = 0))
);
alter table public.cash_collections enable row level security;

/** A collector's cash handed to the venue: who took it, when, what the collections add up to
    (expected_cents) and what was counted. Append-only. */
create table public.cash_handovers (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  venue_id uuid not null,
  driver_business_id uuid,
  driver_id uuid,
  collections_count integer not null,
  expected_cents bigint not null,
  counted_cents bigint not null constraint cash_handovers_counted_nonnegative check (counted_cents >= 0),
  difference_cents bigint generated always as (counted_cents - expected_cents) stored,
  currency text not null,
  received_by uuid,
  received_at timestamptz not null default now(),
  business_day date not null,
  note text not null default '',
  constraint cash_handovers_pkey primary key (business_id, id),
  constraint cash_handovers_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id),
  constraint cash_handovers_driver_fkey foreign key (driver_business_id, driver_id) references public.drivers (business_id, id)
);
alter table public.cash_handovers enable row level security;

alter table public.cash_collections add constraint cash_collections_handover_fkey
  foreign key (business_id, handover_id) references public.cash_handovers (business_id, id);

-- section indexes
create index cash_collections_venue_day_idx on public.cash_collections (business_id, venue_id, business_day);
create index cash_collections_open_idx on public.cash_collections (business_id, venue_id, driver_id)
  where handover_id is null and outcome = 'collected';
create index cash_collections_driver_idx on public.cash_collections (driver_business_id, driver_id) where driver_id is not null;
create index cash_collections_handover_idx on public.cash_collections (business_id, handover_id) where handover_id is not null;
create index cash_handovers_venue_day_idx on public.cash_handovers (business_id, venue_id, business_day);
create index cash_handovers_driver_idx on public.cash_handovers (driver_business_id, driver_id) where driver_id is not null;

-- section private helpers

/** The kitchen ticket of an order (once: a second call changes nothing). */
create function app.open_kitchen_ticket(p_business_id uuid, p_order_id uuid, p_allergens text[]) returns void
language sql volatile security definer
set search_path = ''
as $$
  insert into public.kitchen_tickets (business_id, venue_id, order_id, order_number, fulfilment, table_ref, scheduled_for,
                                      items, allergens, notes)
  select o.business_id, o.venue_id, o.id, o.order_number, o.fulfilment, o.table_ref, o.scheduled_for,
         jsonb_agg(jsonb_build_object('name', i.name, 'variant', i.variant_name, 'quantity', i.quantity,
                                      'modifiers', (select coalesce(jsonb_agg(m ->> 'name'), '[]'::jsonb) from jsonb_array_elements(i.modifiers) m),
                                      'notes', i.notes) order by i.line_number),
         coalesce(p_allergens, '{}'), o.notes
  from public.orders o
  join public.order_items i on i.business_id = o.business_id and i.order_id = o.id
  where o.business_id = p_business_id and o.id = p_order_id
  group by o.business_id, o.venue_id, o.id, o.order_number, o.fulfilment, o.table_ref, o.scheduled_for, o.notes
  on conflict (business_id, order_id) do nothing
$$;
revoke all on function app.open_kitchen_ticket(uuid, uuid, text[]) from public;
grant execute on function app.open_kitchen_ticket(uuid, uuid, text[]) to service_role;

/** The kitchen takes a cash order unpaid: its customer, the kitchen ticket (printing and the board
    follow from it) and the stock it uses. The money side waits for the cash (mark_order_paid). */
create function app.admit_cash_order(p_business_id uuid, p_order_id uuid) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_customer uuid;
  v_allergens text[];
begin
  select o.* into v_order from public.orders o where o.business_id = p_business_id and o.id = p_order_id for update;
  if v_order.id is null or v_order.payment_method = 'card' or v_order.cash_admitted_at is not null then
    return;
  end if;
  v_customer := coalesce(v_order.customer_id,
    app.find_or_create_customer(v_order.business_id, v_order.user_id, v_order.guest_name, v_order.guest_phone, v_order.guest_email));
  select c.allergens into v_allergens from public.customers c where c.business_id = v_order.business_id and c.id = v_customer;
  update public.orders set customer_id = v_customer, cash_admitted_at = now()
  where business_id = v_order.business_id and id = v_order.id;
  perform app.open_kitchen_ticket(v_order.business_id, v_order.id, v_allergens);
  perform app.move_stock_for_order(v_order.business_id, v_order.id, -1, 'order', null);
  perform app.emit('order.cash_accepted', v_order.business_id, jsonb_build_object(
    'order_id', v_order.id, 'order_number', v_order.order_number, 'venue_id', v_order.venue_id,
    'payment_method', v_order.payment_method, 'amount_due_cents', v_order.total_cents));
end
$$;
revoke all on function app.admit_cash_order(uuid, uuid) from public;
grant execute on function app.admit_cash_order(uuid, uuid) to service_role;

/** Who may take cash for an order: the service, a member with collect_cash at the venue, or a
    driver of the order's own-fleet delivery. Returns the driver (business, id) when it is one. */
create function app.cash_collector(p_order public.orders, out driver_business_id uuid, out driver_id uuid, out allowed boolean)
language plpgsql stable security definer
set search_path = ''
as $$
begin
  select d.driver_business_id, d.driver_id into driver_business_id, driver_id
  from public.deliveries d join public.drivers r on r.business_id = d.driver_business_id and r.id = d.driver_id
  where d.business_id = p_order.business_id and d.order_id = p_order.id and d.provider = 'own'
    and d.status in ('assigned', 'picked_up', 'delivered') and r.user_id = (select auth.uid())
  order by d.created_at desc limit 1;
  allowed := driver_id is not null or coalesce(auth.role(), '') = 'service_role'
             or (app.has_venue_access(p_order.business_id, p_order.venue_id, '{owner,manager,staff}')
                 and app.has_permission(p_order.business_id, 'collect_cash'));
end
$$;
revoke all on function app.cash_collector(public.orders) from public;
grant execute on function app.cash_collector(public.orders) to authenticated, service_role;

/** See 0005; a cash order's kitchen ticket and stock come from app.admit_cash_order. */
create or replace function app.mark_order_paid(p_business_id uuid, p_order_id uuid, p_payment_intent_id text,
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

  -- kitchen ticket (already there for a cash order the kitchen took unpaid)
  perform app.open_kitchen_ticket(v_order.business_id, v_order.id, v_allergens);

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
  -- (a cash order's stock moved when the kitchen took it unpaid: app.admit_cash_order)
  if v_order.cash_admitted_at is null then
    perform app.move_stock_for_order(v_order.business_id, v_order.id, -1, 'order', null);
  end if;

  -- what arrived before the payment it is about: refunds Stripe already reported, deferred events
  perform app.apply_refund(r.business_id, r.id) from public.refunds r
  where r.business_id = v_order.business_id and r.order_id = v_order.id and r.status = 'succeeded' and r.applied_at is null;
  if p_payment_intent_id is not null then
    perform app.apply_deferred_stripe_events(p_payment_intent_id);
  end if;
  return true;
end
$$;

/** See 0053; cash payments stay out of the gross (the venue holds that money), their platform fee is netted. */
create or replace function app.compute_payout(p_business_id uuid, p_start timestamptz, p_end timestamptz) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_row public.business_payouts;
  v_gross bigint;
  v_count integer;
  v_fees bigint;
  v_refunds bigint;
  v_delivery bigint;
begin
  select coalesce(sum(p.amount_cents), 0), count(*) into v_gross, v_count
  from public.payments p where p.business_id = p_business_id and p.created_at >= p_start and p.created_at < p_end
    and p.provider <> 'cash';  -- cash stayed at the venue: only its platform fee (v_fees) is netted
  select coalesce(sum(f.fee_cents), 0) into v_fees
  from public.platform_fees f where f.business_id = p_business_id and f.created_at >= p_start and f.created_at < p_end;
  select coalesce(sum(r.amount_cents), 0) into v_refunds
  from public.refunds r where r.business_id = p_business_id and r.status = 'succeeded'
    and coalesce(r.applied_at, r.updated_at) >= p_start and coalesce(r.applied_at, r.updated_at) < p_end;
  select coalesce(sum(app.payout_delivery_cost(o.id)), 0) into v_delivery
  from public.orders o where o.business_id = p_business_id and o.fulfilment = 'delivery'
    and o.paid_at >= p_start and o.paid_at < p_end;

  insert into public.business_payouts as bp (business_id, period_start, period_end, currency, payments_count, gross_cents,
                                             platform_fee_cents, refunds_cents, delivery_cost_cents, net_cents)
  select p_business_id, p_start, p_end, b.currency, v_count, v_gross, v_fees, v_refunds, v_delivery,
         v_gross - v_fees - v_refunds - v_delivery
  from public.businesses b where b.id = p_business_id
  on conflict (business_id, period_start, period_end) do update
    set payments_count = excluded.payments_count, gross_cents = excluded.gross_cents,
        platform_fee_cents = excluded.platform_fee_cents, refunds_cents = excluded.refunds_cents,
        delivery_cost_cents = excluded.delivery_cost_cents, net_cents = excluded.net_cents, computed_at = now()
    where bp.status = 'pending';
  select bp.* into v_row from public.business_payouts bp
  where bp.business_id = p_business_id and bp.period_start = p_start and bp.period_end = p_end;
  return to_jsonb(v_row);
end
$$;

/** See 0063; a cash order taken by the kitchen may be accepted unpaid. */
create or replace function app.tg_orders_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status is distinct from old.status then
    if not app.order_transition_allowed(old.status, new.status) then
      perform app.fail('BR120', 'illegal_transition', format('an order cannot go from %s to %s', old.status, new.status));
    end if;
    if new.status = 'accepted' and new.payment_status not in ('paid')
       and not (new.payment_method <> 'card' and new.payment_status = 'unpaid' and new.cash_admitted_at is not null) then
      perform app.fail('BR121', 'order_not_paid', 'an order is accepted only once it is paid (or taken as a cash order)');
    end if;
    if new.status = 'completed' and new.fulfilment = 'pickup'
       and not app.transaction_flag('pickup_verified', new.id) then
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

/** See 0005 and public.place_order; payment_method card (default), cash_on_delivery or pay_at_counter. BR150-BR152. */
create or replace function app.place_order(p_order jsonb) returns jsonb
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
  v_method text := coalesce(nullif(trim(p_order ->> 'payment_method'), ''), 'card');
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
  if v_method not in ('card', 'cash_on_delivery', 'pay_at_counter') then
    perform app.fail('22023', 'invalid_payment_method',
                     format('payment_method must be card, cash_on_delivery or pay_at_counter, not %L', v_method));
  end if;
  if (v_method = 'cash_on_delivery' and v_fulfilment <> 'delivery') or (v_method = 'pay_at_counter' and v_fulfilment = 'delivery') then
    perform app.fail('BR151', 'payment_method_fulfilment',
                     format('%s is not a way to pay for a %s order', replace(v_method, '_', ' '), v_fulfilment));
  end if;
  if v_method <> 'card' and not (v_method = any (v_venue.cash_methods)) then
    perform app.fail('BR150', 'payment_method_not_allowed', format('this venue does not take %s', replace(v_method, '_', ' ')));
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
    subtotal_cents, tax_cents, tip_cents, delivery_fee_cents, total_cents, cost_cents, payment_method)
  values (v_business.id, v_order_id, v_venue.id, v_number, v_token, v_channel, v_fulfilment,
    nullif(trim(p_order ->> 'table_ref'), ''), v_scheduled, v_user, v_name, v_phone, v_email, v_address,
    left(coalesce(p_order ->> 'notes', ''), 1000), v_business.currency, v_subtotal, v_tax, v_tip, v_delivery, v_total, v_cost, v_method);

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

  -- cash: the limit is on what the customer owes after any voucher; then the kitchen gets it unpaid
  if v_method <> 'card' then
    if v_venue.cash_max_order_cents is not null and v_total > v_venue.cash_max_order_cents then
      perform app.fail('BR152', 'cash_limit_exceeded',
                       format('cash orders at this venue are at most %s (this one is %s)', v_venue.cash_max_order_cents, v_total));
    end if;
    perform app.admit_cash_order(v_business.id, v_order_id);
  end if;

  return jsonb_build_object(
    'payment_method', v_method, 'amount_due_cents', case when v_method <> 'card' then v_total end,
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

-- section triggers

/** A collection is final; only its hand-over is filled in, once. BR154. */
create function app.tg_cash_collections_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.handover_id is null and new.handover_id is not null
     and (to_jsonb(new) - '{handover_id,collected_cents,difference_cents}'::text[])
         = (to_jsonb(old) - '{handover_id,collected_cents,difference_cents}'::text[]) then  -- generated columns are not computed yet
    return new;
  end if;
  perform app.fail('BR154', 'cash_record_final', 'a cash record does not change once written');
end
$$;

/** What the driver collects at the door, on the delivery they see. */
create function app.tg_deliveries_cash_due() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  select case when o.payment_method = 'cash_on_delivery' and o.payment_status = 'unpaid' then o.total_cents else 0 end
  into new.cash_due_cents
  from public.orders o where o.business_id = new.business_id and o.id = new.order_id;
  new.cash_due_cents := coalesce(new.cash_due_cents, 0);
  return new;
end
$$;

/** A cash-on-delivery order is delivered only once its cash is recorded (collected or refused). BR156. */
create function app.tg_deliveries_cash_first() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.status = 'delivered' and old.status <> 'delivered' and exists (
       select 1 from public.orders o
       where o.business_id = new.business_id and o.id = new.order_id and o.payment_method = 'cash_on_delivery'
         and o.payment_status = 'unpaid'
         and not exists (select 1 from public.cash_collections c where c.business_id = o.business_id and c.order_id = o.id)) then
    perform app.fail('BR156', 'cash_not_recorded', 'record the cash collected before completing the delivery');
  end if;
  return new;
end
$$;

revoke all on function app.tg_deliveries_cash_due() from public;
revoke all on function app.tg_deliveries_cash_first() from public;

create trigger cash_collections_guard before update on public.cash_collections
  for each row execute function app.tg_cash_collections_guard();
create trigger cash_collections_no_delete before delete on public.cash_collections
  for each row when (pg_trigger_depth() = 0) execute function app.tg_append_only();
create trigger cash_handovers_append_only before update or delete on public.cash_handovers
  for each row execute function app.tg_append_only();
create trigger deliveries_cash_due before insert on public.deliveries
  for each row execute function app.tg_deliveries_cash_due();
create trigger deliveries_cash_first before update of status on public.deliveries
  for each row execute function app.tg_deliveries_cash_first();

-- section policies

create policy "cash reconcilers read cash collections of their venues" on public.cash_collections for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_permitted_venue_keys('reconcile_cash') k));
create policy "drivers read their cash collections" on public.cash_collections for select to authenticated
  using ((driver_business_id, driver_id) in (select d.business_id, d.id from public.drivers d where d.user_id = (select auth.uid())));
create policy "cash reconcilers read cash handovers of their venues" on public.cash_handovers for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_permitted_venue_keys('reconcile_cash') k));
create policy "drivers read their cash handovers" on public.cash_handovers for select to authenticated
  using ((driver_business_id, driver_id) in (select d.business_id, d.id from public.drivers d where d.user_id = (select auth.uid())));

-- section views

/** Per venue, local business day and collector (a driver, or the counter when driver_id is null):
    what was due, collected, refused, the difference, what reached the venue and what is still
    out. Runs as the caller, so reconcilers see their venues and drivers their own rows. */
create view public.cash_reconciliation with (security_invoker = true) as
select c.business_id, c.venue_id, c.business_day, c.driver_business_id, c.driver_id, c.currency,
       count(*) filter (where c.outcome = 'collected') as collected_orders,
       count(*) filter (where c.outcome = 'refused') as refused_orders,
       sum(c.amount_due_cents) as expected_cents,
       sum(c.collected_cents) as collected_cents,
       sum(c.amount_due_cents) filter (where c.outcome = 'refused') as refused_cents,
       sum(c.collected_cents - c.amount_due_cents) filter (where c.outcome = 'collected') as difference_cents,
       coalesce(sum(c.collected_cents) filter (where c.handover_id is not null), 0) as handed_over_cents,
       coalesce(sum(c.collected_cents) filter (where c.handover_id is null and c.outcome = 'collected'), 0) as outstanding_cents
from public.cash_collections c
group by c.business_id, c.venue_id, c.business_day, c.driver_business_id, c.driver_id, c.currency;

-- section grants
revoke all on public.cash_collections, public.cash_handovers, public.cash_reconciliation from anon, authenticated;
grant select on public.cash_collections, public.cash_handovers, public.cash_reconciliation to authenticated;
grant all on public.cash_collections, public.cash_handovers to service_role;
grant select on public.cash_reconciliation to service_role;
grant select (payment_method) on public.orders to authenticated;
grant select (cash_due_cents) on public.deliveries to authenticated;

-- section data
insert into public.permissions (key, description, sort_order) values
  ('collect_cash', 'record cash taken for a cash order, or refused (record_cash_collection, record_cash_refused)', 70),
  ('reconcile_cash', 'take cash hand-overs and read the cash reconciliation (record_cash_handover)', 80);
insert into public.role_permissions (role, permission) values
  ('manager', 'collect_cash'), ('manager', 'reconcile_cash'), ('staff', 'collect_cash');

-- section rpc

/** Record the cash taken for a cash order (the driver of its delivery, or a member with
    collect_cash): received_cents handed over by the customer, change_cents given back, collected_at
    when it happened (default now; the driver app may sync later). Exactly once: the same record
    again returns the first (duplicate: true); a different one is refused. Marks the order paid
    through the card payment's fan-out. Raises PT404, 42501, BR153 (not a cash order awaiting cash),
    BR154 (already recorded differently), BR155 (amounts or time). */
create function app.record_cash_collection(p_order_id uuid, p_received_cents integer, p_change_cents integer default 0,
                                           p_collected_at timestamptz default null, p_note text default null) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_who record;
  v_row public.cash_collections;
  v_at timestamptz := coalesce(p_collected_at, now());
  v_zone text;
begin
  select o.* into v_order from public.orders o where o.id = p_order_id for update;
  if v_order.id is null then
    perform app.fail('PT404', 'order_not_found', 'no such order');
  end if;
  v_who := app.cash_collector(v_order);
  if not v_who.allowed then
    if app.has_venue_access(v_order.business_id, v_order.venue_id, '{owner,manager,staff}') then
      perform app.require_permission(v_order.business_id, 'collect_cash', jsonb_build_object('order_id', v_order.id));
    end if;
    perform app.fail('PT404', 'order_not_found', 'no such order among yours');
  end if;
  perform app.require_module(v_order.business_id, 'ordering');
  if v_order.payment_method = 'card' then
    perform app.fail('BR153', 'not_a_cash_order', 'this order is paid by card, not in cash');
  end if;
  select c.* into v_row from public.cash_collections c where c.business_id = v_order.business_id and c.order_id = v_order.id;
  if v_row.id is not null then
    if v_row.outcome = 'collected' and v_row.received_cents = p_received_cents and v_row.change_cents = coalesce(p_change_cents, 0)
       and (p_collected_at is null or v_row.collected_at = p_collected_at) then
      return to_jsonb(v_row) || jsonb_build_object('duplicate', true);
    end if;
    perform app.fail('BR154', 'cash_already_recorded', format('the cash of this order was already recorded (%s)', v_row.outcome));
  end if;
  if v_order.status = 'cancelled' or v_order.payment_status <> 'unpaid' then
    perform app.fail('BR153', 'no_cash_due', format('nothing to collect: the order is %s and %s', v_order.status, v_order.payment_status));
  end if;
  if p_received_cents is null or p_received_cents < 0 or coalesce(p_change_cents, 0) < 0 or coalesce(p_change_cents, 0) > p_received_cents then
    perform app.fail('BR155', 'invalid_cash_amounts', 'received must be 0 or more and the change between 0 and what was received');
  end if;
  if v_at < v_order.placed_at or v_at > now() + interval '1 minute' then
    perform app.fail('BR155', 'invalid_collected_at', 'the cash was collected between the order''s placing and now');
  end if;
  select v.time_zone into v_zone from public.venues v where v.business_id = v_order.business_id and v.id = v_order.venue_id;

  insert into public.cash_collections (business_id, venue_id, order_id, outcome, amount_due_cents, received_cents, change_cents,
                                       currency, driver_business_id, driver_id, recorded_by, collected_at, business_day, note)
  values (v_order.business_id, v_order.venue_id, v_order.id, 'collected', v_order.total_cents, p_received_cents,
          coalesce(p_change_cents, 0), v_order.currency, v_who.driver_business_id, v_who.driver_id, auth.uid(), v_at,
          (v_at at time zone v_zone)::date, left(coalesce(p_note, ''), 500))
  returning * into v_row;

  -- the money: a cash payment row (its platform fee is recorded by the payments trigger), then the paid fan-out
  insert into public.payments (business_id, order_id, venue_id, provider, amount_cents, fee_cents, fee_estimated, currency, created_at)
  values (v_order.business_id, v_order.id, v_order.venue_id, 'cash', v_row.collected_cents, 0, false, v_order.currency, now());
  perform app.mark_order_paid(v_order.business_id, v_order.id, null, null, v_row.collected_cents, null);

  -- paid at the counter when picking it up: handing it over is the pickup
  if v_order.payment_method = 'pay_at_counter' and v_order.fulfilment = 'pickup' and v_order.status = 'ready' then
    insert into app.transaction_flags (flag, subject) values ('pickup_verified', v_order.id);
    update public.orders set status = 'completed', pickup_code_hash = null where business_id = v_order.business_id and id = v_order.id;
    delete from app.transaction_flags f where f.txid = pg_current_xact_id() and f.flag = 'pickup_verified' and f.subject = v_order.id;
  end if;
  return to_jsonb(v_row) || jsonb_build_object('duplicate', false);
end
$$;
revoke all on function app.record_cash_collection(uuid, integer, integer, timestamptz, text) from public;
grant execute on function app.record_cash_collection(uuid, integer, integer, timestamptz, text) to authenticated, service_role;

/** The customer did not pay (refused at the door, never came): recorded once, as the collection
    would be, and the order is cancelled with the reason. The food was made: stock is not put back.
    Raises PT404, 42501, BR153, BR154, BR123 (no reason). */
create function app.record_cash_refused(p_order_id uuid, p_reason text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_who record;
  v_row public.cash_collections;
  v_zone text;
begin
  select o.* into v_order from public.orders o where o.id = p_order_id for update;
  if v_order.id is null then
    perform app.fail('PT404', 'order_not_found', 'no such order');
  end if;
  v_who := app.cash_collector(v_order);
  if not v_who.allowed then
    if app.has_venue_access(v_order.business_id, v_order.venue_id, '{owner,manager,staff}') then
      perform app.require_permission(v_order.business_id, 'collect_cash', jsonb_build_object('order_id', v_order.id));
    end if;
    perform app.fail('PT404', 'order_not_found', 'no such order among yours');
  end if;
  perform app.require_module(v_order.business_id, 'ordering');
  if nullif(trim(p_reason), '') is null then
    perform app.fail('BR123', 'cancel_reason_required', 'say why the cash was not collected');
  end if;
  if v_order.payment_method = 'card' then
    perform app.fail('BR153', 'not_a_cash_order', 'this order is paid by card, not in cash');
  end if;
  select c.* into v_row from public.cash_collections c where c.business_id = v_order.business_id and c.order_id = v_order.id;
  if v_row.id is not null then
    if v_row.outcome = 'refused' then
      return to_jsonb(v_row) || jsonb_build_object('duplicate', true);
    end if;
    perform app.fail('BR154', 'cash_already_recorded', 'the cash of this order was already collected');
  end if;
  if v_order.status in ('cancelled', 'completed') or v_order.payment_status <> 'unpaid' then
    perform app.fail('BR153', 'no_cash_due', format('nothing to collect: the order is %s and %s', v_order.status, v_order.payment_status));
  end if;
  select v.time_zone into v_zone from public.venues v where v.business_id = v_order.business_id and v.id = v_order.venue_id;
  insert into public.cash_collections (business_id, venue_id, order_id, outcome, amount_due_cents, currency,
                                       driver_business_id, driver_id, recorded_by, collected_at, business_day, note)
  values (v_order.business_id, v_order.venue_id, v_order.id, 'refused', v_order.total_cents, v_order.currency,
          v_who.driver_business_id, v_who.driver_id, auth.uid(), now(), (now() at time zone v_zone)::date, left(trim(p_reason), 500))
  returning * into v_row;
  update public.orders set status = 'cancelled', cancel_reason = 'cash not collected: ' || left(trim(p_reason), 200)
  where business_id = v_order.business_id and id = v_order.id;
  return to_jsonb(v_row) || jsonb_build_object('duplicate', false);
end
$$;
revoke all on function app.record_cash_refused(uuid, text) from public;
grant execute on function app.record_cash_refused(uuid, text) to authenticated, service_role;

/** A member with reconcile_cash takes the cash a driver (driver_id) or the counter (driver_id null)
    holds for the venue: every collected, not yet handed-over record, with what was counted. Raises
    PT404 (venue), 42501, BR157 (nothing to hand over), BR155 (counted). */
create function app.record_cash_handover(p_venue_id uuid, p_driver_id uuid, p_counted_cents bigint, p_note text default null)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_venue public.venues;
  v_row public.cash_handovers;
  v_driver_business uuid;
  v_count integer;
  v_expected bigint;
  v_currency text;
begin
  select v.* into v_venue from public.venues v where v.id = p_venue_id;
  if v_venue.id is null or not (coalesce(auth.role(), '') = 'service_role'
                                or app.has_venue_access(v_venue.business_id, v_venue.id, '{owner,manager,staff}')) then
    perform app.fail('PT404', 'venue_not_found', 'no such venue among yours');
  end if;
  perform app.require_module(v_venue.business_id, 'ordering');
  perform app.require_permission(v_venue.business_id, 'reconcile_cash', jsonb_build_object('venue_id', v_venue.id));
  if p_counted_cents is null or p_counted_cents < 0 then
    perform app.fail('BR155', 'invalid_counted', 'counted_cents must be 0 or more');
  end if;
  perform 1 from public.cash_collections c
  where c.business_id = v_venue.business_id and c.venue_id = v_venue.id and c.handover_id is null and c.outcome = 'collected'
    and c.driver_id is not distinct from p_driver_id
  for update;
  select count(*), coalesce(sum(c.collected_cents), 0), min(c.currency), min(c.driver_business_id::text)::uuid
  into v_count, v_expected, v_currency, v_driver_business
  from public.cash_collections c
  where c.business_id = v_venue.business_id and c.venue_id = v_venue.id and c.handover_id is null and c.outcome = 'collected'
    and c.driver_id is not distinct from p_driver_id;
  if v_count = 0 then
    perform app.fail('BR157', 'nothing_to_hand_over', 'no cash collected for this venue is waiting to be handed over');
  end if;
  insert into public.cash_handovers (business_id, venue_id, driver_business_id, driver_id, collections_count, expected_cents,
                                     counted_cents, currency, received_by, business_day, note)
  values (v_venue.business_id, v_venue.id, v_driver_business, p_driver_id, v_count, v_expected, p_counted_cents, v_currency,
          auth.uid(), (now() at time zone v_venue.time_zone)::date, left(coalesce(p_note, ''), 500))
  returning * into v_row;
  update public.cash_collections c set handover_id = v_row.id
  where c.business_id = v_venue.business_id and c.venue_id = v_venue.id and c.handover_id is null and c.outcome = 'collected'
    and c.driver_id is not distinct from p_driver_id;
  return to_jsonb(v_row);
end
$$;
revoke all on function app.record_cash_handover(uuid, uuid, bigint, text) from public;
grant execute on function app.record_cash_handover(uuid, uuid, bigint, text) to authenticated, service_role;

/** See app.record_cash_collection. */
create function public.record_cash_collection(order_id uuid, received_cents integer, change_cents integer default 0,
                                              collected_at timestamptz default null, note text default null) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.record_cash_collection(order_id, received_cents, change_cents, collected_at, note)
$$;
revoke all on function public.record_cash_collection(uuid, integer, integer, timestamptz, text) from public, anon;
grant execute on function public.record_cash_collection(uuid, integer, integer, timestamptz, text) to authenticated, service_role;

/** See app.record_cash_refused. */
create function public.record_cash_refused(order_id uuid, reason text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.record_cash_refused(order_id, reason)
$$;
revoke all on function public.record_cash_refused(uuid, text) from public, anon;
grant execute on function public.record_cash_refused(uuid, text) to authenticated, service_role;

/** See app.record_cash_handover. */
create function public.record_cash_handover(venue_id uuid, driver_id uuid, counted_cents bigint, note text default null) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.record_cash_handover(venue_id, driver_id, counted_cents, note)
$$;
revoke all on function public.record_cash_handover(uuid, uuid, bigint, text) from public, anon;
grant execute on function public.record_cash_handover(uuid, uuid, bigint, text) to authenticated, service_role;
