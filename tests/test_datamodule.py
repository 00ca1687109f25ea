"""MarsDataModule through the real Hydra configs (shrunk, pointed at fake datasets in tmp_path)."""

from __future__ import annotations

import inspect
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from marsunits.data.class_map import ClassMap
from marsunits.data.datamodule import MarsDataModule
from marsunits.data.fake import write_fake_ai4mars, write_fake_folder, write_fake_marsscapes
from marsunits.data.io import read_image
from marsunits.data.mask_io import read_mask
from marsunits.data.split_guards import hold_out_validated_sols
from marsunits.errors import DataError

try:
    from .conftest import CONFIG_DIR, SHARED_DATA, compose_config
except ImportError:  # tests/ collected without an __init__.py
    from conftest import CONFIG_DIR, SHARED_DATA, compose_config  # type: ignore[no-redef]

DATA_CONFIGS = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml"))
SHRINK_REAL = ["data.crop_size=32", "data.samples_per_epoch=8", "data.batch_size=4", "data.val_batch_size=4"]
SHRINK_SYNTHETIC = [
    "data.crop_size=32",
    "data.batch_size=2",
    "data.train_length=4",
    "data.val_length=2",
    "data.test_length=2",
    "data.scene.width=64",
    "data.scene.height=64",
]


def _fake_root(sources: list[str], tmp_path: Path) -> tuple[Path, list[str]]:
    """A fake dataset root in tmp_path for the config's sources, and the overrides that point there.

    Several sources: each is written to ``data/<source>`` and ``data.source_dirs.<source>`` set to it (a
    config may point a source outside ``root``, e.g. the pseudo-label folder of marsscapes_pseudo.yaml).
    """
    writers = {
        "marsscapes": write_fake_marsscapes,
        "ai4mars": write_fake_ai4mars,
        "folder": write_fake_folder,
    }
    if len(sources) == 1:
        return writers[sources[0]](tmp_path / sources[0]), []
    for source in sources:
        if source == "folder":  # marsscapes_pseudo: pseudo-labels named after their panoramas' sols
            write_fake_folder(tmp_path / "data" / source, stems=PSEUDO_STEMS)
        else:
            writers[source](tmp_path / "data" / source)
    return tmp_path / "data", [f"data.source_dirs.{source}={source}" for source in sources]


#: Pseudo-labelled panoramas of the fake combined configs, and one of a sol far from all the others.
PSEUDO_STEMS = ("124_1", "152_1", "345_2", "403_1", "1030_1")  # one beside each fake MarsScapes block


def _compose(name: str, tmp_path: Path, extra: list[str] | None = None):
    raw = OmegaConf.load(CONFIG_DIR / "data" / f"{name}.yaml")
    overrides = [f"data={name}", "logger=none"]
    if list(raw.sources) == ["synthetic"]:
        overrides += SHRINK_SYNTHETIC
    else:
        root, dirs = _fake_root(list(raw.sources), tmp_path)
        overrides += [*SHRINK_REAL, f"data.root={root}", *dirs]
    return compose_config("train", tmp_path / "run", [*overrides, *(extra or [])])


def _loaders(x):
    return x if isinstance(x, list) else [x]


def _check_batch(batch: dict, in_channels: int, size: int | tuple[int, int]) -> None:
    h, w = (size, size) if isinstance(size, int) else size
    n = batch["image"].shape[0]
    assert batch["image"].shape == (n, in_channels, h, w) and batch["image"].dtype == torch.float32
    assert float(batch["image"].min()) >= 0.0 and float(batch["image"].max()) <= 1.0
    assert batch["mask"].shape == (n, h, w) and batch["mask"].dtype == torch.int64
    assert set(batch["mask"].unique().tolist()) <= {0, 1, 2, 255}
    assert (
        isinstance(batch["path"], list)
        and len(batch["path"]) == n
        and all(isinstance(p, str) for p in batch["path"])
    )


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_every_data_config_instantiates_and_batches(name: str, tmp_path: Path) -> None:
    cfg = _compose(name, tmp_path)
    data = cfg.data
    # keys other configs interpolate
    assert (
        data.name == name and data.in_channels in (1, 3) and data.crop_size % 32 == 0 and "class_map" in data
    )
    assert cfg.model.in_channels == data.in_channels and cfg.model.tile_size == data.crop_size
    dm = instantiate(data)
    assert isinstance(dm, MarsDataModule)
    dm.setup("fit")
    _check_batch(next(iter(dm.train_dataloader())), data.in_channels, 32)
    val = _loaders(dm.val_dataloader())
    assert len(val) == len(dm.val_names)
    if name == "synthetic":
        val_size = (data.scene.height, data.scene.width)
    else:  # tiles of crop_size inside windows with val_context_px of context on each side
        val_size = 32 + 2 * data.get("val_context_px", 0)
    for loader in val:
        _check_batch(next(iter(loader)), data.in_channels, val_size)
    assert len(_loaders(dm.test_dataloader())) == len(val)


def test_real_data_split_by_sol_and_test_is_validation(tmp_path: Path) -> None:
    dm = instantiate(_compose("marsscapes", tmp_path, ["data.sol_block=10"]).data)
    dm.setup("fit")
    train, val = dm.splits["marsscapes"]
    assert train and val
    assert not {r.group // 10 for r in train} & {r.group // 10 for r in val}  # type: ignore[operator]
    assert dm.test_dataloader().dataset is dm.val_dataloader().dataset
    info = dm.describe()
    assert info["split"]["marsscapes"] == {"train": len(train), "val": len(val)}
    assert info["class_map"][6] == 2


def test_the_run_seed_changes_the_training_crops_with_loader_workers(tmp_path: Path) -> None:
    """With num_workers > 0 every crop and augmentation is drawn in the workers, seeded from the loader's
    generator, which was seeded from data.seed alone: runs with another `seed` trained on the same crops."""
    dm = instantiate(_compose("marsscapes", tmp_path, ["data.num_workers=1"]).data)
    dm.setup("fit")

    def first_batch(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)  # as seed_everything(seed) does
        return next(iter(dm.train_dataloader()))["image"]

    assert torch.equal(first_batch(1), first_batch(1))
    assert not torch.equal(first_batch(1), first_batch(2))


def test_training_leaves_out_sols_beside_the_validation_sols(tmp_path: Path) -> None:
    """Fixed sol blocks split neighbouring sols (9 | 10): with sol_margin=2 no training panorama is within 2
    sols of a validation one, in one source and across sources (one rover, one clock)."""
    sols = (9, 10, 19, 20, 29, 30, 39, 40, 49, 50, 59, 60)  # each block edge has a sol on both sides
    root = write_fake_marsscapes(tmp_path / "marsscapes", sols=sols, height=32, width=64)
    overrides = [f"data.root={root}", *SHRINK_REAL, "data.val_fraction=0.3"]

    def gaps(margin: int) -> list[int]:
        cfg = compose_config("train", tmp_path / f"m{margin}", ["data=marsscapes", "logger=none", *overrides])
        dm = instantiate(cfg.data, sol_margin=margin)
        dm.setup("fit")
        train, val = dm.splits["marsscapes"]
        val_sols = [r.group for r in val]
        assert val_sols and train
        return [min(abs(r.group - v) for v in val_sols) for r in train]  # type: ignore[operator]

    assert min(gaps(0)) == 1  # the leak: a training panorama one sol from a validation one
    assert min(gaps(2)) > 2
    assert OmegaConf.load(CONFIG_DIR / "data" / "marsscapes.yaml").sol_margin == 2  # on by default
    with pytest.raises(
        InstantiationException, match=r"sol_margin must be a whole number of sols >= 0, got -1"
    ):
        instantiate(
            compose_config("train", tmp_path / "bad", ["data=marsscapes", *overrides]).data, sol_margin=-1
        )
    # Across sources: the pseudo-labelled panoramas beside a MarsScapes validation block do not train.
    dm = instantiate(_compose("marsscapes_pseudo", tmp_path / "pseudo").data)
    dm.setup("fit")
    val_sols = [r.group for r in dm.splits["marsscapes"][1]]
    trained = [r.group for source in dm.sources for r in dm.splits[source][0]]
    assert val_sols and trained and all(min(abs(t - v) for v in val_sols) > 2 for t in trained)


def test_combined_sources_have_one_named_val_loader_each(tmp_path: Path) -> None:
    dm = instantiate(_compose("marsscapes_ai4mars", tmp_path).data)
    dm.setup("fit")
    assert dm.val_names == ["marsscapes", "ai4mars"]
    loaders = dm.val_dataloader()
    assert isinstance(loaders, list) and len(loaders) == 2
    first = [next(iter(loader))["path"][0] for loader in loaders]
    assert "/marsscapes/" in first[0] and "/ai4mars/" in first[1]
    for loader in loaders:
        # Colour and grey both converted to in_channels=1; 32 px tiles with 64 px of context each side, as
        # experiment=marsscapes scores them.
        _check_batch(next(iter(loader)), 1, 32 + 2 * 64)
    # training mixes both sources, samples_per_epoch split evenly
    assert [len(d) for d in dm.train_set.datasets] == [4, 4]  # type: ignore[union-attr]
    sources = {Path(p).parent.parent.name for b in dm.train_dataloader() for p in b["path"]}
    assert sources == {"marsscapes", "ai4mars"}
    # A source left out of class_map read its native ids as project ids (AI4Mars sand, 2, as other).
    with pytest.raises(
        InstantiationException, match=r"class_map has no entry for \['ai4mars'\].*ai4mars: null"
    ):
        instantiate(_compose("marsscapes_ai4mars", tmp_path / "lacks", ["~data.class_map.ai4mars"]).data)
    merged = instantiate(
        _compose("marsscapes_ai4mars", tmp_path / "merged", ["data.separate_val=false"]).data
    )
    merged.setup("fit")
    assert merged.val_names == ["marsscapes_ai4mars"]
    assert len(merged.val_dataloader().dataset) == sum(len(loader.dataset) for loader in loaders)


def _blocks(records, size: int = 10) -> set[int]:
    return {r.group // size for r in records}


def test_a_sol_validated_in_one_source_trains_in_none(tmp_path: Path) -> None:
    # AI4Mars frames every 7 sols from 0 to 413: many fall in the fake MarsScapes panoramas' sol blocks.
    write_fake_ai4mars(tmp_path / "data" / "ai4mars", n_images=60, sols_per_image=7)
    write_fake_marsscapes(tmp_path / "data" / "marsscapes")
    base = [
        *SHRINK_REAL,
        "data=marsscapes_ai4mars",
        "logger=none",
        f"data.root={tmp_path / 'data'}",
        "data.source_dirs.marsscapes=marsscapes",
        "data.source_dirs.ai4mars=ai4mars",
    ]
    splits = {}
    for holdout in ("true", "false"):
        cfg = compose_config("train", tmp_path / holdout, [*base, f"data.shared_sol_holdout={holdout}"])
        dm = instantiate(cfg.data)
        dm.setup("fit")
        splits[holdout] = dm.splits
    validated = set().union(*(_blocks(val) for _, val in splits["true"].values()))
    for source, (train, val) in splits["true"].items():
        assert train and val, source
        assert not _blocks(train) & validated, source
        assert val == splits["false"][source][1]  # the validation sides do not change
    # Without the rule, AI4Mars trains on sols MarsScapes validates on (what the rule removes).
    leaked = _blocks(splits["false"]["ai4mars"][0]) & _blocks(splits["false"]["marsscapes"][1])
    assert leaked
    removed = len(splits["false"]["ai4mars"][0]) - len(splits["true"]["ai4mars"][0])
    assert removed == sum(r.group // 10 in validated for r in splits["false"]["ai4mars"][0]) > 0


def test_exclude_sols_leaves_those_sols_out_of_both_sides(tmp_path: Path) -> None:
    dm = instantiate(_compose("ai4mars", tmp_path, ["data.exclude_sols=[[14,28],[70,70]]"]).data)
    dm.setup("fit")
    train, val = dm.splits["ai4mars"]
    sols = sorted(r.group for r in [*train, *val])
    assert sols == [s for s in range(0, 78, 7) if not (14 <= s <= 28 or s == 70)]
    with pytest.raises(
        (ValueError, InstantiationException),
        match=r"ai4mars\.yaml: each entry of data\.exclude_sols must be \[first_sol, last_sol\]",
    ):
        instantiate(_compose("ai4mars", tmp_path / "bad", ["data.exclude_sols=[[28,14]]"]).data)
    with pytest.raises(
        (ValueError, InstantiationException),
        match=r"data\.exclude_sols must be a list of .*got 120; e\.g\. data\.exclude_sols=\[\[100,550\]\]",
    ):
        instantiate(_compose("ai4mars", tmp_path / "bad2", ["data.exclude_sols=120"]).data)
    everything = instantiate(_compose("ai4mars", tmp_path / "all", ["data.exclude_sols=[[0,100]]"]).data)
    with pytest.raises(ValueError, match=r"leaves none of the 12 images of 'ai4mars'; narrow the ranges"):
        everything.setup("fit")
    # Of one image it read "leaves none of the 1 images".
    single = write_fake_ai4mars(tmp_path / "single", n_images=1)
    only = _compose("ai4mars", tmp_path / "only", [f"data.root={single}", "data.exclude_sols=[[0,100]]"])
    with pytest.raises(ValueError, match=r"leaves out the only image of 'ai4mars'; narrow the ranges"):
        instantiate(only.data).setup("fit")


def test_reading_the_images_without_a_cache_says_how_many(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``unreadable_images`` logs how many images it reads; of one it read "reading the other 1 images"."""
    dm = instantiate(_compose("folder", tmp_path, ["data.cache=false"]).data)
    dm.setup("fit")
    train, val = dm.splits["folder"]
    with caplog.at_level("INFO", logger="marsunits.data.datamodule"):
        assert dm.unreadable_images() is None
        dm.splits["folder"] = (train[:1], [])
        assert dm.unreadable_images() is None
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reading the")]
    assert said == [
        f"reading the other {len(train) + len(val)} images to list every unreadable one (data.cache=false)",
        "reading the only image to see whether it is unreadable (data.cache=false)",
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.in_channels=2", r"configs/data/marsscapes\.yaml: in_channels must be 1"),
        ("data.crop_size=0", r"marsscapes\.yaml: crop_size must be a whole number of pixels >= 1, got 0"),
        ("data.sources=[mars]", r"unknown sources"),
        # Text, not a list: read as its letters, refused as "unknown sources ['m', 'a', 'r', 's', ...]".
        (
            "data.sources=marsscapes",
            r"marsscapes\.yaml: sources must be .*got 'marsscapes'; e\.g\. data\.sources=\[marsscapes\]",
        ),
        ("data.sources=null", r"marsscapes\.yaml: sources must be a list .*got None"),
        ("data.focus_class=7", r"marsscapes\.yaml: focus_class=7 is not a project class id"),
        # Over-sampling without a class was silently ignored: the run trained on uniform crops.
        ("data.focus_fraction=0.5", r"focus_fraction=0\.5 places crops on focus_class, which is null"),
        ("data.focus_fraction=1.5", r"focus_fraction is the share .* in \[0, 1\], got 1\.5"),
        ("data.class_mix_prob=1.5", r"marsscapes\.yaml: class_mix_prob must be a probability in \[0, 1\]"),
        # Text failed in float() naming no key ("could not convert string to float: 'often'").
        ("data.class_mix_prob=often", r"marsscapes\.yaml: class_mix_prob must be .* got 'often'"),
        # These two were accepted: 0 crops became 1 per epoch, and with 1.5 no crop could ever qualify.
        ("data.samples_per_epoch=0", r"samples_per_epoch must be at least one crop per source \(1\), got 0"),
        ("data.min_labelled_fraction=1.5", r"min_labelled_fraction .* in \[0, 1\], got 1\.5"),
    ],
)
def test_bad_config_values_explain_themselves(override: str, message: str, tmp_path: Path) -> None:
    # Hydra wraps constructor errors in InstantiationException, keeping our message.
    with pytest.raises((ValueError, InstantiationException), match=message):
        instantiate(_compose("marsscapes", tmp_path, [override]).data)


def test_the_source_names_train_py_checks_before_hydra_are_the_data_module_s() -> None:
    """value_checks.SOURCES (read before Hydra, without torch) names the sources the data module reads."""
    from marsunits.data.datamodule import REAL_SOURCES, SOURCE_ROOTS
    from marsunits.data.value_checks import SOURCES

    assert ("synthetic", *REAL_SOURCES) == SOURCES and set(SOURCE_ROOTS) == set(REAL_SOURCES)


def test_focus_class_from_the_config_puts_that_class_in_every_crop(tmp_path: Path) -> None:
    dm = instantiate(_compose("marsscapes", tmp_path, ["data.focus_class=1", "data.focus_fraction=1.0"]).data)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert batches and all((mask == 1).any() for b in batches for mask in b["mask"])


def test_missing_root_names_path_and_key(tmp_path: Path) -> None:
    dm = instantiate(_compose("marsscapes", tmp_path, [f"data.root={tmp_path / 'absent'}"]).data)
    with pytest.raises(FileNotFoundError, match=r"absent does not exist.*data\.root="):
        dm.setup("fit")
    # Several sources: the folder is data.root/<source_dirs.source>, so both keys are named.
    write_fake_marsscapes(tmp_path / "data" / "marsscapes")
    both = ["data=marsscapes_ai4mars", f"data.root={tmp_path / 'data'}", "data.source_dirs.ai4mars=nowhere"]
    dm = instantiate(compose_config("train", tmp_path / "two", [*SHRINK_REAL, "logger=none", *both]).data)
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist.*data\.source_dirs\.ai4mars"):
        dm.setup("fit")


def test_a_missing_pseudo_label_folder_names_its_own_key_and_how_it_is_made(tmp_path: Path) -> None:
    """``experiment=marsscapes_selftrain`` before the pseudo-labels are written: the folder is an absolute
    ``data.source_dirs.folder`` (``data.root`` is not used for it). The error told the user to set
    ``data.root=/path/to/marsscapes_pseudo`` or ``MARSUNITS_DATA`` (neither moves it) and printed the path as
    ``data.root//abs/path``; it now names the key that does, and the command that writes the folder."""
    write_fake_marsscapes(tmp_path / "data" / "marsscapes")
    absent = tmp_path / "pseudo" / "marsscapes_unlabeled"
    over = ["data=marsscapes_pseudo", f"data.root={tmp_path / 'data'}", f"data.source_dirs.folder={absent}"]
    dm = instantiate(compose_config("train", tmp_path / "run", [*SHRINK_REAL, "logger=none", *over]).data)
    with pytest.raises(FileNotFoundError) as info:
        dm.setup("fit")
    said = str(info.value)
    assert str(absent) in said and "data.source_dirs.folder=" in said
    # The command as given runs: its required --predictions and --images (a bare --out was refused), and the
    # folder the config reads as --out.
    command = said.split("`")[1]
    assert command.startswith("python -m marsunits.inference.pseudo_labels --predictions <"), said
    assert "--images <" in command and command.endswith(f"--out {absent}"), said
    assert "MARSUNITS_DATA" not in said and "data.root=/path/to" not in said and "//" not in said


def test_a_missing_source_folder_under_data_root_names_the_folder_that_holds_it(tmp_path: Path) -> None:
    """A source of a several-source config read from ``data.root/<data.source_dirs.x>``: the error said
    ``data.root=/path/to/marsscapes_pseudo`` (the config's name), which, given, reads
    ``/path/to/marsscapes_pseudo/marsscapes``. It now names the folder that holds ``marsscapes/``, and the
    config's name is no folder in the advice."""
    write_fake_marsscapes(tmp_path / "data" / "marsscapes")
    pseudo = write_fake_folder(tmp_path / "pseudo", stems=PSEUDO_STEMS)
    folder = f"data.source_dirs.folder={pseudo}"
    over = ["data=marsscapes_pseudo", f"data.root={tmp_path / 'nowhere'}", folder]
    cfg = compose_config("train", tmp_path / "run", [*SHRINK_REAL, "logger=none", *over])
    dm = instantiate(cfg.data)
    with pytest.raises(FileNotFoundError) as info:
        dm.setup("fit")
    said = str(info.value)
    assert str(tmp_path / "nowhere" / "marsscapes") in said, said
    assert "/path/to/marsscapes_pseudo" not in said, said
    assert "holds marsscapes/ with data.root=<folder>" in said, said
    assert "data.source_dirs.marsscapes=" in said, said
    # As advised: data.root= the folder that holds marsscapes/.
    over[1] = f"data.root={tmp_path / 'data'}"
    cfg = compose_config("train", tmp_path / "run", [*SHRINK_REAL, "logger=none", *over])
    instantiate(cfg.data).setup("fit")


def test_workers_draw_different_crops(tmp_path: Path) -> None:
    dm = instantiate(_compose("folder", tmp_path, ["data.num_workers=2", "data.batch_size=1"]).data)
    torch.manual_seed(0)
    images = [b["image"] for b in dm.train_dataloader()]
    assert len(images) == 8
    # Workers must not replay the same random stream (the classic duplicated-RNG bug).
    assert len({tuple(x.flatten()[:64].tolist()) for x in images}) == len(images)


def test_synthetic_eval_sets_are_fixed_and_not_training_seeds(tmp_path: Path) -> None:
    first = instantiate(_compose("synthetic", tmp_path).data)
    second = instantiate(_compose("synthetic", tmp_path).data)
    first.setup("fit")
    second.setup("fit")
    a, b = next(iter(first.val_dataloader())), next(iter(second.val_dataloader()))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    seeds = {first.train_set.base.seed, first.val_sets[0].base.seed, first.test_sets[0].base.seed}
    assert len(seeds) == 3


class _PicklingPool:
    """``fill_cache``'s process pool without its processes: each task's arguments and its result go through
    pickle, as they go to and from a worker process; what a real pool adds (forkserver workers importing
    the package, each on one thread) is :mod:`test_synthetic`'s
    ``test_fill_cache_in_worker_processes_gives_the_lazily_rendered_scenes`` and, with the data module's own
    scenes, the slow ``test_synthetic_training_scenes_rendered_by_a_real_pool_equal_lazy_ones`` below. Two
    forkserver workers importing torch cost this test 7-10 s of its 10 (more under load)."""

    started: list[int] = []

    def __init__(self, processes: int, mp_context: object = None, initializer: object = None) -> None:
        self.started.append(processes)

    def __enter__(self) -> _PicklingPool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Any, *iterables: Any) -> Iterator[Any]:
        fn = pickle.loads(pickle.dumps(fn))
        for args in zip(*iterables, strict=True):
            yield pickle.loads(pickle.dumps(fn(*pickle.loads(pickle.dumps(args)))))


def test_synthetic_training_scenes_prerendered_in_processes_equal_lazy_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    import marsunits.data.datasets as datasets

    monkeypatch.setattr(datasets, "ProcessPoolExecutor", _PicklingPool)
    monkeypatch.setattr(_PicklingPool, "started", [])
    pooled = instantiate(_compose("synthetic", tmp_path, ["data.render_processes=2"]).data)
    pooled.train_dataloader()
    assert _PicklingPool.started == [2]  # one pool of two processes
    assert sorted(pooled.train_set._items) == [0, 1, 2, 3]  # rendered before the first epoch
    lazy = instantiate(_compose("synthetic", tmp_path, ["data.render_processes=0"]).data)
    lazy.train_dataloader()
    assert lazy.train_set._items == {}  # rendered inside the first epoch, as they are used
    # debug=fdr draws one batch: it renders none of the others first.
    idle = instantiate(_compose("synthetic", tmp_path, ["data.render_processes=2"]).data)
    idle.trainer = SimpleNamespace(fast_dev_run=1)
    idle.train_dataloader()
    assert idle.train_set._items == {} and _PicklingPool.started == [2]
    _assert_same_base_items(pooled, lazy, 4)
    # Automatic: a pool for large training sets only, one process per core divided among DDP ranks.
    auto = instantiate(_compose("synthetic", tmp_path).data)
    assert auto._render_processes(4) == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert auto._render_processes(1536) == 4
    # Lightning's own launcher (trainer.devices=4, no torchrun) sets no LOCAL_WORLD_SIZE: its trainer counts
    # the ranks (each of the 4 started 8 processes on the 8 cores).
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    auto.trainer = SimpleNamespace(world_size=4, num_devices=4)
    assert auto._render_processes(1536) == 2
    with pytest.raises(InstantiationException, match="render_processes must be null"):
        instantiate(_compose("synthetic", tmp_path, ["data.render_processes=-1"]).data)
    # 1.5 processes was read as 1; text failed in int() naming no key.
    for value in ("1.5", "many"):
        with pytest.raises(InstantiationException, match=r"render_processes must be .* got (1\.5|'many')"):
            instantiate(_compose("synthetic", tmp_path, [f"data.render_processes={value}"]).data)


@pytest.mark.parametrize(
    ("overfit", "scenes", "batch", "ranks", "drawn"),
    [
        (0, 1792, 16, 1, 1792),  # not overfitting: every scene
        (0.0, 1792, 16, 1, 1792),
        (2, 1792, 16, 1, 32),  # debug=overfit: the first 2 batches of 16
        (2, 1792, 16, 2, 64),  # DDP: rank r takes scenes r, r + 2, ... of the first 64
        (0.25, 1792, 16, 1, 448),  # a fraction of the 112 batches: 28
        (5, 40, 16, 1, 32),  # 5 asked, 2 whole batches (the last partial one is dropped)
        (2, 8, 16, 1, 8),  # one partial batch, kept as the only one
    ],
)
def test_overfit_batches_draw_the_first_scenes_they_need(
    overfit: float, scenes: int, batch: int, ranks: int, drawn: int
) -> None:
    from marsunits.data.synthetic_source import overfit_scenes

    assert overfit_scenes(overfit, scenes, batch, ranks) == drawn


def _assert_same_base_items(pooled: MarsDataModule, lazy: MarsDataModule, n: int) -> None:
    for i in range(n):
        a, b = pooled.train_set._base_item(i), lazy.train_set._base_item(i)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


@pytest.mark.slow
def test_synthetic_training_scenes_rendered_by_a_real_pool_equal_lazy_ones(tmp_path: Path) -> None:
    """The data module's own training scenes rendered by two forkserver workers (the default test above
    passes them through pickle in this process) are the lazily rendered ones."""
    pooled = instantiate(_compose("synthetic", tmp_path, ["data.render_processes=2"]).data)
    pooled.train_dataloader()
    assert sorted(pooled.train_set._items) == [0, 1, 2, 3]
    lazy = instantiate(_compose("synthetic", tmp_path, ["data.render_processes=0"]).data)
    lazy.train_dataloader()
    _assert_same_base_items(pooled, lazy, 4)


def _compose_real(name: str, root: Path, run_dir: Path):
    """The data config of ``experiment=name`` as shipped, on the real data at ``root``."""
    return compose_config("train", run_dir, [f"experiment={name}", "logger=none", f"data.root={root}"]).data


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real data folder {SHARED_DATA} is absent (CI has it)")
@pytest.mark.parametrize(("folder", "config"), [("marsscapes", "marsscapes"), ("ai4mars_msl256", "ai4mars")])
def test_real_files_read_and_map(folder: str, config: str, tmp_path: Path) -> None:
    root = SHARED_DATA / folder
    if not (root / "images").is_dir():
        pytest.skip(f"{root} has no images/ folder")
    class_map = ClassMap(
        OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "data" / f"{config}.yaml").class_map), config
    )
    if config == "ai4mars":  # no rover position (site/drive) on both sides of the split
        train, val = instantiate(_compose_real("ai4mars", root, tmp_path))._split("ai4mars")
        assert train and val and all(r.place is not None for r in train + val)
        assert not {r.place for r in train} & {r.place for r in val}
    for image_path in sorted((root / "images").glob("*.jpg"))[:2]:
        image = read_image(image_path)
        mask = class_map(read_mask(root / "labels" / f"{image_path.stem}.png"), image_path)
        assert image.shape[:2] == mask.shape and image.shape[2] == (3 if config == "marsscapes" else 1)
        assert set(np.unique(mask).tolist()) <= {0, 1, 2, 255}


@pytest.mark.parametrize("value", [-16, True])
def test_val_context_must_be_a_whole_number_of_at_least_zero(value, tmp_path: Path) -> None:
    cfg = _compose("marsscapes", tmp_path)
    cfg.data.val_context_px = value
    with pytest.raises(
        InstantiationException, match=r"marsscapes\.yaml: val_context_px must be a whole number >= 0"
    ):
        instantiate(cfg.data)


def test_crops_and_windows_must_be_multiples_of_the_networks_divisor_not_of_32(tmp_path: Path) -> None:
    """The data module refused every crop size that was not a multiple of 32 (and a val_context_px not one of
    16), whatever the network: the default model (encoder_depth 4) takes multiples of 16, so 112 px crops
    were refused for it. The sizes are now checked against the network's own divisor
    (``SegmentationTask.size_divisor``), by train.py once the model is built and by ``setup`` under a
    trainer whose model has one."""
    dm = instantiate(_compose("marsscapes", tmp_path, ["data.crop_size=112", "data.val_context_px=8"]).data)
    dm.check_size_divisor(16)  # 112 and windows of 128: what an encoder_depth 4 network takes
    with pytest.raises(
        ValueError,
        match=r"data\.crop_size=112: expected a multiple of 32 \(.*configs/data/marsscapes\.yaml\), "
        r"e\.g\. data\.crop_size=96 or data\.crop_size=128",
    ):
        dm.check_size_divisor(32)
    dm.crop_size = 96
    with pytest.raises(
        ValueError,
        match=r"data\.val_context_px=8: expected a multiple of 16 .* e\.g\. "
        r"data\.val_context_px=16$",
    ):
        dm.check_size_divisor(32)
    scenes = instantiate(_compose("synthetic", tmp_path / "s", ["data.scene.width=80"]).data)
    scenes.check_size_divisor(16)
    with pytest.raises(ValueError, match=r"data\.scene\.width=80: expected a multiple of 32"):
        scenes.check_size_divisor(32)

    class Network(pl.LightningModule):
        size_divisor = 32

    dm.trainer = pl.Trainer(logger=False, enable_checkpointing=False)
    dm.trainer.strategy.connect(Network())
    with pytest.raises(ValueError, match=r"data\.val_context_px=8: expected a multiple of 16"):
        dm.setup("fit")
    assert dm.train_set is None  # refused before anything was read


@pytest.mark.parametrize(
    ("data", "bad"),
    [
        ("synthetic", "data.crop_size=36"),
        ("synthetic", "data.scene.width=68"),
        ("synthetic", "data.scene.height=100"),
        ("marsscapes", "data.val_context_px=2"),
    ],
)
def test_the_check_before_the_run_and_the_data_modules_state_one_rule(
    data: str, bad: str, tmp_path: Path
) -> None:
    """A size is refused before the run (``run_checks.check_input_sizes``, against the configured network)
    and by the data module (``check_size_divisor``, against the built one, e.g. ``train=false``'s checkpoint):
    the same value must be refused with the same rule and the same values that fit. They were two copies of
    the rule that worded it apart (the scene: ``data.scene.width=68: expected a multiple of 8, e.g. ...`` and
    ``scene {'width': 68} must be multiples of 8 ... Set data.scene.width/height``, with no value)."""
    from marsunits.errors import ConfigError
    from marsunits.run_checks import check_input_sizes

    cfg = _compose(data, tmp_path, ["model=tiny", bad])  # 3 encoder stages: multiples of 8
    with pytest.raises(ConfigError) as early:
        check_input_sizes(cfg)
    with pytest.raises(ValueError) as built:
        instantiate(cfg.data).check_size_divisor(8)

    def rule(message: str) -> tuple[str, str]:  # what is expected, and the values that fit
        return message.split(" (", 1)[0], message.rsplit("e.g. ", 1)[-1].rstrip(".")

    assert rule(str(built.value)) == rule(str(early.value)), (str(early.value), str(built.value))
    assert str(early.value).startswith(f"{bad}: expected a multiple of ")


def _subclass_config(tmp_path: Path, extra: list[str] | None = None):
    root = write_fake_marsscapes(tmp_path / "marsscapes")
    overrides = ["experiment=marsscapes_subclasses", "logger=none", *SHRINK_REAL, f"data.root={root}"]
    return compose_config("train", tmp_path / "run", [*overrides, *(extra or [])])


def test_subclass_map_trains_on_subclass_ids_and_validates_on_project_ids(tmp_path: Path) -> None:
    cfg = _subclass_config(tmp_path)
    assert list(cfg.model.subclasses) == list(cfg.data.subclasses)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    subclasses = list(cfg.data.subclasses)
    to_project = np.full(256, 255, np.uint8)
    to_project[: len(subclasses)] = subclasses
    project = ClassMap(dict(cfg.data.class_map), "marsscapes")
    store = dm.train_set.store
    for i, record in enumerate(store.records):
        sub = store.mask(i)
        assert set(np.unique(sub).tolist()) <= {*range(len(subclasses)), 255}
        # the sub-classes sum back to exactly the project labels
        np.testing.assert_array_equal(to_project[sub], project(read_mask(record.mask)))
    # the fake panoramas' big rock (native 4) and sky (6) are sub-classes 4 and 5, not project ids
    train_ids = {int(v) for b in dm.train_dataloader() for v in b["mask"].unique()}
    assert train_ids <= {*range(len(subclasses)), 255} and train_ids & {4, 5}
    _check_batch(next(iter(dm.val_dataloader())), 3, 32 + 2 * cfg.data.val_context_px)
    assert dm.describe()["subclasses"] == subclasses
    task = instantiate(cfg.model, encoder_weights=None)
    assert task.hparams.subclasses == subclasses and task.hparams.num_classes == 3


def _set_gravel_to_soil(data) -> None:
    data.subclass_map[2] = 0


def _drop_rover(data) -> None:
    with open_dict(data):
        del data.subclass_map[9]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("data.subclasses=null", r"subclass_map and subclasses go together"),
        (
            _set_gravel_to_soil,
            r"native id 2 maps to sub-class 0 in subclass_map \(project class 0\) but to 1 in class_map",
        ),
        ("data.subclasses=[0,0,1,1,1,2,2,3]", r"subclasses=.* must give each"),
        (_drop_rover, r"only in class_map: \[9\]"),
        ("data.focus_class=1", r"focus_class names a project class"),
        # A data module built without train.py's checks (a notebook): int()'s "invalid literal", no key.
        (
            "++data.class_map.2=gravel",
            r"class_map maps native id 2 to 'gravel' \(str\): it takes a project id",
        ),
        ("++data.subclass_map.2=null", r"subclass_map maps native id 2 to None \(NoneType\): it takes a"),
    ],
)
def test_bad_subclass_configs_explain_themselves(edit, message: str, tmp_path: Path) -> None:
    cfg = _subclass_config(tmp_path, [edit] if isinstance(edit, str) else [])
    if callable(edit):
        edit(cfg.data)
    with pytest.raises((ValueError, InstantiationException), match=message):
        instantiate(cfg.data)


#: MarsScapes' class map (configs/data/marsscapes.yaml), and AI4Mars' (configs/data/ai4mars.yaml).
MARSSCAPES_MAP = {0: 0, 3: 0, 1: 1, 2: 1, 4: 1, 6: 2, 7: 2, 8: 2, 9: 2, 5: 255, 255: 255}
AI4MARS_MAP = {0: 0, 2: 0, 1: 1, 3: 1, 255: 255}


@pytest.mark.parametrize(
    ("name", "changes", "said"),
    [
        # Refused only once the masks were read (ClassMap, in setup), in other words.
        (
            "marsscapes",
            {"class_map": {**MARSSCAPES_MAP, "a": 2}},
            "class_map has the key 'a' (str): its keys",
        ),
        (
            "marsscapes",
            {"class_map": {**MARSSCAPES_MAP, 1: 1.5}},
            "class_map maps native id 1 to 1.5 (float)",
        ),
        (
            "marsscapes_ai4mars",
            {"class_map": {"marsscapes": MARSSCAPES_MAP, "ai4mars": {**AI4MARS_MAP, 3: "rock"}}},
            "class_map.ai4mars maps native id 3 to 'rock' (str)",
        ),
        # Refused in other words than the command line's: "found keys [...], expected a subset of [...]".
        (
            "marsscapes_ai4mars",
            {"class_map": {"marsscapes": MARSSCAPES_MAP, "ai4mar": AI4MARS_MAP}},
            "but also the key ai4mar, which is no source and is read by none; name a source",
        ),
        (
            "marsscapes_ai4mars",
            {"class_map": {"marsscapes": MARSSCAPES_MAP, "ai4mars": AI4MARS_MAP, 1: 2}},
            "but also the key 1, which is no source and is read by none; map a native id in its source's map",
        ),
        (
            "marsscapes_ai4mars",
            {"class_map": {"marsscapes": MARSSCAPES_MAP, "ai4mars": AI4MARS_MAP, "folder": None}},
            "but also the key folder, which is not one of its sources and is read by none; name a source",
        ),
        ("marsscapes_ai4mars", {"class_map": {"marsscapes": MARSSCAPES_MAP}}, "class_map has no entry for"),
        # "subclass_map and subclasses go together", where the command line named the entry.
        ("marsscapes", {"subclass_map": {0: 0, 2: "a"}}, "subclass_map maps native id 2 to 'a' (str)"),
        # Ids out of range: refused only by ClassMap once the masks were read; now when built, in its words.
        (
            "marsscapes",
            {"class_map": {**MARSSCAPES_MAP, 1: 7}},
            "class_map of dataset 'marsscapes': native id 1 maps to 7, which is not a project id",
        ),
        (
            "marsscapes_ai4mars",
            {"class_map": {"marsscapes": MARSSCAPES_MAP, "ai4mars": {**AI4MARS_MAP, 300: 1}}},
            "class_map.ai4mars of dataset 'marsscapes_ai4mars': native id 300 is outside 0..255",
        ),
    ],
)
def test_a_data_module_built_in_python_refuses_a_bad_map_as_train_py_does(
    name: str, changes: dict[str, Any], said: str, tmp_path: Path
) -> None:
    """A data module built in Python (a notebook) was given no check of its maps' keys and entries that
    ``train.py`` gives before Hydra: a misspelt native id or a fraction was refused only once it read the
    masks (``ClassMap``), and a misspelt source's map in other words. Built, it is refused now, in
    ``train.py``'s words (the same functions), before any data is read."""
    from marsunits.data.value_checks import data_value_refusal

    data = OmegaConf.to_container(_compose(name, tmp_path).data, resolve=True)
    assert isinstance(data, dict)
    arguments = {str(k): v for k, v in data.items() if k not in ("_target_", "_convert_")}
    arguments.update(changes)
    command_line = data_value_refusal(arguments)
    assert command_line is not None and said in command_line[1], command_line
    with pytest.raises(ValueError) as refused:
        MarsDataModule(**arguments)
    assert str(refused.value) == command_line[1]


def test_a_sub_class_network_fitted_in_python_on_project_class_masks_is_refused_before_any_scene(
    tmp_path: Path,
) -> None:
    """``trainer.fit(task, datamodule)`` in a notebook, the task given sub-classes the data module's masks
    do not hold (or the reverse), learnt the wrong classes without a word: only ``train.py`` compared them.
    The data module's ``setup`` now refuses it in ``train.py``'s words before a scene is rendered."""
    from conftest import one_step_trainer
    from marsunits.run_checks import subclasses_mismatch

    cfg = _compose("synthetic", tmp_path, ["model=tiny", "model.subclasses=[0,0,1,2]"])
    dm = instantiate(cfg.data)
    task = instantiate(cfg.model)
    with pytest.raises(ValueError) as refused:
        one_step_trainer(limit_val_batches=0).fit(task, datamodule=dm)
    assert str(refused.value) == subclasses_mismatch([0, 0, 1, 2], None)
    assert dm.train_set is None  # nothing rendered
    dm.check_network_classes({"subclasses": None})  # the classes it holds: no refusal
    dm.check_network_classes({"lr": 1e-3})  # another module's hyper-parameters: left alone


def test_validation_without_a_labelled_pixel_stops_before_training(tmp_path: Path) -> None:
    """A split whose validation masks are all 255 trained, validated nothing, kept no best checkpoint and
    wrote a metrics.json without a score, with exit status 0."""
    from PIL import Image

    from marsunits.errors import DataError

    cfg = _compose("folder", tmp_path)
    _, val_recs = instantiate(cfg.data)._split("folder")
    assert val_recs
    for rec in val_recs:
        blank = np.full(np.asarray(Image.open(rec.mask)).shape, 255, np.uint8)
        Image.fromarray(blank).save(rec.mask)
    with pytest.raises(
        DataError,
        match=rf"'folder': its {len(val_recs)} validation masks? \(img_\d\.png.*"
        rf"{'holds' if len(val_recs) == 1 else 'hold'} no labelled",
    ):
        instantiate(cfg.data).setup("fit")


def test_every_unusable_pair_is_listed_in_one_error(tmp_path: Path) -> None:
    """A folder with several bad masks stopped at the first: one run per mistake. Every pair of training and
    validation is now checked and the one error lists each file with its problem."""
    from PIL import Image

    cfg = _compose("folder", tmp_path)
    train_recs, val_recs = instantiate(cfg.data)._split("folder")
    assert len(train_recs) >= 2 and val_recs
    Image.fromarray(np.full((40, 72), 7, np.uint8)).save(train_recs[0].mask)  # an id outside 0, 1, 2, 255
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(train_recs[1].mask)  # another size than its image
    val_recs[0].image.write_bytes(b"not an image")
    with pytest.raises(ValueError) as err:
        instantiate(cfg.data).setup("fit")
    text = str(err.value)
    total = len(train_recs) + len(val_recs)
    assert text.startswith(f"3 of {total} image/mask pairs cannot be used")
    assert f"{train_recs[0].mask}: mask values [7]" in text
    assert f"{train_recs[1].image}: image is 72x40" in text
    assert str(val_recs[0].image) in text


def test_an_image_without_its_mask_and_unusable_pairs_are_listed_in_one_error(tmp_path: Path) -> None:
    """A labelled folder with an image whose mask was forgotten and a mask of another size: the first run
    named the unpaired image alone, and only the run after it was added found the mask of another size (one
    run per mistake, which the one error for every unusable pair was made to end). The pairs found are now
    read too, and the one error names both."""
    from PIL import Image

    cfg = _compose("folder", tmp_path)
    root = Path(cfg.data.root)
    (root / "masks" / "img_0.png").unlink()  # the mask forgotten
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "img_1.png")  # another size
    Image.fromarray(np.full((40, 72), 7, np.uint8)).save(root / "masks" / "img_2.png")  # an id outside 0-2
    with pytest.raises(ValueError) as err:
        instantiate(cfg.data).setup("fit")
    text = str(err.value)
    assert text.startswith(f"Dataset 'folder': 1 image in {root / 'images'} has no mask"), text
    assert ": img_0." in text, text
    assert "2 of the 5 pairs found cannot be used either; fix each:" in text, text
    assert f"{root / 'images' / 'img_1.png'}: image is 72x40" in text, text
    assert f"{root / 'masks' / 'img_2.png'}: mask values [7]" in text, text
    # Unpaired files alone are said as they were, with nothing added.
    (root / "masks" / "img_1.png").unlink()
    (root / "masks" / "img_2.png").unlink()
    with pytest.raises(ValueError) as alone:
        instantiate(cfg.data).setup("fit")
    assert "pairs found" not in str(alone.value)
    assert str(alone.value).endswith("move the unpaired ones out of the dataset folders."), alone.value


def test_the_split_is_said_with_the_validation_images_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A geologist training on twelve frames of their own was told val/miou with nothing saying how many
    of the frames, or which, it was measured on (data.val_fraction picks them): the set-up now says how many
    images train and validate, and names the validation images."""
    cfg = _compose("folder", tmp_path)
    dm = instantiate(cfg.data)
    with caplog.at_level("INFO", logger="marsunits.data.datamodule"):
        dm.setup("fit")
    train_recs, val_recs = dm.splits["folder"]
    assert train_recs and val_recs
    said = [r.getMessage() for r in caplog.records if "validated on" in r.getMessage()]
    assert len(said) == 1, said
    names = ", ".join(r.image.name for r in val_recs)
    expected = (
        f"folder: {len(train_recs)} images trained on, {len(val_recs)} validated on (data.val_fraction=0.2)"
    )
    assert said[0] == f"{expected}: {names}", said[0]


def test_a_folder_given_with_a_tilde_is_read_as_the_same_folder_given_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``data.root=~/labels``: the images were read from the home folder, but the split's log line named the
    validation images by their whole paths, the checkpoint recorded its training images (``trained_images``)
    by whole paths, not as below the folder, and a pseudo-label folder's teacher (``pseudo_labels.json``) was
    looked for under a folder literally named ``~``, so a teacher that trained on the validation sols went
    unseen. The folder is now read as the home folder's everywhere."""
    cfg = _compose("folder", tmp_path)
    root = Path(cfg.data.root)
    monkeypatch.setenv("HOME", str(root.parent))
    whole = instantiate(cfg.data)
    whole.setup("fit")
    cfg.data.root = f"~/{root.name}"
    dm = instantiate(cfg.data)
    with caplog.at_level("INFO", logger="marsunits.data.datamodule"):
        dm.setup("fit")
    names = ", ".join(r.image.name for r in dm.splits["folder"][1])
    said = [r.getMessage() for r in caplog.records if "validated on" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith(f"(data.val_fraction=0.2): {names}"), said
    assert dm.trained_images() == whole.trained_images()
    assert all(not key.startswith("/") for key in dm.trained_images()["folder"])
    (root / "pseudo_labels.json").write_text(json.dumps({"teacher_trained_sols": {"marsscapes": [528]}}))
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert dm.trained_sols() == {"marsscapes": [528]}


def test_training_masks_of_one_class_are_told_with_the_fix(tmp_path: Path) -> None:
    """A geologist's masks saved in black and white (0 and 255 only; white marking rough ground) were read as
    smooth_volcanic and no label, and a run trained a network to call everything smooth_volcanic without a
    word. Training masks that label one class only are now told, with the class map that reads white as a
    unit where that is what they hold; two classes or more, or the map given, are not."""
    from PIL import Image

    cfg = _compose("folder", tmp_path)
    masks = Path(cfg.data.root) / "masks"
    assert _checked(cfg).one_class_training() is None  # the fake folder's masks hold 0, 1 and 2
    for path in sorted(masks.glob("*.png")):
        ids = np.array(Image.open(path))
        Image.fromarray(np.where(ids == 1, 255, 0).astype(np.uint8)).save(path)
    said = _checked(cfg).one_class_training()
    assert said is not None
    assert said.startswith(f"data=folder: all 4 training masks in {masks} hold only 0 and 255"), said
    assert "data.class_map='{0: 0, 255: 1}' reads white as rough_olivine" in said, said
    cfg.data.class_map = {0: 0, 255: 1}  # the fix it gives
    assert _checked(cfg).one_class_training() is None
    cfg.data.class_map = None
    for path in sorted(masks.glob("*.png")):
        ids = np.array(Image.open(path))
        Image.fromarray(np.where(ids == 255, 1, 255).astype(np.uint8)).save(path)
    said = _checked(cfg).one_class_training()
    assert said is not None and "label one class only, rough_olivine (1), so the network" in said, said
    assert "class_map" not in said, said
    # Masks of smooth ground alone, every pixel labelled: no 255, so no black-and-white export to be told of.
    for path in sorted(masks.glob("*.png")):
        Image.fromarray(np.zeros_like(np.array(Image.open(path)))).save(path)
    said = _checked(cfg).one_class_training()
    assert said is not None and "label one class only, smooth_volcanic (0), so the network" in said, said
    assert "0 and 255" not in said and "class_map" not in said, said


def _checked(cfg: Any) -> MarsDataModule:
    dm = instantiate(cfg.data)
    dm.check_split()
    return dm


def test_a_training_mask_without_labels_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An all-255 training mask (e.g. a mask exported before labelling) was silently never drawn."""
    from PIL import Image

    cfg = _compose("folder", tmp_path)
    train_recs, _ = instantiate(cfg.data)._split("folder")
    Image.fromarray(np.full((40, 72), 255, np.uint8)).save(train_recs[0].mask)
    with caplog.at_level("WARNING", logger="marsunits.data.datasets"):
        instantiate(cfg.data).setup("fit")
    warned = [r.getMessage() for r in caplog.records if "never trained on" in r.getMessage()]
    assert len(warned) == 1 and f"1 of {len(train_recs)} training masks holds no labelled pixel" in warned[0]
    assert "so its image is never trained on" in warned[0]
    assert train_recs[0].mask.name in warned[0]


def test_a_fold_without_n_folds_is_refused(tmp_path: Path) -> None:
    """data.fold=K alone was ignored: every run of a cross-validation loop that left out data.n_folds
    validated on the same held-out split, each recorded as another fold."""
    with pytest.raises(InstantiationException, match=r"fold=2 needs n_folds.*data\.n_folds=5"):
        instantiate(_compose("marsscapes", tmp_path / "alone", ["data.fold=2"]).data)
    folds = instantiate(_compose("marsscapes", tmp_path / "cv", ["data.n_folds=2", "data.fold=1"]).data)
    assert (folds.n_folds, folds.fold) == (2, 1)
    instantiate(_compose("marsscapes", tmp_path / "default", ["data.fold=0"]).data)  # the default, accepted


def test_pseudo_labels_of_a_validated_sol_block_never_train(tmp_path: Path) -> None:
    """The pseudo-label folder had no sols: a pseudo-labelled panorama of a sol block that MarsScapes
    validates on (the same dune, the next sol) trained the student, and exclude_sols missed it too."""
    cfg = _compose("marsscapes_pseudo", tmp_path, ["data.n_folds=4", "data.fold=0"])
    dm = instantiate(cfg.data)
    dm.setup("fit")
    validated = {r.group // 10 for r in dm.splits["marsscapes"][1]}
    trained = {r.image.stem for r in dm.splits["folder"][0]}
    assert trained == {s for s in PSEUDO_STEMS if int(s.split("_")[0]) // 10 not in validated}
    assert "1030_1" in trained and len(trained) < len(PSEUDO_STEMS)  # the test covers both cases
    excluded = instantiate(
        _compose("marsscapes_pseudo", tmp_path / "x", ["data.exclude_sols=[[1000,1100]]"]).data
    )
    excluded.setup("fit")
    assert "1030_1" not in {r.image.stem for r in excluded.splits["folder"][0]}
    # A folder name without a sol cannot be placed: refused, naming the file and the option.
    (tmp_path / "data" / "folder" / "images" / "124_1.png").rename(
        tmp_path / "data" / "folder" / "images" / "pano.png"
    )
    (tmp_path / "data" / "folder" / "masks" / "124_1.png").rename(
        tmp_path / "data" / "folder" / "masks" / "pano.png"
    )
    with pytest.raises(
        ValueError, match=r"images/pano\.\*: the name does not start with '<sol>_'.*folder_sols_from_names"
    ):
        instantiate(cfg.data).setup("fit")


def test_a_teacher_trained_on_a_validation_image_is_refused_by_content(tmp_path: Path) -> None:
    """Only the teacher's sols were checked: a teacher trained on a copy of one of the student's validation
    images, under another name or in a folder without sols, taught the student that image's labels."""
    from marsunits.file_digest import file_sha256, image_content_key

    cfg = _compose("marsscapes_pseudo", tmp_path)
    plain = instantiate(cfg.data)
    plain.setup("fit")
    validated = plain.splits["marsscapes"][1][0].image
    record = tmp_path / "data" / "folder" / "pseudo_labels.json"
    seen = [image_content_key(file_sha256(validated)), "0123456789abcdef"]
    record.write_text(json.dumps({"teacher_trained_sols": None, "teacher_trained_image_keys": seen}))
    with pytest.raises(
        DataError,
        match=rf"the teacher of the pseudo-labels in .*folder.*trained on 1 of the images .*{validated.name}",
    ):
        instantiate(cfg.data).setup("fit")
    record.write_text(json.dumps({"teacher_trained_image_keys": ["0123456789abcdef"]}))
    student = instantiate(cfg.data)
    student.setup("fit")  # a teacher of other images
    assert "0123456789abcdef" in student.trained_image_keys()  # what the teacher knew reaches the student


def test_a_teacher_trained_on_the_validation_sols_is_refused(tmp_path: Path) -> None:
    """The teacher of the pseudo-labels (its training sols in pseudo_labels.json) must not have trained on
    the sols the student validates on, nor beside them (sol_margin)."""
    cfg = _compose("marsscapes_pseudo", tmp_path)
    plain = instantiate(cfg.data)
    plain.setup("fit")
    val_sol = plain.splits["marsscapes"][1][0].group
    record = tmp_path / "data" / "folder" / "pseudo_labels.json"
    for seen in ([val_sol], [val_sol + 2]):
        record.write_text(json.dumps({"teacher_trained_sols": {"marsscapes": seen}}))
        with pytest.raises(DataError, match=rf"the teacher of the pseudo-labels in .*folder.*\[{seen[0]}\]"):
            instantiate(cfg.data).setup("fit")
    record.write_text(json.dumps({"teacher_trained_sols": {"marsscapes": [9000]}}))
    student = instantiate(cfg.data)
    student.setup("fit")  # a teacher of other sols
    assert 9000 in student.trained_sols()["marsscapes"]  # what the teacher knew reaches the student
    record.write_text(json.dumps({"teacher_trained_sols": {"marsscapes": [val_sol]}}))
    allowed = _compose("marsscapes_pseudo", tmp_path / "a", ["data.allow_seen_val_sols=true"])
    with open_dict(allowed):
        allowed.data.source_dirs = cfg.data.source_dirs
        allowed.data.root = cfg.data.root
    instantiate(allowed.data).setup("fit")


def test_a_held_out_sol_block_takes_the_whole_rover_position_with_it(tmp_path: Path) -> None:
    """shared_sol_holdout dropped the frames of held sol blocks only: an AI4Mars position spanning a held
    block and another kept its other frames in training, the scene another source validates on."""
    from marsunits.data.store import LabelledImage

    sol_block = instantiate(_compose("marsscapes_ai4mars", tmp_path).data).sol_block

    def rec(name: str, sol: int, source: str, place: str | None = None) -> LabelledImage:
        return LabelledImage(Path(f"{name}.jpg"), Path(f"{name}.png"), sol, source, place=place)

    splits = {
        "marsscapes": ([rec("m1", 30, "marsscapes")], [rec("m2", 125, "marsscapes")]),
        "ai4mars": (
            [
                rec("a1", 118, "ai4mars", "5/104"),
                rec("a2", 121, "ai4mars", "5/104"),
                rec("a3", 300, "ai4mars", "9/1"),
            ],
            [rec("a4", 400, "ai4mars", "12/0")],
        ),
    }
    hold_out_validated_sols(splits, sol_block, "configs/data/marsscapes_ai4mars.yaml")
    assert [r.image.stem for r in splits["ai4mars"][0]] == ["a3"]  # a1 shares a2's position in block 12
    assert [r.image.stem for r in splits["marsscapes"][0]] == ["m1"]


@pytest.mark.parametrize("name", ["marsscapes", "synthetic"])
def test_debug_overfit_trains_on_the_same_crops_every_epoch(name: str, tmp_path: Path) -> None:
    """``debug=overfit`` is Lightning's overfit_batches, but a real-data crop ignored its index and drew a new
    window (and augmentation) every epoch, so "expect train/loss to fall close to 0" could not hold."""

    def two_epochs(extra: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        dm = instantiate(_compose(name, tmp_path / extra[0].split("=")[0], extra).data)
        dm.setup("fit")
        first = dm.train_set[1]["image"]
        torch.rand(100)  # the epochs in between move torch's generator on
        return first, dm.train_set[1]["image"]

    fixed = two_epochs(["debug=overfit"])
    assert torch.equal(*fixed)
    drawn = two_epochs(["data.brightness=0.5"])  # jitter, so a synthetic scene differs too
    assert not torch.equal(*drawn)


@pytest.mark.parametrize(("ranks", "drops"), [(1, True), (2, False), (4, False)])
def test_a_ddp_rank_keeps_its_share_when_it_is_smaller_than_a_batch(ranks: int, drops: bool) -> None:
    """16 scenes at batch 16: one process trains on one batch. On 2 ranks each loads 8 (Lightning's
    DistributedSampler), and the last partial batch, decided on all 16, was dropped: no rank had a batch
    and the run stopped at its schedule ("the trainer estimates 0 optimiser steps")."""
    from types import SimpleNamespace

    dm = MarsDataModule(
        name="synthetic",
        sources=["synthetic"],
        in_channels=3,
        crop_size=64,
        batch_size=16,
        train_length=16,
        val_length=2,
        test_length=2,
        scene={"width": 96, "height": 64},
        render_processes=0,
    )
    dm.trainer = SimpleNamespace(world_size=ranks, fast_dev_run=False)  # type: ignore[assignment]
    assert dm.train_dataloader().drop_last is drops


def test_a_users_folder_of_sol_named_frames_is_split_by_sol_when_asked(tmp_path: Path) -> None:
    """``data=folder data.folder_sols_from_names=true``: frames named ``<sol>_<n>`` are grouped by sol block
    as the real data sets are, so no sol block is on both sides and the margin keeps neighbours out of
    training. The option was not in ``configs/data/folder.yaml``: a user had to know to give it with ``+``."""
    from marsunits.data.fake import write_fake_folder

    stems = [f"{sol}_{n}" for sol in (100, 104, 111, 118, 125, 131, 140, 149, 150, 163) for n in (1, 2)]
    root = write_fake_folder(tmp_path / "frames", stems=stems)
    options = [*SHRINK_REAL, f"data.root={root}", "data.folder_sols_from_names=true", "data.sol_block=10"]
    cfg = compose_config(
        "train", tmp_path / "run", ["data=folder", "logger=none", *options, "data.val_fraction=0.3"]
    )
    dm = instantiate(cfg.data)
    dm.setup("fit")
    trained, validated = (
        {int(r.image.stem.split("_")[0]) // 10 for r in part} for part in dm.splits["folder"][:2]
    )
    assert trained and validated and not trained & validated
    plain_options = ["data=folder", "logger=none", *SHRINK_REAL, f"data.root={root}"]
    plain = instantiate(compose_config("train", tmp_path / "plain", plain_options).data)
    assert plain.folder_sols_from_names is False  # the default: a user's folder has no sols


def test_the_hyper_parameters_are_every_argument_as_the_plain_value_the_module_keeps(tmp_path: Path) -> None:
    """Lightning's ``save_hyperparameters`` reads the arguments from ``__init__``'s locals, and checkpoints
    carry what it read (``datamodule_hyper_parameters``): every argument of the signature, as the plain lists
    and dicts the module keeps, even where Hydra passes OmegaConf containers (a config without
    ``_convert_``)."""
    from omegaconf import DictConfig, ListConfig

    overrides = ["data=marsscapes_pseudo", "logger=none", f"data.root={tmp_path}"]
    dm = instantiate(compose_config("train", tmp_path / "run", overrides).data, _convert_="none")
    assert set(dm.hparams) == set(inspect.signature(MarsDataModule.__init__).parameters) - {"self"}

    def omegaconf_in(value: Any) -> bool:
        if isinstance(value, DictConfig | ListConfig):
            return True
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        return any(omegaconf_in(v) for v in items)

    assert [k for k, v in dm.hparams.items() if omegaconf_in(v)] == []
    assert dm.hparams["sources"] == dm.sources == ["marsscapes", "folder"]
    assert dm.hparams["train_only"] == dm.train_only == ["folder"]
    assert dm.hparams["class_map"] == dm.class_map and dm.class_map["folder"] is None
    assert dm.hparams["source_dirs"] == dm.source_dirs and isinstance(dm.hparams["source_dirs"], dict)


def test_a_config_with_several_mistakes_is_told_them_one_at_a_time_in_one_order(tmp_path: Path) -> None:
    """Each mistake of a data config is refused in its own line; with several, the same one comes first
    whatever the others, so fixing them one by one meets each of them in turn, in this order."""
    base: dict[str, Any] = {
        "name": "marsscapes",
        "sources": ["marsscapes"],
        "in_channels": 3,
        "crop_size": 64,
        "root": str(tmp_path),
        "class_map": {0: 0, 1: 1},
    }
    mistakes: list[tuple[dict[str, Any], str]] = [
        ({"in_channels": 2}, r"in_channels must be 1 \(greyscale\) or 3"),
        ({"root": None}, r"root is not set"),
        ({"samples_per_epoch": 0}, r"samples_per_epoch must be at least one crop per source"),
        ({"batch_size": "eight"}, r"invalid literal for int\(\) with base 10: 'eight'"),
        ({"fold": 1}, r"fold=1 needs n_folds"),
        ({"exclude_sols": [[5, 3]]}, r"each entry of data\.exclude_sols must be \[first_sol, last_sol\]"),
        ({"sol_margin": -1}, r"sol_margin must be a whole number of sols >= 0, got -1"),
        ({"subclass_map": {0: 0}}, r"subclass_map and subclasses go together"),
        ({"render_processes": -1}, r"render_processes must be null \(automatic\) or an integer >= 0"),
        ({"class_mix_prob": 1.5}, r"class_mix_prob must be a probability in \[0, 1\], got 1\.5"),
    ]
    for first, (_, message) in enumerate(mistakes):
        config = dict(base)
        for edit, _ in mistakes[first:]:
            config.update(edit)
        with pytest.raises(ValueError, match=message):
            MarsDataModule(**config)
    assert MarsDataModule(**base).sources == ["marsscapes"]  # with none left, it is built


def test_several_sources_without_a_source_s_folder_are_refused_naming_it() -> None:
    """With several sources each needs its folder under ``root`` (``source_dirs``); the ones left out are
    named. One source reads ``root`` itself: no ``source_dirs`` is asked of it."""
    from marsunits.data.value_checks import source_settings_refusal

    def refusal(sources: list[str], source_dirs: Any) -> str | None:
        return source_settings_refusal("two", sources, 3, 64, 0, None, "/data", source_dirs)

    both = ["marsscapes", "ai4mars"]
    assert refusal(both, {"marsscapes": "ms"}) == (
        "configs/data/two.yaml: source_dirs lacks ['ai4mars']: give each source's folder under root."
    )
    assert "lacks ['marsscapes', 'ai4mars']" in str(refusal(both, None))
    assert refusal(both, {"marsscapes": "ms", "ai4mars": "ai"}) is None
    assert refusal(["ai4mars"], None) is None
