-- GDPR erasure reaches phone calls (0040): when the CRM anonymises a customer (0008), the calls made
-- from their number or linked to them keep their business facts (venue, times, outcome, cost, order)
-- and lose the person: the caller's number, the transcript, the cart's free text and the address.

/** Erases the person from their calls when the customer is anonymised. */
create function app.tg_customers_erase_calls() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.anonymised_at is not null and old.anonymised_at is null then
    update public.calls c
    set from_number = 'erased', turns = '[]'::jsonb, delivery_address = null
    where c.business_id = new.business_id
      and (c.customer_id = new.id or (old.phone is not null and c.from_number = old.phone));
  end if;
  return null;
end
$$;
create trigger customers_erase_calls after update of anonymised_at on public.customers
  for each row execute function app.tg_customers_erase_calls();
