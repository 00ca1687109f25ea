"""``MarsDataModule``: one LightningDataModule for synthetic scenes, real rover datasets and plain folders.

Built by Hydra from ``configs/data/<name>.yaml`` with primitive arguments. ``sources`` names where the
data comes from:

* ``[synthetic]``: scenes generated on the fly (``marsunits.data.synthetic``). Training scenes use seeds
  ``seed``; validation and test sets are fixed and use their own seeds (``seed + 1_000_003`` and
  ``seed + 2_000_003``), never drawn for training (:mod:`marsunits.data.synthetic_source`).
* one or more of ``marsscapes``, ``ai4mars``, ``folder``: real labelled images, split into train and
  validation by sol blocks (:mod:`marsunits.data.splits`). There is no separate labelled test split in
  these folders, so **``test_dataloader`` returns the validation split** (say so wherever test numbers on
  real data are reported). Each source's folder is :mod:`marsunits.data.source_folders`'s to find and
  check; its split, image stores, crops and tiles are :mod:`marsunits.data.real_datasets`'; what leaves
  the training side of the split, and what stops a run, :mod:`marsunits.data.split_guards`'. This module
  takes and checks the config, runs those steps in order, and holds what they made, the loaders and the
  state a checkpoint keeps.

Batches (:func:`collate_samples`) are dicts: ``image`` float32 ``(N, C, H, W)`` in [0, 1], ``mask`` int64
``(N, H, W)``, ``path`` list of str, and ``camera`` (list of dict or ``None``) when any sample has one.

Several sources: training mixes them (``samples_per_epoch`` split evenly), validation has **one
dataloader per source**, in the order of :attr:`MarsDataModule.val_names`; Lightning passes the position
as ``dataloader_idx`` to ``validation_step`` (and, unless the task logs with ``add_dataloader_idx=False``,
suffixes metric names with ``/dataloader_idx_<k>``). With one source, or ``separate_val=False``, there is
a single dataloader (no ``dataloader_idx`` argument).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from marsunits.data.datasets import SceneDataset
from marsunits.data.folder import UnpairedFilesError
from marsunits.data.mixing import class_mix
from marsunits.data.real_datasets import (
    SourceReading,
    one_class_refusal,
    real_datasets,
    say_split,
    split_records,
    unreadable_images,
)
from marsunits.data.sampling_checks import sampling_refusal
from marsunits.data.source_folders import REAL_SOURCES, SOURCE_ROOTS, SourceFolders
from marsunits.data.split_guards import (
    PseudoLabelTeacher,
    hold_out_validated_sols,
    leave_out_sols_near_validation,
    pseudo_label_teacher,
    refuse_validation_images_seen_before,
    refuse_validation_images_trained_before,
    refuse_validation_sols_seen_before,
)
from marsunits.data.splits import merge_sols
from marsunits.data.store import ImageStore, LabelledImage, UnusablePairsError
from marsunits.data.synthetic_source import (
    overfit_scenes,
    render_processes,
    render_training_scenes,
    scene_config,
    synthetic_datasets,
)
from marsunits.data.transforms import build_train_transform
from marsunits.data.value_checks import (
    SOURCES,
    check_sol_ranges,
    class_mix_prob_refusal,
    map_refusal,
    render_processes_refusal,
    size_refusal,
    sol_margin_refusal,
    source_settings_refusal,
    subclasses_refusal,
)
from marsunits.file_digest import file_sha256, image_content_key

# REAL_SOURCES and SOURCE_ROOTS are source_folders', SOURCES value_checks': named here as they always were.
__all__ = ["REAL_SOURCES", "SOURCES", "SOURCE_ROOTS", "MarsDataModule", "collate_samples"]

log = logging.getLogger(__name__)


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack sample dicts into a batch: tensors stacked, ``path`` (and other non-tensors) kept as lists.

    ``camera`` is a list with one dict (or ``None``) per sample, present if any sample has a camera.
    Written by hand because ``default_collate`` would try to collate camera dicts key by key (and fail
    when only some samples have one).
    """
    if not samples:
        raise ValueError("collate_samples got an empty batch")
    keys = list(dict.fromkeys(k for s in samples for k in s))
    batch: dict[str, Any] = {}
    for key in keys:
        values = [s.get(key) for s in samples]
        if all(isinstance(v, torch.Tensor) for v in values):
            batch[key] = torch.stack(values)  # type: ignore[arg-type]
        else:
            batch[key] = values
    return batch


def _plain(obj: Any) -> Any:
    """OmegaConf containers -> plain dict/list (Hydra may pass DictConfig without ``_convert_``)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, DictConfig | ListConfig):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover - hydra is a dependency
        pass
    return obj


class MarsDataModule(L.LightningDataModule):
    """Train/val/test dataloaders for one data config (see the module docstring for the behaviour).

    Args:
        name: dataset name (``configs/data/<name>.yaml``; recorded in checkpoints).
        sources: ``["synthetic"]`` or real sources among ``marsscapes``, ``ai4mars``, ``folder``.
        in_channels: channels fed to the model (1 or 3); every image is converted to it.
        crop_size: training crop / validation tile size in pixels, a multiple of the network's input
            divisor (``SegmentationTask.size_divisor``: ``2**encoder_depth``, 16 for the default model), which
            :meth:`check_size_divisor` checks once the model is known.
        val_context_px: real data: image context on each side of a validation/test tile, in pixels (a
            multiple of half that divisor, so windows of ``crop_size + 2 * val_context_px`` stay multiples of
            it). The
            network sees the tile inside that window and only the tile is scored, as in ``predict.py``'s
            overlapping windows; 0 scores tiles cut out alone.
        class_map: native id -> project id. One source: a dict (or ``None`` if masks already hold
            project ids). Several sources: ``{source: dict or None}``. Ignored for synthetic scenes.
        root: dataset folder (one source) or the folder holding the sources' folders (several sources).
        source_dirs: several sources: ``{source: sub-folder of root}``.
        batch_size: training batch size.
        val_batch_size: validation/test batch size (``None``: ``batch_size``).
        num_workers: DataLoader workers.
        pin_memory: DataLoader ``pin_memory``.
        persistent_workers: keep workers between epochs (only with ``num_workers > 0``).
        seed: split seed, tile-order seed and synthetic base seed.
        val_fraction: fraction of sol groups held out for validation (real data).
        sol_block: consecutive sols grouped together for the split (real data).
        n_folds: ``None``: one held-out split (``val_fraction``, ``seed``); an integer: sol-grouped
            ``n_folds``-fold cross-validation, validating on fold ``fold`` (real data).
        fold: the validation fold when ``n_folds`` is set; must be 0 without ``n_folds``.
        exclude_sols: real data: inclusive ``[[first, last], ...]`` sol ranges whose images are left out of
            training and validation in every source (e.g. the sols another dataset will be validated on,
            before pre-training on this one); images without a sol are kept.
        shared_sol_holdout: several real sources: a sol block that any source validates on is trained on
            in none (sources from one rover count sols on one clock, and the same terrain seen by another
            camera would leak into validation). Set ``False`` for sources from different rovers.
        sol_margin: real data: training images within this many sols of a validation sol (of any source
            when ``shared_sol_holdout`` applies) are left out, since fixed sol blocks put neighbouring sols on
            opposite sides of the split (:func:`~marsunits.data.splits.near_sols`); 0 = none.
        allow_seen_val_sols: accept a run whose network starts from (``init_ckpt_path``), is evaluated as
            (``train=false``), or learns pseudo-labels from a model trained on sols this run validates on
            (within ``sol_margin`` of them, or in their sol blocks); refused by default, since its
            validation scores would be optimistic (:attr:`sols_seen_by`).
        samples_per_epoch: random training crops per epoch, over all real sources.
        cache: keep decoded images in memory; a bool or ``{source: bool}``.
        min_labelled_fraction: training crops with fewer non-ignore pixels are re-drawn.
        focus_class: real data: project id of a class whose pixels a share of the training crops must
            contain (``None``: no over-sampling); see :class:`~marsunits.data.datasets.RandomCropDataset`.
        focus_fraction: real data: that share of the crops, in [0, 1].
        fixed_crops: every training sample's crop and augmentation drawn from ``seed`` and its index, so
            the same every epoch (``debug=overfit``: random crops never let a model overfit a few batches).
        train_length: synthetic scenes per training epoch.
        val_length: synthetic validation scenes (fixed).
        test_length: synthetic test scenes (fixed).
        scene: synthetic ``SceneConfig`` fields (``width``, ``height``, ``mode``, ``difficulty``, ...).
        cache_scenes: synthetic: keep generated scenes in memory (uint8) after their first use, so the
            fixed training/validation/test scenes are rendered once, not every epoch; augmentation still
            differs per epoch. Per DataLoader worker (shared for the run with ``num_workers=0``).
        render_processes: synthetic, with ``cache_scenes``: processes that render the training scenes
            before the first epoch (the scenes are the same as rendered lazily). ``None``: one per CPU core
            available to this process (divided among the DDP ranks of the machine) when there are at
            least ``synthetic_source.POOL_MIN_SCENES`` scenes, else lazily; ``0`` or ``1``: lazily, in the
            first epoch.
        train_only: real sources used for training only: all their images are training images and they
            get no validation set (e.g. a ``folder`` of pseudo-labels on unlabelled images, whose labels
            are the model's own and would only score agreement with it). At least one source must validate.
        folder_sols_from_names: the ``folder`` source's images are named ``<sol>_<n>`` and grouped by that
            sol (:func:`~marsunits.data.folder.scan_folder`), so the sol split, ``exclude_sols`` and
            ``shared_sol_holdout`` reach them; without it a folder image belongs to no sol and is kept.
            ``marsscapes_pseudo`` sets it: pseudo-labels of a validated sol block trained the student.
        separate_val: several sources: one validation/test dataloader per source (``True``) or a single
            one over all of them (``False``, for tasks that do not handle ``dataloader_idx``).
        hflip_p: augmentation: horizontal flip probability.
        min_scale: augmentation: smallest area fraction of the random resized crop.
        max_rotation_deg: augmentation: rotation range in degrees.
        brightness: augmentation: brightness jitter.
        contrast: augmentation: contrast jitter.
        saturation: augmentation: saturation jitter (colour only).
        subclass_map: one real source: native id -> training sub-class id (``0..len(subclasses)-1`` or 255),
            applied to the training masks only (validation and test masks keep ``class_map``'s project
            ids); ``None`` (default): training masks hold project ids. For project classes that gather
            visually different native classes (rough = bedrock + gravel + big rock on MarsScapes): the
            network learns one output per sub-class and the task sums them back (``model.subclasses``).
        subclasses: the project class of each sub-class id, e.g. ``[0, 0, 1, 1, 1, 2]``; set with
            ``subclass_map`` and consistent with ``class_map`` (a native id's sub-class belongs to its
            project class). The model config reads it (``model.subclasses``).
        class_mix_prob: augmentation on training batches: the chance that a crop gets half the classes of
            another crop of its batch pasted onto it (ClassMix, :func:`~marsunits.data.mixing.class_mix`);
            0 disables. Applied after the batch reaches the device; its random state is saved in
            checkpoints, so a resumed run continues the mixing draws instead of repeating the first
            epoch's (crop order and augmentation are seeded from the step a run resumes at: see
            ``train_dataloader``).
    """

    def __init__(
        self,
        name: str,
        sources: Sequence[str],
        in_channels: int,
        crop_size: int,
        class_map: Mapping[Any, Any] | None = None,
        val_context_px: int = 0,
        root: str | None = None,
        source_dirs: Mapping[str, str] | None = None,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int = 0,
        val_fraction: float = 0.2,
        n_folds: int | None = None,
        fold: int = 0,
        sol_block: int = 1,
        exclude_sols: Sequence[Sequence[int]] | None = None,
        shared_sol_holdout: bool = True,
        sol_margin: int = 0,
        allow_seen_val_sols: bool = False,
        samples_per_epoch: int = 512,
        cache: bool | Mapping[str, bool] = True,
        min_labelled_fraction: float = 0.01,
        focus_class: int | None = None,
        focus_fraction: float = 0.0,
        fixed_crops: bool = False,
        train_length: int = 256,
        val_length: int = 32,
        test_length: int = 32,
        scene: Mapping[str, Any] | None = None,
        cache_scenes: bool = True,
        render_processes: int | None = None,
        separate_val: bool = True,
        train_only: Sequence[str] = (),
        folder_sols_from_names: bool = False,
        hflip_p: float = 0.5,
        min_scale: float = 0.5,
        max_rotation_deg: float = 5.0,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.15,
        class_mix_prob: float = 0.0,
        subclass_map: Mapping[Any, Any] | None = None,
        subclasses: Sequence[int] | None = None,
    ) -> None:
        """Take the arguments step by step, in this order: every check raises before any data is read, and
        a config with several mistakes is told the first of them in the order of these steps.

        ``save_hyperparameters`` stays in this method, after the arguments are plain and checked: Lightning
        reads the arguments from this frame's locals, so they are rebound to plain containers here first.
        """
        super().__init__()
        # Hydra may pass OmegaConf containers (without _convert_): plain ones, under the arguments' names.
        sources = _plain(sources)  # listed once _validate took it: text would be listed as its letters
        class_map = _plain(class_map)
        subclass_map = _plain(subclass_map)
        subclasses = _plain(subclasses)
        source_dirs = _plain(source_dirs)
        cache = _plain(cache)
        scene = _plain(scene)
        train_only = list(_plain(train_only) or [])
        self._validate(name, sources, in_channels, crop_size, val_context_px, class_map, root, source_dirs)
        sources = list(sources)
        self._check_sampling(
            name, sources, samples_per_epoch, min_labelled_fraction, focus_class, focus_fraction, train_only
        )
        self.train_only = train_only
        self.save_hyperparameters(logger=False)
        self._take_data(name, sources, in_channels, crop_size, val_context_px, class_map, root, source_dirs)
        self._take_loaders(batch_size, val_batch_size, num_workers, pin_memory, persistent_workers)
        self._take_split(
            name, seed, val_fraction, n_folds, fold, sol_block, exclude_sols, shared_sol_holdout, sol_margin
        )
        self._take_seen_models_rule(allow_seen_val_sols)
        self._take_training_draw(
            name,
            folder_sols_from_names,
            samples_per_epoch,
            cache,
            min_labelled_fraction,
            subclass_map,
            subclasses,
            focus_class,
            focus_fraction,
            fixed_crops,
        )
        self._take_synthetic(
            name, train_length, val_length, test_length, scene, cache_scenes, render_processes
        )
        self._take_augmentation(
            name, hflip_p, min_scale, max_rotation_deg, brightness, contrast, saturation, class_mix_prob
        )
        self._take_validation_names(name, separate_val)
        self._start_unset()

    # ----------------------------------------------------------------------------- __init__'s steps

    @staticmethod
    def _check_sampling(
        name: str,
        sources: list[str],
        samples_per_epoch: Any,
        min_labelled_fraction: Any,
        focus_class: Any,
        focus_fraction: Any,
        train_only: list[str],
    ) -> None:
        """Refuse a training draw that :func:`~marsunits.data.sampling_checks.sampling_refusal` refuses
        (``samples_per_epoch``, ``min_labelled_fraction``, ``focus_class``/``focus_fraction``,
        ``train_only``).

        Raises:
            ValueError: its one line (the rules train.py also checks before Hydra makes the run folder,
                run_checks.check_run_values).
        """
        refused = sampling_refusal(
            name, sources, samples_per_epoch, min_labelled_fraction, focus_class, focus_fraction, train_only
        )
        if refused is not None:
            raise ValueError(refused)

    def _take_data(
        self,
        name: str,
        sources: list[str],
        in_channels: int,
        crop_size: int,
        val_context_px: int,
        class_map: Any,
        root: str | None,
        source_dirs: Any,
    ) -> None:
        """What the data is, as :meth:`_validate` checked it: ``name``, ``sources``, ``in_channels``,
        ``crop_size``, ``val_context_px``, ``class_map``, ``root`` and ``source_dirs`` (a dict)."""
        self.name = name
        self.sources = sources
        self.in_channels = int(in_channels)
        self.crop_size = int(crop_size)
        self.val_context_px = int(val_context_px)
        self.class_map = class_map
        self.root = root
        self.source_dirs = dict(source_dirs or {})

    def _take_loaders(
        self,
        batch_size: int,
        val_batch_size: int | None,
        num_workers: int,
        pin_memory: bool,
        persistent_workers: bool,
    ) -> None:
        """The DataLoaders' settings: ``batch_size``, ``val_batch_size`` (``batch_size`` where not given),
        ``num_workers``, ``pin_memory`` and ``persistent_workers`` (only with workers)."""
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0

    def _take_split(
        self,
        name: str,
        seed: int,
        val_fraction: float,
        n_folds: int | None,
        fold: int,
        sol_block: int,
        exclude_sols: Any,
        shared_sol_holdout: bool,
        sol_margin: Any,
    ) -> None:
        """The real data's split, and the ``seed`` of every draw: ``seed``, ``val_fraction``, ``n_folds``,
        ``fold``, ``sol_block``, ``exclude_sols`` (checked ranges), ``shared_sol_holdout`` and ``sol_margin``.

        Raises:
            ValueError: a ``fold`` without ``n_folds``, a malformed ``exclude_sols`` or a ``sol_margin``
                that is no whole number >= 0, in that order.
        """
        self.seed = int(seed)
        self.val_fraction = float(val_fraction)
        self.n_folds = None if n_folds is None else int(n_folds)
        self.fold = int(fold)
        if self.n_folds is None and self.fold != 0:
            # Ignored, the run validated on the single held-out split: a cross-validation loop without
            # n_folds trained the same split k times, each run named and recorded as another fold.
            raise ValueError(
                f"configs/data/{name}.yaml: fold={fold} needs n_folds (the number of cross-validation "
                f"folds); without it the single held-out split (val_fraction) is used. Add data.n_folds=5 "
                f"(or your number of folds) to data.fold={fold}, or drop data.fold."
            )
        self.sol_block = int(sol_block)
        self.exclude_sols = check_sol_ranges(_plain(exclude_sols), f"configs/data/{name}.yaml")
        self.shared_sol_holdout = bool(shared_sol_holdout)
        refused = sol_margin_refusal(name, sol_margin)  # these rules: also train.py's, before Hydra
        if refused is not None:
            raise ValueError(refused)
        self.sol_margin = sol_margin

    def _take_seen_models_rule(self, allow_seen_val_sols: bool) -> None:
        """``allow_seen_val_sols``, and the models that saw data before this run, none yet: ``sols_seen_by``,
        ``resumed_trained_images`` and ``images_seen_by``, which ``training.run`` sets and ``setup`` checks
        the validation side against."""
        self.allow_seen_val_sols = bool(allow_seen_val_sols)
        #: ``(what, {source: sols})`` of the models this run's network comes from or learns from (set by
        #: ``training.run`` for ``init_ckpt_path`` and ``train=false``; a pseudo-label folder's teacher is
        #: read from its ``pseudo_labels.json``): ``setup`` refuses validation sols they trained on.
        self.sols_seen_by: list[tuple[str, Mapping[str, Sequence[int]] | None]] = []
        #: ``(what, {source: image keys})``: the images without a sol that the run resumed by this command
        #: trained on (its checkpoint's :meth:`state_dict`), set by ``training.run``; ``setup`` refuses to
        #: validate on them (an image added to a folder re-draws the split of images without sols).
        self.resumed_trained_images: tuple[str, Mapping[str, Sequence[str]]] | None = None
        #: ``(what, content keys)`` of the models this run's network comes from (``init_ckpt_path``) or is
        #: evaluated as (``train=false``): their ``trained_images``, set by ``training.run``; ``setup``
        #: refuses to validate on those images, under whatever name or folder (images without a sol, in
        #: a user's folder, are split one by one, and a model trained on another split of them is not
        #: caught by the sol check).
        self.images_seen_by: list[tuple[str, Collection[str]]] = []

    def _take_training_draw(
        self,
        name: str,
        folder_sols_from_names: bool,
        samples_per_epoch: int,
        cache: Any,
        min_labelled_fraction: float,
        subclass_map: Any,
        subclasses: Any,
        focus_class: int | None,
        focus_fraction: float,
        fixed_crops: bool,
    ) -> None:
        """How the real training images are read and drawn: ``folder_sols_from_names``,
        ``samples_per_epoch``, ``cache``, ``min_labelled_fraction``, ``subclass_map`` and ``subclasses``
        (``{int: int}`` and ``[int]``, or None), ``focus_class``, ``focus_fraction`` and ``fixed_crops``.

        Raises:
            ValueError: sub-classes that do not fit each other or the ``class_map``
                (:meth:`_validate_subclasses`).
        """
        self.folder_sols_from_names = bool(folder_sols_from_names)
        self.samples_per_epoch = int(samples_per_epoch)  # its range: sampling_refusal, in _check_sampling
        self.cache = cache
        self.min_labelled_fraction = float(min_labelled_fraction)
        self._validate_subclasses(name, self.sources, self.class_map, subclass_map, subclasses, focus_class)
        self.subclass_map = (
            None if subclass_map is None else {int(k): int(v) for k, v in subclass_map.items()}
        )
        self.subclasses = None if subclasses is None else [int(c) for c in subclasses]
        self.focus_class = None if focus_class is None else int(focus_class)
        self.focus_fraction = float(focus_fraction)
        self.fixed_crops = bool(fixed_crops)

    def _take_synthetic(
        self,
        name: str,
        train_length: int,
        val_length: int,
        test_length: int,
        scene: Any,
        cache_scenes: bool,
        render_processes: int | None,
    ) -> None:
        """The synthetic scenes: ``train_length``, ``val_length``, ``test_length``, ``scene`` (a dict),
        ``cache_scenes``, ``render_processes``, and ``stopped_rendering`` (None: not stopped).

        Raises:
            ValueError: a ``render_processes`` that is no whole number >= 0 (also train.py's, before Hydra).
        """
        self.train_length = int(train_length)
        self.val_length = int(val_length)
        self.test_length = int(test_length)
        self.scene = dict(scene or {})
        self.cache_scenes = bool(cache_scenes)
        refused = render_processes_refusal(name, render_processes)
        if refused is not None:
            raise ValueError(refused)
        self.render_processes = None if render_processes is None else int(render_processes)
        #: The training scenes being pre-rendered when a Ctrl-C or SIGTERM stopped it (None: not stopped
        #: there), read by ``InterruptCheckpoint`` to say how the run goes on.
        self.stopped_rendering: int | None = None

    def _take_augmentation(
        self,
        name: str,
        hflip_p: float,
        min_scale: float,
        max_rotation_deg: float,
        brightness: float,
        contrast: float,
        saturation: float,
        class_mix_prob: float,
    ) -> None:
        """The training augmentation: ``augment`` (the transform's settings, as given), ``class_mix_prob``
        and ClassMix's random state (``_mix_generator`` from ``seed``, ``_mix_rank_seeded``), and
        ``_resumed_step`` (0 until a checkpoint is loaded).

        Raises:
            ValueError: a ``class_mix_prob`` outside [0, 1] (also train.py's, before Hydra).
        """
        self.augment = {
            "hflip_p": hflip_p,
            "min_scale": min_scale,
            "max_rotation_deg": max_rotation_deg,
            "brightness": brightness,
            "contrast": contrast,
            "saturation": saturation,
        }
        refused = class_mix_prob_refusal(name, class_mix_prob)
        if refused is not None:
            raise ValueError(refused)
        self.class_mix_prob = float(class_mix_prob)
        self._mix_generator = torch.Generator().manual_seed(self.seed)
        #: Whether :meth:`on_after_batch_transfer` gave this DDP rank its own ClassMix draws (once a run).
        self._mix_rank_seeded = False
        #: The optimiser step a resumed run's checkpoint was saved at (:meth:`load_state_dict`), else 0.
        self._resumed_step = 0

    def _take_validation_names(self, name: str, separate_val: bool) -> None:
        """``separate_val`` and ``val_names``: one validation dataloader per validated source (those not
        ``train_only``) where there are several and ``separate_val``, else one named after the data config."""
        self.separate_val = bool(separate_val)
        validated = [s for s in self.sources if s not in self.train_only]
        #: Name of each validation dataloader, in ``dataloader_idx`` order.
        self.val_names: list[str] = validated if len(validated) > 1 and self.separate_val else [name]

    def _start_unset(self) -> None:
        """What ``check_split`` and ``setup`` fill in, empty until they run: the datasets (``train_set``,
        ``val_sets``, ``test_sets``), ``splits`` and the state the checks of the split keep."""
        self.train_set: Dataset | None = None
        self.val_sets: list[Dataset] = []
        self.test_sets: list[Dataset] = []
        #: Real data: ``{source: (train records, val records)}`` after ``setup``.
        self.splits: dict[str, tuple[list[LabelledImage], list[LabelledImage]]] = {}
        self._split_checked = False  # check_split ran (the splits are final)
        # The stores check_split read every pair into, for setup to use: None before it, and once used.
        self._checked_stores: dict[str, tuple[ImageStore, ImageStore | None]] | None = None
        self._trained_keys: list[str] | None = None  # trained_image_keys(), hashed once (splits are final)
        self._train_stores: dict[str, ImageStore] = {}  # {source: its training store}, after setup
        self._image_colours: tuple[int, int] | None = None  # training_image_colours(), counted once
        #: ``{source: the labelled ids its training masks hold}``, after ``check_split``.
        self._training_ids: dict[str, frozenset[int]] = {}
        #: Whether a training mask holds a 255 (no label), after ``check_split``.
        self._training_unlabelled = False
        #: The teacher of a pseudo-label folder among the sources (``pseudo_labels.json``), read by setup.
        self._teacher: PseudoLabelTeacher | None = None

    # ------------------------------------------------------------------------------------------ checks

    @staticmethod
    def _validate(
        name: str,
        sources: Any,
        in_channels: int,
        crop_size: int,
        val_context_px: int,
        class_map: Any,
        root: str | None,
        source_dirs: Any,
    ) -> None:
        """Refuse what :func:`~marsunits.data.value_checks.source_settings_refusal` refuses."""
        refused = source_settings_refusal(
            name, sources, in_channels, crop_size, val_context_px, class_map, root, source_dirs
        )
        if refused is not None:
            raise ValueError(refused)

    def check_size_divisor(self, divisor: int) -> None:
        """Refuse sizes the network cannot take (:func:`size_refusal`): ``crop_size``, the validation windows
        (``crop_size + 2 * val_context_px``) and, for synthetic scenes (validated whole), the scene's width
        and height must be multiples of ``divisor``, the network's input divisor
        (``SegmentationTask.size_divisor``). ``train.py`` calls it once the model is built; :meth:`setup`
        calls it with the divisor of the trainer's model, where that model has one.

        Raises:
            ValueError: naming the option, its value, the divisor, this data config and values that fit.
        """
        scene = None
        if self.sources == ["synthetic"]:
            config = scene_config(self.scene)
            scene = {"width": config.width, "height": config.height}
        why = (
            f"the network built takes multiples of {divisor}, its size_divisor; configs/data/{self.name}.yaml"
        )
        refused = size_refusal(self.crop_size, self.val_context_px, scene, divisor, why)
        if refused is not None:
            raise ValueError(refused)

    def check_network_classes(self, hparams: Any) -> None:
        """Refuse a network whose outputs are not the classes the training masks hold: its ``subclasses``
        (in ``hparams``, its hyper-parameters, as a :class:`~marsunits.task.SegmentationTask` keeps them; a
        module without them is left alone) are not this data module's ``subclasses``. ``train.py`` checks
        the same before the run folder is made and in the run
        (:func:`~marsunits.run_checks.subclasses_mismatch`, its line); :meth:`setup` checks it against the
        trainer's model, so a model fitted without ``train.py`` (a notebook) is told it before anything is
        read, not left to learn the wrong classes.

        Raises:
            ValueError: the two differ, in ``train.py``'s words.
        """
        from marsunits.run_checks import subclasses_mismatch

        if isinstance(hparams, Mapping) and "subclasses" in hparams:
            groups = hparams["subclasses"]
            groups = list(groups) if isinstance(groups, list | tuple) else groups  # the task keeps a list
            mismatch = subclasses_mismatch(groups, self.subclasses)
            if mismatch is not None:
                raise ValueError(mismatch)

    @staticmethod
    def _validate_subclasses(
        name: str,
        sources: list[str],
        class_map: Any,
        subclass_map: Any,
        subclasses: Any,
        focus_class: int | None,
    ) -> None:
        """Check ``subclass_map`` (a map of whole ids, or None:
        :func:`~marsunits.data.value_checks.map_refusal`), then it and ``subclasses`` against each other and
        ``class_map`` (see the class doc): :func:`~marsunits.data.value_checks.subclasses_refusal`; in
        ``train.py``'s words and order before Hydra (``data_value_refusal``)."""
        refused = map_refusal(name, "subclass_map", subclass_map) or subclasses_refusal(
            name, sources, class_map, subclass_map, subclasses, focus_class
        )
        if refused is not None:
            raise ValueError(refused)

    def _folders(self) -> SourceFolders:
        """The folders of the real sources, as this module's attributes give them now."""
        return SourceFolders(self.name, self.sources, self.root, self.source_dirs, self.train_only)

    def _reading(self) -> SourceReading:
        """How the real sources' pairs are read into image stores, as this module's attributes give it now."""
        return SourceReading(
            self.name,
            self.sources,
            self.class_map,
            self.cache,
            self.train_only,
            self.subclass_map,
            self.subclasses,
        )

    def check_source_folders(self) -> None:
        """Raise the FileNotFoundError that :meth:`setup` raises for a real source whose root folder is not
        there (``data.root``, or ``data.source_dirs.<source>``), or is not laid out as the source is read
        (:func:`~marsunits.data.layout.check_layout`'s DataLayoutError: a subfolder or the sol table
        missing, another dataset's layout, a folder one level too high or low), in the same words, looking at
        folder names and the sol table's header only, no image: ``train.py`` runs it before Hydra makes the
        run folder (:func:`~marsunits.run_checks.data_folder_refusal`). Synthetic scenes have no folder."""
        self._folders().check()

    def check_label_classes(self, warn: bool = True) -> None:
        """Refuse a real source read without a class map (its masks taken as project ids: ``data.class_map``
        null, or with several sources ``data.class_map.<source>``) whose folder holds a ``classes.json``
        naming other classes (:func:`~marsunits.data.class_map.classes_file_refusal`): AI4Mars labels
        copied into a ``data=folder`` root trained as project ids without a word when none held a 3, sand (2)
        as ``other``. The file is the one in the folder the masks are read from (``masks/``, ``labels/``)
        where it holds one, else the root's, as ``predict.py`` reads ``labels_dir``'s
        (:func:`~marsunits.data.class_map.labels_classes_folder`): only the root's was read. Reads that file
        only, no image: ``train.py`` runs it before Hydra makes the run folder
        (:func:`~marsunits.run_checks.data_folder_refusal`, with ``warn`` false) and :meth:`check_split`
        before the data is read. With ``warn``, a ``classes.json`` that cannot be read is said in a warning
        naming it (:func:`~marsunits.data.class_map.unreadable_classes_file`); it stops nothing.

        Raises:
            ConfigError: naming the file, the data set whose native ids it lists and the map to give.
        """
        self._folders().check_label_classes(self.class_map, warn)

    # ------------------------------------------------------------------------------------------ setup

    def setup(self, stage: str | None = None) -> None:
        """Scan, split and (where configured) decode the data; runs once, whatever the stage."""
        if self.train_set is not None:
            return
        # A model fitted without train.py (a notebook): the sizes it needs and the classes it outputs, before
        # anything is read.
        module = getattr(self.trainer, "lightning_module", None)
        divisor = getattr(module, "size_divisor", None)
        if isinstance(divisor, int) and not isinstance(divisor, bool) and divisor >= 1:
            self.check_size_divisor(divisor)
        self.check_network_classes(getattr(module, "hparams", None))
        train_transform = build_train_transform(self.crop_size, self.in_channels, **self.augment)
        if self.sources == ["synthetic"]:
            train_set, val_set, test_set = synthetic_datasets(
                self.scene,
                self.seed,
                (self.train_length, self.val_length, self.test_length),
                self.in_channels,
                train_transform,
                self.cache_scenes,
                self.seed if self.fixed_crops else None,
            )
            self.train_set, self.val_sets, self.test_sets = train_set, [val_set], [test_set]
            return
        self.check_split()
        stores, self._checked_stores = self._checked_stores or self._reading().stores(self.splits), None
        self._train_stores.update((source, train) for source, (train, _) in stores.items())
        train_parts, val_sets = real_datasets(
            self.splits,
            stores,
            samples_per_source=max(1, self.samples_per_epoch // len(self.sources)),
            crop_size=self.crop_size,
            in_channels=self.in_channels,
            transform=train_transform,
            min_labelled_fraction=self.min_labelled_fraction,
            focus_class=self.focus_class,
            focus_fraction=self.focus_fraction,
            fixed_seed=self.seed if self.fixed_crops else None,
            order_seed=self.seed,
            context_px=self.val_context_px,
        )
        self.val_sets.extend(val_sets)
        self.train_set = train_parts[0] if len(train_parts) == 1 else ConcatDataset(train_parts)
        if len(self.val_sets) > 1 and not self.separate_val:
            self.val_sets = [ConcatDataset(self.val_sets)]
        self.test_sets = self.val_sets

    def check_split(self) -> None:
        """Scan and split the real sources, refuse a split whose validation data a model this run comes
        from already saw (:meth:`_refuse_what_was_seen_before`), and read every image/mask pair
        (:meth:`~marsunits.data.real_datasets.SourceReading.stores`); the first steps of :meth:`setup`, which
        reuses them. ``train.py`` calls it before it makes the run folder and starts the loggers: refused in
        ``setup``, a command left a run folder (``config.yaml``, an empty CSV log) and a failed W&B run that
        the console said to upload (a mask of another size, ids outside the classes, an RGB mask were all
        found there until 2026-12-07).
        Runs once; nothing for synthetic scenes.

        Raises:
            DataError: The split validates on sols or images such a model trained on (the message names the
                model and ``data.allow_seen_val_sols``); FileNotFoundError: a source's folder is missing;
            UnusablePairsError: pairs that cannot be used (each file and its problem, in one error);
            UnpairedFilesError: files without their pair (with the problems of the pairs found, if any).
        """
        if self._split_checked or self.sources == ["synthetic"]:
            return
        self.check_label_classes()  # before any mask is read as project ids that a classes.json says are not
        unpaired: list[tuple[str, UnpairedFilesError]] = []
        for source in self.sources:
            try:
                self.splits[source] = self._split(source)
            except UnpairedFilesError as err:
                unpaired.append((source, err))
        if unpaired:
            raise self._reading().unpaired_and_unusable(unpaired)
        where = f"configs/data/{self.name}.yaml"
        joined = self.shared_sol_holdout and len(self.sources) > 1
        if joined:
            hold_out_validated_sols(self.splits, self.sol_block, where)
        if self.sol_margin > 0:
            leave_out_sols_near_validation(self.splits, self.sol_margin, joined, where)
        self._say_split()
        if "folder" in self.sources:  # read once: each check below and the task's record ask for it
            self._teacher = pseudo_label_teacher(self._folders().root_of("folder"))
        if not self.allow_seen_val_sols:
            self._refuse_what_was_seen_before()
        self._checked_stores = self._reading().stores(self.splits)
        self._training_ids = {
            source: frozenset().union(*train.labelled_ids)
            for source, (train, _) in self._checked_stores.items()
        }
        # Whether a training mask leaves a pixel unlabelled (255): masks of 0 alone are no black-and-white
        # export.
        self._training_unlabelled = any(
            int(count) < height * width
            for train, _ in self._checked_stores.values()
            for count, (height, width) in zip(train.labelled_counts, train.sizes, strict=True)
        )
        self._split_checked = True

    def one_class_training(self) -> str | None:
        """Why this data cannot train a network, when the labelled pixels of every training mask (all
        sources together, after the class map) are of one class: the network learns to call everything that
        class, and the run said nothing. Masks in black and white (0 and 255 only, 255 being no label) were
        read as all smooth_volcanic that way. None when the training masks hold two classes or more, or
        before :meth:`check_split` (synthetic scenes: always None). ``train.py`` refuses a training run with
        it, before the run folder is made; a run that only scores a model (``train=false``) is not asked."""
        return one_class_refusal(self._reading(), self.splits, self._training_ids, self._training_unlabelled)

    def _say_split(self) -> None:
        """Log how many images of each source train and validate, naming the validation images
        (:func:`~marsunits.data.real_datasets.say_split`): val/miou was reported with nothing saying which
        of a folder's frames it was measured on, nor how many (``data.val_fraction`` chooses them)."""
        how = (
            f"fold {self.fold} of data.n_folds={self.n_folds}"
            if self.n_folds is not None
            else f"data.val_fraction={self.val_fraction:g}"
        )
        say_split(self.splits, self._folders(), how)

    def _split(self, source: str) -> tuple[list[LabelledImage], list[LabelledImage]]:
        """Scan ``source``, leave out ``exclude_sols`` and split the rest by sol block."""
        return split_records(
            self._folders().scan(source, self.folder_sols_from_names),
            source,
            self.name,
            exclude_sols=self.exclude_sols,
            train_only=self.train_only,
            n_folds=self.n_folds,
            fold=self.fold,
            val_fraction=self.val_fraction,
            seed=self.seed,
            sol_block=self.sol_block,
        )

    def _image_key(self, source: str, rec: LabelledImage) -> str:
        """``rec``'s image as a path below its source's root (POSIX form), or the whole path if outside."""
        return self._folders().image_key(source, rec)

    def trained_images(self) -> dict[str, list[str]]:
        """``{source: sorted image keys}`` of the training images without a sol (after ``setup``): those
        a split by sol does not keep apart from the validation images when the data changes."""
        folders = self._folders()
        found = {
            source: sorted(folders.image_key(source, r) for r in train if r.group is None)
            for source, (train, _) in self.splits.items()
        }
        return {source: keys for source, keys in found.items() if keys}

    def trained_image_keys(self) -> list[str]:
        """Sorted content keys (:func:`~marsunits.file_digest.image_content_key`) of every training image
        file, of every source (after ``setup``; synthetic scenes have no files: none), and those of the
        teacher of a pseudo-label folder, whose knowledge of them reaches the student through its labels (as
        :meth:`trained_sols`). Files that cannot be read are left out (set-up has said so already, or
        training will). Hashed once: set-up's check and the task's record at the start of fit both ask."""
        if self._trained_keys is None:
            keys = set()
            for train, _ in self.splits.values():
                for rec in train:
                    with contextlib.suppress(OSError):
                        keys.add(image_content_key(file_sha256(rec.image)))
            teacher = self._teacher
            keys |= set(teacher[2] or ()) if teacher else set()
            self._trained_keys = sorted(keys)
        return list(self._trained_keys)

    def training_image_colours(self) -> tuple[int, int]:
        """``(grey, colour)``: the training images (after ``setup``) that are greyscale and colour, as
        :func:`~marsunits.training_images.is_grey` tells them (one channel, or three equal ones), for the
        model's record of them (``metadata["training_images"]``). Each image counts once, whatever the
        crops drawn from it; synthetic training scenes count by ``scene.mode`` (each scene's draw of
        ``mixed``), without rendering them. Images that cannot be read are left out (training stops on
        them). Counted once: a cached store's images are in memory, a store read without a cache is read
        here, from each file's header where it declares one channel. A pseudo-label folder's teacher's
        images are not counted: the student learned from the folder's images."""
        if self._image_colours is None:
            grey = colour = 0
            if self.sources == ["synthetic"]:
                from marsunits.data.synthetic.scene import scene_is_grey

                config = scene_config(self.scene)
                grey = sum(scene_is_grey(self.seed, i, config) for i in range(self.train_length))
                colour = self.train_length - grey
            for store in self._train_stores.values():
                for i in range(len(store)):
                    found = store.greyscale(i)
                    grey += found is True
                    colour += found is False
            self._image_colours = (int(grey), int(colour))
        return self._image_colours

    def unreadable_images(self) -> UnusablePairsError | None:
        """Decode every image of the sources read without a cache (``data.cache=false``) and return the
        error listing those that cannot be read, or None (after ``setup``).

        Without a cache, set-up reads each image's header only (a truncated JPEG has a whole one), so a
        broken image stops training when first drawn, and each run found one more; called then, this lists
        them all in one round, as a cached source's set-up does. Cached sources were decoded at set-up.
        """
        reading = self._reading()
        return unreadable_images(
            [
                rec
                for source, (train, val) in self.splits.items()
                if not reading.cached(source)
                for rec in (*train, *val)
            ]
        )

    def trained_sols(self) -> dict[str, list[int]]:
        """``{source: sorted sols}`` the model learns from (after ``setup``): the training side's, sources
        without sols left out, and those of the teacher of a pseudo-label folder, whose knowledge of them
        reaches the student through its labels."""
        sols = {
            source: sorted({r.group for r in train if r.group is not None})
            for source, (train, _) in self.splits.items()
        }
        teacher = self._teacher
        return merge_sols(sols, teacher[1] if teacher else None) or {}

    def _refuse_what_was_seen_before(self) -> None:
        """Refuse a split whose validation data a model this run comes from already saw (by sol, by image
        content, or the images without a sol its resumed first part trained on: :mod:`split_guards`)."""
        teacher = self._teacher
        sol_teachers = [*self.sols_seen_by, *([teacher[:2]] if teacher else [])]
        # One rover, one clock: any source's sols count against every source's (as the shared hold-out).
        refuse_validation_sols_seen_before(
            self.splits, sol_teachers, self.sol_block, self.sol_margin, self.shared_sol_holdout
        )
        if self.resumed_trained_images is not None:
            folders = self._folders()
            refuse_validation_images_trained_before(
                self.splits, self.resumed_trained_images, folders.image_key, folders.root_of
            )
        image_teachers = [
            *self.images_seen_by,
            *([(teacher[0], teacher[2])] if teacher and teacher[2] else []),
        ]
        refuse_validation_images_seen_before(self.splits, image_teachers, self.trained_image_keys)

    def _render_training_scenes(self) -> None:
        """Render every synthetic training scene now, in ``render_processes`` processes (when the scene cache
        is on), instead of one at a time inside the first epoch; not for ``fast_dev_run``, which draws one
        batch (it rendered all 1,792 default scenes first, about 35 s); for ``overfit_batches``
        (``debug=overfit``) only the scenes its batches draw (:func:`overfit_scenes`: 32, fewer than a
        process pool is started for). Called by :meth:`train_dataloader`,
        before Lightning creates the loader's first iterator (and with it the worker processes, which get
        the cache). A stop during the render is kept in ``stopped_rendering``, for the stop's line."""
        if getattr(self.trainer, "fast_dev_run", False):
            return
        train_set = self.train_set
        if self.sources != ["synthetic"] or not isinstance(train_set, SceneDataset) or not self.cache_scenes:
            return
        # debug=overfit draws the first few scenes only: the others are neither rendered nor kept.
        overfit = getattr(self.trainer, "overfit_batches", 0) or 0
        scenes = overfit_scenes(overfit, len(train_set), self.batch_size, self._ranks())
        processes = self._render_processes(scenes)
        render_training_scenes(
            train_set, processes, lambda todo: setattr(self, "stopped_rendering", todo), first=scenes
        )

    def _ranks(self) -> int:
        """The DDP ranks training loads its scenes on (1 without a trainer)."""
        return max(1, int(getattr(self.trainer, "world_size", 1) or 1)) if self.trainer is not None else 1

    def _render_processes(self, n_scenes: int) -> int:
        """Processes for pre-rendering ``n_scenes`` training scenes (see ``render_processes``)."""
        return render_processes(self.render_processes, n_scenes, self.trainer)

    # ------------------------------------------------------------------------------------------ loaders

    def _loader(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        sampler: Any = None,
        generator: torch.Generator | None = None,
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle if sampler is None else None,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate_samples,
            generator=generator,
        )

    def _shuffle_seed(self, step: int = 0) -> int:
        """Seed of the training loader's generator: its shuffle order and, with ``num_workers > 0``, every
        worker's seed, so every crop and augmentation. Drawn from ``data.seed`` and the run's seed (torch's
        initial seed, which ``seed_everything`` sets): with ``data.seed`` alone, runs with another ``seed``
        trained on the very same crops in the same order and differed only in their initial weights. A run
        resumed at optimiser ``step`` draws from it too (:meth:`train_dataloader`); a fresh run (0) keeps
        the seed it always had, and its measured results."""
        entropy = [self.seed, torch.initial_seed()]
        if step:
            entropy.append(step)
        state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
        return int(state[0]) << 31 | int(state[1]) >> 1

    def train_dataloader(self) -> DataLoader:
        """Random crops (real data) or augmented scenes (synthetic); the last partial batch is dropped.

        A resumed run (:meth:`load_state_dict` ran before: Lightning restores the datamodule's state before
        it asks for this loader) seeds the loader's generator and torch's global one, which draws the crops
        and augmentations in the main process (``num_workers=0``), from the optimiser step it resumes at.
        Neither generator is in a checkpoint, so every resume replayed the crops and augmentations of the
        run's first epochs: a run stopped halfway trained on half as many distinct crops.
        """
        self.setup("fit")
        assert self.train_set is not None
        self._render_training_scenes()
        # Under DDP each rank loads its share (Lightning's DistributedSampler: len / world_size, rounded up):
        # decided on the whole set, a share smaller than the batch was dropped and every rank had no batch
        # (16 scenes at batch 16 on 2 ranks), which one process trains on as one batch.
        drop_last = -(-len(self.train_set) // self._ranks()) >= self.batch_size  # type: ignore[arg-type]
        seed = self._shuffle_seed(self._resumed_step)
        if self._resumed_step:
            torch.manual_seed(seed ^ 0x5EED)
        generator = torch.Generator().manual_seed(seed)
        # Lightning overfits (``debug=overfit``) on the first batches in order: it replaced a shuffling
        # sampler by a SequentialSampler (under DDP, a DistributedSampler without shuffle) with "You
        # requested to overfit but enabled train dataloader shuffling" on every such run. The loader is
        # made in order here: the same batches, no warning.
        shuffle = not (getattr(self.trainer, "overfit_batches", 0) or 0) > 0
        return self._loader(self.train_set, self.batch_size, shuffle, drop_last, generator=generator)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """One loader per source (a bare loader when there is one source), in ``val_names`` order; under
        DDP each rank scores its own share of the images, none twice (:meth:`_evaluation_loader`)."""
        self.setup("validate")
        loaders = [self._evaluation_loader(d) for d in self.val_sets]
        return loaders[0] if len(loaders) == 1 else loaders

    @property
    def test_is_validation(self) -> bool:
        """Whether the test images are the validation ones (real data has no labelled test split; synthetic
        scenes have a test set of their own seeds). Known after :meth:`setup`."""
        return self.train_set is not None and self.test_sets is self.val_sets

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """Synthetic: the fixed seeded test set. Real data: the validation split (no labelled test split)."""
        self.setup("test")
        loaders = [self._evaluation_loader(d) for d in self.test_sets]
        return loaders[0] if len(loaders) == 1 else loaders

    def _evaluation_loader(self, dataset: Dataset) -> DataLoader:
        """A validation or test loader, in order. Under DDP it samples with Lightning's
        ``UnrepeatedDistributedSampler``: each rank takes every ``world_size``-th image and no image is
        repeated. Lightning's own choice, PyTorch's ``DistributedSampler``, pads the ranks to equal length
        with repeats, so 5 validation images on 2 ranks were scored as 6, the first one twice, and the
        logged metrics differed from one process scoring the same checkpoint. Lightning leaves a loader
        that already has a ``DistributedSampler`` as it is. Fewer images than ranks keep Lightning's
        padding: a rank without a batch would wait forever for the others at the first collective.
        """
        trainer = self.trainer
        kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
        sampler = None
        if kwargs and int(kwargs.get("num_replicas", 1)) > 1:
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            if len(dataset) >= int(kwargs["num_replicas"]):  # type: ignore[arg-type]
                sampler = UnrepeatedDistributedSampler(
                    dataset, num_replicas=kwargs["num_replicas"], rank=kwargs["rank"], shuffle=False
                )
        return self._loader(dataset, self.val_batch_size, shuffle=False, drop_last=False, sampler=sampler)

    # ------------------------------------------------------------------------------------------ batches

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """ClassMix on training batches (``class_mix_prob > 0``); validation/test batches pass untouched."""
        trainer = self.trainer
        if self.class_mix_prob > 0 and trainer is not None and trainer.training:
            self._seed_mix_for_rank()
            batch["image"], batch["mask"] = class_mix(
                batch["image"], batch["mask"], self.class_mix_prob, self._mix_generator
            )
        return batch

    def _seed_mix_for_rank(self) -> None:
        """Give a DDP rank other than zero ClassMix draws of its own, from ``(data.seed, rank)``, or from
        ``(data.seed, rank, step)`` in a run resumed at optimiser ``step`` (as
        :func:`~marsunits.task.seed_rank` seeds the ranks' crops). Every rank seeded its generator from
        ``data.seed`` alone, and a resumed run restored rank zero's saved state on every rank, so N ranks
        mixed their crops the same way. Rank zero (and one process) keeps the seeded or restored state, so
        single-process runs mix as they always did. Done at the first training batch: after a resumed run's
        :meth:`load_state_dict`."""
        if self._mix_rank_seeded:
            return
        self._mix_rank_seeded = True
        rank = int(getattr(self.trainer, "global_rank", 0) or 0)
        if rank:
            entropy = [self.seed, rank, self._resumed_step] if self._resumed_step else [self.seed, rank]
            state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)
            self._mix_generator = torch.Generator().manual_seed(int(state[0]) >> 1)

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints by Lightning: the ClassMix random state, continued by a resumed run, the
        optimiser step, which seeds a resumed run's crops (:meth:`train_dataloader`), and the training images
        without a sol (:meth:`trained_images`), which a resumed run's split must not validate on."""
        step = int(getattr(self.trainer, "global_step", 0) or 0) if self.trainer is not None else 0
        return {
            "mix_generator_state": self._mix_generator.get_state(),
            "global_step": step,
            "trained_images": self.trained_images(),  # checked by a resumed run's setup
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; checkpoints from before ClassMix carry no state and keep the seed."""
        if "mix_generator_state" in state_dict:
            self._mix_generator.set_state(state_dict["mix_generator_state"])
        self._resumed_step = int(state_dict.get("global_step", 0))
        self._mix_rank_seeded = False  # rank zero's state: the other ranks draw their own again

    # ------------------------------------------------------------------------------------------ metadata

    def describe(self) -> dict[str, Any]:
        """What a checkpoint should record about the data: name, sources, channels, crop size, class map,
        and (after ``setup``) the number of train/val images per source."""
        info: dict[str, Any] = {
            "name": self.name,
            "sources": list(self.sources),
            "in_channels": self.in_channels,
            "crop_size": self.crop_size,
            "class_map": self.class_map,
            "subclass_map": self.subclass_map,
            "subclasses": self.subclasses,
            "val_names": list(self.val_names),
        }
        if self.splits:
            info["split"] = {s: {"train": len(t), "val": len(v)} for s, (t, v) in self.splits.items()}
        return info
