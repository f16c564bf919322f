-- Bookings and loyalty: a paid booking counted in customer_venue_stats.total_orders (0021) but earned
-- no points and had no count of its own. Now a paid booking earns points by the order rules
-- (currency units × rate + per-visit points, × the tier multiplier, the first-visit bonus once),
-- refunds take them back in proportion, and the stats row carries total_bookings: the bookings among
-- the paid visits total_orders counts (orders and bookings, as before, so RFM frequency is unchanged).

-- section tables

alter table public.customer_venue_stats add column total_bookings integer not null default 0
  constraint customer_venue_stats_total_bookings_nonnegative check (total_bookings >= 0);
alter table public.loyalty_transactions add column booking_id uuid;

-- section indexes
create unique index loyalty_transactions_booking_reason_key on public.loyalty_transactions (business_id, booking_id, reason)
  where booking_id is not null and refund_id is null;

-- section private helpers

/** The earn rule on a paid amount for one customer: (currency units × rate + per-visit points) × the
    customer's tier multiplier. One rule for orders and bookings. */
create function app.points_for_payment(p_business_id uuid, p_customer_id uuid, p_total_cents integer) returns integer
language sql stable security definer
set search_path = ''
as $$
  select floor(((p_total_cents / 100) * coalesce((select p.points_per_currency_unit from public.loyalty_programs p
                                                  where p.business_id = p_business_id), 1)
                + coalesce((select p.points_per_visit from public.loyalty_programs p where p.business_id = p_business_id), 0))
               * coalesce((select t.multiplier from public.loyalty_accounts a
                           join public.loyalty_tiers t on t.business_id = a.business_id and t.id = a.tier_id
                           where a.business_id = p_business_id and a.customer_id = p_customer_id), 1))::integer
$$;
revoke all on function app.points_for_payment(uuid, uuid, integer) from public;
grant execute on function app.points_for_payment(uuid, uuid, integer) to service_role;

/** Points for a paid order (0009's rule through app.points_for_payment); the first-visit bonus is
    given once, whether the first paid visit was an order or a booking. */
create or replace function app.earn_points(p_business_id uuid, p_customer_id uuid, p_order_id uuid, p_total_cents integer) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_points integer := app.points_for_payment(p_business_id, p_customer_id, p_total_cents);
  v_bonus integer := (select p.first_order_bonus from public.loyalty_programs p where p.business_id = p_business_id);
  v_first boolean;
begin
  v_first := not exists (select 1 from public.loyalty_transactions x
                         where x.business_id = p_business_id and x.customer_id = p_customer_id and x.reason in ('order', 'booking'));
  if v_points > 0 then
    insert into public.loyalty_transactions (business_id, customer_id, points, reason, order_id)
    values (p_business_id, p_customer_id, v_points, 'order', p_order_id)
    on conflict do nothing;
  end if;
  if v_first and coalesce(v_bonus, 0) > 0 then
    insert into public.loyalty_transactions (business_id, customer_id, points, reason, order_id)
    values (p_business_id, p_customer_id, v_bonus, 'bonus:first_order', p_order_id)
    on conflict do nothing;
  end if;
  return coalesce(v_points, 0);
end
$$;

/** Points for a paid booking, by the same rule as an order. Once per booking. */
create function app.earn_booking_points(p_business_id uuid, p_customer_id uuid, p_booking_id uuid, p_total_cents integer) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_points integer := app.points_for_payment(p_business_id, p_customer_id, p_total_cents);
  v_bonus integer := (select p.first_order_bonus from public.loyalty_programs p where p.business_id = p_business_id);
  v_first boolean;
begin
  v_first := not exists (select 1 from public.loyalty_transactions x
                         where x.business_id = p_business_id and x.customer_id = p_customer_id and x.reason in ('order', 'booking'));
  if v_points > 0 then
    insert into public.loyalty_transactions (business_id, customer_id, points, reason, booking_id)
    values (p_business_id, p_customer_id, v_points, 'booking', p_booking_id)
    on conflict do nothing;
  end if;
  if v_first and coalesce(v_bonus, 0) > 0 then
    insert into public.loyalty_transactions (business_id, customer_id, points, reason, booking_id)
    values (p_business_id, p_customer_id, v_bonus, 'bonus:first_order', p_booking_id)
    on conflict do nothing;
  end if;
  return coalesce(v_points, 0);
end
$$;
revoke all on function app.earn_booking_points(uuid, uuid, uuid, integer) from public;
grant execute on function app.earn_booking_points(uuid, uuid, uuid, integer) to service_role;

-- section triggers

/** A booking counted as paid (mark_booking_paid sets stats_counted once): one more booking on the
    customer's venue stats (mark_booking_paid adds the visit and the spend next) and its points. */
create function app.tg_bookings_counted() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.customer_id is null then
    return null;
  end if;
  insert into public.customer_venue_stats as s (business_id, venue_id, customer_id, total_bookings)
  values (new.business_id, new.venue_id, new.customer_id, 1)
  on conflict (business_id, venue_id, customer_id) do update set total_bookings = s.total_bookings + 1, updated_at = now();
  if app.module_enabled(new.business_id, 'loyalty') then
    perform app.earn_booking_points(new.business_id, new.customer_id, new.id, new.total_cents);
  end if;
  return null;
end
$$;

/** A booking refund applied (app.apply_booking_refund has updated refunded_cents): the points go back
    in proportion, cumulatively so partial refunds adding up to the total take back exactly what was
    earned (never below a zero balance), and a full refund takes the booking off total_bookings. */
create function app.tg_refunds_booking_points() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_earned integer;
  v_reverse integer;
  v_balance integer;
begin
  select b.* into v_booking from public.bookings b where b.business_id = new.business_id and b.id = new.booking_id;
  if v_booking.id is null or v_booking.customer_id is null or not v_booking.stats_counted or v_booking.total_cents <= 0 then
    return null;
  end if;
  if v_booking.refunded_cents >= v_booking.total_cents then
    update public.customer_venue_stats s set total_bookings = greatest(0, s.total_bookings - 1), updated_at = now()
    where s.business_id = v_booking.business_id and s.venue_id = v_booking.venue_id and s.customer_id = v_booking.customer_id;
  end if;
  select coalesce(sum(t.points), 0) into v_earned from public.loyalty_transactions t
  where t.business_id = v_booking.business_id and t.booking_id = v_booking.id and t.reason = 'booking';
  if v_earned <= 0 then
    return null;
  end if;
  v_reverse := floor(v_earned::numeric * least(v_booking.total_cents, v_booking.refunded_cents) / v_booking.total_cents)
               + coalesce((select sum(t.points) from public.loyalty_transactions t
                           where t.business_id = v_booking.business_id and t.booking_id = v_booking.id and t.reason = 'refund'), 0);
  select a.balance into v_balance from public.loyalty_accounts a
  where a.business_id = v_booking.business_id and a.customer_id = v_booking.customer_id for update;
  v_reverse := least(v_reverse, coalesce(v_balance, 0));
  if v_reverse > 0 then
    insert into public.loyalty_transactions (business_id, customer_id, points, reason, booking_id, refund_id)
    values (v_booking.business_id, v_booking.customer_id, -v_reverse, 'refund', v_booking.id, new.id);
  end if;
  return null;
end
$$;

create trigger bookings_counted after update of stats_counted on public.bookings
  for each row when (new.stats_counted and not old.stats_counted) execute function app.tg_bookings_counted();
create trigger refunds_booking_points after update of applied_at on public.refunds
  for each row when (new.booking_id is not null and old.applied_at is null and new.applied_at is not null)
  execute function app.tg_refunds_booking_points();
