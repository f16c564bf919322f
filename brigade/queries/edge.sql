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

-- payable_session --
-- The Checkout Session of an order or a booking, its payment state and the Stripe account it was made on.
select o.checkout_session_id as session_id, o.payment_status::text as payment_status, b.stripe_account_id
from public.orders o join public.businesses b on b.id = o.business_id where o.id = %(order_id)s
union all
select k.checkout_session_id, k.payment_status::text, b.stripe_account_id
from public.bookings k join public.businesses b on b.id = k.business_id where k.id = %(booking_id)s
limit 1

-- rate_limit_exists --
-- One limit of the catalogue, if defined.
select action, scope from app.rate_limits where action = %(action)s and scope = %(scope)s
