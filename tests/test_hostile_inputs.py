"""Property-based tests: whatever size, sample type, channel count or EXIF orientation an image file has,
reading, tiling and predicting it keep its (displayed) height and width and give valid values, or the file
is refused with an :class:`~marsunits.data.io.ImageReadError` when it is truly unsupported.

Truly unsupported (an ``ImageReadError`` naming the file): TIFF sample types other than unsigned 8/16-bit
integers, floats and booleans (here: signed 32-bit integers).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from marsunits.data.io import ImageReadError, read_image, to_channels
from marsunits.inference.predictor import Predictor
from marsunits.inference.tiling import sliding_window
from marsunits.inference.unit_mapper import argmax_uint8

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
_counter = itertools.count()

#: Small sizes, plus the extreme shapes of panoramas cut to one row or one column.
SIZES = st.one_of(
    st.tuples(st.integers(1, 48), st.integers(1, 48)),
    st.sampled_from([(1, 1), (1, 3000), (3000, 1), (2, 1500), (1500, 3)]),
)


def _fresh(folder: Path, suffix: str) -> Path:
    """A new file name in ``folder`` (the test's tmp_path, shared by all examples of one test)."""
    return folder / f"img{next(_counter)}{suffix}"


def _pixels(rng: np.random.Generator, h: int, w: int, channels: int, dtype: str) -> np.ndarray:
    shape = (h, w) if channels == 1 else (h, w, channels)
    if dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if dtype == "uint16":
        return rng.integers(0, 65536, shape, dtype=np.uint16)
    if dtype == "int32":
        return rng.integers(-1000, 1000, shape, dtype=np.int32)
    data = rng.normal(0.5, 0.8 * rng.random(), shape).astype(np.float32)  # often outside [0, 1], on purpose
    data.flat[0] = np.nan
    return data


def _write_tiff(path: Path, data: np.ndarray) -> None:
    channels = 1 if data.ndim == 2 else data.shape[2]
    if channels in (3, 4):
        extra = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
        tifffile.imwrite(path, data, photometric="rgb", planarconfig="contig", **extra)
    else:
        tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig")


def _assert_valid(img: np.ndarray, h: int, w: int) -> None:
    assert img.dtype == np.float32 and img.ndim == 3
    assert img.shape[:2] == (h, w)
    assert img.shape[2] in (1, 3)
    assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0


@SETTINGS
@given(
    size=SIZES,
    dtype=st.sampled_from(["uint8", "uint16", "float32", "int32"]),
    channels=st.sampled_from([1, 2, 3, 4]),
    seed=st.integers(0, 2**16),
)
def test_tiff_any_size_type_and_channels(
    tmp_path: Path, size: tuple[int, int], dtype: str, channels: int, seed: int
) -> None:
    h, w = size
    path = _fresh(tmp_path, ".tif")
    pixels = _pixels(np.random.default_rng(seed), h, w, channels, dtype)
    _write_tiff(path, pixels)
    if dtype == "int32":
        with pytest.raises(ImageReadError, match="unsupported TIFF sample type") as info:
            read_image(path)
        assert str(path) in str(info.value)
        return
    if dtype == "float32" and np.nanmax(pixels) > 2.0:  # float data is [0, 1]: another scale is refused
        with pytest.raises(ImageReadError, match="float pixels reach") as info:
            read_image(path)
        assert str(path) in str(info.value)
        return
    img = read_image(path)
    _assert_valid(img, h, w)
    assert img.shape[2] == (1 if channels <= 2 else 3)


#: PIL modes per format, with the numpy dtype and channel count that make them.
PIL_MODES = {
    ".png": [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4), ("I;16", 1)],
    ".jpg": [("L", 1), ("RGB", 3)],
}


@SETTINGS
@given(
    size=SIZES,
    suffix=st.sampled_from([".png", ".jpg"]),
    mode_index=st.integers(0, 4),
    orientation=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_png_and_jpeg_with_any_exif_orientation(
    tmp_path: Path, size: tuple[int, int], suffix: str, mode_index: int, orientation: int, seed: int
) -> None:
    h, w = size
    mode, channels = PIL_MODES[suffix][mode_index % len(PIL_MODES[suffix])]
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        shape = (h, w) if channels == 1 else (h, w, channels)
        im = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _fresh(tmp_path, suffix)
    im.save(path, exif=exif)
    img = read_image(path)
    # Orientations 5-8 turn the picture by 90 degrees: the displayed image is w x h.
    expected = (w, h) if orientation >= 5 else (h, w)
    _assert_valid(img, *expected)


class _TinyNet(nn.Module):
    """A 3x3 convolution: enough to make each output pixel depend on its neighbours (like a real network)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(in_channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@SETTINGS
@given(size=SIZES, channels=st.sampled_from([1, 3]), overlap=st.sampled_from([0.0, 0.25, 0.5]))
def test_sliding_window_keeps_size_and_gives_probabilities(
    size: tuple[int, int], channels: int, overlap: float
) -> None:
    h, w = size
    net = _TinyNet(channels).eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(x).softmax(1)

    image = torch.rand(channels, h, w, generator=torch.Generator().manual_seed(h * 7919 + w))
    probs = sliding_window(forward, image, tile=64, overlap=overlap, batch_size=8, out_channels=3, stride=32)
    assert probs.shape == (3, h, w) and probs.dtype == np.float32
    assert np.isfinite(probs).all() and probs.min() >= 0.0
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-4)


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(size=SIZES, channels=st.sampled_from([1, 2, 3, 4]))
def test_predictor_end_to_end_mask_has_the_input_size(
    tmp_path: Path, size: tuple[int, int], channels: int
) -> None:
    h, w = size
    path = _fresh(tmp_path, ".png")
    shape = (h, w) if channels == 1 else (h, w, channels)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    Image.fromarray(np.random.default_rng(h + w).integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    predictor = Predictor(_TinyNet(3).eval(), in_channels=3, tile=64, overlap=0.25, batch_size=4, stride=32)
    image = read_image(path)
    x = torch.from_numpy(to_channels(image, 3)).permute(2, 0, 1)
    mask = argmax_uint8(predictor.predict(x))
    assert mask.shape == (h, w) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 1, 2}


def test_a_folder_pipe_or_device_given_as_an_image_is_named_as_what_it_is(tmp_path: Path) -> None:
    """A folder, a named pipe (FIFO) or a device under an image's name was 'a directory or special file'
    with no word of what to do; predict.py's error row and UnitMapper.map both show this message."""
    import os

    folder = tmp_path / "frames.png"
    folder.mkdir()
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    device = tmp_path / "zero.png"
    device.symlink_to("/dev/zero")
    expected = {
        folder: r"frames\.png: a folder, not an image file; put the image file there instead, or give",
        fifo: r"pipe\.png: a named pipe \(FIFO\), not an image file; replace it with the image file",
        device: r"zero\.png: a device, not an image file; replace it with the image file or remove",
    }
    for path, message in expected.items():
        with pytest.raises(ImageReadError, match=message):
            read_image(path)
