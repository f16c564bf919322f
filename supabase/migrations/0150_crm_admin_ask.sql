-- The conversational admin ("ask", issue 17): the questions log, and the read-only tools the ask
-- function calls. Every tool is a security-invoker SQL function, so it runs under the caller's own
-- role and claims and RLS limits each answer exactly as it limits the dashboard: a venue-limited
-- manager's answers cover their venues only, another tenant's rows are never seen.

-- section tables

/** One question asked of the conversational admin: who asked, which backend understood it, the tool
    calls made (name, arguments, outcome, row count) and the answer given, with the customers the answer
    names (customer_ids), so erasing a customer erases their name here too. Written by the ask function
    (service role) only; owners read their business's questions, a manager reads the ones they asked. */
create table public.admin_questions (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  asked_by uuid,
  question text not null constraint admin_questions_question_length check (char_length(question) between 1 and 1000),
  backend text not null constraint admin_questions_backend_valid check (backend in ('rules', 'llm', 'rules-fallback')),
  tool_calls jsonb not null default '[]'::jsonb constraint admin_questions_tool_calls_array check (jsonb_typeof(tool_calls) = 'array'),
  answer text not null,
  refused boolean not null default false,
  customer_ids uuid[] not null default '{}',
  duration_ms integer constraint admin_questions_duration_nonnegative check (duration_ms >= 0),
  created_at timestamptz not null default now(),
  constraint admin_questions_pkey primary key (business_id, id)
);
alter table public.admin_questions enable row level security;

-- section indexes

create index admin_questions_business_created_idx on public.admin_questions (business_id, created_at desc);
create index admin_questions_asked_by_idx on public.admin_questions (business_id, asked_by);
create index admin_questions_customers_idx on public.admin_questions using gin (customer_ids);
create index stock_items_business_venue_idx on public.stock_items (business_id, venue_id);

-- section private helpers

/** [starts_at, ends_at) of a named period in a time zone: today, yesterday, this_week (Monday start,
    to the end of today), last_week, this_month, last_month, last_7_days and last_30_days (today
    included), all_time. Raises 22023 (invalid_period). */
create function app.period_bounds(p_period text, p_time_zone text, out starts_at timestamptz, out ends_at timestamptz)
language plpgsql stable
set search_path = ''
as $$
declare
  v_today date := (now() at time zone p_time_zone)::date;
  v_week date := date_trunc('week', (now() at time zone p_time_zone)::date)::date;
  v_month date := date_trunc('month', (now() at time zone p_time_zone)::date)::date;
  v_from date;
  v_to date;
begin
  case p_period
    when 'today' then v_from := v_today; v_to := v_today + 1;
    when 'yesterday' then v_from := v_today - 1; v_to := v_today;
    when 'this_week' then v_from := v_week; v_to := v_today + 1;
    when 'last_week' then v_from := v_week - 7; v_to := v_week;
    when 'this_month' then v_from := v_month; v_to := v_today + 1;
    when 'last_month' then v_from := (v_month - interval '1 month')::date; v_to := v_month;
    when 'last_7_days' then v_from := v_today - 6; v_to := v_today + 1;
    when 'last_30_days' then v_from := v_today - 29; v_to := v_today + 1;
    when 'all_time' then
      starts_at := '-infinity';
      ends_at := 'infinity';
      return;
    else
      perform app.fail('22023', 'invalid_period', format('unknown period %L: today, yesterday, this_week, last_week, '
        'this_month, last_month, last_7_days, last_30_days or all_time', p_period));
  end case;
  starts_at := v_from::timestamp at time zone p_time_zone;
  ends_at := v_to::timestamp at time zone p_time_zone;
end
$$;
revoke all on function app.period_bounds(text, text) from public;
grant execute on function app.period_bounds(text, text) to authenticated, service_role;

/** Append-only, except while a customer the answer names is being erased (app.anonymise_customer sets
    brigade.anonymising): then only the answer text may change. */
create function app.tg_admin_questions_append_only() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'UPDATE' and nullif(current_setting('brigade.anonymising', true), '')::uuid = any (old.customer_ids)
     and (to_jsonb(new) - 'answer') = (to_jsonb(old) - 'answer') then
    return new;
  end if;
  perform app.fail('BR006', 'append_only', format('%s is append-only: %s is not allowed', tg_table_name, lower(tg_op)));
  return null;
end
$$;
revoke all on function app.tg_admin_questions_append_only() from public;

/** When a customer is erased, their name leaves every logged answer that named them. */
create function app.tg_customers_erase_from_admin_questions() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if coalesce(old.full_name, '') <> '' then
    update public.admin_questions q set answer = replace(q.answer, old.full_name, 'an erased customer')
    where q.business_id = new.business_id and q.customer_ids @> array[new.id];
  end if;
  return null;
end
$$;
revoke all on function app.tg_customers_erase_from_admin_questions() from public;

-- section triggers

create trigger admin_questions_append_only before update or delete on public.admin_questions
  for each row execute function app.tg_admin_questions_append_only();
create trigger customers_erase_from_admin_questions after update of anonymised_at on public.customers
  for each row when (old.anonymised_at is null and new.anonymised_at is not null)
  execute function app.tg_customers_erase_from_admin_questions();

-- section policies

create policy "owners read the questions asked" on public.admin_questions for select to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));
create policy "managers read the questions they asked" on public.admin_questions for select to authenticated
  using (asked_by = (select auth.uid()) and business_id in (select app.my_business_ids('{manager}')));

-- section grants

revoke all on public.admin_questions from anon, authenticated;
grant select on public.admin_questions to authenticated;
grant all on public.admin_questions to service_role;

-- section rpc

/** What the ask function needs to know about its caller before it answers: their role (owner or
    manager), the venues they may ask about, the currency and which modules are on. Raises 42501
    (not_manager) for anyone but an owner or a manager of the business, PT404 (not_found) for no
    such business. */
create function public.ask_context(business_id uuid) returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_business public.businesses;
begin
  if not app.is_member(ask_context.business_id, '{owner,manager}') then
    perform app.fail('42501', 'not_manager', 'only owners and managers of the business may ask about it');
  end if;
  select * into v_business from public.businesses b where b.id = ask_context.business_id;
  if v_business.id is null then
    perform app.fail('PT404', 'not_found', 'no such business');
  end if;
  return jsonb_build_object(
    'business_id', v_business.id, 'name', v_business.name, 'currency', v_business.currency, 'time_zone', v_business.time_zone,
    'role', case when app.is_member(v_business.id, '{owner}') then 'owner' else 'manager' end,
    'venues', coalesce((select jsonb_agg(jsonb_build_object('id', v.id, 'name', v.name) order by v.name, v.id)
                        from app.my_venue_keys('{owner,manager}') k
                        join public.venues v on v.business_id = k.business_id and v.id = k.venue_id
                        where k.business_id = v_business.id), '[]'::jsonb),
    'modules', (select jsonb_object_agg(m.key, app.module_enabled(v_business.id, m.key)) from public.modules m));
end
$$;
revoke all on function public.ask_context(uuid) from public;
grant execute on function public.ask_context(uuid) to authenticated, service_role;

/** The top customers by number of orders (visits), from the materialized stats; ties by spend. */
create function public.top_customers_by_visits(business_id uuid, n integer default 5, venue_id uuid default null)
returns table (customer_id uuid, full_name text, total_orders bigint, total_spent_cents bigint, last_order_at timestamptz)
language sql stable
set search_path = ''
as $$
  select s.customer_id, c.full_name, sum(s.total_orders)::bigint, sum(s.total_spent_cents)::bigint, max(s.last_order_at)
  from public.customer_venue_stats s join public.customers c on c.business_id = s.business_id and c.id = s.customer_id
  where s.business_id = top_customers_by_visits.business_id
    and (top_customers_by_visits.venue_id is null or s.venue_id = top_customers_by_visits.venue_id)
    and c.anonymised_at is null
  group by s.customer_id, c.full_name
  order by sum(s.total_orders) desc, sum(s.total_spent_cents) desc, s.customer_id
  limit least(greatest(n, 1), 1000)
$$;
revoke all on function public.top_customers_by_visits(uuid, integer, uuid) from public;
grant execute on function public.top_customers_by_visits(uuid, integer, uuid) to authenticated, service_role;

/** Paid orders and revenue (after refunds, as venue_sales_summary counts it) in a period, each
    order's period taken in its venue's time zone. Raises 22023 (invalid_period). */
create function public.sales_summary(business_id uuid, period text default 'today', venue_id uuid default null)
returns table (period text, orders bigint, revenue_cents bigint, average_order_cents bigint)
language sql stable
set search_path = ''
as $$
  select sales_summary.period, count(o.id), coalesce(sum(o.total_cents - o.refunded_cents), 0)::bigint,
         coalesce(round(avg(o.total_cents - o.refunded_cents)), 0)::bigint
  from public.orders o
  join public.venues v on v.business_id = o.business_id and v.id = o.venue_id
  cross join lateral app.period_bounds(sales_summary.period, v.time_zone) p
  where o.business_id = sales_summary.business_id and (sales_summary.venue_id is null or o.venue_id = sales_summary.venue_id)
    and o.paid_at is not null and o.paid_at >= p.starts_at and o.paid_at < p.ends_at
$$;
revoke all on function public.sales_summary(uuid, text, uuid) from public;
grant execute on function public.sales_summary(uuid, text, uuid) to authenticated, service_role;

/** Paid orders and revenue per day for the last `days` days (1–92, today included), zero days too;
    each order's day is its venue's local date, the days are the business's. */
create function public.sales_by_day(business_id uuid, days integer default 7, venue_id uuid default null)
returns table (day date, orders bigint, revenue_cents bigint)
language sql stable
set search_path = ''
as $$
  with today as (
    select (now() at time zone b.time_zone)::date as d from public.businesses b where b.id = sales_by_day.business_id
  ), per_day as (
    select (o.paid_at at time zone v.time_zone)::date as d, count(*) as orders, sum(o.total_cents - o.refunded_cents) as revenue
    from public.orders o join public.venues v on v.business_id = o.business_id and v.id = o.venue_id
    where o.business_id = sales_by_day.business_id and (sales_by_day.venue_id is null or o.venue_id = sales_by_day.venue_id)
      and o.paid_at is not null and o.paid_at >= now() - make_interval(days => least(greatest(days, 1), 92) + 2)
    group by 1
  )
  select g.d::date, coalesce(p.orders, 0)::bigint, coalesce(p.revenue, 0)::bigint
  from today t
  cross join generate_series(t.d - (least(greatest(sales_by_day.days, 1), 92) - 1), t.d, interval '1 day') g(d)
  left join per_day p on p.d = g.d::date
  order by 1
$$;
revoke all on function public.sales_by_day(uuid, integer, uuid) from public;
grant execute on function public.sales_by_day(uuid, integer, uuid) to authenticated, service_role;

/** Paid orders and revenue per venue in a period (venues the caller sees orders of). */
create function public.sales_by_venue(business_id uuid, period text default 'today')
returns table (venue_id uuid, venue_name text, orders bigint, revenue_cents bigint)
language sql stable
set search_path = ''
as $$
  select v.id, v.name, count(o.id), coalesce(sum(o.total_cents - o.refunded_cents), 0)::bigint
  from public.orders o
  join public.venues v on v.business_id = o.business_id and v.id = o.venue_id
  cross join lateral app.period_bounds(sales_by_venue.period, v.time_zone) p
  where o.business_id = sales_by_venue.business_id
    and o.paid_at is not null and o.paid_at >= p.starts_at and o.paid_at < p.ends_at
  group by v.id, v.name
  order by 4 desc, v.name, v.id
$$;
revoke all on function public.sales_by_venue(uuid, text) from public;
grant execute on function public.sales_by_venue(uuid, text) to authenticated, service_role;

/** Best sellers in a period: units sold (refunded units excluded) and their revenue per product. */
create function public.best_sellers(business_id uuid, period text default 'this_week', n integer default 5, venue_id uuid default null)
returns table (product_id uuid, product_name text, quantity bigint, revenue_cents bigint)
language sql stable
set search_path = ''
as $$
  select i.product_id, min(i.name), sum(i.quantity - i.refunded_quantity)::bigint,
         sum(round(i.line_total_cents::numeric * (i.quantity - i.refunded_quantity) / i.quantity))::bigint
  from public.order_items i
  join public.orders o on o.business_id = i.business_id and o.id = i.order_id
  join public.venues v on v.business_id = o.business_id and v.id = o.venue_id
  cross join lateral app.period_bounds(best_sellers.period, v.time_zone) p
  where i.business_id = best_sellers.business_id and (best_sellers.venue_id is null or o.venue_id = best_sellers.venue_id)
    and o.paid_at is not null and o.paid_at >= p.starts_at and o.paid_at < p.ends_at
  group by i.product_id
  having sum(i.quantity - i.refunded_quantity) > 0
  order by 3 desc, 4 desc, 1
  limit least(greatest(n, 1), 100)
$$;
revoke all on function public.best_sellers(uuid, text, integer, uuid) from public;
grant execute on function public.best_sellers(uuid, text, integer, uuid) to authenticated, service_role;

/** Stock at risk: items out (quantity ≤ 0), critical (≤ critical level) or low (≤ twice the
    critical level), the most urgent first. */
create function public.stock_at_risk(business_id uuid, venue_id uuid default null)
returns table (venue_id uuid, venue_name text, sku text, name text, unit text, quantity numeric, critical_level numeric, status text)
language sql stable
set search_path = ''
as $$
  select s.venue_id, v.name, s.sku, s.name, s.unit, s.quantity, s.critical_level,
         case when s.quantity <= 0 then 'out' when s.quantity <= s.critical_level then 'critical' else 'low' end
  from public.stock_items s join public.venues v on v.business_id = s.business_id and v.id = s.venue_id
  where s.business_id = stock_at_risk.business_id and (stock_at_risk.venue_id is null or s.venue_id = stock_at_risk.venue_id)
    and (s.quantity <= 0 or s.quantity <= 2 * s.critical_level)
  order by case when s.quantity <= 0 then 0 when s.quantity <= s.critical_level then 1 else 2 end,
           s.quantity / nullif(s.critical_level, 0) nulls first, s.name, s.venue_id
$$;
revoke all on function public.stock_at_risk(uuid, uuid) from public;
grant execute on function public.stock_at_risk(uuid, uuid) to authenticated, service_role;

/** Deliveries created in a period, per provider: how many, delivered, cancelled or failed, the
    average minutes from creation to drop-off and the average rating. */
create function public.delivery_performance(business_id uuid, period text default 'last_7_days', venue_id uuid default null)
returns table (provider text, deliveries bigint, delivered bigint, cancelled bigint, failed bigint,
               avg_minutes_to_deliver numeric, avg_rating numeric)
language sql stable
set search_path = ''
as $$
  select coalesce(d.provider, 'unassigned'), count(*),
         count(*) filter (where d.status = 'delivered'), count(*) filter (where d.status = 'cancelled'),
         count(*) filter (where d.status = 'failed'),
         round(avg(extract(epoch from d.delivered_at - d.created_at) / 60) filter (where d.delivered_at is not null), 1),
         round(avg(d.rating), 2)
  from public.deliveries d
  join public.venues v on v.business_id = d.business_id and v.id = d.venue_id
  cross join lateral app.period_bounds(delivery_performance.period, v.time_zone) p
  where d.business_id = delivery_performance.business_id
    and (delivery_performance.venue_id is null or d.venue_id = delivery_performance.venue_id)
    and d.created_at >= p.starts_at and d.created_at < p.ends_at
  group by 1
  order by 2 desc, 1
$$;
revoke all on function public.delivery_performance(uuid, text, uuid) from public;
grant execute on function public.delivery_performance(uuid, text, uuid) to authenticated, service_role;

/** Automations and campaigns by attributed revenue (campaign_performance, without its costs). */
create function public.campaign_results(business_id uuid, n integer default 5)
returns table (kind text, id uuid, name text, channel text, sends bigint, delivered bigint, orders bigint, revenue_cents bigint)
language sql stable
set search_path = ''
as $$
  select p.kind, p.id, p.name, p.channel::text, p.sends, p.delivered, p.orders, p.revenue_cents::bigint
  from public.campaign_performance p
  where p.business_id = campaign_results.business_id
  order by p.revenue_cents desc, p.orders desc, p.sends desc, p.name, p.id
  limit least(greatest(n, 1), 100)
$$;
revoke all on function public.campaign_results(uuid, integer) from public;
grant execute on function public.campaign_results(uuid, integer) to authenticated, service_role;
