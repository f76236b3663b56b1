-- Positions every build schema keeps beside its view tables, written in the same transaction as them.

-- The next Kafka offset to read per partition: the source of truth for where this build resumes.
CREATE TABLE partition_offsets (
    topic            text        NOT NULL,
    partition        integer     NOT NULL,
    next_offset      bigint      NOT NULL,
    high_watermark   bigint      NOT NULL DEFAULT 0,
    last_event_at    timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- The version applied per aggregate: the duplicate and gap guard, and what consistency tokens wait on.
CREATE TABLE aggregate_versions (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    version         bigint      NOT NULL,
    projected_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Events held back: behind a poison event of the same aggregate, or waiting for a missing version.
CREATE TABLE parked_events (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    version         bigint      NOT NULL,
    topic           text        NOT NULL,
    partition       integer     NOT NULL,
    "offset"        bigint      NOT NULL,
    reason          text        NOT NULL,
    error           text        NOT NULL,
    envelope        jsonb,
    raw_value       bytea,
    attempts        integer     NOT NULL DEFAULT 0,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, version)
);
