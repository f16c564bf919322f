-- Web Push (issue 16, item 2): a third channel beside SMS and email. Browsers' push subscriptions per
-- signed-in user (customer, driver or staff member) and business; marketing push needs PUSH_MARKETING
-- consent in the consent log like the other channels; order status changes reach a signed-in
-- customer's devices (a notification_log row per event and device owner, sent by the worker's
-- `push.send` handler); automations and campaigns may choose push, and a customer without a
-- subscription gets the rule's fallback channel instead. Dead subscriptions (404/410 from the push
-- service) are deleted by the worker. Codes BR19x (docs/errors.md).

-- section tables

/** A browser's Web Push subscription (PushSubscription.toJSON(): endpoint + p256dh/auth keys) for a
    signed-in user at a business. The user reads and deletes their own; saved through
    save_push_subscription; the worker deletes those the push service reports gone. */
create table public.push_subscriptions (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  audience text not null default 'customer' constraint push_subscriptions_audience_valid check (audience in ('customer', 'driver', 'staff')),
  customer_id uuid,
  endpoint text not null constraint push_subscriptions_endpoint_format
    check (length(endpoint) <= 2000 and (endpoint ~ '^https://[^/\s]+/\S*$' or endpoint ~ '^http://(127\.0\.0\.1|localhost)(:[0-9]+)?/\S*$')),
  p256dh text not null constraint push_subscriptions_p256dh_format check (p256dh ~ '^[A-Za-z0-9_-]{86,88}={0,2}$'),
  auth text not null constraint push_subscriptions_auth_format check (auth ~ '^[A-Za-z0-9_-]{21,24}={0,2}$'),
  user_agent text constraint push_subscriptions_user_agent_length check (length(user_agent) <= 300),
  last_sent_at timestamptz,
  created_at timestamptz not null default now(),
  constraint push_subscriptions_pkey primary key (business_id, id),
  constraint push_subscriptions_endpoint_key unique (business_id, endpoint),
  constraint push_subscriptions_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id)
    on delete set null (customer_id)
);
alter table public.push_subscriptions enable row level security;

-- section channels: push beside sms and email
alter table public.customer_consent_log drop constraint customer_consent_log_channel_valid;
alter table public.customer_consent_log add constraint customer_consent_log_channel_valid
  check (channel in ('EMAIL_MARKETING', 'SMS_MARKETING', 'WHATSAPP_MARKETING', 'REVIEW_REQUEST', 'PUSH_MARKETING'));
alter table public.automations drop constraint automations_channel_valid;
alter table public.automations add constraint automations_channel_valid check (channel in ('sms', 'email', 'push'));
alter table public.automations add column push_fallback text constraint automations_push_fallback_valid check (push_fallback in ('sms', 'email'));
alter table public.campaigns drop constraint campaigns_channel_valid;
alter table public.campaigns add constraint campaigns_channel_valid check (channel in ('sms', 'email', 'push'));
alter table public.campaigns add column push_fallback text constraint campaigns_push_fallback_valid check (push_fallback in ('sms', 'email'));
alter table public.campaign_sends drop constraint campaign_sends_channel_valid;
alter table public.campaign_sends add constraint campaign_sends_channel_valid check (channel in ('sms', 'email', 'push'));
grant insert (push_fallback), update (push_fallback) on public.automations, public.campaigns to authenticated;

-- section indexes
create index push_subscriptions_user_idx on public.push_subscriptions (business_id, user_id);
create index push_subscriptions_customer_idx on public.push_subscriptions (business_id, customer_id);
create index push_subscriptions_own_idx on public.push_subscriptions (user_id);

-- section private helpers

/** The consent a marketing send needs: push has its own (PUSH_MARKETING); the rest as before. */
create or replace function app.marketing_consent_channel(p_trigger text, p_channel text) returns text
language sql immutable
set search_path = ''
as $$
  select case when p_trigger = 'order.review_request' then 'REVIEW_REQUEST'
              when p_channel = 'sms' then 'SMS_MARKETING'
              when p_channel = 'push' then 'PUSH_MARKETING' else 'EMAIL_MARKETING' end
$$;

/** Does the customer have a device to push to (a customer subscription of their user, or one saved
    for their customer record)? */
create function app.customer_has_push(p_business_id uuid, p_customer_id uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.push_subscriptions s
    where s.business_id = p_business_id and s.audience = 'customer'
      and (s.customer_id = p_customer_id
           or s.user_id = (select c.user_id from public.customers c where c.business_id = p_business_id and c.id = p_customer_id)))
$$;
revoke all on function app.customer_has_push(uuid, uuid) from public;
grant execute on function app.customer_has_push(uuid, uuid) to service_role;

-- section triggers

/** A marketing send on push to a customer with no subscription becomes a send on the rule's (or
    campaign's) fallback channel; with no fallback it stays push and the worker skips it. */
create function app.tg_campaign_sends_push_fallback() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_fallback text;
begin
  if new.channel = 'push' and new.customer_id is not null and not app.customer_has_push(new.business_id, new.customer_id) then
    if new.automation_id is not null then
      select a.push_fallback into v_fallback from public.automations a where a.business_id = new.business_id and a.id = new.automation_id;
    else
      select c.push_fallback into v_fallback from public.campaigns c where c.business_id = new.business_id and c.id = new.campaign_id;
    end if;
    if v_fallback is not null then
      new.channel := v_fallback;
      new.context := new.context || jsonb_build_object('push_fallback', true);
    end if;
  end if;
  return new;
end
$$;
create trigger campaign_sends_push_fallback before insert on public.campaign_sends
  for each row execute function app.tg_campaign_sends_push_fallback();

/** An order moving (accepted, preparing, ready, completed, cancelled) reaches its signed-in
    customer's devices: one push notification_log row per status (natural key), sent by `push.send`. */
create function app.tg_order_status_history_push() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_id uuid;
begin
  if new.to_status = 'placed' then
    return null;
  end if;
  select o.* into v_order from public.orders o where o.business_id = new.business_id and o.id = new.order_id;
  if v_order.user_id is null or not exists (
      select 1 from public.push_subscriptions s
      where s.business_id = new.business_id and s.user_id = v_order.user_id and s.audience = 'customer') then
    return null;
  end if;
  insert into public.notification_log (business_id, event_key, channel, recipient, template, order_id, customer_id, venue_id, detail)
  values (new.business_id, 'order.status:' || new.order_id || ':' || new.to_status, 'push', 'user:' || v_order.user_id,
          'order_status', new.order_id, v_order.customer_id, new.venue_id,
          jsonb_build_object('status', new.to_status, 'order_number', v_order.order_number))
  on conflict on constraint notification_log_natural_key do nothing
  returning id into v_id;
  if v_id is not null then
    perform app.emit('push.send', new.business_id, jsonb_build_object('notification_id', v_id));
  end if;
  return null;
end
$$;
create trigger order_status_history_push after insert on public.order_status_history
  for each row execute function app.tg_order_status_history_push();
revoke all on function app.tg_campaign_sends_push_fallback(), app.tg_order_status_history_push() from public, anon, authenticated, service_role;

-- section policies
create policy "users read their own push subscriptions" on public.push_subscriptions for select to authenticated
  using (user_id = (select auth.uid()));
create policy "users delete their own push subscriptions" on public.push_subscriptions for delete to authenticated
  using (user_id = (select auth.uid()));

-- section grants
revoke all on public.push_subscriptions from anon, authenticated;
grant select (business_id, id, user_id, audience, customer_id, endpoint, user_agent, last_sent_at, created_at), delete
  on public.push_subscriptions to authenticated;
grant all on public.push_subscriptions to service_role;

-- section rpc

/** Saves this browser's push subscription for the signed-in user at a business: {endpoint, keys:
    {p256dh, auth}} as PushSubscription.toJSON() gives it, for audience customer, driver (a driver of
    the business) or staff (a member). The same endpoint saved again moves to this user. With
    marketing, a customer's PUSH_MARKETING consent is recorded GRANTED in the consent log (source
    customer). Raises 42501 sign_in_required / not_member, 22023 invalid_subscription, PT404. */
create function app.save_push_subscription(p_business_id uuid, p_subscription jsonb, p_audience text default 'customer',
                                           p_marketing boolean default false, p_user_agent text default null) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_customer uuid;
  v_id uuid;
  v_consent text;
begin
  if v_user is null then
    perform app.fail('42501', 'sign_in_required', 'sign in to receive push notifications');
  end if;
  if not exists (select 1 from public.businesses b where b.id = p_business_id) then
    perform app.fail('PT404', 'not_found', 'no such business');
  end if;
  if p_audience is null or p_audience not in ('customer', 'driver', 'staff') then
    perform app.fail('22023', 'invalid_input', 'audience must be customer, driver or staff');
  end if;
  if p_audience = 'driver' and not exists (select 1 from public.drivers d where d.business_id = p_business_id and d.user_id = v_user)
     or p_audience = 'staff' and not app.is_member(p_business_id, '{owner,manager,staff}') then
    perform app.fail('42501', 'not_member', format('you are not %s of this business', case p_audience when 'driver' then 'a driver' else 'staff' end));
  end if;
  if jsonb_typeof(p_subscription) is distinct from 'object' or jsonb_typeof(p_subscription -> 'keys') is distinct from 'object' then
    perform app.fail('22023', 'invalid_subscription', 'the subscription must be {endpoint, keys: {p256dh, auth}}');
  end if;
  select c.id into v_customer from public.customers c
  where c.business_id = p_business_id and c.user_id = v_user and c.merged_into is null;
  begin
    insert into public.push_subscriptions (business_id, user_id, audience, customer_id, endpoint, p256dh, auth, user_agent)
    values (p_business_id, v_user, p_audience, case when p_audience = 'customer' then v_customer end, p_subscription ->> 'endpoint',
            p_subscription -> 'keys' ->> 'p256dh', p_subscription -> 'keys' ->> 'auth', left(p_user_agent, 300))
    on conflict (business_id, endpoint) do update
      set user_id = excluded.user_id, audience = excluded.audience, customer_id = excluded.customer_id,
          p256dh = excluded.p256dh, auth = excluded.auth, user_agent = excluded.user_agent
    returning id into v_id;
  exception when check_violation or not_null_violation then
    perform app.fail('22023', 'invalid_subscription', 'the endpoint must be an https URL and the keys base64url (p256dh 65 bytes, auth 16)');
  end;
  if p_marketing and p_audience = 'customer' and v_customer is not null then
    v_consent := app.record_consent(p_business_id, v_customer, 'PUSH_MARKETING', true, 'customer');
  end if;
  return jsonb_build_object('id', v_id, 'audience', p_audience, 'marketing_consent', v_consent);
end
$$;
revoke all on function app.save_push_subscription(uuid, jsonb, text, boolean, text) from public;
grant execute on function app.save_push_subscription(uuid, jsonb, text, boolean, text) to authenticated, service_role;

create function public.save_push_subscription(business_id uuid, subscription jsonb, audience text default 'customer',
                                              marketing boolean default false, user_agent text default null) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.save_push_subscription(business_id, subscription, audience, marketing, user_agent)
$$;
revoke all on function public.save_push_subscription(uuid, jsonb, text, boolean, text) from public, anon;
grant execute on function public.save_push_subscription(uuid, jsonb, text, boolean, text) to authenticated, service_role;
