-- A worker's copy of the runtime senders registration knows (orchestrators, agents), kept current
-- by registration's events, so every worker can authenticate them without reading another schema.
CREATE TABLE senders (
    sender          text NOT NULL,               -- SPIFFE ID
    key_id          text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('orchestrator', 'agent')),
    subject_id      text NOT NULL,               -- orchestrator id or agent id
    tenant          text NOT NULL,
    orchestrator_id text,
    public_jwk      jsonb NOT NULL,
    active          boolean NOT NULL,
    expires_at      timestamptz,
    attributes      jsonb NOT NULL DEFAULT '{}',  -- what a worker wants to know of the sender
    PRIMARY KEY (sender, key_id)
);
CREATE INDEX senders_by_subject ON senders (subject_id);

-- Agents whose end this worker has seen, so a sender fetched late from registration is never
-- recorded as active after its exit event was already applied.
CREATE TABLE senders_ended (
    subject_id text PRIMARY KEY,
    ended_at   timestamptz NOT NULL DEFAULT now()
);
