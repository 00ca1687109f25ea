"""The contact maps of a prediction run (``map=true``): drawn at its end, and those of earlier runs removed.

:func:`write_contact_maps` merges the ground contacts of the run's images with a camera into
``contact_map.*`` (:func:`marsunits.boundary.contact_map.build_contact_map`), or says why none was drawn
(no image had a camera: said in the closing paragraph, and recorded as ``summary.json``'s
``no_contact_map_reason``); a map that
cannot be written (a folder under its name) is logged as an error, for the run to fail once its other
reports are written. Then the maps of earlier runs that this run did not draw are removed: with a warning
where the run has no ``map=true`` (:data:`NOT_ASKED_FOR_A_MAP` is its ``no_contact_map_reason``).

Split from :mod:`marsunits.inference.runner`, whose reports (:mod:`marsunits.inference.run_reports`) call
it: it needs only the folders, the rows, the contacts of the images with a camera and the model's record.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marsunits.boundary.camera.io import find_camera_file
from marsunits.inference.image_cameras import no_map_reason
from marsunits.inference.writers import printable

if TYPE_CHECKING:
    from marsunits.boundary.camera.base import CameraModel
    from marsunits.boundary.contact_io import ContactLine

#: The run's logger: its lines are the runner's (``[marsunits.inference.runner]`` in ``predict.log``), as
#: they were before this module was split from it.
log = logging.getLogger("marsunits.inference.runner")

#: ``summary.json``'s ``no_contact_map_reason`` of a run without ``map=true``.
NOT_ASKED_FOR_A_MAP = (
    "map=false: no contact map asked for; map=true draws one from the contacts of the images with a camera "
    "file"
)


#: The map files the log line names before "and N more".
_NAMED_MAPS = 4


def maps_written_line(maps: Sequence[Path], output_dir: Path) -> str:
    """The log line of the maps written: how many files (and maps), the folder, and the first few names.

    A run of 200 sites listed its 400 file names on one line."""
    pairs = len(maps) // 2  # a GeoJSON and a PNG a map (a site; a site split by its frames: two)
    shown = ", ".join(printable(p.name) for p in maps[:_NAMED_MAPS])
    more = len(maps) - min(len(maps), _NAMED_MAPS)
    return (
        f"contact map written: {len(maps)} file{'' if len(maps) == 1 else 's'} "
        f"({pairs} map{'' if pairs == 1 else 's'}) in {printable(os.fspath(output_dir))}: {shown}"
        + (f" and {more} more" if more else "")
    )


def write_contact_maps(
    output_dir: Path,
    input_dir: Path,
    rows: list[dict[str, Any]],
    map_items: Sequence[tuple[str, list[ContactLine], CameraModel]],
    *,
    asked: bool,
    max_range_m: float,
    model: Mapping[str, Any],
) -> tuple[list[Path], str | None, str | None]:
    """With ``map=true`` (``asked``): merge the ground contacts of the images with a camera into
    ``contact_map.*``, or, where no image had a camera, say why no map was drawn (for the closing paragraph,
    and recorded as ``summary.json``'s ``no_contact_map_reason``) in place of any file; a map that cannot be
    written (a folder under its name) is logged as an error and the other reports are still written. Then the
    maps of earlier runs that this run did not draw are removed, with a warning where this run has no
    ``map=true``.

    Args:
        output_dir: The run's ``output_dir``.
        input_dir: The run's ``input_dir`` (the images' camera files are found beside them).
        rows: The run's manifest rows, in the order recorded (why no image had a camera, where none had).
        map_items: ``(image rel path, contact lines, camera)`` of the images with a camera.
        asked: ``map=true``.
        max_range_m: Contacts farther from the camera are left off the map.
        model: The model the contacts are of (the session's ``model_record``), named in the map.

    Returns:
        The map files written; why no map was drawn (``summary.json``'s ``no_contact_map_reason``, None
        where one was); why a map asked for could not be written (None where it was: else the run fails).
    """
    from marsunits.boundary.contact_map import remove_stale_maps

    out = output_dir
    map_problem = None  # a map asked for that could not be written: the run fails
    maps: list[Path] = []
    no_map: str | None = NOT_ASKED_FOR_A_MAP  # summary.json's no_contact_map_reason
    if asked:
        try:
            if not map_items:
                # Said once, in the closing paragraph (RunReports._last_paragraph), not printed here.
                no_map = no_map_reason(input_dir, rows)
            else:
                # matplotlib: imported only when used
                from marsunits.boundary.contact_map import build_contact_map

                # By image path: the same map whichever process, or earlier run, handled which image.
                items = sorted(map_items, key=lambda item: item[0])
                # Named in the warning of a site name shared by PDS and pinhole cameras (two frames).
                files = {rel: find_camera_file(input_dir / rel) for rel, _, _ in items}
                maps = build_contact_map(items, out, max_range_m, camera_files=files, model=model)
                no_map = None
                log.info("%s", maps_written_line(maps, out))
        except IsADirectoryError as exc:  # a folder named contact_map.png: the other reports are written
            map_problem = no_map = str(exc)
            log.error("%s", map_problem)
    removed = remove_stale_maps(out, maps)
    if removed and not asked:  # README: "map=false removes them all"; an info line went unseen
        log.warning(
            "removed the contact maps an earlier map=true run drew in %s, as this run has no map=true "
            "(they would not match the folder's outputs): %s; run with map=true to draw them again",
            printable(os.fspath(out)),
            ", ".join(printable(p.name) for p in removed),
        )
    elif removed:  # sites this run's images no longer have
        log.info("removed contact maps of an earlier run: %s", ", ".join(p.name for p in removed))
    return maps, no_map, map_problem
