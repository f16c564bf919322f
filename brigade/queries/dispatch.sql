-- start_dispatch --
-- Create the delivery of a delivery order (once) and make its first dispatch step.
select app.start_dispatch(%(business_id)s, %(order_id)s) as result

-- expire_offer --
-- Close an offer still open at its expiry and take the next dispatch step.
select app.expire_offer(%(business_id)s, %(offer_id)s) as outcome

-- delivery_job --
-- What a courier network needs to quote and carry a delivery, with its status.
select d.id, d.business_id, d.status, d.provider, d.provider_delivery_id, d.external_delivery_id, d.pickup, d.dropoff,
       d.pickup_latitude, d.pickup_longitude, d.dropoff_latitude, d.dropoff_longitude, d.order_value_cents, d.tip_cents,
       d.currency,
       (select coalesce(jsonb_agg(jsonb_build_object('name', i.name, 'quantity', i.quantity) order by i.line_number), '[]'::jsonb)
        from public.order_items i where i.business_id = d.business_id and i.order_id = d.order_id) as items
from public.deliveries d
where d.business_id = %(business_id)s and d.id = %(delivery_id)s

-- record_provider_booking --
-- A courier network took the delivery; 'cancel_at_provider' when it was cancelled meanwhile.
select app.record_provider_booking(%(business_id)s, %(delivery_id)s, %(provider)s, %(provider_delivery_id)s, %(quote_id)s,
                                   %(fee_cents)s, %(tracking_url)s, %(pickup_eta)s, %(dropoff_eta)s) as outcome

-- fail_delivery --
-- Every courier network refused the delivery.
select app.fail_delivery(%(business_id)s, %(delivery_id)s, %(reason)s) as outcome

-- record_cancel_result --
-- What the courier network answered to a cancellation.
select app.record_cancel_result(%(business_id)s, %(delivery_id)s, %(cancelled)s, %(message)s, %(fee_cents)s) as outcome

-- pending_delivery_sms --
-- The still-pending delivery status texts of an event, with what rendering them needs (locked: one sender).
select n.id, n.channel, n.recipient, n.template, o.id as order_id, o.order_number, o.access_token, o.user_id, b.name as business_name,
       d.status, d.eta, d.courier_name, d.provider, d.tracking_url, d.dropoff_pin, d.cancel_reason, v.time_zone,
       coalesce((select c.locale from public.customers c where c.business_id = o.business_id and c.id = coalesce(n.customer_id, o.customer_id)),
                v.default_locale) as locale,
       exists (select 1 from public.push_subscriptions s where s.business_id = o.business_id and s.user_id = o.user_id
                 and s.audience = 'customer') as has_push
from public.notification_log n
join public.orders o on o.business_id = n.business_id and o.id = n.order_id
join public.deliveries d on d.business_id = o.business_id and d.order_id = o.id
join public.businesses b on b.id = o.business_id
join public.venues v on v.business_id = o.business_id and v.id = o.venue_id
where n.business_id = %(business_id)s and n.event_key = %(event_key)s and n.status = 'pending' and n.channel = 'sms'
for update of n skip locked

-- apply_delivery_webhook --
-- Apply one verified courier-network webhook; returns the outcome.
select app.apply_delivery_webhook(%(provider)s, %(event)s) as outcome

-- prune_driver_locations --
-- Forget driver positions older than the retention (the last one stays on drivers).
delete from public.driver_locations where recorded_at < now() - make_interval(days => %(days)s)

-- record_delivery_push --
-- The push twin of a delivery status text, for a signed-in customer with a device; nothing when already recorded.
insert into public.notification_log (business_id, event_key, channel, recipient, template, order_id, customer_id, venue_id)
select n.business_id, n.event_key, 'push', 'user:' || %(user_id)s, n.template, n.order_id, n.customer_id, n.venue_id
from public.notification_log n where n.business_id = %(business_id)s and n.id = %(id)s
on conflict on constraint notification_log_natural_key do nothing
returning id
