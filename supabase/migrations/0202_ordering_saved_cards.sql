-- Saved cards at checkout (issue 23 item 3). customer_payment_methods (0054) held card metadata that
-- nothing filled and checkout never used. Now a signed-in customer's checkout (order or booking) uses their Stripe
-- Customer, created once per business customer (customers.stripe_customer_id, on the business's
-- connected account when it has one, like the charge), so Checkout offers the cards saved before and
-- asks whether to save a new one. customer_payment_methods follows Stripe's payment_method.attached /
-- payment_method.detached webhooks; a card detached is never re-added by a late attached event.

-- section tables

alter table public.customers add column stripe_customer_id text
  constraint customers_stripe_customer_format check (stripe_customer_id ~ '^cus_[A-Za-z0-9]+$');
alter table public.customers add constraint customers_stripe_customer_key unique (business_id, stripe_customer_id);

-- section indexes
create index customers_stripe_customer_idx on public.customers (stripe_customer_id) where stripe_customer_id is not null;

-- section private helpers

/** A customer as checkout needs it for saved cards: {business_id, customer_id, stripe_customer_id,
    email, name, saved_cards}. Service only. */
create function app.saved_cards_customer(p_business_id uuid, p_customer_id uuid, p_email text, p_name text) returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'business_id', c.business_id, 'customer_id', c.id, 'stripe_customer_id', c.stripe_customer_id,
    'email', coalesce(c.email, p_email), 'name', coalesce(c.full_name, p_name),
    'saved_cards', coalesce((select jsonb_agg(jsonb_build_object('brand', m.brand, 'last4', m.last4, 'exp_month', m.exp_month,
                                                                 'exp_year', m.exp_year, 'is_default', m.is_default)
                                              order by m.is_default desc, m.created_at desc)
                             from public.customer_payment_methods m where m.business_id = c.business_id and m.customer_id = c.id), '[]'))
  from public.customers c where c.business_id = p_business_id and c.id = p_customer_id
$$;
revoke all on function app.saved_cards_customer(uuid, uuid, text, text) from public;
grant execute on function app.saved_cards_customer(uuid, uuid, text, text) to service_role;

/** The signed-in customer behind an order (the caller must be the order's user), for checkout (see
    app.saved_cards_customer), or null for a guest's or staff's checkout. The customer row is found or
    created as payment would. Service only. */
create function app.checkout_customer(p_order_id uuid, p_user_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_customer uuid;
begin
  select o.* into v_order from public.orders o where o.id = p_order_id;
  if v_order.id is null or p_user_id is null or v_order.user_id is distinct from p_user_id then
    return null;
  end if;
  -- found or created first, in a statement of its own: the stable reader below sees it then
  v_customer := coalesce(v_order.customer_id,
    app.find_or_create_customer(v_order.business_id, v_order.user_id, v_order.guest_name, v_order.guest_phone, v_order.guest_email));
  return app.saved_cards_customer(v_order.business_id, v_customer, v_order.guest_email, v_order.guest_name);
end
$$;
revoke all on function app.checkout_customer(uuid, uuid) from public;
grant execute on function app.checkout_customer(uuid, uuid) to service_role;

/** The same for a held booking of the signed-in caller. Service only. */
create function app.booking_checkout_customer(p_booking_id uuid, p_user_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_booking public.bookings;
  v_customer uuid;
begin
  select bk.* into v_booking from public.bookings bk where bk.id = p_booking_id;
  if v_booking.id is null or p_user_id is null or v_booking.user_id is distinct from p_user_id then
    return null;
  end if;
  -- found or created first, in a statement of its own: the stable reader below sees it then
  v_customer := coalesce(v_booking.customer_id,
    app.find_or_create_customer(v_booking.business_id, v_booking.user_id, v_booking.guest_name, v_booking.guest_phone, v_booking.guest_email));
  return app.saved_cards_customer(v_booking.business_id, v_customer, v_booking.guest_email, v_booking.guest_name);
end
$$;
revoke all on function app.booking_checkout_customer(uuid, uuid) from public;
grant execute on function app.booking_checkout_customer(uuid, uuid) to service_role;

/** Records the Stripe Customer created for a customer, once: a second (concurrent) one loses and the
    first id is returned. Service only. */
create function app.attach_stripe_customer(p_business_id uuid, p_customer_id uuid, p_stripe_customer_id text) returns text
language sql volatile security definer
set search_path = ''
as $$
  update public.customers set stripe_customer_id = coalesce(stripe_customer_id, p_stripe_customer_id)
  where business_id = p_business_id and id = p_customer_id
  returning stripe_customer_id
$$;
revoke all on function app.attach_stripe_customer(uuid, uuid, text) from public;
grant execute on function app.attach_stripe_customer(uuid, uuid, text) to service_role;

/** payment_method.attached / .detached: the card's metadata kept for the customer whose Stripe
    Customer it is attached to (on the event's connected account, or the platform's), removed when
    detached; a late `attached` for a card already detached is ignored. Returns what it did. */
create function app.apply_stripe_payment_method_event(p_event jsonb) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_obj jsonb := p_event -> 'data' -> 'object';
  v_pm text := v_obj ->> 'id';
  v_cus text := coalesce(v_obj ->> 'customer', p_event -> 'data' -> 'previous_attributes' ->> 'customer');
  v_customer public.customers;
  v_card jsonb := v_obj -> 'card';
begin
  if v_pm is null or v_pm !~ '^pm_[A-Za-z0-9_]+$' then
    return 'ignored';
  end if;
  if p_event ->> 'type' = 'payment_method.detached' then
    delete from public.customer_payment_methods where provider_payment_method_id = v_pm
      and business_id in (select c.business_id from public.customers c where c.stripe_customer_id = v_cus or v_cus is null);
    return case when found then 'card_removed' else 'stale' end;
  end if;
  select c.* into v_customer from public.customers c
  join public.businesses b on b.id = c.business_id
  where c.stripe_customer_id = v_cus and b.stripe_account_id is not distinct from p_event ->> 'account'
  limit 1;
  if v_customer.id is null then
    return 'unknown_customer';
  end if;
  if v_card is null or v_obj ->> 'type' <> 'card' then
    return 'ignored';
  end if;
  if exists (select 1 from public.stripe_events e where e.type = 'payment_method.detached'
             and e.payload -> 'data' -> 'object' ->> 'id' = v_pm) then
    return 'stale';
  end if;
  insert into public.customer_payment_methods (business_id, customer_id, provider_payment_method_id, brand, last4, exp_month, exp_year)
  values (v_customer.business_id, v_customer.id, v_pm, left(coalesce(v_card ->> 'brand', 'card'), 30), v_card ->> 'last4',
          (v_card ->> 'exp_month')::smallint, (v_card ->> 'exp_year')::smallint)
  on conflict (business_id, provider_payment_method_id) do nothing;
  return case when found then 'card_saved' else 'duplicate' end;
end
$$;
revoke all on function app.apply_stripe_payment_method_event(jsonb) from public;
grant execute on function app.apply_stripe_payment_method_event(jsonb) to service_role;

-- section triggers

/** payment_method.* events arrive through the same webhook and ledger (stripe_events, once per id). */
create function app.tg_stripe_events_payment_method() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  perform app.apply_stripe_payment_method_event(new.payload);
  return null;
end
$$;
revoke all on function app.tg_stripe_events_payment_method() from public;

/** An erased (anonymised) customer keeps no link to Stripe and no saved card here. */
create function app.tg_customers_forget_cards() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  new.stripe_customer_id := null;
  delete from public.customer_payment_methods m where m.business_id = new.business_id and m.customer_id = new.id;
  return new;
end
$$;
revoke all on function app.tg_customers_forget_cards() from public;

create trigger customers_forget_cards before update of anonymised_at on public.customers
  for each row when (old.anonymised_at is null and new.anonymised_at is not null)
  execute function app.tg_customers_forget_cards();
create trigger stripe_events_payment_method after insert on public.stripe_events
  for each row when (new.type in ('payment_method.attached', 'payment_method.detached'))
  execute function app.tg_stripe_events_payment_method();
