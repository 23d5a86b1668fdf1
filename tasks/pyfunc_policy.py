"""The policy as an MLflow pyfunc, logged as code (``mlflow.pyfunc.log_model(python_model=<this file>)``).

MLflow executes this file when it loads the model (``beatedit`` and ``models`` come with the model as code
paths). Input: a DataFrame with ``target`` and either ``analysis_path`` (a features ``.npz``) or
``audio_path`` (any audio file: stems -> features are computed here); output: a DataFrame with
``song_id``, ``edl`` (JSON), ``duration``, ``decisions``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

STEM_CACHE_ENV = "BEATEDIT_STEM_CACHE"


class PolicyPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from beatedit.config import load_config
        from models.policy import load_policy

        self.policy, _ = load_policy(context.artifacts["checkpoint"])
        self.cfg = load_config(context.artifacts["params"])

    def _song(self, row: dict) -> Any:
        from beatedit.audio.song import SongAnalysis

        if isinstance(row.get("analysis_path"), str) and row["analysis_path"]:
            return SongAnalysis.load(row["analysis_path"])
        if isinstance(row.get("audio_path"), str) and row["audio_path"]:
            from beatedit.audio.analysis import analyse_song
            from beatedit.audio.stems import StemCache

            cache = Path(os.environ.get(STEM_CACHE_ENV) or Path(tempfile.gettempdir()) / "beatedit-stem-cache")
            return analyse_song(Path(row["audio_path"]), self.cfg, StemCache(cache))
        raise ValueError("each row needs 'analysis_path' (features .npz) or 'audio_path' (an audio file)")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        # pd.DataFrame: the logged signature validates the input, not the type hint
        from models.policy_edit import edit_song

        out = []
        for row in pd.DataFrame(model_input).to_dict(orient="records"):
            song = self._song(row)
            edit = edit_song(self.policy, song, float(row["target"]), self.cfg.env, crossfade_ms=self.cfg.render.crossfade_ms)
            out.append({"song_id": song.song_id, "edl": edit.edl.to_json(), "duration": edit.edl.duration, "decisions": list(map(int, edit.decisions))})
        return pd.DataFrame(out)


mlflow.models.set_model(PolicyPyfunc())
