-- Staff PINs and re-authentication for sensitive actions. Each membership may have a 4-6 digit PIN,
-- kept only as a bcrypt hash (pgcrypto's crypt with gen_salt('bf')), locked for 15 minutes after 5
-- wrong tries, every set/verify/lock audited. verify_pin hands out a re-auth grant: a random token
-- bound to the user and the device, good for 5 minutes, of which only the SHA-256 is kept. When a
-- business requires it (businesses.require_pin_reauth), the sensitive actions refuse without one, in
-- SQL — app.require_fresh_pin, called from the RPCs and triggers below — so a client skipping the UI
-- cannot skip it. Clients send the grant the way PostgREST passes headers to SQL:
--   X-Brigade-Reauth: <grant token>    X-Brigade-Device: <the device id given to verify_pin>
-- Error codes in docs/errors.md (BR81x, BR82x).

-- section business setting
alter table public.businesses
  add column require_pin_reauth boolean not null default false;

-- section tables

/** A member's PIN: the bcrypt hash, the wrong tries since the last right one, the lockout. Private:
    no API role reads it; verify_pin and set_my_pin are the only ways in. */
create table app.staff_pins (
  business_id uuid not null,
  user_id uuid not null,
  pin_hash text not null,
  failed_attempts integer not null default 0,
  locked_until timestamptz,
  set_at timestamptz not null default now(),
  constraint staff_pins_pkey primary key (business_id, user_id),
  constraint staff_pins_membership_fkey foreign key (business_id, user_id)
    references public.memberships (business_id, user_id) on delete cascade
);

/** A re-auth grant: proof that this user typed their PIN on this device less than 5 minutes ago. */
create table app.reauth_grants (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  user_id uuid not null,
  device_id text not null,
  token_hash text not null,
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  constraint reauth_grants_pkey primary key (business_id, id),
  constraint reauth_grants_token_key unique (business_id, token_hash)
);

-- section indexes
create index reauth_grants_user_idx on app.reauth_grants (business_id, user_id, expires_at);
create index reauth_grants_token_idx on app.reauth_grants (token_hash);

-- section private helpers

/** The sensitive actions (the keys require_fresh_pin is called with and the audit log names). */
create function app.reauth_actions() returns text[]
language sql immutable
set search_path = ''
as $$
  select array['refund', 'cancel_paid_order', 'void_ticket', 'change_price', 'change_stock', 'export_customers',
               'change_role', 'reset_pin', 'change_pin', 'pin_setting']
$$;
revoke all on function app.reauth_actions() from public;
grant execute on function app.reauth_actions() to authenticated, service_role;

/** Refuses (BR820 reauth_required, BR821 reauth_expired) unless the caller holds a fresh re-auth
    grant for the business on the device its request names, when the business requires one (or
    p_always). Only the business's members are asked: the service role and the platform operator act
    without a PIN (webhooks, the worker, support), guests and customers serving themselves (cancelling
    their own booking, exporting their own data) have none, and callers outside the API (migrations,
    the superuser) neither. Audits each use. */
create function app.require_fresh_pin(p_business_id uuid, p_action text, p_always boolean default false) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_headers jsonb := coalesce(nullif(current_setting('request.headers', true), '')::jsonb, '{}'::jsonb);
  v_token text := nullif(v_headers ->> 'x-brigade-reauth', '');
  v_device text := nullif(v_headers ->> 'x-brigade-device', '');
  v_grant app.reauth_grants;
begin
  if p_action <> all (app.reauth_actions()) then
    perform app.fail('22023', 'unknown_action', format('%s is not a re-auth action', p_action));
  end if;
  if coalesce(auth.role(), '') <> 'authenticated' or app.is_platform_admin() or not app.is_member(p_business_id) then
    return;  -- not staff acting: the system, the operator, or a guest or customer serving themselves
  end if;
  if not p_always and not coalesce((select b.require_pin_reauth from public.businesses b where b.id = p_business_id), false) then
    return;
  end if;
  if v_token is not null and v_device is not null then
    select g.* into v_grant from app.reauth_grants g
    where g.token_hash = encode(extensions.digest(convert_to(v_token, 'UTF8'), 'sha256'), 'hex')
      and g.business_id = p_business_id and g.user_id = auth.uid() and g.device_id = v_device;
  end if;
  if v_grant.id is null then
    perform app.fail('BR820', 'reauth_required',
                     format('%s needs a fresh PIN: call verify_pin and send X-Brigade-Reauth and X-Brigade-Device', p_action));
  end if;
  if v_grant.expires_at <= now() then
    perform app.fail('BR821', 'reauth_expired', 'the PIN re-authentication is older than 5 minutes: enter the PIN again');
  end if;
  perform app.audit(p_business_id, 'reauth.used', jsonb_build_object('action', p_action, 'grant_id', v_grant.id,
                                                                     'device_id', v_grant.device_id));
end
$$;
revoke all on function app.require_fresh_pin(uuid, text, boolean) from public;
grant execute on function app.require_fresh_pin(uuid, text, boolean) to authenticated, service_role;

/** A PIN's shape: 4-6 digits, not one digit repeated, not a run up or down (1234, 9876). */
create function app.check_pin_format(p_pin text) returns void
language plpgsql immutable
set search_path = ''
as $$
begin
  if coalesce(p_pin, '') !~ '^[0-9]{4,6}$' then
    perform app.fail('BR810', 'invalid_pin', 'a PIN is 4 to 6 digits');
  end if;
  if p_pin ~ '^(.)\1+$' or strpos('01234567890', p_pin) > 0 or strpos('09876543210', p_pin) > 0 then
    perform app.fail('BR811', 'weak_pin', 'a PIN cannot be one digit repeated or a run like 1234');
  end if;
end
$$;
revoke all on function app.check_pin_format(text) from public;

-- section triggers

/** Refunds staff request (orders and bookings) need a fresh PIN. */
create function app.tg_refunds_reauth() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.source = 'brigade' then
    perform app.require_fresh_pin(new.business_id, 'refund');
  end if;
  return new;
end
$$;

/** Cancelling an order that holds money needs a fresh PIN. */
create function app.tg_orders_reauth() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status = 'cancelled' and old.status <> 'cancelled'
     and old.payment_status in ('paid', 'partially_refunded', 'disputed') then
    perform app.require_fresh_pin(new.business_id, 'cancel_paid_order');
  end if;
  return new;
end
$$;

/** Changing what customers pay needs a fresh PIN. */
create function app.tg_prices_reauth() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if to_jsonb(new) ->> tg_argv[0] is distinct from to_jsonb(old) ->> tg_argv[0] then
    perform app.require_fresh_pin(new.business_id, 'change_price');
  end if;
  return new;
end
$$;

/** Counting, adjusting, writing off or receiving stock by hand needs a fresh PIN (orders and
    refunds move stock through the ledger as the system). */
create function app.tg_stock_movements_reauth() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.reason in ('count', 'adjustment', 'waste', 'delivery') then
    perform app.require_fresh_pin(new.business_id, 'change_stock');
  end if;
  return new;
end
$$;

/** Changing a member's role needs a fresh PIN. */
create function app.tg_memberships_reauth() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.role is distinct from old.role then
    perform app.require_fresh_pin(new.business_id, 'change_role');
  end if;
  return new;
end
$$;

create trigger refunds_reauth before insert on public.refunds
  for each row execute function app.tg_refunds_reauth();
create trigger orders_reauth before update of status on public.orders
  for each row execute function app.tg_orders_reauth();
create trigger products_price_reauth before update of price_cents on public.products
  for each row execute function app.tg_prices_reauth('price_cents');
create trigger product_variants_price_reauth before update of price_adjustment_cents on public.product_variants
  for each row execute function app.tg_prices_reauth('price_adjustment_cents');
create trigger modifiers_price_reauth before update of price_cents on public.modifiers
  for each row execute function app.tg_prices_reauth('price_cents');
create trigger stock_movements_reauth before insert on public.stock_movements
  for each row execute function app.tg_stock_movements_reauth();
create trigger memberships_reauth before update of role on public.memberships
  for each row execute function app.tg_memberships_reauth();

-- section grants
revoke all on app.staff_pins, app.reauth_grants from public, anon, authenticated;

-- section rpc

/** Verify the caller's PIN for a business on a device. Right: a re-auth grant (token, 5 minutes,
    this user and device) and the wrong-try count reset. Wrong: the try is counted (so this answers
    rather than raises: an error would roll the count back); the fifth locks the PIN for 15 minutes,
    during which even the right PIN is refused. Answers {granted, reason: wrong_pin | locked,
    attempts_left, locked_until, grant_token, expires_at}. Raises PT404 (not a member), BR812 (no PIN
    set), 22023 (device id missing or longer than 200). Audited without the PIN. */
create function app.verify_pin(p_business_id uuid, p_pin text, p_device_id text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_pin app.staff_pins;
  v_token text;
  v_grant_id uuid;
  v_expires timestamptz := now() + interval '5 minutes';
begin
  if not app.is_member(p_business_id) then
    perform app.fail('PT404', 'business_not_found', 'no such business among yours');
  end if;
  if nullif(trim(coalesce(p_device_id, '')), '') is null or length(p_device_id) > 200 then
    perform app.fail('22023', 'invalid_device_id', 'a device id (1-200 characters) binds the grant to this device');
  end if;
  select p.* into v_pin from app.staff_pins p where p.business_id = p_business_id and p.user_id = auth.uid() for update;
  if v_pin.user_id is null then
    perform app.fail('BR812', 'no_pin', 'set a PIN first (set_my_pin)');
  end if;
  if v_pin.locked_until > now() then
    perform app.audit(p_business_id, 'pin.refused_locked', jsonb_build_object('user_id', auth.uid(), 'device_id', p_device_id));
    return jsonb_build_object('granted', false, 'reason', 'locked', 'attempts_left', 0, 'locked_until', v_pin.locked_until);
  end if;
  if extensions.crypt(coalesce(p_pin, ''), v_pin.pin_hash) <> v_pin.pin_hash then
    update app.staff_pins set
      failed_attempts = case when v_pin.failed_attempts + 1 >= 5 then 0 else v_pin.failed_attempts + 1 end,
      locked_until = case when v_pin.failed_attempts + 1 >= 5 then now() + interval '15 minutes' end
    where business_id = p_business_id and user_id = v_pin.user_id
    returning * into v_pin;
    perform app.audit(p_business_id, case when v_pin.locked_until is not null then 'pin.locked' else 'pin.failed' end,
                      jsonb_build_object('user_id', auth.uid(), 'device_id', p_device_id));
    if v_pin.locked_until is not null then
      return jsonb_build_object('granted', false, 'reason', 'locked', 'attempts_left', 0, 'locked_until', v_pin.locked_until);
    end if;
    return jsonb_build_object('granted', false, 'reason', 'wrong_pin', 'attempts_left', 5 - v_pin.failed_attempts,
                              'locked_until', null);
  end if;
  update app.staff_pins set failed_attempts = 0, locked_until = null where business_id = p_business_id and user_id = v_pin.user_id;
  v_token := 'rea_' || encode(extensions.gen_random_bytes(32), 'hex');
  insert into app.reauth_grants (business_id, user_id, device_id, token_hash, expires_at)
  values (p_business_id, auth.uid(), p_device_id, encode(extensions.digest(convert_to(v_token, 'UTF8'), 'sha256'), 'hex'), v_expires)
  returning id into v_grant_id;
  delete from app.reauth_grants g where g.business_id = p_business_id and g.user_id = auth.uid() and g.expires_at < now() - interval '1 day';
  perform app.audit(p_business_id, 'pin.verified', jsonb_build_object('user_id', auth.uid(), 'device_id', p_device_id,
                                                                      'grant_id', v_grant_id));
  return jsonb_build_object('granted', true, 'reason', null, 'attempts_left', 5, 'locked_until', null,
                            'grant_token', v_token, 'expires_at', v_expires);
end
$$;
revoke all on function app.verify_pin(uuid, text, text) from public;
grant execute on function app.verify_pin(uuid, text, text) to authenticated;

create function public.verify_pin(business_id uuid, pin text, device_id text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.verify_pin(business_id, pin, device_id)
$$;
revoke all on function public.verify_pin(uuid, text, text) from public;
grant execute on function public.verify_pin(uuid, text, text) to authenticated;

/** Set the caller's own PIN for a business (any member). Changing an existing PIN needs a fresh
    grant from the old one, whatever the business setting. Raises PT404 (not a member), BR810
    (format), BR811 (weak), BR820/BR821 (changing without a fresh grant). Audited without the PIN. */
create function app.set_my_pin(p_business_id uuid, p_pin text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_changed boolean;
begin
  if not app.is_member(p_business_id) then
    perform app.fail('PT404', 'business_not_found', 'no such business among yours');
  end if;
  perform app.check_pin_format(p_pin);
  v_changed := exists (select 1 from app.staff_pins p where p.business_id = p_business_id and p.user_id = auth.uid());
  if v_changed then
    perform app.require_fresh_pin(p_business_id, 'change_pin', true);
  end if;
  insert into app.staff_pins as p (business_id, user_id, pin_hash)
  values (p_business_id, auth.uid(), extensions.crypt(p_pin, extensions.gen_salt('bf', 10)))
  on conflict (business_id, user_id) do update set pin_hash = excluded.pin_hash, failed_attempts = 0, locked_until = null,
    set_at = now();
  perform app.audit(p_business_id, case when v_changed then 'pin.changed' else 'pin.set' end, jsonb_build_object('user_id', auth.uid()));
  return jsonb_build_object('pin_set', true);
end
$$;
revoke all on function app.set_my_pin(uuid, text) from public;
grant execute on function app.set_my_pin(uuid, text) to authenticated;

create function public.set_my_pin(business_id uuid, pin text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.set_my_pin(business_id, pin)
$$;
revoke all on function public.set_my_pin(uuid, text) from public;
grant execute on function public.set_my_pin(uuid, text) to authenticated;

/** Owners (anyone) and managers (staff and drivers) clear a member's PIN — forgotten or locked — so
    they set a new one; their own fresh PIN is needed when the business requires it. Raises PT404. */
create function app.reset_staff_pin(p_membership_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_member public.memberships;
begin
  select m.* into v_member from public.memberships m where m.id = p_membership_id;
  if v_member.id is null or not (app.is_member(v_member.business_id, '{owner}')
                                 or (app.is_member(v_member.business_id, '{manager}') and v_member.role in ('staff', 'driver'))) then
    perform app.fail('PT404', 'member_not_found', 'no such member you may reset');
  end if;
  perform app.require_fresh_pin(v_member.business_id, 'reset_pin');
  delete from app.staff_pins p where p.business_id = v_member.business_id and p.user_id = v_member.user_id;
  perform app.audit(v_member.business_id, 'pin.reset', jsonb_build_object('user_id', v_member.user_id, 'membership_id', v_member.id));
  return jsonb_build_object('membership_id', v_member.id, 'pin_set', false);
end
$$;
revoke all on function app.reset_staff_pin(uuid) from public;
grant execute on function app.reset_staff_pin(uuid) to authenticated, service_role;

create function public.reset_staff_pin(membership_id uuid) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.reset_staff_pin(membership_id)
$$;
revoke all on function public.reset_staff_pin(uuid) from public;
grant execute on function public.reset_staff_pin(uuid) to authenticated, service_role;

/** Whether the caller has a PIN for the business, and whether it is locked (for the UI). */
create function app.my_pin_status(p_business_id uuid) returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select jsonb_build_object('pin_set', p.user_id is not null, 'locked_until', case when p.locked_until > now() then p.locked_until end,
                            'required', coalesce(b.require_pin_reauth, false))
  from public.businesses b left join app.staff_pins p on p.business_id = b.id and p.user_id = auth.uid()
  where b.id = p_business_id and app.is_member(b.id)
$$;
revoke all on function app.my_pin_status(uuid) from public;
grant execute on function app.my_pin_status(uuid) to authenticated;

create function public.my_pin_status(business_id uuid) returns jsonb
language sql stable
set search_path = ''
as $$
  select app.my_pin_status(business_id)
$$;
revoke all on function public.my_pin_status(uuid) from public;
grant execute on function public.my_pin_status(uuid) to authenticated;

/** The owner switches the PIN requirement for the business's sensitive actions. Switching it off
    needs a fresh PIN (it is on at that moment). Raises PT404 (not the owner). Audited. */
create function app.set_pin_reauth(p_business_id uuid, p_required boolean) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if not (app.is_member(p_business_id, '{owner}') or app.is_platform_or_service()) then
    perform app.fail('PT404', 'business_not_found', 'no such business that you own');
  end if;
  if not coalesce(p_required, false) then
    perform app.require_fresh_pin(p_business_id, 'pin_setting');
  end if;
  update public.businesses set require_pin_reauth = coalesce(p_required, false) where id = p_business_id;
  perform app.audit(p_business_id, 'pin.requirement_set', jsonb_build_object('required', coalesce(p_required, false)));
  return jsonb_build_object('business_id', p_business_id, 'require_pin_reauth', coalesce(p_required, false));
end
$$;
revoke all on function app.set_pin_reauth(uuid, boolean) from public;
grant execute on function app.set_pin_reauth(uuid, boolean) to authenticated, service_role;

create function public.set_pin_reauth(business_id uuid, required boolean) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.set_pin_reauth(business_id, required)
$$;
revoke all on function public.set_pin_reauth(uuid, boolean) from public;
grant execute on function public.set_pin_reauth(uuid, boolean) to authenticated, service_role;

/** Customer export (0008) with the re-auth check for the business's members: exporting a customer's
    dossier is a sensitive action. The customer exporting their own data and the operator are not asked. */
create or replace function app.export_customer(customer_id uuid) returns jsonb
language plpgsql volatile security definer
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
  if not coalesce(v_customer.user_id = auth.uid(), false) then
    perform app.require_fresh_pin(v_customer.business_id, 'export_customers');
  end if;
  return app.export_customer(v_customer.business_id, v_customer.id);
end
$$;

create or replace function public.export_customer(customer_id uuid) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.export_customer(customer_id)
$$;
