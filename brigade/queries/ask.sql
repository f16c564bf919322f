-- ask_context --
-- The caller's role, venues, currency and modules for the business (42501 unless owner or manager).
select public.ask_context(%(business_id)s) as ctx

-- ask_read_only --
-- Makes the tool call's transaction read only: a tool can never write, whatever it is.
set transaction read only

-- ask_tool_top_customers --
-- The top customers by spend, from the materialized stats.
select * from public.top_customers(%(business_id)s, %(n)s, %(venue_id)s)

-- ask_tool_top_customers_by_visits --
-- The top customers by number of orders, from the materialized stats.
select * from public.top_customers_by_visits(%(business_id)s, %(n)s, %(venue_id)s)

-- ask_tool_customers_not_seen --
-- Customers whose last order is more than N days ago.
select * from public.customers_not_seen(%(business_id)s, %(days)s, %(venue_id)s)

-- ask_tool_segment_sizes --
-- Customers per RFM segment and venue.
select * from public.segment_sizes(%(business_id)s, %(venue_id)s)

-- ask_tool_sales_summary --
-- Paid orders and revenue in a named period.
select * from public.sales_summary(%(business_id)s, %(period)s, %(venue_id)s)

-- ask_tool_sales_by_day --
-- Paid orders and revenue per day for the last N days.
select * from public.sales_by_day(%(business_id)s, %(days)s, %(venue_id)s)

-- ask_tool_sales_by_venue --
-- Paid orders and revenue per venue in a named period.
select * from public.sales_by_venue(%(business_id)s, %(period)s)

-- ask_tool_best_sellers --
-- Products by units sold in a named period.
select * from public.best_sellers(%(business_id)s, %(period)s, %(n)s, %(venue_id)s)

-- ask_tool_stock_at_risk --
-- Stock items out, critical or low.
select * from public.stock_at_risk(%(business_id)s, %(venue_id)s)

-- ask_tool_booking_figures --
-- Bookings today and this week, booking revenue this week and in total, pending holds.
select (f ->> 'today')::integer as today, (f ->> 'this_week')::integer as this_week,
       (f ->> 'revenue_this_week_cents')::bigint as revenue_this_week_cents,
       (f ->> 'revenue_total_cents')::bigint as revenue_total_cents, (f ->> 'pending_holds')::integer as pending_holds
from public.booking_figures(%(business_id)s, %(venue_id)s) f

-- ask_tool_delivery_performance --
-- Deliveries per provider in a named period.
select * from public.delivery_performance(%(business_id)s, %(period)s, %(venue_id)s)

-- ask_tool_campaign_results --
-- Automations and campaigns by attributed revenue.
select * from public.campaign_results(%(business_id)s, %(n)s)

-- ask_log_question --
-- Records a question, its tool calls and its answer (the service role writes the log).
insert into public.admin_questions (business_id, asked_by, question, backend, tool_calls, answer, refused, customer_ids, duration_ms)
values (%(business_id)s, %(asked_by)s, %(question)s, %(backend)s, %(tool_calls)s, %(answer)s, %(refused)s, %(customer_ids)s,
        %(duration_ms)s)
returning id
