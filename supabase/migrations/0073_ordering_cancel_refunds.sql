-- A paid order that staff cancel, and a payment that arrives for an order already cancelled, emit
-- order.cancelled / order.paid_after_cancellation (0005) and nothing refunded them. Now the worker
-- handles both through app.request_automatic_refund: the whole remainder, one refund per order (its
-- idempotency key is fixed, so a redelivered event reuses it), sent to Stripe like any refund; when it
-- succeeds app.apply_refund reverses stats and points, and for a cancelled paid order puts the
-- stock back (a payment after cancellation never took stock or earned points).

-- section private helpers

/** The automatic refund of a cancelled order that holds money: created once (key
    refund:<order>:auto), for everything not refunded or being refunded. Returns what the worker
    sends to Stripe while the refund has not been sent, else null (nothing to refund, or sent). */
create function app.request_automatic_refund(p_business_id uuid, p_order_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_pending integer;
  v_amount integer;
  v_key text;
  v_refund public.refunds;
begin
  select o.* into v_order from public.orders o where o.business_id = p_business_id and o.id = p_order_id for update;
  if v_order.id is null or v_order.status <> 'cancelled' then
    return null;
  end if;
  v_key := 'refund:' || v_order.id || ':auto';
  select r.* into v_refund from public.refunds r where r.business_id = v_order.business_id and r.idempotency_key = v_key;
  if v_refund.id is null then
    if v_order.payment_status not in ('paid', 'partially_refunded') or v_order.payment_intent_id is null then
      return null;
    end if;
    select coalesce(sum(r.amount_cents), 0) into v_pending from public.refunds r
    where r.business_id = v_order.business_id and r.order_id = v_order.id and r.status = 'pending';
    v_amount := v_order.total_cents - v_order.refunded_cents - v_pending;
    if v_amount <= 0 then
      return null;
    end if;
    insert into public.refunds (business_id, order_id, venue_id, amount_cents, currency, lines, restock, reason, idempotency_key)
    values (v_order.business_id, v_order.id, v_order.venue_id, v_amount, v_order.currency, '{}'::jsonb,  -- '{}': every line
            -- stock was taken only if the paid fan-out ran (it opens the kitchen ticket): paid, then cancelled
            exists (select 1 from public.kitchen_tickets t where t.business_id = v_order.business_id and t.order_id = v_order.id),
            left('order cancelled: ' || coalesce(v_order.cancel_reason, ''), 500), v_key)
    returning * into v_refund;
    perform app.audit(v_order.business_id, 'refund.automatic', jsonb_build_object('order_id', v_order.id, 'refund_id', v_refund.id,
                                                                                   'amount_cents', v_amount));
  end if;
  if v_refund.status <> 'pending' or v_refund.provider_refund_id is not null then
    return null;
  end if;
  return jsonb_build_object('refund_id', v_refund.id, 'order_id', v_order.id, 'business_id', v_order.business_id,
    'amount_cents', v_refund.amount_cents, 'payment_intent_id', v_order.payment_intent_id, 'idempotency_key', v_refund.idempotency_key,
    'stripe_account_id', (select b.stripe_account_id from public.businesses b where b.id = v_order.business_id));
end
$$;
revoke all on function app.request_automatic_refund(uuid, uuid) from public;
grant execute on function app.request_automatic_refund(uuid, uuid) to service_role;
