-- CRM: one data-subject export check after issues 22 and 15 met (merge of the two).
-- 0111 (issue 22) made app.export_customer(uuid) ask for the export_customers permission; 0170 (issue 15)
-- re-declared it, after 0111, with the role names it replaced and the fresh-PIN check. This is both: any
-- member holding export_customers (a custom role too), with a fresh PIN where the business requires one;
-- the operator, the service and the customer themselves as before.

/** Export for members holding export_customers (42501 permission_denied for other members; BR820/BR821
    without a fresh PIN where required), the operator, or the customer themselves. Raises PT404. */
create or replace function app.export_customer(customer_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_customer public.customers;
  v_own boolean;
begin
  select c.* into v_customer from public.customers c where c.id = export_customer.customer_id;
  v_own := coalesce(v_customer.user_id = auth.uid(), false);
  if v_customer.id is null or not (app.is_member(v_customer.business_id) or app.is_platform_or_service() or v_own) then
    perform app.fail('PT404', 'customer_not_found', 'no such customer');
  end if;
  if app.is_member(v_customer.business_id) and not v_own then
    perform app.require_permission(v_customer.business_id, 'export_customers', jsonb_build_object('customer_id', v_customer.id));
    perform app.require_fresh_pin(v_customer.business_id, 'export_customers');
  end if;
  return app.export_customer(v_customer.business_id, v_customer.id);
end
$$;
revoke all on function app.export_customer(uuid) from public;
grant execute on function app.export_customer(uuid) to authenticated, service_role;
