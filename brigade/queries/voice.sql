-- voice_save_call --
-- Write a call's conversation state after a turn (the row is locked by app.voice_load_call).
update public.calls set step = %(step)s, intent = coalesce(%(intent)s, intent), outcome = coalesce(%(outcome)s, outcome),
  forward_reason = coalesce(%(forward_reason)s, forward_reason), cart = %(cart)s, fulfilment = %(fulfilment)s,
  delivery_address = %(delivery_address)s, turns = turns || %(turns)s, misses = %(misses)s, silences = %(silences)s,
  order_id = coalesce(%(order_id)s, order_id), nlu_backend = coalesce(%(nlu_backend)s, nlu_backend)
where business_id = %(business_id)s and id = %(call_id)s

-- voice_save_turn --
-- voice_save_call and the TwiML the gather turn answered (kept for a retry of the same turn) in one
-- UPDATE: one round trip and one new row version per turn instead of two.
update public.calls set step = %(step)s, intent = coalesce(%(intent)s, intent), outcome = coalesce(%(outcome)s, outcome),
  forward_reason = coalesce(%(forward_reason)s, forward_reason), cart = %(cart)s, fulfilment = %(fulfilment)s,
  delivery_address = %(delivery_address)s, turns = turns || %(turns)s, misses = %(misses)s, silences = %(silences)s,
  order_id = coalesce(%(order_id)s, order_id), nlu_backend = coalesce(%(nlu_backend)s, nlu_backend),
  last_gather_seq = coalesce(%(seq)s::integer, last_gather_seq),
  last_reply = case when %(seq)s::integer is null then last_reply else %(twiml)s end
where business_id = %(business_id)s and id = %(call_id)s

-- voice_record_sms --
-- The payment-link SMS a phone order sent, in the notification log (once per order and number).
insert into public.notification_log (business_id, event_key, channel, recipient, template, status, provider,
  provider_message_id, cost_cents, order_id, venue_id, detail, error, sent_at)
values (%(business_id)s, 'voice.payment_link:' || %(order_id)s::text, 'sms', %(recipient)s, 'payment_link', %(status)s, %(provider)s,
  %(message_id)s, %(cost)s, %(order_id)s::uuid, %(venue_id)s, %(detail)s, %(error)s, case when %(status)s::text = 'sent' then now() end)
on conflict on constraint notification_log_natural_key do nothing

-- top_up_plan_voice_credits --
-- The plan's included voice credits for the current billing period (what is still due).
select app.top_up_plan_voice_credits(%(business_id)s::uuid) as granted

-- voice_distance_km --
-- How far a geocoded delivery address is from the venue (place_order's own measure).
select app.distance_km(%(venue_lat)s, %(venue_lon)s, %(lat)s, %(lon)s) as km

-- voice_cancel_unpaid_order --
-- A phone order whose Checkout Session could not be made: nobody can pay it, so it is cancelled (the
-- call goes to the team, who take the order themselves); only while it is still placed and unpaid.
update public.orders set status = 'cancelled', cancel_reason = 'phone order: the payment link could not be made'
where business_id = %(business_id)s and id = %(order_id)s and status = 'placed' and payment_status = 'unpaid'
