-- Token signing keys, per tenant, sealed at rest under the deployment's key-encryption key.
CREATE TABLE signing_keys (
    id         text PRIMARY KEY,
    tenant     text NOT NULL,
    kid        text NOT NULL UNIQUE,
    public_jwk jsonb NOT NULL,
    sealed_key bytea NOT NULL,
    status     text NOT NULL CHECK (status IN ('active', 'retired')),
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (tenant) WHERE status = 'active';

-- The index of issued tokens: introspection and revocation. Written in batches (group commit).
CREATE TABLE tokens (
    jti        text PRIMARY KEY,
    tenant     text NOT NULL,
    agent_id   text NOT NULL,
    sub        text NOT NULL,
    aud        text NOT NULL,
    iat        timestamptz NOT NULL,
    exp        timestamptz NOT NULL,
    cnf        jsonb NOT NULL,
    details    jsonb NOT NULL,
    act        jsonb,
    delegation jsonb,
    user_sub   text,
    revoked_at timestamptz,
    revoke_reason text
);
CREATE INDEX tokens_by_agent ON tokens (tenant, agent_id);
CREATE INDEX tokens_by_exp ON tokens (exp);

CREATE TABLE policies (
    tenant     text NOT NULL,
    version    integer NOT NULL,
    policies   text NOT NULL,
    schema     text,
    sha256     text NOT NULL,
    policy_ids jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, version)
);

CREATE TABLE token_configs (
    tenant     text NOT NULL,
    version    integer NOT NULL,
    config     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, version)
);

-- What this worker knows of each agent beyond its directory entry: its current credential and
-- its attested postures (kept by credential.issued and attestation.* events).
CREATE TABLE agent_credentials (
    agent_id      text PRIMARY KEY,
    tenant        text NOT NULL,
    credential_id text NOT NULL,
    issued_at     timestamptz NOT NULL DEFAULT now()
);

-- Delegation links revoked (each with its whole subtree): tokens minted from a chain through any
-- of them are inactive from the moment the event is applied.
CREATE TABLE revoked_links (
    cid        text PRIMARY KEY,
    revoked_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE postures (
    agent_id   text NOT NULL,
    tenant     text NOT NULL,
    kind       text NOT NULL,
    result_id  text NOT NULL,
    verified_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (agent_id, kind)
);

-- OIDC providers a tenant trusts for its users (their tokens are checked, never stored).
CREATE TABLE idps (
    tenant   text NOT NULL,
    issuer   text NOT NULL,
    config   jsonb NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, issuer)
);
