-- Scheduled business payouts paid through Stripe Connect (issue 23 item 1). 0053 computes a period's
-- payout and 0081 runs the computation on each business's weekly/monthly schedule; nothing sent money.
-- Now, once a scheduled period is over, app.prepare_due_payouts moves its payout from `pending` to
-- `processing` (amounts frozen, a negative or failed balance of earlier periods carried in) and emits
-- `payout.transfer_requested`; the worker creates one Stripe transfer to the business's connected
-- account with the idempotency key `payout:<id>`. The payout becomes `paid` only when Stripe says so
-- (`transfer.created` / `transfer.updated` of an unreversed transfer), `failed` when Stripe refuses the
-- transfer or reverses it in full. A negative amount due is `carried_forward`; a failed or carried
-- amount is added to the business's next payout, once (carried_into_payout_id). `payout.*` events of a
-- connected account (its bank payouts) are kept in connect_payouts. States only move forward, so a
-- duplicated or reordered webhook can never pay a payout twice. Codes BR743.

-- section tables

alter table public.business_payouts drop constraint business_payouts_status_valid;
alter table public.business_payouts
  add column carried_in_cents bigint not null default 0,
  add column amount_due_cents bigint generated always as (net_cents + carried_in_cents) stored,
  add column carried_into_payout_id uuid,
  add column stripe_account_id text,
  add column idempotency_key text,
  add column stripe_transfer_id text,
  add column sent_at timestamptz,
  add column failed_at timestamptz,
  add column failure_reason text,
  add constraint business_payouts_status_valid
    check (status in ('pending', 'processing', 'paid', 'failed', 'carried_forward')),
  add constraint business_payouts_transfer_key unique (business_id, stripe_transfer_id),
  add constraint business_payouts_carried_into_fkey foreign key (business_id, carried_into_payout_id)
    references public.business_payouts (business_id, id);

/** A connected account's bank payouts as Stripe reports them (`payout.created`, `.updated`, `.paid`,
    `.failed`, `.canceled` with the event's `account`): what left Stripe for the business's bank after
    the platform's transfers landed. Status moves forward only. Owners and the operator read it. */
create table public.connect_payouts (
  business_id uuid not null references public.businesses (id) on delete cascade,
  stripe_payout_id text not null,
  stripe_account_id text not null,
  amount_cents bigint not null,
  currency text not null,
  status text not null constraint connect_payouts_status_valid
    check (status in ('pending', 'in_transit', 'paid', 'failed', 'canceled')),
  arrival_date timestamptz,
  failure_code text,
  updated_at timestamptz not null default now(),
  created_at timestamptz not null default now(),
  constraint connect_payouts_pkey primary key (business_id, stripe_payout_id)
);
alter table public.connect_payouts enable row level security;

-- section indexes
create index business_payouts_transfer_idx on public.business_payouts (stripe_transfer_id) where stripe_transfer_id is not null;
create index business_payouts_carry_idx on public.business_payouts (business_id, period_start)
  where status in ('failed', 'carried_forward') and carried_into_payout_id is null;
create index business_payouts_status_idx on public.business_payouts (status, period_end) where status = 'pending';
create index connect_payouts_account_idx on public.connect_payouts (stripe_account_id);

-- section private helpers

/** Whether a payout may move from one status to another: pending → processing | carried_forward |
    paid (the operator's manual mark); processing → paid | failed. Nothing goes back. */
create function app.payout_transition_allowed(p_from text, p_to text) returns boolean
language sql immutable
set search_path = ''
as $$
  select p_from = p_to
      or (p_from = 'pending' and p_to in ('processing', 'carried_forward', 'paid'))
      or (p_from = 'processing' and p_to in ('paid', 'failed'))
$$;
revoke all on function app.payout_transition_allowed(text, text) from public;
grant execute on function app.payout_transition_allowed(text, text) to service_role;

/** The scheduled sending (job platform.payouts, after the computation): every pending payout of a
    business on a weekly or monthly schedule whose period is over takes in the unpaid balance of its
    earlier failed or carried-forward payouts, then is carried forward (amount due ≤ 0), waits (no
    connected account yet, or another payout of the business overlaps its period) or moves to `processing` with its idempotency key and a
    `payout.transfer_requested` event. Returns the payouts moved to processing. Service only. */
create function app.prepare_due_payouts(p_now timestamptz default now()) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_payout record;
  v_carry bigint;
  v_due bigint;
  v_out jsonb := '[]'::jsonb;
begin
  for v_payout in
    select bp.business_id, bp.id, bp.net_cents, bp.carried_in_cents, bp.currency, bp.period_start, bp.period_end,
           b.stripe_account_id
    from public.business_payouts bp
    join public.businesses b on b.id = bp.business_id
    where bp.status = 'pending' and bp.period_end <= p_now
      and b.payout_schedule in ('weekly', 'monthly') and b.status = 'active'
      -- two payouts over overlapping periods would count the same payments twice: neither is sent
      -- until the operator removes one (generate_payouts takes any period)
      and not exists (select 1 from public.business_payouts o where o.business_id = bp.business_id and o.id <> bp.id
                       and o.period_start < bp.period_end and bp.period_start < o.period_end)
    order by bp.business_id, bp.period_start
    for update of bp skip locked
  loop
    with carried as (
      update public.business_payouts c set carried_into_payout_id = v_payout.id
      where c.business_id = v_payout.business_id and c.status in ('failed', 'carried_forward')
        and c.carried_into_payout_id is null and c.id <> v_payout.id and c.period_start < v_payout.period_start
      returning c.amount_due_cents
    )
    select coalesce(sum(amount_due_cents), 0) into v_carry from carried;
    v_due := v_payout.net_cents + v_payout.carried_in_cents + v_carry;
    if v_due <= 0 then
      update public.business_payouts set carried_in_cents = carried_in_cents + v_carry, status = 'carried_forward'
      where business_id = v_payout.business_id and id = v_payout.id;
      perform app.audit(v_payout.business_id, 'payout.carried_forward', jsonb_build_object(
        'payout_id', v_payout.id, 'amount_due_cents', v_due));
    elsif v_payout.stripe_account_id is null then
      update public.business_payouts set carried_in_cents = carried_in_cents + v_carry
      where business_id = v_payout.business_id and id = v_payout.id;
    else
      update public.business_payouts
      set carried_in_cents = carried_in_cents + v_carry, status = 'processing', stripe_account_id = v_payout.stripe_account_id,
          idempotency_key = 'payout:' || v_payout.id, sent_at = p_now
      where business_id = v_payout.business_id and id = v_payout.id;
      perform app.emit('payout.transfer_requested', v_payout.business_id, jsonb_build_object('payout_id', v_payout.id));
      perform app.audit(v_payout.business_id, 'payout.sent', jsonb_build_object(
        'payout_id', v_payout.id, 'amount_due_cents', v_due, 'destination', v_payout.stripe_account_id));
      v_out := v_out || jsonb_build_array(jsonb_build_object('business_id', v_payout.business_id, 'payout_id', v_payout.id,
                                                             'amount_due_cents', v_due));
    end if;
  end loop;
  return v_out;
end
$$;
revoke all on function app.prepare_due_payouts(timestamptz) from public;
grant execute on function app.prepare_due_payouts(timestamptz) to service_role;

/** What the worker sends to Stripe for one payout: the transfer's parameters while the payout is
    `processing` without a transfer yet, else null (already sent, paid or failed). Service only. */
create function app.payout_transfer_request(p_business_id uuid, p_payout_id uuid) returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'amount', bp.amount_due_cents, 'currency', lower(bp.currency), 'destination', bp.stripe_account_id,
    'transfer_group', 'payout_' || bp.id, 'idempotency_key', bp.idempotency_key,
    'description', 'Brigade payout ' || to_char(bp.period_start at time zone 'UTC', 'YYYY-MM-DD') || ' – '
                   || to_char(bp.period_end at time zone 'UTC', 'YYYY-MM-DD'),
    'metadata', jsonb_build_object('kind', 'business_payout', 'business_id', bp.business_id, 'payout_id', bp.id))
  from public.business_payouts bp
  where bp.business_id = p_business_id and bp.id = p_payout_id and bp.status = 'processing' and bp.stripe_transfer_id is null
$$;
revoke all on function app.payout_transfer_request(uuid, uuid) from public;
grant execute on function app.payout_transfer_request(uuid, uuid) to service_role;

/** The worker's result for one payout's transfer: the transfer's id (the payout stays `processing`
    until Stripe's webhook confirms it), or Stripe's refusal (the payout fails, its amount is carried
    into the next one). A late answer for a payout a webhook already settled changes nothing.
    Returns the payout's status. Service only. */
create function app.record_payout_transfer(p_business_id uuid, p_payout_id uuid, p_transfer_id text, p_error text)
returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_status text;
begin
  if p_transfer_id is not null then
    update public.business_payouts set stripe_transfer_id = p_transfer_id
    where business_id = p_business_id and id = p_payout_id and status = 'processing' and stripe_transfer_id is null;
  elsif p_error is not null then
    update public.business_payouts set status = 'failed', failed_at = now(), failure_reason = left(p_error, 500)
    where business_id = p_business_id and id = p_payout_id and status = 'processing' and stripe_transfer_id is null;
    if found then
      perform app.audit(p_business_id, 'payout.failed', jsonb_build_object('payout_id', p_payout_id, 'reason', left(p_error, 500)));
    end if;
  end if;
  select bp.status into v_status from public.business_payouts bp where bp.business_id = p_business_id and bp.id = p_payout_id;
  return v_status;
end
$$;
revoke all on function app.record_payout_transfer(uuid, uuid, text, text) from public;
grant execute on function app.record_payout_transfer(uuid, uuid, text, text) to service_role;

/** The Connect adapter of the Stripe webhook: `transfer.*` settle the business payout named by the
    transfer's metadata (or its transfer id): an unreversed transfer pays a processing payout, a fully
    reversed one fails it. `payout.*` of a connected account are upserted into connect_payouts,
    forward only. Returns what it did. Service only. */
create function app.apply_stripe_connect_event(p_event jsonb) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_type text := p_event ->> 'type';
  v_obj jsonb := p_event -> 'data' -> 'object';
  v_business uuid;
  v_payout uuid;
  v_reversed boolean;
  v_status text;
  v_rank constant jsonb := '{"pending": 0, "in_transit": 1, "paid": 2, "failed": 3, "canceled": 3}';
begin
  if v_type like 'transfer.%' then
    if coalesce(v_obj -> 'metadata' ->> 'kind', '') = 'business_payout'
       and (v_obj -> 'metadata' ->> 'payout_id') ~* '^[0-9a-f-]{36}$'
       and (v_obj -> 'metadata' ->> 'business_id') ~* '^[0-9a-f-]{36}$' then
      select bp.business_id, bp.id into v_business, v_payout from public.business_payouts bp
      where bp.business_id = (v_obj -> 'metadata' ->> 'business_id')::uuid and bp.id = (v_obj -> 'metadata' ->> 'payout_id')::uuid
      for update;
    else
      select bp.business_id, bp.id into v_business, v_payout from public.business_payouts bp
      where bp.stripe_transfer_id = v_obj ->> 'id' for update;
    end if;
    if v_payout is null then
      return 'unknown_payout';
    end if;
    if exists (select 1 from public.business_payouts bp where bp.business_id = v_business and bp.id = v_payout
               and bp.stripe_transfer_id is distinct from v_obj ->> 'id' and bp.stripe_transfer_id is not null) then
      return 'other_transfer';
    end if;
    v_reversed := v_type = 'transfer.reversed' and coalesce((v_obj ->> 'amount_reversed')::bigint, 0) >= coalesce((v_obj ->> 'amount')::bigint, 0)
                  or coalesce((v_obj ->> 'reversed')::boolean, false);
    if v_reversed then
      update public.business_payouts set status = 'failed', failed_at = now(), failure_reason = 'transfer reversed',
                                         stripe_transfer_id = coalesce(stripe_transfer_id, v_obj ->> 'id')
      where business_id = v_business and id = v_payout and status = 'processing';
      if found then
        perform app.audit(v_business, 'payout.failed', jsonb_build_object('payout_id', v_payout, 'reason', 'transfer reversed'));
        return 'payout_failed';
      end if;
      return 'stale';
    elsif v_type in ('transfer.created', 'transfer.updated') then
      update public.business_payouts set status = 'paid', paid_at = now(), stripe_transfer_id = coalesce(stripe_transfer_id, v_obj ->> 'id')
      where business_id = v_business and id = v_payout and status = 'processing';
      if found then
        perform app.audit(v_business, 'payout.paid', jsonb_build_object('payout_id', v_payout, 'transfer_id', v_obj ->> 'id'));
        return 'payout_paid';
      end if;
      return 'stale';
    end if;
    return 'ignored';
  elsif v_type like 'payout.%' then
    select b.id into v_business from public.businesses b where b.stripe_account_id = p_event ->> 'account' limit 1;
    if v_business is null or p_event ->> 'account' is null then
      return 'unknown_account';
    end if;
    v_status := case when v_type = 'payout.canceled' then 'canceled' when v_type = 'payout.failed' then 'failed'
                     else v_obj ->> 'status' end;
    if v_rank ->> coalesce(v_status, '') is null then
      return 'ignored';
    end if;
    insert into public.connect_payouts as cp (business_id, stripe_payout_id, stripe_account_id, amount_cents, currency, status,
                                              arrival_date, failure_code)
    values (v_business, v_obj ->> 'id', p_event ->> 'account', coalesce((v_obj ->> 'amount')::bigint, 0),
            upper(coalesce(v_obj ->> 'currency', '')), v_status,
            case when v_obj ->> 'arrival_date' ~ '^[0-9]+$' then to_timestamp((v_obj ->> 'arrival_date')::bigint) end,
            v_obj ->> 'failure_code')
    on conflict (business_id, stripe_payout_id) do update
      set status = excluded.status, arrival_date = coalesce(excluded.arrival_date, cp.arrival_date),
          failure_code = coalesce(excluded.failure_code, cp.failure_code), updated_at = now()
      where (v_rank ->> excluded.status)::int > (v_rank ->> cp.status)::int;
    return 'connect_payout_' || v_status;
  end if;
  return 'ignored';
end
$$;
revoke all on function app.apply_stripe_connect_event(jsonb) from public;
grant execute on function app.apply_stripe_connect_event(jsonb) to service_role;

-- section triggers

/** Payout statuses move forward only (app.payout_transition_allowed); once a payout left `pending`
    its amounts are frozen. BR743. (A paid payout is already final: BR742, 0053.) */
create function app.tg_business_payouts_transition() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if not app.payout_transition_allowed(old.status, new.status) then
    perform app.fail('BR743', 'payout_transition', format('a payout cannot go from %s to %s', old.status, new.status));
  end if;
  if old.status <> 'pending' and (new.gross_cents, new.platform_fee_cents, new.refunds_cents, new.delivery_cost_cents,
                                  new.carried_in_cents, new.stripe_account_id, new.idempotency_key)
                                 is distinct from (old.gross_cents, old.platform_fee_cents, old.refunds_cents,
                                                   old.delivery_cost_cents, old.carried_in_cents, old.stripe_account_id,
                                                   old.idempotency_key) then
    perform app.fail('BR743', 'payout_transition', 'a payout sent or carried forward keeps its amounts');
  end if;
  return new;
end
$$;

/** Stripe Connect events arrive through the same webhook and ledger (stripe_events, recorded once by
    event id); this trigger hands transfer.* and payout.* to the Connect adapter. */
create function app.tg_stripe_events_connect() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  perform app.apply_stripe_connect_event(new.payload);
  return null;
end
$$;
revoke all on function app.tg_stripe_events_connect() from public;

create trigger business_payouts_transition before update of status, gross_cents, platform_fee_cents, refunds_cents,
  delivery_cost_cents, carried_in_cents, stripe_account_id, idempotency_key on public.business_payouts
  for each row execute function app.tg_business_payouts_transition();
create trigger stripe_events_connect after insert on public.stripe_events
  for each row when (new.type like 'transfer.%' or new.type like 'payout.%')
  execute function app.tg_stripe_events_connect();

-- section policies
create policy "owners read their bank payouts" on public.connect_payouts for select to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));
create policy "operator reads every bank payout" on public.connect_payouts for select to authenticated
  using ((select app.is_platform_admin()));

-- section grants
revoke all on public.connect_payouts from anon, authenticated;
grant select on public.connect_payouts to authenticated;
grant all on public.connect_payouts to service_role;
