-- One source for the platform's cut: the plan's fee (app.platform_fee_cents, 0053). The Stripe Connect
-- application fee at checkout (orders and bookings) and payments.application_fee_cents used
-- businesses.application_fee_bps, a second rate that could disagree with the fee platform_fees
-- records; that column is no longer read. A refund gives the fee back in proportion (the refund
-- function asks Stripe for refund_application_fee on Connect charges), and platform_fees shows it as
-- a negative row per refund, so payouts net it in the refund's period.

-- section tables

alter table public.platform_fees add column refund_id uuid;
alter table public.platform_fees drop constraint platform_fees_payment_key;
alter table public.platform_fees drop constraint platform_fees_fee_nonnegative;
alter table public.platform_fees add constraint platform_fees_fee_sign
  check ((refund_id is null and fee_cents >= 0) or (refund_id is not null and fee_cents <= 0));
alter table public.platform_fees add constraint platform_fees_refund_key unique (business_id, refund_id);
comment on column public.businesses.application_fee_bps is
  'Not read since 0072: the Connect application fee is the plan''s platform fee (app.platform_fee_cents).';

-- section indexes
create unique index platform_fees_payment_key on public.platform_fees (business_id, payment_id) where refund_id is null;

-- section private helpers

/** What the checkout function needs to create (or reuse) a Checkout Session, after checking who
    asks: the placer (access token) or staff of the venue. The Connect application fee is the plan's
    platform fee (app.platform_fee_cents), the same figure platform_fees records for the payment. Raises PT404, PT403, PT409 (paid). */
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
    'application_fee_cents', app.platform_fee_cents(v_order.business_id, v_order.total_cents),
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

/** What the checkout function needs for a booking: its price, party and the seed's Stripe metadata,
    after checking who asks (the booker's access token, or staff of the venue). Raises PT404, PT403,
    PT409 (paid, or no longer held). */
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
    'application_fee_cents', app.platform_fee_cents(v_booking.business_id, v_booking.total_cents),
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
      'platform_fee_percent', to_char(coalesce((app.business_plan(v_booking.business_id)).platform_fee_bps, 0) / 100.0, 'FM990.00')) || v_counts);
end
$$;
revoke all on function app.booking_checkout_context(uuid, uuid) from public;
grant execute on function app.booking_checkout_context(uuid, uuid) to anon, authenticated, service_role;

-- section triggers

/** Every payment's application fee is the plan's platform fee, whoever inserts the row. */
create function app.tg_payments_application_fee() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  new.application_fee_cents := app.platform_fee_cents(new.business_id, new.amount_cents);
  return new;
end
$$;

/** One fee row per payment, for an order or a booking, at the business's plan rate. */
create or replace function app.tg_payments_platform_fee() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_plan public.plans := app.business_plan(new.business_id);
begin
  insert into public.platform_fees (business_id, payment_id, order_id, booking_id, plan_key, base_amount_cents, fee_bps, fixed_cents,
                                    fee_cents, currency, created_at)
  values (new.business_id, new.id, new.order_id, new.booking_id, coalesce(v_plan.key, 'none'), new.amount_cents,
          coalesce(v_plan.platform_fee_bps, 0), coalesce(v_plan.platform_fee_fixed_cents, 0),
          new.application_fee_cents, new.currency, new.created_at)
  on conflict (business_id, payment_id) where refund_id is null do nothing;
  return null;
end
$$;

/** A refund that succeeded gives back the platform fee in proportion to what it returns, the way
    Stripe's refund_application_fee does: cumulatively (round(fee × refunded / paid) after this refund
    minus before it), so a payable refunded in full returns exactly its fee. Once per refund. */
create function app.tg_refunds_platform_fee() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_fee public.platform_fees;
  v_paid bigint;
  v_fee_total bigint;
  v_before bigint;
  v_back bigint;
begin
  select f.* into v_fee from public.platform_fees f
  where f.business_id = new.business_id and f.refund_id is null
    and (f.order_id = new.order_id or f.booking_id = new.booking_id)
  order by f.created_at desc limit 1;
  if v_fee.id is null then
    return null;
  end if;
  select coalesce(sum(f.base_amount_cents), 0), coalesce(sum(f.fee_cents), 0) into v_paid, v_fee_total
  from public.platform_fees f
  where f.business_id = new.business_id and f.refund_id is null and (f.order_id = new.order_id or f.booking_id = new.booking_id);
  select coalesce(-sum(f.base_amount_cents), 0) into v_before from public.platform_fees f
  where f.business_id = new.business_id and f.refund_id is not null and (f.order_id = new.order_id or f.booking_id = new.booking_id);
  if v_paid <= 0 or v_fee_total <= 0 then
    return null;
  end if;
  v_back := round(v_fee_total::numeric * least(v_before + new.amount_cents, v_paid) / v_paid)
            - round(v_fee_total::numeric * least(v_before, v_paid) / v_paid);
  insert into public.platform_fees (business_id, payment_id, order_id, booking_id, refund_id, plan_key, base_amount_cents, fee_bps,
                                    fixed_cents, fee_cents, currency)
  values (new.business_id, v_fee.payment_id, v_fee.order_id, v_fee.booking_id, new.id, v_fee.plan_key, -new.amount_cents,
          v_fee.fee_bps, v_fee.fixed_cents, -v_back, v_fee.currency)
  on conflict (business_id, refund_id) do nothing;
  return null;
end
$$;

create trigger payments_application_fee before insert on public.payments
  for each row execute function app.tg_payments_application_fee();
create trigger refunds_platform_fee_inserted after insert on public.refunds
  for each row when (new.status = 'succeeded') execute function app.tg_refunds_platform_fee();
create trigger refunds_platform_fee after update of status on public.refunds
  for each row when (new.status = 'succeeded' and old.status is distinct from 'succeeded') execute function app.tg_refunds_platform_fee();
