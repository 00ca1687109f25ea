"""Command line: ``python -m marsunits.data.synthetic --out DIR --n N --seed S --size WxH [...]``.

Writes ``N`` scenes in the data layout under ``DIR`` (see :mod:`.dataset`: ``images/``, ``masks/``,
``contacts/``, ``cameras/``, ``classes.json``), ``DIR/scenes.json`` (the arguments, to tell the set apart
later) and, with ``--preview``, ``DIR/preview.png``, a contact sheet of the first scenes. A ``DIR`` that
already holds scenes is refused unless ``--overwrite`` (which first removes the files of those folders,
``scenes.json``, ``preview.png`` and ``classes.json``): written into, it mixed two sets, the new scenes
over the first old ones and the rest left at their old size, beside a stale preview. Bad arguments exit
with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from marsunits.atomic import atomic_write_text, remove_stale_temporaries
from marsunits.data.synthetic.config import MODES, SceneConfig
from marsunits.data.synthetic.dataset import write_scene
from marsunits.data.synthetic.preview import write_preview
from marsunits.data.synthetic.scene import generate_scene
from marsunits.errors import (
    STORAGE_ERRNOS,
    MarsUnitsError,
    TerminatedError,
    counted,
    readable,
    sigterm_raises,
    stop_said,
    storage_problem,
)

#: Scenes shown in the preview contact sheet.
PREVIEW_SCENES = 8


class UsageError(MarsUnitsError):
    """A bad command-line argument; the message is printed as one line and the exit status is 2 (a
    :class:`~marsunits.errors.MarsUnitsError`, as every error a user can fix is)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels like 320x240, got {text!r}")
    w, h = int(parts[0]), int(parts[1])
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"width and height must be positive, got {text!r}")
    return w, h


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return v


def _difficulty(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 <= v <= 1.0:  # also NaN
        raise argparse.ArgumentTypeError(f"expected a number from 0 (easy) to 1 (hard), got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m marsunits.data.synthetic",
        description="Render synthetic rover scenes (smooth volcanic vs rough olivine) with exact labels.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--n", type=_positive_int, default=8, help="number of scenes (default 8)")
    p.add_argument("--seed", type=_seed, default=0, help="series seed (default 0)")
    p.add_argument("--size", type=_size, default=(320, 240), help="WIDTHxHEIGHT (default 320x240)")
    p.add_argument("--mode", choices=MODES, default="color", help="colour, grey or mixed per scene")
    p.add_argument("--difficulty", type=_difficulty, default=0.5, help="0 (easy) .. 1 (hard), default 0.5")
    p.add_argument(
        "--preview",
        action="store_true",
        help=f"also write OUT/preview.png (contact sheet of the first {PREVIEW_SCENES})",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the scenes of an OUT that already holds some"
    )
    return p


#: What the generator writes under ``--out``: its folders and its files.
SCENE_FOLDERS = ("images", "masks", "contacts", "cameras")
SCENE_FILES = ("scenes.json", "preview.png", "classes.json")


def _earlier_outputs(out: Path) -> list[Path]:
    """Files the generator wrote under ``out`` before (its folders' files, ``scenes.json``, the preview).

    The temporaries a killed generation (SIGKILL, a power loss) left in its folders are removed first
    (:func:`~marsunits.atomic.remove_stale_temporaries`: only those of processes gone): they are no scenes,
    and had the next run refused as "already holds scenes (e.g. .0000.png.<pid>@....tmp)"."""
    found = [out / name for name in SCENE_FILES if (out / name).is_file()]
    for folder in SCENE_FOLDERS:
        if (out / folder).is_dir():
            remove_stale_temporaries(out / folder)
            found += sorted(f for f in (out / folder).iterdir() if f.is_file())
    return found


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UsageError(
            f"--out {out} is not a writable folder ({exc.strerror or exc}); choose another path"
        ) from None


def _stopped(exc: BaseException, out: Path, writing: str | None, done: int, n: int) -> int:
    """Say in one line why the generation stopped after ``done`` of ``n`` scenes and return the exit status
    (130 Ctrl-C, 143 SIGTERM, 2 a full or read-only disk); re-raise any other ``OSError``, and any ``exc``
    with ``MARSUNITS_TRACEBACK`` set. The files of the scene ``writing`` (some may be written: an image
    without its mask) are removed first, so ``out`` holds whole scenes only. It printed a traceback out of
    the renderer (SIGTERM: nothing) and left that scene half there."""
    if isinstance(exc, OSError) and exc.errno not in STORAGE_ERRNOS:
        raise exc
    if writing is not None:
        for part in (
            f"images/{writing}.png",
            f"masks/{writing}.png",
            f"contacts/{writing}.contact.geojson",
            f"cameras/{writing}.json",
        ):
            with contextlib.suppress(OSError):
                (out / part).unlink(missing_ok=True)
    if os.environ.get("MARSUNITS_TRACEBACK"):  # the traceback, as every command shows it then
        raise exc
    again = f"run the same command with --overwrite to render the set ({done} of {n} scenes written to {out})"
    full = storage_problem(exc, f"free space or choose another --out, then {again}", out)
    if full is not None:
        message, status = f"error: {full}", 2
    else:
        how, status = stop_said(exc)
        message = f"{how}; {again}"
    print(readable(message), file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad arguments or a full disk, 130 Ctrl-C, 143 SIGTERM:
    one line each; the scenes written before a stop are whole)."""
    try:
        args = build_parser().parse_args(argv)
        w, h = args.size
        try:
            config = SceneConfig(width=w, height=h, mode=args.mode, difficulty=args.difficulty)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        _check_writable(args.out)
        earlier = _earlier_outputs(args.out)
        if earlier and not args.overwrite:
            raise UsageError(
                f"--out {args.out} already holds scenes ({counted(len(earlier), 'file')}, e.g. "
                f"{earlier[0].name}); choose another folder, or add --overwrite to replace them"
            )
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for f in earlier:  # --overwrite: no old scene stays beside the new set
        f.unlink()
    t0 = time.perf_counter()
    shown = []
    done, writing = 0, None
    try:
        with sigterm_raises():
            for i in range(args.n):
                scene = generate_scene(args.seed, i, config)
                writing = scene.name
                write_scene(scene, args.out)
                writing, done = None, i + 1
                if args.preview and i < PREVIEW_SCENES:
                    shown.append(scene)
            # In the same guard: a disk that filled at preview.png, or a Ctrl-C while it was drawn, printed
            # a traceback once the scenes were written.
            if shown:
                write_preview(shown, args.out / "preview.png")
            record = {
                "n": args.n,
                "seed": args.seed,
                "size": f"{w}x{h}",
                "mode": args.mode,
                "difficulty": args.difficulty,
            }
            atomic_write_text(args.out / "scenes.json", json.dumps(record, indent=2) + "\n")
    except (KeyboardInterrupt, TerminatedError, OSError) as exc:
        return _stopped(exc, args.out, writing, done, args.n)
    dt = time.perf_counter() - t0
    print(  # a folder named in Latin-1 bytes as \xNN: a strict UTF-8 console refused it, scenes written
        readable(
            f"wrote {counted(args.n, 'scene')} to {args.out} in {dt:.1f} s (images/, masks/, contacts/, "
            "cameras/, classes.json, scenes.json" + (", preview.png)" if shown else ")")
        )
    )
    return 0
