"""The browser tier: a ``vict demo`` served in-process, driven by the system Chromium through Playwright.

Fixtures (module scope): ``checkpoint`` (the tiny VICT model saved like ``tests/integration/test_ask_cli.py``'s, or
the checkpoint named by ``VICT_DEMO_CHECKPOINT``), ``scene`` (a 64 px miniature-world PNG: a large red circle top
left, a small blue square bottom right), ``reference`` (a separate engine on the same checkpoint: the expected
answers), ``demo_url`` (the demo on a free loopback port) and ``page`` (a headless Chromium tab on it).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("VICT_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 60_000


def chromium_path() -> str | None:
    found = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium") or shutil.which("chromium-browser")
    return found or None


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path) -> Path:
    if os.environ.get("VICT_DEMO_CHECKPOINT"):
        return Path(os.environ["VICT_DEMO_CHECKPOINT"])
    return tiny_checkpoint


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vict.data.world.render import png_bytes, render_scene
    from vict.data.world.scene import Scene, WorldObject

    objects = (WorldObject("circle", "red", "large", 0, 0), WorldObject("square", "blue", "small", 2, 2))
    picture = render_scene(Scene(1, (225, 225, 225), objects), 64, random.Random(0))
    path = tmp_path_factory.mktemp("img") / "scene.png"
    path.write_bytes(png_bytes(picture))
    return path


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from vict.serve.demo_cli import render_world_examples

    return render_world_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="module")
def reference(checkpoint: Path):
    from vict.inference import VictEngine

    return VictEngine.from_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def demo_url(checkpoint: Path, examples: list[Path]) -> Iterator[str]:
    pytest.importorskip("gradio", reason="the demo needs gradio (pip install 'vict[demo]')")
    from vict.inference import VictEngine
    from vict.serve.batcher import Batcher
    from vict.serve.demo import build_demo, launch

    engine = VictEngine.from_checkpoint(checkpoint)
    batcher = Batcher(engine).start()
    demo = build_demo(engine, batcher, examples)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = launch(demo, "127.0.0.1", port, examples, prevent_thread_lock=True, quiet=True)
    try:
        yield url
    finally:
        demo.close()
        batcher.stop()


@pytest.fixture(scope="module")
def page(demo_url: str):
    path = chromium_path()
    if path is None:
        pytest.skip(f"no Chromium binary ({CHROMIUM}, or chromium on PATH; set VICT_CHROMIUM to another one)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True)
        tab = browser.new_page(viewport={"width": 1200, "height": 900})
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(demo_url)
        tab.wait_for_selector("#vict-ask")
        try:
            yield tab
        finally:
            browser.close()
