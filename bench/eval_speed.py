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

3. with ``--peers DIR``: vireid's ``evaluate_rank`` against the compiled (Cython) ranking of fastreid and
   torchreid on the same distance matrices (the Market-1501 rule they share), at every ``--peer-sizes``:
   wall time (vireid with one thread and with its default threads), the ratio to the fastest peer, and
   whether the figures agree. The peers are installed by this script into ``DIR`` (``pip install --target``,
   their Cython extension compiled there), never into the environment; a peer whose package ships no
   Cython source is reported as not measured.

Usage::

    python bench/eval_speed.py                          # both parts, defaults below
    python bench/eval_speed.py --skip-large             # SYSU-sized trial only
    python bench/eval_speed.py --queries 20000 --gallery 20000 --dim 512 --skip-sysu
    python bench/eval_speed.py --skip-sysu --skip-large --peers out/bench/peers
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


#: The peers' packages: (pip requirement, the folder of their Cython ranking inside the install).
PEERS = {"fastreid": ("fastreid==1.4.0", "fastreid/evaluation/rank_cylib"),
         "torchreid": ("torchreid==0.2.5", "torchreid/reid/metrics/rank_cylib")}


def install_peers(folder: str) -> dict[str, object]:
    """Each peer's compiled ``evaluate_cy`` (installed into ``folder`` with Cython), or why it is not there."""
    import glob
    import importlib.util
    import subprocess
    import sys

    folder = os.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    out: dict[str, object] = {}
    for name, (requirement, cylib) in PEERS.items():
        if not os.path.isdir(os.path.join(folder, cylib)):
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", folder,
                            requirement, "Cython"], check=True)
        source = os.path.join(folder, cylib, "rank_cy.pyx")
        if not os.path.isfile(source):
            out[name] = f"not measured: {requirement} ships no Cython ranking source ({cylib}/rank_cy.pyx)"
            continue
        built = glob.glob(os.path.join(folder, cylib, "rank_cy*.so"))
        if not built:
            env = {**os.environ, "PYTHONPATH": folder}
            subprocess.run([sys.executable, "-c", "from Cython.Build import cythonize; import numpy, setuptools; "
                            "setuptools.setup(script_args=['build_ext', '--inplace'], ext_modules=cythonize("
                            "[setuptools.Extension('rank_cy', ['rank_cy.pyx'], include_dirs=[numpy.get_include()])]))"],
                           cwd=os.path.join(folder, cylib), env=env, check=True, capture_output=True)
            built = glob.glob(os.path.join(folder, cylib, "rank_cy*.so"))
        spec = importlib.util.spec_from_file_location("rank_cy", built[0])  # the name the extension was built with
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out[name] = module.evaluate_cy
    return out


def peers_comparison(args, rng) -> None:
    from vireid.evaluation import evaluate_rank
    from vireid.evaluation.metrics import default_threads

    peers = install_peers(args.peers)
    print(f"== vireid evaluate_rank against the peers' compiled ranking (Market-1501 rule, max_rank 50, float32 "
          f"distances; vireid threads: 1 and the default {default_threads()})")
    for name, peer in peers.items():
        if isinstance(peer, str):
            print(f"{name}: {peer}")
    for size in args.peer_sizes:
        num_q, num_g = (int(x) for x in size.split("x"))
        ids = max(10, num_g // 30)
        q_pids, g_pids = rng.integers(0, ids, num_q), rng.integers(0, ids, num_g)
        q_cams, g_cams = rng.integers(1, 7, num_q), rng.integers(1, 7, num_g)
        dist = rng.random((num_q, num_g), dtype=np.float32)
        labels = (q_pids, g_pids, q_cams, g_cams)
        repeats = args.repeats if num_q * num_g <= 2e7 else 1
        times = {}
        for name, peer in peers.items():
            if not isinstance(peer, str):
                t, _, _, (cmc, all_ap, _) = timed(lambda p=peer, d=dist, lab=labels: p(d, *lab, 50, False), repeats)
                times[name] = t
        t1, _, _, mine = timed(lambda d=dist, lab=labels: evaluate_rank(d, *lab, 50, threads=1), repeats)
        tn, _, _, _ = timed(lambda d=dist, lab=labels: evaluate_rank(d, *lab, 50), repeats)
        best = min(times.values()) if times else float("nan")
        agree = ""
        if times:
            agree = (f"; figures agree: CMC max diff {np.abs(cmc - mine[0]).max():.1e}, "
                     f"mAP diff {abs(np.mean(all_ap) - mine[1]):.1e}")
        peer_text = ", ".join(f"{n} {t:.3f} s" for n, t in times.items())
        print(f"{num_q} x {num_g}: {peer_text}; vireid 1 thread {t1:.3f} s ({best / t1:.2f}x the fastest peer), "
              f"default threads {tn:.3f} s ({best / tn:.2f}x){agree}")


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
    p.add_argument("--peers", default=None, metavar="DIR",
                   help="compare with fastreid's and torchreid's compiled ranking, installed into DIR")
    p.add_argument("--peer-sizes", nargs="+", default=["3803x3010", "10000x10000", "20000x20000"],
                   metavar="QxG", help="distance-matrix sizes of the peer comparison")
    args = p.parse_args()
    print(f"numpy {np.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs")
    rng = np.random.default_rng(args.seed)
    if not args.skip_sysu:
        sysu_trial(args, rng)
    if not args.skip_large:
        large_eval(args, rng)
    if args.peers:
        peers_comparison(args, rng)


if __name__ == "__main__":
    main()
