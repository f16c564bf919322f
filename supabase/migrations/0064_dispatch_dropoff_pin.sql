-- Security review (issue 20): the drop-off PIN. A wrong PIN raised and rolled back, so tries were
-- never counted (unlimited guessing), and any photo URL skipped the PIN. Tries are now counted like
-- verify_pickup_code's, and a venue can require the PIN. Codes in docs/errors.md (BR50x).

-- section tables
alter table public.deliveries
  add column proof_pin_attempts integer not null default 0
    constraint deliveries_proof_pin_attempts_nonnegative check (proof_pin_attempts >= 0);
alter table public.venue_dispatch_rules
  add column require_dropoff_pin boolean not null default false;

-- section grants
grant select (proof_pin_attempts) on public.deliveries to authenticated;
grant insert (require_dropoff_pin), update (require_dropoff_pin) on public.venue_dispatch_rules to authenticated;

-- section rpc

/** The assigned own driver moves the delivery along (see public.update_delivery_status and
    public.complete_delivery); see 0031, now with counted PIN tries and the venue's PIN rule. */
create or replace function app.driver_delivery_update(p_delivery_id uuid, p_status public.delivery_status, p_proof jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_delivery public.deliveries;
  v_driver public.drivers;
  v_pin text := nullif(trim(p_proof ->> 'pin'), '');
  v_photo text := nullif(trim(p_proof ->> 'photo_url'), '');
  v_signature text := nullif(trim(p_proof ->> 'signature_url'), '');
  v_cost integer;
  v_rules public.venue_dispatch_rules;
begin
  select d.* into v_delivery from public.deliveries d
  where d.id = p_delivery_id
    and (d.driver_business_id, d.driver_id) in (select k.business_id, k.driver_id from app.my_driver_keys() k)
  for update;
  if v_delivery.id is null then
    perform app.fail('PT404', 'delivery_not_found', 'no such delivery assigned to you');
  end if;
  perform app.require_module(v_delivery.business_id, 'dispatch');
  if p_status not in ('picked_up', 'delivered') then
    perform app.fail('22023', 'invalid_status', 'a driver reports picked_up or delivered');
  end if;
  if not app.delivery_transition_allowed(v_delivery.status, p_status) then
    perform app.fail('BR501', 'illegal_transition', format('a delivery cannot go from %s to %s', v_delivery.status, p_status));
  end if;
  if p_status = 'picked_up' then
    update public.deliveries set status = 'picked_up' where business_id = v_delivery.business_id and id = v_delivery.id;
    return jsonb_build_object('delivery_id', v_delivery.id, 'status', 'picked_up');
  end if;

  -- proof of delivery: a photo, a signature or the customer's PIN; the venue may require the PIN
  if v_pin is null and v_photo is null and v_signature is null then
    perform app.fail('BR506', 'proof_required', 'delivering needs a photo, a signature or the customer''s PIN');
  end if;
  v_rules := app.dispatch_rules(v_delivery.business_id, v_delivery.venue_id);
  if v_pin is null and v_rules.require_dropoff_pin then
    perform app.fail('BR509', 'pin_required', 'this venue delivers only against the customer''s PIN');
  end if;
  -- Five tries, counted (so the refusal is an answer, not an error that would roll the count back);
  -- a wrong PIN is refused even with a photo, and after the fifth try even the right one is.
  if v_pin is not null then
    if v_delivery.proof_pin_attempts >= 5 then
      return jsonb_build_object('delivery_id', v_delivery.id, 'status', v_delivery.status, 'delivered', false,
                                'reason', 'too_many_attempts', 'attempts_left', 0);
    end if;
    update public.deliveries set proof_pin_attempts = proof_pin_attempts + 1
    where business_id = v_delivery.business_id and id = v_delivery.id;
    if v_pin <> v_delivery.dropoff_pin then
      return jsonb_build_object('delivery_id', v_delivery.id, 'status', v_delivery.status, 'delivered', false,
                                'reason', 'wrong_pin', 'attempts_left', 4 - v_delivery.proof_pin_attempts);
    end if;
  end if;
  if (v_photo is not null and v_photo !~ '^https?://') or (v_signature is not null and v_signature !~ '^https?://') then
    perform app.fail('22023', 'invalid_proof_url', 'proof URLs must be http(s) URLs');
  end if;
  select d.* into v_driver from public.drivers d where d.business_id = v_delivery.driver_business_id and d.id = v_delivery.driver_id;
  v_delivery.status := 'delivered';
  v_cost := app.record_driver_earnings(v_delivery);
  update public.deliveries set status = 'delivered', proof_photo_url = v_photo, proof_signature_url = v_signature,
    proof_pin_verified = v_pin is not null, cost_cents = v_cost,
    proof_latitude = coalesce((p_proof ->> 'latitude')::float8, v_driver.latitude),
    proof_longitude = coalesce((p_proof ->> 'longitude')::float8, v_driver.longitude)
  where business_id = v_delivery.business_id and id = v_delivery.id;
  update public.drivers set total_deliveries = total_deliveries + 1
  where business_id = v_delivery.driver_business_id and id = v_delivery.driver_id;
  return jsonb_build_object('delivery_id', v_delivery.id, 'status', 'delivered', 'delivered', true, 'cost_cents', v_cost);
end
$$;

/** The assigned driver closes the delivery with proof {photo_url, signature_url, pin, latitude,
    longitude} (at least one of the first three; the PIN when the venue requires it): records
    earnings and completes the order, answering delivered = true. A wrong PIN answers delivered =
    false with reason wrong_pin and attempts_left (five tries, counted), then too_many_attempts.
    Raises PT404, BR501, BR506 (no proof), BR509 (PIN required), 22023 (bad URL). */
create or replace function public.complete_delivery(delivery_id uuid, proof jsonb) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.driver_delivery_update(delivery_id, 'delivered', coalesce(proof, '{}'::jsonb))
$$;
