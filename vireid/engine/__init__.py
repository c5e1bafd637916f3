"""Training: the trainer and its hooks, optimiser and schedule, distributed training (checkpoint files are
:mod:`vireid.models.checkpoint`, re-exported here).

Quick start (library)::

    from vireid.engine import Trainer, seed_everything
    seed_everything(cfg.train.seed)
    model = build_model(cfg, loader.num_classes)
    trainer = Trainer(cfg, model, loader, evaluator=evaluator)
    trainer.train()

:func:`vireid.engine.run.run_training` and :func:`vireid.engine.run.run_test` are what
``vireid train`` and ``vireid test`` call.
"""

from vireid.engine.distributed import DistributedContext, init_distributed
from vireid.engine.hooks import Hook
from vireid.engine.optim import WarmupMultiStepFactor, build_optimizer, build_scheduler
from vireid.engine.run import run_all_trials, run_test, run_training
from vireid.engine.trainer import Trainer, configure_determinism, seed_everything
from vireid.models.checkpoint import load_checkpoint, load_model_weights, save_checkpoint

__all__ = [
    "DistributedContext",
    "Hook",
    "Trainer",
    "WarmupMultiStepFactor",
    "build_optimizer",
    "build_scheduler",
    "configure_determinism",
    "init_distributed",
    "load_checkpoint",
    "load_model_weights",
    "run_all_trials",
    "run_test",
    "run_training",
    "save_checkpoint",
    "seed_everything",
]
