-- Issue 18 (whole phone order ≥ 20 calls/s): a turn loads its call without rebuilding the venue's menu.
-- pg_stat_statements over the voice bench: app.voice_load_call ran five times per phone order, 1.6 ms
-- each, more than half of it app.voice_menu's product/variant/modifier aggregate. The voice function
-- now keeps each venue's menu for settings.voice_menu_cache_seconds (functions/twilio_voice.py) and
-- loads only the call; place_order still checks every line against the live menu when the order is
-- priced and placed, so a menu at most that old can cost a re-ask, never a wrong order.

/** A call's conversation state, locked for the turn (FOR UPDATE): the row and what the agent needs
 about its venue, number, caller and credits, but not the menu (app.voice_menu). Null for no such call. */
create function app.voice_load_call_state(p_call_sid text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_call public.calls;
  v_venue public.venues;
  v_number_forward text;
begin
  select c.* into v_call from public.calls c where c.call_sid = p_call_sid limit 1 for update;
  if v_call.id is null then
    return null;
  end if;
  select v.* into v_venue from public.venues v where v.business_id = v_call.business_id and v.id = v_call.venue_id;
  select n.forward_to into v_number_forward from public.voice_numbers n
  where n.business_id = v_call.business_id and n.phone_number = v_call.to_number;
  return to_jsonb(v_call) || jsonb_build_object(
    'call_id', v_call.id,
    'business_name', (select b.name from public.businesses b where b.id = v_call.business_id),
    'venue_name', v_venue.name, 'forward_to', coalesce(v_number_forward, v_venue.phone),
    'accepts_pickup', v_venue.accepts_pickup, 'accepts_delivery', v_venue.accepts_delivery,
    'module_enabled', app.module_enabled(v_call.business_id, 'voice'),
    'open', app.venue_is_open(v_call.business_id, v_call.venue_id, now()),
    'caller', app.voice_caller(v_call.business_id, v_call.from_number),
    -- what the balance would be if the call ended now (its burn so far: 10 credits per started minute)
    'credits_left', coalesce((select cb.balance from public.voice_credit_balances cb where cb.business_id = v_call.business_id), 0)
                    - app.voice_call_credits(extract(epoch from now() - v_call.started_at)::integer),
    'venue_latitude', v_venue.latitude, 'venue_longitude', v_venue.longitude,
    'delivery_radius_km', v_venue.delivery_radius_km);
end
$$;
revoke all on function app.voice_load_call_state(text) from public;
grant execute on function app.voice_load_call_state(text) to service_role;

/** The call's state (app.voice_load_call_state) with its venue's menu as of now, as before 0174. */
create or replace function app.voice_load_call(p_call_sid text) returns jsonb
language sql volatile security definer
set search_path = ''
as $$
  select s.state || jsonb_build_object('menu', app.voice_menu((s.state ->> 'business_id')::uuid, (s.state ->> 'venue_id')::uuid))
  from (select app.voice_load_call_state(p_call_sid) as state) s
$$;
revoke all on function app.voice_load_call(text) from public;
grant execute on function app.voice_load_call(text) to service_role;
