"""``vireid search``: the gallery images of an index most similar to query images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vireid.cli import HelpFormatter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search a gallery index with query images",
        description="Embed the query images with the model the index was built with (by default through "
        "the other modality's branch than the gallery's: infrared queries for a visible gallery) and print "
        "the --topk most similar gallery images of each, with their cosine similarity and person id, and say "
        "whether the query's person was found (its id from --query-pid or from the query's dataset layout). "
        "--rerank re-ranks "
        "the best candidates with k-reciprocal encoding (Zhong et al. CVPR 2017; k1=20, k2=6, lambda=0.3); "
        "re-ranked results are labelled.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid search --index idx --query ir_0001.jpg ir_0002.jpg --topk 10\n"
        "  vireid search --index idx --query probes/ --query-modality infrared --json --rerank\n"
        "  vireid search --index idx --query q.jpg --backend onnx --onnx model.onnx\n"
        "  vireid search --index idx --query q.jpg --fpr 1e-3   # 'no match' below the calibrated threshold",
    )
    parser.add_argument("--index", type=Path, required=True, metavar="DIR", help="gallery index folder")
    parser.add_argument("--query", type=Path, nargs="+", required=True, metavar="IMG",
                        help="query image files (a folder stands for its images)")
    parser.add_argument("--query-modality", choices=["visible", "infrared"], default=None,
                        help="branch the queries go through (default: the other modality than the gallery's)")
    parser.add_argument("--topk", type=int, default=10, help="results per query (default 10)")
    parser.add_argument("--query-pid", type=int, default=None, metavar="PID",
                        help="the queries' person id, to mark correct matches (default: read from the query's "
                        "dataset layout when it lies in one)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking of the candidates")
    parser.add_argument("--rerank-variant", choices=("code", "paper"), default="code",
                        help="k-reciprocal arithmetic: code (the authors' code, as torchreid/fastreid and published "
                        "numbers; default) or paper (the printed equations)")
    parser.add_argument("--rerank-candidates", type=int, default=100, metavar="N",
                        help="gallery candidates per query that --rerank re-orders (default 100)")
    open_set = parser.add_mutually_exclusive_group()
    open_set.add_argument("--threshold", type=float, default=None, metavar="T",
                          help="open-set search: only results with cosine similarity above T; a query may get "
                          "'no match'")
    open_set.add_argument("--fpr", type=float, default=None, metavar="F",
                          help="open-set search with the threshold calibrated on the gallery's own impostor pairs "
                          "for false-positive rate F (e.g. 1e-3); needs person ids in the index")
    parser.add_argument("--checkpoint", type=Path, default=None, metavar="PATH",
                        help="the index's checkpoint at another location (must have the recorded fingerprint)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="PyTorch or ONNX Runtime")
    parser.add_argument("--onnx", type=Path, nargs="+", default=None, metavar="GRAPH",
                        help="exported ONNX graph(s) (default with --backend onnx: exported once into the index)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--nprobe", type=int, default=None, help="IVF-PQ: lists searched per query")
    parser.set_defaults(func=cmd_search)


def _query_paths(items: list[Path]) -> list[Path]:
    from vireid.retrieval.image_lists import list_images

    out: list[Path] = []
    for item in items:
        if item.is_dir():
            out.extend(Path(r["path"]) for r in list_images(item, modality="visible"))
        else:
            out.append(item)
    return out


def cmd_search(args: argparse.Namespace) -> int:
    from vireid.cli.embed import device_name
    from vireid.retrieval.image_lists import person_of_image
    from vireid.retrieval.search import Searcher

    searcher = Searcher.from_index(args.index, checkpoint=args.checkpoint, device=device_name(args.device),
                                   backend=args.backend, onnx=args.onnx, nprobe=args.nprobe,
                                   rerank_candidates=args.rerank_candidates, rerank_variant=args.rerank_variant)
    threshold = searcher.set_threshold(args.threshold, fpr=args.fpr)
    modality = args.query_modality or searcher.default_query_modality()
    paths = _query_paths(args.query)
    results = searcher.search_paths(paths, modality, topk=args.topk, rerank=args.rerank)
    if args.json:
        print(json.dumps(to_json(paths, modality, results, args.rerank, threshold), indent=2))
        return 0
    label = (f" -- RE-RANKED: k-reciprocal, {args.rerank_variant} variant (k1=20, k2=6, lambda=0.3)"
             if args.rerank else "")
    if threshold is not None:
        print(f"open-set search: {threshold.describe()}")
    has_pids = searcher.index.count_with_pid() > 0
    for path, hits in zip(paths, results):
        pid = args.query_pid if args.query_pid is not None else person_of_image(path)
        print(f"query: {path} ({modality}{'' if pid is None else f', person {pid}'}){label}")
        if threshold is not None and not hits:
            print(f"no match above the {threshold.describe()}")
        else:
            print(_table(hits, args.rerank, pid))
        print(verdict(pid, hits, args.topk, has_pids, searcher.index.count_pid(pid) if pid is not None else 0))
    return 0


def verdict(pid: int | None, hits: list[Any], topk: int, has_pids: bool, in_gallery: int) -> str:
    """One line saying whether the query's person was found, or why that cannot be said."""
    if not has_pids:
        return ("who the results are is unknown: the index has no person ids (built from a folder of images; build "
                "it from a dataset layout or a manifest to know)")
    if pid is None:
        return "the query's person is unknown (give --query-pid, or query an image of a dataset layout)"
    if not in_gallery:
        return f"person {pid} is not in the gallery"
    ranks = [h.rank for h in hits if h.pid == pid]
    if ranks:
        return f"person {pid}: FOUND at rank {ranks[0]} ({len(ranks)} of the {len(hits)} results)"
    return f"person {pid}: not found in the top {topk} ({in_gallery} gallery images of this person)"


def to_json(paths: list[Path], modality: str, results: list[list[Any]], rerank: bool,
            threshold: Any = None) -> list[dict[str, Any]]:
    extra = {} if threshold is None else {"threshold": threshold.to_dict()}
    return [{"query": str(p), "modality": modality, "rerank": bool(rerank), **extra,
             **({} if threshold is None else {"match": bool(hits)}), "hits": [h.to_dict() for h in hits]}
            for p, hits in zip(paths, results)]


def _table(hits: list[Any], rerank: bool, query_pid: int | None = None) -> str:
    head = ["rank", "score"] + (["rerank"] if rerank else []) + ["person", "match", "camera", "modality", "path"]
    rows = [[str(h.rank), f"{h.score:.4f}"] + ([f"{h.rerank_distance:.4f}"] if rerank else [])
            + ["?" if h.pid is None else str(h.pid),
               "" if query_pid is None or h.pid is None else ("yes" if h.pid == query_pid else "no"),
               str(h.camera), h.modality, h.path] for h in hits]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells[:-1], widths)) + "  " + cells[-1]

    return "\n".join([line(head)] + [line(r) for r in rows])
