"""Typed configuration: ``params.yaml`` validated into frozen dataclasses at load time.

``params.yaml`` is the single source of configuration. Every key must be declared
here; an unknown key, a missing key or a value of the wrong type is a ``ConfigError``
naming the dotted key and the file. Each section's fields are documented where they
are declared (TRL-style: every knob says what it does).

Every numeric key also has a range (``RANGES`` below, one table for every section,
checked by ``_build`` for every value, list items included); NaN and infinity are refused
everywhere. ``tests/integration/test_adversarial_files.py`` checks that no numeric key lacks
a range. Relations between keys (min <= max, weights with a positive sum) stay in each
section's ``check()``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
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
    n_songs: int = 48  # songs in the generated default corpus
    min_seconds: float = 60.0  # shortest generated song
    max_seconds: float = 150.0  # longest generated song
    sample_rate: int = 22050  # sample rate of the generated mixes (mono PCM_16 WAV) and stems (PCM_16 FLAC)
    seed: int = 1234  # corpus seed: same seed -> byte-identical corpus
    hard_share: float = 0.25  # share of "hard" songs (no drums, 6/8-9/8-12/8, slow 2/2, expressive timing), appended as hard_000...; 0 = ordinary songs only

    def check(self) -> str | None:
        if self.n_songs < 1:
            return f"n_songs must be >= 1, got {self.n_songs}"
        if self.sample_rate < 8000:
            return f"sample_rate must be >= 8000 Hz, got {self.sample_rate}"
        if self.seed < 0:
            return f"seed must be >= 0, got {self.seed}"
        if not self.min_seconds >= 10.0:
            return f"min_seconds must be >= 10 (the shortest generated form is 8 bars), got {self.min_seconds}"
        if self.min_seconds > self.max_seconds:
            return f"min_seconds ({self.min_seconds}) must be <= max_seconds ({self.max_seconds})"
        if not 0.0 <= self.hard_share <= 1.0:
            return f"hard_share must be in [0, 1] (the share of hard songs), got {self.hard_share}"
        return None


@dataclass(frozen=True)
class DataConfig:
    audio_dir: str = "data/corpus/audio"  # songs to edit: the generated corpus, or your own folder of wav/flac/ogg/mp3
    use_generated_corpus: bool = True  # false: audio_dir is your own folder (no ground truth; beat metrics are skipped)
    corpus_dir: str = "data/corpus"  # the corpus stage's output: manifest.json (+ audio/, stems/, truth/ when generated)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)

    def check(self) -> str | None:
        generated_audio = f"{self.corpus_dir.rstrip('/')}/audio"
        if self.use_generated_corpus and self.audio_dir.rstrip("/") != generated_audio:
            return (f"audio_dir is {self.audio_dir!r} but use_generated_corpus is true (the corpus is generated into "
                    f"{generated_audio!r}, i.e. corpus_dir/audio); set data.use_generated_corpus: false to use your own folder")
        return None


@dataclass(frozen=True)
class AudioConfig:
    analysis_sr: int = 22050  # every analysis resamples to this rate; renders use the source rate
    min_beats: int = 32  # songs with fewer tracked beats are quarantined
    max_seconds: float = 1800.0  # longer files are quarantined (memory guard)
    max_quarantined_fraction: float = 0.5  # a per-song stage fails (exit 3) when more songs than this are quarantined
    silence_dbfs: float = -80.0  # a file whose peak level is below this (dBFS) is quarantined as silent


@dataclass(frozen=True)
class StemsConfig:
    backend: Literal["hpss", "demucs"] = "hpss"  # stem separator; demucs needs local weights
    cache_dir: str = "data/stems"  # content-addressed stem cache
    n_fft: int = 2048
    hop_length: int = 512
    hpss_margin: float = 1.0  # librosa HPSS margin (higher = cleaner, sparser stems; the residual goes to "other"). 1.0 measured best for SDR
    bass_cutoff_hz: float = 180.0  # harmonic energy below this goes to the bass stem
    hpss_kernel_harmonic: int = 23  # median filter length across time (frames) for the harmonic estimate; odd
    hpss_kernel_percussive: int = 5  # median filter length across frequency (bins) for the percussive estimate; odd
    demucs_model_dir: str = "models/demucs"  # where local demucs weights would live

    def check(self) -> str | None:
        if self.hop_length > self.n_fft:
            return f"hop_length ({self.hop_length}) must be <= n_fft ({self.n_fft})"
        return None


@dataclass(frozen=True)
class FeaturesConfig:
    out_dir: str = "data/features"
    hop_length: int = 512  # analysis hop at analysis_sr
    n_fft: int = 2048
    phrase_bars: int = 8  # long phrase: a section whose length in bars is a multiple of this is cut into phrases this long, others into 4-bar phrases
    min_section_bars: int = 4  # shortest section the novelty segmenter may return (bars)
    tempo_prior_bpm: float = 110.0  # centre of the log-normal tempo prior (librosa start_bpm)
    tempo_prior_octaves: float = 1.0  # width (std, octaves) of the log-normal tempo prior
    min_bpm: float = 50.0  # slowest tempo the tracker may report
    max_bpm: float = 220.0  # fastest tempo the tracker may report
    tightness: float = 100.0  # librosa beat-tracker tightness (higher = steadier tempo)
    octave_up_ratio: float = 0.8  # double the tempo when low-band onsets between beats reach this fraction of those on beats
    octave_up_max_bpm: float = 180.0  # ... unless the doubled tempo would exceed this (eighth notes of slow pieces without drums)
    trim_ratio: float = 0.25  # leading/trailing beats whose onset strength is below this x the median beat's are dropped
    onset_lead_s: float = 0.016  # added to beat times: a centred 2048-sample window's flux peaks ~16 ms before the attack (measured)
    drums_onset_weight: float = 0.5  # weight of the drums stem's onset envelope added to the mix's for beat tracking
    meter_ssm_weight: float = 1.0  # weight of beat self-similarity periodicity (3/6 vs 4/8 beats) in the meter decision
    meter_bias_4: float = 0.05  # prefer 4/4 unless 3/4 scores better by more than this
    meter2_ratio: float = 1.0  # a 4-beat bar becomes 2 beats when the downbeat contrast folded by 2 exceeds this x the one folded by 4 (1.2 -> 1.0: real-music meter acc 0.468 -> 0.553, generated corpus unchanged; 0.9 costs Bach chorales and songs)
    downbeat_jump_penalty: float = 2.0  # Viterbi cost (x evidence std x meter) of a bar-phase jump between beats
    novelty_half_bars: int = 4  # half-width (bars) of the checkerboard kernel for novelty / sections
    section_threshold: float = 0.6  # a 4-bar grid point starts a section when its novelty's robust z-score (median/MAD) exceeds this
    realmusic_check: bool = True  # the features stage also runs the front end on the real-music validation set (music21 renders, beatedit/corpus/realmusic.py) and writes realmusic_* metrics; skipped with a warning without fluidsynth
    realmusic_dir: str = "data/realmusic"  # content-cached renders of the validation set (+ their stems); not a DVC out

    def check(self) -> str | None:
        if not self.min_bpm < self.max_bpm:
            return f"min_bpm ({self.min_bpm}) must be < max_bpm ({self.max_bpm})"
        if self.hop_length > self.n_fft:
            return f"hop_length ({self.hop_length}) must be <= n_fft ({self.n_fft})"
        return None


@dataclass(frozen=True)
class EnvConfig:
    target_min: float = 0.3  # edit target (output / source duration) sampled in [target_min, target_max]
    target_max: float = 0.8
    window_before: int = 8  # beats of features before the cursor in the observation
    window_after: int = 16  # beats of features after (and including) the cursor
    recent_actions: int = 8  # one-hot history length in the observation
    max_loops_per_episode: int = 8  # loop/repeat actions beyond this are masked
    illegal_action: Literal["keep", "raise"] = "keep"  # a masked action from a mask-unaware agent (plain SB3 PPO): "keep" plays KEEP instead and sets info["illegal_action"]; "raise" is a ValueError
    keep_start: bool = True  # the policy's edit starts at the song's real start: no cut action at the first beat (the search editor never cuts there; PPO learned to skip intros the listener and users want kept). Editors' plans and preference candidates may still skip it
    length_guard: bool = True  # feasibility masking toward the target: END/FADE_OUT only within tolerance, no overshooting emission, no skip that makes the target unreachable (beatedit/editing/program.py)
    length_tolerance_beats: float = 1.0  # the guard's tolerance around the target, in median beats of the song

    def check(self) -> str | None:
        if not (0.0 < self.target_min <= self.target_max <= 1.0):
            return f"need 0 < target_min <= target_max <= 1, got target_min={self.target_min}, target_max={self.target_max}"
        if self.window_before < 0 or self.window_after < 1 or self.recent_actions < 0 or self.max_loops_per_episode < 0:
            return "window_before, recent_actions and max_loops_per_episode must be >= 0 and window_after >= 1"
        if not (self.length_tolerance_beats > 0 and self.length_tolerance_beats < 1e6):
            return f"length_tolerance_beats must be a positive number, got {self.length_tolerance_beats}"
        return None


@dataclass(frozen=True)
class RenderConfig:
    crossfade_ms: float = 20.0  # equal-power crossfade length at each splice
    target_lufs: float | None = None  # loudness-normalise renders to this LUFS; null = off
    limit_peak: bool = True  # after loudness normalisation, scale down so the sample peak stays <= 1.0 (never clip)
    wav_subtype: Literal["PCM_16", "PCM_24", "FLOAT"] = "PCM_24"  # sample format of written edits

    def check(self) -> str | None:
        if not self.crossfade_ms >= 0:
            return f"crossfade_ms must be >= 0, got {self.crossfade_ms}"
        return None


@dataclass(frozen=True)
class DenseRewardConfig:
    # total = w_tempo*tempo + w_energy*energy + w_phrase*phrase + w_transition*transition (see beatedit/judging/dense.py)
    w_tempo: float = 0.25  # weight of tempo consistency across splices
    w_energy: float = 0.25  # weight of energy flow (loudness across splices, no dead stretches)
    w_phrase: float = 0.25  # weight of phrase completeness (whole phrases kept, cuts on phrase/bar boundaries)
    w_transition: float = 0.25  # weight of transition quality (bar position, timbre, harmony at splices)
    tempo_jump_bpm: float = 5.0  # a splice joining tempi further apart than this is penalised (also the decay scale beyond it)
    energy_tol_db: float = 3.0  # loudness gap at a splice (incoming vs expected-or-outgoing beat) tolerated for free
    energy_scale_db: float = 6.0  # beyond the tolerance the splice's energy score decays as exp(-excess / scale)
    energy_splice_weight: float = 0.7  # share of `energy` from splices; the rest is 1 - share of output in dead stretches
    silence_db: float = -70.0  # a beat at or below this rms_db is dead
    dead_rel_db: float = 24.0  # ... as is a beat more than this many dB below the song's median rms_db
    dead_min_beats: int = 2  # dead beats only count when they form a run at least this long in the output
    default_phrase_beats: int = 8  # phrase length assumed ONLY when a song has no phrase_starts
    bar_boundary_credit: float = 0.5  # credit for a cut on a bar start that is not a phrase start (phrase start = 1)
    phrase_boundary_weight: float = 0.5  # share of `phrase` from cut boundaries; the rest is phrase wholeness
    w_grid: float = 1.0  # transition: relative weight of bar-position continuity (downbeat lands on downbeat)
    w_timbre: float = 1.0  # transition: relative weight of MFCC similarity (incoming vs expected-or-outgoing beat)
    w_harmony: float = 1.0  # transition: relative weight of chroma similarity (incoming vs expected-or-outgoing beat)

    def check(self) -> str | None:
        weights = (self.w_tempo, self.w_energy, self.w_phrase, self.w_transition, self.w_grid, self.w_timbre, self.w_harmony)
        if min(weights) < 0:
            return "reward weights must be >= 0"
        if self.w_tempo + self.w_energy + self.w_phrase + self.w_transition <= 0:
            return "w_tempo + w_energy + w_phrase + w_transition must be > 0 (all zero: every edit scores the same)"
        if self.w_grid + self.w_timbre + self.w_harmony <= 0:
            return "w_grid + w_timbre + w_harmony must be > 0"
        if self.tempo_jump_bpm <= 0 or self.energy_scale_db <= 0 or self.energy_tol_db < 0:
            return "tempo_jump_bpm and energy_scale_db must be > 0, energy_tol_db >= 0"
        for name in ("energy_splice_weight", "bar_boundary_credit", "phrase_boundary_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                return f"{name} must be in [0, 1]"
        if self.dead_min_beats < 1 or self.default_phrase_beats < 1:
            return "dead_min_beats and default_phrase_beats must be >= 1"
        return None


@dataclass(frozen=True)
class ListenerConfig:
    """The simulated listener v2 (``beatedit/judging/listener.py``): what people who edit music value."""

    noise: float = 0.1  # Bradley-Terry temperature: P(A) = sigmoid((s_A - s_B) / noise)
    seed: int = 7
    # total = weighted mean of the components (weights normalised by their sum; see beatedit/judging/listener.py)
    w_duration: float = 0.2  # weight of the length fit in seconds (the exact length editors ask for)
    w_alignment: float = 0.1  # weight of bar/phrase alignment of every cut
    w_seams: float = 0.15  # weight of seam quality measured on the rendered audio
    w_ending: float = 0.15  # weight of the ending: the real ending > a section-end cadence > a fade > a stop
    w_start: float = 0.1  # weight of the start: the real start (pre-roll, pickup) > a fade-in > a later entry
    w_arc: float = 0.15  # weight of the arc: section types kept in order, the last chorus before the ending
    w_fragmentation: float = 0.1  # weight of few pieces, none shorter than min_piece_bars
    w_repetition: float = 0.05  # weight of no excessive looping / repeated material
    duration_tolerance_beats: float = 1.0  # |output - target| up to this many beats (median beat) is a perfect fit
    duration_scale_beats: float = 4.0  # beyond the tolerance the fit decays as exp(-excess / (this many beats))
    bar_credit: float = 0.6  # alignment credit of a cut point on a downbeat that is not a phrase start (phrase start = 1)
    phase_credit: float = 0.25  # alignment credit of a splice off the bar lines on both sides that keeps the bar phase
    section_end_credit: float = 0.7  # ending credit of a stop at a section end (a cadence; the real ending = 1)
    fade_credit: float = 0.5  # ending credit of a fade-out: the fallback, at most about half a real ending
    long_fade_bars: float = 2.0  # a fade-out longer than this many bars ...
    long_fade_factor: float = 0.8  # ... earns this share of fade_credit
    phrase_end_credit: float = 0.4  # ending credit of an abrupt stop at a phrase end
    bar_end_credit: float = 0.2  # ending credit of an abrupt stop at a bar end (mid-bar: 0)
    fade_in_credit: float = 0.5  # start credit of a fade-in (the real start = 1)
    first_downbeat_credit: float = 0.7  # start credit of entering at the first downbeat (pickup dropped)
    section_start_credit: float = 0.5  # start credit of entering at a later section start
    phrase_start_credit: float = 0.4  # start credit of entering at a later phrase start
    bar_start_credit: float = 0.2  # start credit of entering at a later downbeat (elsewhere: 0)
    section_type_similarity: float = 0.8  # sections whose mean MFCC and chroma have this cosine similarity share a type
    any_chorus_credit: float = 0.6  # arc: keeping another chorus instance (not the last) earns this share
    min_piece_bars: float = 2.0  # pieces shorter than this many bars count as fragments (and a type as heard after it)
    short_piece_cost: float = 0.5  # fragmentation = 1 / (1 + cost x short pieces) x piece-count decay
    max_free_pieces: int = 4  # pieces beyond this many decay fragmentation as exp(-excess / max_free_pieces)
    seam_window_ms: float = 50.0  # seam windows: this much rendered audio before vs after each splice
    seam_crossfade_ms: float = 10.0  # equal-power crossfade of the listener's own mono render
    seam_baseline_pct: float = 75.0  # discontinuity up to this percentile of the song's natural beat boundaries is free
    seam_loud_scale_db: float = 4.0  # seam loudness excess (dB) decay scale
    seam_spec_scale_db: float = 3.0  # seam spectral-shape excess (mean |dB| over bands) decay scale
    seam_worst_weight: float = 0.5  # seams = (1 - w) * mean + w * worst splice score (listeners remember the worst seam)
    chorus_tolerance_db: float = 1.5  # sections within this many dB of the loudest section count as the chorus
    max_loops_per_phrase: int = 2  # loop-backs landing in one phrase beyond this are penalised
    max_repeat_share: float = 0.25  # share of the output that repeats material beyond this is penalised

    def check(self) -> str | None:
        weights = (self.w_duration, self.w_alignment, self.w_seams, self.w_ending, self.w_start, self.w_arc,
                   self.w_fragmentation, self.w_repetition)
        if min(weights) < 0 or sum(weights) <= 0:
            return "listener weights must be >= 0 with a positive sum"
        if self.noise < 0:
            return "noise must be >= 0 (0 = deterministic preferences)"
        if (self.duration_scale_beats <= 0 or self.seam_loud_scale_db <= 0 or self.seam_spec_scale_db <= 0
                or self.seam_window_ms <= 0 or self.duration_tolerance_beats < 0):
            return "duration_scale_beats, seam scales and seam_window_ms must be > 0, duration_tolerance_beats >= 0"
        if not 0 <= self.seam_baseline_pct <= 100:
            return "seam_baseline_pct must be in [0, 100]"
        for name in ("bar_credit", "phase_credit", "seam_worst_weight", "max_repeat_share", "section_end_credit",
                     "fade_credit", "long_fade_factor", "phrase_end_credit", "bar_end_credit", "fade_in_credit",
                     "first_downbeat_credit", "section_start_credit", "phrase_start_credit", "bar_start_credit",
                     "section_type_similarity", "any_chorus_credit"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                return f"{name} must be in [0, 1]"
        if self.min_piece_bars <= 0 or self.long_fade_bars <= 0 or self.max_free_pieces < 1 or self.short_piece_cost < 0:
            return "min_piece_bars and long_fade_bars must be > 0, max_free_pieces >= 1, short_piece_cost >= 0"
        return None


@dataclass(frozen=True)
class MlflowConfig:
    experiment: str = "beatedit"
    tracking_uri: str = "sqlite:///mlflow.db"  # MLFLOW_TRACKING_URI overrides
    artifact_root: str = "mlartifacts"


@dataclass(frozen=True)
class OrchestrationConfig:
    task_runner: Literal["thread", "dask"] = "thread"  # per-song stages (stems, features, preferences): thread pool or Dask cluster
    max_workers: int = 2  # thread-pool size, or worker processes of the local Dask cluster, for per-song stages
    dask_address: str | None = None  # Dask scheduler (tcp://host:8786) when task_runner is dask; null: start a local cluster; env BEATEDIT_DASK_ADDRESS overrides
    song_timeout_s: float = 1800.0  # a per-song task running longer than this fails and its song is quarantined (reason "timeout")

    def check(self) -> str | None:
        if self.max_workers < 1:
            return f"max_workers must be >= 1, got {self.max_workers}"
        if not self.song_timeout_s > 0:
            return f"song_timeout_s must be > 0, got {self.song_timeout_s}"
        return None


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
    editors: tuple[Literal["search", "heuristic", "fade"], ...] = ("search",)  # baseline editors whose decisions are
    #                             cloned (the search editor: the strongest baseline, so the anchor is a good prior)
    epochs: int = 10  # passes over the demonstrations' (obs, mask, action) pairs
    lr: float = 1e-3  # AdamW learning rate
    batch_size: int = 512  # pairs per gradient step
    samples_per_song: int = 18  # edits per training song and editor, each at another target ratio in the env's range
    weight_decay: float = 1e-4  # AdamW weight decay
    val_fraction: float = 0.1  # share of the training songs held out to report BC accuracy (0 = none)
    class_balance: float = 0.5  # weight each pair by count(action)^-class_balance (KEEP dominates: without it
    #                             BC never cuts or fades greedily); 0 = plain cross-entropy
    label_smoothing: float = 0.0  # target mass spread over the *legal* actions; 0 = none: with smoothing every
    #                               sharpened policy pays a flat KL per decision, so the KL no longer measures
    #                               distance from the prior (issue 17); PPO explores through rlhf.ent_coef


@dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1  # DPO temperature: strength of the implicit KL anchor to the reference
    lr: float = 1e-4  # AdamW learning rate
    epochs: int = 4  # passes over the training pairs
    batch_size: int = 16  # pairs per gradient step
    label_smoothing: float = 0.0  # conservative DPO: assumed probability that a label is flipped
    min_strength: float = 0.0  # skip pairs whose preference strength |p-0.5|*2 is below this (ties always skipped)
    # --- online, iterative DPO (models.dpo.train_online_dpo; like TRL's OnlineDPOConfig / RPO) ---------------------
    online: bool = True  # true: each round samples edits from the current policy and ranks them with the learned reward
    #                      model (with the target; never the listener); false: offline DPO on the preference pairs
    rounds: int = 4  # online rounds (sample -> rank -> train); the monitor evaluates after each, the best-by-gold is kept
    prompts_per_song: int = 4  # (train song, target) prompts per song per round, targets stratified over the env's range
    samples_per_prompt: int = 8  # edits sampled per prompt from the current policy; the best and the worst by the
    #                               learned reward make one pair (prompts whose samples all score alike are skipped)
    temperature: float = 1.0  # sampling temperature of the online edits (> 1 spreads a sharp BC policy's samples)
    min_reward_gap: float = 0.02  # skip a prompt whose best and worst normalised learned rewards differ by less
    ipo: bool = True  # IPO loss (Azar et al. 2023): (h - 1/(2 beta))^2, bounded margins; false: sigmoid DPO with label_smoothing
    nll_coef: float = 0.2  # weight of the chosen edit's per-decision NLL (RPO, Pang et al. 2024): stops the chosen
    #                        edit's likelihood falling with the rejected one's (likelihood displacement)


@dataclass(frozen=True)
class RLHFConfig:
    algorithm: Literal["ppo", "dpo"] = "ppo"  # ppo: online RL on the learned reward; dpo: offline on the preference pairs
    compare_algorithms: bool = True  # also train the other algorithm from the same reference and report it beside the primary (dpo_*/ppo_* in metrics/rlhf.json); only `algorithm`'s policy is registered
    out_dir: str = "artifacts/rlhf"  # the rlhf stage's output: policy.pt, reference.pt, registry.json
    runs_dir: str = "artifacts/rlhf_runs"  # resumable checkpoints, one folder per run key (not a DVC output: survives re-runs)
    # --- reward ------------------------------------------------------------------------------------------
    w_learned: float = 0.8  # weight of the normalised learned reward of the whole edit (terminal step)
    w_dense: float = 0.2  # weight of the dense reward's total (terminal step)
    kl_coef: float = 0.02  # per-step penalty -kl_coef * (logp - logp_ref) added to every step's reward
    adaptive_kl: bool = False  # adapt kl_coef towards kl_target (Ziegler et al. 2019 proportional controller)
    kl_target: float = 4.0  # target KL to the reference per episode (nats, summed over decisions) for adaptive_kl
    kl_horizon: int = 10000  # env steps over which the adaptive controller moves kl_coef
    # --- PPO (CleanRL names) -------------------------------------------------------------------------------
    total_steps: int = 524288  # env steps (decisions) over the whole run; updates = total_steps // (n_envs * rollout_steps)
    n_envs: int = 16  # parallel episodes in the vectorised env (songs drawn round-robin/random from the train split)
    rollout_steps: int = 128  # steps per env per rollout
    gamma: float = 1.0  # discount; 1.0 = undiscounted episodic return (the reward is mostly terminal)
    gae_lambda: float = 0.95  # GAE lambda
    clip_coef: float = 0.2  # PPO ratio clip
    vf_coef: float = 0.5  # value-loss coefficient
    ent_coef: float = 0.01  # entropy bonus coefficient
    max_grad_norm: float = 0.5  # global gradient-norm clip
    lr: float = 1e-3  # Adam learning rate (1e-3 beat 5e-4 and 3e-4 on validation gold at 393k steps; see docs/rlhf.md)
    anneal_lr: bool = True  # linearly anneal lr to 0 over the updates
    n_minibatches: int = 4  # minibatches per epoch
    update_epochs: int = 5  # optimisation epochs per rollout
    norm_adv: bool = True  # normalise advantages per minibatch
    clip_vloss: bool = True  # clip the value loss around the old values
    target_kl: float | None = 0.05  # stop the epoch loop when approx-KL(old||new) exceeds this; null = never
    bf16: bool = True  # bf16 autocast for the policy in rollout and update: ~1.4x faster PPO with native bf16 (AVX512-BF16/AMX CPU, GPU); emulated (slower, warned) elsewhere: set false
    grad_accum: int = 1  # split each minibatch into this many micro-batches (same gradient, less memory)
    reward_batch_size: int = 64  # episodes per reward-model call (all finished episodes of a step are batched)
    # --- monitor, checkpoints --------------------------------------------------------------------------------
    eval_interval: int = 5  # updates between over-optimisation evaluations on validation songs (proxy, gold, KL)
    checkpoint_every: int = 10  # updates between resumable checkpoints
    n_eval_songs: int = 16  # validation songs in each evaluation (greedy edits; the first N of the split; 0 = no monitor)
    eval_targets: tuple[float, ...] = ()  # target ratios of the monitor's edits; empty = the evaluate stage's protocol (evaluate.targets_per_song per song, spread over the env's target range)
    seed: int = 0  # seed of the RLHF stage (policy init, env resets, sampling)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)

    def check(self) -> str | None:
        if self.w_learned < 0 or self.w_dense < 0:
            return "w_learned and w_dense must be >= 0"
        if self.w_learned + self.w_dense <= 0:
            return "w_learned + w_dense must be > 0 (both zero: PPO has no reward but the KL penalty)"
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


#: candidate edit kinds the preferences stage generates (beatedit.preferences.pairs)
CANDIDATE_KINDS = ("random", "heuristic", "search", "structural", "shifted_cut", "off_bar_splice", "over_loop",
                   "wrong_length", "tail_fade", "policy")


@dataclass(frozen=True)
class PreferencesConfig:
    out_dir: str = "data/preferences"  # the preferences stage's output: pairs.parquet, splits.csv, quarantine.json
    candidates_per_song: int = 32  # candidate edits generated per song (mix of the kinds below; OOD kinds on top)
    pairs_per_song: int = 48  # in-distribution pairs sampled per song from those candidates (both edits of a pair share one target)
    ood_pairs_per_song: int = 4  # extra pairs per song involving at least one OOD-kind edit (evaluation only)
    targets_per_song: int = 2  # edit targets (output/source duration) per song, sampled in [env.target_min, env.target_max]
    # relative share of each candidate kind among a song's candidates (0 = never generated)
    weight_random: float = 1.0  # beatedit.editing.editors.random_decisions (valid random actions)
    weight_heuristic: float = 1.0  # beatedit.editing.editors.heuristic_decisions, plus variations of it at other targets
    weight_search: float = 1.5  # beatedit.editing.search: the beat-level search editor, at the target and a few points off it
    weight_structural: float = 1.0  # whole sections in order, first and last always kept (intro + ... + outro)
    weight_shifted_cut: float = 1.5  # a good edit with one cut moved 1-2 beats off the bar line
    weight_off_bar_splice: float = 1.5  # a good edit with an extra splice placed mid-bar
    weight_over_loop: float = 1.0  # a good edit with several loops / repeats added
    weight_wrong_length: float = 1.0  # a good edit made clearly too long or too short for the target
    weight_tail_fade: float = 1.5  # the song from its start, faded out near the target (0-15 points off): pairs that differ in length alone
    weight_policy: float = 1.0  # samples from a trained policy (only when a sampler is passed)
    ood_kinds: list[str] = field(default_factory=lambda: ["over_loop"])  # kinds held out of training: pairs touching them are marked ood and used only for evaluation
    split_fractions: list[float] = field(default_factory=lambda: [0.6, 0.15, 0.25])  # train / validation / promotion share of songs
    split_seed: int = 2024  # split = hash(song_id, split_seed); changing it reshuffles songs, never pairs
    use_listener_noise: bool = True  # true: choice ~ Bernoulli(P_BT) from listener.prefer; false: choice = gold ordering
    human_votes_path: str | None = "data/feedback/human_pairs.parquet"  # merged when the file exists (source=human); null = never
    human_analyses_dir: str | None = "data/feedback/analyses"  # beat features of uploaded songs, written by `beatedit feedback export` beside the votes file (<its folder>/analyses); null = uploads' votes are left out
    human_split: Literal["train", "by_song"] = "train"  # train: every human pair trains the reward model (listeners vote on held-out songs: the listening set); by_song: the song's own split, like simulated pairs
    seed: int = 11  # candidate generation and pair sampling; per song it is mixed with the song id

    def check(self) -> str | None:
        if len(self.split_fractions) != 3 or any(f < 0 for f in self.split_fractions) or abs(sum(self.split_fractions) - 1.0) > 1e-6:
            return f"split_fractions must be three non-negative numbers summing to 1, got {self.split_fractions}"
        if self.candidates_per_song < 4 or self.pairs_per_song < 1:
            return "candidates_per_song must be >= 4 and pairs_per_song >= 1"
        if self.targets_per_song < 1:
            return "targets_per_song must be >= 1"
        if sum(getattr(self, f"weight_{k}") for k in CANDIDATE_KINDS if k != "policy") <= 0:
            return "the weight_* of the candidate kinds must have a positive sum"
        unknown = sorted(set(self.ood_kinds) - set(CANDIDATE_KINDS))
        if unknown:
            return f"ood_kinds names unknown candidate kinds {unknown}; known: {list(CANDIDATE_KINDS)}"
        return None


@dataclass(frozen=True)
class RewardConfig:
    out_dir: str = "artifacts/reward"  # the reward stage's output: model.pt (the checkpoint), registry.json
    checkpoint: str | None = None  # a reward checkpoint to load and validate instead of training (schema/vocab checked)
    # --- model (models/reward_model.py) ---
    d_model: int = 128  # width of the transformer
    n_layers: int = 3  # transformer blocks
    n_heads: int = 4  # attention heads per block
    max_beats: int = 500  # longest window the model sees; longer songs are scored in overlapping windows
    window_stride: int = 250  # stride between those windows (beats)
    dropout: float = 0.1  # dropout on embeddings, attention output and MLP (not on attention weights: keeps the fused SDPA kernel)
    target_dropout: float = 0.1  # share of training items whose edit target is hidden (teaches the "unknown target" token)
    # --- optimisation (models/train_reward.py) ---
    lr: float = 3.0e-4  # AdamW peak learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not on norms, biases, embeddings)
    warmup_steps: int = 50  # linear warm-up optimizer steps, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1  # floor of the cosine schedule as a fraction of lr
    epochs: int = 10  # maximum passes over the training pairs (CPU-sized default; raise it on a GPU)
    batch_size: int = 32  # pairs per micro-batch
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    patience: int = 3  # early stopping: epochs without a better validation accuracy before stopping (best epoch restored)
    margin_scale: float = 0.0  # BT margin = margin_scale * strength (0 = plain Bradley-Terry)
    human_weight: float = 2.0  # weight of a human pair (source=human) in the Bradley-Terry loss, relative to 1 for a simulated pair
    center_coef: float = 0.01  # lambda in lambda * (r_a + r_b)^2: keeps scores centred without bounding them
    seed: int = 0  # init, shuffling and dropout
    bf16: bool = False  # bf16 autocast for forward/backward (CUDA; ignored on CPU)
    score_batch_size: int = 64  # sequences per forward pass when scoring (evaluation, RL)
    # --- validation gate (stage fails when any is missed) ---
    min_val_accuracy: float = 0.60  # pair accuracy vs the (noisy) choices on validation songs (the listener's own ceiling is ~0.7 at noise 0.1)
    min_val_to_ceiling: float = 0.90  # val_accuracy / noise_ceiling (the listener's gold ordering vs its own noisy choices)
    min_ood_accuracy: float = 0.55  # pair accuracy on validation-song pairs involving held-out edit kinds
    min_score_std: float = 0.05  # std of scores over validation edits (a constant reward fails)
    # share of validation scores within 1% of the observed score range of its min or max (the two extremes themselves not
    # counted); a constant reward gives 1.0, a clamped one its clamped share. NB: evenly spread scores give ~0.02 by
    # construction (a 1% band at each end), so a threshold of 0.01 would fail a well-spread model; 0.05 separates them.
    max_saturated_fraction: float = 0.05  # share of validation scores within 1% of the score range of its min or max (evenly spread ~0.02, constant 1.0)
    max_ece: float = 0.10  # expected calibration error of the BT probabilities vs choices (10 bins)
    min_spearman: float = 0.30  # Spearman correlation of scores with the listener's gold totals (validation edits)

    def check(self) -> str | None:
        if self.d_model % self.n_heads:
            return f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
        if not 0 < self.window_stride <= self.max_beats:
            return f"window_stride must be in (0, max_beats], got {self.window_stride}"
        if self.batch_size < 1 or self.grad_accum_steps < 1 or self.epochs < 1:
            return "batch_size, grad_accum_steps and epochs must be >= 1"
        return None


@dataclass(frozen=True)
class EvaluateConfig:
    out_dir: str = "artifacts/evaluate"  # the evaluate stage's output: results.parquet, decision.json, renders/
    split: Literal["promotion", "validation"] = "promotion"  # which held-out songs of the main corpus the evaluate stage scores (the promotion decision's); the frozen test set is the report's alone
    n_bootstrap: int = 2000  # bootstrap resamples (over songs) for win-rate confidence intervals
    targets_per_song: int = 3  # edit targets per held-out song, spread over [env.target_min, env.target_max]
    n_render_examples: int = 3  # songs whose original / heuristic / candidate renders are logged to MLflow
    seed: int = 11  # targets per song and the random editor
    listening_songs: int = 2  # held-out songs rendered into the listening set (<out_dir>/listening, served by `beatedit feedback serve`); 0 = none
    listening_pairs: int = 8  # at most this many candidate-vs-(champion, search, fade, heuristic) pairs in it, least reward-margin first


@dataclass(frozen=True)
class ReportConfig:
    """The final report (`make report`): a frozen test set no decision looks at, several seeds, a seeds x songs bootstrap.

    Its two DVC stages (``frozen_testset``, ``report``) are not run by `make pipeline` (flows/pipeline.py)."""

    data_dir: str = "data/frozen"  # the frozen test set: its own corpus/, stems/, features/ (the frozen_testset stage's output)
    n_songs: int = 200  # generated songs in the frozen test set (same generator and data.corpus settings, another seed)
    corpus_seed: int = 20261201  # generator seed of the frozen test set (the main corpus uses data.corpus.seed; they must differ)
    seeds: tuple[int, ...] = (0, 1, 2)  # rlhf.seed of each reported policy; the one equal to rlhf.seed is the rlhf stage's own policy (not retrained)
    targets_per_song: int = 1  # edit targets per frozen test song, spread over the env's target range (each item costs ~1 s of judge per editor)
    judge_songs: int = 100  # frozen songs (the first N by id) also scored by the independent judge (~1-3 s per edit: the report's main cost); 0 = all
    best_of: tuple[int, ...] = (1, 8)  # N of the best-of-N editors (samples ranked by the reward model), when models.best_of is available
    real_music: bool = True  # also score the real-music pieces (beatedit.corpus.realmusic) with the independent judge; skipped with its reason when unavailable
    out_dir: str = "artifacts/report"  # the report stage's output: results.parquet, real_music.parquet, table.md, policies/
    n_bootstrap: int = 2000  # seeds x songs bootstrap resamples for every CI of the report
    seed: int = 13  # targets per song, the bootstrap and best-of-N sampling

    def check(self) -> str | None:
        if not self.seeds:
            return "seeds must list at least one rlhf.seed"
        if len(set(self.seeds)) != len(self.seeds):
            return f"seeds must be distinct, got {list(self.seeds)}"
        return None


@dataclass(frozen=True)
class PromoteConfig:
    auto: bool = True  # the evaluate stage promotes the candidate when it wins (else run `beatedit promote`)
    margin: float = 0.05  # the candidate must win >= 0.5 + margin against the champion, with CI lower bound > 0.5


@dataclass(frozen=True)
class OpsConfig:
    # Prefect deployments (flows/deployments.py): `python -m flows.deployments serve` or a process work pool
    retrain_cron: str = "0 2 * * *"  # schedule of the `retrain` deployment (nightly): export new votes, dvc repro, evaluate, promote
    evaluate_champion_cron: str = "0 6 * * 1"  # schedule of the `evaluate-champion` deployment (weekly): re-score the champion, alert on drift
    timezone: str = "UTC"  # IANA timezone of both schedules
    work_pool: str = "beatedit-process"  # process work pool used by `python -m flows.deployments deploy` and `prefect worker start`
    feedback_db: str | None = None  # feedback votes DB exported by `retrain` into preferences.human_votes_path (env BEATEDIT_FEEDBACK_DB overrides); null: use the file as it is
    feedback_min_listened_s: float = 5.0  # `retrain`'s export drops a vote whose either side was heard less than this (capped at 90% of its length); 0 keeps all
    drift_tolerance_listener: float = 0.02  # evaluate-champion fails when listener_total drops more than this below the last recorded figure
    drift_tolerance_win_rate: float = 0.05  # ... or win_rate_vs_heuristic drops more than this
    history_path: str = "artifacts/ops/champion_history.json"  # evaluate-champion's record of past figures (the drift baseline)

    def check(self) -> str | None:
        from beatedit.cron import cron_problem

        for name in ("retrain_cron", "evaluate_champion_cron"):
            problem = cron_problem(getattr(self, name))
            if problem:
                return f"{name}: {problem}"
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return f"timezone: {self.timezone!r} is not an IANA timezone (e.g. UTC, Europe/Berlin)"
        if self.drift_tolerance_listener < 0 or self.drift_tolerance_win_rate < 0:
            return "drift_tolerance_listener and drift_tolerance_win_rate must be >= 0"
        if not self.work_pool.strip():
            return "work_pool must not be empty"
        return None


@dataclass(frozen=True)
class EditConfig:
    """``beatedit edit`` (app/edit.py): the production edit path; no pipeline stage reads it."""

    max_channel_samples: int = 120_000_000  # refuse a source with more samples x channels than this (memory guard: the edit holds the decoded source and its render, ~8 bytes per sample x channel on top of the analysis; 120M = 22 min of 44.1 kHz stereo, 3.5 min of 96 kHz 6-channel)


@dataclass(frozen=True)
class Config:
    seed: int = 0  # global seed for everything not seeded more specifically
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when available
    torch_threads: int = 1  # CPU threads for torch in the training stages (0 = torch's default); these small models run fastest on 1
    metrics_dir: str = "metrics"  # every stage's metrics file: <metrics_dir>/<stage>.json (evaluate: eval.json)
    plots_dir: str = "plots"  # every stage's DVC plot files: <plots_dir>/<stage>/...
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
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    edit: EditConfig = field(default_factory=EditConfig)

    def check(self) -> str | None:
        if self.torch_threads < 0:
            return f"torch_threads must be >= 0 (0 = torch's default), got {self.torch_threads}"
        return None


# ----------------------------------------------------------------------------- ranges
@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric key: finite, and within the given bounds (and odd when asked)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    odd: bool = False

    def problem(self, value: float) -> str | None:
        if not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        for bound, ok, word in ((self.ge, lambda b: value >= b, ">="), (self.gt, lambda b: value > b, ">"),
                                (self.le, lambda b: value <= b, "<="), (self.lt, lambda b: value < b, "<")):
            if bound is not None and not ok(bound):
                return f"must be {word} {bound:g}, got {value!r}"
        if self.odd and value % 2 != 1:
            return f"must be odd, got {value!r}"
        return None


FRACTION = Range(ge=0, le=1)
NON_NEGATIVE = Range(ge=0)
POSITIVE = Range(gt=0)
AT_LEAST_ONE = Range(ge=1)
SEED = Range(ge=0, le=2**32 - 1)
FFT = Range(ge=64, le=65536)
HOP = Range(ge=1, le=65536)
SAMPLE_RATE = Range(ge=8000, le=384000)
BPM = Range(gt=0, le=1000)
DBFS = Range(ge=-200, le=0)
MS = Range(ge=0, le=1000)

#: the range of every numeric key, by dotted key (list items: the list's key); ``*`` matches any run of characters.
#: An exact key wins over a pattern; patterns are tried in order.
RANGES: dict[str, Range] = {
    "*seed": SEED,
    "torch_threads": Range(ge=0, le=1024),
    "data.corpus.n_songs": Range(ge=1, le=100_000),
    "data.corpus.min_seconds": Range(ge=10, le=3600),
    "data.corpus.max_seconds": Range(gt=0, le=3600),
    "data.corpus.sample_rate": SAMPLE_RATE,
    "data.corpus.hard_share": FRACTION,
    "audio.analysis_sr": SAMPLE_RATE,
    "audio.min_beats": Range(ge=4, le=1_000_000),
    "audio.max_seconds": Range(gt=0, le=86400),
    "audio.max_quarantined_fraction": FRACTION,
    "audio.silence_dbfs": DBFS,
    "stems.n_fft": FFT,
    "stems.hop_length": HOP,
    "stems.hpss_margin": Range(ge=1, le=100),  # librosa: a margin below 1 is not a margin
    "stems.bass_cutoff_hz": Range(gt=0, le=24000),
    "stems.hpss_kernel_*": Range(ge=1, le=1001, odd=True),  # median filters need a centre
    "features.n_fft": FFT,
    "features.hop_length": HOP,
    "features.phrase_bars": Range(ge=1, le=64),
    "features.min_section_bars": Range(ge=1, le=256),
    "features.novelty_half_bars": Range(ge=1, le=64),
    "features.tempo_prior_bpm": BPM,
    "features.min_bpm": BPM,
    "features.max_bpm": BPM,
    "features.tempo_prior_octaves": Range(gt=0, le=10),
    "features.tightness": Range(ge=0, le=1e6),
    "features.octave_up_ratio": Range(ge=0, le=10),
    "features.octave_up_max_bpm": BPM,
    "features.trim_ratio": FRACTION,
    "features.onset_lead_s": Range(ge=-1, le=1),
    "features.drums_onset_weight": Range(ge=0, le=100),
    "features.meter_ssm_weight": Range(ge=0, le=100),
    "features.meter_bias_4": Range(ge=-10, le=10),
    "features.meter2_ratio": Range(ge=0, le=100),
    "features.downbeat_jump_penalty": Range(ge=0, le=1000),
    "features.section_threshold": Range(ge=-100, le=100),
    "env.target_min": Range(gt=0, le=1),
    "env.target_max": Range(gt=0, le=1),
    "env.window_before": Range(ge=0, le=4096),
    "env.window_after": Range(ge=1, le=4096),
    "env.recent_actions": Range(ge=0, le=4096),
    "env.max_loops_per_episode": Range(ge=0, le=10_000),
    "env.length_tolerance_beats": Range(gt=0, le=1000),
    "render.crossfade_ms": MS,
    "render.target_lufs": Range(ge=-70, le=0),
    "dense_reward.w_*": Range(ge=0, le=1000),
    "dense_reward.tempo_jump_bpm": Range(gt=0, le=1000),
    "dense_reward.energy_tol_db": Range(ge=0, le=200),
    "dense_reward.energy_scale_db": Range(gt=0, le=200),
    "dense_reward.silence_db": DBFS,
    "dense_reward.dead_rel_db": Range(ge=0, le=200),
    "dense_reward.dead_min_beats": AT_LEAST_ONE,
    "dense_reward.default_phrase_beats": AT_LEAST_ONE,
    "dense_reward.*_credit": FRACTION,
    "dense_reward.*_weight": FRACTION,
    "listener.noise": Range(ge=0, le=100),
    "listener.w_*": Range(ge=0, le=1000),
    "listener.*_credit": FRACTION,
    "listener.duration_tolerance_beats": Range(ge=0, le=1000),
    "listener.duration_scale_beats": Range(gt=0, le=1000),
    "listener.long_fade_bars": Range(gt=0, le=1000),
    "listener.min_piece_bars": Range(gt=0, le=1000),
    "listener.long_fade_factor": FRACTION,
    "listener.section_type_similarity": FRACTION,
    "listener.short_piece_cost": Range(ge=0, le=1000),
    "listener.max_free_pieces": AT_LEAST_ONE,
    "listener.seam_window_ms": Range(gt=0, le=1000),
    "listener.seam_crossfade_ms": MS,
    "listener.seam_baseline_pct": Range(ge=0, le=100),
    "listener.seam_*_scale_db": Range(gt=0, le=200),
    "listener.seam_worst_weight": FRACTION,
    "listener.chorus_tolerance_db": Range(ge=0, le=200),
    "listener.max_loops_per_phrase": NON_NEGATIVE,
    "listener.max_repeat_share": FRACTION,
    "orchestration.max_workers": Range(ge=1, le=1024),
    "orchestration.song_timeout_s": Range(gt=0, le=1e6),
    "preferences.candidates_per_song": Range(ge=4, le=100_000),
    "preferences.*_per_song": NON_NEGATIVE,
    "preferences.weight_*": Range(ge=0, le=1000),
    "preferences.split_fractions": FRACTION,
    "reward.dropout": Range(ge=0, lt=1),
    "reward.target_dropout": FRACTION,
    "reward.lr": Range(gt=0, le=10),
    "reward.weight_decay": NON_NEGATIVE,
    "reward.warmup_steps": NON_NEGATIVE,
    "reward.min_lr_ratio": FRACTION,
    "reward.grad_clip": NON_NEGATIVE,
    "reward.margin_scale": NON_NEGATIVE,
    "reward.human_weight": Range(ge=0, le=1000),
    "reward.center_coef": NON_NEGATIVE,
    "reward.min_val_to_ceiling": Range(ge=0, le=10),
    "reward.min_score_std": NON_NEGATIVE,
    "reward.min_spearman": Range(ge=-1, le=1),
    "reward.min_val_accuracy": FRACTION,
    "reward.min_ood_accuracy": FRACTION,
    "reward.max_saturated_fraction": FRACTION,
    "reward.max_ece": FRACTION,
    "reward.*": AT_LEAST_ONE,  # sizes and counts: d_model, n_layers, n_heads, max_beats, window_stride, epochs, batch sizes, patience
    "rlhf.w_*": Range(ge=0, le=1000),
    "rlhf.kl_coef": NON_NEGATIVE,
    "rlhf.kl_target": POSITIVE,
    "rlhf.gamma": FRACTION,
    "rlhf.gae_lambda": FRACTION,
    "rlhf.clip_coef": POSITIVE,
    "rlhf.vf_coef": NON_NEGATIVE,
    "rlhf.ent_coef": NON_NEGATIVE,
    "rlhf.max_grad_norm": NON_NEGATIVE,
    "rlhf.lr": Range(gt=0, le=10),
    "rlhf.target_kl": POSITIVE,
    "rlhf.n_eval_songs": NON_NEGATIVE,
    "rlhf.eval_targets": Range(gt=0, le=1),
    "rlhf.bc.lr": Range(gt=0, le=10),
    "rlhf.bc.weight_decay": NON_NEGATIVE,
    "rlhf.bc.val_fraction": Range(ge=0, lt=1),
    "rlhf.bc.class_balance": Range(ge=0, le=10),
    "rlhf.bc.label_smoothing": Range(ge=0, lt=1),
    "rlhf.dpo.beta": POSITIVE,
    "rlhf.dpo.lr": Range(gt=0, le=10),
    "rlhf.dpo.label_smoothing": Range(ge=0, lt=0.5),
    "rlhf.dpo.min_strength": FRACTION,
    "rlhf.dpo.temperature": Range(gt=0, le=100),
    "rlhf.dpo.min_reward_gap": Range(ge=0, le=10),
    "rlhf.dpo.nll_coef": Range(ge=0, le=100),
    "rlhf.dpo.samples_per_prompt": Range(ge=2, le=1024),
    "rlhf.*": AT_LEAST_ONE,  # counts: kl_horizon, total_steps, n_envs, rollout_steps, ..., policy sizes, bc/dpo epochs and batches
    "evaluate.n_render_examples": NON_NEGATIVE,
    "evaluate.listening_*": NON_NEGATIVE,
    "evaluate.*": AT_LEAST_ONE,  # n_bootstrap, targets_per_song
    "promote.margin": Range(ge=0, lt=0.5),
    "report.seeds": SEED,
    "report.corpus_seed": SEED,
    "report.seed": SEED,
    "report.n_songs": Range(ge=2, le=100000),
    "report.judge_songs": NON_NEGATIVE,
    "report.best_of": Range(ge=1, le=256),
    "report.*": AT_LEAST_ONE,  # targets_per_song, n_bootstrap
    "ops.drift_tolerance_*": FRACTION,
    "ops.feedback_min_listened_s": Range(ge=0, le=600),
    "edit.max_channel_samples": AT_LEAST_ONE,
}


def range_for(key: str) -> Range | None:
    """The range of a dotted key (``a.b[2]`` -> that of list ``a.b``), or None when none is declared."""
    key = re.sub(r"\[\d+\]", "", key)
    if key in RANGES:
        return RANGES[key]
    return next((r for pattern, r in RANGES.items() if "*" in pattern and fnmatch.fnmatchcase(key, pattern)), None)


def _check_range(value: Any, key: str, where: str) -> Any:
    """Every number: finite and within its key's range, or a ConfigError naming the key."""
    rng = range_for(key) or Range()
    problem = rng.problem(value)
    if problem:
        raise ConfigError(f"{where}: {key} {problem}")
    return value


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
        return _check_range(float(value), key, where)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return _check_range(value, key, where)
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
