"""Attestation: offline appraisal of evidence (`check`), reference values, agent postures.

`agentid attestation check` runs the worker's own verifiers on a file, with no stack: exit
status 0 only when the evidence verifies (every check ran and passed, and, with `--nonce`, it is
bound to that nonce and key); 1 when it is refused, with the reason; 2 for a usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentid.cli.base import Add, group
from shared.config import Settings

KINDS = ("aws-nitro", "amd-sev-snp", "eat", "ear", "sigstore")


class UsageError(Exception):
    """A bad option or an unreadable input file: exit status 2."""


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _as_of(text: str | None) -> datetime:
    if text is None or text == "now":
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"--as-of {text!r} is not an ISO 8601 time") from exc
    if value.tzinfo is None:
        raise UsageError("--as-of needs a time zone (e.g. 2024-09-07T14:37:39Z)")
    return value.astimezone(UTC)


def _inputs(args: argparse.Namespace, settings: Settings) -> tuple[Any, Any, Any, bytes, datetime]:
    """(appraiser, reference, binding, evidence, as_of) from the options, or UsageError."""
    import msgspec

    from services.attestation.appraisal import Appraiser, parse_reference
    from services.attestation.verifiers import Binding, ReferenceValues, pack_evidence

    evidence = _read(args.evidence, "evidence")
    if args.vcek:
        if args.kind != "amd-sev-snp":
            raise UsageError("--vcek applies to amd-sev-snp evidence only")
        evidence = pack_evidence(evidence, _read(args.vcek, "VCEK"))
    reference = ReferenceValues()
    if args.reference:
        try:
            reference = parse_reference(_read(args.reference, "reference values"))
        except ValueError as exc:
            raise UsageError(f"reference values {args.reference}: {exc}") from exc
    if args.artifact:
        digest = "sha256:" + hashlib.sha256(_read(args.artifact, "artifact")).hexdigest()
        reference = msgspec.structs.replace(
            reference, artifact_digests={**(reference.artifact_digests or {}), "artifact": (digest,)})
    binding = None
    if (args.nonce is None) != (args.key_thumbprint is None):
        raise UsageError("--nonce and --key-thumbprint go together (the binding covers both)")
    if args.nonce is not None:
        try:
            binding = Binding(bytes.fromhex(args.nonce), args.key_thumbprint)
        except ValueError as exc:
            raise UsageError(f"binding: {exc}") from exc
    root_path = args.trusted_root or settings.attestation_sigstore_trusted_root
    try:
        appraiser = Appraiser(sigstore_trusted_root=_read(str(root_path), "trusted root") if root_path else None)
    except ValueError as exc:
        raise UsageError(f"Sigstore trusted root: {exc}") from exc
    return appraiser, reference, binding, evidence, _as_of(args.as_of)


def check(args: argparse.Namespace, settings: Settings) -> tuple[int, dict[str, Any]]:
    """Appraise one piece of evidence offline. Returns (exit status, report)."""
    from services.attestation.verifiers import AppraisalError

    appraiser, reference, binding, evidence, as_of = _inputs(args, settings)
    report: dict[str, Any] = {
        "kind": args.kind, "as_of": as_of.isoformat(), "verified": False, "bound": False,
        "reason": None, "message": None, "claims": None, "unchecked": [], "expires_at": None,
    }
    try:
        result = appraiser.appraise_unchecked(args.kind, evidence, reference=reference, binding=binding,
                                              as_of=as_of)
    except AppraisalError as exc:
        report.update(reason=exc.reason.value, message=exc.message)
        return 1, report
    report.update(bound=result.bound, claims=result.claims, unchecked=list(result.unchecked),
                  expires_at=result.expires_at.isoformat() if result.expires_at else None)
    try:
        result.require(bound=binding is not None)
    except AppraisalError as exc:
        report.update(reason=exc.reason.value, message=exc.message)
        return 1, report
    report["verified"] = True
    return 0, report


async def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    try:
        status, report = check(args, settings)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
        return status
    if report["verified"]:
        print(f"{args.kind}: VERIFIED as of {report['as_of']}")
    else:
        print(f"{args.kind}: REFUSED as of {report['as_of']}: {report['reason']}: {report['message']}")
    print(f"  bound to a challenge: {'yes' if report['bound'] else 'no'}")
    if report["expires_at"]:
        print(f"  acceptable until: {report['expires_at']}")
    if report["claims"] is not None:
        print("  claims:")
        print("\n".join("    " + line for line in json.dumps(report["claims"], indent=2).splitlines()))
    return status


async def _operator(settings: Settings, route: Any, tenant: str, body: Any) -> Any:
    from agentid.operator import operator_bus

    bus = await operator_bus(settings)
    try:
        return await bus.request(route, tenant, body)
    finally:
        await bus.drain()


async def cmd_reference_set(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import attestation as att
    from contracts import subjects as sub

    try:
        document = json.loads(_read(args.file, "reference values"))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {args.file} is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(document, dict):
        print(f"error: {args.file} must hold a JSON object", file=sys.stderr)
        return 2
    record = await _operator(settings, sub.SET_REFERENCE_VALUES, args.tenant, att.SetReferenceValues(
        document=document, expected_version=args.expected_version))
    if args.json:
        print(dump(record))
    else:
        print(f"reference values of {record.tenant}: version {record.version} ({record.digest})")
    return 0


async def cmd_reference_list(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import attestation as att
    from contracts import subjects as sub

    listing = await _operator(settings, sub.LIST_REFERENCE_VALUES, args.tenant,
                              att.ListReferenceValues(limit=args.limit))
    if args.json:
        print(dump(listing))
        return 0
    if listing.current is None:
        print(f"{args.tenant} has no reference values: every appraisal is refused (not_configured)")
        return 0
    for v in listing.versions:
        print(f"version {v.version}  {v.set_at:%Y-%m-%dT%H:%M:%SZ}  {v.digest}  by {v.set_by}")
    print(json.dumps(listing.current.document, indent=2))
    return 0


async def cmd_posture(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import attestation as att
    from contracts import subjects as sub

    posture = await _operator(settings, sub.ATTESTATION_POSTURE, args.tenant, att.GetPosture(agent_id=args.agent_id))
    if args.json:
        print(dump(posture))
        return 0
    for name in ("tee", "supply_chain"):
        entry = getattr(posture, name)
        held = f"{entry.kind} until {entry.expires_at:%Y-%m-%dT%H:%M:%SZ} ({entry.result_id})" if entry else "none"
        extra = f" covering {', '.join(entry.artifacts)}" if entry and entry.artifacts else ""
        print(f"{name:13} {held}{extra}")
    return 0


def register(cmds: Any, add: Add) -> None:
    attestation = group(cmds, "attestation", "appraise evidence, manage reference values, read postures")

    ck = add("check", cmd_check, "appraise evidence offline with the worker's verifiers", attestation)
    ck.add_argument("--kind", required=True, choices=KINDS)
    ck.add_argument("--evidence", required=True, metavar="FILE",
                    help="the evidence as produced (binary, base64 or hex; SNP: report, or report+VCEK)")
    ck.add_argument("--as-of", metavar="TIME", help="appraise as of this ISO 8601 time (default: now)")
    ck.add_argument("--nonce", metavar="HEX", help="the challenge nonce the evidence must be bound to")
    ck.add_argument("--key-thumbprint", metavar="JKT", help="the agent key's RFC 7638 thumbprint (with --nonce)")
    ck.add_argument("--reference", metavar="FILE", help="reference values (JSON); default: none configured")
    ck.add_argument("--trusted-root", metavar="FILE",
                    help="Sigstore trusted_root.json (default: AGENTID_ATTESTATION_SIGSTORE_TRUSTED_ROOT)")
    ck.add_argument("--artifact", metavar="FILE", help="sigstore: the artifact whose sha256 must be signed")
    ck.add_argument("--vcek", metavar="FILE", help="amd-sev-snp: the VCEK (DER or PEM) for a bare report")
    ck.add_argument("--json", action="store_true", help="print the result as JSON")

    reference = group(attestation, "reference", "a tenant's attestation reference values")
    rs = add("set", cmd_reference_set, "replace the tenant's reference values with a JSON document", reference)
    rs.add_argument("file", metavar="FILE")
    rs.add_argument("--tenant", required=True)
    rs.add_argument("--expected-version", type=int, help="refuse unless this is the current version (0: none)")
    rs.add_argument("--json", action="store_true")
    rl = add("list", cmd_reference_list, "the current reference values and their versions", reference)
    rl.add_argument("--tenant", required=True)
    rl.add_argument("--limit", type=int, default=20)
    rl.add_argument("--json", action="store_true")

    ps = add("posture", cmd_posture, "an agent's attested postures and their expiry", attestation)
    ps.add_argument("agent_id")
    ps.add_argument("--tenant", required=True)
    ps.add_argument("--json", action="store_true")
