"""Typed configuration: ``params.yaml`` validated into frozen dataclasses at load time.

``params.yaml`` is the single source of configuration. Every key must be declared
here; an unknown key, a missing key or a value of the wrong type is a ``ConfigError``
naming the dotted key and the file. Each section's fields are documented where they
are declared (TRL-style: every knob says what it does).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """params.yaml (or an override) is malformed; the message names the key and file."""


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class CorpusConfig:
    n_songs: int = 24  # songs in the generated default corpus
    min_seconds: float = 60.0  # shortest generated song
    max_seconds: float = 150.0  # longest generated song
    sample_rate: int = 44100  # sample rate of the generated WAVs
    seed: int = 1234  # corpus seed: same seed -> byte-identical corpus


GENERATED_AUDIO_DIR = "data/corpus/audio"


@dataclass(frozen=True)
class DataConfig:
    audio_dir: str = "data/corpus/audio"  # songs to edit: the generated corpus, or your own folder of wav/flac/ogg/mp3
    use_generated_corpus: bool = True  # false: audio_dir is your own folder (no ground truth; beat metrics are skipped)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)

    def check(self) -> str | None:
        if self.use_generated_corpus and self.audio_dir != GENERATED_AUDIO_DIR:
            return (f"audio_dir is {self.audio_dir!r} but use_generated_corpus is true (the corpus is generated into "
                    f"{GENERATED_AUDIO_DIR!r}); set data.use_generated_corpus: false to use your own folder")
        return None


@dataclass(frozen=True)
class AudioConfig:
    analysis_sr: int = 22050  # every analysis resamples to this rate; renders use the source rate
    min_beats: int = 32  # songs with fewer tracked beats are quarantined
    max_seconds: float = 1800.0  # longer files are quarantined (memory guard)


@dataclass(frozen=True)
class StemsConfig:
    backend: Literal["hpss", "demucs"] = "hpss"  # stem separator; demucs needs local weights
    cache_dir: str = "data/stems"  # content-addressed stem cache
    n_fft: int = 2048
    hop_length: int = 512
    hpss_margin: float = 2.0  # librosa HPSS margin (higher = cleaner, sparser stems)
    bass_cutoff_hz: float = 180.0  # harmonic energy below this goes to the bass stem
    demucs_model_dir: str = "models/demucs"  # where local demucs weights would live


@dataclass(frozen=True)
class FeaturesConfig:
    out_dir: str = "data/features"
    hop_length: int = 512  # analysis hop at analysis_sr
    n_fft: int = 2048
    phrase_bars: int = 8  # default phrase length in bars when structure gives no better answer
    min_section_bars: int = 4  # shortest section the novelty segmenter may return


@dataclass(frozen=True)
class EnvConfig:
    target_min: float = 0.5  # edit target (output / source duration) sampled in [target_min, target_max]
    target_max: float = 0.8
    window_before: int = 8  # beats of features before the cursor in the observation
    window_after: int = 16  # beats of features after (and including) the cursor
    recent_actions: int = 8  # one-hot history length in the observation
    max_loops_per_episode: int = 8  # loop/repeat actions beyond this are masked


@dataclass(frozen=True)
class RenderConfig:
    crossfade_ms: float = 20.0  # equal-power crossfade length at each splice
    target_lufs: float | None = None  # loudness-normalise renders to this LUFS; null = off


@dataclass(frozen=True)
class DenseRewardConfig:
    w_tempo: float = 0.25
    w_energy: float = 0.25
    w_phrase: float = 0.25
    w_transition: float = 0.25
    tempo_jump_bpm: float = 5.0  # a splice joining tempi further apart than this is penalised


@dataclass(frozen=True)
class ListenerConfig:
    noise: float = 0.1  # Bradley-Terry temperature: P(A) = sigmoid((s_A - s_B) / noise)
    seed: int = 7


@dataclass(frozen=True)
class MlflowConfig:
    experiment: str = "beatedit"
    tracking_uri: str = "sqlite:///mlflow.db"  # MLFLOW_TRACKING_URI overrides
    artifact_root: str = "mlartifacts"


@dataclass(frozen=True)
class OrchestrationConfig:
    task_runner: Literal["thread", "dask"] = "thread"
    max_workers: int = 2  # thread-pool size for per-song stages
    dask_address: str | None = None  # null: start a local cluster when task_runner is dask


@dataclass(frozen=True)
class PolicyConfig:
    encoder: Literal["conv", "transformer"] = "conv"  # encoder over the observation's beat-feature window
    d_model: int = 64  # width of the per-beat embedding inside the window encoder
    n_layers: int = 2  # conv blocks / transformer layers over the window
    n_heads: int = 4  # attention heads (transformer encoder only)
    kernel_size: int = 3  # temporal kernel of each conv block (conv encoder only)
    hidden: int = 128  # width of the MLP over the progress/history part and of the shared trunk


@dataclass(frozen=True)
class BCConfig:
    epochs: int = 8  # passes over the heuristic editor's (obs, mask, action) pairs
    lr: float = 1e-3  # AdamW learning rate
    batch_size: int = 512  # pairs per gradient step
    samples_per_song: int = 6  # heuristic edits per training song, each at another target ratio in the env's range
    weight_decay: float = 1e-4  # AdamW weight decay
    val_fraction: float = 0.1  # share of the pairs held out (by song) to report BC accuracy


@dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1  # DPO temperature: strength of the implicit KL anchor to the reference
    lr: float = 1e-4  # AdamW learning rate
    epochs: int = 4  # passes over the training pairs
    batch_size: int = 16  # pairs per gradient step
    label_smoothing: float = 0.0  # conservative DPO: assumed probability that a label is flipped
    min_strength: float = 0.0  # skip pairs whose preference strength |p-0.5|*2 is below this (ties always skipped)


@dataclass(frozen=True)
class RLHFConfig:
    algorithm: Literal["ppo", "dpo"] = "ppo"  # ppo: online RL on the learned reward; dpo: offline on the preference pairs
    # --- reward ------------------------------------------------------------------------------------------
    w_learned: float = 0.8  # weight of the normalised learned reward of the whole edit (terminal step)
    w_dense: float = 0.2  # weight of the dense reward's total (terminal step)
    kl_coef: float = 0.02  # per-step penalty -kl_coef * (logp - logp_ref) added to every step's reward
    adaptive_kl: bool = False  # adapt kl_coef towards kl_target (Ziegler et al. 2019 proportional controller)
    kl_target: float = 4.0  # target KL to the reference per episode (nats, summed over decisions) for adaptive_kl
    kl_horizon: int = 10000  # env steps over which the adaptive controller moves kl_coef
    # --- PPO (CleanRL names) -------------------------------------------------------------------------------
    total_steps: int = 100000  # env steps (decisions) over the whole run; updates = total_steps // (n_envs * rollout_steps)
    n_envs: int = 16  # parallel episodes in the vectorised env (songs drawn round-robin/random from the train split)
    rollout_steps: int = 128  # steps per env per rollout
    gamma: float = 1.0  # discount; 1.0 = undiscounted episodic return (the reward is mostly terminal)
    gae_lambda: float = 0.95  # GAE lambda
    clip_coef: float = 0.2  # PPO ratio clip
    vf_coef: float = 0.5  # value-loss coefficient
    ent_coef: float = 0.01  # entropy bonus coefficient
    max_grad_norm: float = 0.5  # global gradient-norm clip
    lr: float = 3e-4  # Adam learning rate
    anneal_lr: bool = True  # linearly anneal lr to 0 over the updates
    n_minibatches: int = 4  # minibatches per epoch
    update_epochs: int = 5  # optimisation epochs per rollout
    norm_adv: bool = True  # normalise advantages per minibatch
    clip_vloss: bool = True  # clip the value loss around the old values
    target_kl: float | None = 0.05  # stop the epoch loop when approx-KL(old||new) exceeds this; null = never
    bf16: bool = False  # bf16 autocast for the update's forward passes (CUDA or CPU)
    grad_accum: int = 1  # split each minibatch into this many micro-batches (same gradient, less memory)
    reward_batch_size: int = 64  # episodes per reward-model call (all finished episodes of a step are batched)
    # --- monitor, checkpoints --------------------------------------------------------------------------------
    eval_interval: int = 5  # updates between over-optimisation evaluations on validation songs (proxy, gold, KL)
    checkpoint_every: int = 5  # updates between resumable checkpoints
    n_eval_songs: int = 8  # validation songs in each evaluation (greedy edits)
    eval_targets: tuple[float, ...] = (0.55, 0.7)  # target ratios of the evaluation edits
    seed: int = 0  # seed of the RLHF stage (policy init, env resets, sampling)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)

    def check(self) -> str | None:
        if self.w_learned < 0 or self.w_dense < 0:
            return "w_learned and w_dense must be >= 0"
        if self.n_envs < 1 or self.rollout_steps < 1 or self.n_minibatches < 1 or self.update_epochs < 1 or self.grad_accum < 1:
            return "n_envs, rollout_steps, n_minibatches, update_epochs and grad_accum must be >= 1"
        if (self.n_envs * self.rollout_steps) % self.n_minibatches:
            return f"n_envs * rollout_steps ({self.n_envs * self.rollout_steps}) must be divisible by n_minibatches ({self.n_minibatches})"
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            return "gamma and gae_lambda must lie in [0, 1]"
        if self.eval_interval < 1 or self.checkpoint_every < 1:
            return "eval_interval and checkpoint_every must be >= 1"
        if any(not 0.0 < t <= 1.0 for t in self.eval_targets):
            return "eval_targets must lie in (0, 1]"
        return None


@dataclass(frozen=True)
class PreferencesConfig:
    out_path: str = "data/preferences/pairs.parquet"  # the pair table the preferences stage writes
    candidates_per_song: int = 24  # candidate edits generated per song (mix of the kinds below; OOD kinds on top)
    pairs_per_song: int = 48  # in-distribution pairs sampled per song from those candidates (both edits of a pair share one target)
    ood_pairs_per_song: int = 12  # extra pairs per song involving at least one OOD-kind edit (evaluation only)
    targets_per_song: int = 2  # edit targets (output/source duration) per song, sampled in [env.target_min, env.target_max]
    kind_weights: dict[str, float] = field(default_factory=lambda: {  # relative share of each candidate kind
        "random": 1.0,  # beatedit.editors.random_decisions
        "heuristic": 1.0,  # beatedit.editors.heuristic_decisions (+ small variations)
        "shifted_cut": 1.5,  # a cut of a good edit moved 1-2 beats off the bar line
        "off_bar_splice": 1.5,  # a good edit with a splice placed mid-bar
        "over_loop": 1.0,  # a good edit with many loops / repeats (OOD by default)
        "wrong_length": 1.0,  # a good edit made clearly too long or too short (OOD by default)
        "policy": 1.0,  # samples from a trained policy (only when a sampler is passed)
    })
    ood_kinds: list[str] = field(default_factory=lambda: ["over_loop", "wrong_length"])  # kinds held out of training: pairs touching them are marked ood and used only for evaluation
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])  # train / validation / test share of songs
    split_seed: int = 2024  # split = hash(song_id, split_seed); changing it reshuffles songs, never pairs
    use_listener_noise: bool = True  # true: choice ~ Bernoulli(P_BT) from listener.prefer; false: choice = gold ordering
    human_votes_path: str | None = "data/feedback/human_pairs.parquet"  # merged when the file exists (source=human); null = never
    seed: int = 11  # candidate generation and pair sampling; per song it is mixed with the song id

    def check(self) -> str | None:
        if len(self.split_fractions) != 3 or any(f < 0 for f in self.split_fractions) or abs(sum(self.split_fractions) - 1.0) > 1e-6:
            return f"split_fractions must be three non-negative numbers summing to 1, got {self.split_fractions}"
        if self.candidates_per_song < 4 or self.pairs_per_song < 1:
            return "candidates_per_song must be >= 4 and pairs_per_song >= 1"
        if self.targets_per_song < 1:
            return "targets_per_song must be >= 1"
        return None


@dataclass(frozen=True)
class RewardConfig:
    out_path: str = "artifacts/reward/model.pt"  # where the trained checkpoint is written
    checkpoint: str | None = None  # a reward checkpoint to load and validate instead of training (schema/vocab checked)
    # --- model (models/reward_model.py) ---
    d_model: int = 256  # width of the transformer
    n_layers: int = 3  # transformer blocks
    n_heads: int = 4  # attention heads per block
    max_beats: int = 500  # longest window the model sees; longer songs are scored in overlapping windows
    window_stride: int = 250  # stride between those windows (beats)
    dropout: float = 0.1  # dropout in attention, MLP and embeddings (training only)
    target_dropout: float = 0.1  # share of training items whose edit target is hidden (teaches the "unknown target" token)
    # --- optimisation (models/train_reward.py) ---
    lr: float = 3.0e-4  # AdamW peak learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not on norms, biases, embeddings)
    warmup_steps: int = 50  # linear warm-up optimizer steps, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1  # floor of the cosine schedule as a fraction of lr
    epochs: int = 30  # maximum passes over the training pairs
    batch_size: int = 32  # pairs per micro-batch
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    patience: int = 5  # early stopping: epochs without a better validation accuracy before stopping (best epoch restored)
    margin_scale: float = 0.0  # BT margin = margin_scale * strength (0 = plain Bradley-Terry)
    center_coef: float = 0.001  # lambda in lambda * (r_a + r_b)^2: keeps scores centred without bounding them
    seed: int = 0  # init, shuffling and dropout
    bf16: bool = False  # bf16 autocast for forward/backward (CUDA; ignored on CPU)
    score_batch_size: int = 64  # sequences per forward pass when scoring (evaluation, RL)
    # --- validation gate (stage fails when any is missed) ---
    min_val_accuracy: float = 0.70  # pair accuracy vs the (noisy) choices on validation songs
    min_ood_accuracy: float = 0.60  # pair accuracy on validation-song pairs involving held-out edit kinds
    min_score_std: float = 0.05  # std of scores over validation edits (a constant reward fails)
    max_saturated_fraction: float = 0.01  # share of validation scores within 1% of the observed range of its min or max
    max_ece: float = 0.10  # expected calibration error of the BT probabilities vs choices (10 bins)
    min_spearman: float = 0.50  # Spearman correlation of scores with the listener's gold totals (validation edits)

    def check(self) -> str | None:
        if self.d_model % self.n_heads:
            return f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
        if not 0 < self.window_stride <= self.max_beats:
            return f"window_stride must be in (0, max_beats], got {self.window_stride}"
        if self.batch_size < 1 or self.grad_accum_steps < 1 or self.epochs < 1:
            return "batch_size, grad_accum_steps and epochs must be >= 1"
        return None


@dataclass(frozen=True)
class Config:
    seed: int = 0  # global seed for everything not seeded more specifically
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when available
    data: DataConfig = field(default_factory=DataConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    stems: StemsConfig = field(default_factory=StemsConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    dense_reward: DenseRewardConfig = field(default_factory=DenseRewardConfig)
    listener: ListenerConfig = field(default_factory=ListenerConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)
    preferences: PreferencesConfig = field(default_factory=PreferencesConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    rlhf: RLHFConfig = field(default_factory=RLHFConfig)


# ----------------------------------------------------------------------------- loading
def _check_type(value: Any, tp: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {key} must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_type(value, arg, key, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: {key} must not be null")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list, got {type(value).__name__}")
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        items = [_check_type(v, inner, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: {key} has an unsupported declared type {tp!r}")


def _build(cls: type, data: Any, prefix: str, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix or 'top level'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        dotted = ", ".join(f"{prefix}.{k}" if prefix else str(k) for k in unknown)
        raise ConfigError(f"{where}: unknown key(s) {dotted}")
    missing = sorted(names - set(data))
    if missing:
        dotted = ", ".join(f"{prefix}.{k}" if prefix else k for k in missing)
        raise ConfigError(f"{where}: missing key(s) {dotted}")
    kwargs = {name: _check_type(data[name], hints[name], f"{prefix}.{name}" if prefix else name, where) for name in names}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {prefix or 'top level'}: {exc}") from exc
    check = getattr(obj, "check", None)
    if callable(check):
        problem = check()
        if problem:
            raise ConfigError(f"{where}: {prefix}: {problem}")
    return obj


def parse_override(text: str) -> tuple[str, Any]:
    """``key.sub=value`` -> (dotted key, YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc


def apply_overrides(raw: dict, overrides: list[str], where: str) -> dict:
    for text in overrides:
        key, value = parse_override(text)
        node = raw
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"{where}: override {key}: {'.'.join(parts[: i + 1])} is not a section")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"{where}: override names unknown key {key}")
        node[parts[-1]] = value
    return raw


def load_raw(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: parameters file not found") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return raw


def load_config(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Config:
    """Read, override and validate params.yaml into a ``Config``."""
    raw = apply_overrides(load_raw(path), list(overrides or []), str(path))
    return _build(Config, raw, "", str(path))


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": value}: the form MLflow params take."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def default_params_yaml() -> str:
    """The defaults as YAML (used to write params.yaml and by tests)."""
    return yaml.safe_dump(config_to_dict(Config()), sort_keys=False)


def _field_comments(cls: type) -> dict[str, str]:
    import inspect
    import re

    comments: dict[str, str] = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+):[^#]*#\s*(.+)$", line)
        if m:
            comments[m.group(1)] = m.group(2).strip()
    return comments


def render_params_yaml(cfg: Any = None, indent: int = 0) -> str:
    """Config -> YAML text with each field's code comment, so params.yaml documents itself."""
    cfg = Config() if cfg is None else cfg
    comments = _field_comments(type(cfg))
    lines: list[str] = []
    pad = "  " * indent
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        note = f"  # {comments[f.name]}" if f.name in comments else ""
        if dataclasses.is_dataclass(value):
            if indent == 0 and lines:
                lines.append("")
            lines.append(f"{pad}{f.name}:{note}")
            lines.append(render_params_yaml(value, indent + 1))
        else:
            scalar = yaml.safe_dump(list(value) if isinstance(value, tuple) else value, default_flow_style=True).strip()
            scalar = scalar.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"{pad}{f.name}: {scalar}{note}")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m beatedit.config > params.yaml
    print("# beatedit parameters: the single source of configuration (validated by beatedit/config.py).")
    print("# Every key is documented where it is declared; unknown or missing keys are errors.")
    print(render_params_yaml())
