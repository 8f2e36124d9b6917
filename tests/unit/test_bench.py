"""`agentid bench`: the report's shape and the measuring machinery's behaviour. Never its figures:
no test here asserts how fast anything is."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.load import closed_loop, open_loop
from benchmarks.profile import attribute
from benchmarks.report import assemble
from benchmarks.scenarios import NAMES, Result, resolve, target_met
from benchmarks.stats import Run, percentile, ratio, summarise

FIGURES = ("rate_per_s", "p50_ms", "p99_ms", "floor_rate_per_s", "ratio_to_floor", "runs")


def test_every_name_issue_10_asks_for_is_in_the_catalogue() -> None:
    asked = {"issue_c1", "issue_c64", "issue_open_1000", "verify_cold", "verify_cached", "spawn", "exchange",
             "audit_append", "audit_proof_100k", "audit_proof_1m",
             *(f"delegation_d{d}" for d in range(1, 9)), *(f"delegation_d{d}_warm" for d in range(1, 9))}
    assert set(NAMES) == asked


def test_only_accepts_names_and_groups_and_refuses_the_unknown() -> None:
    assert resolve(["verify_cold"]) == ["verify_cold"]
    assert resolve(["verify"]) == ["verify_cold", "verify_cached"]
    assert set(resolve(["delegation"])) == {n for n in NAMES if n.startswith("delegation_")}
    assert resolve(None) == list(NAMES)
    with pytest.raises(ValueError):
        resolve(["issue_c2"])


def test_a_failed_operation_is_slower_than_every_answer() -> None:
    # 2 of 100 failed: the p99 is not known (it lies among the failures), the p50 is.
    run = Run(count=100, seconds=1.0, latencies_s=[0.001] * 98, errors=2)
    assert run.pct_ms(99) is None and run.pct_ms(50) == pytest.approx(1.0)
    assert run.figures()["p99_ms"] is None and run.figures()["errors"] == 2


def test_summary_gives_median_and_range_and_never_invents_a_figure() -> None:
    runs = [{"rate_per_s": r, "p50_ms": p, "p99_ms": q} for r, p, q in ((1, 1, None), (3, 2, 5), (2, 3, 4))]
    s = summarise(runs)
    assert s["rate_per_s"] == 2 and s["rate_per_s_range"] == [1, 3]
    assert s["p99_ms"] == 5 and s["p99_ms_range"] == [4, None]  # one run's p99 is unknown: the top is too
    assert summarise([{"rate_per_s": 1, "p50_ms": None, "p99_ms": None}])["p50_ms"] is None
    assert ratio(None, 10) is None and ratio(5, None) is None and ratio(5, 10) == 0.5
    assert percentile([1, 2, 3, 4], 50) == 2.5


async def test_the_open_loop_keeps_sending_while_earlier_requests_are_outstanding() -> None:
    # The first request is answered only once the last has been sent: a closed loop would wait
    # for it forever; the open loop sends on schedule (no coordinated omission).
    gate = asyncio.Event()
    started: list[int] = []

    async def call(i: int) -> None:
        started.append(i)
        if i == 4:
            gate.set()
        await gate.wait()

    run = await open_loop(call, count=5, rate_per_s=1000)
    assert started == [0, 1, 2, 3, 4] and run.errors == 0 and len(run.latencies_s) == 5
    assert run.extra["offered_rate_per_s"] == 1000


async def test_the_closed_loop_does_exactly_its_count_and_counts_failures() -> None:
    in_flight = peak = 0

    async def call(i: int) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        in_flight -= 1
        if i % 10 == 0:
            raise RuntimeError("refused")

    run = await closed_loop(call, count=50, concurrency=8)
    assert run.count == 50 and run.errors == 5 and len(run.latencies_s) == 45 and peak == 8


def test_targets_are_judged_on_the_medians() -> None:
    assert target_met("issue_c1", {"p50_ms": 0.8, "p99_ms": 2.5}) is True
    assert target_met("issue_c1", {"p50_ms": 0.8, "p99_ms": 3.5}) is False
    assert target_met("issue_c1", {"p50_ms": 0.8, "p99_ms": None}) is None
    assert target_met("exchange", {"rate_per_s": 1}) is None  # no target


def test_profile_samples_go_to_the_deepest_step_of_their_stack() -> None:
    lines = [
        ("main (a.py:1);Worker._request (shared/worker.py:2);Worker._admit (shared/worker.py:3);"
         "authenticate (shared/bus/signing.py:4);SenderDirectory.lookup (shared/directory.py:5) 3"),
        ("main (a.py:1);Worker._request (shared/worker.py:2);Bus.reply (shared/bus/client.py:6);"
         "Bus.envelope (shared/bus/client.py:7);sign (shared/bus/signing.py:8) 2"),
        "main (a.py:1);idle (b.py:9) 1",
    ]
    steps, total = attribute(lines)
    assert total == 6
    assert steps["request: directory lookup query"] == 3 and steps["reply: signing"] == 2
    assert steps["other (event loop, scheduling)"] == 1


def test_the_report_names_every_scenario_and_nulls_those_not_run() -> None:
    result = Result(runs=[{"rate_per_s": 10.0, "p50_ms": 1.0, "p99_ms": 2.0}] * 5, floor="one thing",
                    floor_runs=[{"rate_per_s": 20.0, "p50_ms": 0.5, "p99_ms": 1.0}] * 5)
    report = assemble({"cores": 2}, {"nats_echo_c1": []}, {"spawn": result})
    assert set(report["scenarios"]) == set(NAMES)
    spawn = report["scenarios"]["spawn"]
    assert spawn["ratio_to_floor"] == 0.5 and spawn["floor_rate_per_s"] == 20 and len(spawn["runs"]) == 5
    assert report["scenarios"]["issue_c64"] is None and report["floor"]["nats_echo_c1"] is None


def test_bench_quick_writes_a_report_of_the_agreed_shape(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "agentid.cli", "bench", "--quick", "--only", "delegation_d1",
                           "--json", str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert {"cpu_model", "cores", "python", "openssl", "nats_server", "postgres"} <= set(report["machine"])
    assert {"ed25519_sign", "ed25519_verify", "es256_sign", "es256_verify", "pyjwt_encode", "pyjwt_decode",
            "nats_echo_c1", "nats_echo_c64"} <= set(report["floor"])
    assert report["floor"]["ed25519_verify"]["rate_per_s"] is not None
    assert set(report["scenarios"]) == set(NAMES)
    entry = report["scenarios"]["delegation_d1"]
    assert set(FIGURES) <= set(entry) and len(entry["runs"]) >= 5
    assert entry["floor"] and entry["floor_rate_per_s"] is not None and entry["ratio_to_floor"] is not None
    assert all(v is None for k, v in report["scenarios"].items() if k != "delegation_d1")
