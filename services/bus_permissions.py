"""NATS permissions, generated from the subject catalogue: `deploy/nats.conf`.

`python -m services.bus_permissions` rewrites deploy/nats.conf; with `--check` it only reports
whether the file is stale (tests/unit/test_bus_permissions.py fails then), so a route or topic
added to `contracts/subjects.py` never silently lacks its permission. `--tenant T` (repeatable)
adds the users of tenant T; `--out -` prints instead of writing.

Each process connects as its own NATS user (an nkey) and may publish and subscribe only where its
part of the protocol needs to, so the server itself refuses everything else, before any of our
signature checks run:

  worker W       subscribe to W's request routes, only in W's queue group; publish the events W
                 owns (its outbox), the routes W calls, replies (`allow_responses`), the JetStream
                 API for the event stream, W's own durable consumers and its KV buckets; read
                 replies only in `_INBOX.<root>.service.W`.
  operator       the deployment admin (CLI, demo, tests): every subject of the deployment and the
                 JetStream API. It holds the keyring (every service key), so narrowing it on NATS
                 would protect nothing.
  orchestrator   of tenant T: the routes of T that admit orchestrators, `evt.agent.spawn_requested`
                 of T, the events of T that the SDK waits for, and its inbox under T.
  agent          of tenant T: the routes of T that admit agents, `evt.credential.issued` of T, and
                 its inbox under T.
  verifier       a resource server of tenant T: T's revocation events, live and replayed through
                 consumers whose filter is pinned to them; no requests (it signs nothing).

Some of what a process does on NATS is not in the catalogue: which routes a worker calls, which
events it watches outside JetStream, what the SDK waits for. Those are the tables below; the unit
test cross-checks them against the code that uses them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts import subjects as sub
from contracts.subjects import DEFAULT_ROOT, ROUTES, TOPICS, Route, Topic, check_token
from shared.bus.client import stream_name
from shared.bus.inbox import party_inbox, service_inbox
from shared.keyring import SERVICES

DEFAULT_PATH = Path(__file__).parents[1] / "deploy" / "nats.conf"

# Routes each worker calls (besides what its sender directory calls, below).
CALLS: Mapping[str, tuple[Route, ...]] = {
    "attestation": (sub.GET_AGENT,),
    "issuance": (sub.TOKEN_INTROSPECT,),
    "token": (sub.DELEGATION_CHECK, sub.GET_BUNDLE),
    "gateway": (sub.TOKEN_CONFIG_GET, sub.TOKEN_JWKS, sub.GET_ISSUER, sub.GET_STATUS_LIST, sub.GET_BUNDLE,
                sub.TOKEN_GRANT, sub.TOKEN_RS_INTROSPECT, sub.TOKEN_RS_REVOKE),
}
DIRECTORY_CALLS = (sub.GET_AGENT, sub.LOOKUP_SENDER)  # shared/directory.py
# Core NATS subscriptions a worker holds besides its routes (cache invalidation, every replica).
WATCHES: Mapping[str, tuple[Topic, ...]] = {
    "token": (sub.POLICY_UPDATED, sub.TOKEN_CONFIG_UPDATED, sub.SIGNING_KEY_ROTATED, sub.IDP_CHANGED),
}
# Durable consumers a worker runs outside `Worker.subscriptions()`.
EXTRA_DURABLES: Mapping[str, tuple[str, ...]] = {"audit": ("audit-log",)}  # services/audit/consumer.py
# KV buckets (`<root>_<bucket>`): every worker runtime shares the replay guard; the gateway keeps
# only its DPoP proof cache and never touches the event stream.
BUCKETS: Mapping[str, tuple[str, ...]] = {"gateway": ("gateway_dpop",)}
DEFAULT_BUCKETS = ("replay",)
NO_STREAM = frozenset({"gateway"})

# What the SDK's parties wait for with a plain subscription, in their own tenant.
PARTY_WATCHES: Mapping[str, tuple[Topic, ...]] = {
    "orchestrator": (sub.AGENT_REGISTERED, sub.AGENT_SPAWN_REJECTED),  # Orchestrator.spawn_via_event
    "agent": (sub.CREDENTIAL_ISSUED,),                                 # Agent.credential
}
REVOCATION_TOPICS = (sub.AGENT_EXITED, sub.TOKEN_REVOKED, sub.DELEGATION_REVOKED)  # agentid/revocation.py
PARTY_KINDS = ("orchestrator", "agent", "verifier")


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False


@dataclass(frozen=True)
class User:
    name: str                   # "token", "operator", "<tenant>.agent"
    comment: str
    permissions: Permissions

    @property
    def variable(self) -> str:
        """The environment variable that holds the user's public nkey in the checked-in file."""
        return self.name.upper().replace(".", "_").replace("-", "_") + "_NKEY"


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def durables(worker: str) -> tuple[str, ...]:
    """The durable consumers a worker creates, read from its own declarations."""
    from services import runner
    from shared.directory import SenderDirectory

    cls = runner.worker_class(worker)
    # Only to read what it declares: `subscriptions()` names consumers and bound handlers, and
    # touches no settings, connection or database.
    instance = object.__new__(cls)
    specs = list(instance.subscriptions())
    if cls.uses_directory:
        specs.append(SenderDirectory(instance).subscription())
    return _unique([s.durable for s in specs] + list(EXTRA_DURABLES.get(worker, ())))


def calls(worker: str) -> tuple[Route, ...]:
    from services import runner

    routes = list(CALLS.get(worker, ()))
    if runner.worker_class(worker).uses_directory:
        routes += DIRECTORY_CALLS
    return tuple(dict.fromkeys(routes))


def worker_permissions(worker: str, root: str = DEFAULT_ROOT) -> Permissions:
    stream = stream_name(root)
    serves = [r for r in ROUTES if r.service == worker]
    publish = [t.pattern(root) for t in TOPICS if t.owner == worker]
    publish += [r.pattern(root) for r in calls(worker)]
    if worker not in NO_STREAM:
        # Every worker makes sure the event stream exists at start (Bus.ensure_stream).
        publish += [f"$JS.API.STREAM.{op}.{stream}" for op in ("INFO", "CREATE", "UPDATE")]
    for durable in durables(worker):
        # Its own durables only: creating, binding, pulling and acking anyone else's is refused.
        publish += [f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
                    f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
                    f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.>",
                    f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
                    f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
                    f"$JS.ACK.{stream}.{durable}.>"]
    for bucket in BUCKETS.get(worker, DEFAULT_BUCKETS):
        kv = f"{check_token(root)}_{bucket}"
        publish += [f"$JS.API.STREAM.INFO.KV_{kv}", f"$JS.API.STREAM.CREATE.KV_{kv}",
                    f"$JS.API.DIRECT.GET.KV_{kv}", f"$JS.API.DIRECT.GET.KV_{kv}.>",
                    f"$JS.API.STREAM.MSG.GET.KV_{kv}", f"$KV.{kv}.>"]
    subscribe = [f"{r.pattern(root)} {worker}" for r in serves]  # "<subject> <queue>": its queue group only
    subscribe += [t.pattern(root) for t in WATCHES.get(worker, ())]
    subscribe.append(service_inbox(root, worker) + ".>")
    return Permissions(_unique(publish), _unique(subscribe), allow_responses=bool(serves))


def operator_permissions(root: str = DEFAULT_ROOT) -> Permissions:
    r = check_token(root)
    return Permissions(
        publish=(f"{r}.v1.>", "$JS.API.>"),
        # Its own inbox, and tenant parties' inboxes for the demo, which acts for everyone; not the
        # workers' inboxes nor their request subjects.
        subscribe=(f"{r}.v1.*.evt.>", f"_INBOX.{r}.operator.>", f"_INBOX.{r}.tenant.>"),
    )


def party_permissions(kind: str, tenant: str, root: str = DEFAULT_ROOT) -> Permissions:
    if kind not in PARTY_KINDS:
        raise ValueError(f"not a tenant party: {kind!r}")
    subscribe = [party_inbox(root, tenant, kind) + ".>"]
    if kind == "verifier":
        stream = stream_name(root)
        subjects = [t.subject(tenant, root) for t in REVOCATION_TOPICS]
        # The filter is part of the API subject, and the server checks it against the consumer's
        # own filter: a verifier can replay its tenant's revocations and nothing else.
        publish = [f"$JS.API.CONSUMER.CREATE.{stream}.*.{s}" for s in subjects]
        return Permissions(tuple(publish), tuple(subscribe + subjects))
    publish = [r.subject(tenant, root) for r in ROUTES if kind in r.senders]
    publish += [t.subject(tenant, root) for t in TOPICS if t.owner == kind]
    subscribe += [t.subject(tenant, root) for t in PARTY_WATCHES.get(kind, ())]
    return Permissions(_unique(publish), _unique(subscribe))


def users(root: str = DEFAULT_ROOT, tenants: Sequence[str] = ()) -> list[User]:
    out = []
    for worker in SERVICES:
        out.append(User(worker, f"worker {worker}", worker_permissions(worker, root)))
    out.append(User("operator", "operator: the deployment admin", operator_permissions(root)))
    for tenant in tenants:
        for kind in PARTY_KINDS:
            out.append(User(f"{check_token(tenant)}.{kind}", f"tenant {tenant}: {kind}s",
                            party_permissions(kind, tenant, root)))
    variables = [u.variable for u in out]
    if len(set(variables)) != len(variables):
        raise ValueError("two users would share one nkey variable: rename a tenant")
    return out


def new_user_nkey() -> tuple[str, str]:
    """A fresh NATS user nkey: (seed for AGENTID_NATS_NKEY_SEED, public key for nats.conf)."""
    import os

    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    pair = nkeys.from_seed(bytearray(seed))
    try:
        return seed.decode(), pair.public_key.decode()
    finally:
        pair.wipe()


# -- rendering ---------------------------------------------------------------------------------

HEADER = """\
# NATS for an agentid deployment. GENERATED by `python -m services.bus_permissions` from the subject
# catalogue (contracts/subjects.py): do not edit by hand; tests fail when it is stale.
#
# Every process connects as its own NATS user, an nkey (AGENTID_NATS_NKEY_SEED holds its seed; the
# public key goes in the variable named below). Each user may publish and subscribe only where its
# part of the protocol needs to (services/bus_permissions.py says who may do what), so the server
# refuses everything else before our per-message signatures are even checked. Replies come back on
# per-user inbox prefixes (shared/bus/inbox.py) that no other user may read.
#
# Tenants: orchestrators, agents and resource-server verifiers connect as users of their own tenant
# (`python -m services.bus_permissions --tenant acme` adds acme's three). With many tenants, or to
# give each agent its own user, use decentralised JWT auth instead (`nsc`: an operator, one account
# per deployment, user JWTs issued per tenant or agent with these same permission lists), which
# needs no server restart per tenant.
"""

SERVER = """\
port: 4222
http: 8222
server_name: agentid-nats

jetstream {
  store_dir: /data/jetstream
  max_memory_store: 256MB
  max_file_store: 10GB
}

max_payload: 1MB
"""


def _list(items: Sequence[str], indent: str) -> str:
    inner = "".join(f'{indent}  "{item}"\n' for item in items)
    return f"[\n{inner}{indent}]"


def _user(user: User, nkey: str, indent: str) -> str:
    p = user.permissions
    lines = [f"{indent}# {user.comment}",
             f"{indent}{{ nkey: {nkey}",
             f"{indent}  permissions: {{",
             f"{indent}    publish: {{ allow: {_list(p.publish, indent + '    ')} }}",
             f"{indent}    subscribe: {{ allow: {_list(p.subscribe, indent + '    ')} }}"]
    if p.allow_responses:
        lines.append(f"{indent}    allow_responses: true  # replies to the requests it receives, once each")
    lines.append(f"{indent}  }} }}")
    return "\n".join(lines) + "\n"


def render(root: str = DEFAULT_ROOT, tenants: Sequence[str] = (), nkeys: Mapping[str, str] | None = None, *,
           server: bool = True, system_account: bool = True, extra: Sequence[User] = ()) -> str:
    """The configuration. `nkeys` maps a user name to its public key; users not in it read theirs
    from an environment variable. `server=False` leaves out ports and storage (a test's embedded
    server sets them on its command line); `extra` adds users (a test's observer)."""
    nkeys = nkeys or {}
    parts = [HEADER, "\n"]
    if server:
        parts += [SERVER, "\n"]
    parts.append("accounts {\n  AGENTID {\n    jetstream: enabled\n    users = [\n")
    for user in [*users(root, tenants), *extra]:
        parts.append(_user(user, nkeys.get(user.name) or f"${user.variable}", "      "))
    parts.append("    ]\n  }\n")
    if system_account:
        parts.append("  SYS { users = [ { nkey: $SYS_NKEY } ] }\n}\nsystem_account: SYS\n")
    else:
        parts.append("}\n")
    return "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.bus_permissions", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the file is stale")
    parser.add_argument("--tenant", action="append", default=[], help="add this tenant's users")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="subject prefix (AGENTID_NATS_PREFIX)")
    parser.add_argument("--out", default=str(DEFAULT_PATH), help="file to write, or - for stdout")
    parser.add_argument("--new-nkey", action="store_true", help="print a fresh user nkey (seed, public key)")
    args = parser.parse_args(argv)
    if args.new_nkey:
        seed, public = new_user_nkey()
        print(f"seed (AGENTID_NATS_NKEY_SEED, keep secret): {seed}\npublic key (nats.conf): {public}")
        return 0
    text = render(args.root, args.tenant)
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.out)
    current = path.read_text() if path.exists() else None
    if args.check:
        print(f"{path} is current" if current == text else f"{path} is stale: run python -m services.bus_permissions")
        return 0 if current == text else 1
    if current != text:
        path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
