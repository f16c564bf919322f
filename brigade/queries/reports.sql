-- receipt --
-- The receipt of a paid order or booking as the caller may see it (app.receipt: PT404 otherwise).
select public.get_receipt(%(kind)s, %(id)s, %(token)s) as receipt

-- apply_retention --
-- The nightly retention run (app.apply_retention): rows touched per policy.
select app.apply_retention(now()) as result
