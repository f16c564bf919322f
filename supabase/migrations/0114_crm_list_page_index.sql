-- CRM: the customer list page (one venue, one segment, lifetime value first, ties by customer) read in
-- index order (issue 18). The 0007 indexes ended at total_spent_cents, so every page sorted all the
-- segment's rows of equal spend by customer_id (an incremental sort of each group of ties, a full sort
-- at deeper offsets); with customer_id as the last key the page is the index's next 50 entries.

-- section indexes
create index customer_venue_stats_segment_ltv_page_idx on public.customer_venue_stats
  (business_id, venue_id, segment, total_spent_cents desc, customer_id);
create index customer_venue_stats_ltv_page_idx on public.customer_venue_stats
  (business_id, venue_id, total_spent_cents desc, customer_id);
drop index public.customer_venue_stats_segment_ltv_idx;
drop index public.customer_venue_stats_ltv_idx;
