"""``vict ask``: ask a trained VICT checkpoint a question about an image, with or without context.

Context (at most one): ``--context-caption TEXT`` (a given caption), ``--context-qa Q A`` (a given question-answer
pair), ``--self-context`` (the model captions the image, then answers with that caption); without any, the
question is asked alone. The flags become one ``vict.inference.Context``; the engine does the rest.
"""

from __future__ import annotations

import argparse
import json
import sys

from vict.inference import Context, VictEngine, open_image

EPILOG = """examples:
  vict ask --checkpoint runs/vict_lora/final --image world/images/181.png --question "what color is the circle?"
  vict ask --checkpoint runs/vict_lora/final --image img.png --question "how many squares are there?" --self-context
  vict ask --checkpoint runs/vict_lora/final --image img.png --question "is the circle left of the square?" \\
      --context-caption "a red circle and a blue square" --style sentence
  vict ask --checkpoint runs/vict_lora/final --image img.png --question "what shape is blue?" \\
      --context-qa "what color is the square?" "blue" --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``vict ask`` options."""
    parser.add_argument("--checkpoint", required=True, help="VICT checkpoint directory")
    parser.add_argument("--image", required=True, help="image file")
    parser.add_argument("--question", required=True, help="the question")
    context = parser.add_mutually_exclusive_group()
    context.add_argument("--context-caption", metavar="TEXT", help="a caption of the image given as context")
    context.add_argument("--context-qa", nargs=2, metavar=("Q", "A"), help="another question-answer pair as context")
    context.add_argument("--self-context", action="store_true", help="caption the image first, answer with it")
    parser.add_argument("--style", choices=("short", "sentence"), default="short", help="answer style")
    parser.add_argument("--max-new-tokens", type=int, help="answer budget (default 10 short / 40 sentence)")
    parser.add_argument("--json", action="store_true", help="print the answer as a JSON object")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def context_from_args(args: argparse.Namespace) -> Context:
    """The ``Context`` the flags ask for (``ValueError`` naming the flag when its text is empty)."""
    try:
        if args.context_caption is not None:
            return Context.given_caption(args.context_caption)
        if args.context_qa is not None:
            return Context.given_qa(*args.context_qa)
    except ValueError as err:
        flag = "--context-caption" if args.context_caption is not None else "--context-qa"
        raise ValueError(f"{flag}: {err}") from err
    return Context.own_caption() if args.self_context else Context.none()


def run(args: argparse.Namespace) -> int:
    """Validate the inputs (exit 2 naming the bad one), load the checkpoint, answer, print."""
    try:
        if not args.question.strip():
            raise ValueError("--question is empty: ask something, e.g. --question 'what color is the circle?'")
        context = context_from_args(args)
        if args.max_new_tokens is not None and args.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens {args.max_new_tokens}: must be >= 1")
        image = open_image(args.image, what="--image")
        engine = VictEngine.from_checkpoint(args.checkpoint, device=args.device)
    except (ValueError, FileNotFoundError) as e:
        print(f"vict ask: error: {e}", file=sys.stderr)
        return 2
    (answer,) = engine.answer([image], [args.question], context, args.style, max_new_tokens=args.max_new_tokens)
    if args.json:
        print(json.dumps({"image": args.image, **answer.to_dict()}, indent=2))
        return 0
    if context.kind == "self":
        print(f"caption: {answer.caption}")
    print(f"answer: {answer.answer}")
    return 0
