CREATE TABLE tenants (
    tenant       text PRIMARY KEY,
    trust_domain text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orchestrators (
    id         text PRIMARY KEY,
    tenant     text NOT NULL REFERENCES tenants (tenant),
    name       text NOT NULL,
    spiffe_id  text NOT NULL UNIQUE,
    public_jwk jsonb NOT NULL,
    key_id     text NOT NULL,
    authority  jsonb NOT NULL,
    status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, name)
);

CREATE TABLE agents (
    id              text PRIMARY KEY,
    tenant          text NOT NULL REFERENCES tenants (tenant),
    spawn_id        text NOT NULL,
    spiffe_id       text NOT NULL UNIQUE,
    did             text NOT NULL,
    public_jwk      jsonb NOT NULL,
    key_id          text NOT NULL,
    orchestrator_id text NOT NULL REFERENCES orchestrators (id),
    parent_agent_id text REFERENCES agents (id),
    purpose         text NOT NULL,
    model           jsonb NOT NULL,
    tools           jsonb NOT NULL,
    tier            text NOT NULL,
    data_class      text NOT NULL,
    controller      jsonb NOT NULL,
    status          text NOT NULL CHECK (status IN ('active', 'exited', 'revoked', 'expired')),
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    end_reason      text,
    UNIQUE (tenant, spawn_id)
);
-- One key serves at most one live agent: a stolen or reused key cannot mint a second identity.
CREATE UNIQUE INDEX agents_live_key ON agents (key_id) WHERE status = 'active';
CREATE INDEX agents_live_by_orchestrator ON agents (orchestrator_id) WHERE status = 'active';
CREATE INDEX agents_by_parent ON agents (parent_agent_id);
CREATE INDEX agents_live_expiry ON agents (expires_at) WHERE status = 'active';
