"""Security primitives of the feedback server: signed issue tokens, rater identity, safe paths.

Nothing here touches the network or the database; everything is pure and unit-testable.

* **Issue tokens** bind one issued pair to one rater: ``base64url(payload) "." base64url(HMAC-SHA256)``
  where the payload is compact JSON ``{"v":1,"i":issue_id,"p":pair_id,"r":rater,"n":nonce,"t":issued_at}``
  (the A/B presentation swap is *not* in the token — it stays server-side, so the page stays blind).
  A token whose MAC does not verify (forged, edited, signed with another secret) is rejected before
  the database is consulted; a token that verifies is then matched against the stored issue row
  (same pair, rater and nonce, not consumed) — that is what makes replays fail.
* **Rater cookies** carry ``rater_id "." HMAC(rater_id)`` so a browser cannot claim another rater's id.
* **Rater tokens** (optional) are bearer secrets from a file; only their SHA-256 is kept in memory.
* **Log scrubbing**: rater tokens (``?token=``) and issue tokens (``/api/audio/<token>/``) are
  bearer secrets, so ``AccessLogScrubber`` blanks them in every log line the server writes.
* **Safe text**: ``unsafe_char`` finds control, bidi-override and line-separator characters that
  could disguise a comment when someone reads it later (DEL, C0/C1, U+202E, U+2066-2069, ...).
* **Safe audio paths**: a relative path from a manifest is resolved inside the render folder; absolute
  paths, ``..``, symlinks leaving the folder, non-``.wav`` files and non-regular files are refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

TOKEN_VERSION = 1
RATER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
PAIR_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_TOKEN_CHARS = 1024
DEFAULT_SECRET_ENV = "BEATEDIT_FEEDBACK_SECRET"
MIN_SECRET_BYTES = 16
MAX_ISSUE_ID = 2**63 - 1  # a signed 64-bit row id: larger ids cannot exist in any database
MAX_ISSUED_AT = 2**40  # unix seconds (year ~36800): bounds arithmetic on forged-but-signed times


class TokenError(ValueError):
    """A token that is malformed, forged or expired. ``.reason`` in {malformed, signature, expired}."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class UnsafePathError(ValueError):
    """A path that would leave the render folder, is not a .wav, or is not a regular file."""


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise TokenError("malformed", "token is not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def coerce_secret(secret: str | bytes) -> bytes:
    """The HMAC key as bytes; refuses short secrets (they make forgery practical)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"feedback secret must be at least {MIN_SECRET_BYTES} bytes, got {len(key)}")
    return key


def secret_from_env(env_name: str = DEFAULT_SECRET_ENV) -> tuple[bytes, bool]:
    """(secret, persistent). Reads the named environment variable; when unset, a random secret
    is generated for this process only (issued tokens then do not survive a restart, but the
    server re-signs outstanding issues on the next request, so nothing is lost)."""
    val = os.environ.get(env_name)
    if val:
        return coerce_secret(val), True
    return secrets.token_bytes(32), False


@dataclass(frozen=True)
class IssueClaims:
    issue_id: int
    pair_id: str
    rater: str
    nonce: str
    issued_at: int  # unix seconds

    def payload(self) -> bytes:
        d = {"v": TOKEN_VERSION, "i": self.issue_id, "p": self.pair_id, "r": self.rater, "n": self.nonce, "t": self.issued_at}
        return json.dumps(d, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _mac(key: bytes, domain: bytes, msg: bytes) -> bytes:
    return hmac.new(key, domain + b"\x00" + msg, hashlib.sha256).digest()


def sign_issue(key: bytes, claims: IssueClaims) -> str:
    body = claims.payload()
    return _b64e(body) + "." + _b64e(_mac(key, b"beatedit-issue-v1", body))


def verify_issue(key: bytes, token: str, *, max_age_s: float | None = None, now: float | None = None) -> IssueClaims:
    """Parse and authenticate a token; raises TokenError. Does not check the database."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise TokenError("malformed", "issue token is malformed")
    body_b64, sig_b64 = token.split(".")
    body, sig = _b64d(body_b64), _b64d(sig_b64)
    if not hmac.compare_digest(sig, _mac(key, b"beatedit-issue-v1", body)):
        raise TokenError("signature", "issue token signature is invalid (not issued by this server)")
    try:
        d = json.loads(body)
        if d.get("v") != TOKEN_VERSION:
            raise TokenError("malformed", f"issue token version {d.get('v')!r} is not supported")
        i, t, p, r, n = d["i"], d["t"], d["p"], d["r"], d["n"]
        # Signed does not mean sane (a leaked or test secret): bound every field before it reaches SQL.
        if type(i) is not int or not 1 <= i <= MAX_ISSUE_ID or type(t) is not int or not 0 <= t <= MAX_ISSUED_AT:
            raise ValueError("issue id or time out of range")
        if not all(isinstance(x, str) and 0 < len(x) <= 256 for x in (p, r, n)):
            raise ValueError("pair, rater or nonce is not a short string")
        claims = IssueClaims(issue_id=i, pair_id=p, rater=r, nonce=n, issued_at=t)
    except TokenError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # signed by us but unreadable: still refuse
        raise TokenError("malformed", f"issue token payload is malformed: {exc}") from exc
    if max_age_s is not None and (now if now is not None else time.time()) - claims.issued_at > max_age_s:
        raise TokenError("expired", "issue token has expired; load the next pair again")
    return claims


def sign_rater(key: bytes, rater: str) -> str:
    return rater + "." + _b64e(_mac(key, b"beatedit-rater-v1", rater.encode("utf-8")))


def verify_rater(key: bytes, cookie: str | None) -> str | None:
    """The rater id from a signed cookie, or None when absent / tampered."""
    if not cookie or len(cookie) > 256 or "." not in cookie:
        return None
    rater, sig = cookie.rsplit(".", 1)
    if not RATER_ID_RE.match(rater):
        return None
    try:
        ok = hmac.compare_digest(_b64d(sig), _mac(key, b"beatedit-rater-v1", rater.encode("utf-8")))
    except (TokenError, ValueError):
        return None
    return rater if ok else None


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def validate_rater_id(rater: str) -> str:
    if not isinstance(rater, str) or not RATER_ID_RE.match(rater):
        raise ValueError(f"invalid rater id {rater!r}: 1-64 chars of letters, digits, '_', '.', '@', '-', starting with a letter or digit")
    return rater


# --- text and logs --------------------------------------------------------------------------------
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def unsafe_char(text: str, allowed: str = "\n\t\r") -> str | None:
    """The first character of ``text`` a stored comment must not hold: C0/DEL/C1 controls (category
    Cc), lone surrogates, line/paragraph separators and bidi overrides/isolates/marks (they can
    reorder what a reader sees). Emoji joiners and other format characters stay allowed."""
    for ch in text:
        if ch in allowed:
            continue
        if ch in BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            return ch
    return None


_TOKEN_QUERY = re.compile(r"(?i)([?&](?:token|access_token)=)[^&#\s\"]*")
_AUDIO_PATH = re.compile(r"(/api/(?:audio|variation)/)[^/\s\"?#]+")  # issue tokens and variation tokens


def scrub_secrets(text: str) -> str:
    """``text`` with rater tokens in query strings and issue tokens in audio paths blanked."""
    return _AUDIO_PATH.sub(r"\1[redacted]", _TOKEN_QUERY.sub(r"\1[redacted]", text))


class AccessLogScrubber(logging.Filter):
    """A logging filter (on uvicorn's handlers) that blanks bearer secrets in message and args."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = scrub_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(scrub_secrets(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: scrub_secrets(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


# --- rater tokens -------------------------------------------------------------------------------
def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def load_rater_tokens(path: str | Path) -> dict[str, str]:
    """Read a rater-token file -> {rater_id: token}.

    Formats: a JSON object ``{"alice": "token", ...}``, or text lines ``alice:token`` / ``alice token``
    (``#`` comments and blank lines ignored). Tokens must be >= 16 characters and unique."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{p}: cannot read rater-token file: {exc}") from exc
    out: dict[str, str] = {}
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: rater-token file is not valid JSON: {exc}") from exc
        items = list(raw.items())
    else:
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = re.split(r"[:\s]+", line, maxsplit=1)
            if len(parts) != 2:
                raise ValueError(f"{p}:{n}: expected 'rater_id:token', got {line[:40]!r}")
            items.append((parts[0], parts[1].strip()))
    for rater, token in items:
        try:
            validate_rater_id(rater)
        except ValueError as exc:
            raise ValueError(f"{p}: {exc}") from exc
        if not isinstance(token, str) or len(token) < 16:
            raise ValueError(f"{p}: token for rater {rater!r} must be a string of at least 16 characters")
        if rater in out:
            raise ValueError(f"{p}: rater {rater!r} listed twice")
        out[rater] = token
    if len(set(out.values())) != len(out):
        raise ValueError(f"{p}: two raters share a token")
    if not out:
        raise ValueError(f"{p}: no rater tokens")
    return out


# --- filesystem -----------------------------------------------------------------------------------
def safe_audio_path(root: str | Path, rel: str) -> Path:
    """Resolve ``rel`` inside ``root``; raises UnsafePathError unless it is a regular ``.wav`` file
    whose fully resolved path (symlinks followed) stays inside the resolved root."""
    if not isinstance(rel, str) or not rel or len(rel) > 512 or "\x00" in rel or "\\" in rel:
        raise UnsafePathError(f"invalid audio path {rel!r}")
    pure = Path(rel)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts) or rel.startswith("~"):
        raise UnsafePathError(f"audio path {rel!r} must be relative to the render folder, without '..'")
    if pure.suffix.lower() != ".wav":
        raise UnsafePathError(f"audio path {rel!r} is not a .wav file")
    base = Path(root).resolve(strict=True)
    target = (base / pure).resolve(strict=False)
    if not target.is_relative_to(base):
        raise UnsafePathError(f"audio path {rel!r} resolves outside the render folder (symlink?)")
    if not target.is_file():
        raise UnsafePathError(f"audio path {rel!r} does not exist or is not a regular file")
    return target


def safe_child_path(root: str | Path, rel: str, suffix: str) -> Path:
    """Like safe_audio_path for another suffix (EDL JSON next to a render)."""
    if not isinstance(rel, str) or not rel or len(rel) > 512 or "\x00" in rel or "\\" in rel:
        raise UnsafePathError(f"invalid path {rel!r}")
    pure = Path(rel)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts):
        raise UnsafePathError(f"path {rel!r} must be relative to the render folder, without '..'")
    if not rel.lower().endswith(suffix):
        raise UnsafePathError(f"path {rel!r} does not end with {suffix}")
    base = Path(root).resolve(strict=True)
    target = (base / pure).resolve(strict=False)
    if not target.is_relative_to(base) or not target.is_file():
        raise UnsafePathError(f"path {rel!r} is outside the render folder or not a regular file")
    return target


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
