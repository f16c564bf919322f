-- The "your order is ready" call (0005) says "have your pickup code at hand", so only pickup orders
-- get it: delivery orders hear from the dispatch flow (tracking texts per step) and dine-in orders
-- are brought to the table. order.ready is still emitted for every order, now with its fulfilment.

-- section private helpers

/** History, kitchen ticket, events and (pickup orders only) the ready call follow every status change. */
create or replace function app.tg_orders_status_changed() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  insert into public.order_status_history (business_id, order_id, venue_id, from_status, to_status, changed_by, reason)
  values (new.business_id, new.id, new.venue_id, case when tg_op = 'UPDATE' then old.status end, new.status, auth.uid(),
          case when new.status = 'cancelled' then new.cancel_reason end);
  if tg_op = 'INSERT' then
    perform app.emit('order.placed', new.business_id, jsonb_build_object('order_id', new.id, 'venue_id', new.venue_id,
                                                                         'channel', new.channel, 'total_cents', new.total_cents));
    return null;
  end if;

  update public.kitchen_tickets t set
    status = case new.status when 'accepted' then 'accepted' when 'preparing' then 'in_progress' when 'ready' then 'ready'
                             when 'completed' then 'done' when 'cancelled' then 'cancelled' else t.status end,
    updated_at = now()
  where t.business_id = new.business_id and t.order_id = new.id;

  perform app.emit('order.status_changed', new.business_id, jsonb_build_object(
    'order_id', new.id, 'venue_id', new.venue_id, 'from', old.status, 'to', new.status));
  if new.status = 'ready' then
    if new.fulfilment = 'pickup' and new.guest_phone is not null then
      insert into public.notification_log (business_id, event_key, channel, recipient, template, order_id, customer_id, venue_id)
      values (new.business_id, 'order.ready:' || new.id, 'voice', new.guest_phone, 'order_ready', new.id, new.customer_id, new.venue_id)
      on conflict on constraint notification_log_natural_key do nothing;
    end if;
    perform app.emit('order.ready', new.business_id, jsonb_build_object('order_id', new.id, 'order_number', new.order_number,
                                                                        'venue_id', new.venue_id, 'fulfilment', new.fulfilment));
  elsif new.status = 'cancelled' then
    perform app.emit('order.cancelled', new.business_id, jsonb_build_object('order_id', new.id, 'reason', new.cancel_reason,
                                                                            'payment_status', new.payment_status));
  end if;
  return null;
end
$$;
