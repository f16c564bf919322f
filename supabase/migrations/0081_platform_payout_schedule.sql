-- Payouts on a schedule: seed 004 asks for weekly or monthly payouts per business, but payouts ran
-- only when the operator called generate_payouts (0053). Each business now has a payout schedule
-- (weekly by default, monthly, or manual); the worker's daily platform.payouts job computes, for every
-- business on a schedule, the last complete week (Monday to Monday) or calendar month in the
-- business's time zone. compute_payout recomputes a pending payout and leaves a paid one alone, so
-- the daily run is idempotent and picks up late refunds until the payout is paid.

-- section tables

alter table public.businesses add column payout_schedule text not null default 'weekly'
  constraint businesses_payout_schedule_valid check (payout_schedule in ('weekly', 'monthly', 'manual'));

-- section private helpers

/** The last complete payout period before p_now for a schedule, in a time zone: [start, end). */
create function app.payout_period(p_schedule text, p_time_zone text, p_now timestamptz) returns tstzrange
language sql stable
set search_path = ''
as $$
  select case p_schedule
    when 'weekly' then tstzrange((date_trunc('week', p_now at time zone p_time_zone) - interval '7 days') at time zone p_time_zone,
                                 date_trunc('week', p_now at time zone p_time_zone) at time zone p_time_zone)
    when 'monthly' then tstzrange((date_trunc('month', p_now at time zone p_time_zone) - interval '1 month') at time zone p_time_zone,
                                  date_trunc('month', p_now at time zone p_time_zone) at time zone p_time_zone)
  end
$$;
revoke all on function app.payout_period(text, text, timestamptz) from public;
grant execute on function app.payout_period(text, text, timestamptz) to service_role;

/** The scheduled run (job platform.payouts): each business on a weekly or monthly schedule with
    payments or refunds in its last complete period gets that period's payout computed. Returns how
    many payouts it computed. Service only. */
create function app.run_scheduled_payouts(p_now timestamptz default now()) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_business record;
  v_n integer := 0;
begin
  for v_business in
    select b.id, app.payout_period(b.payout_schedule, b.time_zone, p_now) as period
    from public.businesses b
    where b.payout_schedule in ('weekly', 'monthly') and b.status = 'active'
    order by b.id
  loop
    if exists (select 1 from public.payments p where p.business_id = v_business.id
               and p.created_at >= lower(v_business.period) and p.created_at < upper(v_business.period))
       or exists (select 1 from public.refunds r where r.business_id = v_business.id and r.status = 'succeeded'
                  and coalesce(r.applied_at, r.updated_at) >= lower(v_business.period)
                  and coalesce(r.applied_at, r.updated_at) < upper(v_business.period)) then
      perform app.compute_payout(v_business.id, lower(v_business.period), upper(v_business.period));
      v_n := v_n + 1;
    end if;
  end loop;
  return v_n;
end
$$;
revoke all on function app.run_scheduled_payouts(timestamptz) from public;
grant execute on function app.run_scheduled_payouts(timestamptz) to service_role;

/** Operator: a business's payout schedule (weekly, monthly, manual). Audited. Raises 42501, 22023, PT404. */
create function app.set_payout_schedule(p_business_id uuid, p_schedule text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if not app.is_operator() then
    perform app.fail('42501', 'operator_only', 'only the platform operator sets payout schedules');
  end if;
  if p_schedule is null or p_schedule not in ('weekly', 'monthly', 'manual') then
    perform app.fail('22023', 'invalid_input', 'a payout schedule is weekly, monthly or manual');
  end if;
  update public.businesses set payout_schedule = p_schedule where id = p_business_id;
  if not found then
    perform app.fail('PT404', 'not_found', 'no such business');
  end if;
  perform app.audit(p_business_id, 'payout.schedule_set', jsonb_build_object('schedule', p_schedule));
  return jsonb_build_object('business_id', p_business_id, 'payout_schedule', p_schedule);
end
$$;
revoke all on function app.set_payout_schedule(uuid, text) from public;
grant execute on function app.set_payout_schedule(uuid, text) to authenticated, service_role;

-- section RPC functions

create function public.set_payout_schedule(business_id uuid, schedule text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.set_payout_schedule(business_id, schedule)
$$;
revoke all on function public.set_payout_schedule(uuid, text) from public, anon;
grant execute on function public.set_payout_schedule(uuid, text) to authenticated, service_role;
