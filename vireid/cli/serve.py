"""``vireid serve``: the person-search web page and HTTP API over a gallery index (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse

from vireid.cli import HelpFormatter
from vireid.errors import VireidError


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 1..65535, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1..65535, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="web page and HTTP API for person search in a gallery index",
        description="Serve a gallery index built with 'vireid index build': a web page at / where a query "
        "image is uploaded or dropped and the ranked gallery is shown, and the JSON API GET /api/health, "
        "POST /api/search (multipart fields image, modality, topk, rerank) and GET /api/gallery/ID/image. "
        "The model runs on the CPU unless --device says otherwise.",
        formatter_class=HelpFormatter,
        epilog="example:\n  vireid serve --index out/index --port 8000\n"
        "  curl -F image=@query.jpg -F modality=infrared -F topk=5 http://127.0.0.1:8000/api/search",
    )
    parser.add_argument("--index", required=True, metavar="DIR", help="gallery index folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument("--checkpoint", metavar="PATH", default=None,
                        help="the index's checkpoint at a new location (default: the path the index records)")
    parser.add_argument("--device", default="cpu", help="device the model runs on (default: cpu)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="run the model with PyTorch or ONNX Runtime (default: torch)")
    parser.add_argument("--max-upload-mb", type=_positive_float, default=10.0, metavar="MB",
                        help="largest query image accepted, in MiB (default: 10)")
    parser.add_argument("--max-topk", type=_positive_int, default=100, metavar="K",
                        help="largest number of results a request may ask for (default: 100)")
    parser.add_argument("--allowed-host", nargs="+", default=None, metavar="HOST",
                        help="host names the Host header may carry (default on a loopback --host: localhost and the "
                        "loopback addresses; off loopback, where a token is required: any; '*' accepts any)")
    parser.add_argument("--token", default=None, metavar="TOKEN",
                        help="bearer token every /api/ request must carry (default: $VIREID_SERVE_TOKEN); required "
                        "when --host is not a loopback address")
    open_set = parser.add_mutually_exclusive_group()
    open_set.add_argument("--threshold", type=float, default=None, metavar="T",
                          help="open-set search: only results with cosine similarity above T ('no match' otherwise)")
    open_set.add_argument("--fpr", type=float, default=None, metavar="F",
                          help="open-set search, the threshold calibrated on the gallery's impostor pairs for "
                          "false-positive rate F (needs person ids in the index)")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                        help="uvicorn log level (default: info)")
    parser.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise VireidError("'vireid serve' needs FastAPI and uvicorn: pip install 'vireid[serve]'") from None
    import os

    from vireid.cli.train import setup_console_logging
    from vireid.retrieval.service import LOOPBACK_HOSTS, create_app, is_loopback

    token = args.token or os.environ.get("VIREID_SERVE_TOKEN") or None
    if not is_loopback(args.host) and token is None:
        raise VireidError(f"--host {args.host} exposes the service beyond this machine: give a bearer token "
                          "(--token TOKEN or VIREID_SERVE_TOKEN) so only clients that know it are answered")
    # off loopback the token guards every request (a rebinding page does not have it), so any Host name
    # the machine is reached by is accepted unless --allowed-host narrows it
    allowed = args.allowed_host or ([*LOOPBACK_HOSTS, args.host] if is_loopback(args.host) else ["*"])
    setup_console_logging()
    app = create_app(args.index, checkpoint=args.checkpoint, device=args.device, backend=args.backend,
                     max_upload_bytes=max(1, int(args.max_upload_mb * 1024 * 1024)), max_topk=args.max_topk,
                     allowed_hosts=allowed, token=token, threshold=args.threshold, fpr=args.fpr)
    if app.state.searcher.threshold is not None:
        print(f"vireid serve: open-set search, {app.state.searcher.threshold.describe()}", flush=True)
    host = f"[{args.host}]" if ":" in args.host else args.host
    suffix = "?token=<TOKEN>" if token else ""
    print(f"vireid serve: {len(app.state.searcher.index)} gallery images; open http://{host}:{args.port}/{suffix}",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
