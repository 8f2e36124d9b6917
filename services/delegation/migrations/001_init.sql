-- The tenant delegation authority: an Ed25519 key per tenant whose did:key roots every chain the
-- tenant issues. Private keys are sealed under the deployment's key-encryption key. A retired key
-- stays trusted while roots it signed may still be valid (issued_until).
CREATE TABLE authority_keys (
    id           text PRIMARY KEY,
    tenant       text NOT NULL,
    did          text NOT NULL UNIQUE,
    public_jwk   jsonb NOT NULL,
    sealed_key   bytea NOT NULL,
    status       text NOT NULL CHECK (status IN ('active', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,
    issued_until timestamptz                      -- the latest exp of a root it signed
);
CREATE UNIQUE INDEX authority_keys_one_active ON authority_keys (tenant) WHERE status = 'active';

-- Delegation rules per tenant, versioned; the newest version applies.
CREATE TABLE configs (
    tenant     text NOT NULL,
    version    integer NOT NULL,
    config     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, version)
);

-- The agents this worker knows, fed by the same consumer that revokes an exited agent's links, so
-- "the agent is inactive" and "its links are revoked" always become true in one transaction.
CREATE TABLE agents (
    agent_id   text PRIMARY KEY,
    tenant     text NOT NULL,
    did        text NOT NULL,
    tier       text NOT NULL,
    purpose    text NOT NULL,
    expires_at timestamptz NOT NULL,
    ended_at   timestamptz,
    end_reason text
);
CREATE INDEX agents_by_did ON agents (tenant, did);

-- The graph: one row per recorded UCAN link. A link's parent is recorded before it.
CREATE TABLE links (
    tenant            text NOT NULL,
    cid               text NOT NULL,
    parent            text,
    depth             integer NOT NULL CHECK (depth >= 1),
    root_did          text NOT NULL,              -- the chain's root issuer (signs operator revocations)
    issuer_did        text NOT NULL,
    audience_did      text NOT NULL,
    issuer_agent_id   text,                       -- NULL for a root
    audience_agent_id text NOT NULL,
    capabilities      jsonb NOT NULL,             -- RFC 9396 objects
    not_before        bigint,
    expires           bigint,
    jwt               text NOT NULL,
    granted_by        text NOT NULL,              -- the sender that recorded it
    granted_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at        timestamptz,                -- derived from revocations, set in the same transaction
    PRIMARY KEY (tenant, cid),
    FOREIGN KEY (tenant, parent) REFERENCES links (tenant, cid),
    CHECK ((parent IS NULL) = (depth = 1))
);
CREATE INDEX links_by_parent ON links (tenant, parent);
CREATE INDEX links_by_issuer_agent ON links (tenant, issuer_agent_id);
CREATE INDEX links_by_audience_agent ON links (tenant, audience_agent_id);

-- Each agent's root from the tenant authority: at most one for the agent's life.
CREATE TABLE roots (
    tenant   text NOT NULL,
    agent_id text NOT NULL,
    cid      text NOT NULL,
    PRIMARY KEY (tenant, agent_id),
    FOREIGN KEY (tenant, cid) REFERENCES links (tenant, cid)
);

-- Revocations, append-only (UCAN 0.10 section 6.6: revocation is irreversible). `cause` is the link
-- revoked by name whose cascade reached this CID (itself when revoked by name); `record` is the
-- signed revocation record, kept for outside verifiers. `seq` is the listing cursor.
CREATE TABLE revocations (
    seq    bigserial PRIMARY KEY,
    tenant text NOT NULL,
    cid    text NOT NULL,
    cause  text NOT NULL,
    record jsonb,
    by     text NOT NULL,
    reason text NOT NULL,
    at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (tenant, cid)
);
CREATE INDEX revocations_by_tenant ON revocations (tenant, seq);

CREATE FUNCTION revocations_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'revocations are append-only';
END $$;
CREATE TRIGGER revocations_append_only BEFORE UPDATE OR DELETE ON revocations
    FOR EACH ROW EXECUTE FUNCTION revocations_append_only();
