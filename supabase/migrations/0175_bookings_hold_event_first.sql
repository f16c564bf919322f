-- Bookings: a hold keeps the business's booking-number row and the session's seat row locked for less
-- time. Every hold updates app.business_counters (app.booking_number) and then, in the insert's last
-- trigger (0173), the session row; both stay locked until the hold commits, so the holds of one
-- business queue on the counter row and those of one session on the session row too. The delayed
-- booking.expired event (a pgmq insert) was the work left after the seats were taken; it now goes
-- first, before either lock is taken. Nothing else changes: the event is in the same transaction, so a
-- refused hold (BR601 and every other refusal) still leaves no event.

create or replace function app.hold_booking(p_booking jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_session public.activity_sessions;
  v_activity public.activities;
  v_business public.businesses;
  v_party jsonb := p_booking -> 'party';
  v_tier jsonb;
  v_key text;
  v_count integer;
  v_size integer := 0;
  v_subtotal integer := 0;
  v_discount integer := 0;
  v_total integer;
  v_promo public.booking_promo_codes;
  v_code text := nullif(upper(trim(p_booking ->> 'promo_code')), '');
  v_user uuid := auth.uid();
  v_name text := nullif(trim(p_booking -> 'customer' ->> 'name'), '');
  v_phone text := app.normalize_phone(p_booking -> 'customer' ->> 'phone');
  v_email text := nullif(lower(trim(p_booking -> 'customer' ->> 'email')), '');
  v_source text := coalesce(p_booking ->> 'source', 'widget');
  v_id uuid := extensions.gen_random_uuid();
  v_token uuid := extensions.gen_random_uuid();
  v_number text;
  v_expires timestamptz;
begin
  select s.* into v_session from public.activity_sessions s where s.id = (p_booking ->> 'session_id')::uuid;
  select a.* into v_activity from public.activities a where a.business_id = v_session.business_id and a.id = v_session.activity_id;
  if v_session.id is null or not (app.activity_is_public(v_activity.business_id, v_activity.venue_id, v_activity.is_published)
                                  or app.has_venue_access(v_activity.business_id, v_activity.venue_id, '{owner,manager,staff}')) then
    perform app.fail('PT404', 'session_not_found', 'no bookable session with that id');
  end if;
  perform app.require_module(v_session.business_id, 'bookings');
  select b.* into v_business from public.businesses b where b.id = v_session.business_id;
  if v_session.status <> 'scheduled' or v_session.starts_at <= now() then
    perform app.fail('BR602', 'session_not_bookable', 'the session was cancelled or has started');
  end if;
  if v_source not in ('widget', 'admin', 'phone') or (v_source <> 'widget'
       and not app.has_venue_access(v_activity.business_id, v_activity.venue_id, '{owner,manager,staff}')) then
    perform app.fail('22023', 'invalid_source', 'source must be widget, or admin/phone for staff');
  end if;

  -- the party: counts per price tier, priced by the database
  if jsonb_typeof(v_party) is distinct from 'object' or v_party = '{}'::jsonb then
    perform app.fail('BR603', 'party_required', 'party must be an object of counts per tier, e.g. {"adult": 2}');
  end if;
  for v_key in select jsonb_object_keys(v_party) loop
    select t into v_tier from jsonb_array_elements(v_activity.price_tiers) t where t ->> 'key' = v_key;
    if v_tier is null then
      perform app.fail('BR603', 'unknown_tier', format('%s is not a price tier of this activity', v_key));
    end if;
    if jsonb_typeof(v_party -> v_key) <> 'number' or (v_party ->> v_key) !~ '^[0-9]{1,4}$' then
      perform app.fail('BR603', 'invalid_count', format('%s: count must be a whole number', v_key));
    end if;
    v_count := (v_party ->> v_key)::integer;
    v_size := v_size + v_count;
    v_subtotal := v_subtotal + v_count * (v_tier ->> 'price_cents')::integer;
  end loop;
  if v_size < v_activity.min_party or v_size > v_activity.max_party then
    perform app.fail('BR603', 'party_size', format('a party is %s to %s people, not %s', v_activity.min_party, v_activity.max_party, v_size));
  end if;

  if v_code is not null then
    select p.* into v_promo from public.booking_promo_codes p
    where p.business_id = v_business.id and p.code = v_code and p.is_active
      and (p.expires_at is null or p.expires_at > now())
      and (p.max_redemptions is null or p.redeemed_count < p.max_redemptions);
    if v_promo.id is null then
      perform app.fail('BR607', 'invalid_promo_code', 'no active promo code with that name');
    end if;
    v_discount := least(v_subtotal, coalesce(v_promo.amount_off_cents, round(v_subtotal * v_promo.percent_off / 100.0)::integer));
  end if;
  v_total := v_subtotal - v_discount;
  if v_total <= 0 then
    perform app.fail('BR606', 'nothing_to_pay', 'a booking is paid through checkout: its total must be positive');
  end if;
  if p_booking ? 'expected_total_cents' and (p_booking ->> 'expected_total_cents')::integer is distinct from v_total then
    perform app.fail('BR606', 'total_mismatch', format('the total is %s, not %s', v_total, p_booking ->> 'expected_total_cents'));
  end if;

  -- who
  if v_user is not null and v_source = 'widget' then
    v_email := coalesce(v_email, nullif(lower(auth.email()), ''));
  else
    v_user := case when v_source = 'widget' then v_user end;
  end if;
  if nullif(trim(p_booking -> 'customer' ->> 'phone'), '') is not null and coalesce(v_phone, '') !~ '^\+?[0-9]{7,15}$' then
    perform app.fail('BR604', 'invalid_phone', 'the phone number is not valid');
  end if;
  if v_email is not null and v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
    perform app.fail('BR604', 'invalid_email', 'the email address is not valid');
  end if;
  if v_email is null and v_phone is null then
    perform app.fail('BR604', 'contact_required', 'an email address or a phone number is required');
  end if;

  -- the expiry first: nothing is locked yet (the number and the seats come after)
  perform app.emit('booking.expired', v_business.id, jsonb_build_object('booking_id', v_id),
                   v_activity.hold_minutes * 60 + 1);
  v_number := app.booking_number(v_business.id);
  v_expires := now() + make_interval(mins => v_activity.hold_minutes);
  -- the seats are taken by the insert's trigger, atomically (BR601 when they are not there)
  insert into public.bookings (business_id, id, booking_number, venue_id, activity_id, session_id, access_token, source,
    user_id, guest_name, guest_email, guest_phone, party, party_size, currency, subtotal_cents, discount_cents, total_cents,
    promo_code, special_requests, hold_expires_at)
  values (v_business.id, v_id, v_number, v_activity.venue_id, v_activity.id, v_session.id, v_token, v_source,
    v_user, v_name, v_email, v_phone, v_party, v_size, v_business.currency, v_subtotal, v_discount, v_total,
    v_promo.code, left(coalesce(p_booking ->> 'special_requests', ''), 500), v_expires);

  return jsonb_build_object('booking_id', v_id, 'booking_number', v_number, 'access_token', v_token,
    'business_id', v_business.id, 'venue_id', v_activity.venue_id, 'activity_id', v_activity.id, 'session_id', v_session.id,
    'status', 'pending_payment', 'payment_status', 'unpaid', 'hold_expires_at', v_expires,
    'party', v_party, 'party_size', v_size, 'currency', v_business.currency,
    'subtotal_cents', v_subtotal, 'discount_cents', v_discount, 'total_cents', v_total, 'promo_code', v_promo.code);
end
$$;
revoke all on function app.hold_booking(jsonb) from public;
grant execute on function app.hold_booking(jsonb) to anon, authenticated, service_role;
