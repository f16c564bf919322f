-- The operator's platform metrics (0052) add what AI phone calls used in the last 30 days, from the
-- voice credit ledger (0040): credits burned and call seconds (the Twilio cost of outbound "ready"
-- calls stays in voice_cost_30d_cents, from notification_log).

create or replace view public.operator_platform_metrics as
select
  (select count(*) from public.businesses b where b.status = 'active') as active_businesses,
  (select count(*) from public.businesses b where b.status = 'suspended') as suspended_businesses,
  (select count(*) from public.business_subscriptions s where s.status = 'trial') as trialing_businesses,
  (select count(*) from public.storefront_settings sf where sf.is_published) as live_storefronts,
  (select coalesce(sum(s.monthly_total_cents), 0) from public.business_subscriptions s
   where s.status in ('active', 'past_due')) as mrr_cents,
  (select count(*) from public.business_subscriptions s where s.canceled_at >= now() - interval '30 days') as churned_30d,
  (select round(count(*) filter (where s.canceled_at >= now() - interval '30 days')::numeric
                / nullif(count(*) filter (where s.status in ('active', 'past_due') or s.canceled_at >= now() - interval '30 days'), 0), 4)
   from public.business_subscriptions s) as churn_rate_30d,
  (select count(*) from public.orders o where o.paid_at is not null) as orders_total,
  (select count(*) from public.orders o where o.paid_at >= now() - interval '30 days') as orders_30d,
  (select coalesce(sum(o.total_cents), 0) from public.orders o where o.paid_at is not null) as gmv_total_cents,
  (select coalesce(sum(o.total_cents), 0) from public.orders o where o.paid_at >= now() - interval '30 days') as gmv_30d_cents,
  (select coalesce(sum(n.cost_cents), 0) from public.notification_log n
   where n.channel in ('sms', 'email', 'push') and n.created_at >= now() - interval '30 days') as messaging_cost_30d_cents,
  (select coalesce(sum(n.cost_cents), 0) from public.notification_log n
   where n.channel = 'voice' and n.created_at >= now() - interval '30 days') as voice_cost_30d_cents,
  (select coalesce(-sum(t.credits), 0) from public.credit_transactions t
   where t.kind = 'call' and t.created_at >= now() - interval '30 days') as voice_credits_burned_30d,
  (select coalesce(sum(t.call_seconds), 0) from public.credit_transactions t
   where t.kind = 'call' and t.created_at >= now() - interval '30 days') as voice_call_seconds_30d
where app.operator_can_read();

revoke all on public.operator_platform_metrics from anon, authenticated;
grant select on public.operator_platform_metrics to authenticated, service_role;
