"""Which model and settings made the outputs in an output folder, so a re-run never mixes two of them.

A re-run of ``predict.py`` skips the inputs whose outputs are complete (:mod:`marsunits.inference.writers`).
That is right when the run is resumed, and wrong when the user changed the checkpoint or a setting that
changes the outputs: the old masks would stay, and ``summary.json`` would name the new checkpoint beside
them. So every run records ``OUT/prediction_settings.json``:

* ``checkpoint``: the path given (informative only: a moved file is the same model);
* ``input_dir``: the input folder, resolved, and ``other_input_dirs``, those of earlier runs whose outputs the
  folder holds (informative only: a moved folder holds the same images; a recorded folder no longer there is
  taken as moved or deleted and dropped); an ``overwrite=true`` run removes no output of another input
  folder's images; when it changed the settings it lists those folders in ``outdated_input_dirs``, and a
  later run of one of them without ``overwrite=true`` is refused (it would skip their outputs as this
  record's);
* ``weights_sha256``: SHA-256 of the checkpoint file, or of a model package's weights file, and
  ``network_sha256``: SHA-256 of the network's tensors (:func:`marsunits.model_package.network_sha256`), which
  decides when both records hold it: the same for a package and its checkpoint, and different for other
  weights whatever a package's provenance claims (records written before it are judged by
  ``weights_sha256`` and a package's ``same_model_sha256``, the checkpoint its provenance names);
* ``normalisation``: the input ``mean`` and ``std`` the network runs with (a package keeps them in
  ``model.json``, outside the hashed weights; records written before this key existed are not compared on it);
* ``palette``: the model's class colours (in a package also in ``model.json``, where recolouring is done),
  and ``overlay_palette``: those the overlays are drawn in, which decides when the new record holds it. A
  record without it was written when the overlays were drawn in the default palette of the time
  (:data:`PALETTE_UNTIL_2026_12_06`) whatever its ``palette`` said (until 2026-12-06), and is compared as
  drawn in that one: a model of other colours (a recoloured one, or one of today's default) does not resume
  a folder of those overlays, and one of those colours (a model trained before 2026-12-07) does;
* every option that changes what is written for an image: ``tile``, ``overlap``, ``tta``, ``adapt_bn``,
  ``min_unit_area_px``, ``nodata_max``, ``contact`` (the extraction settings), ``max_range_m``,
  ``probability_dtype``;
* with ``adapt_bn``, ``adapt_bn_inputs``: which input files the batch-norm statistics were adapted to
  (:func:`adaptation_inputs`). They are estimated on every input of the folder, so an image added, removed
  or changed changes the network for all of them: resuming would keep masks of the earlier statistics.

* ``runtime`` and ``precision`` as run (ONNX Runtime counts as float32): bf16 and float32 masks differ in a
  few pixels in a thousand, so a folder begun in bf16 (an AMX CPU, a GPU) is not finished in float32 on
  another machine without a word. ``runtime=auto`` resuming a folder takes the recorded runtime instead of
  timing the two again (the choice flips with the machine's load). With bf16 also ``fold_batchnorm``
  (``null`` otherwise): folding batch norm into the convolutions is exact in float32 but not in bf16, where it
  changes as many classes as bf16 against float32 does. Records written before these keys are not compared
  on them. These are known only once the network is built (:data:`ARITHMETIC_KEYS`); the rest is checked
  before that costly start-up (adapting the batch norm, an ONNX export), then all of it again.

The file is valid UTF-8: a path among those whose name is not (a Latin-1 folder name) is written with
``\\xNN`` escapes, as ``manifest.csv`` writes it, and its key listed in ``escaped_paths``; reading undoes
them, so the folders compare as the same (:func:`read_record`).

Options that change only how fast or where the work runs (device, threads, batch size, workers) are not
recorded: their outputs agree to within rounding.

A run whose recorded settings differ from the folder's (ignoring ``checkpoint``, and ``probability_dtype``
when either run saved no probabilities: turning them on or off changes no mask) stops before predicting,
naming what differs, unless ``overwrite=true`` (then every input is predicted again; the record is marked
``overwrite_pending`` until that run finishes, holding the run's identity, :func:`overwrite_run_id`, which the
contact file of each image it finishes holds too). A folder so marked holds outputs of two settings: it is
refused to a run of other settings than the marked record's (naming them; ``overwrite=true`` redoes every
image), and a run of the same settings, with or without ``overwrite=true``, goes on with the stopped one: it
skips the images whose contact files name that run and redoes the rest (:func:`continues_overwrite`). A
folder without the file (written before it existed, or a new folder) is taken as it is; one whose file cannot
be read (not JSON, not an object, unreadable) is refused the same way, naming the file. Separately, an input
whose image or camera file changed after its outputs were written is predicted again
(:func:`input_changed`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from marsunits.boundary.camera.io import find_camera_file
from marsunits.boundary.contact_io import update_contact_members
from marsunits.constants import PALETTE_UNTIL_2026_12_06
from marsunits.errors import ConfigError, counted
from marsunits.file_digest import file_sha256
from marsunits.inference.inputs import InputFile
from marsunits.inference.writers import (
    OutputPaths,
    escaped_path_values,
    image_record,
    unescaped_path_values,
    write_json_atomic,
)

__all__ = [
    "ADAPTED_NETWORK_KEY",
    "ARITHMETIC_KEYS",
    "SETTINGS_NAME",
    "adaptation_inputs",
    "same_adaptation_inputs",
    "read_settings",
    "check_settings",
    "continues_overwrite",
    "overwrite_run_id",
    "record_stamp",
    "image_file_identity",
    "image_status",
    "read_record",
    "changed_inputs_text",
    "input_change",
    "input_changed",
    "refresh_image_record",
    "settings_differences",
    "settings_record",
    "write_settings",
]

#: File name of the record in the output folder.
SETTINGS_NAME = "prediction_settings.json"
#: Hashes of other files with the same weights (see :func:`settings_record`).
_ALIASES = "same_model_sha256"
#: The adapted network (``adapt_bn=true``) the folder's images were predicted with, by its digest: known only
#: once adapted, and kept in ``adapted_batchnorm.safetensors`` (:mod:`marsunits.inference.adapted_state`),
#: which a resume checks against it.
ADAPTED_NETWORK_KEY = "adapted_network_sha256"
#: Recorded keys that do not decide whether outputs are comparable (the aliases are compared with the hash;
#: ``input_dir``, the resolved input folder, tells a folder that holds another input folder's outputs;
#: the adapted network follows from the options and inputs, which are compared).
_INFORMATIVE = (
    "checkpoint",
    _ALIASES,
    "input_dir",
    "other_input_dirs",
    "outdated_input_dirs",
    ADAPTED_NETWORK_KEY,
)
#: The record's keys that say how the network's arithmetic ran, known only once it is built.
ARITHMETIC_KEYS = ("runtime", "precision", "fold_batchnorm")
#: Set in the record while an ``overwrite=true`` run is redoing the folder (removed when it finishes).
PENDING_KEY = "overwrite_pending"
#: The record's keys that hold paths (a string, or a list of strings).
_PATH_KEYS = ("checkpoint", "input_dir", "other_input_dirs", "outdated_input_dirs")


def _read(path: Path) -> dict[str, Any] | None:
    return read_record(path)[0]


def read_record(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The record at ``path`` and ``""``, or None and why it cannot be used (``""`` when there is no file);
    read this way by ``predict.py`` and by the pseudo-labels, which both refuse an unreadable record."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, str(exc.strerror or exc)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None, f"not JSON: {exc}"
    if not isinstance(data, dict):
        return None, f"a JSON {type(data).__name__}, not an object"
    return unescaped_path_values(data), ""


#: Version of how each output-changing method computes its result, recorded for the methods a run uses
#: (``method_versions``), so a folder half-predicted before a method changed is not resumed with the new
#: one: ``tta`` 2 (2026-12-04) averages the whole image's probabilities with its mirror image's, where 1
#: averaged window by window; ``adapt_bn`` 2 pools the batch-norm statistics exactly over every value.
#: (Batching the adaptation windows since changes the statistics by float rounding only, 1e-5 relative: the
#: same version.) ``min_unit_area_px`` 2 (2026-12-05) also merges a small patch that touches the other unit
#: but borders ``other`` more into ``other``, where 1 left it (:mod:`marsunits.boundary.mapping_unit`).
#: ``nodata_max`` 2 (2026-12-07) also makes the one-pixel ring around a no-data border no data, where 1 left
#: it to the network, which drew a rough rim and a contact along every mosaic border
#: (:mod:`marsunits.inference.nodata`).
METHOD_VERSIONS: dict[str, int] = {"tta": 2, "adapt_bn": 2, "min_unit_area_px": 2, "nodata_max": 2}


def _method_used(name: str, value: Any) -> bool:
    """Whether a run's option ``name`` (one of :data:`METHOD_VERSIONS`) switches that method on: a truthy
    switch, for ``min_unit_area_px`` an area above 1 px (0 and 1 merge nothing), and for ``nodata_max`` any
    number (0 flags pure black; null is off)."""
    if name == "nodata_max":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "min_unit_area_px":
        return isinstance(value, int | float) and not isinstance(value, bool) and value > 1
    return bool(value)


def method_versions(options: Mapping[str, Any]) -> dict[str, int] | None:
    """``{method: version}`` of the :data:`METHOD_VERSIONS` methods switched on in ``options`` (their values
    as recorded: ``tta``, ``adapt_bn``, ``min_unit_area_px``, ``nodata_max``); None if none is (so folders
    that use none of them keep the record they had)."""
    used = {name: v for name, v in METHOD_VERSIONS.items() if _method_used(name, options.get(name))}
    return used or None


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(old) | set(new)) - set(_INFORMATIVE))
    diffs = []
    for key in keys:
        if key == "probability_dtype" and None in (old.get(key), new.get(key)):
            continue  # probabilities turned on or off: the masks and contacts are the same
        if key == "palette" and "overlay_palette" in new:
            continue  # the colours drawn decide (overlay_palette, below): the model's alone never drew any
        if key == "overlay_palette" and key not in old:
            # Recorded before the overlays were drawn in the model's palette: they are in that day's default.
            old = {**old, key: [list(rgb) for rgb in PALETTE_UNTIL_2026_12_06]}
        if key in ("normalisation", "palette") and key not in old:
            continue  # a folder recorded before the key existed: its weights hash still identifies the model
        if key in ARITHMETIC_KEYS and key not in old:
            continue  # a folder recorded before the arithmetic was: judged as before
        if key == "fold_batchnorm" and "precision" in old and old.get("precision") != new.get("precision"):
            continue  # recorded with bf16 only: the precision's own entry says what differs and the fix
        if key == "network_sha256" and key not in old:
            continue  # a folder recorded before the key existed: judged by weights_sha256, as then
        if key == "weights_sha256" and all("network_sha256" in r for r in (old, new)):
            continue  # the network's own digest decides: another file of the same tensors is the same model
        if key == "weights_sha256":
            names = [{r.get(key), *r.get(_ALIASES, [])} - {None} for r in (old, new)]
            if names[0] & names[1]:
                continue  # the same weights in another file (a package and its checkpoint)
        if key == "adapt_bn_inputs" and same_adaptation_inputs(old.get(key), new.get(key)):
            continue  # the same files by content, under other times (a restore, a touch)
        if key == "adapt_bn_inputs" and bool(old.get("adapt_bn")) != bool(new.get("adapt_bn")):
            continue  # adapt_bn switched on or off: said by its own key, not as a list of digests
        if old.get(key) != new.get(key):
            if key == "adapt_bn_inputs" and old.get("adapt_bn") and new.get("adapt_bn"):
                n_then, n_now = (int((r.get(key) or {}).get("files", 0)) for r in (old, new))
                diffs.append(
                    "the input files the batch-norm statistics are adapted to (adapt_bn=true: "
                    f"{counted(n_then, 'file')} then, {counted(n_now, 'file')} now, or some of them changed)"
                )
            elif key == "method_versions":
                # Only methods on in both runs: one switched on or off is said by its own key (tta).
                then, now = old.get(key) or {}, new.get(key) or {}
                in_both = [m for m in METHOD_VERSIONS if all(_method_used(m, r.get(m)) for r in (old, new))]
                changed = sorted(m for m in in_both if then.get(m) != now.get(m))
                if changed:
                    diffs.append(
                        f"how {', '.join(changed)} is computed changed since (versions "
                        f"{json.dumps({m: then.get(m) for m in changed})} then, "
                        f"{json.dumps({m: now.get(m) for m in changed})} now; "
                        "output_settings.METHOD_VERSIONS says what changed)"
                    )
            elif key in ARITHMETIC_KEYS:
                then, now = (json.dumps(r.get(key)) for r in (old, new))
                as_then = json.dumps(old[key]) if isinstance(old.get(key), bool) else old.get(key)
                diffs.append(
                    f"{key} ({then} then, {now} now: masks of the two differ in a few pixels; "
                    f"{key}={as_then} predicts as then)"
                )
            elif key == "network_sha256":
                diffs.append(
                    f"the model (network {str(old.get(key))[:12]}… from {old.get('checkpoint')}, now "
                    f"{str(new.get(key))[:12]}… from {new.get('checkpoint')})"
                )
            elif key == "weights_sha256":
                diffs.append(
                    f"the model (weights {str(old.get(key))[:12]}… from {old.get('checkpoint')}, now "
                    f"{str(new.get(key))[:12]}… from {new.get('checkpoint')})"
                )
            elif key in ("palette", "overlay_palette"):
                then, now = (json.dumps(r.get(key)) for r in (old, new))
                diffs.append(f"palette, the overlays' class colours ({then} then, {now} now)")
            elif isinstance(old.get(key), Mapping) and isinstance(new.get(key), Mapping):
                # Option groups (contact): each sub-option that differs, as the user types it.
                then_group, now_group = old[key], new[key]
                for sub in sorted(set(then_group) | set(now_group)):
                    if then_group.get(sub) != now_group.get(sub):
                        then, now = (json.dumps(g.get(sub)) for g in (then_group, now_group))
                        diffs.append(f"{key}.{sub} ({then} then, {now} now)")
            else:
                then, now = (json.dumps(v) for v in (old.get(key), new.get(key)))  # null, as typed
                diffs.append(f"{key} ({then} then, {now} now)")
    return diffs


def same_adaptation_inputs(old: Any, new: Any) -> bool:
    """Whether two ``adapt_bn_inputs`` records name the same files: by content where both record it, else
    (a folder recorded before the content digest) by paths, sizes and times, as then."""
    if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
        return False
    if old.get("content_sha256") is None:
        return old.get("files") == new.get("files") and old.get("sha256") == new.get("sha256")
    return bool(old.get("content_sha256") == new.get("content_sha256"))


def check_settings(
    output_dir: Path,
    settings: Mapping[str, Any],
    overwrite: bool,
    ignore: Sequence[str] = (),
    read: tuple[dict[str, Any] | None, str] | None = None,
) -> None:
    """Refuse to add outputs of other settings to a folder that holds some already.

    Args:
        output_dir: The run's output folder.
        settings: This run's record (see the module docstring); JSON-ready values.
        overwrite: ``overwrite=true``: every input is predicted again, so any record is fine.
        ignore: Keys not compared (:data:`ARITHMETIC_KEYS` in the check before the network is built).
        read: The folder's record as the run read it (:func:`read_record`'s pair): a sharded run's rank 0's
            reading, which every rank checks; None: read it now.

    Raises:
        ConfigError: The folder's record differs; the message names each difference and the two ways out.
    """
    if overwrite:
        return
    record = output_dir / SETTINGS_NAME
    old, fault = read_record(record) if read is None else read
    if old is None and fault:
        # Taken as no record, a broken one let another model or setting add its outputs to the folder without
        # a word, and was then replaced by this run's record, which named settings that had not made them.
        raise ConfigError(
            f"{record} cannot be read ({fault}), so this run cannot tell which model and settings made the "
            "outputs in the folder. Give another output_dir, or overwrite=true to predict every image again "
            "(this is what a hand edit, an interrupted copy or a sync conflict leaves; predict.py writes the "
            "file whole or not at all)"
        )
    if old is None:
        return
    kept = {k: v for k, v in old.items() if k not in ignore and k != PENDING_KEY}
    new = {k: v for k, v in settings.items() if k not in ignore}
    diffs = _differences(kept, json.loads(json.dumps(new)))  # compare as JSON would read them back
    if old.get(PENDING_KEY) and diffs:
        # Its record names the stopped run's settings: a run of those goes on with it (continues_overwrite).
        raise ConfigError(
            f"{output_dir}: an overwrite=true run into it stopped before finishing, with other settings than "
            f"this run's: {'; '.join(diffs)}; so images there may hold outputs of its settings beside others "
            "of the earlier ones. Run that command again to go on (the images it finished are skipped), "
            "overwrite=true to redo every image with these settings, or give another output_dir"
        )
    if diffs:
        raise ConfigError(
            f"{output_dir} holds predictions made with other settings: {'; '.join(diffs)}. Skipping its "
            "finished images would mix the two. Give another output_dir, or overwrite=true to predict every "
            "image again with these settings"
        )


def continues_overwrite(
    old: Mapping[str, Any], settings: Mapping[str, Any], ignore: Sequence[str] = ()
) -> bool:
    """Whether ``old`` is the record of an ``overwrite=true`` run that did not finish (``overwrite_pending``)
    and ``settings`` are its settings (but ``ignore``): a run with them goes on with it, skipping the images
    it finished (their contact files name its :func:`overwrite_run_id`) and redoing the rest."""
    if not old.get(PENDING_KEY):
        return False
    kept = {k: v for k, v in old.items() if k not in ignore and k != PENDING_KEY}
    new = {k: v for k, v in settings.items() if k not in ignore}
    return not _differences(kept, json.loads(json.dumps(new)))


def record_stamp(output_dir: Path) -> str:
    """What tells this reading of ``output_dir``'s ``prediction_settings.json`` from any other: a digest of
    its modification time and bytes (another run's record, even of the same content, has another time), or
    of "no record". A sharded run's rank 0 alone takes it, as it reads the record, and passes it to the
    others (``runner._Session._read_settings_file``): a rank reading the file while rank 0 rewrote it saw
    another."""
    digest = hashlib.sha256()
    record = output_dir / SETTINGS_NAME
    try:
        digest.update(f"{record.stat().st_mtime_ns}\n".encode())
        digest.update(record.read_bytes())
    except OSError:
        digest.update(b"no record")
    return digest.hexdigest()


def overwrite_run_id(settings: Mapping[str, Any], stamp: str) -> str:
    """The identity of an ``overwrite=true`` run starting with ``settings`` in a folder whose record read as
    ``stamp`` (:func:`record_stamp`): kept in its pending record (``overwrite_pending``) and in the contact
    file of each image it finishes (:data:`~marsunits.inference.writers.OVERWRITE_RUN_KEY`), so that a run
    going on with it skips those images and no other. Derived only from what a sharded run's rank 0 passes
    its ranks, so every rank holds the same one; an earlier overwrite's record has another stamp, so its
    images are never taken for this one's."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(stamp.encode())
    return digest.hexdigest()[:32]


def settings_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between a folder's record ``old`` and a run's ``new`` in what decides the outputs (as
    :func:`check_settings` compares them; [] when the same). A record of an unfinished ``overwrite=true``
    run differs from any: its outputs are of two settings."""
    if old.get(PENDING_KEY):
        return [f"{PENDING_KEY} (an overwrite=true run that did not finish)"]
    return _differences(old, json.loads(json.dumps(dict(new))))


def write_settings(
    output_dir: Path, settings: Mapping[str, Any], pending: bool | str = False, replaced_all: bool = False
) -> Path:
    """Record this run's settings in ``output_dir`` (atomically); returns the file's path.

    ``pending`` (an ``overwrite=true`` run starting: its :func:`overwrite_run_id`) marks the record
    unfinished: until the same call without it, :func:`check_settings` refuses the folder to a run of other
    settings, and a run of these goes on with it (:func:`continues_overwrite`).
    ``replaced_all=True`` (a finished ``overwrite=true`` run, which removed every output it did not write):
    no earlier ``prob.tif`` is left, so the record is this run's alone.
    """
    record = {**settings, PENDING_KEY: pending} if pending else dict(settings)
    if record.get("probability_dtype") is None and not replaced_all:
        # A run without probabilities leaves the folder's earlier prob.tif files as they are: keep their dtype
        # in the record, so a later run saving another dtype is still told.
        old = _read(output_dir / SETTINGS_NAME) or {}
        if old.get("probability_dtype") is not None:
            record["probability_dtype"] = old["probability_dtype"]
    return write_json_atomic(output_dir / SETTINGS_NAME, escaped_path_values(record, _PATH_KEYS))


def input_changed(
    image: Path, paths: OutputPaths, members: Mapping[str, Any], status: str | None = None
) -> bool:
    """Whether the image, or the camera file it is read with, is not what the outputs were made from
    (:func:`input_change` says which)."""
    return input_change(image, paths, members, status) is not None


def input_change(
    image: Path, paths: OutputPaths, members: Mapping[str, Any], status: str | None = None
) -> str | None:
    """What of the image, or the camera file it is read with, is not what the outputs were made from, as
    :func:`changed_inputs_text` names it ("image file replaced", "camera file added", ...); None if nothing.

    ``members``: the contact file's top-level members. By content where the contact file records it: the
    image's size and exact modification time (``image_file``) and SHA-256 (``image_sha256``;
    :func:`image_status`) and the camera file's SHA-256 (``camera_sha256``, :func:`camera_changed`). A
    replaced file is then noticed whatever its modification time (``cp -p``, ``tar``, ``rsync -a``), and a
    file whose time alone changed (``touch``, a restore that rounds times to the second) is not predicted
    again. Contact files written before those records: like ``make``, by modification time (the mask is
    written last, the contact file before it). ``status``: :func:`image_status`, when the caller has it.
    """
    try:
        status = status or image_status(image, members)
        if status == "unrecorded":
            if image.stat().st_mtime > paths.mask.stat().st_mtime:
                return "image file newer than its outputs"
        elif status == "replaced":
            return "image file replaced"
        if "camera_sha256" in members:
            if not camera_changed(image, members):
                return None
            if members["camera_sha256"] is None:
                return "camera file added"
            return "camera file removed" if find_camera_file(image) is None else "camera file replaced"
        camera = find_camera_file(image)
        if camera is not None and camera.stat().st_mtime > paths.contact.stat().st_mtime:
            return "camera file newer than its outputs"
        return None
    except OSError:
        return "image or camera file could not be examined"  # cannot tell: predict it again


def changed_inputs_text(changed: Sequence[tuple[str, str]], named: int = 5) -> str:
    """The line of ``predict.py`` that says which inputs are predicted again because they changed after
    their outputs were written: ``changed`` holds each input's name and what changed (:func:`input_change`);
    the first ``named`` are named, the others counted ("+2 more")."""
    n = len(changed)
    shown = ", ".join(f"{name} ({what})" for name, what in changed[:named])
    more = f", +{n - named} more" if n > named else ""
    their, them = ("its", "it") if n == 1 else ("their", "them")
    said = f"{counted(n, 'input')} changed after {their} outputs were written, predicting {them} again"
    return f"{said}: {shown}{more}"


def image_file_identity(image: Path, digest: bool = True) -> dict[str, Any] | None:
    """``{"bytes": size, "mtime_ns": modification time, "sha256": content digest}`` of an input image as it
    is read; its contact file keeps the first two as ``image_file`` and the digest as ``image_sha256``, so
    that a later run can tell a replaced image from one whose time alone changed (:func:`image_status`).
    ``digest=False`` leaves the digest out. None if the file cannot be examined, or is not a regular file
    (a FIFO or a device named like an image would be read for ever; the reader refuses it)."""
    try:
        st = image.stat()
        if not stat.S_ISREG(st.st_mode):
            return None
        identity: dict[str, Any] = {"bytes": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}
        if digest:
            identity["sha256"] = file_sha256(image)
    except OSError:
        return None
    return identity


def image_status(image: Path, members: Mapping[str, Any]) -> str:
    """How ``image`` compares with the record its contact file holds (``image_file``, ``image_sha256``).

    ``"unrecorded"``: no record (files written before it; judge by time). ``"same"``: the same size and
    exact modification time. ``"retimed"``: the same size and SHA-256 under another time (``touch``, a
    restore): the same image, whose record should be brought up to date (:func:`refresh_image_record`) so
    that it is not hashed again on every run. ``"replaced"``: anything else, including another time
    without a recorded digest. The digest is computed only for ``"retimed"`` candidates, so a folder whose
    files are untouched costs one ``stat`` each.
    """
    record = members.get("image_file")
    if not isinstance(record, Mapping):
        return "unrecorded"
    st = image.stat()
    if int(st.st_size) != record.get("bytes"):
        return "replaced"
    if int(st.st_mtime_ns) == record.get("mtime_ns"):
        return "same"
    digest = members.get("image_sha256") or record.get("sha256")  # the latter: a form of one dev version
    if digest is None or not stat.S_ISREG(st.st_mode) or file_sha256(image) != digest:
        return "replaced"
    return "retimed"


def refresh_image_record(image: Path, paths: OutputPaths) -> None:
    """Record ``image``'s current size and modification time in its contact file (after
    :func:`image_status` found the same content under another time). Best effort: a folder that cannot be
    written only means the digest is computed again next time."""
    identity = image_file_identity(image, digest=False)
    if identity is None:
        return
    with contextlib.suppress(OSError, ValueError):
        update_contact_members(paths.contact, image_record(identity))


def camera_file_sha256(image: Path) -> str | None:
    """SHA-256 of the camera file ``image`` is read with (``find_camera_file``), or None when it has none.

    Recorded in the contact file (``camera_sha256``) when the image is predicted, so that a later run can
    tell that the camera its ground coordinates came from was replaced, even by a file with an older
    modification time (``tar``, ``rsync -a``, ``cp -p``), which :func:`input_changed` cannot see.
    """
    camera = find_camera_file(image)
    if camera is None:
        return None
    try:
        return file_sha256(camera)
    except OSError:
        return "unreadable"  # never equal to a recorded digest: predicted again, and the error said then


def camera_changed(image: Path, members: Mapping[str, Any]) -> bool:
    """Whether the camera file of ``image`` is not the one its contact file records (``camera_sha256``:
    added, removed or replaced since). Contact files written before the digest was recorded: False (their
    camera is judged by :func:`input_changed` alone)."""
    if "camera_sha256" not in members:
        return False
    return bool(members["camera_sha256"] != camera_file_sha256(image))


def adaptation_inputs(
    files: Sequence[InputFile], previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``{"files": n, "sha256": ..., "content_sha256": ...}`` identifying the input files ``adapt_bn``
    estimates statistics on: ``sha256`` digests each file's relative path, size and modification time,
    ``content_sha256`` its relative path and bytes (compared by :func:`check_settings`).

    ``previous``: the folder's record. When the sizes and times are those it recorded, it is returned as
    it is (no file is read); otherwise every file is hashed, so a restore that rounds times, or a ``touch``,
    is recognised as the same inputs (it was refused until ``overwrite=true``) and its new times are
    recorded with the next settings.
    """
    ordered = sorted(files, key=lambda f: f.rel.as_posix())
    stamps = hashlib.sha256()
    for f in ordered:
        try:
            st = f.path.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "unreadable"
        stamps.update(f"{f.rel.as_posix()}\0{stamp}\n".encode())
    if previous and previous.get("sha256") == stamps.hexdigest() and "content_sha256" in previous:
        return dict(previous)
    content = hashlib.sha256()
    for f in ordered:
        try:
            digest = file_sha256(f.path) if f.path.is_file() else "not a file"
        except OSError:
            digest = "unreadable"
        content.update(f"{f.rel.as_posix()}\0{digest}\n".encode())
    return {"files": len(files), "sha256": stamps.hexdigest(), "content_sha256": content.hexdigest()}


def read_settings(output_dir: Path) -> dict[str, Any]:
    """``output_dir``'s settings record as written (see the module docstring), or {} when it has none."""
    return _read(output_dir / SETTINGS_NAME) or {}


def settings_record(
    checkpoint: str | os.PathLike[str],
    weights_sha256: str,
    options: Mapping[str, Any],
    same_model_sha256: Sequence[str] = (),
) -> dict[str, Any]:
    """This run's record: the checkpoint path and hash plus the output-changing ``options``.

    ``same_model_sha256``: hashes of other files holding the same weights (a model package records the
    checkpoint it was exported from), so predicting a folder with the package and then with its checkpoint
    is one model.
    """
    record = {"checkpoint": str(checkpoint), "weights_sha256": weights_sha256, **options}
    if same_model_sha256:
        record[_ALIASES] = sorted(set(same_model_sha256))
    return record
