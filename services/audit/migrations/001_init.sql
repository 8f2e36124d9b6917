-- One append-only Merkle log per tenant, plus `_deployment` for unverifiable events naming no log.
-- The head row is locked for every append, which serialises appends per log (and only per log).
CREATE TABLE logs (
    log             text PRIMARY KEY,
    origin          text NOT NULL UNIQUE,      -- fixed at creation: the checkpoint origin and key name
    public_key      bytea NOT NULL CHECK (length(public_key) = 32),   -- Ed25519, what readers trust
    sealed_key      bytea NOT NULL,            -- the private key, sealed under the KEK for this log
    size            bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    root            bytea NOT NULL CHECK (length(root) = 32),         -- the root at `size`
    checkpoint_size bigint NOT NULL DEFAULT 0,
    checkpoint_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Entries: the exact leaf bytes that were hashed, and index columns derived from the leaf.
CREATE TABLE entries (
    log           text NOT NULL REFERENCES logs (log),
    seq           bigint NOT NULL CHECK (seq >= 0),
    leaf          bytea NOT NULL,
    dedup_key     bytea NOT NULL,              -- the message as received: applied once, ever
    event         text NOT NULL,
    at            timestamptz NOT NULL,
    trace_id      text,
    agents        text[] NOT NULL DEFAULT '{}',
    users         text[] NOT NULL DEFAULT '{}',
    orchestrators text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (log, seq)
);
CREATE UNIQUE INDEX entries_once ON entries (dedup_key);
CREATE INDEX entries_by_event ON entries (log, event, seq);
CREATE INDEX entries_by_time ON entries (log, at);
CREATE INDEX entries_by_trace ON entries (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX entries_by_agent ON entries USING gin (agents);
CREATE INDEX entries_by_user ON entries USING gin (users);
CREATE INDEX entries_by_orchestrator ON entries USING gin (orchestrators);

-- Every complete subtree: node (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level).
-- Written once when it completes (a conflict would mean a double append: it must fail), never updated.
CREATE TABLE nodes (
    log   text NOT NULL,
    level smallint NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx   bigint NOT NULL CHECK (idx >= 0),
    hash  bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (log, level, idx)
);

-- Every signed checkpoint, so consistency between any two can be proven.
CREATE TABLE checkpoints (
    log       text NOT NULL REFERENCES logs (log),
    size      bigint NOT NULL CHECK (size > 0),
    root      bytea NOT NULL CHECK (length(root) = 32),
    note      text NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log, size)
);

-- What entries about an agent inherit from its registration entry (its orchestrator, its controller).
CREATE TABLE agents (
    log             text NOT NULL,
    agent_id        text NOT NULL,
    orchestrator_id text,
    controller      jsonb,
    parent_agent_id text,
    PRIMARY KEY (log, agent_id)
);
