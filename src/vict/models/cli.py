"""``vict inspect``: build a model (a named builder or a saved checkpoint) and print its parts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EPILOG = """examples:
  vict inspect tiny                          # tiny random model (LoRA), parameters by part
  vict inspect tiny --method llama_adapter --extra-queries 8
  vict inspect tiny --method none --json
  vict inspect paper                         # BLIP-2 ViT-g + LLaMA-7B + LoRA, counted on the meta device (no download)
  vict inspect paper --method llama_adapter --json
  vict inspect runs/world_lora/final         # a saved VICT checkpoint directory
  vict inspect paper --method vlora --flops --text-tokens 32 256   # FLOPs of one image + T text tokens

`vict methods` lists the registered methods; --method takes any of them.
"""

BUILDERS = ("tiny", "paper")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="'tiny', 'paper', or a VICT checkpoint directory (holding config.json)")
    parser.add_argument("--method", default="lora", help="builders only: a registered method (`vict methods`)")
    parser.add_argument(
        "--connector", default=None, help="builders only: a registered connector (default: the method's)"
    )
    parser.add_argument(
        "--extra-queries", type=int, default=None, help="trainable extra queries (builders; tiny 4, paper 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="tiny only: seed of the random weights")
    parser.add_argument("--cache-dir", type=Path, default=None, help="tiny only: where the tiny checkpoints live")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--flops",
        action="store_true",
        help="also count the FLOPs of one image and T text tokens (vict.models.flops: VPG, connector, LLM prefill)",
    )
    parser.add_argument(
        "--text-tokens", type=int, nargs="+", default=[32], help="with --flops: text tokens T (default 32)"
    )


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from vict.models.summary import human_bytes, parameter_table
    from vict.registry import method_names
    from vict.settings import SettingsError

    hf_logging.disable_progress_bar()  # weight-loading bars would bury the table
    target = args.target
    if target not in BUILDERS and not Path(target).is_dir():
        raise SystemExit(
            f"vict inspect: {target!r} is neither a builder ({', '.join(BUILDERS)}) nor a checkpoint directory"
        )
    try:
        if target == "paper":
            from vict.models.builders import paper_footprint

            n_extra = 32 if args.extra_queries is None else args.extra_queries
            text_tokens = tuple(args.text_tokens) if args.flops else ()
            info = paper_footprint(args.method, n_extra, connector=args.connector, text_tokens=text_tokens)
            counts, config, tokens = info["counts"], info["config"], info["num_visual_tokens"]
            method_line = connector_line = None
            extra = {"checkpoint_bytes": info["checkpoint_bytes"], "counted_on": "meta device (no weights loaded)"}
            compute = info.get("compute", {})
        else:
            if target == "tiny":
                from vict.models.builders import build_tiny

                n_extra = 4 if args.extra_queries is None else args.extra_queries
                model = build_tiny(
                    args.method, n_extra, seed=args.seed, cache_dir=args.cache_dir, connector=args.connector
                )
            else:
                from vict.models.vision_llm import VisionLLM

                model = VisionLLM.from_pretrained(target)
            counts, config, tokens = (
                model.trainable_parameters_by_part(),
                model.config.to_dict(),
                model.num_visual_tokens,
            )
            method_line, connector_line = model.method.describe(), model.connector.describe(model.vpg)
            extra = {"checkpoint_bytes": 4 * counts["trainable"], "image_size": model.vpg.image_size}
            compute = {}
            if args.flops:
                from vict.models.flops import method_compute

                compute = {t: method_compute(model, t) for t in args.text_tokens}
    except SettingsError as err:
        raise SystemExit(f"vict inspect: {err}; registered methods: {', '.join(method_names())}") from err
    if compute:
        extra["flops"] = {str(t): c for t, c in compute.items()}
    if args.json:
        payload = {"target": target, "parameters": counts, "num_visual_tokens": tokens, "config": config, **extra}
        print(json.dumps(payload, indent=2))
        return 0
    print(parameter_table(counts, title=f"vict inspect {target}: parameters by part"))
    print()
    print(f"  VPG        {config['vpg_source']} ({config['vpg_format']}), {config['num_extra_queries']} extra queries")
    print(f"  LLM        {config['llm_source']}")
    method = config["method"]
    print(f"  method     {method_line or ' '.join(f'{k}={v}' for k, v in method.items())}")
    print(f"  connector  {connector_line or config['connector']['type']}")
    print(f"  visual tokens per image: {tokens}")
    print(f"  frozen     {config['frozen_dtype']}")
    print(f"  checkpoint ~{human_bytes(extra['checkpoint_bytes'])} of trainable tensors (float32)")
    if compute:
        print()
        print(flops_table(compute))
    return 0


def flops_table(compute: dict[int, dict[str, int]]) -> str:
    """The ``--flops`` lines: per T, the LLM's tokens and each part's FLOPs (``vict.models.flops``)."""
    from vict.models.flops import human_flops

    lines = ["  FLOPs of one image + T text tokens (counted; the LLM's prefill also by the formula, docs):"]
    for t, c in compute.items():
        delta = c["llm"] - c["llm_bare"]
        lines.append(
            f"  T={t:<4} LLM tokens {c['llm_tokens']} ({c['visual_tokens']} visual): VPG {human_flops(c['vpg'])}, "
            f"connector {human_flops(c['connector'])}, LLM prefill {human_flops(c['llm'])} (delta "
            f"{human_flops(delta)}; formula {human_flops(c['llm_formula'])}), total {human_flops(c['total'])}"
        )
    return "\n".join(lines)
