-- pending_notifications --
-- The still-pending notifications of an event, with what rendering them needs (locked: one sender).
select n.id, n.channel, n.recipient, n.template, o.id as order_id, o.order_number, o.total_cents, o.currency, o.fulfilment, o.placed_at,
       b.name as business_name, v.name as venue_name, v.phone as venue_phone, v.time_zone,
       coalesce((select c.locale from public.customers c where c.business_id = o.business_id and c.id = coalesce(n.customer_id, o.customer_id)),
                v.default_locale) as locale,
       (select jsonb_agg(jsonb_build_object('name', i.name, 'variant', i.variant_name, 'quantity', i.quantity,
                                            'line_total_cents', i.line_total_cents) order by i.line_number)
        from public.order_items i where i.business_id = o.business_id and i.order_id = o.id) as lines
from public.notification_log n
join public.orders o on o.business_id = n.business_id and o.id = n.order_id
join public.businesses b on b.id = o.business_id
join public.venues v on v.business_id = o.business_id and v.id = o.venue_id
where n.business_id = %(business_id)s and n.event_key = %(event_key)s and n.status = 'pending'
order by n.channel
for update of n skip locked

-- mark_notification --
-- Record how a send went.
update public.notification_log set status = %(status)s, provider = %(provider)s, provider_message_id = %(message_id)s,
  cost_cents = %(cost)s, error = %(error)s, sent_at = case when %(status)s in ('sent', 'delivered') then now() end
where business_id = %(business_id)s and id = %(id)s

-- voice_fallback_sms --
-- The SMS that replaces a ready-call that could not be placed.
insert into public.notification_log (business_id, event_key, channel, recipient, template, order_id, customer_id, venue_id)
select business_id, event_key, 'sms', recipient, 'order_ready', order_id, customer_id, venue_id
from public.notification_log where business_id = %(business_id)s and id = %(id)s
on conflict on constraint notification_log_natural_key do nothing
returning id

-- venue_manager_emails --
-- Emails of the owners and managers who may act on a venue.
select distinct u.email
from public.memberships m
join auth.users u on u.id = m.user_id
where m.business_id = %(business_id)s and m.role in ('owner', 'manager') and u.email is not null
  and (not exists (select 1 from public.membership_venues mv where mv.business_id = m.business_id and mv.membership_id = m.id)
       or exists (select 1 from public.membership_venues mv where mv.business_id = m.business_id and mv.membership_id = m.id
                  and mv.venue_id = %(venue_id)s))
order by u.email

-- record_stock_alert --
-- One stock-critical email per (event, manager); nothing when it was already recorded.
insert into public.notification_log (business_id, event_key, channel, recipient, template, venue_id, detail)
values (%(business_id)s, %(event_key)s, 'email', %(recipient)s, 'stock_critical', %(venue_id)s, %(detail)s)
on conflict on constraint notification_log_natural_key do nothing
returning id

-- consent_recipient --
-- Who a double opt-in confirmation goes to (not an erased customer).
select c.email, v.name as venue_name, b.name as business_name, coalesce(c.locale, v.default_locale) as locale
from public.customers c
join public.businesses b on b.id = c.business_id
join public.venues v on v.business_id = c.business_id and v.id = %(venue_id)s
where c.business_id = %(business_id)s and c.id = %(customer_id)s and c.anonymised_at is null

-- record_consent_email --
-- The confirmation email in the notification log, once per token.
insert into public.notification_log (business_id, event_key, channel, recipient, template, customer_id, venue_id, status,
                                     provider, provider_message_id, cost_cents, error, sent_at)
values (%(business_id)s, %(event_key)s, 'email', %(recipient)s, 'consent_confirmation', %(customer_id)s, %(venue_id)s, %(status)s,
        %(provider)s, %(message_id)s, %(cost)s, %(error)s, case when %(status)s = 'sent' then now() end)
on conflict on constraint notification_log_natural_key do nothing
returning id

-- crm_nightly --
-- The whole nightly CRM run.
select app.crm_nightly() as result

-- recompute_tiers --
-- Loyalty tiers from trailing-12-month spend.
select app.recompute_tiers(null) as changed

-- push_subscriptions_of_user --
-- A user's push subscriptions at a business (every audience: customer, driver, staff).
select s.id, s.endpoint, s.p256dh, s.auth from public.push_subscriptions s
where s.business_id = %(business_id)s and s.user_id = %(user_id)s
order by s.created_at, s.id

-- push_subscriptions_of_customer --
-- A customer's push subscriptions at a business (their user's, or saved for their record).
select s.id, s.endpoint, s.p256dh, s.auth, c.user_id from public.customers c
join public.push_subscriptions s on s.business_id = c.business_id and s.audience = 'customer'
  and (s.customer_id = c.id or s.user_id = c.user_id)
where c.business_id = %(business_id)s and c.id = %(customer_id)s
order by s.created_at, s.id

-- push_delivered --
-- A push service took a message for this subscription.
update public.push_subscriptions set last_sent_at = now() where business_id = %(business_id)s and id = %(id)s

-- push_gone --
-- The push service says the subscription no longer exists (404/410): forget it.
delete from public.push_subscriptions where business_id = %(business_id)s and id = %(id)s

-- pending_push --
-- A pending push notification row, locked (one sender), with what rendering it needs.
select n.id, n.recipient, n.template, n.detail, n.order_id, o.order_number, o.access_token, b.name as business_name,
       v.name as venue_name,
       coalesce((select c.locale from public.customers c where c.business_id = n.business_id and c.id = coalesce(n.customer_id, o.customer_id)),
                v.default_locale) as locale
from public.notification_log n
join public.businesses b on b.id = n.business_id
left join public.orders o on o.business_id = n.business_id and o.id = n.order_id
left join public.venues v on v.business_id = n.business_id and v.id = n.venue_id
where n.business_id = %(business_id)s and n.id = %(id)s and n.status = 'pending' and n.channel = 'push'
for update of n skip locked

-- message_nudge_targets --
-- Who a new message should reach (the other side), with their devices' owner, phone, language, and whether they read the conversation in the last 2 minutes.
with m as (
  select m.*, c.kind, c.venue_id, c.order_id, c.customer_user_id, c.driver_business_id, c.driver_id, c.assigned_to,
         c.customer_seen_at, c.driver_seen_at, c.staff_seen_at
  from public.conversation_messages m
  join public.conversations c on c.business_id = m.business_id and c.id = m.conversation_id
  where m.business_id = %(business_id)s and m.id = %(message_id)s
), targets as (
  select 'driver' as role, d.user_id, d.phone, m.driver_seen_at as seen_at, null::text as locale
  from m join public.drivers d on d.business_id = m.driver_business_id and d.id = m.driver_id
  where m.kind = 'delivery' and m.sender_role = 'customer'
  union all
  select 'customer', m.customer_user_id, coalesce(o.guest_phone, c.phone), m.customer_seen_at, c.locale
  from m left join public.orders o on o.business_id = m.business_id and o.id = m.order_id
  left join public.customers c on c.business_id = m.business_id
    and c.id = coalesce(o.customer_id, (select x.id from public.customers x where x.business_id = m.business_id and x.user_id = m.customer_user_id limit 1))
  where m.sender_role <> 'customer'
  union all
  select 'staff', u.user_id, null, m.staff_seen_at, null
  from m cross join lateral (
    select m.assigned_to as user_id where m.assigned_to is not null
    union
    select ms.user_id from public.memberships ms where m.assigned_to is null and ms.business_id = m.business_id
      and ms.role in ('owner', 'manager', 'staff')) u
  where m.kind = 'support' and m.sender_role = 'customer'
)
select t.role, t.user_id, t.phone, coalesce(t.locale, v.default_locale) as locale, v.name as venue_name, o.order_number,
       m.sender_role, m.kind, m.conversation_id,
       (t.seen_at is not null and t.seen_at > m.created_at - interval '2 minutes') as online,
       exists (select 1 from public.push_subscriptions s where s.business_id = m.business_id and s.user_id = t.user_id) as has_push
from targets t cross join m
join public.venues v on v.business_id = m.business_id and v.id = m.venue_id
join public.businesses b on b.id = m.business_id
left join public.orders o on o.business_id = m.business_id and o.id = m.order_id

-- record_message_nudge --
-- One nudge per (message, recipient, channel); nothing when it was already recorded.
insert into public.notification_log (business_id, event_key, channel, recipient, template, order_id, venue_id, detail)
select %(business_id)s, %(event_key)s, %(channel)s, %(recipient)s, 'message_nudge', c.order_id, c.venue_id,
       jsonb_build_object('conversation_id', c.id, 'role', %(role)s::text)
from public.conversations c where c.business_id = %(business_id)s and c.id = %(conversation_id)s
on conflict on constraint notification_log_natural_key do nothing
returning id

-- claim_code_locale --
-- The language of a claim code: the signed-in user's customer record at the business, else its first venue's default.
select coalesce((select c.locale from public.customers c join app.customer_claim_codes k on k.business_id = c.business_id and k.user_id = c.user_id
                 where c.business_id = %(business_id)s and k.id = %(claim_id)s limit 1),
                (select v.default_locale from public.venues v where v.business_id = %(business_id)s order by v.created_at limit 1)) as locale

-- push_subscriptions_of_driver --
-- A driver's devices, wherever they saved them (a shared driver serves several businesses).
select s.id, s.business_id, s.endpoint, s.p256dh, s.auth from public.push_subscriptions s
where s.user_id = %(user_id)s and s.audience = 'driver'
order by s.created_at, s.id
