-- claim_marketing_sends --
-- The send-time decision for the event's send and up to batch - 1 other due sends (committed before any provider call).
select c as claim from app.claim_marketing_sends(%(business_id)s::uuid, %(send_id)s::uuid, %(batch)s::integer) c

-- marketing_send_step --
-- One commit between two provider calls: records the outcomes just known (a JSON array, maybe empty) and marks
-- the next send handed over (started false: do not send it; a null send starts nothing).
select app.complete_marketing_sends(%(results)s::jsonb) as recorded, app.start_marketing_send(%(business_id)s::uuid, %(send_id)s::uuid) as started

-- recover_marketing_sends --
-- Sends a crashed worker left in flight: never handed over, due again; handed over, failed as interrupted.
select app.recover_marketing_sends() as recovered

-- launch_campaign --
-- A scheduled campaign's segment becomes sends.
select app.launch_campaign(%(business_id)s::uuid, %(campaign_id)s::uuid) as recipients

-- evaluate_dormant_automations --
-- Every active dormant-N-days automation, set-based.
select app.evaluate_dormant_automations(null) as sends

-- sms_opt --
-- An inbound STOP (false) or START (true) from a phone number, to the sender it was sent to.
select app.sms_opt(%(phone)s::text, %(opt_in)s::boolean, %(to)s::text, %(service)s::text) as customers

-- sms_sender --
-- The number (or Messaging Service) a business texts from; null: the platform number.
select app.sms_sender(%(business_id)s) as sender

-- record_delivery_status --
-- A provider's delivery report for a message it sent.
select app.record_delivery_status(%(provider)s::text, %(message_id)s::text, %(status)s::text) as updated

-- record_email_event --
-- One of Resend's webhook events for an email it sent.
select app.record_email_event(%(message_id)s::text, %(type)s::text) as updated

-- review_request_order --
-- The order a review request is about, with the access token its review link carries.
select o.id, o.access_token from public.orders o where o.business_id = %(business_id)s and o.id = %(order_id)s

-- evaluate_abandoned_carts --
-- Every active cart.abandoned automation: signed-in customers' carts idle past the rule's minutes.
select app.evaluate_abandoned_carts(null) as sends

-- marketing_language --
-- The language of a marketing send (the customer's, else the venue's default) and the rule's or campaign's translations.
select coalesce(c.locale, v.default_locale) as locale, coalesce(a.translations, cp.translations, '{}'::jsonb) as translations
from public.campaign_sends s
join public.businesses b on b.id = s.business_id
left join public.customers c on c.business_id = s.business_id and c.id = s.customer_id
left join public.venues v on v.business_id = s.business_id and v.id = s.venue_id
left join public.automations a on a.business_id = s.business_id and a.id = s.automation_id
left join public.campaigns cp on cp.business_id = s.business_id and cp.id = s.campaign_id
where s.business_id = %(business_id)s and s.id = %(send_id)s
