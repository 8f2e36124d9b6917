-- Reference values: what each tenant accepts, as whole documents, one row per version.
CREATE TABLE reference_values (
    tenant      text NOT NULL,
    version     integer NOT NULL CHECK (version >= 1),
    document    jsonb NOT NULL,                 -- normalised (every field, defaults included)
    digest      text NOT NULL,                  -- sha256 of the canonical JSON of document
    set_by      text NOT NULL,                  -- the operator's SPIFFE ID
    set_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant, version)
);

-- Challenges: one nonce per attestation.verify, bound to the agent and the key that asked.
CREATE TABLE challenges (
    id          text PRIMARY KEY,
    tenant      text NOT NULL,
    agent_id    text NOT NULL,
    key_id      text NOT NULL,                  -- RFC 7638 thumbprint of the agent key
    nonce       bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX challenges_open ON challenges (tenant, agent_id) WHERE used_at IS NULL;
CREATE INDEX challenges_by_expiry ON challenges (expires_at);

-- Every appraisal, verified or refused: the audit record behind each event.
CREATE TABLE results (
    id                text PRIMARY KEY,
    tenant            text NOT NULL,
    agent_id          text NOT NULL,
    kind              text NOT NULL,
    posture           text NOT NULL CHECK (posture IN ('tee', 'supply_chain')),
    verified          boolean NOT NULL,
    reason            text,                     -- refusals: the stable reason code
    message           text,
    claims            jsonb,
    artifacts         jsonb NOT NULL DEFAULT '[]',
    challenge_id      text,
    key_id            text NOT NULL,
    reference_version integer,
    evidence          bytea,
    evidence_sha256   text,
    created_at        timestamptz NOT NULL,
    expires_at        timestamptz
);
CREATE INDEX results_by_agent ON results (tenant, agent_id, created_at DESC);

-- The posture each agent holds now, per kind of posture: the latest verified result.
CREATE TABLE postures (
    tenant      text NOT NULL,
    agent_id    text NOT NULL,
    posture     text NOT NULL CHECK (posture IN ('tee', 'supply_chain')),
    result_id   text NOT NULL REFERENCES results (id),
    kind        text NOT NULL,
    artifacts   jsonb NOT NULL DEFAULT '[]',
    verified_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, agent_id, posture)
);
