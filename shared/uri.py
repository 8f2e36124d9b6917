"""Resource URIs and patterns: one spelling per resource, so that comparing strings compares resources.

A resource is an absolute URI, normalised per RFC 3986 section 6.2.2 (lower-case scheme and host,
upper-case percent-escapes, unreserved characters decoded, dot segments removed) and 6.2.3 (default
port dropped, empty path of an authority URI written `/`). A *pattern* is such a URI whose last path
segment is `*`: it matches every URI with the same scheme and authority whose path continues the
pattern's prefix by one or more segments. There is no other wildcard form.

Some inputs are refused rather than normalised, because back ends disagree about them and one URI
could then name two resources: userinfo, query and fragment; percent-encoded `/`, `\\` and control
characters; empty path segments (`//`, trailing `/`); dot segments that climb above the root;
non-ASCII text (percent-encode it as UTF-8) and escapes that are not valid UTF-8; hosts that are
not plain DNS names or IP literals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote_to_bytes

__all__ = [
    "MAX_SEGMENTS",
    "MAX_URI_LENGTH",
    "ResourceUri",
    "UriError",
    "parse",
]

MAX_URI_LENGTH = 2048
MAX_SEGMENTS = 64
WILDCARD = "*"

# Always `fullmatch`: with `match`, a `$` anchor would also accept a trailing "\n".
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_HOST = re.compile(r"[a-z0-9_~-]+(\.[a-z0-9_~-]+)*")  # DNS-style labels, no empty label
_IPV6 = re.compile(r"\[[0-9a-f:.]+\]")
_PORT = re.compile(r"[0-9]{0,5}")
# pchar = unreserved / pct-encoded / sub-delims / ":" / "@"  (RFC 3986 section 3.3)
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_PCT = re.compile(r"%(.?.?)")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
# Escapes that decode to a separator or a control character: a back end that decodes before routing
# would see a different path than we compared, so these never appear in a resource.
_FORBIDDEN_ESCAPES = frozenset({"2F", "5C", "7F"} | {f"{i:02X}" for i in range(0x20)})


class UriError(ValueError):
    """A URI that is malformed, or that this module refuses to normalise."""


@dataclass(frozen=True, slots=True)
class ResourceUri:
    """A normalised resource URI or pattern.

    `origin` is `scheme://authority` (or `scheme:` for URIs without an authority), `segments` the
    non-empty path segments (without the trailing `*` of a pattern), `opaque` the path of a URI that
    has no hierarchical path (`urn:...`), compared only for equality.
    """

    text: str
    origin: str
    segments: tuple[str, ...]
    is_pattern: bool
    opaque: str | None

    def matches(self, concrete: ResourceUri) -> bool:
        """Whether this URI or pattern names the concrete resource `concrete`."""
        if concrete.is_pattern:
            raise UriError("a concrete resource is needed here, not a pattern")
        return self.covers(concrete)

    def covers(self, other: ResourceUri) -> bool:
        """Whether every concrete URI that `other` names is named by `self` too.

        A concrete URI covers only itself. A pattern with prefix P covers a concrete URI whose
        segments strictly extend P, and a pattern whose prefix extends P (or equals it): that
        pattern's matches are longer than its prefix, so longer than P, and start with P.
        """
        if self.origin != other.origin or self.opaque != other.opaque:
            return False
        if not self.is_pattern:
            return not other.is_pattern and self.segments == other.segments
        n = len(self.segments)
        if other.segments[:n] != self.segments:
            return False
        return len(other.segments) >= n if other.is_pattern else len(other.segments) > n


def parse(uri: str, *, pattern_allowed: bool = True) -> ResourceUri:
    """Normalise `uri`; raise `UriError` when it is malformed or refused (see the module docstring)."""
    if not isinstance(uri, str):
        raise UriError("a URI is a string")
    parsed = _parse(uri)
    if parsed.is_pattern and not pattern_allowed:
        raise UriError("a concrete resource is needed here, not a pattern")
    return parsed


# Resources repeat (every ability of a UCAN, every check of a resource server), and the result is
# immutable, so a bounded cache is safe. Refusals are not cached: they raise.
@lru_cache(maxsize=4096)
def _parse(uri: str) -> ResourceUri:
    if not uri or len(uri) > MAX_URI_LENGTH:
        raise UriError(f"a URI has 1 to {MAX_URI_LENGTH} characters")
    if not uri.isascii() or any(c <= " " or c == "\x7f" for c in uri):
        raise UriError("a URI is printable ASCII without spaces (percent-encode the rest)")
    if "#" in uri:
        raise UriError("a resource has no fragment")
    if "?" in uri:
        raise UriError("a resource has no query: constrain request parameters with caveats")
    scheme, sep, rest = uri.partition(":")
    if not sep or not _SCHEME.fullmatch(scheme):
        raise UriError("a resource is an absolute URI with a scheme")
    scheme = scheme.lower()
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        origin = f"{scheme}://{_authority(scheme, authority)}"
        path = slash + path
    else:
        origin, path = f"{scheme}:", rest
    if not _PATH_CHARS.fullmatch(path):
        raise UriError("the path has characters that must be percent-encoded")
    path = _normalise_escapes(path)
    if origin.endswith(":") and not path.startswith("/"):
        return _opaque(origin, path)  # `urn:...`, `mailto:...`: no hierarchy, equality only
    segments, is_pattern = _segments(path)
    text = origin + "/" + "/".join(segments + ((WILDCARD,) if is_pattern else ()))
    return ResourceUri(text=text, origin=origin, segments=segments, is_pattern=is_pattern, opaque=None)


def _authority(scheme: str, authority: str) -> str:
    if "@" in authority:
        raise UriError("a resource has no userinfo")  # `https://good.example@evil.example/`
    if "%" in authority:
        raise UriError("a host is not percent-encoded")
    port: str | None
    if authority.startswith("["):
        host, bracket, rest = authority.partition("]")
        host = (host + bracket).lower()
        if not _IPV6.fullmatch(host) or (rest and not rest.startswith(":")):
            raise UriError("malformed IP literal")
        port = rest[1:] if rest else None
    else:
        host, colon, rest = authority.partition(":")
        host = host.lower()
        if not _HOST.fullmatch(host):
            raise UriError("a host is a DNS name or IP literal: letters, digits, '-', '.', no empty label")
        port = rest if colon else None
    if port is not None:
        if not _PORT.fullmatch(port) or (port and int(port) > 65535):
            raise UriError("a port is a number up to 65535")
        # RFC 3986 6.2.3: an empty port and the scheme's default port are the same as no port.
        port = str(int(port)) if port else None
        if port == _DEFAULT_PORTS.get(scheme):
            port = None
    return host if port is None else f"{host}:{port}"


def _normalise_escapes(path: str) -> str:
    """Upper-case escapes and decode those of unreserved characters (RFC 3986 6.2.2.1, 6.2.2.2)."""

    def fix(match: re.Match[str]) -> str:
        hexpair = match.group(1)
        if len(hexpair) != 2 or not all(c in "0123456789abcdefABCDEF" for c in hexpair):
            raise UriError("a '%' starts a two-digit hex escape")
        hexpair = hexpair.upper()
        if hexpair in _FORBIDDEN_ESCAPES:
            raise UriError(f"the escape %{hexpair} is refused in a resource")
        char = chr(int(hexpair, 16))
        return char if char in _UNRESERVED else "%" + hexpair

    path = _PCT.sub(fix, path)
    try:
        # Strict UTF-8 refuses overlong forms such as %C0%AE (an old spelling of '.') and lone
        # surrogates, which some decoders would turn into separators or dots.
        unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UriError("percent-escapes must encode valid UTF-8") from exc
    return path


def _segments(path: str) -> tuple[tuple[str, ...], bool]:
    """Remove dot segments (RFC 3986 5.2.4) and split; a `*` may only be the last segment."""
    raw = path.split("/")[1:] if path else []
    if len(raw) > MAX_SEGMENTS:
        raise UriError(f"a path has at most {MAX_SEGMENTS} segments")
    out: list[str] = []
    for seg in raw:
        if seg == ".":
            continue
        if seg == "..":
            if not out:
                # Climbing above the root has no meaning for a resource; RFC 3986 would drop it
                # silently, which hides a path-traversal attempt.
                raise UriError("'..' climbs above the root")
            out.pop()
            continue
        if seg == "":
            if path == "/":
                continue  # the root path
            raise UriError("empty path segments ('//', a trailing '/') are refused")
        out.append(seg)
    if any(WILDCARD in seg for seg in out[:-1]) or (out and WILDCARD in out[-1] and out[-1] != WILDCARD):
        raise UriError("'*' is only allowed as the whole last path segment")
    if out and out[-1] == WILDCARD:
        return tuple(out[:-1]), True
    return tuple(out), False


def _opaque(origin: str, path: str) -> ResourceUri:
    if not path:
        raise UriError("a URI without an authority needs a path")
    if WILDCARD in path:
        raise UriError("patterns need a hierarchical path ('scheme://host/prefix/*')")
    return ResourceUri(text=origin + path, origin=origin, segments=(), is_pattern=False, opaque=path)
