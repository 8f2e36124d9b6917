"""How much work each scenario does: fixed counts per run, never durations.

The full plan is sized to finish in well under ten minutes on a loaded 2-core machine, the quick
plan in under two; both do a warm-up and five measured runs of every scenario, and both measure
every floor beside its scenario. Quick runs are smaller, so their percentiles are noisier.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    runs: int = 5
    agents: int = 128            # distinct agents signing issue requests
    issue_c1: int = 300
    issue_c64: int = 1500
    issue_open: int = 2000        # sent at 1,000/s: two seconds of offered load per run
    echo_c1: int = 1000
    echo_c64: int = 5000
    spawn: int = 60
    exchange: int = 600
    exchange_users: int = 32
    verify: int = 3000
    delegation: int = 120
    audit_proofs: int = 500
    crypto: int = 3000
    warmup: int = 256
    catch_up_timeout_s: float = 120.0


FULL = Plan("full")
QUICK = Plan("quick", agents=32, issue_c1=50, issue_c64=250, issue_open=200, echo_c1=200, echo_c64=1000,
             spawn=8, exchange=80, exchange_users=16, verify=400, delegation=30, audit_proofs=100, crypto=500,
             warmup=96, catch_up_timeout_s=60.0)
