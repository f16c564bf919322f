-- export_orders --
-- Orders with their lines (one CSV row per line) placed in [from, to), as the caller may read them.
select o.order_number, o.placed_at, o.paid_at, v.name as venue, o.channel, o.fulfilment, o.status, o.payment_status,
       o.guest_name as customer_name, o.currency, o.subtotal_cents, o.discount_cents, o.tax_cents, o.tip_cents,
       o.delivery_fee_cents, o.total_cents, o.refunded_cents, i.line_number, i.name as item, i.variant_name as variant,
       (select string_agg(m ->> 'name', '; ' order by n) from jsonb_array_elements(i.modifiers) with ordinality as mm (m, n)) as modifiers,
       i.quantity, i.unit_price_cents, i.line_total_cents, i.refunded_quantity
from public.orders o
join public.venues v on v.business_id = o.business_id and v.id = o.venue_id
left join public.order_items i on i.business_id = o.business_id and i.order_id = o.id
where (%(business_id)s::uuid is null or o.business_id = %(business_id)s::uuid)
  and o.placed_at >= %(from)s::timestamptz and o.placed_at < %(to)s::timestamptz
order by o.business_id, o.placed_at, o.order_number, i.line_number

-- export_payments --
-- Money in (payments) and out (succeeded or pending refunds) in [from, to), refunds as negative amounts.
select x.kind, x.at, coalesce('#' || o.order_number, k.booking_number) as number, v.name as venue, x.amount_cents,
       x.fee_cents, x.application_fee_cents, x.currency, x.status, x.provider_id, x.reason
from (
  select 'payment' as kind, p.business_id, p.venue_id, p.order_id, p.booking_id, p.created_at as at, p.amount_cents, p.fee_cents,
         p.application_fee_cents, p.currency, p.status, p.payment_intent_id as provider_id, '' as reason
  from public.payments p
  where (%(business_id)s::uuid is null or p.business_id = %(business_id)s::uuid)
    and p.created_at >= %(from)s::timestamptz and p.created_at < %(to)s::timestamptz
  union all
  select 'refund', f.business_id, f.venue_id, f.order_id, f.booking_id, coalesce(f.applied_at, f.created_at), -f.amount_cents, 0, 0,
         f.currency, f.status, f.provider_refund_id, f.reason
  from public.refunds f
  where (%(business_id)s::uuid is null or f.business_id = %(business_id)s::uuid)
    and coalesce(f.applied_at, f.created_at) >= %(from)s::timestamptz and coalesce(f.applied_at, f.created_at) < %(to)s::timestamptz
) x
join public.venues v on v.business_id = x.business_id and v.id = x.venue_id
left join public.orders o on o.business_id = x.business_id and o.id = x.order_id
left join public.bookings k on k.business_id = x.business_id and k.id = x.booking_id
order by x.business_id, x.at, x.kind

-- export_customers --
-- Customers created before `to` with their stats at the venues the caller sees, tags and segments; never
-- one erased or whose erasure is pending. A venue-limited member sees the customers of their venues.
select c.id as customer_id, c.full_name, c.email, c.phone, c.created_at,
       coalesce(sum(s.total_orders), 0) as total_orders, coalesce(sum(s.total_spent_cents), 0) as total_spent_cents,
       min(s.first_order_at) as first_order_at, max(s.last_order_at) as last_order_at,
       (select string_agg(t.tag, '; ' order by t.tag) from public.customer_tags t
        where t.business_id = c.business_id and t.customer_id = c.id) as tags,
       (select string_agg(g.name, '; ' order by g.name) from public.segment_memberships sm
        join public.segments g on g.business_id = sm.business_id and g.id = sm.segment_id
        where sm.business_id = c.business_id and sm.customer_id = c.id) as segments
from public.customers c
left join public.customer_venue_stats s on s.business_id = c.business_id and s.customer_id = c.id
where (%(business_id)s::uuid is null or c.business_id = %(business_id)s::uuid)
  and c.created_at < %(to)s::timestamptz and coalesce(s.last_order_at, c.created_at) >= %(from)s::timestamptz
  and c.anonymised_at is null and not app.customer_erasure_pending(c.business_id, c.id)
  and (s.customer_id is not null or not app.venue_limited(c.business_id))
group by c.business_id, c.id
order by c.business_id, c.created_at, c.id

-- export_bookings --
-- Bookings whose session starts in [from, to).
select k.booking_number, k.created_at, s.starts_at as session_starts_at, v.name as venue, a.name as activity, k.status,
       k.payment_status, k.guest_name as customer_name, k.party_size, k.currency, k.subtotal_cents, k.discount_cents,
       k.promo_code, k.total_cents, k.refunded_cents, k.source
from public.bookings k
join public.activity_sessions s on s.business_id = k.business_id and s.id = k.session_id
join public.activities a on a.business_id = k.business_id and a.id = k.activity_id
join public.venues v on v.business_id = k.business_id and v.id = k.venue_id
where (%(business_id)s::uuid is null or k.business_id = %(business_id)s::uuid)
  and s.starts_at >= %(from)s::timestamptz and s.starts_at < %(to)s::timestamptz
order by k.business_id, s.starts_at, k.booking_number

-- export_payouts --
-- Payout periods overlapping [from, to).
select p.period_start, p.period_end, p.currency, p.payments_count, p.gross_cents, p.platform_fee_cents, p.refunds_cents,
       p.delivery_cost_cents, p.net_cents, p.status, p.paid_at
from public.business_payouts p
where (%(business_id)s::uuid is null or p.business_id = %(business_id)s::uuid)
  and p.period_end > %(from)s::timestamptz and p.period_start < %(to)s::timestamptz
order by p.business_id, p.period_start

-- export_driver_earnings --
-- What drivers earned on the business's deliveries in [from, to).
select e.earned_at, d.display_name as driver, v.name as venue, o.order_number, e.base_fee_cents, e.distance_fee_cents,
       e.surge_cents, e.tip_cents, e.platform_fee_cents, e.net_cents, e.currency, e.payout_status
from public.driver_earnings e
join public.venues v on v.business_id = e.business_id and v.id = e.venue_id
left join public.drivers d on d.business_id = e.driver_business_id and d.id = e.driver_id
left join public.orders o on o.business_id = e.business_id and o.id = e.order_id
where (%(business_id)s::uuid is null or e.business_id = %(business_id)s::uuid)
  and e.earned_at >= %(from)s::timestamptz and e.earned_at < %(to)s::timestamptz
order by e.business_id, e.earned_at

-- export_campaign_performance --
-- Per campaign and automation: sends, skips, deliveries and message cost of sends made in [from, to), and
-- the orders attributed to them in the range with their revenue after refunds.
with sources as (
  select a.business_id, 'automation'::text as kind, a.id, a.name, a.trigger, a.channel from public.automations a
  union all
  select c.business_id, 'campaign', c.id, c.name, 'campaign', c.channel from public.campaigns c
), sends as (
  select s.business_id, coalesce(s.automation_id, s.campaign_id) as source_id,
         count(*) filter (where s.status = 'sent') as sends, count(*) filter (where s.status = 'skipped') as skipped,
         count(*) filter (where n.status = 'delivered') as delivered, coalesce(sum(n.cost_cents), 0) as message_cost_cents
  from public.campaign_sends s
  left join public.notification_log n on n.business_id = s.business_id and n.id = s.notification_id
  where s.created_at >= %(from)s::timestamptz and s.created_at < %(to)s::timestamptz
  group by 1, 2
), revenue as (
  select t.business_id, coalesce(t.automation_id, t.campaign_id) as source_id, count(*) as orders,
         sum(o.total_cents - o.refunded_cents) as revenue_cents
  from public.campaign_attributions t
  join public.orders o on o.business_id = t.business_id and o.id = t.order_id
  where t.attributed_at >= %(from)s::timestamptz and t.attributed_at < %(to)s::timestamptz
  group by 1, 2
)
select src.kind, src.name, src.trigger, src.channel, coalesce(s.sends, 0) as sends, coalesce(s.skipped, 0) as skipped,
       coalesce(s.delivered, 0) as delivered, coalesce(r.orders, 0) as orders, coalesce(r.revenue_cents, 0) as revenue_cents,
       coalesce(s.message_cost_cents, 0) as message_cost_cents
from sources src
left join sends s on s.business_id = src.business_id and s.source_id = src.id
left join revenue r on r.business_id = src.business_id and r.source_id = src.id
where (%(business_id)s::uuid is null or src.business_id = %(business_id)s::uuid)
order by src.business_id, src.kind, src.name

-- export_access --
-- May the caller export this business's data: a member (owner, manager, staff), or the operator.
select app.is_member(%(business_id)s::uuid, '{owner,manager,staff}') as member

-- export_reauth --
-- BR820/BR821 unless the member holds a fresh PIN grant, when the business requires one (app.require_fresh_pin).
select app.require_fresh_pin(%(business_id)s::uuid, 'export_customers')

-- financial_report --
-- The monthly financial report of a business (app.financial_report: PT404 unless owner, manager or operator).
select app.financial_report(%(business_id)s::uuid, %(month)s::date) as report

-- export_range --
-- [from, to) of an export as text (either end may be infinite): a bare date is midnight in the business's
-- time zone, a missing end is open; ordered says from < to.
select w.since::text as since, w.until::text as until, w.since < w.until as ordered
from (
  select case when %(from)s::text is null then '-infinity'::timestamptz
              when %(from)s::text ~ '^\d{4}-\d{2}-\d{2}$' then %(from)s::date::timestamp at time zone coalesce(b.time_zone, 'UTC')
              else %(from)s::text::timestamptz end as since,
         case when %(to)s::text is null then 'infinity'::timestamptz
              when %(to)s::text ~ '^\d{4}-\d{2}-\d{2}$' then %(to)s::date::timestamp at time zone coalesce(b.time_zone, 'UTC')
              else %(to)s::text::timestamptz end as until
  from (select 1) one
  left join public.businesses b on b.id = %(business_id)s::uuid
) w
