-- The plan's included voice credits (0050 plans.voice_credits_included) reach the voice ledger (0040):
-- at each billing period's start, and on a plan change within the period, the business's balance is
-- topped up to the plan's allowance for that period (an upgrade adds the difference; a downgrade
-- takes nothing back). Idempotent by key: plan:<business>:<period start>:<allowance>.

/** Grants what the current plan includes for the current period, minus what this period already got
    from the plan. Returns the credits granted now (0 when nothing was due). */
create function app.top_up_plan_voice_credits(p_business_id uuid) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_sub public.business_subscriptions;
  v_allowance integer;
  v_prefix text;
  v_already integer;
begin
  select s.* into v_sub from public.business_subscriptions s where s.business_id = p_business_id;
  v_allowance := coalesce((app.business_plan(p_business_id)).voice_credits_included, 0);
  if v_sub.business_id is null or v_allowance <= 0 or v_sub.status = 'canceled' then
    return 0;
  end if;
  v_prefix := 'plan:' || p_business_id || ':' || to_char(v_sub.current_period_start at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || ':';
  perform pg_advisory_xact_lock(hashtextextended(v_prefix, 0));
  select coalesce(sum(t.credits), 0) into v_already from public.credit_transactions t
  where t.business_id = p_business_id and t.idempotency_key like v_prefix || '%';
  if v_allowance <= v_already then
    return 0;
  end if;
  perform app.grant_voice_credits(p_business_id, v_allowance - v_already, 'plan allowance (' || v_sub.plan_key || ')', v_prefix || v_allowance);
  return v_allowance - v_already;
end
$$;
revoke all on function app.top_up_plan_voice_credits(uuid) from public;
grant execute on function app.top_up_plan_voice_credits(uuid) to service_role;
