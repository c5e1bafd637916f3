"""``vireid test``: evaluate a checkpoint under a dataset's protocol."""

from __future__ import annotations

import argparse
from pathlib import Path

from vireid.cli import HelpFormatter


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "test",
        help="evaluate a checkpoint under the dataset's protocol",
        description="Build the model of CONFIG, load the weights of --checkpoint (a missing, unreadable "
        "or mismatching file is an error, never an untrained model) and evaluate it under the protocol "
        "of CONFIG (test.mode, test.shots, test.sampler, test.direction) over the first --trials trials. "
        "Prints a table (percent) and writes JSON with --json. RegDB tests data.trial (its model's own "
        "trial). --untrained evaluates a freshly initialised model instead, labelled as such. Open-set figures "
        "of every query-gallery pair's cosine similarity follow the table (TPR at FPR 1e-4, 1e-3, 1e-2 and AUC, "
        "as fastreid reports; \"verification\" in the JSON).",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid test configs/sysu/dam.yaml --checkpoint runs/dam/checkpoints/last.pt --trials 10 --json out.json\n"
        "  vireid test configs/sysu/dam.yaml --checkpoint runs/dam/checkpoints/best.pt test.mode=indoor\n"
        "  vireid test configs/regdb/dam.yaml --checkpoint runs/regdb/checkpoints/last.pt data.trial=1\n"
        "  vireid test configs/sysu/dam.yaml --untrained model.pretrained=none\n"
        "  vireid test configs/sysu/dam.yaml --onnx model.onnx",
    )
    parser.add_argument("config", help="YAML config file of the model and dataset")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. test.flip=true")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", type=Path, metavar="PATH", help="vireid checkpoint (last.pt or best.pt)")
    which.add_argument("--untrained", action="store_true",
                       help="evaluate a freshly initialised model (a baseline; labelled UNTRAINED)")
    which.add_argument("--onnx", type=Path, nargs="+", metavar="GRAPH",
                       help="evaluate graphs written by 'vireid export' with ONNX Runtime (model.onnx stands for "
                       "model_visible.onnx and model_infrared.onnx)")
    parser.add_argument("--trials", type=int, default=None, metavar="N",
                        help="number of trials to average (default test.trials)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the results as JSON")
    parser.add_argument("--rerank", action="store_true",
                        help="k-reciprocal re-ranking (Zhong et al. CVPR 2017; k1=20, k2=6, lambda=0.3); "
                        "labelled in the table and in the results (\"rerank\": true)")
    parser.add_argument("--rerank-variant", choices=("code", "paper"), default="code",
                        help="re-ranking arithmetic: code (the authors' code that torchreid and fastreid reproduce, "
                        "behind every published re-ranked number; default) or paper (the printed equations)")
    from vireid.cli.train import accept_late_overrides

    accept_late_overrides(parser)
    parser.set_defaults(func=cmd_test)


def cmd_test(args: argparse.Namespace) -> int:
    from vireid.cli.train import setup_console_logging
    from vireid.config import load_config
    from vireid.engine.run import run_test, write_json
    from vireid.evaluation.evaluator import format_results_table
    from vireid.evaluation.verification import format_verification

    cfg = load_config(args.config, args.overrides)
    setup_console_logging()
    results = run_test(cfg, checkpoint=args.checkpoint, untrained=args.untrained, onnx=args.onnx,
                       trials=args.trials, rerank={"variant": args.rerank_variant} if args.rerank else None)
    if args.untrained:
        print(f"model: UNTRAINED {cfg.model.name} (freshly initialised, model.pretrained={cfg.model.pretrained}, "
              f"seed {cfg.train.seed})")
    elif args.onnx:
        print(f"model: ONNX graphs {', '.join(map(str, args.onnx))} (ONNX Runtime)")
    else:
        print(f"model: {cfg.model.name} from {args.checkpoint} (epoch {results.get('epoch')})")
    if args.rerank:
        from vireid.evaluation.rerank import format_reranked_table

        print(format_reranked_table(results))
    else:
        print(format_results_table(results))
    if results.get("verification"):
        print(format_verification(results))
    if args.json is not None:
        write_json(results, args.json)
        print(f"results: {args.json}")
    return 0
