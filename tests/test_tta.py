"""Flip test-time augmentation (predict.py tta=true)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import small_task
from marsunits.inference.predictor import Predictor
from marsunits.inference.runner import run
from marsunits.inference.runtime import TorchForward
from test_predict import ckpt, make_cfg, save_rgb  # noqa: F401  (ckpt is a fixture)

#: Tiny networks on tiny inputs: intra-op threads only oversubscribe a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _forward() -> TorchForward:
    return TorchForward(small_task(), torch.device("cpu"), channels_last=False)


SIZES_AND_TILES = [(32, 64, 64), (40, 701, 256), (70, 150, 64), (37, 53, 64)]


@pytest.mark.parametrize(("height", "width", "tile"), SIZES_AND_TILES)
def test_mirror_average_is_exactly_mirror_symmetric(height: int, width: int, tile: int) -> None:
    """Averaging window by window was not mirror-symmetric over a whole image: the window starts (rounded half
    to even: 0, 222, 445 for 701 px, whose mirror is 0, 223, 445) and the padding of a short side (right or
    bottom only) do not mirror, so 0.5-1.6 % of the pixels of a mirrored image differed."""
    plain = Predictor(_forward(), in_channels=3, tile=tile, overlap=0.25, stride=8)
    tta = Predictor(_forward(), in_channels=3, tile=tile, overlap=0.25, stride=8, mirror_average=True)
    x = torch.rand(3, height, width)
    out = tta.predict(x)
    assert out.shape == (3, height, width) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(tta.predict(torch.flip(x, dims=(-1,))), out[:, :, ::-1], rtol=0, atol=1e-6)
    # The network alone is not symmetric, so the property is the averaging's doing.
    assert np.abs(plain.predict(torch.flip(x, dims=(-1,))) - plain.predict(x)[:, :, ::-1]).max() > 1e-3


def test_predict_with_tta_writes_mirrored_masks_for_a_mirrored_image(tmp_path: Path, ckpt: Path) -> None:  # noqa: F811
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 64, 96, seed=5)
    Image.fromarray(np.asarray(Image.open(inp / "a.png"))[:, ::-1].copy()).save(inp / "b.png")
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, inp, out, "tta=true", "precision=32", "min_unit_area_px=7")) == 0
    a = np.asarray(Image.open(out / "a.mask.png"))
    b = np.asarray(Image.open(out / "b.mask.png"))
    # Equal up to exact ties: the mirror average of a mirrored image is the mirrored average.
    assert (a[:, ::-1] == b).mean() > 0.999
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tta"] is True and summary["min_unit_area_px"] == 7


def test_a_folder_predicted_with_the_earlier_tta_is_not_resumed_with_the_new_one(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
) -> None:
    """tta=true changed how it averages (window by window, then the whole image): a folder half-predicted
    the earlier way was resumed the new way, mixing the two in one folder."""
    from marsunits.errors import ConfigError

    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "a.png", 64, 96, seed=5)
    cfg = make_cfg(tmp_path, ckpt, inp, out, "tta=true", "precision=32")
    assert run(cfg) == 0
    settings = out / "prediction_settings.json"
    record = json.loads(settings.read_text())
    assert record["method_versions"] == {"tta": 2, "min_unit_area_px": 2, "nodata_max": 2}
    del record["method_versions"]  # as a folder written before the versions were recorded
    settings.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"how min_unit_area_px, nodata_max, tta is computed changed since"):
        run(make_cfg(tmp_path, ckpt, inp, out, "tta=true", "precision=32"))
    plain = tmp_path / "plain"
    no_methods = ("precision=32", "min_unit_area_px=0", "nodata_max=null")
    assert run(make_cfg(tmp_path, ckpt, inp, plain, *no_methods)) == 0
    assert json.loads((plain / "prediction_settings.json").read_text())["method_versions"] is None
    # Switching tta on in that folder is one difference, said once (it was also called a change of method).
    with pytest.raises(ConfigError) as refused:
        run(make_cfg(tmp_path, ckpt, inp, plain, "tta=true", *no_methods))
    assert "tta (false then, true now)" in str(refused.value) and "computed changed" not in str(refused.value)


def test_a_folder_predicted_with_the_earlier_minimum_mapping_unit_is_not_resumed_with_the_new_one(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
) -> None:
    """The minimum mapping unit now also merges specks at the edge of 'other' (version 2): a folder
    half-predicted with version 1 would mix the two rules."""
    from marsunits.errors import ConfigError

    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "a.png", 64, 96, seed=5)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "precision=32")) == 0
    settings = out / "prediction_settings.json"
    record = json.loads(settings.read_text())
    assert record["method_versions"] == {"min_unit_area_px": 2, "nodata_max": 2}
    record["method_versions"] = {"nodata_max": 2}  # as a folder written before the rule changed
    settings.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"how min_unit_area_px is computed changed since"):
        run(make_cfg(tmp_path, ckpt, inp, out, "precision=32"))
    # Without a minimum mapping unit (0 or 1 px) no version of it is recorded, so none can differ.
    for area in (0, 1):
        plain = tmp_path / f"plain{area}"
        assert run(make_cfg(tmp_path, ckpt, inp, plain, "precision=32", f"min_unit_area_px={area}")) == 0
        recorded = json.loads((plain / "prediction_settings.json").read_text())["method_versions"]
        assert recorded == {"nodata_max": 2}


def test_a_minimum_mapping_unit_switched_on_from_1_px_is_one_difference(tmp_path: Path) -> None:
    """min_unit_area_px=1 merges nothing, as 0 does, and records no method version; but 1 is truthy, so a
    folder predicted with it and resumed with 200 px (or the reverse) was also told that "how
    min_unit_area_px is computed changed", which it had not."""
    from marsunits.errors import ConfigError
    from marsunits.inference.output_settings import check_settings, method_versions, write_settings

    def record(area: int) -> dict[str, object]:
        versions = method_versions({"tta": False, "adapt_bn": False, "min_unit_area_px": area})
        return {"weights_sha256": "w", "min_unit_area_px": area, "method_versions": versions}

    assert record(0)["method_versions"] is None and record(1)["method_versions"] is None
    assert record(200)["method_versions"] == {"min_unit_area_px": 2}
    for then, now in ((1, 200), (200, 1), (0, 200)):
        write_settings(tmp_path, record(then))
        with pytest.raises(ConfigError) as refused:
            check_settings(tmp_path, record(now), overwrite=False)
        assert f"min_unit_area_px ({then} then, {now} now)" in str(refused.value)
        assert "computed changed" not in str(refused.value)
    write_settings(tmp_path, record(200))
    check_settings(tmp_path, record(200), overwrite=False)  # the same options resume
    write_settings(tmp_path, {**record(200), "method_versions": None})  # begun before version 2
    with pytest.raises(ConfigError, match=r"how min_unit_area_px is computed changed since"):
        check_settings(tmp_path, record(200), overwrite=False)


def test_a_folder_predicted_before_the_no_data_fringe_rule_is_not_resumed_with_it(tmp_path: Path) -> None:
    """The no-data border now takes the one-pixel ring beside it (nodata_max version 2): a folder
    half-predicted before would hold masks with and without the ring; 0 (pure black) is on, null is off."""
    from marsunits.errors import ConfigError
    from marsunits.inference.output_settings import check_settings, method_versions, write_settings

    def record(nodata_max: float | None) -> dict[str, object]:
        versions = method_versions({"min_unit_area_px": 0, "nodata_max": nodata_max})
        return {"weights_sha256": "w", "nodata_max": nodata_max, "method_versions": versions}

    assert record(0.03)["method_versions"] == {"nodata_max": 2} == record(0.0)["method_versions"]
    assert record(None)["method_versions"] is None
    write_settings(tmp_path, {**record(0.03), "method_versions": None})  # begun before version 2
    with pytest.raises(ConfigError, match=r"how nodata_max is computed changed since"):
        check_settings(tmp_path, record(0.03), overwrite=False)
    write_settings(tmp_path, record(None))
    check_settings(tmp_path, record(None), overwrite=False)  # no border found either way: resumed
