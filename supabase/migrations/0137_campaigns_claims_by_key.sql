-- Batched claims by their key (issue 18): app.claim_marketing_sends (0136) looked its locked sends up
-- by id alone, which no index serves (campaign_sends is keyed (business_id, id)), so each batch read
-- the whole table: 47 ms for 25 sends over 75,000 rows (pg_stat_statements). It now carries the
-- business of each locked send and joins on the primary key, and writes the batch's outcomes in two
-- UPDATEs at the end instead of one per send (before a frequency-capped send is counted, the sends
-- decided so far are written, so the count sees every send in flight, as before).

-- section private helpers

/** The send-time decision for a batch: the given send (locked, waiting for a concurrent claim of it)
    and up to p_limit - 1 other due sends of any business (SKIP LOCKED: another worker's batch is
    left to it). Answers one jsonb per send: {action: none | wait | deferred | skipped | send, send_id,
    business_id, ...} as app.claim_marketing_send did; skips are final with their reason, quiet hours
    move due_at and announce the send again, and `send` rows are left in status `sending` with the
    recipient and the template's variables. The frequency cap counts sends in flight (`sending`)
    besides those sent, so two sends of one capped rule in one batch are capped as if one after the
    other. */
create or replace function app.claim_marketing_sends(p_business_id uuid, p_send_id uuid, p_limit integer, p_now timestamptz default now())
returns setof jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_first public.campaign_sends;
  v_ids uuid[] := '{}';
  v_businesses uuid[] := '{}';  -- v_ids[i] is a send of v_businesses[i] (the key is (business_id, id))
  v_row record;
  v_reason text;
  v_tz text;
  v_local timestamp;
  v_end timestamp;
  v_delay integer;
  v_recipient text;
  v_vars jsonb;
  v_unsub text;
  v_skip_keys uuid[] := '{}';      -- decided rows are written in two UPDATEs at the end (or before a capped
  v_skip_businesses uuid[] := '{}';  -- row's count, which must see every send in flight)
  v_skip_reasons text[] := '{}';
  v_send_keys uuid[] := '{}';
  v_send_businesses uuid[] := '{}';
  v_send_recipients text[] := '{}';
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
      v_businesses := array[v_first.business_id];
    end if;
  end if;
  if p_limit > cardinality(v_ids) then
    with due as (
      select s.business_id, s.id from public.campaign_sends s
      where s.status = 'scheduled' and s.due_at <= p_now + interval '1 second' and s.id is distinct from p_send_id
      order by s.due_at limit p_limit - cardinality(v_ids)
      for update skip locked
    )
    select v_ids || coalesce(array_agg(due.id), '{}'), v_businesses || coalesce(array_agg(due.business_id), '{}')
    into v_ids, v_businesses from due;
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
      from unnest(v_businesses, v_ids) k(business_id, id)
      join public.campaign_sends s on s.business_id = k.business_id and s.id = k.id  -- by its key: an index probe each
      left join public.automations a on a.business_id = s.business_id and a.id = s.automation_id
      left join public.campaigns c on c.business_id = s.business_id and c.id = s.campaign_id
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
    if v_reason is null and v_row.cap_count is not null and cardinality(v_send_keys) > 0 then
      update public.campaign_sends s set status = 'sending', claimed_at = p_now, recipient = k.recipient
      from unnest(v_send_businesses, v_send_keys, v_send_recipients) k(business_id, id, recipient)
      where s.business_id = k.business_id and s.id = k.id;
      v_send_keys := '{}'; v_send_businesses := '{}'; v_send_recipients := '{}';
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
      v_skip_keys := v_skip_keys || v_row.id; v_skip_businesses := v_skip_businesses || v_row.business_id;
      v_skip_reasons := v_skip_reasons || v_reason;
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
        v_skip_keys := v_skip_keys || v_row.id; v_skip_businesses := v_skip_businesses || v_row.business_id;
        v_skip_reasons := v_skip_reasons || 'no_contact'::text;
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

    v_send_keys := v_send_keys || v_row.id; v_send_businesses := v_send_businesses || v_row.business_id;
    v_send_recipients := v_send_recipients || v_recipient;
    v_unsub := case when v_row.customer_id is not null then app.marketing_consent_channel(v_row.trigger, v_row.channel) end;
    return next jsonb_build_object('action', 'send', 'send_id', v_row.id, 'business_id', v_row.business_id, 'channel', v_row.channel,
      'recipient', v_recipient, 'customer_id', v_row.customer_id, 'venue_id', v_row.venue_id, 'trigger', v_row.trigger,
      'marketing', v_row.customer_id is not null, 'subject', v_row.subject, 'body', v_row.body, 'vars', v_vars,
      'unsubscribe_channel', v_unsub,
      'unsubscribe_token', case when v_row.customer_id is not null then app.unsubscribe_token(v_row.business_id, v_row.customer_id, v_unsub) end);
  end loop;
  update public.campaign_sends s set status = 'skipped', skip_reason = k.reason
  from unnest(v_skip_businesses, v_skip_keys, v_skip_reasons) k(business_id, id, reason)
  where s.business_id = k.business_id and s.id = k.id;
  update public.campaign_sends s set status = 'sending', claimed_at = p_now, recipient = k.recipient
  from unnest(v_send_businesses, v_send_keys, v_send_recipients) k(business_id, id, recipient)
  where s.business_id = k.business_id and s.id = k.id;
end
$$;
revoke all on function app.claim_marketing_sends(uuid, uuid, integer, timestamptz) from public;
grant execute on function app.claim_marketing_sends(uuid, uuid, integer, timestamptz) to service_role;
