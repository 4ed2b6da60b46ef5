"""Endpoint and model settings from flags, the environment and the config file.

Each setting is taken from the first source that gives it:

1. the command line (an `EndpointOptions` the CLI fills; a server fills it
   from a request);
2. the environment: ``FLAMESIGHT_LLM_URL``, ``FLAMESIGHT_LLM_MODEL``,
   ``FLAMESIGHT_LLM_PROVIDER``, ``FLAMESIGHT_LLM_ENDPOINT`` (a named endpoint
   of the config file);
3. the config file, ``~/.config/flamesight/config.toml`` (``$XDG_CONFIG_HOME``
   is honoured; ``FLAMESIGHT_CONFIG`` or an argument names another file): the
   ``[endpoints.NAME]`` table chosen, then the ``[llm]`` table;
4. the defaults: OpenAI's chat-completions URL, ``gpt-4o``, ``max_tokens``
   2000, ``temperature`` 0.3.

The config file names endpoints, models, templates and *where* credentials
are (``api_key_env = "VAR"``, ``client_secret_env``, ``oauth_file``), never a
credential itself: a key that looks like one is refused. A config file::

    [llm]
    url = "https://api.openai.com/v1"
    model = "gpt-4o"
    api_key_env = "OPENAI_API_KEY"

    [endpoints.local]
    url = "http://localhost:11434/v1/chat/completions"
    model = "llama3.1"
    context_tokens = 8192

    [endpoints.corp]
    url = "https://llm.example.com/v1"
    oauth_token_url = "https://login.example.com/oauth2/token"
    client_id = "flamesight"
    client_secret_env = "CORP_CLIENT_SECRET"

    [endpoints.corp.headers]
    X-Team = "performance"

    [templates]
    startup = "Why is {range} slow? The heaviest functions are {top_functions}."
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from flamesight.analysis.summary import MIN_BUDGET
from flamesight.llm.errors import Failure, LLMError
from flamesight.llm.prompts import check_template

PROVIDERS = ("openai", "azure", "anthropic")
DEFAULT_URLS = {
    "openai": "https://api.openai.com/v1/chat/completions",
    "anthropic": "https://api.anthropic.com/v1/messages",
}
DEFAULT_MODEL = "gpt-4o"
DEFAULT_MAX_TOKENS = 2000
DEFAULT_TEMPERATURE = 0.3
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_PAYLOAD_BUDGET = 6000
DEFAULT_AZURE_API_VERSION = "2024-10-21"
CLIENT_AUTH_METHODS = ("client_secret_post", "client_secret_basic")
# Tokens kept free in the model's context for the system message, the prompt
# and the JSON framing around the profile data.
REQUEST_OVERHEAD_TOKENS = 1000

CONFIG_ENV = "FLAMESIGHT_CONFIG"
ENV_URL = "FLAMESIGHT_LLM_URL"
ENV_MODEL = "FLAMESIGHT_LLM_MODEL"
ENV_PROVIDER = "FLAMESIGHT_LLM_PROVIDER"
ENV_ENDPOINT = "FLAMESIGHT_LLM_ENDPOINT"


@dataclass
class EndpointOptions:
    """Settings and credential sources given on the command line; None means not given.

    `api_key` is the value of ``--api-key``, which exists but warns: the key
    ends up in the shell history and the process list.
    """

    endpoint: str | None = None
    url: str | None = None
    provider: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    timeout: float | None = None
    max_retries: int | None = None
    api_version: str | None = None
    context_tokens: int | None = None
    payload_budget: int | None = None
    stream: bool | None = None
    headers: Mapping[str, str] | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    oauth_file: Path | None = None
    oauth_token_url: str | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    oauth_scope: str | None = None
    oauth_client_auth: str | None = None
    no_auth: bool = False
    config_path: Path | None = None


@dataclass(frozen=True)
class AuthSources:
    """Where credentials are to be found (names and paths, never values)."""

    api_key_env: str | None = None
    oauth_file: Path | None = None
    oauth_token_url: str | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    oauth_scope: str | None = None
    oauth_client_auth: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything about the model endpoint except the credentials themselves."""

    provider: str
    url: str
    base_url: str
    model: str
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    stream: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    api_version: str | None = None
    context_tokens: int | None = None
    payload_budget: int | None = None
    auth: AuthSources = field(default_factory=AuthSources)
    templates: Mapping[str, str] = field(default_factory=dict)
    config_path: Path | None = None
    url_check: Callable[[str], None] | None = field(default=None, compare=False, repr=False)
    """Called with the URL of every request to the model endpoint, redirects included,
    before it is sent; raising stops it (the server's policy for client-given URLs)."""

    @property
    def display_url(self) -> str:
        """The endpoint URL for messages and reports: no query string."""
        return display_url(self.url)

    def data_budget(self) -> int:
        """Tokens the profile data may take in the request.

        An explicit ``payload_budget`` wins; else the model's context (when
        known) less the answer and the request's overhead; else 6000.
        """
        if self.payload_budget is not None:
            return self.payload_budget
        if self.context_tokens is None:
            return DEFAULT_PAYLOAD_BUDGET
        room = self.context_tokens - self.max_tokens - REQUEST_OVERHEAD_TOKENS
        if room < MIN_BUDGET:
            raise LLMError(
                Failure.CONFIG,
                f"a context of {self.context_tokens:,} tokens leaves {max(room, 0):,} tokens for "
                f"profile data after {self.max_tokens:,} for the answer and "
                f"{REQUEST_OVERHEAD_TOKENS:,} for the request; the summary needs at least "
                f"{MIN_BUDGET}: lower max_tokens or use a model with a larger context",
            )
        return room

    @classmethod
    def for_endpoint(cls, url: str, provider: str | None = None, **values: Any) -> Settings:
        """Settings for `url` with defaults for everything not given (no environment, no file)."""
        return load_settings(
            EndpointOptions(url=url, provider=provider, **values), environ={}, config_path=None
        )


def display_url(url: str) -> str:
    """`url` without user info and query string, safe to show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# the config file

_LLM_KEYS: dict[str, type | tuple[type, ...]] = {
    "url": str,
    "provider": str,
    "model": str,
    "max_tokens": int,
    "temperature": (int, float),
    "timeout": (int, float),
    "max_retries": int,
    "api_version": str,
    "context_tokens": int,
    "payload_budget": int,
    "stream": bool,
    "headers": dict,
    "api_key_env": str,
    "oauth_file": str,
    "oauth_token_url": str,
    "client_id": str,
    "client_secret_env": str,
    "oauth_scope": str,
    "oauth_client_auth": str,
}
_NOT_SECRETS = frozenset(_LLM_KEYS) | {"endpoint", "endpoints", "templates", "llm"}
_SECRET_NAME = re.compile(
    r"(^|_)(api_?key|apikey|key|secret|client_secret|password|passwd|pwd|token|access_token|"
    r"refresh_token|auth_token|bearer|authorization|credentials?|private_key|cookie)($|_)"
)
_SECRET_VALUE = re.compile(r"^(sk-|sk_|Bearer\s|Basic\s)", re.IGNORECASE)
_NAME_SUFFIXES = ("_env", "_url", "_file", "_path")


@dataclass(frozen=True)
class ConfigFile:
    """The parts of config.toml that concern models: [llm], [endpoints.*], [templates]."""

    path: Path | None
    llm: Mapping[str, Any]
    endpoints: Mapping[str, Mapping[str, Any]]
    templates: Mapping[str, str]


def config_file_path(environ: Mapping[str, str], given: Path | None = None) -> Path | None:
    """The config file to read: `given`, ``FLAMESIGHT_CONFIG``, or the XDG default (None if no home)."""
    if given is not None:
        return Path(given)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    if environ.get("XDG_CONFIG_HOME"):
        return Path(environ["XDG_CONFIG_HOME"]) / "flamesight" / "config.toml"
    if environ.get("HOME"):
        return Path(environ["HOME"]) / ".config" / "flamesight" / "config.toml"
    return None


def read_config(path: Path | None, required: bool = False) -> ConfigFile:
    """Read and check the config file; a missing default file is an empty config.

    Raises `LLMError` for TOML errors, wrong types, unknown keys and anything
    that looks like a secret.
    """
    if path is None or (not required and not path.exists()):
        return ConfigFile(None, {}, {}, {})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LLMError(Failure.CONFIG, f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LLMError(Failure.CONFIG, f"cannot read config file {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise LLMError(Failure.CONFIG, f"{path}: not valid TOML: {error}") from None
    _refuse_secrets(path, data, "")
    llm = _check_table(path, data.get("llm", {}), "llm", allow_endpoint=True)
    endpoints_table = data.get("endpoints", {})
    if not isinstance(endpoints_table, dict):
        raise LLMError(Failure.CONFIG, f"{path}: 'endpoints' must be a table of tables")
    endpoints = {
        name: _check_table(path, table, f"endpoints.{name}", allow_endpoint=False)
        for name, table in endpoints_table.items()
    }
    templates_table = data.get("templates", {})
    if not isinstance(templates_table, dict):
        raise LLMError(Failure.CONFIG, f"{path}: 'templates' must be a table of strings")
    for name, text in templates_table.items():
        if not isinstance(text, str):
            raise LLMError(Failure.CONFIG, f"{path}: templates.{name} must be a string")
        check_template(name, text)
    return ConfigFile(path, llm, endpoints, dict(templates_table))


def _refuse_secrets(path: Path, table: Mapping[str, Any], prefix: str) -> None:
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _refuse_secrets(path, value, f"{dotted}.")
            continue
        if isinstance(value, list):
            _refuse_secrets(path, {f"{key}[{i}]": item for i, item in enumerate(value)}, prefix)
            continue
        # Template names are the user's words; only their text is checked.
        named_by_user = prefix == "templates."
        inside_headers = prefix.endswith("headers.")
        looks_secret = (isinstance(value, str) and bool(_SECRET_VALUE.match(value))) or (
            not named_by_user and _secret_name(key, inside_headers)
        )
        if looks_secret:
            raise LLMError(
                Failure.CONFIG,
                f"{path}: '{dotted}' looks like a secret, and flamesight never reads secrets "
                "from its config file. Remove it and give the secret through an environment "
                'variable (FLAMESIGHT_LLM_API_KEY, or one you name with api_key_env = "VAR" '
                "or --api-key-env VAR; client_secret_env for OAuth), a file you name with "
                "--oauth-file, or the prompt.",
            )


def _secret_name(key: str, inside_headers: bool) -> bool:
    name = key.lower().replace("-", "_")
    if not inside_headers and (name in _NOT_SECRETS or name.endswith(_NAME_SUFFIXES)):
        return False
    return bool(_SECRET_NAME.search(name))


def _check_table(path: Path, table: object, where: str, allow_endpoint: bool) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise LLMError(Failure.CONFIG, f"{path}: '{where}' must be a table")
    checked: dict[str, Any] = {}
    for key, value in table.items():
        if key == "endpoint" and allow_endpoint:
            expected: type | tuple[type, ...] = str
        elif key in _LLM_KEYS:
            expected = _LLM_KEYS[key]
        else:
            known = ", ".join(sorted(_LLM_KEYS) + (["endpoint"] if allow_endpoint else []))
            raise LLMError(Failure.CONFIG, f"{path}: unknown key '{where}.{key}' (known: {known})")
        if isinstance(value, bool) and expected is not bool:
            expected_ok = False
        else:
            expected_ok = isinstance(value, expected)
        if not expected_ok:
            raise LLMError(
                Failure.CONFIG,
                f"{path}: '{where}.{key}' must be {_type_name(expected)}, "
                f"not {type(value).__name__}",
            )
        if key == "headers":
            for name, header in value.items():
                if not isinstance(header, str):
                    raise LLMError(
                        Failure.CONFIG, f"{path}: header '{where}.headers.{name}' must be a string"
                    )
        checked[key] = value
    return checked


def _type_name(expected: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", dict: "a table"}
    if isinstance(expected, tuple):
        return "a number"
    return names.get(expected, expected.__name__)


# putting it together


def load_settings(
    options: EndpointOptions | None = None,
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> Settings:
    """Settings from `options`, then `environ` (default: the process environment), then the config file.

    `config_path` (or ``options.config_path``) names the config file to read
    and must exist; without it ``FLAMESIGHT_CONFIG`` or the default location
    is read when present.
    """
    options = options or EndpointOptions()
    environ = os.environ if environ is None else environ
    given_path = config_path or options.config_path
    path = config_file_path(environ, given_path)
    config = read_config(path, required=given_path is not None or bool(environ.get(CONFIG_ENV)))

    endpoint_name = options.endpoint or environ.get(ENV_ENDPOINT) or config.llm.get("endpoint")
    named: Mapping[str, Any] = {}
    if endpoint_name:
        if endpoint_name not in config.endpoints:
            known = ", ".join(sorted(config.endpoints)) or "none"
            where = f"in {config.path}" if config.path else "(no config file was read)"
            raise LLMError(
                Failure.CONFIG, f"no endpoint named {endpoint_name!r} {where}; known: {known}"
            )
        named = config.endpoints[endpoint_name]

    def pick(name: str, flag: Any, env_var: str | None = None) -> Any:
        if flag is not None:
            return flag
        if env_var and environ.get(env_var):
            return environ[env_var]
        if name in named:
            return named[name]
        return config.llm.get(name)

    url_given = pick("url", options.url, ENV_URL)
    provider = pick("provider", options.provider, ENV_PROVIDER)
    provider = provider.strip().lower() if provider else _guess_provider(url_given)
    if provider not in PROVIDERS:
        raise LLMError(
            Failure.CONFIG, f"unknown provider {provider!r}: choose {', '.join(PROVIDERS)}"
        )
    url = url_given or DEFAULT_URLS.get(provider)
    if url is None:
        raise LLMError(
            Failure.CONFIG,
            "Azure OpenAI needs the resource URL, e.g. --url https://NAME.openai.azure.com "
            "(or the full .../openai/deployments/DEPLOYMENT/chat/completions URL)",
        )
    model_given = pick("model", options.model, ENV_MODEL)
    base_url, query, deployment = _normalise_url(provider, url)
    model = model_given or deployment or _default_model(provider)
    api_version = pick("api_version", options.api_version)
    if provider == "azure":
        api_version = api_version or query.pop("api-version", None) or DEFAULT_AZURE_API_VERSION
        if deployment is None:
            base_url = f"{base_url}/openai/deployments/{model}"

    headers = dict(config.llm.get("headers", {}))
    headers.update(named.get("headers", {}))
    headers.update(options.headers or {})
    oauth_file = pick("oauth_file", options.oauth_file)
    client_auth = pick("oauth_client_auth", options.oauth_client_auth)
    if client_auth is not None:
        client_auth = _client_auth_method(client_auth)
    settings = Settings(
        provider=provider,
        url=url,
        base_url=base_url,
        model=model,
        max_tokens=_optional_int("max_tokens", pick("max_tokens", options.max_tokens))
        or DEFAULT_MAX_TOKENS,
        temperature=_temperature(pick("temperature", options.temperature)),
        timeout=_positive_number("timeout", pick("timeout", options.timeout)),
        max_retries=_retries(pick("max_retries", options.max_retries)),
        stream=pick("stream", options.stream) is not False,
        headers=headers,
        query=query,
        api_version=api_version,
        context_tokens=_optional_int(
            "context_tokens", pick("context_tokens", options.context_tokens)
        ),
        payload_budget=_optional_int(
            "payload_budget", pick("payload_budget", options.payload_budget)
        ),
        auth=AuthSources(
            api_key_env=pick("api_key_env", options.api_key_env),
            oauth_file=Path(oauth_file).expanduser() if oauth_file else None,
            oauth_token_url=pick("oauth_token_url", options.oauth_token_url),
            client_id=pick("client_id", options.client_id),
            client_secret_env=pick("client_secret_env", options.client_secret_env),
            oauth_scope=pick("oauth_scope", options.oauth_scope),
            oauth_client_auth=client_auth,
        ),
        templates=config.templates,
        config_path=config.path,
    )
    if settings.payload_budget is not None and settings.payload_budget < MIN_BUDGET:
        raise LLMError(Failure.CONFIG, f"payload_budget must be at least {MIN_BUDGET} tokens")
    return settings


def _guess_provider(url: str | None) -> str:
    if not url:
        return "openai"
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host.endswith((".openai.azure.com", ".cognitiveservices.azure.com")):
        return "azure"
    if host == "api.anthropic.com" or parts.path.rstrip("/").endswith("/v1/messages"):
        return "anthropic"
    return "openai"


def _default_model(provider: str) -> str:
    if provider == "anthropic":
        raise LLMError(
            Failure.CONFIG,
            "Anthropic needs a model name: --model, FLAMESIGHT_LLM_MODEL or model in the config file",
        )
    return DEFAULT_MODEL


def _normalise_url(provider: str, url: str) -> tuple[str, dict[str, str], str | None]:
    """The SDK's base URL, the query parameters and (Azure) the deployment named in `url`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LLMError(
            Failure.CONFIG,
            "the model URL must start with http:// or https:// and name a host, e.g. "
            "https://api.openai.com/v1 or http://localhost:11434/v1/chat/completions",
        )
    if parts.username or parts.password:
        raise LLMError(
            Failure.CONFIG,
            "the model URL holds a user name or password; credentials go in an environment "
            "variable (--api-key-env), an OAuth file (--oauth-file) or the prompt",
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    path = parts.path.rstrip("/")
    deployment = None
    if provider == "openai":
        path = _strip_suffix(path, "/chat/completions")
    elif provider == "anthropic":
        path = _strip_suffix(_strip_suffix(path, "/messages"), "/v1")
    else:
        match = re.search(r"^(.*?/openai/deployments/([^/]+))", path)
        if match:
            path, deployment = match.group(1), match.group(2)
        else:
            path = ""
    root = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return root + path, query, deployment


def _strip_suffix(path: str, suffix: str) -> str:
    return path[: -len(suffix)] if path.endswith(suffix) else path


def _client_auth_method(value: str) -> str:
    method = value.strip().lower()
    method = {"post": "client_secret_post", "basic": "client_secret_basic"}.get(method, method)
    if method not in CLIENT_AUTH_METHODS:
        raise LLMError(
            Failure.CONFIG,
            f"unknown OAuth client authentication {value!r}: choose post or basic",
        )
    return method


def _optional_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise LLMError(Failure.CONFIG, f"{name} must be a whole number, not {value!r}") from None
    if number <= 0 or number != float(value):
        raise LLMError(Failure.CONFIG, f"{name} must be a positive whole number, not {value!r}")
    return number


def _positive_number(name: str, value: Any) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LLMError(
            Failure.CONFIG, f"{name} must be a number of seconds, not {value!r}"
        ) from None
    if not number > 0:
        raise LLMError(Failure.CONFIG, f"{name} must be more than 0 seconds, not {value!r}")
    return number


def _temperature(value: Any) -> float:
    if value is None:
        return DEFAULT_TEMPERATURE
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LLMError(Failure.CONFIG, f"temperature must be a number, not {value!r}") from None
    if not 0.0 <= number <= 2.0:
        raise LLMError(Failure.CONFIG, f"temperature must be between 0 and 2, not {value!r}")
    return number


def _retries(value: Any) -> int:
    if value is None:
        return DEFAULT_MAX_RETRIES
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise LLMError(
            Failure.CONFIG, f"max_retries must be a whole number, not {value!r}"
        ) from None
    if not 0 <= number <= 10:
        raise LLMError(Failure.CONFIG, f"max_retries must be between 0 and 10, not {value!r}")
    return number
