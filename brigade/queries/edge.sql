-- storefront_origin --
-- The business whose storefront this browser origin is (its custom domain or its subdomain), if active.
select h.business_id from app.storefront_hostnames h join public.businesses b on b.id = h.business_id and b.status = 'active'
where (h.kind = 'custom_domain' and h.hostname = %(custom_domain)s)
   or (h.kind = 'subdomain' and h.hostname = %(subdomain)s)
limit 1

-- payable_business --
-- The business of an order or a booking (for the rate limits' staff allow-list), or nothing.
select business_id from public.orders where id = %(order_id)s
union all
select business_id from public.bookings where id = %(booking_id)s
limit 1
