-- Resource servers that introspect (RFC 7662) and revoke (RFC 7009) the tenant's tokens over the
-- HTTP gateway, with HTTP Basic credentials. Only a scrypt hash of each secret is kept.
CREATE TABLE resource_servers (
    client_id   text PRIMARY KEY,
    tenant      text NOT NULL,
    name        text NOT NULL,
    audiences   jsonb NOT NULL,
    salt        bytea NOT NULL,
    secret_hash bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resource_servers_by_tenant ON resource_servers (tenant);
