"""Pictures people would rather look at than read (matplotlib, no GUI backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from beatedit.song import SongAnalysis  # noqa: E402


def beat_grid_figure(y: np.ndarray, sr: int, song: SongAnalysis, seconds: float | None = 30.0) -> plt.Figure:
    """Waveform with beats (thin), downbeats (thick) and phrase/section starts (coloured)."""
    end = song.duration if seconds is None else min(seconds, song.duration)
    n = int(end * sr)
    t = np.arange(n) / sr
    fig, ax = plt.subplots(figsize=(14, 3.5))
    ax.plot(t, y[:n], color="0.6", linewidth=0.4)
    bt = song.beat_times
    shown = bt < end
    ax.vlines(bt[shown], -1, 1, color="tab:blue", linewidth=0.5, alpha=0.5, label="beat")
    for idx, colour, label, width in ((song.bar_starts, "tab:blue", "downbeat", 1.4), (song.phrase_starts, "tab:orange", "phrase", 2.2), (song.section_starts, "tab:red", "section", 3.0)):
        times = bt[idx]
        times = times[times < end]
        ax.vlines(times, -1, 1, color=colour, linewidth=width, label=label)
    peak = float(np.max(np.abs(y[:n]))) or 1.0
    ax.set_ylim(-peak * 1.05, peak * 1.05)
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    ax.set_title(f"{song.song_id}: {song.tempo:.1f} BPM, {song.meter}/4, {len(song.bar_starts)} bars, {len(song.phrase_starts)} phrases, {len(song.section_starts)} sections")
    ax.legend(loc="upper right", fontsize=8, ncol=4)
    fig.tight_layout()
    return fig


def curves_figure(history: list[dict], keys: list[str], title: str, x: str = "step") -> plt.Figure:
    """Line plot of several metrics from a list of per-step dicts."""
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = [h.get(x, i) for i, h in enumerate(history)]
    for k in keys:
        ys = [h.get(k, np.nan) for h in history]
        ax.plot(xs, ys, label=k, marker="." if len(xs) < 50 else None)
    ax.set_xlabel(x)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
