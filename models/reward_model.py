"""The reward model: a small transformer that scores a whole edit of one song.

Input, per source beat ``t`` of one song (``T`` beats):

* ``features[t]``   -- the song's 125 beat features (``beatedit.audio.schema``), raw. The model
  standardises them itself with per-column ``feat_mean`` / ``feat_std`` *buffers*
  (fitted on the training songs by ``fit_feature_stats``; saved in the checkpoint), so
  callers never pre-scale anything.
* ``actions[t]``    -- ``EditResult.beat_actions[t]``: the action (0..9) that governed beat
  ``t`` (``beatedit.editing.actions``). Embedded with a learned 10 x d_model table.
* edit-aware inputs (``N_EDIT`` columns, computed here from the two above, never from
  the listener) -- they make duration and seams explicit instead of making the network
  integrate them over 500 beats:
    0. ``copies / 2``      how many times the beat is heard in the output (0, 1, 2 -> 0, .5, 1),
                           from ``beatedit.editing.actions.COPIES_PER_ACTION`` (cuts/END 0, loops/repeats 2, others 1);
    1. ``out_position``    output seconds before this beat / source seconds (where in the
                           edit the beat lands; uses the raw ``beat_duration`` column);
    2. ``edit_ratio``      output seconds / source seconds of the whole edit (broadcast);
    3. ``target_ratio``    the edit target (0 when unknown);
    4. ``ratio_error``     ``edit_ratio - target_ratio`` (0 when unknown);
    5. ``target_known``    1 when a target was given;
    6. ``splice_in``       the beat is heard, the previous source beat is not, and something
                           was heard before it (a seam lands on this beat);
    7. ``splice_out``      the beat is heard, the next source beat is not, and something is
                           heard after it (the edit jumps away after this beat);
    8. ``abs_ratio_error`` ``|edit_ratio - target_ratio|`` (0 when unknown): too long and too
                           short are both wrong, which a monotone function of column 4 cannot say.
  They are computed on the *whole* song before any windowing, so every window of a long
  song knows the global duration fit.

Architecture (nanoGPT-style, pre-norm): ``Linear(125 + N_EDIT -> d)`` + action embedding +
learned positional embedding (``max_beats`` positions) -> dropout -> ``n_layers`` blocks of
[LayerNorm -> multi-head self-attention (fused QKV, ``scaled_dot_product_attention`` with a
key-padding mask; no dropout on the attention weights, so the fused kernel runs) -> residual;
LayerNorm -> MLP 4d GELU -> residual] -> LayerNorm -> masked mean over the real beats ->
``Linear(d -> 1)``, plus a *duration path*: a small MLP over the edit-level scalars
(``edit_ratio, target_ratio, ratio_error, abs_ratio_error, target_known``) whose output is
added to the score. Why: the fit to the target is a property of the whole edit, not of any
beat; learned through the pooled transformer alone from a few hundred noisy pairs, the model
came out monotone in length (longer edits scored higher even far past the target), which PPO
exploits. The separate path learns the non-monotone duration term from the same pairs. The score is an unbounded real number (no clamp, no tanh: nothing can
saturate during training). For RL, normalise at use with ``RewardNormalizer`` (training-score
mean/std saved in the checkpoint's ``extra``).

Padding: ``pad_mask[b, t]`` is True at padded positions (PyTorch's key-padding convention).
Padded beats take part in nothing (attention keys, pooling, edit inputs), so padding a
sequence never changes its score.

Songs longer than ``max_beats``: the sequence is cut into windows of ``max_beats`` beats with
stride ``window_stride`` (default 500 / 250); the last window is aligned to the song's end so
every beat is covered and every window is full. Each window is scored on its own (edit inputs
come from the whole song, positions restart at 0) and the song's score is the average of the
window scores weighted by the beats each window covers, where a beat covered by ``c`` windows
gives ``1/c`` to each of them. So the score is the mean over *beats* of the mean score of the
windows that saw that beat: every beat counts equally, none is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from beatedit.editing.actions import COPIES_PER_ACTION, N_ACTIONS
from beatedit.audio.schema import N_FEATURES, col

from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

KIND = "reward"
N_EDIT = 9
#: Edit-level scalars fed to the duration path (indices into the edit-input columns).
GLOBAL_EDIT_COLS = (2, 3, 4, 8, 5)
BEAT_DURATION_COL = col("beat_duration")
#: Standardised inputs are clipped to +-INPUT_CLIP (a guard against outlier beats; the *output* is never clamped).
INPUT_CLIP = 8.0


# ----------------------------------------------------------------------------- edit inputs
def edit_inputs(raw_features: torch.Tensor, actions: torch.Tensor, pad_mask: torch.Tensor,
                target_ratio: torch.Tensor | None) -> torch.Tensor:
    """[B, T, N_EDIT] edit-aware inputs (see the module docstring); zeros at padded beats.

    ``target_ratio``: [B] float, NaN (or None for all) = unknown target.
    """
    B, T = actions.shape
    valid = (~pad_mask).to(raw_features.dtype)
    copies = torch.tensor(COPIES_PER_ACTION, dtype=raw_features.dtype, device=actions.device)[actions] * valid
    dur = raw_features[..., BEAT_DURATION_COL].clamp_min(0.0) * valid
    src_total = dur.sum(1, keepdim=True).clamp_min(1e-6)
    out = copies * dur
    out_pos = (torch.cumsum(out, 1) - out) / src_total
    ratio = out.sum(1, keepdim=True) / src_total  # [B, 1]
    if target_ratio is None:
        target_ratio = torch.full((B,), float("nan"), dtype=raw_features.dtype, device=actions.device)
    target = target_ratio.to(raw_features.dtype).reshape(B, 1)
    known = torch.isfinite(target).to(raw_features.dtype)
    target = torch.nan_to_num(target, nan=0.0, posinf=0.0, neginf=0.0)
    heard = copies > 0
    prev_heard = F.pad(heard[:, :-1], (1, 0), value=False)
    heard_before = F.pad(torch.cumsum(heard.to(torch.int32), 1)[:, :-1], (1, 0), value=0) > 0
    splice_in = (heard & ~prev_heard & heard_before).to(raw_features.dtype)
    next_heard = F.pad(heard[:, 1:], (0, 1), value=False)
    heard_total = torch.cumsum(heard.to(torch.int32), 1)
    heard_after = (heard_total[:, -1:] - heard_total) > 0
    splice_out = (heard & ~next_heard & heard_after).to(raw_features.dtype)
    ones = torch.ones_like(copies)
    err = (ratio - target) * known
    cols = [copies / 2, out_pos, ratio * ones, target * ones, err * ones, known * ones, splice_in, splice_out, err.abs() * ones]
    return torch.stack(cols, -1) * valid.unsqueeze(-1)


# ----------------------------------------------------------------------------- the network
class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, C // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # no attention dropout: keeps the fused kernel
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.out = nn.Linear(4 * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), attn_mask)
        return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))


class RewardModel(nn.Module):
    def __init__(self, n_features: int = N_FEATURES, n_actions: int = N_ACTIONS, d_model: int = 256, n_layers: int = 3,
                 n_heads: int = 4, max_beats: int = 500, window_stride: int = 250, dropout: float = 0.1):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        if not 0 < window_stride <= max_beats:
            raise ValueError(f"window_stride {window_stride} must be in (0, max_beats={max_beats}]")
        self.config = dict(n_features=n_features, n_actions=n_actions, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                           max_beats=max_beats, window_stride=window_stride, dropout=dropout)
        self.n_features, self.n_actions, self.max_beats, self.window_stride = n_features, n_actions, max_beats, window_stride
        self.register_buffer("feat_mean", torch.zeros(n_features))
        self.register_buffer("feat_std", torch.ones(n_features))
        self.inp = nn.Linear(n_features + N_EDIT, d_model)
        self.act_emb = nn.Embedding(n_actions, d_model)
        self.pos_emb = nn.Embedding(max_beats, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(d_model, n_heads, dropout) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1)
        self.duration_path = nn.Sequential(nn.Linear(len(GLOBAL_EDIT_COLS), 32), nn.GELU(), nn.Linear(32, 1))
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("attn.proj.weight", "out.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    @torch.no_grad()
    def fit_feature_stats(self, features: np.ndarray | torch.Tensor) -> None:
        """Set the standardisation buffers from training beats ([N, n_features], raw)."""
        f = torch.as_tensor(np.asarray(features, dtype=np.float64))
        if f.ndim != 2 or f.shape[1] != self.n_features:
            raise ValueError(f"feature stats need [N, {self.n_features}], got {tuple(f.shape)}")
        self.feat_mean.copy_(f.mean(0).float())
        std = f.std(0)
        # (near-)constant columns in training (e.g. meter when every song is in 4/4): scale 1, not 1/eps,
        # so an unseen value elsewhere shifts the input by its raw difference instead of exploding
        self.feat_std.copy_(torch.where(std < 1e-4, torch.ones_like(std), std).float())

    # --- one pass over sequences of at most max_beats --------------------------------
    def _encode(self, x: torch.Tensor, actions: torch.Tensor, edit: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        x = ((x - self.feat_mean) / self.feat_std).clamp(-INPUT_CLIP, INPUT_CLIP)
        h = self.inp(torch.cat([x, edit], -1)) + self.act_emb(actions) + self.pos_emb.weight[:T]
        h = self.drop(h)
        attn_mask = (~pad_mask)[:, None, None, :] if bool(pad_mask.any()) else None  # True = may attend
        for block in self.blocks:
            h = block(h, attn_mask)
        h = self.ln_f(h)
        valid = (~pad_mask).unsqueeze(-1).to(h.dtype)
        pooled = (h * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        return self.head(pooled).squeeze(-1) + self.duration_score(edit, pad_mask)

    def duration_score(self, edit: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """[B] the duration path's term: the MLP over the edit-level scalars (equal on every real beat;
        read at the first one)."""
        first = (~pad_mask).float().argmax(1)
        g = edit[torch.arange(edit.shape[0], device=edit.device), first][:, list(GLOBAL_EDIT_COLS)]
        return self.duration_path(g).squeeze(-1)

    def forward(self, features: torch.Tensor, actions: torch.Tensor, pad_mask: torch.Tensor | None = None,
                target_ratio: torch.Tensor | None = None) -> torch.Tensor:
        """features [B, T, n_features] raw, actions [B, T] int, pad_mask [B, T] (True = padding),
        target_ratio [B] (NaN = unknown) -> scores [B]. Any T: long rows are windowed."""
        B, T, F_ = features.shape
        if F_ != self.n_features:
            raise ValueError(f"reward model expects {self.n_features} feature columns, got {F_}")
        if actions.shape != (B, T):
            raise ValueError(f"actions have shape {tuple(actions.shape)}, expected {(B, T)}")
        if pad_mask is None:
            pad_mask = torch.zeros(B, T, dtype=torch.bool, device=features.device)
        actions = actions.long().masked_fill(pad_mask, 0)
        features = features.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        edit = edit_inputs(features, actions, pad_mask, target_ratio)
        if T <= self.max_beats:
            return self._encode(features, actions, edit, pad_mask)
        return self._windowed(features, actions, edit, pad_mask)

    def _windowed(self, features, actions, edit, pad_mask) -> torch.Tensor:
        lengths = (~pad_mask).sum(1).tolist()
        W = self.max_beats
        rows, starts, lens, weights = [], [], [], []
        for b, L in enumerate(lengths):
            st = window_starts(L, W, self.window_stride)
            cover = np.zeros(max(L, 1))
            for s in st:
                cover[s:s + W] += 1
            for s in st:
                rows.append(b)
                starts.append(s)
                lens.append(min(W, L))
                weights.append(float((1.0 / cover[s:s + W]).sum() / max(L, 1)))
        dev = features.device
        rows_t = torch.tensor(rows, device=dev)
        idx = (torch.tensor(starts, device=dev)[:, None] + torch.arange(W, device=dev)[None]).clamp_max(features.shape[1] - 1)
        wmask = torch.arange(W, device=dev)[None] >= torch.tensor(lens, device=dev)[:, None]
        s = self._encode(features[rows_t[:, None], idx], actions[rows_t[:, None], idx], edit[rows_t[:, None], idx], wmask)
        w = torch.tensor(weights, device=dev, dtype=s.dtype)
        return torch.zeros(len(lengths), device=dev, dtype=s.dtype).index_add(0, rows_t, s * w)


def window_starts(n_beats: int, window: int, stride: int) -> list[int]:
    """Start beats of the scoring windows: 0, stride, 2*stride, ... and a last one aligned to the end."""
    if n_beats <= window:
        return [0]
    starts = list(range(0, n_beats - window + 1, stride))
    if starts[-1] != n_beats - window:
        starts.append(n_beats - window)
    return starts


# ----------------------------------------------------------------------------- batching
def collate(items: Sequence[tuple], device: str | torch.device = "cpu"):
    """Pad a list of (features [T, F], actions [T]) or (features, actions, target_ratio) to the batch max.

    Returns features [B, Tmax, F] float32, actions [B, Tmax] int64, pad_mask [B, Tmax] bool, target [B] (NaN = unknown).
    """
    if not items:
        raise ValueError("collate: no items")
    T = max(len(it[1]) for it in items)
    n_feat = np.asarray(items[0][0]).shape[-1]
    feats = np.zeros((len(items), T, n_feat), np.float32)
    acts = np.zeros((len(items), T), np.int64)
    pad = np.ones((len(items), T), bool)
    target = np.full(len(items), np.nan, np.float32)
    for i, it in enumerate(items):
        f, a = np.asarray(it[0], np.float32), np.asarray(it[1])
        if f.ndim != 2 or f.shape[0] != len(a) or f.shape[1] != n_feat:
            raise ValueError(f"item {i}: features {f.shape} and actions {a.shape} do not describe the same beats")
        if len(a) == 0:
            raise ValueError(f"item {i}: empty sequence")
        if a.min() < 0 or a.max() >= N_ACTIONS:
            raise ValueError(f"item {i}: action ids outside 0..{N_ACTIONS - 1}")
        feats[i, :len(a)], acts[i, :len(a)], pad[i, :len(a)] = f, a, False
        if len(it) > 2 and it[2] is not None:
            target[i] = float(it[2])
    t = lambda x: torch.from_numpy(x).to(device)  # noqa: E731
    return t(feats), t(acts), t(pad), t(target)


def score_batch(model: RewardModel, items: Sequence[tuple], device: str | torch.device = "cpu", batch_size: int = 64) -> np.ndarray:
    """Score many edits: items are (features, actions) or (features, actions, target_ratio).

    Sorted by length and padded to each batch's max (so batches hold similar lengths), run
    under ``inference_mode`` in eval mode; returns float32 [len(items)] in the input order.
    """
    if len(items) == 0:
        return np.zeros(0, np.float32)
    was_training = model.training
    model.eval()
    order = np.argsort([len(it[1]) for it in items], kind="stable")
    out = np.empty(len(items), np.float32)
    try:
        with torch.inference_mode():
            for s in range(0, len(items), batch_size):
                idx = order[s:s + batch_size]
                f, a, p, t = collate([items[i] for i in idx], device)
                out[idx] = model(f, a, p, t).float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


# ----------------------------------------------------------------------------- RL normalisation
@dataclass
class RewardNormalizer:
    """(score - mean) / std with the training-score statistics; saved in the checkpoint's extra."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, scores: np.ndarray) -> "RewardNormalizer":
        scores = np.asarray(scores, np.float64)
        return cls(float(scores.mean()), float(max(scores.std(), 1e-6)))

    def __call__(self, scores):
        return (scores - self.mean) / self.std

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict | None) -> "RewardNormalizer":
        return cls(**d) if d else cls()


# ----------------------------------------------------------------------------- checkpoints
def save_reward_model(path: str | Path, model: RewardModel, normalizer: RewardNormalizer | None = None,
                      extra: dict | None = None, prov: dict | None = None) -> Path:
    extra = dict(extra or {})
    extra["normalizer"] = (normalizer or RewardNormalizer()).to_dict()
    return save_checkpoint(path, kind=KIND, module=model, config=model.config, extra=extra, prov=prov)


def load_reward_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[RewardModel, RewardNormalizer, dict]:
    """Load a reward checkpoint; refuses another kind, feature schema or action vocabulary (naming the file)."""
    payload = load_checkpoint(path, kind=KIND)
    cfg = dict(payload["config"])
    if cfg.get("n_features") != N_FEATURES or cfg.get("n_actions") != N_ACTIONS:
        raise CheckpointError(f"{path}: model built for {cfg.get('n_features')} features / {cfg.get('n_actions')} actions, "
                              f"this code has {N_FEATURES} / {N_ACTIONS}")
    try:
        model = RewardModel(**cfg)
        model.load_state_dict(payload["state_dict"])
    except (TypeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: state does not fit a RewardModel({cfg}): {exc}") from exc
    model.to(device).eval()
    return model, RewardNormalizer.from_dict(payload.get("extra", {}).get("normalizer")), payload
