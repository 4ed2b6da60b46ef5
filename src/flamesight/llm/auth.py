"""Credentials for the model endpoint: an API key, or an OAuth 2.0 client-credentials grant.

Credentials come from environment variables, a file the user names, the
three-line block users paste (token URL, client id, client secret), a
prompt, or ``--api-key VALUE`` (which works but warns). They are held in
`Secret` wrappers and in memory only.

An OAuth access token is fetched with authlib's httpx client: the form
``grant_type=client_credentials&client_id=...&client_secret=...`` posted to
the token URL (``client_secret_post``), or HTTP Basic client auth
(``client_secret_basic``) when configured or when the server answers the
form with ``invalid_client``. The token is kept until ``expires_in`` minus a
margin (60 s, or a tenth of the lifetime for short-lived tokens) and then
fetched again.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from flamesight.llm.errors import Failure, LLMError
from flamesight.llm.redaction import Secret, basic_auth_value, scrub
from flamesight.llm.settings import EndpointOptions, Settings, display_url

log = logging.getLogger(__name__)

ENV_API_KEY = "FLAMESIGHT_LLM_API_KEY"
ENV_OAUTH = "FLAMESIGHT_LLM_OAUTH"
ENV_OAUTH_FILE = "FLAMESIGHT_LLM_OAUTH_FILE"
# The variable each provider's own tools use, read when FLAMESIGHT_LLM_API_KEY is not set.
PROVIDER_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "azure": "AZURE_OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
}
TOKEN_MARGIN_SECONDS = 60.0
TOKEN_TIMEOUT_SECONDS = 30.0
ISSUED_TOKENS_KEPT = 4
API_KEY_FLAG_WARNING = (
    "--api-key puts the key in your shell history and the process list; prefer "
    f"{ENV_API_KEY}, --api-key-env VAR or --oauth-file FILE"
)

Clock = Callable[[], float]


@dataclass(frozen=True)
class ApiKey:
    """An API key, which each provider's SDK sends as that provider expects.

    (A Bearer token for OpenAI-compatible endpoints and Anthropic, the api-key
    header for Azure OpenAI.)
    """

    key: Secret
    source: str

    def secrets(self) -> list[Secret]:
        """The values to scrub from any text shown to people."""
        return [self.key]


@dataclass(frozen=True)
class NoAuth:
    """No credentials: a local server (Ollama, llama.cpp, vLLM) that needs none."""

    source: str = "no credentials"

    def secrets(self) -> list[Secret]:
        """Nothing to scrub."""
        return []


class ClientCredentials:
    """OAuth 2.0 client credentials: fetches, caches and refreshes a Bearer token.

    `clock` (seconds, monotonic) decides when a cached token has expired; tests
    pass their own. The token lives in this object only.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: Secret,
        *,
        client_auth: str | None = None,
        scope: str | None = None,
        source: str = "OAuth client credentials",
        timeout: float = TOKEN_TIMEOUT_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        _check_token_url(token_url, "the OAuth token URL")
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self.source = source
        self.timeout = timeout
        self._secret = client_secret
        self._basic_value = Secret(basic_auth_value(client_id, client_secret))
        self._clock = clock
        self._method = client_auth or "client_secret_post"
        self._method_fixed = client_auth is not None
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._expires_at: float | None = None
        # The last tokens issued stay alive, so `scrub` keeps removing them from text.
        self._issued: deque[Secret] = deque(maxlen=ISSUED_TOKENS_KEPT)

    def __repr__(self) -> str:
        return (
            f"ClientCredentials(token_url={display_url(self.token_url)!r}, "
            f"client_id={self.client_id!r}, client_secret=***)"
        )

    @property
    def client_auth(self) -> str:
        """The client authentication method in use (it may have switched to Basic)."""
        return self._method

    def access_token(self) -> Secret:
        """A valid access token: the cached one, or a new one when it expired."""
        with self._lock:
            if self._token is not None and (
                self._expires_at is None or self._clock() < self._expires_at
            ):
                return self._token
            requested_at = self._clock()
            answer = self._request_token()
            token = answer.get("access_token")
            if not isinstance(token, str) or not token:
                keys = ", ".join(sorted(str(k) for k in answer)) or "none"
                raise LLMError(
                    Failure.TOKEN_ENDPOINT,
                    f"the token endpoint {display_url(self.token_url)} answered without an "
                    f"access_token (fields in its answer: {keys})",
                )
            self._token = Secret(token)
            self._issued.append(self._token)
            self._expires_at = _expiry(requested_at, answer.get("expires_in"))
            log.info("fetched an OAuth access token from %s", display_url(self.token_url))
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token, so the next request fetches a new one."""
        with self._lock:
            self._token = None
            self._expires_at = None

    def secrets(self) -> list[Secret]:
        """The values to scrub from any text shown to people."""
        return [self._secret, self._basic_value, *self._issued]

    def _request_token(self) -> dict[str, Any]:
        try:
            return self._post(self._method)
        except OAuthError as error:
            can_switch = self._method == "client_secret_post" and not self._method_fixed
            if error.error != "invalid_client" or not can_switch:
                raise self._oauth_error(error) from None
        log.info("the token endpoint refused client_secret_post; trying HTTP Basic client auth")
        try:
            answer = self._post("client_secret_basic")
        except OAuthError as error:
            raise self._oauth_error(error) from None
        self._method = "client_secret_basic"
        return answer

    def _post(self, method: str) -> dict[str, Any]:
        where = display_url(self.token_url)
        responses: list[httpx2.Response] = []

        def remember(response: httpx2.Response) -> httpx2.Response:
            responses.append(response)
            return response

        try:
            with OAuth2Client(
                client_id=self.client_id,
                client_secret=self._secret.reveal(),
                token_endpoint_auth_method=method,
                scope=self.scope,
                timeout=self.timeout,
            ) as client:
                client.register_compliance_hook("access_token_response", remember)
                client.fetch_token(self.token_url, grant_type="client_credentials")
                response = responses[-1]
                if response.status_code >= 400:
                    response.raise_for_status()
                # The server's own fields (authlib adds expires_at to its copy).
                return dict(response.json())
        except OAuthError:
            raise
        except httpx2.TimeoutException:
            raise LLMError(
                Failure.TOKEN_ENDPOINT,
                f"the token endpoint {where} did not answer within {self.timeout:g} s",
            ) from None
        except httpx2.HTTPStatusError as error:
            response = error.response
            raise LLMError(
                Failure.TOKEN_ENDPOINT,
                f"the token endpoint {where} answered HTTP {response.status_code}"
                f"{_body_hint(response, self.secrets())}",
                response.status_code,
            ) from None
        except (httpx2.TransportError, OSError) as error:
            raise LLMError(
                Failure.TOKEN_ENDPOINT,
                f"cannot reach the token endpoint {where}: {connection_problem(error)}",
            ) from None
        except ValueError:
            code = responses[-1].status_code if responses else None
            raise LLMError(
                Failure.TOKEN_ENDPOINT,
                f"the token endpoint {where} answered HTTP {code} with something that is not "
                "a JSON object; is the token URL right?",
                code,
            ) from None

    def _oauth_error(self, error: OAuthError) -> LLMError:
        description = f": {error.description}" if error.description else ""
        hint = ""
        if error.error == "invalid_client":
            hint = " (check the client id and client secret)"
        elif error.error in ("invalid_scope", "unauthorized_client"):
            hint = " (check the scope and that the client may use client credentials)"
        message = (
            f"the token endpoint {display_url(self.token_url)} refused the request: "
            f"{error.error}{description}{hint}"
        )
        return LLMError(Failure.TOKEN_ENDPOINT, scrub(message, self.secrets()))


Auth = ApiKey | ClientCredentials | NoAuth


def _expiry(requested_at: float, expires_in: object) -> float | None:
    """When a token given `expires_in` seconds of life should be fetched again (None: never)."""
    try:
        lifetime = float(expires_in)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if lifetime <= 0:
        return requested_at
    return requested_at + lifetime - min(TOKEN_MARGIN_SECONDS, lifetime / 10)


def _body_hint(response: httpx2.Response, secrets: list[Secret]) -> str:
    try:
        data = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        return f" ({kind}, not a JSON error)"
    if isinstance(data, dict) and data.get("error"):
        description = f": {data['error_description']}" if data.get("error_description") else ""
        return scrub(f": {data['error']}{description}", secrets)
    return ""


def connection_problem(error: BaseException) -> str:
    """What stopped a connection, in words: DNS, refused, TLS, or the error's own text."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    text = " ".join(str(e) for e in chain)
    if any(isinstance(e, socket.gaierror) for e in chain) or re.search(
        r"name or service not known|nodename nor servname|getaddrinfo|name resolution|"
        r"no address associated",
        text,
        re.IGNORECASE,
    ):
        return "the host name could not be resolved (DNS); check the URL"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or re.search(
        r"connection refused|errno 111|actively refused", text, re.IGNORECASE
    ):
        return "connection refused; is the server running on that host and port?"
    if any(isinstance(e, ssl.SSLError) for e in chain) or re.search(
        r"ssl|tls|certificate", text, re.IGNORECASE
    ):
        detail = next((str(e) for e in chain if isinstance(e, ssl.SSLError)), "")
        reason = f" ({detail})" if detail else ""
        return (
            f"the TLS handshake failed{reason}; check the certificate, or use http:// "
            "for a server without TLS"
        )
    last = str(chain[-1]) or type(chain[-1]).__name__
    return f"the connection failed ({last})"


def _check_token_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LLMError(
            Failure.CONFIG, f"{what} must start with https:// (or http://) and name a host"
        )
    if parts.username or parts.password:
        raise LLMError(
            Failure.CONFIG, f"{what} holds a user name or password; credentials do not go in URLs"
        )


_LABEL = re.compile(r"^(token[_ ]?url|client[_ ]?id|client[_ ]?secret)\s*[:=]\s*", re.IGNORECASE)


def parse_oauth_block(
    text: str,
    *,
    source: str = "the OAuth block",
    client_auth: str | None = None,
    scope: str | None = None,
    clock: Clock = time.monotonic,
) -> ClientCredentials:
    """Client credentials from the three-line block: token URL, client id, client secret.

    Blank lines and surrounding spaces are ignored; a line may carry its
    label (``CLIENT_ID=...``). Anything but exactly three lines, or a first
    line that is not an http(s) URL, is an error that quotes none of the lines.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 3:
        raise LLMError(
            Failure.CONFIG,
            f"{source} must be exactly three non-empty lines (the token URL, the client id, "
            f"the client secret), not {len(lines)}",
        )
    token_url, client_id, secret = (_LABEL.sub("", line, count=1) for line in lines)
    parts = urlsplit(token_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in token_url:
        raise LLMError(
            Failure.CONFIG,
            f"line 1 of {source} must be the token URL, starting with https:// (or http://)",
        )
    if not client_id or not secret:
        raise LLMError(Failure.CONFIG, f"{source} has an empty client id or client secret")
    return ClientCredentials(
        token_url,
        client_id,
        Secret(secret),
        client_auth=client_auth,
        scope=scope,
        source=source,
        clock=clock,
    )


def resolve_auth(
    settings: Settings,
    options: EndpointOptions | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    ask_secret: Callable[[str], str] | None = None,
    warn: Callable[[str], None] | None = None,
    clock: Clock = time.monotonic,
) -> Auth:
    """The credentials to use, from the first source that has them.

    Order: ``--no-auth``; ``--api-key`` (warns); ``--api-key-env``;
    ``--oauth-file``; ``--oauth-token-url``/``--client-id``/``--client-secret-env``
    (two of these at once is an error); ``FLAMESIGHT_LLM_OAUTH`` (the block)
    or ``FLAMESIGHT_LLM_OAUTH_FILE``; what the config file names; then
    ``FLAMESIGHT_LLM_API_KEY`` and the provider's own variable
    (``OPENAI_API_KEY``, ...). A loopback endpoint needs none; otherwise
    `ask_secret` (e.g. getpass) is asked for a key, and without it the
    missing key is an error that says where keys go.
    """
    options = options or EndpointOptions()
    environ = os.environ if environ is None else environ
    warn = warn or log.warning
    sources = settings.auth
    oauth_kwargs: dict[str, Any] = {
        "client_auth": sources.oauth_client_auth,
        "scope": sources.oauth_scope,
        "clock": clock,
    }

    if options.no_auth:
        return NoAuth("--no-auth")
    flag_oauth = any((options.oauth_token_url, options.client_id, options.client_secret_env))
    chosen = [
        name
        for name, given in (
            ("--api-key", options.api_key is not None),
            ("--api-key-env", options.api_key_env is not None),
            ("--oauth-file", options.oauth_file is not None),
            ("--oauth-token-url/--client-id/--client-secret-env", flag_oauth),
        )
        if given
    ]
    if len(chosen) > 1:
        raise LLMError(
            Failure.CONFIG, f"choose one way to authenticate, not {' and '.join(chosen)}"
        )
    if options.api_key is not None:
        warn(API_KEY_FLAG_WARNING)
        if not options.api_key:
            raise LLMError(Failure.CONFIG, "--api-key is empty")
        return ApiKey(Secret(options.api_key), "--api-key")
    if options.api_key_env is not None:
        return _key_from_env(environ, options.api_key_env, f"--api-key-env {options.api_key_env}")
    if options.oauth_file is not None:
        return _oauth_from_file(Path(options.oauth_file), oauth_kwargs)
    if flag_oauth:
        return _oauth_from_parts(
            options.oauth_token_url, options.client_id, options.client_secret_env, environ,
            "--oauth-token-url/--client-id/--client-secret-env", oauth_kwargs,
        )  # fmt: skip
    if environ.get(ENV_OAUTH):
        return parse_oauth_block(environ[ENV_OAUTH], source=ENV_OAUTH, **oauth_kwargs)
    if environ.get(ENV_OAUTH_FILE):
        return _oauth_from_file(Path(environ[ENV_OAUTH_FILE]), oauth_kwargs)
    if sources.api_key_env:
        return _key_from_env(environ, sources.api_key_env, f"api_key_env {sources.api_key_env}")
    if sources.oauth_file:
        return _oauth_from_file(sources.oauth_file, oauth_kwargs)
    if sources.oauth_token_url or sources.client_id or sources.client_secret_env:
        return _oauth_from_parts(
            sources.oauth_token_url, sources.client_id, sources.client_secret_env, environ,
            "the config file's oauth_token_url/client_id/client_secret_env", oauth_kwargs,
        )  # fmt: skip
    for variable in (ENV_API_KEY, PROVIDER_KEY_ENV[settings.provider]):
        if environ.get(variable):
            return ApiKey(Secret(environ[variable]), variable)
    if _is_loopback(settings.url):
        return NoAuth("a loopback endpoint, no key needed")
    if ask_secret is not None:
        key = ask_secret(f"API key for {settings.display_url}: ")
        if key:
            return ApiKey(Secret(key), "the prompt")
    raise LLMError(
        Failure.CONFIG,
        f"no API key for {settings.display_url}: set {ENV_API_KEY} (or "
        f"{PROVIDER_KEY_ENV[settings.provider]}), name a variable with --api-key-env VAR, "
        "or use OAuth with --oauth-file FILE (three lines: token URL, client id, client secret)",
    )


def _key_from_env(environ: Mapping[str, str], variable: str, source: str) -> ApiKey:
    value = environ.get(variable, "")
    if not value:
        raise LLMError(
            Failure.CONFIG, f"the environment variable {variable} ({source}) is not set or empty"
        )
    return ApiKey(Secret(value), source)


def _oauth_from_file(path: Path, kwargs: dict[str, Any]) -> ClientCredentials:
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise LLMError(Failure.CONFIG, f"cannot read the OAuth file {path}: {reason}") from None
    return parse_oauth_block(text, source=f"the OAuth file {path}", **kwargs)


def _oauth_from_parts(
    token_url: str | None,
    client_id: str | None,
    secret_env: str | None,
    environ: Mapping[str, str],
    source: str,
    kwargs: dict[str, Any],
) -> ClientCredentials:
    missing = [
        name
        for name, value in (
            ("the token URL", token_url),
            ("the client id", client_id),
            ("the client secret's environment variable", secret_env),
        )
        if not value
    ]
    if missing:
        raise LLMError(Failure.CONFIG, f"OAuth from {source} lacks {' and '.join(missing)}")
    assert token_url and client_id and secret_env
    secret = environ.get(secret_env, "")
    if not secret:
        raise LLMError(
            Failure.CONFIG,
            f"the environment variable {secret_env} (the OAuth client secret) is not set or empty",
        )
    return ClientCredentials(token_url, client_id, Secret(secret), source=source, **kwargs)


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
