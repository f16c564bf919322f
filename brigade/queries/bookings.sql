-- booking_expire --
-- Expire one hold if its time is up (the delayed booking.expired event); says what became of it.
select app.expire_booking(%(business_id)s, %(booking_id)s) as expired

-- booking_after_expiry --
-- The Checkout Session an expired hold still has open, to close it at Stripe.
select bk.status::text as status, bk.payment_status::text as payment_status, bk.checkout_session_id, b.stripe_account_id
from public.bookings bk join public.businesses b on b.id = bk.business_id
where bk.business_id = %(business_id)s and bk.id = %(booking_id)s

-- booking_pending_notifications --
-- The still-pending notifications of a booking event, with what rendering them needs (locked: one sender).
select n.id, n.channel, n.recipient, n.template, n.detail, bk.id as booking_id, bk.booking_number, bk.party, bk.party_size, bk.total_cents,
       bk.refunded_cents, bk.currency, bk.guest_name, bk.status::text as status, a.name as activity_name,
       b.name as business_name, v.name as venue_name, v.phone as venue_phone, v.address as venue_address,
       s.starts_at, v.time_zone,
       coalesce((select c.locale from public.customers c where c.business_id = bk.business_id and c.id = bk.customer_id), v.default_locale) as locale
from public.notification_log n
join public.bookings bk on bk.business_id = n.business_id and bk.id = (n.detail ->> 'booking_id')::uuid
join public.activity_sessions s on s.business_id = bk.business_id and s.id = bk.session_id
join public.activities a on a.business_id = bk.business_id and a.id = bk.activity_id
join public.businesses b on b.id = bk.business_id
join public.venues v on v.business_id = bk.business_id and v.id = bk.venue_id
where n.business_id = %(business_id)s and n.event_key = %(event_key)s and n.status = 'pending'
order by n.channel
for update of n skip locked

-- booking_refund_to_send --
-- A requested booking refund not yet sent to Stripe (locked: one sender), on its own payment intent when it has one;
-- the amount is its card part (what goes back onto a gift card never goes through Stripe).
select r.id, r.booking_id, r.amount_cents - r.gift_card_cents as amount_cents, r.idempotency_key,
       coalesce(r.payment_intent_id, bk.payment_intent_id) as payment_intent_id, b.stripe_account_id
from public.refunds r
join public.bookings bk on bk.business_id = r.business_id and bk.id = r.booking_id
join public.businesses b on b.id = r.business_id
where r.business_id = %(business_id)s and r.id = %(refund_id)s and r.status = 'pending' and r.provider_refund_id is null
for update of r skip locked

-- booking_record_refund --
-- What Stripe answered about a booking refund.
select app.record_booking_refund(%(business_id)s, %(booking_id)s, %(refund_id)s, %(provider_refund_id)s, %(status)s,
                                 %(amount_cents)s, %(failure)s) as id

-- bookings_expire_due_holds --
-- The safety-net sweep: every hold whose time is up.
select app.expire_due_holds() as expired

-- bookings_queue_reminders --
-- Reminder rows and events for sessions starting within 24 hours.
select app.queue_booking_reminders() as queued

-- bookings_generate_sessions --
-- Sessions for the coming weeks from every weekly schedule.
select app.generate_sessions(null, %(days)s) as created

-- bookings_complete_past --
-- Checked-in bookings whose session ended are completed.
select app.complete_past_bookings() as completed
