"""The model endpoint a request or chat uses: the client's (checked) or the server's own.

A client may name an endpoint (`url`, `model`, `provider`) and credentials
(`{"apiKey": ...}` or `{"oauth": "token URL\\nclient id\\nclient secret"}`).
Its model URL and OAuth token URL pass `url_policy` before anything is
sent, and the model client checks every request it makes, redirects
included. The credentials live in the returned `Auth` only (memory, for
that request or chat session); nothing here writes or logs them. Without
a URL the server's own settings are used (``FLAMESIGHT_LLM_*`` environment
and config file, through `flamesight.llm`).

Fleet mode hands a client's endpoint to a worker sealed: `EndpointSealer`
encrypts the endpoint's fields (URL, model, provider, credentials) and the
URL policy they were checked against with Fernet (AES-128-CBC and
HMAC-SHA256), under a key derived by HKDF-SHA256 from the deployment's
shared secret (``FLAMESIGHT_SECRET_KEY``). The plaintext names the Redis
key it was sealed for, so a sealed endpoint moved to another key does not
open. The worker opens it in memory and resolves it like any client's.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass

import orjson
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, Field, ValidationError

from flamesight.llm import (
    ApiKey,
    Auth,
    EndpointOptions,
    Failure,
    LLMError,
    NoAuth,
    Secret,
    Settings,
    load_settings,
    parse_oauth_block,
    resolve_auth,
)
from flamesight.llm.auth import ClientCredentials
from flamesight.server.url_policy import UrlGuard, UrlPolicy

ENDPOINT_FIELDS = ("url", "model", "provider", "auth")
"""The fields of a request or message that name a model endpoint."""
SEALING_CONTEXT = b"flamesight fleet model endpoint v1"
"""HKDF's `info`: the Fernet key is for sealed endpoints only."""
UNSEALABLE = (
    "a worker could not open this model endpoint: the web process and the worker need the "
    "same FLAMESIGHT_SECRET_KEY"
)


class ClientAuth(BaseModel):
    """Credentials a client sends: an API key, or the three-line OAuth block."""

    apiKey: str | None = Field(default=None, description="An API key for the model endpoint.")
    oauth: str | None = Field(
        default=None, description="Three lines: token URL, client id, client secret."
    )


class ClientEndpoint(BaseModel):
    """The model endpoint a client asks for; all optional (the server's own by default)."""

    url: str | None = Field(default=None, description="Base URL or .../chat/completions URL.")
    model: str | None = None
    provider: str | None = Field(default=None, description="openai, azure or anthropic.")
    auth: ClientAuth | None = None


@dataclass
class ModelEndpoint:
    """Settings and credentials for one request or chat session; `guard` knows any refusal."""

    settings: Settings
    auth: Auth
    guard: UrlGuard | None = None


def resolve_endpoint(policy: UrlPolicy, chosen: ClientEndpoint) -> ModelEndpoint:
    """The endpoint `chosen` names, checked by `policy` (blocking: resolves host names).

    Raises `RefusedUrl` for a URL the policy refuses and `LLMError` for
    settings or credentials that cannot be used.
    """
    if not chosen.url:
        options = EndpointOptions(model=chosen.model, provider=chosen.provider)
        settings = load_settings(options)
        given = _client_auth(chosen.auth, policy)
        return ModelEndpoint(settings, given if given is not None else resolve_auth(settings))
    policy.check(chosen.url, "the model URL")
    settings = Settings.for_endpoint(chosen.url, chosen.provider, model=chosen.model)
    guard = policy.guard("the model endpoint")
    settings = dataclasses.replace(settings, url_check=guard)
    auth = _client_auth(chosen.auth, policy)
    return ModelEndpoint(settings, auth if auth is not None else NoAuth("none given"), guard)


def _client_auth(given: ClientAuth | None, policy: UrlPolicy) -> Auth | None:
    if given is None:
        return None
    if given.apiKey and given.oauth:
        raise LLMError(Failure.CONFIG, "give either auth.apiKey or auth.oauth, not both")
    if given.apiKey:
        return ApiKey(Secret(given.apiKey), "the request")
    if given.oauth:
        credentials: ClientCredentials = parse_oauth_block(
            given.oauth, source="the OAuth block of the request"
        )
        policy.check(credentials.token_url, "the OAuth token URL")
        return credentials
    return None


def endpoint_given(chosen: ClientEndpoint) -> bool:
    """Whether a client named anything of its own (url, model, provider or auth)."""
    return any(getattr(chosen, name) is not None for name in ENDPOINT_FIELDS)


class EndpointSealer:
    """Seals a client's endpoint for a worker, and opens it there (the shared secret's key)."""

    def __init__(self, secret: Secret) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SEALING_CONTEXT)
        key = derived.derive(secret.reveal().encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, chosen: ClientEndpoint, policy: UrlPolicy, where: str) -> bytes:
        """The endpoint and the policy it passed, encrypted for the Redis key `where`."""
        fields = chosen.model_dump(include=set(ENDPOINT_FIELDS))
        allowed = {"loopback": policy.allow_loopback, "private": policy.allow_private}
        return self._fernet.encrypt(
            orjson.dumps({"where": where, "endpoint": fields, "policy": allowed})
        )

    def open(self, token: bytes, where: str) -> tuple[ClientEndpoint, UrlPolicy]:
        """The endpoint sealed for `where` and the policy to check it with again.

        `LLMError` (a configuration failure) when the token was sealed with another
        key or for another place.
        """
        try:
            document = orjson.loads(self._fernet.decrypt(token))
            if document["where"] != where:
                raise ValueError(where)
            chosen = ClientEndpoint.model_validate(document["endpoint"])
            allowed = document["policy"]
        except (InvalidToken, ValueError, KeyError, TypeError, ValidationError):
            raise LLMError(Failure.CONFIG, UNSEALABLE) from None
        policy = UrlPolicy(allow_loopback=allowed["loopback"], allow_private=allowed["private"])
        return chosen, policy
