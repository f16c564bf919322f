-- Permissions and custom roles (issue 22 item 5): a catalogue of permissions, the built-in roles as
-- default permission sets, per-business custom roles a membership can carry instead of its role's
-- defaults, and one check (app.has_permission / app.require_permission) that RPCs, triggers and
-- policies call instead of naming roles. A refusal is 42501 permission_denied; the PostgREST wrappers
-- answer it as 403 without raising (response.status), so the audit_log row of the refused attempt
-- commits (a raise would roll it back). The membership's built-in role still decides what it sees.

-- section tables

/** The permission catalogue (platform-wide, readable by everyone). */
create table public.permissions (
  key text primary key constraint permissions_key_format check (key ~ '^[a-z][a-z_]{1,40}$'),
  description text not null,
  sort_order integer not null default 0
);
alter table public.permissions enable row level security;

/** The built-in roles' default permission sets (platform-wide). Owners hold every permission. */
create table public.role_permissions (
  role public.membership_role not null,
  permission text not null references public.permissions (key) on delete cascade,
  constraint role_permissions_pkey primary key (role, permission)
);
alter table public.role_permissions enable row level security;

/** A business's own role: a named permission set (e.g. "Shift lead": staff who may refund). A
    membership with a custom role has exactly its permissions instead of its built-in role's. */
create table public.business_roles (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  name text not null constraint business_roles_name_length check (length(trim(name)) between 1 and 60),
  description text not null default '' constraint business_roles_description_length check (length(description) <= 500),
  permissions text[] not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint business_roles_pkey primary key (business_id, id),
  constraint business_roles_business_name_key unique (business_id, name)
);
alter table public.business_roles enable row level security;

alter table public.memberships add column custom_role_id uuid,
  add constraint memberships_custom_role_fkey foreign key (business_id, custom_role_id)
    references public.business_roles (business_id, id) on delete set null (custom_role_id);

-- section indexes
create index memberships_custom_role_idx on public.memberships (business_id, custom_role_id) where custom_role_id is not null;

-- section private helpers

/** Does the caller hold the permission at the business? Owners: always; a member with a custom role:
    if the role lists it; another member: if the built-in role's defaults do; the service role: yes. */
create function app.has_permission(p_business_id uuid, p_permission text) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select coalesce(auth.role(), '') = 'service_role' or exists (
    select 1 from public.memberships m
    left join public.business_roles r on r.business_id = m.business_id and r.id = m.custom_role_id
    where m.business_id = p_business_id and m.user_id = (select auth.uid())
      and (m.role = 'owner'
           or (m.custom_role_id is not null and p_permission = any (r.permissions))
           or (m.custom_role_id is null and exists (select 1 from public.role_permissions rp
                                                    where rp.role = m.role and rp.permission = p_permission))))
$$;
revoke all on function app.has_permission(uuid, text) from public;
grant execute on function app.has_permission(uuid, text) to authenticated, service_role;

/** Businesses where the caller holds the permission (for policies: evaluated once per statement). */
create function app.my_permitted_business_ids(p_permission text) returns setof uuid
language sql stable security definer
set search_path = ''
as $$
  select m.business_id from public.memberships m
  left join public.business_roles r on r.business_id = m.business_id and r.id = m.custom_role_id
  where m.user_id = (select auth.uid())
    and (m.role = 'owner'
         or (m.custom_role_id is not null and p_permission = any (r.permissions))
         or (m.custom_role_id is null and exists (select 1 from public.role_permissions rp
                                                  where rp.role = m.role and rp.permission = p_permission)))
$$;
revoke all on function app.my_permitted_business_ids(text) from public;
grant execute on function app.my_permitted_business_ids(text) to authenticated, service_role;

/** (business, venue) pairs where the caller holds the permission, venue limits applied. */
create function app.my_permitted_venue_keys(p_permission text) returns table (business_id uuid, venue_id uuid)
language sql stable security definer
set search_path = ''
as $$
  select k.business_id, k.venue_id from app.my_venue_keys() k
  where k.business_id in (select app.my_permitted_business_ids(p_permission))
$$;
revoke all on function app.my_permitted_venue_keys(text) from public;
grant execute on function app.my_permitted_venue_keys(text) to authenticated, service_role;

/** Raises 42501 permission_denied (detail: {"business_id", "permission", ...p_details}) unless the
    caller holds the permission. The one check RPCs and triggers call. */
create function app.require_permission(p_business_id uuid, p_permission text, p_details jsonb default '{}') returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if not app.has_permission(p_business_id, p_permission) then
    raise exception using errcode = '42501', hint = 'permission_denied',
      message = format('your role does not allow %s here', replace(p_permission, '_', ' ')),
      detail = (coalesce(p_details, '{}'::jsonb) || jsonb_build_object('business_id', p_business_id, 'permission', p_permission))::text;
  end if;
end
$$;
revoke all on function app.require_permission(uuid, text, jsonb) from public;
grant execute on function app.require_permission(uuid, text, jsonb) to authenticated, service_role;

/** The answer to a refused attempt, audited: writes permission.denied to audit_log, sets the PostgREST
    status to 403 and returns the error body. Only for a real refusal: the caller is a member of the
    business and does not hold the permission (else nothing is written and 22023 is raised). */
create function app.permission_refused(p_detail text, p_message text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_detail jsonb := case when coalesce(p_detail, '') ~ '^\s*\{' then p_detail::jsonb else '{}'::jsonb end;
  v_business uuid := case when v_detail ->> 'business_id' ~ '^[0-9a-f-]{36}$' then (v_detail ->> 'business_id')::uuid end;
  v_permission text := v_detail ->> 'permission';
begin
  if v_business is null or v_permission is null or not app.is_member(v_business)
     or app.has_permission(v_business, v_permission) then
    perform app.fail('22023', 'invalid_input', 'not a refusal of this caller');
  end if;
  perform app.audit(v_business, 'permission.denied', v_detail || jsonb_build_object(
    'role', (select m.role from public.memberships m where m.business_id = v_business and m.user_id = auth.uid()),
    'custom_role_id', (select m.custom_role_id from public.memberships m where m.business_id = v_business and m.user_id = auth.uid())));
  perform set_config('response.status', '403', true);
  return jsonb_build_object('error', 'permission_denied', 'code', '42501', 'message', p_message, 'details', v_detail);
end
$$;
revoke all on function app.permission_refused(text, text) from public;
grant execute on function app.permission_refused(text, text) to authenticated, service_role;

-- section triggers

/** A custom role lists only catalogue permissions; an owner never carries one (owners hold all). */
create function app.tg_business_roles_validate() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_unknown text;
begin
  new.name := trim(new.name);
  select p into v_unknown from unnest(new.permissions) p where not exists (select 1 from public.permissions c where c.key = p) limit 1;
  if v_unknown is not null then
    perform app.fail('BR780', 'unknown_permission', format('%L is not a permission', v_unknown));
  end if;
  new.permissions := array(select distinct p from unnest(new.permissions) p order by p);
  new.updated_at := now();
  return new;
end
$$;
revoke all on function app.tg_business_roles_validate() from public, anon, authenticated, service_role;

create function app.tg_memberships_custom_role() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.custom_role_id is not null and new.role = 'owner' then
    perform app.fail('BR781', 'owner_custom_role', 'an owner holds every permission and carries no custom role');
  end if;
  return new;
end
$$;
revoke all on function app.tg_memberships_custom_role() from public, anon, authenticated, service_role;

/** Cancelling an order that holds money refunds it: only with cancel_paid_order (API callers). */
create function app.tg_orders_cancel_paid() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if coalesce(auth.role(), '') = 'authenticated' and new.status = 'cancelled' and old.status <> 'cancelled'
     and old.payment_status in ('paid', 'partially_refunded') then
    perform app.require_permission(new.business_id, 'cancel_paid_order', jsonb_build_object('order_id', new.id));
  end if;
  return new;
end
$$;
revoke all on function app.tg_orders_cancel_paid() from public, anon, authenticated, service_role;

create trigger business_roles_validate before insert or update on public.business_roles
  for each row execute function app.tg_business_roles_validate();
create trigger memberships_custom_role before insert or update of role, custom_role_id on public.memberships
  for each row execute function app.tg_memberships_custom_role();
create trigger orders_cancel_paid before update of status on public.orders
  for each row when (new.status = 'cancelled' and old.status is distinct from 'cancelled')
  execute function app.tg_orders_cancel_paid();

-- section policies
create policy "anyone reads the permission catalogue" on public.permissions for select to anon, authenticated using (true);
create policy "anyone reads the default permission sets" on public.role_permissions for select to anon, authenticated using (true);
create policy "members read their business's roles" on public.business_roles for select to authenticated
  using (business_id in (select app.my_business_ids()));
create policy "owners create roles" on public.business_roles for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner}')));
create policy "owners edit roles" on public.business_roles for update to authenticated
  using (business_id in (select app.my_business_ids('{owner}')))
  with check (business_id in (select app.my_business_ids('{owner}')));
create policy "owners delete roles" on public.business_roles for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner}')));

-- the menu and stock write policies check permissions instead of the manager role
drop policy "managers add categories" on public.product_categories;
create policy "menu editors add categories" on public.product_categories for insert to authenticated
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers edit categories" on public.product_categories;
create policy "menu editors edit categories" on public.product_categories for update to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')))
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers delete categories" on public.product_categories;
create policy "menu editors delete categories" on public.product_categories for delete to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers add products" on public.products;
create policy "menu editors add products" on public.products for insert to authenticated
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers edit products" on public.products;
create policy "menu editors edit products" on public.products for update to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')))
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers delete products" on public.products;
create policy "menu editors delete products" on public.products for delete to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers add variants" on public.product_variants;
create policy "menu editors add variants" on public.product_variants for insert to authenticated
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers edit variants" on public.product_variants;
create policy "menu editors edit variants" on public.product_variants for update to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')))
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers delete variants" on public.product_variants;
create policy "menu editors delete variants" on public.product_variants for delete to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers add modifier groups" on public.modifier_groups;
create policy "menu editors add modifier groups" on public.modifier_groups for insert to authenticated
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers edit modifier groups" on public.modifier_groups;
create policy "menu editors edit modifier groups" on public.modifier_groups for update to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')))
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers delete modifier groups" on public.modifier_groups;
create policy "menu editors delete modifier groups" on public.modifier_groups for delete to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers add modifiers" on public.modifiers;
create policy "menu editors add modifiers" on public.modifiers for insert to authenticated
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers edit modifiers" on public.modifiers;
create policy "menu editors edit modifiers" on public.modifiers for update to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')))
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers delete modifiers" on public.modifiers;
create policy "menu editors delete modifiers" on public.modifiers for delete to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers link modifier groups" on public.product_modifier_groups;
create policy "menu editors link modifier groups" on public.product_modifier_groups for insert to authenticated
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers unlink modifier groups" on public.product_modifier_groups;
create policy "menu editors unlink modifier groups" on public.product_modifier_groups for delete to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers add stock items" on public.stock_items;
create policy "stock keepers add stock items" on public.stock_items for insert to authenticated
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_permitted_venue_keys('edit_stock') k));
drop policy "managers edit stock items" on public.stock_items;
create policy "stock keepers edit stock items" on public.stock_items for update to authenticated
  using ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_permitted_venue_keys('edit_stock') k))
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_permitted_venue_keys('edit_stock') k));
drop policy "managers add recipe lines" on public.recipe_lines;
create policy "menu editors add recipe lines" on public.recipe_lines for insert to authenticated
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers edit recipe lines" on public.recipe_lines;
create policy "menu editors edit recipe lines" on public.recipe_lines for update to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')))
  with check (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers delete recipe lines" on public.recipe_lines;
create policy "menu editors delete recipe lines" on public.recipe_lines for delete to authenticated
  using (business_id in (select app.my_permitted_business_ids('edit_menu')));
drop policy "managers record stock counts and deliveries" on public.stock_movements;
create policy "stock keepers record stock counts and deliveries" on public.stock_movements for insert to authenticated
  with check (reason in ('adjustment', 'delivery', 'waste', 'count')
              and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_permitted_venue_keys('edit_stock') k));

-- section RPCs that check permissions instead of role names

/** A member holding the refund permission (42501 permission_denied for other members) asks for a refund: the whole remainder (no amount, no lines), an amount, or lines
    {order_item_id: quantity}. Records it pending with its idempotency key and returns what the
    refund function sends to Stripe. Raises PT404, BR130 not refundable, BR131 too much, BR132 lines. */
create or replace function app.request_refund(p_order_id uuid, p_amount_cents integer, p_lines jsonb, p_reason text, p_restock boolean)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_pending integer;
  v_refundable integer;
  v_amount integer;
  v_n integer;
  v_refund_id uuid := extensions.gen_random_uuid();
  v_key text;
  v_bad record;
begin
  select o.* into v_order from public.orders o where o.id = p_order_id for update;
  if v_order.id is null or not app.has_venue_access(v_order.business_id, v_order.venue_id) then
    perform app.fail('PT404', 'order_not_found', 'no such order at your venues');
  end if;
  perform app.require_permission(v_order.business_id, 'refund', jsonb_build_object('order_id', v_order.id));
  perform app.require_module(v_order.business_id, 'ordering');
  if v_order.payment_status not in ('paid', 'partially_refunded') or v_order.payment_intent_id is null then
    perform app.fail('BR130', 'not_refundable', format('an order that is %s cannot be refunded', v_order.payment_status));
  end if;
  select coalesce(sum(r.amount_cents), 0) into v_pending from public.refunds r
  where r.business_id = v_order.business_id and r.order_id = v_order.id and r.status = 'pending';
  v_refundable := v_order.total_cents - v_order.refunded_cents - v_pending;

  if p_lines is not null and jsonb_typeof(p_lines) = 'object' and p_lines <> '{}'::jsonb then
    select k.key, i.id, i.quantity, i.refunded_quantity into v_bad
    from jsonb_each_text(p_lines) k
    left join public.order_items i on i.business_id = v_order.business_id and i.order_id = v_order.id and i.id::text = k.key
    where i.id is null or k.value !~ '^[0-9]+$' or k.value::integer < 1
       or k.value::integer > i.quantity - i.refunded_quantity
    limit 1;
    if v_bad.key is not null then
      perform app.fail('BR132', 'invalid_refund_lines', format('line %s cannot be refunded in that quantity', v_bad.key));
    end if;
    select sum(i.unit_price_cents * (p_lines ->> i.id::text)::integer) into v_amount
    from public.order_items i where i.business_id = v_order.business_id and i.order_id = v_order.id and p_lines ? i.id::text;
    if v_order.subtotal_cents > 0 then  -- the lines' share of the tax goes back with them
      v_amount := v_amount + round(v_amount::numeric * v_order.tax_cents / v_order.subtotal_cents);
    end if;
  elsif p_amount_cents is not null then
    v_amount := p_amount_cents;
  else
    v_amount := v_refundable;
  end if;
  if v_amount is null or v_amount <= 0 then
    perform app.fail('BR131', 'invalid_refund_amount', 'the refund amount must be positive');
  end if;
  if v_amount > v_refundable then
    perform app.fail('BR131', 'refund_exceeds_payment', format('at most %s can be refunded', v_refundable));
  end if;

  select count(*) + 1 into v_n from public.refunds r where r.business_id = v_order.business_id and r.order_id = v_order.id;
  v_key := 'refund:' || v_order.id || ':' || v_n;
  insert into public.refunds (business_id, id, order_id, venue_id, amount_cents, currency, lines, restock, reason,
                              idempotency_key, requested_by)
  values (v_order.business_id, v_refund_id, v_order.id, v_order.venue_id, v_amount, v_order.currency,
          coalesce(case when jsonb_typeof(p_lines) = 'object' then p_lines end, '{}'::jsonb), coalesce(p_restock, false),
          left(coalesce(p_reason, ''), 500), v_key, auth.uid());
  perform app.audit(v_order.business_id, 'refund.requested', jsonb_build_object('order_id', v_order.id, 'refund_id', v_refund_id,
                                                                                 'amount_cents', v_amount));
  return jsonb_build_object('refund_id', v_refund_id, 'order_id', v_order.id, 'business_id', v_order.business_id,
    'amount_cents', v_amount, 'currency', lower(v_order.currency), 'payment_intent_id', v_order.payment_intent_id,
    'idempotency_key', v_key);
end
$$;
revoke all on function app.request_refund(uuid, integer, jsonb, text, boolean) from public;
grant execute on function app.request_refund(uuid, integer, jsonb, text, boolean) to authenticated, service_role;
/** Members holding the refund permission refund part of a booking that stays on (a broken prop, a late start). A
    refund of everything left is a cancellation: use cancel_booking. Raises PT404, PT403, BR605
    (not confirmed, checked in or completed), BR608 (not refundable, amount not 1 to less than what is left). */
create or replace function app.refund_booking(p_booking_id uuid, p_amount_cents integer, p_reason text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_pending integer;
  v_refund_id uuid;
begin
  select b.* into v_booking from public.bookings b where b.id = p_booking_id for update;
  if v_booking.id is null or not app.has_venue_access(v_booking.business_id, v_booking.venue_id) then
    perform app.fail('PT404', 'booking_not_found', 'no such booking at your venues');
  end if;
  perform app.require_permission(v_booking.business_id, 'refund', jsonb_build_object('booking_id', v_booking.id));
  perform app.require_module(v_booking.business_id, 'bookings');
  if v_booking.status not in ('confirmed', 'checked_in', 'completed') then
    perform app.fail('BR605', 'illegal_transition', format('a %s booking is not refunded in part', v_booking.status));
  end if;
  select coalesce(sum(r.amount_cents), 0) into v_pending from public.refunds r
  where r.business_id = v_booking.business_id and r.booking_id = v_booking.id and r.status = 'pending';
  if p_amount_cents is null or p_amount_cents <= 0
     or p_amount_cents >= v_booking.total_cents - v_booking.refunded_cents - v_pending then
    perform app.fail('BR608', 'invalid_refund_amount', 'a partial refund is less than what is left (cancel_booking refunds it all)');
  end if;
  v_refund_id := app.request_booking_refund(v_booking.business_id, v_booking.id, p_amount_cents,
                                            coalesce(nullif(trim(p_reason), ''), 'partial refund'));
  return jsonb_build_object('booking_id', v_booking.id, 'booking_number', v_booking.booking_number, 'status', v_booking.status,
                            'refund_id', v_refund_id, 'refund_cents', p_amount_cents);
end
$$;
revoke all on function app.refund_booking(uuid, integer, text) from public;
grant execute on function app.refund_booking(uuid, integer, text) to authenticated, service_role;
/** Everything held about a customer as JSON (data-subject access). A member of the business asking
    for someone else's data needs export_customers (42501 permission_denied): checked here, under every
    caller of the export. */
create or replace function app.export_customer(p_business_id uuid, p_customer_id uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
begin
  if app.is_member(p_business_id) and not exists (
      select 1 from public.customers c where c.business_id = p_business_id and c.id = p_customer_id and c.user_id = auth.uid()) then
    perform app.require_permission(p_business_id, 'export_customers', jsonb_build_object('customer_id', p_customer_id));
  end if;
  return (
  select jsonb_build_object(
      'customer', (select to_jsonb(c) from public.customers c where c.business_id = p_business_id and c.id = p_customer_id),
      'venue_stats', coalesce((select jsonb_agg(to_jsonb(s)) from public.customer_venue_stats s where s.business_id = p_business_id and s.customer_id = p_customer_id), '[]'),
      'tags', coalesce((select jsonb_agg(t.tag order by t.tag) from public.customer_tags t where t.business_id = p_business_id and t.customer_id = p_customer_id), '[]'),
      'notes', coalesce((select jsonb_agg(to_jsonb(n) order by n.created_at) from public.customer_notes n where n.business_id = p_business_id and n.customer_id = p_customer_id), '[]'),
      'preferences', coalesce((select jsonb_agg(to_jsonb(p)) from public.customer_preferences p where p.business_id = p_business_id and p.customer_id = p_customer_id), '[]'),
      'consent_log', coalesce((select jsonb_agg(to_jsonb(l) order by l.id) from public.customer_consent_log l where l.business_id = p_business_id and l.customer_id = p_customer_id), '[]'),
      'orders', coalesce((select jsonb_agg(to_jsonb(o) - 'access_token' - 'pickup_code_hash' || jsonb_build_object('items',
                           (select jsonb_agg(to_jsonb(i) - 'unit_cost_cents') from public.order_items i where i.business_id = o.business_id and i.order_id = o.id))
                           order by o.placed_at)
                         from public.orders o where o.business_id = p_business_id and o.customer_id = p_customer_id), '[]'),
      'loyalty', (select to_jsonb(a) from public.loyalty_accounts a where a.business_id = p_business_id and a.customer_id = p_customer_id),
      'loyalty_history', coalesce((select jsonb_agg(to_jsonb(t) order by t.id) from public.loyalty_transactions t where t.business_id = p_business_id and t.customer_id = p_customer_id), '[]'),
      'messages', coalesce((select jsonb_agg(jsonb_build_object('channel', n.channel, 'template', n.template, 'status', n.status, 'sent_at', n.sent_at))
                            from public.notification_log n where n.business_id = p_business_id and n.customer_id = p_customer_id), '[]'),
      'delete_requests', coalesce((select jsonb_agg(to_jsonb(r)) from public.customer_delete_requests r where r.business_id = p_business_id and r.customer_id = p_customer_id), '[]'),
      'exported_at', now())
  );
end
$$;
revoke all on function app.export_customer(uuid, uuid) from public;
grant execute on function app.export_customer(uuid, uuid) to service_role;

/** Export for members holding export_customers (42501 permission_denied for other members), the operator, or the customer themselves. Raises PT404. */
create or replace function app.export_customer(customer_id uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_customer public.customers;
begin
  select c.* into v_customer from public.customers c where c.id = export_customer.customer_id;
  if v_customer.id is null or not (app.is_member(v_customer.business_id) or app.is_platform_or_service()
                                   or coalesce(v_customer.user_id = auth.uid(), false)) then
    perform app.fail('PT404', 'customer_not_found', 'no such customer');
  end if;
  if app.is_member(v_customer.business_id) and not coalesce(v_customer.user_id = auth.uid(), false) then
    perform app.require_permission(v_customer.business_id, 'export_customers', jsonb_build_object('customer_id', v_customer.id));
  end if;
  return app.export_customer(v_customer.business_id, v_customer.id);
end
$$;
revoke all on function app.export_customer(uuid) from public;
grant execute on function app.export_customer(uuid) to authenticated, service_role;
-- section RPC functions

/** A refusal for want of a permission is answered 403 with {"error": "permission_denied", ...} and
    audited (permission.denied); other errors raise as before. */
create or replace function public.request_refund(order_id uuid, amount_cents integer default null, lines jsonb default null,
                                                 reason text default null, restock boolean default false) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_hint text;
  v_detail text;
begin
  return app.request_refund(order_id, amount_cents, lines, reason, restock);
exception when insufficient_privilege then
  get stacked diagnostics v_hint = pg_exception_hint, v_detail = pg_exception_detail;
  if v_hint is distinct from 'permission_denied' then
    raise;
  end if;
  return app.permission_refused(v_detail, sqlerrm);
end
$$;
revoke all on function public.request_refund(uuid, integer, jsonb, text, boolean) from public;
grant execute on function public.request_refund(uuid, integer, jsonb, text, boolean) to authenticated, service_role;

create or replace function public.refund_booking(booking_id uuid, amount_cents integer, reason text default null) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_hint text;
  v_detail text;
begin
  return app.refund_booking(booking_id, amount_cents, reason);
exception when insufficient_privilege then
  get stacked diagnostics v_hint = pg_exception_hint, v_detail = pg_exception_detail;
  if v_hint is distinct from 'permission_denied' then
    raise;
  end if;
  return app.permission_refused(v_detail, sqlerrm);
end
$$;
revoke all on function public.refund_booking(uuid, integer, text) from public;
grant execute on function public.refund_booking(uuid, integer, text) to authenticated, service_role;

/** Staff move an order along the kitchen flow (RLS: their venues). Cancelling a paid order needs
    cancel_paid_order: refused with 403 permission_denied, audited. Raises PT404, BR120-BR123 as before. */
create or replace function public.set_order_status(order_id uuid, status public.order_status, reason text default null)
returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_row record;
  v_hint text;
  v_detail text;
begin
  update public.orders o set status = set_order_status.status,
    cancel_reason = case when set_order_status.status = 'cancelled' then reason else o.cancel_reason end
  where o.id = set_order_status.order_id
  returning o.id, o.order_number, o.status, o.payment_status into v_row;
  if v_row.id is null then
    perform app.fail('PT404', 'order_not_found', 'no such order at your venues');
  end if;
  return to_jsonb(v_row);
exception when insufficient_privilege then
  get stacked diagnostics v_hint = pg_exception_hint, v_detail = pg_exception_detail;
  if v_hint is distinct from 'permission_denied' then
    raise;
  end if;
  return app.permission_refused(v_detail, sqlerrm);
end
$$;
revoke all on function public.set_order_status(uuid, public.order_status, text) from public;
grant execute on function public.set_order_status(uuid, public.order_status, text) to authenticated, service_role;

-- section grants
revoke all on public.permissions, public.role_permissions, public.business_roles from anon, authenticated;
grant select on public.permissions, public.role_permissions to anon, authenticated;
grant select, delete on public.business_roles to authenticated;
grant insert (business_id, name, description, permissions) on public.business_roles to authenticated;
grant update (name, description, permissions) on public.business_roles to authenticated;
grant update (custom_role_id) on public.memberships to authenticated;
grant all on public.permissions, public.role_permissions, public.business_roles to service_role;

-- section data
insert into public.permissions (key, description, sort_order) values
  ('refund', 'refund orders and bookings (request_refund, refund_booking, the refund function)', 10),
  ('cancel_paid_order', 'cancel an order that holds money (it is refunded)', 20),
  ('edit_menu', 'create and change categories, products, variants, modifiers and recipes', 30),
  ('edit_stock', 'add stock items, record counts, deliveries and waste', 40),
  ('export_customers', 'export a customer''s data (export_customer)', 50),
  ('block_customers', 'block and unblock customers (set_customer_status)', 60);
insert into public.role_permissions (role, permission) values
  ('manager', 'refund'), ('manager', 'cancel_paid_order'), ('manager', 'edit_menu'), ('manager', 'edit_stock'),
  ('manager', 'export_customers'), ('manager', 'block_customers'),
  ('staff', 'cancel_paid_order');
