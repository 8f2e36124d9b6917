-- Keys a log used before its current one: each signed checkpoints up to `until_size`, and the
-- checkpoint at `until_size` (the handover) carries its signature and its successor's.
CREATE TABLE retired_keys (
    log         text NOT NULL REFERENCES logs (log),
    public_key  bytea NOT NULL CHECK (length(public_key) = 32),
    until_size  bigint NOT NULL CHECK (until_size >= 0),
    retired_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log, public_key)
);
