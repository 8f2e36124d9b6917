"""Every row of the threat model names a control and a test that exists (CI runs them all)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
MODEL = ROOT / "docs" / "threat-model.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _rows() -> list[tuple[str, str, str]]:
    text = MODEL.read_text()
    table = text[text.index("| threat | control | test |"):]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((cells[0], cells[1], cells[2]))
    return rows


def test_the_issue_threats_are_all_modelled() -> None:
    threats = " ".join(r[0].lower() for r in _rows())
    for name in ("stolen agent key", "compromised orchestrator", "replay", "confused deputy", "delegation laundering",
                 "token theft in logs", "key rotation", "tenant crossover", "audit tampering", "evidence",
                 "denial of service", "ca, issuer, token or log keys"):
        assert name in threats, name


def test_every_row_names_a_control_and_an_existing_test() -> None:
    rows = _rows()
    assert len(rows) >= 20
    for threat, control, test in rows:
        assert control, threat
        match = TEST_REF.fullmatch(test)
        assert match, f"{threat}: {test!r} is not a `path::test` reference"
        path, name = ROOT / match.group(1), match.group(2)
        assert path.exists(), f"{threat}: {path} does not exist"
        assert re.search(rf"^(async )?def {name}\(", path.read_text(), re.M), f"{threat}: no {name} in {path}"
