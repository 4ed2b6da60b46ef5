"""The flamesight server: REST API, database, blob storage and the profile cache.

Nothing in `model`, `formats`, `analysis` or `render` imports this package.
`create_app(settings)` is the FastAPI app; `flamesight serve` runs it on
uvicorn.

Decisions, so later work (accounts, analyze over SSE, the WebSocket chat,
fleet mode) builds on them rather than around them:

- Single-user mode only, for now: `flamesight serve` refuses a non-loopback
  host. One `users` row named "local" is the implicit owner of everything;
  `dependencies.current_user_id` is the one place that decides who is
  asking, so accounts (cookies, API tokens, share links) plug in there.
- Access: every query goes through `repository.Repository`, made for one
  user id. Another user's id finds nothing, which the API answers 404 (never
  403). The account functions at the bottom of `repository` are the only
  unscoped queries.
- Ids are random URL-safe strings (`secrets.token_urlsafe(12)`, 96 bits), so
  they are not guessable and say nothing about how many rows there are.
- Database: SQLAlchemy 2 asyncio (aiosqlite, asyncpg); the schema is owned
  by Alembic migrations shipped in `migrations/versions` and applied at
  start on the engine's own connection (no alembic.ini). Later tables
  (sessions, messages, snapshots, analyses, tokens, share links) are new
  revisions. Timestamps are stored UTC and read back timezone-aware on both
  databases (`tables.UtcDateTime`).
- Blobs: `storage.BlobStorage` is the interface (write from an async stream
  with a size cap, all or nothing; a local file for the duration of a
  parse; delete). Keys start with the owner's id
  (`<owner>/traces/<trace>`). `LocalDirectoryStorage` writes to a temporary
  file beside the final one and renames it into place; S3 comes later as a
  second implementation.
- Uploads stream: raw bodies and multipart forms (parsed incrementally with
  python-multipart, file part named "file" or the first with a file name)
  go chunk by chunk to storage, counted against the limit (413). The stored
  file is parsed once in a worker thread; a FormatError answers 422 with its
  message and deletes the blob before any row is written.
- Cache: `cache.ProfileCache` keeps parsed `ProfileGroup`s by blob key, LRU,
  bounded by an estimate of their bytes (NumPy columns plus strings);
  concurrent requests for a profile being parsed wait for that one parse.
  Its `stats.parses` counts parses. Analysis and rendering run in worker
  threads too.
- Errors are always `{"error": {"code", "message"}}` (`errors.py`), FastAPI's
  own validation errors included (422 "invalid_request"); a parameter the
  library refuses is 400 "bad_parameter".
- Ranges (`start`, `end`) are on the profile's own axis, as numbers in its
  unit or with a unit ("1.5s"), like the command line; `POST /render`
  follows flamechart-server instead (milliseconds from the profile start).
"""

from flamesight.server.app import create_app
from flamesight.server.settings import Settings

__all__ = ["Settings", "create_app"]
