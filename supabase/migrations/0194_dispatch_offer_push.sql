-- Web Push to drivers (issue 16, item 2): a delivery offer reaches the offered driver's devices (their
-- `driver` subscriptions, at any business they drive for), one notification_log row per offer, sent
-- by the worker's `push.send` handler; the offer itself stays the source of truth (Realtime, respond_offer).

-- section triggers

/** A new offer to a driver with a device: a push row and the push.send event. */
create function app.tg_delivery_offers_push() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_user uuid;
  v_id uuid;
begin
  select d.user_id into v_user from public.drivers d where d.business_id = new.driver_business_id and d.id = new.driver_id;
  if v_user is null or not exists (select 1 from public.push_subscriptions s where s.user_id = v_user and s.audience = 'driver') then
    return null;
  end if;
  insert into public.notification_log (business_id, event_key, channel, recipient, template, venue_id, detail)
  values (new.business_id, 'delivery.offer:' || new.id, 'push', 'user:' || v_user, 'delivery_offer', new.venue_id,
          jsonb_build_object('offer_id', new.id, 'delivery_id', new.delivery_id, 'distance_km', new.distance_km,
                             'seconds', greatest(0, ceil(extract(epoch from new.expires_at - now())))::integer))
  on conflict on constraint notification_log_natural_key do nothing
  returning id into v_id;
  if v_id is not null then
    perform app.emit('push.send', new.business_id, jsonb_build_object('notification_id', v_id));
  end if;
  return null;
end
$$;
create trigger delivery_offers_push after insert on public.delivery_offers
  for each row execute function app.tg_delivery_offers_push();
revoke all on function app.tg_delivery_offers_push() from public, anon, authenticated, service_role;
