"""``vict zoo``: build the miniature model zoo (or rebuild the shipped one) and check the shipped zoo's checksums."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EPILOG = """examples:
  vict zoo verify                               # SHA-256 check of the shipped zoo (src/vict/zoo/shipped/default)
  vict zoo build --preset fast --out runs/zoo   # a rough zoo in minutes, cached in runs/zoo/<hash>/
  vict zoo build --preset default --ship        # rebuild the shipped zoo (~1 hour on one core) and its SHA256SUMS
  vict zoo build --preset default --set blip2.reading_steps=600 --out runs/zoo
                                                # another zoo (here with the reading stage, docs/tuning.md);
                                                # run the quickstart on it: vict quickstart --zoo runs/zoo/<key>

The build is reproducible at a fixed thread count (the preset's num_threads) and fixed CPU kernels: the shipped
zoo was built with ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 in the environment.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="build a zoo preset (vict.zoo.presets)")
    build.add_argument("--preset", default="default", help="micro, fast or default (default: default)")
    build.add_argument("--seed", type=int, default=0, help="seed of the build (the shipped zoo is seed 0)")
    build.add_argument("--out", default="runs/zoo", help="cache folder of builds (default: runs/zoo)")
    build.add_argument(
        "--ship", action="store_true", help="also copy the build into the package's shipped zoo and write SHA256SUMS"
    )
    build.add_argument(
        "--max-steps", type=int, default=None, help="only the first N steps of every stage (reproducibility check)"
    )
    build.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a setting of the preset (dotted, repeatable), e.g. blip2.reading_steps=600 or "
        "target_lm.num_layers=4; the build gets its own key",
    )
    verify = sub.add_parser("verify", help="check the shipped zoo against its SHA256SUMS")
    verify.add_argument("--preset", default="default", help="shipped preset (default: default)")


def run(args: argparse.Namespace) -> int:
    from vict.zoo.build import build_zoo
    from vict.zoo.presets import get_preset, with_overrides
    from vict.zoo.shipped import SHIPPED_PRESETS, ZooIntegrityError, ship, shipped_zoo

    if args.zoo_command == "verify":
        try:
            zoo = shipped_zoo(args.preset)
        except (ZooIntegrityError, ValueError) as err:
            print(f"error: {err}")
            return 1
        print(f"ok: {zoo.root} matches its SHA256SUMS")
        return 0
    try:
        config = with_overrides(get_preset(args.preset), args.overrides)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    if args.ship and (
        args.preset not in SHIPPED_PRESETS or args.seed != 0 or args.max_steps is not None or args.overrides
    ):
        print(
            f"error: --ship takes a full seed-0 build of a shipped preset ({list(SHIPPED_PRESETS)}) as it is, "
            "without --set"
        )
        return 2
    zoo = build_zoo(Path(args.out), config, seed=args.seed, max_steps=args.max_steps)
    manifest = zoo.manifest()
    print(json.dumps({"dir": str(zoo.root), "timings_s": manifest["timings_s"]}, indent=2))
    if args.ship:
        shipped = ship(zoo, args.preset)
        print(f"shipped: {shipped.root} (checksums in SHA256SUMS)")
    return 0
