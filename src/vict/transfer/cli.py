"""``vict transfer``: VPGTrans's word converter between two LMs (``vict transfer converter``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EPILOG = """examples:
  vict transfer converter --source-lm facebook/opt-2.7b --target-lm meta-llama/Llama-2-7b-hf \\
      --texts coco/annotations/captions_train2014.json --out runs/converter
  vict transfer converter --source-lm ZOO/source_lm --target-lm ZOO/target_lm --world runs/qs/world --out runs/conv
  vict transfer merge --converter runs/conv --blip2 ZOO/blip2 --out runs/conv/merged_projector.safetensors
      # then train with connector.init_weights=runs/conv/merged_projector.safetensors
  vict transfer ablate --run vict-quickstart    # no converter / no warm-up / 1x / 10x warm-up vs from scratch

Only the two tokenizers and the two input-embedding tensors are read (for a sharded checkpoint, only the shard that
holds the embeddings). A BLIP-2 directory or hub id as --source-lm gives its language model's embeddings.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="transfer_command", metavar="ACTION", required=True)
    conv = sub.add_parser("converter", help="fit the word converter (source LM embeddings -> target LM embeddings)")
    conv.add_argument("--source-lm", required=True, help="source LM (or its BLIP-2): local directory or hub id")
    conv.add_argument("--target-lm", required=True, help="target LM: local directory or hub id")
    texts = conv.add_mutually_exclusive_group(required=True)
    texts.add_argument("--texts", help="a text file (one text per line) or a COCO captions json")
    texts.add_argument("--world", help="a world folder (vict data world): its train captions")
    conv.add_argument("--out", required=True, help="output folder (converter.safetensors, converter.json)")
    conv.add_argument("--epochs", type=int, default=8, help="passes over the paired tokens (default 8)")
    conv.add_argument("--lr", type=float, default=1e-2, help="peak AdamW learning rate (default 1e-2)")
    conv.add_argument("--batch-size", type=int, default=4096, help="token pairs per step (default 4096)")
    conv.add_argument("--seed", type=int, default=0, help="seed of the held-out split and the fit (default 0)")
    ablate = sub.add_parser("ablate", help="VPGTrans's ablations of a quickstart run, against its from-scratch curve")
    ablate.add_argument("--run", required=True, help="a `vict quickstart --out DIR` folder with a vict-vpgtrans row")
    ablate.add_argument(
        "--only", default=None, help="comma-separated subset of no_converter,no_warmup,warmup_1x,warmup_10x"
    )
    merge = sub.add_parser("merge", help="write the merged projector (converter o the BLIP-2's projector)")
    merge.add_argument("--converter", required=True, help="folder written by `vict transfer converter`")
    merge.add_argument("--blip2", required=True, help="the source BLIP-2: HF directory or hub id, or a LAVIS .pth")
    merge.add_argument("--out", required=True, help="output safetensors file (weight, bias)")


def run(args: argparse.Namespace) -> int:
    from vict.transfer.converter import fit_word_converter, write_merged_projector
    from vict.transfer.texts import read_texts, world_texts

    if args.transfer_command == "ablate":
        from vict.recipes.transfer import run_ablations

        try:
            names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
            results = run_ablations(Path(args.run), names)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}")
            return 2
        print(f"{'run':16s} {'steps (scratch)':>16s} {'steps (transfer)':>17s} {'speed-up':>9s}")
        for name, r in results.items():
            steps = r["steps_to_target"]
            print(f"{name:16s} {steps['scratch']:>16} {steps['vpgtrans']!s:>17} {r['speedup']!s:>9}")
        print(f"wrote {Path(args.run) / 'ablations' / 'ablations.json'} and transfer_ablations.png")
        return 0
    if args.transfer_command == "merge":
        try:
            summary = write_merged_projector(Path(args.converter), args.blip2, Path(args.out))
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}")
            return 2
        print(
            f"merged projector {summary['merged_shape']} = converter o {summary['source_projector']} "
            f"{summary['source_shape']}: wrote {args.out} (use it as connector.init_weights)"
        )
        return 0

    try:
        texts = read_texts(Path(args.texts)) if args.texts else world_texts(Path(args.world))
        _, meta = fit_word_converter(
            args.source_lm,
            args.target_lm,
            texts,
            out_dir=Path(args.out),
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            texts_source=str(args.texts or f"{args.world} (train captions)"),
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}")
        return 2
    fit = meta["fit"]
    print(
        f"converter: {meta['texts']['paired']} of {meta['texts']['total']} texts paired "
        f"({fit['pairs_train']} token pairs, {fit['pairs_held_out']} held out); mean cosine "
        f"{fit['cosine_before']:.3f} -> {fit['cosine_train']:.3f} (held out: {fit['cosine_held_out']})"
    )
    print(f"wrote {Path(args.out) / 'converter.safetensors'} and converter.json")
    print(json.dumps({"fit": {k: v for k, v in fit.items() if k != "losses"}}))
    return 0
