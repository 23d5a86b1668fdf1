"""Benchmark: the search editor's time per song (not a test).

    .venv/bin/python bench/bench_search.py [--features DIR] [--songs 6] [--targets 0.4,0.5,0.6,0.7,0.8] [--repeat 3]

1. Generated corpus songs: the ``*.npz`` analyses in ``--features`` (default
   ``data/features`` when it holds any), otherwise ``--songs`` songs generated and
   analysed into a temporary folder first (corpus generator + ``analyse_song``, hpss
   stems; this setup is not timed).
2. A synthetic 4-minute song (120 BPM, 4/4, about 480 beats, random features with a
   per-section loudness): the design goal is under 1 s per edit on one core.

Per song and target: ``search_decisions`` wall time (best of ``--repeat``); printed
per song as median / max over the targets, then over all songs. Peer in the same
run: the heuristic editor (``heuristic_decisions``) on the same songs and targets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from beatedit.audio.schema import N_FEATURES, col  # noqa: E402
from beatedit.audio.song import SongAnalysis  # noqa: E402
from beatedit.editing.editors import heuristic_decisions  # noqa: E402
from beatedit.editing.search import search_decisions, search_path  # noqa: E402


def four_minute_song(seconds: float = 240.0, bpm: float = 120.0, meter: int = 4, seed: int = 0) -> SongAnalysis:
    """A synthetic analysed song: jittered beats, bars of ``meter``, 4-bar phrases, 8-bar sections."""
    rng = np.random.default_rng(seed)
    ibi = 60.0 / bpm
    n = int((seconds - 0.5) / ibi)
    beat_times = 0.2 + np.cumsum(np.concatenate([[0.0], ibi * (1 + rng.uniform(-0.01, 0.01, n - 1))]))
    bars = np.arange(0, n, meter, dtype=np.int64)
    phrases, sections = bars[::4], bars[::8]
    sid = np.searchsorted(sections, np.arange(n), side="right") - 1
    f = (rng.standard_normal((len(sections), N_FEATURES))[sid] + 0.3 * rng.standard_normal((n, N_FEATURES)))
    level = rng.uniform(0.05, 0.6, len(sections))[sid]
    f[:, col("rms")] = level
    f[:, col("rms_db")] = 20 * np.log10(level)
    return SongAnalysis(song_id="synthetic_4min", source_path="", source_hash="0" * 64, source_sr=44100,
                        source_channels=2, duration=seconds, tempo=bpm, meter=meter, beat_times=beat_times,
                        bar_starts=bars, beat_in_bar=(np.arange(n) % meter).astype(np.int64), phrase_starts=phrases,
                        section_starts=sections, features=f.astype(np.float32))


def corpus_songs(features: Path | None, n_songs: int) -> list[SongAnalysis]:
    if features is None and (REPO / "data" / "features").is_dir() and any((REPO / "data" / "features").glob("*.npz")):
        features = REPO / "data" / "features"
    if features is not None:
        return [SongAnalysis.load(p) for p in sorted(Path(features).glob("*.npz"))[:n_songs]]
    from beatedit.audio.analysis import analyse_song
    from beatedit.audio.stems import StemCache
    from beatedit.config import Config, CorpusConfig
    from beatedit.corpus.generator import generate_corpus

    root = Path(tempfile.mkdtemp(prefix="bench_search_"))
    print(f"generating and analysing {n_songs} corpus songs in {root} (not timed) ...", flush=True)
    manifest = generate_corpus(CorpusConfig(n_songs=n_songs, seed=4321), root / "corpus", progress=False)
    cache = StemCache(root / "stems")
    return [analyse_song(rec["path"], Config(), cache) for rec in manifest]


def best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(songs: list[SongAnalysis], targets: list[float], repeat: int) -> None:
    all_s, all_h = [], []
    print(f"{'song':16s} {'beats':>5s} {'meter':>5s} {'search median ms':>16s} {'max ms':>8s} "
          f"{'heuristic median ms':>19s} {'ratio':>6s} {'max |err| beats':>15s}")
    for s in songs:
        ts = [best_time(lambda: search_decisions(s, t), repeat) for t in targets]
        th = [best_time(lambda: heuristic_decisions(s, t), repeat) for t in targets]
        err = max(search_path(s, t).error_beats for t in targets)
        all_s += ts
        all_h += th
        ms, mh = statistics.median(ts), statistics.median(th)
        print(f"{s.song_id:16s} {s.n_beats:5d} {s.meter:5d} {1e3 * ms:16.1f} {1e3 * max(ts):8.1f} {1e3 * mh:19.2f} "
              f"{ms / mh:5.0f}x {err:15.2f}")
    print(f"{'all':16s} {'':5s} {'':5s} {1e3 * statistics.median(all_s):16.1f} {1e3 * max(all_s):8.1f} "
          f"{1e3 * statistics.median(all_h):19.2f} {statistics.median(all_s) / statistics.median(all_h):5.0f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, default=None, help="folder of analysed songs (*.npz)")
    ap.add_argument("--songs", type=int, default=6)
    ap.add_argument("--targets", default="0.4,0.5,0.6,0.7,0.8")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    targets = [float(t) for t in args.targets.split(",")]
    print(f"targets {targets}, best of {args.repeat} runs per edit, one process (numpy may use its own threads)")
    print("\n## synthetic 4-minute song")
    bench([four_minute_song()], targets, args.repeat)
    print("\n## generated corpus songs")
    bench(corpus_songs(args.features, args.songs), targets, args.repeat)


if __name__ == "__main__":
    main()
