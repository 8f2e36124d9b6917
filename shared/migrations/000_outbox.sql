-- Every worker schema has an outbox (events committed with the state that caused them, relayed to
-- JetStream afterwards) and an inbox (message ids already applied, so redelivery is harmless).
CREATE TABLE outbox (
    id         text PRIMARY KEY,              -- = Nats-Msg-Id, a ULID: ordered by creation
    subject    text NOT NULL,
    payload    bytea NOT NULL,
    headers    jsonb NOT NULL,                -- the signed envelope and trace context
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE inbox (
    sender      text NOT NULL,
    msg_id      text NOT NULL,
    subject     text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sender, msg_id)
);
CREATE INDEX inbox_received_at ON inbox (received_at);
