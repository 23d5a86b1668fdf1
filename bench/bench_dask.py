"""Benchmark: the features stage with the thread runner vs the Dask runner (not a test).

    .venv/bin/python bench/bench_dask.py [--workers 2] [--songs 24] [--repeat 1] [--write]

The default corpus (24 songs, 60-150 s; generated once into ``bench/out/dask/`` unless the
repo's ``data/corpus`` already holds it) is separated once (stems stage: the stem cache is
then warm for every run), then ``python -m flows.features`` runs as DVC would run it -- a
fresh process each time, Prefect in local mode, MLflow in a local SQLite store -- with

* ``orchestration.task_runner=thread``, ``max_workers=W`` (the peer: one process, W threads), and
* ``orchestration.task_runner=dask``, ``max_workers=W`` (a local cluster of W single-threaded
  worker processes, started by the stage),

alternating (thread, dask, thread, dask, ...). Reported: the stage's wall time end to end
(process start to exit: imports, Prefect's local API, cluster start-up, the songs, the report),
the sum of per-song seconds the tasks measured, and the 1-minute load average before each run
(other jobs share this machine's cores). ``--write`` replaces the "Operations: thread vs Dask"
section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from beatedit.config import Config, CorpusConfig, render_params_yaml  # noqa: E402
from tasks.telemetry import disable_telemetry  # noqa: E402

WORK = REPO / "bench" / "out" / "dask"
SECTION = "## Operations: thread vs Dask"


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_TRACKING", "BEATEDIT_"))}
    disable_telemetry(e, force=True)
    e.update({"PREFECT_HOME": str(WORK / ".prefect"), "MLFLOW_TRACKING_URI": f"sqlite:///{WORK / 'mlflow.db'}", "PYTHONUNBUFFERED": "1"})
    return e


def corpus(n_songs: int) -> int:
    """The default corpus in WORK/data/corpus (copied from the repo's data/corpus when that is it); returns its size."""
    manifest = WORK / "data" / "corpus" / "manifest.json"
    if manifest.exists() and len(json.loads(manifest.read_text())) == n_songs:
        return n_songs
    shutil.rmtree(WORK / "data", ignore_errors=True)
    repo_manifest = REPO / "data" / "corpus" / "manifest.json"
    default = CorpusConfig()
    if n_songs == default.n_songs and repo_manifest.exists() and len(json.loads(repo_manifest.read_text())) == n_songs:
        shutil.copytree(REPO / "data" / "corpus", WORK / "data" / "corpus")
        return n_songs
    from beatedit.corpus.generator import generate_corpus

    cfg = CorpusConfig(n_songs=n_songs)
    print(f"generating the corpus ({n_songs} songs, {cfg.min_seconds:.0f}-{cfg.max_seconds:.0f} s) ...", flush=True)
    generate_corpus(cfg, WORK / "data" / "corpus")
    return n_songs


def run_stage(stage: str, overrides: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, 1-min load average before) of ``python -m flows.<stage>`` in WORK."""
    load = os.getloadavg()[0]
    cmd = [sys.executable, "-m", f"flows.{stage}"] + [a for o in overrides for a in ("--set", o)]
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=WORK, env=env(), stdout=fh, stderr=subprocess.STDOUT, timeout=3600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{stage} {overrides} failed (exit {proc.returncode}); see {log}")
    return wall, load


def cluster_startup(log: Path) -> float | None:
    """Seconds from 'Creating a new Dask cluster' to the dashboard line (cluster up), from the stage's log."""
    stamps = {}
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"(\d\d):(\d\d):(\d\d\.\d+)", line)
        if not m:
            continue
        t = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
        if "Creating a new Dask cluster" in line:
            stamps.setdefault("start", t)
        elif "Dask dashboard is available" in line or "Connecting to" in line:
            stamps.setdefault("up", t)
    return stamps["up"] - stamps["start"] if {"start", "up"} <= set(stamps) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--songs", type=int, default=CorpusConfig().n_songs)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each runner (alternating)")
    ap.add_argument("--write", action="store_true", help="record the numbers in bench/RESULTS.md")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "params.yaml").write_text(render_params_yaml(Config()) + "\n")
    n = corpus(args.songs)
    print("stems stage (warms the stem cache for every features run) ...", flush=True)
    stems_wall, _ = run_stage("stems", [f"orchestration.max_workers={args.workers}"], WORK / "stems.log")
    rows = []
    for rep in range(args.repeat):
        for runner in ("thread", "dask"):
            log = WORK / f"features_{runner}_{rep}.log"
            print(f"features, {runner} runner, {args.workers} workers (run {rep + 1}) ...", flush=True)
            wall, load = run_stage("features", [f"orchestration.task_runner={runner}", f"orchestration.max_workers={args.workers}"], log)
            m = json.loads((WORK / "metrics" / "features.json").read_text())
            rows.append({"runner": runner, "wall": wall, "task_seconds": m["seconds"], "songs": m["songs"], "beats": m["beats"],
                         "load": load, "startup": cluster_startup(log) if runner == "dask" else None})
            print(f"  {wall:.1f} s wall, {m['songs']} songs, task seconds {m['seconds']:.1f}, load {load:.2f}", flush=True)
    best = {r: min(x["wall"] for x in rows if x["runner"] == r) for r in ("thread", "dask")}
    speedup = best["thread"] / best["dask"]
    print(f"speed-up of dask over thread (best of {args.repeat}): {speedup:.2f}x")
    if args.write:
        write_results(args, n, rows, best, speedup, stems_wall)


def write_results(args: argparse.Namespace, n: int, rows: list[dict], best: dict, speedup: float, stems_wall: float) -> None:
    import distributed
    import prefect

    lines = [SECTION, "",
             f"`.venv/bin/python bench/bench_dask.py --workers {args.workers} --songs {args.songs} --repeat {args.repeat} --write` "
             f"({time.strftime('%Y-%m-%d')})", "",
             f"- machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, prefect {prefect.__version__}, "
             f"distributed {distributed.__version__}; other jobs share the cores (load average per run below)",
             f"- workload: the features stage (`python -m flows.features`, a fresh process per run, Prefect local mode, MLflow SQLite) "
             f"on the default generated corpus, {n} songs of 60-150 s, stem cache warm (stems stage ran once first: {stems_wall:.0f} s)",
             f"- runners: `thread` = ThreadPoolTaskRunner(max_workers={args.workers}) in the stage's process (the peer); "
             f"`dask` = a local Dask cluster of {args.workers} single-threaded worker processes started by the stage", "",
             "| run | runner | wall s (whole stage) | sum of per-song task s | songs | beats | Dask cluster start-up s | 1-min load avg before |",
             "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        start = f"{r['startup']:.1f}" if r["startup"] is not None else "-"
        lines.append(f"| {i} | {r['runner']} | {r['wall']:.1f} | {r['task_seconds']:.1f} | {r['songs']} | {r['beats']} | {start} | {r['load']:.2f} |")
    lines += ["", f"**Speed-up of the Dask runner over the thread runner: {speedup:.2f}x** (best wall time of each: "
              f"thread {best['thread']:.1f} s, dask {best['dask']:.1f} s).", ""]
    dask_rows = [r for r in rows if r["runner"] == "dask" and r["startup"] is not None]
    if dask_rows:
        net = min(r["wall"] - r["startup"] for r in dask_rows)
        lines += [f"Without the Dask cluster start-up (paid once per stage run), the Dask stage's best is {net:.1f} s: "
                  f"{best['thread'] / net:.2f}x the thread runner. Reading: the thread runner already overlaps songs "
                  "(numpy / librosa release the GIL), and with the load average above the core count neither runner gets "
                  f"{args.workers} free cores here; Dask's processes pay for themselves with more cores or machines "
                  "(the scale-out path in docs/operations.md), not on a shared 2-core box.", ""]
    results = REPO / "bench" / "RESULTS.md"
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = "\n".join(lines) + "\n"
    text = pattern.sub(block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    results.write_text(text)
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
