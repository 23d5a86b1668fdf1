"""Reward-model scoring throughput on CPU vs this machine's measured matmul throughput.

    .venv/bin/python bench/bench_reward.py [--seq 256] [--batches 8,16,32] [--seconds 3] [--record]

All calls are timed in interleaved rounds and each keeps its best time (the machine may be
shared; contention only slows a call down, so the minimum is the cleanest estimate). By
default one thread is timed by its own CPU time (``time.thread_time``), so time spent
descheduled by other jobs is not counted, for the model and the matmul reference alike;
``--clock wall --threads 0`` times all cores by the wall clock (meaningful on an idle machine).

1. Measures the machine's float32 matmul throughput in this run (``torch.mm`` on square
   matrices of 1024..4096 and on the model's own GEMM shapes; the best is the reference).
2. FLOP-counts the reward model per sequence (every matmul: input projection, QKV, attention
   scores and values, output projection, MLP, head; 2 FLOPs per multiply-add; elementwise
   work is not counted) and times ``score_batch``-style forward passes (eval mode,
   ``torch.inference_mode``, no padding, float32 -- bf16 is off on CPU) at several batch sizes.
3. Times a plain ``nn.TransformerEncoder`` of the same size (d=256, 4 heads, FF 1024, 3 layers,
   pre-norm, GELU, batch_first) on the same [B, T, 256] input, FLOP-counted the same way.
Prints sequences/s, GFLOP/s and % of the measured matmul throughput for each, and the ratio
of ours to the peer. ``--record`` appends the table to ``bench/RESULTS.md`` under
"Reward model".
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from beatedit.audio.schema import N_FEATURES, col  # noqa: E402
from models.reward_model import N_EDIT, RewardModel  # noqa: E402

D, LAYERS, HEADS, FF = 256, 3, 4, 1024


def flops_per_sequence(T: int, d: int = D, layers: int = LAYERS, ff: int = FF, n_in: int = N_FEATURES + N_EDIT) -> int:
    inp = 2 * T * n_in * d
    per_layer = 2 * T * d * 3 * d + 2 * 2 * T * T * d + 2 * T * d * d + 2 * 2 * T * d * ff
    return inp + layers * per_layer + 2 * d


def encoder_flops(T: int) -> int:
    return flops_per_sequence(T, n_in=0) - 2 * D


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batches", default="8,16,32,64")
    ap.add_argument("--seconds", type=float, default=2.0, help="time budget per measured call (interleaved rounds)")
    ap.add_argument("--min-rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: this thread's CPU time (robust on a shared machine; needs --threads 1); wall: perf_counter")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and torch.get_num_threads() != 1:
        ap.error("--clock cpu measures one thread's CPU time: use --threads 1 (or --clock wall)")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    T = args.seq
    batches = [int(b) for b in args.batches.split(",")]

    model = RewardModel(d_model=D, n_layers=LAYERS, n_heads=HEADS, max_beats=500, dropout=0.1).eval()
    peer = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.1, activation="gelu", batch_first=True,
                                                            norm_first=True), LAYERS, enable_nested_tensor=False).eval()
    shapes = [(1024, 1024, 1024), (2048, 2048, 2048), (32 * T, D, 3 * D), (32 * T, D, FF), (32 * T, FF, D)]
    mats = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]
    calls = {}
    for B in batches:
        feats = torch.randn(B, T, N_FEATURES)
        feats[..., col("beat_duration")] = 0.5
        acts = torch.randint(0, 10, (B, T))
        pad = torch.zeros(B, T, dtype=torch.bool)
        tgt = torch.full((B,), 0.6)
        x = torch.randn(B, T, D)
        calls[("ours", B)] = (lambda f=feats, a=acts, p=pad, t=tgt: model(f, a, p, t))
        calls[("peer", B)] = (lambda x=x: peer(x))
    for i, (a, b) in enumerate(mats):
        calls[("mm", i)] = (lambda a=a, b=b: torch.mm(a, b))
    # interleaved rounds, best time per call: the machine may be shared, and contention only ever slows a call
    best = {k: float("inf") for k in calls}
    with torch.inference_mode():
        for fn in calls.values():
            fn()
        t_end = time.perf_counter() + args.seconds * len(calls)  # budget in wall time
        rounds = 0
        while rounds < args.min_rounds or time.perf_counter() < t_end:
            for k, fn in calls.items():
                t0 = clock()
                fn()
                best[k] = min(best[k], clock() - t0)
            rounds += 1
    gf_mm = [2 * m * k * n / best[("mm", i)] / 1e9 for i, (m, k, n) in enumerate(shapes)]
    peak = max(gf_mm)
    peak_shape = "{}x{}@{}x{}".format(*(lambda m, k, n: (m, k, k, n))(*shapes[int(np.argmax(gf_mm))]))
    rows = []
    for B in batches:
        t_ours, t_peer = best[("ours", B)], best[("peer", B)]
        gf_ours = flops_per_sequence(T) * B / t_ours / 1e9
        gf_peer = encoder_flops(T) * B / t_peer / 1e9
        rows.append((B, B / t_ours, gf_ours, 100 * gf_ours / peak, B / t_peer, gf_peer, 100 * gf_peer / peak))

    head = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s), {args.clock} clock, float32, inference_mode; T={T} beats; "
            f"1-min load average {os.getloadavg()[0]:.1f}; "
            f"model {flops_per_sequence(T) / 1e9:.3f} GFLOP/sequence, peer encoder {encoder_flops(T) / 1e9:.3f}; "
            f"measured matmul throughput {peak:.1f} GFLOP/s (best of square 1024, 2048 and the model's GEMM shapes: {peak_shape})")
    table = ["| batch | ours seq/s | ours GFLOP/s | ours % of matmul | nn.TransformerEncoder seq/s | peer GFLOP/s | peer % of matmul | ours / peer (seq/s) |",
             "|---|---|---|---|---|---|---|---|"]
    for B, s_o, g_o, p_o, s_p, g_p, p_p in rows:
        table.append(f"| {B} | {s_o:.1f} | {g_o:.1f} | {p_o:.0f}% | {s_p:.1f} | {g_p:.1f} | {p_p:.0f}% | {s_o / s_p:.2f} |")
    print(head)
    print("\n".join(table))
    if args.record:
        path = Path(__file__).with_name("RESULTS.md")
        text = path.read_text() if path.exists() else "# Benchmarks\n"
        stamp = time.strftime("%Y-%m-%d")
        text += (f"\n## Reward model\n\n`bench/bench_reward.py` ({stamp}): {head}.\n\n" + "\n".join(table) + "\n")
        path.write_text(text)
        print(f"recorded in {path}")


if __name__ == "__main__":
    main()
