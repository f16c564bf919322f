-- Permissions, continued (issue 22 item 5): view_finance decides who reads the money views (order_profit,
-- delivery_margins: costs and margins), dispatch who hands a delivery to a driver (assign_delivery,
-- refused as an audited 403 through PostgREST). Defaults keep today's behaviour.

-- section data
insert into public.permissions (key, description, sort_order) values
  ('view_finance', 'read costs and margins (order_profit, delivery_margins)', 70),
  ('dispatch', 'hand a delivery to a driver (assign_delivery)', 80);
insert into public.role_permissions (role, permission) values
  ('manager', 'view_finance'), ('manager', 'dispatch'), ('staff', 'dispatch');

-- section views

/** Profit per paid order: revenue, cost of goods, Stripe fees, messaging costs, margin. Runs with the
    view owner's privileges (costs are not granted to API roles) and filters itself: members holding
    view_finance at the order's venue, the operator, the service role and direct database sessions
    (app.is_operator). */
create or replace view public.order_profit with (security_invoker = false) as
select o.business_id, o.venue_id, o.id as order_id, o.order_number, o.placed_at, o.paid_at, o.currency,
       o.total_cents, o.refunded_cents,
       greatest(0, o.total_cents - o.refunded_cents - o.tax_cents - o.tip_cents) as revenue_cents,
       coalesce(items.cogs, 0) as cost_of_goods_cents,
       coalesce(pay.fees, 0) as stripe_fee_cents,
       coalesce(msg.cost, 0) as messaging_cost_cents,
       greatest(0, o.total_cents - o.refunded_cents - o.tax_cents - o.tip_cents) - coalesce(items.cogs, 0)
         - coalesce(pay.fees, 0) - coalesce(msg.cost, 0) as margin_cents
from public.orders o
left join lateral (select sum(i.unit_cost_cents * (i.quantity - i.refunded_quantity)) as cogs from public.order_items i
                   where i.business_id = o.business_id and i.order_id = o.id) items on true
left join lateral (select sum(p.fee_cents) as fees from public.payments p
                   where p.business_id = o.business_id and p.order_id = o.id) pay on true
left join lateral (select sum(n.cost_cents) as cost from public.notification_log n
                   where n.business_id = o.business_id and n.order_id = o.id) msg on true
where o.paid_at is not null
  and (app.is_operator()
       or (app.module_enabled(o.business_id, 'ordering')
           and (o.business_id, o.venue_id) in (select k.business_id, k.venue_id from app.my_permitted_venue_keys('view_finance') k)));
revoke all on public.order_profit from anon, authenticated;
grant select on public.order_profit to authenticated, service_role;

/** What each delivery cost and earned the business. Runs with the view owner's privileges
    (deliveries.cost_cents is not granted to API roles) and filters itself: members holding view_finance, the
    operator, the service role and direct database sessions (app.is_operator). */
create or replace view public.delivery_margins with (security_invoker = false) as
select d.business_id, d.venue_id, d.id as delivery_id, d.order_id, d.provider, d.status, d.currency,
       d.fee_cents as delivery_fee_cents, d.tip_cents, d.cost_cents,
       d.fee_cents + d.tip_cents - d.cost_cents as margin_cents,
       o.total_cents - o.refunded_cents - d.cost_cents as order_net_of_delivery_cents
from public.deliveries d
join public.orders o on o.business_id = d.business_id and o.id = d.order_id
where app.is_operator()
   or (app.module_enabled(d.business_id, 'dispatch')
       and d.business_id in (select app.my_permitted_business_ids('view_finance')));
revoke all on public.delivery_margins from anon, authenticated;
grant select on public.delivery_margins to authenticated, service_role;

-- section RPC functions

/** Staff give a delivery still being offered (or not yet) to a driver of their choice, who must be
    actively assigned to the business: open offers are withdrawn. Raises PT404 (not at your venues,
    or not your driver), PT403, BR501 (the delivery is past offering: booked, assigned or closed). */
create or replace function app.assign_delivery(p_delivery_id uuid, p_driver_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_delivery public.deliveries;
  v_driver public.drivers;
  v_rules public.venue_dispatch_rules;
begin
  select d.* into v_delivery from public.deliveries d where d.id = p_delivery_id;
  if v_delivery.id is null or not (app.is_platform_or_service()
                                   or app.has_venue_access(v_delivery.business_id, v_delivery.venue_id)) then
    perform app.fail('PT404', 'delivery_not_found', 'no such delivery at your venues');
  end if;
  perform app.require_permission(v_delivery.business_id, 'dispatch', jsonb_build_object('delivery_id', v_delivery.id));
  perform app.require_module(v_delivery.business_id, 'dispatch');
  select d.* into v_delivery from public.deliveries d where d.business_id = v_delivery.business_id and d.id = p_delivery_id for update;
  if v_delivery.status not in ('pending', 'offering') then
    perform app.fail('BR501', 'illegal_transition', format('a %s delivery cannot be given to a driver', v_delivery.status));
  end if;
  select dr.* into v_driver from public.driver_business_assignments a
  join public.drivers dr on dr.business_id = a.driver_business_id and dr.id = a.driver_id
  where a.business_id = v_delivery.business_id and a.driver_id = p_driver_id and a.is_active;
  if v_driver.id is null then
    perform app.fail('PT404', 'driver_not_found', 'no such driver serving this business');
  end if;
  update public.delivery_offers set status = 'withdrawn', responded_at = now()
  where business_id = v_delivery.business_id and delivery_id = v_delivery.id and status = 'pending';
  v_rules := app.dispatch_rules(v_delivery.business_id, v_delivery.venue_id);
  v_delivery.status := 'assigned';
  update public.deliveries set status = 'assigned', provider = 'own', driver_business_id = v_driver.business_id,
    driver_id = v_driver.id, courier_name = v_driver.display_name, courier_phone = v_driver.phone,
    courier_latitude = v_driver.latitude, courier_longitude = v_driver.longitude, courier_updated_at = v_driver.location_at,
    eta = app.delivery_eta(v_delivery, v_driver.latitude, v_driver.longitude, v_rules.average_speed_kmh, now()),
    pickup_eta = app.pickup_eta(v_delivery, v_driver.latitude, v_driver.longitude, v_rules.average_speed_kmh, now())
  where business_id = v_delivery.business_id and id = v_delivery.id;
  return jsonb_build_object('delivery_id', v_delivery.id, 'status', 'assigned', 'driver_id', v_driver.id);
end
$$;
revoke all on function app.assign_delivery(uuid, uuid) from public;
grant execute on function app.assign_delivery(uuid, uuid) to authenticated, service_role;

/** See app.assign_delivery; a refusal for want of dispatch is answered 403 and audited. */
create or replace function public.assign_delivery(delivery_id uuid, driver_id uuid) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  v_hint text;
  v_detail text;
begin
  return app.assign_delivery(delivery_id, driver_id);
exception when insufficient_privilege then
  get stacked diagnostics v_hint = pg_exception_hint, v_detail = pg_exception_detail;
  if v_hint is distinct from 'permission_denied' then
    raise;
  end if;
  return app.permission_refused(v_detail, sqlerrm);
end
$$;
revoke all on function public.assign_delivery(uuid, uuid) from public, anon;
grant execute on function public.assign_delivery(uuid, uuid) to authenticated, service_role;
