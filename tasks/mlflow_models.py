"""MLflow pyfunc wrappers: the reward model and the policy as models a client can load and call.

MLflow 3's default torch flavour exports with torch.export and fixes input shapes;
both models take variable-length songs, so they are logged as pyfunc models around
the project's own checkpoint format (which also carries the feature-schema check).

Reward model input: a DataFrame (or list of dicts) with ``features`` ([n_beats][125]),
``actions`` ([n_beats] action ids) and optionally ``target_ratio``; output: one score per row (``params={"normalized": True}``
for the RL-normalised score).

Policy input: a DataFrame with ``target`` and either ``analysis_path`` (a features
``.npz``) or ``audio_path`` (any audio file: stems -> features are computed here);
output: a DataFrame with ``song_id``, ``edl`` (JSON), ``duration``, ``decisions``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from tasks.telemetry import disable_telemetry

disable_telemetry()

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
CODE_PATHS = [str(REPO_ROOT / "beatedit"), str(REPO_ROOT / "models")]
PIP_REQUIREMENTS = ["torch==2.13.0", "numpy>=2.0,<2.6", "pandas>=2.2,<3.2", "librosa>=0.11,<1.1", "soundfile>=0.12,<0.15",
                    "scipy>=1.13,<1.19", "pyyaml>=6,<7", "gymnasium>=1.0,<1.5", "pyarrow>=15,<27"]
STEM_CACHE_ENV = "BEATEDIT_STEM_CACHE"


def _rows(model_input: Any) -> list[dict]:
    if isinstance(model_input, pd.DataFrame):
        return model_input.to_dict(orient="records")
    if isinstance(model_input, dict):
        return [model_input]
    return list(model_input)


class RewardPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from models.reward_model import load_reward_model

        self.model, self.normalizer, _ = load_reward_model(context.artifacts["checkpoint"])

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would validate against them
        from models.reward_model import score_batch

        items = [(np.asarray(r["features"], dtype=np.float32), np.asarray(r["actions"], dtype=np.int64), r.get("target_ratio"))
                 for r in _rows(model_input)]  # target_ratio optional: the model has an "unknown target" token
        scores = score_batch(self.model, items, "cpu")
        if params and params.get("normalized"):
            scores = self.normalizer(scores)
        return scores


class PolicyPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from beatedit.config import load_config
        from models.policy import load_policy

        self.policy, _ = load_policy(context.artifacts["checkpoint"])
        self.cfg = load_config(context.artifacts["params"])

    def _song(self, row: dict) -> Any:
        from beatedit.audio.song import SongAnalysis

        if row.get("analysis_path"):
            return SongAnalysis.load(row["analysis_path"])
        if row.get("audio_path"):
            from beatedit.audio.analysis import analyse_song
            from beatedit.audio.stems import StemCache

            cache = Path(os.environ.get(STEM_CACHE_ENV) or Path(tempfile.gettempdir()) / "beatedit-stem-cache")
            return analyse_song(Path(row["audio_path"]), self.cfg, StemCache(cache))
        raise ValueError("each row needs 'analysis_path' (features .npz) or 'audio_path' (an audio file)")

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would validate against them
        from models.policy_edit import edit_song

        out = []
        for row in _rows(model_input):
            song = self._song(row)
            edit = edit_song(self.policy, song, float(row["target"]), self.cfg.env, crossfade_ms=self.cfg.render.crossfade_ms)
            out.append({"song_id": song.song_id, "edl": edit.edl.to_json(), "duration": edit.edl.duration, "decisions": list(map(int, edit.decisions))})
        return pd.DataFrame(out)


def log_reward_model(checkpoint: str | Path, name: str = "reward_model") -> str:
    info = mlflow.pyfunc.log_model(name=name, python_model=RewardPyfunc(), artifacts={"checkpoint": str(checkpoint)},
                                   code_paths=CODE_PATHS, pip_requirements=PIP_REQUIREMENTS)
    return info.model_uri


def log_policy_model(checkpoint: str | Path, params_path: str | Path, name: str = "policy") -> str:
    info = mlflow.pyfunc.log_model(name=name, python_model=PolicyPyfunc(), artifacts={"checkpoint": str(checkpoint), "params": str(params_path)},
                                   code_paths=CODE_PATHS, pip_requirements=PIP_REQUIREMENTS)
    return info.model_uri
