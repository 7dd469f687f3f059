"""``vict demo``: a Gradio web page to ask a checkpoint about images, in any context, with streamed answers.

Data flow: load the checkpoint into a ``VictEngine``, give it to one ``Batcher`` (its thread alone runs the engine),
build the page (``vict.serve.demo.build_demo``) and serve it on ``--host``:``--port`` until interrupted. The example
images are the first ``MAX_EXAMPLES`` images of ``--examples DIR`` or, by default, six scenes of the built-in
miniature world rendered into a temporary folder at start-up (offline, well under a second). No public share link is
ever made.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

EPILOG = """examples:
  vict demo --checkpoint runs/vict_lora/final                  # then open http://127.0.0.1:7860
  vict demo --checkpoint runs/vict_lora/final --examples world/images --port 8080
  vict demo --checkpoint runs/vict_lora/final --device cuda --max-batch-size 16 --host 0.0.0.0
"""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
MAX_EXAMPLES = 24
"""At most this many example images are shown (the first ones by name)."""
WORLD_EXAMPLES = 6
WORLD_IMAGE_SIZE = 64
"""The miniature world's own image size (``vict data world``'s default), which its models were trained on."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``vict demo`` options."""
    parser.add_argument("--checkpoint", required=True, help="VICT checkpoint directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument(
        "--examples", metavar="DIR", help="folder of example images (default: 6 scenes of the miniature world)"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--max-batch-size", type=int, default=8, help="questions decoded together at most")


def render_world_examples(
    out: Path, n: int = WORLD_EXAMPLES, seed: int = 0, size: int = WORLD_IMAGE_SIZE
) -> list[Path]:
    """Render the first ``n`` scenes of the miniature world (seed ``seed``) as PNGs into ``out``: the images
    ``vict data world --seed SEED`` makes, without its annotations."""
    from vict.data.world.render import png_bytes, render_scene
    from vict.data.world.scene import image_rng, sample_scene

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n):
        scene = sample_scene(image_rng(seed, index, "scene"), index + 1)
        picture = render_scene(scene, size, image_rng(seed, index, "render"))
        path = out / f"world-{index + 1}.png"
        path.write_bytes(png_bytes(picture))
        paths.append(path)
    return paths


def example_images(folder: str | Path) -> list[Path]:
    """The first ``MAX_EXAMPLES`` images of ``folder`` by name (``ValueError`` when there are none)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--examples {folder}: not a folder")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise ValueError(f"--examples {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    return found[:MAX_EXAMPLES]


def run(args: argparse.Namespace) -> int:
    """Check the options and gradio (exit 2 naming the problem), load the checkpoint, serve until Ctrl-C."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        print('vict demo: error: the demo needs gradio; install it with: pip install "vict[demo]"', file=sys.stderr)
        return 2
    from vict.inference import VictEngine
    from vict.serve.batcher import Batcher
    from vict.serve.demo import build_demo, launch

    workdir = tempfile.TemporaryDirectory(prefix="vict-demo-")
    try:
        if args.max_batch_size < 1:
            raise ValueError(f"--max-batch-size {args.max_batch_size}: must be >= 1")
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port {args.port}: must be in 0..65535")
        if args.examples is not None:
            examples = example_images(args.examples)
        else:
            examples = render_world_examples(Path(workdir.name) / "examples")
        engine = VictEngine.from_checkpoint(args.checkpoint, device=args.device, batch_size=args.max_batch_size)
    except (ValueError, FileNotFoundError) as e:
        workdir.cleanup()
        print(f"vict demo: error: {e}", file=sys.stderr)
        return 2
    batcher = Batcher(engine, max_batch_size=args.max_batch_size).start()
    demo = build_demo(engine, batcher, examples)
    try:
        _, url, _ = launch(demo, args.host, args.port, examples, prevent_thread_lock=True, quiet=True)
        print(f"vict demo: serving {args.checkpoint} on {url} (Ctrl-C to stop)", flush=True)
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    except OSError as e:  # the port is taken, or the host is not an address of this machine
        print(f"vict demo: error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    finally:
        batcher.stop()
        workdir.cleanup()
    return 0
