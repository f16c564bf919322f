-- DoorDash Drive webhooks have no event id. 0031 deduplicated them on event name + delivery +
-- created_at, which drops a second, different event that shares those three (a new dasher confirmed in
-- the same second, a position update without a time). The key is now a stable hash of the whole body.

-- section RPC functions

/** Function delivery-webhook: apply one verified Uber Direct or DoorDash Drive webhook. Recorded once
    (Uber: the event id; DoorDash, which sends none: a SHA-256 of the whole body as jsonb); the status only moves forward and the
    courier position only to a newer one, so duplicates and any arrival order end in one state.
    Returns the outcome: applied, position, stale, duplicate, ignored, unknown_delivery. */
create or replace function app.apply_delivery_webhook(p_provider text, p_event jsonb) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_data jsonb;
  v_kind text;
  v_event_id text;
  v_ours text;
  v_theirs text;
  v_at timestamptz;
  v_lat double precision;
  v_lon double precision;
  v_eta timestamptz;
  v_fee integer;
  v_delivery public.deliveries;
  v_status public.delivery_status;
  v_outcome text;
  v_new_position boolean;
  v_after public.deliveries;
begin
  if p_provider = 'uber' then
    v_data := coalesce(p_event -> 'data', '{}'::jsonb);
    v_kind := case when p_event ->> 'kind' = 'event.courier_update' then 'courier_update'
                   else coalesce(p_event ->> 'status', v_data ->> 'status') end;
    v_event_id := p_event ->> 'id';
    v_ours := v_data ->> 'external_id';
    v_theirs := coalesce(p_event ->> 'delivery_id', v_data ->> 'id');
    v_at := coalesce((p_event ->> 'created')::timestamptz, (v_data ->> 'updated')::timestamptz, now());
    v_lat := coalesce((v_data #>> '{courier,location,lat}')::float8, (p_event #>> '{location,lat}')::float8);
    v_lon := coalesce((v_data #>> '{courier,location,lng}')::float8, (p_event #>> '{location,lng}')::float8);
    v_eta := (v_data ->> 'dropoff_eta')::timestamptz;
    v_fee := (v_data ->> 'fee')::integer;
  elsif p_provider = 'doordash' then
    v_data := p_event;
    v_kind := p_event ->> 'event_name';
    v_ours := p_event ->> 'external_delivery_id';
    v_at := coalesce((p_event ->> 'created_at')::timestamptz, now());
    -- DoorDash events carry no id: the body itself is the identity (jsonb's text is canonical, so key
    -- order and whitespace of a redelivery do not matter; two events differing in any field both count)
    v_event_id := 'body-sha256:' || encode(sha256(convert_to(p_event::text, 'UTF8')), 'hex');
    v_lat := (p_event #>> '{dasher_location,lat}')::float8;
    v_lon := (p_event #>> '{dasher_location,lng}')::float8;
    v_eta := (p_event ->> 'dropoff_time_estimated')::timestamptz;
    v_fee := (p_event ->> 'fee')::integer;
  else
    perform app.fail('22023', 'unknown_provider', format('unknown delivery provider %L', p_provider));
  end if;
  if v_kind is null or v_event_id is null then
    perform app.fail('22023', 'invalid_event', 'the event has no id or kind');
  end if;

  select d.* into v_delivery from public.deliveries d
  where (v_ours is not null and d.external_delivery_id = v_ours)
     or (v_theirs is not null and d.provider = p_provider and d.provider_delivery_id = v_theirs)
  limit 1;
  if v_delivery.id is null then
    return 'unknown_delivery';
  end if;
  select d.* into v_delivery from public.deliveries d where d.business_id = v_delivery.business_id and d.id = v_delivery.id for update;

  -- the delivery's row lock serialises its events, so this check sees every earlier one
  if exists (select 1 from public.delivery_events e where e.business_id = v_delivery.business_id and e.source = p_provider
             and e.external_event_id = v_event_id) then
    return 'duplicate';
  end if;
  v_status := app.map_provider_status(p_provider, v_kind);

  if v_delivery.provider is distinct from p_provider then
    v_outcome := 'ignored';  -- another network (or an own driver) holds this delivery
  else
    v_new_position := v_lat is not null and v_delivery.status not in ('delivered', 'cancelled', 'failed')
                      and (v_delivery.courier_updated_at is null or v_at > v_delivery.courier_updated_at);
    -- the position first, while the delivery is open (a final event carries the last one); the ETA
    -- is computed for the status the event brings (picked up: straight to the drop-off)
    if v_new_position then
      v_after := v_delivery;
      if v_status is not null and app.delivery_transition_allowed(v_delivery.status, v_status) then
        v_after.status := v_status;
      end if;
      update public.deliveries x set courier_latitude = v_lat, courier_longitude = v_lon, courier_updated_at = v_at,
        eta = coalesce(v_eta, app.delivery_eta(v_after, v_lat, v_lon, (app.dispatch_rules(x.business_id, x.venue_id)).average_speed_kmh, v_at))
      where x.business_id = v_delivery.business_id and x.id = v_delivery.id;
    end if;
    if v_status is not null and app.delivery_transition_allowed(v_delivery.status, v_status) then
      v_outcome := 'applied';
      update public.deliveries set status = v_status,
        cost_cents = case when v_status = 'cancelled' and v_delivery.status in ('requested') then 0
                          when v_fee is not null and v_status <> 'cancelled' then v_fee + tip_cents else cost_cents end,
        failure_reason = case when v_kind = 'returned' then 'returned to the venue' else failure_reason end,
        cancel_reason = case when v_status = 'cancelled' then coalesce(cancel_reason, p_provider || ': ' || v_kind) else cancel_reason end,
        courier_name = coalesce(v_data #>> '{courier,name}', v_data ->> 'dasher_name', courier_name),
        courier_phone = coalesce(v_data #>> '{courier,phone_number}', v_data ->> 'dasher_dropoff_phone_number', courier_phone),
        tracking_url = coalesce(v_data ->> 'tracking_url', tracking_url),
        proof_photo_url = coalesce(v_data #>> '{dropoff,verification,picture,image_url}', v_data ->> 'dropoff_verification_image_url', proof_photo_url),
        proof_signature_url = coalesce(v_data #>> '{dropoff,verification,signature,image_url}', v_data ->> 'dropoff_signature_image_url', proof_signature_url)
      where business_id = v_delivery.business_id and id = v_delivery.id;
      if v_eta is not null and not v_new_position and v_status not in ('delivered', 'cancelled', 'failed') then
        update public.deliveries set eta = v_eta where business_id = v_delivery.business_id and id = v_delivery.id;
      end if;
    elsif v_new_position then
      v_outcome := 'position';
    else
      v_outcome := 'stale';
    end if;
  end if;
  insert into public.delivery_events (business_id, delivery_id, source, external_event_id, kind, mapped_status, outcome, payload, occurred_at)
  values (v_delivery.business_id, v_delivery.id, p_provider, v_event_id, v_kind, v_status, v_outcome, p_event, v_at);
  return v_outcome;
end
$$;
revoke all on function app.apply_delivery_webhook(text, jsonb) from public;
grant execute on function app.apply_delivery_webhook(text, jsonb) to service_role;
