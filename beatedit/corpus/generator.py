"""Deterministic synthetic song corpus with exact ground truth: the pipeline's default corpus.

A corpus of ``cfg.n_songs`` holds ``round(n_songs * (1 - cfg.hard_share))`` *ordinary* songs
``song_000, song_001, ...`` followed by *hard* songs ``hard_000, hard_001, ...`` (see ``corpus_songs``).
Ordinary song i is planned and rendered from ``numpy.random.default_rng([cfg.seed, i])`` alone, hard
song i from ``default_rng([cfg.seed, i, 1])`` (its timing jitter from ``[cfg.seed, i, 2]``), so the same
config writes byte-identical files, another seed writes other songs, and an ordinary song's files do
not depend on hard_share (listeners' votes refer to them; their audio and stems are those of generator
version 1, their truth gained the version-2 keys).

A song is a beat grid plus a form. The *plan* draws tempo (70-170 BPM), meter (3/4 for about a
quarter of the songs), swing (offbeat eighths delayed, some songs), slow tempo drift (a linear
tempo ramp of a few percent over the song, some songs: the beats are then unevenly spaced and the
truth lists their real times), key and mode, and a form built from 4- and 8-bar phrases::

    intro (4|8)  [verse (8|16)  chorus (8|16)] x k  [bridge (4|8)  chorus (8|16)]  outro (4|8)

(plus shorter forms such as ``verse 4, chorus 4`` for configs with very short songs), chosen so
the duration lands in ``[cfg.min_seconds, cfg.max_seconds]``. Song 0's first downbeat sits at
0.1-0.4 s; the last bar is followed by a short release tail (no silences anywhere).

Four stems are *rendered* note by note (each note / hit is a numpy array added into its stem):

- ``drums``: pitched decaying-sine kick with a click on every downbeat (the loudest hit in the bar;
  lighter kicks on other strong beats), filtered-noise snare on the backbeats, hi-hats on every
  beat (eighths or sixteenths, swung), open hats and a crash on phrase starts in the chorus;
- ``bass``: the chord roots (and fifths / octaves), a note on every downbeat;
- ``harmony``: one diatonic triad per bar (chords change only on downbeats), additive (wavetable)
  or FM pads, plus offbeat stabs in the chorus;
- ``lead``: a melody on the scale, a motif per section label repeated every 4 bars.

The chorus is louder (section gain), denser (more kicks, sixteenth hats, open hats, crashes, stabs)
and brighter (richer harmonic tables, higher FM index) than the verse. Timbres (kick pitch, snare
band, harmonic roll-off, FM ratio/index, envelopes), stem balance and the overall loudness (a 6 dB
spread in target RMS) vary per song.

Hard songs are where real music is hard for a beat tracker, so that training sees it too. Each draws
one or more ``HARD_TRAITS`` (listed as ``traits`` in its truth and manifest record):

- ``no_drums`` (about half of the hard songs: 55% of 200): the drums stem is silent; beats and downbeats come from bass, harmony, melody;
- ``compound`` (42%): 6/8, 9/8 or 12/8 at 45-100 dotted-quarter BPM; the beat is the dotted quarter
  (meter 2, 3 or 4) with three eighths per beat in every part (hats, a long-short bass lilt, stabs on the
  last eighth, the melody on an eighth grid); truth beats are dotted quarters, downbeats on bar 1;
- ``slow_cut_time`` (28%): 2/2 at 50-80 half-note BPM (meter 2) with quarter / eighth motion inside
  and snares on the 2nd and 4th quarters: the half / double tempo trap; truth beats are half notes;
- ``expressive`` (46%): per-note timing jitter (3-12 ms std, clipped at 20 ms, seeded) around the
  beat grid, a ritardando over each section's last bar (6-15%) and the final 2 bars (15-35%), and a
  stronger drift (5-10%); the truth lists the grid's real beat times (the notes scatter around them);

plus the ordinary swing (simple meters only) and drift draws. Everything else (form, key, timbres,
loudness) is drawn as for ordinary songs.

Exactness: each stem is quantised to int16 first and the mix is their exact integer sum (headroom
keeps every stem and the sum inside int16), so reading the files back, ``sum(stems) == mix``.

Output layout under ``out_root`` (the pipeline passes ``data/corpus``, ``data.corpus_dir``, see ``beatedit.paths``)::

    audio/<id>.wav              mix, mono PCM_16 at cfg.sample_rate
    stems/<id>/<stem>.flac      drums, bass, harmony, lead; mono PCM_16
    truth/<id>.json             ground truth (see ``plan_song`` / ``_truth``): beats, downbeats, bars, phrases,
                                sections, tempo, meter, time_signature, subdivision, traits, ritardando, ...
    manifest.json               one record per song (with its traits and time_signature)

Framework-free: numpy, scipy, soundfile (and tqdm, through beatedit.progress, for the progress bar) only.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from beatedit.atomic import atomic_write_text
from beatedit.config import CorpusConfig

GENERATOR_VERSION = "2"  # 2: hard songs (hard_NNN, traits), time_signature / subdivision / traits in the truth
STEM_NAMES = ("drums", "bass", "harmony", "lead")
# what makes a hard song hard (a hard song has one or more, listed in this order in its truth and manifest record)
HARD_TRAITS = ("no_drums", "compound", "slow_cut_time", "expressive")
SECTION_LABELS = ("intro", "verse", "chorus", "bridge", "outro")

# note-level gain of every stem per section: the chorus is the loudest section
SECTION_GAIN = {"intro": 0.5, "verse": 0.62, "chorus": 1.0, "bridge": 0.58, "outro": 0.48}

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# 4-bar chord progressions as 0-based scale degrees (one diatonic triad per bar)
PROGRESSIONS = {
    "major": {
        "verse": [(0, 5, 3, 4), (0, 3, 5, 4), (0, 4, 5, 3), (5, 3, 0, 4)],
        "chorus": [(3, 4, 0, 5), (0, 4, 5, 3), (3, 0, 4, 5), (0, 3, 4, 4)],
        "bridge": [(5, 3, 1, 4), (1, 4, 2, 5), (3, 4, 5, 5)],
    },
    "minor": {
        "verse": [(0, 5, 2, 6), (0, 3, 6, 2), (0, 6, 5, 6), (0, 3, 4, 0)],
        "chorus": [(5, 6, 0, 0), (0, 5, 2, 6), (2, 6, 0, 5), (5, 2, 6, 0)],
        "bridge": [(3, 4, 0, 0), (5, 6, 2, 4), (3, 6, 2, 5)],
    },
}
_TABLE = 4096  # wavetable size (one period; a power of two)


# ----------------------------------------------------------------------------- results
@dataclass
class GeneratedSong:
    song_id: str
    sample_rate: int
    mix: np.ndarray  # int16 [n], the exact sum of the stems
    stems: dict[str, np.ndarray]  # name -> int16 [n], keys STEM_NAMES
    truth: dict  # the ground-truth record written to truth/<id>.json


def song_id(index: int) -> str:
    return f"song_{index:03d}"


def hard_song_id(index: int) -> str:
    return f"hard_{index:03d}"


def corpus_songs(cfg: CorpusConfig) -> list[tuple[str, int, bool]]:
    """(song id, index, hard) of every song of the corpus: the ordinary songs first, then the hard ones.

    The ordinary songs keep their ids and content whatever hard_share is (listeners' votes refer to them)."""
    n_ordinary = round(cfg.n_songs * (1.0 - cfg.hard_share))
    return ([(song_id(i), i, False) for i in range(n_ordinary)]
            + [(hard_song_id(j), j, True) for j in range(cfg.n_songs - n_ordinary)])


def check_config(cfg: CorpusConfig) -> None:
    """Raise ValueError naming the bad field of a CorpusConfig."""
    problem = cfg.check()
    if problem:
        raise ValueError(f"corpus config: {problem}")


# ----------------------------------------------------------------------------- planning
@dataclass
class _Plan:
    tempo: float  # nominal BPM (mean of the tempo ramp)
    meter: int
    swing: float  # offbeat eighth delayed by this fraction of a beat (0 = straight; 1/6 = triplet feel)
    drift: float  # tempo ramps linearly from tempo*(1-drift/2) to tempo*(1+drift/2) over the song
    root: int  # tonic pitch class
    mode: str
    first_beat: float  # seconds
    tail: float  # seconds after the end of the last bar
    sections: list[tuple[str, int]]  # (label, bars)
    grid: np.ndarray  # float64 [n_beats + 1 + extra]: beat times, then the end of the last bar, then extrapolated
    n_beats: int
    # hard songs only (the defaults are an ordinary song)
    sub: int = 2  # pulses per beat in the parts: 2 simple meter (eighths), 3 compound (dotted-quarter beat), 4 slow 2/2 (half-note beat)
    no_drums: bool = False  # the drums stem stays silent
    ritardando: tuple[float, float] = (0.0, 0.0)  # beat periods stretched by up to this into section ends / the final 2 bars
    jitter_ms: float = 0.0  # per-note timing jitter (std, ms; clipped at +-20 ms) around the beat grid
    traits: tuple[str, ...] = ()  # HARD_TRAITS this song has

    @property
    def time_signature(self) -> str:
        if self.sub == 3:
            return f"{3 * self.meter}/8"
        return "2/2" if self.sub == 4 else f"{self.meter}/4"

    @property
    def duration(self) -> float:
        return float(self.grid[self.n_beats] + self.tail)


def _forms() -> list[list[tuple[str, int]]]:
    """Every candidate form (fixed order, so the choice is deterministic)."""
    forms: list[list[tuple[str, int]]] = [
        [("verse", 4), ("chorus", 4)],
        [("intro", 4), ("verse", 4), ("chorus", 4)],
        [("intro", 4), ("verse", 4), ("chorus", 4), ("outro", 4)],
        [("intro", 4), ("verse", 8), ("chorus", 8)],
        [("verse", 8), ("chorus", 8), ("outro", 4)],
    ]
    for intro in (4, 8):
        for verse in (8, 16):
            for chorus in (8, 16):
                for k in (1, 2, 3):
                    for bridge in (0, 4, 8):
                        for final in ((8, 16) if bridge else (0,)):
                            for outro in (4, 8):
                                form = [("intro", intro)] + [("verse", verse), ("chorus", chorus)] * k
                                if bridge:
                                    form += [("bridge", bridge), ("chorus", final)]
                                forms.append(form + [("outro", outro)])
    return forms


_FORMS = _forms()


def _beat_grid(first_beat: float, tempo: float, drift: float, n_beats: int, extra: int = 16,
               stretch: np.ndarray | None = None) -> np.ndarray:
    """Beat times (n_beats), the end of the last bar, and `extra` extrapolated beats (for note tails).

    `stretch` (hard songs) multiplies each beat's period: a ritardando."""
    k = np.arange(n_beats, dtype=np.float64)
    ramp = (k / max(n_beats - 1, 1) - 0.5) if n_beats > 1 else np.zeros(1)
    periods = 60.0 / (tempo * (1.0 + drift * ramp))
    if stretch is not None:
        periods = periods * stretch
    periods = np.concatenate([periods, np.full(extra, periods[-1])])
    return first_beat + np.concatenate([[0.0], np.cumsum(periods)])


def _plan(rng: np.random.Generator, cfg: CorpusConfig) -> _Plan:
    # parameters are rounded to the precision the truth file stores them at, so the truth is exact
    tempo = round(float(rng.uniform(70.0, 170.0)), 2)
    meter = 3 if rng.random() < 0.25 else 4
    swing = round(float(rng.uniform(0.07, 0.16)), 4) if rng.random() < 0.3 else 0.0
    drift = round(float(rng.uniform(0.02, 0.05) * rng.choice([-1.0, 1.0])), 4) if rng.random() < 0.3 else 0.0
    root = int(rng.integers(12))
    mode = "minor" if rng.random() < 0.45 else "major"
    first_beat = float(rng.uniform(0.1, 0.4))
    tail = float(rng.uniform(0.6, 1.0))
    tempo, form, grid, n_beats = _fit_form(rng, cfg, tempo, meter, drift, first_beat, tail)
    return _Plan(tempo, meter, swing, drift, root, mode, first_beat, tail, form, grid, n_beats)


def _fit_form(rng: np.random.Generator, cfg: CorpusConfig, tempo: float, meter: int, drift: float, first_beat: float,
              tail: float, bpm_range: tuple[float, float] = (70.0, 170.0), rit: tuple[float, float] | None = None):
    """(tempo, form, grid, n_beats): the form whose duration lands nearest a random target in the configured range;
    when none fits at `tempo`, the tempo changes as little as possible within `bpm_range`."""
    lo_bpm, hi_bpm = bpm_range
    target = float(rng.uniform(cfg.min_seconds, cfg.max_seconds))
    order = rng.permutation(len(_FORMS))  # random tie-break among equally good forms

    def stretch(form):
        return None if rit is None else _ritardando(form, meter, *rit)

    def duration(form, bpm):
        n = sum(b for _, b in form) * meter
        return _beat_grid(first_beat, bpm, drift, n, extra=0, stretch=stretch(form))[-1] + tail

    durs = np.array([duration(_FORMS[i], tempo) for i in order])
    fits = (durs >= cfg.min_seconds) & (durs <= cfg.max_seconds)
    if fits.any():
        j = int(np.argmin(np.where(fits, np.abs(durs - target), np.inf)))
    else:  # no form fits at this tempo: pick the form needing the smallest tempo change within 70-170 BPM
        lo, hi = cfg.min_seconds, cfg.max_seconds
        core = durs - first_beat - tail
        want = np.clip(durs, lo + 0.02 * (hi - lo), hi - 0.02 * (hi - lo)) - first_beat - tail
        new_tempo = tempo * core / np.maximum(want, 1e-3)
        cost = np.abs(np.log(new_tempo / tempo)) + 10.0 * (np.abs(np.clip(new_tempo, lo_bpm, hi_bpm) - new_tempo) > 0)
        j = int(np.argmin(cost))
        tempo = round(float(np.clip(new_tempo[j], lo_bpm, hi_bpm)), 2)
    form = list(_FORMS[order[j]])
    n_beats = sum(b for _, b in form) * meter
    grid = _beat_grid(first_beat, tempo, drift, n_beats, stretch=stretch(form))
    return tempo, form, grid, n_beats


def _ritardando(form: list[tuple[str, int]], meter: int, section: float, final: float) -> np.ndarray:
    """Per-beat period multipliers: slowing by up to `section` over each section's last bar (a tempo again at the
    next section) and by up to `final` over the song's last 2 bars."""
    n = sum(b for _, b in form) * meter
    out = np.ones(n)
    end = 0
    for i, (_, bars) in enumerate(form):
        end += bars * meter
        last = i == len(form) - 1
        span = (2 if last else 1) * meter
        out[end - span : end] *= 1.0 + (final if last else section) * (np.arange(1, span + 1) / span) ** 2
    return out


def _plan_hard(rng: np.random.Generator, cfg: CorpusConfig) -> _Plan:
    """A hard song: one or more HARD_TRAITS (about half without drums), plus the ordinary swing / drift draws."""
    no_drums = bool(rng.random() < 0.5)
    r = float(rng.random())
    kind = "compound" if r < 0.35 else ("slow_cut_time" if r < 0.6 else "simple")
    expressive = bool(rng.random() < 0.4)
    if not (no_drums or expressive or kind != "simple"):  # at least one trait
        pick = HARD_TRAITS[int(rng.integers(len(HARD_TRAITS)))]
        no_drums, expressive = no_drums or pick == "no_drums", expressive or pick == "expressive"
        kind = pick if pick in ("compound", "slow_cut_time") else kind
    if kind == "compound":  # 6/8, 9/8, 12/8: 2, 3, 4 dotted-quarter beats of three eighths
        meter, sub, bpm_range = int(rng.choice([2, 3, 4], p=[0.45, 0.15, 0.4])), 3, (45.0, 100.0)
    elif kind == "slow_cut_time":  # 2/2 at 50-80 half notes a minute, quarter / eighth motion inside
        meter, sub, bpm_range = 2, 4, (50.0, 80.0)
    else:
        meter, sub, bpm_range = (3 if rng.random() < 0.25 else 4), 2, (70.0, 170.0)
    tempo = round(float(rng.uniform(*bpm_range)), 2)
    swing = round(float(rng.uniform(0.07, 0.16)), 4) if sub == 2 and rng.random() < 0.3 else 0.0
    if expressive:  # a stronger drift, a ritardando into section ends and the last bars, per-note jitter
        drift = round(float(rng.uniform(0.05, 0.10) * rng.choice([-1.0, 1.0])), 4)
        rit = (round(float(rng.uniform(0.06, 0.15)), 4), round(float(rng.uniform(0.15, 0.35)), 4))
        jitter_ms = round(float(rng.uniform(3.0, 12.0)), 2)
    else:
        drift = round(float(rng.uniform(0.02, 0.05) * rng.choice([-1.0, 1.0])), 4) if rng.random() < 0.3 else 0.0
        rit, jitter_ms = (0.0, 0.0), 0.0
    root = int(rng.integers(12))
    mode = "minor" if rng.random() < 0.45 else "major"
    first_beat = float(rng.uniform(0.1, 0.4))
    tail = float(rng.uniform(0.6, 1.0))
    tempo, form, grid, n_beats = _fit_form(rng, cfg, tempo, meter, drift, first_beat, tail, bpm_range, rit if expressive else None)
    flags = {"no_drums": no_drums, "compound": kind == "compound", "slow_cut_time": kind == "slow_cut_time", "expressive": expressive}
    traits = tuple(t for t in HARD_TRAITS if flags[t])
    return _Plan(tempo, meter, swing, drift, root, mode, first_beat, tail, form, grid, n_beats,
                 sub=sub, no_drums=no_drums, ritardando=rit, jitter_ms=jitter_ms, traits=traits)


def _phrase_bars(section_bars: int) -> int:
    return 8 if section_bars % 8 == 0 else 4


def _truth(plan: _Plan, sid: str, sr: int) -> dict:
    m = plan.meter
    beats = plan.grid[: plan.n_beats]
    bars = list(range(0, plan.n_beats, m))
    phrase_starts, section_starts, sections = [], [], []
    bar = 0
    for label, n_bars in plan.sections:
        start, end = bar * m, (bar + n_bars) * m
        section_starts.append(start)
        phrase_starts += list(range(start, end, _phrase_bars(n_bars) * m))
        sections.append({"label": label, "start_beat": start, "end_beat": end, "start_time": round(float(plan.grid[start]), 6),
                         "end_time": round(float(plan.grid[end]), 6), "bars": n_bars})
        bar += n_bars
    r = lambda xs: [round(float(x), 6) for x in xs]  # noqa: E731
    return {
        "song_id": sid,
        "generator_version": GENERATOR_VERSION,
        "sample_rate": sr,
        "duration": round(plan.duration, 6),
        "tempo": plan.tempo,
        "meter": m,
        "swing": plan.swing,
        "tempo_drift": plan.drift,
        "key": f"{PITCH_NAMES[plan.root]} {plan.mode}",
        "n_beats": plan.n_beats,
        "beats": r(beats),
        "downbeats": r(beats[bars]),
        "beat_in_bar": [i % m for i in range(plan.n_beats)],
        "bars": bars,
        "phrase_starts": phrase_starts,
        "phrase_start_times": r(plan.grid[phrase_starts]),
        "section_starts": section_starts,
        "section_start_times": r(plan.grid[section_starts]),
        "sections": sections,
        "stems": list(STEM_NAMES),
        "traits": list(plan.traits),
        "time_signature": plan.time_signature,
        "subdivision": plan.sub,
        "ritardando": list(plan.ritardando),
        "timing_jitter_ms": plan.jitter_ms,
    }


def _song_rng(index: int, cfg: CorpusConfig, hard: bool) -> np.random.Generator:
    """Ordinary song i: stream [seed, i] (as in version 1); hard song i: its own stream [seed, i, 1]."""
    return np.random.default_rng([cfg.seed, index, 1] if hard else [cfg.seed, index])


def _make_plan(index: int, cfg: CorpusConfig, hard: bool) -> tuple[_Plan, np.random.Generator]:
    rng = _song_rng(index, cfg, hard)
    return (_plan_hard(rng, cfg) if hard else _plan(rng, cfg)), rng


def plan_song(index: int, cfg: CorpusConfig, hard: bool = False) -> dict:
    """The ground truth of song `index` (hard song `index` when `hard`) without rendering audio (cheap; identical to
    generate_song's truth)."""
    check_config(cfg)
    plan, _ = _make_plan(index, cfg, hard)
    return _truth(plan, hard_song_id(index) if hard else song_id(index), cfg.sample_rate)


# ----------------------------------------------------------------------------- synthesis helpers
def _midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _add(buf: np.ndarray, start: int, x: np.ndarray) -> None:
    if start >= len(buf) or start + len(x) <= 0:
        return
    if start < 0:
        x, start = x[-start:], 0
    end = min(len(buf), start + len(x))
    buf[start:end] += x[: end - start]


def _envelope(dur: float, sr: int, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """ADSR: linear attack, exponential decay to `sustain`, note off after `dur` s, exponential release."""
    n_on = max(2, int(round(dur * sr)))
    n = n_on + int(round(5.0 * release * sr))
    n_a = min(n_on, int(round(attack * sr)))
    n_d = min(n_on - n_a, int(round(8.0 * decay * sr)))  # after 8 time constants the decay has reached the sustain level
    env = np.full(n, float(sustain))
    env[:n_a] = np.arange(n_a) / max(n_a, 1)
    env[n_a : n_a + n_d] += (1.0 - sustain) * np.exp(-np.arange(n_d) / (decay * sr))
    env[n_on:] = env[n_on - 1] * np.exp(-np.arange(1, n - n_on + 1) / (release * sr))
    k = min(64, n // 4)
    env[-k:] *= np.linspace(1.0, 0.0, k)  # reach exactly zero
    return env


def _table(amps: np.ndarray, phases: np.ndarray | None = None) -> np.ndarray:
    """One period of sum_h amps[h-1] * sin(2 pi h x + phase_h), normalised, with a wrap sample appended."""
    x = np.arange(_TABLE) / _TABLE
    h = np.arange(1, len(amps) + 1)[:, None]
    ph = np.zeros((len(amps), 1)) if phases is None else phases[: len(amps), None]
    tab = (amps[:, None] * np.sin(2 * np.pi * h * x[None, :] + ph)).sum(0)
    tab /= max(np.abs(tab).max(), 1e-9)
    return np.append(tab, tab[0])


def _lookup(tab: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Table read at the given phase (in cycles), nearest sample of a 4096-point period (quantisation noise < -70 dB)."""
    return tab[(cycles * _TABLE).astype(np.int64) & (_TABLE - 1)]


class _Additive:
    """Band-limited additive voice: amplitude h^-rolloff per harmonic, cached per pitch; optional detuned twin."""

    def __init__(self, rng: np.random.Generator, sr: int, rolloff: float, max_harm: int, detune_cents: float):
        self.sr, self.rolloff, self.max_harm, self.detune = sr, rolloff, max_harm, detune_cents
        self.phases = rng.uniform(0, 2 * np.pi, max_harm)
        self.odd_boost = rng.uniform(0.0, 0.6)  # hollow (square-ish) colour
        self._cache: dict[float, np.ndarray] = {}

    def _tab(self, f: float) -> np.ndarray:
        key = round(f, 3)
        if key not in self._cache:
            n = max(1, min(self.max_harm, int(0.45 * self.sr / f)))
            h = np.arange(1, n + 1)
            amps = h ** -self.rolloff * np.where(h % 2 == 1, 1.0 + self.odd_boost, 1.0)
            self._cache[key] = _table(amps, self.phases)
        return self._cache[key]

    def render(self, f: float, n: int, vibrato: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        t = np.arange(n) / self.sr
        depth, rate = vibrato
        cycles = f * t if depth == 0 else f * t + f * depth / (2 * np.pi * rate) * (1 - np.cos(2 * np.pi * rate * t))
        tab = self._tab(f)
        out = _lookup(tab, cycles)
        if self.detune:
            out = 0.5 * (out + _lookup(tab, cycles * 2 ** (self.detune / 1200) + 0.25))
        return out


class _FM:
    """Two-operator FM voice: sin(2 pi f t + I(t) sin(2 pi r f t)), index decaying from `index` to half."""

    def __init__(self, sr: int, ratio: float, index: float, index_decay: float):
        self.sr, self.ratio, self.index, self.index_decay = sr, ratio, index, index_decay

    def render(self, f: float, n: int, vibrato: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        t = np.arange(n) / self.sr
        depth, rate = vibrato
        cycles = f * t if depth == 0 else f * t + f * depth / (2 * np.pi * rate) * (1 - np.cos(2 * np.pi * rate * t))
        # keep the modulator band-limited-ish: less index for high notes
        idx = self.index * min(1.0, 600.0 / max(f * self.ratio, 1.0)) * (0.5 + 0.5 * np.exp(-t / self.index_decay))
        return np.sin(2 * np.pi * cycles + idx * np.sin(2 * np.pi * self.ratio * cycles))


def _voice(rng: np.random.Generator, sr: int, bright: float):
    """A random pitched timbre: additive (wavetable) or FM; `bright` > 1 gives a brighter variant."""
    if rng.random() < 0.55:
        rolloff = rng.uniform(1.1, 2.2) / bright
        return _Additive(rng, sr, rolloff, int(rng.integers(6, 16)), float(rng.uniform(3, 9)) if rng.random() < 0.6 else 0.0)
    return _FM(sr, float(rng.choice([0.5, 1.0, 2.0, 3.0])), float(rng.uniform(0.4, 1.8) * bright), float(rng.uniform(0.1, 0.5)))


def _filtered_noise(rng: np.random.Generator, n: int, sr: int, btype: str, freq) -> np.ndarray:
    nyq = 0.5 * sr
    wn = np.clip(np.atleast_1d(np.asarray(freq, dtype=float)) / nyq, 0.01, 0.95)
    sos = signal.butter(4, wn if btype == "bandpass" else wn[0], btype=btype, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n))


def _norm(x: np.ndarray) -> np.ndarray:
    return x / max(np.abs(x).max(), 1e-9)


class _Kit:
    """One drum kit per song: sample templates synthesised once and added at every hit."""

    def __init__(self, rng: np.random.Generator, sr: int):
        t = np.arange(int(0.45 * sr)) / sr
        f_hi, f_lo = rng.uniform(110, 180), rng.uniform(42, 62)
        freq = f_lo + (f_hi - f_lo) * np.exp(-t / rng.uniform(0.02, 0.05))
        body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / rng.uniform(0.12, 0.28))
        click = _filtered_noise(rng, len(t), sr, "highpass", 1500) * np.exp(-t / 0.003)
        self.kick = _norm(body + rng.uniform(0.15, 0.4) * _norm(click))

        t = np.arange(int(0.35 * sr)) / sr
        lo = rng.uniform(1200, 2500)
        noise = _norm(_filtered_noise(rng, len(t), sr, "bandpass", [lo, min(lo * 3.5, 0.45 * sr)]))
        tone = np.sin(2 * np.pi * rng.uniform(160, 240) * t)
        decay = rng.uniform(0.07, 0.16)
        self.snare = _norm((noise + rng.uniform(0.2, 0.6) * tone * np.exp(-t / 0.05)) * np.exp(-t / decay))

        hat_cut = min(rng.uniform(6000, 8500), 0.4 * sr)
        closed = rng.uniform(0.018, 0.05)
        t = np.arange(int(0.2 * sr)) / sr
        self.hats = [_norm(_filtered_noise(rng, len(t), sr, "highpass", hat_cut) * np.exp(-t / closed)) for _ in range(4)]
        t = np.arange(int(0.9 * sr)) / sr
        self.open_hat = _norm(_filtered_noise(rng, len(t), sr, "highpass", hat_cut) * np.exp(-t / rng.uniform(0.15, 0.3)))
        t = np.arange(int(2.5 * sr)) / sr
        crash = _filtered_noise(rng, len(t), sr, "highpass", min(3500.0, 0.3 * sr)) * np.exp(-t / rng.uniform(0.6, 1.2))
        self.crash = _norm(crash * np.minimum(1.0, t / 0.002 + 1e-3))
        self.hat_level = rng.uniform(0.18, 0.32)
        self.snare_level = rng.uniform(0.55, 0.8)


# ----------------------------------------------------------------------------- patterns
def _drum_pattern(label: str, meter: int, hat_div: int, extra_kicks: tuple) -> list[tuple[str, float, float]]:
    """(instrument, position in beats from the downbeat, gain) for one bar. The downbeat kick is always the loudest hit."""
    hits: list[tuple[str, float, float]] = [("kick", 0.0, 1.0)]
    backbeats = (1, 3) if meter == 4 else (1, 2)
    if label == "intro" or label == "outro":
        hits += [("hat", float(b), 0.9 if b == 0 else 0.7) for b in range(meter)]
        if label == "outro":
            hits += [("snare", float(b), 0.5) for b in backbeats]
    elif label == "bridge":
        hits += [("snare", float(meter - 1), 0.75)]
        hits += [("hat", float(b), 0.8) for b in range(meter)]
        if meter == 4:
            hits += [("kick", 2.0, 0.55)]
    elif label == "verse":
        hits += [("snare", float(b), 0.85) for b in backbeats]
        if meter == 4:
            hits += [("kick", 2.0, 0.6)]
        hits += [("hat", i / 2, 0.9 if i % 2 == 0 else 0.55) for i in range(meter * 2)]
    else:  # chorus: denser
        hits += [("snare", float(b), 1.0) for b in backbeats]
        if meter == 4:
            hits += [("kick", 2.0, 0.65)]
        hits += [("kick", p, 0.6) for p in extra_kicks]
        hits += [("hat", i / hat_div, 1.0 if i % hat_div == 0 else 0.6) for i in range(meter * hat_div)]
        hits += [("open_hat", meter - 0.5, 0.5)]
    return hits


def _drum_pattern_ext(label: str, meter: int, sub: int, hat_div: int, extra_kicks: tuple) -> list[tuple[str, float, float]]:
    """_drum_pattern for compound meters (sub 3: beats of three eighths) and slow 2/2 (sub 4: half-note beats whose
    backbeats fall on the 2nd and 4th quarters, the double-tempo trap). The downbeat kick is still the loudest hit."""
    hits: list[tuple[str, float, float]] = [("kick", 0.0, 1.0)]
    if sub == 3:
        backbeats: tuple[float, ...] = {2: (1.0,), 3: (1.0, 2.0), 4: (1.0, 3.0)}[meter]
        mid_kick = (2.0,) if meter == 4 else ()
        counts = [float(b) for b in range(meter)]  # the felt pulse: dotted quarters
    else:
        backbeats, mid_kick = (0.5, 1.5), (1.0,)
        counts = [i / 2 for i in range(2 * meter)]  # quarters
    if label == "intro" or label == "outro":
        hits += [("hat", c, 0.9 if c == 0 else 0.7) for c in counts]
        if label == "outro":
            hits += [("snare", b, 0.5) for b in backbeats]
    elif label == "bridge":
        hits += [("snare", backbeats[-1], 0.75)] + [("hat", c, 0.8) for c in counts] + [("kick", k, 0.55) for k in mid_kick]
    elif label == "verse":
        hits += [("snare", b, 0.85) for b in backbeats] + [("kick", k, 0.6) for k in mid_kick]
        hits += [("hat", i / sub, 0.9 if i % sub == 0 else 0.55) for i in range(meter * sub)]
    else:  # chorus: denser (hat_div 4: twice as many hats)
        per = sub * hat_div // 2
        hits += [("snare", b, 1.0) for b in backbeats] + [("kick", k, 0.65) for k in mid_kick]
        hits += [("kick", p, 0.6) for p in extra_kicks]
        hits += [("hat", i / per, 1.0 if i % per == 0 else 0.6) for i in range(meter * per)]
        hits += [("open_hat", meter - 1.0 / sub, 0.5)]
    return hits


def _extra_kicks_ext(rng: np.random.Generator, meter: int, sub: int) -> tuple[float, ...]:
    """1-2 extra chorus kicks on the last eighth of a beat (compound) or on a quarter offbeat (slow 2/2)."""
    cands = [b + 2.0 / 3.0 for b in range(meter)] if sub == 3 else [0.75, 1.25]  # none just before a slow downbeat
    return tuple(float(p) for p in rng.choice(cands, size=int(rng.integers(1, 3)), replace=False))


def _bass_pattern_ext(label: str, meter: int, sub: int) -> list[tuple[float, float, int]]:
    """_bass_pattern for compound meters (a long-short ternary lilt, running eighths in the chorus) and slow 2/2
    (walking quarters, running eighths in the chorus); a note on every downbeat."""
    if label in ("intro", "bridge", "outro"):
        return [(0.0, meter - 0.3, 0)]
    if sub == 3:
        if label == "verse":
            return [x for b in range(meter) for x in ((float(b), 0.6, 0 if b % 2 == 0 else 4), (b + 2.0 / 3.0, 0.28, 0))]
        return [(i / 3, 0.28, 7 if i % 6 == 5 else 0) for i in range(meter * 3)]
    if label == "verse":
        return [(i / 2, 0.45, 4 if i % 2 else 0) for i in range(2 * meter)]
    return [(i / 4, 0.21, 7 if i % 4 == 3 else 0) for i in range(4 * meter)]


def _bass_pattern(label: str, meter: int) -> list[tuple[float, float, int]]:
    """(position in beats, duration in beats, interval in scale steps above the chord root: 0 root, 4 fifth, 7 octave)."""
    if label in ("intro", "bridge", "outro"):
        return [(0.0, meter - 0.3, 0)]
    if label == "verse":
        return [(0.0, 1.6, 0), (2.0, 1.6, 0)] if meter == 4 else [(0.0, 1.6, 0), (2.0, 0.8, 4)]
    return [(i / 2, 0.42, 7 if i % 4 == 3 else 0) for i in range(meter * 2)]


def _motif(rng: np.random.Generator, meter: int, density: float, sub: int = 2) -> list[tuple[int, float, float, int]]:
    """A 4-bar melody: (bar, position, duration in beats, scale steps above the bar's chord root), on a grid of
    `sub` pulses per beat (eighths: 2 simple, 3 compound, 4 in 2/2 where even pulses are quarters)."""
    onsets: list[tuple[int, float]] = []
    for bar in range(2):
        for e in range(meter * sub):
            p = density * (1.4 if e == 0 else (1.0 if e % sub == 0 else (0.8 if sub == 4 and e % 2 == 0 else 0.6)))
            if rng.random() < p:
                onsets.append((bar, e / sub))
    if not onsets:
        onsets = [(0, 0.0), (1, 0.0)]
    steps, cur = [], int(rng.choice([0, 2, 4]))
    for bar, pos in onsets:
        if pos == int(pos):  # on the beat: a chord tone near the last note
            cur = min((0, 2, 4, 7, -3), key=lambda c: abs(c - cur) + rng.uniform(0, 2.5))
        else:
            cur = int(np.clip(cur + rng.choice([-1, 1, 2, -2]), -3, 9))
        steps.append(cur)
    notes = []
    for rep in range(2):  # bars 2-3 repeat bars 0-1, the last bar varied (a cadence)
        for i, ((bar, pos), st) in enumerate(zip(onsets, steps)):
            nxt = (onsets[i + 1][0] * meter + onsets[i + 1][1]) if i + 1 < len(onsets) else 2 * meter
            dur = min(nxt - (bar * meter + pos), 2.0) * 0.85
            if rep == 1 and bar == 1:
                st = st - 1 if st not in (0, 2, 4, 7) else st
            notes.append((bar + 2 * rep, pos, dur, st))
    return notes


# ----------------------------------------------------------------------------- rendering
class _Timeline:
    """Musical position (beats from the song start, swing applied to subdivisions) -> seconds -> samples."""

    def __init__(self, plan: _Plan, sr: int, jitter_rng: np.random.Generator | None = None):
        self.grid, self.swing, self.sr = plan.grid, plan.swing, sr
        self.index = np.arange(len(plan.grid), dtype=np.float64)
        self.jitter = plan.jitter_ms / 1000.0 if jitter_rng is not None else 0.0
        self.jitter_rng = jitter_rng

    def seconds(self, pos: float) -> float:
        b = np.floor(pos)
        f = pos - b
        s = self.swing
        f = f * (0.5 + s) / 0.5 if f < 0.5 else 0.5 + s + (f - 0.5) * (0.5 - s) / 0.5
        return float(np.interp(b + f, self.index, self.grid))

    def sample(self, pos: float) -> int:
        """Onset sample of a note / hit at `pos`; expressive songs play it a little early or late (seeded jitter)."""
        t = self.seconds(pos)
        if self.jitter > 0:
            t += float(np.clip(self.jitter_rng.normal(0.0, self.jitter), -0.02, 0.02))
        return int(round(t * self.sr))


def _degree_midi(root: int, mode: str, degree: int, base: int) -> int:
    scale = SCALES[mode]
    return base + root + 12 * (degree // 7) + scale[degree % 7]


def _render(plan: _Plan, rng: np.random.Generator, sr: int, jitter_rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    n = int(np.ceil(plan.duration * sr))
    out = {name: np.zeros(n) for name in STEM_NAMES}
    tl = _Timeline(plan, sr, jitter_rng)
    m, mode, root, sub = plan.meter, plan.mode, plan.root, plan.sub

    kit = _Kit(rng, sr)
    bass_voice = _Additive(rng, sr, float(rng.uniform(0.9, 1.8)), 10, 0.0)
    bass_sub = float(rng.uniform(0.3, 0.8))
    bass_env = (0.005, float(rng.uniform(0.12, 0.4)), float(rng.uniform(0.3, 0.7)), 0.06)
    pad = _voice(rng, sr, 1.0)
    pad_bright = _voice(rng, sr, 1.8)
    pad_env = (float(rng.uniform(0.02, 0.15)), float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.5, 0.8)), float(rng.uniform(0.1, 0.3)))
    stab_env = (0.004, float(rng.uniform(0.06, 0.15)), 0.2, 0.05)
    lead = _voice(rng, sr, 1.3)
    lead_env = (0.008, float(rng.uniform(0.1, 0.4)), float(rng.uniform(0.4, 0.8)), float(rng.uniform(0.05, 0.15)))
    vibrato = (float(rng.uniform(0.002, 0.007)), float(rng.uniform(4.5, 6.5)))
    hat_div = 4 if rng.random() < 0.5 else 2
    if sub == 2:
        extra_kicks = tuple(float(p) for p in rng.choice([1.5, m - 0.5, 0.5 + (m - 2)], size=int(rng.integers(1, 3)), replace=False))
    else:
        extra_kicks = _extra_kicks_ext(rng, m, sub)
    progs = {lab: PROGRESSIONS[mode][lab][int(rng.integers(len(PROGRESSIONS[mode][lab])))] for lab in ("verse", "chorus", "bridge")}
    progs["intro"], progs["outro"] = progs["verse"], progs["chorus"]
    motifs = {lab: _motif(rng, m, d, sub) for lab, d in (("verse", 0.45), ("chorus", 0.6), ("bridge", 0.25))}
    lead_base = 60 if root < 7 else 48
    bass_base = 36 if root < 5 else 24
    drums, bass, harmony, lead_buf = out["drums"], out["bass"], out["harmony"], out["lead"]
    hat_count = 0

    def note(buf, voice, midi, pos, dur_beats, env, gain, vib=(0.0, 0.0)):
        start = tl.sample(pos)
        dur = tl.seconds(pos + dur_beats) - tl.seconds(pos)
        e = _envelope(dur, sr, *env)
        _add(buf, start, gain * e * voice.render(_midi_hz(midi), len(e), vib))

    bar0 = 0
    for label, n_bars in plan.sections:
        g = SECTION_GAIN[label]
        phrase = _phrase_bars(n_bars)
        if plan.no_drums:
            pattern = []
        elif sub == 2:
            pattern = _drum_pattern(label, m, hat_div, extra_kicks)
        else:
            pattern = _drum_pattern_ext(label, m, sub, hat_div, extra_kicks)
        bass_pattern = _bass_pattern(label, m) if sub == 2 else _bass_pattern_ext(label, m, sub)
        stab_offset = 2.0 / 3.0 if sub == 3 else 0.5  # the last eighth of a compound beat; else the beat's (or half note's) middle
        for j in range(n_bars):
            bar = bar0 + j
            pos0 = float(bar * m)
            degree = progs[label][j % 4]
            # drums
            if not plan.no_drums and ((j == 0 and bar > 0) or (label == "chorus" and j % phrase == 0)):  # crash: section starts, chorus phrases
                _add(drums, tl.sample(pos0), (0.7 if label == "chorus" else 0.45) * g * kit.crash)
            for inst, p, gain in pattern:
                s = tl.sample(pos0 + p)
                jitter = 1.0 + 0.06 * (rng.random() - 0.5)
                if inst == "kick":
                    _add(drums, s, g * gain * jitter * kit.kick)
                elif inst == "snare":
                    _add(drums, s, g * gain * jitter * kit.snare_level * kit.snare)
                elif inst == "hat":
                    _add(drums, s, g * gain * jitter * kit.hat_level * kit.hats[hat_count % 4])
                    hat_count += 1
                else:
                    _add(drums, s, g * gain * jitter * kit.hat_level * kit.open_hat)
            # bass: chord root (a note on every downbeat)
            for p, d, step in bass_pattern:
                midi = _degree_midi(root, mode, degree + step, bass_base)
                start = tl.sample(pos0 + p)
                dur = tl.seconds(pos0 + p + d) - tl.seconds(pos0 + p)
                e = _envelope(dur, sr, *bass_env)
                f = _midi_hz(midi)
                wave = bass_voice.render(f, len(e)) + bass_sub * np.sin(2 * np.pi * f * np.arange(len(e)) / sr)
                _add(bass, start, g * (1.0 if p == 0 else 0.8) * e * wave)
            # harmony: a triad per bar (changes only on downbeats), voiced around middle C
            chord = [_degree_midi(root, mode, degree + k, 0) % 12 for k in (0, 2, 4)]
            voicing = [55 + (pc - 55) % 12 for pc in chord]
            voice = pad_bright if label == "chorus" else pad
            for midi in voicing:
                note(harmony, voice, midi, pos0, m - 0.05, pad_env, g * 0.33)
            if label == "chorus":  # offbeat stabs
                for b in range(m):
                    for midi in voicing:
                        note(harmony, pad_bright, midi + 12, pos0 + b + stab_offset, 0.3, stab_env, g * 0.16)
            # lead: the section's motif, repeated every 4 bars
            if label in motifs:
                octave = 12 if label == "chorus" else 0
                for mb, p, d, st in motifs[label]:
                    if mb == j % 4:
                        midi = _degree_midi(root, mode, degree + st, lead_base + octave)
                        note(lead_buf, lead, midi, pos0 + p, d, lead_env, g * 0.5, vibrato)
        bar0 += n_bars
    return out


def _mixdown(stems: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Balance the stems, set the song's loudness, quantise each stem to int16; the mix is their exact sum."""
    balance = {"drums": 1.0, "bass": rng.uniform(0.55, 0.8), "harmony": rng.uniform(0.3, 0.5), "lead": rng.uniform(0.3, 0.5)}
    scaled = {}
    for name, x in stems.items():
        rms = np.sqrt(np.mean(x**2))
        scaled[name] = x * (balance[name] / rms if rms > 0 else 0.0)
    mix = sum(scaled.values())
    target_rms = 10 ** (rng.uniform(-23.0, -17.0) / 20)  # a 6 dB loudness spread between songs
    gain = target_rms / max(np.sqrt(np.mean(mix**2)), 1e-12)
    peak = max(np.abs(mix).max(), *(np.abs(x).max() for x in scaled.values())) * gain
    if peak > 0.89:  # headroom: neither a stem nor the sum of the quantised stems can clip
        gain *= 0.89 / peak
    ints = {name: np.round(x * gain * 32767.0).astype(np.int16) for name, x in scaled.items()}
    total = np.zeros(len(mix), dtype=np.int32)
    for x in ints.values():
        total += x
    assert np.abs(total).max() <= 32767
    return ints, total.astype(np.int16)


def generate_song(index: int, cfg: CorpusConfig, hard: bool = False) -> GeneratedSong:
    """Plan and render song `index` (hard song `index` when `hard`) in memory (int16 mix and stems, ground truth)."""
    check_config(cfg)
    plan, rng = _make_plan(index, cfg, hard)
    jitter_rng = np.random.default_rng([cfg.seed, index, 2]) if plan.jitter_ms > 0 else None
    stems, mix = _mixdown(_render(plan, rng, cfg.sample_rate, jitter_rng), rng)
    sid = hard_song_id(index) if hard else song_id(index)
    return GeneratedSong(sid, cfg.sample_rate, mix, stems, _truth(plan, sid, cfg.sample_rate))


# ----------------------------------------------------------------------------- corpus on disk
_SONG_FILE = re.compile(r"^(song|hard)_\d{3,}$")


def _remove_stale(out_root: Path, keep: set[str]) -> None:
    """Drop songs of an earlier, larger (or otherwise shared) corpus (only our own song_NNN / hard_NNN files)."""
    for sub, suffix in (("audio", ".wav"), ("truth", ".json")):
        for p in (out_root / sub).glob(f"*{suffix}"):
            if _SONG_FILE.match(p.stem) and p.stem not in keep:
                p.unlink()
    for p in (out_root / "stems").glob("*"):
        if p.is_dir() and _SONG_FILE.match(p.name) and p.name not in keep:
            shutil.rmtree(p)


def write_song(song: GeneratedSong, out_root: Path) -> dict:
    """Write one song's mix, stems and truth under out_root; return its manifest record."""
    out_root = Path(out_root)
    audio = out_root / "audio" / f"{song.song_id}.wav"
    stem_dir = out_root / "stems" / song.song_id
    truth_path = out_root / "truth" / f"{song.song_id}.json"
    for d in (audio.parent, stem_dir, truth_path.parent):
        d.mkdir(parents=True, exist_ok=True)
    sf.write(audio, song.mix, song.sample_rate, subtype="PCM_16", format="WAV")
    for name in STEM_NAMES:
        sf.write(stem_dir / f"{name}.flac", song.stems[name], song.sample_rate, subtype="PCM_16", format="FLAC")
    truth_path.write_text(json.dumps(song.truth, indent=1) + "\n")
    t = song.truth
    return {
        "song_id": song.song_id,
        "path": str(audio),
        "truth": str(truth_path),
        "stems": str(stem_dir),
        "has_truth": True,
        "sample_rate": song.sample_rate,
        "duration": t["duration"],
        "tempo": t["tempo"],
        "meter": t["meter"],
        "swing": t["swing"],
        "tempo_drift": t["tempo_drift"],
        "key": t["key"],
        "n_beats": t["n_beats"],
        "time_signature": t["time_signature"],
        "traits": t["traits"],
        "sections": [{"label": s["label"], "bars": s["bars"], "start_time": s["start_time"]} for s in t["sections"]],
    }


def generate_corpus(cfg: CorpusConfig, out_root: Path, progress: bool = True) -> list[dict]:
    """Generate cfg.n_songs songs under out_root (audio/, stems/, truth/, manifest.json); return the manifest."""
    check_config(cfg)
    from beatedit.progress import progress_bar

    out_root = Path(out_root)
    songs = corpus_songs(cfg)
    _remove_stale(out_root, {sid for sid, _, _ in songs})
    manifest = []
    for _, i, hard in progress_bar(songs, desc="corpus", unit="song", disable=not progress):
        manifest.append(write_song(generate_song(i, cfg, hard), out_root))
    out_root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_root / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return manifest
