-- operator_list_businesses --
-- The operator's business list, searched by name, slug, subdomain or owner email.
select * from public.operator_businesses b
where %(q)s = ''
   or b.name ilike '%%' || %(q)s || '%%' or b.slug ilike '%%' || %(q)s || '%%'
   or coalesce(b.subdomain, '') ilike '%%' || %(q)s || '%%'
   or exists (select 1 from unnest(b.owner_emails) e where e ilike '%%' || %(q)s || '%%')
order by b.created_at desc
limit %(limit)s

-- operator_recent_audit --
-- The last actions on one business.
select id, actor_user_id, actor_role, action, details, created_at
from public.audit_log where business_id = %(business_id)s order by id desc limit 50

-- operator_audit --
-- The audit log, for one business or all.
select business_id, id, actor_user_id, actor_role, action, details, created_at
from public.audit_log
where %(business_id)s::uuid is null or business_id = %(business_id)s::uuid
order by created_at desc, id desc limit %(limit)s

-- notification_once --
-- A notification row for a one-off send; returned only while it is still to be sent (pending or failed).
with ins as (
  insert into public.notification_log (business_id, event_key, channel, recipient, template)
  values (%(business_id)s, %(event_key)s, %(channel)s, %(recipient)s, %(template)s)
  on conflict on constraint notification_log_natural_key do nothing
  returning id
)
select id from ins
union all
select n.id from public.notification_log n
where n.business_id = %(business_id)s and n.event_key = %(event_key)s and n.channel = %(channel)s
  and n.recipient = %(recipient)s and n.status in ('pending', 'failed')
limit 1

-- run_scheduled_payouts --
-- Every business's weekly or monthly payout for its last complete period.
select app.run_scheduled_payouts(now()) as n

-- prepare_due_payouts --
-- Scheduled payouts whose period is over: carried forward, or moved to processing with a transfer request.
select app.prepare_due_payouts(now()) as payouts

-- payout_transfer_request --
-- The Stripe transfer to create for one processing payout, or null when there is nothing to send.
select app.payout_transfer_request(%(business_id)s, %(payout_id)s) as request

-- run_driver_payouts --
-- Each driver's pending earnings up to the end of the last complete period, rolled into one payout.
select app.run_driver_payouts(now()) as payouts

-- driver_payout_transfer_request --
-- The Stripe transfer to create for one processing driver payout, or null.
select app.driver_payout_transfer_request(%(business_id)s, %(payout_id)s) as request

-- record_driver_payout_transfer --
-- The transfer Stripe created for a driver payout, or its refusal (the payout falls back to manual payment).
select app.record_driver_payout_transfer(%(business_id)s, %(payout_id)s, %(transfer_id)s, %(error)s) as status

-- record_payout_transfer --
-- The transfer Stripe created for a payout, or its refusal.
select app.record_payout_transfer(%(business_id)s, %(payout_id)s, %(transfer_id)s, %(error)s) as status

-- owned_business --
-- Whether the caller owns the business (the merchant's payouts CSV is for owners).
select exists (select 1 from app.my_business_ids('{owner}') b where b = %(business_id)s) as owner

-- merchant_payouts_csv --
-- One business's payouts as CSV, read under the caller's row-level security.
select public.payouts_csv(%(business_id)s, %(from)s::timestamptz, %(to)s::timestamptz) as csv
