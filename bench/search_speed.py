"""Speed and accuracy of vireid's gallery index: flat (exact) versus IVF-PQ (approximate).

For each gallery size (default 10^5 and 10^6) the script builds both kinds of
:class:`vireid.retrieval.index.GalleryIndex` (FAISS + SQLite metadata, written to disk, as
``vireid index build`` does) and reports:

- **build time** (training on a sample for IVF-PQ, adding the vectors, writing the FAISS file and the
  SQLite metadata);
- **query latency** of single queries (``search``: FAISS plus the metadata of the hits from SQLite,
  what the Python API and ``vireid search`` pay after the embedding) and of batched queries, as p50 and
  p99 over the repeats, and the batched throughput per query;
- **recall@10** of IVF-PQ against the exact top 10 of the flat index, for several ``nprobe``, with the
  PQ scores alone (``refine=0``) and with exact re-scoring of the ``refine x 10`` best candidates.

Embeddings are synthetic and **clustered** so that an inverted file is meaningful: ``coarse`` Gaussian
centres (appearance groups), identities drawn around them (``images_per_id`` images each, like a re-id
gallery), image features around their identity, L2-normalised. Queries are new images of gallery
identities (a query's true neighbours are its identity's images and that group's look-alikes). The
default spreads make the task hard, as re-id is: at 20,000 images about 70% of a query's exact top 10
are its own identity's images, the rest look-alikes of its group, and the 10th and 11th neighbours'
cosine similarities differ by about 0.002, so an approximate index must order close scores right. Dimension
512 by default (the AGW/DAM global feature is 2048-d; 512 keeps 10^6 vectors at 2 GB of float32 and a
flat query at about 0.5 GFLOP; pass ``--dim 2048`` to measure that).

Usage::

    python bench/search_speed.py                                  # 10^5 and 10^6, dim 512
    python bench/search_speed.py --sizes 100000 --nprobe 8 16 32 64
    python bench/search_speed.py --sizes 20000 --single 50 --batches 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from vireid.retrieval.index import GalleryIndex


def clustered_embeddings(pids: np.ndarray, dim: int, *, n_ids: int, coarse: int, identity_spread: float,
                         noise: float, seed: int) -> np.ndarray:
    """L2-normalised float32 features of images of identities ``pids`` (see the module docstring):
    ``centre[group[pid]] + identity_spread * N(0, I) + noise * N(0, I)``. Centres, groups and identity
    offsets depend only on ``n_ids`` and ``coarse`` (shared by the gallery and the queries); ``seed``
    draws the per-image noise."""
    rng = np.random.default_rng(1234)
    centres = rng.standard_normal((coarse, dim), dtype=np.float32)
    group = rng.integers(0, coarse, n_ids)
    offsets = rng.standard_normal((n_ids, dim), dtype=np.float32) * np.float32(identity_spread)
    draw = np.random.default_rng(seed)
    out = np.empty((len(pids), dim), dtype=np.float32)
    for s in range(0, len(pids), 65536):
        p = pids[s : s + 65536]
        block = draw.standard_normal((len(p), dim), dtype=np.float32) * np.float32(noise)
        block += centres[group[p]]
        block += offsets[p]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[s : s + 65536] = block
    return out


def percentiles(times: list[float]) -> dict[str, float]:
    arr = np.asarray(times) * 1000.0
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)), "n": len(times)}


def latency(index: GalleryIndex, queries: np.ndarray, *, single: int, batches: int, batch_size: int,
            nprobe: int | None, refine: int | None = None) -> dict[str, object]:
    index.search(queries[:1], 10, nprobe=nprobe, refine=refine)  # warm-up
    one = []
    for i in range(single):
        t0 = time.perf_counter()
        index.search(queries[i : i + 1], 10, nprobe=nprobe, refine=refine)
        one.append(time.perf_counter() - t0)
    many = []
    for b in range(batches):
        q = queries[(b * batch_size) % len(queries):][:batch_size]
        t0 = time.perf_counter()
        index.search(q, 10, nprobe=nprobe, refine=refine)
        many.append(time.perf_counter() - t0)
    batched = percentiles(many)
    batched["per_query_ms"] = batched["p50_ms"] / batch_size
    batched["batch_size"] = batch_size
    return {"single": percentiles(one), "batched": batched}


def recall_at(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a[a >= 0]) & set(e)) / len(e) for a, e in zip(approx, exact)]))


def run_size(n: int, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    print(f"\n== gallery of {n:,} embeddings, dim {args.dim} ==", flush=True)
    t0 = time.perf_counter()
    n_ids = int(np.ceil(n / args.images_per_id))
    opts = dict(n_ids=n_ids, coarse=args.coarse, identity_spread=args.identity_spread, noise=args.noise)
    g_pids = np.arange(n) // args.images_per_id
    feats = clustered_embeddings(g_pids, args.dim, seed=0, **opts)
    q_pids = np.random.default_rng(99).integers(0, n_ids, args.queries)
    queries = clustered_embeddings(q_pids, args.dim, seed=7, **opts)
    meta = [{"path": f"/gallery/{i:07d}.jpg", "camera": 1 + i % 6, "modality": "visible"} for i in range(n)]
    print(f"generated in {time.perf_counter() - t0:.1f} s", flush=True)
    info = {"fingerprint": "bench", "model": "synthetic"}
    result: dict[str, object] = {"n": n, "dim": args.dim}

    t0 = time.perf_counter()
    flat = GalleryIndex.build(workdir / f"flat_{n}", feats, meta, model_info=info, kind="flat", progress=False)
    result["flat_build_s"] = time.perf_counter() - t0
    print(f"flat build: {result['flat_build_s']:.1f} s", flush=True)
    result["flat_latency"] = latency(flat, queries, single=args.single, batches=args.batches,
                                     batch_size=args.batch_size, nprobe=None)
    print(f"flat latency: {json.dumps(result['flat_latency'])}", flush=True)
    _, exact = flat.search_ids(queries, 10)
    flat.close()
    del flat
    shutil.rmtree(workdir / f"flat_{n}")

    t0 = time.perf_counter()
    ivf = GalleryIndex.build(workdir / f"ivfpq_{n}", feats, meta, model_info=info, kind="ivfpq",
                             nlist=args.nlist, pq_m=args.pq_m, refine=max(max(args.refine), 1), progress=True)
    result["ivfpq_build_s"] = time.perf_counter() - t0
    result["ivfpq_params"] = ivf.info()["params"]
    print(f"ivfpq build: {result['ivfpq_build_s']:.1f} s, {result['ivfpq_params']}", flush=True)
    nlist = int(result["ivfpq_params"]["nlist"])  # type: ignore[index]
    rows = []
    for refine in args.refine:
        for nprobe in args.nprobe:
            if nprobe > nlist:
                continue
            _, approx = ivf.search_ids(queries, 10, nprobe=nprobe, refine=refine)
            lat = latency(ivf, queries, single=args.single, batches=args.batches, batch_size=args.batch_size,
                          nprobe=nprobe, refine=refine)
            rows.append({"nprobe": nprobe, "refine": refine, "recall@10": recall_at(approx, exact), **lat})
            print(f"ivfpq nprobe={nprobe} refine={refine}: recall@10 {rows[-1]['recall@10']:.3f}, {json.dumps(lat)}",
                  flush=True)
    result["ivfpq"] = rows
    ivf.close()
    shutil.rmtree(workdir / f"ivfpq_{n}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="gallery sizes")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension (default 512)")
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall (default 1000)")
    parser.add_argument("--single", type=int, default=100, help="single-query repeats (default 100)")
    parser.add_argument("--batches", type=int, default=10, help="batched repeats (default 10)")
    parser.add_argument("--batch-size", type=int, default=100, help="queries per batch (default 100)")
    parser.add_argument("--images-per-id", type=int, default=10, help="gallery images per identity")
    parser.add_argument("--coarse", type=int, default=1000, help="coarse appearance groups (default 1000)")
    parser.add_argument("--identity-spread", type=float, default=0.3,
                        help="std of an identity's offset from its group centre (default 0.3)")
    parser.add_argument("--noise", type=float, default=0.8, help="std of an image's noise (default 0.8)")
    parser.add_argument("--threads", type=int, default=None, help="FAISS OpenMP threads (default: FAISS's)")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default: the index's auto rule)")
    parser.add_argument("--pq-m", type=int, default=None, help="PQ sub-quantizers (default dim / 8)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64], help="nprobe values")
    parser.add_argument("--refine", type=int, nargs="+", default=[0, 8, 32, 64],
                        help="exact re-scoring factors to measure (0: PQ scores only; default 0 8 32 64)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the indexes are written (default: tmp)")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(f"load average: {os.getloadavg()}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads), numpy {np.__version__}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vireid-search-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in args.sizes:
            results.append(run_size(n, args, workdir))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak resident memory: {peak_gib:.1f} GiB")
    print(f"\n| N | kind | nprobe | refine | build s | single p50 / p99 ms | batch of {args.batch_size} p50 / p99 ms | per query ms | recall@10 |"
          )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        fl = r["flat_latency"]
        print(f"| {r['n']:,} | flat | - | - | {r['flat_build_s']:.1f} | {fl['single']['p50_ms']:.2f} / "
              f"{fl['single']['p99_ms']:.2f} | {fl['batched']['p50_ms']:.1f} / {fl['batched']['p99_ms']:.1f} | "
              f"{fl['batched']['per_query_ms']:.3f} | 1.000 |")
        for row in r["ivfpq"]:
            print(f"| {r['n']:,} | ivfpq | {row['nprobe']} | {row['refine']} | {r['ivfpq_build_s']:.1f} | {row['single']['p50_ms']:.2f} / "
                  f"{row['single']['p99_ms']:.2f} | {row['batched']['p50_ms']:.1f} / {row['batched']['p99_ms']:.1f} | "
                  f"{row['batched']['per_query_ms']:.3f} | {row['recall@10']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "peak_rss_gib": peak_gib}, indent=2))


if __name__ == "__main__":
    main()
