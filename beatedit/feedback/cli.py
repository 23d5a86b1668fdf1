"""``beatedit feedback serve|export|demo`` — argparse wiring the main CLI registers with
``add_feedback_cli(subparsers)``; also runnable as ``python -m beatedit.feedback ...``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .db import DEFAULT_DB_URL
from .security import DEFAULT_SECRET_ENV

DEFAULT_EXPORT = "data/feedback/human_pairs.parquet"


def _serve(args: argparse.Namespace) -> int:
    from .app import serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    serve(args.renders, args.db, host=args.host, port=args.port, rater_tokens=args.rater_tokens, secret_env=args.secret,
          allow_remote_open=args.allow_remote_open, max_votes_per_pair=args.max_votes_per_pair, token_ttl_s=args.token_ttl)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_votes

    rep = export_votes(args.db, args.output)
    print(json.dumps({"path": str(rep.path), "exported": rep.exported, "skipped": rep.skipped, "added": rep.added, "total": rep.total}))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import build_demo_renders

    recs = build_demo_renders(args.dir, n_songs=args.songs)
    print(f"wrote {len(recs)} pairs to {args.dir}/pairs.json")
    return 0


def add_feedback_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``feedback {serve,export,demo}`` on an argparse subparsers object. Each leaf sets
    ``args.func(args) -> int`` (exit code)."""
    fb = subparsers.add_parser("feedback", help="A/B listening page for human preferences, and their export")
    sub = fb.add_subparsers(dest="feedback_cmd", required=True)

    s = sub.add_parser("serve", help="serve the A/B page (loopback by default)")
    s.add_argument("--renders", required=True, help="render folder holding pairs.json and the WAV/EDL renders")
    s.add_argument("--db", default=DEFAULT_DB_URL, help=f"SQLAlchemy URL of the vote store (default {DEFAULT_DB_URL})")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--rater-tokens", default=None, help="file of 'rater_id:token' lines or a JSON object; sign-in required when given")
    s.add_argument("--secret", default=DEFAULT_SECRET_ENV, metavar="ENV", help=f"environment variable holding the HMAC secret (default {DEFAULT_SECRET_ENV})")
    s.add_argument("--max-votes-per-pair", type=int, default=None, help="stop issuing a pair once it has this many live ratings")
    s.add_argument("--token-ttl", type=float, default=24 * 3600, help="seconds an issued pair stays valid")
    s.add_argument("--allow-remote-open", action="store_true", help="allow a non-loopback host without rater tokens (not recommended)")
    s.set_defaults(func=_serve)

    e = sub.add_parser("export", help="export votes to the preference table (merges idempotently)")
    e.add_argument("--db", default=DEFAULT_DB_URL)
    e.add_argument("-o", "--output", default=DEFAULT_EXPORT)
    e.set_defaults(func=_export)

    d = sub.add_parser("demo", help="write a tiny demo render folder (sine tones) to try the page")
    d.add_argument("dir")
    d.add_argument("--songs", type=int, default=3)
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
