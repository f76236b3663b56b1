-- The shop projection's tables, created inside one build schema (search_path is set by the runner).
-- Money is numeric(14,2); the query side renders it as a decimal string.

CREATE TABLE customers (
    id                text PRIMARY KEY,
    name              text,
    email             text,
    status            text        NOT NULL,
    registered_at     timestamptz,
    updated_at        timestamptz NOT NULL,
    version           bigint      NOT NULL,
    order_count       integer     NOT NULL DEFAULT 0,
    open_order_count  integer     NOT NULL DEFAULT 0,
    lifetime_value    numeric(14, 2) NOT NULL DEFAULT 0
);
CREATE INDEX customers_registered_at ON customers (registered_at, id);
CREATE INDEX customers_status ON customers (status, id);

CREATE TABLE orders (
    id             text PRIMARY KEY,
    customer_id    text           NOT NULL,
    customer_name  text,
    status         text           NOT NULL,
    currency       text           NOT NULL,
    total          numeric(14, 2) NOT NULL,
    line_count     integer        NOT NULL,
    lines          jsonb          NOT NULL,
    placed_at      timestamptz    NOT NULL,
    updated_at     timestamptz    NOT NULL,
    version        bigint         NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id, placed_at, id);
CREATE INDEX orders_placed_at ON orders (placed_at, id);
CREATE INDEX orders_status ON orders (status, id);
CREATE INDEX orders_total ON orders (total, id);
