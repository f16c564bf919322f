-- Campaign send-time checks, set-based (issue 18): app.marketing_blocks decides for many recipients in
-- one statement exactly what app.marketing_block (0112) decides for one -- deleted, blocked,
-- no_contact, no_consent, suppressed, allergen, stock_critical, in that order -- and the campaign
-- preview counts a segment through it instead of calling the per-row check once per member.
-- tests/db/test_campaigns_batched.py holds both to the same answers over generated customers.

-- section private helpers

/** Why each recipient cannot get a marketing message now (null: they can), for many recipients of one
    business, channel, consent channel and product at once: recipient i is (p_customer_ids[i],
    p_venue_ids[i]), answered with ord = i. The same order of checks as app.marketing_block.
    Planned per call (plan_cache_mode): a batch of 25 sends wants index probes, a 100,000-member
    preview wants hash joins, and a cached generic plan cannot tell the two apart; work_mem so the
    preview's hashes stay in memory. */
create function app.marketing_blocks(p_business_id uuid, p_channel text, p_consent_channel text, p_product_id uuid,
                                     p_customer_ids uuid[], p_venue_ids uuid[])
returns table (ord bigint, customer_id uuid, reason text)
language plpgsql stable security definer
set search_path = ''
set plan_cache_mode = 'force_custom_plan'
set work_mem = '32MB'
as $$
declare
  v_allergens text[];          -- the product's, normalised (null: no product, or none listed)
  v_critical_venues uuid[];    -- venues where an ingredient of the product is at its critical level
begin
  if cardinality(p_customer_ids) is distinct from cardinality(p_venue_ids) then
    perform app.fail('22023', 'invalid_input', 'one venue (or null) per customer');
  end if;
  if p_product_id is not null then
    select (select array_agg(lower(trim(x))) from unnest(p.allergens) x) into v_allergens
    from public.products p where p.business_id = p_business_id and p.id = p_product_id;
    select coalesce(array_agg(distinct s.venue_id), '{}') into v_critical_venues
    from public.recipe_lines r
    join public.stock_items s on s.business_id = r.business_id and s.sku = r.stock_sku
    where r.business_id = p_business_id and r.product_id = p_product_id and s.quantity <= s.critical_level;
  end if;
  return query
  select u.ord, u.customer_id,
         case when c.id is null or c.anonymised_at is not null or c.merged_into is not null or d.customer_id is not null then 'deleted'
              when c.status = 'blocked' then 'blocked'
              when case p_channel when 'sms' then c.phone else lower(c.email) end is null then 'no_contact'
              when not coalesce(k.granted, false) then 'no_consent'
              when s.address is not null then 'suppressed'
              when p_product_id is not null
                   and v_allergens && (select array_agg(lower(trim(x))) from unnest(c.allergens) x) then 'allergen'
              when p_product_id is not null
                   and (u.venue_id = any(v_critical_venues) or (u.venue_id is null and cardinality(v_critical_venues) > 0)) then 'stock_critical'
         end
  from unnest(p_customer_ids, p_venue_ids) with ordinality as u(customer_id, venue_id, ord)
  left join public.customers c on c.business_id = p_business_id and c.id = u.customer_id
  left join public.customer_delete_requests d  -- at most one pending per customer (a unique index)
    on d.business_id = p_business_id and d.customer_id = u.customer_id and d.status = 'pending'
  left join (
    -- app.has_consent per recipient: the latest (highest id) GRANTED or REVOKED among the venue's and the
    -- business-wide entries; id * 2 + granted keeps that row's action in one hash aggregate (no sort)
    select v.ord, max(l.id * 2 + (l.action = 'GRANTED')::integer) % 2 = 1 as granted
    from unnest(p_customer_ids, p_venue_ids) with ordinality as v(customer_id, venue_id, ord)
    join public.customer_consent_log l
      on l.business_id = p_business_id and l.customer_id = v.customer_id and l.channel = p_consent_channel
     and l.action in ('GRANTED', 'REVOKED') and (l.venue_id is null or l.venue_id = v.venue_id)
    group by v.ord
  ) k on k.ord = u.ord
  left join public.marketing_suppressions s
    on s.business_id = p_business_id and s.channel = p_channel and s.address = case p_channel when 'sms' then c.phone else lower(c.email) end;
end
$$;
revoke all on function app.marketing_blocks(uuid, text, text, uuid, uuid[], uuid[]) from public;
grant execute on function app.marketing_blocks(uuid, text, text, uuid, uuid[], uuid[]) to service_role;

-- section rpc

/** How many members of a segment a campaign would reach on a channel now, and why the others would
    be skipped (the send-time checks, set-based over every member). Owners and managers of the
    segment's venue. Raises PT404 segment_not_found, 22023 invalid_input. */
create or replace function app.campaign_preview(p_segment_id uuid, p_channel text, p_product_id uuid default null) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_segment public.segments;
  v_members uuid[];
  v_result jsonb;
begin
  select s.* into v_segment from public.segments s where s.id = p_segment_id;
  if v_segment.id is null or not app.module_enabled(v_segment.business_id, 'campaigns')
     or not (app.has_venue_access(v_segment.business_id, v_segment.venue_id, '{owner,manager}') or app.is_platform_or_service()) then
    perform app.fail('PT404', 'segment_not_found', 'no such segment at the venues you manage');
  end if;
  if p_channel is null or p_channel not in ('sms', 'email') then
    perform app.fail('22023', 'invalid_input', 'channel must be sms or email');
  end if;
  select coalesce(array_agg(m.customer_id), '{}') into v_members
  from public.segment_memberships m where m.business_id = v_segment.business_id and m.segment_id = v_segment.id;
  select jsonb_build_object(
    'members', coalesce(sum(x.n), 0)::bigint,
    'reachable', coalesce(sum(x.n) filter (where x.reason is null), 0)::bigint,
    'blocked', coalesce(jsonb_object_agg(x.reason, x.n) filter (where x.reason is not null), '{}'::jsonb))
  into v_result
  from (select b.reason, count(*) as n
        from app.marketing_blocks(v_segment.business_id, p_channel, app.marketing_consent_channel('campaign', p_channel), p_product_id,
                                  v_members, array_fill(v_segment.venue_id, array[cardinality(v_members)])) b
        group by b.reason) x;
  return v_result;
end
$$;
revoke all on function app.campaign_preview(uuid, text, uuid) from public;
grant execute on function app.campaign_preview(uuid, text, uuid) to authenticated, service_role;
