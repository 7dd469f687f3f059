"""``vict ask``: ask a trained VICT checkpoint questions about images, with or without context.

``--image`` and ``--question`` may each be given several times: one image and several questions asks each question
about that image (its features and prompt prefix computed once), several images and one question asks it of each,
and equal numbers pair them in order. The rows are answered in batches of ``--batch-size`` (left padded; each row's
answer is the one it gets alone).

Context (at most one): ``--context-caption TEXT`` (a given caption), ``--context-qa Q A`` (a given question-answer
pair), ``--self-context`` (the model captions the image, then answers with that caption); without any, the
question is asked alone. The flags become one ``vict.inference.Context``; the engine does the rest.

Without ``--image`` the questions are asked text only (the engine's text-only rows: the prompt's image marker becomes
``Image: N/A``, as in LaVIN's mixed-modality training), in any context but ``--self-context``.
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
  vict ask --checkpoint runs/vict_lora/final --image img.png --self-context \\
      --question "what color is the circle?" --question "how many squares are there?"
  vict ask --checkpoint runs/lavin/final --question "which shapes have corners?"     # text only: no image
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``vict ask`` options."""
    parser.add_argument("--checkpoint", required=True, help="VICT checkpoint directory")
    parser.add_argument(
        "--image", action="append", default=[], help="image file (repeatable; none: the questions are asked text only)"
    )
    parser.add_argument("--question", required=True, action="append", help="the question (repeatable)")
    context = parser.add_mutually_exclusive_group()
    context.add_argument("--context-caption", metavar="TEXT", help="a caption of the image given as context")
    context.add_argument("--context-qa", nargs=2, metavar=("Q", "A"), help="another question-answer pair as context")
    context.add_argument("--self-context", action="store_true", help="caption the image first, answer with it")
    parser.add_argument("--style", choices=("short", "sentence"), default="short", help="answer style")
    parser.add_argument("--max-new-tokens", type=int, help="answer budget (default 10 short / 40 sentence)")
    parser.add_argument("--batch-size", type=int, default=8, help="questions per generation batch")
    parser.add_argument("--json", action="store_true", help="print the answer as a JSON object (a list for several)")
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


def pairs(images: list[str], questions: list[str]) -> list[tuple[str | None, str]]:
    """``(image, question)`` rows: one image for every question, one question for every image, or pairs in order;
    no image: every question text only (image ``None``)."""
    if not images:
        return [(None, q) for q in questions]
    if len(images) == 1 or len(questions) == 1 or len(images) == len(questions):
        n = max(len(images), len(questions))
        return [(images[i % len(images)], questions[i % len(questions)]) for i in range(n)]
    raise ValueError(
        f"{len(images)} --image and {len(questions)} --question: give one image, one question, or as many of each"
    )


def run(args: argparse.Namespace) -> int:
    """Validate the inputs (exit 2 naming the bad one), load the checkpoint, answer, print."""
    try:
        empty = [i for i, q in enumerate(args.question) if not q.strip()]
        if empty:
            raise ValueError(
                f"--question is empty (number {empty[0] + 1}): ask something, e.g. --question 'what color is the "
                "circle?'"
            )
        rows = pairs(args.image, args.question)
        context = context_from_args(args)
        if not args.image and context.kind == "self":
            raise ValueError("--self-context needs an --image: the model captions the image, then answers with it")
        if args.max_new_tokens is not None and args.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens {args.max_new_tokens}: must be >= 1")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size {args.batch_size}: must be >= 1")
        opened = {path: open_image(path, what="--image") for path in dict.fromkeys(args.image)}
        engine = VictEngine.from_checkpoint(args.checkpoint, device=args.device, batch_size=args.batch_size)
    except (ValueError, FileNotFoundError) as e:
        print(f"vict ask: error: {e}", file=sys.stderr)
        return 2
    answers = engine.answer(
        [None if path is None else opened[path] for path, _ in rows],
        [q for _, q in rows],
        context,
        args.style,
        max_new_tokens=args.max_new_tokens,
    )
    if args.json:
        out = [{"image": path, **a.to_dict()} for (path, _), a in zip(rows, answers)]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=2))
        return 0
    for (path, question), answer in zip(rows, answers):
        if len(rows) > 1:
            print(f"image: {'(none: text only)' if path is None else path}\nquestion: {question}")
        if context.kind == "self":
            print(f"caption: {answer.caption}")
        print(f"answer: {answer.answer}")
    return 0
