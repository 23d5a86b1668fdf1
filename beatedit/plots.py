"""Pictures people would rather look at than read (matplotlib, no GUI backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from beatedit.audio.song import SongAnalysis  # noqa: E402


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


def edit_figure(y: np.ndarray, sr: int, song: SongAnalysis, output_beats, title: str = "") -> plt.Figure:
    """Source waveform with kept (green) / cut (grey) beats, splices (red) and the bar grid; edit order below."""
    bounds = song.beat_bounds
    kept = np.zeros(song.n_beats, dtype=int)
    src = [int(b[0]) for b in output_beats]
    for b in src:
        kept[b] += 1
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(14, 5), gridspec_kw={"height_ratios": [3, 1]})
    t = np.arange(len(y)) / sr
    step = max(1, len(y) // 20000)
    ax.plot(t[::step], y[::step], color="0.3", linewidth=0.4)
    for i in range(song.n_beats):
        colour = "tab:green" if kept[i] == 1 else ("tab:purple" if kept[i] > 1 else "0.85")
        ax.axvspan(bounds[i], bounds[i + 1], color=colour, alpha=0.35, linewidth=0)
    ax.vlines(song.beat_times[song.bar_starts], *ax.get_ylim(), color="tab:blue", linewidth=0.6, alpha=0.6)
    cuts = [(x + 1, nxt) for x, nxt in zip(src, src[1:]) if nxt != x + 1]
    for leave, arrive in cuts:
        ax.axvline(bounds[min(leave, song.n_beats)], color="tab:red", linewidth=1.2)
        ax.axvline(bounds[arrive], color="tab:red", linewidth=1.2, linestyle="--")
    ax.set_xlim(0, song.duration)
    ax.set_title(title or f"{song.song_id}: kept (green), looped (purple), cut (grey), splices (red), bars (blue)")
    ax2.plot(range(len(src)), [bounds[b] for b in src], drawstyle="steps-post", color="tab:green")
    ax2.set_xlabel("output beat")
    ax2.set_ylabel("source time (s)")
    fig.tight_layout()
    return fig


def realmusic_scatter_figure(rows: list[dict]) -> plt.Figure:
    """Per-piece beat F-measure on the real-music validation set: ours (y) against librosa's beat_track (x), by collection."""
    fig, ax = plt.subplots(figsize=(6.0, 5.6))
    groups = sorted({r["group"] for r in rows})
    for g in groups:
        sub = [r for r in rows if r["group"] == g]
        ax.scatter([r["librosa_beat_f_measure"] for r in sub], [r["beat_f_measure"] for r in sub], label=g, s=28, alpha=0.8)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("librosa beat_track: beat F-measure")
    ax.set_ylabel("beatedit front end: beat F-measure")
    ax.set_title(f"real-music validation set ({len(rows)} pieces): above the line = better than librosa")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
