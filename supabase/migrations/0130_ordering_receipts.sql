-- Receipts (issue 14 item 1): everything a receipt of a paid order or booking shows, in one SQL
-- function the `receipt` function and the worker's receipt email both read. The business's locale
-- joins its currency and time zone so money and dates print the merchant's way.
-- Codes in docs/errors.md.

-- section business locale
alter table public.businesses
  add column locale text not null default 'en-US'
    constraint businesses_locale_format check (locale ~ '^[a-z]{2,3}(-[A-Z]{2})?$');
-- owners set it like the currency and time zone ("owners update their business")
grant update (locale) on public.businesses to authenticated;

-- section indexes
-- the card of a payment comes from Stripe's charge objects (charge.succeeded / charge.updated)
create index stripe_events_charge_intent_idx on public.stripe_events ((payload -> 'data' -> 'object' ->> 'payment_intent'))
  where type in ('charge.succeeded', 'charge.updated', 'payment_intent.succeeded');

-- section private helpers

/** How a payment intent was paid: brand and last 4 of the card (or the wallet/method type) from
    Stripe's payment_method_details on the charge, or from an expanded latest_charge; null when no
    such event arrived. */
create function app.payment_method_of(p_payment_intent_id text) returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object(
           'type', d ->> 'type',
           'brand', coalesce(d -> 'card' ->> 'brand', d ->> 'type'),
           'last4', d -> 'card' ->> 'last4',
           'wallet', d -> 'card' -> 'wallet' ->> 'type')
  from (
    select coalesce(e.payload -> 'data' -> 'object' -> 'payment_method_details',
                    e.payload -> 'data' -> 'object' -> 'latest_charge' -> 'payment_method_details') as d,
           (e.payload ->> 'created')::bigint as created, e.received_at
    from public.stripe_events e
    where p_payment_intent_id is not null
      and e.type in ('charge.succeeded', 'charge.updated', 'payment_intent.succeeded')
      and e.payload -> 'data' -> 'object' ->> 'payment_intent' = p_payment_intent_id
    union all
    select e.payload -> 'data' -> 'object' -> 'latest_charge' -> 'payment_method_details', (e.payload ->> 'created')::bigint, e.received_at
    from public.stripe_events e
    where p_payment_intent_id is not null and e.type = 'payment_intent.succeeded'
      and e.payload -> 'data' -> 'object' ->> 'id' = p_payment_intent_id
  ) x
  where jsonb_typeof(d) = 'object'
  order by created desc nulls last, received_at desc
  limit 1
$$;
revoke all on function app.payment_method_of(text) from public;

/** The receipt of a paid order (p_kind 'order') or booking ('booking'): business and venue identity,
    number, lines with modifiers, subtotal, discounts and vouchers, tax, tip, delivery fee, total, the
    payment method, and the refunds so far. Readable by the holder of the access token, the signed-in
    customer it belongs to, staff of its venue, and the platform (service role, operator, direct
    sessions). Raises PT404 for anyone else, an unknown id, or one not paid yet (no receipt exists);
    22023 for an unknown kind. */
create function app.receipt(p_kind text, p_id uuid, p_access_token uuid default null) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_booking public.bookings;
  v_business public.businesses;
  v_venue public.venues;
  v_uid uuid := (select auth.uid());
  v_lines jsonb;
  v_vouchers jsonb;
  v_refunds jsonb;
  v_method jsonb;
  v_intent text;
begin
  if p_kind not in ('order', 'booking') then
    perform app.fail('22023', 'invalid_kind', 'a receipt is of an order or a booking');
  end if;
  if p_kind = 'order' then
    select o.* into v_order from public.orders o where o.id = p_id;
    if v_order.id is null
       or not (coalesce(v_order.access_token = p_access_token, false) or coalesce(v_order.user_id = v_uid, false)
               or app.has_venue_access(v_order.business_id, v_order.venue_id, '{owner,manager,staff}') or app.is_operator())
       or v_order.payment_status not in ('paid', 'partially_refunded', 'refunded', 'disputed') then
      perform app.fail('PT404', 'receipt_not_found', 'no receipt for that order and token');
    end if;
    select b.* into v_business from public.businesses b where b.id = v_order.business_id;
    select v.* into v_venue from public.venues v where v.business_id = v_order.business_id and v.id = v_order.venue_id;
    select coalesce(jsonb_agg(jsonb_build_object(
             'line_number', i.line_number, 'name', i.name, 'variant', i.variant_name, 'quantity', i.quantity,
             'unit_price_cents', i.unit_price_cents, 'line_total_cents', i.line_total_cents, 'refunded_quantity', i.refunded_quantity,
             'notes', i.notes,
             'modifiers', (select coalesce(jsonb_agg(jsonb_build_object('name', m ->> 'name', 'price_cents', coalesce((m ->> 'price_cents')::integer, 0))
                                                    order by n), '[]'::jsonb)
                           from jsonb_array_elements(i.modifiers) with ordinality as mm (m, n)))
             order by i.line_number), '[]'::jsonb)
    into v_lines from public.order_items i where i.business_id = v_order.business_id and i.order_id = v_order.id;
    select coalesce(jsonb_agg(jsonb_build_object('code', r.code, 'reward', w.name, 'kind', w.kind,
                                                 'credit_cents', case when w.kind = 'delivery_credit'
                                                                      then least(w.credit_cents, v_order.delivery_fee_cents) end)
                              order by r.issued_at), '[]'::jsonb)
    into v_vouchers from public.reward_redemptions r join public.rewards w on w.business_id = r.business_id and w.id = r.reward_id
    where r.business_id = v_order.business_id and r.order_id = v_order.id;
    select coalesce(jsonb_agg(jsonb_build_object('amount_cents', f.amount_cents, 'reason', f.reason,
                                                 'at', coalesce(f.applied_at, f.created_at)) order by coalesce(f.applied_at, f.created_at)), '[]'::jsonb)
    into v_refunds from public.refunds f
    where f.business_id = v_order.business_id and f.order_id = v_order.id and f.status = 'succeeded';
    v_intent := coalesce(v_order.payment_intent_id,
                         (select p.payment_intent_id from public.payments p where p.business_id = v_order.business_id
                          and p.order_id = v_order.id order by p.created_at limit 1));
    v_method := app.payment_method_of(v_intent);
    return jsonb_build_object(
      'kind', 'order', 'id', v_order.id, 'number', '#' || v_order.order_number, 'order_number', v_order.order_number,
      'business', jsonb_build_object('id', v_business.id, 'name', v_business.name, 'currency', v_business.currency,
                                     'locale', v_business.locale, 'time_zone', v_business.time_zone),
      'venue', jsonb_build_object('id', v_venue.id, 'name', v_venue.name, 'phone', v_venue.phone, 'address', v_venue.address,
                                  'time_zone', v_venue.time_zone),
      'customer', jsonb_build_object('name', v_order.guest_name, 'email', v_order.guest_email),
      'fulfilment', v_order.fulfilment, 'currency', v_order.currency, 'placed_at', v_order.placed_at, 'paid_at', v_order.paid_at,
      'lines', v_lines, 'vouchers', v_vouchers,
      'subtotal_cents', v_order.subtotal_cents, 'discount_cents', v_order.discount_cents, 'tax_cents', v_order.tax_cents,
      'tip_cents', v_order.tip_cents, 'delivery_fee_cents', v_order.delivery_fee_cents, 'total_cents', v_order.total_cents,
      'refunded_cents', v_order.refunded_cents, 'refunds', v_refunds, 'payment_status', v_order.payment_status,
      'payment_method', v_method);
  end if;

  select k.* into v_booking from public.bookings k where k.id = p_id;
  if v_booking.id is null
     or not (coalesce(v_booking.access_token = p_access_token, false) or coalesce(v_booking.user_id = v_uid, false)
             or app.has_venue_access(v_booking.business_id, v_booking.venue_id, '{owner,manager,staff}') or app.is_operator())
     or v_booking.payment_status not in ('paid', 'partially_refunded', 'refunded', 'disputed') then
    perform app.fail('PT404', 'receipt_not_found', 'no receipt for that booking and token');
  end if;
  select b.* into v_business from public.businesses b where b.id = v_booking.business_id;
  select v.* into v_venue from public.venues v where v.business_id = v_booking.business_id and v.id = v_booking.venue_id;
  select coalesce(jsonb_agg(jsonb_build_object(
           'line_number', o, 'name', a.name || ' — ' || (t ->> 'name'), 'variant', null,
           'quantity', (v_booking.party ->> (t ->> 'key'))::integer, 'unit_price_cents', (t ->> 'price_cents')::integer,
           'line_total_cents', (t ->> 'price_cents')::integer * (v_booking.party ->> (t ->> 'key'))::integer,
           'refunded_quantity', 0, 'notes', '', 'modifiers', '[]'::jsonb) order by o), '[]'::jsonb)
  into v_lines
  from public.activities a, jsonb_array_elements(a.price_tiers) with ordinality as x (t, o)
  where a.business_id = v_booking.business_id and a.id = v_booking.activity_id
    and coalesce((v_booking.party ->> (t ->> 'key'))::integer, 0) > 0;
  select coalesce(jsonb_agg(jsonb_build_object('amount_cents', f.amount_cents, 'reason', f.reason,
                                               'at', coalesce(f.applied_at, f.created_at)) order by coalesce(f.applied_at, f.created_at)), '[]'::jsonb)
  into v_refunds from public.refunds f
  where f.business_id = v_booking.business_id and f.booking_id = v_booking.id and f.status = 'succeeded';
  v_intent := coalesce(v_booking.payment_intent_id,
                       (select p.payment_intent_id from public.payments p where p.business_id = v_booking.business_id
                        and p.booking_id = v_booking.id order by p.created_at limit 1));
  v_method := app.payment_method_of(v_intent);
  return jsonb_build_object(
    'kind', 'booking', 'id', v_booking.id, 'number', v_booking.booking_number,
    'business', jsonb_build_object('id', v_business.id, 'name', v_business.name, 'currency', v_business.currency,
                                   'locale', v_business.locale, 'time_zone', v_business.time_zone),
    'venue', jsonb_build_object('id', v_venue.id, 'name', v_venue.name, 'phone', v_venue.phone, 'address', v_venue.address,
                                'time_zone', v_venue.time_zone),
    'customer', jsonb_build_object('name', v_booking.guest_name, 'email', v_booking.guest_email),
    'session_starts_at', (select s.starts_at from public.activity_sessions s
                          where s.business_id = v_booking.business_id and s.id = v_booking.session_id),
    'fulfilment', null, 'currency', v_booking.currency, 'placed_at', v_booking.created_at, 'paid_at', v_booking.confirmed_at,
    'lines', v_lines,
    'vouchers', case when v_booking.promo_code is not null
                     then jsonb_build_array(jsonb_build_object('code', v_booking.promo_code, 'reward', 'promo code', 'kind', 'promo',
                                                               'credit_cents', v_booking.discount_cents))
                     else '[]'::jsonb end,
    'subtotal_cents', v_booking.subtotal_cents, 'discount_cents', v_booking.discount_cents, 'tax_cents', 0, 'tip_cents', 0,
    'delivery_fee_cents', 0, 'total_cents', v_booking.total_cents, 'refunded_cents', v_booking.refunded_cents,
    'refunds', v_refunds, 'payment_status', v_booking.payment_status, 'payment_method', v_method);
end
$$;
revoke all on function app.receipt(text, uuid, uuid) from public;
grant execute on function app.receipt(text, uuid, uuid) to anon, authenticated, service_role;

-- section rpc

/** A receipt as JSON (the `receipt` function renders it as HTML or PDF): who may read it, and the
    errors, as app.receipt. */
create function public.get_receipt(kind text, id uuid, access_token uuid default null) returns jsonb
language sql stable
set search_path = ''
as $$
  select app.receipt(kind, id, access_token)
$$;
revoke all on function public.get_receipt(text, uuid, uuid) from public;
grant execute on function public.get_receipt(text, uuid, uuid) to anon, authenticated, service_role;
