"""The synthetic-scene CLI: outputs in the data layout, a preview sheet, and one-line errors (status 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from marsunits.atomic import host_digest
from marsunits.data.synthetic.cli import main


def test_cli_writes_scenes_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "syn"
    rc = main(
        ["--out", str(out), "--n", "3", "--seed", "4", "--size", "64x48", "--mode", "grey", "--preview"]
    )
    assert rc == 0
    assert "wrote 3 scenes to" in capsys.readouterr().out
    assert json.loads((out / "scenes.json").read_text()) == {
        "n": 3,
        "seed": 4,
        "size": "64x48",
        "mode": "grey",
        "difficulty": 0.5,
    }
    names = [f"synth_s4_{i:06d}" for i in range(3)]
    for name in names:
        assert (out / "images" / f"{name}.png").is_file()
        assert (out / "masks" / f"{name}.png").is_file()
        assert (out / "contacts" / f"{name}.contact.geojson").is_file()
        assert (out / "cameras" / f"{name}.json").is_file()
        with Image.open(out / "images" / f"{name}.png") as im:
            assert im.size == (64, 48) and im.mode == "L"
    with Image.open(out / "preview.png") as im:
        sheet = np.asarray(im.convert("RGB"))
    # Two tiles per row (image + mask each), two rows for three scenes.
    assert sheet.shape[0] >= 2 * 48 and sheet.shape[1] >= 4 * 64
    assert len(np.unique(sheet.reshape(-1, 3), axis=0)) > 20


def test_cli_refuses_to_mix_a_new_set_into_an_old_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Written into a folder of scenes, a smaller set overwrote the first old scenes and left the others (at
    their old size) beside a stale preview, without a word."""
    out = tmp_path / "syn"
    assert main(["--out", str(out), "--n", "3", "--size", "64x48", "--preview"]) == 0
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["--out", str(out), "--n", "1", "--size", "32x32"]) == 2
    err = capsys.readouterr().err
    assert "already holds scenes" in err and "--overwrite" in err
    assert len(list((out / "images").iterdir())) == 3  # nothing touched
    assert main(["--out", str(out), "--n", "1", "--size", "32x32", "--overwrite"]) == 0
    assert [p.name for p in (out / "images").iterdir()] == ["synth_s0_000000.png"]
    assert not (out / "preview.png").exists() and (out / "notes.txt").read_text() == "mine"
    with Image.open(out / "images" / "synth_s0_000000.png") as im:
        assert im.size == (32, 32)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--size", "0x48"], "positive"),
        (["--size=-64x48"], "positive"),
        (["--size", "64by48"], "WIDTHxHEIGHT"),
        (["--n", "0"], "positive integer"),
        (["--n", "three"], "positive integer"),
        (["--seed=-1"], "non-negative"),
        # The flag is named (the message named SceneConfig.difficulty), and NaN is no difficulty.
        (["--difficulty", "3"], "argument --difficulty: expected a number from 0"),
        (["--difficulty", "nan"], "argument --difficulty: expected a number from 0"),
        (["--difficulty", "hard"], "argument --difficulty: expected a number from 0"),
        (["--mode", "rgb"], "invalid choice"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    rc = main(["--out", str(tmp_path / "o"), *args])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err
    assert "\n" not in err
    assert not (tmp_path / "o" / "images").exists()


def test_cli_unwritable_out_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc = main(["--out", str(blocker / "sub"), "--n", "1"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "not a writable folder" in err and str(blocker / "sub") in err and "\n" not in err


def test_module_entry_point_reports_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "marsunits.data.synthetic", "--out", str(tmp_path), "--size", "10x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "WIDTHxHEIGHT" in proc.stderr


def test_a_latin1_output_folder_is_named_on_a_strict_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--out <a folder named in Latin-1 bytes>``: the scenes were written, then the closing line raised
    UnicodeEncodeError on a strict UTF-8 console (a terminal in en_US.UTF-8), a traceback and status 1. The
    line names the folder with the byte as ``\\xNN``; status 0."""
    import io
    import os

    out = tmp_path / os.fsdecode(b"s\xe9")
    console = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", console)
    assert main(["--out", str(out), "--n", "1", "--size", "32x32"]) == 0
    console.flush()
    shown = console.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    assert f"wrote 1 scene to {tmp_path}/s\\xe9 in " in shown, shown
    assert (out / "scenes.json").is_file()


@pytest.mark.parametrize(
    ("stop", "status", "said"),
    [
        (KeyboardInterrupt, 130, "interrupted (Ctrl-C)"),
        ("sigterm", 143, "terminated (SIGTERM)"),
        ("full", 2, "the disk is full"),
    ],
)
def test_a_stopped_generation_is_one_line_and_leaves_only_whole_scenes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stop: object,
    status: int,
    said: str,
) -> None:
    """Ctrl-C printed a traceback out of the renderer and left the scene being written half there (an image
    without its mask); SIGTERM ended the process without a word; a full disk printed a traceback."""
    import errno
    import os

    from marsunits.data.synthetic import cli
    from marsunits.errors import TerminatedError

    real = cli.write_scene
    written: list[int] = []

    def write_scene(scene, out):  # type: ignore[no-untyped-def]
        if len(written) == 2:  # the third scene: its image is written, then the stop
            from marsunits.data.io import write_png_atomic

            write_png_atomic(Path(out) / "images" / f"{scene.name}.png", scene.image)
            if stop == "sigterm":
                raise TerminatedError
            if stop == "full":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(out) / "masks" / "x.png"))
            raise KeyboardInterrupt
        written.append(1)
        return real(scene, out)

    monkeypatch.setattr(cli, "write_scene", write_scene)
    out = tmp_path / "syn"
    assert main(["--out", str(out), "--n", "4", "--size", "32x24"]) == status
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert said in err and "2 of 4 scenes" in err and str(out) in err and "--overwrite" in err
    for folder in ("images", "masks", "contacts", "cameras"):
        assert len(list((out / folder).iterdir())) == 2, folder  # whole scenes only
    assert not (out / "scenes.json").exists()  # the record of a finished set


@pytest.mark.parametrize("stop", ["full", "ctrl-c"])
def test_a_stop_while_the_preview_is_written_is_one_line_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    """The scenes were covered, the preview and scenes.json after them not: a disk that filled at
    preview.png (the biggest file of a small set), or a Ctrl-C while the contact sheet was drawn, printed a
    traceback. The scenes written stay."""
    import errno
    import os

    from marsunits.data.synthetic import cli

    def write_preview(scenes, path):  # type: ignore[no-untyped-def]
        if stop == "full":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "write_preview", write_preview)
    out = tmp_path / "syn"
    assert main(["--out", str(out), "--n", "2", "--size", "32x24", "--preview"]) == (
        2 if stop == "full" else 130
    )
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--overwrite" in err and (f"cannot write {out / 'preview.png'}" in err or stop != "full")
    assert len(list((out / "masks").iterdir())) == 2


@pytest.mark.parametrize("stop", ["full", "ctrl-c"])
def test_marsunits_traceback_shows_the_stop_as_every_command_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    """``MARSUNITS_TRACEBACK=1`` shows the traceback of a stop or a full disk (train.py, predict.py and the
    export raise it); the synthetic CLI printed its one line whatever the variable said. The half-written
    scene is still removed first."""
    import errno
    import os

    from marsunits.data.synthetic import cli

    real = cli.write_scene
    written: list[int] = []

    def write_scene(scene, out):  # type: ignore[no-untyped-def]
        if written:
            from marsunits.data.io import write_png_atomic

            write_png_atomic(Path(out) / "images" / f"{scene.name}.png", scene.image)
            if stop == "full":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(out) / "masks" / "x.png"))
            raise KeyboardInterrupt
        written.append(1)
        return real(scene, out)

    monkeypatch.setattr(cli, "write_scene", write_scene)
    monkeypatch.setenv("MARSUNITS_TRACEBACK", "1")
    out = tmp_path / "syn"
    with pytest.raises(OSError if stop == "full" else KeyboardInterrupt):
        main(["--out", str(out), "--n", "3", "--size", "32x24"])
    assert len(list((out / "images").iterdir())) == 1  # whole scenes only


def test_a_killed_generations_temporaries_do_not_refuse_the_next_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A generation killed with SIGKILL (no handler runs) leaves its atomic writer's hidden temporary in
    images/: the same command was then refused as "already holds scenes (e.g. .0000.png.<pid>@...tmp)",
    though no scene was written. A live writer's temporary still counts."""
    out = tmp_path / "syn"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = out / "images" / f".synth_s4_000000.png.{int(gone.stdout)}@{host_digest()}.abcd1234.tmp"
    dead.parent.mkdir(parents=True)
    dead.write_bytes(b"half a png")
    args = ["--out", str(out), "--n", "2", "--seed", "4", "--size", "64x48"]
    assert main(args) == 0, capsys.readouterr().err
    assert not dead.exists()
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "synth_s4_000000.png",
        "synth_s4_000001.png",
    ]

    live = out / "masks" / f".synth_s4_000002.png.1@{host_digest()}.abcd1234.tmp"  # pid 1 always runs
    live.write_bytes(b"being written")
    assert main([*args, "--n", "3"]) == 2 and "already holds scenes" in capsys.readouterr().err
    assert live.exists()
