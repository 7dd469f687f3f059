"""The `vict` command line: a thin table from subcommands to the modules that implement them.

Each entry names a module exposing ``add_arguments(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int``. Modules are imported only when their subcommand is used, so
``vict --help`` stays instant and a broken optional dependency of one command never breaks another.

Errors: an error the user can act on is printed as one line (or the message's own lines), never a traceback:
``vict <command>: error: <message>``. Exit status 2 when the command cannot run as given (bad config or
arguments, missing or unreadable input data, a permission problem, a busy or non-empty output folder:
``ValueError``, ``KeyError``, ``FileNotFoundError``, ``PermissionError``, ...); 1 when the run itself failed
(a non-finite loss, ``FloatingPointError``; an ``OSError`` on a named file; a ``RuntimeError`` raised by vict's own
code); 130 on Ctrl-C. An exception class may set its status with an ``exit_code`` attribute. Anything else is a
bug and keeps its traceback. ``vict --debug <command> ...`` or ``VICT_DEBUG=1`` shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from pathlib import Path

# name -> (module, one-line summary). Keep sorted by the order a newcomer meets them.
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("vict.recipes.quickstart", "run the paper in miniature on the built-in world, offline"),
    "data": ("vict.data.cli", "generate the miniature world, inspect data sets and built instructions"),
    "train": ("vict.recipes.train_cli", "train a VICT model from a YAML config with dotted overrides"),
    "eval": ("vict.recipes.evaluate_cli", "run a model on a data split and write report.json + report.md"),
    "score": ("vict.eval.cli", "score prediction files with the official caption/GQA/VQAv2/ScienceQA rules"),
    "caption": ("vict.recipes.generate_cli", "caption images with a trained checkpoint"),
    "ask": ("vict.recipes.ask_cli", "ask a trained checkpoint a question, with or without context"),
    "serve": ("vict.serve.cli", "serve a checkpoint over an OpenAI-compatible HTTP API (/v1/chat/completions)"),
    "demo": ("vict.serve.demo_cli", "open a web demo (Gradio) of a checkpoint: an image, a question, a context"),
    "analyze": ("vict.eval.analyze_cli", "Q-Former token / LLM vocabulary similarity analysis"),
    "methods": ("vict.methods.cli", "list the registered methods and connectors, with what each trains"),
    "transfer": ("vict.transfer.cli", "VPGTrans: fit the word converter between two LMs' embedding spaces"),
    "zoo": ("vict.zoo.cli", "build the miniature model zoo, or check the shipped one's checksums"),
    "inspect": ("vict.models.cli", "build a model (named builder or checkpoint) and print its parts"),
    "validate": ("vict.config_cli", "load and validate a training config without running it"),
}

EPILOG = """examples:
  vict quickstart --preset fast          # the whole method in miniature, a few minutes on a laptop CPU
  vict methods                           # the registered methods: what each one trains
  vict inspect tiny --method lora        # build the tiny model, print trainable parameters by part
  vict data world --out world --images 200 --seed 0
  vict train configs/world/vict_lora.yaml train.max_steps=50
  vict score gqa --predictions preds.json --questions testdev_balanced_questions.json
  vict --debug train configs/world/vict_lora.yaml   # an error shows its full traceback (or VICT_DEBUG=1)

errors print one line, `vict COMMAND: error: ...`; exit status 0 done, 2 the command cannot run as given
(config, arguments, data, permissions, a busy or non-empty output folder), 1 the run failed (e.g. a non-finite
loss), 130 interrupted.
"""

DEBUG_ENV = "VICT_DEBUG"
"""Set to 1 to show the traceback of every error (as ``vict --debug``)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vict",
        description="Give any Hugging Face causal LM eyes, cheaply (Visual In-Context Tuning).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--debug", action="store_true", help=f"show the full traceback of an error (also: {DEBUG_ENV}=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; callable from tests as ``main([...])``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # peft calls a transformers API deprecated in 5.x on every model build; the warning is not the user's to act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    debug = os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")
    while argv and argv[0] == "--debug":  # a global option: before the subcommand
        debug, argv = True, argv[1:]
    if not argv or argv[0] not in COMMANDS:
        parser = _parser()
        args = parser.parse_args(argv)
        if args.version:
            from vict import __version__

            print(__version__)
            return 0
        parser.print_help()
        return 0 if not argv else 2
    name, rest = argv[0], argv[1:]
    module_name, summary = COMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(
        prog=f"vict {name}",
        description=summary,
        epilog=getattr(module, "EPILOG", None),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(sub)
    # Intermixed parsing lets options follow positional overrides (`vict train CFG lr=1e-3 --resume DIR`);
    # argparse cannot intermix around nested subcommands, so those parse the ordinary way.
    has_subcommands = any(isinstance(action, argparse._SubParsersAction) for action in sub._actions)
    args = sub.parse_args(rest) if has_subcommands else sub.parse_intermixed_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"vict {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        code = error_exit_code(err)
        if code is None:  # not an error the user can act on: a bug, whose traceback is the report
            raise
        if debug:
            traceback.print_exc()
        print(f"vict {name}: error: {error_message(err)}", file=sys.stderr)
        return code


_PACKAGE_DIR = Path(__file__).resolve().parent
_USAGE_ERRORS = (
    ValueError,
    KeyError,
    FileNotFoundError,
    PermissionError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
)


def error_exit_code(err: BaseException) -> int | None:
    """The exit status of an error the user can act on (see the module docstring); ``None`` for a bug."""
    code = getattr(err, "exit_code", None)
    if isinstance(code, int):
        return code
    if isinstance(err, FloatingPointError):  # the trainer's non-finite loss
        return 1
    if isinstance(err, _USAGE_ERRORS):
        return 2
    if isinstance(err, OSError) and err.filename is not None:  # a disk full, an I/O error, on a named file
        return 1
    if isinstance(err, RuntimeError) and _raised_in_vict(err):
        return 1
    return None


def _raised_in_vict(err: BaseException) -> bool:
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE_DIR)


def error_message(err: BaseException) -> str:
    """The message of ``err`` for one error line: ``OSError``s as ``reason: file``, a ``KeyError``'s key named, and
    an error re-raised from a DataLoader worker without the worker's traceback."""
    if isinstance(err, KeyError) and len(err.args) == 1:
        key = err.args[0]
        return key if isinstance(key, str) and " " in key else f"missing key {key!r}"
    if isinstance(err, OSError) and err.strerror:
        message = err.strerror
        if err.filename is not None:
            message += f": {err.filename}" + (f" -> {err.filename2}" if err.filename2 is not None else "")
        return message
    message = str(err) or type(err).__name__
    head, sep, tail = message.partition("\nOriginal Traceback (most recent call last):\n")
    if sep:  # torch's DataLoader re-raises a worker's error with the worker's traceback inside the message
        lines, prefix = tail.rstrip().splitlines(), f"{type(err).__name__}: "
        starts = [i for i, line in enumerate(lines) if line.startswith(prefix)]  # the last one: the error raised
        original = "\n".join(lines[starts[-1] :]).removeprefix(prefix) if starts else lines[-1] if lines else ""
        message = f"{original} ({head.strip().rstrip('.').lower()})"
    return message


if __name__ == "__main__":
    sys.exit(main())
