"""in-toto Statements and SLSA provenance (v1 and v0.2): subjects, builder, source.

Only what the tenant's policy compares is read: the subject digests, the builder id, the build
type, and the source repository and ref. Sources are normalised to `https://host/owner/repo` and
a full ref (`refs/heads/main`), whether they come from a provenance predicate
(`git+https://github.com/o/r@refs/heads/main`) or from Fulcio certificate extensions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._codec import json_object, malformed

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"})
SLSA_V1 = "https://slsa.dev/provenance/v1"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
DIGEST_ALGS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True, slots=True)
class Source:
    repository: str
    ref: str | None = None
    digest: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (("repository", self.repository), ("ref", self.ref), ("digest", self.digest))
            if v
        }


@dataclass(frozen=True, slots=True)
class Provenance:
    predicate_type: str
    build_type: str | None
    builder_id: str | None
    sources: tuple[Source, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Statement:
    subjects: tuple[tuple[str, dict[str, str]], ...]  # (name, {alg: hex})
    predicate_type: str
    provenance: Provenance | None

    def digests(self) -> set[str]:
        return {f"{alg}:{value}" for _, d in self.subjects for alg, value in d.items()}


def normalise_repository(uri: str) -> str:
    uri = uri.strip()
    if uri.startswith("git+"):
        uri = uri[4:]
    if uri.endswith(".git"):
        uri = uri[:-4]
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    host, _, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}/{path.rstrip('/')}"


def _git_uri(uri: str, digest: Mapping[str, Any] | None = None) -> Source:
    """`git+https://github.com/o/r@refs/heads/main` -> Source."""
    repo, _, ref = uri.partition("@")
    commit = None
    if isinstance(digest, Mapping):
        value = digest.get("gitCommit") or digest.get("sha1")
        commit = value if isinstance(value, str) else None
    return Source(normalise_repository(repo), ref or None, commit)


def parse_statement(payload: bytes) -> Statement:
    st = json_object(payload, "in-toto statement")
    if st.get("_type") not in STATEMENT_TYPES:
        raise malformed("not an in-toto Statement")
    subjects_raw = st.get("subject")
    if not isinstance(subjects_raw, list) or not subjects_raw:
        raise malformed("the statement has no subjects")
    subjects = []
    for subject in subjects_raw:
        if not isinstance(subject, Mapping) or not isinstance(subject.get("digest"), Mapping):
            raise malformed("a statement subject needs a digest")
        digests = {}
        for alg, value in subject["digest"].items():
            if alg in DIGEST_ALGS:
                if not isinstance(value, str) or len(value) != DIGEST_ALGS[alg] or not _HEX.match(value):
                    raise malformed(f"subject {alg} digest is not lower-case hex of the right size")
                digests[alg] = value
        name = subject.get("name")
        subjects.append((name if isinstance(name, str) else "", digests))
    predicate_type = st.get("predicateType")
    if not isinstance(predicate_type, str):
        raise malformed("the statement has no predicateType")
    predicate = st.get("predicate")
    provenance = None
    if predicate_type in (SLSA_V1, SLSA_V02):
        if not isinstance(predicate, Mapping):
            raise malformed("the SLSA predicate is not an object")
        provenance = _v1(predicate) if predicate_type == SLSA_V1 else _v02(predicate)
    return Statement(tuple(subjects), predicate_type, provenance)


def _obj(parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = parent.get(name)
    return value if isinstance(value, Mapping) else {}


def _str(parent: Mapping[str, Any], name: str) -> str | None:
    value = parent.get(name)
    return value if isinstance(value, str) and value else None


def _v1(predicate: Mapping[str, Any]) -> Provenance:
    build = _obj(predicate, "buildDefinition")
    builder = _obj(_obj(predicate, "runDetails"), "builder")
    sources: list[Source] = []
    # GitHub Actions build types name the workflow's repository and ref explicitly.
    workflow = _obj(_obj(build, "externalParameters"), "workflow")
    repo = _str(workflow, "repository")
    if repo:
        sources.append(Source(normalise_repository(repo), _str(workflow, "ref")))
    deps = build.get("resolvedDependencies")
    if isinstance(deps, list):
        for dep in deps:
            if isinstance(dep, Mapping) and isinstance(dep.get("uri"), str) and dep["uri"].startswith("git+"):
                sources.append(_git_uri(dep["uri"], dep.get("digest")))
    return Provenance(SLSA_V1, _str(build, "buildType"), _str(builder, "id"), tuple(sources))


def _v02(predicate: Mapping[str, Any]) -> Provenance:
    builder = _obj(predicate, "builder")
    config = _obj(_obj(predicate, "invocation"), "configSource")
    sources = []
    uri = _str(config, "uri")
    if uri:
        sources.append(_git_uri(uri, config.get("digest")))
    return Provenance(SLSA_V02, _str(predicate, "buildType"), _str(builder, "id"), tuple(sources))
