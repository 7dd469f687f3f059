"""The pretrained miniature zoo that ships with the package, checked by SHA-256 before every use.

Users of the real method download BLIP-2 and a LLaMA; users of the miniature get its zoo with the package:
``src/vict/zoo/shipped/<preset>/`` holds a complete build (``blip2/``, ``source_lm/``, ``target_lm/``,
``zoo.json``) and ``SHA256SUMS`` (``<hex>  <relative path>`` per file, ``sha256sum`` format, so
``sha256sum -c SHA256SUMS`` checks it too). ``vict zoo build --preset default --ship`` rebuilds it; at the recorded
thread count and kernels it reproduces the shipped bytes (``zoo.json`` records the first losses of every stage,
and a slow test rebuilds a prefix and compares).

``resolve_zoo`` is what the quickstart and ``model.builder: zoo`` call: the shipped zoo for a shipped preset,
otherwise a build in the cache folder.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from vict.checkpoint import atomic_directory
from vict.zoo.build import ZooPaths, build_zoo
from vict.zoo.cache import MANIFEST
from vict.zoo.presets import get_preset
from vict.zoo.training import ProgressFn, quiet

SHIPPED_ROOT = Path(__file__).parent / "shipped"
CHECKSUMS = "SHA256SUMS"
SHIPPED_PRESETS: tuple[str, ...] = ("default",)
"""Presets whose build ships in ``SHIPPED_ROOT`` (seed 0)."""
SHIPPED_SEED = 0


class ZooIntegrityError(RuntimeError):
    """A shipped zoo file is missing, damaged or unlisted."""


def rebuild_command(preset: str) -> str:
    return f"vict zoo build --preset {preset} --ship"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != CHECKSUMS)


def write_checksums(root: Path) -> Path:
    """Write ``root/SHA256SUMS`` over every file under ``root``."""
    root = Path(root)
    lines = [f"{sha256_file(root / rel)}  {rel}" for rel in _files(root)]
    (root / CHECKSUMS).write_text("\n".join(lines) + "\n")
    return root / CHECKSUMS


def verify(root: Path, preset: str = "default") -> None:
    """Check every file of ``root`` against ``root/SHA256SUMS``; raise ``ZooIntegrityError`` naming the first
    damaged, missing or unlisted file and the commands that restore it."""
    root = Path(root)
    fix = f"restore it with `git checkout -- {root}` or rebuild it with `{rebuild_command(preset)}`"
    sums = root / CHECKSUMS
    if not sums.is_file():
        raise ZooIntegrityError(f"{sums} is missing: the shipped zoo {root} cannot be checked; {fix}")
    expected: dict[str, str] = {}
    for n, line in enumerate(sums.read_text().splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ZooIntegrityError(f"{sums}: line {n} is not '<sha256>  <path>' ({line!r}); {fix}")
        expected[rel] = digest
    for rel, digest in expected.items():
        path = root / rel
        if not path.is_file():
            raise ZooIntegrityError(f"{path} is missing from the shipped zoo; {fix}")
        actual = sha256_file(path)
        if actual != digest:
            raise ZooIntegrityError(f"{path} is damaged: its SHA-256 is {actual}, {CHECKSUMS} records {digest}; {fix}")
    unlisted = sorted(set(_files(root)) - set(expected))
    if unlisted:
        raise ZooIntegrityError(
            f"{root / unlisted[0]} is not listed in {sums} ({len(unlisted)} unlisted file(s)): remove it, or "
            f"rebuild with `{rebuild_command(preset)}`"
        )


def shipped_dir(preset: str) -> Path:
    return SHIPPED_ROOT / preset


def shipped_zoo(preset: str = "default", check: bool = True) -> ZooPaths:
    """The shipped build of ``preset``, verified (``check=False`` skips the SHA-256 pass)."""
    if preset not in SHIPPED_PRESETS:
        raise ValueError(f"zoo preset {preset!r} does not ship; shipped presets: {list(SHIPPED_PRESETS)}")
    root = shipped_dir(preset)
    if not (root / MANIFEST).is_file():
        raise ZooIntegrityError(
            f"{root / MANIFEST} is missing: the shipped {preset!r} zoo is not there; restore it with "
            f"`git checkout -- {root}` or rebuild it with `{rebuild_command(preset)}`"
        )
    if check:
        verify(root, preset)
    return ZooPaths.at(root, reused=True)


def ship(build: ZooPaths, preset: str) -> ZooPaths:
    """Copy a finished build into ``SHIPPED_ROOT/preset`` (atomically) and write its checksums."""
    target = shipped_dir(preset)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(target) as tmp:
        shutil.copytree(build.root, tmp, dirs_exist_ok=True)
        write_checksums(tmp)
    return ZooPaths.at(target, reused=True)


def open_zoo(folder: str | Path) -> ZooPaths:
    """A finished zoo build given by its folder (``vict quickstart --zoo``): ``zoo.json``, ``blip2/``, ``source_lm/``
    and ``target_lm/`` must be there (a ``ZooIntegrityError`` names what is missing and how to build one), and a
    folder with ``SHA256SUMS`` (a shipped zoo) is checked against it."""
    root = Path(folder)
    build = "build one with `vict zoo build --preset NAME [--set KEY=VALUE] --out DIR` and pass DIR/<key>"
    if not root.is_dir():
        raise ZooIntegrityError(f"zoo folder {root} does not exist; {build}")
    if not (root / MANIFEST).is_file():
        raise ZooIntegrityError(f"{root} is not a finished zoo build (no {MANIFEST}); {build}")
    paths = ZooPaths.at(root, reused=True)
    for sub in (paths.blip2_dir, paths.source_lm_dir, paths.target_lm_dir):
        if not (sub / "config.json").is_file():
            raise ZooIntegrityError(f"{sub}/config.json is missing: {root} is not a complete zoo build; {build}")
    if (root / CHECKSUMS).is_file():
        verify(root, paths.manifest()["config"].get("name", "default"))
    return paths


def resolve_zoo(preset: str, cache_dir: Path, progress: ProgressFn = quiet) -> ZooPaths:
    """The zoo of ``preset``: the shipped one (checked) if it ships, else a seed-0 build cached in ``cache_dir``."""
    get_preset(preset)  # a clear error for an unknown name
    if preset in SHIPPED_PRESETS:
        zoo = shipped_zoo(preset)
        progress(f"zoo: using the shipped {preset!r} zoo {zoo.root} (SHA-256 checked)")
        return zoo
    return build_zoo(Path(cache_dir), preset, seed=SHIPPED_SEED, progress=progress)
