-- Platform metrics (issue 14 item 4): the seed's essential metrics per business and platform-wide over
-- any window (app.metrics / public.get_metrics), and the per-minute counters the functions (requests
-- by function and status) and the worker (events by topic and outcome) write, which the metrics,
-- the Prometheus exposition at /functions/v1/metrics and the alert rules read.

-- section tables

/** Requests per minute, function and HTTP status, with their total and largest duration: the
    functions app adds its in-memory counts here every few seconds. Service only. */
create table app.function_stats (
  bucket timestamptz not null,
  function text not null,
  status integer not null,
  requests bigint not null default 0,
  total_ms double precision not null default 0,
  max_ms double precision not null default 0,
  slow bigint not null default 0,
  constraint function_stats_pkey primary key (bucket, function, status)
);

/** Outbox events handled per minute, topic and outcome (ok, retry, dead), with their handler time.
    Written by the worker in the transaction that acknowledges the event. Service only. */
create table app.handler_stats (
  bucket timestamptz not null,
  topic text not null,
  outcome text not null constraint handler_stats_outcome_valid check (outcome in ('ok', 'retry', 'dead')),
  events bigint not null default 0,
  total_ms double precision not null default 0,
  max_ms double precision not null default 0,
  constraint handler_stats_pkey primary key (bucket, topic, outcome)
);

-- section indexes
create index notification_log_business_created_idx on public.notification_log (business_id, created_at);
create index deliveries_business_created_idx on public.deliveries (business_id, created_at);
create index function_stats_function_idx on app.function_stats (function, bucket);

-- section private helpers

/** A ratio as a number in [0, 1], or null when nothing was counted. */
create function app.ratio(p_part numeric, p_whole numeric) returns numeric
language sql immutable
set search_path = ''
as $$
  select case when coalesce(p_whole, 0) = 0 then null else round(p_part / p_whole, 4) end
$$;
revoke all on function app.ratio(numeric, numeric) from public;
grant execute on function app.ratio(numeric, numeric) to authenticated, service_role;

/** The seed's essential metrics over [p_from, p_to), for one business (its owners and managers, the
    operator) or, with p_business_id null, the whole platform (the operator only); PT404 otherwise.
    Rates are in [0, 1] (null when nothing happened), money in minor units:
    - order_success_rate: orders placed in the window that were paid and not cancelled / orders placed
    - average_order_value_cents: mean total of the orders paid in the window
    - payment_failure_rate: failed payment attempts (Stripe payment_failed / async_payment_failed events)
      / (failed attempts + payments received)
    - otp_verification_rate: order-claim codes verified / codes sent
    - sms/voice/email_delivery_rate: messages sent or delivered / messages attempted (pending and skipped
      left out), per channel
    - webhook_failures: webhook requests (stripe, twilio, resend, delivery) answered 4xx/5xx (platform)
    - delivery_success_rate: deliveries delivered / deliveries finished (delivered, cancelled, failed);
      courier_network_share: delivered by Uber or DoorDash / delivered
    - booking_no_show_rate: no-shows / bookings whose session started in the window and were attended
      or missed (checked in, completed, no-show)
    - functions: per function, requests, error rate (5xx), client error rate (4xx), mean and max latency
      (platform only). */
create function app.metrics(p_business_id uuid, p_from timestamptz, p_to timestamptz) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  if p_from is null or p_to is null or p_from >= p_to then
    perform app.fail('22023', 'invalid_window', 'the window needs from < to');
  end if;
  if not (app.is_operator() or (p_business_id is not null and app.is_member(p_business_id, '{owner,manager}'))) then
    perform app.fail('PT404', 'not_found', 'no such business among those you manage');
  end if;

  with orders as (
    select count(*) as placed,
           count(*) filter (where o.payment_status <> 'unpaid' and o.payment_status <> 'failed' and o.status <> 'cancelled') as succeeded
    from public.orders o
    where (p_business_id is null or o.business_id = p_business_id) and o.placed_at >= p_from and o.placed_at < p_to
  ), paid as (
    select avg(o.total_cents) as aov, count(*) as n from public.orders o
    where (p_business_id is null or o.business_id = p_business_id) and o.paid_at >= p_from and o.paid_at < p_to
  ), payments as (
    select count(*) as n from public.payments p
    where (p_business_id is null or p.business_id = p_business_id) and p.created_at >= p_from and p.created_at < p_to
  ), failures as (
    select count(*) as n from public.stripe_events e
    where e.type in ('payment_intent.payment_failed', 'checkout.session.async_payment_failed')
      and (p_business_id is null or e.business_id = p_business_id
           or (e.payload -> 'data' -> 'object' -> 'metadata' ->> 'business_id') = p_business_id::text)
      and e.received_at >= p_from and e.received_at < p_to
  ), otp as (
    select count(*) as sent, count(*) filter (where c.verified_at is not null) as verified from app.customer_claim_codes c
    where (p_business_id is null or c.business_id = p_business_id) and c.created_at >= p_from and c.created_at < p_to
  ), messages as (
    select n.channel, count(*) filter (where n.status in ('sent', 'delivered')) as ok,
           count(*) filter (where n.status in ('sent', 'delivered', 'failed')) as attempted
    from public.notification_log n
    where (p_business_id is null or n.business_id = p_business_id) and n.created_at >= p_from and n.created_at < p_to
    group by n.channel
  ), deliveries as (
    select count(*) filter (where d.status = 'delivered') as delivered,
           count(*) filter (where d.status in ('delivered', 'cancelled', 'failed')) as finished,
           count(*) filter (where d.status = 'delivered' and d.provider in ('uber', 'doordash')) as by_network
    from public.deliveries d
    where (p_business_id is null or d.business_id = p_business_id) and d.created_at >= p_from and d.created_at < p_to
  ), bookings as (
    select count(*) filter (where k.status = 'no_show') as no_show,
           count(*) filter (where k.status in ('checked_in', 'completed', 'no_show')) as due
    from public.bookings k
    join public.activity_sessions s on s.business_id = k.business_id and s.id = k.session_id
    where (p_business_id is null or k.business_id = p_business_id) and s.starts_at >= p_from and s.starts_at < p_to
  ), fn as (
    select f.function, sum(f.requests) as requests, sum(f.requests) filter (where f.status >= 500) as errors,
           sum(f.requests) filter (where f.status between 400 and 499) as client_errors,
           sum(f.total_ms) as total_ms, max(f.max_ms) as max_ms, sum(f.slow) as slow
    from app.function_stats f
    where p_business_id is null and f.bucket >= p_from and f.bucket < p_to
    group by f.function
  )
  select jsonb_build_object(
    'business_id', p_business_id, 'from', p_from, 'to', p_to,
    'orders_placed', o.placed, 'order_success_rate', app.ratio(o.succeeded, o.placed),
    'orders_paid', pd.n, 'average_order_value_cents', round(pd.aov),
    'payments', pm.n, 'payment_failures', fl.n, 'payment_failure_rate', app.ratio(fl.n, fl.n + pm.n),
    'otp_sent', otp.sent, 'otp_verification_rate', app.ratio(otp.verified, otp.sent),
    'sms_delivery_rate', (select app.ratio(m.ok, m.attempted) from messages m where m.channel = 'sms'),
    'voice_delivery_rate', (select app.ratio(m.ok, m.attempted) from messages m where m.channel = 'voice'),
    'email_delivery_rate', (select app.ratio(m.ok, m.attempted) from messages m where m.channel = 'email'),
    'webhook_failures', case when p_business_id is null then
      coalesce((select sum(coalesce(x.client_errors, 0) + coalesce(x.errors, 0)) from fn x
                where x.function in ('stripe-webhook', 'twilio-sms', 'twilio-voice', 'resend-webhook', 'delivery-webhook')), 0) end,
    'deliveries_finished', dl.finished, 'delivery_success_rate', app.ratio(dl.delivered, dl.finished),
    'courier_network_share', app.ratio(dl.by_network, dl.delivered),
    'bookings_due', bk.due, 'booking_no_show_rate', app.ratio(bk.no_show, bk.due),
    'functions', case when p_business_id is null then coalesce((
      select jsonb_object_agg(x.function, jsonb_build_object(
               'requests', x.requests, 'error_rate', coalesce(app.ratio(x.errors, x.requests), 0),
               'client_error_rate', coalesce(app.ratio(x.client_errors, x.requests), 0),
               'mean_ms', round((x.total_ms / x.requests)::numeric, 1), 'max_ms', round(x.max_ms::numeric, 1), 'slow', x.slow))
      from fn x), '{}'::jsonb) end)
  into v_result
  from orders o, paid pd, payments pm, failures fl, otp, deliveries dl, bookings bk;
  return v_result;
end
$$;
revoke all on function app.metrics(uuid, timestamptz, timestamptz) from public;
grant execute on function app.metrics(uuid, timestamptz, timestamptz) to authenticated, service_role;

/** Adds one flush of the functions' request counters (a JSON array of {bucket, function, status,
    requests, total_ms, max_ms, slow}). Service only. */
create function app.record_function_stats(p_rows jsonb) returns integer
language sql volatile security definer
set search_path = ''
as $$
  with rows as (
    insert into app.function_stats as f (bucket, function, status, requests, total_ms, max_ms, slow)
    select (r ->> 'bucket')::timestamptz, r ->> 'function', (r ->> 'status')::integer, (r ->> 'requests')::bigint,
           (r ->> 'total_ms')::double precision, (r ->> 'max_ms')::double precision, coalesce((r ->> 'slow')::bigint, 0)
    from jsonb_array_elements(p_rows) r
    on conflict (bucket, function, status) do update
      set requests = f.requests + excluded.requests, total_ms = f.total_ms + excluded.total_ms,
          max_ms = greatest(f.max_ms, excluded.max_ms), slow = f.slow + excluded.slow
    returning 1
  )
  select count(*)::integer from rows
$$;
revoke all on function app.record_function_stats(jsonb) from public;
grant execute on function app.record_function_stats(jsonb) to service_role;

/** Counts one handled event of a topic in the current minute (the worker, in the event's transaction). */
create function app.record_handler_stat(p_topic text, p_outcome text, p_ms double precision) returns void
language sql volatile security definer
set search_path = ''
as $$
  insert into app.handler_stats as h (bucket, topic, outcome, events, total_ms, max_ms)
  values (date_trunc('minute', now()), p_topic, p_outcome, 1, p_ms, p_ms)
  on conflict (bucket, topic, outcome) do update
    set events = h.events + 1, total_ms = h.total_ms + excluded.total_ms, max_ms = greatest(h.max_ms, excluded.max_ms)
$$;
revoke all on function app.record_handler_stat(text, text, double precision) from public;
grant execute on function app.record_handler_stat(text, text, double precision) to service_role;

-- section views

/** The functions' requests per day and function, for the operator's dashboard (others see no rows). */
create view public.operator_function_stats with (security_invoker = false) as
select date_trunc('day', f.bucket) as day, f.function, sum(f.requests) as requests,
       sum(f.requests) filter (where f.status >= 500) as server_errors,
       sum(f.requests) filter (where f.status between 400 and 499) as client_errors,
       round((sum(f.total_ms) / nullif(sum(f.requests), 0))::numeric, 1) as mean_ms, round(max(f.max_ms)::numeric, 1) as max_ms,
       sum(f.slow) as slow
from app.function_stats f
where app.is_operator()
group by 1, 2;
revoke all on public.operator_function_stats from anon, authenticated;
grant select on public.operator_function_stats to authenticated;

/** Orders per business, venue and day (the business's time zone), for the merchant's dashboard: placed,
    paid, cancelled, success rate, revenue and average order value. Row-level security applies (staff see
    their venues, customers their own orders). */
create view public.business_daily_orders with (security_invoker = true) as
select o.business_id, o.venue_id, (o.placed_at at time zone b.time_zone)::date as day, count(*) as orders_placed,
       count(*) filter (where o.payment_status <> 'unpaid' and o.payment_status <> 'failed') as orders_paid,
       count(*) filter (where o.status = 'cancelled') as orders_cancelled,
       app.ratio(count(*) filter (where o.payment_status not in ('unpaid', 'failed') and o.status <> 'cancelled'), count(*)) as success_rate,
       coalesce(sum(o.total_cents - o.refunded_cents) filter (where o.payment_status <> 'unpaid' and o.payment_status <> 'failed'), 0)
         as revenue_cents,
       round(avg(o.total_cents) filter (where o.payment_status <> 'unpaid' and o.payment_status <> 'failed')) as average_order_value_cents
from public.orders o
join public.businesses b on b.id = o.business_id
group by 1, 2, 3;
revoke all on public.business_daily_orders from anon, authenticated;
grant select on public.business_daily_orders to authenticated;

/** Messages per business, channel and day: attempted, delivered (sent or delivered), failed, delivery
    rate, for the merchant's dashboard (row-level security of notification_log applies). */
create view public.business_daily_messages with (security_invoker = true) as
select n.business_id, n.channel, (n.created_at at time zone b.time_zone)::date as day,
       count(*) filter (where n.status in ('sent', 'delivered', 'failed')) as attempted,
       count(*) filter (where n.status in ('sent', 'delivered')) as delivered,
       count(*) filter (where n.status = 'failed') as failed,
       app.ratio(count(*) filter (where n.status in ('sent', 'delivered')), count(*) filter (where n.status in ('sent', 'delivered', 'failed')))
         as delivery_rate
from public.notification_log n
join public.businesses b on b.id = n.business_id
group by 1, 2, 3;
revoke all on public.business_daily_messages from anon, authenticated;
grant select on public.business_daily_messages to authenticated;

-- section rpc

/** The essential metrics over a window (app.metrics): business_id null for the platform (operator). */
create function public.get_metrics(business_id uuid, since timestamptz, until timestamptz) returns jsonb
language sql stable
set search_path = ''
as $$
  select app.metrics(business_id, since, until)
$$;
revoke all on function public.get_metrics(uuid, timestamptz, timestamptz) from public;
grant execute on function public.get_metrics(uuid, timestamptz, timestamptz) to authenticated, service_role;

/** What /functions/v1/metrics exposes about the worker and the outbox: queue depth and dead letters,
    events handled per topic and outcome (all time), handler time, provider refusals in the last hour.
    Service only. */
create function app.worker_metrics() returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'outbox', (select to_jsonb(s) from app.outbox_stats() s),
    'handlers', coalesce((select jsonb_agg(jsonb_build_object('topic', h.topic, 'outcome', h.outcome, 'events', h.events))
                          from (select topic, outcome, sum(events) as events from app.handler_stats group by 1, 2) h), '[]'::jsonb),
    'handler_time', coalesce((select jsonb_agg(jsonb_build_object('topic', h.topic, 'total_ms', h.total_ms, 'max_ms_1h', h.max_1h))
                              from (select topic, sum(total_ms) as total_ms,
                                           max(max_ms) filter (where bucket >= now() - interval '1 hour') as max_1h
                                    from app.handler_stats group by 1) h), '[]'::jsonb),
    'provider_errors', coalesce((select jsonb_agg(jsonb_build_object('channel', n.channel, 'provider', n.provider, 'n', n.n))
                                 from (select channel, provider, count(*) as n from public.notification_log
                                       where status = 'failed' and created_at >= now() - interval '1 hour' group by 1, 2) n), '[]'::jsonb))
$$;
revoke all on function app.worker_metrics() from public;
grant execute on function app.worker_metrics() to service_role;
