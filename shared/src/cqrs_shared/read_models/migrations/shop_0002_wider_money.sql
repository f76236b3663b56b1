-- Wider money. `lifetime_value` sums a customer's order totals, so numeric(14,2) could overflow
-- (SQLSTATE 22003), which refused every further order event of that customer as poison. An order
-- total is at most 12 integer digits by contract; orders.total gets headroom for a wider contract.
-- Rewrites both tables; the runtime drops the `read` views over an active build first and
-- publishes them again in the same transaction (a column a view uses cannot change its type).

ALTER TABLE customers ALTER COLUMN lifetime_value TYPE numeric(20, 2);
ALTER TABLE orders ALTER COLUMN total TYPE numeric(16, 2);
