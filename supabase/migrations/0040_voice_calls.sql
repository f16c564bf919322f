-- Voice: Twilio numbers mapped to venues, the calls the AI agent answers (state, turns, intent,
-- outcome, cost), and the credit ledger every call minute burns (10 credits per started minute),
-- with the balance kept by the database. Gated by the `voice` module. Codes BR4xx (docs/errors.md).

-- section tables

/** A Twilio number that rings a venue. A number routes to one venue of one business; calls to it
    forward to forward_to (else the venue's phone) when the agent does not answer. */
create table public.voice_numbers (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  venue_id uuid not null,
  phone_number text not null constraint voice_numbers_phone_format check (phone_number ~ '^\+[0-9]{7,15}$'),
  forward_to text constraint voice_numbers_forward_format check (forward_to is null or forward_to ~ '^\+[0-9]{7,15}$'),
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  constraint voice_numbers_pkey primary key (business_id, id),
  constraint voice_numbers_business_phone_key unique (business_id, phone_number),
  constraint voice_numbers_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade
);
alter table public.voice_numbers enable row level security;

/** One inbound call: where the conversation is (step, cart, fulfilment, address), every turn said,
    the intent, how it ended and what it cost. Any function instance answers the next turn from here. */
create table public.calls (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  venue_id uuid not null,
  call_sid text not null constraint calls_sid_format check (call_sid ~ '^CA[0-9a-zA-Z]{32}$'),
  from_number text not null,
  to_number text not null,
  customer_id uuid,
  status text not null default 'in_progress' constraint calls_status_valid check (status in ('in_progress', 'completed')),
  twilio_status text,
  step text not null default 'intent'
    constraint calls_step_valid check (step in ('intent', 'items', 'fulfilment', 'address', 'confirm', 'done')),
  intent text constraint calls_intent_valid check (intent in ('order', 'status', 'human', 'unknown')),
  outcome text constraint calls_outcome_valid
    check (outcome in ('ordered', 'status_given', 'handed_off', 'abandoned', 'forwarded', 'closed')),
  forward_reason text constraint calls_forward_reason_valid check (forward_reason in ('module_disabled', 'no_credits')),
  cart jsonb not null default '[]'::jsonb constraint calls_cart_array check (jsonb_typeof(cart) = 'array'),
  fulfilment text constraint calls_fulfilment_valid check (fulfilment in ('pickup', 'delivery')),
  delivery_address jsonb,
  turns jsonb not null default '[]'::jsonb constraint calls_turns_array check (jsonb_typeof(turns) = 'array'),
  misses integer not null default 0,
  silences integer not null default 0,
  order_id uuid,
  nlu_backend text,
  duration_seconds integer constraint calls_duration_nonnegative check (duration_seconds >= 0),
  credits_charged integer not null default 0 constraint calls_credits_nonnegative check (credits_charged >= 0),
  started_at timestamptz not null default now(),
  ended_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint calls_pkey primary key (business_id, id),
  constraint calls_business_sid_key unique (business_id, call_sid),
  constraint calls_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade,
  constraint calls_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id) on delete set null (customer_id),
  constraint calls_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete set null (order_id),
  constraint calls_forwarded_reason check ((outcome = 'forwarded') = (forward_reason is not null))
);
alter table public.calls enable row level security;

/** Append-only credit ledger: a call's burn (negative, once per call SID), top-ups and grants
    (positive), adjustments. balance_after is the business's balance once this row applied. */
create table public.credit_transactions (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id bigint generated always as identity,
  kind text not null constraint credit_transactions_kind_valid check (kind in ('call', 'top_up', 'adjustment')),
  credits integer not null constraint credit_transactions_credits_nonzero check (credits <> 0),
  reason text not null default '' constraint credit_transactions_reason_length check (length(reason) <= 200),
  call_id uuid,
  call_sid text,
  call_seconds integer,
  idempotency_key text,
  balance_after integer not null default 0,
  created_by uuid,
  created_at timestamptz not null default now(),
  constraint credit_transactions_pkey primary key (business_id, id),
  constraint credit_transactions_call_fkey foreign key (business_id, call_id) references public.calls (business_id, id),
  constraint credit_transactions_business_key unique (business_id, idempotency_key),
  constraint credit_transactions_call_shape check ((kind = 'call') = (call_sid is not null) and (kind <> 'call' or credits < 0))
);
alter table public.credit_transactions enable row level security;

/** The business's credit balance: the sum of its ledger, kept by the ledger's trigger. */
create table public.voice_credit_balances (
  business_id uuid not null references public.businesses (id) on delete cascade,
  balance integer not null default 0,
  updated_at timestamptz not null default now(),
  constraint voice_credit_balances_pkey primary key (business_id)
);
alter table public.voice_credit_balances enable row level security;

-- section indexes
create index voice_numbers_phone_idx on public.voice_numbers (phone_number) where is_active;
create index voice_numbers_venue_idx on public.voice_numbers (business_id, venue_id);
create index calls_sid_idx on public.calls (call_sid);
create index calls_venue_started_idx on public.calls (business_id, venue_id, started_at desc);
create index calls_customer_idx on public.calls (business_id, customer_id) where customer_id is not null;
create index calls_order_idx on public.calls (business_id, order_id) where order_id is not null;
create unique index credit_transactions_call_key on public.credit_transactions (business_id, call_sid) where kind = 'call';
create index credit_transactions_created_idx on public.credit_transactions (business_id, created_at desc);

-- section private helpers

/** What a call of this many seconds costs: 10 credits per started minute. */
create function app.voice_call_credits(p_seconds integer) returns integer
language sql immutable
set search_path = ''
as $$
  select 10 * ceil(greatest(coalesce(p_seconds, 0), 0) / 60.0)::integer
$$;
revoke all on function app.voice_call_credits(integer) from public;
grant execute on function app.voice_call_credits(integer) to anon, authenticated, service_role;

/** The menu the agent offers at a venue: available products with their variants and options. */
create function app.voice_menu(p_business_id uuid, p_venue_id uuid) returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_build_object(
    'id', p.id, 'name', p.name, 'price_cents', p.price_cents,
    'variants', (select coalesce(jsonb_agg(jsonb_build_object('id', pv.id, 'name', pv.name, 'is_default', pv.is_default,
                                                              'price_adjustment_cents', pv.price_adjustment_cents)
                                           order by pv.sort_order, pv.name), '[]'::jsonb)
                 from public.product_variants pv
                 where pv.business_id = p.business_id and pv.product_id = p.id and pv.is_available),
    'modifiers', (select coalesce(jsonb_agg(jsonb_build_object('id', m.id, 'name', m.name, 'group', g.name,
                                                               'price_cents', m.price_cents) order by pmg.sort_order, m.sort_order, m.name), '[]'::jsonb)
                  from public.product_modifier_groups pmg
                  join public.modifier_groups g on g.business_id = pmg.business_id and g.id = pmg.group_id
                  join public.modifiers m on m.business_id = g.business_id and m.group_id = g.id and m.is_available
                  where pmg.business_id = p.business_id and pmg.product_id = p.id))
    order by p.sort_order, p.name), '[]'::jsonb)
  from public.products p
  where p.business_id = p_business_id and app.product_available(p_business_id, p_venue_id, p.id)
$$;
revoke all on function app.voice_menu(uuid, uuid) from public;
grant execute on function app.voice_menu(uuid, uuid) to service_role;

/** Who is calling, if the business knows the number: name, allergens (the customer's and the CRM's
    explicit allergen preferences) and usual order (the line they ordered most often). */
create function app.voice_caller(p_business_id uuid, p_phone text) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_customer public.customers;
  v_allergens text[];
  v_usual jsonb;
begin
  select c.* into v_customer from public.customers c
  where c.business_id = p_business_id and c.phone = app.normalize_phone(p_phone);
  if v_customer.id is null then
    return null;
  end if;
  v_allergens := v_customer.allergens;
  if to_regclass('public.customer_preferences') is not null then
    select coalesce(array_agg(distinct a), '{}') into v_allergens from (
      select unnest(v_customer.allergens) a
      union select cp.value from public.customer_preferences cp
      where cp.business_id = p_business_id and cp.customer_id = v_customer.id and cp.kind = 'allergen') x;
  end if;
  select jsonb_build_object('product_id', i.product_id, 'name', i.name, 'variant', i.variant_name,
                            'modifiers', (select coalesce(jsonb_agg(m ->> 'name'), '[]'::jsonb) from jsonb_array_elements(i.modifiers) m),
                            'times', count(*) over (partition by i.product_id, i.variant_name, i.modifiers))
  into v_usual
  from public.order_items i
  join public.orders o on o.business_id = i.business_id and o.id = i.order_id
  where o.business_id = p_business_id and (o.customer_id = v_customer.id or o.guest_phone = v_customer.phone)
    and o.payment_status in ('paid', 'partially_refunded')
  order by count(*) over (partition by i.product_id, i.variant_name, i.modifiers) desc, o.placed_at desc
  limit 1;
  return jsonb_build_object('customer_id', v_customer.id, 'name', v_customer.full_name,
                            'allergens', to_jsonb(v_allergens), 'usual', v_usual);
end
$$;
revoke all on function app.voice_caller(uuid, text) from public;
grant execute on function app.voice_caller(uuid, text) to service_role;

/** The caller's latest order at the business (by phone), for a status check; null when none. */
create function app.voice_latest_order(p_business_id uuid, p_phone text) returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select jsonb_build_object('order_id', o.id, 'order_number', o.order_number, 'status', o.status,
                            'payment_status', o.payment_status, 'fulfilment', o.fulfilment,
                            'total_cents', o.total_cents, 'currency', o.currency, 'placed_at', o.placed_at)
  from public.orders o
  left join public.customers c on c.business_id = o.business_id and c.id = o.customer_id
  where o.business_id = p_business_id
    and (o.guest_phone = app.normalize_phone(p_phone) or c.phone = app.normalize_phone(p_phone))
  order by o.placed_at desc
  limit 1
$$;
revoke all on function app.voice_latest_order(uuid, text) from public;
grant execute on function app.voice_latest_order(uuid, text) to service_role;

/** An inbound call arrives (Twilio's first webhook; a retry of it finds the same row). Finds the
    venue by the called number and decides: answer with the agent, or forward to the venue because
    the voice module is off or the business has no credits left. Returns the call, the venue, the
    decision, whether the venue is open, the caller's profile and the menu; null for a number that
    is not Brigade's. Service only. */
create function app.voice_start_call(p_call_sid text, p_from text, p_to text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_number public.voice_numbers;
  v_venue public.venues;
  v_call public.calls;
  v_reason text;
  v_caller jsonb;
  v_balance integer;
begin
  select n.* into v_number from public.voice_numbers n
  where n.phone_number = app.normalize_phone(p_to) and n.is_active
  limit 1;
  if v_number.id is null then
    return null;
  end if;
  select v.* into v_venue from public.venues v where v.business_id = v_number.business_id and v.id = v_number.venue_id;

  select c.* into v_call from public.calls c where c.business_id = v_number.business_id and c.call_sid = p_call_sid;
  if v_call.id is null then
    v_balance := coalesce((select b.balance from public.voice_credit_balances b where b.business_id = v_number.business_id), 0);
    v_reason := case when not app.module_enabled(v_number.business_id, 'voice') then 'module_disabled'
                     when v_balance <= 0 then 'no_credits' end;
    v_caller := case when v_reason is null then app.voice_caller(v_number.business_id, p_from) end;
    insert into public.calls (business_id, venue_id, call_sid, from_number, to_number, customer_id, outcome, forward_reason, step)
    values (v_number.business_id, v_number.venue_id, p_call_sid, coalesce(app.normalize_phone(p_from), 'anonymous'),
            app.normalize_phone(p_to), (v_caller ->> 'customer_id')::uuid,
            case when v_reason is not null then 'forwarded' end, v_reason,
            case when v_reason is not null then 'done' else 'intent' end)
    on conflict on constraint calls_business_sid_key do nothing
    returning * into v_call;
    if v_call.id is null then  -- a concurrent retry of the same webhook inserted it first
      select c.* into v_call from public.calls c where c.business_id = v_number.business_id and c.call_sid = p_call_sid;
    end if;
  end if;
  if v_call.forward_reason is null then
    v_caller := app.voice_caller(v_number.business_id, p_from);
  end if;

  return jsonb_build_object(
    'call_id', v_call.id, 'business_id', v_call.business_id, 'venue_id', v_call.venue_id,
    'business_name', (select b.name from public.businesses b where b.id = v_call.business_id),
    'venue_name', v_venue.name, 'forward_to', coalesce(v_number.forward_to, v_venue.phone),
    'decision', case when v_call.forward_reason is null then 'answer' else 'forward' end,
    'forward_reason', v_call.forward_reason,
    'open', app.venue_is_open(v_call.business_id, v_call.venue_id, now()),
    'caller', v_caller);
end
$$;
revoke all on function app.voice_start_call(text, text, text) from public;
grant execute on function app.voice_start_call(text, text, text) to service_role;

/** The state of a call for its next turn (locked until the turn commits), with what the agent
    needs: the venue, whether it is open, the forwarding number, the caller and the menu. Null for
    an unknown call SID. Service only. */
create function app.voice_load_call(p_call_sid text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_call public.calls;
  v_venue public.venues;
  v_number_forward text;
begin
  select c.* into v_call from public.calls c where c.call_sid = p_call_sid limit 1 for update;
  if v_call.id is null then
    return null;
  end if;
  select v.* into v_venue from public.venues v where v.business_id = v_call.business_id and v.id = v_call.venue_id;
  select n.forward_to into v_number_forward from public.voice_numbers n
  where n.business_id = v_call.business_id and n.phone_number = v_call.to_number;
  return to_jsonb(v_call) || jsonb_build_object(
    'call_id', v_call.id,
    'business_name', (select b.name from public.businesses b where b.id = v_call.business_id),
    'venue_name', v_venue.name, 'forward_to', coalesce(v_number_forward, v_venue.phone),
    'accepts_pickup', v_venue.accepts_pickup, 'accepts_delivery', v_venue.accepts_delivery,
    'module_enabled', app.module_enabled(v_call.business_id, 'voice'),
    'open', app.venue_is_open(v_call.business_id, v_call.venue_id, now()),
    'caller', app.voice_caller(v_call.business_id, v_call.from_number),
    'menu', app.voice_menu(v_call.business_id, v_call.venue_id));
end
$$;
revoke all on function app.voice_load_call(text) from public;
grant execute on function app.voice_load_call(text) to service_role;

/** Twilio's status callback: a final status (completed, busy, no-answer, failed, canceled) ends the
    call and, for a call the agent answered, writes its burn to the ledger once per call SID
    (10 credits per started minute of CallDuration). Duplicates and late callbacks change nothing.
    Returns the call's cost. Service only. */
create function app.voice_end_call(p_call_sid text, p_status text, p_duration_seconds integer) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_call public.calls;
  v_credits integer;
  v_charged boolean := false;
begin
  select c.* into v_call from public.calls c where c.call_sid = p_call_sid limit 1 for update;
  if v_call.id is null then
    return null;
  end if;
  if p_status not in ('completed', 'busy', 'no-answer', 'failed', 'canceled') then
    update public.calls set twilio_status = p_status where business_id = v_call.business_id and id = v_call.id and status = 'in_progress';
    return jsonb_build_object('call_id', v_call.id, 'final', false, 'credits', v_call.credits_charged);
  end if;
  v_credits := case when v_call.forward_reason is null then app.voice_call_credits(p_duration_seconds) else 0 end;
  if v_credits > 0 then
    insert into public.credit_transactions (business_id, kind, credits, reason, call_id, call_sid, call_seconds)
    values (v_call.business_id, 'call', -v_credits, format('call %s (%s s)', v_call.call_sid, p_duration_seconds),
            v_call.id, v_call.call_sid, p_duration_seconds)
    on conflict (business_id, call_sid) where kind = 'call' do nothing;
    v_charged := found;
  end if;
  if v_call.status = 'in_progress' then
    update public.calls set status = 'completed', twilio_status = p_status, ended_at = now(),
      duration_seconds = greatest(coalesce(p_duration_seconds, 0), 0),
      credits_charged = case when v_charged then v_credits else credits_charged end,
      outcome = coalesce(outcome, 'abandoned'), step = 'done'
    where business_id = v_call.business_id and id = v_call.id
    returning * into v_call;
  end if;
  return jsonb_build_object('call_id', v_call.id, 'final', true, 'charged', v_charged, 'credits', v_call.credits_charged);
end
$$;
revoke all on function app.voice_end_call(text, text, integer) from public;
grant execute on function app.voice_end_call(text, text, integer) to service_role;

/** Adds credits to a business (a top-up or a plan's included credits; negative: an adjustment).
    With a key, the same grant applied twice counts once. Returns the new balance. For the platform
    operator, the service and direct database sessions (billing calls it); raises 42501 otherwise, BR402 for 0 credits, BR401
    when an adjustment would take the balance below zero. */
create function app.grant_voice_credits(p_business_id uuid, p_credits integer, p_reason text, p_key text default null)
returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  -- a direct database session (no JWT claims: the seed, a migration, psql) is trusted like the service
  if not (app.is_platform_or_service() or coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}') = '{}') then
    perform app.fail('42501', 'operator_only', 'only the platform operator grants voice credits');
  end if;
  if coalesce(p_credits, 0) = 0 then
    perform app.fail('BR402', 'invalid_credits', 'a grant needs a non-zero number of credits');
  end if;
  if not exists (select 1 from public.businesses b where b.id = p_business_id) then
    perform app.fail('PT404', 'not_found', 'no such business');
  end if;
  insert into public.credit_transactions (business_id, kind, credits, reason, idempotency_key, created_by)
  values (p_business_id, case when p_credits > 0 then 'top_up' else 'adjustment' end, p_credits,
          left(coalesce(p_reason, ''), 200), p_key, auth.uid())
  on conflict on constraint credit_transactions_business_key do nothing;
  if found then
    perform app.audit(p_business_id, 'voice.credits_granted', jsonb_build_object('credits', p_credits, 'reason', p_reason, 'key', p_key));
  end if;
  return (select b.balance from public.voice_credit_balances b where b.business_id = p_business_id);
end
$$;
revoke all on function app.grant_voice_credits(uuid, integer, text, text) from public;
grant execute on function app.grant_voice_credits(uuid, integer, text, text) to authenticated, service_role;

-- section triggers

/** A number rings one venue of one business: refuse a number another business already holds. */
create function app.tg_voice_numbers_unique() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  perform pg_advisory_xact_lock(hashtext('voice_number:' || new.phone_number));
  if exists (select 1 from public.voice_numbers n
             where n.phone_number = new.phone_number and n.business_id <> new.business_id) then
    perform app.fail('BR403', 'number_taken', 'this number already rings another business');
  end if;
  return new;
end
$$;

/** Stamps balance_after on a ledger row about to be written, with the balance row locked until the
    transaction ends. Only a call's burn may take the balance below zero (the minutes were already
    spoken; the next call forwards). The balance itself moves in the AFTER trigger: a BEFORE trigger
    also fires for a row that ON CONFLICT DO NOTHING then skips. */
create function app.tg_credit_transactions_stamp() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_balance integer;
begin
  insert into public.voice_credit_balances (business_id, balance) values (new.business_id, 0) on conflict (business_id) do nothing;
  select b.balance into v_balance from public.voice_credit_balances b where b.business_id = new.business_id for update;
  new.balance_after := v_balance + new.credits;
  if new.balance_after < 0 and new.kind <> 'call' then
    perform app.fail('BR401', 'insufficient_credits', format('the balance would be %s credits', new.balance_after));
  end if;
  return new;
end
$$;

/** Applies a written ledger row to the business's balance. */
create function app.tg_credit_transactions_apply() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  update public.voice_credit_balances set balance = balance + new.credits, updated_at = now()
  where business_id = new.business_id;
  return null;
end
$$;

/** Calls only move forward: in_progress → completed; an outcome, once set, stays. */
create function app.tg_calls_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.status = 'completed' and new.status <> 'completed' then
    perform app.fail('BR404', 'call_ended', 'a completed call cannot be reopened');
  end if;
  if old.outcome is not null and new.outcome is distinct from old.outcome then
    perform app.fail('BR404', 'outcome_set', format('the call already ended as %s', old.outcome));
  end if;
  new.updated_at := now();
  return new;
end
$$;

create trigger voice_numbers_unique before insert or update of phone_number on public.voice_numbers
  for each row execute function app.tg_voice_numbers_unique();
create trigger credit_transactions_stamp before insert on public.credit_transactions
  for each row execute function app.tg_credit_transactions_stamp();
create trigger credit_transactions_apply after insert on public.credit_transactions
  for each row execute function app.tg_credit_transactions_apply();
create trigger credit_transactions_append_only before update or delete on public.credit_transactions
  for each row execute function app.tg_append_only();
create trigger calls_guard before update on public.calls
  for each row execute function app.tg_calls_guard();

-- section policies

create policy "managers read voice numbers" on public.voice_numbers for select to authenticated
  using (app.module_enabled(business_id, 'voice') and app.is_member(business_id, '{owner,manager}'));

create policy "managers read calls" on public.calls for select to authenticated
  using (app.module_enabled(business_id, 'voice') and app.is_member(business_id, '{owner,manager}'));
create policy "staff read calls of their venues" on public.calls for select to authenticated
  using (app.module_enabled(business_id, 'voice')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{staff}') k));

create policy "managers read credit transactions" on public.credit_transactions for select to authenticated
  using (app.is_member(business_id, '{owner,manager}'));

create policy "managers read the credit balance" on public.voice_credit_balances for select to authenticated
  using (app.is_member(business_id, '{owner,manager}'));

-- section grants
revoke all on public.voice_numbers, public.calls, public.credit_transactions, public.voice_credit_balances from anon, authenticated;
grant select on public.voice_numbers, public.calls, public.credit_transactions, public.voice_credit_balances to authenticated;
grant all on public.voice_numbers, public.calls, public.credit_transactions, public.voice_credit_balances to service_role;

-- section views

/** The merchant's call log: each call with its transcript, intent, outcome, order and cost. */
create view public.voice_call_log with (security_invoker = true) as
  select c.business_id, c.venue_id, c.id as call_id, c.from_number, c.started_at, c.ended_at, c.duration_seconds,
         c.intent, c.outcome, c.forward_reason, c.order_id, o.order_number, c.credits_charged, c.turns,
         jsonb_array_length(c.turns) as turn_count, cu.full_name as customer_name
  from public.calls c
  left join public.orders o on o.business_id = c.business_id and o.id = c.order_id
  left join public.customers cu on cu.business_id = c.business_id and cu.id = c.customer_id;
revoke all on public.voice_call_log from anon, authenticated;
grant select on public.voice_call_log to authenticated, service_role;

-- section rpc

/** The operator (or the service) adds voice credits to a business; see app.grant_voice_credits. */
create function public.grant_voice_credits(business_id uuid, credits integer, reason text, idempotency_key text default null)
returns integer
language sql volatile
set search_path = ''
as $$
  select app.grant_voice_credits(business_id, credits, reason, idempotency_key)
$$;
revoke all on function public.grant_voice_credits(uuid, integer, text, text) from public;
grant execute on function public.grant_voice_credits(uuid, integer, text, text) to authenticated, service_role;
