"""--keep on a run's held-out songs: how often the policy (masked) and the search editor (constrained) keep one 8 s region
and land within a beat, and what the listener makes of it (a quality measurement, not a timing; the unconstrained
greedy policy is the peer).  .venv/bin/python bench/keep_regions.py /work/main   # a checkout with data/ and artifacts/
"""
import sys
import numpy as np, pandas as pd, torch
from beatedit.config import load_config
from beatedit.audio.song import SongAnalysis
from beatedit.editing.keep import keep_beats, keeps
from beatedit.editing.program import build_edit
from beatedit.editing.search import search_decisions
from beatedit.judging.listener import score_edit
from models.policy import load_policy
from models.policy_edit import edit_songs
torch.set_num_threads(1)
ROOT = sys.argv[1] if len(sys.argv) > 1 else "."
cfg = load_config(f"{ROOT}/params.yaml")
pairs = pd.read_parquet(f"{ROOT}/data/preferences/pairs.parquet", columns=["song_id", "split"]).drop_duplicates()
songs = [SongAnalysis.load(f"{ROOT}/data/features/{s}.npz") for s in sorted(pairs[pairs.split == "test"].song_id.unique())]
pol, _ = load_policy(f"{ROOT}/artifacts/rlhf/policy.pt")
rng = np.random.default_rng(0)
rows = []
for s in songs:
    for t in (0.5, 0.7):
        a = rng.uniform(0.2, 0.7) * s.duration; region = (a, a + 8.0)
        r = keep_beats(s, [region])
        free = edit_songs(pol, [s], [t], cfg.env, greedy=True)[0].edit
        pe = edit_songs(pol, [s], [t], cfg.env, greedy=True, keep=[r])[0].edit
        se = build_edit(s, search_decisions(s, t, cfg.env, keep=r), cfg.render.crossfade_ms, t, cfg.env)
        beat = float(np.median(np.diff(s.beat_times)))
        ok = lambda e: keeps(e, r) and abs(e.duration - t * s.duration) <= beat * cfg.env.length_tolerance_beats + 1e-6
        rows.append((keeps(free, r), ok(pe), ok(se), score_edit(s, pe, t, cfg=cfg.listener)["total"], score_edit(s, se, t, cfg=cfg.listener)["total"], score_edit(s, free, t, cfg=cfg.listener)["total"]))
a = np.array(rows, dtype=float)
print(f"{len(rows)} jobs (11 test songs x targets 0.5, 0.7, one 8 s region each at 20-70% of the song)")
print(f"unconstrained greedy policy keeps the region: {a[:,0].mean():.3f}")
print(f"policy greedy + keep mask: keeps and within a beat: {a[:,1].mean():.3f}; listener {a[:,3].mean():.4f}")
print(f"search + keep constraint: keeps and within a beat: {a[:,2].mean():.3f}; listener {a[:,4].mean():.4f}")
print(f"(unconstrained greedy policy listener {a[:,5].mean():.4f})")
