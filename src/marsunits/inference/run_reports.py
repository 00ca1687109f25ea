"""The reports of a prediction run, finished or stopped: manifest, scores, summary, gallery; its result.

:class:`RunReports` is the part of the runner's session (:class:`~marsunits.inference.runner._Session` is
its subclass) that writes them once the images are done, or the run stopped or failed
(:meth:`RunReports.write_reports`), in this order: ``manifest.csv``; ``metrics.json`` (or an earlier run's
scores removed); the contact maps (:mod:`marsunits.inference.run_contact_maps`); ``summary.json``, which
says how the run ended (``exit_reasons``, ``exit_status``); ``index.html``; then the warnings of outputs at
risk. For an ``overwrite=true`` run stopped before it replaced anything, ``summary.json`` alone
(:meth:`RunReports.write_summary_of_nothing_replaced`). Each report is written whole or not at all
(:mod:`marsunits.inference.writers`). :class:`RunResult` is what a run returns: its rows, summary, scores
and exit status.

Its contract: the session's state it reads is declared on :class:`RunReports` (set by the session's set-up,
planning and predicting steps) and writing the reports assigns none of it, so that a stopped run's reports
are written from the rows it has so far as a finished run's are. The paragraph that ends the run is worded
by :mod:`marsunits.inference.run_summary_text`, the gallery drawn by :mod:`marsunits.inference.gallery`.

Split from :mod:`marsunits.inference.runner` (which still exports :class:`RunResult`): the runner imports
this module, never the reverse.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from marsunits.constants import CLASS_NAMES
from marsunits.inference.gallery import render_gallery
from marsunits.inference.image_cameras import NO_MAP_DRAWN
from marsunits.inference.labelled_layout import labelled_layout_sentence
from marsunits.inference.removed_scores import removed_scores_warning
from marsunits.inference.run_contact_maps import NOT_ASKED_FOR_A_MAP, write_contact_maps
from marsunits.inference.run_summary_text import (
    contact_maps_sentence,
    failed_sentence,
    nothing_scored,
    summary_paragraph,
)
from marsunits.inference.unlisted_outputs import say_outputs_of_no_input
from marsunits.inference.writers import (
    OutputPaths,
    has_outputs,
    outputs_one_elsewhere,
    printable,
    write_json_atomic,
    write_manifest,
    write_text_atomic,
)

if TYPE_CHECKING:
    import torch

    from marsunits.boundary.camera.base import CameraModel
    from marsunits.boundary.contact_io import ContactLine
    from marsunits.inference.evaluation import Evaluation
    from marsunits.inference.inputs import InputProblem
    from marsunits.inference.options import PredictOptions
    from marsunits.inference.runtime import RuntimeChoice
    from marsunits.inference.sharded_run import Shard
    from marsunits.inference.unit_mapper import UnitSteps

#: The run's logger: its lines are the runner's (``[marsunits.inference.runner]`` in ``predict.log``), as
#: they were before this module was split from it.
log = logging.getLogger("marsunits.inference.runner")


#: Metadata keys copied from the checkpoint into ``summary.json``.
METADATA_SUMMARY_KEYS = (
    "format_version",
    "arch",
    "encoder",
    "in_channels",
    "num_classes",
    "class_names",
    "tile_size",
    "dataset",
    "wandb_run_id",
    "trained_sols",  # a self-training student checks its validation sols against its teacher's
    "trained_image_keys",  # ... and its validation images, by content
    "training",  # how far the model trained: optimiser steps, epoch, best validation mIoU (training_extent)
    "training_images",  # how many training images were grey and colour (training_images)
)


@dataclass
class RunResult:
    """What a prediction run produced.

    Attributes:
        rows: Manifest rows, sorted by path.
        summary: The content of ``summary.json`` (its keys: the README's table of outputs, under Prediction;
            ``no_contact_map_reason`` says why no contact map was drawn, None where one was).
        metrics: The content of ``metrics.json`` (None without ``labels_dir``).
        exit_code: 0, or 1 when an input failed or a camera file was refused (``camera_files_refused``) and
            errors are not allowed, or the contact map asked for could not be written (a folder holds its
            name), or ``labels_dir`` was given and not one image with a mask could be scored against it
            (whatever ``allow_errors``: :func:`~marsunits.inference.run_summary_text.nothing_scored`);
            ``summary.json``'s ``exit_status``, with ``exit_reasons`` saying which (the stop's status for a
            stopped run, whose reports are written as the stop goes on up; 1 for a run a bug ended, its
            reason ``failed``).
    """

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    metrics: dict[str, Any] | None
    exit_code: int


class RunReports:
    """The reports of one run (or of rank 0 of a sharded one), written from the session's state so far.

    The attributes below are the session's (:class:`~marsunits.inference.runner._Session` sets them and says
    what each holds); the methods here only read them.
    """

    # The options, this process's part of the run, and the folders.
    opts: PredictOptions
    shard: Shard
    input_dir: Path
    output_dir: Path
    # The model and the settings the outputs were made with.
    ckpt_path: Path
    metadata: dict[str, Any]
    barely_trained: str | None
    model_record: dict[str, Any]
    settings: dict[str, Any]
    device: torch.device
    threads: int
    runtime: RuntimeChoice
    tile: int
    in_channels: int
    adapted_on: int | None
    adapt_bn_statistics: str | None
    unit_steps: UnitSteps
    evaluation: Evaluation | None
    # The inputs, and what the run recorded of them as it went.
    all_inputs: set[str]
    problems: list[InputProblem]
    other_input_dirs: list[str]
    asked_overwrite: bool
    continues_overwrite: bool
    rows: dict[str, dict[str, Any]]
    megapixels: float
    loop_seconds: float
    grey_predicted: int
    map_items: list[tuple[str, list[ContactLine], CameraModel]]
    # How the run ended.
    stopped_early: str | None
    stop_status: int | None
    predicting: str | None
    failed_rank: str | None
    also_ended: str | None
    marked: bool

    def summary(self, wall_seconds: float) -> dict[str, Any]:
        """``summary.json``'s content but for how the run ends (``no_contact_map_reason``, ``text``,
        ``exit_reasons``, ``exit_status``, which :meth:`write_reports` and
        :meth:`write_summary_of_nothing_replaced` add): the counts of the rows, the run's times, what the
        masks add up to (:meth:`_mask_statistics`), the model, the settings as run, ``stopped_early`` and the
        greyscale inputs of a colour model."""
        rows = list(self.rows.values())
        counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "error", "skipped")}
        # Inputs of the folder a stopped run never reached (they have no manifest row yet), on every rank's
        # shard: the inputs of the whole folder, not this rank's ``files`` alone.
        known = self.all_inputs | {p.rel.as_posix() for p in self.problems}
        not_reached = len(known - set(self.rows))
        return {
            "counts": {**counts, "total": len(rows), "not_reached": not_reached},
            # Images with their outputs (ok, skipped) whose camera file was refused: no metres, but their
            # outputs are there, so they are not error rows.
            "camera_files_refused": {
                str(r["path"]): r["camera_error"] for r in rows if r.get("camera_error")
            },
            "seconds": round(wall_seconds, 3),
            "megapixels": round(self.megapixels, 4),
            # Throughput of the prediction loop (decoding, network, contacts, writing); excludes start-up.
            "prediction_seconds": round(self.loop_seconds, 3),
            "megapixels_per_second": (
                round(self.megapixels / self.loop_seconds, 4)
                if self.loop_seconds > 0 and self.megapixels
                else None
            ),
            **self._mask_statistics(rows),
            "checkpoint": os.fspath(self.ckpt_path),
            "checkpoint_metadata": {k: self.metadata.get(k) for k in METADATA_SUMMARY_KEYS},
            # Why the model is barely trained (training_extent.barely_trained), or None: the run warned.
            "checkpoint_barely_trained": self.barely_trained,
            "input_dir": os.fspath(self.input_dir),
            "output_dir": os.fspath(self.output_dir),
            "device": str(self.device),
            "world_size": self.shard.world_size,
            "threads": self.threads,
            "precision": self.settings["precision"],  # as run: ONNX Runtime is float32 whatever was asked
            "runtime": self.runtime.to_dict(),
            "tile": self.tile,
            # As the user asked it: a run going on with a stopped overwrite=true run runs as one, and says so.
            "overwrite": self.asked_overwrite,
            "went_on_with_stopped_overwrite": self.continues_overwrite,
            "overlap": self.opts.overlap,
            "tta": bool(self.opts.tta),
            "adapt_bn": bool(self.opts.adapt_bn),
            "adapted_on_images": self.adapted_on,
            "adapt_bn_statistics": self.adapt_bn_statistics,
            "min_unit_area_px": self.unit_steps.min_unit_area_px,
            "contact": asdict(self.unit_steps.contact),
            "stopped_early": self.stopped_early,
            # Of this run's and earlier runs' rows (a resumed run counts the images it skipped too).
            "greyscale_inputs_for_colour_model": (
                sum(r.get("greyscale") in (1, "1") for r in rows) if self.in_channels == 3 else 0
            ),
            # Of those, the ones this run predicted, which the run's last line speaks of: counted as they
            # were predicted, by each rank, and added up on rank 0.
            "greyscale_inputs_for_colour_model_this_run": self.grey_predicted if self.in_channels == 3 else 0,
        }

    @staticmethod
    def _mask_statistics(rows: list[dict[str, Any]]) -> dict[str, Any]:
        """What the masks of the ``rows`` with outputs add up to: ``summary.json``'s ``nodata_fraction``,
        ``images_with_masks``, ``unit_fractions``, ``n_contacts`` and ``contact_length_px``."""
        pixels = np.zeros(len(CLASS_NAMES))
        contacts, length, all_area, with_masks = 0, 0.0, 0.0, 0
        for r in rows:
            if not has_outputs(r):
                continue
            with_masks += 1
            area = float(r["width"]) * float(r["height"])
            all_area += area
            pixels += [float(r[f"frac_{n}"]) * area for n in CLASS_NAMES]
            contacts += int(r["n_contacts"])
            length += float(r["contact_length_px"])
        total = pixels.sum()
        return {
            # Of the pixels with data: no-data pixels (nodata_max) are left out and counted apart.
            "nodata_fraction": round(max(0.0, 1.0 - total / all_area), 6) if all_area else None,
            # The unit fractions and contacts are over these images' masks: this run's and those skipped
            # as done by an earlier run (has_outputs), the failed ones left out.
            "images_with_masks": with_masks,
            "unit_fractions": {
                n: (float(p / total) if total else None) for n, p in zip(CLASS_NAMES, pixels, strict=True)
            },
            "n_contacts": contacts,
            "contact_length_px": round(length, 3),
        }

    def write_summary_of_nothing_replaced(self, wall_seconds: float) -> str:
        """``summary.json`` of an ``overwrite=true`` run stopped (or failed) before it replaced any output,
        and the line it ends with (its ``text``, returned): this run's own counts (its inputs not reached),
        ``stopped_early``, ``exit_status`` and ``exit_reasons``. The folder's other reports
        (``manifest.csv``, ``index.html``, ``metrics.json``, the contact maps) stay as they were, as the
        outputs they list do; ``summary.json`` is this run's, so that a script reads this run's status (its
        stop's or failure's), not the earlier run's. Where it cannot be written (the disk that stopped the
        run), the earlier one is removed, with a warning, rather than left saying how another run ended.

        Raises:
            OSError: ``summary.json`` could not be written (the earlier one removed where it could be)."""
        summary = self.summary(wall_seconds)
        if self.stopped_early is not None:
            stopped = f"The run {self.stopped_early}."
        elif (
            self.marked
        ):  # the settings record says an unfinished overwrite: the same command goes on with it
            stopped = (
                "The run failed in its first image (the error below), which may be half replaced: fix what "
                "the error names, then run the same command again, which goes on with this run and predicts "
                "that image again."
            )
        else:
            stopped = (
                "The run failed before it replaced any output (the error below); the folder is as it was."
            )
        if self.also_ended is not None:  # other ranks' stops or failures, or a stop as the error came
            stopped += f" {self.also_ended}"
        text = (
            f"{stopped} manifest.csv, index.html and the folder's other reports are the earlier run's, as "
            "are its outputs."
        )
        summary["no_contact_map_reason"] = (
            "stopped before its first image: no contact map drawn (those in the folder are the earlier run's)"
            if self.opts.map
            else NOT_ASKED_FOR_A_MAP
        )
        summary["text"] = printable(text)
        summary["exit_reasons"] = self._exit_reasons(summary, None, None)
        summary["exit_status"] = self.stop_status if self.stop_status is not None else 1
        path = self.output_dir / "summary.json"
        try:
            write_json_atomic(path, summary)
        except OSError:
            with contextlib.suppress(OSError):  # none there, or a disk that refuses even that
                path.unlink()
                log.warning(
                    "removed %s of the earlier run: this run's could not be written, and it said that run's "
                    "exit status for this one",
                    printable(os.fspath(path)),
                )
            raise
        return summary["text"]

    @property
    def ended_by_a_bug(self) -> bool:
        """Whether a bug ended this run (status 1, no stop said): its last paragraph says it failed and is
        printed before the traceback, by the one-process run and by a sharded run's rank alike."""
        return self.stop_status == 1 and self.stopped_early is None

    def write_reports(self, wall_seconds: float) -> RunResult:
        """Write the run's reports into ``output_dir`` from its rows so far, step by step, in this order:
        ``manifest.csv``; ``metrics.json`` (or an earlier run's scores removed); the contact maps (and an
        earlier run's removed); ``summary.json``, which says how the run ended; ``index.html``, which links
        the others; then the warnings of outputs at risk. Each report is written whole or not at all.

        Returns:
            The rows, ``summary.json``'s content, the scores (None without ``labels_dir``), the exit status.
        """
        rows = [self.rows[k] for k in sorted(self.rows)]
        out = self.output_dir
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(out / "manifest.csv", rows)
        summary = self.summary(wall_seconds)
        metrics = self._write_scores()
        maps, no_map, map_problem = write_contact_maps(
            out,
            self.input_dir,
            list(self.rows.values()),  # as recorded: where no image had a camera, the first one is named
            self.map_items,
            asked=bool(self.opts.map),
            max_range_m=self.opts.max_range_m,
            model=self.model_record,
        )
        paragraph, unscored = self._last_paragraph(summary, metrics, maps, map_problem, no_map)
        self._write_summary(summary, paragraph, no_map, map_problem, unscored)
        self._write_gallery(rows, paragraph, metrics, maps)
        self._warn_of_outputs_at_risk(rows)
        return RunResult(rows, summary, metrics, summary["exit_status"])

    def _write_scores(self) -> dict[str, Any] | None:
        """With ``labels_dir``: ``metrics.json``, the scores of the masks, returned. Without: an earlier run's
        ``metrics.json`` removed, with a warning saying what it held (None returned)."""
        out = self.output_dir
        if self.evaluation is not None:
            metrics = self.evaluation.to_dict()
            write_json_atomic(out / "metrics.json", metrics)
            return metrics
        if (out / "metrics.json").is_file():
            # Scores of an earlier run with labels_dir would describe masks this run may have replaced. They
            # went without a word: a re-run to add save_probabilities lost the user's scores unseen.
            removed_scores = removed_scores_warning(out / "metrics.json", self.metadata)
            (out / "metrics.json").unlink(missing_ok=True)
            log.warning("%s", removed_scores)
        return None

    def _last_paragraph(
        self,
        summary: Mapping[str, Any],
        metrics: Mapping[str, Any] | None,
        maps: Sequence[Path],
        map_problem: str | None,
        no_map: str | None = None,
    ) -> tuple[str, str | None]:
        """The paragraph that ends the run (its last line, ``summary.json``'s ``text``, the top of
        ``index.html``): the summary's, then the contact maps drawn or why none was (``map=true`` and no
        camera: ``no_map``, ``summary.json``'s ``no_contact_map_reason``) or could not be, a labelled
        dataset's root as ``input_dir``, a ``labels_dir`` that scored nothing, and how a bug ended the run.

        Returns:
            The paragraph, and its sentence of nothing scored (None where that is not the case: else it is
            one of the run's ``exit_reasons``).
        """
        paragraph = summary_paragraph(summary, metrics)
        pictures = [p.name for p in maps if p.suffix == ".png"]
        paragraph += contact_maps_sentence(pictures)  # it named every other report but not the maps
        if map_problem:
            paragraph += f" No contact map: {map_problem}."
        elif self.opts.map and not pictures and no_map:  # said here alone: write_contact_maps prints nothing
            paragraph += f" No contact map (map=true): {no_map.removeprefix(NO_MAP_DRAWN)}."
        # The start's warning of a labelled dataset's root as input_dir scrolled away on a long run.
        paragraph += labelled_layout_sentence(self.input_dir, sorted(self.all_inputs))
        # labels_dir given and not one image scored: status 1, said last (it was 0, unseen by a script). Not
        # for a run that ended before its end (a stop: stopped_early; a bug: stop_status 1), which may not
        # have reached the images a label matches: its last sentence says to run again, which scores them.
        unscored = nothing_scored(summary, metrics) if self.stop_status is None else None
        if unscored is not None:
            paragraph += f" {unscored}"
        if self.ended_by_a_bug:  # its traceback follows this line
            not_reached = int(summary["counts"].get("not_reached") or 0)
            paragraph += " " + failed_sentence(
                self.predicting, not_reached, bool(self.opts.overwrite), self.failed_rank
            )
        if self.also_ended is not None:  # the stops or failures besides the one that ended the run
            paragraph += f" {self.also_ended}"
        return paragraph, unscored

    def _write_summary(
        self,
        summary: dict[str, Any],
        paragraph: str,
        no_map: str | None,
        map_problem: str | None,
        unscored: str | None,
    ) -> None:
        """``summary.json``: ``summary`` completed, in place, with why no contact map was drawn, the last
        paragraph (``text``), the ``exit_reasons`` and the ``exit_status`` the run returns."""
        summary["no_contact_map_reason"] = no_map  # null where a map was drawn
        # Printed last (a strict UTF-8 console refused a checkpoint or folder named in Latin-1 bytes, after
        # every output was written: status 2): such a byte as \xNN, as summary.json and index.html have it.
        summary["text"] = printable(paragraph)
        # The status the run returns, and why (both "inputs failed" and "nothing scored" are 1); a stopped
        # run's is its stop's, as predict.py exits once the reports are here.
        summary["exit_reasons"] = self._exit_reasons(summary, map_problem, unscored)
        summary["exit_status"] = (
            self.stop_status if self.stop_status is not None else 1 if summary["exit_reasons"] else 0
        )
        write_json_atomic(self.output_dir / "summary.json", summary)

    def _write_gallery(
        self,
        rows: list[dict[str, Any]],
        paragraph: str,
        metrics: dict[str, Any] | None,
        maps: Sequence[Path],
    ) -> None:
        """``index.html``: a card for each row, under the last paragraph and links to the reports written
        (``manifest.csv``, ``summary.json``, ``metrics.json`` where there are scores, the contact maps)."""
        out = self.output_dir
        reports = [
            "manifest.csv",
            "summary.json",
            *(["metrics.json"] if metrics else []),
            *(p.name for p in maps),
        ]
        # An image skipped on resume in a folder predicted before thumbnails were written has none: its card
        # shows the full-size overlay.
        thumbnails = {
            str(r["path"])
            for r in rows
            if has_outputs(r) and OutputPaths(out, PurePosixPath(str(r["path"]))).thumb.is_file()
        }
        write_text_atomic(
            out / "index.html",
            render_gallery(
                rows,
                f"marsunits predictions: {out.name}",
                paragraph,
                reports,
                self.metadata["palette"],
                thumbnails,
                metrics,
            ),
        )

    def _warn_of_outputs_at_risk(self, rows: list[dict[str, Any]]) -> None:
        """Warn of the outputs in ``output_dir`` that no report lists
        (:func:`~marsunits.inference.unlisted_outputs.say_outputs_of_no_input`), and of outputs whose names
        differ only in letter case or Unicode form (one file on a case-insensitive disk)."""
        say_outputs_of_no_input(
            self.output_dir,
            self.input_dir,
            self.opts.patterns,
            rows,
            self.all_inputs,
            self.other_input_dirs,
            mapped=bool(self.opts.map),
        )
        clashes = outputs_one_elsewhere(str(r["path"]) for r in rows if has_outputs(r))
        if clashes:  # distinct files here; one file each on macOS or Windows, where the folder may be shared
            log.warning(
                "the outputs of %s differ only in letter case or Unicode form: copied or unzipped onto a "
                "case-insensitive disk (macOS, Windows), %s keeps one image's outputs for each group and its "
                "gallery shows one overlay for both; rename the inputs so that their names differ otherwise "
                "and predict them again",
                "; ".join(" and ".join(printable(p) for p in group) for group in clashes),
                printable(os.fspath(self.output_dir)),
            )

    def _exit_reasons(
        self, summary: Mapping[str, Any], map_problem: str | None, unscored: str | None
    ) -> list[str]:
        """``summary.json``'s ``exit_reasons``: why the run exits with a status other than 0, as fixed keys
        (README, ``summary.json``'s row), first ``stopped`` for a run stopped before the end (Ctrl-C,
        SIGTERM, a full disk, a dead loader worker, another rank's stop or failure: ``stopped_early`` says
        how) or ``failed`` for one ended by an error of no stop and no user's, a bug, on any rank (status 1,
        its traceback after the reports). They tell apart runs of the same status: one whose inputs failed
        and one that scored nothing both exit 1."""
        ended = None if self.stop_status is None else "failed" if self.stop_status == 1 else "stopped"
        reasons = [ended] if ended is not None else []
        if not self.opts.allow_errors:  # a refused camera file fails the run as an error row does
            reasons += ["inputs_failed"] if summary["counts"]["error"] else []
            reasons += ["camera_files_refused"] if summary["camera_files_refused"] else []
        reasons += ["contact_map_not_written"] if map_problem is not None else []
        reasons += ["nothing_scored"] if unscored is not None else []  # scores asked for, none made
        return reasons
