-- Gift cards (issue 23 item 4), part 2: the money paths. A gift card is a third payable of the
-- checkout and stripe-webhook functions (metadata kind = gift_card): its paid session issues it
-- (app.issue_gift_card, 0204). An order paid in part by a card checks out for the rest only: the
-- Checkout amount and the platform fee are on the amount due, and the paid webhook compares with that;
-- an expired session gives the hold back. Refunds split card first: Stripe gets back what was charged to
-- the card, and only what is refunded beyond that goes back to the gift card (a refund_back ledger
-- row when the refund succeeds); an order paid wholly by a gift card is refunded without Stripe.
-- Redefined here, each from its latest definition: app.apply_stripe_object (0022),
-- app.apply_stripe_order_object (0006, renamed in 0022), app.checkout_context (0072),
-- app.request_refund (0111), app.request_automatic_refund (0073).

-- section indexes
create index gift_cards_payment_intent_idx on public.gift_cards (payment_intent_id) where payment_intent_id is not null;

-- section private helpers

/** The gift card a Stripe object is about: metadata.kind = gift_card with gift_card_id (and
    business_id), else the checkout session or payment intent recorded on a card. */
create function app.gift_card_for_stripe_object(p_object jsonb) returns public.gift_cards
language sql stable security definer
set search_path = ''
as $$
  select g.* from public.gift_cards g
  where g.id = case when p_object -> 'metadata' ->> 'gift_card_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                    then (p_object -> 'metadata' ->> 'gift_card_id')::uuid end
    and g.business_id::text = coalesce(p_object -> 'metadata' ->> 'business_id', g.business_id::text)
  union all
  select g.* from public.gift_cards g
  where p_object ->> 'object' = 'checkout.session' and g.checkout_session_id = p_object ->> 'id'
  union all
  select g.* from public.gift_cards g
  where g.payment_intent_id is not null and g.payment_intent_id = coalesce(p_object ->> 'payment_intent',
                                         case when p_object ->> 'object' = 'payment_intent' then p_object ->> 'id' end)
  limit 1
$$;
revoke all on function app.gift_card_for_stripe_object(jsonb) from public;
grant execute on function app.gift_card_for_stripe_object(jsonb) to service_role;

/** Applies one Stripe object to the gift card it buys: a paid session (or payment intent) issues the
    card; an expired session is forgotten so the next checkout makes a new one. Anything else about a
    card (a refund of the purchase made in Stripe's dashboard) is recorded and left to the merchant. */
create function app.apply_stripe_gift_card(p_type text, p_object jsonb, p_event_id text) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_card public.gift_cards;
  v_outcome text := 'ignored';
begin
  v_card := app.gift_card_for_stripe_object(p_object);
  if v_card.id is null then
    return 'no_matching_gift_card';
  end if;
  if p_type in ('checkout.session.completed', 'checkout.session.async_payment_succeeded') then
    if p_type = 'checkout.session.completed' and p_object ->> 'payment_status' = 'unpaid' then
      v_outcome := 'awaiting_payment';
    else
      v_outcome := app.issue_gift_card(v_card.business_id, v_card.id, p_object ->> 'payment_intent', p_object ->> 'id',
                                       (p_object ->> 'amount_total')::integer);
    end if;
  elsif p_type = 'payment_intent.succeeded' then
    v_outcome := app.issue_gift_card(v_card.business_id, v_card.id, p_object ->> 'id', null, (p_object ->> 'amount_received')::integer);
  elsif p_type = 'checkout.session.expired' then
    update public.gift_cards set checkout_session_id = null, checkout_url = null, checkout_expires_at = null
    where business_id = v_card.business_id and id = v_card.id and status = 'pending' and checkout_session_id = p_object ->> 'id';
    v_outcome := case when found then 'session_expired' else 'ignored' end;
  elsif p_type in ('charge.refunded', 'refund.created', 'refund.updated', 'charge.dispute.created') then
    perform app.emit('gift_card.payment_reversed', v_card.business_id, jsonb_build_object(
      'gift_card_id', v_card.id, 'type', p_type, 'amount_cents', coalesce((p_object ->> 'amount_refunded')::integer, (p_object ->> 'amount')::integer)));
    v_outcome := 'gift_card_payment_reversed';
  end if;
  update public.stripe_events set business_id = v_card.business_id where id = p_event_id;
  return v_outcome;
end
$$;
revoke all on function app.apply_stripe_gift_card(text, jsonb, text) from public;
grant execute on function app.apply_stripe_gift_card(text, jsonb, text) to service_role;

/** What the checkout function needs to sell a pending gift card: amount, business, metadata, after
    checking the caller holds the card's access token. Raises PT404, BR146 (not pending any more). */
create function app.gift_card_checkout_context(p_gift_card_id uuid, p_access_token uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_card public.gift_cards;
  v_business public.businesses;
begin
  select g.* into v_card from public.gift_cards g where g.id = p_gift_card_id and g.access_token = p_access_token;
  if v_card.id is null then
    perform app.fail('PT404', 'gift_card_not_found', 'no gift card with that id and token');
  end if;
  if v_card.status <> 'pending' then
    perform app.fail('BR146', 'gift_card_already_paid', 'this gift card is already paid for');
  end if;
  select b.* into v_business from public.businesses b where b.id = v_card.business_id;
  return jsonb_build_object(
    'gift_card_id', v_card.id, 'business_id', v_card.business_id, 'business_name', v_business.name,
    'currency', lower(v_card.currency), 'amount_cents', v_card.initial_cents, 'customer_email', v_card.purchaser_email,
    'stripe_account_id', v_business.stripe_account_id,
    'application_fee_cents', app.platform_fee_cents(v_card.business_id, v_card.initial_cents),
    'session', case when v_card.checkout_session_id is not null and v_card.checkout_expires_at > now() + interval '2 minutes'
                    then jsonb_build_object('id', v_card.checkout_session_id, 'url', v_card.checkout_url,
                                            'expires_at', v_card.checkout_expires_at) end,
    'attempt', (select count(*) from public.stripe_events e where e.type = 'checkout.session.expired'
                and e.payload -> 'data' -> 'object' -> 'metadata' ->> 'gift_card_id' = v_card.id::text) + 1);
end
$$;
revoke all on function app.gift_card_checkout_context(uuid, uuid) from public;
grant execute on function app.gift_card_checkout_context(uuid, uuid) to service_role;

/** Records the Checkout Session created for a pending gift card. Service only. */
create function app.attach_gift_card_checkout_session(p_gift_card_id uuid, p_session_id text, p_url text, p_expires_at timestamptz)
returns void
language sql volatile security definer
set search_path = ''
as $$
  update public.gift_cards set checkout_session_id = p_session_id, checkout_url = p_url, checkout_expires_at = p_expires_at
  where id = p_gift_card_id and status = 'pending'
$$;
revoke all on function app.attach_gift_card_checkout_session(uuid, text, text, timestamptz) from public;
grant execute on function app.attach_gift_card_checkout_session(uuid, text, text, timestamptz) to service_role;

/** How a refund of an order splits, card first: {card_cents, gift_card_cents}. What was charged to the
    card (total less the gift-card part) and is not yet refunded or being refunded goes back through
    Stripe first; only the rest goes back to the gift card. */
create function app.gift_card_refund_split(p_order public.orders, p_amount integer) returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object('card_cents', least(p_amount, greatest(0, card_left)), 'gift_card_cents', p_amount - least(p_amount, greatest(0, card_left)))
  from (select p_order.total_cents - p_order.gift_card_cents
               - coalesce((select sum(r.amount_cents - r.gift_card_cents) from public.refunds r
                           where r.business_id = p_order.business_id and r.order_id = p_order.id
                             and r.status in ('pending', 'succeeded')), 0) as card_left) s
$$;
revoke all on function app.gift_card_refund_split(public.orders, integer) from public;
grant execute on function app.gift_card_refund_split(public.orders, integer) to service_role;

/** Applies one Stripe object to its order (0006's code, renamed in 0022); returns the outcome. An
    order paid in part by a gift card is paid when Stripe has the rest (total less gift_card_cents); an
    expired session gives the card's hold back; charge.refunded reconciles the card parts of refunds. */
create or replace function app.apply_stripe_order_object(p_type text, p_object jsonb, p_event_id text) returns text
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
    elsif coalesce((p_object ->> 'amount_total')::integer, v_order.total_cents) < v_order.total_cents - v_order.gift_card_cents then
      v_outcome := 'amount_mismatch';
    else
      v_outcome := case when app.mark_order_paid(v_order.business_id, v_order.id, p_object ->> 'payment_intent', p_object ->> 'id',
                                                 (p_object ->> 'amount_total')::integer, p_event_id)
                        then 'paid' else 'already_paid' end;
    end if;
  elsif p_type = 'payment_intent.succeeded' then
    if coalesce((p_object ->> 'amount_received')::integer, v_order.total_cents) < v_order.total_cents - v_order.gift_card_cents then
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
    if found then  -- the gift card's hold goes back with the session; the next checkout may apply it again
      perform app.release_gift_card_hold(v_order.business_id, v_order.id, 'checkout session expired');
    end if;
  elsif p_type = 'charge.refunded' then
    -- refunds listed on the charge (when expanded), then any amount Stripe refunded that we do not know of
    for v_refund in select * from jsonb_array_elements(coalesce(p_object -> 'refunds' -> 'data', '[]'::jsonb)) loop
      perform app.record_refund(v_order.business_id, v_order.id, (v_refund -> 'metadata' ->> 'refund_id')::uuid,
                                v_refund ->> 'id', v_refund ->> 'status', (v_refund ->> 'amount')::integer, v_refund ->> 'failure_reason');
    end loop;
    -- what Stripe gave back is compared with the card parts only (a gift-card part never went through Stripe)
    select coalesce(sum(r.amount_cents - r.gift_card_cents), 0) into v_known from public.refunds r
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
revoke all on function app.apply_stripe_order_object(text, jsonb, text) from public;
grant execute on function app.apply_stripe_order_object(text, jsonb, text) to service_role;

/** Applies one Stripe object to its payable: a gift card bought (app.apply_stripe_gift_card), a
    booking (app.apply_stripe_booking) or an order (app.apply_stripe_order_object). */
create or replace function app.apply_stripe_object(p_type text, p_object jsonb, p_event_id text) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if p_object -> 'metadata' ->> 'kind' = 'gift_card' or (app.gift_card_for_stripe_object(p_object)).id is not null then
    return app.apply_stripe_gift_card(p_type, p_object, p_event_id);
  end if;
  if p_object -> 'metadata' ->> 'kind' = 'booking' or p_object -> 'metadata' ? 'booking_id'
     or (app.booking_for_stripe_object(p_object)).id is not null then
    return app.apply_stripe_booking(p_type, p_object, p_event_id);
  end if;
  return app.apply_stripe_order_object(p_type, p_object, p_event_id);
end
$$;
revoke all on function app.apply_stripe_object(text, jsonb, text) from public;
grant execute on function app.apply_stripe_object(text, jsonb, text) to service_role;

/** What the checkout function needs for an order (0072), with the part a gift card pays
    (gift_card_cents) and the amount due by card; the platform fee is on the amount due. */
create or replace function app.checkout_context(p_order_id uuid, p_access_token uuid) returns jsonb
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
    'application_fee_cents', app.platform_fee_cents(v_order.business_id, v_order.total_cents - v_order.gift_card_cents),
    'gift_card_cents', v_order.gift_card_cents, 'amount_due_cents', v_order.total_cents - v_order.gift_card_cents,
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

/** A manager asks for a refund (0111, with its permission checks), split card first
    (app.gift_card_refund_split): amount_cents in the answer is the card part the refund function sends to
    Stripe, gift_card_cents what goes back to the gift card when the refund succeeds; a refund that is
    all gift card succeeds here, without Stripe. Raises PT404, BR130, BR131, BR132 as before. */
create or replace function app.request_refund(p_order_id uuid, p_amount_cents integer, p_lines jsonb, p_reason text, p_restock boolean)
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
  v_split jsonb;
  v_status text := 'pending';
begin
  select o.* into v_order from public.orders o where o.id = p_order_id for update;
  if v_order.id is null or not app.has_venue_access(v_order.business_id, v_order.venue_id) then
    perform app.fail('PT404', 'order_not_found', 'no such order at your venues');
  end if;
  perform app.require_permission(v_order.business_id, 'refund', jsonb_build_object('order_id', v_order.id));
  perform app.require_module(v_order.business_id, 'ordering');
  if v_order.payment_status not in ('paid', 'partially_refunded') or (v_order.payment_intent_id is null and v_order.gift_card_cents = 0) then
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

  v_split := app.gift_card_refund_split(v_order, v_amount);
  if (v_split ->> 'card_cents')::integer = 0 then
    v_status := 'succeeded';  -- all of it goes back to the gift card: nothing to ask Stripe
  end if;

  select count(*) + 1 into v_n from public.refunds r where r.business_id = v_order.business_id and r.order_id = v_order.id;
  v_key := 'refund:' || v_order.id || ':' || v_n;
  insert into public.refunds (business_id, id, order_id, venue_id, amount_cents, gift_card_cents, status, currency, lines, restock,
                              reason, idempotency_key, requested_by)
  values (v_order.business_id, v_refund_id, v_order.id, v_order.venue_id, v_amount, (v_split ->> 'gift_card_cents')::integer, v_status,
          v_order.currency, coalesce(case when jsonb_typeof(p_lines) = 'object' then p_lines end, '{}'::jsonb), coalesce(p_restock, false),
          left(coalesce(p_reason, ''), 500), v_key, auth.uid());
  perform app.audit(v_order.business_id, 'refund.requested', jsonb_build_object('order_id', v_order.id, 'refund_id', v_refund_id,
                                                                                 'amount_cents', v_amount, 'gift_card_cents', (v_split ->> 'gift_card_cents')::integer));
  if v_status = 'succeeded' then
    perform app.apply_refund(v_order.business_id, v_refund_id);
  end if;
  -- amount_cents is what goes to Stripe (the card part; 0: none); refund_cents the whole refund
  return jsonb_build_object('refund_id', v_refund_id, 'order_id', v_order.id, 'business_id', v_order.business_id,
    'amount_cents', (v_split ->> 'card_cents')::integer, 'gift_card_cents', (v_split ->> 'gift_card_cents')::integer,
    'refund_cents', v_amount, 'status', v_status,
    'currency', lower(v_order.currency), 'payment_intent_id', v_order.payment_intent_id, 'idempotency_key', v_key);
end
$$;
revoke all on function app.request_refund(uuid, integer, jsonb, text, boolean) from public;
grant execute on function app.request_refund(uuid, integer, jsonb, text, boolean) to authenticated, service_role;

/** The automatic refund of a cancelled order that holds money (0073), split card first like any
    refund: amount_cents in the answer is the card part for Stripe; an order paid wholly by a gift card
    is refunded back to it here, and nothing is returned for the worker to send. */
create or replace function app.request_automatic_refund(p_business_id uuid, p_order_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_pending integer;
  v_amount integer;
  v_key text;
  v_refund public.refunds;
  v_split jsonb;
begin
  select o.* into v_order from public.orders o where o.business_id = p_business_id and o.id = p_order_id for update;
  if v_order.id is null or v_order.status <> 'cancelled' then
    return null;
  end if;
  v_key := 'refund:' || v_order.id || ':auto';
  select r.* into v_refund from public.refunds r where r.business_id = v_order.business_id and r.idempotency_key = v_key;
  if v_refund.id is null then
    if v_order.payment_status not in ('paid', 'partially_refunded') or (v_order.payment_intent_id is null and v_order.gift_card_cents = 0) then
      return null;
    end if;
    select coalesce(sum(r.amount_cents), 0) into v_pending from public.refunds r
    where r.business_id = v_order.business_id and r.order_id = v_order.id and r.status = 'pending';
    v_amount := v_order.total_cents - v_order.refunded_cents - v_pending;
    if v_amount <= 0 then
      return null;
    end if;
    v_split := app.gift_card_refund_split(v_order, v_amount);
    insert into public.refunds (business_id, order_id, venue_id, amount_cents, gift_card_cents, status, currency, lines, restock, reason,
                                idempotency_key)
    values (v_order.business_id, v_order.id, v_order.venue_id, v_amount, (v_split ->> 'gift_card_cents')::integer,
            case when (v_split ->> 'card_cents')::integer = 0 then 'succeeded' else 'pending' end, v_order.currency, '{}'::jsonb,  -- '{}': every line
            -- stock was taken only if the paid fan-out ran (it opens the kitchen ticket): paid, then cancelled
            exists (select 1 from public.kitchen_tickets t where t.business_id = v_order.business_id and t.order_id = v_order.id),
            left('order cancelled: ' || coalesce(v_order.cancel_reason, ''), 500), v_key)
    returning * into v_refund;
    perform app.audit(v_order.business_id, 'refund.automatic', jsonb_build_object('order_id', v_order.id, 'refund_id', v_refund.id,
                                                                                   'amount_cents', v_amount));
    if v_refund.status = 'succeeded' then  -- all of it back to the gift card: done here, nothing for Stripe
      perform app.apply_refund(v_order.business_id, v_refund.id);
      return null;
    end if;
  end if;
  if v_refund.status <> 'pending' or v_refund.provider_refund_id is not null then
    return null;
  end if;
  return jsonb_build_object('refund_id', v_refund.id, 'order_id', v_order.id, 'business_id', v_order.business_id,
    'amount_cents', v_refund.amount_cents - v_refund.gift_card_cents, 'gift_card_cents', v_refund.gift_card_cents,
    'payment_intent_id', v_order.payment_intent_id, 'idempotency_key', v_refund.idempotency_key,
    'stripe_account_id', (select b.stripe_account_id from public.businesses b where b.id = v_order.business_id));
end
$$;
revoke all on function app.request_automatic_refund(uuid, uuid) from public;
grant execute on function app.request_automatic_refund(uuid, uuid) to service_role;

