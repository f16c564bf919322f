-- Rate limits for the public edge (issue 22 item 1): one catalogue of limits (action × scope), a
-- sliding-window log of hits in the database (so every function copy and every PostgREST request
-- share it), the business's own staff allow-listed, refusals counted per limit. Guests' orders and
-- bookings are limited by a trigger on the insert, whichever path wrote them; the functions
-- (checkout, consent, verify-checkout-session) call app.enforce_rate_limits themselves.
-- Errors: PT429 rate_limited (detail: {"retry_after": seconds, "action", "scope"}).

-- section tables

/** The limits, the one place they are set: at most max_hits per window_seconds for one subject of
    the scope (a client IP, a phone, an email, a claim destination, a business, a signed-in user).
    Service role and the operator only; issues 15 and 23 add their actions here. */
create table app.rate_limits (
  action text not null constraint rate_limits_action_format check (action ~ '^[a-z][a-z0-9_]{1,40}$'),
  scope text not null
    constraint rate_limits_scope_valid check (scope in ('ip', 'phone', 'email', 'destination', 'business', 'user', 'subject')),
  window_seconds integer not null constraint rate_limits_window_range check (window_seconds between 1 and 604800),
  max_hits integer not null constraint rate_limits_max_positive check (max_hits >= 1),
  description text not null default '',
  updated_at timestamptz not null default now(),
  constraint rate_limits_pkey primary key (action, scope)
);

/** The sliding-window log: one row per counted hit. subject is a SHA-256 of action, scope and the
    subject, so the log holds no phone, email or IP in clear. Pruned nightly (maintenance.prune). */
create table app.rate_limit_hits (
  action text not null,
  scope text not null,
  subject bytea not null,
  at timestamptz not null default now(),
  constraint rate_limit_hits_limit_fkey foreign key (action, scope) references app.rate_limits (action, scope) on delete cascade
);

-- section indexes
create index rate_limit_hits_subject_idx on app.rate_limit_hits (action, scope, subject, at desc);
create index rate_limit_hits_at_idx on app.rate_limit_hits (at);

-- section private helpers

/** The refusal counter of a limit: a sequence, because a refusal rolls its transaction back and a
    counter row would roll back with it; nextval does not. */
create function app.rate_limit_counter(p_action text, p_scope text) returns text
language sql immutable
set search_path = ''
as $$
  select 'app.rate_limit_refused_' || p_action || '__' || p_scope
$$;
revoke all on function app.rate_limit_counter(text, text) from public;
grant execute on function app.rate_limit_counter(text, text) to service_role;

/** Creates or changes a limit (and its refusal counter). The one way limits are defined. */
create function app.define_rate_limit(p_action text, p_scope text, p_window_seconds integer, p_max_hits integer,
                                      p_description text default '') returns void
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  insert into app.rate_limits (action, scope, window_seconds, max_hits, description)
  values (p_action, p_scope, p_window_seconds, p_max_hits, coalesce(p_description, ''))
  on conflict (action, scope) do update
    set window_seconds = excluded.window_seconds, max_hits = excluded.max_hits,
        description = case when excluded.description = '' then app.rate_limits.description else excluded.description end,
        updated_at = now();
  execute format('create sequence if not exists %s', app.rate_limit_counter(p_action, p_scope));
end
$$;
revoke all on function app.define_rate_limit(text, text, integer, integer, text) from public;
grant execute on function app.define_rate_limit(text, text, integer, integer, text) to service_role;

/** The client's IP as PostgREST passes it (request.headers; the functions set the same header):
    cf-connecting-ip, else the first x-forwarded-for entry, else x-real-ip; null on a direct session. */
create function app.client_ip() returns text
language sql stable
set search_path = ''
as $$
  select nullif(left(btrim(coalesce(h ->> 'cf-connecting-ip', split_part(h ->> 'x-forwarded-for', ',', 1), h ->> 'x-real-ip', '')), 64), '')
  from (select case when coalesce(current_setting('request.headers', true), '') ~ '^\s*\{'
                    then current_setting('request.headers', true)::jsonb end as h) s
$$;
revoke all on function app.client_ip() from public;
grant execute on function app.client_ip() to anon, authenticated, service_role;

/** Counts one hit of p_subject against the limit (action, scope) in its sliding window. Returns 0 when
    the hit was counted, else the seconds until the window has room again (the hit is not counted,
    the refusal is). A null or empty subject is not limited. Hits of one subject are serialised, except
    for the business scope. */
create function app.rate_limit_hit(p_action text, p_scope text, p_subject text) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_limit app.rate_limits;
  v_key bytea;
  v_edge timestamptz;
begin
  if coalesce(p_subject, '') = '' then
    return 0;
  end if;
  select * into v_limit from app.rate_limits l where l.action = p_action and l.scope = p_scope;
  if not found then
    perform app.fail('22023', 'unknown_rate_limit', format('no rate limit %s/%s', p_action, p_scope));
  end if;
  v_key := extensions.digest(convert_to(p_action || ':' || p_scope || ':' || lower(btrim(p_subject)), 'UTF8'), 'sha256');
  -- one client's hits are serialised (exact at the boundary); a business-wide limit is not, so it never
  -- queues a business's guests behind each other: it may overshoot by the requests in flight at once
  if p_scope <> 'business' then
    perform pg_advisory_xact_lock(hashtextextended(encode(v_key, 'hex'), 22));
  end if;
  -- the max_hits-th most recent hit inside the window: while it is there, the window is full
  select h.at into v_edge from app.rate_limit_hits h
  where h.action = p_action and h.scope = p_scope and h.subject = v_key
    and h.at > now() - make_interval(secs => v_limit.window_seconds)
  order by h.at desc offset v_limit.max_hits - 1 limit 1;
  if found then
    perform nextval(app.rate_limit_counter(p_action, p_scope)::regclass);
    return greatest(1, ceil(extract(epoch from v_edge + make_interval(secs => v_limit.window_seconds) - now())))::integer;
  end if;
  insert into app.rate_limit_hits (action, scope, subject) values (p_action, p_scope, v_key);
  return 0;
end
$$;
revoke all on function app.rate_limit_hit(text, text, text) from public;
grant execute on function app.rate_limit_hit(text, text, text) to service_role;

/** Checks every limit of an action for one request: p_subjects maps scope -> subject (ip defaults to
    app.client_ip(), user to auth.uid(), business to p_business_id). The business's own members are
    allow-listed. Raises PT429 rate_limited with detail {"retry_after", "action", "scope"}. */
create function app.enforce_rate_limits(p_action text, p_business_id uuid default null, p_subjects jsonb default '{}')
returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_limit record;
  v_subject text;
  v_retry integer;
begin
  if p_business_id is not null and app.is_member(p_business_id) then
    return;
  end if;
  for v_limit in select l.scope from app.rate_limits l where l.action = p_action order by l.scope loop
    v_subject := coalesce(p_subjects ->> v_limit.scope, case v_limit.scope
      when 'ip' then app.client_ip()
      when 'user' then auth.uid()::text
      when 'business' then p_business_id::text
    end);
    v_retry := app.rate_limit_hit(p_action, v_limit.scope, v_subject);
    if v_retry > 0 then
      raise exception using errcode = 'PT429', hint = 'rate_limited',
        message = format('too many %s requests; try again in %s seconds', replace(p_action, '_', ' '), v_retry),
        detail = jsonb_build_object('retry_after', v_retry, 'action', p_action, 'scope', v_limit.scope)::text;
    end if;
  end loop;
end
$$;
revoke all on function app.enforce_rate_limits(text, uuid, jsonb) from public;
grant execute on function app.enforce_rate_limits(text, uuid, jsonb) to service_role;

/** Every limit with its refusals since the counter was made (operator metrics). */
create function app.rate_limit_metrics() returns table (action text, scope text, window_seconds integer, max_hits integer,
                                                        refused bigint)
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_limit app.rate_limits;
begin
  for v_limit in select * from app.rate_limits l order by l.action, l.scope loop
    action := v_limit.action;
    scope := v_limit.scope;
    window_seconds := v_limit.window_seconds;
    max_hits := v_limit.max_hits;
    refused := coalesce(pg_catalog.pg_sequence_last_value(app.rate_limit_counter(v_limit.action, v_limit.scope)::regclass), 0);
    return next;
  end loop;
end
$$;
revoke all on function app.rate_limit_metrics() from public;
grant execute on function app.rate_limit_metrics() to service_role;

/** Forgets hits older than their limit's window (maintenance.prune). Returns how many. */
create function app.prune_rate_limit_hits() returns bigint
language sql volatile security definer
set search_path = ''
as $$
  with gone as (
    delete from app.rate_limit_hits h using app.rate_limits l
    where l.action = h.action and l.scope = h.scope and h.at <= now() - make_interval(secs => l.window_seconds)
    returning 1
  )
  select count(*) from gone
$$;
revoke all on function app.prune_rate_limit_hits() from public;
grant execute on function app.prune_rate_limit_hits() to service_role;

-- section triggers

/** Guests' and customers' orders (anon and authenticated callers) count against place_order's limits:
    per client IP, per phone, per email, per signed-in user and per business. Staff are allow-listed;
    the service role (voice agent, imports) is not an API caller and is not limited here. */
create function app.tg_orders_rate_limit() returns trigger
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if coalesce(auth.role(), '') in ('anon', 'authenticated') then
    perform app.enforce_rate_limits('place_order', new.business_id,
      jsonb_strip_nulls(jsonb_build_object('phone', new.guest_phone, 'email', lower(new.guest_email))));
  end if;
  return new;
end
$$;
revoke all on function app.tg_orders_rate_limit() from public, anon, authenticated, service_role;

/** The same for held bookings (hold_booking). */
create function app.tg_bookings_rate_limit() returns trigger
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if coalesce(auth.role(), '') in ('anon', 'authenticated') then
    perform app.enforce_rate_limits('hold_booking', new.business_id,
      jsonb_strip_nulls(jsonb_build_object('phone', new.guest_phone, 'email', lower(new.guest_email))));
  end if;
  return new;
end
$$;
revoke all on function app.tg_bookings_rate_limit() from public, anon, authenticated, service_role;

/** Order-claim codes (each one an SMS or email): per destination across users and per client IP,
    on top of request_order_claim's own 5 per user and business (BR741). */
create function app.tg_customer_claim_codes_rate_limit() returns trigger
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if coalesce(auth.role(), '') in ('anon', 'authenticated') then
    perform app.enforce_rate_limits('request_order_claim', new.business_id,
      jsonb_build_object('destination', new.channel || ':' || lower(new.destination)));
  end if;
  return new;
end
$$;
revoke all on function app.tg_customer_claim_codes_rate_limit() from public, anon, authenticated, service_role;

create trigger orders_rate_limit before insert on public.orders
  for each row execute function app.tg_orders_rate_limit();
create trigger bookings_rate_limit before insert on public.bookings
  for each row execute function app.tg_bookings_rate_limit();
create trigger customer_claim_codes_rate_limit before insert on app.customer_claim_codes
  for each row execute function app.tg_customer_claim_codes_rate_limit();

-- section grants
revoke all on app.rate_limits, app.rate_limit_hits from public, anon, authenticated;
grant select, insert, update, delete on app.rate_limits, app.rate_limit_hits to service_role;

-- section data
select app.define_rate_limit('place_order', 'ip', 600, 30, 'orders from one client IP');
select app.define_rate_limit('place_order', 'phone', 3600, 30, 'orders for one phone');
select app.define_rate_limit('place_order', 'email', 3600, 30, 'orders for one email');
select app.define_rate_limit('place_order', 'user', 3600, 30, 'orders by one signed-in customer');
select app.define_rate_limit('place_order', 'business', 60, 600, 'guest orders at one business');
select app.define_rate_limit('hold_booking', 'ip', 600, 30, 'booking holds from one client IP');
select app.define_rate_limit('hold_booking', 'phone', 3600, 30, 'booking holds for one phone');
select app.define_rate_limit('hold_booking', 'email', 3600, 30, 'booking holds for one email');
select app.define_rate_limit('hold_booking', 'business', 60, 600, 'guest booking holds at one business');
select app.define_rate_limit('request_order_claim', 'destination', 3600, 5, 'claim codes sent to one phone or email');
select app.define_rate_limit('request_order_claim', 'ip', 3600, 20, 'claim codes asked from one client IP');
select app.define_rate_limit('checkout', 'ip', 600, 60, 'checkout sessions asked from one client IP');
select app.define_rate_limit('checkout', 'subject', 600, 20, 'checkout calls for one order or booking');
select app.define_rate_limit('verify_checkout_session', 'ip', 600, 120, 'success-page checks from one client IP');
select app.define_rate_limit('verify_checkout_session', 'subject', 600, 60, 'success-page checks of one order or booking');
select app.define_rate_limit('consent', 'ip', 600, 30, 'consent links opened from one client IP');
