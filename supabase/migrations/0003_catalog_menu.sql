-- Catalog: categories, products, variants, modifiers, availability per venue, opening hours, stock
-- items per venue with a recipe table and an append-only stock ledger, and the anonymous menu RPC.
-- Gated by the `ordering` module. Error codes in docs/errors.md (BR1xx).

-- section venue settings the order flow needs
alter table public.venues
  add column accepts_pickup boolean not null default true,
  add column accepts_delivery boolean not null default false,
  add column accepts_dine_in boolean not null default false,
  add column delivery_radius_km numeric(6, 2) not null default 5
    constraint venues_delivery_radius_nonnegative check (delivery_radius_km >= 0),
  add column delivery_fee_cents integer not null default 0
    constraint venues_delivery_fee_nonnegative check (delivery_fee_cents >= 0),
  add column tax_rate_bps integer not null default 0
    constraint venues_tax_rate_range check (tax_rate_bps between 0 and 10000);

-- section tables

/** Menu sections, nestable (parent_id). */
create table public.product_categories (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  parent_id uuid,
  name text not null constraint product_categories_name_length check (length(name) between 1 and 120),
  sort_order integer not null default 0,
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  constraint product_categories_pkey primary key (business_id, id),
  constraint product_categories_parent_fkey foreign key (business_id, parent_id)
    references public.product_categories (business_id, id) on delete set null (parent_id),
  constraint product_categories_not_own_parent check (parent_id is distinct from id)
);
alter table public.product_categories enable row level security;

/** What a business sells. price_cents is what customers pay; cost_cents (cost of goods) stays private. */
create table public.products (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  category_id uuid,
  name text not null constraint products_name_length check (length(name) between 1 and 200),
  description text not null default '',
  sku text,
  price_cents integer not null constraint products_price_nonnegative check (price_cents >= 0),
  cost_cents integer not null default 0 constraint products_cost_nonnegative check (cost_cents >= 0),
  prep_time_minutes integer not null default 10 constraint products_prep_time_range check (prep_time_minutes between 0 and 600),
  image_urls text[] not null default '{}',
  is_published boolean not null default true,
  sort_order integer not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint products_pkey primary key (business_id, id),
  constraint products_category_fkey foreign key (business_id, category_id)
    references public.product_categories (business_id, id) on delete set null (category_id),
  constraint products_business_sku_key unique (business_id, sku)
);
alter table public.products enable row level security;

/** Sizes and versions of a product; the price and cost adjust the product's. */
create table public.product_variants (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  product_id uuid not null,
  name text not null constraint product_variants_name_length check (length(name) between 1 and 120),
  price_adjustment_cents integer not null default 0,
  cost_adjustment_cents integer not null default 0,
  is_default boolean not null default false,
  is_available boolean not null default true,
  sort_order integer not null default 0,
  constraint product_variants_pkey primary key (business_id, id),
  constraint product_variants_product_fkey foreign key (business_id, product_id)
    references public.products (business_id, id) on delete cascade
);
alter table public.product_variants enable row level security;

/** A choice on a product ("Milk", "Extras") with how many options may or must be picked. */
create table public.modifier_groups (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  name text not null constraint modifier_groups_name_length check (length(name) between 1 and 120),
  min_choices integer not null default 0 constraint modifier_groups_min_nonnegative check (min_choices >= 0),
  max_choices integer not null default 1,
  created_at timestamptz not null default now(),
  constraint modifier_groups_pkey primary key (business_id, id),
  constraint modifier_groups_choice_range check (max_choices >= greatest(min_choices, 1))
);
alter table public.modifier_groups enable row level security;

create table public.modifiers (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  group_id uuid not null,
  name text not null constraint modifiers_name_length check (length(name) between 1 and 120),
  price_cents integer not null default 0 constraint modifiers_price_nonnegative check (price_cents >= 0),
  cost_cents integer not null default 0 constraint modifiers_cost_nonnegative check (cost_cents >= 0),
  is_available boolean not null default true,
  sort_order integer not null default 0,
  constraint modifiers_pkey primary key (business_id, id),
  constraint modifiers_group_fkey foreign key (business_id, group_id)
    references public.modifier_groups (business_id, id) on delete cascade
);
alter table public.modifiers enable row level security;

/** Which modifier groups a product offers. */
create table public.product_modifier_groups (
  business_id uuid not null,
  product_id uuid not null,
  group_id uuid not null,
  sort_order integer not null default 0,
  constraint product_modifier_groups_pkey primary key (business_id, product_id, group_id),
  constraint product_modifier_groups_product_fkey foreign key (business_id, product_id)
    references public.products (business_id, id) on delete cascade,
  constraint product_modifier_groups_group_fkey foreign key (business_id, group_id)
    references public.modifier_groups (business_id, id) on delete cascade
);
alter table public.product_modifier_groups enable row level security;

/** Availability of a product at one venue. No row: available wherever it is published. */
create table public.venue_products (
  business_id uuid not null,
  venue_id uuid not null,
  product_id uuid not null,
  is_available boolean not null default true,
  unavailable_reason text constraint venue_products_reason_valid check (unavailable_reason in ('manual', 'out_of_stock')),
  updated_at timestamptz not null default now(),
  constraint venue_products_pkey primary key (business_id, venue_id, product_id),
  constraint venue_products_venue_fkey foreign key (business_id, venue_id)
    references public.venues (business_id, id) on delete cascade,
  constraint venue_products_product_fkey foreign key (business_id, product_id)
    references public.products (business_id, id) on delete cascade
);
alter table public.venue_products enable row level security;

/** Weekly opening hours in the venue's time zone. closes_at <= opens_at runs past midnight;
    equal times mean open all day. A venue without any row is always open. */
create table public.venue_opening_hours (
  business_id uuid not null,
  venue_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  weekday smallint not null constraint venue_opening_hours_weekday_range check (weekday between 0 and 6),
  opens_at time not null,
  closes_at time not null,
  constraint venue_opening_hours_pkey primary key (business_id, id),
  constraint venue_opening_hours_venue_fkey foreign key (business_id, venue_id)
    references public.venues (business_id, id) on delete cascade
);
alter table public.venue_opening_hours enable row level security;

/** A date whose hours differ from the week's: closed, or open at other times. */
create table public.venue_hours_exceptions (
  business_id uuid not null,
  venue_id uuid not null,
  on_date date not null,
  is_closed boolean not null default true,
  opens_at time,
  closes_at time,
  note text not null default '',
  constraint venue_hours_exceptions_pkey primary key (business_id, venue_id, on_date),
  constraint venue_hours_exceptions_venue_fkey foreign key (business_id, venue_id)
    references public.venues (business_id, id) on delete cascade,
  constraint venue_hours_exceptions_times check (is_closed or (opens_at is not null and closes_at is not null))
);
alter table public.venue_hours_exceptions enable row level security;

/** An ingredient's stock at one venue. Recipes name it by sku, so one recipe serves every venue.
    quantity is kept by the stock_movements ledger, never written directly. */
create table public.stock_items (
  business_id uuid not null,
  venue_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  sku text not null constraint stock_items_sku_format check (sku ~ '^[A-Za-z0-9._-]{1,64}$'),
  name text not null,
  unit text not null default 'unit',
  quantity numeric(14, 3) not null default 0,
  critical_level numeric(14, 3) not null default 0 constraint stock_items_critical_nonnegative check (critical_level >= 0),
  updated_at timestamptz not null default now(),
  constraint stock_items_pkey primary key (business_id, id),
  constraint stock_items_venue_sku_key unique (business_id, venue_id, sku),
  constraint stock_items_venue_fkey foreign key (business_id, venue_id)
    references public.venues (business_id, id) on delete cascade
);
alter table public.stock_items enable row level security;

/** How much of a stock sku one unit of a product, a variant or a modifier uses. */
create table public.recipe_lines (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  product_id uuid,
  variant_id uuid,
  modifier_id uuid,
  stock_sku text not null,
  quantity numeric(14, 3) not null constraint recipe_lines_quantity_positive check (quantity > 0),
  constraint recipe_lines_pkey primary key (business_id, id),
  constraint recipe_lines_one_source check (num_nonnulls(product_id, variant_id, modifier_id) = 1),
  constraint recipe_lines_product_fkey foreign key (business_id, product_id)
    references public.products (business_id, id) on delete cascade,
  constraint recipe_lines_variant_fkey foreign key (business_id, variant_id)
    references public.product_variants (business_id, id) on delete cascade,
  constraint recipe_lines_modifier_fkey foreign key (business_id, modifier_id)
    references public.modifiers (business_id, id) on delete cascade
);
alter table public.recipe_lines enable row level security;

/** Append-only stock ledger: every change of a stock item's quantity, with why. */
create table public.stock_movements (
  business_id uuid not null,
  venue_id uuid not null,
  id bigint generated always as identity,
  stock_item_id uuid not null,
  delta numeric(14, 3) not null constraint stock_movements_delta_nonzero check (delta <> 0),
  reason text not null constraint stock_movements_reason_valid
    check (reason in ('order', 'refund', 'cancellation', 'adjustment', 'delivery', 'waste', 'count')),
  order_id uuid,
  note text not null default '',
  actor_user_id uuid default auth.uid(),
  created_at timestamptz not null default now(),
  constraint stock_movements_pkey primary key (business_id, id),
  constraint stock_movements_item_fkey foreign key (business_id, stock_item_id)
    references public.stock_items (business_id, id) on delete cascade
);
alter table public.stock_movements enable row level security;

-- section indexes
create index product_categories_parent_idx on public.product_categories (business_id, parent_id);
create index products_category_idx on public.products (business_id, category_id);
create index product_variants_product_idx on public.product_variants (business_id, product_id);
create index modifiers_group_idx on public.modifiers (business_id, group_id);
create index product_modifier_groups_group_idx on public.product_modifier_groups (business_id, group_id);
create index venue_products_product_idx on public.venue_products (business_id, product_id);
create index venue_opening_hours_venue_idx on public.venue_opening_hours (business_id, venue_id, weekday);
create index stock_items_venue_idx on public.stock_items (business_id, venue_id);
create index recipe_lines_product_idx on public.recipe_lines (business_id, product_id) where product_id is not null;
create index recipe_lines_variant_idx on public.recipe_lines (business_id, variant_id) where variant_id is not null;
create index recipe_lines_modifier_idx on public.recipe_lines (business_id, modifier_id) where modifier_id is not null;
create index recipe_lines_sku_idx on public.recipe_lines (business_id, stock_sku);
create index stock_movements_item_idx on public.stock_movements (business_id, stock_item_id, created_at desc);
create index stock_movements_order_idx on public.stock_movements (business_id, order_id) where order_id is not null;

-- section private helpers

/** Is the venue open at this instant (weekly hours, overnight windows and date exceptions)? */
create function app.venue_is_open(p_business_id uuid, p_venue_id uuid, p_at timestamptz) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_tz text;
  v_local timestamp;
  v_day date;
  v_time time;
  v_exc public.venue_hours_exceptions;
begin
  select v.time_zone into v_tz from public.venues v where v.business_id = p_business_id and v.id = p_venue_id;
  if v_tz is null then
    return false;
  end if;
  v_local := p_at at time zone v_tz;
  v_day := v_local::date;
  v_time := v_local::time;

  select * into v_exc from public.venue_hours_exceptions e
  where e.business_id = p_business_id and e.venue_id = p_venue_id and e.on_date = v_day;
  if found then
    if v_exc.is_closed then
      return false;
    end if;
    return v_exc.opens_at = v_exc.closes_at
        or (v_exc.opens_at < v_exc.closes_at and v_time >= v_exc.opens_at and v_time < v_exc.closes_at)
        or (v_exc.opens_at > v_exc.closes_at and (v_time >= v_exc.opens_at or v_time < v_exc.closes_at));
  end if;

  if not exists (select 1 from public.venue_opening_hours h
                 where h.business_id = p_business_id and h.venue_id = p_venue_id) then
    return true;
  end if;

  return exists (
    select 1 from public.venue_opening_hours h
    where h.business_id = p_business_id and h.venue_id = p_venue_id
      and (
        -- a window that opened today
        (h.weekday = extract(dow from v_day)
          and (h.opens_at = h.closes_at
               or (h.opens_at < h.closes_at and v_time >= h.opens_at and v_time < h.closes_at)
               or (h.opens_at > h.closes_at and v_time >= h.opens_at)))
        -- yesterday's window that runs past midnight
        or (h.weekday = extract(dow from v_day - 1) and h.opens_at > h.closes_at and v_time < h.closes_at)
      )
  );
end
$$;
revoke all on function app.venue_is_open(uuid, uuid, timestamptz) from public;
grant execute on function app.venue_is_open(uuid, uuid, timestamptz) to anon, authenticated, service_role;

/** Great-circle distance in km. */
create function app.distance_km(p_lat1 double precision, p_lon1 double precision,
                                p_lat2 double precision, p_lon2 double precision) returns double precision
language sql immutable
set search_path = ''
as $$
  select 2 * 6371.0 * asin(sqrt(
    power(sin(radians(p_lat2 - p_lat1) / 2), 2)
    + cos(radians(p_lat1)) * cos(radians(p_lat2)) * power(sin(radians(p_lon2 - p_lon1) / 2), 2)))
$$;
revoke all on function app.distance_km(double precision, double precision, double precision, double precision) from public;
grant execute on function app.distance_km(double precision, double precision, double precision, double precision)
  to anon, authenticated, service_role;

/** Is the product orderable at the venue: published, not switched off there? */
create function app.product_available(p_business_id uuid, p_venue_id uuid, p_product_id uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.products p
    where p.business_id = p_business_id and p.id = p_product_id and p.is_published
      and not exists (select 1 from public.venue_products vp
                      where vp.business_id = p_business_id and vp.venue_id = p_venue_id
                        and vp.product_id = p_product_id and not vp.is_available)
  )
$$;
revoke all on function app.product_available(uuid, uuid, uuid) from public;
grant execute on function app.product_available(uuid, uuid, uuid) to anon, authenticated, service_role;

-- section triggers

/** The ledger keeps stock_items.quantity. Crossing the critical level emits stock.critical; running
    out marks every product whose recipe uses the sku unavailable at the venue; restocking restores
    the products it had marked (not those switched off by hand). */
create function app.tg_stock_movements_apply() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_item public.stock_items;
  v_before numeric;
begin
  update public.stock_items s
  set quantity = s.quantity + new.delta, updated_at = now()
  where s.business_id = new.business_id and s.id = new.stock_item_id
  returning s.* into v_item;
  if new.venue_id is distinct from v_item.venue_id then
    raise exception using errcode = '22023', message = 'stock movement venue does not match its stock item',
      hint = 'invalid_input';
  end if;
  v_before := v_item.quantity - new.delta;

  if v_before > v_item.critical_level and v_item.quantity <= v_item.critical_level then
    perform app.emit('stock.critical', new.business_id, jsonb_build_object(
      'venue_id', v_item.venue_id, 'stock_item_id', v_item.id, 'sku', v_item.sku, 'name', v_item.name,
      'quantity', v_item.quantity, 'critical_level', v_item.critical_level, 'unit', v_item.unit));
  end if;

  if v_before > 0 and v_item.quantity <= 0 then
    insert into public.venue_products (business_id, venue_id, product_id, is_available, unavailable_reason)
    select distinct new.business_id, v_item.venue_id, p.product_id, false, 'out_of_stock'
    from app.products_using_sku(new.business_id, v_item.sku) p
    on conflict (business_id, venue_id, product_id) do update
      set is_available = false, unavailable_reason = 'out_of_stock', updated_at = now()
      where public.venue_products.is_available;
    perform app.emit('stock.depleted', new.business_id, jsonb_build_object(
      'venue_id', v_item.venue_id, 'stock_item_id', v_item.id, 'sku', v_item.sku));
  elsif v_before <= 0 and v_item.quantity > 0 then
    update public.venue_products vp
    set is_available = true, unavailable_reason = null, updated_at = now()
    where vp.business_id = new.business_id and vp.venue_id = v_item.venue_id
      and vp.unavailable_reason = 'out_of_stock'
      and vp.product_id in (select p.product_id from app.products_using_sku(new.business_id, v_item.sku) p)
      and not exists (  -- another of its ingredients is still out
        select 1 from app.products_using_sku(new.business_id, null) u
        join public.stock_items s on s.business_id = u.business_id and s.venue_id = v_item.venue_id and s.sku = u.stock_sku
        where u.product_id = vp.product_id and s.quantity <= 0);
  end if;
  return null;
end
$$;

/** Products whose recipe (directly, through a variant or a modifier) uses the sku (null: any sku). */
create function app.products_using_sku(p_business_id uuid, p_sku text)
returns table (business_id uuid, product_id uuid, stock_sku text)
language sql stable security definer
set search_path = ''
as $$
  select r.business_id, coalesce(r.product_id, v.product_id, pmg.product_id), r.stock_sku
  from public.recipe_lines r
  left join public.product_variants v on v.business_id = r.business_id and v.id = r.variant_id
  left join public.modifiers m on m.business_id = r.business_id and m.id = r.modifier_id
  left join public.product_modifier_groups pmg on pmg.business_id = m.business_id and pmg.group_id = m.group_id
  where r.business_id = p_business_id and (p_sku is null or r.stock_sku = p_sku)
    and coalesce(r.product_id, v.product_id, pmg.product_id) is not null
$$;
revoke all on function app.products_using_sku(uuid, text) from public;
grant execute on function app.products_using_sku(uuid, text) to service_role;

/** Stock quantity moves only through the ledger. */
create function app.tg_stock_items_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    new.quantity := 0;  -- opening stock is a 'count' movement
  elsif new.quantity is distinct from old.quantity and pg_trigger_depth() = 1 then
    raise exception using errcode = '42501', message = 'stock quantity changes only through stock_movements',
      hint = 'protected_column';
  end if;
  return new;
end
$$;

create trigger stock_movements_apply after insert on public.stock_movements
  for each row execute function app.tg_stock_movements_apply();
create trigger stock_movements_append_only before update or delete on public.stock_movements
  for each row execute function app.tg_append_only();
create trigger stock_items_guard before insert or update on public.stock_items
  for each row execute function app.tg_stock_items_guard();
create trigger products_touch before update on public.products
  for each row execute function app.tg_touch_updated_at();

-- section policies (members read their business's catalog; owners and managers edit it; the
-- anonymous storefront reads the menu only through public.get_menu)

create policy "members read categories" on public.product_categories for select to authenticated
  using (app.module_enabled(business_id, 'ordering') and business_id in (select app.my_business_ids()));
create policy "managers add categories" on public.product_categories for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers edit categories" on public.product_categories for update to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')))
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers delete categories" on public.product_categories for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));

create policy "members read products" on public.products for select to authenticated
  using (app.module_enabled(business_id, 'ordering') and business_id in (select app.my_business_ids()));
create policy "managers add products" on public.products for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers edit products" on public.products for update to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')))
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers delete products" on public.products for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));

create policy "members read variants" on public.product_variants for select to authenticated
  using (app.module_enabled(business_id, 'ordering') and business_id in (select app.my_business_ids()));
create policy "managers add variants" on public.product_variants for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers edit variants" on public.product_variants for update to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')))
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers delete variants" on public.product_variants for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));

create policy "members read modifier groups" on public.modifier_groups for select to authenticated
  using (app.module_enabled(business_id, 'ordering') and business_id in (select app.my_business_ids()));
create policy "managers add modifier groups" on public.modifier_groups for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers edit modifier groups" on public.modifier_groups for update to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')))
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers delete modifier groups" on public.modifier_groups for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));

create policy "members read modifiers" on public.modifiers for select to authenticated
  using (app.module_enabled(business_id, 'ordering') and business_id in (select app.my_business_ids()));
create policy "managers add modifiers" on public.modifiers for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers edit modifiers" on public.modifiers for update to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')))
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers delete modifiers" on public.modifiers for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));

create policy "members read product modifier groups" on public.product_modifier_groups for select to authenticated
  using (app.module_enabled(business_id, 'ordering') and business_id in (select app.my_business_ids()));
create policy "managers link modifier groups" on public.product_modifier_groups for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers unlink modifier groups" on public.product_modifier_groups for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));

create policy "staff read availability of their venues" on public.venue_products for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys() k));
create policy "staff switch availability at their venues" on public.venue_products for insert to authenticated
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "staff change availability at their venues" on public.venue_products for update to authenticated
  using ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k))
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));

create policy "staff read hours of their venues" on public.venue_opening_hours for select to authenticated
  using ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys() k));
create policy "managers add hours" on public.venue_opening_hours for insert to authenticated
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers edit hours" on public.venue_opening_hours for update to authenticated
  using ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k))
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers delete hours" on public.venue_opening_hours for delete to authenticated
  using ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));

create policy "staff read hour exceptions of their venues" on public.venue_hours_exceptions for select to authenticated
  using ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys() k));
create policy "managers add hour exceptions" on public.venue_hours_exceptions for insert to authenticated
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers edit hour exceptions" on public.venue_hours_exceptions for update to authenticated
  using ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k))
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers delete hour exceptions" on public.venue_hours_exceptions for delete to authenticated
  using ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));

create policy "staff read stock of their venues" on public.stock_items for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "managers add stock items" on public.stock_items for insert to authenticated
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers edit stock items" on public.stock_items for update to authenticated
  using ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k))
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));

create policy "members read recipes" on public.recipe_lines for select to authenticated
  using (app.module_enabled(business_id, 'ordering') and business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "managers add recipe lines" on public.recipe_lines for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers edit recipe lines" on public.recipe_lines for update to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')))
  with check (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers delete recipe lines" on public.recipe_lines for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));

create policy "staff read the stock ledger of their venues" on public.stock_movements for select to authenticated
  using (app.module_enabled(business_id, 'ordering')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "managers record stock counts and deliveries" on public.stock_movements for insert to authenticated
  with check (reason in ('adjustment', 'delivery', 'waste', 'count')
              and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));

-- section grants
revoke all on public.product_categories, public.products, public.product_variants, public.modifier_groups,
  public.modifiers, public.product_modifier_groups, public.venue_products, public.venue_opening_hours,
  public.venue_hours_exceptions, public.stock_items, public.recipe_lines, public.stock_movements
  from anon, authenticated;
grant select, insert, update, delete on public.product_categories, public.products, public.product_variants,
  public.modifier_groups, public.modifiers, public.recipe_lines, public.venue_opening_hours,
  public.venue_hours_exceptions to authenticated;
grant select, insert, delete on public.product_modifier_groups to authenticated;
grant select, insert, update (is_available, unavailable_reason) on public.venue_products to authenticated;
grant select, insert (business_id, venue_id, sku, name, unit, critical_level),
  update (name, unit, critical_level) on public.stock_items to authenticated;
grant select, insert (business_id, venue_id, stock_item_id, delta, reason, note) on public.stock_movements to authenticated;
grant all on public.product_categories, public.products, public.product_variants, public.modifier_groups,
  public.modifiers, public.product_modifier_groups, public.venue_products, public.venue_opening_hours,
  public.venue_hours_exceptions, public.stock_items, public.recipe_lines, public.stock_movements to service_role;

-- section rpc

/** The storefront's menu for one published venue, by business and venue slug: venue details, open
    now or not, weekly hours and the orderable catalog (no costs). Callable by anyone. Raises PT404
    (no such published venue) and PT403 (ordering switched off). */
create function app.get_menu(p_business_slug text, p_venue_slug text) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_business public.businesses;
  v_venue public.venues;
begin
  select b.* into v_business from public.businesses b where b.slug = p_business_slug;
  select v.* into v_venue from public.venues v
  where v.business_id = v_business.id and v.slug = p_venue_slug and v.is_published;
  if v_venue.id is null then
    raise exception using errcode = 'PT404', message = 'no published venue with that address', hint = 'not_found';
  end if;
  perform app.require_module(v_business.id, 'ordering');

  return jsonb_build_object(
    'business', jsonb_build_object('id', v_business.id, 'name', v_business.name, 'slug', v_business.slug,
                                   'currency', v_business.currency),
    'venue', jsonb_build_object('id', v_venue.id, 'name', v_venue.name, 'slug', v_venue.slug,
      'time_zone', v_venue.time_zone, 'phone', v_venue.phone, 'address', v_venue.address,
      'latitude', v_venue.latitude, 'longitude', v_venue.longitude,
      'accepts_pickup', v_venue.accepts_pickup, 'accepts_delivery', v_venue.accepts_delivery,
      'accepts_dine_in', v_venue.accepts_dine_in, 'delivery_fee_cents', v_venue.delivery_fee_cents,
      'delivery_radius_km', v_venue.delivery_radius_km, 'tax_rate_bps', v_venue.tax_rate_bps,
      'is_open_now', app.venue_is_open(v_business.id, v_venue.id, now())),
    'opening_hours', coalesce((
      select jsonb_agg(jsonb_build_object('weekday', h.weekday, 'opens_at', h.opens_at, 'closes_at', h.closes_at)
                       order by h.weekday, h.opens_at)
      from public.venue_opening_hours h where h.business_id = v_business.id and h.venue_id = v_venue.id), '[]'::jsonb),
    'categories', coalesce((
      select jsonb_agg(jsonb_build_object('id', c.id, 'parent_id', c.parent_id, 'name', c.name) order by c.sort_order, c.name)
      from public.product_categories c where c.business_id = v_business.id and c.is_active), '[]'::jsonb),
    'products', coalesce((
      select jsonb_agg(jsonb_build_object(
        'id', p.id, 'category_id', p.category_id, 'name', p.name, 'description', p.description,
        'price_cents', p.price_cents, 'prep_time_minutes', p.prep_time_minutes, 'image_urls', p.image_urls,
        'available', app.product_available(v_business.id, v_venue.id, p.id),
        'variants', coalesce((
          select jsonb_agg(jsonb_build_object('id', pv.id, 'name', pv.name, 'price_adjustment_cents', pv.price_adjustment_cents,
                                              'is_default', pv.is_default) order by pv.sort_order, pv.name)
          from public.product_variants pv
          where pv.business_id = p.business_id and pv.product_id = p.id and pv.is_available), '[]'::jsonb),
        'modifier_groups', coalesce((
          select jsonb_agg(jsonb_build_object('id', g.id, 'name', g.name, 'min_choices', g.min_choices,
            'max_choices', g.max_choices,
            'modifiers', coalesce((select jsonb_agg(jsonb_build_object('id', m.id, 'name', m.name, 'price_cents', m.price_cents)
                                                    order by m.sort_order, m.name)
                                   from public.modifiers m
                                   where m.business_id = g.business_id and m.group_id = g.id and m.is_available), '[]'::jsonb))
            order by pmg.sort_order, g.name)
          from public.product_modifier_groups pmg
          join public.modifier_groups g on g.business_id = pmg.business_id and g.id = pmg.group_id
          where pmg.business_id = p.business_id and pmg.product_id = p.id), '[]'::jsonb))
        order by p.sort_order, p.name)
      from public.products p where p.business_id = v_business.id and p.is_published), '[]'::jsonb)
  );
end
$$;
revoke all on function app.get_menu(text, text) from public;
grant execute on function app.get_menu(text, text) to anon, authenticated, service_role;

/** PostgREST entry point for app.get_menu. */
create function public.get_menu(business_slug text, venue_slug text) returns jsonb
language sql stable
set search_path = ''
as $$
  select app.get_menu(business_slug, venue_slug)
$$;
revoke all on function public.get_menu(text, text) from public;
grant execute on function public.get_menu(text, text) to anon, authenticated, service_role;
