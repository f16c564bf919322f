-- Plans and billing: plan features and limits (venues, staff, orders per month, voice credits
-- included, platform fee), the subscription status machine, limits enforced by trigger, plan
-- changes, and the period's invoice rebuilt with proration by day whenever a subscription line opens
-- or closes (module switched, plan changed). Stripe Billing is an adapter that writes the same rows
-- (app.apply_stripe_billing_event). Codes BR70x (docs/errors.md).

-- section tables
alter table public.plans
  add column description text not null default '',
  add column features jsonb not null default '[]'::jsonb
    constraint plans_features_array check (jsonb_typeof(features) = 'array'),
  add column max_venues integer constraint plans_max_venues_positive check (max_venues > 0),
  add column max_staff integer constraint plans_max_staff_positive check (max_staff > 0),
  add column max_orders_per_month integer constraint plans_max_orders_positive check (max_orders_per_month > 0),
  add column voice_credits_included integer not null default 0
    constraint plans_voice_credits_nonnegative check (voice_credits_included >= 0),
  add column platform_fee_bps integer not null default 0
    constraint plans_platform_fee_bps_range check (platform_fee_bps between 0 and 10000),
  add column platform_fee_fixed_cents integer not null default 0
    constraint plans_platform_fee_fixed_nonnegative check (platform_fee_fixed_cents >= 0),
  add column trial_days integer not null default 14 constraint plans_trial_days_nonnegative check (trial_days >= 0);

comment on column public.plans.max_venues is 'null = unlimited';
comment on column public.plans.voice_credits_included is
  'credits granted per billing period; the voice module grants them (app.grant_voice_credits) on business.plan_changed / billing.period_started';

alter table public.business_subscriptions
  add column trial_ends_at timestamptz,
  add column canceled_at timestamptz,
  add column billing_provider text not null default 'manual'
    constraint business_subscriptions_provider_valid check (billing_provider in ('manual', 'stripe')),
  add column stripe_customer_id text,
  add column stripe_subscription_id text,
  add constraint business_subscriptions_stripe_subscription_key unique (business_id, stripe_subscription_id);

/** One bill of one business for one period: `draft` while the period runs (rebuilt on every plan or
    module change), `open` once the period closed, then `paid` or `void`. Owners and the operator read it. */
create table public.billing_invoices (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  period_start timestamptz not null,
  period_end timestamptz not null,
  period_days integer not null constraint billing_invoices_days_positive check (period_days > 0),
  status text not null default 'draft'
    constraint billing_invoices_status_valid check (status in ('draft', 'open', 'paid', 'void')),
  currency text not null,
  total_cents integer not null default 0,
  stripe_invoice_id text,
  finalized_at timestamptz,
  paid_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint billing_invoices_pkey primary key (business_id, id),
  constraint billing_invoices_period_key unique (business_id, period_start),
  constraint billing_invoices_period check (period_end > period_start)
);
alter table public.billing_invoices enable row level security;

/** A line of an invoice: one subscription line's share of the period, prorated by day
    (amount = round(unit × days / period_days)). */
create table public.billing_invoice_lines (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  invoice_id uuid not null,
  subscription_line_id uuid not null,
  kind text not null,
  item_key text not null,
  description text not null,
  unit_amount_cents integer not null,
  days integer not null constraint billing_invoice_lines_days_nonnegative check (days >= 0),
  period_days integer not null,
  amount_cents integer not null,
  currency text not null,
  starts_on date not null,
  ends_on date not null,
  constraint billing_invoice_lines_pkey primary key (business_id, id),
  constraint billing_invoice_lines_invoice_fkey foreign key (business_id, invoice_id)
    references public.billing_invoices (business_id, id) on delete cascade,
  constraint billing_invoice_lines_line_key unique (business_id, invoice_id, subscription_line_id)
);
alter table public.billing_invoice_lines enable row level security;

-- section indexes
create index billing_invoices_business_idx on public.billing_invoices (business_id, period_start desc);
create index billing_invoice_lines_invoice_idx on public.billing_invoice_lines (business_id, invoice_id);
create index business_subscriptions_period_end_idx on public.business_subscriptions (current_period_end)
  where status <> 'canceled';

-- section private helpers

/** The operator as every issue-9 function checks it: the operator's JWT, the service role, or a
    database session that is not running as an API role at all (the Supabase SQL console, psql as
    postgres). The `role` setting is what PostgREST sets per request and it survives security-definer
    calls, unlike current_user. */
create function app.is_operator() returns boolean
language sql stable
set search_path = ''
as $$
  select app.is_platform_or_service()
      or coalesce(nullif(current_setting('role', true), ''), 'none') not in ('anon', 'authenticated', 'service_role')
         and session_user <> 'authenticator'
$$;
revoke all on function app.is_operator() from public;
grant execute on function app.is_operator() to anon, authenticated, service_role;

/** The plan row of a business's subscription (limits, fees). */
create function app.business_plan(p_business_id uuid) returns public.plans
language sql stable security definer
set search_path = ''
as $$
  select p.* from public.business_subscriptions s join public.plans p on p.key = s.plan_key
  where s.business_id = p_business_id
$$;
revoke all on function app.business_plan(uuid) from public;
grant execute on function app.business_plan(uuid) to service_role;

/** Name of the per-business counter of orders placed in the month of p_at (business time zone). */
create function app.orders_month_counter(p_business_id uuid, p_at timestamptz) returns text
language sql stable security definer
set search_path = ''
as $$
  select 'orders_month:' || to_char(p_at at time zone coalesce(
    (select b.time_zone from public.businesses b where b.id = p_business_id), 'UTC'), 'YYYY-MM')
$$;
revoke all on function app.orders_month_counter(uuid, timestamptz) from public;
grant execute on function app.orders_month_counter(uuid, timestamptz) to service_role;
/** Current usage against each limit of the plan: venues, staff (members other than drivers; pending
    invitations are counted by the invitation code), orders this calendar month in the business's time zone. */
create function app.business_usage(p_business_id uuid) returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'venues', (select count(*) from public.venues v where v.business_id = p_business_id),
    'staff', (select count(*) from public.memberships m where m.business_id = p_business_id and m.role <> 'driver'),
    'orders_this_month', coalesce((select c.value from app.business_counters c
                                   where c.business_id = p_business_id and c.name = app.orders_month_counter(p_business_id, now())), 0))
$$;

revoke all on function app.business_usage(uuid) from public;
grant execute on function app.business_usage(uuid) to service_role;

/** Raises BR701–BR703 when adding one more of `p_what` would exceed the plan. */
create function app.check_plan_limit(p_business_id uuid, p_what text, p_current bigint) returns void
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_plan public.plans := app.business_plan(p_business_id);
  v_max integer;
begin
  if v_plan.key is null then
    return;
  end if;
  v_max := case p_what when 'venues' then v_plan.max_venues when 'staff' then v_plan.max_staff
                       when 'orders' then v_plan.max_orders_per_month end;
  if v_max is not null and p_current >= v_max then
    perform app.fail(case p_what when 'venues' then 'BR701' when 'staff' then 'BR702' else 'BR703' end,
      case p_what when 'venues' then 'venue_limit' when 'staff' then 'staff_limit' else 'order_limit' end,
      format('the %s plan allows %s %s%s; upgrade the plan to add more', v_plan.name, v_max,
             case p_what when 'venues' then 'venues' when 'staff' then 'team members' else 'orders' end,
             case p_what when 'orders' then ' per month' else '' end));
  end if;
end
$$;
revoke all on function app.check_plan_limit(uuid, text, bigint) from public;
grant execute on function app.check_plan_limit(uuid, text, bigint) to service_role;

/** Legal subscription status moves; staying put is always allowed. */
create function app.subscription_transition_allowed(p_from text, p_to text) returns boolean
language sql immutable
set search_path = ''
as $$
  select p_from = p_to or (p_from, p_to) in (
    ('trial', 'active'), ('trial', 'past_due'), ('trial', 'canceled'),
    ('active', 'past_due'), ('active', 'canceled'),
    ('past_due', 'active'), ('past_due', 'canceled'),
    ('canceled', 'active'))
$$;
revoke all on function app.subscription_transition_allowed(text, text) from public;
grant execute on function app.subscription_transition_allowed(text, text) to anon, authenticated, service_role;

/** Rebuilds the draft invoice of the business's current period from its subscription lines:
    each line's days inside the period (dates in the business's time zone, end exclusive) times its
    monthly price over the period's days, rounded half away from zero. Returns the invoice id. */
create function app.refresh_draft_invoice(p_business_id uuid) returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_sub public.business_subscriptions;
  v_tz text;
  v_start date;
  v_end date;
  v_days integer;
  v_invoice uuid;
  v_status text;
begin
  select s.* into v_sub from public.business_subscriptions s where s.business_id = p_business_id;
  if v_sub.business_id is null then
    return null;
  end if;
  select b.time_zone into v_tz from public.businesses b where b.id = p_business_id;
  v_start := (v_sub.current_period_start at time zone v_tz)::date;
  v_end := (v_sub.current_period_end at time zone v_tz)::date;
  v_days := greatest(v_end - v_start, 1);

  insert into public.billing_invoices as i (business_id, period_start, period_end, period_days, currency)
  values (p_business_id, v_sub.current_period_start, v_sub.current_period_end, v_days, v_sub.currency)
  on conflict (business_id, period_start) do update
    set period_end = excluded.period_end, period_days = excluded.period_days, updated_at = now()
    where i.status = 'draft'
  returning i.id, i.status into v_invoice, v_status;
  if v_invoice is null then
    return null;  -- the period's invoice is already final
  end if;

  delete from public.billing_invoice_lines l where l.business_id = p_business_id and l.invoice_id = v_invoice;
  insert into public.billing_invoice_lines (business_id, invoice_id, subscription_line_id, kind, item_key, description,
                                            unit_amount_cents, days, period_days, amount_cents, currency, starts_on, ends_on)
  select p_business_id, v_invoice, x.id, x.kind, x.item_key, x.description, x.unit_amount_cents, x.d, v_days,
         round(x.unit_amount_cents::numeric * x.d / v_days)::integer, x.currency, x.s, x.e
  from (
    select l.*, greatest((l.starts_at at time zone v_tz)::date, v_start) as s,
           least(coalesce((l.ends_at at time zone v_tz)::date, v_end), v_end) as e,
           least(coalesce((l.ends_at at time zone v_tz)::date, v_end), v_end)
             - greatest((l.starts_at at time zone v_tz)::date, v_start) as d
    from public.business_subscription_lines l
    where l.business_id = p_business_id
  ) x
  where x.d > 0;

  update public.billing_invoices i
  set total_cents = coalesce((select sum(l.amount_cents) from public.billing_invoice_lines l
                              where l.business_id = p_business_id and l.invoice_id = v_invoice), 0),
      updated_at = now()
  where i.business_id = p_business_id and i.id = v_invoice;
  return v_invoice;
end
$$;
revoke all on function app.refresh_draft_invoice(uuid) from public;
grant execute on function app.refresh_draft_invoice(uuid) to service_role;

/** Closes every period that has ended by p_now: the draft becomes `open` (final), the period moves
    on a month, the new period's draft is built, and billing.period_started is emitted (the voice
    module grants the plan's included credits on it). Returns how many periods were closed. */
create function app.close_due_billing_periods(p_now timestamptz default now()) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_sub public.business_subscriptions;
  v_invoice uuid;
  v_n integer := 0;
begin
  for v_sub in
    select s.* from public.business_subscriptions s
    where s.current_period_end <= p_now and s.status <> 'canceled'
    order by s.business_id
    for update skip locked
  loop
    while v_sub.current_period_end <= p_now loop
      v_invoice := app.refresh_draft_invoice(v_sub.business_id);
      update public.billing_invoices set status = 'open', finalized_at = p_now, updated_at = now()
      where business_id = v_sub.business_id and id = v_invoice and status = 'draft';
      update public.business_subscriptions
      set current_period_start = v_sub.current_period_end,
          current_period_end = v_sub.current_period_end + interval '1 month', updated_at = now()
      where business_id = v_sub.business_id
      returning * into v_sub;
      perform app.refresh_draft_invoice(v_sub.business_id);
      perform app.emit('billing.period_started', v_sub.business_id, jsonb_build_object(
        'period_start', v_sub.current_period_start, 'period_end', v_sub.current_period_end,
        'plan_key', v_sub.plan_key, 'voice_credits_included', (app.business_plan(v_sub.business_id)).voice_credits_included,
        'closed_invoice_id', v_invoice));
      v_n := v_n + 1;
    end loop;
  end loop;
  return v_n;
end
$$;
revoke all on function app.close_due_billing_periods(timestamptz) from public;
grant execute on function app.close_due_billing_periods(timestamptz) to service_role;

-- section triggers

/** Limits: a venue or a member beyond the plan raises BR701 / BR702; the subscription row is locked
    so two concurrent inserts cannot both take the last slot. */
create function app.tg_plan_limit_venues() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  perform 1 from public.business_subscriptions s where s.business_id = new.business_id for update;
  perform app.check_plan_limit(new.business_id, 'venues',
    (select count(*) from public.venues v where v.business_id = new.business_id));
  return new;
end
$$;

/** Drivers are not counted: the dispatch module manages (and prices) the driver pool. */
create function app.tg_plan_limit_memberships() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.role = 'driver' or (tg_op = 'UPDATE' and old.role <> 'driver') then
    return new;
  end if;
  perform 1 from public.business_subscriptions s where s.business_id = new.business_id for update;
  perform app.check_plan_limit(new.business_id, 'staff',
    (select count(*) from public.memberships m where m.business_id = new.business_id and m.role <> 'driver'));
  return new;
end
$$;

/** Orders per calendar month (business time zone) counted in app.business_counters; BR703 beyond. */
create function app.tg_plan_limit_orders() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_n bigint;
begin
  v_n := app.next_number(new.business_id, app.orders_month_counter(new.business_id, new.placed_at));
  perform app.check_plan_limit(new.business_id, 'orders', v_n - 1);
  return new;
end
$$;

/** Status machine of a subscription (BR705); cancelling stamps canceled_at; a status or plan change
    re-bills (a canceled subscription's lines close). */
create function app.tg_business_subscriptions_status() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if not app.subscription_transition_allowed(old.status, new.status) then
    perform app.fail('BR705', 'illegal_subscription_transition',
      format('a %s subscription cannot become %s', old.status, new.status));
  end if;
  if new.status = 'canceled' and old.status <> 'canceled' then
    new.canceled_at := now();
  elsif new.status <> 'canceled' then
    new.canceled_at := null;
  end if;
  return new;
end
$$;

create function app.tg_business_subscriptions_rebill() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  perform app.recalculate_subscription(new.business_id);
  perform app.refresh_draft_invoice(new.business_id);
  return null;
end
$$;

/** New subscriptions start their trial from the plan's trial_days. */
create function app.tg_business_subscriptions_trial() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.status = 'trial' and new.trial_ends_at is null then
    new.trial_ends_at := new.current_period_start
      + make_interval(days => coalesce((select p.trial_days from public.plans p where p.key = new.plan_key), 14));
  end if;
  return new;
end
$$;

/** Any line opened or closed re-prices the period's draft invoice. */
create function app.tg_business_subscription_lines_invoice() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  perform app.refresh_draft_invoice(new.business_id);
  return null;
end
$$;

/** Invoice status only moves forward: draft → open → paid | void (open → void too). BR706. */
create function app.tg_billing_invoices_status() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status <> old.status and (old.status, new.status) not in
     (('draft', 'open'), ('draft', 'void'), ('open', 'paid'), ('open', 'void')) then
    perform app.fail('BR706', 'illegal_invoice_transition', format('an invoice cannot go from %s to %s', old.status, new.status));
  end if;
  return new;
end
$$;

create trigger venues_plan_limit before insert on public.venues
  for each row execute function app.tg_plan_limit_venues();
create trigger memberships_plan_limit before insert or update of role on public.memberships
  for each row execute function app.tg_plan_limit_memberships();
create trigger orders_plan_limit before insert on public.orders
  for each row execute function app.tg_plan_limit_orders();
create trigger business_subscriptions_trial before insert on public.business_subscriptions
  for each row execute function app.tg_business_subscriptions_trial();
create trigger business_subscriptions_status before update of status on public.business_subscriptions
  for each row execute function app.tg_business_subscriptions_status();
create trigger business_subscriptions_rebill after update of status, plan_key on public.business_subscriptions
  for each row when (old.status is distinct from new.status or old.plan_key is distinct from new.plan_key)
  execute function app.tg_business_subscriptions_rebill();
create trigger business_subscription_lines_invoice after insert or update on public.business_subscription_lines
  for each row execute function app.tg_business_subscription_lines_invoice();
create trigger billing_invoices_status before update of status on public.billing_invoices
  for each row execute function app.tg_billing_invoices_status();
create trigger billing_invoices_touch before update on public.billing_invoices
  for each row execute function app.tg_touch_updated_at();

-- section policies
create policy "owners read their invoices" on public.billing_invoices for select to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));
create policy "operator reads every invoice" on public.billing_invoices for select to authenticated
  using ((select app.is_platform_admin()));
create policy "owners read their invoice lines" on public.billing_invoice_lines for select to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));
create policy "operator reads every invoice line" on public.billing_invoice_lines for select to authenticated
  using ((select app.is_platform_admin()));

-- section grants
revoke all on public.billing_invoices, public.billing_invoice_lines from anon, authenticated;
grant select on public.billing_invoices, public.billing_invoice_lines to authenticated;
grant all on public.billing_invoices, public.billing_invoice_lines to service_role;

-- section rpc

/** Moves a business to another plan: checks the new plan's limits against today's usage (BR704),
    re-bills (the old plan line closes today, the new one opens: the draft invoice prorates both),
    audits and emits business.plan_changed (with voice_credits_included for the voice module).
    The business's owner or the operator. Raises 42501, PT404, BR700 (unknown plan), BR704. */
create function app.change_plan(p_business_id uuid, p_plan_key text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_old text;
  v_plan public.plans;
  v_usage jsonb;
  v_total integer;
begin
  if not (app.is_operator() or app.is_member(p_business_id, '{owner}')) then
    perform app.fail('42501', 'not_member', 'only the owner or the platform operator may change the plan');
  end if;
  select p.* into v_plan from public.plans p where p.key = p_plan_key;
  if v_plan.key is null then
    perform app.fail('BR700', 'unknown_plan', format('unknown plan %L', p_plan_key));
  end if;
  select s.plan_key into v_old from public.business_subscriptions s where s.business_id = p_business_id for update;
  if v_old is null then
    perform app.fail('PT404', 'not_found', 'business not found');
  end if;
  v_usage := app.business_usage(p_business_id);
  if (v_plan.max_venues is not null and (v_usage ->> 'venues')::int > v_plan.max_venues)
     or (v_plan.max_staff is not null and (v_usage ->> 'staff')::int > v_plan.max_staff)
     or (v_plan.max_orders_per_month is not null and (v_usage ->> 'orders_this_month')::int > v_plan.max_orders_per_month) then
    perform app.fail('BR704', 'plan_limit_exceeded',
      format('the business uses more than the %s plan allows (%s)', v_plan.name, v_usage));
  end if;
  if v_old <> p_plan_key then
    update public.business_subscriptions set plan_key = p_plan_key, updated_at = now() where business_id = p_business_id;
    perform app.audit(p_business_id, 'plan.changed', jsonb_build_object('before', v_old, 'after', p_plan_key));
    perform app.emit('business.plan_changed', p_business_id, jsonb_build_object(
      'before', v_old, 'after', p_plan_key, 'voice_credits_included', v_plan.voice_credits_included));
  end if;
  select s.monthly_total_cents into v_total from public.business_subscriptions s where s.business_id = p_business_id;
  return jsonb_build_object('business_id', p_business_id, 'plan_key', p_plan_key, 'changed', v_old <> p_plan_key,
                            'monthly_total_cents', v_total, 'invoice_id', app.refresh_draft_invoice(p_business_id));
end
$$;
revoke all on function app.change_plan(uuid, text) from public;
grant execute on function app.change_plan(uuid, text) to authenticated, service_role;

/** PostgREST entry point for app.change_plan. */
create function public.change_plan(business_id uuid, plan_key text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.change_plan(business_id, plan_key)
$$;
revoke all on function public.change_plan(uuid, text) from public, anon;
grant execute on function public.change_plan(uuid, text) to authenticated, service_role;

/** Operator (or the billing adapter) moves a subscription's status along its machine (BR705). */
create function app.set_subscription_status(p_business_id uuid, p_status text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_old text;
begin
  if not app.is_operator() then
    perform app.fail('42501', 'operator_only', 'only the platform operator may change a subscription status');
  end if;
  if p_status not in ('trial', 'active', 'past_due', 'canceled') then
    perform app.fail('22023', 'invalid_input', format('unknown subscription status %L', p_status));
  end if;
  select s.status into v_old from public.business_subscriptions s where s.business_id = p_business_id for update;
  if v_old is null then
    perform app.fail('PT404', 'not_found', 'business not found');
  end if;
  update public.business_subscriptions set status = p_status, updated_at = now() where business_id = p_business_id;
  if v_old <> p_status then
    perform app.audit(p_business_id, 'subscription.' || p_status, jsonb_build_object('before', v_old, 'after', p_status));
  end if;
  return jsonb_build_object('business_id', p_business_id, 'status', p_status, 'before', v_old);
end
$$;
revoke all on function app.set_subscription_status(uuid, text) from public;
grant execute on function app.set_subscription_status(uuid, text) to authenticated, service_role;

/** The Stripe Billing adapter: customer.subscription.* and invoice.paid / invoice.payment_failed
    applied to the same rows (status mapping: trialing→trial, active→active, past_due/unpaid→past_due,
    canceled/incomplete_expired→canceled). The subscription is found by metadata.business_id or
    stripe_subscription_id. Service role only. Returns what it did. */
create function app.apply_stripe_billing_event(p_event jsonb) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_obj jsonb := p_event -> 'data' -> 'object';
  v_type text := p_event ->> 'type';
  v_sub_id text;
  v_business uuid;
  v_status text;
begin
  v_sub_id := case when v_type like 'customer.subscription.%' then v_obj ->> 'id' else v_obj ->> 'subscription' end;
  select s.business_id into v_business from public.business_subscriptions s
  where s.stripe_subscription_id = v_sub_id
     or (s.stripe_subscription_id is null and s.business_id::text = coalesce(v_obj -> 'metadata' ->> 'business_id', ''))
  limit 1;
  if v_business is null then
    return 'unknown_subscription';
  end if;
  if v_type like 'customer.subscription.%' then
    v_status := case v_obj ->> 'status' when 'trialing' then 'trial' when 'active' then 'active'
                  when 'past_due' then 'past_due' when 'unpaid' then 'past_due'
                  when 'canceled' then 'canceled' when 'incomplete_expired' then 'canceled' end;
    if v_type = 'customer.subscription.deleted' then
      v_status := 'canceled';
    end if;
    update public.business_subscriptions
    set billing_provider = 'stripe', stripe_subscription_id = v_sub_id,
        stripe_customer_id = coalesce(v_obj ->> 'customer', stripe_customer_id), updated_at = now()
    where business_id = v_business;
  elsif v_type = 'invoice.paid' then
    v_status := 'active';
    update public.billing_invoices set status = 'paid', paid_at = now(), stripe_invoice_id = v_obj ->> 'id'
    where business_id = v_business and status = 'open';
  elsif v_type = 'invoice.payment_failed' then
    v_status := 'past_due';
  else
    return 'ignored';
  end if;
  if v_status is not null and app.subscription_transition_allowed(
       (select s.status from public.business_subscriptions s where s.business_id = v_business), v_status) then
    update public.business_subscriptions set status = v_status, updated_at = now() where business_id = v_business;
    return 'applied';
  end if;
  return 'stale';
end
$$;
revoke all on function app.apply_stripe_billing_event(jsonb) from public;
grant execute on function app.apply_stripe_billing_event(jsonb) to service_role;

/** The merchant's billing page: plan with limits and usage, subscription, modules, and the current
    draft invoice with its prorated lines. Owners and the operator; raises 42501 otherwise. */
create function app.billing_overview(p_business_id uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  if not (app.is_member(p_business_id, '{owner}') or app.is_operator()) then
    perform app.fail('42501', 'not_member', 'only the owner or the platform operator may read the bill');
  end if;
  return (
    select jsonb_build_object(
      'plan', to_jsonb(p) - 'created_at',
      'usage', app.business_usage(p_business_id),
      'subscription', to_jsonb(s) - 'stripe_customer_id',
      'lines', coalesce((select jsonb_agg(to_jsonb(l) order by l.starts_at, l.kind, l.item_key)
                         from public.business_subscription_lines l where l.business_id = p_business_id and l.ends_at is null), '[]'),
      'invoice', (select to_jsonb(i) || jsonb_build_object('lines', coalesce((
                    select jsonb_agg(to_jsonb(il) order by il.starts_on, il.kind, il.item_key)
                    from public.billing_invoice_lines il where il.business_id = i.business_id and il.invoice_id = i.id), '[]'))
                  from public.billing_invoices i
                  where i.business_id = p_business_id and i.period_start = s.current_period_start))
    from public.business_subscriptions s join public.plans p on p.key = s.plan_key
    where s.business_id = p_business_id
  );
end
$$;
revoke all on function app.billing_overview(uuid) from public;
grant execute on function app.billing_overview(uuid) to authenticated, service_role;

create function public.billing_overview(business_id uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select app.billing_overview(business_id)
$$;
revoke all on function public.billing_overview(uuid) from public, anon;
grant execute on function public.billing_overview(uuid) to authenticated, service_role;

-- section reference data
update public.plans p set
  description = v.description, features = v.features::jsonb, max_venues = v.max_venues, max_staff = v.max_staff,
  max_orders_per_month = v.max_orders, voice_credits_included = v.credits, platform_fee_bps = v.fee_bps,
  platform_fee_fixed_cents = v.fee_fixed
from (values
  ('starter', 'One place, online ordering and the basics', '["storefront", "online_ordering", "qr_ordering", "pickup_codes"]',
   5, 15, 3000, 500, 300, 30),
  ('growth', 'Several venues, CRM and loyalty', '["storefront", "online_ordering", "qr_ordering", "pickup_codes", "custom_domain", "crm", "loyalty"]',
   15, 50, 15000, 2000, 250, 25),
  ('professional', 'Campaigns, voice and dispatch at volume', '["storefront", "online_ordering", "qr_ordering", "pickup_codes", "custom_domain", "crm", "loyalty", "campaigns", "priority_support"]',
   50, 200, 100000, 10000, 200, 20),
  ('enterprise', 'Franchises: no limits, lowest fees', '["storefront", "online_ordering", "qr_ordering", "pickup_codes", "custom_domain", "crm", "loyalty", "campaigns", "priority_support", "sla"]',
   null, null, null, 50000, 100, 10)
) as v (key, description, features, max_venues, max_staff, max_orders, credits, fee_bps, fee_fixed)
where p.key = v.key;

update public.business_subscriptions s set trial_ends_at = s.current_period_start + interval '14 days'
where s.trial_ends_at is null and s.status = 'trial';

-- section stripe billing wiring
/** Stripe Billing events arrive through the same webhook and ledger as payments (app.apply_stripe_event
    records each event once in stripe_events); this trigger hands the subscription and invoice ones to
    the billing adapter, without touching the order flow's dispatch. */
create function app.tg_stripe_events_billing() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  perform app.apply_stripe_billing_event(new.payload);
  return null;
end
$$;

create trigger stripe_events_billing after insert on public.stripe_events
  for each row when (new.type like 'customer.subscription.%' or new.type in ('invoice.paid', 'invoice.payment_failed'))
  execute function app.tg_stripe_events_billing();
