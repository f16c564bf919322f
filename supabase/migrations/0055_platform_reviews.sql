-- Reviews: product and order reviews (ratings, text, a driver tip on the order review) from verified
-- purchasers only — the order's access token (the link in the receipt or the campaigns module's
-- review request) or its signed-in customer — moderated by the business, with rating aggregates on
-- products. Codes BR75x (docs/errors.md).

-- section tables
alter table public.products
  add column rating_count integer not null default 0,
  add column rating_average numeric(3, 2);

/** A purchaser's review of one product of a paid order. pending → approved | rejected (moderation
    can change its mind). anon reads approved reviews of active businesses, without the customer. */
create table public.product_reviews (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  product_id uuid not null,
  order_id uuid not null,
  customer_id uuid,
  rating smallint not null constraint product_reviews_rating_range check (rating between 1 and 5),
  body text not null default '' constraint product_reviews_body_length check (length(body) <= 2000),
  status text not null default 'pending' constraint product_reviews_status_valid check (status in ('pending', 'approved', 'rejected')),
  moderated_by uuid,
  moderated_at timestamptz,
  moderation_note text,
  reply text constraint product_reviews_reply_length check (length(reply) <= 2000),
  created_at timestamptz not null default now(),
  constraint product_reviews_pkey primary key (business_id, id),
  constraint product_reviews_order_product_key unique (business_id, order_id, product_id),
  constraint product_reviews_product_fkey foreign key (business_id, product_id) references public.products (business_id, id) on delete cascade,
  constraint product_reviews_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete cascade
);
alter table public.product_reviews enable row level security;

/** A purchaser's review of a whole order: overall, food and (delivery orders) delivery ratings, text,
    and a tip for the driver (recorded here; event review.driver_tip for the dispatch module). */
create table public.order_reviews (
  business_id uuid not null,
  id uuid not null default extensions.gen_random_uuid(),
  order_id uuid not null,
  customer_id uuid,
  rating smallint not null constraint order_reviews_rating_range check (rating between 1 and 5),
  food_rating smallint constraint order_reviews_food_range check (food_rating between 1 and 5),
  delivery_rating smallint constraint order_reviews_delivery_range check (delivery_rating between 1 and 5),
  body text not null default '' constraint order_reviews_body_length check (length(body) <= 2000),
  driver_tip_cents integer not null default 0 constraint order_reviews_tip_range check (driver_tip_cents between 0 and 100000),
  status text not null default 'pending' constraint order_reviews_status_valid check (status in ('pending', 'approved', 'rejected')),
  moderated_by uuid,
  moderated_at timestamptz,
  moderation_note text,
  reply text constraint order_reviews_reply_length check (length(reply) <= 2000),
  created_at timestamptz not null default now(),
  constraint order_reviews_pkey primary key (business_id, id),
  constraint order_reviews_order_key unique (business_id, order_id),
  constraint order_reviews_order_fkey foreign key (business_id, order_id) references public.orders (business_id, id) on delete cascade
);
alter table public.order_reviews enable row level security;

-- section indexes
create index product_reviews_product_idx on public.product_reviews (business_id, product_id, status);
create index product_reviews_status_idx on public.product_reviews (business_id, status, created_at desc);
create index order_reviews_status_idx on public.order_reviews (business_id, status, created_at desc);

-- section triggers

/** Keeps products.rating_count / rating_average equal to their approved reviews. */
create function app.tg_product_reviews_aggregate() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  v_business uuid := coalesce(new.business_id, old.business_id);
  v_product uuid := coalesce(new.product_id, old.product_id);
begin
  update public.products p
  set rating_count = s.n, rating_average = s.avg
  from (select count(*)::int as n, round(avg(r.rating), 2) as avg from public.product_reviews r
        where r.business_id = v_business and r.product_id = v_product and r.status = 'approved') s
  where p.business_id = v_business and p.id = v_product;
  return null;
end
$$;

/** Ratings on a product come only from its approved reviews: clients cannot write them. */
create function app.tg_products_rating_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if current_user in ('anon', 'authenticated') then
    new.rating_count := old.rating_count;
    new.rating_average := old.rating_average;
  end if;
  return new;
end
$$;

create trigger products_rating_guard before update of rating_count, rating_average on public.products
  for each row execute function app.tg_products_rating_guard();
create trigger product_reviews_aggregate after insert or delete or update of status, rating on public.product_reviews
  for each row execute function app.tg_product_reviews_aggregate();

-- section policies
create policy "anyone reads approved product reviews" on public.product_reviews for select to anon, authenticated
  using (status = 'approved' and app.business_active(business_id));
create policy "staff read product reviews" on public.product_reviews for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "customers read their product reviews" on public.product_reviews for select to authenticated
  using ((business_id, customer_id) in (select k.business_id, k.customer_id from app.my_customer_keys() k));
create policy "anyone reads approved order reviews" on public.order_reviews for select to anon, authenticated
  using (status = 'approved' and app.business_active(business_id));
create policy "staff read order reviews" on public.order_reviews for select to authenticated
  using (business_id in (select app.my_business_ids('{owner,manager,staff}')));
create policy "customers read their order reviews" on public.order_reviews for select to authenticated
  using ((business_id, customer_id) in (select k.business_id, k.customer_id from app.my_customer_keys() k));

-- section grants
revoke all on public.product_reviews, public.order_reviews from anon, authenticated;
grant select (business_id, id, product_id, rating, body, status, reply, created_at) on public.product_reviews to anon;
grant select (business_id, id, rating, food_rating, delivery_rating, body, status, reply, created_at) on public.order_reviews to anon;
grant select on public.product_reviews, public.order_reviews to authenticated;
grant all on public.product_reviews, public.order_reviews to service_role;

-- section rpc

/** A verified purchaser reviews an order (and some of its products). Proof: the order's access token
    (the receipt's or the review request's link), or being the order's signed-in customer. The order
    must be paid (not cancelled or fully refunded). Payload: rating, food_rating, delivery_rating,
    body, driver_tip_cents (delivery orders only), products: [{product_id, rating, body}]. Raises
    PT404 (no such order / wrong token), BR750 (not a paid order), BR751 (product not in the order),
    BR752 (already reviewed), BR753 (rating out of 1–5), BR754 (tip on a non-delivery order). */
create function app.submit_review(p_order_id uuid, p_access_token uuid, p_review jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_order public.orders;
  v_item jsonb;
  v_review uuid;
  v_tip integer := coalesce((p_review ->> 'driver_tip_cents')::integer, 0);
  v_products integer := 0;
begin
  select o.* into v_order from public.orders o where o.id = p_order_id for update;
  if v_order.id is null
     or not (v_order.access_token = p_access_token or (auth.uid() is not null and v_order.user_id = auth.uid())) then
    perform app.fail('PT404', 'not_found', 'no such order');
  end if;
  perform app.require_module(v_order.business_id, 'ordering');
  if v_order.payment_status not in ('paid', 'partially_refunded') or v_order.status = 'cancelled' then
    perform app.fail('BR750', 'not_verified_purchase', 'only a paid order can be reviewed');
  end if;
  if exists (select 1 from public.order_reviews r where r.business_id = v_order.business_id and r.order_id = v_order.id) then
    perform app.fail('BR752', 'already_reviewed', 'this order has been reviewed');
  end if;
  if coalesce((p_review ->> 'rating')::int, 0) not between 1 and 5
     or coalesce((p_review ->> 'food_rating')::int, 1) not between 1 and 5
     or coalesce((p_review ->> 'delivery_rating')::int, 1) not between 1 and 5 then
    perform app.fail('BR753', 'invalid_rating', 'ratings are whole numbers from 1 to 5');
  end if;
  if v_tip < 0 or v_tip > 100000 then
    perform app.fail('22023', 'invalid_tip', 'driver_tip_cents must be between 0 and 100000');
  end if;
  if (v_tip > 0 or p_review ? 'delivery_rating') and v_order.fulfilment <> 'delivery' then
    perform app.fail('BR754', 'not_a_delivery', 'a driver tip or delivery rating needs a delivery order');
  end if;

  insert into public.order_reviews (business_id, order_id, customer_id, rating, food_rating, delivery_rating, body, driver_tip_cents)
  values (v_order.business_id, v_order.id, v_order.customer_id, (p_review ->> 'rating')::smallint,
          (p_review ->> 'food_rating')::smallint, (p_review ->> 'delivery_rating')::smallint,
          left(coalesce(p_review ->> 'body', ''), 2000), v_tip)
  returning id into v_review;

  for v_item in select * from jsonb_array_elements(coalesce(p_review -> 'products', '[]'::jsonb)) loop
    if not exists (select 1 from public.order_items i where i.business_id = v_order.business_id and i.order_id = v_order.id
                   and i.product_id::text = v_item ->> 'product_id') then
      perform app.fail('BR751', 'product_not_in_order', 'only products of this order can be reviewed with it');
    end if;
    if coalesce((v_item ->> 'rating')::int, 0) not between 1 and 5 then
      perform app.fail('BR753', 'invalid_rating', 'ratings are whole numbers from 1 to 5');
    end if;
    insert into public.product_reviews (business_id, product_id, order_id, customer_id, rating, body)
    values (v_order.business_id, (v_item ->> 'product_id')::uuid, v_order.id, v_order.customer_id,
            (v_item ->> 'rating')::smallint, left(coalesce(v_item ->> 'body', ''), 2000))
    on conflict (business_id, order_id, product_id) do nothing;
    v_products := v_products + 1;
  end loop;

  perform app.emit('review.submitted', v_order.business_id, jsonb_build_object(
    'order_id', v_order.id, 'order_review_id', v_review, 'rating', (p_review ->> 'rating')::int, 'products', v_products));
  if v_tip > 0 then
    perform app.emit('review.driver_tip', v_order.business_id, jsonb_build_object(
      'order_id', v_order.id, 'order_review_id', v_review, 'tip_cents', v_tip, 'currency', v_order.currency));
  end if;
  return jsonb_build_object('order_review_id', v_review, 'products_reviewed', v_products, 'status', 'pending');
end
$$;
revoke all on function app.submit_review(uuid, uuid, jsonb) from public;
grant execute on function app.submit_review(uuid, uuid, jsonb) to anon, authenticated, service_role;

create function public.submit_review(order_id uuid, access_token uuid, review jsonb) returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.submit_review(order_id, access_token, review)
$$;
revoke all on function public.submit_review(uuid, uuid, jsonb) from public;
grant execute on function public.submit_review(uuid, uuid, jsonb) to anon, authenticated, service_role;

/** The business moderates a review: approved (public, counted in the product's rating), rejected,
    or back to pending; with an optional note and a public reply. Owners and managers. Raises PT404,
    22023. */
create function app.moderate_review(p_kind text, p_review_id uuid, p_status text, p_note text default null,
                                    p_reply text default null) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  v_business uuid;
begin
  if p_kind not in ('product', 'order') or p_status not in ('pending', 'approved', 'rejected') then
    perform app.fail('22023', 'invalid_input', 'kind is product or order; status is pending, approved or rejected');
  end if;
  if p_kind = 'product' then
    select r.business_id into v_business from public.product_reviews r where r.id = p_review_id;
  else
    select r.business_id into v_business from public.order_reviews r where r.id = p_review_id;
  end if;
  if v_business is null or not (app.is_member(v_business, '{owner,manager}') or app.is_operator()) then
    perform app.fail('PT404', 'not_found', 'no such review');
  end if;
  if p_kind = 'product' then
    update public.product_reviews set status = p_status, moderated_by = auth.uid(), moderated_at = now(),
      moderation_note = coalesce(p_note, moderation_note), reply = coalesce(p_reply, reply)
    where business_id = v_business and id = p_review_id;
  else
    update public.order_reviews set status = p_status, moderated_by = auth.uid(), moderated_at = now(),
      moderation_note = coalesce(p_note, moderation_note), reply = coalesce(p_reply, reply)
    where business_id = v_business and id = p_review_id;
  end if;
  return jsonb_build_object('review_id', p_review_id, 'kind', p_kind, 'status', p_status);
end
$$;
revoke all on function app.moderate_review(text, uuid, text, text, text) from public;
grant execute on function app.moderate_review(text, uuid, text, text, text) to authenticated, service_role;

create function public.moderate_review(kind text, review_id uuid, status text, note text default null, reply text default null)
returns jsonb
language sql volatile
set search_path = ''
as $$
  select app.moderate_review(kind, review_id, status, note, reply)
$$;
revoke all on function public.moderate_review(text, uuid, text, text, text) from public, anon;
grant execute on function public.moderate_review(text, uuid, text, text, text) to authenticated, service_role;
