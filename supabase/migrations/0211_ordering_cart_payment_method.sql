-- Carts carry the payment method (issue 23 item 5): set_cart_details takes payment_method (card,
-- cash_on_delivery, pay_at_counter; null is card) and checkout_cart hands it to place_order, which
-- decides whether the venue takes it (BR150-BR152).

-- section tables

alter table public.customer_sessions add column payment_method text not null default 'card'
  constraint customer_sessions_payment_method_valid check (payment_method in ('card', 'cash_on_delivery', 'pay_at_counter'));

-- section rpc

/** See 0190; also {payment_method}. */
create or replace function app.set_cart_details(p_token text, p_details jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_session public.customer_sessions := app.cart_session(p_token);
begin
  perform app.cart_require_open(v_session);
  if jsonb_typeof(p_details) is distinct from 'object' then
    perform app.fail('22023', 'invalid_input', 'details must be an object');
  end if;
  if p_details ? 'fulfilment' and coalesce(p_details ->> 'fulfilment', '') not in ('pickup', 'delivery', 'dine_in') then
    perform app.fail('22023', 'invalid_fulfilment', 'fulfilment must be pickup, delivery or dine_in');
  end if;
  if p_details ? 'tip_cents' and (jsonb_typeof(p_details -> 'tip_cents') <> 'number'
                                  or (p_details ->> 'tip_cents')::numeric not between 0 and 100000) then
    perform app.fail('22023', 'invalid_tip', 'tip_cents must be between 0 and 100000');
  end if;
  if p_details ? 'payment_method' and coalesce(p_details ->> 'payment_method', 'card') not in ('card', 'cash_on_delivery', 'pay_at_counter') then
    perform app.fail('22023', 'invalid_payment_method', 'payment_method must be card, cash_on_delivery or pay_at_counter');
  end if;
  if p_details ? 'customer' and jsonb_typeof(p_details -> 'customer') not in ('object', 'null') then
    perform app.fail('22023', 'invalid_input', 'customer must be an object {name, phone, email}');
  end if;
  if p_details ? 'delivery_address' and jsonb_typeof(p_details -> 'delivery_address') not in ('object', 'null') then
    perform app.fail('22023', 'invalid_input', 'delivery_address must be an object');
  end if;
  begin
    update public.customer_sessions s set
      fulfilment = case when p_details ? 'fulfilment' then p_details ->> 'fulfilment' else s.fulfilment end,
      table_ref = case when p_details ? 'table_ref' then nullif(trim(p_details ->> 'table_ref'), '') else s.table_ref end,
      scheduled_for = case when p_details ? 'scheduled_for' then (p_details ->> 'scheduled_for')::timestamptz else s.scheduled_for end,
      delivery_address = case when p_details ? 'delivery_address' then nullif(p_details -> 'delivery_address', 'null'::jsonb) else s.delivery_address end,
      contact = case when p_details ? 'customer' then coalesce(nullif(p_details -> 'customer', 'null'::jsonb), '{}'::jsonb) else s.contact end,
      tip_cents = case when p_details ? 'tip_cents' then (p_details ->> 'tip_cents')::integer else s.tip_cents end,
      notes = case when p_details ? 'notes' then left(coalesce(p_details ->> 'notes', ''), 1000) else s.notes end,
      payment_method = case when p_details ? 'payment_method' then coalesce(p_details ->> 'payment_method', 'card') else s.payment_method end,
      updated_at = now()
    where s.business_id = v_session.business_id and s.id = v_session.id
    returning * into v_session;
  exception when invalid_datetime_format or datetime_field_overflow then
    perform app.fail('22023', 'invalid_input', 'scheduled_for must be a timestamp');
  end;
  return app.cart_json(v_session, true);
end
$$;
revoke all on function app.set_cart_details(text, jsonb) from public;
grant execute on function app.set_cart_details(text, jsonb) to anon, authenticated, service_role;

/** See 0190; the cart's payment method goes to place_order. */
create or replace function app.checkout_cart(p_token text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_session public.customer_sessions := app.cart_session(p_token);
  v_cart jsonb;
  v_result jsonb;
begin
  if v_session.status = 'ordered' then
    return v_session.order_result || jsonb_build_object('already_placed', true);
  end if;
  v_cart := app.cart_json(v_session, false);
  if jsonb_array_length(v_cart -> 'lines') = 0 and jsonb_array_length(v_cart -> 'unavailable') = 0 then
    perform app.fail('BR190', 'cart_empty', 'the cart is empty');
  end if;
  if jsonb_array_length(v_cart -> 'unavailable') > 0 or jsonb_array_length(v_cart -> 'changes') > 0
     or exists (select 1 from jsonb_array_elements(v_cart -> 'problems') p where p ->> 'code' in ('BR115', 'BR116', 'BR103')) then
    perform app.fail('BR191', 'cart_changed', 'the cart changed since you last saw it: read it again');
  end if;
  v_result := app.place_order(jsonb_strip_nulls(jsonb_build_object(
    'venue_id', v_session.venue_id, 'channel', 'web', 'fulfilment', v_session.fulfilment, 'table_ref', v_session.table_ref,
    'scheduled_for', v_session.scheduled_for, 'delivery_address', v_session.delivery_address, 'customer', v_session.contact,
    'tip_cents', v_session.tip_cents, 'notes', nullif(v_session.notes, ''), 'voucher_code', v_session.voucher_code, 'payment_method', v_session.payment_method,
    'expected_total_cents', (v_cart ->> 'total_cents')::integer + (v_cart ->> 'discount_cents')::integer,  -- compared before the voucher
    'items', (select jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                'product_id', i.product_id, 'variant_id', i.variant_id, 'modifier_ids', to_jsonb(i.modifier_ids),
                'quantity', i.quantity, 'notes', nullif(i.notes, ''), 'unit_price_cents', i.seen_unit_price_cents))
              order by i.created_at, i.id)
              from public.cart_items i where i.business_id = v_session.business_id and i.session_id = v_session.id))));
  update public.customer_sessions
  set status = 'ordered', order_id = (v_result ->> 'order_id')::uuid, order_result = v_result, updated_at = now()
  where business_id = v_session.business_id and id = v_session.id;
  return v_result;
end
$$;
revoke all on function app.checkout_cart(text) from public;
grant execute on function app.checkout_cart(text) to anon, authenticated, service_role;
