"""``vict serve``: a checkpoint behind an OpenAI-compatible HTTP API (``vict.serve.app``), on uvicorn.

The model loads once, before the port opens. Loopback (127.0.0.1) by default; anyone who binds another address
should pass ``--api-key`` (or set ``VICT_API_KEY``, which keeps the key off the process list): requests then need
``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vict.serve.app import ServeSettings

EPILOG = """examples:
  vict serve --checkpoint runs/vict_lora/final                       # http://127.0.0.1:8000/v1
  vict serve --checkpoint runs/vict_lora/final --image-root world/images --port 9000
  VICT_API_KEY=secret vict serve --checkpoint runs/vict_lora/final --host 0.0.0.0

  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' -d '{"model": "vict_lora/final",
    "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
    {"type": "text", "text": "what color is the circle?"}]}], "vict": {"context": "self"}}'
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``vict serve`` options."""
    parser.add_argument("--checkpoint", required=True, help="VICT checkpoint directory (a training run's final/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one, printed at start)")
    parser.add_argument("--model-name", help="the model id clients send (default: the checkpoint's run/folder name)")
    parser.add_argument("--image-root", help="also read image paths (file:// or plain) inside this folder, only")
    parser.add_argument(
        "--api-key", default=os.environ.get("VICT_API_KEY"), help="require 'Bearer KEY' (env VICT_API_KEY)"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--max-batch-size", type=int, default=8, help="requests decoded together (default 8)")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="how long a batch waits to fill (default 10)")
    parser.add_argument("--max-queue", type=int, default=64, help="requests waiting before 429s (default 64)")
    parser.add_argument("--max-tokens", type=int, default=256, help="largest max_tokens a request may ask (256)")
    parser.add_argument("--max-prompt-tokens", type=int, help="longest prompt (default: the checkpoint's max_length)")
    parser.add_argument("--max-image-bytes", type=int, default=10 * 1024 * 1024, help="largest image (10 MiB)")
    parser.add_argument("--max-image-pixels", type=int, default=25_000_000, help="most pixels of an image (25 M)")
    parser.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024, help="largest request body (16 MiB)")
    parser.add_argument("--max-cached-images", type=int, default=64, help="images whose features/prefix are kept")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def settings_from_args(args: argparse.Namespace, checkpoint: Path) -> ServeSettings:
    """The ``ServeSettings`` of the flags (``ValueError`` naming each bad one, all at once)."""
    from vict.serve.app import ServeSettings, model_name_of
    from vict.serve.images import ImageLimits

    problems = []
    for flag in ("max_batch_size", "max_queue", "max_tokens", "max_image_bytes", "max_image_pixels", "max_body_bytes"):
        if getattr(args, flag) < 1:
            problems.append(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= 1")
    if args.max_prompt_tokens is not None and args.max_prompt_tokens < 1:
        problems.append(f"--max-prompt-tokens {args.max_prompt_tokens}: must be >= 1")
    if args.max_wait_ms < 0:
        problems.append(f"--max-wait-ms {args.max_wait_ms}: must be >= 0")
    if args.max_cached_images < 1:
        problems.append(f"--max-cached-images {args.max_cached_images}: must be >= 1")
    if not 0 <= args.port < 65536:
        problems.append(f"--port {args.port}: must be in [0, 65535]")
    root = None
    if args.image_root is not None:
        root = Path(args.image_root)
        if not root.is_dir():
            problems.append(f"--image-root {root}: no such folder")
    if args.api_key is not None and not args.api_key.strip():
        problems.append("--api-key is empty: give a key, or leave the flag out")
    if problems:
        raise ValueError("\n  ".join(problems))
    return ServeSettings(
        model_name=args.model_name or model_name_of(checkpoint),
        image_root=root,
        api_key=args.api_key,
        limits=ImageLimits(args.max_image_bytes, args.max_image_pixels),
        max_body_bytes=args.max_body_bytes,
        max_tokens=args.max_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
        max_batch_size=args.max_batch_size,
        max_wait_s=args.max_wait_ms / 1000.0,
        max_queue=args.max_queue,
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    """Check the flags, load the checkpoint once, serve until interrupted."""
    try:
        import uvicorn

        from vict.serve.app import create_app
    except ImportError as err:
        print(f'vict serve: error: {err.name} is not installed: pip install "vict[serve]"', file=sys.stderr)
        return 2
    from vict.inference import VictEngine

    checkpoint = Path(args.checkpoint)
    try:
        settings = settings_from_args(args, checkpoint)
        engine = VictEngine.from_checkpoint(
            checkpoint, device=args.device, batch_size=args.max_batch_size, max_images=args.max_cached_images
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"vict serve: error: {err}", file=sys.stderr)
        return 2
    if not is_loopback(args.host) and settings.api_key is None:
        print(
            f"vict serve: warning: listening on {args.host} without --api-key: anyone who reaches this address can "
            "use the model",
            file=sys.stderr,
        )
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    app = create_app(engine, settings)
    print(f"vict serve: model {settings.model_name!r} from {checkpoint}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=10)
    return 0
