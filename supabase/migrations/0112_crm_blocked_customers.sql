-- Blocked customers (issue 22 item 4, seed 002: status active | inactive | blocked): a member holding
-- block_customers blocks a customer with a reason (audited); a blocked customer's orders and bookings
-- are refused (BR770, matched by customer, account, phone or email) and every campaign or automation
-- send to them is skipped with reason `blocked` (the send-time check and the preview); unblocking
-- restores all of it.

-- section tables
alter table public.customers
  add column status text not null default 'active' constraint customers_status_valid check (status in ('active', 'inactive', 'blocked')),
  add column status_reason text constraint customers_status_reason_length check (length(status_reason) <= 500),
  add column status_changed_at timestamptz,
  add column status_changed_by uuid;
alter table public.campaign_sends drop constraint campaign_sends_skip_reason_valid,
  add constraint campaign_sends_skip_reason_valid check (skip_reason in (
    'inactive', 'module_off', 'deleted', 'no_contact', 'no_consent', 'suppressed', 'allergen', 'stock_critical', 'frequency_cap',
    'blocked'));

-- section indexes
create index customers_blocked_idx on public.customers (business_id) where status = 'blocked';

-- section private helpers

/** Is this person blocked at the business: the customer itself, or a blocked customer with the same
    account, phone or email (a guest order carries no customer id until it is paid). */
create function app.customer_blocked(p_business_id uuid, p_customer_id uuid, p_user_id uuid, p_phone text, p_email text)
returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.customers c
    where c.business_id = p_business_id and c.status = 'blocked'
      and (c.id = p_customer_id or c.user_id = p_user_id
           or app.normalize_phone(c.phone) = app.normalize_phone(p_phone) or lower(c.email) = lower(p_email)))
$$;
revoke all on function app.customer_blocked(uuid, uuid, uuid, text, text) from public;
grant execute on function app.customer_blocked(uuid, uuid, uuid, text, text) to service_role;


/** Why a customer cannot get a marketing message on a channel now (null: they can); `blocked` first
    after deletion. The same checks serve the campaign preview and the send-time re-check. */
create or replace function app.marketing_block(p_business_id uuid, p_customer_id uuid, p_venue_id uuid, p_channel text,
                                    p_consent_channel text, p_product_id uuid) returns text
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_customer public.customers;
  v_address text;
begin
  select c.* into v_customer from public.customers c where c.business_id = p_business_id and c.id = p_customer_id;
  if v_customer.id is null or v_customer.anonymised_at is not null or v_customer.merged_into is not null
     or exists (select 1 from public.customer_delete_requests d
                where d.business_id = p_business_id and d.customer_id = p_customer_id and d.status = 'pending') then
    return 'deleted';
  end if;
  if v_customer.status = 'blocked' then
    return 'blocked';
  end if;
  v_address := case p_channel when 'sms' then v_customer.phone else lower(v_customer.email) end;
  if v_address is null then
    return 'no_contact';
  end if;
  if not app.has_consent(p_business_id, p_customer_id, p_consent_channel, p_venue_id) then
    return 'no_consent';
  end if;
  if exists (select 1 from public.marketing_suppressions s
             where s.business_id = p_business_id and s.channel = p_channel and s.address = v_address) then
    return 'suppressed';
  end if;
  if p_product_id is not null then
    if exists (select 1 from public.products p
               where p.business_id = p_business_id and p.id = p_product_id
                 and (select array_agg(lower(trim(x))) from unnest(p.allergens) x)
                     && (select array_agg(lower(trim(x))) from unnest(v_customer.allergens) x)) then
      return 'allergen';
    end if;
    if exists (select 1 from public.recipe_lines r
               join public.stock_items s on s.business_id = r.business_id and s.sku = r.stock_sku
               where r.business_id = p_business_id and r.product_id = p_product_id
                 and (p_venue_id is null or s.venue_id = p_venue_id)
                 and s.quantity <= s.critical_level) then
      return 'stock_critical';
    end if;
  end if;
  return null;
end
$$;
revoke all on function app.marketing_block(uuid, uuid, uuid, text, text, uuid) from public;
grant execute on function app.marketing_block(uuid, uuid, uuid, text, text, uuid) to service_role;

/** A blocked customer's order or booking is refused, whoever enters it. */
create function app.tg_refuse_blocked_customer() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if app.customer_blocked(new.business_id, new.customer_id, new.user_id, new.guest_phone, new.guest_email) then
    perform app.fail('BR770', 'customer_blocked',
                     format('this customer is blocked at this business and cannot place %s', case tg_table_name when 'orders' then 'orders' else 'bookings' end));
  end if;
  return new;
end
$$;
revoke all on function app.tg_refuse_blocked_customer() from public, anon, authenticated, service_role;

create trigger orders_blocked_customer before insert on public.orders
  for each row execute function app.tg_refuse_blocked_customer();
create trigger bookings_blocked_customer before insert on public.bookings
  for each row execute function app.tg_refuse_blocked_customer();

-- section RPC functions

/** Sets a customer's status (active, inactive, blocked) for a member holding block_customers;
    blocking needs a reason. Audited (customer.blocked / customer.unblocked / customer.status_changed).
    Raises PT404 (not a customer of your business), 42501 permission_denied, BR771 reason required, 22023. */
create function app.set_customer_status(p_customer_id uuid, p_status text, p_reason text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_customer public.customers;
  v_reason text := nullif(trim(p_reason), '');
begin
  select c.* into v_customer from public.customers c where c.id = p_customer_id for update;
  if v_customer.id is null or not app.is_member(v_customer.business_id) then
    perform app.fail('PT404', 'customer_not_found', 'no such customer at your business');
  end if;
  perform app.require_permission(v_customer.business_id, 'block_customers',
                                 jsonb_build_object('customer_id', v_customer.id, 'status', p_status));
  if p_status is null or p_status not in ('active', 'inactive', 'blocked') then
    perform app.fail('22023', 'invalid_input', 'status is active, inactive or blocked');
  end if;
  if p_status = 'blocked' and v_reason is null then
    perform app.fail('BR771', 'reason_required', 'say why the customer is blocked');
  end if;
  if length(v_reason) > 500 then
    perform app.fail('22023', 'invalid_input', 'the reason is at most 500 characters');
  end if;
  if p_status is distinct from v_customer.status then
    update public.customers set status = p_status, status_reason = v_reason, status_changed_at = now(),
      status_changed_by = auth.uid(), updated_at = now()
    where business_id = v_customer.business_id and id = v_customer.id;
    perform app.audit(v_customer.business_id,
      case when p_status = 'blocked' then 'customer.blocked' when v_customer.status = 'blocked' then 'customer.unblocked'
           else 'customer.status_changed' end,
      jsonb_build_object('customer_id', v_customer.id, 'from', v_customer.status, 'to', p_status, 'reason', v_reason));
  end if;
  return jsonb_build_object('customer_id', v_customer.id, 'status', p_status, 'reason', v_reason);
end
$$;
revoke all on function app.set_customer_status(uuid, text, text) from public;
grant execute on function app.set_customer_status(uuid, text, text) to authenticated, service_role;

/** See app.set_customer_status; a refusal for want of block_customers is answered 403 and audited. */
create function public.set_customer_status(customer_id uuid, status text, reason text default null) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_hint text;
  v_detail text;
begin
  return app.set_customer_status(customer_id, status, reason);
exception when insufficient_privilege then
  get stacked diagnostics v_hint = pg_exception_hint, v_detail = pg_exception_detail;
  if v_hint is distinct from 'permission_denied' then
    raise;
  end if;
  return app.permission_refused(v_detail, sqlerrm);
end
$$;
revoke all on function public.set_customer_status(uuid, text, text) from public;
grant execute on function public.set_customer_status(uuid, text, text) to authenticated, service_role;
