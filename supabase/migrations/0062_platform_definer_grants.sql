-- Security review (issue 20): every security-definer function in `app` is executable only by the
-- roles that call it (tests/db/test_privileges.py holds the allow-list). Functions called only from
-- other definers, triggers or the service need no API role: those run as the owner.

-- section grants

-- The outbox: triggers and definers emit as the owner; the worker and the service emit directly.
revoke all on function app.emit(text, uuid, jsonb, integer) from public, anon, authenticated;
grant execute on function app.emit(text, uuid, jsonb, integer) to service_role;

-- Private helpers of definers (no policy, view or invoker function calls them): a member calling
-- them directly could probe other tenants' consent, driver windows, opening hours or lock rows.
revoke all on function app.has_consent(uuid, uuid, text, uuid) from public, anon, authenticated;
grant execute on function app.has_consent(uuid, uuid, text, uuid) to service_role;
revoke all on function app.driver_in_window(uuid, uuid, timestamptz) from public, anon, authenticated;
grant execute on function app.driver_in_window(uuid, uuid, timestamptz) to service_role;
revoke all on function app.venue_is_open(uuid, uuid, timestamptz) from public, anon, authenticated;
grant execute on function app.venue_is_open(uuid, uuid, timestamptz) to service_role;
revoke all on function app.product_available(uuid, uuid, uuid) from public, anon, authenticated;
grant execute on function app.product_available(uuid, uuid, uuid) to service_role;
revoke all on function app.lock_editable_campaign(uuid) from public, anon, authenticated;
grant execute on function app.lock_editable_campaign(uuid) to service_role;

-- Trigger functions fire without EXECUTE (PostgreSQL checks it only at CREATE TRIGGER): no API role
-- needs it, and a definer granted to PUBLIC is one review away from being called another way.
do $$
declare
  v_fn regprocedure;
begin
  for v_fn in
    select p.oid::regprocedure from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'app' and p.prosecdef and p.prorettype = 'trigger'::regtype
  loop
    execute format('revoke all on function %s from public, anon, authenticated, service_role', v_fn);
  end loop;
end
$$;
