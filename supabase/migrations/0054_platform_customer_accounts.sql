-- Customer accounts: signed-in customers (Supabase auth users linked through customers.user_id) keep
-- their profile, delivery addresses with coordinates and saved payment methods' metadata (never card
-- numbers), read their order history and reorder; a guest claims past orders by a code sent to the
-- email or phone they ordered with (5 attempts, 10 minutes). Codes BR74x (docs/errors.md).

-- section tables

/** A customer's delivery address at one business, with coordinates for the delivery radius. The
    customer (signed in) manages them; the business's staff read them. */
create table public.customer_addresses (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  customer_id uuid not null,
  label text not null default '' constraint customer_addresses_label_length check (length(label) <= 60),
  line1 text not null constraint customer_addresses_line1_length check (length(line1) between 1 and 200),
  line2 text,
  city text,
  region text,
  postal_code text,
  country text constraint customer_addresses_country_format check (country is null or country ~ '^[A-Z]{2}$'),
  latitude double precision constraint customer_addresses_latitude_range check (latitude between -90 and 90),
  longitude double precision constraint customer_addresses_longitude_range check (longitude between -180 and 180),
  delivery_instructions text not null default '' constraint customer_addresses_instructions_length check (length(delivery_instructions) <= 500),
  is_default boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint customer_addresses_pkey primary key (business_id, id),
  constraint customer_addresses_customer_fkey foreign key (business_id, customer_id)
    references public.customers (business_id, id) on delete cascade,
  constraint customer_addresses_coordinates check ((latitude is null) = (longitude is null))
);
alter table public.customer_addresses enable row level security;

/** A saved payment method's metadata as the provider reports it (brand, last four digits, expiry,
    the provider's id). There is deliberately no column that could hold a card number. Written by
    the service (Stripe SetupIntent); the customer reads, sets the default and deletes. */
create table public.customer_payment_methods (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  customer_id uuid not null,
  provider text not null default 'stripe' constraint customer_payment_methods_provider_valid check (provider in ('stripe')),
  provider_payment_method_id text not null constraint customer_payment_methods_pm_format check (provider_payment_method_id ~ '^pm_[A-Za-z0-9_]+$'),
  brand text not null constraint customer_payment_methods_brand_length check (length(brand) between 1 and 30),
  last4 text not null constraint customer_payment_methods_last4_format check (last4 ~ '^[0-9]{4}$'),
  exp_month smallint not null constraint customer_payment_methods_exp_month_range check (exp_month between 1 and 12),
  exp_year smallint not null constraint customer_payment_methods_exp_year_range check (exp_year between 2000 and 2100),
  is_default boolean not null default false,
  created_at timestamptz not null default now(),
  constraint customer_payment_methods_pkey primary key (business_id, id),
  constraint customer_payment_methods_provider_key unique (business_id, provider_payment_method_id),
  constraint customer_payment_methods_customer_fkey foreign key (business_id, customer_id)
    references public.customers (business_id, id) on delete cascade
);
alter table public.customer_payment_methods enable row level security;

/** One-time codes proving a signed-in user owns the email or phone past guest orders were placed
    with. HMAC only; 5 attempts; 10 minutes. Not exposed. */
create table app.customer_claim_codes (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  channel text not null check (channel in ('email', 'sms')),
  destination text not null,
  code_hash text not null,
  attempts integer not null default 0,
  expires_at timestamptz not null default now() + interval '10 minutes',
  verified_at timestamptz,
  created_at timestamptz not null default now(),
  primary key (business_id, id)
);

-- section indexes
create index customer_addresses_customer_idx on public.customer_addresses (business_id, customer_id);
create unique index customer_addresses_default_key on public.customer_addresses (business_id, customer_id) where is_default;
create index customer_payment_methods_customer_idx on public.customer_payment_methods (business_id, customer_id);
create unique index customer_payment_methods_default_key on public.customer_payment_methods (business_id, customer_id) where is_default;
create index customer_claim_codes_user_idx on app.customer_claim_codes (user_id, created_at desc);
create index orders_guest_email_idx on public.orders (business_id, lower(guest_email)) where user_id is null;
create index orders_guest_phone_idx on public.orders (business_id, guest_phone) where user_id is null;

-- section private helpers

/** The customer rows (per business) of the signed-in user. Security definer: policies of other
    tables use it without depending on the customers table's own policies. */
create function app.my_customer_keys() returns table (business_id uuid, customer_id uuid)
language sql stable security definer
set search_path = ''
as $$
  select c.business_id, c.id from public.customers c where c.user_id = (select auth.uid())
$$;
revoke all on function app.my_customer_keys() from public;
grant execute on function app.my_customer_keys() to authenticated, service_role;

create function app.claim_code_hash(p_claim_id uuid, p_code text) returns text
language sql stable security definer
set search_path = ''
as $$
  select encode(extensions.hmac(convert_to('claim:' || p_claim_id::text || ':' || p_code, 'UTF8'),
                                coalesce((select s.value from app.secrets s where s.name = 'pickup_code_pepper'), '\x00'::bytea),
                                'sha256'), 'hex')
$$;
revoke all on function app.claim_code_hash(uuid, text) from public;
grant execute on function app.claim_code_hash(uuid, text) to service_role;

-- section triggers

/** Setting a new default unsets the previous one (addresses and payment methods). */
create function app.tg_customer_default_unique() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.is_default then
    execute format('update public.%I set is_default = false where business_id = $1 and customer_id = $2 and id <> $3 and is_default',
                   tg_table_name) using new.business_id, new.customer_id, new.id;
  end if;
  return new;
end
$$;

create trigger customer_addresses_default before insert or update of is_default on public.customer_addresses
  for each row when (new.is_default) execute function app.tg_customer_default_unique();
create trigger customer_addresses_touch before update on public.customer_addresses
  for each row execute function app.tg_touch_updated_at();
create trigger customer_payment_methods_default before insert or update of is_default on public.customer_payment_methods
  for each row when (new.is_default) execute function app.tg_customer_default_unique();

-- section policies
create policy "customers read their addresses" on public.customer_addresses for select to authenticated
  using ((business_id, customer_id) in (select k.business_id, k.customer_id from app.my_customer_keys() k));
create policy "customers add addresses" on public.customer_addresses for insert to authenticated
  with check ((business_id, customer_id) in (select k.business_id, k.customer_id from app.my_customer_keys() k));
create policy "customers edit their addresses" on public.customer_addresses for update to authenticated
  using ((business_id, customer_id) in (select k.business_id, k.customer_id from app.my_customer_keys() k))
  with check ((business_id, customer_id) in (select k.business_id, k.customer_id from app.my_customer_keys() k));
create policy "customers delete their addresses" on public.customer_addresses for delete to authenticated
  using ((business_id, customer_id) in (select k.business_id, k.customer_id from app.my_customer_keys() k));
create policy "staff read customer addresses" on public.customer_addresses for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager,staff}')));

create policy "customers read their payment methods" on public.customer_payment_methods for select to authenticated
  using ((business_id, customer_id) in (select k.business_id, k.customer_id from app.my_customer_keys() k));
create policy "customers choose their default payment method" on public.customer_payment_methods for update to authenticated
  using ((business_id, customer_id) in (select k.business_id, k.customer_id from app.my_customer_keys() k))
  with check ((business_id, customer_id) in (select k.business_id, k.customer_id from app.my_customer_keys() k));
create policy "customers delete their payment methods" on public.customer_payment_methods for delete to authenticated
  using ((business_id, customer_id) in (select k.business_id, k.customer_id from app.my_customer_keys() k));

-- section grants
revoke all on public.customer_addresses, public.customer_payment_methods from anon, authenticated;
revoke all on app.customer_claim_codes from public, anon, authenticated;
grant select, delete, insert (business_id, customer_id, label, line1, line2, city, region, postal_code, country, latitude, longitude,
                              delivery_instructions, is_default),
      update (label, line1, line2, city, region, postal_code, country, latitude, longitude, delivery_instructions, is_default)
  on public.customer_addresses to authenticated;
grant select, delete, update (is_default) on public.customer_payment_methods to authenticated;
grant all on public.customer_addresses, public.customer_payment_methods, app.customer_claim_codes to service_role;

-- section rpc

/** The signed-in user's customer profile at a business, created on first call (found by user, then
    phone, then email like the order flow does). Returns the profile. Raises 42501 (not signed in),
    PT404 (no such business or storefront not live), BR113 (bad phone/email). */
create function app.upsert_my_profile(p_business_id uuid, p_full_name text, p_phone text, p_email text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_phone text := app.normalize_phone(p_phone);
  v_email text := nullif(lower(trim(coalesce(p_email, auth.email()))), '');
  v_id uuid;
begin
  if auth.uid() is null then
    perform app.fail('42501', 'sign_in_required', 'sign in to keep a profile');
  end if;
  if not app.business_active(p_business_id) then
    perform app.fail('PT404', 'not_found', 'business not found');
  end if;
  if nullif(trim(p_phone), '') is not null and coalesce(v_phone, '') !~ '^\+?[0-9]{7,15}$' then
    perform app.fail('BR113', 'invalid_phone', 'the phone number is not valid');
  end if;
  if v_email is not null and v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
    perform app.fail('BR113', 'invalid_email', 'the email address is not valid');
  end if;
  select c.id into v_id from public.customers c where c.business_id = p_business_id and c.user_id = auth.uid();
  if v_id is null then
    insert into public.customers (business_id, user_id, full_name, phone, email)
    values (p_business_id, auth.uid(), nullif(trim(p_full_name), ''), v_phone, v_email)
    returning id into v_id;
  else
    update public.customers set full_name = coalesce(nullif(trim(p_full_name), ''), full_name),
      phone = coalesce(v_phone, phone), email = coalesce(v_email, email)
    where business_id = p_business_id and id = v_id;
  end if;
  return (select to_jsonb(c) - 'allergens' || jsonb_build_object('allergens', c.allergens)
          from public.customers c where c.business_id = p_business_id and c.id = v_id);
end
$$;
revoke all on function app.upsert_my_profile(uuid, text, text, text) from public;
grant execute on function app.upsert_my_profile(uuid, text, text, text) to authenticated, service_role;

create function public.upsert_my_profile(business_id uuid, full_name text default null, phone text default null, email text default null)
returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.upsert_my_profile(business_id, full_name, phone, email)
$$;
revoke all on function public.upsert_my_profile(uuid, text, text, text) from public, anon;
grant execute on function public.upsert_my_profile(uuid, text, text, text) to authenticated, service_role;

/** Service (the Stripe SetupIntent webhook): records a saved card's metadata for a customer. */
create function app.save_payment_method(p_business_id uuid, p_customer_id uuid, p_pm jsonb) returns uuid
language sql volatile security definer
set search_path = ''
as $$
  insert into public.customer_payment_methods (business_id, customer_id, provider_payment_method_id, brand, last4, exp_month, exp_year, is_default)
  values (p_business_id, p_customer_id, p_pm ->> 'id', p_pm -> 'card' ->> 'brand', p_pm -> 'card' ->> 'last4',
          (p_pm -> 'card' ->> 'exp_month')::smallint, (p_pm -> 'card' ->> 'exp_year')::smallint,
          not exists (select 1 from public.customer_payment_methods m where m.business_id = p_business_id and m.customer_id = p_customer_id))
  on conflict (business_id, provider_payment_method_id) do update
    set brand = excluded.brand, last4 = excluded.last4, exp_month = excluded.exp_month, exp_year = excluded.exp_year
  returning id
$$;
revoke all on function app.save_payment_method(uuid, uuid, jsonb) from public;
grant execute on function app.save_payment_method(uuid, uuid, jsonb) to service_role;

/** The signed-in customer's orders across businesses (newest first) with their lines. */
create function public.my_orders(lim integer default 50) returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(jsonb_agg(x.o order by x.placed_at desc), '[]'::jsonb)
  from (
    select o.placed_at, jsonb_build_object('order_id', o.id, 'business_id', o.business_id, 'venue_id', o.venue_id,
             'order_number', o.order_number, 'status', o.status, 'payment_status', o.payment_status, 'fulfilment', o.fulfilment,
             'total_cents', o.total_cents, 'currency', o.currency, 'placed_at', o.placed_at,
             'items', (select coalesce(jsonb_agg(jsonb_build_object('product_id', i.product_id, 'name', i.name, 'variant', i.variant_name,
                                                                    'quantity', i.quantity, 'line_total_cents', i.line_total_cents)
                                                 order by i.line_number), '[]')
                       from public.order_items i where i.business_id = o.business_id and i.order_id = o.id)) as o
    from public.orders o
    where o.user_id = (select auth.uid())
    order by o.placed_at desc
    limit least(greatest(coalesce(lim, 50), 1), 200)
  ) x
$$;
revoke all on function public.my_orders(integer) from public, anon;
grant execute on function public.my_orders(integer) to authenticated, service_role;

/** Places the same order again (today's prices and availability, the same venue, fulfilment,
    address and contact). Only the order's own signed-in customer. Raises PT404 (not theirs) and
    whatever place_order raises (closed, unavailable, limits). */
create function app.reorder(p_order_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
begin
  select o.* into v_order from public.orders o where o.id = p_order_id;
  if v_order.id is null or auth.uid() is null or v_order.user_id is distinct from auth.uid() then
    perform app.fail('PT404', 'not_found', 'no such order of yours');
  end if;
  return app.place_order(jsonb_strip_nulls(jsonb_build_object(
    'venue_id', v_order.venue_id, 'channel', 'web', 'fulfilment', v_order.fulfilment, 'table_ref', v_order.table_ref,
    'delivery_address', v_order.delivery_address,
    'customer', jsonb_build_object('name', v_order.guest_name, 'phone', v_order.guest_phone, 'email', v_order.guest_email),
    'items', (select jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                'product_id', i.product_id, 'variant_id', i.variant_id, 'quantity', i.quantity, 'notes', nullif(i.notes, ''),
                'modifier_ids', (select coalesce(jsonb_agg(m ->> 'id'), '[]'::jsonb) from jsonb_array_elements(i.modifiers) m)))
              order by i.line_number)
              from public.order_items i where i.business_id = v_order.business_id and i.order_id = v_order.id),
    'reorder_of', v_order.id)));
end
$$;
revoke all on function app.reorder(uuid) from public;
grant execute on function app.reorder(uuid) to authenticated, service_role;

create function public.reorder(order_id uuid) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.reorder(order_id)
$$;
revoke all on function public.reorder(uuid) from public, anon;
grant execute on function public.reorder(uuid) to authenticated, service_role;

/** A signed-in user asks to claim past guest orders at a business placed with this email or phone:
    a 6-digit code goes there (event customer.claim_requested). Answers the same whether or not any
    order matches. At most 5 requests per hour per user and business (BR741). */
create function app.request_order_claim(p_business_id uuid, p_channel text, p_destination text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_dest text;
  v_id uuid := extensions.gen_random_uuid();
  v_code text := lpad((floor(random() * 1000000))::int::text, 6, '0');
  v_name text;
begin
  if auth.uid() is null then
    perform app.fail('42501', 'sign_in_required', 'sign in first, then claim your orders');
  end if;
  select b.name into v_name from public.businesses b where b.id = p_business_id and b.status = 'active';
  if v_name is null then
    perform app.fail('PT404', 'not_found', 'business not found');
  end if;
  if p_channel = 'email' then
    v_dest := nullif(lower(trim(p_destination)), '');
    if v_dest is null or v_dest !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
      perform app.fail('BR113', 'invalid_email', 'the email address is not valid');
    end if;
  elsif p_channel = 'sms' then
    v_dest := app.normalize_phone(p_destination);
    if coalesce(v_dest, '') !~ '^\+?[0-9]{7,15}$' then
      perform app.fail('BR113', 'invalid_phone', 'the phone number is not valid');
    end if;
  else
    perform app.fail('22023', 'invalid_input', 'channel is email or sms');
  end if;
  if (select count(*) from app.customer_claim_codes c where c.user_id = auth.uid() and c.business_id = p_business_id
      and c.created_at > now() - interval '1 hour') >= 5 then
    perform app.fail('BR741', 'too_many_requests', 'too many codes requested; try again in an hour');
  end if;
  insert into app.customer_claim_codes (business_id, id, user_id, channel, destination, code_hash)
  values (p_business_id, v_id, auth.uid(), p_channel, v_dest, app.claim_code_hash(v_id, v_code));
  perform app.emit('customer.claim_requested', p_business_id, jsonb_build_object(
    'claim_id', v_id, 'channel', p_channel, 'destination', v_dest, 'code', v_code, 'business_name', v_name));
  return jsonb_build_object('claim_id', v_id, 'expires_at', now() + interval '10 minutes', 'channel', p_channel);
end
$$;
revoke all on function app.request_order_claim(uuid, text, text) from public;
grant execute on function app.request_order_claim(uuid, text, text) to authenticated, service_role;

create function public.request_order_claim(business_id uuid, channel text, destination text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.request_order_claim(business_id, channel, destination)
$$;
revoke all on function public.request_order_claim(uuid, text, text) from public, anon;
grant execute on function public.request_order_claim(uuid, text, text) to authenticated, service_role;

/** Checks a claim code. Right: the guest orders (and the guest customer record, if the user has none
    at this business yet) placed with that email/phone become the user's. Wrong, expired or a sixth
    try: {"verified": false, "reason": …, "attempts_left": n} — not raised, so the attempt counts. */
create function app.verify_order_claim(p_claim_id uuid, p_code text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_claim app.customer_claim_codes;
  v_orders integer;
begin
  select c.* into v_claim from app.customer_claim_codes c where c.id = p_claim_id and c.user_id = auth.uid() for update;
  if v_claim.id is null then
    perform app.fail('PT404', 'not_found', 'no such claim');
  end if;
  if v_claim.verified_at is not null then
    return jsonb_build_object('verified', false, 'reason', 'already_used', 'attempts_left', 0);
  end if;
  if v_claim.attempts >= 5 then
    return jsonb_build_object('verified', false, 'reason', 'too_many_attempts', 'attempts_left', 0);
  end if;
  if v_claim.expires_at <= now() then
    return jsonb_build_object('verified', false, 'reason', 'expired', 'attempts_left', 5 - v_claim.attempts);
  end if;
  update app.customer_claim_codes set attempts = attempts + 1 where business_id = v_claim.business_id and id = v_claim.id;
  if v_claim.code_hash <> app.claim_code_hash(v_claim.id, coalesce(p_code, '')) then
    return jsonb_build_object('verified', false,
      'reason', case when v_claim.attempts + 1 >= 5 then 'too_many_attempts' else 'wrong_code' end,
      'attempts_left', 5 - v_claim.attempts - 1);
  end if;

  update app.customer_claim_codes set verified_at = now() where business_id = v_claim.business_id and id = v_claim.id;
  update public.orders o set user_id = v_claim.user_id
  where o.business_id = v_claim.business_id and o.user_id is null
    and ((v_claim.channel = 'email' and lower(o.guest_email) = v_claim.destination)
         or (v_claim.channel = 'sms' and o.guest_phone = v_claim.destination));
  get diagnostics v_orders = row_count;
  if not exists (select 1 from public.customers c where c.business_id = v_claim.business_id and c.user_id = v_claim.user_id) then
    update public.customers c set user_id = v_claim.user_id
    where c.business_id = v_claim.business_id and c.id = (
      select c2.id from public.customers c2
      where c2.business_id = v_claim.business_id and c2.user_id is null
        and ((v_claim.channel = 'email' and lower(c2.email) = v_claim.destination)
             or (v_claim.channel = 'sms' and c2.phone = v_claim.destination))
      order by c2.created_at limit 1);
  end if;
  return jsonb_build_object('verified', true, 'claimed_orders', v_orders, 'business_id', v_claim.business_id);
end
$$;
revoke all on function app.verify_order_claim(uuid, text) from public;
grant execute on function app.verify_order_claim(uuid, text) to authenticated, service_role;

create function public.verify_order_claim(claim_id uuid, code text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.verify_order_claim(claim_id, code)
$$;
revoke all on function public.verify_order_claim(uuid, text) from public, anon;
grant execute on function public.verify_order_claim(uuid, text) to authenticated, service_role;
