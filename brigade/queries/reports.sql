-- receipt --
-- The receipt of a paid order or booking as the caller may see it (app.receipt: PT404 otherwise).
select public.get_receipt(%(kind)s, %(id)s, %(token)s) as receipt
