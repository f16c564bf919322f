-- Driver payouts (issue 23 item 2). The business pays an own driver's gross as the delivery's cost
-- (withheld from its payout, 0053); the platform owes the driver the earnings' net. Until now
-- driver_earnings.payout_status never moved. The platform.payouts job now rolls each driver's pending
-- earnings up to the end of the last complete period (the driver's business's schedule and time zone)
-- into one driver_payouts row; every rolled-up earning moves pending → in_payout (pointing at it) and
-- later in_payout → paid, exactly once. A driver with a Connect Express account
-- (drivers.stripe_account_id) is paid by a transfer (key `driver-payout:<id>`, paid on Stripe's
-- transfer.created); the others — and a transfer Stripe refuses or reverses — wait as `manual` payouts
-- that owners and managers export (driver_payouts_csv) and mark paid. Drivers read their own payouts and
-- the earnings in each. Codes BR560, BR561.

-- section tables

alter table public.drivers add column stripe_account_id text
  constraint drivers_stripe_account_format check (stripe_account_id ~ '^acct_[A-Za-z0-9]{6,64}$');

/** What the platform pays one driver for one period: the net of the earnings rolled into it (any
    business the driver delivered for). `transfer` payouts go to the driver's connected account;
    `manual` ones are exported and marked paid by the driver's business. Status moves forward only:
    processing → paid | (refused) manual pending; pending → paid. business_id is the driver's business.
    Drivers read their own; owners and managers of the driver's business and the operator read all. */
create table public.driver_payouts (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  driver_id uuid not null,
  period_start timestamptz not null,
  period_end timestamptz not null,
  currency text not null,
  earnings_count integer not null,
  amount_cents bigint not null,
  method text not null constraint driver_payouts_method_valid check (method in ('transfer', 'manual')),
  status text not null constraint driver_payouts_status_valid check (status in ('pending', 'processing', 'paid')),
  stripe_account_id text,
  idempotency_key text,
  stripe_transfer_id text,
  failure_reason text,
  paid_at timestamptz,
  paid_by uuid,
  created_at timestamptz not null default now(),
  constraint driver_payouts_pkey primary key (business_id, id),
  constraint driver_payouts_period_key unique (business_id, driver_id, period_end, currency),
  constraint driver_payouts_transfer_key unique (business_id, stripe_transfer_id),
  constraint driver_payouts_driver_fkey foreign key (business_id, driver_id) references public.drivers (business_id, id),
  constraint driver_payouts_transfer_method check (method = 'manual' or (stripe_account_id is not null and idempotency_key is not null))
);
alter table public.driver_payouts enable row level security;

alter table public.driver_earnings drop constraint driver_earnings_payout_status_valid;
alter table public.driver_earnings
  add column driver_payout_id uuid,
  add constraint driver_earnings_payout_status_valid check (payout_status in ('pending', 'in_payout', 'paid')),
  add constraint driver_earnings_payout_fkey foreign key (driver_business_id, driver_payout_id)
    references public.driver_payouts (business_id, id),
  add constraint driver_earnings_payout_link check ((payout_status = 'pending') = (driver_payout_id is null));

-- section indexes
create index driver_payouts_driver_idx on public.driver_payouts (business_id, driver_id, period_end desc);
create index driver_payouts_transfer_idx on public.driver_payouts (stripe_transfer_id) where stripe_transfer_id is not null;
create index driver_earnings_pending_idx on public.driver_earnings (driver_business_id, driver_id, earned_at) where payout_status = 'pending';
create index driver_earnings_payout_idx on public.driver_earnings (driver_business_id, driver_payout_id) where driver_payout_id is not null;

-- section private helpers

/** The roll-up (job platform.payouts): for every driver business on a weekly or monthly schedule,
    each driver's pending earnings earned before the end of its last complete period become one
    driver payout per currency (transfer when the driver has a connected account, else manual), and
    move to in_payout. Emits driver_payout.transfer_requested per transfer. Returns the payouts made. */
create function app.run_driver_payouts(p_now timestamptz default now()) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_group record;
  v_id uuid;
  v_out jsonb := '[]'::jsonb;
begin
  for v_group in
    select e.driver_business_id, e.driver_id, e.currency, p.period, d.stripe_account_id,
           count(*)::integer as n, sum(e.net_cents)::bigint as amount
    from public.businesses b
    cross join lateral (select app.payout_period(b.payout_schedule, b.time_zone, p_now) as period) p
    join public.drivers d on d.business_id = b.id
    join public.driver_earnings e on e.driver_business_id = d.business_id and e.driver_id = d.id
    where b.payout_schedule in ('weekly', 'monthly') and e.payout_status = 'pending' and e.earned_at < upper(p.period)
    group by e.driver_business_id, e.driver_id, e.currency, p.period, d.stripe_account_id
    order by 1, 2, 3
  loop
    v_id := extensions.gen_random_uuid();
    insert into public.driver_payouts (business_id, id, driver_id, period_start, period_end, currency, earnings_count, amount_cents,
                                       method, status, stripe_account_id, idempotency_key)
    values (v_group.driver_business_id, v_id, v_group.driver_id, lower(v_group.period), upper(v_group.period), v_group.currency,
            v_group.n, v_group.amount, case when v_group.stripe_account_id is null or v_group.amount <= 0 then 'manual' else 'transfer' end,
            case when v_group.stripe_account_id is null or v_group.amount <= 0 then 'pending' else 'processing' end,
            case when v_group.amount > 0 then v_group.stripe_account_id end,
            case when v_group.stripe_account_id is not null and v_group.amount > 0 then 'driver-payout:' || v_id end)
    on conflict (business_id, driver_id, period_end, currency) do nothing;
    if not found then
      continue;  -- this period's payout exists: earnings that arrived late wait for the next period
    end if;
    update public.driver_earnings set payout_status = 'in_payout', driver_payout_id = v_id
    where driver_business_id = v_group.driver_business_id and driver_id = v_group.driver_id and currency = v_group.currency
      and payout_status = 'pending' and earned_at < upper(v_group.period);
    if v_group.stripe_account_id is not null and v_group.amount > 0 then
      perform app.emit('driver_payout.transfer_requested', v_group.driver_business_id, jsonb_build_object('driver_payout_id', v_id));
    end if;
    perform app.audit(v_group.driver_business_id, 'driver_payout.created', jsonb_build_object(
      'driver_payout_id', v_id, 'driver_id', v_group.driver_id, 'amount_cents', v_group.amount, 'earnings', v_group.n));
    v_out := v_out || jsonb_build_array(jsonb_build_object('driver_payout_id', v_id, 'driver_id', v_group.driver_id,
                                                           'amount_cents', v_group.amount, 'earnings', v_group.n));
  end loop;
  return v_out;
end
$$;
revoke all on function app.run_driver_payouts(timestamptz) from public;
grant execute on function app.run_driver_payouts(timestamptz) to service_role;

/** The Stripe transfer to create for one processing driver payout, or null. Service only. */
create function app.driver_payout_transfer_request(p_business_id uuid, p_payout_id uuid) returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'amount', p.amount_cents, 'currency', lower(p.currency), 'destination', p.stripe_account_id,
    'transfer_group', 'driver_payout_' || p.id, 'idempotency_key', p.idempotency_key,
    'description', 'Brigade driver payout ' || to_char(p.period_start at time zone 'UTC', 'YYYY-MM-DD') || ' – '
                   || to_char(p.period_end at time zone 'UTC', 'YYYY-MM-DD'),
    'metadata', jsonb_build_object('kind', 'driver_payout', 'business_id', p.business_id, 'payout_id', p.id))
  from public.driver_payouts p
  where p.business_id = p_business_id and p.id = p_payout_id and p.status = 'processing' and p.stripe_transfer_id is null
$$;
revoke all on function app.driver_payout_transfer_request(uuid, uuid) from public;
grant execute on function app.driver_payout_transfer_request(uuid, uuid) to service_role;

/** Pays a driver payout once: the payout and every earning in it (in_payout → paid). */
create function app.settle_driver_payout(p_business_id uuid, p_payout_id uuid, p_transfer_id text, p_by uuid) returns boolean
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  update public.driver_payouts set status = 'paid', paid_at = now(), paid_by = p_by,
                                   stripe_transfer_id = coalesce(stripe_transfer_id, p_transfer_id)
  where business_id = p_business_id and id = p_payout_id and status <> 'paid';
  if not found then
    return false;
  end if;
  update public.driver_earnings set payout_status = 'paid'
  where driver_business_id = p_business_id and driver_payout_id = p_payout_id and payout_status = 'in_payout';
  perform app.audit(p_business_id, 'driver_payout.paid', jsonb_build_object('driver_payout_id', p_payout_id, 'transfer_id', p_transfer_id));
  return true;
end
$$;
revoke all on function app.settle_driver_payout(uuid, uuid, text, uuid) from public;
grant execute on function app.settle_driver_payout(uuid, uuid, text, uuid) to service_role;

/** A transfer that will not pay the driver (Stripe refused it, or reversed it in full before it was
    seen paid): the payout falls back to manual payment, its earnings stay in it. */
create function app.fall_back_driver_payout(p_business_id uuid, p_payout_id uuid, p_reason text) returns boolean
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  update public.driver_payouts set method = 'manual', status = 'pending', failure_reason = left(p_reason, 500)
  where business_id = p_business_id and id = p_payout_id and status = 'processing';
  if found then
    perform app.audit(p_business_id, 'driver_payout.transfer_failed', jsonb_build_object('driver_payout_id', p_payout_id,
                                                                                        'reason', left(p_reason, 500)));
  end if;
  return found;
end
$$;
revoke all on function app.fall_back_driver_payout(uuid, uuid, text) from public;
grant execute on function app.fall_back_driver_payout(uuid, uuid, text) to service_role;

/** The worker's result for a driver payout's transfer: its id (paid on the webhook), or Stripe's
    refusal (manual payment). Returns the payout's status. Service only. */
create function app.record_driver_payout_transfer(p_business_id uuid, p_payout_id uuid, p_transfer_id text, p_error text)
returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_status text;
begin
  if p_transfer_id is not null then
    update public.driver_payouts set stripe_transfer_id = p_transfer_id
    where business_id = p_business_id and id = p_payout_id and status = 'processing' and stripe_transfer_id is null;
  elsif p_error is not null then
    perform app.fall_back_driver_payout(p_business_id, p_payout_id, p_error);
  end if;
  select p.status into v_status from public.driver_payouts p where p.business_id = p_business_id and p.id = p_payout_id;
  return v_status;
end
$$;
revoke all on function app.record_driver_payout_transfer(uuid, uuid, text, text) from public;
grant execute on function app.record_driver_payout_transfer(uuid, uuid, text, text) to service_role;

/** transfer.* of a driver payout (metadata kind driver_payout): an unreversed transfer pays it, a
    fully reversed one before that sends it to manual payment. Returns what it did. Service only. */
create function app.apply_stripe_driver_transfer(p_event jsonb) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_obj jsonb := p_event -> 'data' -> 'object';
  v_type text := p_event ->> 'type';
  v_payout public.driver_payouts;
begin
  if (v_obj -> 'metadata' ->> 'payout_id') !~* '^[0-9a-f-]{36}$' or (v_obj -> 'metadata' ->> 'business_id') !~* '^[0-9a-f-]{36}$' then
    return 'unknown_payout';
  end if;
  select p.* into v_payout from public.driver_payouts p
  where p.business_id = (v_obj -> 'metadata' ->> 'business_id')::uuid and p.id = (v_obj -> 'metadata' ->> 'payout_id')::uuid
  for update;
  if v_payout.id is null then
    return 'unknown_payout';
  elsif v_payout.stripe_transfer_id is not null and v_payout.stripe_transfer_id <> v_obj ->> 'id' then
    return 'other_transfer';
  elsif v_payout.status <> 'processing' then
    return 'stale';
  elsif (v_type = 'transfer.reversed' and coalesce((v_obj ->> 'amount_reversed')::bigint, 0) >= coalesce((v_obj ->> 'amount')::bigint, 0))
        or coalesce((v_obj ->> 'reversed')::boolean, false) then
    perform app.fall_back_driver_payout(v_payout.business_id, v_payout.id, 'transfer reversed');
    return 'driver_payout_manual';
  elsif v_type in ('transfer.created', 'transfer.updated') then
    perform app.settle_driver_payout(v_payout.business_id, v_payout.id, v_obj ->> 'id', null);
    return 'driver_payout_paid';
  end if;
  return 'ignored';
end
$$;
revoke all on function app.apply_stripe_driver_transfer(jsonb) from public;
grant execute on function app.apply_stripe_driver_transfer(jsonb) to service_role;

-- section triggers

/** An earning's payout status moves pending → in_payout → paid, once each; its payout link is set
    with in_payout and never changes. BR560. */
create function app.tg_driver_earnings_payout() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if (old.payout_status, old.driver_payout_id) is distinct from (new.payout_status, new.driver_payout_id)
     and not ((old.payout_status = 'pending' and new.payout_status = 'in_payout')
              or (old.payout_status = 'in_payout' and new.payout_status = 'paid' and new.driver_payout_id = old.driver_payout_id)) then
    perform app.fail('BR560', 'earning_payout_transition',
                     format('a driver earning cannot go from %s to %s', old.payout_status, new.payout_status));
  end if;
  return new;
end
$$;

/** A paid driver payout is final; a processing one changes only to paid or to manual payment. BR561. */
create function app.tg_driver_payouts_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.status = 'paid'
     or (new.amount_cents, new.earnings_count, new.driver_id, new.period_end, new.idempotency_key)
        is distinct from (old.amount_cents, old.earnings_count, old.driver_id, old.period_end, old.idempotency_key)
     or not (old.status = new.status or new.status = 'paid' or (old.status = 'processing' and new.status = 'pending' and new.method = 'manual')) then
    perform app.fail('BR561', 'driver_payout_final', 'a paid driver payout is final; statuses move forward only');
  end if;
  return new;
end
$$;

create trigger driver_earnings_payout before update of payout_status, driver_payout_id on public.driver_earnings
  for each row execute function app.tg_driver_earnings_payout();
create trigger driver_payouts_guard before update on public.driver_payouts
  for each row execute function app.tg_driver_payouts_guard();

/** transfer.* events whose metadata names a driver payout go to the driver adapter (the business
    payout adapter of 0200 answers 'unknown_payout' for them). */
create function app.tg_stripe_events_driver_transfer() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  perform app.apply_stripe_driver_transfer(new.payload);
  return null;
end
$$;
revoke all on function app.tg_stripe_events_driver_transfer() from public;

create trigger stripe_events_driver_transfer after insert on public.stripe_events
  for each row when (new.type like 'transfer.%' and new.payload -> 'data' -> 'object' -> 'metadata' ->> 'kind' = 'driver_payout')
  execute function app.tg_stripe_events_driver_transfer();

-- section policies
create policy "drivers read their payouts" on public.driver_payouts for select to authenticated
  using ((business_id, driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k));
create policy "owners and managers read their drivers' payouts" on public.driver_payouts for select to authenticated
  using (app.module_enabled(business_id, 'dispatch') and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "operator reads every driver payout" on public.driver_payouts for select to authenticated
  using ((select app.is_platform_admin()));

-- section grants
revoke all on public.driver_payouts from anon, authenticated;
grant select on public.driver_payouts to authenticated;
grant all on public.driver_payouts to service_role;

-- section rpc

/** Owners and managers of the driver's business (or the operator): a manual driver payout was paid
    (bank transfer, cash). Its earnings become paid, once. Raises 42501, PT404, BR561 (not manual). */
create function app.mark_driver_payout_paid(p_business_id uuid, p_payout_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_payout public.driver_payouts;
begin
  if not (app.is_operator() or (app.module_enabled(p_business_id, 'dispatch') and app.is_member(p_business_id, '{owner,manager}'))) then
    perform app.fail('42501', 'forbidden', 'only owners and managers of the driver''s business mark driver payouts paid');
  end if;
  select p.* into v_payout from public.driver_payouts p where p.business_id = p_business_id and p.id = p_payout_id for update;
  if v_payout.id is null then
    perform app.fail('PT404', 'not_found', 'no such driver payout');
  end if;
  if v_payout.method <> 'manual' then
    perform app.fail('BR561', 'driver_payout_final', 'a transfer payout is paid by Stripe, not by hand');
  end if;
  return jsonb_build_object('driver_payout_id', p_payout_id,
                            'paid', app.settle_driver_payout(p_business_id, p_payout_id, null, (select auth.uid())));
end
$$;
revoke all on function app.mark_driver_payout_paid(uuid, uuid) from public;
grant execute on function app.mark_driver_payout_paid(uuid, uuid) to authenticated, service_role;

create function public.mark_driver_payout_paid(business_id uuid, driver_payout_id uuid) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.mark_driver_payout_paid(business_id, driver_payout_id)
$$;
revoke all on function public.mark_driver_payout_paid(uuid, uuid) from public, anon;
grant execute on function public.mark_driver_payout_paid(uuid, uuid) to authenticated, service_role;

/** Operator: a driver's Connect Express account (acct_…), or null to pay them by hand. Audited.
    Raises 42501, PT404, 23514 (not acct_…). */
create function app.set_driver_payout_account(p_business_id uuid, p_driver_id uuid, p_account_id text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if not app.is_operator() then
    perform app.fail('42501', 'operator_only', 'only the platform operator sets driver payout accounts');
  end if;
  update public.drivers set stripe_account_id = p_account_id where business_id = p_business_id and id = p_driver_id;
  if not found then
    perform app.fail('PT404', 'not_found', 'no such driver');
  end if;
  perform app.audit(p_business_id, 'driver.payout_account_set', jsonb_build_object('driver_id', p_driver_id, 'stripe_account_id', p_account_id));
  return jsonb_build_object('driver_id', p_driver_id, 'stripe_account_id', p_account_id);
end
$$;
revoke all on function app.set_driver_payout_account(uuid, uuid, text) from public;
grant execute on function app.set_driver_payout_account(uuid, uuid, text) to authenticated, service_role;

create function public.set_driver_payout_account(business_id uuid, driver_id uuid, stripe_account_id text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.set_driver_payout_account(business_id, driver_id, stripe_account_id)
$$;
revoke all on function public.set_driver_payout_account(uuid, uuid, text) from public, anon;
grant execute on function public.set_driver_payout_account(uuid, uuid, text) to authenticated, service_role;

/** Manual driver payouts still to pay, as CSV for the bank run: read under the caller's RLS (owners
    and managers get their drivers', the operator every business's). Periods ending in [from, to). */
create function public.driver_payouts_csv(business_id uuid default null, "from" timestamptz default null, "to" timestamptz default null)
returns text
language sql stable
set search_path = ''
as $$
  select 'driver_payout_id,business_id,driver_id,driver_name,period_start,period_end,currency,earnings,amount_cents,failure_reason' || chr(10)
         || coalesce(string_agg(concat_ws(',', p.id::text, p.business_id::text, p.driver_id::text, app.csv_field(d.display_name),
                                          to_char(p.period_start at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                          to_char(p.period_end at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                          p.currency, p.earnings_count, p.amount_cents, app.csv_field(p.failure_reason)) || chr(10),
                                '' order by p.period_end, d.display_name, p.id), '')
  from public.driver_payouts p
  join public.drivers d on d.business_id = p.business_id and d.id = p.driver_id
  where p.method = 'manual' and p.status = 'pending'
    and (driver_payouts_csv.business_id is null or p.business_id = driver_payouts_csv.business_id)
    and (driver_payouts_csv."from" is null or p.period_end >= driver_payouts_csv."from")
    and (driver_payouts_csv."to" is null or p.period_end < driver_payouts_csv."to")
$$;
revoke all on function public.driver_payouts_csv(uuid, timestamptz, timestamptz) from public, anon;
grant execute on function public.driver_payouts_csv(uuid, timestamptz, timestamptz) to authenticated, service_role;
