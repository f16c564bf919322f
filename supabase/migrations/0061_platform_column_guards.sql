-- Security review (issue 20): columns the platform alone writes, and merchant costs customers never
-- read. Column grants are the guard (the catalog shows them; tests/db/test_privileges.py walks every
-- writable and every sensitive readable column against its allow-list); triggers back them up.
-- Codes in docs/errors.md.

-- section triggers

/** Ratings on a product come only from its approved reviews: a client's insert starts them at zero
    and a client's update keeps them (the column grants already refuse both; this holds if a grant
    ever widens). */
create or replace function app.tg_products_rating_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if current_user in ('anon', 'authenticated') then
    if tg_op = 'INSERT' then
      new.rating_count := 0;
      new.rating_average := null;
    else
      new.rating_count := old.rating_count;
      new.rating_average := old.rating_average;
    end if;
  end if;
  return new;
end
$$;

drop trigger products_rating_guard on public.products;
create trigger products_rating_guard before insert or update of rating_count, rating_average on public.products
  for each row execute function app.tg_products_rating_guard();

/** An order line keeps its modifiers' names and prices, not their costs: the cost is already in
    unit_cost_cents, and the line is readable by the customer who placed it. */
create function app.tg_order_items_strip_costs() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if jsonb_typeof(new.modifiers) = 'array' then
    new.modifiers := coalesce((select jsonb_agg(m.value - 'cost_cents' order by m.n)
                               from jsonb_array_elements(new.modifiers) with ordinality m(value, n)), '[]'::jsonb);
  end if;
  return new;
end
$$;

create trigger order_items_strip_costs before insert or update of modifiers on public.order_items
  for each row execute function app.tg_order_items_strip_costs();

update public.order_items set modifiers = modifiers where modifiers @? '$[*].cost_cents';

-- section grants

-- The platform's cut of own-driver pay is the operator's (public.set_dispatch_platform_fee).
revoke insert, update on public.venue_dispatch_rules from authenticated;
grant insert (business_id, venue_id, dispatch_on, lead_minutes, offer_timeout_seconds, offers_per_round,
              own_driver_limit_seconds, max_pickup_km, fallback_providers, base_fee_cents, per_km_cents, surge_multiplier,
              average_speed_kmh, load_penalty_km, priority_penalty_km),
      update (dispatch_on, lead_minutes, offer_timeout_seconds, offers_per_round, own_driver_limit_seconds, max_pickup_km,
              fallback_providers, base_fee_cents, per_km_cents, surge_multiplier, average_speed_kmh, load_penalty_km,
              priority_penalty_km) on public.venue_dispatch_rules to authenticated;

-- Ratings are computed from approved reviews (app.tg_product_reviews_aggregate).
revoke insert, update on public.products from authenticated;
grant insert (business_id, id, category_id, name, description, sku, price_cents, cost_cents, prep_time_minutes, image_urls,
              is_published, sort_order, created_at, updated_at, allergens),
      update (business_id, id, category_id, name, description, sku, price_cents, cost_cents, prep_time_minutes, image_urls,
              is_published, sort_order, created_at, updated_at, allergens) on public.products to authenticated;

-- The application fee and the Stripe account are the operator's, through their RPCs (set_payment_account).
revoke insert on public.businesses from authenticated;
grant insert (id, name, slug, currency, time_zone, modules_json, status, created_at, updated_at) on public.businesses
  to authenticated;

-- Customers read their own orders, lines and deliveries: never what they cost the merchant. Members
-- read costs through the money views below.
revoke select on public.orders, public.order_items from authenticated;
grant select (business_id, id, venue_id, order_number, channel, fulfilment, table_ref, scheduled_for, status, payment_status,
              user_id, customer_id, guest_name, guest_phone, guest_email, delivery_address, notes, currency, subtotal_cents,
              discount_cents, tax_cents, tip_cents, delivery_fee_cents, total_cents, refunded_cents,
              payment_intent_id, pickup_code_expires_at, pickup_code_attempts, cancel_reason, placed_at, paid_at,
              accepted_at, ready_at, completed_at, cancelled_at, updated_at) on public.orders to authenticated;
grant select (business_id, id, order_id, venue_id, line_number, product_id, variant_id, name, variant_name, modifiers,
              quantity, unit_price_cents, line_total_cents, refunded_quantity, notes) on public.order_items to authenticated;
revoke select on public.deliveries from authenticated;
grant select (business_id, id, venue_id, order_id, status, provider, driver_business_id, driver_id, external_delivery_id,
              provider_delivery_id, quote_id, tracking_url, pickup, dropoff, pickup_latitude, pickup_longitude, dropoff_latitude,
              dropoff_longitude, distance_km, order_value_cents, fee_cents, tip_cents, currency, offer_round,
              courier_name, courier_phone, courier_latitude, courier_longitude, courier_updated_at, pickup_eta, eta,
              proof_photo_url, proof_signature_url, proof_pin_verified, proof_latitude, proof_longitude, rating, rated_at,
              failure_reason,
              cancel_reason, cancel_requested_at, cancel_refused_at, cancel_refusal, created_at, first_offered_at, booked_at,
              assigned_at, picked_up_at, delivered_at, cancelled_at, updated_at) on public.deliveries to authenticated;

-- section views

/** Profit per paid order: revenue, cost of goods, Stripe fees, messaging costs, margin. Runs with the
    view owner's privileges (costs are not granted to API roles) and filters itself: owners and
    managers of the order's venue, the operator, the service role and direct database sessions
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
           and (o.business_id, o.venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k)));
revoke all on public.order_profit from anon, authenticated;
grant select on public.order_profit to authenticated, service_role;

/** What each delivery cost and earned the business. Runs with the view owner's privileges
    (deliveries.cost_cents is not granted to API roles) and filters itself: owners and managers, the
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
       and d.business_id in (select app.my_business_ids('{owner,manager}')));
revoke all on public.delivery_margins from anon, authenticated;
grant select on public.delivery_margins to authenticated, service_role;

-- section rpc

/** The operator sets the platform's cut of a venue's own-driver pay (basis points, 0–10000).
    Raises 42501 (not the operator), PT404 (no such venue), 23514 (out of range). */
create function app.set_dispatch_platform_fee(p_business_id uuid, p_venue_id uuid, p_platform_fee_bps integer)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if not app.is_operator() then
    perform app.fail('42501', 'operator_only', 'only the platform operator sets platform fees');
  end if;
  if not exists (select 1 from public.venues v where v.business_id = p_business_id and v.id = p_venue_id) then
    perform app.fail('PT404', 'venue_not_found', 'no such venue');
  end if;
  insert into public.venue_dispatch_rules (business_id, venue_id, platform_fee_bps)
  values (p_business_id, p_venue_id, p_platform_fee_bps)
  on conflict (business_id, venue_id) do update set platform_fee_bps = excluded.platform_fee_bps;
  perform app.audit(p_business_id, 'dispatch.platform_fee_set',
                    jsonb_build_object('venue_id', p_venue_id, 'platform_fee_bps', p_platform_fee_bps));
  return jsonb_build_object('business_id', p_business_id, 'venue_id', p_venue_id, 'platform_fee_bps', p_platform_fee_bps);
end
$$;
revoke all on function app.set_dispatch_platform_fee(uuid, uuid, integer) from public;
grant execute on function app.set_dispatch_platform_fee(uuid, uuid, integer) to authenticated, service_role;

/** PostgREST entry point for app.set_dispatch_platform_fee (the operator console). */
create function public.set_dispatch_platform_fee(business_id uuid, venue_id uuid, platform_fee_bps integer) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.set_dispatch_platform_fee(business_id, venue_id, platform_fee_bps)
$$;
revoke all on function public.set_dispatch_platform_fee(uuid, uuid, integer) from public, anon;
grant execute on function public.set_dispatch_platform_fee(uuid, uuid, integer) to authenticated, service_role;
