"""The A/B listening page: a FastAPI app over the feedback store.

Routes (all JSON errors look like ``{"error": code, "detail": message}``):

- ``GET  /``                       the page (``?rater=NAME`` picks a name in open mode; ``?token=T``
                                   signs in with a rater token); sets a signed, HttpOnly cookie
- ``POST /api/session``            ``{"rater"?, "token"?}`` -> cookie (for scripts / the login form)
- ``GET  /api/next?n=1``           up to n pairs issued to the caller + progress
- ``GET  /api/audio/{token}/{a|b|original}`` the audio of an issued pair, or its unedited song when
                                   the manifest names one (only WAVs inside the render folder)
- ``POST /api/vote``               ``{"token", "choice": a|b|tie|skip, "strength"?: 1-3, "comment"?,
                                   "listened_a"?, "listened_b"?}`` (application/json, <= 16 KiB)
- ``GET  /api/progress``, ``GET /api/health``

Status codes: 400 bad token / host, 401 no or bad rater identity, 403 forged token or another
rater's token or cross-origin post, 404 unknown issue / route, 409 replayed or superseded token,
410 expired token, 413 body too large, 415 not JSON (or not a WAV), 422 invalid fields.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from .db import FeedbackDB, SCHEMA_VERSION, open_db
from .uploads import UploadConfig
from .listening_gate import DEFAULT_MIN_LISTEN_S, check_min_listen, listening_info, shown_listening
from .queue import (
    DEFAULT_HOLD_S,
    DEFAULT_TOKEN_TTL_S,
    MAX_ISSUE_BATCH,
    SyncReport,
    VoteError,
    check_duration,
    ensure_rater,
    issue_next,
    issued_pair,
    progress,
    submit_vote,
    sync_manifest,
    sync_raters,
)
from .security import (
    DEFAULT_SECRET_ENV,
    AccessLogScrubber,
    TokenError,
    UnsafePathError,
    coerce_secret,
    hash_token,
    is_loopback,
    load_rater_tokens,
    safe_audio_path,
    secret_from_env,
    sign_rater,
    unsafe_char,
    validate_rater_id,
    verify_issue,
    verify_rater,
)

log = logging.getLogger("beatedit.feedback")

COOKIE = "beatedit_rater"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
MAX_BODY_BYTES = 16 * 1024
MAX_COMMENT_CHARS = 1000
MAX_RATER_CHARS, MAX_RATER_TOKEN_CHARS = 64, 512
ANON_PREFIX = "anon-"  # open-mode raters the server named itself (a cookieless page load)
ANON_MAX_OUTSTANDING = 2  # unvoted issues an anonymous rater may hold at once
STATIC_DIR = Path(str(resources.files("beatedit.feedback") / "static"))
CSP = "default-src 'self'; media-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _err(status: int, code: str, detail) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


# --- request models ------------------------------------------------------------------------------------
class VoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=1024)
    choice: Literal["a", "b", "tie", "skip"]
    strength: int | None = Field(default=None, ge=1, le=3, strict=True)
    comment: str = Field(default="", max_length=MAX_COMMENT_CHARS)
    listened_a: float | None = Field(default=None, ge=0.0, le=36000.0, allow_inf_nan=False)
    listened_b: float | None = Field(default=None, ge=0.0, le=36000.0, allow_inf_nan=False)

    @field_validator("comment")
    @classmethod
    def _printable(cls, v: str) -> str:
        bad = unsafe_char(v)
        if bad is not None:
            raise ValueError(f"comment contains a control or bidi character (U+{ord(bad):04X})")
        return v.strip()


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rater: str | None = Field(default=None, max_length=MAX_RATER_CHARS)
    token: str | None = Field(default=None, max_length=MAX_RATER_TOKEN_CHARS)


# --- state -----------------------------------------------------------------------------------------------
@dataclass
class FeedbackState:
    db: FeedbackDB
    key: bytes
    render_dir: Path
    token_raters: dict[str, str] | None  # sha256(token) -> rater; None = open mode
    ttl_s: float
    max_votes_per_pair: int | None
    hold_s: float
    sync: SyncReport
    min_listen_s: float = 0.0  # listening gate (see listening_gate); 0 = votes enabled at once
    known_raters: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tokens_required(self) -> bool:
        return self.token_raters is not None


def _pydantic_errors(exc: ValidationError | RequestValidationError) -> list[dict]:
    out = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",))
        out.append({"field": loc, "message": e.get("msg", "")})
    return out


# --- ASGI guards --------------------------------------------------------------------------------------
class GuardMiddleware:
    """Host allow-list (DNS-rebinding defence), Content-Length cap, security headers."""

    def __init__(self, app, allowed_hosts: set[str], body_limits: dict[str, int] | None = None):
        self.app, self.allowed = app, {h.lower() for h in allowed_hosts}
        self.body_limits = dict(body_limits or {})  # path -> byte cap other than MAX_BODY_BYTES (the upload route)

    @staticmethod
    def _host_only(host: str) -> str:
        host = host.strip().lower()
        if host.startswith("["):
            return host[: host.find("]") + 1] if "]" in host else host
        return host.rsplit(":", 1)[0] if host.count(":") == 1 else host

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if "*" not in self.allowed and self._host_only(headers.get("host", "")) not in self.allowed:
            return await _err(400, "bad_host", "Host header not allowed for this server")(scope, receive, send)
        cl = headers.get("content-length")
        if cl is not None:
            if not cl.isdigit():
                return await _err(400, "bad_request", "invalid Content-Length")(scope, receive, send)
            cap = self.body_limits.get(scope["path"], MAX_BODY_BYTES)
            if int(cl) > cap:
                return await _err(413, "too_large", f"request body over {cap} bytes")(scope, receive, send)

        async def send_with_headers(msg):
            if msg["type"] == "http.response.start":
                hs = list(msg.get("headers", []))
                names = {k.lower() for k, _ in hs}
                extra = {b"x-content-type-options": b"nosniff", b"referrer-policy": b"no-referrer", b"x-frame-options": b"DENY",
                         b"content-security-policy": CSP.encode(), b"cross-origin-resource-policy": b"same-origin"}
                if scope["path"].startswith("/api/") and not scope["path"].startswith("/api/audio/"):
                    extra[b"cache-control"] = b"no-store"
                hs += [(k, v) for k, v in extra.items() if k not in names]
                msg = {**msg, "headers": hs}
            await send(msg)

        return await self.app(scope, receive, send_with_headers)


# --- app -------------------------------------------------------------------------------------------------
def create_app(render_dir: str | Path, db_url: str, secret: str | bytes, rater_tokens: str | Path | dict[str, str] | None = None, *,
               allowed_hosts: set[str] | None = None, token_ttl_s: float = DEFAULT_TOKEN_TTL_S, max_votes_per_pair: int | None = None,
               hold_s: float = DEFAULT_HOLD_S, uploads: "UploadConfig | None" = None,
               min_listen_s: float = DEFAULT_MIN_LISTEN_S) -> FastAPI:
    """Build the feedback app: migrates ``db_url``, syncs ``render_dir/pairs.json`` into it and
    registers the raters of ``rater_tokens`` (a file path or ``{rater: token}``; None = open mode,
    any browser gets a rater id). ``allowed_hosts``: Host header names accepted (default loopback).
    ``hold_s``: how long an unvoted issue holds its pair against ``max_votes_per_pair``.
    ``uploads``: users' own songs (``beatedit.feedback.uploads``: its folder, the injected variation renderer, the size cap).
    ``min_listen_s``: the page enables A / B / tie only once each side was heard past its first
    seam or for this many seconds (capped at 90% of the side's length); 0 turns the gate off.
    Out-of-range settings are refused here (ValueError), before anything is served."""
    token_ttl_s = check_duration("token_ttl_s (--token-ttl)", token_ttl_s)
    hold_s = check_duration("hold_s (--hold)", hold_s)
    if max_votes_per_pair is not None and (type(max_votes_per_pair) is not int or max_votes_per_pair < 1):
        raise ValueError(f"max_votes_per_pair (--max-votes-per-pair) must be a positive integer, got {max_votes_per_pair!r}")
    min_listen_s = check_min_listen(min_listen_s)
    key = coerce_secret(secret)
    root = Path(render_dir).resolve()
    db = open_db(db_url)
    sync = sync_manifest(db, root)
    for r in sync.rejected:
        log.warning("pair %s (manifest entry %s) rejected: %s", r.get("pair_id"), r.get("index"), r["reason"])
    log.info("feedback: %d active pairs from %s (%d added, %d rejected), db %s", sync.active, root, sync.added, len(sync.rejected), db.url)
    token_raters = None
    if rater_tokens is not None:
        tokens = rater_tokens if isinstance(rater_tokens, dict) else load_rater_tokens(rater_tokens)
        for r in tokens:
            validate_rater_id(r)
        by_rater = {r: hash_token(t) for r, t in tokens.items()}
        sync_raters(db, by_rater)
        token_raters = {h: r for r, h in by_rater.items()}
    state = FeedbackState(db=db, key=key, render_dir=root, token_raters=token_raters, ttl_s=token_ttl_s, max_votes_per_pair=max_votes_per_pair,
                          hold_s=hold_s, sync=sync, min_listen_s=min_listen_s)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app):
        yield
        db.dispose()

    app = FastAPI(title="beatedit feedback", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.feedback = state
    hosts = set(allowed_hosts) if allowed_hosts is not None else {"127.0.0.1", "localhost", "[::1]"}
    app.add_middleware(GuardMiddleware, allowed_hosts=hosts,
                       body_limits={"/api/upload": uploads.max_bytes} if uploads is not None else None)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(ApiError)
    async def _api_error(_req, exc: ApiError):
        return _err(exc.status, exc.code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req, exc: RequestValidationError):
        return _err(422, "invalid_request", _pydantic_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req, exc: StarletteHTTPException):
        return _err(exc.status_code, {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error"), str(exc.detail))

    # -- identity ---------------------------------------------------------------------------------------
    def rater_from_request(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if state.tokens_required and auth:
            if not auth.lower().startswith("bearer "):
                raise ApiError(401, "unauthenticated", "Authorization must be 'Bearer <rater token>'")
            rater = state.token_raters.get(hash_token(auth[7:].strip()))
            if rater is None:
                raise ApiError(401, "unauthenticated", "unknown rater token")
            return rater
        rater = verify_rater(key, request.cookies.get(COOKIE))
        if rater is not None and state.tokens_required and rater not in state.token_raters.values():
            return None  # token revoked since the cookie was issued
        return rater

    def require_rater(request: Request) -> str:
        rater = rater_from_request(request)
        if rater is None:
            raise ApiError(401, "unauthenticated", "no rater identity: open / or POST /api/session" + (" with a rater token" if state.tokens_required else ""))
        return rater

    async def known(rater: str) -> None:
        if rater not in state.known_raters:
            await run_in_threadpool(ensure_rater, db, rater)
            with state.lock:
                state.known_raters.add(rater)

    def set_cookie(resp: Response, rater: str) -> Response:
        resp.set_cookie(COOKIE, sign_rater(key, rater), max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="strict", path="/")
        return resp

    def check_origin(request: Request) -> None:
        """A browser always sends Origin on a POST; the page's own fetches send ours. ``null``
        (sandboxed frames, data: and file: pages) is an opaque, i.e. foreign, origin."""
        origin = request.headers.get("origin")
        if origin is None:
            return  # not a browser (curl, scripts): the cookie or bearer token still decides
        from urllib.parse import urlsplit

        o = urlsplit(origin) if origin != "null" else None
        if o is None or (o.netloc or "").lower() != request.headers.get("host", "").lower():
            raise ApiError(403, "cross_origin", "cross-origin requests are not accepted")

    def session_for(body: SessionIn, request: Request) -> str:
        if state.tokens_required:
            tok = body.token or (request.headers.get("authorization", "")[7:].strip() if request.headers.get("authorization", "").lower().startswith("bearer ") else "")
            rater = state.token_raters.get(hash_token(tok)) if tok else None
            if rater is None:
                raise ApiError(401, "unauthenticated", "a valid rater token is required")
            return rater
        if body.rater:
            try:
                return validate_rater_id(body.rater)
            except ValueError as exc:
                raise ApiError(422, "invalid_request", [{"field": "rater", "message": str(exc)}]) from exc
        return rater_from_request(request) or f"{ANON_PREFIX}{secrets.token_hex(5)}"

    async def read_json(request: Request, model: type[BaseModel]):
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ApiError(413, "too_large", f"request body over {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            kinds = {e.get("type") for e in exc.errors()}
            if "json_invalid" in kinds or "json_type" in kinds:
                raise ApiError(422, "invalid_json", "body is not a JSON object") from exc
            raise ApiError(422, "invalid_request", _pydantic_errors(exc)) from exc

    def claims_for(token: str, rater: str):
        try:
            claims = verify_issue(key, token, max_age_s=state.ttl_s)
        except TokenError as exc:
            status = {"malformed": 400, "signature": 403, "expired": 410}[exc.reason]
            raise ApiError(status, {"malformed": "bad_token", "signature": "forged_token", "expired": "expired_token"}[exc.reason], str(exc)) from exc
        if claims.rater != rater:
            raise ApiError(403, "wrong_rater", "this pair was issued to another rater")
        return claims

    # -- routes ----------------------------------------------------------------------------------------------
    # A rater row is written when pairs are first issued (``/api/next``), not on sign-in or page
    # load: cookieless page loads would otherwise add a row each.
    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request, rater: str | None = Query(default=None, max_length=MAX_RATER_CHARS),
                   token: str | None = Query(default=None, max_length=MAX_RATER_TOKEN_CHARS)):
        if token is not None or rater is not None:
            who = session_for(SessionIn(rater=rater, token=token), request)
            return set_cookie(RedirectResponse("/", status_code=303), who)
        html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        resp = HTMLResponse(html)
        if rater_from_request(request) is None and not state.tokens_required:
            set_cookie(resp, f"{ANON_PREFIX}{secrets.token_hex(5)}")
        resp.headers["cache-control"] = "no-store"
        return resp

    @app.post("/api/session")
    async def session(request: Request):
        check_origin(request)
        body = await read_json(request, SessionIn)
        who = session_for(body, request)
        return set_cookie(JSONResponse({"rater": who, "tokens_required": state.tokens_required}), who)

    @app.get("/api/next")
    async def next_pairs(request: Request, n: int = 1):
        rater = require_rater(request)
        if not 1 <= n <= MAX_ISSUE_BATCH:
            raise ApiError(422, "invalid_request", [{"field": "n", "message": f"must lie in [1, {MAX_ISSUE_BATCH}]"}])
        await known(rater)
        cap = ANON_MAX_OUTSTANDING if not state.tokens_required and rater.startswith(ANON_PREFIX) else None
        items = await run_in_threadpool(issue_next, db, key, root, rater, n, ttl_s=state.ttl_s, max_votes_per_pair=state.max_votes_per_pair,
                                        hold_s=state.hold_s, max_outstanding=cap)
        prog = await run_in_threadpool(progress, db, root, rater, ttl_s=state.ttl_s, max_votes_per_pair=state.max_votes_per_pair, hold_s=state.hold_s)
        info = await run_in_threadpool(listening_info, db, [it.pair_id for it in items])
        return {
            "rater": rater,
            "items": [{"token": it.token, "song_id": it.song_id, "target_ratio": it.target_ratio,
                       "audio": {"a": f"/api/audio/{it.token}/a", "b": f"/api/audio/{it.token}/b",
                                 **({"original": f"/api/audio/{it.token}/original"} if it.pair_id in state.sync.originals else {})},
                       **shown_listening(info.get(it.pair_id), it.swapped, state.min_listen_s)} for it in items],
            "progress": {"votes": prog.votes, "remaining": prog.remaining},
        }

    @app.get("/api/progress")
    async def get_progress(request: Request):
        rater = require_rater(request)
        prog = await run_in_threadpool(progress, db, root, rater, ttl_s=state.ttl_s, max_votes_per_pair=state.max_votes_per_pair, hold_s=state.hold_s)
        return {"rater": rater, "votes": prog.votes, "remaining": prog.remaining}

    @app.get("/api/audio/{token}/{side}")
    async def audio(request: Request, token: str, side: str):
        if side not in ("a", "b", "original"):
            raise ApiError(404, "not_found", "side must be 'a', 'b' or 'original'")
        rater = require_rater(request)
        claims = claims_for(token, rater)
        try:
            row, pair = await run_in_threadpool(issued_pair, db, claims)
        except VoteError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from exc
        if side == "original":
            rel = state.sync.originals.get(pair.id)
            if rel is None:
                raise ApiError(404, "not_found", "this pair has no original")
        else:
            real = ("b" if side == "a" else "a") if row.swapped else side
            rel = pair.wav_a if real == "a" else pair.wav_b
        try:
            path = safe_audio_path(root, rel)
            with open(path, "rb") as fh:
                head = fh.read(12)
        except (UnsafePathError, OSError) as exc:
            log.warning("refused audio %r for pair %s: %s", rel, pair.id, exc)
            raise ApiError(404, "not_found", "audio not available") from exc
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
            raise ApiError(415, "not_wav", "the render is not a WAV file")
        return FileResponse(path, media_type="audio/wav", headers={"cache-control": "private, max-age=3600"})

    @app.post("/api/vote", status_code=201)
    async def vote(request: Request):
        check_origin(request)
        body = await read_json(request, VoteIn)
        rater = require_rater(request)
        claims = claims_for(body.token, rater)
        try:
            v = await run_in_threadpool(submit_vote, db, claims, body.choice, strength=body.strength, comment=body.comment,
                                        listened_a=body.listened_a, listened_b=body.listened_b)
        except VoteError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from exc
        return JSONResponse({"ok": True, "vote_id": v.id}, status_code=201)

    @app.get("/api/health")
    async def health():
        return {"ok": True, "schema_version": SCHEMA_VERSION, "active_pairs": state.sync.active, "rejected_pairs": len(state.sync.rejected),
                "tokens_required": state.tokens_required, "uploads": uploads is not None}

    if uploads is not None:  # users' own songs: upload, variations, pick (beatedit/feedback/uploads.py)
        from .uploads import add_upload_routes

        add_upload_routes(app, db, key, uploads, require_rater=require_rater, check_origin=check_origin, read_json=read_json,
                          known=known, min_listen_s=min_listen_s)

    return app


# --- running -------------------------------------------------------------------------------------------
def serve(render_dir: str | Path, db_url: str, *, host: str = "127.0.0.1", port: int = 8765, rater_tokens: str | Path | None = None,
          secret_env: str = DEFAULT_SECRET_ENV, allow_remote_open: bool = False, max_votes_per_pair: int | None = None,
          token_ttl_s: float = DEFAULT_TOKEN_TTL_S, hold_s: float = DEFAULT_HOLD_S, log_level: str = "info",
          uploads: "UploadConfig | None" = None, min_listen_s: float = DEFAULT_MIN_LISTEN_S) -> None:
    """Run the page with uvicorn (blocking). Loopback by default; binding elsewhere requires rater
    tokens unless ``allow_remote_open``. The HMAC secret comes from the ``secret_env`` variable."""
    import uvicorn

    if not is_loopback(host) and rater_tokens is None and not allow_remote_open:
        raise ValueError(f"refusing to serve on non-loopback host {host!r} without --rater-tokens (pass --allow-remote-open to override)")
    key, persistent = secret_from_env(secret_env)
    if not persistent:
        log.warning("$%s not set: using a random per-process secret (sign-ins and issued tokens end with this process)", secret_env)
    hosts = {"127.0.0.1", "localhost", "[::1]"}
    if not is_loopback(host):
        hosts = {"*"} if host in ("0.0.0.0", "::") else hosts | {host.lower()}
    app = create_app(render_dir, db_url, key, rater_tokens, allowed_hosts=hosts, token_ttl_s=token_ttl_s, max_votes_per_pair=max_votes_per_pair,
                     hold_s=hold_s, uploads=uploads, min_listen_s=min_listen_s)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, proxy_headers=False, log_config=uvicorn_log_config())


def uvicorn_log_config() -> dict:
    """uvicorn's own logging set-up plus ``AccessLogScrubber`` on its handlers: the access log
    stays on, but rater tokens (``?token=``) and issue tokens (audio URLs) never reach it."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg.setdefault("filters", {})["scrub_secrets"] = {"()": AccessLogScrubber}
    for handler in cfg["handlers"].values():
        handler["filters"] = [*handler.get("filters", []), "scrub_secrets"]
    return cfg


class ServerThread:
    """Run an app with uvicorn on a background thread (port 0 = a free port); for tests and
    notebooks. ``with ServerThread(app) as srv: srv.url``; stops cleanly on exit."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", server_header=False,
                                                    log_config=uvicorn_log_config()))
        self.host, self.port = host, port
        self._thread = threading.Thread(target=self.server.run, name="feedback-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> "ServerThread":
        self._thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() - t0 > timeout:
                raise RuntimeError("feedback server did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("feedback server did not stop")

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["create_app", "serve", "ServerThread", "VoteIn", "MAX_BODY_BYTES", "MAX_COMMENT_CHARS"]
