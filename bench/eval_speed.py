"""Speed and memory of vireid's ranking metrics.

Two measurements:

1. one SYSU-MM01 multi-shot-sized trial (3,803 infrared queries from cameras 3 and 6 x 3,010 visible
   gallery images from cameras 1, 2, 4, 5; 96 identities): ``rank_metrics`` on a precomputed distance
   matrix, then the same including the distance computation (``pairwise_distances`` + ``rank_metrics``
   and ``rank_metrics_from_features``);
2. a large evaluation (default 50,000 x 50,000 features) with ``rank_metrics_from_features``, which
   never builds the full distance matrix.

Features are random: one Gaussian centre per identity plus Gaussian noise (float32). Memory is reported
two ways: the peak of NumPy allocations during the call (``tracemalloc``; NumPy reports its buffers to
it, BLAS scratch space is not included) and the process's peak resident set size
(``resource.getrusage(...).ru_maxrss``, everything the process ever held, features included).

Usage::

    python bench/eval_speed.py                          # both parts, defaults below
    python bench/eval_speed.py --skip-large             # SYSU-sized trial only
    python bench/eval_speed.py --queries 20000 --gallery 20000 --dim 512 --skip-sysu
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
import tracemalloc

import numpy as np

from vireid.evaluation import pairwise_distances, rank_metrics, rank_metrics_from_features
from vireid.evaluation.feature_metrics import MATMUL_ROWS
from vireid.evaluation.metrics import default_chunk_size


def make_features(rng, num, pids, dim, centres, noise):
    """``centres[pid] + noise * N(0, 1)`` in float32, built in place block by block (no big temporaries)."""
    x = rng.standard_normal((num, dim), dtype=np.float32)
    x *= np.float32(noise)
    for s in range(0, num, 4096):
        x[s : s + 4096] += centres[pids[s : s + 4096]]
    return x


def timed(fn, repeats):
    """Median wall time, minimum wall time and median process CPU time of ``repeats`` calls after one
    warm-up call, and the last result. CPU time counts every thread (BLAS uses several)."""
    result = fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), min(wall), statistics.median(cpu), result


def traced_peak(fn):
    """(result, peak MiB of Python/NumPy allocations made during the call, seconds)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, (peak - base) / 2**20, seconds


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def summary(r) -> str:
    c = r["cmc"]
    return (
        f"R1 {100 * c[0]:.2f}  R10 {100 * c[9]:.2f}  R20 {100 * c[19]:.2f}  "
        f"mAP {100 * r['mAP']:.2f}  mINP {100 * r['mINP']:.2f}  valid queries {r['num_valid_queries']}"
    )


def sysu_trial(args, rng):
    num_q, num_g, num_ids, dim = 3803, 3010, 96, args.sysu_dim
    centres = rng.standard_normal((num_ids, dim), dtype=np.float32)
    g_pids = np.sort(rng.integers(0, num_ids, num_g))  # sorted by id like the protocol's gallery
    g_pids[:num_ids] = np.arange(num_ids)  # every id in the gallery
    g_pids.sort()
    g_cams = rng.choice([1, 2, 4, 5], num_g)
    q_pids = rng.integers(0, num_ids, num_q)
    q_cams = rng.choice([3, 6], num_q)
    q = make_features(rng, num_q, q_pids, dim, centres, args.noise)
    g = make_features(rng, num_g, g_pids, dim, centres, args.noise)
    labels = (q_pids, g_pids, q_cams, g_cams)

    print(f"== SYSU-MM01 multi-shot-sized trial: {num_q} queries x {num_g} gallery, {num_ids} ids, dim {dim}")
    distmat = pairwise_distances(q, g)
    print(f"distance matrix: {distmat.dtype} {distmat.shape}, "
          f"default chunk {default_chunk_size(num_g, num_q)} query rows")
    med, best, cpu, r = timed(lambda: rank_metrics(distmat, *labels, protocol="sysu"), args.repeats)
    print(f"rank_metrics on the precomputed distmat:    median {med:.3f} s  (min {best:.3f} s, cpu {cpu:.3f} s)")
    print(f"  {summary(r)}")
    med, best, cpu, _ = timed(lambda: rank_metrics(pairwise_distances(q, g), *labels, protocol="sysu"), args.repeats)
    print(f"pairwise_distances + rank_metrics:          median {med:.3f} s  (min {best:.3f} s, cpu {cpu:.3f} s)")
    med, best, cpu, r2 = timed(lambda: rank_metrics_from_features(q, g, *labels, protocol="sysu"), args.repeats)
    print(f"rank_metrics_from_features (chunked):       median {med:.3f} s  (min {best:.3f} s, cpu {cpu:.3f} s)")
    same = np.array_equal(r["cmc"], r2["cmc"]) and r["mAP"] == r2["mAP"] and r["mINP"] == r2["mINP"]
    print(f"  identical to the precomputed-distmat result: {same}")
    _, peak, _ = traced_peak(lambda: rank_metrics(distmat, *labels, protocol="sysu"))
    print(f"  tracemalloc peak during rank_metrics: {peak:.1f} MiB "
          f"(the distance matrix itself: {distmat.nbytes / 2**20:.1f} MiB)")


def large_eval(args, rng):
    num_q, num_g, dim = args.queries, args.gallery, args.dim
    num_ids = args.ids or max(1, num_g // 10)
    print(f"== large evaluation: {num_q} queries x {num_g} gallery, {num_ids} ids, dim {dim}, "
          f"protocol {args.protocol}, float32 features")
    centres = rng.standard_normal((num_ids, dim), dtype=np.float32)
    g_pids = rng.integers(0, num_ids, num_g)
    q_pids = rng.integers(0, num_ids, num_q)
    g_cams = rng.choice([1, 2, 4, 5], num_g)
    q_cams = rng.choice([3, 6], num_q)
    q = make_features(rng, num_q, q_pids, dim, centres, args.noise)
    g = make_features(rng, num_g, g_pids, dim, centres, args.noise)
    feats_mib = (q.nbytes + g.nbytes) / 2**20
    chunk = args.chunk_size or default_chunk_size(num_g, num_q)
    print(f"features: {feats_mib:.0f} MiB; ranked {chunk} query rows at a time, distances for "
          f"{max(chunk, -(-MATMUL_ROWS // chunk) * chunk)} rows per matrix product "
          f"(a full distance matrix would be {num_q * num_g * 4 / 2**30:.1f} GiB in float32)")
    rss_before = maxrss_mib()
    cpu0 = time.process_time()
    r, peak, seconds = traced_peak(
        lambda: rank_metrics_from_features(
            q, g, q_pids, g_pids, q_cams, g_cams, protocol=args.protocol, chunk_size=chunk, progress=True
        )
    )
    print(f"rank_metrics_from_features: {seconds:.1f} s wall, {time.process_time() - cpu0:.1f} s cpu (all threads)")
    print(f"  {summary(r)}")
    print(f"  tracemalloc peak during the call: {peak:.0f} MiB")
    print(f"  ru_maxrss: {rss_before:.0f} MiB before the call, {maxrss_mib():.0f} MiB after (process peak)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=50_000, help="queries of the large evaluation")
    p.add_argument("--gallery", type=int, default=50_000, help="gallery size of the large evaluation")
    p.add_argument("--dim", type=int, default=2048, help="feature dimension of the large evaluation")
    p.add_argument("--ids", type=int, default=0, help="identities of the large evaluation (0: gallery / 10)")
    p.add_argument("--protocol", default="sysu", choices=["sysu", "regdb", "llcm"], help="large evaluation protocol")
    p.add_argument("--chunk-size", type=int, default=0, help="query rows per chunk (0: library default)")
    p.add_argument("--sysu-dim", type=int, default=2048, help="feature dimension of the SYSU-sized trial")
    p.add_argument("--noise", type=float, default=5.0, help="feature noise around the identity centres")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of the SYSU-sized trial")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-sysu", action="store_true")
    p.add_argument("--skip-large", action="store_true")
    args = p.parse_args()
    print(f"numpy {np.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs")
    rng = np.random.default_rng(args.seed)
    if not args.skip_sysu:
        sysu_trial(args, rng)
    if not args.skip_large:
        large_eval(args, rng)


if __name__ == "__main__":
    main()
