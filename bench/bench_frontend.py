"""Front-end benchmark (not a test): stems + beats + features throughput on ONE core, and peak memory.

    .venv/bin/python bench/bench_frontend.py                 # corpus (24 songs) + one 20-minute file + peer
    .venv/bin/python bench/bench_frontend.py --songs 6 --long-minutes 5 --no-write

What is measured (each case in a fresh subprocess pinned to one CPU, BLAS/OpenMP/numba threads = 1):

* ``beatedit``: ``beatedit.audio.analysis.analyse_song`` with an empty stem cache -- decode + resample,
  HPSS stems (written to the cache), frame analysis, beat/downbeat/phrase/section tracking and the
  125 features. ``x real time`` = seconds of audio / wall seconds. A second pass (stems cached)
  is timed too.
* peer, in the same run on the same songs: a typical librosa front end -- ``librosa.load``,
  ``librosa.effects.hpss`` (defaults), ``librosa.beat.beat_track``, MFCC / chroma_stft / contrast /
  centroid / RMS / onset / tonnetz, beat-synchronised with ``librosa.util.sync``.
* peak memory: the process's peak RSS (``resource.getrusage``) minus its RSS after imports and a
  warm-up, against the file's decoded float32 size.

Results go to ``bench/RESULTS.md`` under the "Front end" heading (other sections are kept).
"""

from __future__ import annotations

import os

for _k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_k] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "frontend"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _pin_one_core() -> int:
    cpu = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {cpu})
    return cpu


# ----------------------------------------------------------------------------- worker (one subprocess per case)
def _warm_up() -> None:
    """Compile numba kernels and build filterbanks on a few seconds of noise (not timed)."""
    import numpy as np

    from beatedit.audio.io import write_wav
    from beatedit.config import Config
    from beatedit.audio.analysis import analyse_song
    from beatedit.audio.stems import StemCache

    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        y = np.zeros(22050 * 20, np.float32)
        for i in range(0, len(y), 11025):
            y[i:i + 2000] += rng.standard_normal(2000).astype(np.float32) * 0.3
        write_wav(Path(d) / "w.wav", y, 22050)
        analyse_song(Path(d) / "w.wav", Config(), StemCache(Path(d) / "c"))


def _peer_song(path: str) -> float:
    """A typical librosa front end on one song; returns audio seconds."""
    import librosa
    import numpy as np

    y, sr = librosa.load(path, sr=22050, mono=True)
    h, p = librosa.effects.hpss(y)
    _, beats = librosa.beat.beat_track(y=y, sr=sr)
    S = np.abs(librosa.stft(y))
    feats = [
        librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20),
        librosa.feature.chroma_stft(y=h, sr=sr),
        librosa.feature.spectral_contrast(S=S, sr=sr),
        librosa.feature.spectral_centroid(S=S, sr=sr),
        librosa.feature.spectral_bandwidth(S=S, sr=sr),
        librosa.feature.spectral_rolloff(S=S, sr=sr),
        librosa.feature.spectral_flatness(S=S),
        librosa.feature.zero_crossing_rate(y),
        librosa.feature.rms(S=S),
        librosa.onset.onset_strength(y=y, sr=sr)[None, :],
        librosa.onset.onset_strength(y=p, sr=sr)[None, :],
    ]
    chroma = feats[1]
    feats.append(librosa.feature.tonnetz(chroma=chroma, sr=sr))
    n = min(f.shape[1] for f in feats)
    X = np.concatenate([f[:, :n] for f in feats])
    librosa.util.sync(X, beats[beats < n], aggregate=np.mean)
    return len(y) / sr


def worker(args: argparse.Namespace) -> None:
    cpu = _pin_one_core()
    import numpy as np

    from beatedit.config import Config
    from beatedit.audio.analysis import analyse_song
    from beatedit.audio.stems import StemCache

    paths = args.files
    if args.peer:
        import librosa

        y, sr = librosa.load(paths[0], sr=22050, duration=5.0)
        librosa.beat.beat_track(y=y, sr=sr)  # numba warm-up
    else:
        _warm_up()
    base_now, base_peak = _current_rss_mb(), _rss_mb()
    rows = []
    cfg = Config()
    with tempfile.TemporaryDirectory() as d:
        cache = StemCache(Path(d) / "stems")
        for p in paths:
            t0 = time.perf_counter()
            if args.peer:
                audio_s = _peer_song(p)
                rows.append({"file": Path(p).name, "audio_s": audio_s, "wall_s": time.perf_counter() - t0})
                continue
            song = analyse_song(p, cfg, cache)
            wall = time.perf_counter() - t0
            t1 = time.perf_counter()
            cached = analyse_song(p, cfg, cache)  # second pass: stems from the cache
            wall_cached = time.perf_counter() - t1
            assert cached.extra["stems_cache_hit"] and np.array_equal(cached.features, song.features)
            rows.append({"file": Path(p).name, "audio_s": song.duration, "wall_s": wall, "wall_cached_s": wall_cached,
                         "n_beats": song.n_beats, "timings": song.extra["timings_s"]})
    print(json.dumps({"cpu": cpu, "rows": rows, "rss_baseline_mb": base_now, "rss_peak_before_mb": base_peak,
                      "rss_peak_mb": _rss_mb()}))


def run_case(files: list[str], peer: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *(["--peer"] if peer else []), "--files", *files]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- data
def make_corpus(n_songs: int) -> list[str]:
    from beatedit.config import CorpusConfig
    from beatedit.corpus.generator import generate_corpus

    root = OUT / "corpus"
    cfg = CorpusConfig(n_songs=n_songs)
    manifest_path = root / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if len(manifest) == n_songs and all(Path(m["path"]).exists() for m in manifest):
            return [m["path"] for m in manifest]
    print(f"generating {n_songs} corpus songs into {root} ...", flush=True)
    manifest = generate_corpus(cfg, root, progress=False)
    return [m["path"] for m in manifest]


def make_long_file(songs: list[str], minutes: float) -> tuple[str, float]:
    """Concatenate corpus songs to ``minutes`` and write it as 44.1 kHz stereo PCM_16 (like a CD rip)."""
    import numpy as np
    import soundfile as sf
    import soxr

    path = OUT / f"long_{minutes:g}min_44k_stereo.wav"
    target = int(minutes * 60 * 44100)
    if path.exists() and sf.info(str(path)).frames == target:
        return str(path), target * 2 * 4 / 2**20
    print(f"writing a {minutes:g}-minute 44.1 kHz stereo file {path} ...", flush=True)
    written = 0
    with sf.SoundFile(str(path), "w", 44100, 2, subtype="PCM_16") as f:
        k = 0
        while written < target:
            y, sr = sf.read(songs[k % len(songs)], dtype="float32")
            y = soxr.resample(y, sr, 44100) if sr != 44100 else y
            y = y[: target - written]
            f.write(np.stack([y, 0.9 * y], axis=1))
            written += len(y)
            k += 1
    return str(path), target * 2 * 4 / 2**20


# ----------------------------------------------------------------------------- report
def machine() -> str:
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import librosa
    import numpy as np

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{model}, {os.cpu_count()} logical CPUs (benchmark pinned to 1; load average at the end {load} -- "
            f"other work shared the machine, so these are lower bounds), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}, librosa {librosa.__version__}")


def summarise(case: dict) -> dict:
    rows = case["rows"]
    audio = sum(r["audio_s"] for r in rows)
    wall = sum(r["wall_s"] for r in rows)
    out = {"songs": len(rows), "audio_s": audio, "wall_s": wall, "x_realtime": audio / wall,
           "peak_rss_mb": case["rss_peak_mb"], "baseline_rss_mb": case["rss_baseline_mb"],
           "peak_over_baseline_mb": case["rss_peak_mb"] - case["rss_baseline_mb"]}
    if rows and "wall_cached_s" in rows[0]:
        out["x_realtime_cached_stems"] = audio / sum(r["wall_cached_s"] for r in rows)
        parts = {}
        for r in rows:
            for k, v in r["timings"].items():
                parts[k] = parts.get(k, 0.0) + v
        out["parts_x_realtime"] = {k: audio / v for k, v in parts.items() if v > 0 and k != "total"}
    return out


def write_results(text: str) -> Path:
    path = REPO / "bench" / "RESULTS.md"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.strip() == "## Front end"), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    path.write_text(new.rstrip("\n") + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, default=24, help="generated corpus songs to analyse")
    ap.add_argument("--peer-songs", type=int, default=6, help="songs the librosa peer runs on (the same first songs)")
    ap.add_argument("--long-minutes", type=float, default=20.0, help="length of the long file (0 = skip)")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update bench/RESULTS.md")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--files", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, str(REPO))
    OUT.mkdir(parents=True, exist_ok=True)
    songs = make_corpus(args.songs)
    print(f"beatedit front end on {len(songs)} corpus songs (one core) ...", flush=True)
    ours = summarise(run_case(songs))
    print(json.dumps(ours, indent=1), flush=True)
    peer = None
    if not args.no_peer:
        k = min(args.peer_songs, len(songs))
        print(f"librosa peer on {k} songs, and beatedit on the same {k} ...", flush=True)
        peer = summarise(run_case(songs[:k], peer=True))
        ours_k = summarise(run_case(songs[:k]))
        print(json.dumps({"peer": peer, "beatedit_same_songs": ours_k}, indent=1), flush=True)
    long = None
    if args.long_minutes > 0:
        path, decoded_mb = make_long_file(songs, args.long_minutes)
        print(f"beatedit on the {args.long_minutes:g}-minute file ...", flush=True)
        long = summarise(run_case([path]))
        long["decoded_float32_mb"] = decoded_mb
        long["file_mb"] = os.path.getsize(path) / 2**20
        print(json.dumps(long, indent=1), flush=True)

    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    L = ["## Front end", "",
         f"`bench/bench_frontend.py`, {now}. Machine: {machine()}.",
         "One core: each case runs in a fresh process pinned to one CPU with OMP/MKL/OpenBLAS/numba threads = 1, "
         "after a warm-up (numba compilation) that is not timed. Stems + beats + features = `analyse_song` with an "
         "empty stem cache (decode, resample, HPSS stems, frame analysis, beat/downbeat/phrase/section tracking, "
         "125 features). Peak memory = peak RSS of the process minus its RSS after imports and warm-up.", "",
         "| case | audio | wall | x real time | x real time, stems cached | peak RSS over baseline |",
         "|---|---|---|---|---|---|",
         f"| corpus, {ours['songs']} songs | {ours['audio_s']:.0f} s | {ours['wall_s']:.1f} s | **{ours['x_realtime']:.1f}x** | "
         f"{ours['x_realtime_cached_stems']:.1f}x | {ours['peak_over_baseline_mb']:.0f} MB |"]
    if long:
        L.append(f"| one {args.long_minutes:g}-minute file (44.1 kHz stereo PCM_16, {long['file_mb']:.0f} MB; "
                 f"{long['decoded_float32_mb']:.0f} MB decoded as float32) | {long['audio_s']:.0f} s | {long['wall_s']:.1f} s | "
                 f"**{long['x_realtime']:.1f}x** | {long['x_realtime_cached_stems']:.1f}x | {long['peak_over_baseline_mb']:.0f} MB "
                 f"({long['peak_over_baseline_mb'] / long['decoded_float32_mb']:.2f}x decoded size) |")
    L += ["", "Share of the corpus time per part (x real time of each part alone): "
          + ", ".join(f"{k} {v:.0f}x" for k, v in ours["parts_x_realtime"].items()) + "."]
    if peer:
        L += ["", f"Peer in the same run (typical librosa front end: `librosa.load`, `effects.hpss`, `beat.beat_track`, "
                  f"MFCC/chroma/contrast/shape/RMS/onset/tonnetz, `util.sync`) on the first {peer['songs']} songs: "
                  f"**{peer['x_realtime']:.1f}x** real time vs beatedit **{ours_k['x_realtime']:.1f}x** on the same songs "
                  f"(ratio **{ours_k['x_realtime'] / peer['x_realtime']:.1f}x**); peak RSS over baseline "
                  f"{peer['peak_over_baseline_mb']:.0f} MB vs {ours_k['peak_over_baseline_mb']:.0f} MB."]
    L += ["", "Goal: >= 30x real time on one core " + ("(met)." if ours["x_realtime"] >= 30 and (not long or long["x_realtime"] >= 30) else "(NOT met).")]
    text = "\n".join(L) + "\n"
    print("\n" + text)
    if not args.no_write:
        print(f"wrote {write_results(text)}")


if __name__ == "__main__":
    main()
