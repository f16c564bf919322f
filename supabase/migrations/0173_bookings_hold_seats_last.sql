-- Bookings: holds on one hot session stop queueing behind each other's WAL flush. Every hold takes its
-- seats with one conditional UPDATE of the session row and keeps that row lock until commit, so the
-- holds of one session ran one at a time, each through its own fsync. Two changes, no rule changed:
-- the seats are taken by the last trigger of the insert (the status history row is written first),
-- and a pending-payment hold commits without waiting for its WAL flush (synchronous_commit off for
-- that transaction). The seat count stays exact: asynchronous commit changes durability, never
-- visibility or locking, and WAL replays in order, so a crash can only lose the newest holds, never
-- a hold that a later durable commit depended on. A hold lost that way had no way to be paid yet:
-- the checkout that follows it writes its session onto the booking in a normal (flushed) commit,
-- which flushes the hold's WAL with it.

-- section private helpers

/** A new pending-payment hold commits asynchronously (transaction-local; see the file comment).
    Only inserts: confirmations, payments and refunds keep synchronous commit. */
create function app.tg_bookings_hold_commit() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status = 'pending_payment' then
    perform set_config('synchronous_commit', 'off', true);
  end if;
  return new;
end
$$;
revoke all on function app.tg_bookings_hold_commit() from public;

-- section triggers

-- After-row triggers fire in name order: the insert's seats now come after bookings_status_inserted,
-- as the last statement under the session row's lock before the hold's function returns.
drop trigger bookings_seats on public.bookings;
create trigger bookings_seats after update of status, session_id on public.bookings
  for each row execute function app.tg_bookings_seats();
create trigger bookings_take_seats after insert on public.bookings
  for each row execute function app.tg_bookings_seats();
create trigger bookings_hold_commit before insert on public.bookings
  for each row execute function app.tg_bookings_hold_commit();
