-- The products read model (created inside one build schema; search_path is set by the projector).
CREATE TABLE products (
    id             text PRIMARY KEY,
    name           text           NOT NULL,
    price          numeric(14, 2) NOT NULL,
    currency       text           NOT NULL,
    registered_at  timestamptz    NOT NULL,
    updated_at     timestamptz    NOT NULL,
    version        bigint         NOT NULL
);
CREATE INDEX products_name ON products (name, id);
CREATE INDEX products_price ON products (price, id);
