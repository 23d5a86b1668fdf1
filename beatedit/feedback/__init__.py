"""Human feedback: an A/B listening page whose votes become reward-model training data.

- ``queue``: render-folder manifests (``write_pair_manifest``, ``pair_from_renders``), the
  active-learning queue, issuing and consuming votes
- ``db``: SQLAlchemy models, engine (SQLite WAL by default), versioned migrations
- ``app``: the FastAPI app (``create_app``, ``serve``, ``ServerThread``) and the page in ``static/``
- ``export``: ``export_votes(db_url, out_parquet)`` -> the preference table (source="human")
- ``security``: signed issue tokens, rater cookies / tokens, safe audio paths
- ``cli``: ``add_feedback_cli(subparsers)`` -> ``feedback serve`` / ``feedback export``

Never imports prefect, mlflow or dvc. See docs/feedback.md.
"""

from .export import export_votes
from .queue import PairSpec, load_manifest, pair_from_renders, write_pair_manifest

__all__ = ["PairSpec", "export_votes", "load_manifest", "pair_from_renders", "write_pair_manifest",
           "create_app", "serve", "add_feedback_cli"]


def __getattr__(name):  # the web stack is imported only when asked for
    if name in ("create_app", "serve", "ServerThread"):
        from . import app

        return getattr(app, name)
    if name == "add_feedback_cli":
        from .cli import add_feedback_cli

        return add_feedback_cli
    raise AttributeError(name)
