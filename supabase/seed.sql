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

-- The demo menu: coffee and pastries at Downtown (open around the clock) and Harbour (07:00-22:00).
update public.venues set accepts_delivery = true, accepts_dine_in = true, delivery_fee_cents = 299, delivery_radius_km = 6,
  tax_rate_bps = 888
where business_id = '00000000-0000-4000-8000-000000000001';

insert into public.venue_opening_hours (business_id, venue_id, id, weekday, opens_at, closes_at)
select '00000000-0000-4000-8000-000000000001', v.venue_id, extensions.gen_random_uuid(), d, v.opens, v.closes
from (values ('00000000-0000-4000-8000-000000000101'::uuid, '00:00'::time, '00:00'::time),
             ('00000000-0000-4000-8000-000000000102'::uuid, '07:00'::time, '22:00'::time)) v (venue_id, opens, closes)
cross join generate_series(0, 6) d
where not exists (select 1 from public.venue_opening_hours h where h.venue_id = v.venue_id);

insert into public.loyalty_programs (business_id, points_per_currency_unit)
values ('00000000-0000-4000-8000-000000000001', 1) on conflict do nothing;

insert into public.product_categories (business_id, id, name, sort_order) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000c0001', 'Coffee', 1),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000c0002', 'Bakery', 2),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000c0003', 'Brunch', 3)
on conflict do nothing;

insert into public.products (business_id, id, category_id, name, description, price_cents, cost_cents, prep_time_minutes, sort_order) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000d0001', '00000000-0000-4000-8000-0000000c0001',
   'Latte', 'Double espresso, steamed milk', 450, 110, 4, 1),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000d0002', '00000000-0000-4000-8000-0000000c0001',
   'Cappuccino', 'Double espresso, foam', 420, 100, 4, 2),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000d0003', '00000000-0000-4000-8000-0000000c0002',
   'Croissant', 'Butter croissant, baked every morning', 350, 90, 1, 3),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000d0004', '00000000-0000-4000-8000-0000000c0003',
   'Avocado toast', 'Sourdough, avocado, chilli, lime', 1150, 380, 10, 4)
on conflict do nothing;

insert into public.product_variants (business_id, id, product_id, name, price_adjustment_cents, cost_adjustment_cents, is_default, sort_order) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000e0001', '00000000-0000-4000-8000-0000000d0001', 'Regular', 0, 0, true, 1),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000e0002', '00000000-0000-4000-8000-0000000d0001', 'Large', 90, 25, false, 2),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000e0003', '00000000-0000-4000-8000-0000000d0002', 'Regular', 0, 0, true, 1),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000e0004', '00000000-0000-4000-8000-0000000d0002', 'Large', 90, 25, false, 2)
on conflict do nothing;

insert into public.modifier_groups (business_id, id, name, min_choices, max_choices) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000f0001', 'Milk', 0, 1),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000f0002', 'Extras', 0, 3)
on conflict do nothing;

insert into public.modifiers (business_id, id, group_id, name, price_cents, cost_cents, sort_order) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000f1001', '00000000-0000-4000-8000-0000000f0001', 'Oat milk', 60, 20, 1),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000f1002', '00000000-0000-4000-8000-0000000f0001', 'Almond milk', 60, 22, 2),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000f1003', '00000000-0000-4000-8000-0000000f0002', 'Extra shot', 80, 15, 1),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000f1004', '00000000-0000-4000-8000-0000000f0002', 'Vanilla syrup', 50, 8, 2)
on conflict do nothing;

insert into public.product_modifier_groups (business_id, product_id, group_id, sort_order) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000d0001', '00000000-0000-4000-8000-0000000f0001', 1),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000d0001', '00000000-0000-4000-8000-0000000f0002', 2),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000d0002', '00000000-0000-4000-8000-0000000f0001', 1),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000d0002', '00000000-0000-4000-8000-0000000f0002', 2)
on conflict do nothing;

insert into public.stock_items (business_id, venue_id, id, sku, name, unit, critical_level)
select '00000000-0000-4000-8000-000000000001', v.id, extensions.gen_random_uuid(), s.sku, s.name, s.unit, s.critical
from public.venues v
cross join (values ('milk', 'Whole milk', 'L', 4.0), ('oat', 'Oat milk', 'L', 1.0), ('almond', 'Almond milk', 'L', 1.0),
                   ('beans', 'Espresso beans', 'kg', 1.0), ('butter', 'Butter', 'kg', 0.5), ('avocado', 'Avocados', 'each', 6),
                   ('sourdough', 'Sourdough loaf', 'slice', 10)) s (sku, name, unit, critical)
where v.business_id = '00000000-0000-4000-8000-000000000001'
on conflict do nothing;

-- opening stock: one 'count' movement per item, once
insert into public.stock_movements (business_id, venue_id, stock_item_id, delta, reason, note)
select s.business_id, s.venue_id, s.id,
       case s.sku when 'milk' then 20 when 'oat' then 5 when 'almond' then 4 when 'beans' then 6 when 'butter' then 3
                  when 'avocado' then 24 else 60 end,
       'count', 'opening stock (seed)'
from public.stock_items s
where s.business_id = '00000000-0000-4000-8000-000000000001'
  and not exists (select 1 from public.stock_movements m where m.business_id = s.business_id and m.stock_item_id = s.id);

insert into public.recipe_lines (business_id, id, product_id, variant_id, modifier_id, stock_sku, quantity) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000a1001', '00000000-0000-4000-8000-0000000d0001', null, null, 'milk', 0.25),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000a1002', '00000000-0000-4000-8000-0000000d0001', null, null, 'beans', 0.018),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000a1003', null, '00000000-0000-4000-8000-0000000e0002', null, 'milk', 0.1),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000a1004', '00000000-0000-4000-8000-0000000d0002', null, null, 'milk', 0.15),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000a1005', '00000000-0000-4000-8000-0000000d0002', null, null, 'beans', 0.018),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000a1006', null, null, '00000000-0000-4000-8000-0000000f1001', 'oat', 0.25),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000a1007', null, null, '00000000-0000-4000-8000-0000000f1002', 'almond', 0.25),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000a1008', null, null, '00000000-0000-4000-8000-0000000f1003', 'beans', 0.009),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000a1009', '00000000-0000-4000-8000-0000000d0003', null, null, 'butter', 0.02),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000a1010', '00000000-0000-4000-8000-0000000d0004', null, null, 'avocado', 1),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000a1011', '00000000-0000-4000-8000-0000000d0004', null, null, 'sourdough', 2)
on conflict do nothing;

-- section campaigns (issue 5): allergens on the menu, and the demo's automations. The win-back has no
-- quiet hours so `brigade demo` shows it at any hour; the birthday email keeps 21:00-08:00 quiet.
update public.products set allergens = '{dairy}'
where business_id = '00000000-0000-4000-8000-000000000001' and id in ('00000000-0000-4000-8000-0000000d0001', '00000000-0000-4000-8000-0000000d0002')
  and allergens = '{}';
update public.products set allergens = '{gluten,dairy}'
where business_id = '00000000-0000-4000-8000-000000000001' and id = '00000000-0000-4000-8000-0000000d0003' and allergens = '{}';
update public.products set allergens = '{gluten}'
where business_id = '00000000-0000-4000-8000-000000000001' and id = '00000000-0000-4000-8000-0000000d0004' and allergens = '{}';

insert into public.automations (business_id, id, name, trigger, dormant_days, channel, subject, body, product_id, quiet_start, quiet_end,
                                cap_count, cap_days, created_by) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000c0001', 'Win-back after 30 days', 'customer.dormant', 30, 'sms', null,
   'Hi {{first_name}}, we miss you at {{venue_name}}! Show this text this week for a free croissant with any coffee.',
   '00000000-0000-4000-8000-0000000d0003', null, null, null, null, null),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000c0002', 'Happy birthday', 'customer.birthday', 30, 'email',
   'Happy birthday, {{first_name}}!', 'Your next latte at {{business_name}} is on us this week.', null, '21:00', '08:00', 1, 30, null)
on conflict do nothing;

-- the win-back in the demo's other languages (issue 16: messages in the customer's language)
update public.automations set translations = jsonb_build_object(
    'fr', jsonb_build_object('body', 'Bonjour {{first_name}}, vous nous manquez à {{venue_name}} ! Montrez ce message cette semaine pour un croissant offert avec tout café.'),
    'bg', jsonb_build_object('body', 'Здравейте, {{first_name}}, липсвате ни в {{venue_name}}! Покажете този SMS тази седмица за безплатен кроасан към всяко кафе.'))
where business_id = '00000000-0000-4000-8000-000000000001' and id = '00000000-0000-4000-8000-0000000c0001' and translations = '{}';

-- ---- voice (issue 7): the demo Twilio numbers and a welcome top-up of voice credits ----
insert into public.voice_numbers (business_id, id, venue_id, phone_number) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000b7001', '00000000-0000-4000-8000-000000000101', '+12125550150'),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000b7002', '00000000-0000-4000-8000-000000000102', '+12125550151')
on conflict do nothing;

insert into public.credit_transactions (business_id, kind, credits, reason, idempotency_key)
values ('00000000-0000-4000-8000-000000000001', 'top_up', 1000, 'welcome credits (seed)', 'seed:welcome')
on conflict on constraint credit_transactions_business_key do nothing;
-- ---- end voice ----

-- >>> bookings (issue 8): a latte-art class at Downtown, twice a day, and its sessions for four weeks
insert into public.activities (business_id, id, venue_id, name, description, duration_minutes, price_tiers, min_party, max_party,
                               is_published) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000c0001', '00000000-0000-4000-8000-000000000101',
   'Latte art class', 'Pour hearts and tulips with our baristas; milk and coffee included.', 60,
   '[{"key": "adult", "name": "Adult", "price_cents": 3500}, {"key": "child", "name": "Child (8-15)", "price_cents": 2000}]', 1, 6, true)
on conflict do nothing;

insert into public.activity_schedules (business_id, activity_id, weekday, start_time, capacity)
select '00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000c0001', d, t, 8
from generate_series(0, 6) d cross join (values ('10:00'::time), ('18:00'::time)) as s (t)
on conflict do nothing;

insert into public.booking_promo_codes (business_id, code, percent_off) values
  ('00000000-0000-4000-8000-000000000001', 'WELCOME10', 10)
on conflict do nothing;

select app.generate_sessions('00000000-0000-4000-8000-000000000001', 28);
-- <<< bookings

-- ==== issue 9: platform — the demo café's storefront is live (payment account, theme, published) ====
-- every module on: the demo café is on the professional plan (15 venues … 100,000 orders a month), active
update public.business_subscriptions set plan_key = 'professional'
where business_id = '00000000-0000-4000-8000-000000000001' and plan_key = 'starter';
update public.business_subscriptions set status = 'active'
where business_id = '00000000-0000-4000-8000-000000000001' and status = 'trial';
update public.businesses set stripe_account_id = 'acct_democafelocal'
where id = '00000000-0000-4000-8000-000000000001' and stripe_account_id is null;
insert into public.storefront_settings (business_id, subdomain) values ('00000000-0000-4000-8000-000000000001', 'demo-cafe')
on conflict (business_id) do nothing;
update public.storefront_settings
set theme_colors = '{"primary": "#6F4E37", "accent": "#F2C14E", "background": "#FFFBF5"}',
    logo_url = 'https://cdn.brigade.local/demo-cafe/logo.png', tagline = 'Coffee, croissants and a good table'
where business_id = '00000000-0000-4000-8000-000000000001' and theme_colors = '{}';
update public.storefront_settings set is_published = true
where business_id = '00000000-0000-4000-8000-000000000001' and not is_published;
-- ==== end issue 9 ====

-- ---- dispatch (issue 6): the demo driver (user a004) drives for Demo Café, online near Downtown;
-- Downtown gives own drivers 10 s per offer and 20 s in all before Uber Direct, then DoorDash Drive.
insert into public.drivers (business_id, id, user_id, display_name, phone, kind, vehicle_type, vehicle_plate, is_online,
                            is_available, latitude, longitude, location_at) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-00000000c601', '00000000-0000-4000-8000-00000000a004',
   'Demo Driver', '+12125550104', 'dedicated', 'bicycle', null, true, true, 40.7158, -74.0020, now())
on conflict do nothing;

insert into public.driver_business_assignments (business_id, id, driver_business_id, driver_id, pool, priority) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-00000000c611', '00000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-00000000c601', 'dedicated', 1)
on conflict do nothing;

insert into public.venue_dispatch_rules (business_id, venue_id, offer_timeout_seconds, own_driver_limit_seconds, fallback_providers) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000101', 10, 20, '{uber,doordash}')
on conflict do nothing;
-- ---- end dispatch

-- section kitchen (issue 15): stations, and two printers at Downtown the local run prints to. Their device
-- tokens are fixed and public (like the local JWT secret): point a real printer at them locally, and
-- register your own (public.register_printer) anywhere else.
update public.product_categories set station = case id when '00000000-0000-4000-8000-0000000c0001' then 'bar'
                                                       when '00000000-0000-4000-8000-0000000c0002' then 'pastry' else 'kitchen' end
where business_id = '00000000-0000-4000-8000-000000000001' and station is null;
insert into public.printers (business_id, venue_id, id, name, kind, protocol, stations, paper_width_mm, device_token_hash) values
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000101', '00000000-0000-4000-8000-0000000b7001',
   'Bar (Star)', 'kitchen', 'star_cloudprnt', '{bar}', 80, app.device_token_hash('prt_demo_bar_star')),
  ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000101', '00000000-0000-4000-8000-0000000b7002',
   'Kitchen (Epson)', 'kitchen', 'epson_sdp', '{pastry,kitchen}', 80, app.device_token_hash('prt_demo_kitchen_epson'))
on conflict do nothing;
