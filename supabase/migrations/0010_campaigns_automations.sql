-- Campaigns & automations (issue 5, items 5-8): rules that turn CRM, order, loyalty and stock events
-- into marketing sends; one-off campaigns to a saved segment; the send-time checks (consent, deletion,
-- suppression, allergens, critical stock, frequency cap, quiet hours); STOP and unsubscribe landing in
-- the consent log; 7-day last-touch attribution and a performance view.
--
-- The flow: a trigger (a row change in the same transaction as the event, or the dormancy evaluator)
-- inserts a campaign_sends row per matching automation -- its natural key (automation, trigger_key)
-- makes a duplicate trigger a no-op -- and emits `automation.due` delayed by the rule's delay. The
-- worker's handler calls app.claim_marketing_send, which locks the row and re-checks everything at send
-- time; it sends and calls app.complete_marketing_send in the same transaction as the acknowledgement.
-- A campaign emits `campaign.due` at its scheduled time; app.launch_campaign expands the segment into
-- sends the same way.

-- section tables

/** What a product contains, for promotions: customers with a matching allergen never get them. */
alter table public.products add column allergens text[] not null default '{}';

alter table public.customer_consent_log drop constraint customer_consent_log_source_valid;
alter table public.customer_consent_log add constraint customer_consent_log_source_valid
  check (source in ('checkout', 'admin', 'unsubscribe_link', 'double_opt_in', 'sms_stop', 'sms_start', 'customer', 'deletion', 'merge'));

/** A rule: trigger, optional venue and segment filter, delay, channel, template, quiet hours, cap. */
create table public.automations (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  name text not null constraint automations_name_length check (length(name) between 1 and 120),
  trigger text not null constraint automations_trigger_valid check (trigger in (
    'customer.dormant', 'customer.birthday', 'stock.critical', 'loyalty.tier_changed', 'order.first', 'order.review_request')),
  dormant_days integer not null default 30 constraint automations_dormant_days_range check (dormant_days between 1 and 3650),
  venue_id uuid,
  segment_id uuid,
  delay_seconds integer not null default 0 constraint automations_delay_range check (delay_seconds between 0 and 7776000),
  channel text not null constraint automations_channel_valid check (channel in ('sms', 'email')),
  subject text constraint automations_subject_length check (length(subject) <= 200),
  body text not null constraint automations_body_length check (length(body) between 1 and 5000),
  product_id uuid,
  quiet_start time,
  quiet_end time,
  cap_count integer constraint automations_cap_count_positive check (cap_count > 0),
  cap_days integer constraint automations_cap_days_positive check (cap_days > 0),
  cap_scope text not null default 'automation' constraint automations_cap_scope_valid check (cap_scope in ('automation', 'business')),
  is_active boolean not null default true,
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint automations_pkey primary key (business_id, id),
  constraint automations_quiet_both check ((quiet_start is null and quiet_end is null)
    or (quiet_start is not null and quiet_end is not null and quiet_start <> quiet_end)),
  constraint automations_cap_both check ((cap_count is null) = (cap_days is null)),
  constraint automations_email_subject check (channel <> 'email' or subject is not null),
  constraint automations_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete cascade,
  constraint automations_segment_fkey foreign key (business_id, segment_id) references public.segments (business_id, id)
    on delete set null (segment_id),
  constraint automations_product_fkey foreign key (business_id, product_id) references public.products (business_id, id)
    on delete set null (product_id)
);
alter table public.automations enable row level security;

/** A one-off send to a saved segment at a scheduled time. */
create table public.campaigns (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  name text not null constraint campaigns_name_length check (length(name) between 1 and 120),
  segment_id uuid not null,
  channel text not null constraint campaigns_channel_valid check (channel in ('sms', 'email')),
  subject text constraint campaigns_subject_length check (length(subject) <= 200),
  body text not null constraint campaigns_body_length check (length(body) between 1 and 5000),
  product_id uuid,
  scheduled_at timestamptz,
  status text not null default 'draft' constraint campaigns_status_valid check (status in ('draft', 'scheduled', 'sent', 'cancelled')),
  recipients integer,
  launched_at timestamptz,
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint campaigns_pkey primary key (business_id, id),
  constraint campaigns_email_subject check (channel <> 'email' or subject is not null),
  constraint campaigns_scheduled_time check (status = 'draft' or status = 'cancelled' or scheduled_at is not null),
  constraint campaigns_segment_fkey foreign key (business_id, segment_id) references public.segments (business_id, id),
  constraint campaigns_product_fkey foreign key (business_id, product_id) references public.products (business_id, id)
    on delete set null (product_id)
);
alter table public.campaigns enable row level security;

/** One message of an automation or a campaign to one person, from matching to sent or skipped, with
    its 7-day attribution window. Natural key per source: (automation or campaign, trigger_key). */
create table public.campaign_sends (
  business_id uuid not null references public.businesses (id) on delete cascade,
  id uuid not null default extensions.gen_random_uuid(),
  automation_id uuid,
  campaign_id uuid,
  customer_id uuid,
  user_id uuid,
  venue_id uuid,
  channel text not null constraint campaign_sends_channel_valid check (channel in ('sms', 'email')),
  trigger_key text not null,
  context jsonb not null default '{}'::jsonb,
  status text not null default 'scheduled'
    constraint campaign_sends_status_valid check (status in ('scheduled', 'sent', 'skipped', 'failed')),
  skip_reason text constraint campaign_sends_skip_reason_valid check (skip_reason in (
    'inactive', 'module_off', 'deleted', 'no_contact', 'no_consent', 'suppressed', 'allergen', 'stock_critical', 'frequency_cap')),
  due_at timestamptz not null default now(),
  deferrals integer not null default 0,
  recipient text,
  notification_id uuid,
  sent_at timestamptz,
  attribution_ends_at timestamptz,
  error text,
  created_at timestamptz not null default now(),
  constraint campaign_sends_pkey primary key (business_id, id),
  constraint campaign_sends_one_source check (num_nonnulls(automation_id, campaign_id) = 1),
  constraint campaign_sends_one_person check (num_nonnulls(customer_id, user_id) = 1),
  constraint campaign_sends_automation_fkey foreign key (business_id, automation_id) references public.automations (business_id, id) on delete cascade,
  constraint campaign_sends_campaign_fkey foreign key (business_id, campaign_id) references public.campaigns (business_id, id) on delete cascade,
  constraint campaign_sends_customer_fkey foreign key (business_id, customer_id) references public.customers (business_id, id) on delete cascade,
  constraint campaign_sends_venue_fkey foreign key (business_id, venue_id) references public.venues (business_id, id) on delete set null (venue_id)
);
alter table public.campaign_sends enable row level security;

/** Addresses a provider told us not to message again (STOP, hard bounce, complaint). */
create table public.marketing_suppressions (
  business_id uuid not null references public.businesses (id) on delete cascade,
  channel text not null constraint marketing_suppressions_channel_valid check (channel in ('sms', 'email')),
  address text not null,
  reason text not null constraint marketing_suppressions_reason_valid check (reason in ('sms_stop', 'bounce', 'complaint', 'manual')),
  created_at timestamptz not null default now(),
  constraint marketing_suppressions_pkey primary key (business_id, channel, address)
);
alter table public.marketing_suppressions enable row level security;

/** An order inside a send's 7-day window, credited to the latest send (last touch). */
create table public.campaign_attributions (
  business_id uuid not null references public.businesses (id) on delete cascade,
  order_id uuid not null,
  send_id uuid not null,
  automation_id uuid,
  campaign_id uuid,
  customer_id uuid not null,
  attributed_at timestamptz not null default now(),
  constraint campaign_attributions_pkey primary key (business_id, order_id),
  constraint campaign_attributions_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete cascade,
  constraint campaign_attributions_send_fkey foreign key (business_id, send_id) references public.campaign_sends (business_id, id) on delete cascade
);
alter table public.campaign_attributions enable row level security;

-- section indexes
create index automations_trigger_idx on public.automations (business_id, trigger) where is_active;
create index automations_segment_idx on public.automations (business_id, segment_id);
create index automations_product_idx on public.automations (business_id, product_id);
create index automations_venue_idx on public.automations (business_id, venue_id);
create index campaigns_segment_idx on public.campaigns (business_id, segment_id);
create index campaigns_product_idx on public.campaigns (business_id, product_id);
create unique index campaign_sends_automation_key on public.campaign_sends (business_id, automation_id, trigger_key) where automation_id is not null;
create unique index campaign_sends_campaign_key on public.campaign_sends (business_id, campaign_id, trigger_key) where campaign_id is not null;
create index campaign_sends_customer_sent_idx on public.campaign_sends (business_id, customer_id, sent_at desc) where status = 'sent';
create index campaign_sends_venue_idx on public.campaign_sends (business_id, venue_id);
create index campaign_sends_notification_idx on public.campaign_sends (business_id, notification_id);
create index campaign_attributions_send_idx on public.campaign_attributions (business_id, send_id);
create index notification_log_provider_message_idx on public.notification_log (provider_message_id) where provider_message_id is not null;
create index customers_phone_idx on public.customers (phone) where phone is not null;

-- section private helpers

/** The consent channel a send needs: review requests have their own, marketing follows the channel. */
create function app.marketing_consent_channel(p_trigger text, p_channel text) returns text
language sql immutable
set search_path = ''
as $$
  select case when p_trigger = 'order.review_request' then 'REVIEW_REQUEST'
              when p_channel = 'sms' then 'SMS_MARKETING' else 'EMAIL_MARKETING' end
$$;

/** Matches one trigger against the business's active automations of that kind: one send per rule
    (natural key: automation + trigger_key), each announced by `automation.due` after the rule's
    delay. Customer triggers honour the rule's venue and segment filter. Returns how many were new. */
create function app.enqueue_automations(p_business_id uuid, p_trigger text, p_trigger_key text, p_customer_id uuid,
                                        p_venue_id uuid, p_context jsonb default '{}'::jsonb, p_user_id uuid default null)
returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_rule record;
  v_send uuid;
  v_count integer := 0;
begin
  if not app.module_enabled(p_business_id, 'campaigns') then
    return 0;
  end if;
  for v_rule in
    select a.id, a.delay_seconds, a.channel from public.automations a
    where a.business_id = p_business_id and a.trigger = p_trigger and a.is_active
      and (a.venue_id is null or a.venue_id = p_venue_id)
      and (a.segment_id is null or p_customer_id is null or exists (
        select 1 from public.segment_memberships m
        where m.business_id = p_business_id and m.segment_id = a.segment_id and m.customer_id = p_customer_id))
    order by a.created_at, a.id
  loop
    insert into public.campaign_sends (business_id, automation_id, customer_id, user_id, venue_id, channel, trigger_key, context, due_at)
    values (p_business_id, v_rule.id, p_customer_id, p_user_id, p_venue_id, v_rule.channel, p_trigger_key,
            coalesce(p_context, '{}'::jsonb), now() + make_interval(secs => v_rule.delay_seconds))
    on conflict (business_id, automation_id, trigger_key) where automation_id is not null do nothing
    returning id into v_send;
    if v_send is not null then
      perform app.emit('automation.due', p_business_id, jsonb_build_object('send_id', v_send), v_rule.delay_seconds);
      v_count := v_count + 1;
    end if;
    v_send := null;
  end loop;
  return v_count;
end
$$;
revoke all on function app.enqueue_automations(uuid, text, text, uuid, uuid, jsonb, uuid) from public;
grant execute on function app.enqueue_automations(uuid, text, text, uuid, uuid, jsonb, uuid) to service_role;

/** The dormancy evaluator, set-based: for every active `customer.dormant` rule, each customer whose
    last order (at the rule's venue, or anywhere) is at least `dormant_days` old gets one send per
    dormancy (trigger_key carries the last order time, so ordering again and lapsing again sends
    again). One batch of delayed events per rule. Returns how many sends were created. */
create function app.evaluate_dormant_automations(p_business_id uuid default null, p_now timestamptz default now()) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_rule record;
  v_ids jsonb[];
  v_count integer := 0;
begin
  for v_rule in
    select a.business_id, a.id, a.venue_id, a.segment_id, a.dormant_days, a.delay_seconds, a.channel
    from public.automations a
    where a.trigger = 'customer.dormant' and a.is_active
      and (p_business_id is null or a.business_id = p_business_id)
      and app.module_enabled(a.business_id, 'campaigns')
    order by a.business_id, a.id
  loop
    with lapsed as (
      select distinct on (s.customer_id) s.customer_id, s.venue_id, s.last_order_at as latest  -- the venue of their latest order
      from public.customer_venue_stats s
      where s.business_id = v_rule.business_id and s.total_orders > 0
        and (v_rule.venue_id is null or s.venue_id = v_rule.venue_id)
      order by s.customer_id, s.last_order_at desc nulls last
    ), created as (
      insert into public.campaign_sends (business_id, automation_id, customer_id, venue_id, channel, trigger_key, context, due_at)
      select v_rule.business_id, v_rule.id, l.customer_id, l.venue_id, v_rule.channel,
             'dormant:' || l.customer_id || ':' || l.latest,
             jsonb_build_object('last_order_at', l.latest, 'dormant_days', v_rule.dormant_days),
             p_now + make_interval(secs => v_rule.delay_seconds)
      from lapsed l
      join public.customers c on c.business_id = v_rule.business_id and c.id = l.customer_id
      where l.latest <= p_now - make_interval(days => v_rule.dormant_days)
        and c.anonymised_at is null and c.merged_into is null
        and (v_rule.segment_id is null or exists (
          select 1 from public.segment_memberships m
          where m.business_id = v_rule.business_id and m.segment_id = v_rule.segment_id and m.customer_id = l.customer_id))
      on conflict (business_id, automation_id, trigger_key) where automation_id is not null do nothing
      returning id
    )
    select array_agg(jsonb_build_object('topic', 'automation.due', 'business_id', v_rule.business_id,
                                        'payload', jsonb_build_object('send_id', id), 'emitted_at', clock_timestamp()))
    into v_ids from created;
    if v_ids is not null then
      perform pgmq.send_batch('brigade_events', v_ids, v_rule.delay_seconds);
      perform pg_notify('brigade_events', '');
      v_count := v_count + cardinality(v_ids);
    end if;
  end loop;
  return v_count;
end
$$;
revoke all on function app.evaluate_dormant_automations(uuid, timestamptz) from public;
grant execute on function app.evaluate_dormant_automations(uuid, timestamptz) to service_role;

/** Why a customer cannot get a marketing message on a channel now (null: they can). The same checks
    serve the campaign preview and the send-time re-check. */
create function app.marketing_block(p_business_id uuid, p_customer_id uuid, p_venue_id uuid, p_channel text,
                                    p_consent_channel text, p_product_id uuid) returns text
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_customer public.customers;
  v_address text;
begin
  select c.* into v_customer from public.customers c where c.business_id = p_business_id and c.id = p_customer_id;
  if v_customer.id is null or v_customer.anonymised_at is not null or v_customer.merged_into is not null
     or exists (select 1 from public.customer_delete_requests d
                where d.business_id = p_business_id and d.customer_id = p_customer_id and d.status = 'pending') then
    return 'deleted';
  end if;
  v_address := case p_channel when 'sms' then v_customer.phone else lower(v_customer.email) end;
  if v_address is null then
    return 'no_contact';
  end if;
  if not app.has_consent(p_business_id, p_customer_id, p_consent_channel, p_venue_id) then
    return 'no_consent';
  end if;
  if exists (select 1 from public.marketing_suppressions s
             where s.business_id = p_business_id and s.channel = p_channel and s.address = v_address) then
    return 'suppressed';
  end if;
  if p_product_id is not null then
    if exists (select 1 from public.products p
               where p.business_id = p_business_id and p.id = p_product_id
                 and (select array_agg(lower(trim(x))) from unnest(p.allergens) x)
                     && (select array_agg(lower(trim(x))) from unnest(v_customer.allergens) x)) then
      return 'allergen';
    end if;
    if exists (select 1 from public.recipe_lines r
               join public.stock_items s on s.business_id = r.business_id and s.sku = r.stock_sku
               where r.business_id = p_business_id and r.product_id = p_product_id
                 and (p_venue_id is null or s.venue_id = p_venue_id)
                 and s.quantity <= s.critical_level) then
      return 'stock_critical';
    end if;
  end if;
  return null;
end
$$;
revoke all on function app.marketing_block(uuid, uuid, uuid, text, text, uuid) from public;
grant execute on function app.marketing_block(uuid, uuid, uuid, text, text, uuid) to service_role;

/** The send-time decision for one send, under a row lock (a second worker with a duplicate event
    waits, then finds it done). Answers {action: none | wait | deferred | skipped | send, ...}:
    skipped rows are final with their reason; quiet hours move due_at to the end of the window and
    emit the event again with that delay; `send` carries the recipient and the template's variables. */
create function app.claim_marketing_send(p_business_id uuid, p_send_id uuid, p_now timestamptz default now()) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_send public.campaign_sends;
  v_rule public.automations;
  v_campaign public.campaigns;
  v_trigger text;
  v_product uuid;
  v_subject text;
  v_body text;
  v_reason text;
  v_recipient text;
  v_tz text;
  v_local timestamp;
  v_end timestamp;
  v_delay integer;
  v_vars jsonb;
begin
  select s.* into v_send from public.campaign_sends s where s.business_id = p_business_id and s.id = p_send_id for update;
  if v_send.id is null or v_send.status <> 'scheduled' then
    return jsonb_build_object('action', 'none', 'status', v_send.status);
  end if;
  if v_send.due_at > p_now + interval '1 second' then
    return jsonb_build_object('action', 'wait', 'due_at', v_send.due_at);  -- an early duplicate: the deferred event follows
  end if;

  if v_send.automation_id is not null then
    select a.* into v_rule from public.automations a where a.business_id = p_business_id and a.id = v_send.automation_id;
    v_trigger := v_rule.trigger; v_product := v_rule.product_id; v_subject := v_rule.subject; v_body := v_rule.body;
    if not v_rule.is_active then
      v_reason := 'inactive';
    end if;
  else
    select c.* into v_campaign from public.campaigns c where c.business_id = p_business_id and c.id = v_send.campaign_id;
    v_trigger := 'campaign'; v_product := v_campaign.product_id; v_subject := v_campaign.subject; v_body := v_campaign.body;
    if v_campaign.status = 'cancelled' then
      v_reason := 'inactive';
    end if;
  end if;
  if v_reason is null and not app.module_enabled(p_business_id, 'campaigns') then
    v_reason := 'module_off';
  end if;

  if v_reason is null and v_send.customer_id is not null then
    v_reason := app.marketing_block(p_business_id, v_send.customer_id, v_send.venue_id, v_send.channel,
                                    app.marketing_consent_channel(v_trigger, v_send.channel), v_product);
  end if;
  if v_reason is null and v_send.user_id is not null
     and not exists (select 1 from public.memberships m where m.business_id = p_business_id and m.user_id = v_send.user_id) then
    v_reason := 'deleted';  -- the manager left the business during the delay
  end if;

  if v_reason is null and v_rule.cap_count is not null and (
      select count(*) from public.campaign_sends s
      where s.business_id = p_business_id and s.status = 'sent'
        and s.customer_id is not distinct from v_send.customer_id and s.user_id is not distinct from v_send.user_id
        and s.sent_at > p_now - make_interval(days => v_rule.cap_days)
        and (v_rule.cap_scope = 'business' or s.automation_id = v_rule.id)) >= v_rule.cap_count then
    v_reason := 'frequency_cap';
  end if;

  if v_reason is not null then
    update public.campaign_sends set status = 'skipped', skip_reason = v_reason
    where business_id = p_business_id and id = p_send_id;
    return jsonb_build_object('action', 'skipped', 'reason', v_reason);
  end if;

  -- quiet hours, in the venue's time zone (the business's when the send has no venue)
  if v_rule.quiet_start is not null then
    select coalesce(v.time_zone, b.time_zone) into v_tz
    from public.businesses b left join public.venues v on v.business_id = b.id and v.id = v_send.venue_id
    where b.id = p_business_id;
    v_local := p_now at time zone v_tz;
    if (v_rule.quiet_start < v_rule.quiet_end and v_local::time >= v_rule.quiet_start and v_local::time < v_rule.quiet_end)
       or (v_rule.quiet_start > v_rule.quiet_end and (v_local::time >= v_rule.quiet_start or v_local::time < v_rule.quiet_end)) then
      v_end := v_local::date + v_rule.quiet_end;
      if v_end <= v_local then
        v_end := v_end + interval '1 day';
      end if;
      v_delay := greatest(1, ceil(extract(epoch from (v_end at time zone v_tz) - p_now))::integer);
      update public.campaign_sends set due_at = v_end at time zone v_tz, deferrals = deferrals + 1
      where business_id = p_business_id and id = p_send_id;
      perform app.emit('automation.due', p_business_id, jsonb_build_object('send_id', p_send_id), v_delay);
      return jsonb_build_object('action', 'deferred', 'until', v_end at time zone v_tz, 'delay_seconds', v_delay);
    end if;
  end if;

  if v_send.customer_id is not null then
    select case v_send.channel when 'sms' then c.phone else c.email end,
           jsonb_build_object('first_name', coalesce(split_part(c.full_name, ' ', 1), ''), 'full_name', coalesce(c.full_name, ''),
                              'points', coalesce(la.balance, 0), 'tier', coalesce(t.name, ''))
    into v_recipient, v_vars
    from public.customers c
    left join public.loyalty_accounts la on la.business_id = c.business_id and la.customer_id = c.id
    left join public.loyalty_tiers t on t.business_id = la.business_id and t.id = la.tier_id
    where c.business_id = p_business_id and c.id = v_send.customer_id;
  else
    select case v_send.channel when 'sms' then u.phone else u.email end, jsonb_build_object('first_name', '', 'full_name', '')
    into v_recipient, v_vars
    from auth.users u where u.id = v_send.user_id;
    if v_recipient is null then
      update public.campaign_sends set status = 'skipped', skip_reason = 'no_contact' where business_id = p_business_id and id = p_send_id;
      return jsonb_build_object('action', 'skipped', 'reason', 'no_contact');
    end if;
  end if;

  select v_vars || jsonb_build_object('business_name', b.name, 'venue_name', coalesce(v.name, ''),
                                      'product_name', coalesce(p.name, '')) || v_send.context
  into v_vars
  from public.businesses b
  left join public.venues v on v.business_id = b.id and v.id = v_send.venue_id
  left join public.products p on p.business_id = b.id and p.id = v_product
  where b.id = p_business_id;

  return jsonb_build_object('action', 'send', 'send_id', v_send.id, 'channel', v_send.channel, 'recipient', v_recipient,
    'customer_id', v_send.customer_id, 'venue_id', v_send.venue_id, 'trigger', v_trigger,
    'marketing', v_send.customer_id is not null, 'subject', v_subject, 'body', v_body, 'vars', v_vars,
    'unsubscribe_channel', case when v_send.customer_id is not null then app.marketing_consent_channel(v_trigger, v_send.channel) end,
    'unsubscribe_token', case when v_send.customer_id is not null
                              then app.unsubscribe_token(p_business_id, v_send.customer_id, app.marketing_consent_channel(v_trigger, v_send.channel)) end);
end
$$;
revoke all on function app.claim_marketing_send(uuid, uuid, timestamptz) from public;
grant execute on function app.claim_marketing_send(uuid, uuid, timestamptz) to service_role;

/** Records the outcome of a claimed send: its notification_log row (cost, provider id) and, once
    sent, its 7-day attribution window (168 hours from now). */
create function app.complete_marketing_send(p_business_id uuid, p_send_id uuid, p_recipient text, p_template text,
                                            p_provider text, p_message_id text, p_cost_cents numeric, p_error text)
returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_send public.campaign_sends;
  v_note uuid;
begin
  select s.* into v_send from public.campaign_sends s where s.business_id = p_business_id and s.id = p_send_id for update;
  if v_send.id is null or v_send.status <> 'scheduled' then
    return;
  end if;
  insert into public.notification_log (business_id, event_key, channel, recipient, template, status, provider,
                                       provider_message_id, cost_cents, customer_id, venue_id, detail, error, sent_at)
  values (p_business_id, 'marketing:' || p_send_id, v_send.channel, p_recipient, p_template,
          case when p_error is null then 'sent' else 'failed' end, p_provider, p_message_id, coalesce(p_cost_cents, 0),
          v_send.customer_id, v_send.venue_id,
          jsonb_build_object('automation_id', v_send.automation_id, 'campaign_id', v_send.campaign_id),
          p_error, case when p_error is null then now() end)
  on conflict on constraint notification_log_natural_key do nothing
  returning id into v_note;
  update public.campaign_sends
  set status = case when p_error is null then 'sent' else 'failed' end, recipient = p_recipient, notification_id = v_note,
      error = p_error,
      sent_at = case when p_error is null then now() end,
      attribution_ends_at = case when p_error is null then now() + interval '168 hours' end
  where business_id = p_business_id and id = p_send_id;
end
$$;
revoke all on function app.complete_marketing_send(uuid, uuid, text, text, text, text, numeric, text) from public;
grant execute on function app.complete_marketing_send(uuid, uuid, text, text, text, text, numeric, text) to service_role;

/** A campaign at its time: the segment's members become sends (once: the natural key is the
    customer), each announced by `campaign.send`. Returns the number of recipients. An early event
    (the campaign was moved later) or a cancelled campaign does nothing. */
create function app.launch_campaign(p_business_id uuid, p_campaign_id uuid, p_now timestamptz default now()) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_venue uuid;
  v_msgs jsonb[];
begin
  select c.* into v_campaign from public.campaigns c where c.business_id = p_business_id and c.id = p_campaign_id for update;
  if v_campaign.id is null or v_campaign.status <> 'scheduled' or v_campaign.scheduled_at > p_now + interval '1 second' then
    return 0;
  end if;
  select s.venue_id into v_venue from public.segments s where s.business_id = p_business_id and s.id = v_campaign.segment_id;
  with created as (
    insert into public.campaign_sends (business_id, campaign_id, customer_id, venue_id, channel, trigger_key, due_at)
    select p_business_id, p_campaign_id, m.customer_id, v_venue, v_campaign.channel, 'campaign:' || m.customer_id, p_now
    from public.segment_memberships m
    where m.business_id = p_business_id and m.segment_id = v_campaign.segment_id
    on conflict (business_id, campaign_id, trigger_key) where campaign_id is not null do nothing
    returning id
  )
  select array_agg(jsonb_build_object('topic', 'campaign.send', 'business_id', p_business_id,
                                      'payload', jsonb_build_object('send_id', id), 'emitted_at', clock_timestamp()))
  into v_msgs from created;
  if v_msgs is not null then
    perform pgmq.send_batch('brigade_events', v_msgs, 0);
    perform pg_notify('brigade_events', '');
  end if;
  update public.campaigns set status = 'sent', launched_at = p_now, recipients = coalesce(cardinality(v_msgs), 0), updated_at = now()
  where business_id = p_business_id and id = p_campaign_id;
  return coalesce(cardinality(v_msgs), 0);
end
$$;
revoke all on function app.launch_campaign(uuid, uuid, timestamptz) from public;
grant execute on function app.launch_campaign(uuid, uuid, timestamptz) to service_role;

/** Inbound STOP / START from a phone: every customer with that number, in every business that texts
    from the number it was sent to, gets SMS_MARKETING revoked (or granted) in the consent log, and
    the number is suppressed (or released). Brigade sends from one platform number, so that is every
    business. Returns how many customers it touched. */
create function app.sms_opt(p_phone text, p_opt_in boolean) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_customer record;
  v_count integer := 0;
begin
  if p_phone is null or p_phone !~ '^\+?[0-9]{7,15}$' then
    perform app.fail('22023', 'invalid_phone', 'not a phone number');
  end if;
  for v_customer in
    select c.business_id, c.id from public.customers c
    where c.phone = p_phone and c.anonymised_at is null order by c.business_id, c.id
  loop
    perform app.record_consent(v_customer.business_id, v_customer.id, 'SMS_MARKETING', p_opt_in,
                               case when p_opt_in then 'sms_start' else 'sms_stop' end, null, null, 'twilio-sms');
    if p_opt_in then
      delete from public.marketing_suppressions s
      where s.business_id = v_customer.business_id and s.channel = 'sms' and s.address = p_phone and s.reason = 'sms_stop';
    else
      insert into public.marketing_suppressions (business_id, channel, address, reason)
      values (v_customer.business_id, 'sms', p_phone, 'sms_stop') on conflict do nothing;
    end if;
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
revoke all on function app.sms_opt(text, boolean) from public;
grant execute on function app.sms_opt(text, boolean) to service_role;

/** A provider's delivery report: the notification only moves forward (sent -> delivered | failed). */
create function app.record_delivery_status(p_provider text, p_message_id text, p_status text) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_status text := case p_status when 'delivered' then 'delivered' when 'undelivered' then 'failed' when 'failed' then 'failed' end;
  v_count integer;
begin
  if v_status is null then
    return 0;  -- queued, sending, sent: nothing new
  end if;
  update public.notification_log n set status = v_status, error = case when v_status = 'failed' then 'provider reported ' || p_status end
  where n.provider = p_provider and n.provider_message_id = p_message_id and n.status in ('pending', 'sent');
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
revoke all on function app.record_delivery_status(text, text, text) from public;
grant execute on function app.record_delivery_status(text, text, text) to service_role;

/** Resend's email events: delivered moves the notification forward; a bounce fails it and a spam
    complaint stays delivered, and both suppress the address for the business that sent it. */
create function app.record_email_event(p_message_id text, p_type text) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_note record;
  v_count integer := 0;
begin
  if p_type = 'email.delivered' then
    return app.record_delivery_status('resend', p_message_id, 'delivered');
  elsif p_type not in ('email.bounced', 'email.complained') then
    return 0;
  end if;
  for v_note in
    select n.business_id, lower(n.recipient) as address from public.notification_log n
    where n.provider = 'resend' and n.provider_message_id = p_message_id and n.channel = 'email'
  loop
    insert into public.marketing_suppressions (business_id, channel, address, reason)
    values (v_note.business_id, 'email', v_note.address, case p_type when 'email.bounced' then 'bounce' else 'complaint' end)
    on conflict do nothing;
    v_count := v_count + 1;
  end loop;
  if p_type = 'email.bounced' then
    perform app.record_delivery_status('resend', p_message_id, 'failed');
  end if;
  return v_count;
end
$$;
revoke all on function app.record_email_event(text, text) from public;
grant execute on function app.record_email_event(text, text) to service_role;

-- section triggers

/** Orders: attribution when paid (the latest send to the customer whose window holds the order's
    placing time), first-order and review-request automations. */
create function app.tg_orders_campaigns() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_send record;
begin
  if new.customer_id is null then
    return null;
  end if;
  if new.payment_status = 'paid' and old.payment_status in ('unpaid', 'pending', 'failed') then
    select s.id, s.automation_id, s.campaign_id into v_send
    from public.campaign_sends s
    where s.business_id = new.business_id and s.customer_id = new.customer_id and s.status = 'sent'
      and s.sent_at <= new.placed_at and new.placed_at < s.attribution_ends_at
    order by s.sent_at desc, s.id desc limit 1;
    if v_send.id is not null then
      insert into public.campaign_attributions (business_id, order_id, send_id, automation_id, campaign_id, customer_id)
      values (new.business_id, new.id, v_send.id, v_send.automation_id, v_send.campaign_id, new.customer_id)
      on conflict do nothing;
    end if;
    -- on the paid-order path: look for earlier orders only when a first-order rule could use the answer
    if exists (select 1 from public.automations a where a.business_id = new.business_id and a.trigger = 'order.first' and a.is_active)
       and not exists (select 1 from public.orders o where o.business_id = new.business_id and o.customer_id = new.customer_id
                       and o.id <> new.id and o.paid_at is not null) then
      perform app.enqueue_automations(new.business_id, 'order.first', 'first:' || new.customer_id, new.customer_id, new.venue_id,
                                      jsonb_build_object('order_id', new.id, 'order_number', new.order_number));
    end if;
  end if;
  if new.status = 'completed' and old.status <> 'completed' then
    perform app.enqueue_automations(new.business_id, 'order.review_request', 'review:' || new.id, new.customer_id, new.venue_id,
                                    jsonb_build_object('order_id', new.id, 'order_number', new.order_number));
  end if;
  return null;
end
$$;
create trigger orders_campaigns after update of status, payment_status on public.orders
  for each row execute function app.tg_orders_campaigns();

/** Birthdays (once a year, marked by the CRM's nightly run) start birthday automations. */
create function app.tg_crm_event_marks_campaigns() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.kind = 'birthday' then
    perform app.enqueue_automations(new.business_id, 'customer.birthday', 'birthday:' || new.customer_id || ':' || new.period,
                                    new.customer_id, null, jsonb_build_object('year', new.period));
  end if;
  return null;
end
$$;
create trigger crm_event_marks_campaigns after insert on app.crm_event_marks
  for each row execute function app.tg_crm_event_marks_campaigns();

/** A tier change starts tier automations. */
create function app.tg_loyalty_accounts_campaigns() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.tier_id is not null and new.tier_id is distinct from old.tier_id then
    perform app.enqueue_automations(new.business_id, 'loyalty.tier_changed',
      'tier:' || new.customer_id || ':' || new.tier_id || ':' || coalesce(new.tier_computed_at, now()),
      new.customer_id, null,
      jsonb_build_object('tier', (select t.name from public.loyalty_tiers t where t.business_id = new.business_id and t.id = new.tier_id)));
  end if;
  return null;
end
$$;
create trigger loyalty_accounts_campaigns after update of tier_id on public.loyalty_accounts
  for each row execute function app.tg_loyalty_accounts_campaigns();

/** Crossing a critical level starts stock automations for the venue's owners and managers (never
    customers): one send per manager and crossing. */
create function app.tg_stock_items_campaigns() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_user uuid;
begin
  if old.quantity > old.critical_level and new.quantity <= new.critical_level then
    for v_user in
      select m.user_id from public.memberships m
      where m.business_id = new.business_id and m.role in ('owner', 'manager')
        and (not exists (select 1 from public.membership_venues mv where mv.business_id = m.business_id and mv.membership_id = m.id)
             or exists (select 1 from public.membership_venues mv where mv.business_id = m.business_id and mv.membership_id = m.id
                        and mv.venue_id = new.venue_id))
      order by m.user_id
    loop
      perform app.enqueue_automations(new.business_id, 'stock.critical',
        'stock:' || new.id || ':' || v_user || ':' || new.updated_at, null, new.venue_id,
        jsonb_build_object('stock_item', new.name, 'quantity', new.quantity, 'unit', new.unit), v_user);
    end loop;
  end if;
  return null;
end
$$;
create trigger stock_items_campaigns after update of quantity on public.stock_items
  for each row execute function app.tg_stock_items_campaigns();

create trigger automations_touch before update on public.automations for each row execute function app.tg_touch_updated_at();
create trigger campaigns_touch before update on public.campaigns for each row execute function app.tg_touch_updated_at();

-- section views

/** Per automation and campaign: sends, delivered, orders attributed, revenue recovered (net of
    refunds) and what the messages cost. Reads through the caller's RLS. */
create view public.campaign_performance with (security_invoker = true) as
with sources as (
  select a.business_id, 'automation'::text as kind, a.id, a.name, a.trigger, a.channel from public.automations a
  union all
  select c.business_id, 'campaign', c.id, c.name, 'campaign', c.channel from public.campaigns c
), sends as (
  select s.business_id, coalesce(s.automation_id, s.campaign_id) as source_id,
         count(*) filter (where s.status = 'sent') as sends,
         count(*) filter (where s.status = 'skipped') as skipped,
         count(*) filter (where n.status = 'delivered') as delivered,
         coalesce(sum(n.cost_cents), 0) as message_cost_cents
  from public.campaign_sends s
  left join public.notification_log n on n.business_id = s.business_id and n.id = s.notification_id
  group by 1, 2
), revenue as (
  select t.business_id, coalesce(t.automation_id, t.campaign_id) as source_id, count(*) as orders,
         sum(o.total_cents - o.refunded_cents) as revenue_cents
  from public.campaign_attributions t
  join public.orders o on o.business_id = t.business_id and o.id = t.order_id
  group by 1, 2
)
select src.business_id, src.kind, src.id, src.name, src.trigger, src.channel,
       coalesce(s.sends, 0) as sends, coalesce(s.skipped, 0) as skipped, coalesce(s.delivered, 0) as delivered,
       coalesce(r.orders, 0) as orders, coalesce(r.revenue_cents, 0) as revenue_cents,
       coalesce(s.message_cost_cents, 0) as message_cost_cents
from sources src
left join sends s on s.business_id = src.business_id and s.source_id = src.id
left join revenue r on r.business_id = src.business_id and r.source_id = src.id;

-- section policies
create policy "marketers read automations" on public.automations for select to authenticated
  using (app.module_enabled(business_id, 'campaigns') and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "marketers add automations" on public.automations for insert to authenticated
  with check (app.module_enabled(business_id, 'campaigns') and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "marketers edit automations" on public.automations for update to authenticated
  using (app.module_enabled(business_id, 'campaigns') and business_id in (select app.my_business_ids('{owner,manager}')))
  with check (app.module_enabled(business_id, 'campaigns') and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "marketers delete automations" on public.automations for delete to authenticated
  using (app.module_enabled(business_id, 'campaigns') and business_id in (select app.my_business_ids('{owner,manager}')));

create policy "marketers read campaigns" on public.campaigns for select to authenticated
  using (app.module_enabled(business_id, 'campaigns') and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "marketers add campaigns" on public.campaigns for insert to authenticated
  with check (app.module_enabled(business_id, 'campaigns') and business_id in (select app.my_business_ids('{owner,manager}'))
              and status = 'draft');
create policy "marketers edit draft campaigns" on public.campaigns for update to authenticated
  using (app.module_enabled(business_id, 'campaigns') and business_id in (select app.my_business_ids('{owner,manager}')) and status = 'draft')
  with check (app.module_enabled(business_id, 'campaigns') and business_id in (select app.my_business_ids('{owner,manager}')) and status = 'draft');
create policy "marketers delete draft campaigns" on public.campaigns for delete to authenticated
  using (app.module_enabled(business_id, 'campaigns') and business_id in (select app.my_business_ids('{owner,manager}')) and status = 'draft');

create policy "marketers read sends" on public.campaign_sends for select to authenticated
  using (app.module_enabled(business_id, 'campaigns') and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "marketers read attributions" on public.campaign_attributions for select to authenticated
  using (app.module_enabled(business_id, 'campaigns') and business_id in (select app.my_business_ids('{owner,manager}')));
create policy "marketers read suppressions" on public.marketing_suppressions for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager}')));
create policy "marketers add suppressions" on public.marketing_suppressions for insert to authenticated
  with check (business_id in (select app.my_business_ids('{owner,manager}')) and reason = 'manual');

-- section grants
revoke all on public.automations, public.campaigns, public.campaign_sends, public.campaign_attributions,
  public.marketing_suppressions, public.campaign_performance from anon, authenticated;
grant select, delete, insert (business_id, name, trigger, dormant_days, venue_id, segment_id, delay_seconds, channel, subject, body,
                              product_id, quiet_start, quiet_end, cap_count, cap_days, cap_scope, is_active),
  update (name, dormant_days, venue_id, segment_id, delay_seconds, channel, subject, body, product_id, quiet_start, quiet_end,
          cap_count, cap_days, cap_scope, is_active)
  on public.automations to authenticated;
grant select, delete, insert (business_id, name, segment_id, channel, subject, body, product_id, scheduled_at),
  update (name, segment_id, channel, subject, body, product_id, scheduled_at)
  on public.campaigns to authenticated;
grant select on public.campaign_sends, public.campaign_attributions, public.campaign_performance to authenticated;
grant select, insert (business_id, channel, address, reason) on public.marketing_suppressions to authenticated;
grant all on public.automations, public.campaigns, public.campaign_sends, public.campaign_attributions,
  public.marketing_suppressions, public.campaign_performance to service_role;

-- section rpc

/** How many members of a segment a campaign would reach on a channel now, and why the others would
    be skipped (the send-time checks, applied to every member). Owners and managers of the segment's
    venue. */
create function app.campaign_preview(p_segment_id uuid, p_channel text, p_product_id uuid default null) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  v_segment public.segments;
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
  with r as (
    select app.marketing_block(v_segment.business_id, m.customer_id, v_segment.venue_id, p_channel,
                               app.marketing_consent_channel('campaign', p_channel), p_product_id) as reason
    from public.segment_memberships m where m.business_id = v_segment.business_id and m.segment_id = v_segment.id
  )
  select jsonb_build_object(
    'members', (select count(*) from r),
    'reachable', (select count(*) from r where r.reason is null),
    'blocked', coalesce((select jsonb_object_agg(x.reason, x.n) from (
                           select r.reason, count(*) as n from r where r.reason is not null group by r.reason) x), '{}'::jsonb))
  into v_result;
  return v_result;
end
$$;
revoke all on function app.campaign_preview(uuid, text, uuid) from public;
grant execute on function app.campaign_preview(uuid, text, uuid) to authenticated, service_role;

create function public.campaign_preview(segment_id uuid, channel text, product_id uuid default null) returns jsonb
language sql stable
set search_path = ''
as $$
  select app.campaign_preview(segment_id, channel, product_id)
$$;
revoke all on function public.campaign_preview(uuid, text, uuid) from public;
grant execute on function public.campaign_preview(uuid, text, uuid) to authenticated, service_role;

/** The caller's campaign, locked, while it can still change (draft or scheduled): PT404 when it is
    not a campaign of a business they market for (or the module is off), BR351 once sent or cancelled. */
create function app.lock_editable_campaign(p_campaign_id uuid) returns public.campaigns
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
begin
  select c.* into v_campaign from public.campaigns c where c.id = p_campaign_id for update;
  if v_campaign.id is null or not app.module_enabled(v_campaign.business_id, 'campaigns')
     or not (v_campaign.business_id in (select app.my_business_ids('{owner,manager}')) or app.is_platform_or_service()) then
    perform app.fail('PT404', 'campaign_not_found', 'no such campaign');
  end if;
  if v_campaign.status not in ('draft', 'scheduled') then
    perform app.fail('BR351', 'campaign_not_editable', 'the campaign was already sent or cancelled');
  end if;
  return v_campaign;
end
$$;
revoke all on function app.lock_editable_campaign(uuid) from public;
grant execute on function app.lock_editable_campaign(uuid) to authenticated, service_role;

/** Schedules a draft (or re-schedules a scheduled) campaign: `campaign.due` fires at the time. */
create function app.schedule_campaign(p_campaign_id uuid, p_at timestamptz) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := app.lock_editable_campaign(p_campaign_id);
begin
  if p_at is null or p_at < now() - interval '1 minute' then
    perform app.fail('BR352', 'scheduled_in_past', 'the campaign needs a time that has not passed');
  end if;
  update public.campaigns set status = 'scheduled', scheduled_at = p_at where business_id = v_campaign.business_id and id = v_campaign.id;
  perform app.emit('campaign.due', v_campaign.business_id, jsonb_build_object('campaign_id', v_campaign.id),
                   greatest(0, ceil(extract(epoch from p_at - now())))::integer);
  return jsonb_build_object('campaign_id', v_campaign.id, 'scheduled_at', p_at, 'preview',
    app.campaign_preview(v_campaign.segment_id, v_campaign.channel, v_campaign.product_id));
end
$$;
revoke all on function app.schedule_campaign(uuid, timestamptz) from public;
grant execute on function app.schedule_campaign(uuid, timestamptz) to authenticated, service_role;

create function public.schedule_campaign(campaign_id uuid, at timestamptz) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.schedule_campaign(campaign_id, at)
$$;
revoke all on function public.schedule_campaign(uuid, timestamptz) from public;
grant execute on function public.schedule_campaign(uuid, timestamptz) to authenticated, service_role;

/** Cancels a campaign that has not gone out; its scheduled event then does nothing. */
create function app.cancel_campaign(p_campaign_id uuid) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := app.lock_editable_campaign(p_campaign_id);
begin
  update public.campaigns set status = 'cancelled' where business_id = v_campaign.business_id and id = v_campaign.id;
end
$$;
revoke all on function app.cancel_campaign(uuid) from public;
grant execute on function app.cancel_campaign(uuid) to authenticated, service_role;

create function public.cancel_campaign(campaign_id uuid) returns void
language sql volatile
set search_path = ''
as $$
  select app.cancel_campaign(campaign_id)
$$;
revoke all on function public.cancel_campaign(uuid) from public;
grant execute on function public.cancel_campaign(uuid) to authenticated, service_role;
