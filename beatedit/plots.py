"""Pictures people would rather look at than read (matplotlib, no GUI backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# tick labels use a real minus sign (U+2212); the default font (DejaVu Sans, bundled) has it, so PNGs show no tofu
matplotlib.rcParams.update({"axes.unicode_minus": True})

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
    ax.set_ylabel("amplitude")
    ax.set_title(f"{song.song_id}: {song.tempo:.1f} BPM, {song.meter} beats/bar, {len(song.bar_starts)} bars, {len(song.phrase_starts)} phrases, {len(song.section_starts)} sections")
    ax.legend(loc="upper right", fontsize=8, ncol=4)
    fig.tight_layout()
    return fig


def definition_figure(definition: dict, tables: dict[str, pd.DataFrame]) -> plt.Figure:
    """A DVC top-level plot definition (``template``, ``x``, ``y: {file: columns}``, ``title``, ``x_label``,
    ``y_label``) drawn with matplotlib from ``tables`` (file -> its CSV), so MLflow shows the figure
    ``dvc plots show`` draws: ``linear`` lines against x, ``scatter`` points (no joining in time order),
    ``bar_horizontal[_sorted]`` one bar per category (``y`` names the category column)."""
    template = definition.get("template", "linear")
    x = definition["x"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for file, columns in definition["y"].items():
        df = tables[file]
        columns = [columns] if isinstance(columns, str) else list(columns)
        if template.startswith("bar_horizontal"):
            bars = df.sort_values(x) if template.endswith("_sorted") else df.iloc[::-1]
            for column in columns:
                ax.barh(bars[column].astype(str), bars[x].astype(float), color="tab:blue")
            continue
        for column in columns:
            data = df[[x, column]].dropna()
            if template.startswith("scatter"):
                ax.scatter(data[x], data[column], s=14, label=column)
            else:
                data = data.sort_values(x)
                ax.plot(data[x], data[column], label=column, marker="." if len(data) < 50 else None)
        if len(columns) > 1:
            ax.legend()
    ax.set_xlabel(definition.get("x_label", x))
    ax.set_ylabel(definition.get("y_label", ""))
    ax.set_title(definition.get("title", ""), fontsize=10)
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


def _envelope(y: np.ndarray, sr: int, columns: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, min, max) of ``y`` over ``columns`` bins: a long file drawn without plotting every sample."""
    n = len(y)
    step = max(1, n // columns)
    m = n // step
    if m == 0:
        return np.zeros(1), np.zeros(1), np.zeros(1)
    blocks = y[: m * step].reshape(m, step)
    return (np.arange(m) + 0.5) * step / sr, blocks.min(axis=1), blocks.max(axis=1)


def seams_figure(source: np.ndarray, edit: np.ndarray, sr: int, cues: dict, title: str = "") -> plt.Figure:
    """Source (top) and edit (bottom) waveforms; the kept regions shaded in both, each seam marked in both.

    ``source`` / ``edit``: mono float arrays at ``sr``; ``cues``: ``beatedit.editing.cues.cues_for``. Segment k
    has the same colour in both rows; a seam is a red line in the edit and the matching out/in points in the source.
    """
    fig, (ax_s, ax_e) = plt.subplots(2, 1, figsize=(14, 5.5))
    colours = plt.get_cmap("tab10")
    for ax, y in ((ax_s, source), (ax_e, edit)):
        t, lo, hi = _envelope(np.asarray(y, dtype=np.float32), sr)
        ax.fill_between(t, lo, hi, color="0.35", linewidth=0)
        peak = float(max(np.max(np.abs(hi)), np.max(np.abs(lo)))) or 1.0
        ax.set_ylim(-1.08 * peak, 1.08 * peak)
        ax.set_yticks([])
    for k, seg in enumerate(cues["segments"]):
        c = colours(k % 10)
        ax_s.axvspan(seg["source_start"], seg["source_end"], color=c, alpha=0.18, linewidth=0)
        ax_e.axvspan(seg["output_start"], seg["output_end"], color=c, alpha=0.18, linewidth=0)
    for i, seam in enumerate(cues["seams"]):
        ax_e.axvline(seam["time"], color="tab:red", linewidth=1.4, label="seam" if i == 0 else None)
        ax_s.axvline(seam["source_out"], color="tab:red", linewidth=1.0, linestyle="--", label="seam: out" if i == 0 else None)
        ax_s.axvline(seam["source_in"], color="tab:red", linewidth=1.0, linestyle=":", label="seam: in" if i == 0 else None)
    ax_s.set_xlim(0, cues["source_duration"])
    ax_e.set_xlim(0, cues["duration"])
    ax_s.set_title(f"source ({cues['source_duration']:.1f} s): kept regions shaded, seams dashed (out) / dotted (in)")
    ax_e.set_title(f"edit ({cues['duration']:.1f} s, {len(cues['seams'])} seam(s)): pieces in the source's colours")
    for ax in (ax_s, ax_e):
        ax.set_xlabel("time (s)")
        if cues["seams"]:
            ax.legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def win_rate_bars_figure(rows, title: str) -> plt.Figure:
    """Horizontal bars of win rates with their CIs (``rows``: records with set, opponent, win_rate, ci_low, ci_high);
    the 0.5 line is a tie with the opponent."""
    rows = list(rows)
    fig, ax = plt.subplots(figsize=(8, 0.4 * max(len(rows), 3) + 1.2))
    ys = np.arange(len(rows))
    rates = np.array([r["win_rate"] for r in rows], dtype=float)
    err = np.array([[r["win_rate"] - r["ci_low"] for r in rows], [r["ci_high"] - r["win_rate"] for r in rows]], dtype=float)
    ax.barh(ys, rates, xerr=err if len(rows) else None, capsize=3, color="tab:blue", alpha=0.8)
    ax.set_yticks(ys, [f"{r['set']} vs {r['opponent']}" for r in rows])
    ax.axvline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate of the policy (95% CI, seeds x songs bootstrap)")
    ax.set_title(title)
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def proxy_gold_figure(rows: list[dict], title: str = "over-optimisation monitor: proxy vs gold per evaluation") -> plt.Figure:
    """Scatter of the learned reward (proxy) against the listener's gold, one point per monitor evaluation coloured by
    update, with the strong baselines' gold (``gold_search``, ``gold_fade``: scored once on the same jobs) as lines."""
    fig, ax = plt.subplots(figsize=(7, 5))
    x = np.array([r.get("proxy_learned", np.nan) for r in rows], dtype=float)
    y = np.array([r.get("gold_listener", np.nan) for r in rows], dtype=float)
    c = np.array([r.get("update", r.get("epoch", i)) for i, r in enumerate(rows)], dtype=float)
    sc = ax.scatter(x, y, c=c, cmap="viridis", s=25)
    fig.colorbar(sc, ax=ax, label="update")
    for name, style in (("gold_search", "r--"), ("gold_fade", "m:"), ("gold_heuristic", "k-.")):
        v = [r[name] for r in rows if name in r]
        if v:
            ax.axhline(float(v[0]), color=style[0], ls=style[1:], lw=1, label=f"{name.removeprefix('gold_')} (gold)")
    ax.set_xlabel("proxy: normalised learned reward of the greedy edits")
    ax.set_ylabel("gold: listener total (audio seams)")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    ax.grid(alpha=0.3)
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
