"""The ``synthetic`` source of a data config made into its datasets: scenes generated on the fly, from seeds.

:class:`~marsunits.data.datamodule.MarsDataModule` with ``sources: [synthetic]`` takes from here its
``SceneConfig`` (:func:`scene_config`), its training, validation and test sets (:func:`synthetic_datasets`:
training scenes of seeds ``seed``, validation and test scenes of ``seed + VAL_SEED_OFFSET`` and ``seed +
TEST_SEED_OFFSET``, fixed and never drawn for training), and the pre-render of the training scenes before
the first epoch (:func:`render_processes`, :func:`render_training_scenes`; only the scenes that
``debug=overfit``'s batches draw, :func:`overfit_scenes`). The generator itself is
:mod:`marsunits.data.synthetic`, imported when a scene is asked for; this module does not import the data
module.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from marsunits.data.datasets import SceneDataset
from marsunits.errors import TerminatedError, counted

__all__ = [
    "POOL_MIN_SCENES",
    "TEST_SEED_OFFSET",
    "VAL_SEED_OFFSET",
    "overfit_scenes",
    "render_processes",
    "render_training_scenes",
    "scene_config",
    "synthetic_datasets",
]

# The data module's logger: the lines of its set-up keep the name a log is filtered by.
log = logging.getLogger("marsunits.data.datamodule")

#: ``render_processes=None`` uses a process pool only from this many training scenes on: starting the
#: workers costs a few seconds, rendering a 160x128 scene about 40 ms on one core of this 2-core CPU.
POOL_MIN_SCENES = 256

VAL_SEED_OFFSET = 1_000_003
TEST_SEED_OFFSET = 2_000_003


def scene_config(scene: Mapping[str, Any]) -> Any:
    """The ``SceneConfig`` of ``scene`` (YAML gives lists; its range fields are (min, max) tuples)."""
    from marsunits.data.synthetic import SceneConfig

    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in scene.items()}
    return SceneConfig(**fields)


def synthetic_datasets(
    scene: Mapping[str, Any],
    seed: int,
    lengths: tuple[int, int, int],
    in_channels: int,
    transform: Any,
    cache: bool,
    fixed_seed: int | None,
) -> tuple[SceneDataset, SceneDataset, SceneDataset]:
    """``(training, validation, test)`` scene sets of ``lengths`` scenes each, from ``seed`` and its offsets;
    only the training scenes are augmented (``transform``; ``fixed_seed``: the same draws every epoch).
    ``cache``: each set keeps its scenes in memory after their first use."""
    from marsunits.data.synthetic import SyntheticScenes

    config = scene_config(scene)
    train_length, val_length, test_length = lengths
    train_set = SceneDataset(
        SyntheticScenes(train_length, seed, config),
        in_channels,
        transform,
        cache=cache,
        fixed_seed=fixed_seed,
    )
    val_set = SceneDataset(
        SyntheticScenes(val_length, seed + VAL_SEED_OFFSET, config), in_channels, cache=cache
    )
    test_set = SceneDataset(
        SyntheticScenes(test_length, seed + TEST_SEED_OFFSET, config), in_channels, cache=cache
    )
    return train_set, val_set, test_set


def render_processes(setting: int | None, n_scenes: int, trainer: Any) -> int:
    """Processes for pre-rendering ``n_scenes`` training scenes: ``setting`` (``data.render_processes``)
    where given, else none below :data:`POOL_MIN_SCENES` scenes and one per CPU core of this process
    divided among the DDP ranks of the machine (``trainer``'s, where no launcher says) from there."""
    if setting is not None:
        return setting
    if n_scenes < POOL_MIN_SCENES:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # torchrun sets LOCAL_WORLD_SIZE; Lightning's own launcher (trainer=ddp trainer.devices=4 without
    # torchrun) does not, and each of its ranks started a process per core: 4 ranks, 4 x the cores.
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0)
    if not local and trainer is not None and int(getattr(trainer, "world_size", 1) or 1) > 1:
        local = int(getattr(trainer, "num_devices", 1) or 1)
    return max(1, cores // max(1, local))


def overfit_scenes(overfit_batches: float, n_scenes: int, batch_size: int, ranks: int) -> int:
    """How many of the first training scenes Lightning's ``overfit_batches`` draw (``n_scenes`` when it is
    0: every scene). Lightning overfits on the loader's first batches, in order (the data module makes that
    loader without shuffling; under DDP a ``DistributedSampler`` without shuffle, rank ``r`` taking scenes
    ``r, r + ranks, ...``): ``overfit_batches`` of them where it is an int, that fraction of each rank's
    batches where it is a float. ``debug=overfit`` (2 batches of 16) draws 32 of the default 1,792 scenes,
    and rendered all of them first (89 s on the 2-core development CPU)."""
    if not overfit_batches or overfit_batches <= 0 or n_scenes <= 0:
        return n_scenes
    ranks = max(1, ranks)
    share = -(-n_scenes // ranks)
    # The training loader drops the last partial batch, but not a rank's only one (train_dataloader).
    batches = max(1, share // batch_size)
    if isinstance(overfit_batches, int):
        drawn = min(batches, overfit_batches)
    else:
        drawn = max(1, int(batches * overfit_batches))
    return min(n_scenes, drawn * batch_size * ranks)


def render_training_scenes(
    train_set: SceneDataset, processes: int, stopped: Callable[[int], None], first: int | None = None
) -> None:
    """Render every training scene of ``train_set`` not cached yet (of its ``first`` scenes only, where
    given), in ``processes`` processes (more than one; else nothing is done here and the scenes are
    rendered as drawn), saying so before and after in the log. A Ctrl-C or SIGTERM during the render is
    passed on after ``stopped`` is told how many scenes were being rendered (the stop's line says so, and
    how the run goes on)."""
    if processes > 1:
        start = time.perf_counter()
        todo = train_set.uncached(first)
        if todo:
            # Said before it: the render takes tens of seconds to minutes (the 1,792 default scenes:
            # 45 s on 2 idle cores, 163 s on busy ones) after Lightning's "Loading `train_dataloader`",
            # and the log was silent all that time.
            log.info(
                "rendering %s in %d processes before the first epoch",
                counted(todo, "training scene"),
                processes,
            )
        try:
            rendered = train_set.fill_cache(processes, first)
        except (KeyboardInterrupt, TerminatedError):
            stopped(todo)
            raise
        if rendered:
            log.info(
                "rendered %s in %d processes in %.1f s",
                counted(rendered, "training scene"),
                processes,
                time.perf_counter() - start,
            )
