-- Rewards engine: earn rules (per currency unit, per visit, first-order bonus) multiplied by tier,
-- tiers from trailing-12-month spend, specific rewards redeemed into single-use vouchers that
-- place_order applies, and their reversal on refunds and cancellations. Gated by `loyalty`.
-- Codes BR3xx (docs/errors.md).

-- section tables
alter table public.loyalty_programs
  add column points_per_visit integer not null default 0 constraint loyalty_programs_visit_nonnegative check (points_per_visit >= 0),
  add column first_order_bonus integer not null default 0 constraint loyalty_programs_bonus_nonnegative check (first_order_bonus >= 0),
  add column points_expiry_days integer constraint loyalty_programs_expiry_positive check (points_expiry_days > 0);

/** Tiers by trailing-12-month spend; the multiplier applies to points earned. */
create table public.loyalty_tiers (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  name text not null constraint loyalty_tiers_name_length check (length(name) between 1 and 60),
  min_spend_cents bigint not null constraint loyalty_tiers_min_nonnegative check (min_spend_cents >= 0),
  multiplier numeric(4, 2) not null default 1 constraint loyalty_tiers_multiplier_range check (multiplier between 1 and 10),
  created_at timestamptz not null default now(),
  constraint loyalty_tiers_pkey primary key (business_id, id),
  constraint loyalty_tiers_threshold_key unique (business_id, min_spend_cents),
  constraint loyalty_tiers_name_key unique (business_id, name)
);
alter table public.loyalty_tiers enable row level security;

alter table public.loyalty_accounts
  add column tier_id uuid,
  add column spend_12m_cents bigint not null default 0,
  add column tier_computed_at timestamptz,
  add constraint loyalty_accounts_tier_fkey foreign key (business_id, tier_id)
    references public.loyalty_tiers (business_id, id) on delete set null (tier_id);

/** Something specific a customer can redeem points for: a free product, or a delivery credit. */
create table public.rewards (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  name text not null constraint rewards_name_length check (length(name) between 1 and 120),
  kind text not null constraint rewards_kind_valid check (kind in ('free_product', 'delivery_credit')),
  points_cost integer not null constraint rewards_cost_positive check (points_cost > 0),
  product_id uuid,
  credit_cents integer,
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  constraint rewards_pkey primary key (business_id, id),
  constraint rewards_product_fkey foreign key (business_id, product_id) references public.products (business_id, id),
  constraint rewards_shape check ((kind = 'free_product' and product_id is not null and credit_cents is null)
                                  or (kind = 'delivery_credit' and product_id is null and credit_cents > 0))
);
alter table public.rewards enable row level security;

/** A redemption: the points spent and the single-use voucher issued for them. issued → reserved (by
    an order being placed) → used (paid); back to issued when that order is cancelled or refunded. */
create table public.reward_redemptions (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  customer_id uuid not null,
  reward_id uuid not null,
  points_spent integer not null,
  code text not null,
  status text not null default 'issued'
    constraint reward_redemptions_status_valid check (status in ('issued', 'reserved', 'used', 'cancelled', 'expired')),
  order_id uuid,
  issued_at timestamptz not null default now(),
  used_at timestamptz,
  expires_at timestamptz not null default now() + interval '90 days',
  constraint reward_redemptions_pkey primary key (business_id, id),
  constraint reward_redemptions_code_key unique (business_id, code),
  constraint reward_redemptions_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id),
  constraint reward_redemptions_reward_fkey foreign key (business_id, reward_id) references public.rewards (business_id, id)
);
alter table public.reward_redemptions enable row level security;

-- section indexes
create index loyalty_accounts_tier_idx on public.loyalty_accounts (business_id, tier_id);
create index reward_redemptions_customer_idx on public.reward_redemptions (business_id, customer_id, issued_at desc);
create index reward_redemptions_order_idx on public.reward_redemptions (business_id, order_id) where order_id is not null;

-- section private helpers

/** Points for a paid order: (currency units × rate + per-visit points) × the customer's tier
    multiplier, plus the first-order bonus once. Replaces the rate-only rule of migration 0004. */
create or replace function app.earn_points(p_business_id uuid, p_customer_id uuid, p_order_id uuid, p_total_cents integer) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_program public.loyalty_programs;
  v_multiplier numeric := 1;
  v_points integer;
  v_first boolean;
begin
  select p.* into v_program from public.loyalty_programs p where p.business_id = p_business_id;
  select coalesce(t.multiplier, 1) into v_multiplier from public.loyalty_accounts a
  left join public.loyalty_tiers t on t.business_id = a.business_id and t.id = a.tier_id
  where a.business_id = p_business_id and a.customer_id = p_customer_id;
  v_first := not exists (select 1 from public.loyalty_transactions x
                         where x.business_id = p_business_id and x.customer_id = p_customer_id and x.reason = 'order');
  v_points := floor(((p_total_cents / 100) * coalesce(v_program.points_per_currency_unit, 1)
                     + coalesce(v_program.points_per_visit, 0)) * coalesce(v_multiplier, 1));
  if v_points > 0 then
    insert into public.loyalty_transactions (business_id, customer_id, points, reason, order_id)
    values (p_business_id, p_customer_id, v_points, 'order', p_order_id)
    on conflict do nothing;
  end if;
  if v_first and coalesce(v_program.first_order_bonus, 0) > 0 then
    insert into public.loyalty_transactions (business_id, customer_id, points, reason, order_id)
    values (p_business_id, p_customer_id, v_program.first_order_bonus, 'bonus:first_order', p_order_id)
    on conflict do nothing;
  end if;
  return coalesce(v_points, 0);
end
$$;

/** Reserves a voucher for an order being placed: it must be issued, unexpired, of this business and
    belong to whoever is ordering (their account, phone or email). A free product becomes a zero-
    priced line; a delivery credit a discount on the delivery fee. Raises BR115 (no such voucher
    for you), BR116 (does not apply to this order), BR103 (the free product is unavailable). */
create or replace function app.apply_voucher(p_business_id uuid, p_order_id uuid, p_code text) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_voucher public.reward_redemptions;
  v_reward public.rewards;
  v_product public.products;
  v_owner public.customers;
  v_credit integer;
begin
  select o.* into v_order from public.orders o where o.business_id = p_business_id and o.id = p_order_id for update;
  select r.* into v_voucher from public.reward_redemptions r
  where r.business_id = p_business_id and r.code = upper(p_code) and r.status = 'issued' and r.expires_at > now()
  for update;
  select c.* into v_owner from public.customers c where c.business_id = p_business_id and c.id = v_voucher.customer_id;
  if v_voucher.id is null or not app.module_enabled(p_business_id, 'loyalty')
     or not coalesce(v_owner.user_id = v_order.user_id or v_owner.phone = v_order.guest_phone
                     or lower(v_owner.email) = v_order.guest_email, false) then
    perform app.fail('BR115', 'invalid_voucher', 'no such voucher for you');
  end if;
  select w.* into v_reward from public.rewards w where w.business_id = p_business_id and w.id = v_voucher.reward_id;
  if v_reward.kind = 'free_product' then
    select p.* into v_product from public.products p where p.business_id = p_business_id and p.id = v_reward.product_id;
    if not app.product_available(p_business_id, v_order.venue_id, v_product.id) then
      perform app.fail('BR103', 'product_unavailable', format('%s is not available', v_product.name));
    end if;
    insert into public.order_items (business_id, order_id, venue_id, line_number, product_id, name, quantity,
                                    unit_price_cents, unit_cost_cents, line_total_cents, notes)
    select p_business_id, p_order_id, v_order.venue_id, coalesce(max(i.line_number), 0) + 1, v_product.id,
           v_product.name, 1, 0, v_product.cost_cents, 0, 'reward: ' || v_reward.name
    from public.order_items i where i.business_id = p_business_id and i.order_id = p_order_id;
    update public.orders set cost_cents = cost_cents + v_product.cost_cents where business_id = p_business_id and id = p_order_id;
  else
    v_credit := least(v_reward.credit_cents, v_order.delivery_fee_cents);
    if v_order.fulfilment <> 'delivery' or v_credit <= 0 then
      perform app.fail('BR116', 'voucher_not_applicable', 'a delivery credit applies to delivery orders');
    end if;
    update public.orders set discount_cents = discount_cents + v_credit, total_cents = total_cents - v_credit
    where business_id = p_business_id and id = p_order_id;
  end if;
  update public.reward_redemptions set status = 'reserved', order_id = p_order_id
  where business_id = p_business_id and id = v_voucher.id;
end
$$;

/** Trailing-12-month spend per loyalty account and the tier it earns; a change emits
    loyalty.tier_changed. Accounts idle past the business's expiry lose their balance. Returns the
    number of tier changes. */
create function app.recompute_tiers(p_business_id uuid default null) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_change record;
  v_count integer := 0;
begin
  for v_change in
    with spend as (
      select a.business_id, a.customer_id, a.tier_id as old_tier,
             coalesce((select sum(o.total_cents - o.refunded_cents) from public.orders o
                       where o.business_id = a.business_id and o.customer_id = a.customer_id and o.paid_at >= now() - interval '365 days'
                         and o.payment_status in ('paid', 'partially_refunded', 'refunded', 'disputed')), 0) as spent
      from public.loyalty_accounts a
      where p_business_id is null or a.business_id = p_business_id
    ), ranked as (
      select s.*, (select t.id from public.loyalty_tiers t where t.business_id = s.business_id and t.min_spend_cents <= s.spent
                   order by t.min_spend_cents desc limit 1) as new_tier
      from spend s
    )
    update public.loyalty_accounts a set spend_12m_cents = r.spent, tier_id = r.new_tier, tier_computed_at = now()
    from ranked r
    where a.business_id = r.business_id and a.customer_id = r.customer_id
    returning a.business_id, a.customer_id, r.old_tier, r.new_tier
  loop
    if v_change.old_tier is distinct from v_change.new_tier then
      perform app.emit('loyalty.tier_changed', v_change.business_id, jsonb_build_object(
        'customer_id', v_change.customer_id, 'from_tier_id', v_change.old_tier, 'to_tier_id', v_change.new_tier));
      v_count := v_count + 1;
    end if;
  end loop;

  insert into public.loyalty_transactions (business_id, customer_id, points, reason)
  select a.business_id, a.customer_id, -a.balance, 'expiry'
  from public.loyalty_accounts a join public.loyalty_programs p on p.business_id = a.business_id
  where (p_business_id is null or a.business_id = p_business_id) and p.points_expiry_days is not null and a.balance > 0
    and not exists (select 1 from public.loyalty_transactions t where t.business_id = a.business_id and t.customer_id = a.customer_id
                    and t.created_at > now() - make_interval(days => p.points_expiry_days));
  return v_count;
end
$$;
revoke all on function app.recompute_tiers(uuid) from public;
grant execute on function app.recompute_tiers(uuid) to service_role;

-- section triggers

/** Vouchers follow their order: used once it is paid; issued again (and the free line's meaning
    gone) when it is cancelled before payment or fully refunded. */
create function app.tg_orders_vouchers() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.payment_status = 'paid' and old.payment_status is distinct from 'paid' and new.status <> 'cancelled' then
    update public.reward_redemptions set status = 'used', used_at = now()
    where business_id = new.business_id and order_id = new.id and status = 'reserved';
  elsif (new.status = 'cancelled' and old.status <> 'cancelled' and new.payment_status in ('unpaid', 'pending', 'failed'))
        or (new.payment_status = 'refunded' and old.payment_status <> 'refunded') then
    update public.reward_redemptions set status = 'issued', order_id = null, used_at = null
    where business_id = new.business_id and order_id = new.id and status in ('reserved', 'used');
  end if;
  return null;
end
$$;

create trigger orders_vouchers after update of status, payment_status on public.orders
  for each row execute function app.tg_orders_vouchers();

-- section policies
create policy "anyone reads active rewards of loyalty businesses" on public.rewards for select to anon, authenticated
  using (is_active and app.module_enabled(business_id, 'loyalty'));
create policy "members read rewards" on public.rewards for select to authenticated
  using (business_id in (select app.my_business_ids()));
create policy "owners add rewards" on public.rewards for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "owners edit rewards" on public.rewards for update to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')))
  with check (business_id in (select app.my_business_ids('{owner,manager}')));

create policy "members read tiers" on public.loyalty_tiers for select to authenticated
  using (business_id in (select app.my_business_ids()));
create policy "owners add tiers" on public.loyalty_tiers for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner}')));
create policy "owners edit tiers" on public.loyalty_tiers for update to authenticated
  using (business_id in (select app.my_business_ids('{owner}'))) with check (business_id in (select app.my_business_ids('{owner}')));
create policy "owners delete tiers" on public.loyalty_tiers for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));

create policy "staff read vouchers" on public.reward_redemptions for select to authenticated
  using (app.module_enabled(business_id, 'loyalty') and business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "customers read their vouchers" on public.reward_redemptions for select to authenticated
  using (app.module_enabled(business_id, 'loyalty')
         and (business_id, customer_id) in (select c.business_id, c.id from public.customers c where c.user_id = (select auth.uid())));

-- section grants
revoke all on public.loyalty_tiers, public.rewards, public.reward_redemptions from anon, authenticated;
grant select (business_id, id, name, kind, points_cost, product_id, credit_cents, is_active) on public.rewards to anon;
grant select, insert (business_id, name, kind, points_cost, product_id, credit_cents, is_active),
  update (name, points_cost, is_active) on public.rewards to authenticated;
grant select, insert (business_id, name, min_spend_cents, multiplier), update (name, min_spend_cents, multiplier), delete
  on public.loyalty_tiers to authenticated;
grant select on public.reward_redemptions to authenticated;
grant all on public.loyalty_tiers, public.rewards, public.reward_redemptions to service_role;

-- section rpc

/** Spends points on a reward and issues its voucher. A signed-in customer redeems for themselves;
    staff may redeem for a customer of their business. The account row is locked, so two redemptions
    racing for the same points cannot both win. Raises PT404, PT403 (loyalty off), BR302 (not enough
    points), BR303 (reward inactive). */
create function app.redeem_reward(p_reward_id uuid, p_customer_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_reward public.rewards;
  v_customer public.customers;
  v_balance integer;
  v_code text;
begin
  select w.* into v_reward from public.rewards w where w.id = p_reward_id;
  if v_reward.id is null then
    perform app.fail('PT404', 'reward_not_found', 'no such reward');
  end if;
  perform app.require_module(v_reward.business_id, 'loyalty');
  if p_customer_id is null then
    select c.* into v_customer from public.customers c
    where c.business_id = v_reward.business_id and c.user_id = auth.uid() and auth.uid() is not null;
  elsif app.is_member(v_reward.business_id, '{owner,manager,staff}') or app.is_platform_or_service() then
    select c.* into v_customer from public.customers c where c.business_id = v_reward.business_id and c.id = p_customer_id;
  end if;
  if v_customer.id is null then
    perform app.fail('PT404', 'customer_not_found', 'no loyalty account here');
  end if;
  if not v_reward.is_active then
    perform app.fail('BR303', 'reward_inactive', 'this reward is no longer offered');
  end if;
  select a.balance into v_balance from public.loyalty_accounts a
  where a.business_id = v_reward.business_id and a.customer_id = v_customer.id for update;
  if coalesce(v_balance, 0) < v_reward.points_cost then
    perform app.fail('BR302', 'insufficient_points', format('%s points needed, %s available', v_reward.points_cost, coalesce(v_balance, 0)));
  end if;
  v_code := upper(encode(extensions.gen_random_bytes(5), 'hex'));
  insert into public.loyalty_transactions (business_id, customer_id, points, reason)
  values (v_reward.business_id, v_customer.id, -v_reward.points_cost, 'redemption');
  insert into public.reward_redemptions (business_id, customer_id, reward_id, points_spent, code)
  values (v_reward.business_id, v_customer.id, v_reward.id, v_reward.points_cost, v_code);
  return jsonb_build_object('code', v_code, 'reward', v_reward.name, 'points_spent', v_reward.points_cost,
                            'balance', v_balance - v_reward.points_cost);
end
$$;
revoke all on function app.redeem_reward(uuid, uuid) from public;
grant execute on function app.redeem_reward(uuid, uuid) to authenticated, service_role;

create function public.redeem_reward(reward_id uuid, customer_id uuid default null) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.redeem_reward(reward_id, customer_id)
$$;
revoke all on function public.redeem_reward(uuid, uuid) from public;
grant execute on function public.redeem_reward(uuid, uuid) to authenticated, service_role;
