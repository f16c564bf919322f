-- Alerts (issue 14 item 5): rules in the database (what is measured, threshold, window, how often to
-- remind, who is told); app.evaluate_alerts, run every minute by the worker (job platform.alerts),
-- opens an alert once per rule and subject, re-notifies on the rule's schedule, closes it when the
-- condition clears, and returns the notifications to send (email, webhook such as Slack's). The
-- operator lists and acknowledges alerts through `admin`. Codes in docs/errors.md.

-- section tables

/** An alert rule. metric is one of the measures app.alert_values computes; the condition is
    value >= threshold for counts, value > threshold for rates (a fraction: 0.05 = 5 %), counted over the last window_minutes, and
    only once at least min_count things were counted (rates). A count alerts at the threshold, a rate
    above it. notify_emails / notify_webhooks: who is
    told (empty: the operator's defaults from the settings alert_emails / alert_webhook_url). */
create table app.alert_rules (
  key text primary key constraint alert_rules_key_format check (key ~ '^[a-z][a-z0-9_]{1,60}$'),
  description text not null,
  metric text not null constraint alert_rules_metric_valid check (metric in (
    'payment_webhook_failures', 'dead_letters', 'error_rate', 'slow_requests', 'provider_failures', 'venue_payment_failure_rate')),
  threshold numeric not null constraint alert_rules_threshold_positive check (threshold > 0),
  window_minutes integer not null default 15 constraint alert_rules_window_range check (window_minutes between 1 and 10080),
  min_count integer not null default 0 constraint alert_rules_min_count_nonnegative check (min_count >= 0),
  renotify_minutes integer not null default 60 constraint alert_rules_renotify_range check (renotify_minutes between 1 and 10080),
  notify_emails text[] not null default '{}',
  notify_webhooks text[] not null default '{}',
  is_active boolean not null default true,
  updated_at timestamptz not null default now()
);

insert into app.alert_rules (key, description, metric, threshold, window_minutes, min_count, renotify_minutes) values
  ('payment_webhook_failures', 'Stripe webhook requests answered 4xx/5xx', 'payment_webhook_failures', 1, 15, 0, 60),
  ('dead_letters', 'Outbox events in the dead-letter queue', 'dead_letters', 1, 1, 0, 240),
  ('error_rate', 'Function requests answered 5xx, above 5 % (at least 20 requests)', 'error_rate', 0.05, 5, 20, 30),
  ('slow_requests', 'Function requests slower than 1 s', 'slow_requests', 5, 5, 0, 60),
  ('provider_failures', 'Messages a provider (Twilio, Resend) refused, per channel', 'provider_failures', 5, 15, 0, 60),
  ('venue_payment_failures', 'A venue''s failed payment attempts above 30 % (at least 5 attempts)', 'venue_payment_failure_rate', 0.3, 60, 5, 120);

/** An alert: opened once per rule and subject (a venue, a channel, or '' for the platform) while its
    condition holds, re-notified every renotify_minutes, closed when the condition clears; the operator
    acknowledges it (the reminders stop, it stays open until it clears). */
create table app.alerts (
  id bigint generated always as identity primary key,
  rule_key text not null references app.alert_rules (key) on delete cascade,
  subject text not null default '',
  value numeric not null,
  threshold numeric not null,
  opened_at timestamptz not null,
  last_notified_at timestamptz not null,
  notifications integer not null default 1,
  acknowledged_at timestamptz,
  acknowledged_by uuid,
  closed_at timestamptz
);

-- section indexes
create unique index alerts_one_open_idx on app.alerts (rule_key, subject) where closed_at is null;
create index stripe_events_failed_received_idx on public.stripe_events (received_at)
  where type in ('payment_intent.payment_failed', 'checkout.session.async_payment_failed');

-- section private helpers

/** The current value of a rule's metric per subject, over the window ending at p_now: only subjects whose
    counted total reaches min_count. */
create function app.alert_values(p_rule app.alert_rules, p_now timestamptz)
returns table (subject text, value numeric)
language plpgsql stable
set search_path = ''
as $$
declare
  v_from timestamptz := p_now - make_interval(mins => p_rule.window_minutes);
begin
  if p_rule.metric = 'payment_webhook_failures' then
    return query select ''::text, coalesce(sum(f.requests), 0)::numeric from app.function_stats f
      where f.function = 'stripe-webhook' and f.status >= 400 and f.bucket >= date_trunc('minute', v_from) and f.bucket <= p_now;
  elsif p_rule.metric = 'dead_letters' then
    return query select ''::text, s.dead::numeric from app.outbox_stats() s;
  elsif p_rule.metric = 'error_rate' then
    return query select ''::text, round(coalesce(sum(f.requests) filter (where f.status >= 500), 0)::numeric / sum(f.requests), 4)
      from app.function_stats f
      where f.bucket >= date_trunc('minute', v_from) and f.bucket <= p_now
      having sum(f.requests) >= greatest(p_rule.min_count, 1);
  elsif p_rule.metric = 'slow_requests' then
    return query select ''::text, coalesce(sum(f.slow), 0)::numeric from app.function_stats f
      where f.bucket >= date_trunc('minute', v_from) and f.bucket <= p_now;
  elsif p_rule.metric = 'provider_failures' then
    return query select n.channel, count(*)::numeric from public.notification_log n
      where n.status = 'failed' and n.created_at >= v_from and n.created_at <= p_now group by n.channel;
  elsif p_rule.metric = 'venue_payment_failure_rate' then
    return query
      with attempts as (
        select (e.payload -> 'data' -> 'object' -> 'metadata' ->> 'business_id') as business_id, o.venue_id::text as venue_id, 1 as failed
        from public.stripe_events e
        join public.orders o on o.id = (e.payload -> 'data' -> 'object' -> 'metadata' ->> 'order_id')::uuid
        where e.type in ('payment_intent.payment_failed', 'checkout.session.async_payment_failed')
          and e.received_at >= v_from and e.received_at <= p_now
          and e.payload -> 'data' -> 'object' -> 'metadata' ->> 'order_id' ~ '^[0-9a-f-]{36}$'
        union all
        select p.business_id::text, p.venue_id::text, 0 from public.payments p where p.created_at >= v_from and p.created_at <= p_now
      )
      select a.business_id || '/' || a.venue_id, round(sum(a.failed)::numeric / count(*), 4)
      from attempts a group by a.business_id, a.venue_id having count(*) >= greatest(p_rule.min_count, 1);
  end if;
end
$$;
revoke all on function app.alert_values(app.alert_rules, timestamptz) from public;

/** One evaluation of every active rule as of p_now: opens, re-notifies and closes alerts, and returns
    what to tell whom: [{alert_id, rule, description, subject, action (opened | renotified | closed),
    value, threshold, emails, webhooks}]. Acknowledged alerts are not re-notified. Service only. */
create function app.evaluate_alerts(p_now timestamptz default now()) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_rule app.alert_rules;
  v_value record;
  v_alert app.alerts;
  v_out jsonb := '[]'::jsonb;
  v_seen text[];
begin
  for v_rule in select r.* from app.alert_rules r where r.is_active order by r.key loop
    v_seen := '{}';
    for v_value in select * from app.alert_values(v_rule, p_now) loop
      -- a count alerts when it reaches the threshold, a rate when it goes above it ("error rate > 5 %")
      if v_value.value < v_rule.threshold or (v_rule.metric like '%rate' and v_value.value = v_rule.threshold) then
        continue;
      end if;
      v_seen := v_seen || v_value.subject;
      select a.* into v_alert from app.alerts a where a.rule_key = v_rule.key and a.subject = v_value.subject and a.closed_at is null
      for update;
      if v_alert.id is null then
        insert into app.alerts (rule_key, subject, value, threshold, opened_at, last_notified_at)
        values (v_rule.key, v_value.subject, v_value.value, v_rule.threshold, p_now, p_now)
        returning * into v_alert;
        v_out := v_out || jsonb_build_object('action', 'opened', 'alert_id', v_alert.id);
      elsif v_alert.acknowledged_at is null and v_alert.last_notified_at + make_interval(mins => v_rule.renotify_minutes) <= p_now then
        update app.alerts set value = v_value.value, last_notified_at = p_now, notifications = notifications + 1 where id = v_alert.id
        returning * into v_alert;
        v_out := v_out || jsonb_build_object('action', 'renotified', 'alert_id', v_alert.id);
      else
        update app.alerts set value = v_value.value where id = v_alert.id;
      end if;
      v_alert := null;
    end loop;
    -- open alerts of this rule whose condition no longer holds
    for v_alert in
      update app.alerts a set closed_at = p_now
      where a.rule_key = v_rule.key and a.closed_at is null and not (a.subject = any (v_seen))
      returning a.*
    loop
      v_out := v_out || jsonb_build_object('action', 'closed', 'alert_id', v_alert.id);
    end loop;
  end loop;
  -- alerts of rules switched off close too
  for v_alert in
    update app.alerts a set closed_at = p_now from app.alert_rules r
    where r.key = a.rule_key and not r.is_active and a.closed_at is null returning a.*
  loop
    v_out := v_out || jsonb_build_object('action', 'closed', 'alert_id', v_alert.id);
  end loop;
  return coalesce((
    select jsonb_agg(jsonb_build_object('alert_id', a.id, 'rule', a.rule_key, 'description', r.description, 'subject', a.subject,
                                        'action', x ->> 'action', 'value', a.value, 'threshold', a.threshold,
                                        'notifications', a.notifications, 'emails', to_jsonb(r.notify_emails),
                                        'webhooks', to_jsonb(r.notify_webhooks)) order by o)
    from jsonb_array_elements(v_out) with ordinality as e (x, o)
    join app.alerts a on a.id = (x ->> 'alert_id')::bigint
    join app.alert_rules r on r.key = a.rule_key), '[]'::jsonb);
end
$$;
revoke all on function app.evaluate_alerts(timestamptz) from public;
grant execute on function app.evaluate_alerts(timestamptz) to service_role;

-- section rpc

/** Alerts for the operator, newest first: open only (p_open) or all. Raises 42501 for anyone else. */
create function app.list_alerts(p_open boolean default true, p_limit integer default 100) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  if not app.is_operator() then
    perform app.fail('42501', 'operator_only', 'only the platform operator lists alerts');
  end if;
  return coalesce((
    select jsonb_agg(to_jsonb(x) order by x.opened_at desc, x.id desc)
    from (select a.id, a.rule_key, r.description, a.subject, a.value, a.threshold, a.opened_at, a.last_notified_at, a.notifications,
                 a.acknowledged_at, a.acknowledged_by, a.closed_at
          from app.alerts a join app.alert_rules r on r.key = a.rule_key
          where not p_open or a.closed_at is null
          order by a.opened_at desc, a.id desc
          limit least(greatest(coalesce(p_limit, 100), 1), 1000)) x), '[]'::jsonb);
end
$$;
revoke all on function app.list_alerts(boolean, integer) from public;
grant execute on function app.list_alerts(boolean, integer) to authenticated, service_role;

/** The operator acknowledges an alert: no more reminders for it. Raises 42501 (not the operator),
    PT404 (no such alert); acknowledging twice keeps the first time. */
create function app.acknowledge_alert(p_alert_id bigint) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_alert app.alerts;
begin
  if not app.is_operator() then
    perform app.fail('42501', 'operator_only', 'only the platform operator acknowledges alerts');
  end if;
  update app.alerts set acknowledged_at = coalesce(acknowledged_at, now()),
                        acknowledged_by = coalesce(acknowledged_by, (select auth.uid()))
  where id = p_alert_id returning * into v_alert;
  if v_alert.id is null then
    perform app.fail('PT404', 'alert_not_found', 'no such alert');
  end if;
  return to_jsonb(v_alert);
end
$$;
revoke all on function app.acknowledge_alert(bigint) from public;
grant execute on function app.acknowledge_alert(bigint) to authenticated, service_role;
