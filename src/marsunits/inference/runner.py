"""``predict.py``'s work: predict every image of a folder and write masks, overlays, contacts and reports.

Steps (mmsegmentation's inferencer split, at folder scale): validate folders and options -> discover the
inputs -> load the checkpoint -> skip inputs whose outputs are complete -> decode in DataLoader workers ->
tiled forward pass -> contacts (+ ground coordinates where a camera sidecar exists) -> write outputs ->
``manifest.csv``, ``summary.json``, ``index.html`` and, with ``labels_dir``, ``metrics.json`` (the reports:
:mod:`marsunits.inference.run_reports`).

Speed: the network runs as :mod:`marsunits.inference.runtime` decides (``threads``, ``runtime``,
``precision``, ``channels_last``, ``compile``; the choice and its reason are in ``summary.json``); with
``devices > 1`` or under ``torchrun``/``srun`` the inputs are sharded over processes
(:mod:`marsunits.inference.distributed` starts them, :mod:`marsunits.inference.sharded_run` has them work
together) and rank 0 writes the merged reports.

Failure policy:

* A folder-level problem (missing input folder, output folder inside it, no images, a bad option, a
  missing or incompatible checkpoint) raises a user error (:class:`~marsunits.errors.MarsUnitsError`,
  ``FileNotFoundError`` or ``marsunits.task.CheckpointError``) before anything is written; ``predict.py``
  prints its one-sentence message and exits with status 2.
* A bad input file (corrupt, truncated, not an image, empty, unreadable, too large, colliding name)
  becomes an ``error`` row with the reason and the run goes on. :func:`run` returns 1 when any input
  failed or any camera file was refused (the image is predicted, ``ok``, without metres: its row's
  ``camera_error``), unless ``allow_errors`` is true, and when ``labels_dir`` was given but not one image
  could be scored against it (no label found, every label refused), the outputs all written; else 0.
* Reports are rewritten even when the run is interrupted (Ctrl-C), listing what was done so far; a re-run
  skips completed inputs (see :mod:`marsunits.inference.writers` for the completion rule).
* A full (``ENOSPC``, ``EDQUOT``) or read-only / forbidden (``EROFS``, ``EACCES``, ``EPERM``) output folder
  would fail every remaining input: the run stops at once with :class:`OutputWriteError` (exit 2, one
  sentence naming the folder and what to do); the reports, written in a ``finally``, list the inputs done
  so far and ``summary.json`` says why in ``stopped_early``.
* ``summary.json``'s ``exit_reasons`` starts with ``stopped`` for a run stopped before the end (Ctrl-C,
  SIGTERM, a full disk, a dead loader worker, another rank's stop or failure; ``stopped_early`` says how),
  and with ``failed`` for one ended by an error no image's row takes and no user causes, a bug (on any rank
  of a sharded run): its reports are written, ``exit_status`` 1, ``stopped_early`` null, and its traceback
  follows. In a sharded run a rank's failure decides over another rank's stop, which is said too
  (:func:`~marsunits.inference.sharded_run.predict_shard`); in one process, a failure decides over a stop
  that comes as it ends the run, and the closing paragraph says the stop after it.
* Temporaries left by a killed earlier run (``SIGKILL`` skips every cleanup) are removed at start
  (:func:`marsunits.atomic.remove_stale_temporaries`; files of live processes are kept).
* Inputs above ``max_file_mb`` (file size) or ``max_megapixels`` (header) are error rows, decided before
  decoding. Outputs never leave ``output_dir`` (:func:`~marsunits.inference.inputs.output_escape`).
* ``ckpt_path`` is a model package (safe) or a ``.ckpt``; a checkpoint whose pickle needs arbitrary
  Python objects is refused unless ``trust_checkpoint=true``
  (:func:`marsunits.model_package.load_model`). ``map=true`` writes ``contact_map.geojson/png``;
  ``logger=wandb`` logs the run to W&B after the reports are written.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from marsunits.boundary.camera.base import CameraModel
from marsunits.boundary.camera.io import CameraFileError, find_camera_file
from marsunits.boundary.contact_io import (
    ContactLine,
    as_stored,
    count_contacts,
    read_contact_collection,
)
from marsunits.constants import CLASS_NAMES
from marsunits.data.class_map import labels_classes_folder, unreadable_classes_file
from marsunits.data.io import ImageReadError, to_channels
from marsunits.data.mask_io import read_mask
from marsunits.errors import (
    ConfigError,
    DataError,
    MarsUnitsError,
    TerminatedError,
    came_during,
    counted,
    sigterm_raises,
    stop_said,
    stopping_otherwise,
)
from marsunits.file_digest import file_sha256
from marsunits.inference.checks import (
    CheckedOptions,
    check_before_predicting,
    check_logger,
    configured_log_dir,
    labels_option,
    refuse_train_last,
)
from marsunits.inference.evaluation import Evaluation
from marsunits.inference.image_cameras import (
    add_ground_coordinates,
    camera_error_message,
    image_camera,
    sized_image_camera,
    warn_if_angles_read_as_radians,
    warn_if_sees_no_ground,
    warn_misplaced_camera_files,
)
from marsunits.inference.inputs import (
    InputFile,
    discover,
    normalise_patterns,
    output_escape,
)
from marsunits.inference.labelled_layout import warn_labelled_layout
from marsunits.inference.options import (
    PredictOptions,
    offers_checkpoint_map,
    read_labels_class_map,
    shipped_map_note,
)
from marsunits.inference.output_settings import (
    ADAPTED_NETWORK_KEY,
    ARITHMETIC_KEYS,
    METHOD_VERSIONS,
    PENDING_KEY,
    SETTINGS_NAME,
    adaptation_inputs,
    camera_file_sha256,
    changed_inputs_text,
    check_settings,
    continues_overwrite,
    image_status,
    input_change,
    method_versions,
    overwrite_run_id,
    read_record,
    record_stamp,
    refresh_image_record,
    settings_differences,
    settings_record,
    write_settings,
)
from marsunits.inference.output_writable import (  # OutputWriteError: importable from here too
    OUTPUT_STOP_ERRNOS,
    OutputWriteError,
    output_stop_message,
)
from marsunits.inference.predictor import (
    ImageFileDataset,
    LoadedImage,
    LoaderWorkerError,
    Predictor,
    killed_by_sigterm,
    loader_worker_death,
    make_loader,
    resolve_num_workers,
)
from marsunits.inference.run_reports import RunReports, RunResult
from marsunits.inference.runtime import build_forward, configure_threads
from marsunits.inference.sharded_run import (
    RankStops,
    Shard,
    _check_output_dir_free,
    _StoppedWithTheRun,
    how_far,
    predict_shard,
)
from marsunits.inference.tiling import make_grid, model_tile_note
from marsunits.inference.unit_mapper import UnitSteps, is_grey
from marsunits.inference.writers import (
    MODEL_KEY,
    OVERWRITE_RUN_KEY,
    SAVED_BY_KEY,
    OutputPaths,
    has_outputs,
    model_record,
    output_folder_clash,
    output_name_problem,
    printable,
    read_manifest,
    remove_outputs_except,
    unit_fractions,
    write_prediction,
)
from marsunits.training_extent import barely_trained, barely_trained_warning
from marsunits.user_paths import expand_home

log = logging.getLogger(__name__)

#: Without a terminal (output redirected: nohup, sbatch, ``| tee``) the progress bar is off, and the run logs
#: how far it got instead: its first and last image, and in between at most one line this many seconds apart.
PROGRESS_LOG_INTERVAL_S = 30.0


def run(cfg: DictConfig) -> int:
    """Entry point of ``predict.py``: predict the folder described by ``cfg``; returns the exit code.

    Raises:
        MissingFileError: ``ckpt_path=last`` (train.py's word for resuming) and no file ``last`` is there:
            the message names the newest ``checkpoints/best.ckpt`` under ``paths.log_dir`` to give instead.
    """
    opts = PredictOptions.from_config(cfg)
    refuse_train_last(opts.ckpt_path, configured_log_dir(cfg))  # before the folders: the first mistake
    return predict_folder(opts, cfg).exit_code


def _progress_line(done: int, total: int, row: Mapping[str, Any], rate: float, world_size: int = 1) -> str:
    """The progress bar's news as one log line, for a run without a terminal: how many of the ``total``
    images to predict are ``done``, the last one's status (and seconds), and the time left at ``rate``
    images a second: ``predicted 3 of 82 images (528_1.jpg: ok, 15.6 s); 0.06 images/s, about 22 min
    left`` (``...; all done`` for the last).

    In a sharded run of ``world_size`` processes only rank 0 logs, and ``total`` is its share: the line
    says so (``predicted 3 of rank 0's 41 images, of 2 ranks``, ``...; rank 0's share done``), where it
    said "41 of 41 images; all done" of an 82-image folder while the other ranks were still at work."""
    seconds = row.get("seconds")
    took = f", {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    sharded = world_size > 1
    if done >= total:
        left = "rank 0's share done" if sharded else "all done"
    else:
        remaining = (total - done) / max(rate, 1e-9)
        left = (
            f"about {remaining:.0f} s left"
            if remaining < 90
            else f"about {remaining / 60:.0f} min left"
            if remaining < 90 * 60
            else f"about {remaining / 3600:.1f} h left"
        )
        left = f"{rate:.2f} images/s, {left}"
    of = f"rank 0's {counted(total, 'image')}, of {world_size} ranks" if sharded else counted(total, "image")
    return f"predicted {done} of {of} ({row['path']}: {row['status']}{took}); {left}"


def _error_row(rel: PurePosixPath, message: str, seconds: float | None = None) -> dict[str, Any]:
    return {"path": rel.as_posix(), "status": "error", "message": message, "seconds": seconds}


def _result_row(
    rel: PurePosixPath,
    status: str,
    message: str,
    mask: np.ndarray,
    lines: Sequence[ContactLine],
    seconds: Any,
    greyscale: bool | None,
    camera_error: str = "",
) -> dict[str, Any]:
    """A manifest row of an image with its outputs; ``greyscale`` None: not known (a row of a manifest from
    before the column). ``camera_error``: the refusal of its camera file (naming the file), "" where none was
    refused; ``message`` then says it with the fix. The image is ``ok`` or ``skipped`` all the same: its mask,
    overlay and contacts in pixels are written, only their metres are missing (it was an ``error`` row, and
    the run's last line counted it failed)."""
    fractions = unit_fractions(mask)
    return {
        "path": rel.as_posix(),
        "status": status,
        "message": message,
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
        "greyscale": None if greyscale is None else int(greyscale),
        **{f"frac_{name}": frac for name, frac in zip(CLASS_NAMES, fractions, strict=True)},
        "contact_length_px": float(sum(line.length_px for line in lines)),
        "n_contacts": count_contacts(lines),
        "seconds": seconds,
        "camera_error": camera_error,
    }


def _refuse_saved_from_python(paths: OutputPaths, members: Mapping[str, Any]) -> None:
    """Refuse an input whose outputs ``UnitMap.save`` wrote (its contact file's ``members`` say so): made with
    a model and settings no record names, skipped as finished they stayed under a ``prediction_settings.json``
    naming this run's, and predicted again (``save_probabilities=true``) they were replaced without a word.

    Raises:
        ConfigError: naming the file and what to do.
    """
    if members.get(SAVED_BY_KEY):
        raise ConfigError(
            f"{paths.contact} was written by {members[SAVED_BY_KEY]} (from Python), not by predict.py, "
            "so this run cannot tell which model and settings made that image's outputs. Give another "
            "output_dir, or overwrite=true to predict every image again (it replaces those files)"
        )


@dataclass(frozen=True)
class _LoadedModel:
    """The network read from ``ckpt_path``, and what the session's later steps need of its file."""

    #: The network (a ``SegmentationTask``), before any batch-norm adaptation.
    task: Any
    #: The network's input divisor (``size_divisor``): the windows' sides are multiples of it.
    stride: int
    #: The file that holds the weights: a package's safetensors, or the .ckpt. Its hash names the ONNX cache
    #: and identifies the model in prediction_settings.json.
    weights_file: Path
    #: Hashes of other files with the same weights: the checkpoint a package records it was exported from.
    same_model_sha256: Sequence[str]


class _Session(RunReports):
    """State of one run (or of one rank's shard): options, model, evaluation and the rows written so far; its
    reports are written by :class:`~marsunits.inference.run_reports.RunReports`."""

    def __init__(
        self,
        opts: PredictOptions,
        shard: Shard = Shard(),  # noqa: B008 - frozen
        stops: RankStops | None = None,
        all_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
        rank_0_word: Callable[[Any], Any] | None = None,
    ) -> None:
        """Set the run up, step by step, in this order: every refusal comes before anything is written, and
        the costly start-up (adapting the batch norm, an ONNX export, timing the runtimes) after the checks
        that can refuse the folder. ``stops``, ``all_sum`` and ``rank_0_word``: a sharded run's (see
        :attr:`stops`, :attr:`all_sum`, :attr:`rank_0_word`)."""
        self.opts = opts
        self.shard = shard
        #: A sharded run's stop flag (:func:`~marsunits.inference.sharded_run.predict_shard`), checked before
        #: each image, of the batch-norm adaptation's pass too; None: one process.
        self.stops = stops
        #: A sharded run's sum over its ranks of a float64 vector (``predict_shard``'s ``all_sum``): each rank
        #: adapts the batch-norm statistics (``adapt_bn``) to its shard, and the ranks add up their totals.
        #: None: this process adapts to every input.
        self.all_sum = all_sum
        #: A sharded run's rank 0's word (``predict_shard``'s ``rank_0_word``): whether every rank reads the
        #: batch-norm statistics the folder keeps, as rank 0 read them, or adapts. None: this process decides.
        self.rank_0_word = rank_0_word
        checked = check_before_predicting(opts)
        self._take_folders(checked)
        self._take_run_settings(checked)
        all_files = self._find_inputs()
        model = self._load_model()
        self._read_folder_record()
        self._record_settings(model, all_files)
        self._refuse_other_settings()
        task = self._adapt_if_asked(model, all_files)
        self._build_predictor(task, model)
        self._set_up_evaluation()
        self._start_rows()

    def _take_folders(self, checked: CheckedOptions) -> None:
        """``input_dir``, ``output_dir`` and ``labels_dir`` as checked; warns once a run where the labels'
        ``classes.json`` cannot be read (they are then read as project ids, unchecked)."""
        self.input_dir, self.output_dir = checked.input_dir, checked.output_dir
        self.labels_dir = checked.labels_dir
        if self.labels_dir is not None and self.opts.labels_class_map is None:
            # A classes.json beside the labels that names other classes was refused above; one that cannot
            # be read stops nothing, but the labels are then read as project ids unchecked: said, once a run.
            unread = unreadable_classes_file(
                labels_classes_folder(self.labels_dir),
                labels_option(self.labels_dir),
                "labels_class_map",
                by_name=True,
                python=not self.opts.config_words,  # predict_folder(PredictOptions(...)): 'ai4mars'
            )
            if unread is not None:
                log.warning("%s", unread)

    def _take_run_settings(self, checked: CheckedOptions) -> None:
        """The steps after the network (``unit_steps``), the ``device``, ``precision`` and ``ckpt_path`` as
        checked, PyTorch's ``threads`` (set here for the run) and the ``pixel_limit`` of every read."""
        opts = self.opts
        #: The steps after the network (no-data border, minimum mapping unit, contacts), as UnitMapper's.
        self.unit_steps = UnitSteps.from_options(opts, checked.contact_config)
        self.device, self.precision, self.ckpt_path = checked.device, checked.precision, checked.ckpt_path
        self.threads = configure_threads(opts.threads, self.shard.local_world_size)
        #: Largest image read, in megapixels, for every read of an input, its label and camera orientation
        #: (``max_megapixels=null``: inf, no limit at all, not even Pillow's decompression-bomb one).
        self.pixel_limit = math.inf if opts.max_megapixels is None else float(opts.max_megapixels)

    def _find_inputs(self) -> list[InputFile]:
        """The inputs: ``files`` (this rank's share) and ``problems`` (rank 0's), ``all_inputs`` and
        ``input_folders`` (of every shard); warns where ``input_dir`` is a labelled dataset's root. Returns
        every shard's inputs."""
        # Reached through a symbolic link, or labels kept under the input folder: not photographs. (labels_dir
        # as input_dir works with patterns that leave the masks out: check_before_predicting.)
        skip = {self.output_dir: "output_dir (this run's outputs)"}
        if self.labels_dir is not None and self.input_dir in self.labels_dir.parents:
            skip[self.labels_dir] = "labels_dir (the label masks)"
        self.files, self.problems = discover(self.input_dir, self.opts.patterns, skip)
        all_files = list(self.files)
        #: Every shard's inputs (relative posix paths): outputs of these are no removed input's.
        self.all_inputs = {f.rel.as_posix() for f in all_files}
        #: Every shard's inputs, sorted: rank 0 lists the images finished earlier of a rank that never
        #: planned its shard (:meth:`finished_before`).
        self.every_input = all_files
        warn_labelled_layout(self.input_dir, self.all_inputs)
        # The folders mirrored into output_dir (of every shard's inputs): no output file may take their names.
        self.input_folders = {p.as_posix() for f in all_files for p in f.rel.parents if p.parts}
        # Shard the sorted file list before anything looks at outputs: another rank may already be writing
        # its files, so deciding "complete, skip" first would let the ranks disagree on the shards.
        self.files = self.files[self.shard.rank :: self.shard.world_size]
        if self.shard.rank != 0:
            self.problems = []
        return all_files

    def _load_model(self) -> _LoadedModel:
        """Load ``ckpt_path``: its ``metadata``, whether it is ``barely_trained`` (warned), the ``tile`` (the
        option's or the model's, refused where it does not fit the network) and ``in_channels``."""
        opts = self.opts
        # Imported here: Lightning is slow to import. load_model reads packages (safetensors + JSON) and
        # checkpoints; a checkpoint that needs arbitrary unpickling is refused unless trust_checkpoint.
        from marsunits.model_package import WEIGHTS_NAME, is_package, load_model, read_package_json

        task = load_model(self.ckpt_path, map_location="cpu", trust_checkpoint=bool(opts.trust_checkpoint))
        self.metadata = task.metadata
        #: Why the model is evidently too little trained to use (a debug=fdr checkpoint...), or None.
        self.barely_trained = barely_trained(task.training_record)
        if self.barely_trained is not None and self.shard.rank == 0:
            dataset = self.metadata.get("dataset")
            log.warning("%s", barely_trained_warning(os.fspath(self.ckpt_path), self.barely_trained, dataset))
        stride = int(self.metadata.get("size_divisor", 32))
        tile = int(opts.tile if opts.tile is not None else self.metadata["tile_size"])
        try:
            make_grid(1, 1, tile, opts.overlap, stride)
        except ValueError as exc:
            # With tile=null the value is the model's, never typed by the user: say where it comes from.
            taken = model_tile_note("tile=null", tile, stride, self.ckpt_path) if opts.tile is None else ""
            raise ConfigError(f"bad tile/overlap for this checkpoint: {exc}{taken}") from exc
        self.tile = tile
        self.in_channels = int(self.metadata["in_channels"])
        # The file that holds the weights: a package's safetensors, or the .ckpt.
        package = is_package(self.ckpt_path)
        weights_file = (
            (self.ckpt_path if self.ckpt_path.is_dir() else self.ckpt_path.parent) / WEIGHTS_NAME
            if package
            else self.ckpt_path
        )
        # A package records the checkpoint it was exported from: the same weights, so the same model. (Given
        # as its model.safetensors, the package is the weights file itself, and still a package.)
        source = (
            read_package_json(self.ckpt_path).get("provenance", {}).get("source_checkpoint_sha256")
            if package
            else None
        )
        same_model = [source] if isinstance(source, str) and source else []
        return _LoadedModel(task, stride, weights_file, same_model)

    def _read_folder_record(self) -> None:
        """The ``output_dir``'s ``prediction_settings.json`` (``earlier``, {} where it has none), and the
        other input folders whose outputs it holds (``other_input_dirs``, ``outdated_input_dirs``); warns
        where the folder holds another input folder's outputs."""
        #: The folder's record as this run read it, and why it cannot be used (:func:`read_record`): in a
        #: sharded run rank 0's reading (:attr:`rank_0_word`), which every rank checks and builds on. Each
        #: rank reading the file itself could see another record (changed between the reads, a shared
        #: filesystem's lag), one rank refusing the folder or resuming it with other settings than another.
        self.settings_read = self._read_settings_file()
        #: What decides the outputs (see :mod:`marsunits.inference.output_settings`).
        earlier = self.settings_read[0] or {}  # the folder's record, if it has one
        self.earlier = earlier
        #: Other input folders whose outputs the folder holds, by its record (older records: none known). One
        #: that is no longer there was moved or renamed (this run's own folder, as often as not) or deleted:
        #: kept in the list, it protected outputs of inputs removed since from every later overwrite=true run
        #: in the folder, for good, and warned at each run of "another input_dir".
        recorded = earlier.get("input_dir")
        held = earlier.get("other_input_dirs")
        named = {d for d in [recorded, *(held if isinstance(held, list) else [])] if isinstance(d, str)}
        self.other_input_dirs = sorted(d for d in named - {str(self.input_dir)} if os.path.isdir(d))
        #: Other input folders whose outputs here were made with other settings than the record's: an
        #: ``overwrite=true`` run of another folder with new settings kept them (output_settings).
        outdated = earlier.get("outdated_input_dirs")
        outdated = outdated if isinstance(outdated, list) else []
        self.outdated_input_dirs = sorted(d for d in outdated if isinstance(d, str) and os.path.isdir(d))
        if recorded in self.other_input_dirs and self.shard.rank == 0:
            log.warning(
                "output_dir %s holds outputs predicted from another input_dir, %s: this run's manifest.csv, "
                "summary.json and index.html list only the images of %s%s. Give each input folder its own "
                "output_dir",
                self.output_dir,
                recorded,
                self.input_dir,
                "; overwrite=true removes none of that folder's outputs" if self.opts.overwrite else "",
            )

    def _read_settings_file(self) -> tuple[dict[str, Any] | None, str]:
        """``output_dir``'s ``prediction_settings.json`` as :func:`read_record` reads it, its stamp kept in
        :attr:`settings_stamp`; in a sharded run (:attr:`rank_0_word`) rank 0 alone reads both, and the
        others take what it read, as they take the batch-norm statistics the folder keeps
        (:meth:`_adapted_network`)."""
        path = self.output_dir / SETTINGS_NAME
        word = self.rank_0_word if self.shard.world_size > 1 else None
        if word is None:
            reading = (*read_record(path), record_stamp(self.output_dir))
        else:
            mine = (*read_record(path), record_stamp(self.output_dir)) if self.shard.rank == 0 else None
            reading = word(mine)
        record, fault, stamp = reading
        #: Which reading of the record this run's is (:func:`record_stamp`, rank 0's in a sharded run): an
        #: ``overwrite=true`` run's identity is derived from it, the same on every rank by construction.
        self.settings_stamp: str = stamp
        return record, fault

    def _record_settings(self, model: _LoadedModel, all_files: list[InputFile]) -> None:
        """``settings``, the record of what decides the outputs (all but the arithmetic, known once the
        runtime is chosen: :meth:`_build_predictor`), and ``model_record``, the model the outputs are of."""
        from marsunits.model_package import network_sha256

        opts, task, earlier = self.opts, model.task, self.earlier
        palette = [[int(c) for c in rgb] for rgb in self.metadata["palette"]]
        self.settings = settings_record(
            self.ckpt_path,
            file_sha256(model.weights_file),
            {
                # The network itself, by its tensors: one model whatever file holds it (a package and its
                # checkpoint), and another one whatever a package's provenance claims.
                "network_sha256": network_sha256(task),
                "input_dir": str(self.input_dir),
                "other_input_dirs": self.other_input_dirs,
                "outdated_input_dirs": [d for d in self.outdated_input_dirs if d != str(self.input_dir)],
                # The input normalisation the network is run with: in a checkpoint it is covered by the
                # file's hash, in a model package it lives in model.json beside the hashed weights, where
                # an edit changed every mask without a word.
                "normalisation": {
                    "mean": [round(float(v), 6) for v in task.mean.flatten()],
                    "std": [round(float(v), 6) for v in task.std.flatten()],
                },
                # The overlays' colours: a package keeps them in model.json, outside the hashed weights, and
                # an edited palette (the documented way to recolour) left a folder's gallery in two palettes.
                "palette": palette,
                # The colours the overlays are drawn in (the model's; the default until 2026-12-06, whatever
                # "palette" said): a record without it is compared as drawn in the default palette.
                "overlay_palette": palette,
                "tile": self.tile,
                "overlap": float(opts.overlap),
                "tta": bool(opts.tta),
                "adapt_bn": bool(opts.adapt_bn),
                "adapt_bn_inputs": (
                    adaptation_inputs(all_files, earlier.get("adapt_bn_inputs")) if opts.adapt_bn else None
                ),
                "method_versions": method_versions(
                    {
                        "tta": opts.tta,
                        "adapt_bn": opts.adapt_bn,
                        "min_unit_area_px": int(opts.min_unit_area_px),
                        "nodata_max": opts.nodata_max,
                    }
                ),
                **self.unit_steps.record(),  # min_unit_area_px, nodata_max, contact
                "max_range_m": float(opts.max_range_m),
                "probability_dtype": str(opts.probability_dtype) if opts.save_probabilities else None,
            },
            same_model_sha256=model.same_model_sha256,
        )
        #: The model the outputs are of, in every contact file and contact map (``model``): a GeoJSON shared
        #: alone names it, as prediction_settings.json does for the folder (adapt_bn: the adapted one, below).
        self.model_record = model_record(self.ckpt_path, self.settings["network_sha256"])

    def _refuse_other_settings(self) -> None:
        """Refuse an ``output_dir`` whose outputs were made with other settings (but the arithmetic), and one
        holding this input folder's outputs left outdated by another folder's ``overwrite=true`` run.

        Raises:
            ConfigError: naming the folder, what differs and what to do.
        """
        # Before the costly start-up (adapting the batch norm to every input, an ONNX export, timing the
        # runtimes): a folder of other settings is refused as it would be after all that work. The arithmetic
        # (runtime, precision, fold_batchnorm) is known after it, and checked with the rest in plan().
        check_settings(
            self.output_dir,
            self.settings,
            bool(self.opts.overwrite),
            ignore=ARITHMETIC_KEYS,
            read=self.settings_read,
        )
        #: What the user asked (``overwrite``): a run going on with a stopped overwrite is one too, below.
        self.asked_overwrite = bool(self.opts.overwrite)
        #: Whether this run goes on with the ``overwrite=true`` run the folder's record says was stopped (its
        #: settings, with ``overwrite=true`` or without): it skips the images that run finished and redoes
        #: the rest, as an overwrite (settled with the arithmetic in :meth:`plan`).
        self.continues_overwrite = continues_overwrite(self.earlier, self.settings, ARITHMETIC_KEYS)
        #: The ``overwrite=true`` run's identity (:func:`overwrite_run_id`), set in :meth:`plan`.
        self.overwrite_run: str | None = None
        #: Why an input with complete outputs is skipped: its manifest message and the run's log line.
        self.skipped_note = (
            "finished by the stopped overwrite=true run this one goes on with"
            if self.continues_overwrite
            else "outputs already present; overwrite=true redoes them"
        )
        if str(self.input_dir) in self.outdated_input_dirs and not self.opts.overwrite:
            # Skipped as finished, they would stay the other settings' outputs under a record naming these.
            raise ConfigError(
                f"{self.output_dir} holds outputs of {self.input_dir}'s images made with other settings than "
                "its prediction_settings.json names: an overwrite=true run of another input folder into it "
                "changed the settings and left them. Run with overwrite=true to predict them again with "
                "these settings, or give each input folder its own output_dir"
            )
        if self.continues_overwrite:
            self.opts = replace(self.opts, overwrite=True)

    def _adapt_if_asked(self, model: _LoadedModel, all_files: list[InputFile]) -> Any:
        """``adapt_bn=true``: the network with batch-norm statistics of every input, ``adapted_on`` their
        count and ``model_record`` naming the adapted network; else the network as loaded (``adapted_on``
        None). The statistics are those the folder keeps (:mod:`marsunits.inference.adapted_state`) when it
        keeps some and this run is no ``overwrite=true`` (``adapt_bn_statistics`` ``"stored"``), else adapted
        now (``"adapted"``) and kept by :meth:`store_adapted_state`.

        Raises:
            ConfigError: ``adapt_bn=true`` with a runtime other than ``torch``; stored statistics that cannot
                be used or are missing though the folder's record names them, or a folder under their name
                (:class:`~marsunits.inference.adapted_state.AdaptedStateError`).
        """
        task = model.task
        #: Images whose windows set the batch-norm statistics (``adapt_bn``); None when not adapted.
        self.adapted_on: int | None = None
        #: ``"adapted"`` by this run, read from the folder's ``"stored"`` ones, or None (no ``adapt_bn``).
        self.adapt_bn_statistics: str | None = None
        #: The batch-norm buffers this run adapted (on the CPU) and their record, for the folder to keep.
        self._adapted_state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
        if self.opts.adapt_bn or self.opts.overwrite:  # the file is read, written or removed
            from marsunits.inference.adapted_state import refuse_folder_in_the_way

            refuse_folder_in_the_way(self.output_dir, self._kept_network() is not None)
        if self.opts.adapt_bn:
            from marsunits.model_package import network_sha256

            if str(self.opts.runtime) != "torch":
                raise ConfigError(
                    f"adapt_bn=true re-estimates the network's batch-norm statistics in PyTorch, but "
                    f"runtime={self.opts.runtime}; use runtime=torch with it (or adapt_bn=false)"
                )
            task = self._adapted_network(task, all_files, model.stride)
            # The adapted network draws the outputs, not the file's: a contact file shared alone names it,
            # by the digest prediction_settings.json gives the file's network, and that one beside it.
            self.model_record = model_record(
                self.ckpt_path,
                network_sha256(task),
                adapted_from=self.settings["network_sha256"],
                adapted_on_images=self.adapted_on,
            )
            if self._adapted_state is not None:
                self._adapted_state[1]["network_sha256"] = self.model_record["network_sha256"]
            self.settings[ADAPTED_NETWORK_KEY] = self.model_record["network_sha256"]
        return task

    def _kept_network(self) -> str | None:
        """The adapted network the folder's images were predicted with, as its record names it, when this
        run resumes them (no ``overwrite=true``, ``adapt_bn=true`` then and now): its statistics are kept in
        the folder. None otherwise, and for a folder begun before they were kept."""
        digest = self.earlier.get(ADAPTED_NETWORK_KEY)
        resumes = self.opts.adapt_bn and not self.opts.overwrite and self.earlier.get("adapt_bn")
        return digest if resumes and isinstance(digest, str) else None

    def _adapted_network(self, task: Any, all_files: list[InputFile], stride: int) -> Any:
        """``task`` with the statistics the folder keeps, when it keeps some and this run is no
        ``overwrite=true``; else adapted to every input now (:meth:`_adapt_batchnorm`). In a sharded run
        (:attr:`rank_0_word`) rank 0 alone reads the file and decides: the others take the bytes it read, or
        adapt with it, whatever their own view of the folder."""
        from marsunits.inference.adapted_state import (
            ADAPTED_STATE_NAME,
            AdaptedStateError,
            adapted_buffers,
            load_adapted,
            missing_refusal,
            read_adapted_bytes,
        )

        path = self.output_dir / ADAPTED_STATE_NAME
        # What the statistics depend on: the network adapted, the inputs and the windows they pass in.
        record: dict[str, Any] = {
            "checkpoint_network_sha256": self.settings["network_sha256"],
            "adapt_bn_inputs": self.settings["adapt_bn_inputs"],
            "tile": self.tile,
            "overlap": float(self.opts.overlap),
            "adapt_bn_version": METHOD_VERSIONS["adapt_bn"],
        }
        if not self.opts.overwrite:
            kept = self._kept_network()
            word = self.rank_0_word if self.shard.world_size > 1 else None
            found: tuple[Any, dict[str, Any]] | None = None
            if word is None or self.shard.rank == 0:
                data: bytes | None = None
                try:
                    data = read_adapted_bytes(path)
                    found = load_adapted(task, path, record, kept, data)
                except FileNotFoundError:
                    # Deleted, where the record names it: adapting again would predict the rest with another
                    # network. Else (a new folder, or one begun before the statistics were kept): adapted
                    # below.
                    if kept is not None:
                        raise missing_refusal(path, self.output_dir, kept) from None
                except AdaptedStateError as unfit:
                    if self.earlier:
                        raise
                    # Kept before the record, which is written before any image: without one, no image of
                    # the folder was predicted with the file (a run stopped between the two writes).
                    if self.shard.rank == 0:
                        log.info(
                            "%s is of a run stopped before it predicted an image (the folder has no %s) and "
                            "does not fit this run (%s): adapted again, and replaced",
                            path,
                            SETTINGS_NAME,
                            unfit.fault,
                        )
                if word is not None:
                    # Rank 0's decision, for every rank (read: these bytes; None: adapt). Each rank deciding
                    # by its own view of the file, one to which it was not visible yet (a shared
                    # filesystem's lag) adapted while another read it, and waited for it in the ranks'
                    # meeting before their sum forever. A refusal above reaches the others as a failure.
                    word(None if found is None else data)
            else:
                told = word(None)
                if told is not None:  # the file rank 0 read, checked here as there
                    found = load_adapted(task, path, record, kept, told)
            if found is not None:
                adapted, stored = found
                self.adapted_on = int(stored.get("adapted_on_images") or 0) or None
                self.adapt_bn_statistics = "stored"
                if self.shard.rank == 0:
                    log.info(
                        "using the batch-norm statistics kept in %s (adapted to %s by the run that began the "
                        "folder) rather than adapting them again, so that every image of the folder is "
                        "predicted with the same network",
                        path,
                        counted(self.adapted_on or 0, "image"),
                    )
                return adapted
        adapted = self._adapt_batchnorm(task, all_files, self.tile, stride)
        self.adapt_bn_statistics = "adapted"
        buffers = {k: v.detach().to("cpu", copy=True) for k, v in adapted_buffers(adapted).items()}
        self._adapted_state = (buffers, {**record, "adapted_on_images": self.adapted_on})
        if self.earlier.get("adapt_bn") and not self.opts.overwrite and self.shard.rank == 0:
            log.info(
                "%s keeps no adapted batch-norm statistics (a folder begun before they were kept): adapted "
                "again, and kept in %s from now on",
                self.output_dir,
                ADAPTED_STATE_NAME,
            )
        return adapted

    def store_adapted_state(self) -> None:
        """Rank 0: keep the statistics this run adapted in ``output_dir``
        (:func:`~marsunits.inference.adapted_state.write_adapted_state`), so that a later run of the folder
        predicts with the same network; nothing when it read the folder's own. An ``overwrite=true`` run
        without ``adapt_bn`` removes the folder's (once it has finished: no output is of them any more)."""
        from marsunits.inference.adapted_state import ADAPTED_STATE_NAME, write_adapted_state

        if self.shard.rank != 0:
            return
        if self._adapted_state is not None:
            with self._stopped_if_full(self.output_dir / ADAPTED_STATE_NAME):
                write_adapted_state(self.output_dir, *self._adapted_state)
        elif not self.opts.adapt_bn and self.opts.overwrite:
            (self.output_dir / ADAPTED_STATE_NAME).unlink(missing_ok=True)

    def save_settings(self, pending: bool = False, replaced_all: bool = False) -> None:
        """Record the run's ``settings`` in ``output_dir`` (:func:`write_settings`, which says ``pending`` and
        ``replaced_all``).

        Raises:
            OutputWriteError: the disk is full (or read-only, forbidden), naming the file.
        """
        with self._stopped_if_full(self.output_dir / SETTINGS_NAME):
            marker = (self.overwrite_run or True) if pending else False
            write_settings(self.output_dir, self.settings, pending=marker, replaced_all=replaced_all)

    @contextlib.contextmanager
    def _stopped_if_full(self, path: Path | None = None) -> Iterator[None]:
        """Within the block, which writes in ``output_dir`` (``path``, or an image's outputs: None), a full
        (or read-only, forbidden) disk stops the run: :class:`OutputWriteError` worded by
        :func:`output_stop_message`, naming ``path`` where its write's error names no file or its temporary,
        said in ``stopped_early`` for the reports. The kept statistics and the settings record ended in the
        generic line of a full disk, "cannot write a file"."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in OUTPUT_STOP_ERRNOS:
                raise
            self.stopped_early = output_stop_message(self.output_dir, exc, path, bool(self.opts.overwrite))
            raise OutputWriteError(self.stopped_early) from exc

    def _build_predictor(self, task: Any, model: _LoadedModel) -> None:
        """The ``runtime`` chosen (a resumed ``runtime=auto`` folder keeps the one it was begun with),
        recorded with the arithmetic in ``settings``, and the ``predictor`` that runs ``task`` on it."""
        opts = self.opts
        cache_dir = (
            expand_home(opts.onnx_cache_dir) if opts.onnx_cache_dir else self.output_dir / ".cache" / "onnx"
        )
        runtime = kept = str(opts.runtime)
        resumes = not opts.overwrite and not self.earlier.get(PENDING_KEY)
        if runtime == "auto" and (resumes or self.continues_overwrite):
            # A resumed folder keeps the runtime it was begun with: the timed choice flips with the load.
            runtime = (
                str(self.earlier["runtime"]) if self.earlier.get("runtime") in ("torch", "onnx") else runtime
            )
        forward, self.runtime = build_forward(
            task,
            runtime=runtime,
            device=self.device,
            precision=self.precision,
            channels_last=bool(opts.channels_last),
            compile=bool(opts.compile),
            fold_bn=bool(opts.fold_batchnorm),
            threads=self.threads,
            ckpt_path=model.weights_file,
            cache_dir=cache_dir,
            probe_shape=(opts.batch_size, self.in_channels, self.tile, self.tile),
            tolerance=float(opts.onnx_tolerance),
        )
        # The arithmetic the masks come from: bf16 and float32 (or ONNX Runtime) differ in a few pixels in a
        # thousand, and a folder begun on an AMX or GPU machine (bf16) and finished on another (float32)
        # held both without a word. Recorded after the runtime is chosen; compared by check_settings.
        if runtime != kept:  # summary.json says what the user asked, and why another runtime was not timed
            self.runtime.requested = kept
            self.runtime.reason = (
                f"runtime=auto resuming a folder begun with runtime {runtime}: kept ({self.runtime.reason})"
            )
        self.settings["runtime"] = self.runtime.name
        self.settings["precision"] = self.precision if self.runtime.name == "torch" else "32"
        # Folding batch norm into the convolutions is exact in float32, but in bf16 it rounds otherwise: 2 %
        # of a window's classes change, as many as between bf16 and float32. Recorded where it matters.
        bf16 = self.settings["precision"] == "bf16"
        self.settings["fold_batchnorm"] = bool(opts.fold_batchnorm) if bf16 else None
        self.predictor = Predictor(
            forward,
            in_channels=self.in_channels,
            tile=self.tile,
            overlap=opts.overlap,
            batch_size=opts.batch_size,
            device=self.device,
            num_classes=int(self.metadata["num_classes"]),
            stride=model.stride,
            mirror_average=bool(opts.tta),
        )

    def _set_up_evaluation(self) -> None:
        """``evaluation``: the scoring of the masks against ``labels_dir`` (None without it); says once a run
        where a data set's name as ``labels_class_map`` reads as its shipped map."""
        opts = self.opts
        self.evaluation = (
            Evaluation(
                self.labels_dir,
                read_labels_class_map(opts.labels_class_map, self.metadata),
                trained_sols=self.metadata.get("trained_sols"),
                trained_image_keys=self.metadata.get("trained_image_keys"),
                max_megapixels=self.pixel_limit,
                image_extensions=normalise_patterns(opts.patterns),
                classes_file_checked=True,  # refused by check_before_predicting, warned of above
                model_class_map=offers_checkpoint_map(self.metadata),
            )
            if self.labels_dir is not None
            else None
        )
        # labels_class_map=ai4mars with a model not trained on AI4Mars: the shipped map, said once a run.
        shipped = (
            shipped_map_note(opts.labels_class_map, self.metadata) if self.evaluation is not None else None
        )
        if shipped is not None and self.shard.rank == 0:
            log.info("%s", shipped)

    def _start_rows(self) -> None:
        """What the run records as it goes, empty: the ``rows``, the counts, how it stopped, the contact map's
        items."""
        self.rows: dict[str, dict[str, Any]] = {}
        #: Inputs whose outputs were complete, so not predicted again (:meth:`plan`); ``rows`` also holds
        #: the error rows of inputs refused before predicting (escapes, names too long, unreadable entries).
        self.complete = 0
        self.megapixels = 0.0
        self.loop_seconds = 0.0
        self.stopped_early: str | None = None
        #: The input being predicted (its path under ``input_dir``) while its row is made, None between
        #: them: where a bug that ends the run happened, said by the run's last paragraph.
        self.predicting: str | None = None
        #: The rank a bug ended a sharded run on (``"rank 1 of its 2 ranks"``), said with ``predicting`` by
        #: rank 0's last paragraph; None for one process.
        self.failed_rank: str | None = None
        #: How the other ranks of a sharded run a bug ended (``failed_rank``) ended besides: stopped (Ctrl-C,
        #: SIGTERM) or failed too, one sentence ("Also, rank 0 was terminated (SIGTERM) after ...") that
        #: rank 0's last paragraph says after the bug's; for one process, a stop that came as an error ended
        #: it ("Also, the run was interrupted (Ctrl-C) as it failed."). None where none did.
        self.also_ended: str | None = None
        #: The status a run that stops before the end exits with (130 Ctrl-C, 143 SIGTERM, 2 a full disk, 1
        #: a bug; another rank's failure, its error's: :func:`~marsunits.errors.exit_status`), set before its
        #: reports are written: ``summary.json``'s ``exit_status``. None for a run that goes to the end.
        self.stop_status: int | None = None
        #: ``(image rel path, contact lines, camera)`` of images with a camera, for ``map=true``.
        self.map_items: list[tuple[str, list[ContactLine], CameraModel]] = []
        self.cameras_seen = 0
        #: Greyscale inputs this process predicted this run (its ``ok`` rows, a refused camera file's
        #: included; an ``error`` row until 2026-12-07), added up over the ranks of a sharded run.
        self.grey_predicted = 0
        #: Inputs this process has finished predicting this run (with overwrite: replaced).
        self.redone = 0
        #: Whether this process marked the settings record pending (overwrite, first input started).
        self.marked = False
        #: The error that ended the image loop (a bug, a full disk, a dead loader worker), recorded as it left
        #: the loop; None while none did.
        self.failure: Exception | None = None
        #: How a stop that came as ``failure`` went up is said (``"interrupted (Ctrl-C)"``): the failure
        #: ended the run all the same (:meth:`predict_all`); None where none came.
        self.stopped_as_it_failed: str | None = None

    def _adapt_batchnorm(self, task: Any, files: list[InputFile], tile: int, stride: int) -> Any:
        """A copy of ``task`` with batch-norm statistics of every readable input of ``files`` (AdaBN; see
        :mod:`marsunits.inference.adaptation`), whatever the outputs already written (a re-run reads the
        statistics the folder keeps instead: :meth:`_adapted_network`). Unreadable files are left to the
        prediction pass, which reports them.

        In a sharded run (:attr:`all_sum`) each rank passes its own shard of ``files``
        (``files[rank::world_size]``, as it predicts them) and the ranks add up their float64 totals, so
        every rank takes the same statistics, those of one process passing every input but for the order of
        the additions (each rank passing every input made the whole folder's pass once per rank). Between
        images the rank looks at :attr:`stops`: another rank that failed, was stopped or went away stops it
        here (:class:`_StoppedWithTheRun`), as the ranks' meeting before the sum does once it has passed its
        shard."""
        from marsunits.inference.adaptation import NoImagesError, adapt_batchnorm_tiled

        sharded = self.all_sum is not None and self.shard.world_size > 1
        mine = files[self.shard.rank :: self.shard.world_size] if sharded else files
        dataset = ImageFileDataset(
            [f.path for f in mine], self.opts.max_megapixels, self.opts.max_file_mb, identity=False
        )

        def images() -> Iterator[torch.Tensor]:
            for i in range(len(dataset)):
                said = self.stops.announced() if self.stops is not None else None
                if said is not None:
                    stopping_otherwise()  # its own SIGTERM, next, must not cut the ranks' meeting
                    raise _StoppedWithTheRun(said)
                item = dataset[i]
                if item.image is not None:
                    yield torch.from_numpy(to_channels(item.image, self.in_channels)).permute(2, 0, 1)

        start = time.perf_counter()
        try:
            # On the prediction device: the pass is a forward over every window of every input, as long as
            # predicting them (build_forward moves the adapted copy there anyway).
            adapted, self.adapted_on = adapt_batchnorm_tiled(
                task.to(self.device),
                images(),
                tile=tile,
                overlap=self.opts.overlap,
                batch_size=self.opts.batch_size,
                num_classes=int(self.metadata["num_classes"]),
                stride=stride,
                device=self.device,
                all_sum=self.all_sum if sharded else None,
            )
        except NoImagesError as exc:
            unread = (
                f"the only input file under {self.input_dir} could not be read"
                if len(files) == 1
                else f"none of the {len(files)} input files under {self.input_dir} could be read"
            )
            raise DataError(
                f"adapt_bn=true: {unread}, so there are no images to adapt the batch-norm statistics to; fix "
                "the inputs or set adapt_bn=false"
            ) from exc
        except ValueError as exc:
            raise ConfigError(f"adapt_bn=true: {exc} Set adapt_bn=false for this model.") from exc
        log.info(
            "batch-norm statistics adapted to %s in %.1f s%s",
            counted(self.adapted_on, "image"),
            time.perf_counter() - start,
            f" (each of the {self.shard.world_size} ranks passed its shard, {len(mine)} of the {len(files)} "
            "input files here, and the ranks added up their sums)"
            if sharded
            else "",
        )
        return adapted

    # ----------------------------------------------------------------------------------------- skipping
    def _skipped_row(
        self, f: InputFile, paths: OutputPaths, old: Mapping[str, str] | None
    ) -> dict | str | None:
        """Row for an input whose outputs are complete, recomputed from its mask and contacts (cheap).

        Returns what changed instead when the image or its camera file changed since (``input_change``:
        "image file replaced", ...), and None when the outputs cannot be read back: either way, the input is
        predicted again.
        """
        try:
            mask = read_mask(paths.mask, max_megapixels=math.inf)  # this tool's own output
            lines, members = read_contact_collection(paths.contact)
        except (ImageReadError, ValueError, OSError):
            return None  # unreadable leftovers: predict again
        _refuse_saved_from_python(paths, members)
        try:
            status = image_status(f.path, members)
        except OSError:
            return "image file could not be examined"  # cannot tell: predict it again
        change = input_change(f.path, paths, members, status)
        if change is not None:
            return change
        if status == "retimed":  # the same image under another time: recorded, so not hashed on every run
            refresh_image_record(f.path, paths)
        if any(ln.ground_m is not None for ln in lines) and find_camera_file(f.path) is None:
            return "camera file removed"  # the ground coordinates it gave are stale
        if self.evaluation is not None:
            digest = members.get("image_sha256")
            self.evaluation.add(f.rel, mask, lines, digest if isinstance(digest, str) else None, f.path)
        message, refused = self.skipped_note, ""
        camera = None
        if find_camera_file(f.path) is not None:  # a broken one is said again on every run until it is fixed
            try:
                camera = sized_image_camera(
                    f.path, mask.shape[1], mask.shape[0], max_megapixels=self.pixel_limit
                )
            except CameraFileError as exc:
                camera, message, refused = None, camera_error_message(exc, earlier=True), str(exc)
            if camera is not None:  # said again as on its first run: the image is still without metres
                warn_if_sees_no_ground(f.path, camera, self.opts.max_range_m)
                warn_if_angles_read_as_radians(f.path, camera)
        else:  # said again as on its first run: skipped, the image is still off the contact map
            warn_misplaced_camera_files(f.path)
        if self.opts.map:
            self._remember_camera(f, lines, camera)
        seconds = old.get("seconds") if old else None
        grey = members.get("image_greyscale")  # older output folders: the earlier manifest's column
        if not isinstance(grey, bool):
            grey = {"1": True, "0": False}.get(old.get("greyscale", "")) if old else None
        return _result_row(f.rel, "skipped", message, mask, lines, seconds, grey, refused)

    def plan(self) -> list[InputFile]:
        """Record problem and skipped rows; return the inputs still to predict.

        In this order: the folder's settings checked whole (the arithmetic included, known now), the rows of
        the problems found with the inputs, then each input of this shard in turn, refused (its outputs
        cannot be named), skipped (its outputs are complete) or to predict; last, the lines saying which
        inputs are predicted again and why.

        Raises:
            ConfigError: ``output_dir`` holds outputs made with other settings (:func:`check_settings`).
        """
        check_settings(self.output_dir, self.settings, self.asked_overwrite, read=self.settings_read)
        self._settle_overwrite_run()
        self._record_problems()
        old = read_manifest(self.output_dir / "manifest.csv", old_names=True)
        todo = []
        changed: list[tuple[str, str]] = []  # each input predicted again as changed, and what changed
        without_probabilities = 0
        for f in self.files:
            refusal = self._output_name_refusal(f)
            if refusal is not None:
                self._refuse(f, refusal)
                continue
            row, lacks_probabilities = self._earlier_outputs(f, old.get(f.rel.as_posix()))
            without_probabilities += lacks_probabilities
            if isinstance(row, dict):
                self._record_skipped(row)
                continue
            taken = output_folder_clash(
                self.output_dir, f.rel, bool(self.opts.save_probabilities), self.input_folders
            )
            if taken is not None:
                self._refuse(f, taken)
                continue
            if isinstance(row, str):
                changed.append((printable(f.rel.as_posix()), row))
            todo.append(f)
        self._say_predicted_again(changed, without_probabilities)
        return todo

    def _settle_overwrite_run(self) -> None:
        """``overwrite_run``: the stopped run's identity where this one goes on with it (its arithmetic too
        the same: else an ``overwrite=true`` run starts anew, a run without it having been refused), a new
        one for another ``overwrite=true`` run; said where it goes on."""
        if self.continues_overwrite and not continues_overwrite(self.earlier, self.settings):
            self.continues_overwrite = False  # overwrite=true asked: every image predicted again
        if not self.opts.overwrite:
            return
        kept = self.earlier.get(PENDING_KEY)
        if self.continues_overwrite and isinstance(kept, str):
            self.overwrite_run = kept
            if self.shard.rank == 0:
                log.info(
                    "%s: going on with the overwrite=true run of these settings stopped there before it "
                    "finished (the images it finished are skipped, the others predicted again)",
                    self.output_dir,
                )
        else:  # a stopped run recorded before its identity was: its images cannot be told, all redone
            self.overwrite_run = overwrite_run_id(self.settings, self.settings_stamp)

    def _record_problems(self) -> None:
        """An error row for each problem found with the inputs (name clashes, unreadable entries), said now,
        as failed images are."""
        for p in self.problems:
            self.rows[p.rel.as_posix()] = _error_row(p.rel, p.message)
            log.warning("%s: %s", p.rel.as_posix(), p.message)

    def _output_name_refusal(self, f: InputFile) -> str | None:
        """Why ``f``'s outputs cannot be named in ``output_dir`` (a path that escapes it, a name too long, a
        folder under an output's name), or None."""
        # The thumbnail's name is checked only for an input to be written: a finished image of a folder
        # predicted before thumbnails, beside a folder under that name, is done (its card shows the
        # overlay), not an error row.
        return (
            output_escape(self.output_dir, f.rel)
            or output_name_problem(self.output_dir, f.rel)
            or output_folder_clash(
                self.output_dir, f.rel, bool(self.opts.save_probabilities), self.input_folders, False
            )
        )

    def _earlier_outputs(self, f: InputFile, old: Mapping[str, str] | None) -> tuple[dict | str | None, bool]:
        """What ``f``'s outputs in ``output_dir`` decide (none with ``overwrite=true``): its skipped row where
        they are complete (:meth:`_skipped_row`), what changed since they were made, or None.

        Returns:
            That row, change or None; and whether ``f``'s outputs are complete but for the probabilities
            asked for (``save_probabilities=true``): it is predicted again.

        Raises:
            ConfigError: the outputs were saved from Python (:func:`_refuse_saved_from_python`).
        """
        paths = OutputPaths(self.output_dir, f.rel)
        if self.continues_overwrite and paths.complete(self.opts.save_probabilities):
            try:  # finished by the stopped overwrite=true run this one goes on with: skipped as done
                members = read_contact_collection(paths.contact)[1]
            except (ImageReadError, ValueError, OSError):
                members = {}  # unreadable leftovers: predicted again
            drawn_by = members.get(MODEL_KEY)  # adapt_bn: adapted again, to the same network or another
            same_network = isinstance(drawn_by, Mapping) and (
                drawn_by.get("network_sha256") == self.model_record["network_sha256"]
            )
            ours = self.overwrite_run is not None and members.get(OVERWRITE_RUN_KEY) == self.overwrite_run
            if ours and same_network:
                return self._skipped_row(f, paths, old), False
        if not self.opts.overwrite and paths.complete(self.opts.save_probabilities):
            return self._skipped_row(f, paths, old), False
        if not self.opts.overwrite and paths.complete(False):
            try:  # saved from Python without probabilities: replaced without a word otherwise
                members = read_contact_collection(paths.contact)[1]
            except (ImageReadError, ValueError, OSError):
                members = {}  # unreadable leftovers: predicted again, as below
            _refuse_saved_from_python(paths, members)
            return None, True
        return None, False

    def finished_before(self, rank: int) -> dict[str, dict[str, Any]]:
        """The skipped rows, as :meth:`plan` records them, of rank ``rank``'s shard's inputs whose outputs an
        earlier run finished: rank 0 lists them for a rank stopped or failed before it planned its shard (or
        for itself, stopped there), as one process's reports list them. Left out, they were missing from
        ``manifest.csv`` and counted as not reached. An input whose outputs cannot be read back, or changed
        since, is left out: not reached, predicted again by the next run."""
        old = read_manifest(self.output_dir / "manifest.csv", old_names=True)
        rows: dict[str, dict[str, Any]] = {}
        for f in self.every_input[rank :: self.shard.world_size]:
            if self._output_name_refusal(f) is not None:
                continue
            try:
                row, _ = self._earlier_outputs(f, old.get(f.rel.as_posix()))
            except ConfigError:  # saved from Python: the next run refuses it, naming the fix
                continue
            if isinstance(row, dict):
                rows[row["path"]] = row
        return rows

    def _record_skipped(self, row: dict[str, Any]) -> None:
        """Record the row of an input whose outputs are complete; a broken camera file is said, as on every
        run until it is fixed."""
        self.rows[row["path"]] = row
        self.complete += 1
        if row["camera_error"]:
            log.warning("%s: %s", row["path"], row["message"])

    def _say_predicted_again(self, changed: list[tuple[str, str]], without_probabilities: int) -> None:
        """Say which inputs with outputs are predicted again: those ``changed`` since (with what changed),
        and the count of those without the probabilities asked for."""
        if changed:
            log.info("%s", changed_inputs_text(changed))
        if without_probabilities:
            log.info(
                "%s outputs but no prob.tif (save_probabilities=true): predicting %s again",
                counted(without_probabilities, "input has", "inputs have"),
                "it" if without_probabilities == 1 else "them",
            )

    def _refuse(self, f: InputFile, message: str) -> None:
        """Record ``f`` as an error row, not predicted (its outputs cannot be named), and say why."""
        self.rows[f.rel.as_posix()] = _error_row(f.rel, message)
        log.warning("%s: %s", f.rel.as_posix(), message)

    # --------------------------------------------------------------------------------------- predicting
    def process(self, f: InputFile, item: LoadedImage) -> dict[str, Any]:
        """Predict one decoded image and write its outputs; returns its manifest row."""
        assert item.image is not None
        start = time.perf_counter()
        image = item.image
        grey = is_grey(image)
        x = torch.from_numpy(to_channels(image, self.in_channels)).permute(2, 0, 1)
        probs = self.predictor.predict(x)
        mask, lines = self.unit_steps(probs, image)  # as UnitMapper.units_from_probabilities
        camera_digest = camera_file_sha256(f.path)  # before reading it: a file replaced meanwhile is redone
        camera_problem = refused = ""
        try:
            camera = image_camera(f.path, self.pixel_limit)
            lines = add_ground_coordinates(
                f.path, lines, mask.shape[1], mask.shape[0], self.opts.max_range_m, camera=camera
            )
        except CameraFileError as exc:  # the mask and pixel contacts need no camera: written all the same
            camera, camera_problem, refused = None, camera_error_message(exc), str(exc)
        # As a later run reads them back when it skips this image: reports and maps then agree to the digit.
        lines = as_stored(lines)
        escape = output_escape(self.output_dir, f.rel)  # again: folders may have changed since plan()
        if escape is not None:
            raise ValueError(escape)
        with self._stopped_if_full():
            write_prediction(
                OutputPaths(self.output_dir, f.rel),
                image,
                probs,
                mask,
                lines,
                save_probabilities=self.opts.save_probabilities,
                probability_dtype=self.opts.probability_dtype,
                greyscale=grey,
                camera_sha256=camera_digest,
                image_file=item.file_identity,
                model=self.model_record,
                palette=self.metadata["palette"],
                overwrite_run=self.overwrite_run,
            )
        if self.evaluation is not None:
            self.evaluation.add(f.rel, mask, lines, (item.file_identity or {}).get("sha256"), f.path)
        if self.opts.map:
            self._remember_camera(f, lines, camera)
        seconds = time.perf_counter() - start
        self.megapixels += mask.size / 1e6
        # Predicted, its camera file refused or not: counted so (it was an error row, "0 of 1 ... 1 failed").
        seconds = round(seconds + item.seconds, 4)
        return _result_row(f.rel, "ok", camera_problem, mask, lines, seconds, grey, refused)

    def _remember_camera(self, f: InputFile, lines: list[ContactLine], camera: CameraModel | None) -> None:
        if camera is not None:
            self.cameras_seen += 1
            self.map_items.append((f.rel.as_posix(), list(lines), camera))

    def predict_all(self, todo: list[InputFile]) -> None:
        """Predict ``todo``, recording each input's row in ``rows``.

        Every stop it lets out (Ctrl-C, SIGTERM, another rank's stop) is said in ``stopped_early`` first: how
        far the run got and what to do next (a stopped rank of a sharded run sends it to rank 0). The setting
        up of the loader and the progress bar is covered too: a Ctrl-C there left ``stopped_early`` None.

        An error that ends the loop (a bug, a full disk, a dead loader worker) is recorded in ``failure`` as
        it leaves it, and a Ctrl-C or SIGTERM that comes while it goes on up (the progress bar closing) does
        not replace it: the error is raised, the stop said in ``stopped_as_it_failed``. The stop was let out
        instead, and a bug ended the run as interrupted, status 130, without a word of it.
        """
        try:
            loader = make_loader(
                ImageFileDataset([f.path for f in todo], self.opts.max_megapixels, self.opts.max_file_mb),
                resolve_num_workers(self.opts.num_workers, self.device),
            )
            console = Console(stderr=True)
            progress = Progress(
                TextColumn("[bold]predict"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                disable=not console.is_terminal or self.shard.rank != 0,
            )
            with progress:
                bar = progress.add_task("predict", total=len(todo), rate="")
                try:
                    try:
                        self._predict_loop(todo, loader, progress, bar)
                    except RuntimeError as exc:
                        self._raise_loader_death(exc, todo)
                except _StoppedWithTheRun:  # another rank's stop or failure: a stop here
                    raise
                except Exception as exc:
                    # Recorded before the bar closes: a stop that comes as the failure goes up (the bar's
                    # closing, the loader's) must not hide it (below).
                    self.failure = exc
                    raise
        except (KeyboardInterrupt, TerminatedError, _StoppedWithTheRun) as stop:
            failure = self.failure
            if failure is not None and came_during(stop, failure):
                # A Ctrl-C or SIGTERM as a bug (or a full disk) ended the run: the failure decides, as a
                # failure on any rank of a sharded run does over another's stop; the stop is said after it.
                self.stopped_as_it_failed = stop_said(stop)[0]
            else:
                self._say_how_far(stop, todo)
                raise
        else:
            return
        raise failure  # out of the handler: the failure's traceback is its own, not "during handling" a stop

    def _raise_loader_death(self, exc: RuntimeError, todo: list[InputFile]) -> NoReturn:
        """Raise what ends the run when ``exc`` came out of the image loop: a loader worker that died as a
        stop (SIGTERM: :class:`TerminatedError`) or a failure (:class:`LoaderWorkerError`, ``stopped_early``
        saying it), else ``exc`` itself."""
        death = loader_worker_death(exc)
        if death is None:
            raise exc
        if killed_by_sigterm(death):  # the worker alone was stopped: the run stops as a stop
            raise TerminatedError from exc
        done = sum(1 for f in todo if f.rel.as_posix() in self.rows)
        self.stopped_early = (
            f"stopped {how_far(done, len(todo))}: a loader worker "
            f"decoding the images died ({death.rstrip('.')}; no image is to blame; out of "
            "memory?); "
            "run the same command again to go on (finished images are skipped), with "
            "num_workers=0 to decode in the main process"
        )
        raise LoaderWorkerError(f"The run {self.stopped_early}.") from exc

    def _say_how_far(self, stop: BaseException, todo: list[InputFile]) -> None:
        """Say in ``stopped_early`` how far the run got when ``stop`` stopped it, and what to do next."""
        done = sum(1 for f in todo if f.rel.as_posix() in self.rows)
        if not self.opts.overwrite:
            advice = "run the same command again to go on (finished images are skipped)"
        elif self.redone:
            advice = (
                "the folder now mixes old and new outputs: run the same command again to go on (the images "
                "this run finished are skipped)"
            )
        elif self.marked:
            advice = (
                "the first image may be half replaced: run the same command again to go on (it predicts that "
                "image again)"
            )
        else:
            advice = "nothing was replaced, the folder is as it was"
        how = (
            f"stopped with the run (another rank {stop.args[0] if stop.args else 'stopped'})"
            if isinstance(stop, _StoppedWithTheRun)
            else stop_said(stop)[0]
        )
        self.stopped_early = f"was {how} {how_far(done, len(todo))}; {advice}"

    def _predict_loop(self, todo: list[InputFile], loader: Any, progress: Progress, bar: Any) -> None:
        """Predict and write each decoded input of ``todo``, recording its manifest row."""
        started = time.perf_counter()
        logged = started  # when the last progress line was logged (without a terminal)
        for n, item in enumerate(loader, start=1):
            said = self.stops.announced() if self.stops is not None else None
            if said is not None:
                stopping_otherwise()  # this rank's own SIGTERM, coming next, must not cut the reports
                raise _StoppedWithTheRun(said)
            f = todo[item.index]
            self.predicting = f.rel.as_posix()
            if self.opts.overwrite and not self.marked:  # before the first old output is replaced
                self.save_settings(pending=True)
                self.marked = True
            if item.note is not None:
                log.warning("%s", item.note)
            if item.error is not None:
                row = _error_row(f.rel, item.error, round(item.seconds, 4))
            else:
                try:
                    row = self.process(f, item)
                except OutputWriteError as exc:
                    self.stopped_early = str(exc)
                    raise
                except (ImageReadError, ValueError, RuntimeError, OSError, MemoryError) as exc:
                    if loader_worker_death(exc) is not None:  # torch's SIGCHLD handler: not this image's
                        raise
                    log.debug("prediction of %s failed", f.path, exc_info=True)
                    # Our own errors (camera files, images) are sentences for the user; anything else keeps
                    # its type, which is what a bug report needs.
                    ours = isinstance(exc, MarsUnitsError)  # ImageReadError, CameraFileError included
                    row = _error_row(f.rel, str(exc) if ours else f"{type(exc).__name__}: {exc}")
            if row["status"] == "error" and "width" not in row and not self.opts.overwrite:
                row["message"] += self._drop_outputs_of_replaced_image(f)
            self.rows[row["path"]] = row
            self.predicting = None
            self.redone += 1
            self.grey_predicted += row.get("greyscale") == 1
            if row["status"] == "error" or row.get("camera_error"):
                log.warning("%s: %s", row["path"], row["message"])
            rate = n / max(time.perf_counter() - started, 1e-9)
            progress.update(bar, advance=1, rate=f"{rate:.2f} img/s")
            if progress.disable and self.shard.rank == 0:
                now = time.perf_counter()
                if n in (1, len(todo)) or now - logged >= PROGRESS_LOG_INTERVAL_S:
                    log.info("%s", _progress_line(n, len(todo), row, rate, self.shard.world_size))
                    logged = now

    def _drop_outputs_of_replaced_image(self, f: InputFile) -> str:
        """Remove the outputs of the image that ``f`` replaced, when ``f`` failed: they were made from
        another image, and left beside its error row they read as its mask, overlay and contacts (a later
        run tells the change and predicts it again, but never removed them). Only when the contact file's
        record shows another image (:func:`image_status` ``"replaced"``): outputs of an unchanged image
        whose camera file changed, or of a file that can no longer be examined, are kept. ``overwrite=true``
        runs remove the outputs they did not write when they finish instead.

        Returns:
            The sentence added to the error message ("" when nothing was removed).
        """
        paths = OutputPaths(self.output_dir, f.rel)
        try:
            _, members = read_contact_collection(paths.contact)
            if image_status(f.path, members) != "replaced":
                return ""
        except (ImageReadError, ValueError, OSError):
            return ""
        removed, kept = [], []
        for path in (paths.mask, paths.contact, paths.overlay, paths.thumb, paths.prob):  # the marker first
            try:
                path.unlink()
                removed.append(path.name)
            except FileNotFoundError:
                continue
            except OSError:
                kept.append(path.name)
        said = ""
        if removed:
            said += f"; the outputs of the image it replaced were removed ({', '.join(removed)})"
        if kept:
            said += f"; the outputs of the image it replaced could not be removed: delete {', '.join(kept)}"
        return said

    def finish_overwrite(self) -> None:
        """After every input of an ``overwrite=true`` run was redone (all ranks): remove the per-image outputs
        it did not write (inputs removed since, inputs failing now, probabilities it did not save), so the
        folder holds this run's outputs only, then record its settings as finished. In a folder that also
        holds another input folder's outputs, only this run's own inputs' outputs are removed, and those
        others are recorded as outdated where they were made with other settings."""
        keep = [
            path
            for row in self.rows.values()
            if has_outputs(row)
            for path in OutputPaths(self.output_dir, PurePosixPath(row["path"])).written(
                bool(self.opts.save_probabilities)
            )
        ]
        if not self.other_input_dirs:
            removed = remove_outputs_except(self.output_dir, keep)
        else:
            removed = self._remove_own_outputs_except(keep)
            self._record_other_folders_outdated()
        if removed:
            log.info(
                "overwrite=true: removed %s of earlier runs that this run did not write (inputs no longer "
                "there or failing now, probabilities not saved this time)",
                counted(len(removed), "output file"),
            )
        # The statistics every output now comes from (adapt_bn), replacing those of the outputs removed.
        self.store_adapted_state()
        # Another folder's prob.tif files are left: their dtype stays in the record (write_settings).
        self.save_settings(replaced_all=not self.other_input_dirs)

    def _remove_own_outputs_except(self, keep: list[Path]) -> list[Path]:
        """Remove the outputs of this run's own inputs that it did not write (not in ``keep``), in a folder
        that also holds another input folder's outputs; warns of the outputs left that are not of this run's
        inputs. Returns the files removed."""
        # The folder also holds another input folder's outputs: they are not "inputs removed since", and
        # were deleted as such. Only the outputs of this run's own inputs that it did not write go.
        mine = {
            os.path.normpath(path)
            for rel in self.rows
            for path in OutputPaths(self.output_dir, PurePosixPath(rel)).written(True)
        }
        stale = remove_outputs_except(self.output_dir, keep, dry_run=True)
        removed = [p for p in stale if os.path.normpath(p) in mine]
        for path in removed:
            path.unlink(missing_ok=True)
        if len(stale) > len(removed):
            left = len(stale) - len(removed)
            log.warning(
                "overwrite=true: left %s in %s that %s not of this run's inputs (the folder also holds "
                "predictions of %s); delete %s by hand if %s stale",
                counted(left, "output file"),
                self.output_dir,
                "is" if left == 1 else "are",
                ", ".join(self.other_input_dirs),
                *(("it", "it is") if left == 1 else ("them", "they are")),
            )
        return removed

    def _record_other_folders_outdated(self) -> None:
        """Where the other input folders' outputs were made with other settings than this run's (or the
        folder had no record): name them in ``settings``' ``outdated_input_dirs``, with a warning, so that a
        later run of those folders into it does not skip them as this record's outputs."""
        if not self.earlier or settings_differences(self.earlier, self.settings):
            # Made with the settings of the record this run replaces (or of an interrupted overwrite):
            # a later run of those folders must not skip them as this record's outputs.
            self.settings["outdated_input_dirs"] = sorted(
                set(self.settings.get("outdated_input_dirs") or []) | set(self.other_input_dirs)
            )
            log.warning(
                "overwrite=true: the outputs of %s in %s were made with other settings than this run's; "
                "a run of that folder into it needs overwrite=true to predict them again",
                ", ".join(self.other_input_dirs),
                self.output_dir,
            )


def predict_folder(opts: PredictOptions, cfg: DictConfig | None = None) -> RunResult:
    """Predict every image under ``opts.input_dir`` into ``opts.output_dir`` (see module docstring).

    With ``opts.devices > 1`` or ``opts.num_nodes > 1``, or when started by ``torchrun``/SLURM with a world
    size above 1, the inputs are sharded across processes (:mod:`marsunits.inference.distributed`); the
    returned result is rank 0's, which holds the merged reports.

    PyTorch's intra-op thread count (``opts.threads``) is set for the run and set back when it returns, so a
    notebook's later work keeps its own; the inter-op count, which PyTorch lets a process set only once, stays
    at the 1 the run sets where nothing had run in parallel before.

    Raises:
        MarsUnitsError, FileNotFoundError, marsunits.task.CheckpointError: Folder-level problems, before
            anything is written.
    """
    from marsunits.inference import distributed

    # threads=1 left the whole Python session on one thread (a notebook's training after it too).
    threads_before = torch.get_num_threads()
    try:
        with sigterm_raises():  # a scheduler's stop: reports written and status 143, as for Ctrl-C
            if not distributed.wants_sharding(opts.devices, opts.num_nodes):
                result = predict_shard(opts)
            else:
                world_problem = distributed.launch_problem(opts.devices, opts.num_nodes)
                if world_problem is not None:  # before anything is checked or written: ranks would not meet
                    raise ConfigError(world_problem)
                if distributed.launched_world_size() == 1:  # ranks spawned here: a problem is said here, in
                    check_before_predicting(opts)  # one line (a rank's error came as a spawn traceback)
                    _check_output_dir_free(opts)
                result = distributed.launch(opts)
    finally:
        torch.set_num_threads(threads_before)
    if opts.logger is not None and result.summary:
        log_to_tracker(opts, cfg, result)
    return result


def log_to_tracker(opts: PredictOptions, cfg: DictConfig | None, result: RunResult) -> str | None:
    """``logger=wandb``: one W&B run with the manifest table and the summary (after the reports exist).

    The run's settings are the ``logger.wandb`` node of ``configs/logger/wandb.yaml`` (project, entity,
    group, tags, name, ``save_dir`` = the Hydra run folder, ``mode`` following ``WANDB_MODE``).
    """
    check_logger(opts.logger)
    from marsunits.tracking import log_prediction_run

    base = cfg if cfg is not None else OmegaConf.create({"logger": dict(opts.logger or {})})
    # The model's training-image keys (tens of thousands for a large set) stay in summary.json: the W&B run
    # summary gets their number.
    summary = dict(result.summary)
    metadata = dict(summary.get("checkpoint_metadata") or {})
    keys = metadata.pop("trained_image_keys", None)
    if keys is not None:
        metadata["trained_images"] = len(keys)
    summary["checkpoint_metadata"] = metadata
    return log_prediction_run(opts.output_dir, result.rows, summary, base)
