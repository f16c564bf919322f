-- refund_stripe_account --
-- The connected Stripe account an order's business takes payments on (null for platform charges).
select b.stripe_account_id from public.businesses b where b.id = %(business_id)s
