-- Security review (issue 20): the order guard let a pickup order complete when the setting
-- brigade.pickup_verified named it, and any role can set a setting. The proof is now a row in a
-- table no API role can write, inserted by verify_pickup_code inside the caller's transaction.

-- section tables

/** Facts a definer function establishes for the rest of its own transaction ("this pickup code was
    verified"), read by triggers that run as the caller. Keyed by the top-level transaction id, so a
    row means nothing to any other transaction; the definer deletes it when done, and a rollback
    takes it anyway. No API role has any privilege on it: only definers (as the owner) write it. */
create table app.transaction_flags (
  txid xid8 not null default pg_current_xact_id(),
  flag text not null,
  subject uuid not null,
  constraint transaction_flags_pkey primary key (txid, flag, subject)
);
revoke all on app.transaction_flags from public, anon, authenticated, service_role;

-- section private helpers

/** Did a definer raise this flag for the subject in the current transaction? Security definer so a
    trigger running as the caller can ask without reading the table itself. */
create function app.transaction_flag(p_flag text, p_subject uuid) returns boolean
language sql volatile security definer
set search_path = ''
as $$
  select exists (select 1 from app.transaction_flags f
                 where f.txid = pg_current_xact_id() and f.flag = p_flag and f.subject = p_subject)
$$;
revoke all on function app.transaction_flag(text, uuid) from public;
grant execute on function app.transaction_flag(text, uuid) to anon, authenticated, service_role;

-- section triggers

/** The status machines (see 0005); a pickup order completes only inside verify_pickup_code. */
create or replace function app.tg_orders_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status is distinct from old.status then
    if not app.order_transition_allowed(old.status, new.status) then
      perform app.fail('BR120', 'illegal_transition', format('an order cannot go from %s to %s', old.status, new.status));
    end if;
    if new.status = 'accepted' and new.payment_status not in ('paid') then
      perform app.fail('BR121', 'order_not_paid', 'an order is accepted only once it is paid');
    end if;
    if new.status = 'completed' and new.fulfilment = 'pickup'
       and not app.transaction_flag('pickup_verified', new.id) then
      perform app.fail('BR122', 'pickup_code_required', 'a pickup order completes when its pickup code is verified');
    end if;
    if new.status = 'cancelled' and nullif(trim(new.cancel_reason), '') is null then
      perform app.fail('BR123', 'cancel_reason_required', 'cancelling an order needs a reason');
    end if;
    case new.status
      when 'accepted' then new.accepted_at := now();
      when 'ready' then new.ready_at := now();
      when 'completed' then new.completed_at := now();
      when 'cancelled' then new.cancelled_at := now();
      else null;
    end case;
  end if;
  if not app.payment_transition_allowed(old.payment_status, new.payment_status) then
    perform app.fail('BR124', 'illegal_payment_transition',
                     format('payment cannot go from %s to %s', old.payment_status, new.payment_status));
  end if;
  new.updated_at := now();
  return new;
end
$$;

-- section rpc

/** See 0005: five tries, 60 minutes; a right code completes the order (the flag, not a setting). */
create or replace function app.verify_pickup_code(p_order_id uuid, p_code text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
begin
  select o.* into v_order from public.orders o where o.id = p_order_id for update;
  if v_order.id is null or not app.has_venue_access(v_order.business_id, v_order.venue_id, '{owner,manager,staff}') then
    perform app.fail('PT404', 'order_not_found', 'no such order at your venues');
  end if;
  perform app.require_module(v_order.business_id, 'ordering');
  if v_order.fulfilment <> 'pickup' or v_order.pickup_code_hash is null then
    perform app.fail('BR125', 'no_pickup_code', 'this order has no pickup code');
  end if;
  if v_order.status <> 'ready' then
    perform app.fail('BR126', 'order_not_ready', format('the order is %s, not ready', v_order.status));
  end if;
  if v_order.pickup_code_attempts >= 5 then
    return jsonb_build_object('verified', false, 'reason', 'too_many_attempts', 'attempts_left', 0);
  end if;
  update public.orders set pickup_code_attempts = pickup_code_attempts + 1
  where business_id = v_order.business_id and id = v_order.id;
  if v_order.pickup_code_expires_at < now() then
    return jsonb_build_object('verified', false, 'reason', 'expired', 'attempts_left', 4 - v_order.pickup_code_attempts);
  end if;
  if coalesce(p_code, '') !~ '^[0-9]{6}$' or app.pickup_code_hash(v_order.id, p_code) <> v_order.pickup_code_hash then
    return jsonb_build_object('verified', false, 'reason', 'wrong_code', 'attempts_left', 4 - v_order.pickup_code_attempts);
  end if;
  insert into app.transaction_flags (flag, subject) values ('pickup_verified', v_order.id);
  update public.orders set status = 'completed', pickup_code_hash = null
  where business_id = v_order.business_id and id = v_order.id;
  delete from app.transaction_flags f
  where f.txid = pg_current_xact_id() and f.flag = 'pickup_verified' and f.subject = v_order.id;
  return jsonb_build_object('verified', true, 'reason', null, 'order_number', v_order.order_number);
end
$$;
