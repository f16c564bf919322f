-- Platform fees for every payable: booking payments (0022) carry booking_id and no order_id, so the
-- per-payment fee (0053) records whichever the payment has.

alter table public.platform_fees alter column order_id drop not null;
alter table public.platform_fees add column booking_id uuid;
alter table public.platform_fees add constraint platform_fees_one_payable check (num_nonnulls(order_id, booking_id) = 1);
create index platform_fees_booking_idx on public.platform_fees (business_id, booking_id) where booking_id is not null;

/** One fee row per payment, for an order or a booking, at the business's plan rate. */
create or replace function app.tg_payments_platform_fee() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_plan public.plans := app.business_plan(new.business_id);
begin
  insert into public.platform_fees (business_id, payment_id, order_id, booking_id, plan_key, base_amount_cents, fee_bps, fixed_cents,
                                    fee_cents, currency, created_at)
  values (new.business_id, new.id, new.order_id, new.booking_id, coalesce(v_plan.key, 'none'), new.amount_cents,
          coalesce(v_plan.platform_fee_bps, 0), coalesce(v_plan.platform_fee_fixed_cents, 0),
          app.platform_fee_cents(new.business_id, new.amount_cents),
          new.currency, new.created_at)
  on conflict (business_id, payment_id) do nothing;
  return null;
end
$$;
