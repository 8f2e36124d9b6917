"""A tenant's token rules: registered detail types (each a JSON Schema), allowed audiences,
lifetime and delegation limits, tiers that must be attested."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from contracts.tokens import TokenConfig
from shared import capabilities
from shared.errors import InvalidAuthorizationDetails, InvalidRequest, InvalidTarget


class Rules:
    """A validated, compiled TokenConfig (validators built once, not per request)."""

    def __init__(self, config: TokenConfig, version: int = 0) -> None:
        self.config = config
        self.version = version
        try:
            self._validators = {name: Draft202012Validator(schema) for name, schema in config.detail_types.items()}
            for name, schema in config.detail_types.items():
                Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise InvalidRequest(f"detail type schema is not a valid JSON Schema: {exc.message}") from exc

    def details(self, raw: Sequence[dict[str, Any]]) -> list[capabilities.Capability]:
        """Each detail must be of a registered type and satisfy its schema, then parse as a capability."""
        for detail in raw:
            validator = self._validators.get(detail.get("type"))  # type: ignore[arg-type]
            if validator is None:
                raise InvalidAuthorizationDetails(f"authorization detail type {detail.get('type')!r} is not registered")
            error = next(iter(validator.iter_errors(detail)), None)
            if error is not None:
                raise InvalidAuthorizationDetails(f"authorization detail does not fit its type: {error.message}")
        try:
            return list(capabilities.parse_authorization_details(list(raw)))
        except capabilities.CapabilityError as exc:
            raise InvalidAuthorizationDetails(f"malformed authorization details: {exc}") from exc

    def audience(self, audience: str) -> None:
        for allowed in self.config.audiences:
            if allowed == audience or (allowed.endswith("/*") and audience.startswith(allowed[:-1])
                                       and len(audience) > len(allowed) - 1):
                return
        raise InvalidTarget("audience is not allowed for this tenant")

    def lifetime(self, requested: int | None) -> int:
        """Capped, never refused: a token lives the shorter of what was asked and the tenant's maximum."""
        return min(requested or self.config.max_lifetime_s, self.config.max_lifetime_s)
