-- The column and definer rules of 0061/0062 applied to what 0072-0081 added: sms_senders is written by
-- the operator only (its policies), through named columns like every other table; trigger definers
-- created since 0062 are executable by no API role (triggers fire without EXECUTE).

-- section grants
revoke insert, update on public.sms_senders from authenticated;
grant insert (business_id, phone_number, messaging_service_sid, is_active) on public.sms_senders to authenticated;
grant update (phone_number, messaging_service_sid, is_active) on public.sms_senders to authenticated;

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
