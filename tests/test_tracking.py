"""Experiment tracking: offline W&B fallback, what an offline run records, CSV/TensorBoard, resume, sweeps.

W&B runs here are offline (``WANDB_MODE=offline`` or the no-key fallback) and write under ``tmp_path``; the
conftest blocks every non-loopback socket, so a test that tried the network would fail.
"""

from __future__ import annotations

import contextlib
import csv
import http.server
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from PIL import Image

from conftest import CONFIG_DIR, REPO_ROOT, compose_config
from marsunits.boundary.contact_io import ContactLine
from marsunits.constants import CLASS_NAMES, CONTACT_COLOR
from marsunits.errors import TerminatedError
from marsunits.tracking import (
    finish_loggers,
    git_info,
    log_prediction_run,
    prepare_loggers,
    resolve_wandb_mode,
    run_from_checkpoint,
    run_id_from_checkpoint,
    wandb_credentials_available,
    wandb_setup,
)
from marsunits.tracking.media import confusion_heatmap, confusion_rows, draw_contacts, row_normalised
from marsunits.tracking.wandb_setup import sync_command
from test_predict import ckpt  # noqa: F401  (a fixture: a trained tiny checkpoint)

# The in-process training runs here are of the tiny network: one torch thread (conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ---------------------------------------------------------------------------------------------- helpers


def _wandb_records(run_file: Path) -> Iterator[Any]:
    """Protobuf records of an offline run's ``run-<id>.wandb`` file.

    W&B >= 0.20 dropped its Python reader (the Go core writes these files), so this reads the container
    format directly: a 7-byte header (``:W&B``, magic, version), then LevelDB-log blocks of 32 KiB whose
    records have a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) and hold
    ``Record`` protos.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", f"{run_file} is not a W&B run file"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        chunk = data[pos : pos + length]
        if len(chunk) < length:  # a record W&B's core is still writing: read again later (_complete_records)
            return
        pos += length
        if kind == 0:
            continue
        if kind == 1:
            payload = chunk
        elif kind == 2:
            pending = chunk
            continue
        elif kind == 3:
            pending += chunk
            continue
        else:
            payload, pending = pending + chunk, b""
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def _items(items: Any) -> dict[str, Any]:
    """History/summary/config items as ``{"a/b": value}`` (nested keys joined with '.')."""
    out = {}
    for item in items:
        key = item.key or ".".join(item.nested_key)
        out[key] = json.loads(item.value_json)
    return out


def _complete_records(run_file: Path, timeout_s: float = 20.0) -> list[Any]:
    """All records of a finished run's file. W&B's core process may still be writing the last records when
    ``run.finish()`` returns, so wait until the ``exit`` record is there and the file stops growing."""
    deadline = time.monotonic() + timeout_s
    size = -1
    from google.protobuf.message import DecodeError

    while True:
        try:
            records = list(_wandb_records(run_file))
        except DecodeError:  # a block caught half-written by W&B's core: read it again, up to the deadline
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        done = any(r.WhichOneof("record_type") == "exit" for r in records)
        if (done and run_file.stat().st_size == size) or time.monotonic() > deadline:
            return records
        size = run_file.stat().st_size
        time.sleep(0.2)


def _artifacts(run_dir: Path) -> dict[str, dict[str, Path]]:
    """Artifacts logged by an offline run: ``{type: {path in artifact: staged local file}}``."""
    (run_file,) = run_dir.glob("run-*.wandb")
    found: dict[str, dict[str, Path]] = {}
    for rec in _complete_records(run_file):
        if rec.WhichOneof("record_type") == "artifact":
            entries = found.setdefault(rec.artifact.type, {})
            entries.update({e.path: Path(e.local_path) for e in rec.artifact.manifest.contents})
    return found


def _read_run(run_dir: Path) -> dict[str, Any]:
    """History rows, merged config, summary updates and the run record of an offline run folder."""
    (run_file,) = run_dir.glob("run-*.wandb")
    history: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    run: dict[str, str] = {}
    summary: dict[str, Any] = {}
    for rec in _complete_records(run_file):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append(_items(rec.history.item))
        elif kind == "summary":
            summary.update(_items(rec.summary.update))
        elif kind == "config":
            config.update(_items(rec.config.update))
        elif kind == "run":
            # Plain values: a sub-message must not outlive its parent record.
            run = {"run_id": rec.run.run_id, "job_type": rec.run.job_type, "name": rec.run.display_name}
            if rec.run.run_group:
                run["group"] = rec.run.run_group
            config.update(_items(rec.run.config.update))
    return {"history": history, "config": config, "run": run, "summary": summary}


@pytest.fixture
def wandb_offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No API key anywhere, W&B's own folders in tmp_path; returns the fake home."""
    home = tmp_path / "home"
    home.mkdir()
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    for var, sub in (
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_DATA_DIR", "data"),
    ):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / sub))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_default"))
    return home


SMALL = [
    "model=tiny",
    "data.train_length=2",
    "data.val_length=3",
    "data.test_length=2",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "data.crop_size=64",
    "data.scene.width=64",
    "data.scene.height=64",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]


def _fit(cfg: Any, ckpt_path: str | None = None, test: bool = False) -> list[Any]:
    """Fit (and test the best checkpoint) as ``marsunits.training.run`` does, with the tracking loggers.

    Returns the loggers, already finished.
    """
    from hydra.utils import instantiate

    from marsunits.training import _instantiate_group

    loggers = prepare_loggers(cfg, ckpt_path)
    trainer = instantiate(cfg.trainer, callbacks=_instantiate_group(cfg.callbacks), logger=loggers)
    task, data = instantiate(cfg.model), instantiate(cfg.data)
    status = "failed"
    try:
        trainer.fit(task, datamodule=data, ckpt_path=ckpt_path)
        if test:
            trainer.test(task, datamodule=data, ckpt_path="best", verbose=False)
        status = "success"
    finally:
        finish_loggers(loggers, status)
    return loggers


# ------------------------------------------------------------------------------------- offline fallback


def test_no_api_key_falls_back_to_offline_with_one_line(
    wandb_offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = compose_config("train", tmp_path / "run", ["logger=wandb_csv", *SMALL])
    capsys.readouterr()
    loggers = prepare_loggers(cfg)
    start = capsys.readouterr()
    try:
        (wb,) = [lg for lg in loggers if isinstance(lg, WandbLogger)]
        assert wb.experiment.settings.mode == "offline"
        assert Path(wb.experiment.settings.sync_dir).is_relative_to(tmp_path / "run" / "wandb")
    finally:
        finish_loggers(loggers, "success")
    lines = [ln for ln in (start.out + start.err).splitlines() if "[marsunits]" in ln]
    assert len(lines) == 1, lines
    assert "W&B offline" in lines[0] and "no W&B API key" in lines[0]
    ended = capsys.readouterr()
    end = ended.out
    # Lightning's anonymous=None made wandb warn on every run that the setting has no effect.
    assert "anonymous setting" not in start.out + start.err + ended.out + ended.err
    sync = [ln for ln in end.splitlines() if "wandb sync" in ln]
    assert len(sync) == 1 and str(tmp_path / "run" / "wandb" / "offline-run-") in sync[0]


def test_names_that_are_not_utf8_reach_wandb_as_xnn_and_a_latin1_wandb_folder_is_refused(
    wandb_offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Latin-1 bytes (Python holds ``caf<0xe9>`` as ``caf\\udce9``) on the command line (``data.root``) or in
    ``run_name`` stopped ``wandb.init`` with UnicodeEncodeError before training (W&B's settings are UTF-8
    protobuf strings), with the default logger; image captions showed such a name as ``caf\ufffd``. Now W&B
    gets ``\\xNN`` as manifest.csv writes names, and a W&B folder whose name is not UTF-8 (which W&B cannot
    use) is refused in one message naming it and the way out, before W&B writes anything."""
    from marsunits.data.fake import write_fake_folder
    from marsunits.errors import ConfigError

    monkeypatch.setenv("WANDB_MODE", "offline")
    latin1 = os.fsdecode(b"caf\xe9")
    root = write_fake_folder(
        tmp_path / latin1, height=64, width=64, stems=[f"{latin1}_{k}" for k in range(4)]
    )
    argv = ["train.py", f"data.root={root}", "logger=wandb"]
    monkeypatch.setattr(sys, "argv", argv[:])
    folder = [
        "data=folder",
        f"data.root='{root}'",
        "data.batch_size=2",
        "data.crop_size=64",
        "data.samples_per_epoch=2",
        "data.val_fraction=0.5",
        "model=tiny",
        "logger=wandb",
        "callbacks=[default,wandb]",
        f"run_name='r{latin1}'",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
    ]
    run_dir = tmp_path / "run"
    (wb,) = _fit(compose_config("train", run_dir, folder))
    assert sys.argv == argv  # given back as it was
    (offline_dir,) = (run_dir / "wandb").glob(f"offline-run-*-{wb.experiment.id}")
    rec = _read_run(offline_dir)
    assert rec["run"]["name"] == "rcaf\\xe9"
    captions = [c for row in rec["history"] for c in row.get("val/examples.captions", [])]
    assert captions and all(c.startswith("caf\\xe9_") for c in captions), captions

    elsewhere = tmp_path / f"w{latin1}"
    cfg = compose_config("train", tmp_path / "other", [*folder, f"logger.wandb.save_dir='{elsewhere}'"])
    with pytest.raises(ConfigError, match=r"W&B cannot keep its run files in .*wcaf\\xe9.*logger=csv"):
        prepare_loggers(cfg)
    assert not elsewhere.exists()


def test_finishing_a_csv_log_in_a_latin1_run_folder_names_it_on_a_strict_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The closing line ``CSV metrics: <run folder>/...`` of a run folder named in Latin-1 bytes raised
    UnicodeEncodeError on a strict UTF-8 console (a terminal in en_US.UTF-8) after training, so train.py ended
    with status 2 before writing metrics.json. It is printed with the byte as ``\\xNN``, valid UTF-8."""
    import io

    from lightning.pytorch.loggers import CSVLogger

    folder = tmp_path / os.fsdecode(b"r\xe9")
    logger = CSVLogger(save_dir=str(folder), name="csv")
    logger.log_metrics({"val/miou": 0.5}, step=0)
    console = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", console)
    finish_loggers([logger], "success")
    console.flush()
    shown = console.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    assert f"CSV metrics: {tmp_path}/r\\xe9/csv/version_0/metrics.csv" in shown, shown


def test_the_csv_line_of_a_run_resumed_in_its_folder_names_its_earlier_parts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run stopped and resumed in its folder (``run_name=<run> ckpt_path=last``) keeps each part's curves
    in a CSV of its own (``csv/version_0``, ``version_1``): its closing line named the last part's alone,
    ``CSV metrics: .../version_1/metrics.csv``, which holds none of the epochs before the stop."""
    from lightning.pytorch.loggers import CSVLogger

    for part in range(3):
        logger = CSVLogger(save_dir=str(tmp_path), name="csv")
        logger.log_metrics({"val/miou": 0.5}, step=part)
        finish_loggers([logger], "success")
        shown = capsys.readouterr().out.strip()
        earlier = ", ".join(f"version_{n}/metrics.csv" for n in range(part))
        assert shown == f"[marsunits] CSV metrics: {tmp_path}/csv/version_{part}/metrics.csv" + (
            f" (this part of the run; its earlier parts, before it was resumed: {earlier})" if part else ""
        ), shown


@pytest.mark.parametrize("raised", [TerminatedError, KeyboardInterrupt])
def test_a_stop_while_a_logger_closes_still_closes_the_others_then_stops(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    raised: type[BaseException],
) -> None:
    """A SIGTERM (a ``BaseException`` since it must pass ``except Exception``) or Ctrl-C arriving while one
    logger closes (``wandb.finish`` uploading for many seconds) skipped every logger after it: the CSV
    logger's buffered rows were never written to metrics.csv. The others close, then the stop goes on."""
    from lightning.pytorch.loggers import CSVLogger

    first = CSVLogger(save_dir=str(tmp_path), name="first")
    second = CSVLogger(save_dir=str(tmp_path), name="second")
    second.log_metrics({"val/miou": 0.5}, step=0)  # buffered until finalize saves it

    def stopped(status: str) -> None:
        raise raised

    monkeypatch.setattr(first, "finalize", stopped)
    with pytest.raises(raised):
        finish_loggers([first, second], "success")
    written = Path(second.log_dir) / "metrics.csv"
    assert written.is_file() and "0.5" in written.read_text()
    assert "could not close" not in capsys.readouterr().err  # a stop is not a logger's failure


@pytest.mark.parametrize("raised", [TerminatedError, KeyboardInterrupt])
def test_a_wandb_run_stopped_while_it_closes_still_says_where_it_is_and_how_to_upload_it(
    wandb_offline_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    raised: type[BaseException],
) -> None:
    """A SIGTERM (or Ctrl-C) while ``wandb.finish`` closes an offline run (train.py stopped while W&B
    writes its last records) lost marsunits' ``wandb sync`` line for it: the stop passed over the line, and
    the run's folder was named nowhere. The line is said before the stop goes on, naming the folder, the
    command that uploads it and that its record may be incomplete; the other loggers close as before."""
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config("train", tmp_path / "run", ["logger=wandb_csv", *SMALL])
    loggers = prepare_loggers(cfg)
    (wb,) = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    (csv,) = [lg for lg in loggers if isinstance(lg, CSVLogger)]
    run = wb.experiment
    sync_dir, finish = Path(run.settings.sync_dir), run.finish
    wb.log_metrics({"val/miou": 0.5}, step=0)
    csv.log_metrics({"val/miou": 0.5}, step=0)

    def cut_short(exit_code: int = 0) -> None:
        raise raised  # the signal's exception, before W&B has written its last records

    monkeypatch.setattr(run, "finish", cut_short)
    capsys.readouterr()
    try:
        with pytest.raises(raised):
            finish_loggers(loggers, "success")
    finally:
        monkeypatch.undo()
        finish()  # closes the run for the next tests (the stop left it open)
    said = capsys.readouterr()
    lines = [line for line in said.out.splitlines() if "wandb sync" in line]
    assert len(lines) == 1, said.out
    assert lines[0].startswith(f"[marsunits] W&B run {run.id} was stopped while closing"), lines[0]
    assert f"may be incomplete; upload what it holds with: {sync_command(sync_dir)}" in lines[0], lines[0]
    assert "could not close" not in said.err  # a stop is not a logger's failure
    assert "0.5" in (Path(csv.log_dir) / "metrics.csv").read_text()  # the CSV logger after it still closed


def test_an_online_wandb_run_stopped_while_it_closes_names_its_local_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An online run stopped while ``wandb.finish`` uploads may lack its last records online: its line (the
    run's address) was lost; it now names the address, that it may be incomplete, and the ``wandb sync`` of
    its local copy, with any earlier part logged offline not uploaded yet."""
    from types import SimpleNamespace

    from marsunits.tracking.wandb_setup import _finish_wandb

    field = tmp_path / "train" / "r" / "wandb" / "offline-run-20261203_110000-abc123"
    office = tmp_path / "train" / "r" / "wandb" / "run-20261204_090000-abc123"
    for d in (field, office):
        d.mkdir(parents=True)

    def cut_short(exit_code: int) -> None:
        raise TerminatedError

    run = SimpleNamespace(
        id="abc123",
        offline=False,
        url="https://wandb.example/runs/abc123",
        settings=SimpleNamespace(sync_dir=str(office), mode="online"),
        finish=cut_short,
    )
    logger: Any = SimpleNamespace(_experiment=run, experiment=run)
    with pytest.raises(TerminatedError):
        _finish_wandb(logger, "success")
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(
        "[marsunits] W&B run abc123 (https://wandb.example/runs/abc123) was stopped while closing"
    ), line
    assert "may be incomplete" in line, line
    assert f"upload what it holds with: {sync_command(field, office)}" in line, line


def test_mode_resolution(wandb_offline_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_wandb_mode("offline") == ("offline", None)
    assert resolve_wandb_mode("disabled") == ("disabled", None)
    assert resolve_wandb_mode("dryrun") == ("offline", None)
    mode, reason = resolve_wandb_mode(None)
    assert mode == "offline" and "API key" in reason
    mode, reason = resolve_wandb_mode("online")  # asked for online, but nothing to log in with
    assert mode == "offline" and "API key" in reason

    # A key from `wandb login` (netrc) but no network: offline, and the reason names the server. The key
    # is stored under the installed W&B's default server (api.forge.coreweave.com from wandb 0.31), where
    # a hard-wired api.wandb.ai found none, so every run went offline after a `wandb login`.
    from urllib.parse import urlparse

    from wandb.sdk.wandb_settings import Settings

    host = urlparse(Settings.model_fields["base_url"].default).hostname
    assert wandb_setup.wandb_host() == host
    (wandb_offline_env / ".netrc").write_text(f"machine {host}\n  login user\n  password " + "k" * 40 + "\n")
    assert wandb_credentials_available()
    monkeypatch.setattr(wandb_setup, "wandb_reachable", lambda host=None, timeout_s=2.0: False)
    mode, reason = resolve_wandb_mode("auto")
    assert mode == "offline" and host in reason
    # Forge's proxy address is its api. host to a W&B that knows Forge (0.31), and so here; a W&B before it
    # (the floor, 0.23) logs to the address as given, and so here too.
    monkeypatch.setenv("WANDB_BASE_URL", "https://forge.coreweave.com/api/wandb")
    try:
        from wandb.sdk.lib.urls import normalize_forge_base_url  # noqa: F401

        forge_host = host
    except ImportError:
        forge_host = "forge.coreweave.com"
    assert wandb_setup.wandb_host() == forge_host
    monkeypatch.delenv("WANDB_BASE_URL")
    # A key an earlier wandb login stored under api.wandb.ai, the server behind Forge: wandb 0.31 takes it.
    (wandb_offline_env / ".netrc").write_text(
        "machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n"
    )
    assert wandb_credentials_available()
    monkeypatch.setattr(wandb_setup, "wandb_reachable", lambda host=None, timeout_s=2.0: True)
    assert resolve_wandb_mode("auto") == ("online", None)
    with pytest.raises(ValueError, match="not one of"):
        resolve_wandb_mode("sometimes")


def test_a_self_hosted_wandb_server_is_found_as_wandb_login_records_it(
    wandb_offline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wandb login --host https://wandb.example.com:8443`` stores ``base_url`` in W&B's settings file and
    the key under ``host:port`` in netrc; both were ignored, and the probe always tried port 443, so every
    run with a self-hosted server went offline, "no W&B API key found"."""
    import socket

    settings = Path(os.environ["WANDB_CONFIG_DIR"]) / "settings"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text("[default]\nbase_url = https://wandb.example.com:8443\n")
    (wandb_offline_env / ".netrc").write_text(
        "machine wandb.example.com:8443\n  login user\n  password " + "k" * 40 + "\n"
    )
    assert wandb_setup.wandb_base_url() == "https://wandb.example.com:8443"
    assert wandb_setup.wandb_host() == "wandb.example.com"
    assert wandb_credentials_available()
    probed: list[tuple[str, int]] = []

    def connect(address: tuple[str, int], timeout: float) -> Any:
        probed.append(address)
        raise OSError("refused")

    monkeypatch.setattr(socket, "create_connection", connect)
    mode, reason = resolve_wandb_mode("auto")
    assert mode == "offline" and reason == "wandb.example.com:8443 is not reachable (no network?)"
    monkeypatch.setenv("WANDB_BASE_URL", "http://localhost:8080")  # W&B Server's usual address
    wandb_setup.wandb_reachable()
    assert probed == [("wandb.example.com", 8443), ("localhost", 8080)]


def test_reachability_probe_survives_blocked_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror("no DNS in tests")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert wandb_setup.wandb_reachable("api.wandb.ai", timeout_s=0.5) is False


def test_a_proxy_that_does_not_answer_means_offline_at_once(
    wandb_offline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTPS_PROXY set the probe was skipped: a proxy left from another network made every run wait
    W&B's 90 s init timeout before the offline fallback. The proxy is probed instead; NO_PROXY is honoured."""
    import socket

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as closed:  # a local port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead}")
    started = time.monotonic()
    mode, reason = resolve_wandb_mode("online")
    assert mode == "offline" and f"127.0.0.1:{dead}" in reason and "proxy" in reason
    assert time.monotonic() - started < 10
    assert wandb_setup.wandb_proxy() == ("127.0.0.1", dead)
    with socket.socket() as listening:  # a proxy that answers: W&B itself tries
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{listening.getsockname()[1]}")
        assert wandb_setup.wandb_reachable()
        monkeypatch.setenv("NO_PROXY", wandb_setup.wandb_host())  # not through the proxy: probed directly
        assert wandb_setup.wandb_proxy() is None
        assert not wandb_setup.wandb_reachable(timeout_s=0.5)


@contextlib.contextmanager
def answering_http_server() -> Iterator[int]:
    """A local HTTP server answering every ``HEAD`` with 401 (what W&B answers an expired key); yields its
    port."""

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_accepts_but_never_answers_means_offline_at_once(
    wandb_offline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A W&B server whose port accepts connections but which never answers (a hung server, a firewall or
    captive portal that completes the handshake) passed the TCP probe: W&B then tried for its 90 s init
    timeout in silence, and its abandoned run took another 30 s to end (137 s for a 15 s run). The probe
    now waits for an HTTP answer, of any status: a server that answers stays online. (Its wait, 10 s, is
    shortened here to 1 s: the test waited it out, 10 s of a default run's time.)"""
    import inspect
    import socket

    wait = inspect.signature(wandb_setup.wandb_reachable).parameters["answer_timeout_s"].default
    assert wait == wandb_setup.ANSWER_TIMEOUT_S and wait + 2.0 < 15  # the connection's 2 s and the answer's
    monkeypatch.setattr(wandb_setup.wandb_reachable, "__defaults__", (None, 2.0, 1.0))
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as silent:  # the kernel accepts connections; nothing ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("WANDB_BASE_URL", f"http://{address}")
        started = time.monotonic()
        mode, reason = resolve_wandb_mode("online")
        assert time.monotonic() - started < 5
        assert mode == "offline" and reason is not None
        assert address in reason and "did not answer" in reason and "WANDB_MODE=offline" in reason

    with answering_http_server() as port:  # answers 401, as W&B does to an expired key
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
        assert resolve_wandb_mode("online") == ("online", None)


def test_proxy_probe_follows_the_proxies_wandb_uses(
    wandb_offline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wandb's service (Go's proxy-from-environment rules) never uses ALL_PROXY and never proxies a loopback
    server: probing such a proxy that does not answer sent runs offline that W&B logs online directly."""
    import socket

    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as closed:  # a local port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
    monkeypatch.setenv("ALL_PROXY", f"socks5://10.0.0.1:{dead}")  # a tunnel that is down
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    assert wandb_setup.wandb_proxy() is None
    monkeypatch.setenv("HTTPS_PROXY", f"http://10.0.0.1:{dead}")
    assert wandb_setup.wandb_proxy() == ("10.0.0.1", dead)
    monkeypatch.setenv("NO_PROXY", "wandb.example.com:443")  # host:port, as Go reads it
    assert wandb_setup.wandb_proxy() is None
    monkeypatch.setenv("NO_PROXY", "wandb.example.com:8443")  # another port: still proxied
    assert wandb_setup.wandb_proxy() == ("10.0.0.1", dead)
    # A W&B Server by address in a network NO_PROXY names in CIDR notation: Go does not proxy it.
    monkeypatch.setenv("WANDB_BASE_URL", "https://10.20.30.40")
    monkeypatch.setenv("NO_PROXY", "example.org, 10.0.0.0/8")
    assert wandb_setup.wandb_proxy() is None
    monkeypatch.setenv("NO_PROXY", "192.168.0.0/16,fd00::/8,not-a-net/x")
    assert wandb_setup.wandb_proxy() == ("10.0.0.1", dead)
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    monkeypatch.delenv("NO_PROXY")
    with answering_http_server() as port:  # a W&B Server on this machine, a dead corporate proxy beside it
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
        for host in ("localhost", "127.0.0.1"):
            monkeypatch.setenv("WANDB_BASE_URL", f"http://{host}:{port}")
            assert wandb_setup.wandb_proxy() is None
            assert wandb_setup.wandb_reachable(timeout_s=2.0)


def test_wandbs_own_proxy_setting_is_the_one_probed(
    wandb_offline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WANDB_HTTPS_PROXY is the proxy wandb sends every request to its server through (NO_PROXY aside): a
    network that reaches W&B only through it was probed directly, read as "no network", and every run went
    offline."""
    import socket

    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.invalid")  # not reachable directly
    monkeypatch.setenv("NO_PROXY", "wandb.example.invalid")  # wandb's own proxy setting ignores it
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        monkeypatch.setenv("WANDB_HTTPS_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        assert wandb_setup.wandb_proxy() == ("127.0.0.1", proxy.getsockname()[1])
        assert wandb_setup.wandb_reachable(timeout_s=2.0)
        assert resolve_wandb_mode("online") == ("online", None)
    monkeypatch.setenv("WANDB_BASE_URL", "http://wandb.example.invalid:8080")  # http: WANDB_HTTP_PROXY
    assert wandb_setup.wandb_proxy() is None
    monkeypatch.setenv("WANDB_HTTP_PROXY", "10.0.0.1:3128")
    assert wandb_setup.wandb_proxy() == ("10.0.0.1", 3128)


def test_disabled_mode_drops_the_wandb_logger(
    wandb_offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning.pytorch.loggers import CSVLogger

    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = compose_config("train", tmp_path / "run", ["logger=wandb_csv", *SMALL])
    loggers = prepare_loggers(cfg)
    assert [type(lg) for lg in loggers] == [CSVLogger]
    finish_loggers(loggers, "success")
    assert not (tmp_path / "run" / "wandb").exists()


# --------------------------------------------------------------------------- a training run, offline


def test_offline_training_run_records_everything_and_resumes(
    wandb_offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra.core.hydra_config import HydraConfig
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    overrides = [
        "logger=all",
        "callbacks=[default,wandb]",
        "callbacks.wandb_val_images.n_images=3",
        *SMALL,
    ]
    cfg = compose_config("train", run_dir, [*overrides, "trainer.max_epochs=2"])
    (wb,) = [lg for lg in _fit(cfg, test=True) if type(lg).__name__ == "WandbLogger"]
    run_id = wb.experiment.id
    (offline_dir,) = (run_dir / "wandb").glob(f"offline-run-*-{run_id}")
    rec = _read_run(offline_dir)

    # Metrics under stage/name, with one validation mIoU per epoch.
    miou = [row["val/miou"] for row in rec["history"] if "val/miou" in row]
    assert len(miou) == 2 and all(0.0 <= v <= 1.0 for v in miou)
    assert any("train/loss" in row for row in rec["history"])
    assert any(k.startswith("lr-") for row in rec["history"] for k in row)

    # The context a reader needs: resolved config, git, dataset, class names.
    config = rec["config"]
    assert config["config"]["model"]["encoder"] == "mobilenetv3_small_050"
    assert config["config"]["data"]["crop_size"] == 64  # resolved, not "${...}"
    commit = config["git"]["commit"]
    assert commit == "unknown" or (len(commit) == 40 and int(commit, 16) >= 0)
    assert config["git"]["dirty"] in (True, False, "unknown")
    assert config["dataset"] == "synthetic"
    assert config["class_names"] == list(CLASS_NAMES)
    assert config["data_class_map"] == "identity"  # under class_map, Lightning's hparams replaced it by null

    # Validation images: the same samples every epoch, each with prediction + ground-truth mask layers,
    # and the predicted contact drawn in CONTACT_COLOR wherever one was found.
    examples = [row for row in rec["history"] if "val/examples._type" in row]
    assert len(examples) == 2
    names = [[c.split(" | ")[0] for c in row["val/examples.captions"]] for row in examples]
    assert len(names[0]) == 3 and names[0] == names[1]
    truths = [[m["ground_truth"]["sha256"] for m in row["val/examples.all_masks"]] for row in examples]
    assert truths[0] == truths[1]
    files = offline_dir / "files"
    for row in examples:
        for picture, caption, layers in zip(
            row["val/examples.filenames"],
            row["val/examples.captions"],
            row["val/examples.all_masks"],
            strict=True,
        ):
            rgb = np.asarray(Image.open(files / picture).convert("RGB"))
            assert rgb.shape == (64, 64, 3)
            drawn = np.all(rgb == CONTACT_COLOR, axis=-1).sum()
            assert (drawn > 0) == (" contact 0 px" not in caption), caption
            assert set(layers) == {"prediction", "ground_truth"}
            for layer in layers.values():
                mask = np.asarray(Image.open(files / layer["path"]))
                assert mask.shape == (64, 64) and set(np.unique(mask).tolist()) <= {0, 1, 2, 255}
    labels = json.dumps(config["_wandb"]["mask/class_labels"])
    for name in (*CLASS_NAMES, "ignore", "prediction", "ground_truth"):
        assert name in labels

    # Confusion matrix: a heatmap image per epoch and a table whose rows are fractions of the true class.
    assert len(list((files / "media" / "images" / "val").glob("confusion_matrix_*.png"))) == 2
    assert len(list((files / "media" / "images" / "test").glob("confusion_matrix_*.png"))) == 1
    assert any("test/miou" in row for row in rec["history"])
    tables = sorted((offline_dir / "files" / "media" / "table" / "val").glob("confusion_table_*.table.json"))
    assert len(tables) == 2
    table = json.loads(tables[-1].read_text())
    assert table["columns"] == ["true", "predicted", "pixels", "fraction_of_true"] and len(table["data"]) == 9
    for true_name in CLASS_NAMES:
        fractions = [r[3] for r in table["data"] if r[0] == true_name and r[3] is not None]
        assert not fractions or abs(sum(fractions) - 1.0) < 1e-4

    # The same numbers without W&B: CSV and TensorBoard.
    (csv_file,) = (run_dir / "csv").glob("version_0/metrics.csv")  # one CSV version per (re)start
    with open(csv_file, newline="") as fh:
        csv_miou = [float(r["val/miou"]) for r in csv.DictReader(fh) if r.get("val/miou")]
    np.testing.assert_allclose(csv_miou, miou, rtol=1e-6)
    (tb_dir,) = {p.parent for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    assert "val/miou" in acc.Tags()["scalars"]
    np.testing.assert_allclose([e.value for e in acc.Scalars("val/miou")], miou, rtol=1e-6)

    # Offline, checkpoints are not uploaded unless asked (log_model: auto).
    assert "model" not in _artifacts(offline_dir)

    # The run id travels in the checkpoint; resuming from last.ckpt continues the same W&B run. This time
    # log_model=true: the checkpoints go with the offline run as a model artifact.
    last = run_dir / "checkpoints" / "last.ckpt"
    assert run_id_from_checkpoint(last) == run_id
    first = rec["run"]
    assert run_from_checkpoint(last) == {"id": run_id, "name": first["name"], "group": first["group"]}
    # Resumed under other names (a sweep trial resumed alone: its name and group are made anew), the W&B
    # run keeps its own: it was renamed and moved out of its sweep's group.
    cfg2 = compose_config(
        "train",
        run_dir,
        [
            *overrides,
            "trainer.max_epochs=3",
            "ckpt_path=last",
            "logger.wandb.log_model=true",
            "run_name=trial-None",
        ],
    )
    (wb2,) = [lg for lg in _fit(cfg2, str(last)) if type(lg).__name__ == "WandbLogger"]
    assert wb2.experiment.id == run_id
    resumed = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(resumed) == 2
    rec2 = _read_run(next(d for d in resumed if d != offline_dir))
    assert rec2["run"] == {**first, "run_id": run_id}
    # A name or group the resume command gives is the user's choice: kept.
    with open_dict(cfg2):
        cfg2.logger.wandb.group = "regrouped"
    typed = HydraConfig.instance().cfg.hydra.overrides.task  # type: ignore[union-attr]
    OmegaConf.set_readonly(typed, False)
    typed.append("logger.wandb.group=regrouped")  # as the command line gives it
    (wb3,) = [lg for lg in prepare_loggers(cfg2, str(last)) if type(lg).__name__ == "WandbLogger"]
    try:
        assert wb3.experiment.id == run_id and wb3.experiment.group == "regrouped"
        assert wb3.experiment.name == first["name"]
    finally:
        finish_loggers([wb3], "success")
    model = _artifacts(next(d for d in resumed if d != offline_dir))["model"]
    assert list(model) == ["model.ckpt"] and model["model.ckpt"].stat().st_size > 0
    first_steps = [row["trainer/global_step"] for row in rec["history"] if "val/miou" in row]
    resumed_steps = [row["trainer/global_step"] for row in rec2["history"] if "val/miou" in row]
    # The resumed run continues the step axis (Lightning may repeat the validation of the saved epoch).
    assert min(resumed_steps) >= max(first_steps) and max(resumed_steps) > max(first_steps)


def test_the_stop_line_of_a_run_logged_offline_comes_after_the_wandb_lines(
    wandb_offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in training with W&B offline: train.py's line on how to go on (the step, last.ckpt,
    ckpt_path=last) was printed as the stop came, and the lines of W&B's run finishing after it (its
    ``wandb sync`` command): the user's last line was not how to go on. It now comes last, the sync command
    still before it."""
    from marsunits.errors import report_user_errors
    from marsunits.training import run

    monkeypatch.setenv("WANDB_MODE", "offline")
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=1"]
    cfg = compose_config("train", tmp_path / "run", ["logger=wandb", *SMALL, "trainer.max_epochs=1", *stop])
    both = io.StringIO()  # stdout and stderr in the order they were written, as a terminal shows them
    handler = signal.getsignal(signal.SIGINT)
    try:
        with (
            contextlib.redirect_stdout(both),
            contextlib.redirect_stderr(both),
            pytest.raises(SystemExit) as ended,
        ):
            report_user_errors(lambda: run(cfg), prog="train.py")
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    lines = [line for line in both.getvalue().splitlines() if line.strip()]
    assert ended.value.code == 130
    assert lines[-1].startswith("train.py: interrupted (Ctrl-C) at epoch 0, optimiser step 1"), lines[-3:]
    assert "ckpt_path=last to go on" in lines[-1]
    assert [line for line in lines if "saved offline" in line and " sync " in line], lines[-3:]


def test_callbacks_do_nothing_without_wandb(tmp_path: Path) -> None:
    """The same callback list with CSV only: training works, no W&B folder appears."""
    cfg = compose_config(
        "train",
        tmp_path / "run",
        ["logger=csv", "callbacks=[default,wandb]", "trainer.max_epochs=1", *SMALL],
    )
    loggers = _fit(cfg)
    assert [type(lg).__name__ for lg in loggers] == ["CSVLogger"]
    assert not (tmp_path / "run" / "wandb").exists()
    assert list((tmp_path / "run" / "csv").glob("version_*/metrics.csv"))


# --------------------------------------------------------------------------------------- pictures


def test_draw_contacts_marks_the_line_and_nothing_else() -> None:
    rgb = np.zeros((40, 60, 3), np.uint8)
    line = ContactLine(pixels=np.array([[30.0, 0.0], [30.0, 40.0]]), confidence=0.9)
    out = draw_contacts(rgb, [line], width=1)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and out is not rgb
    red = np.all(out == CONTACT_COLOR, axis=-1)
    cols = np.unique(np.nonzero(red)[1])
    assert red.sum() >= 40 and set(cols.tolist()) <= {29, 30}
    assert rgb.max() == 0  # the input is untouched


def test_confusion_rows_and_heatmap() -> None:
    m = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    norm = row_normalised(m)
    np.testing.assert_allclose(norm[:2].sum(axis=1), 1.0)
    assert np.isnan(norm[2]).all()  # no "other" pixels in the ground truth: undefined, not zero
    rows = confusion_rows(m, CLASS_NAMES)
    assert rows[0] == ["smooth_volcanic", "smooth_volcanic", 8, 0.8] and rows[-1][3] is None
    img = confusion_heatmap(m, CLASS_NAMES, title="val")
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.std() > 10
    with pytest.raises(ValueError, match="class names"):
        confusion_rows(m, CLASS_NAMES[:2])


def test_git_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = git_info(REPO_ROOT)
    if info["commit"] != "unknown":  # the repository may be exported without .git
        assert len(info["commit"]) == 40 and isinstance(info["dirty"], bool)
    assert git_info(tmp_path) == {"commit": "unknown", "dirty": "unknown"}
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    assert git_info(REPO_ROOT) == {"commit": "unknown", "dirty": "unknown"}


def test_the_recorded_git_commit_is_the_codes_wherever_the_run_is_launched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run launched from a folder of another repository (a thesis repository holding the images) recorded
    that repository's commit as the code's on the dashboard; from any other folder, "unknown"."""
    code = git_info(REPO_ROOT)
    if code["commit"] == "unknown":
        pytest.skip("the repository was exported without .git")
    other = tmp_path / "thesis"
    other.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=other, check=True)
    (other / "notes.txt").write_text("sol 120\n")
    subprocess.run([*git, "add", "notes.txt"], cwd=other, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "notes"], cwd=other, check=True)
    assert git_info(other)["commit"] != code["commit"]
    monkeypatch.chdir(other)
    cfg = OmegaConf.create({"paths": {"root_dir": str(other)}, "data": {"name": "synthetic"}})
    assert wandb_setup.run_context(cfg)["git"]["commit"] == code["commit"]


def test_an_installed_copy_of_the_code_inside_another_repository_records_no_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pip install .`` (not editable) into a virtual environment kept in another repository (a thesis
    repository's git-ignored ``.venv``) runs a copy of the code that git does not track there: the dashboard
    recorded that repository's commit and dirty flag as the code's. A folder git does not track is now
    "unknown", as a folder outside any repository is."""
    other = tmp_path / "thesis"
    package = other / ".venv" / "lib" / "python3.11" / "site-packages" / "marsunits" / "tracking"
    package.mkdir(parents=True)
    (package / "wandb_setup.py").write_text("# the installed copy\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=other, check=True)
    (other / ".gitignore").write_text(".venv/\n")
    (other / "notes.txt").write_text("sol 120\n")
    subprocess.run([*git, "add", ".gitignore", "notes.txt"], cwd=other, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "notes"], cwd=other, check=True)
    assert git_info(other)["commit"] != "unknown"  # the repository itself is read
    assert git_info(package) == {"commit": "unknown", "dirty": "unknown"}
    monkeypatch.setattr(wandb_setup, "__file__", str(package / "wandb_setup.py"))
    cfg = OmegaConf.create({"paths": {"root_dir": str(other)}, "data": {"name": "synthetic"}})
    assert wandb_setup.run_context(cfg)["git"] == {"commit": "unknown", "dirty": "unknown"}


def test_building_the_package_in_the_checkout_leaves_it_clean() -> None:
    """``pip install .`` or ``pip wheel .`` in the checkout leaves setuptools' ``build/`` there (and
    ``python -m build`` a ``dist/``): git listed them as untracked, so every later run's dirty flag was True
    although no file of the code had changed. Both folders are git-ignored."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs a git checkout of the project")
    built = [
        "build/lib/marsunits/__init__.py",
        "build/bdist.linux-x86_64/wheel",
        "dist/marsunits-0.1.0.tar.gz",
    ]
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", "--", *built], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert sorted(checked.stdout.split()) == sorted(built), checked.stdout + checked.stderr


# ------------------------------------------------------------------------------------ prediction run


def test_log_prediction_run_offline(
    wandb_offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "pred"
    (out / "site_a").mkdir(parents=True)
    Image.fromarray(np.full((16, 24, 3), 120, np.uint8)).save(out / "site_a" / "img1.overlay.png")
    rows = [
        {
            "path": "site_a/img1.png",
            "status": "ok",
            "frac_smooth_volcanic": "0.6",
            "frac_rough_olivine": "0.3",
            "frac_other": "0.1",
            "contact_length_px": "41.5",
            "contact_confidence": "0.8",
            "seconds": "0.2",
        },
        {"path": "img2.png", "status": "error: unreadable", "frac_smooth_volcanic": "", "seconds": "0.0"},
    ]
    cfg = OmegaConf.create(
        {
            "task_name": "predict",
            "run_name": "p1",
            "paths": {"output_dir": str(tmp_path / "hydra_run")},
            "logger": {"wandb": OmegaConf.load(CONFIG_DIR / "logger" / "wandb.yaml").wandb},
        }
    )
    run_id = log_prediction_run(out, rows, {"n_ok": 1, "n_error": 1, "seconds": 0.2}, cfg)
    (run_dir,) = (tmp_path / "hydra_run" / "wandb").glob(f"offline-run-*-{run_id}")
    rec = _read_run(run_dir)
    assert rec["run"] == {"run_id": run_id, "job_type": "predict", "name": "p1", "group": "predict"}
    summary = {k: v for row in rec["history"] for k, v in row.items()}
    assert summary["predict/n_ok"] == 1 and summary["predict/n_error"] == 1
    # A table with images is stored as a run artifact (uploaded by `wandb sync`); find its table file.
    staged = _artifacts(run_dir)["run_table"]
    table = json.loads(staged["predictions.table.json"].read_text())
    overlay_entries = [p for p in staged if p.endswith("img1.overlay.png")]
    assert len(overlay_entries) == 1 and staged[overlay_entries[0]].read_bytes()[:4] == b"\x89PNG"
    cols = table["columns"]
    assert cols[:3] == ["overlay", "path", "status"] and "contact_length_px" in cols
    first, second = table["data"]
    assert first[cols.index("contact_length_px")] == 41.5 and first[cols.index("frac_smooth_volcanic")] == 0.6
    assert first[0]["_type"] == "image-file" and first[0]["path"] == overlay_entries[0] and second[0] is None
    assert second[cols.index("status")] == "error: unreadable"


def test_a_prediction_run_stopped_while_wandb_closes_still_says_where_it_is(
    wandb_offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """predict.py logger=wandb stopped (SIGTERM) while ``wandb.finish`` closes its offline run: the line
    naming the run's folder and its ``wandb sync`` came after the close and was lost. It is said before the
    stop goes on, with that the record may be incomplete."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "pred"
    out.mkdir()
    cfg = OmegaConf.create(
        {
            "task_name": "predict",
            "run_name": "p1",
            "paths": {"output_dir": str(tmp_path / "hydra_run")},
            "logger": {"wandb": OmegaConf.load(CONFIG_DIR / "logger" / "wandb.yaml").wandb},
        }
    )
    runs: list[Any] = []
    cls = wandb.sdk.wandb_run.Run
    finish = cls.finish

    def cut_short(self: Any, *args: Any, **kwargs: Any) -> None:
        runs.append(self)
        raise TerminatedError  # SIGTERM's exception, before W&B has written its last records

    monkeypatch.setattr(cls, "finish", cut_short)
    capsys.readouterr()
    try:
        with pytest.raises(TerminatedError):
            log_prediction_run(out, [{"path": "a.png", "status": "ok"}], {"n_ok": 1}, cfg)
    finally:
        monkeypatch.undo()
        for run in runs:
            finish(run)  # closes the run for the next tests (the stop left it open)
    (run,) = runs
    (run_dir,) = (tmp_path / "hydra_run" / "wandb").glob(f"offline-run-*-{run.id}")
    lines = [line for line in capsys.readouterr().out.splitlines() if "wandb sync" in line]
    assert lines == [
        f"[marsunits] W&B run {run.id} was stopped while closing, so its offline record in {run_dir} may be "
        f"incomplete; upload what it holds with: {sync_command(run_dir)}"
    ], lines


def test_a_prediction_run_with_names_that_are_not_utf8_is_logged_with_xnn(
    wandb_offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``predict.py logger=wandb`` on a folder named in Latin-1 bytes (Python holds ``caf<0xe9>`` as
    ``caf\\udce9``): wandb.init refused the command line (UTF-8 protobuf strings), and then the table, whose
    overlay's file name W&B keeps in its records, in UnicodeEncodeError, after every image was predicted.
    The run is logged, names as ``\\xNN`` as manifest.csv writes them; a W&B folder whose name is not UTF-8
    is refused before predicting."""
    from marsunits.errors import ConfigError
    from marsunits.inference.runner import check_logger

    monkeypatch.setenv("WANDB_MODE", "offline")
    name = os.fsdecode(b"caf\xe9")
    argv = ["predict.py", f"input_dir=/data/{name}", "logger=wandb"]
    monkeypatch.setattr(sys, "argv", argv[:])
    out = tmp_path / "pred"
    out.mkdir()
    Image.fromarray(np.full((16, 24, 3), 120, np.uint8)).save(out / f"{name}.overlay.png")
    rows = [{"path": f"{name}.png", "status": "ok", "seconds": "0.2"}]
    wandb_node = OmegaConf.load(CONFIG_DIR / "logger" / "wandb.yaml").wandb
    cfg = OmegaConf.create(
        {
            "task_name": "predict",
            "run_name": f"p{name}",
            "paths": {"output_dir": str(tmp_path / "hydra_run")},
            "logger": {"wandb": wandb_node},
        }
    )
    run_id = log_prediction_run(out, rows, {"n_ok": 1, "seconds": 0.2}, cfg)
    assert sys.argv == argv  # given back as it was
    (run_dir,) = (tmp_path / "hydra_run" / "wandb").glob(f"offline-run-*-{run_id}")
    assert _read_run(run_dir)["run"]["name"] == "pcaf\\xe9"
    staged = _artifacts(run_dir)["run_table"]
    table = json.loads(staged["predictions.table.json"].read_bytes().decode("utf-8"))
    ((image, path, status, _),) = table["data"]
    assert path == "caf\\xe9.png" and status == "ok"
    assert image["_type"] == "image-file" and staged[image["path"]].read_bytes()[:4] == b"\x89PNG"
    refused = r"W&B cannot keep its run files in .*/wcaf\\xe9: .*leave logger unset"
    with pytest.raises(ConfigError, match=refused):
        check_logger({"wandb": {"mode": "offline", "save_dir": str(tmp_path / f"w{name}")}})


def test_a_prediction_run_uploads_the_thumbnails_and_the_overlay_of_an_image_without_one(
    wandb_offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``predictions`` table uploaded every full-size overlay (0.7-3 MB for a panorama, up to 500 of
    them) where ``<stem>.thumb.jpg`` holds the same picture in 40-49 kB: it uploads the thumbnail, and the
    overlay of an image without one (a folder predicted before thumbnails were written), captions as before;
    a name that is not UTF-8 goes through Pillow and stays a JPEG."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "pred"
    (out / "site_a").mkdir(parents=True)
    odd = os.fsdecode(b"caf\xe9")
    overlay = np.full((16, 24, 3), 120, np.uint8)
    thumb = np.full((8, 12, 3), 60, np.uint8)
    for stem in ("site_a/new", "old", odd):
        Image.fromarray(overlay).save(out / f"{stem}.overlay.png")
    for stem in ("site_a/new", odd):
        Image.fromarray(thumb).save(out / f"{stem}.thumb.jpg", quality=85)
    rows = [{"path": p, "status": "ok"} for p in ("site_a/new.png", "old.tif", f"{odd}.png")]
    cfg = OmegaConf.create(
        {
            "task_name": "predict",
            "run_name": "p1",
            "paths": {"output_dir": str(tmp_path / "hydra_run")},
            "logger": {"wandb": OmegaConf.load(CONFIG_DIR / "logger" / "wandb.yaml").wandb},
        }
    )
    run_id = log_prediction_run(out, rows, {"n_ok": 3}, cfg)
    (run_dir,) = (tmp_path / "hydra_run" / "wandb").glob(f"offline-run-*-{run_id}")
    staged = _artifacts(run_dir)["run_table"]
    table = json.loads(staged["predictions.table.json"].read_bytes().decode("utf-8"))
    cells = {row[1]: row[0] for row in table["data"]}
    assert set(cells) == {"site_a/new.png", "old.tif", "caf\\xe9.png"}
    for path, (magic, size) in {
        "site_a/new.png": (b"\xff\xd8\xff", (12, 8)),
        "old.tif": (b"\x89PNG", (24, 16)),
        "caf\\xe9.png": (b"\xff\xd8\xff", (12, 8)),
    }.items():
        image = cells[path]
        assert image["_type"] == "image-file" and image["caption"] == path, image
        assert staged[image["path"]].read_bytes()[: len(magic)] == magic, path
        with Image.open(staged[image["path"]]) as picture:
            assert picture.size == size, path


# ------------------------------------------------------------------------------------------ sweeps


def _fake_train(tmp_path: Path, task: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """A Hydra app on the real config tree (as train.py: ``import marsunits`` registers the resolver of the
    default paths) whose task function runs ``task`` (Python lines using ``cfg``; ``out`` is a file in
    ``tmp_path`` to append to), and a function that runs it with the given arguments in ``tmp_path``,
    W&B disabled. Sweeps are tested through it: training is tested elsewhere. The app imports no torch or
    Lightning (seconds a start; train.py defers them into its task): a task that needs them imports them."""
    app = tmp_path / "fake_train.py"
    header = f"""
        import json, math, hydra
        from omegaconf import DictConfig, OmegaConf
        import marsunits
        from marsunits.errors import ConfigError, quiet_interrupt_at_start
        from marsunits.sweep_trials import end_sweep, run_trial, stopped_sweep

        out = {str(tmp_path / "trials.jsonl")!r}

        @hydra.main(version_base="1.3", config_path={str(CONFIG_DIR)!r}, config_name="train")
        def main(cfg: DictConfig):
        """
    tail = '\ntry:\n    with quiet_interrupt_at_start("train.py"), stopped_sweep("train.py"):\n'
    tail += '        main()\nexcept BaseException as ended:\n    end_sweep("train.py", ended)\n    raise\n'
    tail += 'end_sweep("train.py")\n'  # as train.py
    app.write_text(textwrap.dedent(header) + textwrap.indent(textwrap.dedent(task), "    ") + tail)

    def launch(*args: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "trials.jsonl").unlink(missing_ok=True)
        return subprocess.run(
            [sys.executable, str(app), *args],
            capture_output=True,
            text=True,
            timeout=180,
            # PYTHONPATH kept: the package of the checkout under test, not the one the environment installed.
            env={
                "PATH": "/usr/bin:/bin",
                "WANDB_MODE": "disabled",
                "HOME": str(tmp_path),
                **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
            },
            cwd=tmp_path,
            # Ctrl-C as at a terminal: a shell's background job (a CI runner's, nohup ... &) starts with
            # SIGINT ignored, which Python then keeps, and the app's own Ctrl-C tests saw no Ctrl-C at all.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    return launch


def test_the_fake_train_py_ends_as_train_py_does() -> None:
    """The fake app's stop handling around ``main()`` (:func:`_fake_train`) is train.py's: the sweeps stopped
    between trials are tested through it in the default suite (train.py's own trials: a ``slow`` test)."""
    source = (REPO_ROOT / "train.py").read_text(encoding="utf-8")
    for line in (
        'with quiet_interrupt_at_start("train.py"), stopped_sweep("train.py"):',
        "except BaseException as ended:",
        'end_sweep("train.py", ended)',
        'end_sweep("train.py")',
        "return run_trial(",
    ):
        assert line in source, line


def _lines(tmp_path: Path) -> list[Any]:
    """What the fake app's trials appended to their file, one JSON value a line."""
    return [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]


def test_an_optuna_study_optimises_the_metric_that_chooses_the_kept_checkpoint(tmp_path: Path) -> None:
    """experiment=marsscapes_ai4mars keeps best.ckpt by val/miou_source_mean (each dataset counts once), but
    the study optimised the pooled val/miou, three quarters AI4Mars pixels."""
    from hydra.core.hydra_config import HydraConfig

    from marsunits.errors import ConfigError
    from marsunits.sweep_trials import objective_name

    try:
        for extra, metric in (
            ([], "val/miou"),
            (["experiment=marsscapes_ai4mars"], "val/miou_source_mean"),
            (["callbacks.model_checkpoint.monitor=null"], "val/miou"),  # no monitor: the default metric
            (["callbacks=[recovery]"], "val/miou"),
        ):
            cfg = compose_config("train", tmp_path, ["hparams_search=optuna", *extra])
            assert objective_name(cfg.optimized_metric, cfg) == metric
        # A monitor that is minimised while the study maximises (optuna.yaml's hydra.sweeper.direction, set
        # by compose_config as Hydra sets it): it would look for the worst trial.
        minimised = ["callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.mode=min"]
        cfg = compose_config("train", tmp_path, ["hparams_search=optuna", *minimised])
        with pytest.raises(ConfigError, match=r"set hydra.sweeper.direction=minimize"):
            objective_name(cfg.optimized_metric, cfg)
        # The monitor named: `-m hydra/sweeper=optuna optimized_metric=val/miou` minimised the mIoU (the
        # plugin's default direction) without a word.
        cfg = compose_config("train", tmp_path, ["hydra/sweeper=optuna", "optimized_metric=val/miou"])
        with pytest.raises(ConfigError, match=r"minimizes optimized_metric=val/miou, the kept checkpoint's"):
            objective_name(cfg.optimized_metric, cfg)
        cfg = compose_config("train", tmp_path, ["hydra/sweeper=optuna", "optimized_metric=val/loss"])
        assert objective_name(cfg.optimized_metric, cfg) == "val/loss"  # not the monitor: as given
        assert objective_name("val/miou", None) == "val/miou"  # a name given is kept
    finally:  # the composed Hydra config says MULTIRUN: later tests in this process are not in a sweep
        HydraConfig.instance().cfg = None  # type: ignore[assignment]


def test_a_study_whose_direction_disagrees_with_its_metric_stops_before_training(tmp_path: Path) -> None:
    """The direction check ran after each trial had trained, outside the user-error handling: every trial
    trained in full, each was recorded as failed, and the study ended in the sweeper's traceback."""
    launch = _fake_train(
        tmp_path,
        """
        def job():
            with open(out, "a") as fh:
                fh.write(json.dumps({"lr": cfg.model.lr}) + "\\n")
            return {"val/loss": 0.5}

        return run_trial(job, cfg, prog="train.py")  # as train.py
        """,
    )
    minimised = ["callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.mode=min"]
    study = launch("hparams_search=optuna", "hydra.sweeper.n_trials=5", *minimised)  # the study maximises
    assert study.returncode == 2, study.stderr[-3000:]
    assert not (tmp_path / "trials.jsonl").exists()  # no trial trained
    assert "set hydra.sweeper.direction=minimize" in study.stderr
    # Said once, by the sweeper before its first trial: three trials were refused in turn.
    assert study.stderr.count("set hydra.sweeper.direction=minimize") == 1
    assert "Traceback" not in study.stderr
    assert not list((tmp_path / "logs" / "train").glob("multirun-*/0"))  # no trial folder


def test_optuna_sweep_config_runs_with_the_installed_plugin(tmp_path: Path) -> None:
    """`hparams_search=optuna` composes with the real configs, Optuna samples the declared space, and every
    trial of one sweep shares a W&B group. The objective here is a cheap function of the sampled values
    (training is tested elsewhere); the app is the real config tree, only the task function differs.
    Run as a user types it, without paths or sweep folder given: the default paths used Hydra's
    ``${hydra:runtime.cwd}``, which a sweep cannot resolve before its first job, so every sweep failed."""
    launch = _fake_train(
        tmp_path,
        """
        rec = {"lr": cfg.model.lr, "encoder": cfg.model.encoder, "dice": cfg.model.dice_weight,
               "group": cfg.logger.wandb.group, "name": cfg.logger.wandb.name,
               "weights": cfg.model.encoder_weights, "metric": cfg.optimized_metric}
        with open(out, "a") as fh:
            fh.write(json.dumps(rec) + "\\n")
        return -abs(math.log10(cfg.model.lr) + 3.0) - cfg.model.dice_weight
        """,
    )
    done = launch(
        "hparams_search=optuna",
        "logger=wandb_csv",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    trials = _lines(tmp_path)
    assert len(trials) == 3
    assert all(1e-4 <= t["lr"] <= 1e-2 and 0.0 <= t["dice"] <= 1.0 for t in trials)
    assert {t["encoder"] for t in trials} <= {"efficientnet_lite0", "mobilenetv3_large_100", "resnet18"}
    assert len({t["group"] for t in trials}) == 1 and trials[0]["group"].startswith("optuna-")
    assert [t["name"] for t in trials] == ["trial-0", "trial-1", "trial-2"]
    assert all(t["weights"] is None and t["metric"] == "auto" for t in trials)  # the checkpoint's monitor
    (sweep_dir,) = (tmp_path / "logs" / "train").glob("multirun-*")  # under the launch directory
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert best.name == "optuna" and set(best.best_params) == {
        "model.lr",
        "model.encoder",
        "model.dice_weight",
    }
    assert best.best_value == max(-abs(np.log10(t["lr"]) + 3.0) - t["dice"] for t in trials)


def test_run_id_from_checkpoint_reads_metadata_or_hparams(tmp_path: Path) -> None:
    torch.save({"marsunits": {"wandb_run_id": "abc123"}}, tmp_path / "a.ckpt")
    torch.save({"hyper_parameters": {"wandb_run_id": "def456"}}, tmp_path / "b.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "c.ckpt")
    assert run_id_from_checkpoint(tmp_path / "a.ckpt") == "abc123"
    assert run_id_from_checkpoint(tmp_path / "b.ckpt") == "def456"
    assert run_id_from_checkpoint(tmp_path / "c.ckpt") is None
    assert run_id_from_checkpoint(None) is None
    # Under a folder named in Latin-1 bytes (torch maps only UTF-8 paths): it was read as "no run id", and a
    # resumed run started a new W&B run.
    latin1 = tmp_path / os.fsdecode(b"r\xe9") / "last.ckpt"
    latin1.parent.mkdir()
    torch.save({"marsunits": {"wandb_run_id": "abc123", "wandb_run_name": "r"}}, latin1)
    assert run_from_checkpoint(latin1) == {"id": "abc123", "name": "r"}


class _Payload:
    """Unpickling it touches a file: what a malicious checkpoint's code would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def test_run_id_lookup_runs_no_checkpoint_code_and_reads_packages(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
) -> None:
    """The run-id lookup unpickled checkpoints in full (``predict.py logger=wandb`` ran a shared checkpoint's
    code for a W&B label), and read a model package as having no run id, so the prediction run lost its
    link to the training run."""
    from marsunits.export import export_checkpoint
    from marsunits.model_package import JSON_NAME

    marker = tmp_path / "ran"
    torch.save({"marsunits": {"wandb_run_id": "abc123"}, "payload": _Payload(marker)}, tmp_path / "evil.ckpt")
    assert run_id_from_checkpoint(tmp_path / "evil.ckpt") is None and not marker.exists()
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    saved["marsunits"]["wandb_run_id"] = "2fds8bw3"
    torch.save(saved, tmp_path / "tracked.ckpt")
    assert run_id_from_checkpoint(tmp_path / "tracked.ckpt") == "2fds8bw3"  # a real checkpoint still reads
    package = export_checkpoint(ckpt_path=str(tmp_path / "tracked.ckpt"), out=str(tmp_path / "pkg"))
    assert run_id_from_checkpoint(package) == "2fds8bw3"
    assert run_id_from_checkpoint(package / JSON_NAME) == "2fds8bw3"


def test_the_sync_line_of_a_resumed_offline_run_names_every_part(tmp_path: Path) -> None:
    """A run resumed with ckpt_path=last continues the same W&B run in a new run folder; the printed
    `wandb sync` used to name only the newest part, so the first was never uploaded."""
    from marsunits.tracking.wandb_setup import offline_parts, sync_command

    first = tmp_path / "train" / "synthetic-a" / "wandb" / "offline-run-20261203_110000-abc123"
    second = tmp_path / "train" / "synthetic-b" / "wandb" / "offline-run-20261203_120000-abc123"
    other = tmp_path / "train" / "synthetic-c" / "wandb" / "offline-run-20261203_130000-zzz999"
    for d in (first, second, other):
        d.mkdir(parents=True)
    assert offline_parts(second, "abc123") == [first, second]
    assert offline_parts(other, "zzz999") == [other]
    assert sync_command(first, second).endswith(f"wandb sync {first} {second}")
    # A run continued from a sweep trial's checkpoint: the trial's part lies in multirun-<time>/<n>/; it was
    # left out of the command, whichever of the two parts asked.
    trial = tmp_path / "train" / "multirun-x" / "0" / "wandb" / "offline-run-20261203_100000-tri4l"
    later = tmp_path / "train" / "from-trial" / "wandb" / "offline-run-20261203_140000-tri4l"
    for d in (trial, later):
        d.mkdir(parents=True)
    assert offline_parts(later, "tri4l") == [trial, later]
    assert offline_parts(trial, "tri4l") == [trial, later]


def test_an_online_run_names_its_earlier_offline_parts_not_yet_uploaded(tmp_path: Path) -> None:
    """Trained offline in the field and resumed online at the office: the end of the run printed only the
    run's address, and the first part's epochs stayed on disk, never uploaded, with nothing saying so."""
    from types import SimpleNamespace

    from marsunits.tracking.wandb_setup import _finish_wandb

    field = tmp_path / "train" / "r" / "wandb" / "offline-run-20261203_110000-abc123"
    office = tmp_path / "train" / "r" / "wandb" / "run-20261204_090000-abc123"
    for d in (field, office):
        d.mkdir(parents=True)
    run = SimpleNamespace(
        id="abc123",
        offline=False,
        url="https://wandb.example/runs/abc123",
        settings=SimpleNamespace(sync_dir=str(office), mode="online"),
        finish=lambda exit_code: None,
    )
    logger: Any = SimpleNamespace(_experiment=run, experiment=run)
    line = _finish_wandb(logger, "success")
    assert line is not None and line.startswith("W&B run abc123: https://wandb.example/runs/abc123")
    assert line.endswith(f"wandb sync {field}") and str(office) not in line
    (field / "run-abc123.wandb.synced").touch()  # `wandb sync` uploaded it: nothing to say
    assert _finish_wandb(logger, "success") == "W&B run abc123: https://wandb.example/runs/abc123"


def test_the_sync_command_runs_without_the_environment_activated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``.venv/bin/python train.py`` leaves ``.venv/bin`` off PATH: a printed bare ``wandb sync`` was
    "command not found" there."""
    import sys

    from marsunits.tracking.wandb_setup import sync_command

    beside = Path(sys.executable).parent / "wandb"
    assert beside.is_file()  # the wandb package installs its command next to the Python that has it
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    assert sync_command(tmp_path / "run") == f"{beside} sync {tmp_path / 'run'}"
    monkeypatch.setenv("PATH", str(beside.parent))
    assert sync_command(tmp_path / "run") == f"wandb sync {tmp_path / 'run'}"


def test_the_tensorboard_command_runs_without_the_environment_activated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The closing ``tensorboard --logdir`` line of ``logger=tensorboard``, as the sync command: a bare
    ``tensorboard`` was "command not found" after ``.venv/bin/python train.py``."""
    import sys

    from lightning.pytorch.loggers import TensorBoardLogger

    from marsunits.tracking.wandb_setup import finish_loggers

    beside = Path(sys.executable).parent / "tensorboard"
    assert beside.is_file()  # the tensorboard package installs its command next to the Python that has it
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tensorboard", version="")
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    finish_loggers([logger], "success")
    assert f"TensorBoard: {beside} --logdir {logger.log_dir}" in capsys.readouterr().out
    monkeypatch.setenv("PATH", str(beside.parent))
    finish_loggers([logger], "success")
    assert f"TensorBoard: tensorboard --logdir {logger.log_dir}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("run", "failed", "stop", "line"),
    [
        (
            ["trial 0 (seed=1)"],
            ["trial 0 (seed=1)"],
            None,
            "the grid's only trial failed, with its error above: trial 0 (seed=1). The trial's folder holds "
            "its train.log",
        ),
        (
            ["trial 0 (seed=1)", "trial 1 (seed=2)"],
            ["trial 0 (seed=1)"],
            None,
            "1 of the grid's 2 trials failed, with its error above: trial 0 (seed=1); the other trials "
            "finished. Each trial's folder holds its train.log",
        ),
        (  # every trial failed: it went on "; the other trials finished"
            ["trial 0 (seed=1)", "trial 1 (seed=2)"],
            ["trial 0 (seed=1)", "trial 1 (seed=2)"],
            None,
            "2 of the grid's 2 trials failed, each with its error above: trial 0 (seed=1), trial 1 (seed=2). "
            "Each trial's folder holds its train.log",
        ),
        (
            ["trial 0 (seed=1)"],
            ["trial 0 (seed=1)"],
            KeyboardInterrupt(),
            "the only trial the grid started failed, with its error above: trial 0 (seed=1); the sweep was "
            "stopped in trial 0. The trial's folder holds its train.log",
        ),
    ],
)
def test_the_line_ending_a_grid_with_failed_trials_counts_them_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    run: list[str],
    failed: list[str],
    stop: BaseException | None,
    line: str,
) -> None:
    """The line ending a grid whose trials failed read "1 of the grid's 1 trials failed, each with its error
    above" (or "1 of the 1 trials the grid started") of a grid of one trial; of a grid whose every trial
    failed, it said "the other trials finished"."""
    from marsunits import sweep_trials

    monkeypatch.setattr(sweep_trials, "_grid", {"run": list(run), "failed": list(failed)})
    with contextlib.suppress(SystemExit):
        sweep_trials.end_sweep("train.py", stop)
    assert capsys.readouterr().err.strip() == f"train.py: error: {line}"


def test_a_failing_trial_fails_alone_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """A user error in one trial (a diverged learning rate, an impossible encoder depth) exited the whole
    process: the other trials of a grid never ran, and an in-memory Optuna study was lost."""
    launch = _fake_train(
        tmp_path,
        """
        def job():
            with open(out, "a") as fh:
                fh.write(json.dumps({"lr": cfg.model.lr}) + "\\n")
            if cfg.model.lr > 5e-3:
                raise ConfigError(f"training diverged at lr={cfg.model.lr}")
            return {"val/miou": -abs(math.log10(cfg.model.lr) + 3.0)}

        return run_trial(job, cfg, prog="train.py")  # as train.py
        """,
    )

    def sweep(*args: str) -> subprocess.CompletedProcess[str]:
        return launch(*args, "logger=csv")

    grid = sweep("-m", "model.lr=1e-3,1e-2,2e-3,3e-2")
    lrs = [row["lr"] for row in _lines(tmp_path)]
    assert lrs == [1e-3, 1e-2, 2e-3, 3e-2]  # the trial after the failing one ran
    assert grid.returncode == 1
    assert "train.py: error: training diverged at lr=0.01" in grid.stderr
    said = "trial 1 (model.lr=0.01 logger=csv) failed with the error above; the sweep's other trials run all"
    assert said in grid.stderr
    # The grid ends in one line naming the failed trials; Hydra's launcher ended it with a traceback.
    assert grid.stderr.rstrip().splitlines()[-1] == (
        "train.py: error: 2 of the grid's 4 trials failed, each with its error above: trial 1 (model.lr=0.01 "
        "logger=csv), trial 3 (model.lr=0.03 logger=csv); the other trials finished. Each trial's folder "
        "holds its train.log"
    )
    assert "Traceback" not in grid.stderr and "Error executing job" not in grid.stderr
    study = sweep(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.sampler.n_startup_trials=4",
        "model.lr=choice(0.001,0.01)",  # on the command line: replaces the config's search of model.lr
        "hydra.sweeper.sampler.seed=10",  # draws 0.001, 0.01, 0.001, 0.01 (checked with this Optuna)
    )
    assert study.returncode == 0, study.stderr[-3000:]
    lrs = [row["lr"] for row in _lines(tmp_path)]
    assert len(lrs) == 4 and 1e-2 in lrs and 1e-3 in lrs  # failed trials included, the study finished
    assert "train.py: error: training diverged at lr=0.01" in study.stderr
    assert "Error executing job with overrides: ['model.lr=0.01'" in study.stderr
    (results,) = (tmp_path / "logs" / "train").glob("multirun-*/optimization_results.yaml")
    assert OmegaConf.load(results).best_params["model.lr"] == 1e-3


def test_a_grid_ends_with_each_trials_score_and_the_best(tmp_path: Path) -> None:
    """``train.py -m model.lr=1e-3,2e-3`` ended with the last trial's own lines ("metrics written to
    .../1/metrics.json"): nothing compared the trials, and the best was found by opening each trial's
    ``metrics.json``. The grid ends with one line giving each finished trial's score of its kept checkpoint
    (the swept values alone naming it), and the best trial's ``best.ckpt``; a failed trial's line stays
    the last."""
    launch = _fake_train(
        tmp_path,
        """
        import pathlib
        def job():
            if cfg.model.lr > 5e-3:
                raise ConfigError(f"training diverged at lr={cfg.model.lr}")
            best = pathlib.Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
            return {"val/miou": {1e-3: 0.5, 2e-3: 0.7, 4e-3: 0.6}[cfg.model.lr], "best_ckpt": str(best)}

        return run_trial(job, cfg, prog="train.py")  # as train.py
        """,
    )
    grid = launch("-m", "model.lr=1e-3,2e-3,4e-3", "logger=csv")
    assert grid.returncode == 0, grid.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "train").glob("multirun-*")
    assert grid.stderr.rstrip().splitlines()[-1] == (
        "train.py: the grid's 3 trials finished; val/miou of each one's best.ckpt: trial 0 (model.lr=0.001) "
        "0.5, trial 1 (model.lr=0.002) 0.7, trial 2 (model.lr=0.004) 0.6. Best: trial 1, "
        f"{sweep / '1' / 'checkpoints' / 'best.ckpt'}"
    )
    failing = launch("-m", "model.lr=1e-3,1e-2,2e-3", "logger=csv")
    assert failing.returncode == 1
    *_, scores, failed = failing.stderr.rstrip().splitlines()
    assert scores.startswith(
        "train.py: 2 of the grid's 3 trials finished; val/miou of each one's best.ckpt: "
    )
    assert "trial 0 (model.lr=0.001) 0.5, trial 2 (model.lr=0.002) 0.7. Best: trial 2, " in scores
    assert failed.startswith("train.py: error: 1 of the grid's 3 trials failed")


def test_a_sweep_whose_first_trials_all_fail_stops_unless_they_diverged(tmp_path: Path) -> None:
    """With ``max_failure_rate: 1.0``, a mistake every trial shares (a wrong data path) ran every trial of a
    study or grid to the same error. The sweep now stops after the first three; diverged trials (a
    learning rate too high, what a sweep explores) do not count."""
    launch = _fake_train(
        tmp_path,
        """
        from marsunits.errors import DivergedError

        def job():
            with open(out, "a") as fh:
                fh.write(json.dumps({"lr": cfg.model.lr}) + "\\n")
            if cfg.model.weight_decay > 0.5:
                raise DivergedError(f"diverged at lr={cfg.model.lr}")
            raise ConfigError("data.root not set")

        return run_trial(job, cfg, prog="train.py")
        """,
    )
    lrs = "model.lr=1e-3,2e-3,3e-3,4e-3,5e-3"
    grid = launch("-m", lrs, "logger=csv")
    assert [row["lr"] for row in _lines(tmp_path)] == [1e-3, 2e-3, 3e-3]
    assert grid.returncode == 2
    assert "train.py: error: 3 trials of this sweep failed on user errors before any finished" in grid.stderr
    assert "trials failed, each with its error above" not in grid.stderr  # said: no second line
    diverged = launch("-m", lrs, "model.weight_decay=0.9", "logger=csv")
    assert len(_lines(tmp_path)) == 5  # every trial ran; one line naming the failed ones ends the grid
    assert diverged.returncode == 1 and "before any finished" not in diverged.stderr
    assert "5 of the grid's 5 trials failed" in diverged.stderr
    study = launch(
        "hparams_search=optuna", "hydra.sweeper.n_trials=6", "hydra.sweeper.sampler.n_startup_trials=6"
    )
    assert len(_lines(tmp_path)) == 3 and study.returncode == 2, study.stderr[-3000:]
    # A study whose every trial diverged asked Optuna for the best of no finished trial: a traceback.
    diverging = launch(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.sampler.n_startup_trials=4",
        "model.weight_decay=0.9",
    )
    assert len(_lines(tmp_path)) == 4 and diverging.returncode == 2, diverging.stderr[-3000:]
    assert "train.py: error: none of the 4 trials of this sweep gave a value" in diverging.stderr
    assert "Traceback" not in diverging.stderr


def test_a_grid_ended_by_a_crash_or_a_stop_still_names_its_failed_trials(tmp_path: Path) -> None:
    """A grid whose trials failed ended with one line naming them only when it ran to its end: a crash (not a
    user error) or a stop gave no line, or one that left the crashed trial out."""
    launch = _fake_train(
        tmp_path,
        """
        def job():
            with open(out, "a") as fh:
                fh.write(json.dumps({"seed": cfg.seed}) + "\\n")
            if cfg.seed == 2:
                raise ConfigError("data.root not set")
            if cfg.seed == 3:
                raise RuntimeError("a bug")
            if cfg.seed == 4 and cfg.get("stop"):
                raise KeyboardInterrupt
            return {"val/miou": 0.5}

        return run_trial(job, cfg, prog="train.py")  # as train.py
        """,
    )
    crashed = launch("-m", "seed=1,2,3,4", "logger=csv")
    assert [row["seed"] for row in _lines(tmp_path)] == [1, 2, 3, 4]  # Hydra ran the trial after the crash
    assert crashed.returncode == 1 and "RuntimeError: a bug" in crashed.stderr
    assert (
        crashed.stderr.rstrip()
        .splitlines()[-1]
        .startswith(
            "train.py: error: 2 of the grid's 4 trials failed, each with its error above: trial 1 (seed=2 "
            "logger=csv), trial 2 (seed=3 logger=csv); the other trials finished."
        )
    )
    shutil.rmtree(tmp_path / "logs")
    stopped = launch("-m", "seed=2,4,5", "logger=csv", "+stop=true")
    assert [row["seed"] for row in _lines(tmp_path)] == [2, 4]
    assert stopped.returncode == 130
    (sweep_dir,) = (tmp_path / "logs" / "train").glob("multirun-*")
    assert stopped.stderr.rstrip().splitlines()[-1] == (
        "train.py: interrupted (Ctrl-C) in trial 1 of the sweep; no trial finished; failed, with its error "
        f"above: trial 0 (seed=2 logger=csv +stop=True); stopped: trial 1 (folder 1 in {sweep_dir}); "
        "not started: the sweep's trials after trial 1, if any"
    )


def test_a_grid_stopped_by_sigterm_with_tracebacks_on_is_said_stopped(tmp_path: Path) -> None:
    """With MARSUNITS_TRACEBACK=1 a SIGTERM's TerminatedError leaves the trial with its traceback and ends the
    grid (derived from Exception, Hydra took it for a failed trial and ran the next one); the line naming the
    failed trials says the sweep was stopped, as for Ctrl-C, not that "the other trials finished"."""
    launch = _fake_train(
        tmp_path,
        """
        import os
        from marsunits.errors import TerminatedError

        def job():
            with open(out, "a") as fh:
                fh.write(json.dumps({"seed": cfg.seed}) + "\\n")
            if cfg.seed == 2:
                raise ConfigError("data.root not set")
            if cfg.seed == 4:
                os.environ["MARSUNITS_TRACEBACK"] = "1"
                raise TerminatedError
            return {"val/miou": 0.5}

        return run_trial(job, cfg, prog="train.py")  # as train.py
        """,
    )
    stopped = launch("-m", "seed=2,4,5", "logger=csv")
    assert [row["seed"] for row in _lines(tmp_path)] == [2, 4], stopped.stderr[-3000:]
    assert stopped.returncode != 0 and "TerminatedError" in stopped.stderr
    (sweep_dir,) = (tmp_path / "logs" / "train").glob("multirun-*")
    assert (
        "train.py: terminated (SIGTERM) in trial 1 of the sweep; no trial finished; failed, with its error "
        f"above: trial 0 (seed=2 logger=csv); stopped: trial 1 (folder 1 in {sweep_dir}); not started: "
        "the sweep's trials after trial 1, if any\nTraceback"
    ) in stopped.stderr, stopped.stderr[-3000:]


_SIGNAL_AT_JOB_END = '''
import os, signal
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback

class SignalAtJobEnd(Callback):
    """Sends this process the signal ``sig`` once Hydra has ended job ``after``, before the next starts;
    without ``after``, at the end of a run that is not a sweep (it has no job number)."""

    def __init__(self, sig: str, after: int | None = None) -> None:
        self.sig, self.after = getattr(signal, sig), after

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if self.after is None or HydraConfig.get().job.num == self.after:
            os.kill(os.getpid(), self.sig)
'''


def test_a_sweep_stopped_between_two_trials_says_which_finished(tmp_path: Path) -> None:
    """Between two trials (Hydra ending one and starting the next; Optuna sampling it), a SIGTERM had no
    handler and ended the sweep at once, status 143 without a word, and a Ctrl-C said "interrupted (Ctrl-C)
    before the run started; nothing was written"; an Optuna trial that had finished before it was told FAIL
    (Ctrl-C) or left RUNNING (SIGTERM) in the study's storage. Now one line names the trials that finished,
    where their folders are, those that failed, and those that did not start; status 130 or 143; and the
    study holds the finished trials' values, none RUNNING."""
    import optuna

    (tmp_path / "stopper.py").write_text(_SIGNAL_AT_JOB_END)  # beside the app: on its path
    launch = _fake_train(
        tmp_path,
        """
        def job():
            with open(out, "a") as fh:
                fh.write(json.dumps({"seed": cfg.seed}) + "\\n")
            if cfg.seed == 2:
                raise ConfigError("data.root not set")
            # Each trial its own value: the study must be told trial 1's, not another trial's.
            from hydra.core.hydra_config import HydraConfig

            return {"val/miou": 0.25 + 0.125 * HydraConfig.get().job.num}

        return run_trial(job, cfg, prog="train.py")  # as train.py
        """,
    )
    for sig, status, how in (
        ("SIGINT", 130, "interrupted (Ctrl-C)"),
        ("SIGTERM", 143, "terminated (SIGTERM)"),
    ):
        stop = ["+hydra.callbacks.stop._target_=stopper.SignalAtJobEnd", f"+hydra.callbacks.stop.sig={sig}"]
        grid = launch("-m", "seed=2,1,3,4", "logger=csv", *stop, "+hydra.callbacks.stop.after=1")
        assert [row["seed"] for row in _lines(tmp_path)] == [2, 1], grid.stderr[-3000:]
        assert grid.returncode == status, grid.stderr[-3000:]
        (sweep_dir,) = (tmp_path / "logs" / "train").glob("multirun-*")
        assert grid.stderr.rstrip().splitlines()[-1] == (
            f"train.py: {how} between two trials of the sweep, after trial 1; finished: trial 1 (folder 1 in "
            f"{sweep_dir}); failed, with its error above: trial 0 (seed=2 logger=csv); not started: the "
            "sweep's trials after trial 1, if any"
        )
        assert (sweep_dir / "1").is_dir() and not (sweep_dir / "2").exists()
        assert "before the run started" not in grid.stderr and "Traceback" not in grid.stderr
        shutil.rmtree(sweep_dir)
        study = launch(
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=5",
            f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}",
            f"hydra.sweeper.study_name={sig}",
            *stop,
            "+hydra.callbacks.stop.after=1",
        )
        assert len(_lines(tmp_path)) == 2 and study.returncode == status, study.stderr[-3000:]
        (sweep_dir,) = (tmp_path / "logs" / "train").glob("multirun-*")
        assert study.stderr.rstrip().splitlines()[-1] == (
            f"train.py: {how} between two trials of the sweep, after trial 1; finished: trials 0, 1 (folders "
            f"0, 1 in {sweep_dir}); not started: 3 of the study's 5 trials"
        )
        trials = optuna.load_study(study_name=sig, storage=f"sqlite:///{tmp_path / 'study.db'}").trials
        complete = optuna.trial.TrialState.COMPLETE
        assert [(t.state, t.value) for t in trials] == [(complete, 0.25), (complete, 0.375)]
        shutil.rmtree(sweep_dir)


def test_a_stop_after_a_run_finished_is_not_said_to_come_before_it_started(tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM after a run (not a sweep) had finished, while Hydra ended its job (its callbacks,
    its logs), said "before the run started; nothing was written": the run had written all it writes. It is
    said to have come after the run finished, its outputs kept; status 130 or 143 as before."""
    (tmp_path / "stopper.py").write_text(_SIGNAL_AT_JOB_END)  # beside the app: on its path
    launch = _fake_train(
        tmp_path,
        """
        def job():
            with open(out, "a") as fh:
                fh.write(json.dumps({"seed": cfg.seed}) + "\\n")
            return {"val/miou": 0.25}

        return run_trial(job, cfg, prog="train.py")  # as train.py
        """,
    )
    for sig, status, how in (
        ("SIGINT", 130, "interrupted (Ctrl-C)"),
        ("SIGTERM", 143, "terminated (SIGTERM)"),
    ):
        stop = ["+hydra.callbacks.stop._target_=stopper.SignalAtJobEnd", f"+hydra.callbacks.stop.sig={sig}"]
        run = launch("logger=csv", *stop)
        assert [row["seed"] for row in _lines(tmp_path)] == [42], run.stderr[-3000:]
        assert run.returncode == status, run.stderr[-3000:]
        assert run.stderr.rstrip().splitlines()[-1] == (
            f"train.py: {how} after the run finished; its outputs are kept"
        ), run.stderr[-3000:]
        assert "before the run started" not in run.stderr and "Traceback" not in run.stderr


def test_a_trial_stopped_by_ctrl_c_or_sigterm_is_told_failed_in_the_study(tmp_path: Path) -> None:
    """A stop in a trial (Ctrl-C, SIGTERM: status 130 or 143, which end the sweep) left that trial RUNNING in
    the study's storage, forever with a persistent one (``hydra.sweeper.storage=sqlite:///...``): the plugin
    tells a trial's state only once the launcher returns. The sweeper of ``hparams_search=optuna`` now tells
    it FAIL, as Optuna's own ``optimize`` does for Ctrl-C, before the stop goes on. (The storage here is an
    in-memory one kept by the test; a SQLite one is tested below.)"""
    import optuna
    from hydra import compose, initialize_config_dir
    from hydra.core.utils import JobReturn, JobStatus
    from hydra.utils import get_class

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        target = compose("train", ["hparams_search=optuna"], return_hydra_config=True).hydra.sweeper._target_

    class StoppedInSecondTrial:
        """Hydra's launcher as the sweeper sees it: the first trial gives a value, the second is stopped."""

        def __init__(self, stop: BaseException) -> None:
            self.stop = stop

        def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
            if initial_job_idx == 1:
                raise self.stop
            done = JobReturn(overrides=list(job_overrides[0]), status=JobStatus.COMPLETED)
            done.return_value = 0.5
            return [done]

    for number, stop in enumerate((SystemExit(130), SystemExit(143), KeyboardInterrupt())):
        storage = optuna.storages.InMemoryStorage()
        sweeper = get_class(target)(
            sampler=optuna.samplers.RandomSampler(seed=0),
            direction="maximize",
            storage=storage,
            study_name=f"s{number}",
            n_trials=3,
            n_jobs=1,
            max_failure_rate=1.0,
            search_space=None,
            custom_search_space=None,
            params=OmegaConf.create({"model.lr": "interval(0.0001, 0.01)"}),
        )
        impl = sweeper.sweeper  # set up as Hydra's setup() does, with the launcher above
        impl.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
        impl.hydra_context, impl.launcher, impl.job_idx = object(), StoppedInSecondTrial(stop), 0
        with pytest.raises(type(stop)):
            sweeper.sweep(["logger=csv"])
        study = optuna.load_study(study_name=f"s{number}", storage=storage)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL], (stop, states)


def test_the_optuna_sweeper_chosen_by_its_plugin_name_tells_a_stopped_trial_failed(tmp_path: Path) -> None:
    """``-m hydra/sweeper=optuna`` (the plugin's name for its sweeper, as Hydra's documentation gives it)
    got the plugin's class, not marsunits' (``hparams_search=optuna``'s): a trial stopped by Ctrl-C stayed
    RUNNING in the study's database. Another application's configs still get the plugin's class."""
    import optuna
    from hydra import compose, initialize_config_dir

    launch = _fake_train(
        tmp_path,
        """
        import os

        def job():
            done = len(open(out).readlines()) if os.path.exists(out) else 0
            with open(out, "a") as fh:
                fh.write(json.dumps({"lr": cfg.model.lr}) + "\\n")
            if done == 1:
                raise KeyboardInterrupt  # Ctrl-C in the second trial
            return {"val/miou": 0.5}

        return run_trial(job, cfg, prog="train.py")  # as train.py
        """,
    )
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    stopped = launch(
        "-m",
        "hydra/sweeper=optuna",
        "model.lr=interval(0.0001,0.01)",
        "optimized_metric=val/miou",
        "hydra.sweeper.direction=maximize",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=1",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=direct",
    )
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert len(_lines(tmp_path)) == 2
    states = [t.state for t in optuna.load_study(study_name="direct", storage=storage).get_trials()]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    # Every other setting is the plugin's (its defaults, and its sampler group).
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        direct = compose("train", ["hydra/sweeper=optuna"], return_hydra_config=True).hydra.sweeper
    assert direct._target_ == "hydra_plugins.marsunits_sweeper.optuna_sweeper.MarsunitsOptunaSweeper"
    assert direct.n_trials == 20 and direct.n_jobs == 2 and direct.sampler._target_.endswith("TPESampler")
    other = tmp_path / "other_app"
    other.mkdir()
    (other / "config.yaml").write_text("x: 1\n")
    with initialize_config_dir(config_dir=str(other), version_base="1.3"):
        plain = compose("config", ["hydra/sweeper=optuna"], return_hydra_config=True).hydra.sweeper
    assert plain._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def test_an_optuna_study_without_an_objective_stops_before_its_first_trial(tmp_path: Path) -> None:
    """``-m hydra/sweeper=optuna`` without ``hparams_search=optuna`` leaves ``optimized_metric: null``:
    train.py returned no value, so every trial trained in full, was told failed, and the study ended in the
    sweeper's traceback (``No trials are completed yet``). It stops in one line before any trial; with the
    objective the line names, it runs."""
    launch = _fake_train(
        tmp_path,
        """
        def job():
            with open(out, "a") as fh:
                fh.write(json.dumps({"lr": cfg.model.lr}) + "\\n")
            return {"val/miou": -abs(math.log10(cfg.model.lr) + 3.0)}

        return run_trial(job, cfg, prog="train.py")  # as train.py
        """,
    )
    study = ("-m", "hydra/sweeper=optuna", "model.lr=interval(0.0001,0.01)", "hydra.sweeper.n_trials=2")
    refused = launch(*study)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert not (tmp_path / "trials.jsonl").exists() and "Traceback" not in refused.stderr
    assert "train.py: error: optimized_metric is null: an Optuna study (hydra/sweeper" in refused.stderr
    named = launch(*study, "optimized_metric=auto", "hydra.sweeper.direction=maximize")  # what the line says
    assert named.returncode == 0, named.stderr[-3000:]
    assert len(_lines(tmp_path)) == 2


def test_an_optuna_study_kept_in_a_sqlite_database_holds_its_trials_and_resumes(tmp_path: Path) -> None:
    """``hydra.sweeper.storage=sqlite:///...`` (a study kept on disk, resumed by its name) failed before its
    first trial: Optuna 2.x, which hydra-optuna-sweeper pins, does not work with SQLAlchemy 2
    (``AssertionError`` in ``get_current_version``). pyproject.toml now asks for SQLAlchemy < 2."""
    import optuna

    launch = _fake_train(
        tmp_path,
        """
        with open(out, "a") as fh:
            fh.write(json.dumps({"lr": cfg.model.lr}) + "\\n")
        return -abs(math.log10(cfg.model.lr) + 3.0)
        """,
    )
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study_args = (
        "hparams_search=optuna",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.n_trials=2",  # of optuna.yaml's 8 random start-up trials, as the second run's
    )
    first = launch(*study_args)
    assert first.returncode == 0, first.stderr[-3000:]
    lrs = [t["lr"] for t in _lines(tmp_path)]
    kept = optuna.load_study(study_name="marsunits", storage=storage).get_trials()
    assert [t.state for t in kept] == [optuna.trial.TrialState.COMPLETE] * 2
    assert [t.params["model.lr"] for t in kept] == pytest.approx(lrs)
    assert [t.value for t in kept] == pytest.approx([-abs(np.log10(lr) + 3.0) for lr in lrs])
    again = launch(*study_args)  # the same study name: the study goes on in the database
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = optuna.load_study(study_name="marsunits", storage=storage).get_trials()
    assert len(resumed) == 4 and [t.number for t in resumed] == [0, 1, 2, 3]
    assert [t.params for t in resumed[:2]] == [t.params for t in kept]  # the first run's trials kept
    assert [t.params["model.lr"] for t in resumed[2:]] == pytest.approx([t["lr"] for t in _lines(tmp_path)])
    # New draws: the sampler's fixed seed (optuna.yaml's 1234) drew the first run's trials again, each
    # trained again for nothing while the study was in its random start-up trials.
    assert all(t.params != k.params for t in resumed[2:] for k in kept)


def test_a_resumed_study_says_how_many_trials_it_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The line of a study resumed from its database counts its earlier trials; of one it read "holds 1
    trials of earlier sweeps: it goes on with them"."""
    import optuna

    from marsunits.optuna_study import draw_anew_in_a_resumed_study

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s")
    said = []
    for n in (1, 2):
        study.optimize(lambda t: t.suggest_float("x", 0, 1), 1)
        with caplog.at_level("INFO", logger="marsunits.optuna_study"):
            assert draw_anew_in_a_resumed_study(optuna.samplers.TPESampler(seed=1), storage, "s") == n
        said.append(caplog.records[-1].getMessage())
    assert said[0].startswith(
        "the study s holds 1 trial of an earlier sweep: it goes on with it, its sampler"
    )
    assert said[1].startswith(
        "the study s holds 2 trials of earlier sweeps: it goes on with them, its sampler"
    )


def test_a_database_study_on_sqlalchemy_2_is_refused_in_one_line_naming_the_fix(tmp_path: Path) -> None:
    """An environment of the user's own with SQLAlchemy 2 (pyproject.toml asks for < 2): a study kept in a
    database ended before its first trial in Optuna's ``AssertionError`` traceback, which named no fix."""
    launch = _fake_train(
        tmp_path,
        """
        with open(out, "a") as fh:
            fh.write("{}\\n")
        return 0.5
        """,
    )
    app = tmp_path / "fake_train.py"
    # SQLAlchemy 2 as the sweeper sees it (Optuna, imported first, refuses to import with it at all).
    said = 'import marsunits.optuna_study, sqlalchemy\nsqlalchemy.__version__ = "2.1.9"\n'
    app.write_text(said + app.read_text())
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    refused = launch("hparams_search=optuna", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=2")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "Traceback" not in refused.stderr and "AssertionError" not in refused.stderr
    error = [line for line in refused.stderr.splitlines() if line.startswith("train.py: error: ")]
    assert len(error) == 1, refused.stderr[-3000:]
    assert f"hydra.sweeper.storage={storage}: " in error[0] and "SQLAlchemy 2.1.9" in error[0]
    assert f'{sys.executable} -m pip install "sqlalchemy<2" "alembic<1.20"' in error[0]
    assert not (tmp_path / "trials.jsonl").exists() and not (tmp_path / "study.db").exists()
    in_memory = launch("hparams_search=optuna", "hydra.sweeper.n_trials=2")  # no database: no SQLAlchemy
    assert in_memory.returncode == 0, in_memory.stderr[-3000:]
    assert len(_lines(tmp_path)) == 2


def test_a_study_database_in_a_folder_not_yet_made_gets_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hydra.sweeper.storage=sqlite:///studies/optuna.db`` in a folder that did not exist (a launch folder
    without ``logs/``, ``$MARSUNITS_ROOT`` elsewhere) ended in SQLite's ``unable to open database file``
    traceback, naming no file; a URL SQLAlchemy cannot read ended in its traceback."""
    import optuna

    from marsunits.errors import ConfigError
    from marsunits.optuna_study import prepare_storage

    monkeypatch.chdir(tmp_path)
    for storage, made in (
        ("sqlite:///studies/optuna.db", tmp_path / "studies"),  # relative to the current folder, as SQLite
        (f"sqlite:///{tmp_path / 'a' / 'b' / 'optuna.db'}", tmp_path / "a" / "b"),
        ("sqlite+pysqlite:///driver/optuna.db", tmp_path / "driver"),  # SQLAlchemy's driver named
    ):
        prepare_storage(storage)
        assert made.is_dir()
        optuna.create_study(storage=storage, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), 1)
        assert len(optuna.load_study(study_name="s", storage=storage).trials) == 1
    for untouched in (None, "sqlite:///:memory:", "sqlite://", "redis://localhost:6379"):
        prepare_storage(untouched)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"sqlite:///file/optuna.db: cannot make the database's folder"):
        prepare_storage("sqlite:///file/optuna.db")
    with pytest.raises(ConfigError, match=r"storage=sqlite:/x.db: not a database URL .* sqlite:///<path>"):
        prepare_storage("sqlite:/x.db")


#: The settings Hydra passes a study's sweeper (the plugin's registered config): one trial, in memory.
_STUDY_SWEEPER_SETTINGS: dict[str, Any] = dict(
    sampler=None,
    direction="maximize",
    storage=None,
    study_name="s",
    n_trials=1,
    n_jobs=1,
    max_failure_rate=1.0,
    search_space=None,
    custom_search_space=None,
    params=None,
)


def test_a_study_database_under_the_home_folder_is_kept_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hydra.sweeper.storage=sqlite:///~/studies/optuna.db``: SQLite does not read ``~``, and making the
    database's folder made a folder named ``~`` in the current one (the study kept there, and the home
    folder one ``rm -rf ~`` away from whoever cleans it up). ``~`` is read as the home folder, as for the
    other paths of a command line (``paths.log_dir=~/runs``), and the sweeper keeps the study there."""
    import optuna
    from hydra.utils import get_class

    from marsunits.optuna_study import prepare_storage

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    given = "sqlite:///~/studies/optuna.db?timeout=20"
    expected = f"sqlite:///{home}/studies/optuna.db?timeout=20"
    assert prepare_storage(given) == expected
    assert (home / "studies").is_dir() and not (work / "~").exists()
    for kept in (None, "sqlite:///studies/optuna.db", "postgresql://me:p~w@db.example/optuna"):
        assert prepare_storage(kept) == kept  # in memory, a path from the current folder, another database
    settings = {**_STUDY_SWEEPER_SETTINGS, "storage": given}
    sweeper = get_class("hydra_plugins.marsunits_sweeper.optuna_sweeper.MarsunitsOptunaSweeper")(
        **settings
    ).sweeper
    assert sweeper.storage == expected  # the study is made there, and resumed from there
    optuna.create_study(storage=sweeper.storage, study_name="s").optimize(
        lambda t: t.suggest_float("x", 0, 1), 1
    )
    assert (home / "studies" / "optuna.db").is_file() and not (work / "~").exists()


def test_the_study_sweeper_takes_the_settings_of_a_newer_optuna_plugin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """hparams_search=optuna's sweeper copied the plugin's constructor signature: a plugin release that adds
    a setting to its sweeper (Hydra passes every field of the plugin's registered config) made every study
    fail with ``TypeError: unexpected keyword argument`` before its first trial. The settings, and the
    arguments of the batch hook it records trials in, are passed through to the plugin as given."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        target = compose("train", ["hparams_search=optuna"], return_hydra_config=True).hydra.sweeper._target_
    plugin_init = OptunaSweeperImpl.__init__

    def newer_init(self: Any, *args: Any, warm_start: int = 0, **kwargs: Any) -> None:
        plugin_init(self, *args, **kwargs)
        self.warm_start = warm_start

    def newer_configure(self: Any, trials: Any, *args: Any, pruned: Any = None, **kwargs: Any) -> Any:
        return [("newer",) for _ in trials]

    monkeypatch.setattr(OptunaSweeperImpl, "__init__", newer_init)
    monkeypatch.setattr(OptunaSweeperImpl, "_configure_trials", newer_configure)
    impl = get_class(target)(**_STUDY_SWEEPER_SETTINGS, warm_start=3).sweeper
    assert impl.warm_start == 3 and impl.study_name == "s"
    asked = [object()]
    assert impl._configure_trials(asked, {}, {}, pruned=[]) == [("newer",)]
    assert impl._asked == asked  # still recorded, to be told FAIL by a stop


def test_a_study_whose_trials_give_no_value_ends_in_one_line(tmp_path: Path) -> None:
    """Trials that finish without the metric (no validation: trainer.limit_val_batches=0) counted as
    finished, so a study of only such trials ended in the sweeper's traceback for the best of no trial."""
    launch = _fake_train(
        tmp_path,
        """
        def job():
            with open(out, "a") as fh:
                fh.write(json.dumps({"lr": cfg.model.lr}) + "\\n")
            return {"train/loss": 0.5}  # no val/miou

        return run_trial(job, cfg, prog="train.py")
        """,
    )
    study = launch(
        "hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2"
    )
    assert len(_lines(tmp_path)) == 2 and study.returncode == 2, study.stderr[-3000:]
    assert "has no finite val/miou (None) to optimise" in study.stderr
    assert "train.py: error: none of the 2 trials of this sweep gave a value" in study.stderr
    assert "Traceback" not in study.stderr


def test_the_run_id_is_kept_without_the_dashboard_callbacks(
    tmp_path: Path, wandb_offline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the optional dashboard callbacks stored the W&B run id in the checkpoint, so with
    ``callbacks=[default] logger=wandb`` every ``ckpt_path=last`` started a new W&B run."""
    from marsunits.training import run

    monkeypatch.setenv("WANDB_MODE", "offline")
    overrides = [*SMALL, "callbacks=[default]", "logger=wandb", "trainer.max_epochs=1", "test=false"]
    run(compose_config("train", tmp_path / "r", overrides))
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"
    run_id = run_id_from_checkpoint(last)
    assert run_id and list((tmp_path / "r" / "wandb").glob(f"offline-run-*-{run_id}"))
    # The run's summary holds the kept checkpoint's scores, as metrics.json does.
    (offline_dir,) = (tmp_path / "r" / "wandb").glob(f"offline-run-*-{run_id}")
    written = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert _read_run(offline_dir)["summary"]["val/miou"] == pytest.approx(written["val/miou"])


def test_a_resumed_run_stores_the_wandb_run_it_logged_to(
    tmp_path: Path, wandb_offline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint's metadata, restored after the callbacks' ``setup``, put the earlier part's W&B run
    back on the task: a part resumed with ``logger.wandb.name=``/``group=`` stored the old name and group
    (the next resume renamed the run back), and one whose earlier part had no W&B run stored no id (every
    resume started a new W&B run)."""
    from marsunits.training import run

    monkeypatch.setenv("WANDB_MODE", "offline")
    common = [*SMALL, "callbacks=[default]", "test=false", "run_name=r"]
    run(compose_config("train", tmp_path / "r", [*common, "logger=csv", "trainer.max_epochs=1"]))
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"
    assert run_from_checkpoint(last) == {}
    again = ["logger=wandb", "ckpt_path=last", "logger.wandb.name=renamed", "logger.wandb.group=final"]
    run(compose_config("train", tmp_path / "r", [*common, *again, "trainer.max_epochs=2"]))
    (offline_dir,) = (tmp_path / "r" / "wandb").glob("offline-run-*")
    run_id = offline_dir.name.rsplit("-", 1)[1]
    assert run_from_checkpoint(last) == {"id": run_id, "name": "renamed", "group": "final"}


def test_the_wandb_summary_holds_the_kept_checkpoints_scores() -> None:
    """The post-fit score of best.ckpt is no longer logged as an extra epoch; the runs table (the summary)
    must still show the kept checkpoint's scores, not the last epoch's. (The run is a stand-in: a real
    offline run here depended on W&B state that earlier tests in the file leave behind.)"""
    from types import SimpleNamespace

    from lightning.pytorch.loggers import WandbLogger

    from marsunits.training import _summarise_kept_checkpoint

    logger = WandbLogger(project="marsunits", offline=True)
    summary = {"val/miou": 0.9, "train/loss": 0.1}  # the last epoch's
    logger._experiment = SimpleNamespace(summary=summary)
    _summarise_kept_checkpoint([logger], {"val/miou": 0.95, "val/iou_other": 0.99, "test/miou": 0.5})
    assert summary == {"val/miou": 0.95, "val/iou_other": 0.99, "train/loss": 0.1}  # test/* comes from test


def test_grid_trials_get_their_own_wandb_names_and_one_group(tmp_path: Path) -> None:
    """Every trial of ``train.py -m ...`` had the same W&B name (the sweep's start time) and the group of
    every ordinary run of the task; single runs and names a config sets itself are left as they are."""
    from marsunits.tracking.wandb_setup import sweep_trial_names

    launch = _fake_train(
        tmp_path,
        """
        from marsunits.tracking.wandb_setup import sweep_trial_names  # Lightning: seconds, only here

        spec = OmegaConf.to_container(cfg.logger.wandb, resolve=True)
        named = sweep_trial_names(spec, cfg.run_name, cfg.task_name)
        with open(out, "a") as fh:
            fh.write(json.dumps([named["name"], named["group"], cfg.run_name]) + "\\n")
        """,
    )
    done = launch("-m", "model.lr=1e-3,2e-3", "logger=wandb")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _lines(tmp_path)
    (sweep_dir,) = (tmp_path / "logs" / "train").glob("multirun-*")
    assert [name for name, _, _ in rows] == [f"{rows[0][2]}-0", f"{rows[0][2]}-1"]
    assert {group for _, group, _ in rows} == {f"train-{sweep_dir.name}"}
    spec = {"name": "synthetic-x", "group": "train"}
    assert sweep_trial_names(spec, "synthetic-x", "train") == spec  # not in a sweep: unchanged


def test_the_wandb_checks_keep_their_names_in_wandb_setup() -> None:
    """The W&B checks that need no logger moved to ``marsunits.tracking.wandb_checks`` (no Lightning, for
    predict.py's checks before Hydra: ``test_cli_overrides.py``'s no-torch test); code that imported them
    from ``wandb_setup`` gets the same functions."""
    from marsunits.tracking import wandb_checks

    names = (
        "WANDB_MODES",
        "checked_wandb_mode",
        "check_wandb_staging",
        "check_wandb_folder",
        "check_wandb_modes",
    )
    for name in names:
        assert getattr(wandb_setup, name) is getattr(wandb_checks, name), name


def test_a_wandb_logger_node_is_told_by_its_target_as_by_its_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``is_wandb_node`` tells Lightning's own loggers by their ``_target_``'s name (train.py's check of
    ``logger.wandb.mode`` imported Lightning's ``WandbLogger`` to ask: seconds for a one-line refusal). The
    name says what the class says, for every logger Lightning has under either of its paths; a class of
    one's own is asked as before (a subclass of ``WandbLogger`` is a W&B logger), and a target that does
    not import is none (the ``_target_`` check refuses it)."""
    import inspect

    from lightning.pytorch import loggers
    from lightning.pytorch.loggers import WandbLogger

    from marsunits.tracking.wandb_checks import is_wandb_node

    def node(target: str) -> Any:
        return OmegaConf.create({"_target_": target, "project": "p"})

    classes = [
        c for c in vars(loggers).values() if inspect.isclass(c) and c.__module__.startswith(loggers.__name__)
    ]
    assert WandbLogger in classes and len(classes) >= 4, classes
    for cls in classes:
        for target in (f"{loggers.__name__}.{cls.__name__}", f"{cls.__module__}.{cls.__qualname__}"):
            assert is_wandb_node(node(target)) == issubclass(cls, WandbLogger), target
    (tmp_path / "my_loggers.py").write_text(
        "from lightning.pytorch.loggers import CSVLogger, WandbLogger\n"
        "class MyWandb(WandbLogger):\n    pass\n"
        "class MyCSV(CSVLogger):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert is_wandb_node(node("my_loggers.MyWandb")) and not is_wandb_node(node("my_loggers.MyCSV"))
    assert not is_wandb_node(node("my_loggers.Nope"))
    assert not is_wandb_node(node("no_such_module.WandbLogger"))
    assert not is_wandb_node(OmegaConf.create({"project": "p"})) and not is_wandb_node("wandb")


def test_an_unknown_wandb_mode_stops_before_the_run_writes_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``WANDB_MODE=bogus`` gave the right one-line error, but only after the run had written config.yaml
    and train.log, which a later ``ckpt_path=last`` compares with."""
    from marsunits.errors import ConfigError
    from marsunits.training import run

    monkeypatch.setenv("WANDB_MODE", "bogus")
    cfg = compose_config("train", tmp_path / "r", [*SMALL, "logger=wandb"])
    with pytest.raises(ConfigError, match=r"W&B mode 'bogus' .* is not one of"):
        run(cfg)
    assert not (tmp_path / "r" / "config.yaml").exists()
    # So does a log_model W&B cannot take (it was refused after the scenes were rendered).
    monkeypatch.setenv("WANDB_MODE", "offline")
    sometimes = ["logger=wandb", "logger.wandb.log_model=sometimes"]
    cfg = compose_config("train", tmp_path / "r", [*SMALL, *sometimes])
    with pytest.raises(ConfigError, match=r"log_model='sometimes': expected auto, true, false or all"):
        run(cfg)
    assert not (tmp_path / "r" / "config.yaml").exists()


def test_predict_refuses_an_unknown_wandb_mode_first_and_falls_back_offline(
    wandb_offline_env: Path,
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``predict.py logger=wandb`` refused ``WANDB_MODE=onlien`` only after predicting the whole folder, and
    an online run that could not start (an expired key, a server down) ended it with a traceback, status 1,
    where train.py logs offline."""
    import wandb

    from marsunits.errors import ConfigError
    from marsunits.inference import run
    from marsunits.tracking import prediction_run
    from test_predict import make_cfg, save_rgb

    save_rgb(tmp_path / "in" / "a.png", 40, 48)
    out = tmp_path / "out"
    monkeypatch.setenv("WANDB_MODE", "onlien")
    with pytest.raises(ConfigError, match=r"W&B mode 'onlien'"):
        run(make_cfg(tmp_path, ckpt, tmp_path / "in", out, "logger=wandb"))
    assert not (out / "a.mask.png").exists()  # refused before predicting

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setattr(prediction_run, "resolve_wandb_mode", lambda requested: ("online", None))
    real_init, modes = wandb.init, []

    def init(*args: Any, **kwargs: Any) -> Any:
        modes.append(kwargs["mode"])
        if kwargs["mode"] == "online":
            raise wandb.errors.CommError("401: invalid API key")
        return real_init(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", init)
    assert run(make_cfg(tmp_path, ckpt, tmp_path / "in", out, "logger=wandb")) == 0
    assert modes == ["online", "offline"] and (out / "a.mask.png").is_file()


def test_an_unwritable_wandb_data_folder_stops_before_training_or_predicting(
    wandb_offline_env: Path,
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """W&B stages the tables a run logs in ``$WANDB_DATA_DIR/artifacts/staging``; one it cannot write (a
    read-only home on a cluster node) stopped a training at the end of its first validation, after a whole
    epoch, and a prediction after every image was predicted."""
    from marsunits.errors import ConfigError
    from marsunits.inference import run as predict
    from marsunits.training import run as train
    from test_predict import make_cfg, save_rgb

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("WANDB_DATA_DIR", str(blocker / "wandb"))  # under a file: no one can write there
    monkeypatch.setenv("WANDB_MODE", "offline")
    refused = r"W&B cannot write .*a_file/wandb/artifacts/staging.*WANDB_DATA_DIR"
    with pytest.raises(ConfigError, match=refused):
        train(compose_config("train", tmp_path / "r", [*SMALL, "logger=wandb"]))
    assert not (tmp_path / "r" / "config.yaml").exists()
    save_rgb(tmp_path / "in" / "a.png", 40, 48)
    with pytest.raises(ConfigError, match=r"W&B cannot write"):
        predict(make_cfg(tmp_path, ckpt, tmp_path / "in", tmp_path / "out", "logger=wandb"))
    assert not (tmp_path / "out" / "a.mask.png").exists()
    monkeypatch.setenv("WANDB_MODE", "disabled")  # no W&B run: nothing to stage
    assert predict(make_cfg(tmp_path, ckpt, tmp_path / "in", tmp_path / "out", "logger=wandb")) == 0


def test_a_refused_callback_setting_starts_no_wandb_run(
    wandb_offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``callbacks.wandb_val_images.n_images=0`` was refused after the W&B run had started: every such slip
    left an empty run, never finished, in the project."""
    from hydra.errors import InstantiationException

    from marsunits.training import run

    monkeypatch.setenv("WANDB_MODE", "offline")
    bad = ["logger=wandb", "callbacks=[default,wandb]", "callbacks.wandb_val_images.n_images=0"]
    cfg = compose_config("train", tmp_path / "r", [*SMALL, *bad])
    with pytest.raises((ValueError, InstantiationException), match=r"n_images >= 1"):
        run(cfg)
    assert not list((tmp_path / "r").rglob("offline-run-*"))


def test_dashboard_callbacks_log_on_the_epochs_lightning_validates() -> None:
    """With validation every 2 epochs (epochs 1, 3, 5: the real-data experiments), every_n_epochs=2 never
    logged: the callbacks counted from epoch 0 and Lightning validates after epochs 1, 3, 5."""
    from marsunits.tracking.callbacks import _due

    def logged(validated: list[int], n: int) -> list[int]:
        return [e for k, e in enumerate(validated) if _due(e, n, first_validation=k == 0)]

    assert logged([1, 3, 5, 7], 2) == [1, 3, 5, 7]
    assert logged([1, 3, 5, 7], 4) == [1, 3, 7]
    assert logged([0, 1, 2, 3, 4], 1) == [0, 1, 2, 3, 4]
    assert logged([0, 1, 2, 3, 4, 5], 3) == [0, 2, 5]
    assert logged([1, 3], 0) == []


def test_the_followed_validation_images_are_fixed_after_the_first_validation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A validation set smaller than n_images filled up with the same images again from later epochs
    (a, b, a, b)."""
    from types import SimpleNamespace

    from marsunits.tracking import callbacks

    logged: list[dict] = []
    logger = SimpleNamespace(experiment=SimpleNamespace(log=lambda row, **kwargs: logged.append(row)))
    monkeypatch.setattr(callbacks, "find_wandb_logger", lambda trainer: logger)
    images = callbacks.WandbValidationImages(every_n_epochs=1, n_images=4)
    images._predict = lambda trainer, module: np.full((len(images._images), 3, 8, 8), 1 / 3, np.float32)  # type: ignore[method-assign]
    batch = {"image": torch.zeros(2, 3, 8, 8), "mask": torch.zeros(2, 8, 8), "path": ["a.png", "b.png"]}
    for epoch in range(3):  # three validations of a fit, each ending with its epoch-end hook
        trainer = SimpleNamespace(
            state=SimpleNamespace(fn="fit"),
            current_epoch=epoch,
            global_step=epoch,
            is_global_zero=True,
            sanity_checking=False,
        )
        images.on_validation_batch_end(trainer, None, None, batch, 0)  # type: ignore[arg-type]
        images.on_validation_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert images._paths == ["a.png", "b.png"]
    assert [len(entry["val/examples"]) for entry in logged] == [2, 2, 2]


def test_validation_images_show_the_averaged_weights_with_ema(
    wandb_offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``callbacks=[default,wandb,ema]`` the images were predicted after the EMA callback had put the
    raw weights back, so they disagreed with val/miou and the checkpoint (both the average)."""
    import lightning.pytorch as pl

    from marsunits.tracking.callbacks import WandbValidationImages

    monkeypatch.setenv("WANDB_MODE", "offline")
    validated, pictured = [], []

    def weights(module: torch.nn.Module) -> float:
        return float(sum(p.detach().double().sum() for p in module.parameters()))

    class Validated(pl.Callback):
        def on_validation_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object):
            if not trainer.sanity_checking:
                validated.append(weights(module))

    real_predict = WandbValidationImages._predict

    def predict(self: WandbValidationImages, trainer: pl.Trainer, module: pl.LightningModule) -> np.ndarray:
        pictured.append(weights(module))
        return real_predict(self, trainer, module)

    monkeypatch.setattr(WandbValidationImages, "_predict", predict)
    overrides = ["logger=wandb", "callbacks=[default,wandb,ema]", "callbacks.ema.decay=0.5", *SMALL]
    cfg = compose_config("train", tmp_path / "run", [*overrides, "trainer.max_epochs=2"])
    from hydra.utils import instantiate

    from marsunits.training import _instantiate_group

    loggers = prepare_loggers(cfg, None)
    callbacks = [*_instantiate_group(cfg.callbacks), Validated()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    try:
        trainer.fit(instantiate(cfg.model), datamodule=instantiate(cfg.data))
    finally:
        finish_loggers(loggers, "success")
    assert len(pictured) == 2 and validated
    # Each epoch's pictures are of the weights that epoch validated (the average), not the raw ones.
    last_of_each = [validated[len(validated) // 2 - 1], validated[-1]]
    assert pictured == pytest.approx(last_of_each, rel=1e-12)


def test_validation_media_share_the_wandb_step_of_their_validations_metrics(
    wandb_offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pictures of a validation were logged at ``trainer.global_step``, one more than the step Lightning
    logs ``val/miou`` at (a validation at an epoch's end runs before its last batch is counted), and in a
    history row of their own: on the dashboard, epoch N's pictures sat beside epoch N + 1's first training
    step. Now they are in the row of their validation's metrics, and the confusion matrix (logged after that
    row) at its trainer/global_step."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    overrides = ["logger=wandb", "callbacks=[default,wandb]", *SMALL, "data.train_length=4"]
    cfg = compose_config("train", run_dir, [*overrides, "trainer.max_epochs=2"])
    (wb,) = _fit(cfg)
    (offline_dir,) = (run_dir / "wandb").glob(f"offline-run-*-{wb.experiment.id}")
    history = _read_run(offline_dir)["history"]

    metrics = [row for row in history if "val/miou" in row]
    pictures = [row for row in history if "val/examples._type" in row]
    matrices = [row for row in history if "val/confusion_matrix._type" in row]
    assert len(metrics) == len(pictures) == len(matrices) == 2
    # Two training steps per epoch: the validations are logged at steps 1 and 3.
    assert [row["trainer/global_step"] for row in metrics] == [1, 3]
    for metric, picture, matrix in zip(metrics, pictures, matrices, strict=True):
        assert picture["_step"] == metric["_step"]  # one history row: the media panels' slider agrees
        assert picture["trainer/global_step"] == metric["trainer/global_step"]
        assert matrix["trainer/global_step"] == metric["trainer/global_step"]
        assert matrix["_step"] == metric["_step"] + 1  # made by the task after the row was committed


def test_git_info_counts_untracked_files_unless_asked_not_to(tmp_path: Path) -> None:
    """The dashboard's ``dirty`` counts an untracked file (it can change results); the benchmarks'
    ``uncommitted_changes``, read through the same ``git_info``, counts changes to tracked files only."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a"], cwd=repo, check=True)
    (repo / "scratch.txt").write_text("untracked\n")
    assert git_info(repo)["dirty"] is True
    assert git_info(repo, untracked_files=False)["dirty"] is False
    (repo / "a.py").write_text("x = 2\n")
    assert git_info(repo, untracked_files=False)["dirty"] is True


def test_the_media_step_is_lightning_s_logging_step_or_the_global_step_where_lightning_renamed_it() -> None:
    """The pictures are logged at Lightning's private ``_batches_that_stepped`` (its metrics' step); a
    Lightning without it gives ``trainer.global_step`` instead of an ``AttributeError`` in the callback."""
    import lightning.pytorch as pl

    from marsunits.tracking.callbacks import lightning_log_step

    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_checkpointing=False
    )
    loop = trainer.fit_loop.epoch_loop
    loop._batches_that_stepped = 5
    assert lightning_log_step(trainer) == 5 != trainer.global_step
    del loop._batches_that_stepped
    assert lightning_log_step(trainer) == trainer.global_step == 0
