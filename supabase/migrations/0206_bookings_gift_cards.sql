-- Gift cards pay booking deposits (issue 23 item 4, the bookings half), as they pay orders (0204,
-- 0205): a held booking takes a code (the checkout function's gift_card_code, or
-- apply_gift_card_to_booking); what the card holds, up to the total, is held on it (a redeem ledger
-- row with booking_id). Paid in full, the booking is confirmed here through app.mark_booking_paid, the
-- path a Stripe payment takes, with no Stripe call; in part, Checkout charges only the rest. The hold
-- goes back (release) when the booking's hold expires or its payment fails unpaid, or its Checkout
-- session expires. Booking refunds split card first: Stripe gets back what was charged to the card,
-- the rest goes back onto the gift card (refund_back) when the refund succeeds; a refund that is all
-- gift card succeeds at once, without Stripe. Code tries count toward the gift_card_code limits.
-- Redefined here, each from its latest definition: app.apply_stripe_booking (0022),
-- app.booking_checkout_context (0072), app.request_booking_refund (0021),
-- app.tg_refunds_gift_card_back (0204), app.expire_gift_cards (0204).

-- section tables

alter table public.bookings
  add column gift_card_id uuid,
  add column gift_card_cents integer not null default 0,
  add constraint bookings_gift_card_fkey foreign key (business_id, gift_card_id) references public.gift_cards (business_id, id),
  add constraint bookings_gift_card_amount check (gift_card_cents between 0 and total_cents and (gift_card_cents = 0 or gift_card_id is not null));

/* A hold or release is about an order or a booking. */
alter table public.gift_card_ledger
  add column booking_id uuid,
  drop constraint gift_card_ledger_order,
  add constraint gift_card_ledger_order check (kind not in ('redeem', 'release') or num_nonnulls(order_id, booking_id) = 1);

-- section indexes
create index gift_card_ledger_booking_idx on public.gift_card_ledger (business_id, booking_id) where booking_id is not null;
create index bookings_gift_card_idx on public.bookings (business_id, gift_card_id) where gift_card_id is not null;
-- the nightly pass's bookings still holding a card part unpaid: a small set, whatever the bookings table's size
create index bookings_gift_card_hold_idx on public.bookings (checkout_expires_at)
  where gift_card_cents > 0 and payment_status in ('unpaid', 'pending', 'failed');

-- section private helpers

/** Gives an unpaid booking's held gift-card amount back to the card (release) and clears the hold.
    Nothing happens to a paid booking or one without a hold. Returns the cents released. Service only. */
create function app.release_booking_gift_card_hold(p_business_id uuid, p_booking_id uuid, p_note text) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
begin
  select b.* into v_booking from public.bookings b where b.business_id = p_business_id and b.id = p_booking_id for update;
  if v_booking.id is null or v_booking.gift_card_cents = 0 or v_booking.payment_status not in ('unpaid', 'pending', 'failed') then
    return 0;
  end if;
  perform 1 from public.gift_cards g where g.business_id = v_booking.business_id and g.id = v_booking.gift_card_id for update;
  insert into public.gift_card_ledger (business_id, gift_card_id, kind, amount_cents, booking_id, note)
  values (v_booking.business_id, v_booking.gift_card_id, 'release', v_booking.gift_card_cents, v_booking.id, left(coalesce(p_note, ''), 200));
  update public.bookings set gift_card_id = null, gift_card_cents = 0 where business_id = v_booking.business_id and id = v_booking.id;
  return v_booking.gift_card_cents;
end
$$;
revoke all on function app.release_booking_gift_card_hold(uuid, uuid, text) from public;
grant execute on function app.release_booking_gift_card_hold(uuid, uuid, text) to service_role;

create or replace function app.apply_stripe_booking(p_type text, p_object jsonb, p_event_id text) returns text
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
    elsif coalesce((p_object ->> 'amount_total')::integer, v_booking.total_cents) < v_booking.total_cents - v_booking.gift_card_cents then
      v_outcome := 'amount_mismatch';
    else
      v_outcome := app.mark_booking_paid(v_booking.business_id, v_booking.id, p_object ->> 'payment_intent', p_object ->> 'id',
                                         (p_object ->> 'amount_total')::integer, p_event_id);
    end if;
  elsif p_type = 'payment_intent.succeeded' then
    if coalesce((p_object ->> 'amount_received')::integer, v_booking.total_cents) < v_booking.total_cents - v_booking.gift_card_cents then
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
    if found then  -- the gift card's hold goes back with the session (the expiry trigger did it already if the hold ran out)
      perform app.release_booking_gift_card_hold(v_booking.business_id, v_booking.id, 'checkout session expired');
    end if;
    v_outcome := 'session_expired';
  elsif p_type = 'charge.refunded' then
    for v_refund in select * from jsonb_array_elements(coalesce(p_object -> 'refunds' -> 'data', '[]'::jsonb)) loop
      perform app.record_booking_refund(v_booking.business_id, v_booking.id, (v_refund -> 'metadata' ->> 'refund_id')::uuid,
                                        v_refund ->> 'id', v_refund ->> 'status', (v_refund ->> 'amount')::integer,
                                        v_refund ->> 'failure_reason');
    end loop;
    select coalesce(sum(r.amount_cents - r.gift_card_cents), 0) into v_known from public.refunds r
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

/** What the checkout function needs for a held booking (0072), with the part a gift card pays
    (gift_card_cents) and the amount due by card; the platform fee is on the amount due. */
create or replace function app.booking_checkout_context(p_booking_id uuid, p_access_token uuid) returns jsonb
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
    'application_fee_cents', app.platform_fee_cents(v_booking.business_id, v_booking.total_cents - v_booking.gift_card_cents),
    'gift_card_cents', v_booking.gift_card_cents, 'amount_due_cents', v_booking.total_cents - v_booking.gift_card_cents,
    'session', case when v_booking.checkout_session_id is not null and v_booking.checkout_expires_at > now() + interval '2 minutes'
                    then jsonb_build_object('id', v_booking.checkout_session_id, 'url', v_booking.checkout_url,
                                            'expires_at', v_booking.checkout_expires_at) end,
    'attempt', (select count(*) from public.stripe_events e where e.booking_id = v_booking.id
                and e.type = 'checkout.session.expired') + 1,
    'lines', case when v_booking.gift_card_cents > 0 then  -- Checkout has no negative lines: the rest is one line
               jsonb_build_array(jsonb_build_object(
                 'name', v_activity.name || ' — ' || v_booking.party_size || ' people (gift card paid '
                         || to_char(v_booking.gift_card_cents / 100.0, 'FM999990.00') || ')',
                 'unit_amount', v_booking.total_cents - v_booking.gift_card_cents, 'quantity', 1))
             when v_booking.discount_cents > 0 then
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
      'gift_card_cents', v_booking.gift_card_cents::text,
      'special_requests', left(v_booking.special_requests, 500),
      'platform_fee_percent', to_char(coalesce((app.business_plan(v_booking.business_id)).platform_fee_bps, 0) / 100.0, 'FM990.00')) || v_counts);
end
$$;
revoke all on function app.booking_checkout_context(uuid, uuid) from public;
grant execute on function app.booking_checkout_context(uuid, uuid) to anon, authenticated, service_role;

/** Records a refund of a booking (0021), split card first: what was charged to the card and is not
    yet refunded goes back through Stripe (the worker sends amount_cents - gift_card_cents on
    booking.refund_requested), the rest back onto the gift card when the refund succeeds. A refund
    that is all gift card succeeds here, without Stripe. p_amount null = all that is left. Raises
    BR608 (nothing or too much). */
create or replace function app.request_booking_refund(p_business_id uuid, p_booking_id uuid, p_amount_cents integer, p_reason text)
returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_pending integer;
  v_refundable integer;
  v_amount integer;
  v_n integer;
  v_id uuid := extensions.gen_random_uuid();
  v_card_left integer;
  v_gift integer;
begin
  select b.* into v_booking from public.bookings b where b.business_id = p_business_id and b.id = p_booking_id for update;
  if v_booking.payment_status not in ('paid', 'partially_refunded') or (v_booking.payment_intent_id is null and v_booking.gift_card_cents = 0) then
    perform app.fail('BR608', 'not_refundable', format('a booking that is %s cannot be refunded', v_booking.payment_status));
  end if;
  select coalesce(sum(r.amount_cents), 0) into v_pending from public.refunds r
  where r.business_id = p_business_id and r.booking_id = p_booking_id and r.status = 'pending';
  v_refundable := v_booking.total_cents - v_booking.refunded_cents - v_pending;
  v_amount := coalesce(p_amount_cents, v_refundable);
  if v_amount <= 0 or v_amount > v_refundable then
    perform app.fail('BR608', 'invalid_refund_amount', format('between 1 and %s can be refunded', v_refundable));
  end if;
  -- card first: what Stripe charged, less the card parts of refunds already made or on their way
  select v_booking.total_cents - v_booking.gift_card_cents - coalesce(sum(r.amount_cents - r.gift_card_cents), 0) into v_card_left
  from public.refunds r
  where r.business_id = p_business_id and r.booking_id = p_booking_id and r.status in ('pending', 'succeeded');
  v_gift := v_amount - least(v_amount, greatest(0, v_card_left));
  select count(*) + 1 into v_n from public.refunds r where r.business_id = p_business_id and r.booking_id = p_booking_id;
  insert into public.refunds (business_id, id, booking_id, venue_id, amount_cents, gift_card_cents, status, currency, reason,
                              idempotency_key, requested_by)
  values (p_business_id, v_id, p_booking_id, v_booking.venue_id, v_amount, v_gift,
          case when v_gift = v_amount then 'succeeded' else 'pending' end, v_booking.currency, left(coalesce(p_reason, ''), 500),
          'refund:booking:' || p_booking_id || ':' || v_n, auth.uid());
  if v_gift = v_amount then
    perform app.apply_booking_refund(p_business_id, v_id);  -- all of it back onto the gift card: nothing for Stripe
  else
    perform app.emit('booking.refund_requested', p_business_id, jsonb_build_object(
      'booking_id', p_booking_id, 'refund_id', v_id, 'amount_cents', v_amount - v_gift, 'gift_card_cents', v_gift));
  end if;
  return v_id;
end
$$;
revoke all on function app.request_booking_refund(uuid, uuid, integer, text) from public;
grant execute on function app.request_booking_refund(uuid, uuid, integer, text) to service_role;

/** The nightly gift-card pass (0204): an expire row takes what is left on every card past its expiry
    (the card becomes expired); holds of orders left unpaid for a day, and of bookings whose hold ended
    unpaid with no Checkout session still open, go back to their cards. Returns
    {expired, released}. Service only (the worker's scheduler). */
create or replace function app.expire_gift_cards(p_now timestamptz default now()) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_card public.gift_cards;
  v_expired integer := 0;
  v_released integer := 0;
  v_order record;
begin
  for v_card in select g.* from public.gift_cards g where g.status = 'active' and g.expires_at <= p_now
                order by g.business_id, g.id for update skip locked loop
    if v_card.balance_cents > 0 then
      insert into public.gift_card_ledger (business_id, gift_card_id, kind, amount_cents, note)
      values (v_card.business_id, v_card.id, 'expire', -v_card.balance_cents, 'expired ' || v_card.expires_at::text);
    end if;
    update public.gift_cards set status = 'expired' where business_id = v_card.business_id and id = v_card.id;
    v_expired := v_expired + 1;
  end loop;
  for v_order in select o.business_id, o.id from public.orders o
                 where o.gift_card_id is not null and o.gift_card_cents > 0 and o.payment_status in ('unpaid', 'failed')
                   and o.placed_at <= p_now - interval '1 day'
                   and (o.checkout_expires_at is null or o.checkout_expires_at <= p_now) loop
    if app.release_gift_card_hold(v_order.business_id, v_order.id, 'order left unpaid') > 0 then
      v_released := v_released + 1;
    end if;
  end loop;
  for v_order in select bk.business_id, bk.id from public.bookings bk
                 where bk.gift_card_id is not null and bk.gift_card_cents > 0 and bk.payment_status in ('unpaid', 'pending', 'failed')
                   and bk.status in ('expired', 'payment_failed')
                   and (bk.checkout_expires_at is null or bk.checkout_expires_at <= p_now) loop
    if app.release_booking_gift_card_hold(v_order.business_id, v_order.id, 'booking hold ended unpaid') > 0 then
      v_released := v_released + 1;
    end if;
  end loop;
  return jsonb_build_object('expired', v_expired, 'released', v_released);
end
$$;
revoke all on function app.expire_gift_cards(timestamptz) from public;
grant execute on function app.expire_gift_cards(timestamptz) to service_role;

-- section triggers

/** A refund that succeeded (applied once: app.apply_refund, app.apply_booking_refund) puts its
    gift-card part back on the card the order or booking was paid with (0204, now for bookings too). */
create or replace function app.tg_refunds_gift_card_back() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_card uuid;
begin
  select l.gift_card_id into v_card from public.gift_card_ledger l
  where l.business_id = new.business_id and l.kind = 'redeem'
    and (l.order_id = new.order_id or l.booking_id = new.booking_id)
  order by l.id desc limit 1;
  if v_card is not null then
    insert into public.gift_card_ledger (business_id, gift_card_id, kind, amount_cents, order_id, booking_id, refund_id, created_by, note)
    values (new.business_id, v_card, 'refund_back', new.gift_card_cents, new.order_id, new.booking_id, new.id, new.requested_by,
            left('refund: ' || coalesce(new.reason, ''), 200))
    on conflict do nothing;
  end if;
  return null;
end
$$;
revoke all on function app.tg_refunds_gift_card_back() from public;

/** A hold that ran out or whose payment failed gives its held gift-card amount back, unless its
    Checkout session is still open: a payment of the rest can still arrive there (the worker closes the
    session on booking.expired), and is then applied as a late payment with the card's part still held;
    the session's checkout.session.expired releases it, and the nightly app.expire_gift_cards is the
    safety net. */
create function app.tg_bookings_gift_card_released() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.checkout_session_id is not null and new.checkout_expires_at > now() then
    return null;
  end if;
  perform app.release_booking_gift_card_hold(new.business_id, new.id, 'booking ' || new.status::text);
  return null;
end
$$;
revoke all on function app.tg_bookings_gift_card_released() from public;

create trigger bookings_gift_card_released after update of status on public.bookings
  for each row when (new.status in ('expired', 'payment_failed', 'cancelled') and old.status is distinct from new.status
                     and new.gift_card_cents > 0)
  execute function app.tg_bookings_gift_card_released();

-- section grants
grant select (gift_card_id, gift_card_cents) on public.bookings to authenticated;

-- section rpc

/** Pays a held booking (its booker's access token, or staff of the venue) with a gift card, in part
    or in full: what the card holds, up to the booking's total, is held (a redeem row). Paid in full,
    the booking is confirmed here through app.mark_booking_paid (the fan-out of a Stripe payment), with
    no Stripe call; in part, Checkout then charges only the rest. A code that names no card, or a card
    that cannot pay, answers {applied: false, reason} so the try stays counted toward the
    gift_card_code limits. Raises PT404 (booking), PT403, PT409 (paid, or the hold ended), BR142 (a card
    is already applied), BR143 (a Checkout session is open), PT429. */
create function app.apply_gift_card_to_booking(p_booking_id uuid, p_access_token uuid, p_code text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_card public.gift_cards;
  v_reason text;
  v_hold integer;
  v_outcome text;
begin
  select b.* into v_booking from public.bookings b where b.id = p_booking_id for update;
  if v_booking.id is null or not (coalesce(v_booking.access_token = p_access_token, false)
                                  or app.has_venue_access(v_booking.business_id, v_booking.venue_id, '{owner,manager,staff}')) then
    perform app.fail('PT404', 'booking_not_found', 'no booking with that id and token');
  end if;
  perform app.require_module(v_booking.business_id, 'bookings');
  perform app.enforce_rate_limits('gift_card_code', v_booking.business_id, '{}');
  if v_booking.payment_status not in ('unpaid', 'failed') then
    perform app.fail('PT409', 'booking_already_paid', format('the booking is %s', v_booking.payment_status));
  end if;
  if v_booking.status <> 'pending_payment' or v_booking.hold_expires_at <= now() then
    perform app.fail('PT409', 'hold_expired', 'the seats are no longer held: start a new booking');
  end if;
  if v_booking.gift_card_cents > 0 then
    perform app.fail('BR142', 'gift_card_already_applied', 'a gift card already pays part of this booking');
  end if;
  if v_booking.checkout_session_id is not null and v_booking.checkout_expires_at > now() then
    perform app.fail('BR143', 'checkout_open', 'a Checkout session for the full amount is open; apply the gift card before checkout');
  end if;
  v_card := app.gift_card_by_code(v_booking.business_id, p_code);
  if v_card.id is null then
    return jsonb_build_object('applied', false, 'reason', 'unknown_code');
  end if;
  v_reason := coalesce(app.gift_card_unusable(v_card), case when lower(v_card.currency) <> lower(v_booking.currency) then 'currency' end);
  if v_reason is not null then
    return jsonb_build_object('applied', false, 'reason', v_reason);
  end if;
  v_hold := least(v_card.balance_cents, v_booking.total_cents);
  insert into public.gift_card_ledger (business_id, gift_card_id, kind, amount_cents, booking_id, created_by, note)
  values (v_booking.business_id, v_card.id, 'redeem', -v_hold, v_booking.id, auth.uid(), 'booking ' || v_booking.booking_number);
  update public.bookings set gift_card_id = v_card.id, gift_card_cents = v_hold
  where business_id = v_booking.business_id and id = v_booking.id;
  if v_hold = v_booking.total_cents then
    v_outcome := app.mark_booking_paid(v_booking.business_id, v_booking.id, null, null, v_hold, null);
  end if;
  return jsonb_build_object('applied', true, 'booking_id', v_booking.id, 'gift_card_cents', v_hold,
                            'amount_due_cents', v_booking.total_cents - v_hold, 'paid', coalesce(v_outcome = 'paid', false),
                            'balance_cents', v_card.balance_cents - v_hold, 'last4', v_card.code_last4);
end
$$;
revoke all on function app.apply_gift_card_to_booking(uuid, uuid, text) from public;
grant execute on function app.apply_gift_card_to_booking(uuid, uuid, text) to anon, authenticated, service_role;

create function public.apply_gift_card_to_booking(booking_id uuid, access_token uuid, code text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.apply_gift_card_to_booking(booking_id, access_token, code)
$$;
revoke all on function public.apply_gift_card_to_booking(uuid, uuid, text) from public;
grant execute on function public.apply_gift_card_to_booking(uuid, uuid, text) to anon, authenticated, service_role;
