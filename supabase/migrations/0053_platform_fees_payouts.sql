-- Platform fees and payouts: a fee per payment from the business's plan (percentage and fixed),
-- recorded by a trigger on public.payments; per-period payouts (gross, platform fees, refunds,
-- delivery costs, net) and their CSV export for the operator and the merchant. Delivery costs come
-- from the dispatch module through app.payout_delivery_cost (0 until it exists). Codes BR74x.

-- section tables

/** The platform's fee on one payment: round(amount × fee_bps / 10000) + fixed, capped at the
    amount, from the plan at the time of payment. Append-only. Owners and the operator read it. */
create table public.platform_fees (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  payment_id uuid not null,
  order_id uuid not null,
  plan_key text not null,
  base_amount_cents integer not null,
  fee_bps integer not null,
  fixed_cents integer not null,
  fee_cents integer not null constraint platform_fees_fee_nonnegative check (fee_cents >= 0),
  currency text not null,
  created_at timestamptz not null default now(),
  constraint platform_fees_pkey primary key (business_id, id),
  constraint platform_fees_payment_key unique (business_id, payment_id),
  constraint platform_fees_payment_fkey foreign key (business_id, payment_id) references public.payments (business_id, id) on delete cascade
);
alter table public.platform_fees enable row level security;

/** What the platform owes a business for a period: gross payments, minus platform fees, refunds and
    delivery costs. Recomputed while `pending`; `paid` is final. Owners and the operator read it. */
create table public.business_payouts (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  period_start timestamptz not null,
  period_end timestamptz not null,
  currency text not null,
  payments_count integer not null default 0,
  gross_cents bigint not null default 0,
  platform_fee_cents bigint not null default 0,
  refunds_cents bigint not null default 0,
  delivery_cost_cents bigint not null default 0,
  net_cents bigint not null default 0,
  status text not null default 'pending' constraint business_payouts_status_valid check (status in ('pending', 'paid')),
  computed_at timestamptz not null default now(),
  paid_at timestamptz,
  created_at timestamptz not null default now(),
  constraint business_payouts_pkey primary key (business_id, id),
  constraint business_payouts_period_key unique (business_id, period_start, period_end),
  constraint business_payouts_period check (period_end > period_start),
  constraint business_payouts_net check (net_cents = gross_cents - platform_fee_cents - refunds_cents - delivery_cost_cents)
);
alter table public.business_payouts enable row level security;

-- section indexes
create index platform_fees_business_created_idx on public.platform_fees (business_id, created_at);
create index platform_fees_order_idx on public.platform_fees (business_id, order_id);
create index business_payouts_business_period_idx on public.business_payouts (business_id, period_start desc);
create index payments_business_created_idx on public.payments (business_id, created_at);

-- section private helpers

/** The delivery cost of an order for payouts: app.order_delivery_cost (the dispatch module) when it
    exists, else 0. Called dynamically so this migration does not depend on dispatch landing first. */
create function app.payout_delivery_cost(p_order_id uuid) returns bigint
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_cost bigint;
begin
  if to_regprocedure('app.order_delivery_cost(uuid)') is null then
    return 0;
  end if;
  execute 'select app.order_delivery_cost($1)::bigint' into v_cost using p_order_id;
  return coalesce(v_cost, 0);
end
$$;
revoke all on function app.payout_delivery_cost(uuid) from public;
grant execute on function app.payout_delivery_cost(uuid) to service_role;

/** Computes (upserts) one business's payout for [p_start, p_end): payments created in the period,
    their platform fees, refunds that succeeded in it, delivery costs of its paid delivery orders.
    A paid payout is left alone. Returns the payout row as jsonb. */
create function app.compute_payout(p_business_id uuid, p_start timestamptz, p_end timestamptz) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_row public.business_payouts;
  v_gross bigint;
  v_count integer;
  v_fees bigint;
  v_refunds bigint;
  v_delivery bigint;
begin
  select coalesce(sum(p.amount_cents), 0), count(*) into v_gross, v_count
  from public.payments p where p.business_id = p_business_id and p.created_at >= p_start and p.created_at < p_end;
  select coalesce(sum(f.fee_cents), 0) into v_fees
  from public.platform_fees f where f.business_id = p_business_id and f.created_at >= p_start and f.created_at < p_end;
  select coalesce(sum(r.amount_cents), 0) into v_refunds
  from public.refunds r where r.business_id = p_business_id and r.status = 'succeeded'
    and coalesce(r.applied_at, r.updated_at) >= p_start and coalesce(r.applied_at, r.updated_at) < p_end;
  select coalesce(sum(app.payout_delivery_cost(o.id)), 0) into v_delivery
  from public.orders o where o.business_id = p_business_id and o.fulfilment = 'delivery'
    and o.paid_at >= p_start and o.paid_at < p_end;

  insert into public.business_payouts as bp (business_id, period_start, period_end, currency, payments_count, gross_cents,
                                             platform_fee_cents, refunds_cents, delivery_cost_cents, net_cents)
  select p_business_id, p_start, p_end, b.currency, v_count, v_gross, v_fees, v_refunds, v_delivery,
         v_gross - v_fees - v_refunds - v_delivery
  from public.businesses b where b.id = p_business_id
  on conflict (business_id, period_start, period_end) do update
    set payments_count = excluded.payments_count, gross_cents = excluded.gross_cents,
        platform_fee_cents = excluded.platform_fee_cents, refunds_cents = excluded.refunds_cents,
        delivery_cost_cents = excluded.delivery_cost_cents, net_cents = excluded.net_cents, computed_at = now()
    where bp.status = 'pending';
  select bp.* into v_row from public.business_payouts bp
  where bp.business_id = p_business_id and bp.period_start = p_start and bp.period_end = p_end;
  return to_jsonb(v_row);
end
$$;
revoke all on function app.compute_payout(uuid, timestamptz, timestamptz) from public;
grant execute on function app.compute_payout(uuid, timestamptz, timestamptz) to service_role;

/** The platform's fee on an amount under the business's current plan: round(amount × bps / 10000)
    + fixed, never more than the amount. The checkout's Stripe Connect application fee should use this
    too (today it uses businesses.application_fee_bps; see the issue 9 report). */
create function app.platform_fee_cents(p_business_id uuid, p_amount_cents integer) returns integer
language sql stable security definer
set search_path = ''
as $$
  select least(greatest(p_amount_cents, 0),
               round(p_amount_cents::numeric * coalesce(p.platform_fee_bps, 0) / 10000)::integer + coalesce(p.platform_fee_fixed_cents, 0))
  from (select (app.business_plan(p_business_id)).*) p
$$;
revoke all on function app.platform_fee_cents(uuid, integer) from public;
grant execute on function app.platform_fee_cents(uuid, integer) to service_role;

/** A CSV field, quoted when needed. */
create function app.csv_field(p_value text) returns text
language sql immutable
set search_path = ''
as $$
  select case when p_value is null then ''
              when p_value ~ '[",\r\n]' or p_value <> trim(p_value) then '"' || replace(p_value, '"', '""') || '"'
              else p_value end
$$;
revoke all on function app.csv_field(text) from public;
grant execute on function app.csv_field(text) to authenticated, service_role;

-- section triggers

/** A payment's platform fee, from the plan of its business at the time of payment. */
create function app.tg_payments_platform_fee() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_plan public.plans := app.business_plan(new.business_id);
begin
  insert into public.platform_fees (business_id, payment_id, order_id, plan_key, base_amount_cents, fee_bps, fixed_cents,
                                    fee_cents, currency, created_at)
  values (new.business_id, new.id, new.order_id, coalesce(v_plan.key, 'none'), new.amount_cents,
          coalesce(v_plan.platform_fee_bps, 0), coalesce(v_plan.platform_fee_fixed_cents, 0),
          app.platform_fee_cents(new.business_id, new.amount_cents),
          new.currency, new.created_at)
  on conflict (business_id, payment_id) do nothing;
  return null;
end
$$;

/** A paid payout is final: no going back to pending, no edits to its amounts. BR742. */
create function app.tg_business_payouts_final() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.status = 'paid' then
    perform app.fail('BR742', 'payout_final', 'a paid payout cannot change');
  end if;
  return new;
end
$$;

create trigger payments_platform_fee after insert on public.payments
  for each row execute function app.tg_payments_platform_fee();
create trigger business_payouts_final before update on public.business_payouts
  for each row execute function app.tg_business_payouts_final();
create trigger platform_fees_append_only before update or delete on public.platform_fees
  for each row when (pg_trigger_depth() = 0) execute function app.tg_append_only();

-- section policies
create policy "owners read their platform fees" on public.platform_fees for select to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));
create policy "operator reads every platform fee" on public.platform_fees for select to authenticated
  using ((select app.is_platform_admin()));
create policy "owners read their payouts" on public.business_payouts for select to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));
create policy "operator reads every payout" on public.business_payouts for select to authenticated
  using ((select app.is_platform_admin()));

-- section grants
revoke all on public.platform_fees, public.business_payouts from anon, authenticated;
grant select on public.platform_fees, public.business_payouts to authenticated;
grant all on public.platform_fees, public.business_payouts to service_role;

-- section rpc

/** Operator: compute the payouts of [period_start, period_end) for one business, or for every
    business with payments or refunds in it. Audited per business. Raises 42501, 22023. */
create function app.generate_payouts(p_start timestamptz, p_end timestamptz, p_business_id uuid default null) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_business uuid;
  v_out jsonb := '[]'::jsonb;
  v_row jsonb;
begin
  if not app.is_operator() then
    perform app.fail('42501', 'operator_only', 'only the platform operator may run payouts');
  end if;
  if p_start is null or p_end is null or p_end <= p_start or p_end - p_start > interval '93 days' then
    perform app.fail('22023', 'invalid_period', 'a payout period ends after it starts and spans at most 93 days');
  end if;
  for v_business in
    select b.id from public.businesses b
    where (p_business_id is null or b.id = p_business_id)
      and (p_business_id is not null
           or exists (select 1 from public.payments p where p.business_id = b.id and p.created_at >= p_start and p.created_at < p_end)
           or exists (select 1 from public.refunds r where r.business_id = b.id and r.status = 'succeeded'
                      and coalesce(r.applied_at, r.updated_at) >= p_start and coalesce(r.applied_at, r.updated_at) < p_end))
    order by b.id
  loop
    v_row := app.compute_payout(v_business, p_start, p_end);
    perform app.audit(v_business, 'payout.computed', jsonb_build_object(
      'payout_id', v_row ->> 'id', 'period_start', p_start, 'period_end', p_end, 'net_cents', v_row -> 'net_cents'));
    v_out := v_out || jsonb_build_array(v_row);
  end loop;
  return jsonb_build_object('period_start', p_start, 'period_end', p_end, 'payouts', v_out);
end
$$;
revoke all on function app.generate_payouts(timestamptz, timestamptz, uuid) from public;
grant execute on function app.generate_payouts(timestamptz, timestamptz, uuid) to authenticated, service_role;

create function public.generate_payouts(period_start timestamptz, period_end timestamptz, business_id uuid default null)
returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.generate_payouts(period_start, period_end, business_id)
$$;
revoke all on function public.generate_payouts(timestamptz, timestamptz, uuid) from public, anon;
grant execute on function public.generate_payouts(timestamptz, timestamptz, uuid) to authenticated, service_role;

/** Operator: a payout was sent; it is final from now on. Audited. */
create function app.mark_payout_paid(p_business_id uuid, p_payout_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if not app.is_operator() then
    perform app.fail('42501', 'operator_only', 'only the platform operator may mark payouts paid');
  end if;
  update public.business_payouts set status = 'paid', paid_at = now()
  where business_id = p_business_id and id = p_payout_id and status = 'pending';
  if found then
    perform app.audit(p_business_id, 'payout.paid', jsonb_build_object('payout_id', p_payout_id));
  end if;
  return found;
end
$$;
revoke all on function app.mark_payout_paid(uuid, uuid) from public;
grant execute on function app.mark_payout_paid(uuid, uuid) to authenticated, service_role;

/** Payouts as CSV, one line per payout, read under the caller's RLS: the owner gets their business's,
    the operator every business's (or one, with business_id). Periods overlapping [from, to). */
create function public.payouts_csv(business_id uuid default null, "from" timestamptz default null, "to" timestamptz default null)
returns text
language sql stable
set search_path = ''
as $$
  select 'business_id,business_name,period_start,period_end,currency,payments,gross_cents,platform_fee_cents,refunds_cents,'
         || 'delivery_cost_cents,net_cents,status' || chr(10)
         || coalesce(string_agg(concat_ws(',', p.business_id::text, app.csv_field(b.name),
                                          to_char(p.period_start at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                          to_char(p.period_end at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                          p.currency, p.payments_count, p.gross_cents, p.platform_fee_cents, p.refunds_cents,
                                          p.delivery_cost_cents, p.net_cents, p.status) || chr(10),
                                '' order by b.name, p.period_start), '')
  from public.business_payouts p
  join public.businesses b on b.id = p.business_id
  where (payouts_csv.business_id is null or p.business_id = payouts_csv.business_id)
    and (payouts_csv."from" is null or p.period_end > payouts_csv."from")
    and (payouts_csv."to" is null or p.period_start < payouts_csv."to")
$$;
revoke all on function public.payouts_csv(uuid, timestamptz, timestamptz) from public, anon;
grant execute on function public.payouts_csv(uuid, timestamptz, timestamptz) to authenticated, service_role;
