-- Issuer keys per tenant. With did:key each key is its own issuer DID; with did:web one DID lists
-- every live key. Private keys are sealed under the deployment's key-encryption key.
CREATE TABLE issuer_keys (
    id          text PRIMARY KEY,
    tenant      text NOT NULL,
    did         text NOT NULL,
    vm_id       text NOT NULL UNIQUE,           -- the DID URL used as JWT kid
    public_jwk  jsonb NOT NULL,
    sealed_key  bytea NOT NULL,
    status      text NOT NULL CHECK (status IN ('active', 'retired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    issued_until timestamptz                     -- the latest validUntil it signed
);
CREATE UNIQUE INDEX issuer_keys_one_active ON issuer_keys (tenant) WHERE status = 'active';

-- Bitstring status lists: one at a time per issuer key takes new indexes, allocated at random.
CREATE TABLE status_lists (
    id            text PRIMARY KEY,
    tenant        text NOT NULL,
    issuer_key_id text NOT NULL REFERENCES issuer_keys (id),
    purpose       text NOT NULL DEFAULT 'revocation',
    entries       integer NOT NULL,
    used          integer NOT NULL DEFAULT 0,
    bits          bytea NOT NULL,
    vc_jwt        text NOT NULL,
    version       integer NOT NULL DEFAULT 1,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX status_lists_open ON status_lists (issuer_key_id, used);

CREATE TABLE credentials (
    id             text PRIMARY KEY,            -- urn:uuid:...
    tenant         text NOT NULL,
    agent_id       text NOT NULL,
    issuer_key_id  text NOT NULL REFERENCES issuer_keys (id),
    status_list_id text NOT NULL REFERENCES status_lists (id),
    status_index   integer NOT NULL,
    vc_jwt         text NOT NULL,
    subject        jsonb NOT NULL,              -- the credentialSubject, for re-issuing with new posture
    valid_from     timestamptz NOT NULL,
    valid_until    timestamptz NOT NULL,
    attested       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at     timestamptz,
    revoke_reason  text,
    UNIQUE (status_list_id, status_index)
);
CREATE INDEX credentials_by_agent ON credentials (tenant, agent_id, created_at DESC);
