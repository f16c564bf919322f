-- Gift cards (issue 23 item 4), part 1: the card, its append-only balance ledger, the business's
-- expiry setting (a local-law matter), the code (generated once paid, stored only as a SHA-256 hash of
-- its normalised form, sent once), balance checks rate-limited per client IP and per business (a wrong
-- code counts), and redemption against an order as full or partial payment: the held amount is a
-- `redeem` ledger row, given back (`release`) when the order's Checkout session expires, the order is
-- cancelled unpaid, or it is left unpaid for a day. Error codes BR140–BR149 (docs/errors.md).

-- section tables

alter table public.businesses add column gift_card_expiry_months integer default 36
  constraint businesses_gift_card_expiry_range check (gift_card_expiry_months between 1 and 600);
comment on column public.businesses.gift_card_expiry_months is
  'months a gift card stays valid after purchase (null: never expires), set per local law';

/** A gift card sold by a business. Bought through a Stripe Checkout Session (status pending until
    paid); the code exists only once paid, kept as code_hash (SHA-256 of the normalised code) and its
    last four characters. balance_cents is the sum of its ledger, kept by the ledger's trigger.
    Managers read their business's cards; nobody writes them but the functions. */
create table public.gift_cards (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  code_hash text,
  code_last4 text,
  initial_cents integer not null constraint gift_cards_initial_range check (initial_cents between 100 and 100000),
  balance_cents integer not null default 0 constraint gift_cards_balance_nonnegative check (balance_cents >= 0),
  currency text not null,
  status text not null default 'pending'
    constraint gift_cards_status_valid check (status in ('pending', 'active', 'expired')),
  expires_at timestamptz,
  purchaser_name text,
  purchaser_email text not null,
  recipient_name text,
  recipient_email text,
  message text not null default '' constraint gift_cards_message_length check (length(message) <= 500),
  access_token uuid not null default extensions.gen_random_uuid(),
  checkout_session_id text,
  checkout_url text,
  checkout_expires_at timestamptz,
  payment_intent_id text,
  issued_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint gift_cards_pkey primary key (business_id, id),
  constraint gift_cards_business_code_key unique (business_id, code_hash),
  constraint gift_cards_code_when_issued check ((status = 'pending') = (code_hash is null))
);
alter table public.gift_cards enable row level security;

/** Every movement of a gift card's balance, append-only: issue (+, once, when paid), redeem (-, held
    against an order), release (+, a hold given back), refund_back (+, an order refund's gift part,
    once per refund), expire (-, what was left at expiry). The balance is their sum. */
create table public.gift_card_ledger (
  business_id uuid not null,
  id bigint generated always as identity,
  gift_card_id uuid not null,
  kind text not null constraint gift_card_ledger_kind_valid check (kind in ('issue', 'redeem', 'release', 'refund_back', 'expire')),
  amount_cents integer not null,
  order_id uuid,
  refund_id uuid,
  note text not null default '',
  created_by uuid,
  created_at timestamptz not null default now(),
  constraint gift_card_ledger_pkey primary key (business_id, id),
  constraint gift_card_ledger_card_fkey foreign key (business_id, gift_card_id) references public.gift_cards (business_id, id) on delete cascade,
  constraint gift_card_ledger_sign check (case when kind in ('issue', 'release', 'refund_back') then amount_cents > 0 else amount_cents < 0 end),
  constraint gift_card_ledger_order check (kind not in ('redeem', 'release') or order_id is not null),
  constraint gift_card_ledger_refund check (kind <> 'refund_back' or refund_id is not null)
);
alter table public.gift_card_ledger enable row level security;

alter table public.orders
  add column gift_card_id uuid,
  add column gift_card_cents integer not null default 0,
  add constraint orders_gift_card_fkey foreign key (business_id, gift_card_id) references public.gift_cards (business_id, id),
  add constraint orders_gift_card_amount check (gift_card_cents between 0 and total_cents and (gift_card_cents = 0 or gift_card_id is not null));

/* The part of a refund that goes back to the gift card (the rest goes back through Stripe). */
alter table public.refunds
  add column gift_card_cents integer not null default 0,
  add constraint refunds_gift_card_part check (gift_card_cents between 0 and amount_cents);

-- section indexes
create index gift_cards_business_idx on public.gift_cards (business_id, created_at desc);
create index gift_cards_checkout_session_idx on public.gift_cards (checkout_session_id) where checkout_session_id is not null;
create index gift_cards_expiry_idx on public.gift_cards (expires_at) where status = 'active';
create index gift_card_ledger_card_idx on public.gift_card_ledger (business_id, gift_card_id, id);
create index gift_card_ledger_order_idx on public.gift_card_ledger (business_id, order_id) where order_id is not null;
create unique index gift_card_ledger_one_issue on public.gift_card_ledger (business_id, gift_card_id) where kind = 'issue';
create unique index gift_card_ledger_one_refund_back on public.gift_card_ledger (business_id, refund_id) where kind = 'refund_back';
create index orders_gift_card_idx on public.orders (business_id, gift_card_id) where gift_card_id is not null;

-- section private helpers

/** A code as people type it: upper case, without spaces, dashes or anything but letters and digits. */
create function app.gift_card_normalise(p_code text) returns text
language sql immutable
set search_path = ''
as $$
  select upper(regexp_replace(coalesce(p_code, ''), '[^A-Za-z0-9]', '', 'g'))
$$;
revoke all on function app.gift_card_normalise(text) from public;
grant execute on function app.gift_card_normalise(text) to service_role;

/** What is stored of a code: the hex SHA-256 of its normalised form. */
create function app.gift_card_code_hash(p_code text) returns text
language sql immutable
set search_path = ''
as $$
  select encode(extensions.digest(convert_to(app.gift_card_normalise(p_code), 'UTF8'), 'sha256'), 'hex')
$$;
revoke all on function app.gift_card_code_hash(text) from public;
grant execute on function app.gift_card_code_hash(text) to service_role;

/** A new code: 16 characters from a 32-letter alphabet without 0/O/1/I (80 bits from the CSPRNG,
    each byte taken mod 32, which is unbiased), shown as XXXX-XXXX-XXXX-XXXX. */
create function app.gift_card_new_code() returns text
language sql volatile
set search_path = ''
as $$
  select string_agg(substr('ABCDEFGHJKLMNPQRSTUVWXYZ23456789', get_byte(r.b, i) % 32 + 1, 1)
                    || case when i in (3, 7, 11) then '-' else '' end, '' order by i)
  from (select extensions.gen_random_bytes(16) as b) r, generate_series(0, 15) i
$$;
revoke all on function app.gift_card_new_code() from public;
grant execute on function app.gift_card_new_code() to service_role;

/** The card a code names at a business, locked, or null. */
create function app.gift_card_by_code(p_business_id uuid, p_code text) returns public.gift_cards
language sql volatile security definer
set search_path = ''
as $$
  select g.* from public.gift_cards g
  where g.business_id = p_business_id and g.code_hash = app.gift_card_code_hash(p_code)
    and length(app.gift_card_normalise(p_code)) between 8 and 32
  for update
$$;
revoke all on function app.gift_card_by_code(uuid, text) from public;
grant execute on function app.gift_card_by_code(uuid, text) to service_role;

/** Why a card cannot pay now (null when it can): not_active, expired, empty. */
create function app.gift_card_unusable(p_card public.gift_cards) returns text
language sql stable
set search_path = ''
as $$
  select case when p_card.status = 'expired' or (p_card.expires_at is not null and p_card.expires_at <= now()) then 'expired'
              when p_card.status <> 'active' then 'not_active'
              when p_card.balance_cents <= 0 then 'empty' end
$$;
revoke all on function app.gift_card_unusable(public.gift_cards) from public;
grant execute on function app.gift_card_unusable(public.gift_cards) to service_role;

/** Issues a paid card (the Checkout webhook, in its transaction): a new code, hashed; the issue ledger
    row; the code emailed once to the recipient (else the purchaser) through the gift_card.issued event,
    the only place it exists in clear. Idempotent: a card already issued is left alone. Service only. */
create function app.issue_gift_card(p_business_id uuid, p_gift_card_id uuid, p_payment_intent_id text, p_session_id text,
                                    p_amount_cents integer) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_card public.gift_cards;
  v_code text;
  v_months integer;
begin
  select g.* into v_card from public.gift_cards g where g.business_id = p_business_id and g.id = p_gift_card_id for update;
  if v_card.id is null then
    return 'no_matching_gift_card';
  end if;
  if v_card.status <> 'pending' then
    return 'already_issued';
  end if;
  if coalesce(p_amount_cents, v_card.initial_cents) < v_card.initial_cents then
    return 'amount_mismatch';
  end if;
  select b.gift_card_expiry_months into v_months from public.businesses b where b.id = v_card.business_id;
  loop
    v_code := app.gift_card_new_code();
    exit when not exists (select 1 from public.gift_cards g where g.business_id = v_card.business_id
                          and g.code_hash = app.gift_card_code_hash(v_code));
  end loop;
  update public.gift_cards set status = 'active', code_hash = app.gift_card_code_hash(v_code), code_last4 = right(v_code, 4),
    issued_at = now(), expires_at = case when v_months is not null then now() + make_interval(months => v_months) end,
    payment_intent_id = coalesce(p_payment_intent_id, payment_intent_id),
    checkout_session_id = coalesce(p_session_id, checkout_session_id), checkout_url = null, checkout_expires_at = null
  where business_id = v_card.business_id and id = v_card.id
  returning * into v_card;
  insert into public.gift_card_ledger (business_id, gift_card_id, kind, amount_cents, note)
  values (v_card.business_id, v_card.id, 'issue', v_card.initial_cents, 'bought through Checkout');
  insert into public.notification_log (business_id, event_key, channel, recipient, template, detail)
  values (v_card.business_id, 'gift_card.issued:' || v_card.id, 'email', coalesce(v_card.recipient_email, v_card.purchaser_email),
          'gift_card', jsonb_build_object('gift_card_id', v_card.id))
  on conflict on constraint notification_log_natural_key do nothing;
  perform app.emit('gift_card.issued', v_card.business_id, jsonb_build_object(
    'gift_card_id', v_card.id, 'code', v_code, 'amount_cents', v_card.initial_cents, 'currency', v_card.currency,
    'expires_at', v_card.expires_at));
  return 'gift_card_issued';
end
$$;
revoke all on function app.issue_gift_card(uuid, uuid, text, text, integer) from public;
grant execute on function app.issue_gift_card(uuid, uuid, text, text, integer) to service_role;

/** Gives an unpaid order's held gift-card amount back to the card (release) and clears the hold.
    Nothing happens to a paid order or one without a hold. Returns the cents released. Service only. */
create function app.release_gift_card_hold(p_business_id uuid, p_order_id uuid, p_note text) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
begin
  select o.* into v_order from public.orders o where o.business_id = p_business_id and o.id = p_order_id for update;
  if v_order.id is null or v_order.gift_card_cents = 0 or v_order.payment_status not in ('unpaid', 'pending', 'failed') then
    return 0;
  end if;
  perform 1 from public.gift_cards g where g.business_id = v_order.business_id and g.id = v_order.gift_card_id for update;
  insert into public.gift_card_ledger (business_id, gift_card_id, kind, amount_cents, order_id, note)
  values (v_order.business_id, v_order.gift_card_id, 'release', v_order.gift_card_cents, v_order.id, left(coalesce(p_note, ''), 200));
  update public.orders set gift_card_id = null, gift_card_cents = 0 where business_id = v_order.business_id and id = v_order.id;
  return v_order.gift_card_cents;
end
$$;
revoke all on function app.release_gift_card_hold(uuid, uuid, text) from public;
grant execute on function app.release_gift_card_hold(uuid, uuid, text) to service_role;

/** The nightly gift-card pass: an expire row takes what is left on every card past its expiry (the
    card becomes expired), and holds of orders left unpaid for a day go back to their cards. Returns
    {expired, released}. Service only (the worker's scheduler). */
create function app.expire_gift_cards(p_now timestamptz default now()) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_card public.gift_cards;
  v_expired integer := 0;
  v_released integer := 0;
  v_order record;
begin
  for v_card in select g.* from public.gift_cards g where g.status = 'active' and g.expires_at <= p_now
                order by g.business_id, g.id for update skip locked loop
    if v_card.balance_cents > 0 then
      insert into public.gift_card_ledger (business_id, gift_card_id, kind, amount_cents, note)
      values (v_card.business_id, v_card.id, 'expire', -v_card.balance_cents, 'expired ' || v_card.expires_at::text);
    end if;
    update public.gift_cards set status = 'expired' where business_id = v_card.business_id and id = v_card.id;
    v_expired := v_expired + 1;
  end loop;
  for v_order in select o.business_id, o.id from public.orders o
                 where o.gift_card_id is not null and o.gift_card_cents > 0 and o.payment_status in ('unpaid', 'failed')
                   and o.placed_at <= p_now - interval '1 day'
                   and (o.checkout_expires_at is null or o.checkout_expires_at <= p_now) loop
    if app.release_gift_card_hold(v_order.business_id, v_order.id, 'order left unpaid') > 0 then
      v_released := v_released + 1;
    end if;
  end loop;
  return jsonb_build_object('expired', v_expired, 'released', v_released);
end
$$;
revoke all on function app.expire_gift_cards(timestamptz) from public;
grant execute on function app.expire_gift_cards(timestamptz) to service_role;

-- section triggers

/** The balance follows the ledger: each row moves gift_cards.balance_cents, under the card's row lock,
    and a movement that would take it below zero is refused (BR145). A refund back to an expired card
    opens it again for the business's expiry period from now (the money is the customer's). */
create function app.tg_gift_card_ledger_balance() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_card public.gift_cards;
  v_months integer;
begin
  select g.* into v_card from public.gift_cards g where g.business_id = new.business_id and g.id = new.gift_card_id for update;
  if v_card.balance_cents + new.amount_cents < 0 then
    perform app.fail('BR145', 'gift_card_overdrawn',
                     format('the gift card holds %s; %s cannot be taken', v_card.balance_cents, -new.amount_cents));
  end if;
  if new.kind = 'refund_back' and v_card.status = 'expired' then
    select b.gift_card_expiry_months into v_months from public.businesses b where b.id = v_card.business_id;
    update public.gift_cards set status = 'active',
      expires_at = case when v_months is not null then now() + make_interval(months => v_months) end
    where business_id = v_card.business_id and id = v_card.id;
  end if;
  update public.gift_cards set balance_cents = balance_cents + new.amount_cents
  where business_id = new.business_id and id = new.gift_card_id;
  return null;
end
$$;
revoke all on function app.tg_gift_card_ledger_balance() from public;

/** A refund that succeeded (applied once, app.apply_refund) puts its gift-card part back on the card. */
create function app.tg_refunds_gift_card_back() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_card uuid;
begin
  select l.gift_card_id into v_card from public.gift_card_ledger l
  where l.business_id = new.business_id and l.order_id = new.order_id and l.kind = 'redeem'
  order by l.id desc limit 1;
  if v_card is not null then
    insert into public.gift_card_ledger (business_id, gift_card_id, kind, amount_cents, order_id, refund_id, created_by, note)
    values (new.business_id, v_card, 'refund_back', new.gift_card_cents, new.order_id, new.id, new.requested_by,
            left('refund: ' || coalesce(new.reason, ''), 200))
    on conflict do nothing;
  end if;
  return null;
end
$$;
revoke all on function app.tg_refunds_gift_card_back() from public;

/** An order cancelled before it was paid gives its held gift-card amount back. */
create function app.tg_orders_gift_card_cancelled() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  perform app.release_gift_card_hold(new.business_id, new.id, 'order cancelled');
  return null;
end
$$;
revoke all on function app.tg_orders_gift_card_cancelled() from public;

create trigger gift_card_ledger_balance after insert on public.gift_card_ledger
  for each row execute function app.tg_gift_card_ledger_balance();
create trigger gift_card_ledger_append_only before update or delete on public.gift_card_ledger
  for each row execute function app.tg_append_only();
create trigger gift_cards_touch before update on public.gift_cards
  for each row execute function app.tg_touch_updated_at();
create trigger refunds_gift_card_back after update of applied_at on public.refunds
  for each row when (old.applied_at is null and new.applied_at is not null and new.gift_card_cents > 0)
  execute function app.tg_refunds_gift_card_back();
create trigger orders_gift_card_cancelled after update of status on public.orders
  for each row when (new.status = 'cancelled' and old.status <> 'cancelled' and new.gift_card_cents > 0)
  execute function app.tg_orders_gift_card_cancelled();

-- section policies

create policy "managers read gift cards of their business" on public.gift_cards for select to authenticated
  using ((app.module_enabled(business_id, 'ordering') or app.module_enabled(business_id, 'bookings'))
         and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "managers read gift card ledgers of their business" on public.gift_card_ledger for select to authenticated
  using ((app.module_enabled(business_id, 'ordering') or app.module_enabled(business_id, 'bookings'))
         and business_id in (select app.my_business_ids('{owner,manager}')));

-- section grants
revoke all on public.gift_cards, public.gift_card_ledger from anon, authenticated;
grant select (business_id, id, code_last4, initial_cents, balance_cents, currency, status, expires_at, purchaser_name,
              purchaser_email, recipient_name, recipient_email, message, payment_intent_id, issued_at, created_at, updated_at)
  on public.gift_cards to authenticated;
grant select on public.gift_card_ledger to authenticated;
grant select (gift_card_id, gift_card_cents) on public.orders to authenticated;
grant all on public.gift_cards, public.gift_card_ledger to service_role;

-- section data
select app.define_rate_limit('gift_card_code', 'ip', 3600, 10, 'gift card codes tried (balance checks, redemptions) from one client IP');
select app.define_rate_limit('gift_card_code', 'business', 3600, 300, 'gift card codes tried at one business');
select app.define_rate_limit('buy_gift_card', 'ip', 3600, 20, 'gift cards started from one client IP');

-- section rpc

/** A guest (or signed-in customer) starts buying a gift card: {business_id, amount_cents,
    purchaser: {name, email}, recipient: {name, email}, message}. The card is pending until its
    Checkout Session (POST /functions/v1/checkout with gift_card_id and the access token) is paid; then
    the code is emailed once. Raises PT404 (business), PT403 (neither ordering nor bookings on),
    BR140 (amount), BR113 (email), PT429 (rate limit). */
create function app.buy_gift_card(p_request jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_business public.businesses;
  v_amount integer;
  v_email text := lower(nullif(btrim(p_request -> 'purchaser' ->> 'email'), ''));
  v_to text := lower(nullif(btrim(p_request -> 'recipient' ->> 'email'), ''));
  v_card public.gift_cards;
begin
  select b.* into v_business from public.businesses b
  where b.id::text = p_request ->> 'business_id' and app.business_active(b.id);
  if v_business.id is null then
    perform app.fail('PT404', 'business_not_found', 'no such business');
  end if;
  if not (app.module_enabled(v_business.id, 'ordering') or app.module_enabled(v_business.id, 'bookings')) then
    perform app.require_module(v_business.id, 'ordering');
  end if;
  perform app.enforce_rate_limits('buy_gift_card', v_business.id, '{}');
  if coalesce(p_request ->> 'amount_cents', '') !~ '^[0-9]{1,9}$' or (p_request ->> 'amount_cents')::integer not between 100 and 100000 then
    perform app.fail('BR140', 'invalid_gift_card_amount', 'a gift card is worth between 100 and 100000 minor units');
  end if;
  v_amount := (p_request ->> 'amount_cents')::integer;
  if v_email is null or v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' or (v_to is not null and v_to !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$') then
    perform app.fail('BR113', 'invalid_email', 'the purchaser needs a valid email address (and the recipient one, if given)');
  end if;
  insert into public.gift_cards (business_id, initial_cents, currency, purchaser_name, purchaser_email, recipient_name,
                                 recipient_email, message)
  values (v_business.id, v_amount, v_business.currency, left(nullif(btrim(p_request -> 'purchaser' ->> 'name'), ''), 200), v_email,
          left(nullif(btrim(p_request -> 'recipient' ->> 'name'), ''), 200), v_to, left(coalesce(p_request ->> 'message', ''), 500))
  returning * into v_card;
  return jsonb_build_object('gift_card_id', v_card.id, 'access_token', v_card.access_token, 'business_id', v_card.business_id,
                            'amount_cents', v_card.initial_cents, 'currency', v_card.currency, 'status', v_card.status);
end
$$;
revoke all on function app.buy_gift_card(jsonb) from public;
grant execute on function app.buy_gift_card(jsonb) to anon, authenticated, service_role;

create function public.buy_gift_card(request jsonb) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.buy_gift_card(request)
$$;
revoke all on function public.buy_gift_card(jsonb) from public;
grant execute on function public.buy_gift_card(jsonb) to anon, authenticated, service_role;

/** Anyone holding a code asks what is left on it: {valid, status, balance_cents, currency, expires_at}.
    A code that names no card answers valid=false (and, like every try, counts toward the limits:
    10 per client IP and 300 per business an hour, the business's own staff exempt). Volatile, so a
    PostgREST GET cannot run it read-only and lose the count. It reads without locking the card, and
    commits without waiting for its WAL flush (synchronous_commit off for this transaction only): the
    flush was most of a check's time (bench/gift_cards.py), and what a crash could lose is the last
    fraction of a second of counted tries, never money. Raises PT429 past a limit. */
create function app.check_gift_card_balance(p_business_id uuid, p_code text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_card public.gift_cards;
begin
  perform set_config('synchronous_commit', 'off', true);
  perform app.enforce_rate_limits('gift_card_code', p_business_id, '{}');
  select g.* into v_card from public.gift_cards g
  where g.business_id = p_business_id and g.code_hash = app.gift_card_code_hash(p_code)
    and length(app.gift_card_normalise(p_code)) between 8 and 32;
  if v_card.id is null then
    return jsonb_build_object('valid', false);
  end if;
  return jsonb_build_object('valid', true, 'status', case when app.gift_card_unusable(v_card) = 'expired' then 'expired' else v_card.status end,
                            'balance_cents', case when app.gift_card_unusable(v_card) = 'expired' then 0 else v_card.balance_cents end,
                            'currency', v_card.currency, 'expires_at', v_card.expires_at, 'last4', v_card.code_last4);
end
$$;
revoke all on function app.check_gift_card_balance(uuid, text) from public;
grant execute on function app.check_gift_card_balance(uuid, text) to anon, authenticated, service_role;

create function public.check_gift_card_balance(business_id uuid, code text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.check_gift_card_balance(business_id, code)
$$;
revoke all on function public.check_gift_card_balance(uuid, text) from public;
grant execute on function public.check_gift_card_balance(uuid, text) to anon, authenticated, service_role;

/** Pays an unpaid order (its placer's access token, or staff of the venue) with a gift card, in part or
    in full: what the card holds, up to the order's total, is held (a redeem row). Paid in full, the
    order is paid here, with no Stripe call, through the same fan-out as a card payment; in part,
    Checkout then charges only the rest. A code that names no card, or a card that cannot pay
    (expired, empty, not active, another currency), answers {applied: false, reason} so the try stays
    counted toward the limits of check_gift_card_balance. Raises PT404 (order), PT403, PT409 (paid or
    cancelled), BR142 (a card is already applied), BR143 (a Checkout session is open), PT429. */
create function app.apply_gift_card(p_order_id uuid, p_access_token uuid, p_code text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_card public.gift_cards;
  v_reason text;
  v_hold integer;
  v_paid boolean := false;
begin
  select o.* into v_order from public.orders o where o.id = p_order_id for update;
  if v_order.id is null or not (coalesce(v_order.access_token = p_access_token, false)
                                or app.has_venue_access(v_order.business_id, v_order.venue_id, '{owner,manager,staff}')) then
    perform app.fail('PT404', 'order_not_found', 'no order with that id and token');
  end if;
  perform app.require_module(v_order.business_id, 'ordering');
  perform app.enforce_rate_limits('gift_card_code', v_order.business_id, '{}');
  if v_order.payment_status not in ('unpaid', 'failed') then
    perform app.fail('PT409', 'order_already_paid', format('the order is %s', v_order.payment_status));
  end if;
  if v_order.status = 'cancelled' then
    perform app.fail('PT409', 'order_cancelled', 'the order was cancelled');
  end if;
  if v_order.gift_card_cents > 0 then
    perform app.fail('BR142', 'gift_card_already_applied', 'a gift card already pays part of this order');
  end if;
  if v_order.checkout_session_id is not null and v_order.checkout_expires_at > now() then
    perform app.fail('BR143', 'checkout_open', 'a Checkout session for the full amount is open; apply the gift card before checkout');
  end if;
  v_card := app.gift_card_by_code(v_order.business_id, p_code);
  if v_card.id is null then
    return jsonb_build_object('applied', false, 'reason', 'unknown_code');
  end if;
  v_reason := coalesce(app.gift_card_unusable(v_card), case when lower(v_card.currency) <> lower(v_order.currency) then 'currency' end);
  if v_reason is not null then
    return jsonb_build_object('applied', false, 'reason', v_reason);
  end if;
  v_hold := least(v_card.balance_cents, v_order.total_cents);
  insert into public.gift_card_ledger (business_id, gift_card_id, kind, amount_cents, order_id, created_by, note)
  values (v_order.business_id, v_card.id, 'redeem', -v_hold, v_order.id, auth.uid(), 'order #' || v_order.order_number);
  update public.orders set gift_card_id = v_card.id, gift_card_cents = v_hold
  where business_id = v_order.business_id and id = v_order.id;
  if v_hold = v_order.total_cents then
    v_paid := app.mark_order_paid(v_order.business_id, v_order.id, null, null, v_hold, null);
  end if;
  return jsonb_build_object('applied', true, 'order_id', v_order.id, 'gift_card_cents', v_hold,
                            'amount_due_cents', v_order.total_cents - v_hold, 'paid', v_paid,
                            'balance_cents', v_card.balance_cents - v_hold, 'last4', v_card.code_last4);
end
$$;
revoke all on function app.apply_gift_card(uuid, uuid, text) from public;
grant execute on function app.apply_gift_card(uuid, uuid, text) to anon, authenticated, service_role;

create function public.apply_gift_card(order_id uuid, access_token uuid, code text) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.apply_gift_card(order_id, access_token, code)
$$;
revoke all on function public.apply_gift_card(uuid, uuid, text) from public;
grant execute on function public.apply_gift_card(uuid, uuid, text) to anon, authenticated, service_role;

/** The owner sets how long the business's gift cards stay valid (months, 1–600; null: they never
    expire), as local law requires. Applies to cards issued from now on. Raises 42501 (not the owner),
    BR144 (out of range). */
create function app.set_gift_card_expiry(p_business_id uuid, p_months integer) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if not (app.is_member(p_business_id, '{owner}') or app.is_platform_or_service()) then
    perform app.fail('42501', 'not_owner', 'only the owner sets the gift card expiry');
  end if;
  if p_months is not null and p_months not between 1 and 600 then
    perform app.fail('BR144', 'invalid_gift_card_expiry', 'a gift card expiry is 1 to 600 months, or none');
  end if;
  update public.businesses set gift_card_expiry_months = p_months where id = p_business_id;
  perform app.audit(p_business_id, 'gift_card.expiry_set', jsonb_build_object('months', p_months));
  return jsonb_build_object('business_id', p_business_id, 'gift_card_expiry_months', p_months);
end
$$;
revoke all on function app.set_gift_card_expiry(uuid, integer) from public;
grant execute on function app.set_gift_card_expiry(uuid, integer) to authenticated, service_role;

create function public.set_gift_card_expiry(business_id uuid, months integer) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.set_gift_card_expiry(business_id, months)
$$;
revoke all on function public.set_gift_card_expiry(uuid, integer) from public;
grant execute on function public.set_gift_card_expiry(uuid, integer) to authenticated, service_role;
