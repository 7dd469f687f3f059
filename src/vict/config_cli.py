"""`vict validate CONFIG [key.sub=value ...]`: load, override and validate a run config without running it."""

from __future__ import annotations

import argparse
import sys

import yaml

from vict.config import ConfigError, check_paths, config_reference, config_to_dict, load_config, remote_sources

EPILOG = """examples:
  vict validate configs/world/vict_lora.yaml
  vict validate configs/world/vict_lora.yaml train.max_steps=50 method.r=4 --print
  vict validate configs/llama7b/coco_gqa_vict_lora.yaml data.images=/data/coco/images --check-paths

exit status: 0 valid, 2 invalid (every problem is listed, each with the key, the value and the fix).

config keys (set in the YAML file or override as key.sub=value):
""" + config_reference()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vict validate`."""
    parser.add_argument("config", help="YAML config file, e.g. configs/world/vict_lora.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides key.sub=value, e.g. train.max_steps=50")
    parser.add_argument("--print", action="store_true", help="print the resolved config as YAML")
    parser.add_argument(
        "--check-paths",
        action="store_true",
        help="also check that data paths, the world directory and local model sources exist (with their files)",
    )


def run(args: argparse.Namespace) -> int:
    """Validate; print the problems (exit 2) or a one-line summary (exit 0)."""
    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check_paths:
        problems = check_paths(cfg)
        if problems:
            print(f"error: {ConfigError(problems, args.config)}", file=sys.stderr)
            return 2
        for source in remote_sources(cfg):
            print(f"note: {source} is a hub id: not checked here (downloaded when training starts)", file=sys.stderr)
    if args.print:
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
    steps = f"{cfg.train.max_steps} steps" if cfg.train.max_steps else f"{cfg.train.epochs} epochs"
    data = f"world {cfg.data.world}" if cfg.data.world else f"captions {cfg.data.captions}"
    print(
        f"ok: {args.config}: model.builder={cfg.model.builder}, method.type={cfg.method.type}, connector.type={cfg.connector.type}, {data}, {steps}, "
        f"batch {cfg.train.batch_size}x{cfg.train.grad_accum}, lr {cfg.train.lr:g} -> {cfg.train.output_dir}"
    )
    return 0
