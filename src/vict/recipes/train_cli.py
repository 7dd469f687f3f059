"""`vict train CONFIG [key.sub=value ...] [--resume DIR | --overwrite]`: the command line of ``vict.recipes.train``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vict.config import config_reference, load_config

EPILOG = """examples:
  vict data world --out runs/world --images 400 --seed 0
  vict train configs/world/vict_lora.yaml                          # about a minute on 2 CPU cores
  vict train configs/world/vict_lora.yaml train.max_steps=50 method.r=4 train.output_dir=runs/try
  vict train configs/world/vict_lora.yaml train.resume=true        # continue from the latest checkpoint
  vict train configs/world/vict_lora.yaml --resume runs/world_vict_lora/checkpoints/step-00000100
  vict train configs/world/vict_lora.yaml --overwrite              # start over: delete the earlier run's outputs

distributed (the same command, every process runs it; rank 0 writes):
  torchrun --nproc_per_node 2 -m vict train configs/world/vict_lora.yaml               # CPU (gloo) or GPUs
  accelerate launch --multi_gpu --num_processes 2 -m vict train configs/world/vict_lora.yaml   # also on CPU
  accelerate launch --config_file configs/accelerate/ddp.yaml -m vict train configs/llama7b/coco_gqa_vict_lora.yaml
  (note: `accelerate launch --cpu --num_processes 2` starts ONE process in accelerate 1.15; use the above)

outputs in train.output_dir: checkpoints/step-N/ (resumable), final/ (VisionLLM.from_pretrained),
config.yaml, metrics.jsonl, loss.png, tensorboard/ (when tensorboard is installed).
One run per folder: a run holds train.output_dir/.vict-run.lock while it lives (a second run there fails at once,
naming the holder's PID and host; a lock left by a dead run is cleared). A folder that holds an earlier run is
refused: continue it with train.resume=true, or start over with --overwrite (deletes that run's outputs only).
SIGTERM / Ctrl-C: the current step finishes, a checkpoint is saved, the run exits with status 130;
rerun with train.resume=true to continue exactly where it stopped.

config keys (set in the YAML file or override as key.sub=value):
""" + config_reference()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vict train`."""
    parser.add_argument("config", help="YAML config file, e.g. configs/world/vict_lora.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides key.sub=value, e.g. train.max_steps=50")
    parser.add_argument(
        "--resume", metavar="DIR", type=Path, default=None, help="resume from this checkpoints/step-* directory"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train.output_dir holds an earlier run: delete its outputs (final/, checkpoints/, metrics.jsonl, "
        "loss.png, config.yaml, tensorboard/; nothing else) and start over",
    )
    parser.add_argument("--quiet", action="store_true", help="log warnings only (the progress bar stays)")


class _TqdmHandler(logging.Handler):
    """Log lines printed above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def _configure_logging(level: int) -> None:
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("vict")
    root.handlers = [handler]
    root.setLevel(level)
    # Records still propagate: an embedding application's (or pytest's) root handlers keep seeing vict's logs.


def run(args: argparse.Namespace) -> int:
    """Load and validate the config, train, print where the results are. Exit 0 done, 130 stopped by a signal;
    errors propagate to ``vict.cli.main``, which prints them as ``vict train: error: ...`` (2: bad config, data, or
    output folder; 1: the run failed, e.g. a non-finite loss)."""
    _configure_logging(logging.WARNING if args.quiet else logging.INFO)
    cfg = load_config(args.config, args.overrides)
    from vict.recipes.train import train
    from vict.training.run_lock import is_main_process

    result = train(cfg, resume_from=args.resume, overwrite=args.overwrite)
    main_process = is_main_process()  # torchrun / accelerate launch: rank 0 reports
    if result.stopped_by:
        if main_process:
            print(f"stopped by {result.stopped_by} at step {result.step}; checkpoint: {result.last_checkpoint}")
        return 130
    if main_process:
        print(f"trained {result.step} steps; model: {result.final_dir}; records: {result.output_dir}")
    return 0
