"""Wire shapes of the auth endpoints (contract §2.1). These are snake_case by contract."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from kijko_core.wire import reject_nul

Password = Annotated[str, Field(min_length=8, max_length=256)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
OpaqueToken = Annotated[str, Field(min_length=1, max_length=4096)]


class AuthModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _reject_nul(cls, value: Any) -> Any:
        # PostgreSQL cannot store NUL: a 422 on the field, not a 500 from the database.
        return reject_nul(value)


class SignupRequest(AuthModel):
    email: Annotated[EmailStr, Field(max_length=320)]
    password: Password
    first_name: Name
    last_name: Name


class LoginRequest(AuthModel):
    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class RefreshRequest(AuthModel):
    refresh_token: OpaqueToken


class SwitchOrganizationRequest(AuthModel):
    """``POST /auth/switch-organization``: snake_case like the rest of auth (``organizationId``
    is accepted too, as the issue writes it). The refresh token is required by the keycloak
    provider only (decision 0072); send it always."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    organization_id: Annotated[
        str, Field(min_length=1, max_length=100, validation_alias=AliasChoices("organization_id", "organizationId"))
    ]
    #: Empty or absent: not sent (never null on the wire).
    refresh_token: Annotated[str, Field(max_length=4096)] = ""


class TokenPair(AuthModel):
    # Always written, so required in the document although the providers leave it out.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserProfile(AuthModel):
    """``GET /auth/me``."""

    id: str
    email: str
    first_name: str
    last_name: str
    org_id: str
    roles: list[str]


class OAuthExchangeRequest(AuthModel):
    """Trade the one-time code handed to the browser after an OAuth login for tokens."""

    code: OpaqueToken


class JsonWebKeySet(AuthModel):
    """``/.well-known/jwks.json``: public keys only."""

    keys: list[dict[str, Any]]


class OpenIDConfiguration(AuthModel):
    """``/.well-known/openid-configuration`` of the local provider."""

    issuer: str
    jwks_uri: str
    token_endpoint: str
    id_token_signing_alg_values_supported: list[str]
    response_types_supported: list[str]
    subject_types_supported: list[str]
