"""MLflow pyfunc models: the reward model and the policy as models a client can load and call.

MLflow 3's default torch flavour exports with torch.export and fixes input shapes;
both models take variable-length songs, so they are logged as pyfunc models around
the project's own checkpoint format (which also carries the feature-schema check).
Each is logged *as code* (``tasks/pyfunc_reward.py``, ``tasks/pyfunc_policy.py``: MLflow executes
the file on load, nothing is pickled) with a signature whose arrays have no fixed length (a song
has any number of beats) and, where one is given, an input example.

Reward model input: ``features`` ([n_beats][125]), ``actions`` ([n_beats] action ids) and optionally
``target_ratio``; output: one score per row (``params={"normalized": True}`` for the RL-normalised score).

Policy input: ``target`` and either ``analysis_path`` (a features ``.npz``) or ``audio_path`` (any
audio file: stems -> features are computed here); output: ``song_id``, ``edl`` (JSON), ``duration``,
``decisions``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.telemetry import disable_telemetry

disable_telemetry()

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.models import ModelSignature  # noqa: E402
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema  # noqa: E402

from tasks.pyfunc_policy import STEM_CACHE_ENV, PolicyPyfunc  # noqa: E402,F401 - re-exported: versions pickled before models-as-code load by this name
from tasks.pyfunc_reward import RewardPyfunc  # noqa: E402,F401

REPO_ROOT = Path(__file__).resolve().parents[1]
CODE_PATHS = [str(REPO_ROOT / "beatedit"), str(REPO_ROOT / "models")]
REWARD_CODE = REPO_ROOT / "tasks" / "pyfunc_reward.py"
POLICY_CODE = REPO_ROOT / "tasks" / "pyfunc_policy.py"
PIP_REQUIREMENTS = ["torch==2.13.0", "numpy>=2.0,<2.6", "pandas>=2.2,<3.2", "librosa>=0.11,<1.1", "soundfile>=0.12,<0.15",
                    "scipy>=1.13,<1.19", "pyyaml>=6,<7", "gymnasium>=1.0,<1.5", "pyarrow>=15,<27"]

#: arrays without a fixed length: a song has any number of beats
REWARD_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(Array(Array("double")), "features"), ColSpec(Array("long"), "actions"),
                   ColSpec("double", "target_ratio", required=False)]),
    outputs=Schema([ColSpec("double", "score")]),
    params=ParamSchema([ParamSpec("normalized", "boolean", False)]),
)
POLICY_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("double", "target"), ColSpec("string", "analysis_path", required=False),
                   ColSpec("string", "audio_path", required=False)]),
    outputs=Schema([ColSpec("string", "song_id"), ColSpec("string", "edl"), ColSpec("double", "duration"),
                    ColSpec(Array("long"), "decisions")]),
)


def reward_input_example(n_features: int, lengths: tuple[int, ...] = (4, 6)) -> pd.DataFrame:
    """Two edits of different lengths (zeros: the shape is the point), one with and one without a target."""
    return pd.DataFrame([{"features": [[0.0] * n_features] * n, "actions": [0] * n, "target_ratio": t}
                         for n, t in zip(lengths, (0.6, None))])


def log_reward_model(checkpoint: str | Path, name: str = "reward_model", n_features: int | None = None) -> str:
    if n_features is None:
        from beatedit.audio.schema import N_FEATURES

        n_features = N_FEATURES
    info = mlflow.pyfunc.log_model(name=name, python_model=str(REWARD_CODE), artifacts={"checkpoint": str(checkpoint)},
                                   code_paths=CODE_PATHS, pip_requirements=PIP_REQUIREMENTS, signature=REWARD_SIGNATURE,
                                   input_example=(reward_input_example(n_features), {"normalized": False}))
    return info.model_uri


def log_policy_model(checkpoint: str | Path, params_path: str | Path, name: str = "policy",
                     example_features: str | Path | None = None, example_target: float = 0.6) -> str:
    """``example_features``: a features ``.npz`` to show as the input example (relative paths stay relative)."""
    example: Any = None
    if example_features is not None:
        example = pd.DataFrame([{"target": float(example_target), "analysis_path": str(example_features)}])
    info = mlflow.pyfunc.log_model(name=name, python_model=str(POLICY_CODE), artifacts={"checkpoint": str(checkpoint), "params": str(params_path)},
                                   code_paths=CODE_PATHS, pip_requirements=PIP_REQUIREMENTS, signature=POLICY_SIGNATURE,
                                   input_example=example)
    return info.model_uri
