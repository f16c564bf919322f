-- Customers as the order flow creates them, their per-venue stats (the CRM module builds its RFM
-- scores and segments on these), the loyalty ledger the paid-order fan-out credits, and the
-- notification log every send is recorded in.

-- section tables

/** A person who ordered from (or was added by) a business. Found or created when an order is
    paid: by Supabase user, then phone, then email. allergens reach kitchen tickets. */
create table public.customers (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  user_id uuid references auth.users (id) on delete set null,
  full_name text,
  email text constraint customers_email_format check (email is null or email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  phone text constraint customers_phone_format check (phone is null or phone ~ '^\+?[0-9]{7,15}$'),
  allergens text[] not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint customers_pkey primary key (business_id, id)
);
alter table public.customers enable row level security;

/** One customer at one venue: what the order flow knows (issue: the CRM module adds scores). */
create table public.customer_venue_stats (
  business_id uuid not null,
  venue_id uuid not null,
  customer_id uuid not null,
  total_orders integer not null default 0,
  total_spent_cents bigint not null default 0,
  first_order_at timestamptz,
  last_order_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint customer_venue_stats_pkey primary key (business_id, venue_id, customer_id),
  constraint customer_venue_stats_customer_fkey foreign key (business_id, customer_id)
    references public.customers (business_id, id) on delete cascade,
  constraint customer_venue_stats_venue_fkey foreign key (business_id, venue_id)
    references public.venues (business_id, id) on delete cascade
);
alter table public.customer_venue_stats enable row level security;

/** A business's earn rule (the rewards engine adds tiers and rewards). */
create table public.loyalty_programs (
  business_id uuid not null references public.businesses (id) on delete cascade,
  points_per_currency_unit integer not null default 1
    constraint loyalty_programs_rate_nonnegative check (points_per_currency_unit >= 0),
  updated_at timestamptz not null default now(),
  constraint loyalty_programs_pkey primary key (business_id)
);
alter table public.loyalty_programs enable row level security;

/** A customer's points balance, kept by the loyalty_transactions ledger; never negative. */
create table public.loyalty_accounts (
  business_id uuid not null,
  customer_id uuid not null,
  balance integer not null default 0 constraint loyalty_accounts_balance_nonnegative check (balance >= 0),
  lifetime_points integer not null default 0,
  updated_at timestamptz not null default now(),
  constraint loyalty_accounts_pkey primary key (business_id, customer_id),
  constraint loyalty_accounts_customer_fkey foreign key (business_id, customer_id)
    references public.customers (business_id, id) on delete cascade
);
alter table public.loyalty_accounts enable row level security;

/** Append-only points ledger: one row per qualifying action, with its reason and source. */
create table public.loyalty_transactions (
  business_id uuid not null,
  id bigint generated always as identity,
  customer_id uuid not null,
  points integer not null constraint loyalty_transactions_points_nonzero check (points <> 0),
  reason text not null,
  order_id uuid,
  refund_id uuid,
  created_at timestamptz not null default now(),
  constraint loyalty_transactions_pkey primary key (business_id, id),
  constraint loyalty_transactions_customer_fkey foreign key (business_id, customer_id)
    references public.customers (business_id, id) on delete cascade
);
alter table public.loyalty_transactions enable row level security;

/** Every message the platform sends or means to send: one row per (event, channel, recipient),
    which is what makes the worker's sends idempotent. cost_cents is fractional (SMS cost cents). */
create table public.notification_log (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  event_key text not null,
  channel text not null constraint notification_log_channel_valid check (channel in ('sms', 'email', 'voice', 'push')),
  recipient text not null,
  template text not null,
  status text not null default 'pending'
    constraint notification_log_status_valid check (status in ('pending', 'sent', 'delivered', 'failed', 'skipped')),
  provider text,
  provider_message_id text,
  cost_cents numeric(12, 4) not null default 0,
  order_id uuid,
  customer_id uuid,
  venue_id uuid,
  detail jsonb not null default '{}'::jsonb,
  error text,
  created_at timestamptz not null default now(),
  sent_at timestamptz,
  constraint notification_log_pkey primary key (business_id, id),
  constraint notification_log_natural_key unique (business_id, event_key, channel, recipient)
);
alter table public.notification_log enable row level security;

-- section indexes
create unique index customers_business_user_key on public.customers (business_id, user_id) where user_id is not null;
create unique index customers_business_phone_key on public.customers (business_id, phone) where phone is not null;
create unique index customers_business_email_key on public.customers (business_id, lower(email)) where email is not null;
create index customers_user_idx on public.customers (user_id) where user_id is not null;
create index customer_venue_stats_customer_idx on public.customer_venue_stats (business_id, customer_id);
create index customer_venue_stats_venue_idx on public.customer_venue_stats (business_id, venue_id, last_order_at desc);
create index loyalty_transactions_customer_idx on public.loyalty_transactions (business_id, customer_id, created_at desc);
create unique index loyalty_transactions_order_reason_key on public.loyalty_transactions (business_id, order_id, reason)
  where order_id is not null and refund_id is null;
create unique index loyalty_transactions_refund_key on public.loyalty_transactions (business_id, refund_id)
  where refund_id is not null;
create index notification_log_order_idx on public.notification_log (business_id, order_id) where order_id is not null;
create index notification_log_pending_idx on public.notification_log (business_id, event_key) where status = 'pending';

-- section private helpers

/** Digits and a leading +: the one form phone numbers are matched and stored in. */
create function app.normalize_phone(p_phone text) returns text
language sql immutable
set search_path = ''
as $$
  select nullif(regexp_replace(coalesce(p_phone, ''), '[^0-9+]', '', 'g'), '')
$$;
revoke all on function app.normalize_phone(text) from public;
grant execute on function app.normalize_phone(text) to anon, authenticated, service_role;

/** The customer for this person at this business, created if new (matched by user, phone, email);
    fills in name, phone or email the record lacked. */
create function app.find_or_create_customer(p_business_id uuid, p_user_id uuid, p_name text, p_phone text, p_email text)
returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_id uuid;
  v_phone text := app.normalize_phone(p_phone);
  v_email text := nullif(lower(trim(p_email)), '');
begin
  select c.id into v_id from public.customers c
  where c.business_id = p_business_id and (
    (p_user_id is not null and c.user_id = p_user_id)
    or (v_phone is not null and c.phone = v_phone)
    or (v_email is not null and lower(c.email) = v_email))
  order by (c.user_id = p_user_id) desc nulls last, (c.phone = v_phone) desc nulls last
  limit 1
  for update;
  if v_id is null then
    insert into public.customers (business_id, user_id, full_name, phone, email)
    values (p_business_id, p_user_id, nullif(trim(p_name), ''), v_phone, v_email)
    on conflict do nothing
    returning id into v_id;
    if v_id is null then  -- a concurrent insert won the unique key: take that row
      return app.find_or_create_customer(p_business_id, p_user_id, p_name, p_phone, p_email);
    end if;
  else
    update public.customers c set
      full_name = coalesce(c.full_name, nullif(trim(p_name), '')),
      user_id = coalesce(c.user_id, p_user_id),
      phone = coalesce(c.phone, case when not exists (select 1 from public.customers o where o.business_id = p_business_id and o.phone = v_phone) then v_phone end),
      email = coalesce(c.email, case when not exists (select 1 from public.customers o where o.business_id = p_business_id and lower(o.email) = v_email) then v_email end),
      updated_at = now()
    where c.business_id = p_business_id and c.id = v_id;
  end if;
  return v_id;
end
$$;
revoke all on function app.find_or_create_customer(uuid, uuid, text, text, text) from public;
grant execute on function app.find_or_create_customer(uuid, uuid, text, text, text) to service_role;

/** Points for a paid order: the business's rate per currency unit (the rewards engine, migration
    0009, replaces this with visits, tiers and bonuses). Once per order. */
create function app.earn_points(p_business_id uuid, p_customer_id uuid, p_order_id uuid, p_total_cents integer) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_points integer;
begin
  select (p_total_cents / 100) * coalesce((select lp.points_per_currency_unit from public.loyalty_programs lp
                                            where lp.business_id = p_business_id), 1) into v_points;
  if v_points > 0 then
    insert into public.loyalty_transactions (business_id, customer_id, points, reason, order_id)
    values (p_business_id, p_customer_id, v_points, 'order', p_order_id)
    on conflict do nothing;
  end if;
  return v_points;
end
$$;
revoke all on function app.earn_points(uuid, uuid, uuid, integer) from public;
grant execute on function app.earn_points(uuid, uuid, uuid, integer) to service_role;

-- section triggers

/** The ledger keeps loyalty_accounts: balance and lifetime points; a debit below zero fails. */
create function app.tg_loyalty_transactions_apply() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.points < 0 then
    update public.loyalty_accounts a set balance = a.balance + new.points, updated_at = now()
    where a.business_id = new.business_id and a.customer_id = new.customer_id;
    if not found then
      raise exception using errcode = 'BR301', message = 'not enough points', hint = 'insufficient_points';
    end if;
  else
    insert into public.loyalty_accounts (business_id, customer_id, balance, lifetime_points)
    values (new.business_id, new.customer_id, new.points, new.points)
    on conflict (business_id, customer_id) do update
    set balance = public.loyalty_accounts.balance + new.points,
        lifetime_points = public.loyalty_accounts.lifetime_points + new.points,
        updated_at = now();
  end if;
  return null;
exception when check_violation then
  raise exception using errcode = 'BR301', message = 'not enough points', hint = 'insufficient_points';
end
$$;

create trigger loyalty_transactions_apply after insert on public.loyalty_transactions
  for each row execute function app.tg_loyalty_transactions_apply();
create trigger loyalty_transactions_append_only before update or delete on public.loyalty_transactions
  for each row execute function app.tg_append_only();
create trigger customers_touch before update on public.customers
  for each row execute function app.tg_touch_updated_at();

-- section policies

create policy "staff read customers" on public.customers for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "customers read themselves" on public.customers for select to authenticated
  using (user_id = (select auth.uid()));
create policy "managers edit customers" on public.customers for update to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')))
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "customers edit themselves" on public.customers for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));

create policy "staff read stats of their venues" on public.customer_venue_stats for select to authenticated
  using (app.module_enabled(business_id, 'crm')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));

create policy "members read the earn rule" on public.loyalty_programs for select to authenticated
  using (business_id in (select app.my_business_ids()));
create policy "owners set the earn rule" on public.loyalty_programs for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner}')));
create policy "owners change the earn rule" on public.loyalty_programs for update to authenticated
  using (business_id in (select app.my_business_ids('{owner}')))
  with check (business_id in (select app.my_business_ids('{owner}')));

create policy "staff read loyalty accounts" on public.loyalty_accounts for select to authenticated
  using (app.module_enabled(business_id, 'loyalty') and business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "customers read their loyalty account" on public.loyalty_accounts for select to authenticated
  using (app.module_enabled(business_id, 'loyalty')
         and (business_id, customer_id) in (select c.business_id, c.id from public.customers c where c.user_id = (select auth.uid())));
create policy "staff read loyalty history" on public.loyalty_transactions for select to authenticated
  using (app.module_enabled(business_id, 'loyalty') and business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "customers read their loyalty history" on public.loyalty_transactions for select to authenticated
  using (app.module_enabled(business_id, 'loyalty')
         and (business_id, customer_id) in (select c.business_id, c.id from public.customers c where c.user_id = (select auth.uid())));

create policy "managers read the notification log" on public.notification_log for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));

-- section grants
revoke all on public.customers, public.customer_venue_stats, public.loyalty_programs, public.loyalty_accounts,
  public.loyalty_transactions, public.notification_log from anon, authenticated;
grant select, update (full_name, email, phone, allergens) on public.customers to authenticated;
grant select on public.customer_venue_stats, public.loyalty_accounts, public.loyalty_transactions,
  public.notification_log to authenticated;
grant select, insert, update (points_per_currency_unit) on public.loyalty_programs to authenticated;
grant all on public.customers, public.customer_venue_stats, public.loyalty_programs, public.loyalty_accounts,
  public.loyalty_transactions, public.notification_log to service_role;
