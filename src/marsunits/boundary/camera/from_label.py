"""Camera files from PDS labels: write ``<stem>.camera.json`` from the CAHV(OR(E)) model a rover image's label
carries, so that a geologist does not copy vectors out of labels by hand.

Usage::

    python -m marsunits.boundary.camera.from_label LABEL [LABEL ...] [--out-dir DIR] [--ground-z-m Z]
        [--rover-frame] [--image-size WIDTH HEIGHT] [--overwrite]

(a ``LABEL`` may also be Mars 2020 raw-image metadata, ``.json``: see the end of this docstring)

Each ``LABEL`` is read and ``<stem>.camera.json`` is written next to it (or in ``--out-dir``, a folder, made
if missing), in the schema of :mod:`marsunits.boundary.camera.io`, so ``predict.py`` finds it beside the
image ``<stem>.png``.
One line is printed per label written, one error line per label refused; the others are still written and
the exit status is 1 when any label was refused (2 for a usage error). Stopped (Ctrl-C: status 130, SIGTERM:
143), it says in one line how many files it wrote; each is written whole or not at all, and the same command
run again leaves those as they are (rewrites them, the same, with ``--overwrite``) and writes the rest.

Labels read:

* **PDS3** (ODL text, parsed with ``pvl``; keywords and group names in any case, as ODL reads them): a
  detached ``.LBL`` or the label at the head of an ``.IMG``, as MER and MSL products carry them. The camera is
  the ``GEOMETRIC_CAMERA_MODEL`` (MER) or ``GEOMETRIC_CAMERA_MODEL_PARMS`` (MSL) group: ``MODEL_TYPE``
  (``CAHV``, ``CAHVOR`` or ``CAHVORE``), ``MODEL_COMPONENT_1..7`` (in the order ``MODEL_COMPONENT_ID`` names,
  C A H V O R E when absent) and, for CAHVORE, its type ``T`` and parameter ``P`` (``MODEL_COMPONENT_8`` and
  ``_9``, which Mars 2020 labels leave out of ``MODEL_COMPONENT_ID``; where it names ``T`` and ``P``, their
  places are taken from it), ``REFERENCE_COORD_SYSTEM_NAME`` and ``REFERENCE_COORD_SYSTEM_INDEX`` (named by
  ``COORDINATE_SYSTEM_INDEX_NAME`` where given, else by the label's ``ROVER_MOTION_COUNTER_NAME`` where it
  names as many entries, as MER labels name them); the image size is the ``IMAGE`` object's ``LINES`` and
  ``LINE_SAMPLES``. The rover's place is the ``ORIGIN_OFFSET_VECTOR`` and ``ORIGIN_ROTATION_QUATERNION`` of
  the ``ROVER_COORD_SYSTEM_PARMS`` (JPL MIPL's MSL archive labels: Navcam, Hazcam),
  ``ROVER_COORDINATE_SYSTEM_PARMS`` (MSSS's: Mastcam, MAHLI) or ``ROVER_COORDINATE_SYSTEM`` (MER, and the
  VICAR name) group, in the frame its ``REFERENCE_COORD_SYSTEM_NAME`` names.
* **PDS4** (XML, the Mars 2020 archive form): the ``geom:`` discipline dictionary's
  ``geom:Camera_Model_Parameters`` with ``geom:CAHV_Model``, ``geom:CAHVOR_Model`` or ``geom:CAHVORE_Model``
  (``geom:Vector_Center``, ``_Axis``, ``_Horizontal``, ``_Vertical``, ``_Optical``, ``geom:Radial_Terms``,
  ``geom:Entrance_Terms``, ``geom:cahvore_model_type``, ``geom:cahvore_model_parameter``) and its
  ``geom:Coordinate_Space_Reference``; the image size from the ``Axis_Array`` elements (``Line``,
  ``Sample``) of the product's ``Array_2D_Image`` / ``Array_3D_Image``; the rover's place from the
  ``geom:Coordinate_Space_Definition`` of its ``ROVER_NAV_FRAME`` (``geom:Vector_Origin_Offset``,
  ``geom:Quaternion_Plus_Direction`` of ``rotation_direction`` ``Forward``). Where a label holds several
  camera models that differ (one per ``geom:Geometry_Lander``), the one of the ``Telemetry`` geometry state
  (the geometry the rover reported) is taken, with the rover's place from the same block; a block without
  ``geom:geometry_state`` is a Telemetry one (the geom dictionary: "If not present, the semantics of
  "Telemetry" should be assumed"). A label whose differing models include none of that state (only
  ``Initial``, the geometry before onboard updates, an ``Adjusted`` one of a derived product, ...), or more
  than one of it, is refused: the dictionary does not rank the other states (it only says a derived product
  may carry an ``Adjusted`` block and drop the Telemetry one), so none is preferred to the Telemetry one; and
  it allows several blocks of one state, told apart by their ``local_identifier``, which the refusal names.

CAHVORE models (the Hazcams', most Mars 2020 Navcams') are written as ``"model": "cahvore"`` with ``E``,
``T`` and ``P`` (:mod:`marsunits.boundary.camera.cahvore`).

The frame. The vectors are written in the frame the label gives them in, with its index as ``site`` (the
contact map draws the cameras of one ``site`` together):

* ``SITE_FRAME`` and ``LOCAL_LEVEL_FRAME`` (x north, y east, z down): ``"frame": "pds"``, ``site``
  ``SITE_<n>`` or ``LOCAL_LEVEL_(<site>,<drive>,<pose>)``;
* ``ROVER_NAV_FRAME`` (MSL, Mars 2020) and ``ROVER_FRAME`` (MER), x forward, y starboard, z down, tilt
  with the rover: their "ground" is the plane the wheels stand on. Where the label places that rover frame
  (the same site, drive and pose) in a ``SITE_FRAME`` by an origin offset ``t`` and a quaternion ``q =
  (s, v1, v2, v3)`` (PDS: it turns rover-frame vectors into the site frame), the model is levelled into
  that site: ``C' = R C + t``; ``A``, ``H``, ``V``, ``O`` turned by ``R``; ``R`` and ``E`` unchanged
  (``"frame": "pds"``, ``site`` ``SITE_<n>``, so every drive at a site is drawn on one map). The
  convention is checked on real labels: an MSL Mastcam's axis so turned gives the label's own
  ``FIXED_INSTRUMENT_AZIMUTH`` / ``_ELEVATION`` (199.15 / -56.27 degrees), and a Mars 2020 Navcam's
  rover-frame ``geom:Derived_Geometry`` gives its site-frame one. Without that place (no quaternion, none
  referenced to a SITE frame, another rover position's), or with ``--rover-frame``, the model stays in the
  rover frame, turned to the project's x forward, y left, z up (``"frame": "flu"``, so the map's axes say
  forward and left), ``site`` ``ROVER_NAV_(<site>,<drive>,<pose>)``; ``pds_frame`` says why, and a note
  line where it was not asked for.

Other frames (a mast head's, an arm's) have no vertical axis for a flat ground, and are refused.

The ground. ``ground_z_m`` (height of the ground plane, z up, metres) is taken from the label only where
documentation fixes it: the origin of MSL's and Mars 2020's ``ROVER_NAV_FRAME`` "is located on the
nominal (flat) surface of Mars, beneath the rover, centered on the turn-in-place axis" (J. Maki, *MSL
Coordinate Systems for Science Instruments*, JPL 2013), so in that frame the ground is at 0, and in a
``SITE_FRAME`` (a model given there, or levelled into it) it is level at the height of the origin of the
rover's ``ROVER_NAV_FRAME`` in that same site (its ``ORIGIN_OFFSET_VECTOR``, z down: a rover 1.7 m above
the site origin has ``z = -1.7``, so ``ground_z_m = 1.7``). The same document puts the origin of MSL's
``LOCAL_LEVEL_FRAME`` at the ``ROVER_NAV_FRAME``'s (Mars 2020 keeps MSL's frames), so a model in an MSL or
Mars 2020 local level frame has its ground at 0 too; the mission is the one the label names (PDS3
``MISSION_NAME``, ``INSTRUMENT_HOST_ID`` / ``_NAME``, ``SPACECRAFT_NAME`` / ``_ID``; PDS4
``Investigation_Area`` and ``Observing_System_Component`` names and references). MER's ``ROVER_FRAME``
origin is taken to be 0.294 m above the nominal ground (:data:`MER_ROVER_FRAME_HEIGHT_M`): JPL's Planetary
Image Geometry library (PIG, in VICAR, ``PigMER.h``) puts MER's default ground, a level plane, 0.294 m below
the origin of its fixed site frame, a value "taken from MER engineering drawings" and confirmed on a lab
image and "again during nominal OPS", and a site frame's origin is the ``ROVER_FRAME`` origin where the site
was declared. So in a label that names MER (and no other mission) a ``ROVER_FRAME`` model has its ground at
-0.294 m (z up; +0.294 in the label's z-down frame), and in a ``SITE_FRAME`` 0.294 m below the rover
origin's place in that site (the rover's own place at the image, not the site origin's, as for MSL). No such
statement was found for MER's ``LOCAL_LEVEL_FRAME`` origin: there, in a local level frame of a label that
names no mission (or another, or MER beside MSL or Mars 2020), in a ``ROVER_FRAME`` of a label that does not
name MER alone, and where the label lacks the rover's place in the camera's site, ``--ground-z-m`` is
required and its absence is an error naming the label (for such a levelled model it says the rover
origin's height in the site; for a ``ROVER_FRAME``, the ``--ground-z-m`` to give if the image is MER's).
``--ground-z-m`` is the
height in the frame the file is written in (the SITE frame for a levelled model) and is used for every
label (it overrides a label's own value, which is then said in a note line).

The written file also carries ``pds_label`` (the label's name), ``pds_frame`` (the frame as the label names
it, and whether and into which site it was levelled) and ``pds_ground`` (where ``ground_z_m`` came from),
which the camera reader ignores.

Subframed and downsampled products: the labels' models are taken as given, for the image as stored (the
archives' labels are adjusted so). A copy resized since (AI4Mars' frames, the raw-image service's ``large``
and ``medium`` JPEGs, a Navcam downsampled by hand) is given its model with ``--image-size WIDTH HEIGHT``,
the copy's size: ``H`` and ``V`` are rescaled from the size the label gives (PDS3 ``LINE_SAMPLES`` x
``LINES``, PDS4's ``Sample`` and ``Line`` axes, a record's ``extended.dimension``; a label without it is
refused) to that one, for every label given (:func:`.label_convert.resized_camera_dict` derives it), and
the file says so in ``pds_resized`` (``raw_resized``). A size whose two factors differ by more than 1 % is
written with a note line (WIDTH and HEIGHT swapped?). A cropped copy is not rescaled by it.

Mars 2020 raw-image metadata: an argument ending in ``.json`` is read by
:mod:`marsunits.boundary.camera.raw_json` (one record, a list, or a page of the raw-image feed), one camera
file per record, named after the image the record's ``full_res`` link downloads; its docstring says what is
read and on what evidence.

The code: this module is the command (:func:`main`); the modules beside it hold, one job each,
:mod:`.label_camera` (:class:`LabelCamera`, :class:`RoverPose`, :class:`LabelError`), :mod:`.label_pds3` and
:mod:`.label_pds4` (reading each form), :mod:`.label_pose` (the rover's place in its site),
:mod:`.label_ground` (the ground's height) and :mod:`.label_convert` (:func:`read_label`,
:func:`camera_file_dict`, :func:`convert_label`: the camera file). Their public names are importable from
here as well.
"""

from __future__ import annotations

if __name__ == "__main__":
    # run as the imported module, not as __main__: a class defined in this file would be another class in the
    # __main__ copy (while LabelError was defined here, raw_json raised the module's, which this copy's
    # ``except LabelError`` did not catch: a refused record ended the run in a traceback). Here, before this
    # copy's own imports, so that they (SciPy: a second) run under the stop guard, as train.py's and
    # predict.py's do: a Ctrl-C there printed a traceback, a SIGTERM ended the command without a word.
    import sys

    from marsunits.errors import quiet_interrupt_at_start

    with quiet_interrupt_at_start("python -m marsunits.boundary.camera.from_label"):
        from marsunits.boundary.camera.from_label import main as _main

    sys.exit(_main())

import argparse
import errno
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from marsunits.boundary.camera.io import SIDECAR_SUFFIX
from marsunits.boundary.camera.label_camera import LabelCamera, LabelError, RoverPose
from marsunits.boundary.camera.label_convert import (
    _convert,
    aspect_ratio_note,
    camera_file_dict,
    convert_label,
    read_label,
    resized_camera_dict,
    write_camera_file,
)
from marsunits.boundary.camera.label_convert import rover_vectors_to_flu as rover_vectors_to_flu
from marsunits.boundary.camera.label_ground import MER_ROVER_FRAME_HEIGHT_M as MER_ROVER_FRAME_HEIGHT_M
from marsunits.boundary.camera.label_ground import written_ground
from marsunits.boundary.camera.label_pds4 import GEOM_NS as GEOM_NS
from marsunits.boundary.camera.label_pds4 import PDS_NS as PDS_NS
from marsunits.errors import TerminatedError, readable, sigterm_raises, stop_said
from marsunits.user_paths import expand_home

__all__ = [
    "LabelCamera",
    "LabelError",
    "RoverPose",
    "camera_file_dict",
    "convert_label",
    "main",
    "read_label",
    "resized_camera_dict",
    "written_ground",
]


PROG = "python -m marsunits.boundary.camera.from_label"


def _finite(text: str) -> float:
    """``--ground-z-m``'s value; a refusal says what to give (argparse's own was "invalid _finite value")."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(
            f"must be a finite number of metres with a decimal point (e.g. 1.7), got {text!r}"
        )
    return value


def _pixels(text: str) -> int:
    """One of ``--image-size``'s values; a refusal says what to give (argparse's own was "invalid _pixels
    value")."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of pixels above 0 (WIDTH HEIGHT of the resized image, e.g. 256 256), "
            f"got {text!r}"
        )
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 all written, 1 some refused, 2 usage error, 130
    Ctrl-C, 143 SIGTERM: one line saying how many files were written, and that the same command goes on)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write <stem>.camera.json from the CAHV, CAHVOR or CAHVORE camera model of PDS3/PDS4 "
        "labels or of Mars 2020 raw-image metadata (JSON).",
    )
    parser.add_argument(
        "labels",
        nargs="+",
        metavar="LABEL",
        help="PDS3 .LBL/.IMG or PDS4 .xml labels, or Mars 2020 raw-image metadata .json (one record, a list, "
        "or a feed page: one camera file per image)",
    )
    parser.add_argument("--out-dir", help="folder to write into (default: next to each label)")
    parser.add_argument(
        "--ground-z-m",
        type=_finite,
        help="height of the ground in the frame the camera file is written in (the SITE frame for a levelled "
        "rover-frame model), metres, z up (required where the label does not fix it; overrides the label's)",
    )
    parser.add_argument(
        "--rover-frame",
        action="store_true",
        help="keep a ROVER_NAV_FRAME/ROVER_FRAME model in the rover's own frame (x forward, y left, z up) "
        "instead of levelling it into the SITE frame the label places the rover in: for a map drawn as the "
        "rover saw it (forward/left, one map per rover position), or where the label's rover attitude is "
        "not trusted; its ground is then the plane under the wheels, tilted with the rover",
    )
    parser.add_argument(
        "--image-size",
        type=_pixels,
        nargs=2,
        metavar=("WIDTH", "HEIGHT"),
        help="the size of the image the camera file is for, where it is a resized copy of the image the "
        "label describes (AI4Mars' frames, the raw-image service's large/medium JPEGs): the model's H and V "
        "are rescaled from the label's image size to this one (for every label given)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing camera files")
    args = parser.parse_args(argv)
    if args.out_dir:  # "~/cams" quoted, or from a script: the home folder, not a folder named "~"
        args.out_dir = str(expand_home(args.out_dir))
    if args.out_dir and os.path.lexists(args.out_dir) and not Path(args.out_dir).is_dir():
        out = Path(args.out_dir)
        if out.is_symlink() and not out.exists():  # it was called "a file, not a folder"
            target = os.readlink(out)
            try:
                os.stat(out)
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # "make that folder" cannot be done: the link holds the name
                    parser.error(
                        f"--out-dir {out} is a symbolic link that leads back to itself (to {target}, and "
                        "round again); remove or replace the link, or give another --out-dir"
                    )
            where = target if os.path.isabs(target) else f"{target} ({out.parent / target})"
            if os.path.islink(out.parent / target):  # a link to a link: name the folder that is missing
                where = f"{os.path.realpath(out)} (through {target})"
            parser.error(
                f"--out-dir {out} is a symbolic link to {where}, which does not exist (a disk not mounted, "
                "a folder moved?); make that folder or mount its disk, or give another --out-dir"
            )
        # each label was refused with "[Errno 17] File exists", naming neither --out-dir nor what to do
        linked = f" (a symbolic link to the file {os.path.realpath(out)})" if out.is_symlink() else ""
        parser.error(
            f"--out-dir {args.out_dir} is a file{linked}, not a folder; give a folder (one that does not "
            "exist is made)"
        )
    written: dict[Path, str] = {}
    fresh: set[Path] = set()
    try:
        with sigterm_raises():
            return _convert_all(args, written, fresh)
    except (KeyboardInterrupt, TerminatedError) as stop:
        return _stopped(stop, args, written, fresh)


def _note_aspect(source: str, width: int, height: int, image_size: Sequence[int]) -> None:
    """Say in a note line where ``--image-size`` stretches ``source``'s ``width`` x ``height`` image."""
    note = aspect_ratio_note(width, height, *image_size)
    if note:
        print(readable(f"{PROG}: note: {source}: {note}"), file=sys.stderr)


def _stopped(
    stop: BaseException, args: argparse.Namespace, written: dict[Path, str], fresh: set[Path]
) -> int:
    """Say in one line that the conversion was stopped (Ctrl-C, SIGTERM) after writing the files ``fresh``
    (of the ``written`` ones; the others were there already, unchanged) and return 130 or 143; re-raise with
    ``MARSUNITS_TRACEBACK`` set. Every camera file is written atomically (a stop in the middle of one leaves
    none), and the same command leaves a file holding exactly what it would write as it is (with
    ``--overwrite``: writes it again, the same), so it goes on where this run stopped. A Ctrl-C printed a
    KeyboardInterrupt traceback, a SIGTERM ended the command without a word."""
    if os.environ.get("MARSUNITS_TRACEBACK"):
        raise stop
    how, status = stop_said(stop)
    kept = len(written) - len(fresh)
    again = (
        "it writes those again, the same, and the rest"
        if args.overwrite
        else "it leaves the files written as they are and writes the rest"
    )
    print(
        readable(
            f"{PROG}: {how} after writing {len(fresh)} camera file{'' if len(fresh) == 1 else 's'}"
            + (f" ({kept} more already there, unchanged)" if kept else "")
            + f"; run the same command again to go on ({again})"
        ),
        file=sys.stderr,
    )
    return status


def _convert_all(args: argparse.Namespace, written: dict[Path, str], fresh: set[Path]) -> int:
    """Write the camera files of ``args.labels`` (:func:`main`), filling ``written`` (each file written or
    left as it was, and what from) and ``fresh`` (those written) as it goes; returns the exit status."""
    failed = total = 0  # labels
    records = records_failed = json_files = json_unread = 0  # raw-image metadata
    for name in args.labels:
        label = expand_home(name)
        if label.suffix.lower() == ".json":  # Mars 2020 raw-image metadata: one camera file per record
            json_files += 1
            counts = _main_raw_json(label, args, written, fresh)
            if counts is None:
                json_unread += 1
            else:
                records, records_failed = records + sum(counts), records_failed + counts[1]
            continue
        total += 1
        try:
            dest = Path(args.out_dir if args.out_dir else label.parent) / f"{label.stem}{SIDECAR_SUFFIX}"
            if dest in written:
                raise LabelError(
                    f"{label}: would write {dest} again, already written from {written[dest]}; give one "
                    "label per image"
                )
            if args.ground_z_m is not None:
                own, own_note = written_ground(read_label(label), not args.rover_frame)
                if own is not None and own != args.ground_z_m:
                    print(
                        readable(
                            f"{PROG}: note: {label}: --ground-z-m {args.ground_z_m:g} replaces the label's "
                            f"{own:g} ({own_note})"
                        ),
                        file=sys.stderr,
                    )
            if args.image_size is not None:
                archived = read_label(label)
                _note_aspect(str(label), archived.image_width, archived.image_height, args.image_size)
            dest, d, changed = _convert(
                label, args.out_dir, args.ground_z_m, args.overwrite, args.rover_frame, args.image_size
            )
            if d["frame"] == "flu" and not args.rover_frame:  # a rover-frame model the label does not place
                print(readable(f"{PROG}: note: {label}: {d['pds_frame']}"), file=sys.stderr)
        except (LabelError, OSError) as exc:
            failed += 1
            reason = exc if isinstance(exc, LabelError) else f"{label}: cannot write the camera file: {exc}"
            print(readable(f"{PROG}: error: {' '.join(str(reason).split())}"), file=sys.stderr)
            continue
        written[dest] = str(label)
        if changed:
            fresh.add(dest)
        print(readable(f"wrote {dest}" if changed else f"unchanged {dest} (already this camera file)"))
    if failed or records_failed or json_unread:  # each count says what was given: labels, records, files
        read = json_files - json_unread
        # Each noun agrees with the count it follows ("1 of 1 label refused", not "1 of 1 labels").
        said = [f"{failed} of {total} label{'' if total == 1 else 's'} refused"] if total else []
        if records or read:
            said.append(
                f"{records_failed} of {records} raw-image record{'' if records == 1 else 's'} (from {read} "
                f".json file{'' if read == 1 else 's'}) refused"
            )
        if json_unread:
            one = json_files == 1
            said.append(
                f"{json_unread} of {json_files} .json file{'' if one else 's'} refused whole (no record read "
                f"from {'it' if one else 'them'})"
            )
        print(readable(f"{PROG}: {'; '.join(said)}"), file=sys.stderr)
    return 1 if failed or records_failed or json_unread else 0


def _main_raw_json(
    path: Path, args: argparse.Namespace, written: dict[Path, str], fresh: set[Path]
) -> tuple[int, int] | None:
    """Write one camera file per record of a raw-image metadata file (:mod:`.raw_json`), saying each
    written file and each refused record on its own line; returns ``(written, refused)`` records, or None
    where the file's records cannot be read (said in a line). ``written`` and ``fresh`` as in
    :func:`_convert_all`."""
    from marsunits.boundary.camera.raw_json import raw_camera, raw_camera_file_dict, raw_records

    def refuse(reason: object) -> None:
        print(readable(f"{PROG}: error: {' '.join(str(reason).split())}"), file=sys.stderr)

    try:
        records = raw_records(path)
    except LabelError as exc:
        refuse(exc)
        return None
    done = refused = 0
    for record in records:
        try:
            img = raw_camera(record, path)
            dest = Path(args.out_dir if args.out_dir else path.parent) / f"{img.stem}{SIDECAR_SUFFIX}"
            if dest in written:
                raise LabelError(
                    f"{path}: {img.imageid}: would write {dest} again, already written from "
                    f"{written[dest]}; give each image's record once"
                )
            d = raw_camera_file_dict(img, path, args.ground_z_m, args.rover_frame)
            if args.image_size is not None:
                d = resized_camera_dict(
                    d, args.image_size[0], args.image_size[1], source=f"{path}: {img.imageid}"
                )
                _note_aspect(f"{path}: {img.imageid}", img.image_width, img.image_height, args.image_size)
            changed = write_camera_file(dest, d, args.overwrite, f"{path}: {img.imageid}")
        except LabelError as exc:
            refused += 1
            refuse(exc)
            continue
        except OSError as exc:
            refused += 1
            refuse(f"{path}: {img.imageid}: cannot write the camera file: {exc}")
            continue
        if args.ground_z_m is not None and args.ground_z_m != 0.0:
            print(
                readable(
                    f"{PROG}: note: {path}: {img.imageid}: --ground-z-m {args.ground_z_m:g} replaces the "
                    f"ground the record fixes, 0 ({d['raw_ground']})"
                ),
                file=sys.stderr,
            )
        if d["frame"] == "flu" and not args.rover_frame:
            print(readable(f"{PROG}: note: {path}: {img.imageid}: {d['raw_frame']}"), file=sys.stderr)
        written[dest] = f"{path} ({img.imageid})"
        if changed:
            fresh.add(dest)
        done += 1
        print(readable(f"wrote {dest}" if changed else f"unchanged {dest} (already this camera file)"))
    return done, refused
