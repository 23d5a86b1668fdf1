"""The reward model as an MLflow pyfunc, logged as code (``mlflow.pyfunc.log_model(python_model=<this file>)``).

MLflow executes this file when it loads the model (``beatedit`` and ``models`` come with the model as code
paths); logging it as code rather than as a pickled object is what MLflow asks for (no cloudpickle).
Input: a DataFrame with ``features`` ([n_beats][125]), ``actions`` ([n_beats] action ids) and optionally
``target_ratio``; output: one score per row (``params={"normalized": True}`` for the RL-normalised score).
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd


class RewardPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from models.reward_model import load_reward_model

        self.model, self.normalizer, _ = load_reward_model(context.artifacts["checkpoint"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        # pd.DataFrame: the logged signature (variable-length arrays) validates the input, not the type hint
        from models.reward_model import score_batch

        items = []
        for r in pd.DataFrame(model_input).to_dict(orient="records"):
            target = r.get("target_ratio")
            target = None if target is None or target != target else float(target)  # optional: the model has an "unknown target" token
            features = np.stack([np.asarray(beat, dtype=np.float32) for beat in r["features"]])
            items.append((features, np.asarray(r["actions"], dtype=np.int64), target))
        scores = score_batch(self.model, items, "cpu")
        if params and params.get("normalized"):
            scores = self.normalizer(scores)
        return scores


mlflow.models.set_model(RewardPyfunc())
