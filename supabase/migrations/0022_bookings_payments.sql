-- Bookings, part 3: bookings as a payable of the order flow's checkout and stripe-webhook functions.
-- app.apply_stripe_object (0006) becomes a dispatcher: objects about a booking (metadata.kind =
-- 'booking' / booking_id, or a checkout session or payment intent recorded on a booking) go to
-- app.apply_stripe_booking; everything else to the unchanged order code, renamed
-- app.apply_stripe_order_object.

-- section private helpers

/** The booking a Stripe object is about: metadata.booking_id (with metadata.business_id), else the
    checkout session or payment intent recorded on the booking. */
create function app.booking_for_stripe_object(p_object jsonb) returns public.bookings
language sql stable security definer
set search_path = ''
as $$
  select b.* from public.bookings b
  where b.id = case when p_object -> 'metadata' ->> 'booking_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                    then (p_object -> 'metadata' ->> 'booking_id')::uuid end
    and b.business_id::text = coalesce(p_object -> 'metadata' ->> 'business_id', b.business_id::text)
  union all
  select b.* from public.bookings b
  where p_object ->> 'object' = 'checkout.session' and b.checkout_session_id = p_object ->> 'id'
  union all
  select b.* from public.bookings b
  where b.payment_intent_id = coalesce(p_object ->> 'payment_intent',
                                       case when p_object ->> 'object' = 'payment_intent' then p_object ->> 'id' end)
  limit 1
$$;
revoke all on function app.booking_for_stripe_object(jsonb) from public;

/** Applies one Stripe object to its booking; returns the outcome. Refund and dispute events about a
    payment not recorded yet are 'deferred' and re-applied when it is (app.mark_booking_paid). */
create function app.apply_stripe_booking(p_type text, p_object jsonb, p_event_id text) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_outcome text := 'ignored';
  v_refund jsonb;
  v_known integer;
begin
  v_booking := app.booking_for_stripe_object(p_object);
  if v_booking.id is null then
    return 'no_matching_booking';
  end if;
  if p_type in ('charge.refunded', 'refund.created', 'refund.updated', 'refund.failed', 'charge.dispute.created')
     and v_booking.payment_status in ('unpaid', 'pending', 'failed') then
    return 'deferred';
  end if;

  if p_type in ('checkout.session.completed', 'checkout.session.async_payment_succeeded') then
    if p_type = 'checkout.session.completed' and p_object ->> 'payment_status' = 'unpaid' then
      update public.bookings set payment_status = 'pending'
      where business_id = v_booking.business_id and id = v_booking.id and payment_status = 'unpaid' and status = 'pending_payment';
      v_outcome := 'awaiting_payment';
    elsif coalesce((p_object ->> 'amount_total')::integer, v_booking.total_cents) < v_booking.total_cents then
      v_outcome := 'amount_mismatch';
    else
      v_outcome := app.mark_booking_paid(v_booking.business_id, v_booking.id, p_object ->> 'payment_intent', p_object ->> 'id',
                                         (p_object ->> 'amount_total')::integer, p_event_id);
    end if;
  elsif p_type = 'payment_intent.succeeded' then
    if coalesce((p_object ->> 'amount_received')::integer, v_booking.total_cents) < v_booking.total_cents then
      v_outcome := 'amount_mismatch';
    else
      v_outcome := app.mark_booking_paid(v_booking.business_id, v_booking.id, p_object ->> 'id', null,
                                         (p_object ->> 'amount_received')::integer, p_event_id);
    end if;
  elsif p_type in ('checkout.session.async_payment_failed', 'payment_intent.payment_failed') then
    update public.bookings set status = 'payment_failed', payment_status = 'failed'
    where business_id = v_booking.business_id and id = v_booking.id and status = 'pending_payment';
    v_outcome := case when found then 'failed' else 'ignored_after_payment' end;
  elsif p_type = 'checkout.session.expired' then
    perform app.expire_booking(v_booking.business_id, v_booking.id);
    update public.bookings set checkout_session_id = null, checkout_url = null, checkout_expires_at = null
    where business_id = v_booking.business_id and id = v_booking.id and checkout_session_id = p_object ->> 'id'
      and payment_status in ('unpaid', 'pending', 'failed');
    v_outcome := 'session_expired';
  elsif p_type = 'charge.refunded' then
    for v_refund in select * from jsonb_array_elements(coalesce(p_object -> 'refunds' -> 'data', '[]'::jsonb)) loop
      perform app.record_booking_refund(v_booking.business_id, v_booking.id, (v_refund -> 'metadata' ->> 'refund_id')::uuid,
                                        v_refund ->> 'id', v_refund ->> 'status', (v_refund ->> 'amount')::integer,
                                        v_refund ->> 'failure_reason');
    end loop;
    select coalesce(sum(r.amount_cents), 0) into v_known from public.refunds r
    where r.business_id = v_booking.business_id and r.booking_id = v_booking.id and r.status in ('pending', 'succeeded');
    if (p_object ->> 'amount_refunded')::integer > v_known then
      perform app.record_booking_refund(v_booking.business_id, v_booking.id, null,
                                        'charge:' || (p_object ->> 'id') || ':' || (p_object ->> 'amount_refunded'),
                                        'succeeded', (p_object ->> 'amount_refunded')::integer - v_known, null);
    end if;
    v_outcome := 'refunds_reconciled';
  elsif p_type in ('refund.created', 'refund.updated', 'refund.failed') then
    perform app.record_booking_refund(v_booking.business_id, v_booking.id, (p_object -> 'metadata' ->> 'refund_id')::uuid,
                                      p_object ->> 'id', p_object ->> 'status', (p_object ->> 'amount')::integer,
                                      p_object ->> 'failure_reason');
    v_outcome := 'refund_' || coalesce(p_object ->> 'status', 'unknown');
  elsif p_type = 'charge.dispute.created' then
    update public.bookings set payment_status = 'disputed'
    where business_id = v_booking.business_id and id = v_booking.id and payment_status in ('paid', 'partially_refunded');
    update public.payments set status = 'disputed' where business_id = v_booking.business_id and booking_id = v_booking.id;
    perform app.emit('booking.disputed', v_booking.business_id, jsonb_build_object('booking_id', v_booking.id,
      'amount_cents', (p_object ->> 'amount')::integer, 'reason', p_object ->> 'reason'));
    v_outcome := 'disputed';
  end if;

  update public.stripe_events set business_id = v_booking.business_id, booking_id = v_booking.id where id = p_event_id;
  return v_outcome;
end
$$;
revoke all on function app.apply_stripe_booking(text, jsonb, text) from public;
grant execute on function app.apply_stripe_booking(text, jsonb, text) to service_role;

-- The order code of 0006 stays as it is, under a new name; the dispatcher takes the old one, so
-- app.apply_stripe_event and app.apply_deferred_stripe_events reach both payables unchanged.
alter function app.apply_stripe_object(text, jsonb, text) rename to apply_stripe_order_object;

/** Applies one Stripe object to its payable: a booking (app.apply_stripe_booking) or an order
    (app.apply_stripe_order_object, the order flow's code of migration 0006). */
create function app.apply_stripe_object(p_type text, p_object jsonb, p_event_id text) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if p_object -> 'metadata' ->> 'kind' = 'booking' or p_object -> 'metadata' ? 'booking_id'
     or (app.booking_for_stripe_object(p_object)).id is not null then
    return app.apply_stripe_booking(p_type, p_object, p_event_id);
  end if;
  return app.apply_stripe_order_object(p_type, p_object, p_event_id);
end
$$;
revoke all on function app.apply_stripe_object(text, jsonb, text) from public;
grant execute on function app.apply_stripe_object(text, jsonb, text) to service_role;

/** What the checkout function needs for a booking: its price, party and the seed's Stripe metadata,
    after checking who asks (the booker's access token, or staff of the venue). Raises PT404, PT403,
    PT409 (paid, or no longer held). */
create function app.booking_checkout_context(p_booking_id uuid, p_access_token uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_business public.businesses;
  v_activity public.activities;
  v_session public.activity_sessions;
  v_venue public.venues;
  v_counts jsonb;
begin
  select b.* into v_booking from public.bookings b where b.id = p_booking_id;
  if v_booking.id is null or not (coalesce(v_booking.access_token = p_access_token, false)
                                  or app.has_venue_access(v_booking.business_id, v_booking.venue_id, '{owner,manager,staff}')) then
    perform app.fail('PT404', 'booking_not_found', 'no booking with that id and token');
  end if;
  perform app.require_module(v_booking.business_id, 'bookings');
  if v_booking.payment_status not in ('unpaid', 'pending') then
    perform app.fail('PT409', 'booking_already_paid', format('the booking is %s', v_booking.payment_status));
  end if;
  if v_booking.status <> 'pending_payment' or v_booking.hold_expires_at <= now() then
    perform app.fail('PT409', 'hold_expired', 'the seats are no longer held: start a new booking');
  end if;
  select b.* into v_business from public.businesses b where b.id = v_booking.business_id;
  select a.* into v_activity from public.activities a where a.business_id = v_booking.business_id and a.id = v_booking.activity_id;
  select s.* into v_session from public.activity_sessions s where s.business_id = v_booking.business_id and s.id = v_booking.session_id;
  select v.* into v_venue from public.venues v where v.business_id = v_booking.business_id and v.id = v_booking.venue_id;
  select coalesce(jsonb_object_agg(k.key || '_count', k.value #>> '{}'), '{}'::jsonb) into v_counts
  from jsonb_each(v_booking.party) k;

  return jsonb_build_object(
    'booking_id', v_booking.id, 'business_id', v_booking.business_id, 'venue_id', v_booking.venue_id,
    'booking_number', v_booking.booking_number, 'currency', lower(v_booking.currency), 'total_cents', v_booking.total_cents,
    'discount_cents', v_booking.discount_cents, 'customer_email', v_booking.guest_email, 'business_name', v_business.name,
    'activity_name', v_activity.name, 'hold_expires_at', v_booking.hold_expires_at,
    'stripe_account_id', v_business.stripe_account_id,
    'application_fee_cents', round(v_booking.total_cents * v_business.application_fee_bps / 10000.0),
    'session', case when v_booking.checkout_session_id is not null and v_booking.checkout_expires_at > now() + interval '2 minutes'
                    then jsonb_build_object('id', v_booking.checkout_session_id, 'url', v_booking.checkout_url,
                                            'expires_at', v_booking.checkout_expires_at) end,
    'attempt', (select count(*) from public.stripe_events e where e.booking_id = v_booking.id
                and e.type = 'checkout.session.expired') + 1,
    'lines', case when v_booking.discount_cents > 0 then
               jsonb_build_array(jsonb_build_object(
                 'name', v_activity.name || ' — ' || v_booking.party_size || ' people, code ' || v_booking.promo_code,
                 'unit_amount', v_booking.total_cents, 'quantity', 1))
             else (select jsonb_agg(jsonb_build_object('name', v_activity.name || ' — ' || (t ->> 'name'),
                                                       'unit_amount', (t ->> 'price_cents')::integer,
                                                       'quantity', (v_booking.party ->> (t ->> 'key'))::integer) order by o)
                   from jsonb_array_elements(v_activity.price_tiers) with ordinality as x (t, o)
                   where coalesce((v_booking.party ->> (t ->> 'key'))::integer, 0) > 0) end,
    -- the seed's Stripe metadata (values are strings; Stripe keeps at most 500 characters each)
    'metadata', jsonb_build_object(
      'kind', 'booking', 'booking_id', v_booking.id, 'business_id', v_booking.business_id,
      'organization_id', v_booking.business_id, 'booking_number', v_booking.booking_number,
      'activity_id', v_booking.activity_id, 'venue_id', v_booking.venue_id, 'session_id', v_booking.session_id,
      'customer_name', coalesce(v_booking.guest_name, ''), 'customer_email', coalesce(v_booking.guest_email, ''),
      'customer_phone', coalesce(v_booking.guest_phone, ''),
      'booking_date', to_char(v_session.starts_at at time zone v_venue.time_zone, 'YYYY-MM-DD'),
      'booking_time', to_char(v_session.starts_at at time zone v_venue.time_zone, 'HH24:MI'),
      'party_size', v_booking.party_size::text,
      'promo_code', coalesce(v_booking.promo_code, ''),
      'special_requests', left(v_booking.special_requests, 500),
      'platform_fee_percent', to_char(v_business.application_fee_bps / 100.0, 'FM990.00')) || v_counts);
end
$$;
revoke all on function app.booking_checkout_context(uuid, uuid) from public;
grant execute on function app.booking_checkout_context(uuid, uuid) to anon, authenticated, service_role;

/** Records the Checkout Session created for a held booking. */
create function app.attach_booking_checkout_session(p_booking_id uuid, p_session_id text, p_url text, p_expires_at timestamptz)
returns void
language sql volatile security definer
set search_path = ''
as $$
  update public.bookings set checkout_session_id = p_session_id, checkout_url = p_url, checkout_expires_at = p_expires_at
  where id = p_booking_id and status = 'pending_payment' and payment_status in ('unpaid', 'pending')
$$;
revoke all on function app.attach_booking_checkout_session(uuid, text, text, timestamptz) from public;
grant execute on function app.attach_booking_checkout_session(uuid, text, text, timestamptz) to service_role;

/** Re-applies the events that waited for this payment (refunds, disputes that came first), for orders
    and bookings. Replaces 0006's version, which applied each event inside the UPDATE of its own
    stripe_events row: applying one tags that row (order_id / booking_id), and PostgreSQL refuses a
    row changed by a function its own UPDATE called. Here the outcome is computed first, then stored. */
create or replace function app.apply_deferred_stripe_events(p_payment_intent_id text) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_event record;
  v_outcome text;
  v_count integer := 0;
begin
  for v_event in
    select e.id, e.type, e.payload from public.stripe_events e
    where e.outcome = 'deferred' and e.payload -> 'data' -> 'object' ->> 'payment_intent' = p_payment_intent_id
    order by (e.payload ->> 'created')::bigint, e.received_at
    for update
  loop
    v_outcome := app.apply_stripe_object(v_event.type, v_event.payload -> 'data' -> 'object', v_event.id);
    update public.stripe_events set outcome = v_outcome where id = v_event.id;
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
revoke all on function app.apply_deferred_stripe_events(text) from public;
grant execute on function app.apply_deferred_stripe_events(text) to service_role;
