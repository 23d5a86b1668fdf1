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


@dataclass(frozen=True)
class DataConfig:
    audio_dir: str = "data/audio"  # songs to edit; the corpus stage writes here unless use_generated_corpus is false
    use_generated_corpus: bool = True  # false: audio_dir is the user's own folder (no ground truth)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)


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
