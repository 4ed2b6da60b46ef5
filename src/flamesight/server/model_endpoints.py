"""The model endpoint a request or chat uses: the client's (checked) or the server's own.

A client may name an endpoint (`url`, `model`, `provider`) and credentials
(`{"apiKey": ...}` or `{"oauth": "token URL\\nclient id\\nclient secret"}`).
Its model URL and OAuth token URL pass `url_policy` before anything is
sent, and the model client checks every request it makes, redirects
included. The credentials live in the returned `Auth` only (memory, for
that request or chat session); nothing here writes or logs them. Without
a URL the server's own settings are used (``FLAMESIGHT_LLM_*`` environment
and config file, through `flamesight.llm`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pydantic import BaseModel, Field

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
