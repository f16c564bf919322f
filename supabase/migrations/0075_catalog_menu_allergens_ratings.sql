-- The storefront menu (0003) predates products' allergens (0010) and rating aggregates (0055): a
-- guest could not see what a dish contains or how it is rated. get_menu now returns both.

-- section RPC functions

/** The storefront's menu for one published venue, by business and venue slug: venue details, open
    now or not, weekly hours and the orderable catalog (no costs; with each product's allergens and
    its approved reviews' rating count and average). Callable by anyone. Raises PT404
    (no such published venue) and PT403 (ordering switched off). */
create or replace function app.get_menu(p_business_slug text, p_venue_slug text) returns jsonb
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
        'allergens', to_jsonb(p.allergens), 'rating_count', p.rating_count, 'rating_average', p.rating_average,
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
