-- Campaign sends claimed in batches (issue 18): the worker claims up to marketing_claim_batch due
-- sends in one call (the event's own send first, then the earliest due, FOR UPDATE SKIP LOCKED over
-- a partial index), checks them with app.marketing_blocks per group, and commits the outcome before
-- any provider is called: skips are final, quiet hours defer, and sends move to `sending`. Each send
-- is then marked attempted (committed) just before its provider call and completed after it, so a
-- crash never sends a message twice: app.recover_marketing_sends puts a stale `sending` row that was
-- never attempted back to `scheduled` (announced again) and fails one that was attempted
-- (`interrupted`: the provider may have sent it; it is not sent again).
-- app.claim_marketing_send and app.complete_marketing_send (0010) become the one-send case of these.

-- section tables
alter table public.campaign_sends drop constraint campaign_sends_status_valid,
  add constraint campaign_sends_status_valid check (status in ('scheduled', 'sending', 'sent', 'skipped', 'failed'));
alter table public.campaign_sends add column claimed_at timestamptz, add column attempted_at timestamptz;

-- section indexes
create index campaign_sends_due_idx on public.campaign_sends (due_at) where status = 'scheduled';
create index campaign_sends_sending_idx on public.campaign_sends (claimed_at) where status = 'sending';

-- section private helpers

/** The send-time decision for a batch: the given send (locked, waiting for a concurrent claim of it)
    and up to p_limit - 1 other due sends of any business (SKIP LOCKED: another worker's batch is
    left to it). Answers one jsonb per send: {action: none | wait | deferred | skipped | send, send_id,
    business_id, ...} as app.claim_marketing_send did; skips are final with their reason, quiet hours
    move due_at and announce the send again, and `send` rows are left in status `sending` with the
    recipient and the template's variables. The frequency cap counts sends in flight (`sending`)
    besides those sent, so two sends of one capped rule in one batch are capped as if one after the
    other. */
create function app.claim_marketing_sends(p_business_id uuid, p_send_id uuid, p_limit integer, p_now timestamptz default now())
returns setof jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_first public.campaign_sends;
  v_ids uuid[] := '{}';
  v_row record;
  v_reason text;
  v_tz text;
  v_local timestamp;
  v_end timestamp;
  v_delay integer;
  v_recipient text;
  v_vars jsonb;
  v_unsub text;
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    perform app.fail('22023', 'invalid_input', 'a batch is 1 to 1000 sends');
  end if;
  if p_send_id is not null then
    select s.* into v_first from public.campaign_sends s where s.business_id = p_business_id and s.id = p_send_id for update;
    if v_first.id is null or v_first.status <> 'scheduled' then
      return next jsonb_build_object('action', 'none', 'status', v_first.status, 'send_id', p_send_id, 'business_id', p_business_id);
    elsif v_first.due_at > p_now + interval '1 second' then
      return next jsonb_build_object('action', 'wait', 'due_at', v_first.due_at, 'send_id', p_send_id, 'business_id', p_business_id);
    else
      v_ids := array[v_first.id];
    end if;
  end if;
  if p_limit > cardinality(v_ids) then
    v_ids := v_ids || array(
      select s.id from public.campaign_sends s
      where s.status = 'scheduled' and s.due_at <= p_now + interval '1 second' and s.id is distinct from p_send_id
      order by s.due_at limit p_limit - cardinality(v_ids)
      for update skip locked);
  end if;
  if cardinality(v_ids) = 0 then
    return;
  end if;

  for v_row in
    with batch as (
      select s.business_id, s.id, s.automation_id, s.customer_id, s.user_id, s.venue_id, s.channel, s.context, s.due_at,
             coalesce(a.trigger, 'campaign') as trigger,
             case when s.automation_id is not null then a.product_id else c.product_id end as product_id,
             case when s.automation_id is not null then a.subject else c.subject end as subject,
             case when s.automation_id is not null then a.body else c.body end as body,
             case when s.automation_id is not null then not a.is_active else c.status = 'cancelled' end as inactive,
             not app.module_enabled(s.business_id, 'campaigns') as module_off,
             a.cap_count, a.cap_days, a.cap_scope, a.quiet_start, a.quiet_end
      from public.campaign_sends s
      left join public.automations a on a.business_id = s.business_id and a.id = s.automation_id
      left join public.campaigns c on c.business_id = s.business_id and c.id = s.campaign_id
      where s.id = any(v_ids)
    ), groups as (  -- customer sends still in question, per business, channel, consent channel and product
      select b.business_id, b.channel, app.marketing_consent_channel(b.trigger, b.channel) as consent, b.product_id,
             array_agg(b.id order by b.id) as ids, array_agg(b.customer_id order by b.id) as customers,
             array_agg(b.venue_id order by b.id) as venues
      from batch b where b.customer_id is not null and not coalesce(b.inactive, false) and not b.module_off
      group by 1, 2, 3, 4
    ), blocks as (
      select g.ids[k.ord] as id, k.reason
      from groups g cross join lateral app.marketing_blocks(g.business_id, g.channel, g.consent, g.product_id, g.customers, g.venues) k
    )
    select b.*, k.reason as block from batch b left join blocks k on k.id = b.id
    order by b.id = p_send_id desc nulls last, b.due_at, b.id
  loop
    v_reason := case when coalesce(v_row.inactive, false) then 'inactive' when v_row.module_off then 'module_off' else v_row.block end;
    if v_reason is null and v_row.user_id is not null
       and not exists (select 1 from public.memberships m where m.business_id = v_row.business_id and m.user_id = v_row.user_id) then
      v_reason := 'deleted';  -- the manager left the business during the delay
    end if;
    if v_reason is null and v_row.cap_count is not null and (
        select count(*) from public.campaign_sends s
        where s.business_id = v_row.business_id
          and s.customer_id is not distinct from v_row.customer_id and s.user_id is not distinct from v_row.user_id
          and (v_row.cap_scope = 'business' or s.automation_id = v_row.automation_id)
          and ((s.status = 'sent' and s.sent_at > p_now - make_interval(days => v_row.cap_days))
               or (s.status = 'sending' and s.claimed_at > p_now - make_interval(days => v_row.cap_days)))) >= v_row.cap_count then
      v_reason := 'frequency_cap';
    end if;
    if v_reason is not null then
      update public.campaign_sends set status = 'skipped', skip_reason = v_reason where business_id = v_row.business_id and id = v_row.id;
      return next jsonb_build_object('action', 'skipped', 'reason', v_reason, 'send_id', v_row.id, 'business_id', v_row.business_id);
      continue;
    end if;

    -- quiet hours, in the venue's time zone (the business's when the send has no venue)
    if v_row.quiet_start is not null then
      select coalesce(v.time_zone, b.time_zone) into v_tz
      from public.businesses b left join public.venues v on v.business_id = b.id and v.id = v_row.venue_id
      where b.id = v_row.business_id;
      v_local := p_now at time zone v_tz;
      if (v_row.quiet_start < v_row.quiet_end and v_local::time >= v_row.quiet_start and v_local::time < v_row.quiet_end)
         or (v_row.quiet_start > v_row.quiet_end and (v_local::time >= v_row.quiet_start or v_local::time < v_row.quiet_end)) then
        v_end := v_local::date + v_row.quiet_end;
        if v_end <= v_local then
          v_end := v_end + interval '1 day';
        end if;
        v_delay := greatest(1, ceil(extract(epoch from (v_end at time zone v_tz) - p_now))::integer);
        update public.campaign_sends set due_at = v_end at time zone v_tz, deferrals = deferrals + 1
        where business_id = v_row.business_id and id = v_row.id;
        perform app.emit('automation.due', v_row.business_id, jsonb_build_object('send_id', v_row.id), v_delay);
        return next jsonb_build_object('action', 'deferred', 'until', v_end at time zone v_tz, 'delay_seconds', v_delay,
                                       'send_id', v_row.id, 'business_id', v_row.business_id);
        continue;
      end if;
    end if;

    if v_row.customer_id is not null then
      select case v_row.channel when 'sms' then c.phone else c.email end,
             jsonb_build_object('first_name', coalesce(split_part(c.full_name, ' ', 1), ''), 'full_name', coalesce(c.full_name, ''),
                                'points', coalesce(la.balance, 0), 'tier', coalesce(t.name, ''))
      into v_recipient, v_vars
      from public.customers c
      left join public.loyalty_accounts la on la.business_id = c.business_id and la.customer_id = c.id
      left join public.loyalty_tiers t on t.business_id = la.business_id and t.id = la.tier_id
      where c.business_id = v_row.business_id and c.id = v_row.customer_id;
    else
      select case v_row.channel when 'sms' then u.phone else u.email end, jsonb_build_object('first_name', '', 'full_name', '')
      into v_recipient, v_vars
      from auth.users u where u.id = v_row.user_id;
      if v_recipient is null then
        update public.campaign_sends set status = 'skipped', skip_reason = 'no_contact' where business_id = v_row.business_id and id = v_row.id;
        return next jsonb_build_object('action', 'skipped', 'reason', 'no_contact', 'send_id', v_row.id, 'business_id', v_row.business_id);
        continue;
      end if;
    end if;

    select v_vars || jsonb_build_object('business_name', b.name, 'venue_name', coalesce(v.name, ''),
                                        'product_name', coalesce(p.name, '')) || v_row.context
    into v_vars
    from public.businesses b
    left join public.venues v on v.business_id = b.id and v.id = v_row.venue_id
    left join public.products p on p.business_id = b.id and p.id = v_row.product_id
    where b.id = v_row.business_id;

    update public.campaign_sends set status = 'sending', claimed_at = p_now, recipient = v_recipient
    where business_id = v_row.business_id and id = v_row.id;
    v_unsub := case when v_row.customer_id is not null then app.marketing_consent_channel(v_row.trigger, v_row.channel) end;
    return next jsonb_build_object('action', 'send', 'send_id', v_row.id, 'business_id', v_row.business_id, 'channel', v_row.channel,
      'recipient', v_recipient, 'customer_id', v_row.customer_id, 'venue_id', v_row.venue_id, 'trigger', v_row.trigger,
      'marketing', v_row.customer_id is not null, 'subject', v_row.subject, 'body', v_row.body, 'vars', v_vars,
      'unsubscribe_channel', v_unsub,
      'unsubscribe_token', case when v_row.customer_id is not null then app.unsubscribe_token(v_row.business_id, v_row.customer_id, v_unsub) end);
  end loop;
end
$$;
revoke all on function app.claim_marketing_sends(uuid, uuid, integer, timestamptz) from public;
grant execute on function app.claim_marketing_sends(uuid, uuid, integer, timestamptz) to service_role;

/** Marks a claimed send as handed to its provider, committed before the call: true when it may go
    out (still `sending`, not attempted before). A crash after this never sends it again. */
create function app.start_marketing_send(p_business_id uuid, p_send_id uuid) returns boolean
language sql volatile security definer
set search_path = ''
as $$
  with started as (
    update public.campaign_sends set attempted_at = clock_timestamp()
    where business_id = p_business_id and id = p_send_id and status = 'sending' and attempted_at is null
    returning 1
  )
  select exists (select 1 from started)
$$;
revoke all on function app.start_marketing_send(uuid, uuid) from public;
grant execute on function app.start_marketing_send(uuid, uuid) to service_role;

/** Records the outcomes of claimed sends, set-based: p_results is a JSON array of {business_id,
    send_id, recipient, template, provider, message_id, cost_cents, error}. Each gets its
    notification_log row and, once sent, its 7-day attribution window. A send not in flight (already
    completed: a duplicate) is left alone; one recovery failed as interrupted takes the real outcome.
    Returns how many were recorded. */
create function app.complete_marketing_sends(p_results jsonb) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  with r as (
    select x.* from jsonb_to_recordset(p_results) as x(business_id uuid, send_id uuid, recipient text, template text, provider text,
                                                      message_id text, cost_cents numeric, error text)
  ), s as (
    select c.business_id, c.id, c.channel, c.customer_id, c.venue_id, c.automation_id, c.campaign_id,
           r.recipient, r.template, r.provider, r.message_id, r.cost_cents, r.error
    from public.campaign_sends c join r on r.business_id = c.business_id and r.send_id = c.id
    where c.status in ('scheduled', 'sending') or (c.status = 'failed' and c.error = 'interrupted')
    for update of c
  ), n as (
    insert into public.notification_log (business_id, event_key, channel, recipient, template, status, provider,
                                         provider_message_id, cost_cents, customer_id, venue_id, detail, error, sent_at)
    select s.business_id, 'marketing:' || s.id, s.channel, s.recipient, s.template,
           case when s.error is null then 'sent' else 'failed' end, s.provider, s.message_id, coalesce(s.cost_cents, 0),
           s.customer_id, s.venue_id, jsonb_build_object('automation_id', s.automation_id, 'campaign_id', s.campaign_id),
           s.error, case when s.error is null then now() end
    from s
    on conflict on constraint notification_log_natural_key do nothing
    returning id, business_id, event_key
  )
  update public.campaign_sends c
  set status = case when s.error is null then 'sent' else 'failed' end, recipient = s.recipient, notification_id = n.id,
      error = s.error,
      sent_at = case when s.error is null then now() end,
      attribution_ends_at = case when s.error is null then now() + interval '168 hours' end
  from s left join n on n.business_id = s.business_id and n.event_key = 'marketing:' || s.id
  where c.business_id = s.business_id and c.id = s.id;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
revoke all on function app.complete_marketing_sends(jsonb) from public;
grant execute on function app.complete_marketing_sends(jsonb) to service_role;

/** Sends a crashed worker left `sending` for longer than p_lease: never handed to a provider, they
    are `scheduled` again and announced again (the checks run again at the next claim); handed over,
    they fail as `interrupted` and are not sent again (an SMS has no idempotency key to retry with).
    Returns how many it touched. Run by the worker's campaigns.recover job. */
create function app.recover_marketing_sends(p_lease interval default interval '10 minutes', p_now timestamptz default now())
returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_row record;
  v_count integer := 0;
begin
  for v_row in
    select s.business_id, s.id, s.attempted_at from public.campaign_sends s
    where s.status = 'sending' and s.claimed_at < p_now - p_lease
    order by s.claimed_at
    for update skip locked
  loop
    if v_row.attempted_at is null then
      update public.campaign_sends set status = 'scheduled', claimed_at = null, recipient = null
      where business_id = v_row.business_id and id = v_row.id;
      perform app.emit('automation.due', v_row.business_id, jsonb_build_object('send_id', v_row.id), 0);
    else
      update public.campaign_sends set status = 'failed', error = 'interrupted'
      where business_id = v_row.business_id and id = v_row.id;
    end if;
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;
revoke all on function app.recover_marketing_sends(interval, timestamptz) from public;
grant execute on function app.recover_marketing_sends(interval, timestamptz) to service_role;

/** One send's decision (the batch of one), answered in the shape it always had: see
    app.claim_marketing_sends. */
create or replace function app.claim_marketing_send(p_business_id uuid, p_send_id uuid, p_now timestamptz default now()) returns jsonb
language sql volatile security definer
set search_path = ''
as $$
  select case when c ->> 'action' = 'send' then c - 'business_id' else c - 'business_id' - 'send_id' end
  from app.claim_marketing_sends(p_business_id, p_send_id, 1, p_now) c limit 1
$$;
revoke all on function app.claim_marketing_send(uuid, uuid, timestamptz) from public;
grant execute on function app.claim_marketing_send(uuid, uuid, timestamptz) to service_role;

/** Records one claimed send's outcome: see app.complete_marketing_sends. */
create or replace function app.complete_marketing_send(p_business_id uuid, p_send_id uuid, p_recipient text, p_template text,
                                                       p_provider text, p_message_id text, p_cost_cents numeric, p_error text)
returns void
language sql volatile security definer
set search_path = ''
as $$
  select app.complete_marketing_sends(jsonb_build_array(jsonb_build_object(
    'business_id', p_business_id, 'send_id', p_send_id, 'recipient', p_recipient, 'template', p_template, 'provider', p_provider,
    'message_id', p_message_id, 'cost_cents', p_cost_cents, 'error', p_error)));
$$;
revoke all on function app.complete_marketing_send(uuid, uuid, text, text, text, text, numeric, text) from public;
grant execute on function app.complete_marketing_send(uuid, uuid, text, text, text, text, numeric, text) to service_role;
