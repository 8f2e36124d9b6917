-- Each tenant's signing authorities: the X.509 CA of its trust domain and the JWT-SVID key.
-- Private keys are sealed under the deployment's key-encryption key (AES-GCM, bound to the row).
CREATE TABLE authorities (
    id          text PRIMARY KEY,
    tenant      text NOT NULL REFERENCES tenants (tenant),
    kind        text NOT NULL CHECK (kind IN ('x509', 'jwt')),
    public_jwk  jsonb NOT NULL,
    key_id      text NOT NULL,
    cert_der    bytea,                       -- the CA certificate (x509 only)
    sealed_key  bytea NOT NULL,
    status      text NOT NULL CHECK (status IN ('active', 'retired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    not_after   timestamptz NOT NULL,
    retired_at  timestamptz,
    issued_until timestamptz                 -- the latest expiry of anything it signed
);
CREATE UNIQUE INDEX authorities_one_active ON authorities (tenant, kind) WHERE status = 'active';

-- Every X.509-SVID issued, for renewal history, audit and knowing when a retired CA may leave the bundle.
CREATE TABLE svids (
    serial       text PRIMARY KEY,
    tenant       text NOT NULL,
    agent_id     text NOT NULL REFERENCES agents (id),
    authority_id text NOT NULL REFERENCES authorities (id),
    cert_der     bytea NOT NULL,
    not_before   timestamptz NOT NULL,
    not_after    timestamptz NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX svids_by_agent ON svids (agent_id, issued_at DESC);

ALTER TABLE tenants ADD COLUMN bundle_sequence bigint NOT NULL DEFAULT 1;
