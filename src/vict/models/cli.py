"""``vict inspect``: build a model (a named builder or a saved checkpoint) and print its parts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EPILOG = """examples:
  vict inspect tiny                          # tiny random model (LoRA), trainable parameters by part
  vict inspect tiny --peft llama_adapter --extra-queries 8
  vict inspect paper                         # BLIP-2 ViT-g + LLaMA-7B + LoRA, counted on the meta device (no download)
  vict inspect paper --peft llama_adapter --json
  vict inspect runs/world_lora/final         # a saved VICT checkpoint directory
"""

BUILDERS = ("tiny", "paper")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="'tiny', 'paper', or a VICT checkpoint directory (holding config.json)")
    parser.add_argument("--peft", choices=["lora", "llama_adapter", "none"], default="lora", help="builders only")
    parser.add_argument(
        "--extra-queries", type=int, default=None, help="trainable extra queries (builders; tiny 4, paper 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="tiny only: seed of the random weights")
    parser.add_argument("--cache-dir", type=Path, default=None, help="tiny only: where the tiny checkpoints live")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from vict.models.summary import human_bytes, parameter_table

    hf_logging.disable_progress_bar()  # weight-loading bars would bury the table
    target = args.target
    if target not in BUILDERS and not Path(target).is_dir():
        raise SystemExit(
            f"vict inspect: {target!r} is neither a builder ({', '.join(BUILDERS)}) nor a checkpoint directory"
        )
    if target == "paper":
        from vict.models.builders import paper_footprint

        info = paper_footprint(args.peft, 32 if args.extra_queries is None else args.extra_queries)
        counts, config = info["counts"], info["config"]
        extra = {"checkpoint_bytes": info["checkpoint_bytes"], "counted_on": "meta device (no weights loaded)"}
    else:
        if target == "tiny":
            from vict.models.builders import build_tiny

            n_extra = 4 if args.extra_queries is None else args.extra_queries
            model = build_tiny(peft=args.peft, num_extra_queries=n_extra, seed=args.seed, cache_dir=args.cache_dir)
        else:
            from vict.models.vision_llm import VisionLLM

            model = VisionLLM.from_pretrained(target)
        counts, config = model.trainable_parameters_by_part(), model.config.to_dict()
        extra = {"checkpoint_bytes": 4 * counts["trainable"], "image_size": model.vpg.image_size}
    if args.json:
        print(json.dumps({"target": target, "parameters": counts, "config": config, **extra}, indent=2))
        return 0
    print(parameter_table(counts, title=f"vict inspect {target}: parameters by part"))
    print()
    print(f"  VPG        {config['vpg_source']} ({config['vpg_format']}), {config['num_extra_queries']} extra queries")
    print(f"  LLM        {config['llm_source']}")
    peft = config["peft"]
    if peft["type"] == "lora":
        detail = f"r={peft['r']} alpha={peft['alpha']} dropout={peft['dropout']} targets={peft['target_modules']}"
    elif peft["type"] == "llama_adapter":
        detail = f"adapter_len={peft['adapter_len']} adapter_layers={peft['adapter_layers']}"
    else:
        detail = "(only extra queries + projection train)"
    print(f"  PEFT       {peft['type']} {detail}")
    print(f"  frozen     {config['frozen_dtype']}")
    print(f"  checkpoint ~{human_bytes(extra['checkpoint_bytes'])} of trainable tensors (float32)")
    return 0
