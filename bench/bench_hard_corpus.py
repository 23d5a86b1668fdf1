"""Hard songs of the generated corpus (issue 16 item 4), side by side (not a test): how the project's front end and
librosa's ``beat_track`` do on ordinary songs and on each hard trait.

    .venv/bin/python bench/bench_hard_corpus.py                       # 24 songs, hard_share 0.5, 60-150 s each
    .venv/bin/python bench/bench_hard_corpus.py --songs 8 --min-seconds 30 --max-seconds 40 --no-write

A corpus is generated into a temporary folder with the default ``data.corpus`` settings except ``n_songs``,
``hard_share`` (and the duration range when given); every song goes through
``beatedit.audio.analysis.analyse_song`` with the default config (HPSS stems in a temporary cache) and is scored
against its truth with ``beatedit.audio.truth.song_beat_metrics``, the features stage's scoring code. The peer is
``librosa.beat.beat_track`` (defaults; it has no downbeats). AMLt (``beatedit.corpus.realmusic.amlt``) forgives
half / double tempo and off-beat phase, so a low F with a high AMLt is a metrical-level error. A song with several
traits counts in each of its traits' rows. A song the front end rejects (``AudioError``: quarantined in the
pipeline) is counted in the ``quarantined`` column and left out of the means.

Results go to ``bench/RESULTS.md`` under the "Hard corpus" heading (other sections are kept); per-song rows to
``bench/out/hard_corpus/rows.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "bench" / "out" / "hard_corpus"
HEADING = "## Hard corpus (issue 16 item 4)"
GROUPS = ("ordinary", "no_drums", "compound", "slow_cut_time", "expressive", "all hard")


def _rows(n_songs: int, hard_share: float, min_s: float | None, max_s: float | None, seed: int | None) -> list[dict]:
    from beatedit.audio.analysis import analyse_song
    from beatedit.audio.io import AudioError, load_mono
    from beatedit.audio.stems import StemCache
    from beatedit.audio.truth import beat_f_measure, song_beat_metrics
    from beatedit.config import Config, config_to_dict, load_config
    from beatedit.corpus.generator import generate_corpus
    from beatedit.corpus.realmusic import amlt, librosa_beat_times

    base = config_to_dict(Config())["data"]["corpus"]
    sets = [f"data.corpus.n_songs={n_songs}", f"data.corpus.hard_share={hard_share}"]
    sets += [f"data.corpus.{k}={v}" for k, v in (("min_seconds", min_s), ("max_seconds", max_s), ("seed", seed)) if v is not None]
    tmp = Path(tempfile.mkdtemp(prefix="bench_hard_"))
    cfg = load_config(REPO / "params.yaml", sets + [f"stems.cache_dir={tmp / 'stems'}"])
    print(f"generating {n_songs} songs (hard_share {hard_share}; defaults {base}) into {tmp}", flush=True)
    t0 = time.perf_counter()
    manifest = generate_corpus(cfg.data.corpus, tmp / "corpus", progress=False)
    print(f"generated in {time.perf_counter() - t0:.0f} s", flush=True)
    cache = StemCache(tmp / "stems")
    rows = []
    for m in manifest:
        truth = json.loads(Path(m["truth"]).read_text())
        row = {"song_id": m["song_id"], "traits": m["traits"], "time_signature": truth["time_signature"], "tempo": truth["tempo"],
               "duration": truth["duration"], "tempo_drift": truth["tempo_drift"]}
        t = time.perf_counter()
        try:
            song = analyse_song(m["path"], cfg, cache)
        except AudioError as exc:
            row["quarantined"] = f"{exc.reason}: {exc}"
        else:
            row.update(song_beat_metrics(song, truth), est_tempo=round(song.tempo, 2), est_meter=song.meter,
                       amlt=amlt(song.beat_times, truth["beats"]))
        row["ours_s"] = time.perf_counter() - t
        y = load_mono(m["path"], cfg.audio.analysis_sr)
        t = time.perf_counter()
        lb = librosa_beat_times(y, cfg.audio.analysis_sr)
        row["librosa_s"] = time.perf_counter() - t
        row.update(librosa_beat_f_measure=beat_f_measure(lb, truth["beats"]), librosa_amlt=amlt(lb, truth["beats"]))
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
        rows.append(row)
    return rows


def _in_group(row: dict, group: str) -> bool:
    if group == "ordinary":
        return not row["traits"]
    return bool(row["traits"]) if group == "all hard" else group in row["traits"]


def _table(rows: list[dict]) -> list[str]:
    def mean(sub: list[dict], key: str) -> str:
        vals = [r[key] for r in sub if key in r]
        return f"{np.mean(vals):.3f}" if vals else "n/a"

    cols = [("ours beat F", "beat_f_measure"), ("librosa beat F", "librosa_beat_f_measure"), ("ours downbeat F", "downbeat_f_measure"),
            ("ours meter acc", "meter_accuracy"), ("ours tempo acc (4 %)", "tempo_accuracy"), ("ours AMLt", "amlt"),
            ("librosa AMLt", "librosa_amlt")]
    lines = ["| songs | n | quarantined | " + " | ".join(c for c, _ in cols) + " |", "|---" * (len(cols) + 3) + "|"]
    for g in GROUPS:
        sub = [r for r in rows if _in_group(r, g)]
        if sub:
            lines.append(f"| {g} | {len(sub)} | {sum('quarantined' in r for r in sub)} | " + " | ".join(mean(sub, k) for _, k in cols) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--songs", type=int, default=24)
    ap.add_argument("--hard-share", type=float, default=0.5)
    ap.add_argument("--min-seconds", type=float, default=None, help="default: data.corpus.min_seconds")
    ap.add_argument("--max-seconds", type=float, default=None, help="default: data.corpus.max_seconds")
    ap.add_argument("--seed", type=int, default=None, help="default: data.corpus.seed")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update bench/RESULTS.md")
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = _rows(a.songs, a.hard_share, a.min_seconds, a.max_seconds, a.seed)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "rows.json").write_text(json.dumps(rows, indent=1))
    audio_s = sum(r["duration"] for r in rows)
    cmd = " ".join(["python bench/bench_hard_corpus.py", *sys.argv[1:]])
    lines = [HEADING, "", f"{datetime.date.today()} -- `{cmd}`: {len(rows)} generated songs ({audio_s:.0f} s of audio), "
             f"hard_share {a.hard_share}, front end = `analyse_song` with the default config, scored by `song_beat_metrics`; "
             "librosa = `beat_track` defaults (no downbeats). A song with several traits counts in each trait's row.", "",
             *_table(rows), "",
             "Per hard song (traits, time signature, true tempo -> our tempo / meter):", ""]
    for r in (r for r in rows if r["traits"]):
        est = r.get("quarantined") or f"{r['est_tempo']} BPM / {r['est_meter']} (beat F {r['beat_f_measure']:.2f}, downbeat F {r['downbeat_f_measure']:.2f})"
        lines.append(f"- {r['song_id']} {'+'.join(r['traits']) or 'ordinary'} {r['time_signature']} {r['tempo']} BPM -> {est}; "
                     f"librosa beat F {r['librosa_beat_f_measure']:.2f}")
    lines += ["", f"Wall time {time.perf_counter() - t0:.0f} s (2 shared cores)."]
    text = "\n".join(lines)
    print(text)
    if a.no_write:
        return
    res = REPO / "bench" / "RESULTS.md"
    old = res.read_text() if res.exists() else "# Benchmark results\n"
    if HEADING in old:
        head, _, rest = old.partition(HEADING)
        nxt = rest.find("\n## ")
        old = head + (rest[nxt + 1:] if nxt >= 0 else "")
    res.write_text(old.rstrip() + "\n\n" + text + "\n")


if __name__ == "__main__":
    main()
