"""AtomicCheckpointIO: an interrupted save keeps the previous checkpoint, leaves no temporary file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from marsunits.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointWriteError,
    remove_stale_temporaries,
    temporary_path,
)

try:
    from .conftest import compose_config
except ImportError:  # tests/ is not a package: pytest puts it on sys.path (rootdir conftest)
    from conftest import compose_config  # type: ignore[no-redef]


def _state(value: float) -> dict[str, object]:
    return {"state_dict": {"w": torch.full((64, 64), value)}, "global_step": int(value)}


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped), so no process has it for now."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def test_save_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"  # folder created by the save
    io.save_checkpoint(_state(1.0), path)
    io.save_checkpoint(_state(2.0), path)
    loaded = io.load_checkpoint(path, weights_only=True)
    assert loaded["global_step"] == 2 and torch.equal(loaded["state_dict"]["w"], torch.full((64, 64), 2.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    with pytest.raises(TypeError, match="storage_options"):
        io.save_checkpoint(_state(3.0), path, storage_options={"x": 1})


_FULL = "could not write the checkpoint .*last.ckpt: the disk is full"


@pytest.mark.parametrize(
    ("failure", "free_mb", "raised", "said"),
    [
        (OSError(28, "No space left on device"), 100, CheckpointWriteError, _FULL + r" \(No space left"),
        # torch's zip writer on a full disk: the errno is lost, the free space tells.
        (
            RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos"),
            0,
            CheckpointWriteError,
            _FULL,
        ),
        (RuntimeError("a bug, not the disk"), 100, RuntimeError, "a bug, not the disk"),
        (KeyboardInterrupt(), 0, KeyboardInterrupt, ""),  # a kill mid-save stays a kill
    ],
)
def test_interrupted_save_keeps_the_previous_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: BaseException,
    free_mb: int,
    raised: type[BaseException],
    said: str,
) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint(_state(1.0), path)
    before = path.read_bytes()
    real_save = torch.save

    def save_half_then_fail(obj: object, f: object) -> None:
        """Serialise for real, write the first half of the bytes, then fail like a full disk or a kill."""
        import io as _io

        buffer = _io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])  # type: ignore[attr-defined]
        raise failure

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(free=free_mb << 20))
    with pytest.raises(raised, match=said):
        io.save_checkpoint(_state(2.0), path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert io.load_checkpoint(path, weights_only=True)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_temporaries_of_dead_processes_are_cleaned_live_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    pid = _dead_pid()
    dead = temporary_path(path, pid)
    dead_best = temporary_path(tmp_path / "best.ckpt", pid)  # a kill while saving best.ckpt
    alive = temporary_path(path, 1)  # pid 1 always runs: its file may be mid-write
    unrelated = tmp_path / "notes.tmp-draft"  # not a <name>.tmp-<pid> file: never touched
    for p in (dead, dead_best, alive, unrelated):
        p.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == sorted([dead, dead_best])
    dead.write_bytes(b"partial")
    AtomicCheckpointIO().save_checkpoint(_state(1.0), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["last.ckpt", alive.name, unrelated.name])


def test_every_trainer_config_uses_the_atomic_plugin(tmp_path: Path) -> None:
    for trainer_cfg in ("cpu", "gpu", "ddp"):
        cfg = compose_config(
            "train", tmp_path / trainer_cfg, [f"trainer={trainer_cfg}", "trainer.accelerator=cpu"]
        )
        assert [p["_target_"] for p in cfg.trainer.plugins] == ["marsunits.checkpoint_io.AtomicCheckpointIO"]
    cfg = compose_config("train", tmp_path / "cpu", ["model=tiny", "logger=none"])
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_a_file_url_is_saved_atomically_in_place_and_its_folder_cleaned(tmp_path: Path) -> None:
    """``file://`` paths are local: saved through the temporary file to the path after the scheme (not to a
    folder named ``file:``), and the stale temporaries of the folder are removed, as for a plain path; so are
    they by ``remove_checkpoint``."""
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    stale = temporary_path(path, _dead_pid())
    stale.write_bytes(b"partial")
    io.save_checkpoint(_state(1.0), f"file://{path}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert io.load_checkpoint(path, weights_only=True)["global_step"] == 1
    stale.write_bytes(b"partial")
    io.save_checkpoint(_state(1.0), tmp_path / "best.ckpt")
    stale.write_bytes(b"partial")
    io.remove_checkpoint(tmp_path / "best.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_folder_named_like_a_temporary_is_left_alone(tmp_path: Path) -> None:
    """Only files are temporaries: a folder named ``<name>.tmp-<pid>`` stays, and saves go on."""
    folder = temporary_path(tmp_path / "last.ckpt", _dead_pid())
    folder.mkdir()
    assert remove_stale_temporaries(tmp_path) == []
    AtomicCheckpointIO().save_checkpoint(_state(1.0), tmp_path / "last.ckpt")
    assert folder.is_dir() and (tmp_path / "last.ckpt").is_file()


@pytest.mark.parametrize(
    ("failure", "free_bytes", "said"),
    [
        (PermissionError(13, "Permission denied"), 100 << 20, "permission to write there was denied"),
        (RuntimeError("PytorchStreamWriter failed writing file"), 512 << 10, r"disk is full \(0.5 MB free"),
    ],
)
def test_a_denied_folder_or_less_than_a_mebibyte_free_is_said_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException, free_bytes: int, said: str
) -> None:
    """The disk as the cause: permission denied (EACCES), or torch's zip-writer error under 1 MiB free."""

    def fail(obj: object, f: object) -> None:
        raise failure

    monkeypatch.setattr(torch, "save", fail)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(free=free_bytes))
    with pytest.raises(CheckpointWriteError, match=said):
        AtomicCheckpointIO().save_checkpoint(_state(1.0), tmp_path / "last.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_name_with_a_process_id_beyond_the_systems_range_is_no_live_process(
    tmp_path: Path,
) -> None:
    """A leftover named with digits too large for a process id (``.tmp-99999999999999999999``): ``os.kill``
    raises OverflowError, not an OSError, and the stale-file sweeps of checkpoints and exports stopped on
    it."""
    from marsunits.atomic import process_alive

    assert process_alive(10**20) is False
    assert process_alive(-(10**20)) is False
    leftover = tmp_path / "last.ckpt.tmp-99999999999999999999"
    leftover.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == [leftover] and not leftover.exists()
