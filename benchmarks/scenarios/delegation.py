"""UCAN delegation chain verification (`shared.ucan.verify_chain`) at depth 1 to 8, in process.

A chain of depth N is the tenant authority's root link and N-1 hand-ons, every principal its own
Ed25519 key, each link naming the same capability (the widest attenuation check still runs).

- `delegation_dN` (cold): the verifier has never met these principals: the did:key -> key cache is
  emptied before each call, so every call parses, resolves every did:key and checks every link;
- `delegation_dN_warm`: the same chain again, principals' keys cached. `verify_chain` keeps no
  cache of verified links, so a warm call still checks all N signatures.

Floor: N raw Ed25519 verifications (`cryptography`, one core), measured beside each run. Rates are
per CPU second; latencies are wall time per call.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.floor import verifications
from benchmarks.load import cpu_run
from benchmarks.scenarios import DEPTHS, Bench, Result
from shared import ucan
from shared.capabilities import Capability
from shared.keys import PrivateKey

CAPABILITY = Capability(type="ledger", resource="https://ledger.example/accounts/*", actions=frozenset({"read"}))
CHAINS = 16  # distinct chains, verified in turn


def _chain(root: PrivateKey, depth: int, expires: int) -> list[str]:
    """A chain, root first: every principal a fresh key."""
    links: list[str] = []
    issuer = root
    for _ in range(depth):
        holder = PrivateKey.generate()
        links.append(ucan.issue(issuer, holder.public.did, [CAPABILITY], expires=expires, proofs=links[-1:]))
        issuer = holder
    return links


def _holders(chain: list[str]) -> list[str]:
    """The holder DID of each prefix of `chain` (the audience of its last link)."""
    return [ucan.parse(link).aud for link in chain]


async def run(bench: Bench, names: list[str]) -> dict[str, Result]:
    plan = bench.plan
    root = PrivateKey.generate()
    expires = int(time.time()) + 3600
    chains = [_chain(root, max(DEPTHS), expires) for _ in range(CHAINS)]  # shorter chains are their prefixes
    holders = [_holders(c) for c in chains]
    trusted = frozenset({root.public.did})

    def verifier(depth: int, cold: bool) -> Any:
        def one(i: int) -> None:
            k = i % CHAINS
            if cold:
                ucan._key_of.cache_clear()  # a verifier meeting these principals for the first time
            ucan.verify_chain(chains[k][:depth], audience_did=holders[k][depth - 1], trusted_roots=trusted,
                              max_depth=max(DEPTHS), now=time.time(), revoked=frozenset())
        return one

    bench.say(f"delegation: depth 1..8, cold and warm, {plan.runs} runs of {plan.delegation} chains each")
    depths = [d for d in DEPTHS if f"delegation_d{d}" in names or f"delegation_d{d}_warm" in names]
    for depth in depths:  # warm-up: every code path once
        cpu_run(verifier(depth, True), count=CHAINS)
    out: dict[str, Result] = {}
    for depth in depths:
        cold_name, warm_name = f"delegation_d{depth}", f"delegation_d{depth}_warm"
        cold_runs, warm_runs, floors = [], [], []
        for _ in range(plan.runs):
            floors.append(verifications(depth, plan.delegation).figures())
            cold_runs.append(cpu_run(verifier(depth, True), count=plan.delegation).figures())
            warm_runs.append(cpu_run(verifier(depth, False), count=plan.delegation).figures())
        floor = f"{depth} raw Ed25519 verification{'s' if depth > 1 else ''} (one per link), one core"
        how = {"depth": depth, "rate": "per CPU second, one core"}
        out[cold_name] = Result(cold_runs, floor, floors, {**how, "cache": "did:key cache emptied before each call"})
        out[warm_name] = Result(warm_runs, floor, floors, {**how, "cache": "principals' keys cached; no link cache"})
        bench.say(f"  depth {depth}: p50 cold {statistics.median(r['p50_ms'] for r in cold_runs)} ms, "
                  f"warm {statistics.median(r['p50_ms'] for r in warm_runs)} ms, "
                  f"floor {statistics.median(r['p50_ms'] for r in floors)} ms")
    return {k: v for k, v in out.items() if k in names}
