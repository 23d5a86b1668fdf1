"""Run every benchmark in bench/ (not tests); each appends its measured numbers to bench/RESULTS.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = ["bench_env.py", "bench_frontend.py", "bench_reward.py", "bench_ppo.py", "bench_dask.py", "bench_search.py"]


def main() -> int:
    here = Path(__file__).parent
    failed = []
    for name in BENCHES:
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(here / name), "--write"] if "--write" in (here / name).read_text() else [sys.executable, str(here / name)]).returncode:
            failed.append(name)
    print("failed: " + ", ".join(failed) if failed else "all benchmarks ran; see bench/RESULTS.md")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
