"""PPO's resumable training state: what a ``ckpt_*.pt`` carries besides the policy weights.

Resuming must continue a run exactly (same metrics and weights as an uninterrupted run on
CPU with the same seed), so the state holds everything the loop mutates: optimizer, the
RNG streams (torch, numpy, python, the action-sampling generator), the vectorised env's
episode state, the next observation, the KL coefficient, counters and histories. It is
stored as a plain dict under ``extra["resume"]`` of a policy checkpoint (the same keys as
before this dataclass existed, so older checkpoints still resume).
"""

from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from beatedit.config import RLHFConfig
from beatedit.editing.env import VecBeatEditEnv

from models.checkpoint import CheckpointError, load_checkpoint
from models.policy import POLICY_KIND, ActorCritic, save_policy

#: RLHFConfig fields that may differ between a checkpoint and the resumed run (they do not change training).
RESUME_MAY_CHANGE = ("eval_interval", "checkpoint_every", "n_eval_songs", "eval_targets")
#: VecBeatEditEnv's mutable episode state (everything else is derived from the songs and config).
ENV_STATE_FIELDS = ("song", "target_ratio", "target_samples", "cursor", "out_samples", "last", "loops", "done", "hist",
                    "decisions", "t", "illegal_actions", "_started")


# ----------------------------------------------------------------------------- env and RNG snapshots
def env_state(env: VecBeatEditEnv) -> dict:
    """The vectorised env's episode state + RNG."""
    return {"fields": {k: copy.deepcopy(getattr(env, k)) for k in ENV_STATE_FIELDS if hasattr(env, k)},
            "rng": copy.deepcopy(env.rng.bit_generator.state)}


def set_env_state(env: VecBeatEditEnv, state: dict) -> None:
    for k, v in state["fields"].items():
        cur = getattr(env, k)
        if isinstance(cur, np.ndarray) and np.shape(cur) != np.shape(v):
            raise CheckpointError(f"env state {k} has shape {np.shape(v)}, this env {np.shape(cur)} (n_envs or songs changed?)")
        setattr(env, k, copy.deepcopy(v))
    env.rng.bit_generator.state = state["rng"]


def rng_state(gen: torch.Generator, np_rng: np.random.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "sample_gen": gen.get_state(), "numpy": copy.deepcopy(np_rng.bit_generator.state),
            "python": random.getstate()}


def set_rng_state(st: dict, gen: torch.Generator, np_rng: np.random.Generator) -> None:
    torch.set_rng_state(st["torch"])
    gen.set_state(st["sample_gen"])
    np_rng.bit_generator.state = st["numpy"]
    random.setstate(st["python"])


# ----------------------------------------------------------------------------- finding and checking checkpoints
def latest_checkpoint(folder: str | Path) -> Path | None:
    """The highest-update ``ckpt_*.pt`` in ``folder`` (None if there is none)."""
    found = sorted(Path(folder).glob("ckpt_*.pt"))
    return found[-1] if found else None


def resolve_resume(resume_from: str | Path | None) -> Path | None:
    """``resume_from`` as a checkpoint file: a folder means its latest checkpoint (None when it has none)."""
    if resume_from is None:
        return None
    p = Path(resume_from)
    if p.is_dir():
        return latest_checkpoint(p)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint to resume from not found")
    return p


def check_same_run(saved: dict, now: dict, where: Path) -> None:
    """Refuse to resume when a training setting changed, naming each changed ``rlhf.`` key."""
    diff = sorted(k for k in set(saved) | set(now) if k not in RESUME_MAY_CHANGE and saved.get(k) != now.get(k))
    if diff:
        detail = ", ".join(f"rlhf.{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise CheckpointError(f"{where}: cannot resume with different training settings ({detail}); "
                              "delete the checkpoints to start over")


# ----------------------------------------------------------------------------- the state
@dataclass
class ResumeState:
    """Everything ``train_ppo`` needs, besides the policy weights, to continue after update ``update``."""

    update: int
    global_step: int
    kl_coef: float
    optimizer: dict
    rng: dict  # ``rng_state``
    env: dict  # ``env_state``
    next_obs: torch.Tensor  # on CPU
    next_mask: torch.Tensor
    next_done: torch.Tensor
    learned_reward_calls: int
    history: list[dict]  # the monitor's rows
    train_history: list[dict]  # one row per update
    best: dict  # {"gold", "update", "path"}
    best_state: dict | None  # best weights when they are not in a file (no checkpoint_dir)
    ep_kl: np.ndarray
    ep_len: np.ndarray
    rlhf: dict  # ``dataclasses.asdict(cfg.rlhf)`` of the run, checked on resume
    num_updates: int

    def save(self, path: str | Path, policy: ActorCritic) -> Path:
        """A policy checkpoint with this state under ``extra["resume"]`` (a plain dict: loadable without this class)."""
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return save_policy(path, policy, extra={"resume": state})

    @classmethod
    def load(cls, path: Path, rl: RLHFConfig) -> tuple[dict, "ResumeState"]:
        """(policy state dict, state) of a resumable checkpoint, after checking it belongs to this run's settings."""
        payload = load_checkpoint(path, kind=POLICY_KIND)
        st = payload["extra"].get("resume")
        if st is None:
            raise CheckpointError(f"{path}: a policy checkpoint without training state (not resumable)")
        check_same_run(st["rlhf"], dataclasses.asdict(rl), path)
        names = {f.name for f in dataclasses.fields(cls)}
        if set(st) != names:
            raise CheckpointError(f"{path}: training state of another format (missing {sorted(names - set(st))}, "
                                  f"unknown {sorted(set(st) - names)}); delete the checkpoints to start over")
        return payload["state_dict"], cls(**st)
