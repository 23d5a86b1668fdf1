"""Peak RSS of ``edit_file`` (heuristic editor) on a 96 kHz 6-channel 81 s WAV (issue 19 item 13); not a test.

    PYTHONPATH=. .venv/bin/python bench/bench_edit_memory.py /tmp/edit-mem

PYTHONPATH matters: the venv's editable install may point at another checkout. Results: bench/RESULTS.md.
"""
import os
import resource
import shutil
import sys
import time
from pathlib import Path
import numpy as np, soundfile as sf, soxr

out_dir = Path(sys.argv[1]); out_dir.mkdir(parents=True, exist_ok=True)
src = out_dir / "big96k6ch.wav"
if not src.exists():
    from beatedit.config import CorpusConfig
    from beatedit.corpus.generator import generate_song
    g = generate_song(0, CorpusConfig(n_songs=1, min_seconds=75.0, max_seconds=85.0, sample_rate=22050, seed=999))
    mono = soxr.resample(g.mix.astype(np.float32) / 32768.0, 22050, 96000)
    n = int(81 * 96000)
    mono = np.resize(mono, n)
    with sf.SoundFile(str(src), "w", 96000, 6, subtype="PCM_24") as f:
        for i in range(0, n, 1 << 18):
            b = mono[i:i + (1 << 18)]
            f.write(np.stack([b * g for g in (1, .9, .8, .7, .6, .5)], axis=1))
    print("wrote", src, os.path.getsize(src) / 1e6, "MB", flush=True)
from beatedit.config import Config
from app.edit import edit_file
import models.policy_edit  # noqa: imports as the CLI would
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
shutil.rmtree(out_dir / "cache", ignore_errors=True); os.environ["BEATEDIT_STEM_CACHE"] = str(out_dir / "cache")
t = time.perf_counter()
r = edit_file(src, 0.6, out_dir / "out.wav", Config(), editor="heuristic")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"RSS after imports {base:.0f} MB; peak {peak:.0f} MB; {time.perf_counter() - t:.1f} s; wrote {r['wav']} {r['duration']:.1f} s")
