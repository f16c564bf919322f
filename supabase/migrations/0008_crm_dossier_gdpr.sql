-- CRM, part 2: the dossier (global tags, venue notes, preferences explicit and derived), the consent
-- log with per-venue double opt-in, deletion with a 7-day grace and anonymisation in place, the
-- data-subject export, merging duplicates, birthday/dormancy events and the admin answers.

-- section tables
alter table public.customers add column anonymised_at timestamptz,
  add column merged_into uuid;
alter table public.venues add column require_double_opt_in boolean not null default false;

/** Tags follow the customer across venues: normalized (lower case, single spaces), unique, at most 50. */
create table public.customer_tags (
  business_id uuid not null,
  customer_id uuid not null,
  tag text not null constraint customer_tags_tag_format check (tag ~ '^[a-z0-9][a-z0-9 _-]{0,39}$'),
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  constraint customer_tags_pkey primary key (business_id, customer_id, tag),
  constraint customer_tags_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id) on delete cascade
);
alter table public.customer_tags enable row level security;

/** Notes about an interaction at one venue: append-only, with author and time. */
create table public.customer_notes (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  customer_id uuid not null,
  venue_id uuid not null,
  body text not null constraint customer_notes_body_length check (length(body) between 1 and 4000),
  author_id uuid default auth.uid(),
  created_at timestamptz not null default now(),
  constraint customer_notes_pkey primary key (business_id, id),
  constraint customer_notes_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id) on delete cascade,
  constraint customer_notes_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade
);
alter table public.customer_notes enable row level security;

/** Allergens, dietary needs, favorite and disliked products: explicit (staff or the customer) or
    derived nightly from order history with a confidence. Allergens reach kitchen tickets. */
create table public.customer_preferences (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  customer_id uuid not null,
  kind text not null constraint customer_preferences_kind_valid check (kind in ('allergen', 'dietary', 'favorite', 'disliked')),
  value text not null constraint customer_preferences_value_length check (length(value) between 1 and 120),
  product_id uuid,
  source text not null default 'explicit' constraint customer_preferences_source_valid check (source in ('explicit', 'derived')),
  confidence numeric(4, 3) not null default 1 constraint customer_preferences_confidence_range check (confidence between 0 and 1),
  updated_at timestamptz not null default now(),
  constraint customer_preferences_pkey primary key (business_id, id),
  constraint customer_preferences_value_key unique (business_id, customer_id, kind, value),
  constraint customer_preferences_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id) on delete cascade
);
alter table public.customer_preferences enable row level security;

/** Append-only consent evidence (GDPR Art. 7): every flip with channel, source, IP, user agent and
    actor. The current consent is the latest GRANTED/REVOKED per customer, channel (and venue). */
create table public.customer_consent_log (
  business_id uuid not null,
  id bigint generated always as identity,
  customer_id uuid not null,
  venue_id uuid,
  channel text not null constraint customer_consent_log_channel_valid
    check (channel in ('EMAIL_MARKETING', 'SMS_MARKETING', 'WHATSAPP_MARKETING', 'REVIEW_REQUEST')),
  action text not null constraint customer_consent_log_action_valid check (action in ('GRANTED', 'REVOKED', 'REQUESTED')),
  source text not null constraint customer_consent_log_source_valid
    check (source in ('checkout', 'admin', 'unsubscribe_link', 'double_opt_in', 'sms_stop', 'customer', 'deletion', 'merge')),
  ip inet,
  user_agent text,
  actor_user_id uuid default auth.uid(),
  created_at timestamptz not null default clock_timestamp(),
  constraint customer_consent_log_pkey primary key (business_id, id),
  constraint customer_consent_log_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id)
);
alter table public.customer_consent_log enable row level security;

/** Double opt-in confirmations: the token is stored hashed; 7-day TTL; one pending per
    (customer, venue, channel), so repeated requests collapse into it. */
create table public.consent_tokens (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  customer_id uuid not null,
  venue_id uuid not null,
  channel text not null,
  token_hash text not null,
  expires_at timestamptz not null default now() + interval '7 days',
  confirmed_at timestamptz,
  created_at timestamptz not null default now(),
  constraint consent_tokens_pkey primary key (business_id, id),
  constraint consent_tokens_hash_key unique (business_id, token_hash),
  constraint consent_tokens_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id) on delete cascade
);
alter table public.consent_tokens enable row level security;

/** A request to erase a customer: executed after the 7-day grace unless cancelled, or at once
    when the operator forces it (a DPA order). */
create table public.customer_delete_requests (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  customer_id uuid not null,
  requested_by uuid default auth.uid(),
  requested_at timestamptz not null default now(),
  execute_after timestamptz not null default now() + interval '7 days',
  status text not null default 'pending' constraint customer_delete_requests_status_valid check (status in ('pending', 'cancelled', 'executed')),
  forced boolean not null default false,
  executed_at timestamptz,
  constraint customer_delete_requests_pkey primary key (business_id, id),
  constraint customer_delete_requests_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id)
);
alter table public.customer_delete_requests enable row level security;

/** Which birthday / dormancy events were already emitted (one per customer and period). */
create table app.crm_event_marks (
  business_id uuid not null,
  customer_id uuid not null,
  kind text not null,
  period text not null,
  created_at timestamptz not null default now(),
  constraint crm_event_marks_pkey primary key (business_id, customer_id, kind, period)
);

-- section indexes
create index customer_tags_tag_idx on public.customer_tags (business_id, tag);
create index customer_notes_customer_idx on public.customer_notes (business_id, customer_id, created_at desc);
create index customer_notes_venue_idx on public.customer_notes (business_id, venue_id);
create index customer_preferences_customer_idx on public.customer_preferences (business_id, customer_id, kind);
create index customer_consent_log_customer_idx on public.customer_consent_log (business_id, customer_id, channel, id desc);
create unique index consent_tokens_pending_key on public.consent_tokens (business_id, customer_id, venue_id, channel) where confirmed_at is null;
create unique index customer_delete_requests_pending_key on public.customer_delete_requests (business_id, customer_id) where status = 'pending';
create index customer_delete_requests_due_idx on public.customer_delete_requests (execute_after) where status = 'pending';
create index customers_birthday_idx on public.customers (business_id, extract(month from date_of_birth), extract(day from date_of_birth))
  where date_of_birth is not null;

-- section private helpers

create function app.normalize_tag(p_tag text) returns text
language sql immutable
set search_path = ''
as $$
  select lower(regexp_replace(trim(coalesce(p_tag, '')), '\s+', ' ', 'g'))
$$;
grant execute on function app.normalize_tag(text) to anon, authenticated, service_role;

/** The current consent: the latest GRANTED or REVOKED for the channel (a venue's own entries, then the
    business-wide ones). REQUESTED (double opt-in pending) leaves it off. */
create function app.has_consent(p_business_id uuid, p_customer_id uuid, p_channel text, p_venue_id uuid default null) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select coalesce((
    select l.action = 'GRANTED' from public.customer_consent_log l
    where l.business_id = p_business_id and l.customer_id = p_customer_id and l.channel = p_channel
      and l.action in ('GRANTED', 'REVOKED') and (l.venue_id is null or l.venue_id = p_venue_id)
    order by l.id desc limit 1), false)
$$;
revoke all on function app.has_consent(uuid, uuid, text, uuid) from public;
grant execute on function app.has_consent(uuid, uuid, text, uuid) to authenticated, service_role;

/** Records a consent flip. A grant at a venue that requires double opt-in becomes REQUESTED plus a
    token (reused while pending) whose plaintext travels only in the consent.confirmation_requested
    event for the worker to email. Returns the action recorded. */
create function app.record_consent(p_business_id uuid, p_customer_id uuid, p_channel text, p_granted boolean, p_source text,
                                   p_venue_id uuid default null, p_ip inet default null, p_user_agent text default null) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_action text := case when p_granted then 'GRANTED' else 'REVOKED' end;
  v_token text;
begin
  if not exists (select 1 from public.customers c where c.business_id = p_business_id and c.id = p_customer_id and c.anonymised_at is null) then
    perform app.fail('PT404', 'customer_not_found', 'no such customer');
  end if;
  if p_granted and p_channel in ('EMAIL_MARKETING', 'SMS_MARKETING', 'WHATSAPP_MARKETING') and p_source not in ('double_opt_in')
     and exists (select 1 from public.venues v where v.business_id = p_business_id and v.id = p_venue_id and v.require_double_opt_in) then
    v_action := 'REQUESTED';
    if not exists (select 1 from public.consent_tokens t where t.business_id = p_business_id and t.customer_id = p_customer_id
                   and t.venue_id = p_venue_id and t.channel = p_channel and t.confirmed_at is null and t.expires_at > now()) then
      delete from public.consent_tokens t where t.business_id = p_business_id and t.customer_id = p_customer_id
        and t.venue_id = p_venue_id and t.channel = p_channel and t.confirmed_at is null;  -- an expired one
      v_token := encode(extensions.gen_random_bytes(24), 'hex');
      insert into public.consent_tokens (business_id, customer_id, venue_id, channel, token_hash)
      values (p_business_id, p_customer_id, p_venue_id, p_channel, encode(extensions.digest(v_token, 'sha256'), 'hex'));
      perform app.emit('consent.confirmation_requested', p_business_id, jsonb_build_object(
        'customer_id', p_customer_id, 'venue_id', p_venue_id, 'channel', p_channel, 'token', v_token));
    else
      return 'REQUESTED';  -- a pending confirmation exists: duplicates collapse into it
    end if;
  end if;
  insert into public.customer_consent_log (business_id, customer_id, venue_id, channel, action, source, ip, user_agent)
  values (p_business_id, p_customer_id, p_venue_id, p_channel, v_action, p_source, p_ip, left(p_user_agent, 500));
  return v_action;
end
$$;
revoke all on function app.record_consent(uuid, uuid, text, boolean, text, uuid, inet, text) from public;
grant execute on function app.record_consent(uuid, uuid, text, boolean, text, uuid, inet, text) to service_role;

/** The consent function's confirmation: GRANTED once per token; expired or unknown raise BR210. */
create function app.confirm_consent(p_token text, p_ip inet, p_user_agent text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_token public.consent_tokens;
begin
  select t.* into v_token from public.consent_tokens t
  where t.token_hash = encode(extensions.digest(coalesce(p_token, ''), 'sha256'), 'hex') for update;
  if v_token.id is null then
    perform app.fail('BR210', 'invalid_token', 'this confirmation link is not valid');
  end if;
  if v_token.confirmed_at is not null then
    return jsonb_build_object('confirmed', true, 'channel', v_token.channel, 'already', true);
  end if;
  if v_token.expires_at < now() then
    perform app.fail('BR210', 'expired_token', 'this confirmation link has expired');
  end if;
  update public.consent_tokens set confirmed_at = now() where business_id = v_token.business_id and id = v_token.id;
  insert into public.customer_consent_log (business_id, customer_id, venue_id, channel, action, source, ip, user_agent, actor_user_id)
  values (v_token.business_id, v_token.customer_id, v_token.venue_id, v_token.channel, 'GRANTED', 'double_opt_in', p_ip, left(p_user_agent, 500), null);
  return jsonb_build_object('confirmed', true, 'channel', v_token.channel, 'already', false);
end
$$;
revoke all on function app.confirm_consent(text, inet, text) from public;
grant execute on function app.confirm_consent(text, inet, text) to service_role;

/** A stateless unsubscribe token: HMAC of (customer, channel) with the server pepper. */
create function app.unsubscribe_token(p_business_id uuid, p_customer_id uuid, p_channel text) returns text
language sql stable security definer
set search_path = ''
as $$
  select encode(extensions.hmac(convert_to(p_business_id || ':' || p_customer_id || ':' || p_channel, 'UTF8'),
                                (select s.value from app.secrets s where s.name = 'pickup_code_pepper'), 'sha256'), 'hex')
$$;
revoke all on function app.unsubscribe_token(uuid, uuid, text) from public;
grant execute on function app.unsubscribe_token(uuid, uuid, text) to service_role;

/** The unsubscribe link: REVOKED with source unsubscribe_link when the token matches (BR210 otherwise). */
create function app.unsubscribe(p_business_id uuid, p_customer_id uuid, p_channel text, p_token text, p_ip inet, p_user_agent text)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if p_token is null or app.unsubscribe_token(p_business_id, p_customer_id, p_channel) <> p_token then
    perform app.fail('BR210', 'invalid_token', 'this unsubscribe link is not valid');
  end if;
  perform app.record_consent(p_business_id, p_customer_id, p_channel, false, 'unsubscribe_link', null, p_ip, p_user_agent);
  return jsonb_build_object('unsubscribed', true, 'channel', p_channel);
end
$$;
revoke all on function app.unsubscribe(uuid, uuid, text, text, inet, text) from public;
grant execute on function app.unsubscribe(uuid, uuid, text, text, inet, text) to service_role;

/** Erases a person in place: personal fields of the customer, their orders and messages are cleared,
    notes, tags, preferences and tokens removed, Stripe payloads of their orders redacted; keys,
    amounts, stats and the consent log stay, and a final REVOKED is appended for every channel. */
create function app.anonymise_customer(p_business_id uuid, p_customer_id uuid) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_customer public.customers;
begin
  select c.* into v_customer from public.customers c where c.business_id = p_business_id and c.id = p_customer_id for update;
  if v_customer.id is null or v_customer.anonymised_at is not null then
    return;
  end if;
  perform set_config('brigade.anonymising', p_customer_id::text, true);
  update public.customers set full_name = null, email = null, phone = null, user_id = null, allergens = '{}',
    date_of_birth = null, anonymised_at = now()
  where business_id = p_business_id and id = p_customer_id;
  update public.orders set guest_name = null, guest_phone = null, guest_email = null, delivery_address = null, notes = '',
    user_id = null
  where business_id = p_business_id and customer_id = p_customer_id;
  update public.order_items i set notes = '' from public.orders o
  where o.business_id = p_business_id and o.customer_id = p_customer_id and i.business_id = o.business_id and i.order_id = o.id
    and i.notes <> '';
  update public.kitchen_tickets t set notes = '' from public.orders o
  where o.business_id = p_business_id and o.customer_id = p_customer_id and t.business_id = o.business_id and t.order_id = o.id;
  update public.notification_log set recipient = 'redacted:' || id, detail = '{}'::jsonb
  where business_id = p_business_id and (customer_id = p_customer_id
        or order_id in (select o.id from public.orders o where o.business_id = p_business_id and o.customer_id = p_customer_id));
  update public.stripe_events e set payload = jsonb_build_object('id', e.id, 'type', e.type, 'redacted', true)
  where e.business_id = p_business_id and e.order_id in (select o.id from public.orders o where o.business_id = p_business_id and o.customer_id = p_customer_id);
  delete from public.customer_notes where business_id = p_business_id and customer_id = p_customer_id;
  delete from public.customer_tags where business_id = p_business_id and customer_id = p_customer_id;
  delete from public.customer_preferences where business_id = p_business_id and customer_id = p_customer_id;
  delete from public.consent_tokens where business_id = p_business_id and customer_id = p_customer_id;
  delete from public.segment_memberships where business_id = p_business_id and customer_id = p_customer_id;
  insert into public.customer_consent_log (business_id, customer_id, channel, action, source, actor_user_id)
  select p_business_id, p_customer_id, ch, 'REVOKED', 'deletion', null
  from unnest(array['EMAIL_MARKETING', 'SMS_MARKETING', 'WHATSAPP_MARKETING', 'REVIEW_REQUEST']) ch;
  update public.customer_delete_requests set status = 'executed', executed_at = now()
  where business_id = p_business_id and customer_id = p_customer_id and status = 'pending';
  perform set_config('brigade.anonymising', '', true);
  perform app.emit('customer.anonymised', p_business_id, jsonb_build_object('customer_id', p_customer_id));
end
$$;
revoke all on function app.anonymise_customer(uuid, uuid) from public;
grant execute on function app.anonymise_customer(uuid, uuid) to service_role;

/** Nightly: every deletion whose grace period is over. */
create function app.execute_due_deletions() returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_req record;
  v_count integer := 0;
begin
  for v_req in select r.business_id, r.customer_id from public.customer_delete_requests r
               where r.status = 'pending' and r.execute_after <= now() order by r.execute_after for update skip locked loop
    perform app.anonymise_customer(v_req.business_id, v_req.customer_id);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
revoke all on function app.execute_due_deletions() from public;
grant execute on function app.execute_due_deletions() to service_role;

/** Nightly: favorites (top 3 products in 3+ of the customer's orders) and dislikes (a product ordered
    once, then absent from 5+ later orders), with a confidence; explicit entries are never overridden. */
create function app.derive_preferences(p_business_id uuid default null) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  delete from public.customer_preferences p
  where p.source = 'derived' and p.kind in ('favorite', 'disliked') and (p_business_id is null or p.business_id = p_business_id);

  with lines as (
    select o.business_id, o.customer_id, o.id as order_id, o.placed_at, i.product_id, i.name
    from public.orders o join public.order_items i on i.business_id = o.business_id and i.order_id = o.id
    where o.customer_id is not null and o.payment_status in ('paid', 'partially_refunded')
      and (p_business_id is null or o.business_id = p_business_id)
  ),
  per_product as (
    select business_id, customer_id, product_id, max(name) as name, count(distinct order_id) as orders, min(placed_at) as first_at
    from lines group by business_id, customer_id, product_id
  ),
  totals as (
    select o.business_id, o.customer_id, count(*) as orders from public.orders o
    where o.customer_id is not null and o.payment_status in ('paid', 'partially_refunded')
      and (p_business_id is null or o.business_id = p_business_id)
    group by o.business_id, o.customer_id
  ),
  favorites as (
    select p.*, row_number() over (partition by p.business_id, p.customer_id order by p.orders desc, p.name) as rank
    from per_product p where p.orders >= 3
  ),
  dislikes as (
    select p.*, (select count(*) from public.orders o where o.business_id = p.business_id and o.customer_id = p.customer_id
                 and o.payment_status in ('paid', 'partially_refunded') and o.placed_at > p.first_at) as skipped
    from per_product p where p.orders = 1
  ),
  derived as (
    select f.business_id, f.customer_id, 'favorite' as kind, lower(f.name) as value, f.product_id,
           least(1, f.orders::numeric / t.orders) as confidence
    from favorites f join totals t using (business_id, customer_id) where f.rank <= 3
    union all
    select d.business_id, d.customer_id, 'disliked', lower(d.name), d.product_id, least(1, d.skipped / 10.0)
    from dislikes d where d.skipped >= 5
  )
  insert into public.customer_preferences (business_id, customer_id, kind, value, product_id, source, confidence)
  select business_id, customer_id, kind, value, product_id, 'derived', round(confidence, 3) from derived
  on conflict on constraint customer_preferences_value_key do nothing;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
revoke all on function app.derive_preferences(uuid) from public;
grant execute on function app.derive_preferences(uuid) to service_role;

/** Nightly: customer.birthday (once a year, on the day in the business's time zone) and
    customer.dormant (once per dormancy, 30 days after the last order at a venue). Returns how many. */
create function app.emit_crm_events(p_dormant_days integer default 30) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_row record;
  v_count integer := 0;
begin
  for v_row in
    select c.business_id, c.id as customer_id, (now() at time zone b.time_zone)::date as today
    from public.customers c join public.businesses b on b.id = c.business_id
    where c.date_of_birth is not null and c.anonymised_at is null
      and extract(month from c.date_of_birth) = extract(month from now() at time zone b.time_zone)
      and extract(day from c.date_of_birth) = extract(day from now() at time zone b.time_zone)
  loop
    insert into app.crm_event_marks (business_id, customer_id, kind, period)
    values (v_row.business_id, v_row.customer_id, 'birthday', extract(year from v_row.today)::text)
    on conflict do nothing;
    if found then
      perform app.emit('customer.birthday', v_row.business_id, jsonb_build_object('customer_id', v_row.customer_id));
      v_count := v_count + 1;
    end if;
  end loop;
  for v_row in
    select s.business_id, s.customer_id, s.venue_id, s.last_order_at, s.segment
    from public.customer_venue_stats s join public.customers c on c.business_id = s.business_id and c.id = s.customer_id
    where s.last_order_at <= now() - make_interval(days => p_dormant_days) and s.total_orders > 0 and c.anonymised_at is null
  loop
    insert into app.crm_event_marks (business_id, customer_id, kind, period)
    values (v_row.business_id, v_row.customer_id, 'dormant', v_row.venue_id || ':' || v_row.last_order_at)
    on conflict do nothing;
    if found then
      perform app.emit('customer.dormant', v_row.business_id, jsonb_build_object('customer_id', v_row.customer_id,
        'venue_id', v_row.venue_id, 'last_order_at', v_row.last_order_at, 'segment', v_row.segment));
      v_count := v_count + 1;
    end if;
  end loop;
  return v_count;
end
$$;
revoke all on function app.emit_crm_events(integer) from public;
grant execute on function app.emit_crm_events(integer) to service_role;

/** The whole nightly CRM run (03:30 UTC, once across worker copies): due deletions, re-bucketing,
    derived preferences, every segment recomputed, birthday and dormancy events. */
create function app.crm_nightly() returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_deleted integer := app.execute_due_deletions();
  v_rescored bigint := app.crm_rebucket(null);
  v_prefs integer := app.derive_preferences(null);
  v_segments integer := 0;
  v_events integer;
  v_seg record;
begin
  for v_seg in select s.business_id, s.id from public.segments s
               where app.module_enabled(s.business_id, 'crm') order by s.business_id, s.id loop
    perform app.recompute_segment(v_seg.business_id, v_seg.id);
    v_segments := v_segments + 1;
  end loop;
  v_events := app.emit_crm_events(30);
  return jsonb_build_object('deleted', v_deleted, 'rescored', v_rescored, 'preferences', v_prefs,
                            'segments', v_segments, 'events', v_events);
end
$$;
revoke all on function app.crm_nightly() from public;
grant execute on function app.crm_nightly() to service_role;

-- section triggers

/** Tags are normalized and capped at 50 per customer. */
create function app.tg_customer_tags_normalize() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.tag := app.normalize_tag(new.tag);
  if (select count(*) from public.customer_tags t where t.business_id = new.business_id and t.customer_id = new.customer_id
      and t.tag <> new.tag) >= 50 then
    perform app.fail('BR205', 'too_many_tags', 'a customer has at most 50 tags');
  end if;
  return new;
end
$$;

/** Preference values are stored lower-case and trimmed. */
create function app.tg_customer_preferences_normalize() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.value := lower(trim(new.value));
  new.updated_at := now();
  return new;
end
$$;

/** Allergen preferences are mirrored on customers.allergens, which kitchen tickets read. */
create function app.tg_customer_preferences_sync() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_business uuid := coalesce(new.business_id, old.business_id);
  v_customer uuid := coalesce(new.customer_id, old.customer_id);
begin
  if coalesce(new.kind, old.kind) <> 'allergen' and coalesce(old.kind, new.kind) <> 'allergen' then
    return null;
  end if;
  update public.customers c set allergens = coalesce((
    select array_agg(p.value order by p.value) from public.customer_preferences p
    where p.business_id = v_business and p.customer_id = v_customer and p.kind = 'allergen'), '{}')
  where c.business_id = v_business and c.id = v_customer;
  return null;
end
$$;

/** Append-only, except for erasure (anonymise_customer) and merging (merge_customers). */
create function app.tg_append_only_unless_erasing() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if coalesce(current_setting('brigade.anonymising', true), '') = old.customer_id::text
     or coalesce(current_setting('brigade.merging', true), '') = old.customer_id::text then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  perform app.fail('BR006', 'append_only', format('%s is append-only: %s is not allowed', tg_table_name, lower(tg_op)));
  return null;
end
$$;

create trigger customer_tags_normalize before insert or update on public.customer_tags
  for each row execute function app.tg_customer_tags_normalize();
create trigger customer_preferences_normalize before insert or update on public.customer_preferences
  for each row execute function app.tg_customer_preferences_normalize();
create trigger customer_preferences_sync after insert or update or delete on public.customer_preferences
  for each row execute function app.tg_customer_preferences_sync();
create trigger customer_notes_append_only before update or delete on public.customer_notes
  for each row execute function app.tg_append_only_unless_erasing();
create trigger customer_consent_log_append_only before update or delete on public.customer_consent_log
  for each row execute function app.tg_append_only_unless_erasing();

-- section policies
create policy "staff read tags" on public.customer_tags for select to authenticated
  using (app.module_enabled(business_id, 'crm') and business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "staff tag customers" on public.customer_tags for insert to authenticated
  with check (app.module_enabled(business_id, 'crm') and business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "staff untag customers" on public.customer_tags for delete to authenticated
  using (app.module_enabled(business_id, 'crm') and business_id in (select app.my_business_ids('{owner,manager,staff}')));

create policy "staff read notes of their venues" on public.customer_notes for select to authenticated
  using (app.module_enabled(business_id, 'crm')
         and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));
create policy "staff write notes at their venues" on public.customer_notes for insert to authenticated
  with check (app.module_enabled(business_id, 'crm') and author_id = (select auth.uid())
              and (business_id, venue_id) in (select k.business_id, k.venue_id from app.my_venue_keys('{owner,manager,staff}') k));

create policy "staff read preferences" on public.customer_preferences for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "customers read their preferences" on public.customer_preferences for select to authenticated
  using ((business_id, customer_id) in (select c.business_id, c.id from public.customers c where c.user_id = (select auth.uid())));
create policy "staff record preferences" on public.customer_preferences for insert to authenticated
  with check (source = 'explicit' and business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "customers record their preferences" on public.customer_preferences for insert to authenticated
  with check (source = 'explicit'
              and (business_id, customer_id) in (select c.business_id, c.id from public.customers c where c.user_id = (select auth.uid())));
create policy "staff remove preferences" on public.customer_preferences for delete to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "customers remove their preferences" on public.customer_preferences for delete to authenticated
  using ((business_id, customer_id) in (select c.business_id, c.id from public.customers c where c.user_id = (select auth.uid())));

create policy "managers read the consent log" on public.customer_consent_log for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "customers read their consent log" on public.customer_consent_log for select to authenticated
  using ((business_id, customer_id) in (select c.business_id, c.id from public.customers c where c.user_id = (select auth.uid())));

create policy "managers read delete requests" on public.customer_delete_requests for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "customers read their delete requests" on public.customer_delete_requests for select to authenticated
  using ((business_id, customer_id) in (select c.business_id, c.id from public.customers c where c.user_id = (select auth.uid())));

-- consent_tokens: service only (the function confirms), no policy for API roles

-- section grants
revoke all on public.customer_tags, public.customer_notes, public.customer_preferences, public.customer_consent_log,
  public.consent_tokens, public.customer_delete_requests from anon, authenticated;
revoke all on app.crm_event_marks from public, anon, authenticated;
grant select, insert (business_id, customer_id, tag), delete on public.customer_tags to authenticated;
grant select, insert (business_id, customer_id, venue_id, body, author_id) on public.customer_notes to authenticated;
grant select, insert (business_id, customer_id, kind, value, product_id), delete on public.customer_preferences to authenticated;
grant select on public.customer_consent_log, public.customer_delete_requests to authenticated;
grant all on public.customer_tags, public.customer_notes, public.customer_preferences, public.customer_consent_log,
  public.consent_tokens, public.customer_delete_requests to service_role;
grant all on app.crm_event_marks to service_role;

-- section views

/** The dossier's lifetime card: cross-venue totals and the per-venue breakdown, over the venues the
    caller may see (security_invoker: a venue manager sees only their venues). */
create view public.customer_lifetime with (security_invoker = true) as
select s.business_id, s.customer_id,
       sum(s.total_orders)::integer as total_orders, sum(s.total_spent_cents)::bigint as total_spent_cents,
       min(s.first_order_at) as first_order_at, max(s.last_order_at) as last_order_at,
       jsonb_agg(jsonb_build_object('venue_id', s.venue_id, 'total_orders', s.total_orders, 'total_spent_cents', s.total_spent_cents,
                                    'avg_order_cents', s.avg_order_cents, 'last_order_at', s.last_order_at, 'segment', s.segment,
                                    'r', s.recency_score, 'f', s.frequency_score, 'm', s.monetary_score) order by s.venue_id) as venues
from public.customer_venue_stats s
group by s.business_id, s.customer_id;
revoke all on public.customer_lifetime from anon, authenticated;
grant select on public.customer_lifetime to authenticated, service_role;

-- section rpc

/** Staff record a consent flip from the dossier or checkout (source admin/checkout), with the
    request's IP and user agent as PostgREST passes them. Returns the action recorded (REQUESTED when
    the venue requires double opt-in). Raises PT404 (not a customer of yours), 22023 (source). */
create function app.staff_set_consent(p_customer_id uuid, p_channel text, p_granted boolean, p_venue_id uuid, p_source text)
returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_business uuid;
  v_headers jsonb := nullif(current_setting('request.headers', true), '')::jsonb;
begin
  select c.business_id into v_business from public.customers c where c.id = p_customer_id;
  if v_business is null or not (app.is_member(v_business, '{owner,manager,staff}') or app.is_platform_or_service()) then
    perform app.fail('PT404', 'customer_not_found', 'no such customer');
  end if;
  if p_source not in ('admin', 'checkout') then
    perform app.fail('22023', 'invalid_source', 'staff record consent from admin or checkout');
  end if;
  return app.record_consent(v_business, p_customer_id, p_channel, p_granted, p_source, p_venue_id,
    nullif(split_part(coalesce(v_headers ->> 'x-forwarded-for', ''), ',', 1), '')::inet, v_headers ->> 'user-agent');
end
$$;
revoke all on function app.staff_set_consent(uuid, text, boolean, uuid, text) from public;
grant execute on function app.staff_set_consent(uuid, text, boolean, uuid, text) to authenticated, service_role;

create function public.set_consent(customer_id uuid, channel text, granted boolean, venue_id uuid default null,
                                   source text default 'admin') returns text
language sql volatile
set search_path = ''
as $$
  select app.staff_set_consent(customer_id, channel, granted, venue_id, source)
$$;
revoke all on function public.set_consent(uuid, text, boolean, uuid, text) from public;
grant execute on function public.set_consent(uuid, text, boolean, uuid, text) to authenticated, service_role;

/** A signed-in customer asks to be erased from every business they ordered from (7-day grace).
    Returns the requests (one per business). */
create function app.request_my_deletion() returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if auth.uid() is null then
    perform app.fail('42501', 'sign_in_required', 'sign in to ask for deletion');
  end if;
  insert into public.customer_delete_requests (business_id, customer_id, requested_by)
  select c.business_id, c.id, auth.uid() from public.customers c where c.user_id = auth.uid() and c.anonymised_at is null
  on conflict (business_id, customer_id) where status = 'pending' do nothing;
  return coalesce((select jsonb_agg(jsonb_build_object('business_id', r.business_id, 'execute_after', r.execute_after))
                   from public.customer_delete_requests r join public.customers c on c.business_id = r.business_id and c.id = r.customer_id
                   where c.user_id = auth.uid() and r.status = 'pending'), '[]'::jsonb);
end
$$;
revoke all on function app.request_my_deletion() from public;
grant execute on function app.request_my_deletion() to authenticated;

create function public.request_my_deletion() returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.request_my_deletion()
$$;
revoke all on function public.request_my_deletion() from public;
grant execute on function public.request_my_deletion() to authenticated;

/** Changed their mind within the grace period. Returns how many requests were cancelled. */
create function app.cancel_my_deletion() returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  update public.customer_delete_requests r set status = 'cancelled'
  from public.customers c
  where c.business_id = r.business_id and c.id = r.customer_id and c.user_id = auth.uid() and r.status = 'pending';
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
revoke all on function app.cancel_my_deletion() from public;
grant execute on function app.cancel_my_deletion() to authenticated;

create function public.cancel_my_deletion() returns integer
language sql volatile
set search_path = ''
as $$
  select app.cancel_my_deletion()
$$;
revoke all on function public.cancel_my_deletion() from public;
grant execute on function public.cancel_my_deletion() to authenticated;

/** The operator (or service) erases a customer now, e.g. on a DPA order; audited. */
create function app.force_delete_customer(business_id uuid, customer_id uuid) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
#variable_conflict use_column
begin
  if not app.is_platform_or_service() then
    perform app.fail('42501', 'operator_only', 'only the platform operator may force a deletion');
  end if;
  insert into public.customer_delete_requests (business_id, customer_id, requested_by, execute_after, forced)
  values (force_delete_customer.business_id, force_delete_customer.customer_id, auth.uid(), now(), true)
  on conflict (business_id, customer_id) where status = 'pending' do update set forced = true, execute_after = now();
  perform app.anonymise_customer(force_delete_customer.business_id, force_delete_customer.customer_id);
  perform app.audit(force_delete_customer.business_id, 'customer.force_deleted', jsonb_build_object('customer_id', force_delete_customer.customer_id));
end
$$;
revoke all on function app.force_delete_customer(uuid, uuid) from public;
grant execute on function app.force_delete_customer(uuid, uuid) to authenticated, service_role;

create function public.force_delete_customer(business_id uuid, customer_id uuid) returns void
language sql volatile
set search_path = ''
as $$
  select app.force_delete_customer(business_id, customer_id)
$$;
revoke all on function public.force_delete_customer(uuid, uuid) from public;
grant execute on function public.force_delete_customer(uuid, uuid) to authenticated, service_role;

/** Everything held about a customer as JSON (data-subject access). */
create function app.export_customer(p_business_id uuid, p_customer_id uuid) returns jsonb
language sql stable security definer
set search_path = ''
as $$
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
$$;
revoke all on function app.export_customer(uuid, uuid) from public;
grant execute on function app.export_customer(uuid, uuid) to service_role;

/** Export for managers of the business, the operator, or the customer themselves. Raises PT404. */
create function app.export_customer(customer_id uuid) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_customer public.customers;
begin
  select c.* into v_customer from public.customers c where c.id = export_customer.customer_id;
  if v_customer.id is null or not (app.is_member(v_customer.business_id, '{owner,manager}') or app.is_platform_or_service()
                                   or coalesce(v_customer.user_id = auth.uid(), false)) then
    perform app.fail('PT404', 'customer_not_found', 'no such customer');
  end if;
  return app.export_customer(v_customer.business_id, v_customer.id);
end
$$;
revoke all on function app.export_customer(uuid) from public;
grant execute on function app.export_customer(uuid) to authenticated, service_role;

create function public.export_customer(customer_id uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select app.export_customer(customer_id)
$$;
revoke all on function public.export_customer(uuid) from public;
grant execute on function public.export_customer(uuid) to authenticated, service_role;

/** Merges a duplicate into a survivor (owners and managers): orders, stats, tags, notes, consent
    history, preferences and points move to the survivor; the duplicate stays as an empty tombstone
    (merged_into) because the append-only ledgers keep pointing at it; audited. */
create function app.merge_customers(survivor_id uuid, duplicate_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_keep public.customers;
  v_drop public.customers;
  v_moved integer;
begin
  select c.* into v_keep from public.customers c where c.id = survivor_id for update;
  select c.* into v_drop from public.customers c where c.id = duplicate_id and c.business_id = v_keep.business_id
    and c.merged_into is null for update;
  if v_keep.id is null or v_drop.id is null or v_keep.id = v_drop.id or v_keep.merged_into is not null
     or not (app.is_member(v_keep.business_id, '{owner,manager}') or app.is_platform_or_service()) then
    perform app.fail('PT404', 'customer_not_found', 'two different customers of a business you manage are needed');
  end if;
  perform app.require_module(v_keep.business_id, 'crm');
  perform set_config('brigade.merging', v_drop.id::text, true);

  update public.orders set customer_id = v_keep.id where business_id = v_keep.business_id and customer_id = v_drop.id;
  get diagnostics v_moved = row_count;
  insert into public.customer_venue_stats as s (business_id, venue_id, customer_id, total_orders, total_spent_cents, first_order_at, last_order_at)
  select business_id, venue_id, v_keep.id, total_orders, total_spent_cents, first_order_at, last_order_at
  from public.customer_venue_stats where business_id = v_keep.business_id and customer_id = v_drop.id
  on conflict (business_id, venue_id, customer_id) do update set
    total_orders = s.total_orders + excluded.total_orders, total_spent_cents = s.total_spent_cents + excluded.total_spent_cents,
    first_order_at = least(s.first_order_at, excluded.first_order_at), last_order_at = greatest(s.last_order_at, excluded.last_order_at),
    updated_at = now();
  delete from public.customer_venue_stats where business_id = v_keep.business_id and customer_id = v_drop.id;
  insert into public.customer_tags (business_id, customer_id, tag, created_by)
  select business_id, v_keep.id, tag, created_by from public.customer_tags where business_id = v_keep.business_id and customer_id = v_drop.id
  on conflict do nothing;
  delete from public.customer_tags where business_id = v_keep.business_id and customer_id = v_drop.id;
  insert into public.customer_preferences (business_id, customer_id, kind, value, product_id, source, confidence)
  select business_id, v_keep.id, kind, value, product_id, source, confidence from public.customer_preferences
  where business_id = v_keep.business_id and customer_id = v_drop.id on conflict do nothing;
  delete from public.customer_preferences where business_id = v_keep.business_id and customer_id = v_drop.id;
  update public.customer_notes set customer_id = v_keep.id where business_id = v_keep.business_id and customer_id = v_drop.id;
  update public.customer_consent_log set customer_id = v_keep.id where business_id = v_keep.business_id and customer_id = v_drop.id;
  update public.consent_tokens set customer_id = v_keep.id where business_id = v_keep.business_id and customer_id = v_drop.id
    and not exists (select 1 from public.consent_tokens k where k.business_id = v_keep.business_id and k.customer_id = v_keep.id);
  delete from public.consent_tokens where business_id = v_keep.business_id and customer_id = v_drop.id;
  -- points: the ledger stays append-only; the duplicate's balance moves as a pair of entries
  insert into public.loyalty_transactions (business_id, customer_id, points, reason)
  select business_id, v_keep.id, balance, 'merge' from public.loyalty_accounts
  where business_id = v_keep.business_id and customer_id = v_drop.id and balance > 0;
  insert into public.loyalty_transactions (business_id, customer_id, points, reason)
  select business_id, customer_id, -balance, 'merge' from public.loyalty_accounts
  where business_id = v_keep.business_id and customer_id = v_drop.id and balance > 0;
  update public.notification_log set customer_id = v_keep.id where business_id = v_keep.business_id and customer_id = v_drop.id;
  delete from public.segment_memberships where business_id = v_keep.business_id and customer_id = v_drop.id;
  update public.customer_delete_requests set customer_id = v_keep.id where business_id = v_keep.business_id and customer_id = v_drop.id
    and status <> 'pending';
  delete from public.customer_delete_requests where business_id = v_keep.business_id and customer_id = v_drop.id;
  -- the duplicate stays as a tombstone (its ledger rows point at it), emptied of personal data
  update public.customers set full_name = null, email = null, phone = null, user_id = null, date_of_birth = null,
    allergens = '{}', merged_into = v_keep.id
  where business_id = v_keep.business_id and id = v_drop.id;
  update public.customers set
    full_name = coalesce(full_name, v_drop.full_name), email = coalesce(email, v_drop.email), phone = coalesce(phone, v_drop.phone),
    user_id = coalesce(user_id, v_drop.user_id), date_of_birth = coalesce(date_of_birth, v_drop.date_of_birth)
  where business_id = v_keep.business_id and id = v_keep.id;
  perform set_config('brigade.merging', '', true);
  perform app.audit(v_keep.business_id, 'customer.merged', jsonb_build_object('survivor', v_keep.id, 'duplicate', v_drop.id, 'orders_moved', v_moved));
  return jsonb_build_object('survivor', v_keep.id, 'duplicate', v_drop.id, 'orders_moved', v_moved);
end
$$;
revoke all on function app.merge_customers(uuid, uuid) from public;
grant execute on function app.merge_customers(uuid, uuid) to authenticated, service_role;

create function public.merge_customers(survivor_id uuid, duplicate_id uuid) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.merge_customers(survivor_id, duplicate_id)
$$;
revoke all on function public.merge_customers(uuid, uuid) from public;
grant execute on function public.merge_customers(uuid, uuid) to authenticated, service_role;

/** Admin answers from the materialized stats (managers; venue limits apply through RLS). */
create function public.top_customers(business_id uuid, n integer default 5, venue_id uuid default null)
returns table (customer_id uuid, full_name text, total_orders bigint, total_spent_cents bigint, last_order_at timestamptz)
language sql stable
set search_path = ''
as $$
  select s.customer_id, c.full_name, sum(s.total_orders)::bigint, sum(s.total_spent_cents)::bigint, max(s.last_order_at)
  from public.customer_venue_stats s join public.customers c on c.business_id = s.business_id and c.id = s.customer_id
  where s.business_id = top_customers.business_id and (top_customers.venue_id is null or s.venue_id = top_customers.venue_id)
    and c.anonymised_at is null
  group by s.customer_id, c.full_name
  order by sum(s.total_spent_cents) desc, s.customer_id
  limit least(greatest(n, 1), 1000)
$$;

create function public.customers_not_seen(business_id uuid, days integer, venue_id uuid default null)
returns table (customer_id uuid, full_name text, last_order_at timestamptz, days_since integer, total_orders bigint)
language sql stable
set search_path = ''
as $$
  select s.customer_id, c.full_name, max(s.last_order_at), (current_date - max(s.last_order_at)::date)::integer, sum(s.total_orders)::bigint
  from public.customer_venue_stats s join public.customers c on c.business_id = s.business_id and c.id = s.customer_id
  where s.business_id = customers_not_seen.business_id and (customers_not_seen.venue_id is null or s.venue_id = customers_not_seen.venue_id)
    and c.anonymised_at is null and s.total_orders > 0
  group by s.customer_id, c.full_name
  having max(s.last_order_at) < now() - make_interval(days => customers_not_seen.days)
  order by max(s.last_order_at)
$$;

create function public.segment_sizes(business_id uuid, venue_id uuid default null)
returns table (venue_id uuid, segment text, customers bigint)
language sql stable
set search_path = ''
as $$
  select s.venue_id, s.segment, count(*) from public.customer_venue_stats s
  where s.business_id = segment_sizes.business_id and (segment_sizes.venue_id is null or s.venue_id = segment_sizes.venue_id)
  group by s.venue_id, s.segment order by s.venue_id, s.segment
$$;
revoke all on function public.top_customers(uuid, integer, uuid), public.customers_not_seen(uuid, integer, uuid),
  public.segment_sizes(uuid, uuid) from public;
grant execute on function public.top_customers(uuid, integer, uuid), public.customers_not_seen(uuid, integer, uuid),
  public.segment_sizes(uuid, uuid) to authenticated, service_role;
