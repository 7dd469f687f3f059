"""``vict caption``: caption images with a trained VICT checkpoint (greedy, batched)."""

from __future__ import annotations

import argparse
import json
import sys

from vict.inference import MAX_NEW_TOKENS, VictEngine, open_image

EPILOG = """examples:
  vict caption --checkpoint runs/vict_lora/final world/images/181.png world/images/182.png
  vict caption --checkpoint runs/vict_lora/final --json photos/*.jpg > captions.json
  vict caption --checkpoint runs/vict_lora/final --image world/images/181.png   # as vict ask takes images
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``vict caption`` options."""
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files to caption")
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        dest="image_flags",
        metavar="IMAGE",
        help="an image file to caption, as `vict ask` takes it (repeatable; joins the positional ones)",
    )
    parser.add_argument("--checkpoint", required=True, help="VICT checkpoint directory")
    parser.add_argument("--batch-size", type=int, default=8, help="images per generation batch")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS["caption"], help="caption budget")
    parser.add_argument("--json", action="store_true", help='print [{"image", "caption"}] as JSON')
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def run(args: argparse.Namespace) -> int:
    """Check every image first (exit 2 naming a bad one), then caption them all."""
    try:
        args.images = [*args.images, *args.image_flags]
        if not args.images:
            raise ValueError("no image given: name image files, e.g. vict caption --checkpoint CKPT img.png")
        if args.batch_size < 1 or args.max_new_tokens < 1:
            raise ValueError("--batch-size and --max-new-tokens must be >= 1")
        images = [open_image(p, what="IMAGE") for p in args.images]
        engine = VictEngine.from_checkpoint(args.checkpoint, device=args.device, batch_size=args.batch_size)
    except (ValueError, FileNotFoundError) as e:
        print(f"vict caption: error: {e}", file=sys.stderr)
        return 2
    captions = engine.caption(images, max_new_tokens=args.max_new_tokens)
    if args.json:
        print(json.dumps([{"image": p, "caption": c} for p, c in zip(args.images, captions)], indent=2))
    else:
        for path, caption in zip(args.images, captions):
            print(f"{path}: {caption}")
    return 0
