"""Users' own songs on the listening page: upload, N variations, pick the best -> preferences.

Flow (routes registered by ``add_upload_routes`` when the server is given an ``UploadConfig``):

- ``POST /api/upload?target=S&n=N`` body = the audio file's bytes (``application/octet-stream``
  or ``audio/*``, at most ``max_bytes``): stored content-addressed as
  ``<root>/<sha256>/source.<ext>`` (mode 0600; the extension comes from the file's own magic
  bytes, never from the client; nothing in it is executed, it is only decoded), then the
  injected ``renderer`` writes N variations into ``<root>/<sha256>/<set>/`` (``set`` = hash of
  target, N and the renderer's id: the same request again reuses them). Answers a signed
  *variation token* bound to the caller, and per variation its audio URL, score and length.
- ``GET /api/variation/{token}/{k}``: the k-th render (1-based), only to the rater the token
  was issued to (uploaded audio is never served outside its own pairs; the source file itself
  is never served at all).
- ``POST /api/upload/pick`` ``{"token", "choice": k}``: the pick becomes N-1 preferences in
  the same vote store -- pairs (chosen = A, other = B), stored inactive (never issued by the
  A/B queue to anyone) with one consumed issue and one vote ``a`` each, in one transaction;
  a second pick of the same set by the same rater is 409 ``already_picked``.
  ``beatedit feedback export`` then writes them like any other human vote.

The renderer is injected (``VariationRenderer``): this package never imports ``models/`` or
``app/``; ``app.variations.page_renderer`` is the production one (policy samples ranked by the
reward model, the same checks as ``beatedit edit``). It raises ``ValueError`` with a message for
the user (too short, target not shorter than the song, over the memory guard...): 422 ``bad_upload``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Callable

from fastapi import Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from .db import FeedbackDB, IssuedPair, Pair, Vote, utcnow
from .listening_gate import HEARD_FRACTION, SEAM_MARGIN_S, edl_first_seam
from .security import TokenError, UnsafePathError, _b64d, _b64e, safe_audio_path

DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MIN_VARIATIONS, MAX_VARIATIONS = 2, 6
MIN_TARGET_S, MAX_TARGET_S = 1.0, 3600.0
UPLOAD_TOKEN_DOMAIN = b"beatedit-variations-v1"
UPLOAD_TOKEN_TTL_S = 7 * 24 * 3600


class PickIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=1024)
    choice: int = Field(ge=1, le=MAX_VARIATIONS, strict=True)
    # seconds heard per variation (client-reported), like listened_a/b of a vote
    listened: list[Annotated[float, Field(ge=0.0, le=36000.0, allow_inf_nan=False)]] | None = Field(default=None, max_length=MAX_VARIATIONS)


@dataclass(frozen=True)
class Variation:
    """One rendered variation: WAV + EDL inside the set folder, per-source-beat actions, its score."""

    wav: Path
    edl: Path
    actions: list[int]
    score: float
    duration: float
    target_ratio: float
    kind: str = "policy-sample"
    model: str = ""


VariationRenderer = Callable[[Path, float, int, Path], list[Variation]]  # (source, target_seconds, n, out_dir) -> best first


@dataclass
class UploadConfig:
    root: Path
    renderer: VariationRenderer
    renderer_id: str = "policy"  # part of the set key: another model renders another set
    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    render_lock: threading.Lock = field(default_factory=threading.Lock)  # one render at a time (CPU bound)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not (isinstance(self.max_bytes, int) and 1024 <= self.max_bytes <= 2 ** 34):
            raise ValueError(f"--max-upload-mb: the upload limit must lie in [1 KiB, 16 GiB], got {self.max_bytes} bytes")
        self.root.mkdir(parents=True, exist_ok=True)


class UploadError(Exception):
    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def sniff_audio(head: bytes) -> str | None:
    """The audio container from the first bytes (``.wav``, ``.flac``, ``.ogg``, ``.mp3``), else None."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"fLaC":
        return ".flac"
    if head[:4] == b"OggS":
        return ".ogg"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return ".mp3"
    return None


def store_upload(root: Path, data: bytes) -> tuple[str, Path]:
    """Store ``data`` content-addressed under ``root``: (sha256, path). Refuses what is not audio (415)."""
    if not data:
        raise UploadError(422, "bad_upload", "the upload is empty")
    ext = sniff_audio(data[:16])
    if ext is None:
        raise UploadError(415, "not_audio", "the upload is not a WAV, FLAC, Ogg or MP3 file")
    sha = hashlib.sha256(data).hexdigest()
    folder = root / sha
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"source{ext}"
    if not path.is_file():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o600)  # data, never executable
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return sha, path


def set_key(target_s: float, n: int, renderer_id: str) -> str:
    return hashlib.sha256(f"{round(target_s * 1000)}|{n}|{renderer_id}".encode()).hexdigest()[:16]


def sign_variations(key: bytes, rater: str, sha: str, set_id: str, n: int, now: float) -> str:
    body = json.dumps({"r": rater, "s": sha, "k": set_id, "n": n, "t": int(now)}, separators=(",", ":")).encode()
    return _b64e(body) + "." + _b64e(hmac.new(key, UPLOAD_TOKEN_DOMAIN + b"\x00" + body, hashlib.sha256).digest())


def verify_variations(key: bytes, token: str, rater: str, now: float) -> dict:
    """The token's claims; UploadError 400/403/410 for malformed, forged, another rater's or expired tokens."""
    try:
        if not isinstance(token, str) or len(token) > 1024 or token.count(".") != 1:
            raise TokenError("malformed", "variation token is malformed")
        b, s = token.split(".")
        body, sig = _b64d(b), _b64d(s)
    except (TokenError, ValueError) as exc:
        raise UploadError(400, "bad_token", "variation token is malformed") from exc
    if not hmac.compare_digest(sig, hmac.new(key, UPLOAD_TOKEN_DOMAIN + b"\x00" + body, hashlib.sha256).digest()):
        raise UploadError(403, "forged_token", "variation token was not issued by this server")
    d = json.loads(body)
    if d["r"] != rater:
        raise UploadError(403, "wrong_rater", "these variations were rendered for another rater")
    if now - d["t"] > UPLOAD_TOKEN_TTL_S:
        raise UploadError(410, "expired_token", "variation token has expired; upload the song again")
    return d


def check_request(target: float, n: int) -> None:
    if not (isinstance(target, (int, float)) and math.isfinite(target) and MIN_TARGET_S <= target <= MAX_TARGET_S):
        raise UploadError(422, "bad_upload", f"target: a length in seconds in [{MIN_TARGET_S:g}, {MAX_TARGET_S:g}], got {target!r}")
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_VARIATIONS <= n <= MAX_VARIATIONS:
        raise UploadError(422, "bad_upload", f"n: the number of variations must be a whole number from {MIN_VARIATIONS} "
                                             f"to {MAX_VARIATIONS}, got {n!r}")


def render_set(cfg: UploadConfig, sha: str, source: Path, target: float, n: int) -> tuple[str, list[dict]]:
    """Render (or reuse) the variation set of (upload, target, n, renderer); (set id, records relative to the root)."""
    sid = set_key(target, n, cfg.renderer_id)
    folder = cfg.root / sha / sid
    manifest = folder / "variations.json"
    with cfg.render_lock:
        if manifest.is_file():
            return sid, json.loads(manifest.read_text())
        folder.mkdir(parents=True, exist_ok=True)
        try:
            variations = cfg.renderer(source, float(target), int(n), folder)
        except ValueError as exc:
            raise UploadError(422, "bad_upload", str(exc)) from exc
        if len(variations) < 2:
            raise UploadError(422, "bad_upload", "the policy found fewer than two distinct edits of this song at this "
                                                 "target: nothing to choose between (try another target)")
        base = cfg.root.resolve()
        recs = []
        for v in variations:
            rec = asdict(v)
            rec["wav"] = str(Path(v.wav).resolve().relative_to(base))
            rec["edl"] = str(Path(v.edl).resolve().relative_to(base))
            recs.append(rec)
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(recs))
        os.replace(tmp, manifest)
    return sid, recs


def load_set(cfg: UploadConfig, claims: dict) -> list[dict]:
    path = cfg.root / claims["s"] / claims["k"] / "variations.json"
    if not path.is_file():
        raise UploadError(404, "not_found", "these variations are no longer stored")
    return json.loads(path.read_text())


def variation_audio(cfg: UploadConfig, claims: dict, k: int) -> Path:
    recs = load_set(cfg, claims)
    if not 1 <= k <= len(recs):
        raise UploadError(404, "not_found", f"variation {k} does not exist (1..{len(recs)})")
    try:
        return safe_audio_path(cfg.root, recs[k - 1]["wav"])
    except UnsafePathError as exc:
        raise UploadError(404, "not_found", "audio not available") from exc


def record_pick(db: FeedbackDB, cfg: UploadConfig, claims: dict, rater: str, choice: int,
                listened: list[float] | None = None) -> list[str]:
    """Store the pick as N-1 preferences (chosen = A over each other variation = B); the pair ids."""
    recs = load_set(cfg, claims)
    if not 1 <= choice <= len(recs):
        raise UploadError(422, "invalid_request", [{"field": "choice", "message": f"must lie in [1, {len(recs)}]"}])
    prefix = f"upload-{claims['s'][:16]}-{claims['k']}"
    chosen = recs[choice - 1]
    root = str(cfg.root.resolve())
    now = utcnow()
    ids = []
    with db.write() as s:
        taken = s.query(IssuedPair.id).filter(IssuedPair.rater_id == rater, IssuedPair.pair_id.like(f"{prefix}-%")).first()
        if taken is not None:
            raise UploadError(409, "already_picked", "you already picked a variation of this set")
        for j, other in enumerate(recs, start=1):
            if j == choice:
                continue
            pid = f"{prefix}-{choice}-{j}"
            edl_a, edl_b = ((cfg.root / r["edl"]).read_text() for r in (chosen, other))
            content = hashlib.sha256(json.dumps([edl_a, edl_b, chosen["actions"], other["actions"]]).encode()).hexdigest()
            if s.get(Pair, pid) is None:
                s.add(Pair(id=pid, content_sha256=content, song_id=f"upload-{claims['s'][:16]}", split=None,
                           target_ratio=float(chosen["target_ratio"]), reward_margin=abs(chosen["score"] - other["score"]),
                           wav_a=chosen["wav"], wav_b=other["wav"], edl_a=json.dumps(json.loads(edl_a), separators=(",", ":")),
                           edl_b=json.dumps(json.loads(edl_b), separators=(",", ":")), actions_a=json.dumps(chosen["actions"]),
                           actions_b=json.dumps(other["actions"]), kind_a=chosen["kind"], kind_b=other["kind"],
                           model_a=chosen["model"], model_b=other["model"], render_dir=root, active=False, added_at=now))
                s.flush()
            issue = IssuedPair(pair_id=pid, rater_id=rater, nonce=secrets.token_urlsafe(16), swapped=False, issued_at=now,
                               consumed_at=now)
            s.add(issue)
            s.flush()
            heard = listened or []
            s.add(Vote(issue_id=issue.id, pair_id=pid, rater_id=rater, choice="a", shown_choice="a", strength=None,
                       comment="", listened_a=heard[choice - 1] if len(heard) >= choice else None,
                       listened_b=heard[j - 1] if len(heard) >= j else None, created_at=now))
            ids.append(pid)
    return ids


def add_upload_routes(app, db: FeedbackDB, key: bytes, cfg: UploadConfig, *, require_rater, check_origin, read_json,
                      known, min_listen_s: float = 0.0) -> None:
    """Register the upload routes on the page's FastAPI app (``create_app(..., uploads=cfg)`` calls this with
    its own identity, origin and JSON-body helpers, so uploads get the same rules as votes). ``min_listen_s``: the
    page's listening gate, as for A/B votes: "this one is the best" unlocks once every variation was heard past its
    first seam or for ``min(min_listen_s, 0.9 x its length)`` seconds (0 = at once); the export applies the same rule."""
    @app.exception_handler(UploadError)
    async def _upload_error(_req, exc: UploadError):
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)

    @app.post("/api/upload", status_code=201)
    async def upload(request: Request, target: float = Query(...), n: int = Query(default=3)):
        check_origin(request)
        rater = require_rater(request)
        check_request(target, n)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/octet-stream" and not ctype.startswith("audio/"):
            raise UploadError(415, "unsupported_media_type", "send the audio file itself as the body "
                                                              "(application/octet-stream or audio/*)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cfg.max_bytes:
                raise UploadError(413, "too_large", f"the upload is over the {cfg.max_bytes / 2 ** 20:.0f} MiB limit")
            chunks.append(chunk)
        data = b"".join(chunks)
        await known(rater)
        sha, path = await run_in_threadpool(store_upload, cfg.root, data)
        sid, recs = await run_in_threadpool(render_set, cfg, sha, path, target, n)
        token = sign_variations(key, rater, sha, sid, len(recs), time.time())
        return JSONResponse({"token": token, "variations": public_records(recs, token, cfg.root),
                             "listen": {"min_listen_s": min_listen_s, "seam_margin_s": SEAM_MARGIN_S,
                                        "heard_fraction": HEARD_FRACTION}}, status_code=201)

    @app.get("/api/variation/{token}/{k}")
    async def variation(request: Request, token: str, k: int):
        rater = require_rater(request)
        claims = verify_variations(key, token, rater, time.time())
        path = await run_in_threadpool(variation_audio, cfg, claims, k)
        return FileResponse(path, media_type="audio/wav", headers={"cache-control": "private, max-age=3600"})

    @app.post("/api/upload/pick", status_code=201)
    async def pick(request: Request):
        check_origin(request)
        body = await read_json(request, PickIn)
        rater = require_rater(request)
        claims = verify_variations(key, body.token, rater, time.time())
        ids = await run_in_threadpool(record_pick, db, cfg, claims, rater, body.choice, body.listened)
        return JSONResponse({"ok": True, "preferences": len(ids), "pairs": ids}, status_code=201)


def public_records(recs: list[dict], token: str, root: Path | None = None) -> list[dict]:
    """What the page gets per variation; with ``root``, also its first seam in output seconds (None: no seam), the
    listening gate's landmark (read from the stored EDL)."""
    out = []
    for k, r in enumerate(recs, start=1):
        rec = {"k": k, "audio": f"/api/variation/{token}/{k}", "score": r["score"], "duration": r["duration"]}
        if root is not None:
            edl = root / r["edl"]
            rec["first_seam"] = edl_first_seam(edl.read_text()) if edl.is_file() else None
        out.append(rec)
    return out


__all__ = ["UploadConfig", "UploadError", "Variation", "VariationRenderer", "DEFAULT_MAX_UPLOAD_BYTES", "MAX_VARIATIONS",
           "MIN_VARIATIONS", "add_upload_routes", "record_pick", "render_set", "store_upload", "sniff_audio", "public_records"]
