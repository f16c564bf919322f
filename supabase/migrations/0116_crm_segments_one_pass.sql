-- CRM: every segment of a venue materialized in one pass (issue 18). Recomputing segment by segment scanned
-- the venue's customers once per segment (at 20,000 customers each scan, stats joined to customers, was
-- two thirds of a recompute with nothing to write). Now the venue's rows are read once, each row tested
-- against every segment's compiled predicate, and the memberships of all its segments diffed in the same
-- statement: leavers deleted, joiners inserted, stayers untouched. Members are exactly those of
-- app.recompute_segment (same predicate, same filters); the nightly run uses this per venue.

-- section private helpers

/** Materializes every segment of one venue in one statement; returns the segments recomputed. Each
    segment's compiled predicate reads its values from its own criteria document (the $1 of the single
    segment's query becomes $1[k], the k-th document of the array), so values never reach the SQL text. */
create function app.recompute_venue_segments(p_business_id uuid, p_venue_id uuid) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_criteria jsonb[];
  v_tests text[] := '{}';
  v_k integer;
begin
  -- lock in id order, as concurrent single recomputes (app.recompute_segment) do one at a time
  select coalesce(array_agg(s.id order by s.id), '{}'), coalesce(array_agg(s.criteria order by s.id), '{}') into v_ids, v_criteria
  from (select s.id, s.criteria from public.segments s where s.business_id = p_business_id and s.venue_id = p_venue_id
        order by s.id for update) s;
  if cardinality(v_ids) = 0 then
    return 0;
  end if;
  for v_k in 1 .. cardinality(v_ids) loop
    -- the compiler writes every value reference as `$1 #>` or `$1 #>>` (app.compile_segment_node)
    v_tests := v_tests || format('(%s, (%s))', v_k, replace(app.compile_segment(v_criteria[v_k]), '$1 #', format('$1[%s] #', v_k)));
  end loop;
  execute format(
    'with want as materialized (
       select ($4::uuid[])[p.k] as segment_id, s.customer_id
       from public.customer_venue_stats s
       join public.customers c on c.business_id = s.business_id and c.id = s.customer_id
       cross join lateral (values %s) p (k, hit)
       where s.business_id = $2 and s.venue_id = $3 and c.anonymised_at is null and p.hit
     ), have as materialized (
       select m.segment_id, m.customer_id from public.segment_memberships m where m.business_id = $2 and m.segment_id = any ($4)
     ), gone as (
       delete from public.segment_memberships m
       using (select segment_id, customer_id from have except select segment_id, customer_id from want) g
       where m.business_id = $2 and m.segment_id = g.segment_id and m.customer_id = g.customer_id
     ), joined as (
       -- EXCEPT reads both inputs whole first, so the insert never scans the rows it adds (see 0115)
       insert into public.segment_memberships (business_id, segment_id, customer_id, venue_id)
       select $2, j.segment_id, j.customer_id, $3
       from (select segment_id, customer_id from want except select segment_id, customer_id from have) j
     ), counted as (
       select i.id, coalesce(w.n, 0)::integer as n
       from unnest($4) i (id) left join (select w.segment_id, count(*) as n from want w group by w.segment_id) w on w.segment_id = i.id
     )
     update public.segments g set member_count = counted.n, last_computed_at = now()
     from counted where g.business_id = $2 and g.id = counted.id', array_to_string(v_tests, ', '))
  using v_criteria, p_business_id, p_venue_id, v_ids;
  return cardinality(v_ids);
end
$$;
revoke all on function app.recompute_venue_segments(uuid, uuid) from public;
grant execute on function app.recompute_venue_segments(uuid, uuid) to service_role;

/** The whole nightly CRM run (03:30 UTC, once across worker copies): due deletions, re-bucketing,
    derived preferences, every segment recomputed (one pass per venue), birthday and dormancy events. */
create or replace function app.crm_nightly() returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_deleted integer := app.execute_due_deletions();
  v_rescored bigint := app.crm_rebucket(null);
  v_prefs integer := app.derive_preferences(null);
  v_segments integer := 0;
  v_events integer;
  v_venue record;
begin
  for v_venue in select distinct s.business_id, s.venue_id from public.segments s
                 where app.module_enabled(s.business_id, 'crm') order by s.business_id, s.venue_id loop
    v_segments := v_segments + app.recompute_venue_segments(v_venue.business_id, v_venue.venue_id);
  end loop;
  v_events := app.emit_crm_events(30);
  return jsonb_build_object('deleted', v_deleted, 'rescored', v_rescored, 'preferences', v_prefs,
                            'segments', v_segments, 'events', v_events);
end
$$;
revoke all on function app.crm_nightly() from public;
grant execute on function app.crm_nightly() to service_role;
