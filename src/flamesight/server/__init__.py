"""The flamesight server: REST API, database, blob storage and the profile cache.

Nothing in `model`, `formats`, `analysis` or `render` imports this package.
`create_app(settings)` is the FastAPI app; `flamesight serve` runs it on
uvicorn.

Decisions, so later work (accounts, analyze over SSE, the WebSocket chat,
fleet mode) builds on them rather than around them:

- Modes: bound to loopback (`Settings.bound_to_loopback`) with no account
  (no user has a password) is single-user mode: no login, the `users` row
  named "local" owns everything. Once `flamesight users add NAME` creates an
  account, every request must prove who it is (checked per request, so the
  first account takes effect on a running server); `flamesight serve` on a
  non-loopback host is refused until an account exists. `users add local`
  turns the implicit owner into an account that keeps its traces.
- Who is asking: `dependencies.current_user_id` -> `accounts.authenticate`,
  the one place: a Bearer API token (no CSRF needed), else the session
  cookie (HttpOnly, SameSite=Lax, Secure over https, 14 days) whose
  state-changing requests must send `X-CSRF-Token` equal to the readable
  CSRF cookie and matching the hash stored with the session (a WebSocket
  handshake must come from the server's own origin), else the implicit
  owner in single-user mode, else 401. Passwords are argon2id
  (argon2-cffi); session, CSRF, API and share tokens are 256-bit random
  strings stored only as SHA-256 digests, shown once.
- Access: every query goes through `repository.Repository`, made for one
  user id (API tokens and share links included). Another user's id finds
  nothing, which the API answers 404 (never 403). The unscoped queries are
  the ones that decide who the caller is: `ensure_user` at the bottom of
  `repository`, and `accounts`.
- Share links: `/api/shared/{token}/...` runs the very trace endpoints
  (the viewer's `/viewer` and `/layout` included), handed an
  `accounts.SharedTrace` (one trace: `get_trace`, and `get_snapshot` for
  the snapshots drawn of it, served at `/api/shared/{token}/snapshots/{id}`)
  in place of the caller's repository, so a link reads its trace and
  nothing else. Revoking the link or deleting the trace ends it at once.
- Other websites: `same_origin.SameOriginMiddleware`, in front of every
  route, answers 403 `cross_site` to a state-changing request or a
  WebSocket handshake whose `Origin` is not the server's own (its `Host`)
  or whose `Sec-Fetch-Site` is `cross-site`, so a page elsewhere cannot
  drive the login-less single-user server through the visitor's browser.
  Requests without `Origin` (scripts, the CLI) pass; reads are not refused.
- Deleting a trace deletes its rows (cascading: chats, snapshots,
  analyses, share links) and its blobs: the uploaded file and the
  snapshots' PNGs (`Repository.delete_trace` names them).
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
  (`<owner>/traces/<trace>`); `storage.open_storage(settings)` picks the
  implementation. `LocalDirectoryStorage` writes to a temporary file beside
  the final one and renames it into place. `s3_storage.S3BlobStorage`
  (`--storage-url s3://bucket/prefix`, FLAMESIGHT_STORAGE_URL; boto3 in
  worker threads, endpoint, region and credentials from the usual AWS
  variables: AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, ...) keeps
  keys under the prefix, streams multipart uploads (aborted past the cap or
  on any error, so nothing is left) and downloads to a temporary file for a
  parse. Downloads are always proxied by the server, never presigned, so
  the access rules (owner scoping, share links and their revocation) decide
  who reads a blob.
- Uploads stream: raw bodies and multipart forms (parsed incrementally with
  python-multipart, file part named "file" or the first with a file name)
  go chunk by chunk to storage, counted against the limit (413). The stored
  file is parsed once in a worker thread; a FormatError answers 422 with its
  message and deletes the blob before any row is written.
- Cache: `cache.ProfileCache` keeps parsed `ProfileGroup`s by blob key, LRU,
  bounded by an estimate of their bytes (NumPy columns plus strings);
  concurrent requests for a profile being parsed wait for that one parse.
  Its `stats.parses` counts parses; `derived(key)` keeps what is computed
  from a group (the chat agent's system message) and drops it with the
  group. Analysis and rendering run in worker threads too.
- Errors are always `{"error": {"code", "message"}}` (`errors.py`), FastAPI's
  own validation errors included (422 "invalid_request"); a parameter the
  library refuses is 400 "bad_parameter".
- Ranges (`start`, `end`) are on the profile's own axis, as numbers in its
  unit or with a unit ("1.5s"), like the command line; `POST /render`
  follows flamechart-server instead (milliseconds from the profile start).
- Send to LLM (`analyze_routes`): `POST /api/traces/{id}/analyze` streams
  server-sent events (`text`, then `done` with the stored analysis, or
  `error`). Failures before the first piece are ordinary error answers
  (400, `url_refused` for refused URLs; 502 `model_failed`). Analyses
  (`flamesight.llm.AnalysisResult.to_dict()` plus the Markdown report;
  never a credential) are listed by `GET /api/traces/{id}/analyses` and
  exported by `GET /api/analyses/{id}.md`.
- Client-given model and token URLs: `url_policy.UrlPolicy` is the one
  check (http(s) only, never link-local or metadata addresses, loopback
  only when bound to loopback, private ranges only with
  `Settings.allow_private_urls`); the model client runs it again on every
  request, redirects included (`flamesight.llm.Settings.url_check`).
  `model_endpoints.resolve_endpoint` turns a client's url/model/provider/
  auth into settings and credentials, or takes the server's own
  (FLAMESIGHT_LLM_* through `flamesight.llm`). Credentials stay in memory:
  the request's, or `ChatService.endpoints` for a chat session.
- Chat (`chat`, `chat_routes`): WebSocket `/ws/chat` as DESIGN.md says.
  The handler stores the question and enqueues a `ChatTurnJob` on a
  `JobQueue`; events go through an `EventBus` that numbers them per session
  (`seq`) and stores them in `chat_events`, so `resume {sessionId,
  afterSeq}` works across reconnects and restarts. Embedded mode:
  `InProcessJobQueue` (asyncio task; the agent on the event loop) and
  `StoredEventBus` (memory fan-out); fleet mode replaces both. One turn
  per session at a time (`TurnGate`).
- Fleet mode (`fleet`, `fleet_jobs`, docs/fleet.md): `--redis-url` puts
  chat turns and "Send to LLM" analyses on arq (`flamesight worker` runs
  them; the web process only enqueues, on the queue of a live worker that
  already holds the trace when there is one), events on a Redis Stream per
  session or analysis (seq from a Redis counter seeded from the database;
  each event stored, then streamed), one job per session by a Redis key
  the worker keeps alive (a dead worker's job ends with an `error` event
  sent by the web process that queued it). Client-given endpoints reach
  the workers only sealed with the deployment's `FLAMESIGHT_SECRET_KEY`
  (and are refused without it). Database connection errors answer 503
  "unavailable". Messages (tool calls included) are stored as
  `flamesight.agent.history_to_dicts` writes them; snapshots go to blob
  storage under `<owner>/snapshots/` and are served to their owner by
  `GET /api/snapshots/{id}`. Chat, snapshot and analysis rows are reached
  through `chat_store.ChatRepository`, scoped to one owner like
  `Repository`.
"""

from flamesight.server.app import create_app
from flamesight.server.settings import Settings

__all__ = ["Settings", "create_app"]
