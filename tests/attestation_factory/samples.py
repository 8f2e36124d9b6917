"""Where the real public samples live (tests/data/attestation) and the fixed appraisal times."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data" / "attestation"

# "Today" for the expiry tests: fixed, so the suite gives the same answer every day.
TODAY = datetime(2026, 11, 28, tzinfo=UTC)

# The times at which each real sample is valid, from the folders' MANIFEST.md files.
NITRO_PROD_AT = datetime(2024, 9, 7, 14, 37, 39, 545000, tzinfo=UTC)
NITRO_DEBUG_AT = datetime(2024, 9, 7, 14, 38, 6, 508000, tzinfo=UTC)
SNP_MILAN_AT = datetime(2024, 1, 1, tzinfo=UTC)
AZURE_HCL_AT = datetime(2023, 3, 12, 20, 20, 5, tzinfo=UTC)
EAR_IAT = datetime(2022, 10, 18, 11, 9, 33, tzinfo=UTC)
SIGSTORE_HELLO_AT = datetime(2024, 9, 11, 19, 19, 3, tzinfo=UTC)
SIGSTORE_WHL_AT = datetime(2024, 5, 24, 19, 14, 24, tzinfo=UTC)
SIGSTORE_JS_AT = datetime(2023, 8, 29, 15, 40, 23, tzinfo=UTC)


def sample(*parts: str) -> bytes:
    return DATA.joinpath(*parts).read_bytes()


def sample_json(*parts: str) -> Any:
    return json.loads(sample(*parts))
