"""Find the images to predict, and refuse folder set-ups that cannot work, before any model is loaded.

Rules:

* ``patterns`` are file extensions (``"png"``, ``".png"`` and ``"*.png"`` all mean the same), matched
  case-insensitively; the walk is recursive and follows symbolic links to folders, visiting each real
  folder once (a link loop is walked once, not forever). The folders under ``input_dir`` are walked by
  their own names first, and links to folders after them: a link to a folder already walked (``latest ->
  sol0100``) is said once (info) and not walked again, so a folder's images keep its own name whatever its
  links are called (the first name walked took them: ``latest/x.png`` for ``sol0100/x.png``, since
  ``latest`` sorts first). Hidden files and folders (names starting with ``.``) are skipped: that is where
  temporary files live.
* Outputs mirror the relative path, so ``a/x.png`` and ``b/x.png`` never collide. Two inputs in the
  **same folder with the same stem** (``x.jpg`` and ``x.png``) would write the same ``x.mask.png``: both
  become error rows asking the user to rename one. Adding the extension to the output name instead was
  rejected because it would make every output name depend on what else is in the folder.
* Outputs never leave ``output_dir``. An input reached through a symbolic link (to a file or a folder
  anywhere, even outside ``input_dir``) is named by its path *as walked* under ``input_dir``, never by the
  link's target, so its outputs mirror that walked path. :func:`output_escape` refuses (as an error row) an
  input whose relative path is absolute or has ``..`` parts, or whose output folder resolves outside
  ``output_dir`` (a symbolic link planted inside ``output_dir``).
* ``output_dir`` inside ``input_dir`` is refused (outputs would be read as inputs next time), and so is
  ``input_dir`` inside ``output_dir``: an input sub-folder named like a mirrored output folder would receive
  outputs (e.g. ``IN=OUT/in`` and ``IN/in/x.png`` -> ``OUT/in/x.mask.png`` = ``IN/x.mask.png``), which are
  then read back as inputs. Keep the two folders side by side.
* Folders that hold no photographs are not searched however they are reached: ``output_dir`` through a
  symbolic link under ``input_dir`` (its masks and overlays were predicted as photographs, more each run),
  a ``labels_dir`` inside ``input_dir`` (:func:`discover`'s ``skip``) and a sub-folder that is another
  run's ``output_dir`` (it holds ``prediction_settings.json``); a warning names each.
* Folder-level problems (missing input folder, output folder inside the input folder or the reverse, no
  image at all) raise :class:`~marsunits.errors.DataError` / :class:`~marsunits.errors.ConfigError` with
  one sentence.
"""

from __future__ import annotations

import errno
import logging
import os
from collections import defaultdict, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from marsunits.data.folder import OTHER_RASTER_EXTENSIONS
from marsunits.data.io import IMAGE_EXTENSIONS
from marsunits.errors import ConfigError, DataError, some_of
from marsunits.user_paths import expand_home, meant_path

log = logging.getLogger(__name__)

#: Files that make a folder a ``predict.py`` run's ``output_dir`` (``writers.OTHER_RUN_MARKERS``; not imported
#: from there, which loads shapely and tifffile: a test checks they agree).
_OTHER_RUN_MARKERS = ("prediction_settings.json", ".predict.claim")


@dataclass(frozen=True)
class InputFile:
    """One input image.

    Attributes:
        path: Absolute path of the file.
        rel: Path relative to the input folder (POSIX form, with extension): the manifest key.
    """

    path: Path
    rel: PurePosixPath


@dataclass(frozen=True)
class InputProblem:
    """A file or folder found during discovery that cannot be predicted, with the reason."""

    rel: PurePosixPath
    message: str


def normalise_patterns(patterns: Sequence[str] | str | int | float) -> tuple[str, ...]:
    """``["*.PNG", "jpg"]`` -> ``(".png", ".jpg")``.

    A single string is one extension or a comma-separated list (``patterns=jpg`` on the command line gives the
    string ``"jpg"``, which must not be read letter by letter); a single number is one extension
    (``patterns=123``, which the command line reads as the number 123, stopped with a TypeError traceback).

    Raises:
        ConfigError: If the list is empty or a pattern contains a path separator or a wildcard elsewhere.
    """
    if isinstance(patterns, bool) or patterns is None:
        raise ConfigError(f"patterns must be file extensions like 'png' or '*.png', got {patterns!r}")
    if isinstance(patterns, int | float):
        patterns = str(patterns)
    if isinstance(patterns, str):
        patterns = [part for part in patterns.split(",") if part.strip()]
    exts = []
    for raw in patterns:
        p = str(raw).strip().lower().removeprefix("*")
        p = p if p.startswith(".") else f".{p}"
        if len(p) < 2 or any(ch in p for ch in "/\\*?[]"):
            raise ConfigError(
                f"patterns must be file extensions like 'png' or '*.png', got {raw!r}; fix the patterns"
            )
        exts.append(p)
    if not exts:
        raise ConfigError("patterns is empty; give at least one extension, e.g. patterns=[jpg,png]")
    return tuple(dict.fromkeys(exts))


def check_folders(input_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Resolve and validate the two folders; returns them absolute.

    Raises:
        DataError: The input folder is missing, is not a folder or cannot be listed, ``output_dir`` is an
            existing file, or either is a symbolic link loop.
        ConfigError: ``output_dir`` is the input folder or lies inside it (outputs would be read as inputs
            on the next run), or ``input_dir`` lies inside ``output_dir`` (see the module docstring).
    """
    inp = resolve_option_path(input_dir, "input_dir")
    out = resolve_option_path(output_dir, "output_dir")
    if not inp.exists():
        meant = meant_path(inp, folder=True)
        hint = f"; did you mean input_dir={meant}?" if meant else ""
        raise DataError(
            f"input_dir {inp} does not exist; pass an existing folder of images as input_dir=...{hint}"
        )
    if not inp.is_dir():
        # One image given, as a geologist tries one frame first: "pass the folder that contains the images"
        # mapped every image of that folder and its subfolders, maybe hundreds, without saying so.
        raise DataError(
            f"input_dir {inp} is a file, not a folder: predict.py maps every image of a folder "
            f"(input_dir={inp.parent} maps every image there, subfolders included); to map this image alone, "
            "give a folder holding it alone as input_dir, or from Python "
            f"UnitMapper.load(...).map({str(inp)!r}) (docs/prediction.md)"
        )
    try:  # here too, before a sharded run spawns its ranks (each would stop with a traceback)
        with os.scandir(inp):
            pass
    except OSError as err:
        raise _unlistable_input_dir(inp, err) from err
    if out == inp or inp in out.parents:
        raise ConfigError(
            f"output_dir {out} is inside input_dir {inp}, so outputs would be read as inputs next time; "
            "choose an output_dir outside the input folder"
        )
    if out in inp.parents:
        raise ConfigError(
            f"input_dir {inp} is inside output_dir {out}, so outputs could be written among the inputs and "
            "read as inputs next time; choose an output_dir that does not contain the input folder"
        )
    if out.exists() and not out.is_dir():
        raise DataError(f"output_dir {out} exists and is a file; choose a folder path for output_dir")
    return inp, out


def resolve_option_path(folder: str | os.PathLike[str], option: str) -> Path:
    """The path given as ``option`` (``input_dir``, ``ckpt_path``, ...) absolute, its links resolved.

    Raises:
        DataError: It is a symbolic link loop (Python's "RuntimeError: Symlink loop" traceback otherwise;
            an ``OSError`` ELOOP from Python 3.13).
    """
    path = expand_home(folder)
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno != errno.ELOOP:
            raise
        raise DataError(
            f"{option} {path.absolute()} is a symbolic link loop (a link that leads back to itself); fix or "
            "remove the link, or give another path"
        ) from exc


def discover(
    input_dir: Path, patterns: Sequence[str] | str, skip: Mapping[Path, str] | None = None
) -> tuple[list[InputFile], list[InputProblem]]:
    """List the images under ``input_dir`` (sorted by relative path) and the problems met on the way.

    Problems are unreadable sub-folders and same-stem collisions (see module docstring); colliding files
    are removed from the returned inputs.

    Args:
        input_dir: The resolved input folder.
        patterns: File extensions (:func:`normalise_patterns`).
        skip: ``{resolved folder: what it is}``: folders not searched, nor anything under them, however they
            are reached (``output_dir`` through a symbolic link under ``input_dir``, whose outputs were read
            back as photographs, more of them each run; ``labels_dir`` inside ``input_dir``, whose masks
            were). Each one reached is said once, as a warning.

    Raises:
        DataError: If no file matches ``patterns`` and nothing else was found either, or ``input_dir`` itself
            cannot be listed (a sub-folder that cannot is a problem row).
    """
    exts = normalise_patterns(patterns)
    problems: list[InputProblem] = []
    files: list[InputFile] = []
    unread: list[str] = []  # images in formats the reader does not read, named (they were left out silently)
    # Images in a format that is read but that ``patterns`` leaves out, by extension: named when nothing
    # matched (patterns=png on a folder of JPEGs was told only to "check input_dir and patterns").
    left_out: dict[str, int] = defaultdict(int)
    seen: dict[str, str] = {}  # real folder -> the path it was walked as
    unsearched: set[str] = set()  # real folders met but not searched (skip, another run's output_dir)
    skipped = {os.fspath(folder): what for folder, what in (skip or {}).items()}

    def on_error(err: OSError) -> None:
        where = Path(err.filename) if err.filename else input_dir
        if where == input_dir:
            # Not one folder's images missing but all of them: as an error row, an overwrite=true run took
            # every earlier output for one of an input removed since and deleted them all.
            raise _unlistable_input_dir(input_dir, err) from err
        fix = (
            f"make it readable (chmod a+rx '{where}') or move it out of input_dir"
            if isinstance(err, PermissionError)
            else "check the folder and its disk, or move it out of input_dir"
        )
        problems.append(
            InputProblem(
                _rel(where, input_dir),
                f"cannot list folder {where} ({err.strerror or err}), so its images were not predicted; "
                + fix,
            )
        )

    # Folders by their own names first, then the links to folders met on the way (breadth first over link
    # levels): a folder first walked under a link's name lost its own name to the link.
    roots = deque([os.fspath(input_dir)])
    walks = (
        (dirpath, dirnames, filenames)
        for root in _drain(roots)
        for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False)
    )
    for dirpath, dirnames, filenames in walks:
        real = os.path.realpath(dirpath)
        if real in seen:  # a symbolic link to a folder already walked (a loop back to an ancestor included)
            if seen[real] != dirpath:
                log.info(
                    "input_dir/%s is a link to input_dir/%s, %s",
                    _rel(Path(dirpath), input_dir).as_posix(),
                    _rel(Path(seen[real]), input_dir).as_posix(),
                    "which is not searched for images" if real in unsearched else "searched under that name",
                )
            dirnames[:] = []
            continue
        seen[real] = dirpath
        inside = next((f for f in skipped if real == f or real.startswith(f.rstrip(os.sep) + os.sep)), None)
        if inside is not None:
            log.warning(
                "input_dir/%s is %s%s: not searched for images",
                _rel(Path(dirpath), input_dir).as_posix(),
                "" if real == inside else "inside ",
                skipped[inside],
            )
            unsearched.add(real)
            dirnames[:] = []
            continue
        marker = next((m for m in _OTHER_RUN_MARKERS if m in filenames), None)
        if marker is not None and Path(dirpath) != input_dir:
            # Another run's output_dir under input_dir (predict sol100/ into preds_sol100/, then the parent
            # folder): its masks and overlays were predicted as photographs, garbage rows among the real ones.
            log.warning(
                "input_dir/%s is another predict.py run's output_dir (it holds %s): not searched for images",
                _rel(Path(dirpath), input_dir).as_posix(),
                marker,
            )
            unsearched.add(real)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        roots.extend(os.path.join(dirpath, d) for d in links)  # walked after every folder found by name
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in exts:
                if not name.startswith(".") and Path(name).suffix.lower() in OTHER_RASTER_EXTENSIONS:
                    unread.append(_rel(Path(dirpath) / name, input_dir).as_posix())
                elif not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    left_out[Path(name).suffix.lower()] += 1
                continue
            path = Path(dirpath) / name
            files.append(InputFile(path, _rel(path, input_dir)))

    files.sort(key=lambda f: f.rel.as_posix())
    groups: dict[tuple[PurePosixPath, str], list[InputFile]] = defaultdict(list)
    for f in files:
        groups[(f.rel.parent, f.rel.stem)].append(f)
    kept = []
    for f in files:
        group = groups[(f.rel.parent, f.rel.stem)]
        if len(group) == 1:
            kept.append(f)
            continue
        others = ", ".join(g.rel.name for g in group if g is not f)
        problems.append(
            InputProblem(
                f.rel,
                f"same folder and stem as {others}: their outputs ({f.rel.stem}.mask.png, ...) would "
                "overwrite each other; rename one of them",
            )
        )
    unread.sort()
    files_in = f"{len(unread)} file{'s' if len(unread) > 1 else ''} in formats that are not read"
    convert = f"{some_of(unread, 5)}; convert {'them' if len(unread) > 1 else 'it'} to PNG, JPEG or TIFF"
    if not kept and not problems:
        raise DataError(
            f"no images matching {', '.join('*' + e for e in exts)} found under input_dir {input_dir} "
            "(searched recursively); check input_dir and patterns"
            + _left_out_by_patterns(left_out, exts)
            + (f"; it holds {files_in}: {convert}" if unread else "")
        )
    if unread:
        log.warning("input_dir holds %s, left out of this run and its reports: %s", files_in, convert)
    problems.sort(key=lambda p: p.rel.as_posix())
    return kept, problems


def _left_out_by_patterns(left_out: Mapping[str, int], exts: Sequence[str]) -> str:
    """The clause naming the images of formats that are read but that ``patterns`` (``exts``) leaves out,
    by extension, with the ``patterns`` that takes them too, or "" for none."""
    if not left_out:
        return ""
    found = sorted(left_out, key=lambda e: (-left_out[e], e))
    counts = ", ".join(f"{left_out[e]} {e} file{'s' if left_out[e] > 1 else ''}" for e in found)
    wanted = ",".join(e.lstrip(".") for e in [*exts, *found])
    return (
        f"; it holds {counts}, which patterns leaves out: give 'patterns=[{wanted}]', or leave patterns out "
        f"(the default reads {', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)})"
    )


def _unlistable_input_dir(input_dir: Path, err: OSError) -> DataError:
    """The refusal of an ``input_dir`` that cannot be listed (``err``), with the fix."""
    fix = (
        f"make it readable (chmod a+rx '{input_dir}')"
        if isinstance(err, PermissionError)
        else "check the folder and its disk"
    )
    return DataError(f"input_dir {input_dir} cannot be listed ({err.strerror or err}); {fix}, then run again")


def _drain(queue: deque[str]) -> Iterator[str]:
    """The items of ``queue`` from the left, including those added while it is being drained."""
    while queue:
        yield queue.popleft()


def output_escape(output_dir: Path, rel: PurePosixPath) -> str | None:
    """Why the outputs of input ``rel`` would land outside ``output_dir``, or None when they stay inside.

    Args:
        output_dir: The resolved output folder.
        rel: The input's path relative to ``input_dir`` as walked.
    """
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        return (
            f"refused: the relative path {rel.as_posix()!r} would place outputs outside output_dir "
            f"{output_dir}; move the file under input_dir"
        )
    # Resolve the deepest existing ancestor: a symbolic link inside output_dir could point elsewhere.
    folder = output_dir / rel.parent
    existing = folder
    while not existing.exists() and existing != output_dir and existing.parent != existing:
        existing = existing.parent
    real = existing.resolve()
    root = output_dir.resolve()
    if real != root and root not in real.parents:
        return (
            f"refused: output folder {folder} resolves to {real}, outside output_dir {root} (a symbolic link "
            "inside output_dir); remove the link or choose another output_dir"
        )
    return None


def _rel(path: Path, root: Path) -> PurePosixPath:
    try:
        return PurePosixPath(Path(os.path.relpath(path, root)).as_posix())
    except ValueError:  # different drives on Windows
        return PurePosixPath(path.as_posix())
