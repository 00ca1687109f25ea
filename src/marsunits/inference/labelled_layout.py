"""An ``input_dir`` that is a labelled dataset's root (``images/`` beside ``masks/``): the run's warning.

Its masks would be predicted as photographs (and find the scenes' cameras), which is seldom what was meant:
:func:`warn_labelled_layout` says so at the run's start, and :func:`labelled_layout_sentence` again in its
last line, where a long run's warning scrolled away. Both give the fix (``input_dir=<root>/images
labels_dir=<root>/masks``), in one wording.

Split from :mod:`marsunits.inference.runner`, whose session calls both: they need only ``input_dir`` and
the inputs found in it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

#: The run's logger: its lines are the runner's (``[marsunits.inference.runner]`` in ``predict.log``), as
#: they were before this module was split from it.
log = logging.getLogger("marsunits.inference.runner")

#: Sub-folders of a labelled dataset that hold label masks, not photographs.
_MASK_FOLDERS = ("masks", "labels")


def _labelled_layout(input_dir: Path) -> tuple[str, str] | None:
    """The mask folder (``masks`` or ``labels``) and the fix, where ``input_dir`` is the root of a labelled
    dataset (``images/`` beside ``masks/``): its masks would be predicted as photographs (and find the
    scenes' cameras), which is seldom what was meant. The one wording of the warning at the run's start
    and of the sentence in its last line (:func:`labelled_layout_sentence`); None for any other folder."""
    masks = [name for name in _MASK_FOLDERS if (input_dir / name).is_dir()]
    if not ((input_dir / "images").is_dir() and masks):
        return None
    fix = (
        "to predict the photographs and score them against the masks, give "
        f"input_dir={input_dir / 'images'} labels_dir={input_dir / masks[0]}"
    )
    return masks[0], fix


def _masks_among(folder: str, inputs: Iterable[str]) -> int:
    """How many of the ``inputs`` (relative posix paths) are in ``folder``, a labelled dataset's masks."""
    return sum(1 for rel in inputs if rel.startswith(f"{folder}/"))


def warn_labelled_layout(input_dir: Path, inputs: Iterable[str]) -> None:
    """At the run's start, warn where ``input_dir`` is a labelled dataset's root (see _labelled_layout) and
    some of its masks are among the ``inputs`` (relative posix paths). Patterns that leave the masks out
    (PNG masks, ``patterns=[jpg]``) predict the photographs only: the warning said the masks were predicted
    as photographs all the same."""
    layout = _labelled_layout(input_dir)
    if layout is None:
        return
    folder, fix = layout
    n = _masks_among(folder, inputs)
    if n:
        log.warning(
            "input_dir %s holds images/ and %s/, a labelled dataset's layout: the %s in %s/ %s predicted "
            "as photographs too; %s",
            input_dir,
            folder,
            "1 file" if n == 1 else f"{n} files",
            folder,
            "is" if n == 1 else "are",
            fix,
        )


def labelled_layout_sentence(input_dir: Path, inputs: Sequence[str]) -> str:
    """The warning of :func:`warn_labelled_layout` again, for the run's last line (on a long run the warning
    scrolled away): how many of the ``inputs`` (relative posix paths) were a labelled dataset's masks, and
    the fix; "" where ``input_dir`` is no labelled dataset's root or none of its masks was an input."""
    layout = _labelled_layout(input_dir)
    if layout is None:
        return ""
    folder, fix = layout
    n = _masks_among(folder, inputs)
    if not n:
        return ""
    verb = "is" if n == 1 else "are"
    return (
        f" {n} of the inputs {verb} in {folder}/, a labelled dataset's masks predicted as photographs: {fix}."
    )
