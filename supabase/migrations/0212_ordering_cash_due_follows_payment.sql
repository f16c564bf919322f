-- A cash order paid another way before the cash was taken (the customer paid online after all, or
-- the cash was recorded): the delivery no longer asks the driver for cash. The customer also hears
-- at once that the kitchen took the order and what is due (order.cash_accepted). Issue 23 item 5.

-- section triggers

/** Once the order is paid, its open deliveries show nothing due. */
create function app.tg_orders_cash_due_cleared() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  update public.deliveries d set cash_due_cents = 0
  where d.business_id = new.business_id and d.order_id = new.id and d.cash_due_cents <> 0;
  return null;
end
$$;
revoke all on function app.tg_orders_cash_due_cleared() from public;

create trigger orders_cash_due_cleared after update of payment_status on public.orders
  for each row when (old.payment_status = 'unpaid' and new.payment_status <> 'unpaid' and new.payment_method <> 'card')
  execute function app.tg_orders_cash_due_cleared();

/** The confirmation text of a cash order the kitchen took (the worker sends it on order.cash_accepted). */
create function app.tg_orders_cash_confirmation() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  insert into public.notification_log (business_id, event_key, channel, recipient, template, order_id, customer_id, venue_id)
  select new.business_id, 'order.cash_accepted:' || new.id, 'sms', new.guest_phone, 'order_confirmation', new.id, new.customer_id, new.venue_id
  where new.guest_phone is not null
  on conflict on constraint notification_log_natural_key do nothing;
  return null;
end
$$;
revoke all on function app.tg_orders_cash_confirmation() from public;

create trigger orders_cash_confirmation after update of cash_admitted_at on public.orders
  for each row when (old.cash_admitted_at is null and new.cash_admitted_at is not null)
  execute function app.tg_orders_cash_confirmation();
