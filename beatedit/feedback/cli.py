"""``beatedit feedback serve|export|demo`` — argparse wiring the main CLI registers with
``add_feedback_cli(subparsers)``; also runnable as ``python -m beatedit.feedback ...``.

Each command reports a bad setting, folder or database as one ``error:`` line and exit code 2,
whichever entry point ran it (the ``beatedit`` console script does not catch exceptions)."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import sys
from pathlib import Path
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError

from .db import DEFAULT_DB_URL
from .queue import DEFAULT_HOLD_S, DEFAULT_TOKEN_TTL_S, MAX_DURATION_S
from .listening_gate import DEFAULT_MIN_LISTEN_S, DEFAULT_MIN_LISTENED_S, MAX_MIN_LISTEN_S
from .security import DEFAULT_SECRET_ENV

DEFAULT_EXPORT = "data/feedback/human_pairs.parquet"


def _clean_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the errors a user can cause (bad folder, URL, file, setting) into ``error: ...`` + 2."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args) or 0)
        except (SQLAlchemyError, ImportError) as exc:
            print(f"error: --db {getattr(args, 'db', '')}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        except (ValueError, OSError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
        return 2

    return run


def _seconds(text: str) -> float:
    """argparse type: a finite number of seconds in [1, one year]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or not 1.0 <= value <= MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds in [1, {MAX_DURATION_S}], got {text!r}")
    return value


def _listen_seconds(text: str) -> float:
    """argparse type: a finite number of seconds in [0, 600]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= MAX_MIN_LISTEN_S:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds in [0, {MAX_MIN_LISTEN_S:g}], got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def default_listening_set(params: str) -> Path:
    """The evaluate stage's listening set under ``params`` (``StagePaths.listening_set``), or
    ValueError saying how to make one."""
    from beatedit.config import Config, load_config
    from beatedit.paths import StagePaths

    from .queue import MANIFEST_NAME

    cfg = load_config(params) if Path(params).is_file() else Config()
    where = StagePaths.from_config(cfg).listening_set
    if not (where / MANIFEST_NAME).is_file():
        raise ValueError(f"{where}: no listening set yet (the evaluate stage writes it: `dvc repro evaluate` or `beatedit run evaluate`, "
                         f"with evaluate.listening_songs > 0); or pass --renders DIR (e.g. from `beatedit feedback demo DIR`)")
    return where


@_clean_errors
def _serve(args: argparse.Namespace) -> int:
    from .app import serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.renders is None:
        args.renders = str(default_listening_set(getattr(args, "params", None) or "params.yaml"))
    serve(args.renders, args.db, host=args.host, port=args.port, rater_tokens=args.rater_tokens, secret_env=args.secret,
          allow_remote_open=args.allow_remote_open, max_votes_per_pair=args.max_votes_per_pair, token_ttl_s=args.token_ttl,
          hold_s=args.hold, uploads=upload_config(args), min_listen_s=args.min_listen)
    return 0


def upload_config(args: argparse.Namespace):
    """``--uploads DIR``: users' own songs on the page. The variation renderer needs the policy and the reward
    model, so it is injected by the ``beatedit`` CLI (``args.make_variation_renderer``, set by its serve hook)."""
    if not getattr(args, "uploads", None):
        return None
    from pathlib import Path

    from .uploads import UploadConfig

    factory = getattr(args, "make_variation_renderer", None)
    if factory is None:
        raise ValueError("--uploads: rendering variations needs the policy and the reward model; start the page with "
                         "`beatedit feedback serve` (not `python -m beatedit.feedback`)")
    if not (math.isfinite(args.max_upload_mb) and 0.01 <= args.max_upload_mb <= 16384):
        raise ValueError(f"--max-upload-mb: must lie in [0.01, 16384], got {args.max_upload_mb}")
    root = Path(args.uploads)
    if root.exists() and not root.is_dir():
        raise ValueError(f"--uploads {root}: exists and is not a folder")
    renderer, renderer_id = factory(args)
    return UploadConfig(root, renderer, renderer_id=renderer_id, max_bytes=int(args.max_upload_mb * 2 ** 20))


@_clean_errors
def _export(args: argparse.Namespace) -> int:
    from .export import export_votes

    rep = export_votes(args.db, args.output, min_listened_s=args.min_listened)
    print(json.dumps({"path": str(rep.path), "exported": rep.exported, "skipped": rep.skipped, "dropped_unheard": rep.dropped_unheard,
                      "min_listened_s": rep.min_listened_s, "added": rep.added, "total": rep.total,
                      "upload_analyses": rep.analyses}))
    return 0


@_clean_errors
def _demo(args: argparse.Namespace) -> int:
    from .demo import build_demo_renders

    recs = build_demo_renders(args.dir, n_songs=args.songs)
    print(f"wrote {len(recs)} pairs to {args.dir}/pairs.json")
    return 0


def add_feedback_cli(subparsers, serve_hook: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.ArgumentParser:
    """Register ``feedback {serve,export,demo}`` on an argparse subparsers object. Each leaf sets
    ``args.func(args) -> int`` (exit code). ``serve_hook(serve_parser)``: the app layer adds its options
    there (the models behind ``--uploads``, ``app/cli.py``)."""
    fb = subparsers.add_parser("feedback", help="A/B listening page for human preferences, and their export")
    sub = fb.add_subparsers(dest="feedback_cmd", required=True)

    s = sub.add_parser("serve", formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="serve the A/B page (loopback by default)")
    s.add_argument("--renders", default=None,
                   help="render folder holding pairs.json and the WAV/EDL renders (default: the evaluate stage's listening set, "
                        "<evaluate.out_dir>/listening under --params)")
    s.add_argument("--params", default=argparse.SUPPRESS,
                   help="params file whose evaluate.out_dir locates the default listening set (default ./params.yaml)")
    s.add_argument("--db", default=DEFAULT_DB_URL, help=f"SQLAlchemy URL of the vote store (default {DEFAULT_DB_URL})")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback unless rater tokens are given)")
    s.add_argument("--port", type=int, default=8765, help="port to listen on")
    s.add_argument("--rater-tokens", default=None, help="file of 'rater_id:token' lines or a JSON object; sign-in required when given")
    s.add_argument("--secret", default=DEFAULT_SECRET_ENV, metavar="ENV", help=f"environment variable holding the HMAC secret (default {DEFAULT_SECRET_ENV})")
    s.add_argument("--max-votes-per-pair", type=_positive_int, default=None, help="stop issuing a pair once it has this many live ratings")
    s.add_argument("--token-ttl", type=_seconds, default=DEFAULT_TOKEN_TTL_S, help="seconds an issued pair stays valid (1 s to a year)")
    s.add_argument("--hold", type=_seconds, default=DEFAULT_HOLD_S,
                   help="seconds an unvoted issue counts as a live rating for --max-votes-per-pair (default 900)")
    s.add_argument("--min-listen", type=_listen_seconds, default=DEFAULT_MIN_LISTEN_S, metavar="S",
                   help="the page enables a vote once each side was heard past its first seam or for S seconds; 0 turns the gate off")
    s.add_argument("--allow-remote-open", action="store_true", help="allow a non-loopback host without rater tokens (not recommended)")
    s.add_argument("--uploads", default=None, metavar="DIR",
                   help="let users upload their own songs, get variations and pick the best; uploads are stored in DIR "
                        "(content-addressed); off when not given")
    s.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload accepted, in MiB (with --uploads)")
    s.set_defaults(func=_serve)
    if serve_hook is not None:
        serve_hook(s)

    e = sub.add_parser("export", formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="export votes to the preference table (merges idempotently)")
    e.add_argument("--db", default=DEFAULT_DB_URL, help="SQLAlchemy URL of the vote store to export (must exist)")
    e.add_argument("-o", "--output", default=DEFAULT_EXPORT, help="preference table (parquet) the votes are merged into")
    e.add_argument("--min-listened", type=_listen_seconds, default=DEFAULT_MIN_LISTENED_S, metavar="S",
                   help="drop a vote when either side was heard for less than S seconds (capped at 90%% of the side's length); 0 keeps all")
    e.set_defaults(func=_export)

    d = sub.add_parser("demo", formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="write a tiny demo render folder (sine tones) to try the page")
    d.add_argument("dir", help="folder to write the demo renders and pairs.json into")
    d.add_argument("--songs", type=int, default=3, help="number of demo songs (two pairs each)")
    d.set_defaults(func=_demo)
    return fb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beatedit.feedback")
    add_feedback_cli(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["feedback", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
