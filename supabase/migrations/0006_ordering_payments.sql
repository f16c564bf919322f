-- Payments: what the checkout, refund and stripe-webhook functions call (one SQL call each), the
-- refund reversal, and the money views for the dashboard.

-- section private helpers

/** The order a payable Stripe object points at: metadata.order_id (with metadata.business_id),
    else the checkout session or payment intent recorded on the order. */
create function app.order_for_stripe_object(p_object jsonb) returns public.orders
language sql stable security definer
set search_path = ''
as $$
  select o.* from public.orders o
  where (o.id::text = p_object -> 'metadata' ->> 'order_id'
         and o.business_id::text = coalesce(p_object -> 'metadata' ->> 'business_id', o.business_id::text))
     or (p_object ->> 'object' = 'checkout.session' and o.checkout_session_id = p_object ->> 'id')
     or (o.payment_intent_id is not null and o.payment_intent_id = coalesce(p_object ->> 'payment_intent',
                                                                            case when p_object ->> 'object' = 'payment_intent' then p_object ->> 'id' end))
  limit 1
$$;
revoke all on function app.order_for_stripe_object(jsonb) from public;

/** What the checkout function needs to create (or reuse) a Checkout Session, after checking who
    asks: the placer (access token) or staff of the venue. Raises PT404, PT403, PT409 (paid). */
create function app.checkout_context(p_order_id uuid, p_access_token uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_business public.businesses;
begin
  select o.* into v_order from public.orders o where o.id = p_order_id;
  if v_order.id is null or not (coalesce(v_order.access_token = p_access_token, false)
                                or app.has_venue_access(v_order.business_id, v_order.venue_id, '{owner,manager,staff}')) then
    perform app.fail('PT404', 'order_not_found', 'no order with that id and token');
  end if;
  perform app.require_module(v_order.business_id, 'ordering');
  if v_order.payment_status not in ('unpaid', 'failed', 'pending') then
    perform app.fail('PT409', 'order_already_paid', format('the order is %s', v_order.payment_status));
  end if;
  if v_order.status = 'cancelled' then
    perform app.fail('PT409', 'order_cancelled', 'the order was cancelled');
  end if;
  select b.* into v_business from public.businesses b where b.id = v_order.business_id;
  return jsonb_build_object(
    'order_id', v_order.id, 'business_id', v_order.business_id, 'venue_id', v_order.venue_id,
    'order_number', v_order.order_number, 'currency', lower(v_order.currency), 'total_cents', v_order.total_cents,
    'tax_cents', v_order.tax_cents, 'tip_cents', v_order.tip_cents, 'delivery_fee_cents', v_order.delivery_fee_cents,
    'customer_email', v_order.guest_email, 'business_name', v_business.name,
    'stripe_account_id', v_business.stripe_account_id,
    'application_fee_cents', round(v_order.total_cents * v_business.application_fee_bps / 10000.0),
    'session', case when v_order.checkout_session_id is not null and v_order.checkout_expires_at > now() + interval '2 minutes'
                    then jsonb_build_object('id', v_order.checkout_session_id, 'url', v_order.checkout_url,
                                            'expires_at', v_order.checkout_expires_at) end,
    'attempt', (select count(*) from public.stripe_events e where e.order_id = v_order.id and e.type = 'checkout.session.expired') + 1,
    'lines', (select jsonb_agg(jsonb_build_object(
                'name', i.name || coalesce(' (' || i.variant_name || ')', '')
                        || coalesce(' + ' || (select string_agg(m ->> 'name', ', ') from jsonb_array_elements(i.modifiers) m), ''),
                'unit_amount', i.unit_price_cents, 'quantity', i.quantity) order by i.line_number)
              from public.order_items i where i.business_id = v_order.business_id and i.order_id = v_order.id));
end
$$;
revoke all on function app.checkout_context(uuid, uuid) from public;
grant execute on function app.checkout_context(uuid, uuid) to anon, authenticated, service_role;

/** Records the Checkout Session created for an unpaid order. */
create function app.attach_checkout_session(p_order_id uuid, p_session_id text, p_url text, p_expires_at timestamptz)
returns void
language sql volatile security definer
set search_path = ''
as $$
  update public.orders set checkout_session_id = p_session_id, checkout_url = p_url, checkout_expires_at = p_expires_at
  where id = p_order_id and payment_status in ('unpaid', 'failed', 'pending')
$$;
revoke all on function app.attach_checkout_session(uuid, text, text, timestamptz) from public;
grant execute on function app.attach_checkout_session(uuid, text, text, timestamptz) to service_role;

/** A manager asks for a refund: the whole remainder (no amount, no lines), an amount, or lines
    {order_item_id: quantity}. Records it pending with its idempotency key and returns what the
    refund function sends to Stripe. Raises PT404, BR130 not refundable, BR131 too much, BR132 lines. */
create function app.request_refund(p_order_id uuid, p_amount_cents integer, p_lines jsonb, p_reason text, p_restock boolean)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_pending integer;
  v_refundable integer;
  v_amount integer;
  v_n integer;
  v_refund_id uuid := extensions.gen_random_uuid();
  v_key text;
  v_bad record;
begin
  select o.* into v_order from public.orders o where o.id = p_order_id for update;
  if v_order.id is null or not app.has_venue_access(v_order.business_id, v_order.venue_id, '{owner,manager}') then
    perform app.fail('PT404', 'order_not_found', 'no such order at the venues you manage');
  end if;
  perform app.require_module(v_order.business_id, 'ordering');
  if v_order.payment_status not in ('paid', 'partially_refunded') or v_order.payment_intent_id is null then
    perform app.fail('BR130', 'not_refundable', format('an order that is %s cannot be refunded', v_order.payment_status));
  end if;
  select coalesce(sum(r.amount_cents), 0) into v_pending from public.refunds r
  where r.business_id = v_order.business_id and r.order_id = v_order.id and r.status = 'pending';
  v_refundable := v_order.total_cents - v_order.refunded_cents - v_pending;

  if p_lines is not null and jsonb_typeof(p_lines) = 'object' and p_lines <> '{}'::jsonb then
    select k.key, i.id, i.quantity, i.refunded_quantity into v_bad
    from jsonb_each_text(p_lines) k
    left join public.order_items i on i.business_id = v_order.business_id and i.order_id = v_order.id and i.id::text = k.key
    where i.id is null or k.value !~ '^[0-9]+$' or k.value::integer < 1
       or k.value::integer > i.quantity - i.refunded_quantity
    limit 1;
    if v_bad.key is not null then
      perform app.fail('BR132', 'invalid_refund_lines', format('line %s cannot be refunded in that quantity', v_bad.key));
    end if;
    select sum(i.unit_price_cents * (p_lines ->> i.id::text)::integer) into v_amount
    from public.order_items i where i.business_id = v_order.business_id and i.order_id = v_order.id and p_lines ? i.id::text;
    if v_order.subtotal_cents > 0 then  -- the lines' share of the tax goes back with them
      v_amount := v_amount + round(v_amount::numeric * v_order.tax_cents / v_order.subtotal_cents);
    end if;
  elsif p_amount_cents is not null then
    v_amount := p_amount_cents;
  else
    v_amount := v_refundable;
  end if;
  if v_amount is null or v_amount <= 0 then
    perform app.fail('BR131', 'invalid_refund_amount', 'the refund amount must be positive');
  end if;
  if v_amount > v_refundable then
    perform app.fail('BR131', 'refund_exceeds_payment', format('at most %s can be refunded', v_refundable));
  end if;

  select count(*) + 1 into v_n from public.refunds r where r.business_id = v_order.business_id and r.order_id = v_order.id;
  v_key := 'refund:' || v_order.id || ':' || v_n;
  insert into public.refunds (business_id, id, order_id, venue_id, amount_cents, currency, lines, restock, reason,
                              idempotency_key, requested_by)
  values (v_order.business_id, v_refund_id, v_order.id, v_order.venue_id, v_amount, v_order.currency,
          coalesce(case when jsonb_typeof(p_lines) = 'object' then p_lines end, '{}'::jsonb), coalesce(p_restock, false),
          left(coalesce(p_reason, ''), 500), v_key, auth.uid());
  perform app.audit(v_order.business_id, 'refund.requested', jsonb_build_object('order_id', v_order.id, 'refund_id', v_refund_id,
                                                                                 'amount_cents', v_amount));
  return jsonb_build_object('refund_id', v_refund_id, 'order_id', v_order.id, 'business_id', v_order.business_id,
    'amount_cents', v_amount, 'currency', lower(v_order.currency), 'payment_intent_id', v_order.payment_intent_id,
    'idempotency_key', v_key);
end
$$;
revoke all on function app.request_refund(uuid, integer, jsonb, text, boolean) from public;
grant execute on function app.request_refund(uuid, integer, jsonb, text, boolean) to authenticated, service_role;

/** A refund succeeded: reverse, once and in proportion, what the payment did — refunded amount and
    payment status, per-venue stats, loyalty points (never below zero), and stock for restocked lines. */
create function app.apply_refund(p_business_id uuid, p_refund_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_refund public.refunds;
  v_order public.orders;
  v_earned integer;
  v_reverse integer;
  v_balance integer;
  v_full boolean;
begin
  select r.* into v_refund from public.refunds r where r.business_id = p_business_id and r.id = p_refund_id for update;
  if v_refund.id is null or v_refund.applied_at is not null or v_refund.status <> 'succeeded' then
    return false;
  end if;
  select o.* into v_order from public.orders o where o.business_id = v_refund.business_id and o.id = v_refund.order_id for update;
  if v_order.payment_status not in ('paid', 'partially_refunded', 'disputed') then
    return false;  -- the payment has not arrived yet: mark_order_paid applies it then
  end if;

  v_full := v_order.refunded_cents + v_refund.amount_cents >= v_order.total_cents;
  update public.orders set
    refunded_cents = least(total_cents, refunded_cents + v_refund.amount_cents),
    payment_status = case when v_full then 'refunded'::public.payment_status else 'partially_refunded'::public.payment_status end
  where business_id = v_order.business_id and id = v_order.id;

  update public.order_items i set refunded_quantity = i.refunded_quantity + (v_refund.lines ->> i.id::text)::integer
  where i.business_id = v_order.business_id and i.order_id = v_order.id and v_refund.lines ? i.id::text;

  if v_order.customer_id is not null then
    update public.customer_venue_stats s set
      total_spent_cents = greatest(0, s.total_spent_cents - v_refund.amount_cents),
      total_orders = greatest(0, s.total_orders - case when v_full then 1 else 0 end),
      updated_at = now()
    where s.business_id = v_order.business_id and s.venue_id = v_order.venue_id and s.customer_id = v_order.customer_id;

    select coalesce(sum(t.points), 0) into v_earned from public.loyalty_transactions t
    where t.business_id = v_order.business_id and t.order_id = v_order.id and t.reason = 'order';
    if v_earned > 0 then
      -- cumulative, so partial refunds that add up to the total reverse exactly what was earned
      v_reverse := floor(v_earned::numeric * least(v_order.total_cents, v_order.refunded_cents + v_refund.amount_cents) / v_order.total_cents)
                   + coalesce((select sum(t.points) from public.loyalty_transactions t
                               where t.business_id = v_order.business_id and t.order_id = v_order.id and t.reason = 'refund'), 0);
      select a.balance into v_balance from public.loyalty_accounts a
      where a.business_id = v_order.business_id and a.customer_id = v_order.customer_id for update;
      v_reverse := least(v_reverse, coalesce(v_balance, 0));
      if v_reverse > 0 then
        insert into public.loyalty_transactions (business_id, customer_id, points, reason, order_id, refund_id)
        values (v_order.business_id, v_order.customer_id, -v_reverse, 'refund', v_order.id, v_refund.id);
      end if;
    end if;
  end if;

  if v_refund.restock then
    perform app.move_stock_for_order(v_order.business_id, v_order.id, 1, 'refund',
                                     case when v_refund.lines = '{}'::jsonb then null else v_refund.lines end);
  end if;

  update public.refunds set applied_at = now() where business_id = v_refund.business_id and id = v_refund.id;
  perform app.emit('order.refunded', v_order.business_id, jsonb_build_object(
    'order_id', v_order.id, 'refund_id', v_refund.id, 'amount_cents', v_refund.amount_cents, 'full', v_full));
  return true;
end
$$;
revoke all on function app.apply_refund(uuid, uuid) from public;
grant execute on function app.apply_refund(uuid, uuid) to service_role;

/** What Stripe said about a refund (the refund function's answer or a refund.* event): status,
    provider id; applies it when it succeeded. Refunds created outside Brigade are adopted. */
create function app.record_refund(p_business_id uuid, p_order_id uuid, p_refund_id uuid, p_provider_refund_id text,
                                  p_status text, p_amount_cents integer, p_failure text) returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_id uuid;
  v_status text := case p_status when 'requires_action' then 'pending' else p_status end;
  v_order public.orders;
begin
  if v_status not in ('pending', 'succeeded', 'failed', 'canceled') then
    return null;
  end if;
  select r.id into v_id from public.refunds r
  where r.business_id = p_business_id and (r.id = p_refund_id or r.provider_refund_id = p_provider_refund_id)
  for update;
  if v_id is null then
    select o.* into v_order from public.orders o where o.business_id = p_business_id and o.id = p_order_id;
    if v_order.id is null or p_amount_cents is null or p_amount_cents <= 0 then
      return null;
    end if;
    insert into public.refunds (business_id, order_id, venue_id, amount_cents, currency, status, provider_refund_id,
                                idempotency_key, source, reason)
    values (p_business_id, v_order.id, v_order.venue_id, p_amount_cents, v_order.currency, 'pending', p_provider_refund_id,
            'stripe:' || p_provider_refund_id, 'stripe', 'refunded in Stripe')
    on conflict do nothing
    returning id into v_id;
    if v_id is null then
      return null;
    end if;
  end if;
  update public.refunds r set
    provider_refund_id = coalesce(r.provider_refund_id, p_provider_refund_id),
    -- a refund that succeeded stays succeeded whatever arrives late
    status = case when r.status = 'succeeded' then r.status else v_status end,
    failure_reason = coalesce(p_failure, r.failure_reason)
  where r.business_id = p_business_id and r.id = v_id;
  perform app.apply_refund(p_business_id, v_id);
  return v_id;
end
$$;
revoke all on function app.record_refund(uuid, uuid, uuid, text, text, integer, text) from public;
grant execute on function app.record_refund(uuid, uuid, uuid, text, text, integer, text) to service_role;

/** Applies one Stripe object to its order; returns the outcome. Events that need a paid order and
    find none ('deferred') are kept and re-applied by the paid-order fan-out. */
create function app.apply_stripe_object(p_type text, p_object jsonb, p_event_id text) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_outcome text := 'ignored';
  v_refund jsonb;
  v_known integer;
begin
  v_order := app.order_for_stripe_object(p_object);
  if v_order.id is null and p_type in ('charge.refunded', 'refund.created', 'refund.updated', 'refund.failed', 'charge.dispute.created') then
    select o.* into v_order from public.orders o where o.payment_intent_id = p_object ->> 'payment_intent' limit 1;
  end if;
  if p_type in ('charge.refunded', 'refund.created', 'refund.updated', 'refund.failed', 'charge.dispute.created')
     and (v_order.id is null or v_order.payment_status in ('unpaid', 'pending', 'failed')) then
    return 'deferred';  -- about a payment we have not seen yet: kept until it arrives
  end if;

  if v_order.id is null then
    v_outcome := case when p_type like 'checkout.session.%' or p_type like 'payment_intent.%' then 'no_matching_order' else 'ignored' end;
  elsif p_type in ('checkout.session.completed', 'checkout.session.async_payment_succeeded') then
    if p_type = 'checkout.session.completed' and p_object ->> 'payment_status' = 'unpaid' then
      update public.orders set payment_status = 'pending'
      where business_id = v_order.business_id and id = v_order.id and payment_status in ('unpaid', 'failed');
      v_outcome := 'awaiting_payment';
    elsif coalesce((p_object ->> 'amount_total')::integer, v_order.total_cents) < v_order.total_cents then
      v_outcome := 'amount_mismatch';
    else
      v_outcome := case when app.mark_order_paid(v_order.business_id, v_order.id, p_object ->> 'payment_intent', p_object ->> 'id',
                                                 (p_object ->> 'amount_total')::integer, p_event_id)
                        then 'paid' else 'already_paid' end;
    end if;
  elsif p_type = 'payment_intent.succeeded' then
    if coalesce((p_object ->> 'amount_received')::integer, v_order.total_cents) < v_order.total_cents then
      v_outcome := 'amount_mismatch';
    else
      v_outcome := case when app.mark_order_paid(v_order.business_id, v_order.id, p_object ->> 'id', null,
                                                 (p_object ->> 'amount_received')::integer, p_event_id)
                        then 'paid' else 'already_paid' end;
    end if;
  elsif p_type in ('checkout.session.async_payment_failed', 'payment_intent.payment_failed') then
    update public.orders set payment_status = 'failed'
    where business_id = v_order.business_id and id = v_order.id and payment_status in ('unpaid', 'pending');
    v_outcome := case when found then 'failed' else 'ignored_after_payment' end;
  elsif p_type = 'checkout.session.expired' then
    update public.orders set checkout_session_id = null, checkout_url = null, checkout_expires_at = null,
      payment_status = case when payment_status = 'pending' then 'unpaid'::public.payment_status else payment_status end
    where business_id = v_order.business_id and id = v_order.id and checkout_session_id = p_object ->> 'id'
      and payment_status in ('unpaid', 'pending', 'failed');
    v_outcome := case when found then 'session_expired' else 'ignored' end;
  elsif p_type = 'charge.refunded' then
    -- refunds listed on the charge (when expanded), then any amount Stripe refunded that we do not know of
    for v_refund in select * from jsonb_array_elements(coalesce(p_object -> 'refunds' -> 'data', '[]'::jsonb)) loop
      perform app.record_refund(v_order.business_id, v_order.id, (v_refund -> 'metadata' ->> 'refund_id')::uuid,
                                v_refund ->> 'id', v_refund ->> 'status', (v_refund ->> 'amount')::integer, v_refund ->> 'failure_reason');
    end loop;
    select coalesce(sum(r.amount_cents), 0) into v_known from public.refunds r
    where r.business_id = v_order.business_id and r.order_id = v_order.id and r.status in ('pending', 'succeeded');
    if (p_object ->> 'amount_refunded')::integer > v_known then
      perform app.record_refund(v_order.business_id, v_order.id, null,
                                'charge:' || (p_object ->> 'id') || ':' || (p_object ->> 'amount_refunded'),
                                'succeeded', (p_object ->> 'amount_refunded')::integer - v_known, null);
    end if;
    v_outcome := 'refunds_reconciled';
  elsif p_type in ('refund.created', 'refund.updated', 'refund.failed') then
    perform app.record_refund(v_order.business_id, v_order.id, (p_object -> 'metadata' ->> 'refund_id')::uuid,
                              p_object ->> 'id', p_object ->> 'status', (p_object ->> 'amount')::integer, p_object ->> 'failure_reason');
    v_outcome := 'refund_' || coalesce(p_object ->> 'status', 'unknown');
  elsif p_type = 'charge.dispute.created' then
    update public.orders set payment_status = 'disputed'
    where business_id = v_order.business_id and id = v_order.id and payment_status in ('paid', 'partially_refunded');
    update public.payments set status = 'disputed'
    where business_id = v_order.business_id and order_id = v_order.id;
    perform app.emit('order.disputed', v_order.business_id, jsonb_build_object('order_id', v_order.id,
      'amount_cents', (p_object ->> 'amount')::integer, 'reason', p_object ->> 'reason'));
    v_outcome := 'disputed';
  end if;

  update public.stripe_events set business_id = v_order.business_id, order_id = v_order.id
  where id = p_event_id and v_order.id is not null;
  return v_outcome;
end
$$;
revoke all on function app.apply_stripe_object(text, jsonb, text) from public;
grant execute on function app.apply_stripe_object(text, jsonb, text) to service_role;

/** Applies one verified Stripe event in the caller's transaction. The event id is recorded first,
    so a duplicate (even a concurrent one) does nothing; states only move forward and events that
    come before the payment they are about wait for it, so any arrival order converges. Returns
    the outcome ('duplicate', 'paid', 'already_paid', 'deferred', 'ignored', ...). */
create function app.apply_stripe_event(p_event jsonb) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_outcome text;
begin
  if p_event ->> 'id' is null or p_event ->> 'type' is null or jsonb_typeof(p_event -> 'data' -> 'object') is distinct from 'object' then
    perform app.fail('22023', 'invalid_event', 'a Stripe event needs id, type and data.object');
  end if;
  insert into public.stripe_events (id, type, livemode, payload)
  values (p_event ->> 'id', p_event ->> 'type', coalesce((p_event ->> 'livemode')::boolean, false), p_event)
  on conflict (id) do nothing;
  if not found then
    return 'duplicate';
  end if;
  v_outcome := app.apply_stripe_object(p_event ->> 'type', p_event -> 'data' -> 'object', p_event ->> 'id');
  update public.stripe_events set outcome = v_outcome where id = p_event ->> 'id';
  return v_outcome;
end
$$;
revoke all on function app.apply_stripe_event(jsonb) from public;
grant execute on function app.apply_stripe_event(jsonb) to service_role;

/** Re-applies the events that waited for this payment (refunds, disputes that came first). */
create function app.apply_deferred_stripe_events(p_payment_intent_id text) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_event record;
  v_count integer := 0;
begin
  for v_event in
    select e.id, e.type, e.payload from public.stripe_events e
    where e.outcome = 'deferred' and e.payload -> 'data' -> 'object' ->> 'payment_intent' = p_payment_intent_id
    order by (e.payload ->> 'created')::bigint, e.received_at
    for update
  loop
    update public.stripe_events set outcome = app.apply_stripe_object(v_event.type, v_event.payload -> 'data' -> 'object', v_event.id)
    where id = v_event.id;
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
revoke all on function app.apply_deferred_stripe_events(text) from public;
grant execute on function app.apply_deferred_stripe_events(text) to service_role;

-- section views

/** Profit per order: revenue after refunds (tax and tip excluded), cost of goods from the line
    snapshots (refunded units excluded), Stripe fees, messaging costs and the margin. RLS of the
    underlying tables applies (security_invoker): managers see their venues. */
create view public.order_profit with (security_invoker = true) as
select o.business_id, o.venue_id, o.id as order_id, o.order_number, o.placed_at, o.paid_at, o.currency,
       o.total_cents, o.refunded_cents,
       greatest(0, o.total_cents - o.refunded_cents - o.tax_cents - o.tip_cents) as revenue_cents,
       coalesce(items.cogs, 0) as cost_of_goods_cents,
       coalesce(pay.fees, 0) as stripe_fee_cents,
       coalesce(msg.cost, 0) as messaging_cost_cents,
       greatest(0, o.total_cents - o.refunded_cents - o.tax_cents - o.tip_cents) - coalesce(items.cogs, 0)
         - coalesce(pay.fees, 0) - coalesce(msg.cost, 0) as margin_cents
from public.orders o
left join lateral (select sum(i.unit_cost_cents * (i.quantity - i.refunded_quantity)) as cogs from public.order_items i
                   where i.business_id = o.business_id and i.order_id = o.id) items on true
left join lateral (select sum(p.fee_cents) as fees from public.payments p
                   where p.business_id = o.business_id and p.order_id = o.id) pay on true
left join lateral (select sum(n.cost_cents) as cost from public.notification_log n
                   where n.business_id = o.business_id and n.order_id = o.id) msg on true
where o.paid_at is not null;

/** Per venue: paid orders and revenue today, this week (Monday start) and in total, in the venue's
    own time zone. security_invoker: staff see their venues. */
create view public.venue_sales_summary with (security_invoker = true) as
select v.business_id, v.id as venue_id, v.name as venue_name, b.currency,
       count(o.id) filter (where (o.paid_at at time zone v.time_zone)::date = (now() at time zone v.time_zone)::date) as orders_today,
       coalesce(sum(o.total_cents - o.refunded_cents) filter (
         where (o.paid_at at time zone v.time_zone)::date = (now() at time zone v.time_zone)::date), 0) as revenue_today_cents,
       count(o.id) filter (where (o.paid_at at time zone v.time_zone) >= date_trunc('week', now() at time zone v.time_zone)) as orders_this_week,
       coalesce(sum(o.total_cents - o.refunded_cents) filter (
         where (o.paid_at at time zone v.time_zone) >= date_trunc('week', now() at time zone v.time_zone)), 0) as revenue_this_week_cents,
       count(o.id) as orders_total,
       coalesce(sum(o.total_cents - o.refunded_cents), 0) as revenue_total_cents
from public.venues v
join public.businesses b on b.id = v.business_id
left join public.orders o on o.business_id = v.business_id and o.venue_id = v.id and o.paid_at is not null
where app.is_platform_or_service()
   or (v.business_id, v.id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k)
group by v.business_id, v.id, v.name, b.currency;

revoke all on public.order_profit, public.venue_sales_summary from anon, authenticated;
grant select on public.order_profit, public.venue_sales_summary to authenticated, service_role;

-- section rpc

/** Managers ask for a refund (see app.request_refund); the refund function sends it to Stripe. */
create function public.request_refund(order_id uuid, amount_cents integer default null, lines jsonb default null,
                                      reason text default null, restock boolean default false) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.request_refund(order_id, amount_cents, lines, reason, restock)
$$;
revoke all on function public.request_refund(uuid, integer, jsonb, text, boolean) from public;
grant execute on function public.request_refund(uuid, integer, jsonb, text, boolean) to authenticated, service_role;
