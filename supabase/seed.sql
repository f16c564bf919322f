-- The demo business the local run and the docs use. Idempotent: a second run changes nothing.

insert into auth.users (id, email, raw_app_meta_data) values
  ('00000000-0000-4000-8000-00000000a001', 'owner@demo-cafe.test', '{"provider": "email"}'),
  ('00000000-0000-4000-8000-00000000a002', 'manager@demo-cafe.test', '{"provider": "email"}'),
  ('00000000-0000-4000-8000-00000000a003', 'staff@demo-cafe.test', '{"provider": "email"}'),
  ('00000000-0000-4000-8000-00000000a004', 'driver@demo-cafe.test', '{"provider": "email"}'),
  ('00000000-0000-4000-8000-00000000a0ff', 'operator@brigade.test', '{"provider": "email", "app_role": "platform_admin"}')
on conflict (id) do nothing;

insert into public.businesses (id, name, slug, currency, time_zone, modules_json) values
  ('00000000-0000-4000-8000-000000000001', 'Demo Café', 'demo-cafe', 'USD', 'America/New_York',
   '{"ordering": true, "bookings": true, "crm": true, "loyalty": true, "campaigns": true, "voice": true, "dispatch": true}')
on conflict (id) do nothing;

insert into public.venues (business_id, id, name, slug, time_zone, phone, address, latitude, longitude, is_published) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000101', 'Downtown', 'downtown',
   'America/New_York', '+12125550101', '{"line1": "1 Main St", "city": "New York", "country": "US"}', 40.7128, -74.0060, true),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000102', 'Harbour', 'harbour',
   'America/New_York', '+12125550102', '{"line1": "9 Pier Rd", "city": "New York", "country": "US"}', 40.7033, -74.0170, true)
on conflict do nothing;

insert into public.memberships (business_id, id, user_id, role) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-00000000b001', '00000000-0000-4000-8000-00000000a001', 'owner'),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-00000000b002', '00000000-0000-4000-8000-00000000a002', 'manager'),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-00000000b003', '00000000-0000-4000-8000-00000000a003', 'staff'),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-00000000b004', '00000000-0000-4000-8000-00000000a004', 'driver')
on conflict do nothing;

insert into public.membership_venues (business_id, membership_id, venue_id) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-00000000b003', '00000000-0000-4000-8000-000000000101')
on conflict do nothing;
