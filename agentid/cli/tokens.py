"""Tokens and policy: the tenant's Cedar policy, its token rules, keys, introspection, revocation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import msgspec

from agentid.cli.base import Add, group
from agentid.cli.identity import _operator_request, _tenant
from shared.config import Settings


async def cmd_policy_set(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import subjects as sub
    from contracts import tokens as tok

    schema = Path(args.schema).read_text() if args.schema else None
    record = await _operator_request(settings, sub.POLICY_SET, _tenant(args),
                                     tok.SetPolicy(policies=Path(args.file).read_text(), schema=schema))
    print(f"policy version {record.version} ({', '.join(record.policy_ids)}) sha256 {record.sha256}")
    return 0


async def cmd_policy_get(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import subjects as sub
    from contracts import tokens as tok

    doc = await _operator_request(settings, sub.POLICY_GET, _tenant(args), tok.GetPolicy())
    print(f"// version {doc.version}\n{doc.policies}")
    return 0


async def cmd_policy_test(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when the request would be allowed, 1 when denied."""
    from contracts import subjects as sub
    from contracts import tokens as tok

    request = msgspec.json.decode(Path(args.request).read_bytes(), type=tok.TestPolicy)
    decision = await _operator_request(settings, sub.POLICY_TEST, _tenant(args), request)
    print(json.dumps(msgspec.to_builtins(decision), indent=2))
    return 0 if decision.decision == "allow" else 1


async def cmd_config_set(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import subjects as sub
    from contracts import tokens as tok

    config = msgspec.json.decode(Path(args.file).read_bytes(), type=tok.TokenConfig)
    record = await _operator_request(settings, sub.TOKEN_CONFIG_SET, _tenant(args), tok.SetTokenConfig(config=config))
    print(f"token configuration version {record.version}")
    return 0


async def cmd_config_get(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import subjects as sub
    from contracts import tokens as tok

    print(dump(await _operator_request(settings, sub.TOKEN_CONFIG_GET, _tenant(args), tok.GetTokenConfig())))
    return 0


async def cmd_jwks(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import subjects as sub
    from contracts import tokens as tok

    jwks = await _operator_request(settings, sub.TOKEN_JWKS, _tenant(args), tok.GetJwks())
    print(json.dumps(msgspec.to_builtins(jwks), indent=2))
    return 0


async def cmd_token_introspect(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import subjects as sub
    from contracts import tokens as tok

    result = await _operator_request(settings, sub.TOKEN_INTROSPECT, _tenant(args), tok.Introspect(token=args.token))
    print(json.dumps({"active": result.active, **(result.claims or {})}, indent=2))
    return 0 if result.active else 1


async def cmd_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import subjects as sub
    from contracts import tokens as tok

    await _operator_request(settings, sub.TOKEN_REVOKE, _tenant(args), tok.RevokeToken(jti=args.jti, reason=args.reason))
    print(f"token {args.jti} revoked")
    return 0


async def cmd_token_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import subjects as sub
    from contracts import tokens as tok

    jwks = await _operator_request(settings, sub.TOKEN_ROTATE_KEY, _tenant(args), tok.RotateSigningKey())
    print(json.dumps(msgspec.to_builtins(jwks), indent=2))
    return 0


async def cmd_idp_add(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import subjects as sub
    from contracts import tokens as tok

    grants = json.loads(Path(args.grants).read_text()) if args.grants else {}
    idp = msgspec.convert({"issuer": args.issuer, "discovery_url": args.discovery, "jwks_uri": args.jwks,
                           "audiences": args.audience, "groups_claim": args.groups_claim,
                           "scope_grants": grants.get("scope_grants", {}), "group_grants": grants.get("group_grants", {})},
                          tok.IdentityProvider)
    listed = await _operator_request(settings, sub.IDP_ADD, _tenant(args), tok.AddIdp(idp=idp))
    print(f"trusted: {', '.join(i.issuer for i in listed.idps)}")
    return 0


async def cmd_idp_list(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import subjects as sub
    from contracts import tokens as tok

    listed = await _operator_request(settings, sub.IDP_LIST, _tenant(args), tok.ListIdps())
    print(json.dumps(msgspec.to_builtins(listed.idps), indent=2))
    return 0


async def cmd_idp_remove(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import subjects as sub
    from contracts import tokens as tok

    await _operator_request(settings, sub.IDP_REMOVE, _tenant(args), tok.RemoveIdp(issuer=args.issuer))
    print(f"no longer trusted: {args.issuer}")
    return 0


def register(cmds: Any, add: Add) -> None:
    policy = group(cmds, "policy", "the tenant's Cedar policy (default deny)")
    ps = add("set", cmd_policy_set, "upload a Cedar policy set (validated first)", policy)
    ps.add_argument("file")
    ps.add_argument("--schema", help="Cedar schema to validate the policies against")
    ps.add_argument("--tenant")
    pg = add("get", cmd_policy_get, "print the current policy set", policy)
    pg.add_argument("--tenant")
    pt = add("test", cmd_policy_test, "evaluate REQUEST.json: the decision and the policies that decided", policy)
    pt.add_argument("request", metavar="REQUEST.json")
    pt.add_argument("--tenant")

    token = group(cmds, "token", "access tokens and the tenant's token rules")
    cs = add("config-set", cmd_config_set, "upload token rules: detail types (JSON Schemas), audiences, limits", token)
    cs.add_argument("file")
    cs.add_argument("--tenant")
    cg = add("config-get", cmd_config_get, "print the token rules", token)
    cg.add_argument("--tenant")
    ti = add("introspect", cmd_token_introspect, "RFC 7662 introspection of a token", token)
    ti.add_argument("token")
    ti.add_argument("--tenant")
    tr = add("revoke", cmd_token_revoke, "revoke a token by its jti", token)
    tr.add_argument("jti")
    tr.add_argument("--tenant")
    tr.add_argument("--reason", default="revoked by operator")
    tk = add("rotate-key", cmd_token_rotate, "rotate the tenant's token signing key", token)
    tk.add_argument("--tenant")

    idp = group(cmds, "idp", "identity providers trusted for on-behalf-of exchanges")
    ia = add("add", cmd_idp_add, "trust an OIDC provider (keys fetched from its discovery or JWKS URL)", idp)
    ia.add_argument("--issuer", required=True)
    ia.add_argument("--discovery", help="discovery document URL (its issuer must match)")
    ia.add_argument("--jwks", help="JWKS URL, when there is no discovery document")
    ia.add_argument("--audience", action="append", required=True, help="accepted aud of user tokens (repeatable)")
    ia.add_argument("--grants", help='JSON file: {"scope_grants": {scope: [details]}, "group_grants": {group: [details]}}')
    ia.add_argument("--groups-claim", default="groups")
    ia.add_argument("--tenant")
    il = add("list", cmd_idp_list, "list trusted identity providers", idp)
    il.add_argument("--tenant")
    ir = add("remove", cmd_idp_remove, "stop trusting an identity provider", idp)
    ir.add_argument("issuer")
    ir.add_argument("--tenant")

    jw = add("jwks", cmd_jwks, "print the tenant's token signing keys (JWKS)")
    jw.add_argument("--tenant")
