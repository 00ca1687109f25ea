"""Invariants of the sliding-window inference in ``marsunits.inference.tiling``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from marsunits.inference import tiling
from marsunits.inference.tiling import make_grid, side_layout, sliding_window


def plus_one(x: torch.Tensor) -> torch.Tensor:
    """A 'model' whose output is its (first) input channel + 1, repeated on 3 channels."""
    return (x[:, :1] + 1.0).repeat(1, 3, 1, 1)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize(
    ("h", "w", "tile"),
    # 300 rows: taller than the 256-row bands the weights are divided in
    [(67, 129, 32), (33, 97, 64), (45, 51, 128), (1, 3, 32), (130, 65, 64), (300, 40, 64)],
)
def test_identity_model_is_reproduced_exactly(h: int, w: int, tile: int, overlap: float) -> None:
    rng = np.random.default_rng(h * 1000 + w)
    image = torch.from_numpy(rng.random((1, h, w), dtype=np.float32))
    out = sliding_window(plus_one, image, tile=tile, overlap=overlap, batch_size=3)
    assert out.shape == (3, h, w)
    assert out.dtype == np.float32
    expected = image.numpy()[0] + 1.0
    for k in range(3):
        np.testing.assert_allclose(out[k], expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("overlap", [0.0, 0.125, 0.25, 0.5])
@pytest.mark.parametrize("tile", [64, 512])
def test_windows_cover_image_stay_inside_and_keep_the_overlap(tile: int, overlap: float) -> None:
    for length in (tile, tile + 1, tile + 37, 2 * tile - 1, 3 * tile, 1536, 5164, 12000):
        if length < tile:
            continue
        window, starts = side_layout(length, tile, overlap)
        assert window % 32 == 0 and window <= tile
        assert starts[0] == 0 and starts[-1] == length - window
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s : s + window] = True
        assert covered.all()
        steps = np.diff(starts)
        assert (steps > 0).all()
        # Neighbours share at least the requested overlap (one pixel of rounding allowed).
        assert (window - steps >= round(overlap * tile) - 1).all(), (length, window, starts)
        # Never more windows than the fixed-step layout would need.
        step = max(1, tile - round(overlap * tile))
        assert len(starts) <= max(1, int(np.ceil((length - round(overlap * tile)) / step)))


@pytest.mark.parametrize(("tile", "stride", "overlap"), [(32, 32, 0.99), (16, 8, 0.97), (512, 32, 0.9995)])
def test_an_overlap_that_rounds_to_the_whole_tile_still_covers_every_pixel(
    tile: int, stride: int, overlap: float
) -> None:
    """``overlap`` is any fraction below 1, but ``round(overlap * tile)`` can be the whole tile: a side one
    pixel longer than the tile was then given one window, its last row left out of every window: NaN
    probabilities, and predict.py's error row blamed the model's weights."""
    assert round(overlap * tile) == tile
    for length in (tile + 1, tile + 2, 2 * tile + 3):
        window, starts = side_layout(length, tile, overlap, stride)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s : s + window] = True
        assert covered.all(), (length, window, starts)
    image = torch.rand(1, tile + 1, tile + 2)
    out = sliding_window(plus_one, image, tile=tile, overlap=overlap, stride=stride)
    np.testing.assert_allclose(out[0], image.numpy()[0] + 1.0, rtol=0, atol=2e-6)


def test_window_work_stays_close_to_one_plus_overlap() -> None:
    """A side just longer than a multiple of the step no longer costs a whole extra window."""
    for length in (1536, 2048, 2739, 3873, 5164, 12000):
        window, starts = side_layout(length, 512, 0.125)
        n = len(starts)
        # Only the overlaps and the rounding of the window up to the stride are repeated work.
        assert window * n <= length + (n - 1) * 64 + 32 * n, (length, window, starts)
    # 1536 px: four windows of 448 px (1792 px of work) where fixed 512 px windows took 2048 px.
    assert side_layout(1536, 512, 0.125) == (448, (0, 363, 725, 1088))


def test_grid_pads_short_sides_to_stride_and_never_tiles_them() -> None:
    grid = make_grid(50, 300, tile=128, overlap=0.25)
    assert (grid.padded_height, grid.window_height, grid.row_starts) == (64, 64, (0,))
    assert grid.padded_width == 300 and grid.window_width == 128
    assert len(grid.col_starts) > 1


@pytest.mark.parametrize(("tile", "overlap"), [(100, 0.25), (0, 0.25), (64, 1.0), (64, -0.1)])
def test_bad_tile_or_overlap_is_refused_with_advice(tile: int, overlap: float) -> None:
    with pytest.raises(ValueError, match="tile|overlap") as info:
        make_grid(100, 100, tile=tile, overlap=overlap)
    if "tile" in str(info.value):  # two different sizes to choose from (tile=0 once read "use 32 or 32")
        first, second = (
            int(n) for n in str(info.value).rsplit("use ", 1)[1].replace("e.g. ", "").split(" or ")
        )
        assert first != second and first % 32 == second % 32 == 0


def test_short_sides_are_padded_by_reflection_about_the_last_pixel() -> None:
    """The network sees the image mirrored beyond its bottom/right edges (no repeated edge, no black)."""
    image = torch.arange(6, dtype=torch.float32).reshape(1, 2, 3) + 1.0  # rows [1, 2, 3], [4, 5, 6]
    padded = tiling.pad_image(image, 4, 5)
    assert padded.shape == (1, 4, 5)
    assert torch.equal(padded[0, :2, :3], image[0])
    for r in range(4):
        for c in range(5):
            # reflection about the last row/column repeats with period 2 * (n - 1) (numpy's "reflect")
            rr, cc = (r % 2, min(c % 4, 4 - c % 4))
            assert padded[0, r, c] == image[0, rr, cc], (r, c)
    assert tiling.pad_image(image, 2, 3) is image  # nothing to pad: no copy


def test_gaussian_profile_is_positive_peaked_and_symmetric() -> None:
    g = tiling.gaussian_1d(64)
    assert (g > 0).all() and g.max() == pytest.approx(1.0, abs=3e-3)
    np.testing.assert_allclose(g, g[::-1])
    assert g[0] < 1e-3  # 4 sigma at the edge


def test_tiled_and_whole_image_predictions_agree_for_a_local_model() -> None:
    torch.manual_seed(0)
    # Two 3x3 convolutions: receptive field 5 px, much smaller than the 16 px overlap of 64 px tiles.
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()

    def probs(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(x) * 4.0, dim=1)

    # A stride multiple, so the single whole-image window needs no reflect padding either.
    image = torch.rand(3, 96, 160)
    tiled = sliding_window(probs, image, tile=64, overlap=0.25, batch_size=4)
    whole = sliding_window(probs, image, tile=256, overlap=0.25)  # one window covers everything
    assert make_grid(96, 160, 64, 0.25).num_windows > 1
    assert make_grid(96, 160, 256, 0.25).num_windows == 1
    # The convolutions' zero padding differs only near window borders inside the image, where the
    # Gaussian weight of the window is small.
    assert (tiled.argmax(0) == whole.argmax(0)).mean() >= 0.99
    np.testing.assert_allclose(tiled, whole, atol=5e-3)
    np.testing.assert_allclose(tiled.sum(0), 1.0, atol=1e-5)


def test_accumulation_buffer_depends_on_image_size_only(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: list[tuple[int, ...]] = []
    real_zeros = np.zeros

    def spy_zeros(shape, dtype=float):  # type: ignore[no-untyped-def]
        shapes.append(tuple(np.atleast_1d(shape)))
        return real_zeros(shape, dtype=dtype)

    monkeypatch.setattr(tiling.np, "zeros", spy_zeros)
    image = torch.rand(1, 96, 200)
    for tile, overlap, batch in [(32, 0.0, 1), (32, 0.5, 7), (64, 0.25, 2)]:
        shapes.clear()
        sliding_window(plus_one, image, tile=tile, overlap=overlap, batch_size=batch)
        big = [s for s in shapes if len(s) > 1]
        assert big == [(3, 96, 200)], (tile, overlap, batch, shapes)


def test_model_with_wrong_output_shape_is_reported() -> None:
    with pytest.raises(RuntimeError, match="expected"):
        sliding_window(lambda x: x[:, :, ::2], torch.rand(3, 40, 40), tile=32)


def _tiny_task():  # type: ignore[no-untyped-def]
    from omegaconf import OmegaConf

    from marsunits.task import SegmentationTask

    try:
        from .conftest import CONFIG_DIR
    except ImportError:
        from conftest import CONFIG_DIR  # type: ignore[no-redef]

    tiny = OmegaConf.load(CONFIG_DIR / "model" / "tiny.yaml")
    torch.manual_seed(0)
    return SegmentationTask(
        encoder=tiny.encoder,
        encoder_weights=None,
        encoder_depth=tiny.encoder_depth,
        decoder_channels=list(tiny.decoder_channels),
        tile_size=64,
    ).eval()


def test_channels_last_and_bf16_forwards_agree_with_float32() -> None:
    from marsunits.inference.runtime import TorchForward

    task = _tiny_task()
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = torch.softmax(task(x), dim=1)
    nhwc = TorchForward(task, torch.device("cpu"), channels_last=True)(x)
    assert nhwc.shape == reference.shape and nhwc.dtype == torch.float32
    torch.testing.assert_close(nhwc, reference, atol=1e-5, rtol=0)
    bf16 = TorchForward(task, torch.device("cpu"), channels_last=True, precision="bf16")(x)
    assert float((bf16 - reference).abs().max()) < 0.05  # bfloat16 keeps 8 bits of mantissa
    torch.testing.assert_close(bf16.sum(1), torch.ones(2, 64, 96), atol=1e-4, rtol=0)


def test_precision_and_threads_options_are_checked() -> None:
    from marsunits.errors import ConfigError
    from marsunits.inference.runtime import configure_threads, resolve_precision

    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert configure_threads(None, processes_per_machine=10**6) == 1  # never below one thread
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads"):
        configure_threads(0)
    assert resolve_precision("32", torch.device("cpu")) == "32"
    assert resolve_precision("auto", torch.device("cpu")) in ("32", "bf16")
    with pytest.raises(ConfigError, match="precision"):
        resolve_precision("fp8", torch.device("cpu"))


def test_predictor_lays_windows_out_with_the_models_own_stride() -> None:
    """``Predictor(task, ...)`` used a fixed stride of 32 while predict.py passes the model's size divisor (16
    for the default model): the same image gave other probabilities through the documented API."""
    from marsunits.inference.predictor import Predictor
    from marsunits.task import SegmentationTask

    task = SegmentationTask(
        encoder="mobilenetv3_small_050", encoder_weights=None, encoder_depth=3, decoder_channels=[16, 8, 8]
    ).eval()
    assert task.size_divisor == 8
    default = Predictor(task, in_channels=3, tile=64)
    assert default.stride == 8
    image = torch.rand(3, 44, 70)
    explicit = Predictor(task, in_channels=3, tile=64, stride=8).predict(image)
    np.testing.assert_array_equal(default.predict(image), explicit)
    assert Predictor(lambda x: x, in_channels=3, tile=64).stride == 32  # no model at hand: the default
