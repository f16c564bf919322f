-- Bookings hardening: two reschedules in opposite directions deadlocked (each held the session it
-- left, 0021); managers could refund only by cancelling; a second payment on a paid booking (a second
-- Checkout Session paid) was kept. Now reschedules lock both sessions in id order, public.refund_booking
-- refunds part of a booking that stays on, and a second payment is refunded automatically on its own
-- payment intent (refunds.payment_intent_id).

-- section tables

alter table public.refunds add column payment_intent_id text;

-- section private helpers

create or replace function app.reschedule_booking(p_booking_id uuid, p_session_id uuid) returns jsonb
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
  -- both sessions locked up front in one order (by id): two reschedules in opposite directions
  -- would otherwise each hold the session they leave and wait for the one the other leaves
  perform 1 from public.activity_sessions s
  where s.business_id = v_booking.business_id and s.id in (v_booking.session_id, p_session_id)
  order by s.id for update;
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

/** A booking refund succeeded: once, the refunded amount and payment status, and the customer's
    stats when the booking had counted in them. Waits (false) while the payment is not recorded. The
    refund of a second payment (refunds.payment_intent_id not the booking's) changes the booking in nothing. */
create or replace function app.apply_booking_refund(p_business_id uuid, p_refund_id uuid) returns boolean
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
  if v_refund.payment_intent_id is not null and v_refund.payment_intent_id is distinct from v_booking.payment_intent_id then
    -- the refund of a second payment: the money goes back, the booking's own payment is untouched
    update public.refunds set applied_at = now() where business_id = v_refund.business_id and id = v_refund.id;
    perform app.emit('booking.refunded', v_booking.business_id, jsonb_build_object(
      'booking_id', v_booking.id, 'refund_id', v_refund.id, 'amount_cents', v_refund.amount_cents, 'full', false, 'duplicate_payment', true));
    return true;
  end if;
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

/** Owners and managers refund part of a booking that stays on (a broken prop, a late start). A
    refund of everything left is a cancellation: use cancel_booking. Raises PT404, PT403, BR605
    (not confirmed, checked in or completed), BR608 (not refundable, amount not 1 to less than what is left). */
create function app.refund_booking(p_booking_id uuid, p_amount_cents integer, p_reason text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_pending integer;
  v_refund_id uuid;
begin
  select b.* into v_booking from public.bookings b where b.id = p_booking_id for update;
  if v_booking.id is null or not app.has_venue_access(v_booking.business_id, v_booking.venue_id, '{owner,manager}') then
    perform app.fail('PT404', 'booking_not_found', 'no such booking at the venues you manage');
  end if;
  perform app.require_module(v_booking.business_id, 'bookings');
  if v_booking.status not in ('confirmed', 'checked_in', 'completed') then
    perform app.fail('BR605', 'illegal_transition', format('a %s booking is not refunded in part', v_booking.status));
  end if;
  select coalesce(sum(r.amount_cents), 0) into v_pending from public.refunds r
  where r.business_id = v_booking.business_id and r.booking_id = v_booking.id and r.status = 'pending';
  if p_amount_cents is null or p_amount_cents <= 0
     or p_amount_cents >= v_booking.total_cents - v_booking.refunded_cents - v_pending then
    perform app.fail('BR608', 'invalid_refund_amount', 'a partial refund is less than what is left (cancel_booking refunds it all)');
  end if;
  v_refund_id := app.request_booking_refund(v_booking.business_id, v_booking.id, p_amount_cents,
                                            coalesce(nullif(trim(p_reason), ''), 'partial refund'));
  return jsonb_build_object('booking_id', v_booking.id, 'booking_number', v_booking.booking_number, 'status', v_booking.status,
                            'refund_id', v_refund_id, 'refund_cents', p_amount_cents);
end
$$;
revoke all on function app.refund_booking(uuid, integer, text) from public;
grant execute on function app.refund_booking(uuid, integer, text) to authenticated, service_role;

-- section triggers

/** A payment for a booking that is already paid by another payment intent (a second Checkout
    Session completed) is refunded in full on that intent, once (key refund:booking:<id>:dup:<intent>). */
create function app.tg_payments_booking_duplicate() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_id uuid;
begin
  select b.* into v_booking from public.bookings b where b.business_id = new.business_id and b.id = new.booking_id;
  if v_booking.payment_status not in ('paid', 'partially_refunded', 'refunded', 'disputed')
     or v_booking.payment_intent_id is null or v_booking.payment_intent_id = new.payment_intent_id then
    return null;
  end if;
  insert into public.refunds (business_id, booking_id, venue_id, amount_cents, currency, reason, idempotency_key, payment_intent_id)
  values (new.business_id, new.booking_id, v_booking.venue_id, new.amount_cents, new.currency, 'a second payment for a paid booking',
          'refund:booking:' || new.booking_id || ':dup:' || new.payment_intent_id, new.payment_intent_id)
  on conflict do nothing
  returning id into v_id;
  if v_id is not null then
    perform app.emit('booking.refund_requested', new.business_id, jsonb_build_object(
      'booking_id', new.booking_id, 'refund_id', v_id, 'amount_cents', new.amount_cents));
  end if;
  return null;
end
$$;

create trigger payments_booking_duplicate after insert on public.payments
  for each row when (new.booking_id is not null and new.payment_intent_id is not null)
  execute function app.tg_payments_booking_duplicate();

-- section RPC functions

create function public.refund_booking(booking_id uuid, amount_cents integer, reason text default null) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.refund_booking(booking_id, amount_cents, reason)
$$;
revoke all on function public.refund_booking(uuid, integer, text) from public;
grant execute on function public.refund_booking(uuid, integer, text) to authenticated, service_role;
