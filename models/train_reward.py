"""Train and validate the reward model on the preference pair table.

``train_reward_model(pairs_df, songs, cfg, log=...) -> (model, history)``
    Bradley-Terry on pairs of edits of the same song:
        d    = r_a - r_b                       (model scores)
        y    = 1 - choice                      (1: A preferred, 0: B, 0.5: tie)
        s    = 2y - 1                          (+1 / -1 / 0)
        loss = BCEWithLogits(d - s * m, y) + center_coef * (r_a + r_b)^2
    with the optional margin ``m = margin_scale * strength`` (a confident preference must
    be won by more) and a small centering term that pins the free additive constant of BT
    scores near 0 without bounding them. Trained on ``split == "train"`` pairs that touch no
    held-out (OOD) edit kind. AdamW (no decay on biases, norms, embeddings), linear warm-up
    then cosine decay, gradient accumulation, gradient clipping, optional bf16 autocast
    (CUDA), seeded, a progress bar (beatedit.progress), early stopping on validation accuracy with the best epoch
    restored. ``history`` is one dict per epoch (``train_loss``, ``train_accuracy``,
    ``val_loss``, ``val_accuracy``, ``lr``, ``seconds``); ``log(metrics, step)`` is called
    with the same dict after every epoch (the caller forwards it to MLflow). After the best epoch
    is restored the scores are temperature-scaled on the training pairs (``calibrate``; the scale
    is ``history[*]["calibration_scale"]``). The returned model carries ``model.normalizer`` (a
    ``RewardNormalizer`` fitted on the scores of the training edits) for ``save_reward_model``.

``validate_reward_model(model, pairs_df, songs, cfg) -> dict``  -- the gate's metrics, all on
validation songs (never seen in training):
    val_accuracy        share of in-distribution validation pairs (choice 0 or 1; ties left
                        out) whose order the model gets right vs the *noisy* choice; equal
                        scores count 1/2, so a constant model scores 0.5.
    noise_ceiling       the same accuracy for the listener's own gold scores (gold_a vs gold_b)
                        against its noisy choices on the same pairs (pairs without gold, e.g.
                        human votes, are left out of this one number).
    val_to_ceiling      val_accuracy / noise_ceiling (goal >= 0.9).
    ood_accuracy        accuracy on validation-song pairs that involve a held-out edit kind
                        (``n_ood_pairs``).
    baseline_accuracy   accuracy of a trivial scorer, -|edit_ratio - target| (duration fit
                        only), on the val_accuracy pairs.
    score_std           std of the scores of the distinct edits of the validation songs (every
                        edit in a validation-song pair, in-distribution or OOD; ``n_val_edits``).
    saturated_fraction  share of those scores within 1% of the observed range (max - min) of
                        the min or of the max, not counting the one min and one max that
                        define the range; 1.0 when every score is equal (a constant model).
                        Evenly spread scores give about 0.02 (a 1% band at each end), so the
                        default threshold is 0.05, not 0.01.
    ece                 expected calibration error of P(A) = sigmoid(r_a - r_b) against the
                        choices, 10 equal-width bins on [0, 1].
    spearman_gold       Spearman correlation of the scores with the listener's gold totals
                        among the edits of one song for one target (what Bradley-Terry on
                        same-song pairs can identify: a per-song offset is free), averaged
                        over (song, target) groups weighted by their edit counts; a constant
                        model gives NaN, which fails the gate. ``spearman_gold_pooled``: the
                        same over all validation edits at once (diagnostic).
``gate(metrics, cfg) -> list[str]``: one message per failed threshold (empty = pass); the reward
stage (``flows/reward.py``) fails with them.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from beatedit.progress import progress_bar
from beatedit.config import Config, RewardConfig
from beatedit.audio.song import SongAnalysis
from beatedit.editing.actions import COPIES_PER_ACTION
from models.device import resolve_device
from models.reward_model import BEAT_DURATION_COL, RewardModel, RewardNormalizer, collate, score_batch


# ----------------------------------------------------------------------------- helpers
def _reward_cfg(cfg: Config | RewardConfig) -> RewardConfig:
    return cfg.reward if isinstance(cfg, Config) else cfg


def _device_name(cfg: Config | RewardConfig, device: str | None) -> str:
    """The explicit ``device`` argument, else ``cfg.device`` (a bare RewardConfig carries none: auto)."""
    return device or (cfg.device if isinstance(cfg, Config) else "auto")


def build_model(cfg: Config | RewardConfig) -> RewardModel:
    rc = _reward_cfg(cfg)
    return RewardModel(d_model=rc.d_model, n_layers=rc.n_layers, n_heads=rc.n_heads, max_beats=rc.max_beats,
                       window_stride=rc.window_stride, dropout=rc.dropout)


def _actions(x, song: SongAnalysis, which: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.int64)
    if a.shape != (song.n_beats,):
        raise ValueError(f"pair on {song.song_id}: {which} has {a.shape} actions for a song of {song.n_beats} beats")
    return a


def _check_songs(df: pd.DataFrame, songs: dict[str, SongAnalysis]) -> None:
    missing = sorted(set(df["song_id"]) - set(songs))
    if missing:
        raise KeyError(f"pair table names songs without features: {missing[:5]}{' ...' if len(missing) > 5 else ''}")


def _is_ood(df: pd.DataFrame) -> np.ndarray:
    return df["ood"].to_numpy(bool) if "ood" in df.columns else np.zeros(len(df), bool)


def train_pairs(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["split"] == "train") & ~_is_ood(df)].reset_index(drop=True)


def human_train_pairs(df: pd.DataFrame) -> int:
    """Training pairs from human votes (``source == "human"``): the ones ``reward.human_weight`` weights."""
    tr = train_pairs(df)
    return int((tr["source"] == "human").sum()) if "source" in tr.columns else 0


def eval_pairs(df: pd.DataFrame, split: str = "validation", ood: bool = False) -> pd.DataFrame:
    """Pairs on ``split`` songs with a strict preference (ties left out), in- or out-of-distribution."""
    m = (df["split"] == split) & (_is_ood(df) == ood) & df["choice"].isin([0, 1]).to_numpy()
    return df[m].reset_index(drop=True)


def pair_scores(model: RewardModel, df: pd.DataFrame, songs: dict[str, SongAnalysis], device="cpu",
                batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Scores (r_a, r_b) for every row; each distinct (song, target, actions) edit is scored once."""
    keys: dict[tuple, int] = {}
    items, ia, ib = [], [], []
    for row in df.itertuples(index=False):
        song = songs[row.song_id]
        for which, out in (("actions_a", ia), ("actions_b", ib)):
            a = _actions(getattr(row, which), song, which)
            key = (row.song_id, float(row.target_ratio), a.tobytes())
            if key not in keys:
                keys[key] = len(items)
                items.append((song.features, a, float(row.target_ratio)))
            out.append(keys[key])
    s = score_batch(model, items, device, batch_size)
    return s[np.asarray(ia, int)], s[np.asarray(ib, int)]


def edit_ratio(song: SongAnalysis, actions: np.ndarray) -> float:
    """Output / source duration implied by per-beat actions (the duration-fit baseline's input)."""
    dur = np.clip(song.features[:, BEAT_DURATION_COL].astype(np.float64), 0, None)
    return float((np.asarray(COPIES_PER_ACTION, np.float64)[np.asarray(actions, int)] * dur).sum() / max(dur.sum(), 1e-9))


def _bt_loss(ra, rb, y, strength, margin_scale, center_coef, weight=None):
    """Bradley-Terry loss (+ centring). ``weight``: per-pair weights (human pairs count
    ``reward.human_weight``); None = all 1, the plain mean (bit-identical to an unweighted run)."""
    d = ra - rb
    s = 2 * y - 1
    if weight is None:
        bt = F.binary_cross_entropy_with_logits(d - s * margin_scale * strength, y)
    else:
        bt = (F.binary_cross_entropy_with_logits(d - s * margin_scale * strength, y, reduction="none") * weight).sum() / weight.sum().clamp_min(1e-12)
    return bt + center_coef * ((ra + rb) ** 2).mean(), d


def _length_bucketed_order(rng: np.random.Generator, lengths: np.ndarray, batch_size: int, pool: int = 32) -> np.ndarray:
    """A shuffled order whose consecutive batches hold similar lengths (less padding, same pairs per epoch):
    shuffle, sort each run of ``pool`` batches by length, cut into batches, shuffle the batches."""
    perm = rng.permutation(len(lengths))
    chunk = batch_size * pool
    perm = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in np.split(perm, range(chunk, len(perm), chunk))])
    batches = [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]
    return np.concatenate([batches[i] for i in rng.permutation(len(batches))])


def _lr_lambda(warmup: int, total: int, floor: float) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        prog = min(1.0, (step - warmup) / max(total - warmup, 1))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * prog))
    return f


def _accuracy(d: np.ndarray, choice: np.ndarray) -> float:
    """Pair accuracy of score differences d = r_a - r_b against choices (0 = A); d == 0 counts 1/2."""
    if len(d) == 0:
        return float("nan")
    want = np.where(np.asarray(choice) == 0, 1.0, -1.0)
    return float(np.mean(np.where(d == 0, 0.5, (np.sign(d) == want).astype(float))))


# ----------------------------------------------------------------------------- training
def train_reward_model(pairs_df: pd.DataFrame, songs: dict[str, SongAnalysis], cfg: Config | RewardConfig,
                       log: Callable[[dict, int], None] | None = None, device: str | None = None,
                       progress: bool = True) -> tuple[RewardModel, list[dict]]:
    rc = _reward_cfg(cfg)
    dev = resolve_device(_device_name(cfg, device))
    _check_songs(pairs_df, songs)
    tr = train_pairs(pairs_df)
    va = eval_pairs(pairs_df, "validation")
    if tr.empty:
        raise ValueError("no training pairs (split == 'train' and not ood) in the pair table")
    torch.manual_seed(rc.seed)
    rng = np.random.default_rng(rc.seed)

    model = build_model(rc)
    train_songs = sorted(set(tr["song_id"]))
    model.fit_feature_stats(np.concatenate([songs[s].features for s in train_songs]))
    model.to(dev)

    # materialise the training pairs once
    song_of = [songs[s] for s in tr["song_id"]]
    acts_a = [_actions(x, s, "actions_a") for x, s in zip(tr["actions_a"], song_of)]
    acts_b = [_actions(x, s, "actions_b") for x, s in zip(tr["actions_b"], song_of)]
    y_all = 1.0 - tr["choice"].to_numpy(np.float64)
    strength_all = tr["strength"].to_numpy(np.float64) if "strength" in tr.columns else np.zeros(len(tr))
    target_all = tr["target_ratio"].to_numpy(np.float64)
    human = (tr["source"] == "human").to_numpy() if "source" in tr.columns else np.zeros(len(tr), bool)
    weight_all = np.where(human, float(getattr(rc, "human_weight", 1.0)), 1.0)
    lengths = np.array([s.n_beats for s in song_of])

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": rc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=rc.lr, betas=(0.9, 0.98))
    n_micro = math.ceil(len(tr) / rc.batch_size)
    total_steps = rc.epochs * math.ceil(n_micro / rc.grad_accum_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(rc.warmup_steps, total_steps, rc.min_lr_ratio))
    use_bf16 = rc.bf16 and dev.type == "cuda"

    history: list[dict] = []
    best_acc, best_loss, best_state, best_epoch, stale = -1.0, math.inf, None, -1, 0
    bar = progress_bar(total=rc.epochs * n_micro, desc="reward model", unit="batch", disable=not progress, leave=False)
    for epoch in range(rc.epochs):
        t0 = time.time()
        model.train()
        order = _length_bucketed_order(rng, lengths, rc.batch_size)
        hide = rng.random(len(tr)) < rc.target_dropout
        tot_loss, n_seen, ep_d, ep_y = 0.0, 0, [], []
        opt.zero_grad(set_to_none=True)
        for mb in range(n_micro):
            idx = order[mb * rc.batch_size:(mb + 1) * rc.batch_size]
            tgt = [None if hide[i] else target_all[i] for i in idx]
            items = [(song_of[i].features, acts_a[i], t) for i, t in zip(idx, tgt)]
            items += [(song_of[i].features, acts_b[i], t) for i, t in zip(idx, tgt)]
            f, a, p, t = collate(items, dev)
            y = torch.as_tensor(y_all[idx], dtype=torch.float32, device=dev)
            st = torch.as_tensor(strength_all[idx], dtype=torch.float32, device=dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                r = model(f, a, p, t).float()
            w = None if np.all(weight_all[idx] == 1.0) else torch.as_tensor(weight_all[idx], dtype=torch.float32, device=dev)
            loss, d = _bt_loss(r[:len(idx)], r[len(idx):], y, st, rc.margin_scale, rc.center_coef, w)
            (loss / rc.grad_accum_steps).backward()
            if (mb + 1) % rc.grad_accum_steps == 0 or mb == n_micro - 1:
                if rc.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), rc.grad_clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            ep_d.append(d.detach().float().cpu().numpy())
            ep_y.append(y_all[idx])
            tot_loss += float(loss.detach()) * len(idx)
            n_seen += len(idx)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{tot_loss / n_seen:.3f}")
        dn, yn = np.concatenate(ep_d), np.concatenate(ep_y)
        strict = yn != 0.5
        rec = {"epoch": epoch, "train_loss": tot_loss / max(n_seen, 1),
               "train_accuracy": _accuracy(dn[strict], np.where(yn[strict] == 1, 0, 1)), "lr": float(opt.param_groups[0]["lr"])}
        if len(va):
            ra, rb = pair_scores(model, va, songs, dev, rc.score_batch_size)
            yv = 1.0 - va["choice"].to_numpy(np.float64)
            d = torch.as_tensor(ra - rb, dtype=torch.float64)
            rec["val_loss"] = float(F.binary_cross_entropy_with_logits(d, torch.as_tensor(yv)))
            rec["val_accuracy"] = _accuracy(ra - rb, va["choice"].to_numpy())
        rec["seconds"] = time.time() - t0
        history.append(rec)
        if log is not None:
            log(dict(rec), epoch)
        if not len(va):
            continue
        better = rec["val_accuracy"] > best_acc or (rec["val_accuracy"] == best_acc and rec["val_loss"] < best_loss)
        if better:
            best_acc, best_loss, best_epoch, stale = rec["val_accuracy"], rec["val_loss"], epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
            if stale >= rc.patience:
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    scale = calibrate(model, tr, songs, dev, rc.score_batch_size)
    for rec in history:
        rec["best_epoch"] = best_epoch
        rec["calibration_scale"] = scale
    model.normalizer = fit_normalizer(model, tr, songs, dev, rc.score_batch_size)
    return model, history


def calibrate(model: RewardModel, df: pd.DataFrame, songs: dict[str, SongAnalysis], device="cpu",
              batch_size: int = 64) -> float:
    """Temperature scaling (Guo et al. 2017) fitted on the *training* pairs: the scalar ``s`` that minimises the
    Bradley-Terry log-loss of ``sigmoid(s * (r_a - r_b))`` against their choices (ties as 1/2), folded into the
    model's two output layers so every score is multiplied by ``s``. Order, accuracy and Spearman are unchanged;
    ``sigmoid(r_a - r_b)`` becomes a calibrated probability (the gate's ECE is then measured, as before, on the
    validation songs, which this fit never sees). Returns ``s``."""
    ra, rb = pair_scores(model, df, songs, device, batch_size)
    y = np.where(df["choice"].to_numpy(np.float64) == 0, 1.0, np.where(df["choice"].to_numpy(np.float64) == 1, 0.0, 0.5))
    d = (ra - rb)[None, :]
    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 241))[:, None]
    z = grid * d
    nll = (np.logaddexp(0.0, z) - y[None, :] * z).mean(axis=1)  # -[y log p + (1-y) log(1-p)], p = sigmoid(z)
    s = float(grid[int(np.argmin(nll)), 0])
    with torch.no_grad():
        for layer in (model.head, model.duration_path[-1]):
            layer.weight.mul_(s)
            layer.bias.mul_(s)
    return s


def fit_normalizer(model: RewardModel, df: pd.DataFrame, songs: dict[str, SongAnalysis], device="cpu",
                   batch_size: int = 64) -> RewardNormalizer:
    """Mean/std of the model's scores over the distinct edits in ``df`` (use the training pairs)."""
    ra, rb = pair_scores(model, df, songs, device, batch_size)
    return RewardNormalizer.fit(np.concatenate([ra, rb]))


# ----------------------------------------------------------------------------- validation
def saturated_fraction(scores: np.ndarray, tol: float = 0.01) -> float:
    s = np.asarray(scores, np.float64)
    if len(s) == 0:
        return float("nan")
    lo, hi = s.min(), s.max()
    span = hi - lo
    if span <= 0:
        return 1.0
    near = (s - lo <= tol * span) | (hi - s <= tol * span)
    return float(max(int(near.sum()) - 2, 0) / max(len(s) - 2, 1))


def expected_calibration_error(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    if len(p) == 0:
        return float("nan")
    b = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    return float(sum(abs(y[b == k].mean() - p[b == k].mean()) * (b == k).sum() for k in range(n_bins) if (b == k).any()) / len(p))


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    rx, ry = pd.Series(x[ok]).rank().to_numpy(), pd.Series(y[ok]).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _grouped_spearman(edits: pd.DataFrame) -> float:
    """Spearman of score vs gold within each (song, target), averaged with weights = edits per group."""
    rho, w = [], []
    for _, g in edits.groupby(["song", "target"], sort=True):
        r = _spearman(g["score"].to_numpy(np.float64), g["gold"].to_numpy(np.float64))
        if np.isfinite(r):
            rho.append(r)
            w.append(len(g))
    return float(np.average(rho, weights=w)) if rho else float("nan")


def human_agreement(model: RewardModel, pairs_df: pd.DataFrame, songs: dict[str, SongAnalysis], device="cpu",
                    batch_size: int = 64) -> tuple[float, int]:
    """(share of the strict human votes, any split, that the model orders as the listener did; their number).

    Under ``preferences.human_split: train`` the votes are training pairs, so for a model trained on them this is a
    fit figure; for the champion trained before the votes it is what the model believed before them: the two
    together say what the votes changed."""
    if "source" not in pairs_df.columns:
        return float("nan"), 0
    hv = pairs_df[(pairs_df["source"] == "human") & pairs_df["choice"].isin([0, 1])].reset_index(drop=True)
    if not len(hv):
        return float("nan"), 0
    ra, rb = pair_scores(model, hv, songs, device, batch_size)
    return _accuracy(ra - rb, hv["choice"].to_numpy()), int(len(hv))


def validate_reward_model(model: RewardModel, pairs_df: pd.DataFrame, songs: dict[str, SongAnalysis],
                          cfg: Config | RewardConfig, device: str | None = None) -> dict:
    rc = _reward_cfg(cfg)
    dev = resolve_device(_device_name(cfg, device))
    _check_songs(pairs_df, songs)
    model.to(dev)
    vall = pairs_df[pairs_df["split"] == "validation"].reset_index(drop=True)
    ra_all, rb_all = pair_scores(model, vall, songs, dev, rc.score_batch_size) if len(vall) else (np.zeros(0), np.zeros(0))
    strict = vall["choice"].isin([0, 1]).to_numpy()
    is_ood = _is_ood(vall)
    m: dict = {"n_val_pairs": int((strict & ~is_ood).sum()), "n_ood_pairs": int((strict & is_ood).sum())}
    m["human_agreement"], m["n_human_votes"] = human_agreement(model, pairs_df, songs, dev, rc.score_batch_size)
    nan = float("nan")
    # --- accuracy on in-distribution validation pairs
    sel = strict & ~is_ood
    va, ra, rb = vall[sel], ra_all[sel], rb_all[sel]
    choice = va["choice"].to_numpy()
    m["val_accuracy"] = _accuracy(ra - rb, choice)
    ga, gb = va["gold_a"].to_numpy(np.float64), va["gold_b"].to_numpy(np.float64)
    has_gold = np.isfinite(ga) & np.isfinite(gb)
    m["noise_ceiling"] = _accuracy((ga - gb)[has_gold], choice[has_gold])
    m["val_to_ceiling"] = m["val_accuracy"] / m["noise_ceiling"] if m["noise_ceiling"] > 0 else nan
    base = np.array([-abs(edit_ratio(songs[s], a) - t) + abs(edit_ratio(songs[s], b) - t)
                     for s, a, b, t in zip(va["song_id"], va["actions_a"], va["actions_b"], va["target_ratio"])])
    m["baseline_accuracy"] = _accuracy(base, choice)
    m["ece"] = expected_calibration_error(1.0 / (1.0 + np.exp(-(ra - rb))), (choice == 0).astype(float)) if len(va) else nan
    # --- held-out edit kinds
    m["ood_accuracy"] = _accuracy(ra_all[strict & is_ood] - rb_all[strict & is_ood], vall["choice"].to_numpy()[strict & is_ood])
    # --- score distribution over every distinct edit of the validation songs (in-distribution and OOD pairs)
    if len(vall):
        edits = pd.DataFrame({"song": np.r_[vall["song_id"], vall["song_id"]],
                              "target": np.r_[vall["target_ratio"], vall["target_ratio"]],
                              "actions": [np.asarray(a, np.int64).tobytes() for a in list(vall["actions_a"]) + list(vall["actions_b"])],
                              "score": np.r_[ra_all, rb_all],
                              "gold": np.r_[vall["gold_a"].to_numpy(np.float64), vall["gold_b"].to_numpy(np.float64)]})
        edits = edits.drop_duplicates(["song", "target", "actions"])
        scores = edits["score"].to_numpy(np.float64)
        m["n_val_edits"] = int(len(edits))
        m["score_mean"], m["score_std"] = float(scores.mean()), float(scores.std())
        m["score_min"], m["score_max"] = float(scores.min()), float(scores.max())
        m["saturated_fraction"] = saturated_fraction(scores)
        m["spearman_gold"] = _grouped_spearman(edits)
        m["spearman_gold_pooled"] = _spearman(scores, edits["gold"].to_numpy())
    else:
        m["n_val_edits"] = 0
        for k in ("score_mean", "score_std", "score_min", "score_max", "saturated_fraction", "spearman_gold", "spearman_gold_pooled"):
            m[k] = nan
    return m


def gate(metrics: dict, cfg: Config | RewardConfig) -> list[str]:
    """Failed checks as readable messages; an empty list means the model passes."""
    rc = _reward_cfg(cfg)
    checks = [
        ("val_accuracy", ">=", rc.min_val_accuracy, "pair accuracy on validation songs"),
        ("val_to_ceiling", ">=", rc.min_val_to_ceiling, "validation accuracy as a share of the listener's noise ceiling"),
        ("ood_accuracy", ">=", rc.min_ood_accuracy, "pair accuracy on held-out edit kinds"),
        ("score_std", ">=", rc.min_score_std, "score spread (a constant reward has std 0)"),
        ("saturated_fraction", "<=", rc.max_saturated_fraction, "share of scores within 1% of the score range's bounds"),
        ("ece", "<=", rc.max_ece, "calibration error of the Bradley-Terry probabilities"),
        ("spearman_gold", ">=", rc.min_spearman, "Spearman correlation with the listener's gold score"),
    ]
    failures = []
    for key, op, thr, what in checks:
        v = metrics.get(key, float("nan"))
        if v is None or not np.isfinite(v):
            failures.append(f"{key} ({what}) could not be measured (value {v}; no pairs, or constant scores); required {op} {thr}")
        elif (op == ">=" and v < thr) or (op == "<=" and v > thr):
            failures.append(f"{key} ({what}) = {v:.4f}, required {op} {thr}")
    return failures
