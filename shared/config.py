"""Settings: environment variables `AGENTID_*`, read once in `main` and passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "agentid"


class Settings(BaseSettings):
    """Every knob of a deployment. Unset URLs mean "start the embedded servers" (`agentid up`)."""

    model_config = SettingsConfigDict(env_prefix="AGENTID_", frozen=True, extra="ignore")

    nats_url: str | None = Field(None, description="NATS server URL; unset: embedded nats-server")
    database_url: str | None = Field(None, description="Postgres DSN; unset: embedded Postgres")
    data_dir: Path = Field(default_factory=default_data_dir,
                           description="State of the embedded stack, keyring, deployment file")
    nats_prefix: str = Field("agentid", pattern=r"^[A-Za-z0-9_-]+$",
                             description="First subject token; lets deployments share one NATS")
    nats_nkey_seed: SecretStr | None = Field(None, description="This process's NATS user: its nkey seed (SU...), "
                                             "whose public key deploy/nats.conf lists; unset: no NATS auth")
    keyring: Path | None = Field(None, description="Service and operator keys (default DATA_DIR/keyring.json)")
    max_skew_s: float = Field(30.0, gt=0, le=300, description="Accepted message timestamp skew")
    replay_backend: Literal["kv", "memory"] = Field("kv", description="Message-id replay cache")
    stream_max_age_s: float = Field(7 * 86_400, gt=0, description="Event retention in JetStream")
    ack_wait_s: float = Field(30.0, gt=0, description="JetStream redelivery delay for unacked events")
    max_deliver: int = Field(5, ge=1, description="Delivery attempts per event failing for a reason other "
                             "than an outage (an outage is waited out, however long)")
    outbox_poll_s: float = Field(0.5, gt=0, description="Outbox relay poll interval (it is also woken on commit)")
    concurrency: int = Field(64, ge=1, description="In-flight requests per worker")
    shutdown_grace_s: float = Field(10.0, ge=0, description="Time in-flight work gets on SIGTERM")
    db_pool_size: int = Field(10, ge=1, description="Postgres connections per worker")
    public_url: str | None = Field(None, description="Public base URL of the HTTP gateway: status list URLs, "
                                   "token issuer; unset: http://127.0.0.1:HTTP_PORT")
    http_port: int | None = Field(None, ge=1, le=65535, description="Gateway port; unset: a free port")
    http_host: str = Field("127.0.0.1", description="Address the HTTP gateway listens on (0.0.0.0 behind a "
                           "TLS-terminating proxy or in a container)")
    gateway_dpop_nonce: bool = Field(False, description="Token endpoint: require a server nonce in every DPoP "
                                     "proof (RFC 9449 section 8); clients retry once on use_dpop_nonce")
    did_web_host: str | None = Field(None, description="Serve tenant issuers as did:web on this host "
                                     "(host or host:port: the public URL's); unset: did:key")
    idp_insecure_hosts: list[str] = Field(default_factory=list, description="Hosts whose identity provider URLs "
                                          "may be plain http (a local test IdP); never in production")
    idp_refetch_interval_s: float = Field(30.0, ge=0, description="Shortest time between refetches of an "
                                          "identity provider's keys on an unknown kid")
    svid_lifetime_s: int = Field(3600, ge=60, le=86_400, description="X.509-SVID lifetime")
    ca_lifetime_s: int = Field(365 * 86_400, ge=86_400, description="Tenant CA and JWT-SVID key lifetime")
    expiry_sweep_s: float = Field(5.0, gt=0, description="How often agents past their lifetime are expired")
    attestation_challenge_ttl_s: int = Field(120, ge=10, le=3600,
                                             description="Lifetime of an attestation challenge nonce (single use)")
    attestation_posture_max_age_s: int = Field(3600, ge=60, le=7 * 86_400,
                                               description="Longest an attested posture lasts, whatever the evidence")
    attestation_sigstore_trusted_root: Path | None = Field(
        None, description="Sigstore trusted_root.json for provenance bundles; unset: sigstore evidence is refused")
    audit_checkpoint_every: int = Field(1024, ge=1, description="Sign an audit checkpoint after this many new entries")
    audit_checkpoint_interval_s: float = Field(1.0, gt=0, le=3600,
                                               description="...or once new entries have waited this long")
    audit_witness_key: Path | None = Field(None, description="Ed25519 private key (PKCS#8 PEM) of a witness that "
                                           "cosigns every audit checkpoint; unset: no witness")
    audit_witness_name: str = Field("agentid-witness", pattern=r"^[^\s+]{1,255}$",
                                    description="Key name of the audit witness")

    def base_url(self) -> str:
        """The public base URL; the stack fills in `public_url` before workers start."""
        return (self.public_url or f"http://127.0.0.1:{self.http_port or 80}").rstrip("/")

    @property
    def nkey_seed(self) -> str | None:
        seed = self.nats_nkey_seed  # a plain str when set through model_copy (not validated)
        return seed.get_secret_value() if isinstance(seed, SecretStr) else seed

    @property
    def keyring_path(self) -> Path:
        return self.keyring or self.data_dir / "keyring.json"

    @property
    def deployment_path(self) -> Path:
        return self.data_dir / "deployment.json"
