-- CRM, part 1: RFM scores and segment labels on customer_venue_stats (inline on every paid or
-- refunded order, re-bucketed nightly), the saved-segment criteria DSL compiled in SQL, and the
-- materialized memberships campaigns read. Gated by the `crm` module. Codes BR2xx (docs/errors.md).

-- section tables
alter table public.customer_venue_stats
  add column avg_order_cents integer generated always as
    (case when total_orders > 0 then (total_spent_cents / total_orders)::integer else 0 end) stored,
  add column recency_score smallint not null default 1 constraint customer_venue_stats_r_range check (recency_score between 1 and 5),
  add column frequency_score smallint not null default 1 constraint customer_venue_stats_f_range check (frequency_score between 1 and 5),
  add column monetary_score smallint not null default 1 constraint customer_venue_stats_m_range check (monetary_score between 1 and 5),
  add column segment text not null default 'INACTIVE' constraint customer_venue_stats_segment_valid
    check (segment in ('CHAMPION', 'LOYAL', 'POTENTIAL', 'NEW', 'AT_RISK', 'LOST', 'INACTIVE')),
  add column scored_at timestamptz;

alter table public.customers add column date_of_birth date;

/** Percentile cut points of a venue's cohort (30+ customers), from the nightly job; below 30 the
    stable thresholds apply. Each array holds the four boundaries between scores 1..5 (numeric, so
    the scoring expression inlines without an array coercion). */
create table public.crm_venue_cutoffs (
  business_id uuid not null,
  venue_id uuid not null,
  cohort_size integer not null,
  recency_days numeric[] not null,
  frequency numeric[] not null,
  monetary numeric[] not null,
  computed_at timestamptz not null default now(),
  constraint crm_venue_cutoffs_pkey primary key (business_id, venue_id),
  constraint crm_venue_cutoffs_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade
);
alter table public.crm_venue_cutoffs enable row level security;

/** A saved customer group of one venue: criteria in the DSL (docs/segments.md), memberships
    materialized nightly and on request. The six system segments follow the RFM labels. */
create table public.segments (
  business_id uuid not null,
  venue_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  key text not null constraint segments_key_format check (key ~ '^[a-z0-9_]{1,64}$'),
  name text not null constraint segments_name_length check (length(name) between 1 and 120),
  criteria jsonb not null,
  is_system boolean not null default false,
  member_count integer not null default 0,
  last_computed_at timestamptz,
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint segments_pkey primary key (business_id, id),
  constraint segments_venue_key unique (business_id, venue_id, key),
  constraint segments_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade
);
alter table public.segments enable row level security;

/** Who is in a segment, as of its last computation. */
create table public.segment_memberships (
  business_id uuid not null,
  segment_id uuid not null,
  customer_id uuid not null,
  venue_id uuid not null,
  added_at timestamptz not null default now(),
  constraint segment_memberships_pkey primary key (business_id, segment_id, customer_id),
  constraint segment_memberships_segment_fkey foreign key (business_id, segment_id) references public.segments (business_id, id) on delete cascade,
  constraint segment_memberships_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id) on delete cascade
);
alter table public.segment_memberships enable row level security;

/** The DSL's fields: the SQL each compiles to (over s = customer_venue_stats, c = customers), its
    type and the operators it takes. Only what is listed here can ever reach a query. */
create table app.segment_fields (
  field text primary key,
  expression text not null,
  value_type text not null check (value_type in ('number', 'text', 'timestamp', 'boolean', 'label')),
  ops text[] not null
);
insert into app.segment_fields (field, expression, value_type, ops) values
  ('total_orders', 's.total_orders', 'number', '{eq,neq,gt,gte,lt,lte,between,in}'),
  ('total_spent_cents', 's.total_spent_cents', 'number', '{eq,neq,gt,gte,lt,lte,between}'),
  ('avg_order_cents', 's.avg_order_cents', 'number', '{eq,neq,gt,gte,lt,lte,between}'),
  ('days_since_last_order', '(current_date - (s.last_order_at at time zone ''UTC'')::date)', 'number', '{eq,neq,gt,gte,lt,lte,between}'),
  ('recency_score', 's.recency_score', 'number', '{eq,neq,gt,gte,lt,lte,between,in}'),
  ('frequency_score', 's.frequency_score', 'number', '{eq,neq,gt,gte,lt,lte,between,in}'),
  ('monetary_score', 's.monetary_score', 'number', '{eq,neq,gt,gte,lt,lte,between,in}'),
  ('first_order_at', 's.first_order_at', 'timestamp', '{gt,gte,lt,lte,between}'),
  ('last_order_at', 's.last_order_at', 'timestamp', '{gt,gte,lt,lte,between}'),
  ('segment', 's.segment', 'label', '{eq,neq,in,not_in}'),
  ('customer_since', 'c.created_at', 'timestamp', '{gt,gte,lt,lte,between}'),
  ('full_name', 'c.full_name', 'text', '{eq,neq,contains,exists}'),
  ('email', 'c.email', 'text', '{eq,neq,contains,exists}'),
  ('phone', 'c.phone', 'text', '{eq,neq,exists}'),
  ('birthday_month', 'extract(month from c.date_of_birth)::integer', 'number', '{eq,neq,in}');

-- section indexes
-- the customer list: one venue, filtered by segment, sorted by lifetime value
create index customer_venue_stats_segment_ltv_idx on public.customer_venue_stats (business_id, venue_id, segment, total_spent_cents desc);
create index customer_venue_stats_ltv_idx on public.customer_venue_stats (business_id, venue_id, total_spent_cents desc);
create index segment_memberships_customer_idx on public.segment_memberships (business_id, customer_id);
create index segments_venue_idx on public.segments (business_id, venue_id);

-- section private helpers
-- rfm_bucket, rfm_segment and rfm_stable_cutoffs are pure expressions over built-in operators and
-- reference no table; they carry no `set search_path` because PostgreSQL never inlines a function
-- that has one, and the nightly UPDATE over every row depends on their being inlined.

/** Score 1..5 of a value against four ascending cut points: 1 + how many cut points it exceeds
    (5 - that when lower is better). With quintile cut points this puts a fifth of a cohort in each. */
create function app.rfm_bucket(p_value numeric, p_cuts numeric[], p_lower_better boolean) returns smallint
language sql immutable
as $$
  -- a plain expression (no subquery), so the planner inlines it in the nightly UPDATE
  select (case when p_lower_better then 5 else 1 end
          + (case when p_lower_better then -1 else 1 end)
            * ((p_value > p_cuts[1])::int + (p_value > p_cuts[2])::int + (p_value > p_cuts[3])::int + (p_value > p_cuts[4])::int))::smallint
$$;

/** The label from scores and recency: LOST at 90 days, AT_RISK for a regular at 30, INACTIVE for no
    orders left or a one-off gone 30 days, NEW for one order, then CHAMPION, LOYAL, POTENTIAL. */
create function app.rfm_segment(p_orders integer, p_days integer, p_r smallint, p_f smallint, p_m smallint) returns text
language sql immutable
as $$
  select case
    when p_orders <= 0 then 'INACTIVE'
    when p_days >= 90 then 'LOST'
    when p_days >= 30 and p_orders >= 2 then 'AT_RISK'
    when p_days >= 30 then 'INACTIVE'
    when p_orders = 1 then 'NEW'
    when p_r >= 4 and p_f >= 4 and p_m >= 4 then 'CHAMPION'
    when p_f >= 3 then 'LOYAL'
    else 'POTENTIAL' end
$$;

/** Stable thresholds for cohorts under 30 (a score rises above each): recency up to 7/14/30/90 days,
    2/3/6/10+ orders, 30/80/200/500+ spent. */
create function app.rfm_stable_cutoffs() returns table (recency_days numeric[], frequency numeric[], monetary numeric[])
language sql immutable
as $$
  select '{7,14,30,90}'::numeric[], '{1,2,5,9}'::numeric[], '{2999,7999,19999,49999}'::numeric[]
$$;

/** Inline scoring: every change of a stats row's orders, spend or last order rescores it against the
    venue's cut points (no scan of the cohort). */
create function app.tg_customer_venue_stats_score() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_cut record;
  v_days integer := coalesce(current_date - (new.last_order_at at time zone 'UTC')::date, 9999);
begin
  select c.recency_days, c.frequency, c.monetary into v_cut from public.crm_venue_cutoffs c
  where c.business_id = new.business_id and c.venue_id = new.venue_id;
  if v_cut.recency_days is null then
    select * into v_cut from app.rfm_stable_cutoffs();
  end if;
  new.recency_score := app.rfm_bucket(v_days, v_cut.recency_days, true);
  new.frequency_score := app.rfm_bucket(new.total_orders, v_cut.frequency, false);
  new.monetary_score := app.rfm_bucket(new.total_spent_cents, v_cut.monetary, false);
  new.segment := app.rfm_segment(new.total_orders, v_days, new.recency_score, new.frequency_score, new.monetary_score);
  new.scored_at := now();
  return new;
end
$$;

/** The nightly re-bucketing, set-based: cut points for every cohort of 30+, then every row rescored
    in one statement. Returns the rows rescored. */
create function app.crm_rebucket(p_business_id uuid default null) returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_rows bigint;
begin
  delete from public.crm_venue_cutoffs c where p_business_id is null or c.business_id = p_business_id;
  insert into public.crm_venue_cutoffs (business_id, venue_id, cohort_size, recency_days, frequency, monetary)
  select s.business_id, s.venue_id, count(*),
         percentile_disc(array[0.2, 0.4, 0.6, 0.8]) within group (order by current_date - (s.last_order_at at time zone 'UTC')::date),
         percentile_disc(array[0.2, 0.4, 0.6, 0.8]) within group (order by s.total_orders),
         percentile_disc(array[0.2, 0.4, 0.6, 0.8]) within group (order by s.total_spent_cents)
  from public.customer_venue_stats s
  where (p_business_id is null or s.business_id = p_business_id) and s.total_orders > 0
  group by s.business_id, s.venue_id
  having count(*) >= 30;

  -- one UPDATE over every row: each venue's cut points (or the stable ones) joined in, scores computed
  -- in place, rows whose scores and label do not change left alone
  update public.customer_venue_stats t set
    recency_score = x.r, frequency_score = x.f, monetary_score = x.m,
    segment = app.rfm_segment(t.total_orders, x.days, x.r, x.f, x.m), scored_at = now()
  from (
    select s.business_id, s.venue_id, s.customer_id, d.days,
           app.rfm_bucket(d.days, coalesce(c.recency_days, st.recency_days), true) as r,
           app.rfm_bucket(s.total_orders, coalesce(c.frequency, st.frequency), false) as f,
           app.rfm_bucket(s.total_spent_cents, coalesce(c.monetary, st.monetary), false) as m
    from public.customer_venue_stats s
    cross join app.rfm_stable_cutoffs() st
    cross join lateral (select coalesce(current_date - (s.last_order_at at time zone 'UTC')::date, 9999) as days) d
    left join public.crm_venue_cutoffs c on c.business_id = s.business_id and c.venue_id = s.venue_id
    where p_business_id is null or s.business_id = p_business_id
  ) x
  where t.business_id = x.business_id and t.venue_id = x.venue_id and t.customer_id = x.customer_id
    and (t.recency_score, t.frequency_score, t.monetary_score, t.segment)
        is distinct from (x.r, x.f, x.m, app.rfm_segment(t.total_orders, x.days, x.r, x.f, x.m));
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;
revoke all on function app.crm_rebucket(uuid) from public;
grant execute on function app.crm_rebucket(uuid) to service_role;

/** Compiles a criteria node to a SQL predicate. Values are never put in the SQL: each is read at
    run time from the criteria document ($1) by its path; fields come only from app.segment_fields,
    operators from a fixed list. Raises BR201 unknown field, BR202 operator not allowed for the
    field, BR203 bad value, BR204 bad structure (depth over 8). */
create function app.compile_segment_node(p_node jsonb, p_path text[], p_depth integer) returns text
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_field app.segment_fields;
  v_op text;
  v_value jsonb;
  v_ref text := format('($1 #> %L)', (p_path || '{value}'::text[])::text);
  v_txt text := format('($1 #>> %L)', (p_path || '{value}'::text[])::text);
  v_cast text;
  v_parts text[] := '{}';
  v_i integer;
  v_key text;
begin
  if p_depth > 8 then
    perform app.fail('BR204', 'criteria_too_deep', 'criteria may nest at most 8 levels');
  end if;
  if jsonb_typeof(p_node) is distinct from 'object' then
    perform app.fail('BR204', 'invalid_criteria', format('at %s: a criteria node must be an object', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root')));
  end if;
  select k into v_key from jsonb_object_keys(p_node) k where k in ('all', 'any', 'not', 'hasTag', 'field') limit 1;

  if v_key in ('all', 'any') then
    if (select count(*) from jsonb_object_keys(p_node)) <> 1 or jsonb_typeof(p_node -> v_key) is distinct from 'array'
       or jsonb_array_length(p_node -> v_key) = 0 then
      perform app.fail('BR204', 'invalid_criteria', format('at %s: %s takes a non-empty list', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root'), v_key));
    end if;
    for v_i in 0 .. jsonb_array_length(p_node -> v_key) - 1 loop
      v_parts := v_parts || app.compile_segment_node(p_node -> v_key -> v_i, p_path || array[v_key, v_i::text], p_depth + 1);
    end loop;
    return '(' || array_to_string(v_parts, case when v_key = 'all' then ' and ' else ' or ' end) || ')';
  elsif v_key = 'not' then
    if (select count(*) from jsonb_object_keys(p_node)) <> 1 then
      perform app.fail('BR204', 'invalid_criteria', format('at %s: not takes one node', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root')));
    end if;
    return '(not coalesce(' || app.compile_segment_node(p_node -> 'not', p_path || '{not}'::text[], p_depth + 1) || ', false))';
  elsif v_key = 'hasTag' then
    if jsonb_typeof(p_node -> 'hasTag') is distinct from 'string' then
      perform app.fail('BR203', 'invalid_value', format('at %s: hasTag takes a tag', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root')));
    end if;
    return format('exists (select 1 from public.customer_tags t where t.business_id = c.business_id and t.customer_id = c.id '
                  'and t.tag = app.normalize_tag($1 #>> %L))', (p_path || '{hasTag}'::text[])::text);
  elsif v_key = 'field' then
    select f.* into v_field from app.segment_fields f where f.field = p_node ->> 'field';
    if v_field.field is null then
      -- consent.<channel> and preference fields are generated, not listed
      if (p_node ->> 'field') in ('consent.email_marketing', 'consent.sms_marketing', 'consent.whatsapp_marketing', 'consent.review_request') then
        if p_node ->> 'op' is distinct from 'eq' or jsonb_typeof(p_node -> 'value') is distinct from 'boolean' then
          perform app.fail('BR203', 'invalid_value', format('at %s: consent fields take op eq and true/false', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root')));
        end if;
        return format('(app.has_consent(c.business_id, c.id, %L, s.venue_id) = (%s)::boolean)',
                      upper(split_part(p_node ->> 'field', '.', 2)), v_txt);
      elsif (p_node ->> 'field') in ('allergen', 'dietary', 'favorite', 'disliked') then
        if coalesce(p_node ->> 'op', '') not in ('contains', 'not_contains') or jsonb_typeof(p_node -> 'value') is distinct from 'string' then
          perform app.fail('BR203', 'invalid_value', format('at %s: preference fields take contains/not_contains and a text', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root')));
        end if;
        return format('(%s exists (select 1 from public.customer_preferences p where p.business_id = c.business_id and p.customer_id = c.id '
                      'and p.kind = %L and p.value = lower(%s)))',
                      case when p_node ->> 'op' = 'not_contains' then 'not' else '' end, p_node ->> 'field', v_txt);
      end if;
      perform app.fail('BR201', 'unknown_field', format('at %s: unknown field %L', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root'), p_node ->> 'field'));
    end if;
    v_op := p_node ->> 'op';
    if v_op is null or not (v_op = any (v_field.ops)) then
      perform app.fail('BR202', 'unknown_operator', format('at %s: %s does not take operator %L', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root'), v_field.field, v_op));
    end if;
    v_value := p_node -> 'value';
    v_cast := case v_field.value_type when 'number' then 'numeric' when 'timestamp' then 'timestamptz' when 'boolean' then 'boolean' else 'text' end;
    -- the value must have the field's type: checked here, so a bad value is a clear 400, not a cast error later
    if v_op = 'exists' then
      if jsonb_typeof(v_value) is distinct from 'boolean' then
        perform app.fail('BR203', 'invalid_value', format('at %s: exists takes true/false', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root')));
      end if;
      return format('((%s is not null) = (%s)::boolean)', v_field.expression, v_txt);
    elsif v_op in ('in', 'not_in') then
      if jsonb_typeof(v_value) is distinct from 'array' or jsonb_array_length(v_value) = 0 or jsonb_array_length(v_value) > 100
         or exists (select 1 from jsonb_array_elements(v_value) e where not app.segment_value_ok(e, v_field.value_type)) then
        perform app.fail('BR203', 'invalid_value', format('at %s: %s takes a list of %s values', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root'), v_op, v_field.value_type));
      end if;
      return format('(%s %s (select (e #>> ''{}'')::%s from jsonb_array_elements(%s) e))', v_field.expression,
                    case when v_op = 'in' then 'in' else 'not in' end, v_cast, v_ref);
    elsif v_op = 'between' then
      if jsonb_typeof(v_value) is distinct from 'array' or jsonb_array_length(v_value) <> 2
         or not app.segment_value_ok(v_value -> 0, v_field.value_type) or not app.segment_value_ok(v_value -> 1, v_field.value_type) then
        perform app.fail('BR203', 'invalid_value', format('at %s: between takes [low, high]', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root')));
      end if;
      return format('(%s between (%s ->> 0)::%s and (%s ->> 1)::%s)', v_field.expression, v_ref, v_cast, v_ref, v_cast);
    elsif v_op = 'contains' then
      if jsonb_typeof(v_value) is distinct from 'string' then
        perform app.fail('BR203', 'invalid_value', format('at %s: contains takes a text', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root')));
      end if;
      return format('(strpos(lower(%s), lower(%s)) > 0)', v_field.expression, v_txt);
    end if;
    if not app.segment_value_ok(v_value, v_field.value_type) then
      perform app.fail('BR203', 'invalid_value', format('at %s: %s takes a %s value', coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root'), v_field.field, v_field.value_type));
    end if;
    return format('(%s %s (%s)::%s)', v_field.expression,
                  case v_op when 'eq' then '=' when 'neq' then '<>' when 'gt' then '>' when 'gte' then '>=' when 'lt' then '<' else '<=' end,
                  v_txt, v_cast);
  end if;
  perform app.fail('BR204', 'invalid_criteria', format('at %s: a node is all, any, not, hasTag or a field predicate',
                                                       coalesce(nullif(array_to_string(p_path, '.'), ''), 'the root')));
  return null;
end
$$;
revoke all on function app.compile_segment_node(jsonb, text[], integer) from public;

/** Whether a JSON value fits a DSL type. */
create function app.segment_value_ok(p_value jsonb, p_type text) returns boolean
language plpgsql immutable
set search_path = ''
as $$
begin
  if p_value is null then
    return false;
  end if;
  case p_type
    when 'number' then return jsonb_typeof(p_value) = 'number';
    when 'boolean' then return jsonb_typeof(p_value) = 'boolean';
    when 'text' then return jsonb_typeof(p_value) = 'string';
    when 'label' then return jsonb_typeof(p_value) = 'string'
      and p_value #>> '{}' in ('CHAMPION', 'LOYAL', 'POTENTIAL', 'NEW', 'AT_RISK', 'LOST', 'INACTIVE');
    when 'timestamp' then
      if jsonb_typeof(p_value) is distinct from 'string' then return false; end if;
      perform (p_value #>> '{}')::timestamptz;
      return true;
  end case;
  return false;
exception when others then
  return false;
end
$$;

/** The whole criteria document compiled (and so validated): at most 100 nodes. */
create function app.compile_segment(p_criteria jsonb) returns text
language plpgsql stable security definer
set search_path = ''
as $$
begin
  if (select count(*) from jsonb_path_query(p_criteria, 'strict $.** ? (@.type() == "object")')) > 100 then
    perform app.fail('BR204', 'criteria_too_large', 'criteria may hold at most 100 nodes');
  end if;
  return app.compile_segment_node(p_criteria, '{}'::text[], 1);
end
$$;
revoke all on function app.compile_segment(jsonb) from public;
grant execute on function app.compile_segment(jsonb) to authenticated, service_role;

/** Materializes one segment's members (delete + insert, set-based); returns the member count. */
create function app.recompute_segment(p_business_id uuid, p_segment_id uuid) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_segment public.segments;
  v_count integer;
begin
  select s.* into v_segment from public.segments s where s.business_id = p_business_id and s.id = p_segment_id for update;
  if v_segment.id is null then
    perform app.fail('PT404', 'segment_not_found', 'no such segment');
  end if;
  delete from public.segment_memberships m where m.business_id = p_business_id and m.segment_id = p_segment_id;
  execute format(
    'insert into public.segment_memberships (business_id, segment_id, customer_id, venue_id)
     select s.business_id, $4, s.customer_id, s.venue_id
     from public.customer_venue_stats s
     join public.customers c on c.business_id = s.business_id and c.id = s.customer_id
     where s.business_id = $2 and s.venue_id = $3 and c.anonymised_at is null and (%s)', app.compile_segment(v_segment.criteria))
  using v_segment.criteria, p_business_id, v_segment.venue_id, p_segment_id;
  get diagnostics v_count = row_count;
  update public.segments set member_count = v_count, last_computed_at = now()
  where business_id = p_business_id and id = p_segment_id;
  return v_count;
end
$$;
revoke all on function app.recompute_segment(uuid, uuid) from public;
grant execute on function app.recompute_segment(uuid, uuid) to service_role;

/** The six system segments of a venue, one per RFM label that marketing targets. */
create function app.ensure_system_segments(p_business_id uuid, p_venue_id uuid) returns void
language sql volatile security definer
set search_path = ''
as $$
  insert into public.segments (business_id, venue_id, key, name, criteria, is_system, created_by)
  select p_business_id, p_venue_id, lower(l.label), l.name, jsonb_build_object('field', 'segment', 'op', 'eq', 'value', l.label), true, null
  from (values ('CHAMPION', 'Champions'), ('LOYAL', 'Loyal'), ('POTENTIAL', 'Potential'), ('NEW', 'New'),
               ('AT_RISK', 'At risk'), ('LOST', 'Lost')) l (label, name)
  on conflict (business_id, venue_id, key) do nothing
$$;
revoke all on function app.ensure_system_segments(uuid, uuid) from public;
grant execute on function app.ensure_system_segments(uuid, uuid) to service_role;

-- section triggers

create function app.tg_segments_validate() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'UPDATE' and old.is_system and (new.criteria is distinct from old.criteria or new.key is distinct from old.key) then
    perform app.fail('42501', 'system_segment', 'system segments cannot be changed');
  end if;
  perform app.compile_segment(new.criteria);
  new.updated_at := now();
  return new;
end
$$;

create function app.tg_segments_guard_delete() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.is_system and pg_trigger_depth() = 1 and exists (select 1 from public.venues v where v.business_id = old.business_id and v.id = old.venue_id) then
    perform app.fail('42501', 'system_segment', 'system segments cannot be deleted');
  end if;
  return old;
end
$$;

create function app.tg_venues_system_segments() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  perform app.ensure_system_segments(new.business_id, new.id);
  return null;
end
$$;

create trigger customer_venue_stats_score before insert or update of total_orders, total_spent_cents, last_order_at
  on public.customer_venue_stats for each row execute function app.tg_customer_venue_stats_score();
create trigger segments_validate before insert or update on public.segments
  for each row execute function app.tg_segments_validate();
create trigger segments_guard_delete before delete on public.segments
  for each row execute function app.tg_segments_guard_delete();
create trigger venues_system_segments after insert on public.venues
  for each row execute function app.tg_venues_system_segments();

-- section policies
create policy "managers read cutoffs of their venues" on public.crm_venue_cutoffs for select to authenticated
  using (app.module_enabled(business_id, 'crm')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));

create policy "staff read segments of their venues" on public.segments for select to authenticated
  using (app.module_enabled(business_id, 'crm')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "managers add segments" on public.segments for insert to authenticated
  with check (app.module_enabled(business_id, 'crm')
              and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers edit segments" on public.segments for update to authenticated
  using (app.module_enabled(business_id, 'crm')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k))
  with check ((business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));
create policy "managers delete segments" on public.segments for delete to authenticated
  using (app.module_enabled(business_id, 'crm')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));

create policy "managers read segment members" on public.segment_memberships for select to authenticated
  using (app.module_enabled(business_id, 'crm')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager}') k));

-- section grants
revoke all on public.crm_venue_cutoffs, public.segments, public.segment_memberships from anon, authenticated;
revoke all on app.segment_fields from public, anon, authenticated;
grant select on public.crm_venue_cutoffs, public.segment_memberships to authenticated;
grant select, insert (business_id, venue_id, key, name, criteria), update (name, criteria), delete on public.segments to authenticated;
grant all on public.crm_venue_cutoffs, public.segments, public.segment_memberships to service_role;

-- section backfill
select app.ensure_system_segments(v.business_id, v.id) from public.venues v;

-- section rpc

/** A manager recomputes a segment now (after editing its criteria). Returns the member count.
    Raises PT404 (not a segment of a venue you manage, or crm off). */
create function app.manager_recompute_segment(p_segment_id uuid) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_segment public.segments;
begin
  select s.* into v_segment from public.segments s where s.id = p_segment_id;
  if v_segment.id is null or not app.module_enabled(v_segment.business_id, 'crm')
     or not (app.has_venue_access(v_segment.business_id, v_segment.venue_id, '{owner,manager}') or app.is_platform_or_service()) then
    perform app.fail('PT404', 'segment_not_found', 'no such segment at the venues you manage');
  end if;
  return app.recompute_segment(v_segment.business_id, v_segment.id);
end
$$;
revoke all on function app.manager_recompute_segment(uuid) from public;
grant execute on function app.manager_recompute_segment(uuid) to authenticated, service_role;

create function public.recompute_segment(segment_id uuid) returns integer
language sql volatile
set search_path = ''
as $$
  select app.manager_recompute_segment(segment_id)
$$;
revoke all on function public.recompute_segment(uuid) from public;
grant execute on function public.recompute_segment(uuid) to authenticated, service_role;

/** Checks criteria without saving: the compiled predicate is not returned, only ok or the error. */
create function public.validate_segment_criteria(criteria jsonb) returns boolean
language plpgsql stable
set search_path = ''
as $$
begin
  perform app.compile_segment(criteria);
  return true;
end
$$;
revoke all on function public.validate_segment_criteria(jsonb) from public;
grant execute on function public.validate_segment_criteria(jsonb) to authenticated, service_role;
