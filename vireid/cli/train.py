"""``vireid train``: train a model from a config file, then test it."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from vireid.cli import HelpFormatter


class _TqdmHandler(logging.Handler):
    """Log lines on stderr that do not break a running progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        if getattr(record, "file_only", False):  # meant for log.txt; printed by the command itself
            return
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class OverridesParser(argparse.ArgumentParser):
    """Accepts ``key=value`` overrides anywhere on the line, also after options
    (``vireid test CONFIG --checkpoint PATH test.mode=indoor``): argparse alone would reject
    positionals that follow an option once the ``overrides`` positional has matched."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        namespace, extras = super().parse_known_args(args, namespace)
        late = [a for a in extras if "=" in a and not a.startswith("-")]
        if late:
            namespace.overrides = list(getattr(namespace, "overrides", None) or []) + late
            extras = [a for a in extras if a not in late]
        return namespace, extras


def accept_late_overrides(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make a command's parser an :class:`OverridesParser` (its ``overrides`` positional may follow options)."""
    parser.__class__ = OverridesParser
    return parser


def setup_console_logging() -> None:
    """INFO lines of the ``vireid`` logger on stderr (rank 0 only under ``torchrun``)."""
    log = logging.getLogger("vireid")
    if os.environ.get("RANK", "0") != "0" or any(isinstance(h, _TqdmHandler) for h in log.handlers):
        return
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a config file, then test it",
        description="Train the model of CONFIG (with key=value overrides) and write the run folder "
        "output_dir: config.yaml (resolved), checkpoints/last.pt and best.pt, metrics.jsonl, TensorBoard "
        "events and log.txt. At the end the final weights are tested over test.trials trials; the table "
        "is printed and written to output_dir/results.json. RegDB trains on data.trial (one model per "
        "trial); --all-trials trains and tests all 10 trials. --seeds trains one run per seed. Multi-GPU: torchrun --nproc_per_node N -m "
        "vireid train CONFIG.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  vireid train configs/sysu/dam.yaml output_dir=runs/dam train.epochs=100\n"
        "  vireid train configs/sysu/dam.yaml output_dir=runs/dam --resume\n"
        "  vireid train configs/regdb/dam.yaml output_dir=runs/dam_regdb --all-trials\n"
        "  vireid train configs/sysu/dam.yaml output_dir=runs/dam_seeds --seeds 0 1 2 --parallel 3\n"
        "  torchrun --nproc_per_node 2 -m vireid train configs/sysu/dam.yaml output_dir=runs/dam_ddp",
    )
    parser.add_argument("config", help="YAML config file (inherits with _base_)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=5")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in output_dir from checkpoints/last.pt")
    parser.add_argument("--all-trials", action="store_true",
                        help="RegDB: train and test one model per trial (output_dir/trial<t>), report the mean")
    parser.add_argument("--seeds", nargs="+", default=None, metavar="S",
                        help="train once per seed, each in output_dir/seed<S> with train.seed=S (resumable with "
                        "--resume); output_dir/results.json holds each seed's mean and their mean and standard "
                        "deviation; 'vireid report output_dir' aggregates over trials and seeds")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="with --seeds (or else --all-trials): train N seeds (trials) at once, each in its own "
                        "process (one GPU fits several small trainings); results equal a sequential run's")
    accept_late_overrides(parser)
    parser.set_defaults(func=cmd_train)


def split_seeds(values: list[str] | None, overrides: list[str]) -> list[int] | None:
    """``--seeds`` values as integers; ``key=value`` overrides that followed them go back to ``overrides``."""
    if values is None:
        return None
    from vireid.errors import ConfigError

    seeds = []
    for v in values:
        if "=" in v:
            overrides.append(v)
        elif v.lstrip("-").isdigit():
            seeds.append(int(v))
        else:
            raise ConfigError(f"--seeds takes integers, got {v!r}")
    return seeds


def cmd_train(args: argparse.Namespace) -> int:
    from vireid.config import load_config
    from vireid.engine.run import RESULTS_FILE, run_all_trials, run_training

    args.overrides = list(args.overrides or [])
    seeds = split_seeds(args.seeds, args.overrides)
    cfg = load_config(args.config, args.overrides)
    setup_console_logging()
    if seeds is not None:
        from vireid.engine.seeds import run_seeds

        results = run_seeds(cfg, seeds, resume=args.resume, parallel=args.parallel, all_trials=args.all_trials)
    elif args.all_trials:
        results = run_all_trials(cfg, resume=args.resume, parallel=args.parallel)
    else:
        results = run_training(cfg, resume=args.resume)
    if results is not None:  # rank 0
        from vireid.evaluation.evaluator import format_results_table

        print(format_results_table(results))
        print(f"results: {os.path.join(str(cfg.output_dir), RESULTS_FILE)}")
    return 0
