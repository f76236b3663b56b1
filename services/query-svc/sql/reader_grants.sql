-- Read-only access for the query service's database role to the `read` schema, and only to it.
--
-- Run in every database the query service reads, as a superuser or as the writer role, with psql
-- variables `writer` (the role the projector connects as) and `reader` (the query service's role):
--   psql -v writer=cqrs -v reader=cqrs_reader -d cqrs < reader_grants.sql
-- Idempotent. The projector creates `read` and (re)creates its views later, at every build
-- activation, so a one-off GRANT would not survive: the schema is created here, owned by the
-- writer, and ALTER DEFAULT PRIVILEGES grants SELECT on every view the writer creates in it.
-- Views run with their owner's rights, so the reader needs nothing on the build schemas behind
-- them (`shop_b<n>`), and gets nothing there.

CREATE SCHEMA IF NOT EXISTS read AUTHORIZATION :"writer";
GRANT USAGE ON SCHEMA read TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA read TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"writer" IN SCHEMA read GRANT SELECT ON TABLES TO :"reader";
