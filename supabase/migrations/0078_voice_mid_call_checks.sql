-- Voice, mid-call: the credit balance was checked only when a call rang (0040), so a long call could
-- run past it unnoticed; a retried gather request (Twilio retries on a timeout) ran its turn twice;
-- a delivery address by phone was taken as spoken. The call's state now carries the credits left
-- (balance minus the call's burn so far), the venue's position and radius (the function geocodes
-- the address through a provider and checks it), and the last answered gather sequence with its
-- TwiML, so a retry gets the same answer and changes nothing.

-- section tables

alter table public.calls add column last_gather_seq integer, add column last_reply text;

-- section private helpers

/** The state of a call for its next turn (locked until the turn commits), with what the agent
    needs: the venue, whether it is open, the forwarding number, the caller and the menu. Null for
    an unknown call SID. Service only. */
create or replace function app.voice_load_call(p_call_sid text) returns jsonb
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
    'menu', app.voice_menu(v_call.business_id, v_call.venue_id),
    -- what the balance would be if the call ended now (its burn so far: 10 credits per started minute)
    'credits_left', coalesce((select cb.balance from public.voice_credit_balances cb where cb.business_id = v_call.business_id), 0)
                    - app.voice_call_credits(extract(epoch from now() - v_call.started_at)::integer),
    'venue_latitude', v_venue.latitude, 'venue_longitude', v_venue.longitude,
    'delivery_radius_km', v_venue.delivery_radius_km);
end
$$;
revoke all on function app.voice_load_call(text) from public;
grant execute on function app.voice_load_call(text) to service_role;

/** Remembers the answer to gather turn p_seq of a call (a retry of that turn is answered from it). */
create function app.voice_remember_reply(p_business_id uuid, p_call_id uuid, p_seq integer, p_twiml text) returns void
language sql volatile security definer
set search_path = ''
as $$
  update public.calls set last_gather_seq = p_seq, last_reply = p_twiml
  where business_id = p_business_id and id = p_call_id
$$;
revoke all on function app.voice_remember_reply(uuid, uuid, integer, text) from public;
grant execute on function app.voice_remember_reply(uuid, uuid, integer, text) to service_role;
