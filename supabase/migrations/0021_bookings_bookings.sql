-- Bookings, part 2: the booking and its status machine (the seed's table), capacity taken and released
-- atomically by one trigger, pending-payment holds that expire, promo codes, payments and refunds of
-- bookings in the order flow's payments/refunds tables, staff actions, reminders and figures.
-- Error codes in docs/errors.md (BR6xx).

-- section types
create type public.booking_status as enum
  ('pending_payment', 'confirmed', 'expired', 'payment_failed', 'checked_in', 'completed', 'cancelled', 'no_show');

-- section tables

/** Discount codes for bookings: a percentage or an amount off, optionally limited in time and uses
    (counted when a booking with the code is confirmed). Managers keep them; the hold applies them. */
create table public.booking_promo_codes (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  code text not null constraint booking_promo_codes_code_format check (code ~ '^[A-Z0-9_-]{3,40}$'),
  percent_off integer constraint booking_promo_codes_percent_range check (percent_off between 1 and 100),
  amount_off_cents integer constraint booking_promo_codes_amount_positive check (amount_off_cents > 0),
  expires_at timestamptz,
  max_redemptions integer constraint booking_promo_codes_max_positive check (max_redemptions > 0),
  redeemed_count integer not null default 0,
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  constraint booking_promo_codes_pkey primary key (business_id, id),
  constraint booking_promo_codes_code_key unique (business_id, code),
  constraint booking_promo_codes_one_discount check (num_nonnulls(percent_off, amount_off_cents) = 1)
);
alter table public.booking_promo_codes enable row level security;

/** A party's place in a session. status follows the seed's table (app.booking_transition_allowed);
    seats are held while pending_payment and booked while confirmed or checked_in, by the trigger
    app.tg_bookings_seats only. payment_status is the order flow's payment enum (money only moves
    forward). The booker gets access_token to pay, read and cancel without an account. */
create table public.bookings (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  booking_number text not null constraint bookings_number_format check (booking_number ~ '^BK-[A-Z0-9]{6}-[A-Z0-9]{4}$'),
  venue_id uuid not null,
  activity_id uuid not null,
  session_id uuid not null,
  access_token uuid not null default extensions.gen_random_uuid(),
  source text not null default 'widget' constraint bookings_source_valid check (source in ('widget', 'admin', 'phone')),
  status public.booking_status not null default 'pending_payment',
  payment_status public.payment_status not null default 'unpaid',
  user_id uuid,
  customer_id uuid,
  guest_name text,
  guest_email text,
  guest_phone text,
  party jsonb not null,
  party_size integer not null constraint bookings_party_size_positive check (party_size > 0),
  currency text not null,
  subtotal_cents integer not null,
  discount_cents integer not null default 0,
  total_cents integer not null,
  refunded_cents integer not null default 0,
  promo_code text,
  special_requests text not null default '',
  hold_expires_at timestamptz not null,
  checkout_session_id text,
  checkout_url text,
  checkout_expires_at timestamptz,
  payment_intent_id text,
  stats_counted boolean not null default false,
  cancel_reason text,
  reschedule_count integer not null default 0,
  created_at timestamptz not null default now(),
  confirmed_at timestamptz,
  expired_at timestamptz,
  failed_at timestamptz,
  checked_in_at timestamptz,
  completed_at timestamptz,
  cancelled_at timestamptz,
  no_show_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint bookings_pkey primary key (business_id, id),
  constraint bookings_business_number_key unique (business_id, booking_number),
  constraint bookings_session_fkey foreign key (business_id, session_id) references public.activity_sessions (business_id, id),
  constraint bookings_activity_fkey foreign key (business_id, activity_id) references public.activities (business_id, id),
  constraint bookings_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id),
  constraint bookings_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id),
  constraint bookings_amounts_valid check (subtotal_cents >= 0 and discount_cents between 0 and subtotal_cents
    and total_cents = subtotal_cents - discount_cents and refunded_cents between 0 and total_cents),
  constraint bookings_cancel_reason check (status <> 'cancelled' or cancel_reason is not null),
  -- the seed's payment state per status; money that arrives late on an expired or failed booking is paid, then refunded
  constraint bookings_payment_matches_status check (case status
    when 'pending_payment' then payment_status in ('unpaid', 'pending')
    when 'confirmed' then payment_status in ('paid', 'partially_refunded', 'disputed')
    when 'checked_in' then payment_status in ('paid', 'partially_refunded', 'disputed')
    when 'completed' then payment_status in ('paid', 'partially_refunded', 'disputed', 'refunded')
    when 'no_show' then payment_status in ('paid', 'partially_refunded', 'disputed', 'refunded')
    when 'cancelled' then payment_status in ('paid', 'partially_refunded', 'refunded', 'disputed')
    else true end)
);
alter table public.bookings enable row level security;

/** Append-only: every status change of a booking, who made it and why. */
create table public.booking_status_history (
  business_id uuid not null,
  id bigint generated always as identity,
  booking_id uuid not null,
  venue_id uuid not null,
  from_status public.booking_status,
  to_status public.booking_status not null,
  changed_by uuid,
  reason text,
  created_at timestamptz not null default now(),
  constraint booking_status_history_pkey primary key (business_id, id),
  constraint booking_status_history_booking_fkey foreign key (business_id, booking_id)
    references public.bookings (business_id, id) on delete cascade
);
alter table public.booking_status_history enable row level security;

-- section payables: bookings are paid and refunded through the order flow's tables
alter table public.payments alter column order_id drop not null;
alter table public.payments add column booking_id uuid;
alter table public.payments add constraint payments_booking_fkey foreign key (business_id, booking_id)
  references public.bookings (business_id, id) on delete cascade;
alter table public.payments add constraint payments_one_payable check (num_nonnulls(order_id, booking_id) = 1);
alter table public.refunds alter column order_id drop not null;
alter table public.refunds add column booking_id uuid;
alter table public.refunds add constraint refunds_booking_fkey foreign key (business_id, booking_id)
  references public.bookings (business_id, id) on delete cascade;
alter table public.refunds add constraint refunds_one_payable check (num_nonnulls(order_id, booking_id) = 1);
alter table public.stripe_events add column booking_id uuid;

-- section indexes
create index bookings_id_idx on public.bookings (id);  -- lookups by id alone (RPC arguments, Stripe metadata)
create index bookings_session_idx on public.bookings (business_id, session_id, status);
create index bookings_venue_created_idx on public.bookings (business_id, venue_id, created_at desc);
create index bookings_activity_idx on public.bookings (business_id, activity_id);
create index bookings_customer_idx on public.bookings (business_id, customer_id) where customer_id is not null;
create index bookings_user_idx on public.bookings (user_id) where user_id is not null;
create index bookings_hold_idx on public.bookings (hold_expires_at) where status = 'pending_payment';
create index bookings_checkout_session_idx on public.bookings (checkout_session_id) where checkout_session_id is not null;
create index bookings_payment_intent_idx on public.bookings (payment_intent_id) where payment_intent_id is not null;
create index bookings_email_idx on public.bookings (business_id, lower(guest_email));
create index booking_status_history_booking_idx on public.booking_status_history (business_id, booking_id, id);
create index payments_booking_idx on public.payments (business_id, booking_id) where booking_id is not null;
create index refunds_booking_idx on public.refunds (business_id, booking_id) where booking_id is not null;
create index stripe_events_booking_idx on public.stripe_events (business_id, booking_id) where booking_id is not null;

-- section private helpers

/** The seed's status machine. expired and payment_failed go to confirmed only when a late payment
    re-takes free seats (app.mark_booking_paid). */
create function app.booking_transition_allowed(p_from public.booking_status, p_to public.booking_status) returns boolean
language sql immutable
set search_path = ''
as $$
  select (p_from, p_to) in (
    ('pending_payment', 'confirmed'), ('pending_payment', 'expired'), ('pending_payment', 'payment_failed'),
    ('expired', 'confirmed'), ('payment_failed', 'confirmed'),
    ('confirmed', 'checked_in'), ('confirmed', 'cancelled'), ('confirmed', 'no_show'),
    ('checked_in', 'completed'), ('checked_in', 'cancelled'))
$$;
revoke all on function app.booking_transition_allowed(public.booking_status, public.booking_status) from public;
grant execute on function app.booking_transition_allowed(public.booking_status, public.booking_status) to anon, authenticated, service_role;

/** Which seat counter a status fills: held while awaiting payment, booked while confirmed or
    checked in, none once released (expired, failed, completed, cancelled, no-show). */
create function app.booking_seat_kind(p_status public.booking_status) returns text
language sql immutable
set search_path = ''
as $$
  select case p_status when 'pending_payment' then 'held' when 'confirmed' then 'booked' when 'checked_in' then 'booked' end
$$;
revoke all on function app.booking_seat_kind(public.booking_status) from public;

/** A new BK-XXXXXX-XXXX for the business: random, unambiguous characters, unique per business. */
create function app.booking_number(p_business_id uuid) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_alphabet constant text := 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  v_bytes bytea;
  v_number text;
begin
  loop
    v_bytes := extensions.gen_random_bytes(10);
    v_number := 'BK-';
    for i in 0..9 loop
      if i = 6 then
        v_number := v_number || '-';
      end if;
      v_number := v_number || substr(v_alphabet, (get_byte(v_bytes, i) % 32) + 1, 1);
    end loop;
    exit when not exists (select 1 from public.bookings b where b.business_id = p_business_id and b.booking_number = v_number);
  end loop;
  return v_number;
end
$$;
revoke all on function app.booking_number(uuid) from public;

/** Puts a pending-payment hold on a session for a party. See public.hold_booking. */
create function app.hold_booking(p_booking jsonb) returns jsonb
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

  v_number := app.booking_number(v_business.id);
  v_expires := now() + make_interval(mins => v_activity.hold_minutes);
  -- the seats are taken by the insert's trigger, atomically (BR601 when they are not there)
  insert into public.bookings (business_id, id, booking_number, venue_id, activity_id, session_id, access_token, source,
    user_id, guest_name, guest_email, guest_phone, party, party_size, currency, subtotal_cents, discount_cents, total_cents,
    promo_code, special_requests, hold_expires_at)
  values (v_business.id, v_id, v_number, v_activity.venue_id, v_activity.id, v_session.id, v_token, v_source,
    v_user, v_name, v_email, v_phone, v_party, v_size, v_business.currency, v_subtotal, v_discount, v_total,
    v_promo.code, left(coalesce(p_booking ->> 'special_requests', ''), 500), v_expires);

  perform app.emit('booking.expired', v_business.id, jsonb_build_object('booking_id', v_id),
                   v_activity.hold_minutes * 60 + 1);

  return jsonb_build_object('booking_id', v_id, 'booking_number', v_number, 'access_token', v_token,
    'business_id', v_business.id, 'venue_id', v_activity.venue_id, 'activity_id', v_activity.id, 'session_id', v_session.id,
    'status', 'pending_payment', 'payment_status', 'unpaid', 'hold_expires_at', v_expires,
    'party', v_party, 'party_size', v_size, 'currency', v_business.currency,
    'subtotal_cents', v_subtotal, 'discount_cents', v_discount, 'total_cents', v_total, 'promo_code', v_promo.code);
end
$$;
revoke all on function app.hold_booking(jsonb) from public;
grant execute on function app.hold_booking(jsonb) to anon, authenticated, service_role;

/** A hold whose time is up releases its seats (once: the status moves once). Returns true when this
    call expired it; false when it was paid, already expired, or its time is not up. */
create function app.expire_booking(p_business_id uuid, p_booking_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  update public.bookings set status = 'expired'
  where business_id = p_business_id and id = p_booking_id and status = 'pending_payment' and hold_expires_at <= now();
  return found;
end
$$;
revoke all on function app.expire_booking(uuid, uuid) from public;
grant execute on function app.expire_booking(uuid, uuid) to service_role;

/** The safety-net sweep (scheduled): expires every hold whose time is up; skips rows another
    transaction holds (a payment being applied). Returns how many it expired. */
create function app.expire_due_holds(p_limit integer default 1000) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  with due as (
    select b.business_id, b.id from public.bookings b
    where b.status = 'pending_payment' and b.hold_expires_at <= now()
    order by b.hold_expires_at
    limit greatest(coalesce(p_limit, 1000), 1)
    for update skip locked
  ), done as (
    update public.bookings b set status = 'expired' from due
    where b.business_id = due.business_id and b.id = due.id
    returning 1
  )
  select count(*) into v_count from done;
  return v_count;
end
$$;
revoke all on function app.expire_due_holds(integer) from public;
grant execute on function app.expire_due_holds(integer) to service_role;

/** Records a refund of a booking to be sent to Stripe by the worker (booking.refund_requested), with
    its idempotency key. p_amount null = all that is left. Raises BR608 (nothing or too much). */
create function app.request_booking_refund(p_business_id uuid, p_booking_id uuid, p_amount_cents integer, p_reason text)
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
begin
  select b.* into v_booking from public.bookings b where b.business_id = p_business_id and b.id = p_booking_id for update;
  if v_booking.payment_status not in ('paid', 'partially_refunded') or v_booking.payment_intent_id is null then
    perform app.fail('BR608', 'not_refundable', format('a booking that is %s cannot be refunded', v_booking.payment_status));
  end if;
  select coalesce(sum(r.amount_cents), 0) into v_pending from public.refunds r
  where r.business_id = p_business_id and r.booking_id = p_booking_id and r.status = 'pending';
  v_refundable := v_booking.total_cents - v_booking.refunded_cents - v_pending;
  v_amount := coalesce(p_amount_cents, v_refundable);
  if v_amount <= 0 or v_amount > v_refundable then
    perform app.fail('BR608', 'invalid_refund_amount', format('between 1 and %s can be refunded', v_refundable));
  end if;
  select count(*) + 1 into v_n from public.refunds r where r.business_id = p_business_id and r.booking_id = p_booking_id;
  insert into public.refunds (business_id, id, booking_id, venue_id, amount_cents, currency, reason, idempotency_key, requested_by)
  values (p_business_id, v_id, p_booking_id, v_booking.venue_id, v_amount, v_booking.currency, left(coalesce(p_reason, ''), 500),
          'refund:booking:' || p_booking_id || ':' || v_n, auth.uid());
  perform app.emit('booking.refund_requested', p_business_id, jsonb_build_object(
    'booking_id', p_booking_id, 'refund_id', v_id, 'amount_cents', v_amount));
  return v_id;
end
$$;
revoke all on function app.request_booking_refund(uuid, uuid, integer, text) from public;
grant execute on function app.request_booking_refund(uuid, uuid, integer, text) to service_role;

/** A booking refund succeeded: once, the refunded amount and payment status, and the customer's
    stats when the booking had counted in them. Waits (false) while the payment is not recorded. */
create function app.apply_booking_refund(p_business_id uuid, p_refund_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_refund public.refunds;
  v_booking public.bookings;
  v_full boolean;
begin
  select r.* into v_refund from public.refunds r where r.business_id = p_business_id and r.id = p_refund_id for update;
  if v_refund.id is null or v_refund.booking_id is null or v_refund.applied_at is not null or v_refund.status <> 'succeeded' then
    return false;
  end if;
  select b.* into v_booking from public.bookings b where b.business_id = p_business_id and b.id = v_refund.booking_id for update;
  if v_booking.payment_status not in ('paid', 'partially_refunded', 'disputed') then
    return false;
  end if;
  v_full := v_booking.refunded_cents + v_refund.amount_cents >= v_booking.total_cents;
  -- a booking refunded in full (in Stripe's dashboard, say) while still confirmed or checked in is
  -- cancelled with it, as the seed's table has it: cancelled = refunded, seats released
  update public.bookings set
    refunded_cents = least(total_cents, refunded_cents + v_refund.amount_cents),
    payment_status = case when v_full then 'refunded'::public.payment_status else 'partially_refunded'::public.payment_status end,
    status = case when v_full and status in ('confirmed', 'checked_in') then 'cancelled'::public.booking_status else status end,
    cancel_reason = case when v_full and status in ('confirmed', 'checked_in') then 'refunded in full' else cancel_reason end
  where business_id = v_booking.business_id and id = v_booking.id;
  if v_full and v_booking.status in ('confirmed', 'checked_in') then
    insert into public.notification_log (business_id, event_key, channel, recipient, template, customer_id, venue_id, detail)
    select v_booking.business_id, 'booking.cancelled:' || v_booking.id, 'email', v_booking.guest_email, 'booking_cancelled',
           v_booking.customer_id, v_booking.venue_id,
           jsonb_build_object('booking_id', v_booking.id, 'refund_cents', v_booking.total_cents - v_booking.refunded_cents,
                              'reason', 'refunded in full')
    where v_booking.guest_email is not null
    on conflict on constraint notification_log_natural_key do nothing;
  end if;
  if v_booking.stats_counted and v_booking.customer_id is not null then
    update public.customer_venue_stats s set
      total_spent_cents = greatest(0, s.total_spent_cents - v_refund.amount_cents),
      total_orders = greatest(0, s.total_orders - case when v_full then 1 else 0 end),
      updated_at = now()
    where s.business_id = v_booking.business_id and s.venue_id = v_booking.venue_id and s.customer_id = v_booking.customer_id;
  end if;
  update public.refunds set applied_at = now() where business_id = v_refund.business_id and id = v_refund.id;
  perform app.emit('booking.refunded', v_booking.business_id, jsonb_build_object(
    'booking_id', v_booking.id, 'refund_id', v_refund.id, 'amount_cents', v_refund.amount_cents, 'full', v_full));
  return true;
end
$$;
revoke all on function app.apply_booking_refund(uuid, uuid) from public;
grant execute on function app.apply_booking_refund(uuid, uuid) to service_role;

/** What Stripe said about a refund of an order or a booking (the worker's call, or a refund.* /
    charge.refunded event); refunds made in Stripe's dashboard are adopted. A refund that succeeded
    stays succeeded whatever arrives late; it is applied (order: app.apply_refund, booking:
    app.apply_booking_refund) once it succeeded. One core for both payables. */
create function app.record_payable_refund(p_business_id uuid, p_order_id uuid, p_booking_id uuid, p_refund_id uuid,
                                          p_provider_refund_id text, p_status text, p_amount_cents integer, p_failure text)
returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_id uuid;
  v_booking_id uuid;
  v_status text := case p_status when 'requires_action' then 'pending' else p_status end;
  v_venue uuid;
  v_currency text;
begin
  if v_status not in ('pending', 'succeeded', 'failed', 'canceled') then
    return null;
  end if;
  select r.id, r.booking_id into v_id, v_booking_id from public.refunds r
  where r.business_id = p_business_id and (r.id = p_refund_id or r.provider_refund_id = p_provider_refund_id)
  for update;
  if v_id is null then
    if p_booking_id is not null then
      select b.venue_id, b.currency into v_venue, v_currency from public.bookings b where b.business_id = p_business_id and b.id = p_booking_id;
    else
      select o.venue_id, o.currency into v_venue, v_currency from public.orders o where o.business_id = p_business_id and o.id = p_order_id;
    end if;
    if v_venue is null or p_amount_cents is null or p_amount_cents <= 0 then
      return null;
    end if;
    insert into public.refunds (business_id, order_id, booking_id, venue_id, amount_cents, currency, status, provider_refund_id,
                                idempotency_key, source, reason)
    values (p_business_id, case when p_booking_id is null then p_order_id end, p_booking_id, v_venue, p_amount_cents, v_currency,
            'pending', p_provider_refund_id, 'stripe:' || p_provider_refund_id, 'stripe', 'refunded in Stripe')
    on conflict do nothing
    returning id, booking_id into v_id, v_booking_id;
    if v_id is null then
      return null;
    end if;
  end if;
  update public.refunds r set
    provider_refund_id = coalesce(r.provider_refund_id, p_provider_refund_id),
    status = case when r.status = 'succeeded' then r.status else v_status end,
    failure_reason = coalesce(p_failure, r.failure_reason)
  where r.business_id = p_business_id and r.id = v_id;
  if v_booking_id is not null then
    perform app.apply_booking_refund(p_business_id, v_id);
  else
    perform app.apply_refund(p_business_id, v_id);
  end if;
  return v_id;
end
$$;
revoke all on function app.record_payable_refund(uuid, uuid, uuid, uuid, text, text, integer, text) from public;
grant execute on function app.record_payable_refund(uuid, uuid, uuid, uuid, text, text, integer, text) to service_role;

/** An order's refund (0006's contract, now through the shared core). */
create or replace function app.record_refund(p_business_id uuid, p_order_id uuid, p_refund_id uuid, p_provider_refund_id text,
                                             p_status text, p_amount_cents integer, p_failure text) returns uuid
language sql volatile security definer
set search_path = ''
as $$
  select app.record_payable_refund(p_business_id, p_order_id, null, p_refund_id, p_provider_refund_id, p_status, p_amount_cents, p_failure)
$$;

/** A booking's refund, through the same core. */
create function app.record_booking_refund(p_business_id uuid, p_booking_id uuid, p_refund_id uuid, p_provider_refund_id text,
                                          p_status text, p_amount_cents integer, p_failure text) returns uuid
language sql volatile security definer
set search_path = ''
as $$
  select app.record_payable_refund(p_business_id, null, p_booking_id, p_refund_id, p_provider_refund_id, p_status, p_amount_cents, p_failure)
$$;
revoke all on function app.record_booking_refund(uuid, uuid, uuid, text, text, integer, text) from public;
grant execute on function app.record_booking_refund(uuid, uuid, uuid, text, text, integer, text) to service_role;

/** Money arrived for a booking. A pending hold is confirmed; an expired or failed one re-takes its
    seats if the session still has them, and otherwise keeps its status and is refunded in full
    automatically. Confirmation matches or creates the customer (the CRM's stats and segment follow),
    writes the confirmation email and emits booking.confirmed. Idempotent per payment intent.
    Returns 'paid', 'paid_late_retaken', 'paid_late_refunding' or 'already_paid'. */
create function app.mark_booking_paid(p_business_id uuid, p_booking_id uuid, p_payment_intent_id text,
                                      p_session_id text, p_amount_cents integer, p_event_id text) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_session public.activity_sessions;
  v_customer uuid;
  v_outcome text;
  v_amount integer;
begin
  select b.* into v_booking from public.bookings b where b.business_id = p_business_id and b.id = p_booking_id for update;
  if v_booking.id is null then
    return 'no_matching_booking';
  end if;
  v_amount := coalesce(p_amount_cents, v_booking.total_cents);
  if p_payment_intent_id is not null then
    insert into public.payments (business_id, booking_id, venue_id, payment_intent_id, checkout_session_id,
                                 amount_cents, fee_cents, application_fee_cents, currency, source_event_id)
    select v_booking.business_id, v_booking.id, v_booking.venue_id, p_payment_intent_id, p_session_id,
           v_amount, round(v_amount * 0.029) + 30, round(v_amount * b.application_fee_bps / 10000.0), v_booking.currency, p_event_id
    from public.businesses b where b.id = v_booking.business_id
    on conflict (business_id, payment_intent_id) do nothing;
  end if;
  if v_booking.payment_status not in ('unpaid', 'pending', 'failed') then
    return 'already_paid';
  end if;

  if v_booking.status = 'pending_payment' then
    v_outcome := 'paid';
  else
    -- late: the hold expired or the payment had failed, so the seats were released; take them again if free
    select s.* into v_session from public.activity_sessions s
    where s.business_id = v_booking.business_id and s.id = v_booking.session_id for update;
    if v_session.status = 'scheduled' and v_session.starts_at > now()
       and v_session.capacity - v_session.held_seats - v_session.booked_seats >= v_booking.party_size then
      v_outcome := 'paid_late_retaken';
    else
      v_outcome := 'paid_late_refunding';
    end if;
  end if;

  if v_outcome = 'paid_late_refunding' then
    update public.bookings set payment_status = 'paid',
      payment_intent_id = coalesce(payment_intent_id, p_payment_intent_id),
      checkout_session_id = coalesce(p_session_id, checkout_session_id), checkout_url = null
    where business_id = v_booking.business_id and id = v_booking.id;
    perform app.request_booking_refund(v_booking.business_id, v_booking.id, null,
                                       'paid after the hold ended and the session was full');
    insert into public.notification_log (business_id, event_key, channel, recipient, template, venue_id, detail)
    select v_booking.business_id, 'booking.paid_too_late:' || v_booking.id, 'email', v_booking.guest_email, 'booking_paid_too_late',
           v_booking.venue_id, jsonb_build_object('booking_id', v_booking.id, 'refund_cents', v_amount)
    where v_booking.guest_email is not null
    on conflict on constraint notification_log_natural_key do nothing;
    perform app.emit('booking.paid_too_late', v_booking.business_id, jsonb_build_object(
      'booking_id', v_booking.id, 'booking_number', v_booking.booking_number, 'amount_cents', v_amount));
  else
    v_customer := coalesce(v_booking.customer_id, app.find_or_create_customer(
      v_booking.business_id, v_booking.user_id, v_booking.guest_name, v_booking.guest_phone, v_booking.guest_email));
    -- the status trigger moves the seats from held to booked (or takes them again, for a late payment)
    update public.bookings set status = 'confirmed', payment_status = 'paid', customer_id = v_customer, stats_counted = true,
      payment_intent_id = coalesce(payment_intent_id, p_payment_intent_id),
      checkout_session_id = coalesce(p_session_id, checkout_session_id), checkout_url = null
    where business_id = v_booking.business_id and id = v_booking.id;

    insert into public.customer_venue_stats as s (business_id, venue_id, customer_id, total_orders, total_spent_cents,
                                                  first_order_at, last_order_at)
    values (v_booking.business_id, v_booking.venue_id, v_customer, 1, v_booking.total_cents, now(), now())
    on conflict (business_id, venue_id, customer_id) do update set
      total_orders = s.total_orders + 1, total_spent_cents = s.total_spent_cents + excluded.total_spent_cents,
      first_order_at = least(s.first_order_at, excluded.first_order_at),
      last_order_at = greatest(s.last_order_at, excluded.last_order_at), updated_at = now();

    if v_booking.promo_code is not null then
      update public.booking_promo_codes set redeemed_count = redeemed_count + 1
      where business_id = v_booking.business_id and code = v_booking.promo_code;
    end if;

    insert into public.notification_log (business_id, event_key, channel, recipient, template, customer_id, venue_id, detail)
    select v_booking.business_id, 'booking.confirmed:' || v_booking.id, 'email', v_booking.guest_email, 'booking_confirmation',
           v_customer, v_booking.venue_id, jsonb_build_object('booking_id', v_booking.id)
    where v_booking.guest_email is not null
    on conflict on constraint notification_log_natural_key do nothing;
  end if;

  -- what arrived before this payment (refunds, disputes) is applied now
  perform app.apply_booking_refund(r.business_id, r.id) from public.refunds r
  where r.business_id = v_booking.business_id and r.booking_id = v_booking.id and r.status = 'succeeded' and r.applied_at is null;
  if p_payment_intent_id is not null then
    perform app.apply_deferred_stripe_events(p_payment_intent_id);
  end if;
  return v_outcome;
end
$$;
revoke all on function app.mark_booking_paid(uuid, uuid, text, text, integer, text) from public;
grant execute on function app.mark_booking_paid(uuid, uuid, text, text, integer, text) to service_role;

-- section triggers

/** The status machine and the seed's rules, whoever writes: only allowed edges (BR605); confirmed only
    once paid (BR613); expired only when the hold's time is up (BR614); cancelling needs a reason;
    a booking moves to another session of the same activity only while confirmed (BR612); payment
    status only moves forward (BR615). Stamps the time of each status. */
create function app.tg_bookings_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    if new.status <> 'pending_payment' or new.payment_status <> 'unpaid' then
      perform app.fail('BR605', 'illegal_transition', 'a booking starts as a pending-payment hold');
    end if;
    return new;
  end if;
  if new.status is distinct from old.status then
    if not app.booking_transition_allowed(old.status, new.status) then
      perform app.fail('BR605', 'illegal_transition', format('a booking cannot go from %s to %s', old.status, new.status));
    end if;
    if new.status = 'confirmed' and new.payment_status <> 'paid' then
      perform app.fail('BR613', 'payment_required', 'a booking is confirmed by its payment');
    end if;
    if new.status = 'expired' and new.hold_expires_at > now() then
      perform app.fail('BR614', 'hold_not_expired', 'the hold has not run out yet');
    end if;
    if new.status = 'cancelled' and nullif(trim(new.cancel_reason), '') is null then
      perform app.fail('BR605', 'cancel_reason_required', 'cancelling a booking needs a reason');
    end if;
    case new.status
      when 'confirmed' then new.confirmed_at := now();
      when 'expired' then new.expired_at := now();
      when 'payment_failed' then new.failed_at := now();
      when 'checked_in' then new.checked_in_at := now();
      when 'completed' then new.completed_at := now();
      when 'cancelled' then new.cancelled_at := now();
      when 'no_show' then new.no_show_at := now();
      else null;
    end case;
  end if;
  if new.session_id is distinct from old.session_id then
    if old.status <> 'confirmed' or new.status <> 'confirmed' then
      perform app.fail('BR612', 'not_reschedulable', format('a %s booking cannot move to another session', old.status));
    end if;
    if not exists (select 1 from public.activity_sessions s where s.business_id = new.business_id and s.id = new.session_id
                   and s.activity_id = new.activity_id) then
      perform app.fail('BR612', 'other_activity', 'a booking moves only to another session of its activity');
    end if;
    new.reschedule_count := old.reschedule_count + 1;
  end if;
  if new.party_size is distinct from old.party_size or new.total_cents is distinct from old.total_cents then
    perform app.fail('BR605', 'immutable_party', 'party and price are fixed once held');
  end if;
  if not app.payment_transition_allowed(old.payment_status, new.payment_status) then
    perform app.fail('BR615', 'illegal_payment_transition',
                     format('payment cannot go from %s to %s', old.payment_status, new.payment_status));
  end if;
  new.updated_at := now();
  return new;
end
$$;

/** Capacity, atomically: the seats a booking holds or has booked follow its status and session. Taking
    seats is one conditional UPDATE of the session row (concurrent takers queue on that row and each
    sees the others' seats), so the last seats go to one booking and the others get BR601. */
create function app.tg_bookings_seats() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_old_kind text := case when tg_op = 'UPDATE' then app.booking_seat_kind(old.status) end;
  v_new_kind text := app.booking_seat_kind(new.status);
  v_dh integer;
  v_db integer;
begin
  if tg_op = 'UPDATE' and old.session_id is distinct from new.session_id and v_old_kind is not null then
    update public.activity_sessions set
      held_seats = held_seats - case when v_old_kind = 'held' then old.party_size else 0 end,
      booked_seats = booked_seats - case when v_old_kind = 'booked' then old.party_size else 0 end
    where business_id = old.business_id and id = old.session_id;
    v_old_kind := null;  -- released from the old session; the new one is taken below
  end if;
  v_dh := case when v_new_kind = 'held' then new.party_size else 0 end - case when v_old_kind = 'held' then old.party_size else 0 end;
  v_db := case when v_new_kind = 'booked' then new.party_size else 0 end - case when v_old_kind = 'booked' then old.party_size else 0 end;
  if v_dh = 0 and v_db = 0 then
    return null;
  end if;
  update public.activity_sessions s set held_seats = s.held_seats + v_dh, booked_seats = s.booked_seats + v_db
  where s.business_id = new.business_id and s.id = new.session_id
    and (v_dh + v_db <= 0 or (s.status = 'scheduled' and s.held_seats + s.booked_seats + v_dh + v_db <= s.capacity));
  if not found then
    perform app.fail('BR601', 'sold_out', 'not enough seats left in this session');
  end if;
  return null;
end
$$;

/** History and events follow every status change (booking.expired is the hold's own delayed event). */
create function app.tg_bookings_status_changed() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  insert into public.booking_status_history (business_id, booking_id, venue_id, from_status, to_status, changed_by, reason)
  values (new.business_id, new.id, new.venue_id, case when tg_op = 'UPDATE' then old.status end, new.status, auth.uid(),
          case when new.status = 'cancelled' then new.cancel_reason end);
  if tg_op = 'UPDATE' and new.status <> 'expired' then
    perform app.emit('booking.' || new.status::text, new.business_id, jsonb_build_object(
      'booking_id', new.id, 'booking_number', new.booking_number, 'venue_id', new.venue_id,
      'from', old.status, 'to', new.status));
  end if;
  return null;
end
$$;

/** The CRM's merge and erasure reach bookings without changing the CRM's functions: a merged
    customer's bookings move to the survivor; an anonymised customer's bookings lose the booker's
    name, contact, requests and Stripe payloads. */
create function app.tg_customers_bookings_follow() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.merged_into is not null and old.merged_into is null then
    update public.bookings set customer_id = new.merged_into where business_id = new.business_id and customer_id = new.id;
  end if;
  if new.anonymised_at is not null and old.anonymised_at is null then
    update public.stripe_events e set payload = jsonb_build_object('id', e.id, 'type', e.type, 'redacted', true)
    where e.business_id = new.business_id
      and e.booking_id in (select b.id from public.bookings b where b.business_id = new.business_id and b.customer_id = new.id);
    update public.bookings set guest_name = null, guest_email = null, guest_phone = null, special_requests = '', user_id = null
    where business_id = new.business_id and customer_id = new.id;
  end if;
  return null;
end
$$;

create trigger customers_bookings_follow after update of merged_into, anonymised_at on public.customers
  for each row execute function app.tg_customers_bookings_follow();
create trigger bookings_guard before insert or update on public.bookings
  for each row execute function app.tg_bookings_guard();
create trigger bookings_seats after insert or update of status, session_id on public.bookings
  for each row execute function app.tg_bookings_seats();
create trigger bookings_status_inserted after insert on public.bookings
  for each row execute function app.tg_bookings_status_changed();
create trigger bookings_status_changed after update of status on public.bookings
  for each row when (old.status is distinct from new.status) execute function app.tg_bookings_status_changed();
create trigger booking_status_history_append_only before update or delete on public.booking_status_history
  for each row execute function app.tg_append_only();

-- section policies

create policy "staff read bookings of their venues" on public.bookings for select to authenticated
  using (app.module_enabled(business_id, 'bookings')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "customers read their bookings" on public.bookings for select to authenticated
  using (user_id = (select auth.uid()) and app.module_enabled(business_id, 'bookings'));

create policy "staff read booking history of their venues" on public.booking_status_history for select to authenticated
  using (app.module_enabled(business_id, 'bookings')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));

create policy "managers read promo codes" on public.booking_promo_codes for select to authenticated
  using (app.module_enabled(business_id, 'bookings') and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers create promo codes" on public.booking_promo_codes for insert to authenticated
  with check (app.module_enabled(business_id, 'bookings') and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers update promo codes" on public.booking_promo_codes for update to authenticated
  using (app.module_enabled(business_id, 'bookings') and business_id in (select app.my_business_ids('{owner,manager}')))
  with check (business_id in (select app.my_business_ids('{owner,manager}')));

-- section grants
revoke all on public.bookings, public.booking_status_history, public.booking_promo_codes from anon, authenticated;
grant select (business_id, id, booking_number, venue_id, activity_id, session_id, source, status, payment_status, user_id,
              customer_id, guest_name, guest_email, guest_phone, party, party_size, currency, subtotal_cents, discount_cents,
              total_cents, refunded_cents, promo_code, special_requests, hold_expires_at, payment_intent_id, cancel_reason,
              reschedule_count, created_at, confirmed_at, expired_at, failed_at, checked_in_at, completed_at, cancelled_at,
              no_show_at, updated_at)
  on public.bookings to authenticated;
grant select on public.booking_status_history to authenticated;
grant select, insert (business_id, code, percent_off, amount_off_cents, expires_at, max_redemptions, is_active),
  update (percent_off, amount_off_cents, expires_at, max_redemptions, is_active) on public.booking_promo_codes to authenticated;
grant all on public.bookings, public.booking_status_history, public.booking_promo_codes to service_role;

-- section realtime
alter publication supabase_realtime add table public.bookings;

-- section views

/** The staff's booking list: a booking with its session time, activity and customer (filter it with
    PostgREST's query parameters; search_bookings adds free-text search). RLS of bookings applies. */
create view public.booking_list with (security_invoker = true) as
select b.business_id, b.id as booking_id, b.booking_number, b.venue_id, b.activity_id, a.name as activity_name,
       b.session_id, s.starts_at, s.ends_at, (s.starts_at at time zone v.time_zone)::date as booking_date,
       b.status, b.payment_status, b.party, b.party_size, b.currency, b.total_cents, b.refunded_cents, b.promo_code,
       b.customer_id, b.guest_name, b.guest_email, b.guest_phone, b.special_requests, b.source, b.created_at
from public.bookings b
join public.activity_sessions s on s.business_id = b.business_id and s.id = b.session_id
join public.activities a on a.business_id = b.business_id and a.id = b.activity_id
join public.venues v on v.business_id = b.business_id and v.id = b.venue_id;

revoke all on public.booking_list from anon, authenticated;
grant select on public.booking_list to authenticated, service_role;

-- section rpc

/** Hold seats in a session for a party (anon guests and signed-in customers; staff with source admin
    or phone). Payload: {session_id, party: {tier_key: count}, customer: {name, email, phone},
    promo_code?, special_requests?, expected_total_cents?, source?}. The database prices the party;
    the seats are held for the activity's hold_minutes (10 by default) and then released unless paid.
    Returns the booking id, BK number, access token, totals and hold_expires_at. Raises PT404 (session),
    PT403 (bookings off), BR601 sold out, BR602 session not bookable, BR603 party, BR604 contact,
    BR606 total, BR607 promo code, 22023 bad values. */
create function public.hold_booking(booking jsonb) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.hold_booking(booking)
$$;
revoke all on function public.hold_booking(jsonb) from public;
grant execute on function public.hold_booking(jsonb) to anon, authenticated, service_role;

/** The booker's view of a booking, by its access token. Raises PT404. */
create function app.get_booking(p_booking_id uuid, p_access_token uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  select jsonb_build_object('booking_id', b.id, 'booking_number', b.booking_number, 'business_id', b.business_id,
    'venue_id', b.venue_id, 'activity', a.name, 'session_id', b.session_id, 'starts_at', s.starts_at, 'ends_at', s.ends_at,
    'status', b.status, 'payment_status', b.payment_status, 'party', b.party, 'party_size', b.party_size,
    'currency', b.currency, 'subtotal_cents', b.subtotal_cents, 'discount_cents', b.discount_cents,
    'total_cents', b.total_cents, 'refunded_cents', b.refunded_cents, 'hold_expires_at', b.hold_expires_at,
    'checkout_url', b.checkout_url)
  into v_result
  from public.bookings b
  join public.activities a on a.business_id = b.business_id and a.id = b.activity_id
  join public.activity_sessions s on s.business_id = b.business_id and s.id = b.session_id
  where b.id = p_booking_id and b.access_token = p_access_token;
  if v_result is null then
    perform app.fail('PT404', 'booking_not_found', 'no booking with that id and token');
  end if;
  return v_result;
end
$$;
revoke all on function app.get_booking(uuid, uuid) from public;
grant execute on function app.get_booking(uuid, uuid) to anon, authenticated, service_role;

create function public.get_booking(booking_id uuid, access_token uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select app.get_booking(booking_id, access_token)
$$;
revoke all on function public.get_booking(uuid, uuid) from public;
grant execute on function public.get_booking(uuid, uuid) to anon, authenticated, service_role;

/** Staff move a booking: checked_in (arrived), no_show (only once the session started) or completed
    (after check-in). Raises PT404 (not a booking of your venues), PT403, BR605 (not that way), BR616. */
create function app.set_booking_status(p_booking_id uuid, p_status public.booking_status) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_starts timestamptz;
begin
  select b.* into v_booking from public.bookings b where b.id = p_booking_id for update;
  if v_booking.id is null or not app.has_venue_access(v_booking.business_id, v_booking.venue_id, '{owner,manager,staff}') then
    perform app.fail('PT404', 'booking_not_found', 'no such booking at your venues');
  end if;
  perform app.require_module(v_booking.business_id, 'bookings');
  if p_status not in ('checked_in', 'no_show', 'completed') then
    perform app.fail('BR605', 'not_a_staff_transition', format('staff set checked_in, no_show or completed, not %s', p_status));
  end if;
  if not app.booking_transition_allowed(v_booking.status, p_status) then
    perform app.fail('BR605', 'illegal_transition', format('a booking cannot go from %s to %s', v_booking.status, p_status));
  end if;
  if p_status = 'no_show' then
    select s.starts_at into v_starts from public.activity_sessions s
    where s.business_id = v_booking.business_id and s.id = v_booking.session_id;
    if v_starts > now() then
      perform app.fail('BR616', 'session_not_started', 'a no-show is recorded once the session has started');
    end if;
  end if;
  update public.bookings set status = p_status where business_id = v_booking.business_id and id = v_booking.id;
  return jsonb_build_object('booking_id', v_booking.id, 'booking_number', v_booking.booking_number, 'from', v_booking.status,
                            'status', p_status);
end
$$;
revoke all on function app.set_booking_status(uuid, public.booking_status) from public;
grant execute on function app.set_booking_status(uuid, public.booking_status) to authenticated, service_role;

create function public.set_booking_status(booking_id uuid, status public.booking_status) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.set_booking_status(booking_id, status)
$$;
revoke all on function public.set_booking_status(uuid, public.booking_status) from public;
grant execute on function public.set_booking_status(uuid, public.booking_status) to authenticated, service_role;

/** Cancels a confirmed or checked-in booking: releases its seats, records the refund (all that is
    left when p_refund_cents is null, none for 0) for the worker to send, and writes the cancellation
    email with the refund in it. */
create function app.cancel_booking_as(p_booking public.bookings, p_reason text, p_refund_cents integer) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_refund_id uuid;
  v_amount integer;
begin
  if p_booking.status not in ('confirmed', 'checked_in') then
    perform app.fail('BR605', 'illegal_transition', format('a %s booking cannot be cancelled', p_booking.status));
  end if;
  update public.bookings set status = 'cancelled', cancel_reason = coalesce(nullif(trim(p_reason), ''), 'cancelled')
  where business_id = p_booking.business_id and id = p_booking.id;
  if p_refund_cents is null or p_refund_cents > 0 then
    v_refund_id := app.request_booking_refund(p_booking.business_id, p_booking.id, p_refund_cents, p_reason);
    select r.amount_cents into v_amount from public.refunds r where r.business_id = p_booking.business_id and r.id = v_refund_id;
  end if;
  insert into public.notification_log (business_id, event_key, channel, recipient, template, customer_id, venue_id, detail)
  select p_booking.business_id, 'booking.cancelled:' || p_booking.id, 'email', p_booking.guest_email, 'booking_cancelled',
         p_booking.customer_id, p_booking.venue_id,
         jsonb_build_object('booking_id', p_booking.id, 'refund_cents', coalesce(v_amount, 0), 'reason', p_reason)
  where p_booking.guest_email is not null
  on conflict on constraint notification_log_natural_key do nothing;
  return jsonb_build_object('booking_id', p_booking.id, 'booking_number', p_booking.booking_number, 'status', 'cancelled',
                            'refund_id', v_refund_id, 'refund_cents', coalesce(v_amount, 0));
end
$$;
revoke all on function app.cancel_booking_as(public.bookings, text, integer) from public;

/** Owners and managers cancel a booking with a full (refund_cents null), partial or no (0) refund.
    Raises PT404, PT403, BR605 (not confirmed or checked in), BR608 (refund amount). */
create function app.cancel_booking(p_booking_id uuid, p_reason text, p_refund_cents integer) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
begin
  select b.* into v_booking from public.bookings b where b.id = p_booking_id for update;
  if v_booking.id is null or not app.has_venue_access(v_booking.business_id, v_booking.venue_id, '{owner,manager}') then
    perform app.fail('PT404', 'booking_not_found', 'no such booking at the venues you manage');
  end if;
  perform app.require_module(v_booking.business_id, 'bookings');
  if p_refund_cents is not null and p_refund_cents < 0 then
    perform app.fail('BR608', 'invalid_refund_amount', 'the refund cannot be negative');
  end if;
  return app.cancel_booking_as(v_booking, coalesce(nullif(trim(p_reason), ''), 'cancelled by the venue'), p_refund_cents);
end
$$;
revoke all on function app.cancel_booking(uuid, text, integer) from public;
grant execute on function app.cancel_booking(uuid, text, integer) to authenticated, service_role;

create function public.cancel_booking(booking_id uuid, reason text default null, refund_cents integer default null) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.cancel_booking(booking_id, reason, refund_cents)
$$;
revoke all on function public.cancel_booking(uuid, text, integer) from public;
grant execute on function public.cancel_booking(uuid, text, integer) to authenticated, service_role;

/** The booker cancels with the access token, for a full refund, until the activity's cutoff before
    the session (24 hours by default). Raises PT404, BR605, BR609 (too late). */
create function app.cancel_my_booking(p_booking_id uuid, p_access_token uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_starts timestamptz;
  v_cutoff integer;
begin
  select b.* into v_booking from public.bookings b where b.id = p_booking_id and b.access_token = p_access_token for update;
  if v_booking.id is null then
    perform app.fail('PT404', 'booking_not_found', 'no booking with that id and token');
  end if;
  perform app.require_module(v_booking.business_id, 'bookings');
  select s.starts_at, a.cancel_cutoff_hours into v_starts, v_cutoff
  from public.activity_sessions s join public.activities a on a.business_id = s.business_id and a.id = s.activity_id
  where s.business_id = v_booking.business_id and s.id = v_booking.session_id;
  if v_booking.status = 'confirmed' and now() > v_starts - make_interval(hours => v_cutoff) then
    perform app.fail('BR609', 'too_late_to_cancel', format('bookings are cancelled online up to %s hours before', v_cutoff));
  end if;
  return app.cancel_booking_as(v_booking, 'cancelled by the customer', null);
end
$$;
revoke all on function app.cancel_my_booking(uuid, uuid) from public;
grant execute on function app.cancel_my_booking(uuid, uuid) to anon, authenticated, service_role;

create function public.cancel_my_booking(booking_id uuid, access_token uuid) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.cancel_my_booking(booking_id, access_token)
$$;
revoke all on function public.cancel_my_booking(uuid, uuid) from public;
grant execute on function public.cancel_my_booking(uuid, uuid) to anon, authenticated, service_role;

/** Staff move a confirmed booking to another session of its activity with room for the party (the
    seats move atomically) and the customer gets the rescheduled email. Raises PT404, PT403, BR601,
    BR602 (target not bookable), BR612 (not confirmed, other activity or same session). */
create function app.reschedule_booking(p_booking_id uuid, p_session_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_target public.activity_sessions;
begin
  select b.* into v_booking from public.bookings b where b.id = p_booking_id for update;
  if v_booking.id is null or not app.has_venue_access(v_booking.business_id, v_booking.venue_id, '{owner,manager,staff}') then
    perform app.fail('PT404', 'booking_not_found', 'no such booking at your venues');
  end if;
  perform app.require_module(v_booking.business_id, 'bookings');
  select s.* into v_target from public.activity_sessions s where s.business_id = v_booking.business_id and s.id = p_session_id;
  if v_target.id is null or v_target.activity_id <> v_booking.activity_id or v_target.id = v_booking.session_id then
    perform app.fail('BR612', 'invalid_target_session', 'choose another session of the same activity');
  end if;
  if v_target.status <> 'scheduled' or v_target.starts_at <= now() then
    perform app.fail('BR602', 'session_not_bookable', 'the target session was cancelled or has started');
  end if;
  update public.bookings set session_id = v_target.id where business_id = v_booking.business_id and id = v_booking.id;
  insert into public.notification_log (business_id, event_key, channel, recipient, template, customer_id, venue_id, detail)
  select v_booking.business_id, 'booking.rescheduled:' || v_booking.id || ':' || (v_booking.reschedule_count + 1), 'email',
         v_booking.guest_email, 'booking_rescheduled', v_booking.customer_id, v_booking.venue_id,
         jsonb_build_object('booking_id', v_booking.id, 'from_session_id', v_booking.session_id)
  where v_booking.guest_email is not null
  on conflict on constraint notification_log_natural_key do nothing;
  perform app.emit('booking.rescheduled', v_booking.business_id, jsonb_build_object(
    'booking_id', v_booking.id, 'from_session_id', v_booking.session_id, 'to_session_id', v_target.id,
    'event_key', 'booking.rescheduled:' || v_booking.id || ':' || (v_booking.reschedule_count + 1)));
  return jsonb_build_object('booking_id', v_booking.id, 'session_id', v_target.id, 'starts_at', v_target.starts_at);
end
$$;
revoke all on function app.reschedule_booking(uuid, uuid) from public;
grant execute on function app.reschedule_booking(uuid, uuid) to authenticated, service_role;

create function public.reschedule_booking(booking_id uuid, session_id uuid) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.reschedule_booking(booking_id, session_id)
$$;
revoke all on function public.reschedule_booking(uuid, uuid) from public;
grant execute on function public.reschedule_booking(uuid, uuid) to authenticated, service_role;

/** Reminders (scheduled): for confirmed bookings whose session starts within 24 hours and that were
    booked before that, one reminder email row per (booking, session) and a booking.reminder event.
    Returns how many it queued; running it again queues none. */
create function app.queue_booking_reminders() returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_row record;
  v_count integer := 0;
begin
  for v_row in
    insert into public.notification_log (business_id, event_key, channel, recipient, template, customer_id, venue_id, detail)
    select b.business_id, 'booking.reminder:' || b.id || ':' || b.session_id, 'email', b.guest_email, 'booking_reminder',
           b.customer_id, b.venue_id, jsonb_build_object('booking_id', b.id)
    from public.bookings b
    join public.activity_sessions s on s.business_id = b.business_id and s.id = b.session_id
    where b.status = 'confirmed' and b.guest_email is not null
      and s.starts_at > now() and s.starts_at <= now() + interval '24 hours'
      and b.confirmed_at < s.starts_at - interval '24 hours'
      and app.module_enabled(b.business_id, 'bookings')
    on conflict on constraint notification_log_natural_key do nothing
    returning business_id, event_key, detail
  loop
    perform app.emit('booking.reminder', v_row.business_id, jsonb_build_object(
      'booking_id', v_row.detail ->> 'booking_id', 'event_key', v_row.event_key));
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
revoke all on function app.queue_booking_reminders() from public;
grant execute on function app.queue_booking_reminders() to service_role;

/** Checked-in bookings whose session has ended are completed (scheduled). */
create function app.complete_past_bookings() returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  with done as (
    update public.bookings b set status = 'completed'
    from public.activity_sessions s
    where s.business_id = b.business_id and s.id = b.session_id and b.status = 'checked_in' and s.ends_at < now()
    returning 1
  )
  select count(*) into v_count from done;
  return v_count;
end
$$;
revoke all on function app.complete_past_bookings() from public;
grant execute on function app.complete_past_bookings() to service_role;

/** The bookings page: filters by date range (venue dates of the session), status, activity and a
    search over number, name, email and phone. RLS applies (security invoker): staff see their venues. */
create function public.search_bookings(business_id uuid, date_from date default null, date_to date default null,
                                       status public.booking_status default null, activity_id uuid default null,
                                       q text default null, lim integer default 50, "offset" integer default 0)
returns setof public.booking_list
language sql stable
set search_path = ''
as $$
  select l.* from public.booking_list l
  where l.business_id = search_bookings.business_id
    and (search_bookings.date_from is null or l.booking_date >= search_bookings.date_from)
    and (search_bookings.date_to is null or l.booking_date <= search_bookings.date_to)
    and (search_bookings.status is null or l.status = search_bookings.status)
    and (search_bookings.activity_id is null or l.activity_id = search_bookings.activity_id)
    and (nullif(trim(search_bookings.q), '') is null
         or l.booking_number ilike '%' || trim(search_bookings.q) || '%'
         or l.guest_name ilike '%' || trim(search_bookings.q) || '%'
         or lower(l.guest_email) like '%' || lower(trim(search_bookings.q)) || '%'
         or l.guest_phone like '%' || app.normalize_phone(search_bookings.q) || '%')
  order by l.starts_at, l.booking_number
  limit least(greatest(coalesce(lim, 50), 1), 500) offset greatest(coalesce("offset", 0), 0)
$$;
revoke all on function public.search_bookings(uuid, date, date, public.booking_status, uuid, text, integer, integer) from public;
grant execute on function public.search_bookings(uuid, date, date, public.booking_status, uuid, text, integer, integer)
  to authenticated, service_role;

/** The header figures of the bookings page, in each venue's time zone: bookings with a session
    today and this week (Monday start; confirmed, checked in, completed or no-show) and the revenue of
    bookings paid this week and in total, after refunds. RLS applies (security invoker). */
create function public.booking_figures(business_id uuid, venue_id uuid default null) returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object(
    'today', count(*) filter (where l.booking_date = (now() at time zone v.time_zone)::date
                              and l.status in ('confirmed', 'checked_in', 'completed', 'no_show')),
    'this_week', count(*) filter (where l.booking_date >= date_trunc('week', now() at time zone v.time_zone)::date
                                  and l.booking_date < date_trunc('week', now() at time zone v.time_zone)::date + 7
                                  and l.status in ('confirmed', 'checked_in', 'completed', 'no_show')),
    'revenue_this_week_cents', coalesce(sum(l.total_cents - l.refunded_cents) filter (
      where b.confirmed_at >= date_trunc('week', now() at time zone v.time_zone) at time zone v.time_zone
        and l.payment_status in ('paid', 'partially_refunded', 'refunded', 'disputed')), 0),
    'revenue_total_cents', coalesce(sum(l.total_cents - l.refunded_cents) filter (
      where l.payment_status in ('paid', 'partially_refunded', 'refunded', 'disputed')), 0),
    'pending_holds', count(*) filter (where l.status = 'pending_payment'))
  from public.booking_list l
  join public.bookings b on b.business_id = l.business_id and b.id = l.booking_id
  join public.venues v on v.business_id = l.business_id and v.id = l.venue_id
  where l.business_id = booking_figures.business_id
    and (booking_figures.venue_id is null or l.venue_id = booking_figures.venue_id)
$$;
revoke all on function public.booking_figures(uuid, uuid) from public;
grant execute on function public.booking_figures(uuid, uuid) to authenticated, service_role;
