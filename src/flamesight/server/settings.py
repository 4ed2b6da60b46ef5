"""Server settings: where data lives, which database, how much to accept and to keep.

Every setting has a default, an environment variable, and (for `flamesight
serve`) a flag; a flag wins over the environment, the environment over the
default.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from flamesight.llm.redaction import Secret
from flamesight.server.url_policy import UrlPolicy

ENV_DATA_DIR = "FLAMESIGHT_DATA_DIR"
ENV_DATABASE_URL = "FLAMESIGHT_DATABASE_URL"
ENV_STORAGE_DIR = "FLAMESIGHT_STORAGE_DIR"
ENV_STORAGE_URL = "FLAMESIGHT_STORAGE_URL"
ENV_MAX_UPLOAD = "FLAMESIGHT_MAX_UPLOAD"
ENV_CACHE_SIZE = "FLAMESIGHT_CACHE_SIZE"
ENV_REDIS_URL = "FLAMESIGHT_REDIS_URL"
ENV_SECRET_KEY = "FLAMESIGHT_SECRET_KEY"
ENV_SECRET_KEY_FILE = "FLAMESIGHT_SECRET_KEY_FILE"
SHORTEST_SECRET_KEY = 32
"""Characters a shared secret key needs at least (`secrets.token_urlsafe(32)` gives 43)."""

DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
DEFAULT_CACHE_BYTES = 2 * 1024**3

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)


def default_data_dir() -> Path:
    """~/.local/share/flamesight, or $XDG_DATA_HOME/flamesight when that is set."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "flamesight"


def parse_size(text: str) -> int:
    """A byte count from "2GiB", "500MB", "64k" or a bare number of bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"cannot read {text!r} as a size (try 2GiB, 500MB or a number of bytes)")
    number = float(match.group(1))
    suffix = (match.group(2) or "").lower()
    letter = suffix[:1] if suffix not in ("", "b") else ""
    base = 1024 if "i" in suffix else 1000
    factor = base ** ("kmgt".index(letter) + 1) if letter else 1
    return int(number * factor)


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy async URL of a SQLite database file."""
    return f"sqlite+aiosqlite:///{path.resolve()}"


@dataclass(frozen=True)
class Settings:
    """What the server needs to start: data locations and size limits."""

    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    """None: a SQLite file `flamesight.db` in the data dir."""
    storage_dir: Path | None = None
    """None: the folder `blobs` in the data dir."""
    storage_url: str | None = None
    """s3://bucket/prefix: blobs in S3-compatible storage (`s3_storage`) instead of a folder."""
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    cache_bytes: int = DEFAULT_CACHE_BYTES
    """How many bytes of parsed profiles the in-memory cache keeps (estimated)."""
    bound_to_loopback: bool = True
    """The server listens on a loopback address only: with no accounts it is single-user."""
    allow_private_urls: bool = False
    """Client-given model and token URLs may point at private network addresses."""
    redis_url: str | None = None
    """Fleet mode: chat turns run on `flamesight worker`s and events go through this Redis."""
    secret_key: Secret | None = None
    """Fleet mode: the key web processes and workers share to seal client-given endpoints."""

    @property
    def url_policy(self) -> UrlPolicy:
        """What client-given model and token URLs may point at (loopback: when bound to it)."""
        return UrlPolicy(
            allow_loopback=self.bound_to_loopback, allow_private=self.allow_private_urls
        )

    @property
    def resolved_database_url(self) -> str:
        """The database URL in use: the given one or the SQLite file in the data dir."""
        return self.database_url or sqlite_url(self.data_dir / "flamesight.db")

    @property
    def resolved_storage_dir(self) -> Path:
        """The blob folder in use: the given one or `blobs` in the data dir."""
        return self.storage_dir or self.data_dir / "blobs"

    @classmethod
    def from_environment(
        cls,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        database_url: str | None = None,
        storage_dir: str | os.PathLike[str] | None = None,
        storage_url: str | None = None,
        max_upload: str | None = None,
        cache_size: str | None = None,
        redis_url: str | None = None,
        secret_key_file: str | os.PathLike[str] | None = None,
    ) -> Settings:
        """Settings from the given values, else the FLAMESIGHT_* environment, else defaults."""
        env = os.environ
        data_dir = data_dir or env.get(ENV_DATA_DIR)
        storage_dir = storage_dir or env.get(ENV_STORAGE_DIR)
        storage_url = storage_url or (None if storage_dir else env.get(ENV_STORAGE_URL)) or None
        if storage_url is not None:
            location = storage_location(storage_url)
            if isinstance(location, Path):
                storage_dir, storage_url = location, None
        max_upload = max_upload or env.get(ENV_MAX_UPLOAD)
        cache_size = cache_size or env.get(ENV_CACHE_SIZE)
        return cls(
            data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(),
            database_url=database_url or env.get(ENV_DATABASE_URL) or None,
            storage_dir=Path(storage_dir).expanduser() if storage_dir else None,
            storage_url=storage_url,
            max_upload_bytes=parse_size(max_upload) if max_upload else DEFAULT_MAX_UPLOAD_BYTES,
            cache_bytes=parse_size(cache_size) if cache_size else DEFAULT_CACHE_BYTES,
            redis_url=redis_url or env.get(ENV_REDIS_URL) or None,
            secret_key=read_secret_key(secret_key_file or env.get(ENV_SECRET_KEY_FILE)),
        )


def read_secret_key(path: str | os.PathLike[str] | None) -> Secret | None:
    """The shared secret key: the first line of the file at `path`, else $FLAMESIGHT_SECRET_KEY.

    ValueError for a file that cannot be read or a key shorter than 32 characters
    (the message never holds the key).
    """
    if path:
        try:
            lines = Path(path).expanduser().read_text().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read the secret key file {str(path)!r}: {error}") from None
        value = lines[0].strip() if lines else ""
        where = f"the secret key file {str(path)!r}"
    else:
        value = os.environ.get(ENV_SECRET_KEY, "").strip()
        where = ENV_SECRET_KEY
    if not value:
        return None
    if len(value) < SHORTEST_SECRET_KEY:
        raise ValueError(
            f"{where} holds a key of fewer than {SHORTEST_SECRET_KEY} characters; make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return Secret(value)


def storage_location(url: str) -> Path | str:
    """What a storage URL names: a local folder (file:///path) or itself (s3://bucket/prefix).

    ValueError for anything else, or a file URL that is not an absolute local path.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = Path(unquote(parts.path))
        if parts.netloc not in ("", "localhost") or not path.is_absolute():
            raise ValueError(
                f"{url!r}: a file URL names an absolute local folder, e.g. file:///srv/flamesight"
            )
        return path
    if scheme == "s3":
        if not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"{url!r}: give s3://bucket or s3://bucket/prefix")
        return url
    raise ValueError(
        f"{url!r}: give file:///path/to/folder (a local folder) or s3://bucket/prefix "
        "(S3-compatible storage)"
    )
