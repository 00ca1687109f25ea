"""One W&B run per ``predict.py`` call: a browsable table of the inputs and the run's summary numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from omegaconf import DictConfig, OmegaConf
from PIL import Image as PILImage

from marsunits.errors import readable
from marsunits.tracking.wandb_checks import check_wandb_folder
from marsunits.tracking.wandb_setup import (
    announce,
    close_run,
    readable_argv,
    resolve_wandb_mode,
    run_id_from_checkpoint,
    sync_command,
)
from marsunits.user_paths import expand_home

#: Table columns taken from a manifest row when present (numbers are converted from CSV text).
_FIRST_COLUMNS = ("path", "status")


def _number_or_text(value: Any) -> Any:
    """CSV cells are text: give W&B numbers where the text is one, so the table can sort and plot them."""
    if isinstance(value, str):
        if not value.strip():
            return None  # an empty CSV cell (e.g. fractions of a failed input) is a missing value
        try:
            number = float(value)
        except ValueError:
            return value
        return (
            int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
        )
    return value


def _overlay_path(row: Mapping[str, Any], output_dir: Path) -> Path | None:
    """A row's picture of its overlay: its ``overlay`` column (absolute or relative to ``output_dir``), else
    ``<output_dir>/<rel>/<stem>.thumb.jpg`` where it is a file, else ``<output_dir>/<rel>/<stem>.overlay.png``
    (a folder predicted before thumbnails were written has none).

    The thumbnail (512 px on its longest side, a panorama's 171 px across; 40-49 kB) is what the table
    shows: the full-size overlays of panoramas are 0.5-3.6 MB each, up to ``max_images`` of them uploaded
    with every run.
    """
    # Imported here: the writers load shapely, tifffile and scikit-image, which training (which imports this
    # package for its callbacks) does not need.
    from marsunits.inference.writers import OutputPaths

    given = row.get("overlay")
    if given:
        path = Path(str(given))
        return path if path.is_absolute() else output_dir / path
    rel = row.get("path")
    if not rel:
        return None
    rel_path = PurePosixPath(str(rel))
    if rel_path.is_absolute():
        rel_path = PurePosixPath(rel_path.name)
    if not rel_path.name:  # "/" names no file
        return None
    paths = OutputPaths(output_dir, rel_path)
    return paths.thumb if paths.thumb.is_file() else paths.overlay


def log_prediction_run(
    output_dir: str | Path,
    manifest_rows: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    cfg: DictConfig,
    max_images: int = 500,
) -> str | None:
    """Create one W&B run (job type ``predict``) that shows a prediction's outputs.

    The run holds a ``predictions`` table with one row per manifest row: the overlay image (units coloured,
    contact drawn, as written by ``predict.py``; its thumbnail ``<stem>.thumb.jpg`` where there is one) and
    every manifest column (status, unit fractions, contact length and confidence, seconds, ...), numbers as
    numbers; and the ``summary`` numbers in the run summary.

    Args:
        output_dir: The prediction output folder (``OUT``), where ``manifest.csv`` and the overlays are.
        manifest_rows: The manifest rows as mappings (e.g. from ``csv.DictReader``); ``path`` is the input
            path relative to the input root. The picture is the row's ``overlay`` column (absolute or
            relative to ``output_dir``) or else the overlay's thumbnail ``OUT/<rel>/<stem>.thumb.jpg``
            (40-49 kB for a panorama), or, in a folder predicted before thumbnails were written, the
            full-size ``OUT/<rel>/<stem>.overlay.png`` (DESIGN.md naming); a missing picture leaves the
            image cell empty.
        summary: Scalar results of the run (counts, mean fractions, seconds), logged to the run summary.
        cfg: The composed ``predict.yaml`` config; its ``logger.wandb`` node (project, entity, group, tags,
            name, save_dir, mode) sets up the run, and ``ckpt_path`` (if any) links to the training run.
        max_images: At most this many pictures are uploaded; further rows are logged without the image.

    Returns:
        The W&B run id, or None when W&B is disabled.
    """
    import wandb

    node = OmegaConf.select(cfg, "logger.wandb", default=None)
    spec: dict[str, Any] = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else {}  # type: ignore[assignment]
    requested = "offline" if spec.get("offline") is True else spec.get("mode")
    mode, reason = resolve_wandb_mode(requested)
    if mode == "disabled":
        announce("W&B disabled (WANDB_MODE/logger.wandb.mode=disabled); the prediction is not logged to W&B.")
        return None
    if reason:
        announce(f"W&B offline: {reason}; the run is saved locally and `wandb sync` uploads it later.")
    out = Path(output_dir)
    save_dir = expand_home(str(spec.get("save_dir") or out)).resolve()
    check_wandb_folder(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)

    config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    if isinstance(config, dict):
        config.pop("hydra", None)
    ckpt = OmegaConf.select(cfg, "ckpt_path", default=None)
    training_run = run_id_from_checkpoint(ckpt) if ckpt else None  # a checkpoint or a model package

    def start(mode: str) -> Any:
        # Shown on the dashboard and sent as UTF-8 (W&B's settings, the command line among them): a name
        # that is not UTF-8 (a Latin-1 input_dir on the command line) as \xNN; it stopped wandb.init.
        text = {
            k: readable(v) if isinstance(v, str) else v for k, v in spec.items() if k in ("group", "name")
        }
        tags = spec.get("tags")
        with readable_argv():
            return wandb.init(
                project=spec.get("project") or "marsunits",
                entity=spec.get("entity"),
                group=text.get("group"),
                tags=[readable(t) if isinstance(t, str) else t for t in tags] if tags else tags,
                name=text.get("name"),
                dir=str(save_dir),
                mode=mode,  # type: ignore[arg-type]  # resolve_wandb_mode returns one of wandb's literals
                job_type="predict",
                config={"config": config, "training_run_id": training_run, "output_dir": str(out.resolve())},
            )

    try:
        run = start(mode)
    except Exception as exc:  # noqa: BLE001 - a login or server failure: the predictions are written, log offline
        if mode != "online":
            raise
        announce(
            f"W&B offline: could not start an online run ({type(exc).__name__}: {exc}); logging offline."
        )
        run = start("offline")
    status = "failed"
    try:
        columns: list[str] = list(_FIRST_COLUMNS)
        for row in manifest_rows:
            columns += [c for c in row if c not in columns and c != "overlay"]
        # Text as people read it: a name that is not UTF-8 as \xNN, as manifest.csv writes it (the table's
        # JSON held "\udce9", which strict readers refuse).
        shown = [{k: readable(v) if isinstance(v, str) else v for k, v in r.items()} for r in manifest_rows]
        cells = [[_number_or_text(row.get(c)) for c in columns] for row in shown]
        # W&B tables need one type per column: a column with any text (e.g. "n/a") is all text.
        for j in range(len(columns)):
            if any(isinstance(r[j], str) for r in cells):
                for r, row in zip(cells, shown, strict=True):
                    r[j] = None if r[j] is None else str(row.get(columns[j]))
        table = wandb.Table(columns=["overlay", *columns])
        for k, (row, values) in enumerate(zip(manifest_rows, cells, strict=True)):
            overlay = _overlay_path(row, out)
            image = None
            if k < max_images and overlay is not None and overlay.is_file():
                caption = readable(str(row.get("path", overlay.name)))
                if readable(str(overlay)) == str(overlay):
                    image = wandb.Image(str(overlay), caption=caption)
                else:  # W&B keeps the file's name in its UTF-8 records: it refused caf<0xe9>.overlay.png
                    with PILImage.open(overlay) as picture:
                        # Kept a JPEG: W&B writes pixels as PNG unless told (5-6 times larger here).
                        kind = "jpg" if picture.format == "JPEG" else None
                        image = wandb.Image(picture.copy(), caption=caption, file_type=kind)
            table.add_data(image, *values)
        numbers = {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        run.log({"predictions": table, **{f"predict/{k}": v for k, v in numbers.items() if math.isfinite(v)}})
        run.summary.update({k: v for k, v in summary.items() if k not in numbers})
        status = "success"
    finally:
        offline = bool(getattr(run, "offline", False))
        sync_dir = getattr(run.settings, "sync_dir", None)
        run_id, url = run.id, None if offline else run.url
        # A stop while it closes still names its folder and the wandb sync of it (close_run).
        close_run(
            run,
            0 if status == "success" else 1,
            offline,
            url,
            [Path(sync_dir)] if offline and sync_dir else [],
        )
    if offline and sync_dir:
        announce(f"W&B run {run_id} saved offline in {sync_dir}; upload it with: {sync_command(sync_dir)}")
    else:
        announce(f"W&B run {run_id}: {url}")
    return run_id
