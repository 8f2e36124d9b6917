"""Resource URIs: one spelling per resource (RFC 3986 6.2.2), and refusals for the tricks."""

from __future__ import annotations

import pytest

from shared import uri
from shared.capabilities import Capability, CapabilityError, permits, within


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("HTTPS://API.Example.COM/a", "https://api.example.com/a"),  # scheme and host case
        ("https://api.example.com:443/a", "https://api.example.com/a"),  # default port
        ("http://api.example.com:80/a", "http://api.example.com/a"),
        ("https://api.example.com:/a", "https://api.example.com/a"),  # empty port
        ("https://api.example.com:8443/a", "https://api.example.com:8443/a"),  # other ports stay
        ("https://api.example.com", "https://api.example.com/"),  # empty path
        ("https://api.example.com/%7euser/%41", "https://api.example.com/~user/A"),  # unreserved decoded
        ("https://api.example.com/caf%c3%a9", "https://api.example.com/caf%C3%A9"),  # escapes upper-cased
        ("https://api.example.com/a%2a", "https://api.example.com/a%2A"),  # %2A is a literal star, not a wildcard
        ("https://api.example.com/a/./b/../c", "https://api.example.com/a/c"),  # dot segments
        ("https://api.example.com/a/%2E%2E/c", "https://api.example.com/c"),  # encoded dot segments
        ("https://API.example.com/a/*", "https://api.example.com/a/*"),
        ("https://[::1]:8080/a", "https://[::1]:8080/a"),
        ("urn:agentid:records:42", "urn:agentid:records:42"),
    ],
)
def test_normalises(given: str, normal: str) -> None:
    assert uri.parse(given).text == normal


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "empty"),
        ("/relative/path", "no scheme"),
        ("api.example.com/a", "no scheme"),
        ("https://api.example.com/*/a", "wildcard in the middle"),
        ("https://api.example.com/a*", "wildcard inside a segment"),
        ("https://api.example.com/a/**", "double star"),
        ("https://*.example.com/a", "wildcard host"),
        ("urn:agentid:*", "wildcard without a hierarchical path"),
        ("https://api.example.com/../admin", "dot segments above the root"),
        ("https://api.example.com/%2e%2e/admin", "encoded dot segments above the root"),
        ("https://api.example.com/public/..%2Fadmin", "percent-encoded slash"),
        ("https://api.example.com/a%2fb", "percent-encoded slash, lower case"),
        ("https://api.example.com/a%5Cb", "percent-encoded backslash"),
        ("https://api.example.com/a%00b", "percent-encoded NUL"),
        ("https://api.example.com/%C0%AE%C0%AE/admin", "overlong UTF-8 dots"),
        ("https://api.example.com/a%zz", "bad escape"),
        ("https://api.example.com/a%2", "truncated escape"),
        ("https://api.example.com/a\\b", "raw backslash"),
        ("https://api.example.com/a b", "space"),
        ("https://api.example.com/caf\u00e9", "non-ASCII"),
        ("https://good.example.com@evil.example.net/a", "userinfo"),
        ("https://api.example.com/a?x=1", "query"),
        ("https://api.example.com/a#frag", "fragment"),
        ("https://api.example.com/a//b", "empty segment"),
        ("https://api.example.com/a/", "trailing slash"),
        ("https://api.example.com./a", "trailing dot host"),
        ("https://api..example.com/a", "empty label"),
        ("https:///a", "empty host"),
        ("https://api.example.com:99999/a", "port out of range"),
        ("https://api.example.com:8o/a", "port not a number"),
        ("https://api.example.com/" + "a/" * 70 + "a", "too many segments"),
        ("https://api.example.com/" + "a" * 3000, "too long"),
    ],
)
def test_refuses(bad: str, why: str) -> None:
    with pytest.raises(uri.UriError):
        uri.parse(bad)
    with pytest.raises(CapabilityError) as info:
        Capability("records", bad, {"read"})
    assert info.value.reason == "invalid_resource", why


def test_uppercase_host_tricks_normalise_to_the_same_capability() -> None:
    a = Capability("records", "HTTPS://API.EXAMPLE.COM:443/records/*", {"read"})
    b = Capability("records", "https://api.example.com/records/*", {"read"})
    assert a == b and hash(a) == hash(b)
    assert within(a, b) and within(b, a)
    assert permits(b, "read", "https://Api.Example.Com/records/7")


def test_dot_segment_tricks_do_not_escape_a_pattern() -> None:
    public = Capability("records", "https://api.example.com/public/*", {"read"})
    assert permits(public, "read", "https://api.example.com/public/doc")
    assert not permits(public, "read", "https://api.example.com/public/../admin")
    assert not permits(public, "read", "https://api.example.com/public/%2e%2e/admin")
    assert not permits(public, "read", "https://api.example.com/public/./../admin/x")
    # A child pattern spelled with dots is compared after normalisation: `/public/../*` is `/*`.
    sneaky = Capability("records", "https://api.example.com/public/../*", {"read"})
    assert sneaky.resource == "https://api.example.com/*"
    assert not within(sneaky, public)


def test_encoded_slash_cannot_smuggle_a_path_into_one_segment() -> None:
    public = Capability("records", "https://api.example.com/public/*", {"read"})
    with pytest.raises(CapabilityError) as info:
        permits(public, "read", "https://api.example.com/public/..%2Fadmin")
    assert info.value.reason == "invalid_operation"


def test_pattern_matches_one_or_more_segments_below_its_prefix() -> None:
    p = uri.parse("https://api.example.com/a/*")
    assert p.matches(uri.parse("https://api.example.com/a/b"))
    assert p.matches(uri.parse("https://api.example.com/a/b/c"))
    assert not p.matches(uri.parse("https://api.example.com/a"))  # the prefix itself is not below it
    assert not p.matches(uri.parse("https://api.example.com/ab"))  # segment-wise, not string prefix
    assert not p.matches(uri.parse("https://api.example.com:8443/a/b"))  # other port, other origin
    assert not p.matches(uri.parse("http://api.example.com/a/b"))  # other scheme
    root = uri.parse("https://api.example.com/*")
    assert root.matches(uri.parse("https://api.example.com/x")) and not root.matches(uri.parse("https://api.example.com/"))


def test_matches_needs_a_concrete_uri() -> None:
    with pytest.raises(uri.UriError):
        uri.parse("https://api.example.com/a/*").matches(uri.parse("https://api.example.com/a/b/*"))
    with pytest.raises(uri.UriError):
        uri.parse("https://api.example.com/a/*", pattern_allowed=False)


def test_opaque_uris_compare_by_equality_only() -> None:
    a = uri.parse("urn:agentid:records:1")
    assert a.covers(uri.parse("urn:agentid:records:1"))
    assert not a.covers(uri.parse("urn:agentid:records:10"))
    assert not uri.parse("https://api.example.com/*").covers(a)
