"""marsunits.data.io: decoding contract, error messages, channel conversion, atomic PNG writes."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from marsunits.data.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    exif_orientation,
    image_size,
    list_images,
    read_image,
    read_image_noted,
    to_channels,
    write_png_atomic,
)
from marsunits.data.mask_io import read_mask

RNG = np.random.default_rng(0)


def _write_packed(path: Path, data: np.ndarray, **kwargs: object) -> None:
    """``tifffile.imwrite`` of samples of another width than 8 or 16 bits (``bitspersample``), which packs
    them with imagecodecs' ``packints_encode``. Its arguments changed in imagecodecs 2026.3.6 (``runlen``
    for ``axis``) and imagecodecs 2024.6.1 (the floor) has none: on numpy 1.x pip pairs the newest tifffile
    with an older imagecodecs (2026.1.14, the last for numpy 1), and tifffile's or imagecodecs' floor with
    the newest other one calls what the other lacks. The file cannot be made there, so the test is skipped
    (reading such files works there; the development environment makes them)."""
    try:
        tifffile.imwrite(path, data, **kwargs)
    except (TypeError, NotImplementedError) as err:
        if "packints_encode" not in str(err):
            raise
        pytest.skip(f"tifffile {tifffile.__version__} cannot pack samples with this imagecodecs: {err}")


def _rgb(h: int = 12, w: int = 20) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ read_image


def test_rgb_png_is_exact(tmp_path: Path) -> None:
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.float32 and out.shape == (12, 20, 3) and out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(out, arr / 255.0, atol=1e-7)


def test_grey_and_grey_alpha_stay_one_channel(tmp_path: Path) -> None:
    grey = RNG.integers(0, 256, size=(9, 7), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "l.png")
    Image.fromarray(np.dstack([grey, np.full_like(grey, 17)]), mode="LA").save(tmp_path / "la.png")
    for name in ("l.png", "la.png"):
        out = read_image(tmp_path / name)
        assert out.shape == (9, 7, 1)
        np.testing.assert_allclose(out[:, :, 0], grey / 255.0, atol=1e-7)


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    arr = _rgb()
    rgba = np.dstack([arr, np.zeros(arr.shape[:2], np.uint8)])  # fully transparent: colour must survive
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (12, 20, 3)
    np.testing.assert_allclose(out, arr / 255.0, atol=1e-7)


@pytest.mark.parametrize("kind", ["RGBA", "LA", "P", "tiff"])
def test_transparent_pixels_of_a_partly_opaque_image_read_as_black(tmp_path: Path, kind: str) -> None:
    """A transparent border (over white here) must not be mapped as terrain: black is predict's no-data."""
    rgb = np.full((12, 20, 3), 255, np.uint8)
    rgb[3:9, 4:16] = (150, 100, 60)
    alpha = np.zeros((12, 20), np.uint8)
    alpha[3:9, 4:16] = 255
    alpha[3, 4] = 128  # partly transparent: keeps its colour
    path = tmp_path / ("a.tif" if kind == "tiff" else "a.png")
    if kind == "RGBA":
        Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(path)
    elif kind == "LA":
        Image.fromarray(np.dstack([rgb[:, :, 0], alpha]), mode="LA").save(path)
    elif kind == "P":
        im = Image.fromarray(rgb).quantize(colors=4)
        im.info["transparency"] = int(np.asarray(im)[0, 0])  # the white index
        im.save(path, transparency=int(np.asarray(im)[0, 0]))
    else:
        tifffile.imwrite(path, np.dstack([rgb, alpha]), photometric="rgb", extrasamples=["unassalpha"])
    out = read_image(path)
    hidden = alpha == 0 if kind != "P" else (rgb == 255).all(axis=2)
    assert (out[hidden] == 0).all()
    assert (out[~hidden] > 0.2).all()


def test_16_bit_png_scaled_by_65535(tmp_path: Path) -> None:
    arr = np.array([[0, 1000, 65535], [32768, 7, 12345]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (2, 3, 1)
    np.testing.assert_allclose(out[:, :, 0], arr / 65535.0, rtol=1e-6)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_12_bit_data_in_16_bit_files_is_scaled_by_4095(tmp_path: Path, suffix: str) -> None:
    """Rover cameras digitise 12 bits; divided by 65535 such an image read 16 times too dark and its mask
    matched the 8-bit version's on 39 % of the pixels."""
    grey8 = RNG.integers(0, 256, size=(9, 11), dtype=np.uint8)
    grey12 = (grey8.astype(np.uint32) * 4095 // 255).astype(np.uint16)  # the same picture in 12 bits
    if suffix == ".png":
        Image.fromarray(grey12).save(tmp_path / f"g{suffix}")
    else:
        tifffile.imwrite(tmp_path / f"g{suffix}", grey12)
    Image.fromarray(grey8).save(tmp_path / "g8.png")
    out = read_image(tmp_path / f"g{suffix}")
    np.testing.assert_allclose(out[:, :, 0], grey12 / 4095.0, atol=0.5 / 65535 + 1e-7)  # via 16-bit ints
    np.testing.assert_allclose(out, read_image(tmp_path / "g8.png"), atol=1.0 / 255)
    full = grey12.copy()
    full[0, 0] = 4096  # one value above 12 bits: the file is 16-bit data, divided by 65535
    Image.fromarray(full).save(tmp_path / "f.png")
    np.testing.assert_allclose(read_image(tmp_path / "f.png")[:, :, 0], full / 65535.0, rtol=1e-6)


@pytest.mark.parametrize("planar", [False, True])
@pytest.mark.parametrize("size", [(6, 8), (300, 3), (3, 4), (2, 300)])
def test_uint16_rgb_tiff(tmp_path: Path, planar: bool, size: tuple[int, int]) -> None:
    """Narrow images too: the layout was guessed from the shape, so a planar RGB image 3 px wide, page shape
    (3, 300, 3), was read as 3 rows of 300 columns with its columns as colours."""
    arr = RNG.integers(0, 65536, size=(*size, 3), dtype=np.uint16)
    if planar:
        tifffile.imwrite(
            tmp_path / "a.tif", np.moveaxis(arr, -1, 0), planarconfig="separate", photometric="rgb"
        )
    else:
        tifffile.imwrite(tmp_path / "a.tif", arr, photometric="rgb")
    out = read_image(tmp_path / "a.tif")
    assert out.shape == (*size, 3)
    np.testing.assert_allclose(out, arr / 65535.0, rtol=1e-6)
    assert image_size(tmp_path / "a.tif") == (size[1], size[0])


@pytest.mark.parametrize("name", ["e.png", "e.jpg"])
def test_a_16_bit_tiff_named_like_another_format_is_read_whole(tmp_path: Path, name: str) -> None:
    """A 16-bit RGB TIFF saved as ``.png`` or ``.jpg`` was decoded by Pillow, which keeps the high byte of
    each sample: 12-bit data came out 16 times too dark and was predicted with status ok."""
    arr = RNG.integers(0, 4096, size=(6, 8, 3), dtype=np.uint16)  # 12-bit data in 16-bit samples
    tifffile.imwrite(tmp_path / "e.tif", arr, photometric="rgb")
    tifffile.imwrite(tmp_path / name, arr, photometric="rgb")
    out = read_image(tmp_path / name)
    np.testing.assert_array_equal(out, read_image(tmp_path / "e.tif"))
    np.testing.assert_allclose(out, arr / 4095.0, atol=1e-4)  # widened to 16 bits first


@pytest.mark.parametrize(("top", "warned"), [(200, True), (255, True), (1000, False), (9000, False)])
def test_8_bit_values_in_a_16_bit_file_are_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, top: int, warned: bool
) -> None:
    """8-bit values saved in a 16-bit file read 16 times too dark (as 12-bit data) without a word. Only that
    case is said: the darkest 12- or 16-bit exposures reach 1023 or 16383, so 10- and 14-bit data cannot be
    told from them (a warning for those was a false alarm on every dark frame)."""
    arr = np.linspace(0, top, 48).astype(np.uint16).reshape(6, 8)
    tifffile.imwrite(tmp_path / "x.tif", arr)
    with caplog.at_level("WARNING", logger="marsunits.data.io"):
        read_image(tmp_path / "x.tif")
        read_image(tmp_path / "x.tif")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == int(warned)
    if warned:
        assert said[0].startswith(
            f"{tmp_path / 'x.tif'}: its 16-bit samples all fit in 8 bits (at most {top})"
        )
    image, note = read_image_noted(tmp_path / "x.tif")
    np.testing.assert_array_equal(image, read_image(tmp_path / "x.tif"))
    assert (note is not None) == warned


def test_float_tiff_clipped(tmp_path: Path) -> None:
    arr = np.array([[-0.5, 0.25, np.inf], [1.5, np.nan, 0.75]], dtype=np.float32)  # saturated a bit above 1
    tifffile.imwrite(tmp_path / "f.tiff", arr)
    out = read_image(tmp_path / "f.tiff")
    np.testing.assert_allclose(out[:, :, 0], [[0.0, 0.25, 1.0], [1.0, 0.0, 0.75]])


def test_float_image_holding_8_bit_values_is_refused_not_clipped_white(tmp_path: Path) -> None:
    arr = np.array([[0.0, 80.0], [200.0, 255.0]], dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tiff", arr)
    with pytest.raises(ImageReadError, match=r"f\.tiff: float pixels reach 255.*divide by 255"):
        read_image(tmp_path / "f.tiff")


def test_unsupported_tiff_dtype(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "i.tif", np.zeros((4, 4), np.int32))
    with pytest.raises(ImageReadError, match=r"i\.tif.*int32.*Convert"):
        read_image(tmp_path / "i.tif")


@pytest.mark.parametrize("compression", ["lzw", "zlib", "jpeg", "zstd", "packbits"])
def test_compressed_tiffs_read_like_uncompressed_ones(tmp_path: Path, compression: str) -> None:
    """LZW is the usual compression of TIFFs from GIS and image tools; tifffile decodes it (and JPEG, ZSTD)
    through imagecodecs, a dependency: such a file must read, not be reported as corrupt."""
    yy, xx = np.mgrid[0:24, 0:40]
    rgb = np.stack([xx * 6, yy * 10, (xx + yy) * 4], axis=-1).astype(np.uint8)  # smooth, so JPEG keeps it
    mask = RNG.integers(0, 3, size=(24, 40), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb", compression=compression)
    got, plain = read_image(tmp_path / "c.tif"), read_image(tmp_path / "plain.tif")
    assert got.shape == plain.shape == (24, 40, 3)
    # JPEG is lossy: a few grey levels apart; every lossless codec gives the very pixels.
    np.testing.assert_allclose(got, plain, atol=0.1 if compression == "jpeg" else 0.0)
    if compression != "jpeg":
        tifffile.imwrite(tmp_path / "m.tif", mask, compression=compression)
        np.testing.assert_array_equal(read_mask(tmp_path / "m.tif"), mask)


def test_a_missing_tiff_codec_is_named_not_called_corruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without imagecodecs, tifffile refuses LZW with a ValueError naming the package: the user must be told
    to install it (or re-save the file), not that a good file is corrupt."""
    tifffile.imwrite(tmp_path / "lzw.tif", np.zeros((8, 8), np.uint8), compression="lzw")

    def no_codec(self, *args, **kwargs):
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_codec)
    for read in (read_image, read_mask):
        with pytest.raises(ImageReadError) as info:
            read(tmp_path / "lzw.tif")
        message = str(info.value)
        assert "lzw.tif" in message and "pip install imagecodecs" in message and "corrupt" not in message


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((10, 30, 3), np.uint8)
    arr[:, :5] = 255  # bright band on the left edge as stored
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (30, 10, 3)
    assert image_size(tmp_path / "r.jpg") == (10, 30)
    # After a 90-degree clockwise rotation the stored left edge is at the top.
    assert out[:4].mean() > 0.9 and out[-10:].mean() < 0.1


def test_max_megapixels_checked_from_header(tmp_path: Path) -> None:
    Image.fromarray(_rgb(100, 100)).save(tmp_path / "big.png")
    assert read_image(tmp_path / "big.png", max_megapixels=0.01).shape == (100, 100, 3)
    with pytest.raises(ImageReadError, match=r"big\.png.*megapixels.*max_megapixels"):
        read_image(tmp_path / "big.png", max_megapixels=0.005)


def test_pil_decompression_bomb_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(_rgb(100, 100)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # hard limit is 2x this
    with pytest.raises(ImageReadError, match=r"bomb\.png.*decompression bomb.*downscale or tile"):
        read_image(tmp_path / "bomb.png")


@pytest.mark.parametrize("suffix", ["png", "jpg", "tif"])
def test_max_megapixels_replaces_pils_own_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """A 192-megapixel mosaic was refused by Pillow's decompression-bomb limit (179 MP) whatever
    predict.py's max_megapixels allowed, with advice to change Pillow's settings in code. Pillow's limit
    is shrunk here so a 100x100 image stands for such a mosaic. A TIFF, which tifffile reads, had no limit
    at all without the caller's: a 900-megapixel TIFF of 1 MB was decoded (4 GB) where a PNG was refused."""
    from marsunits.inference.predictor import ImageFileDataset

    path = tmp_path / f"mosaic.{suffix}"
    Image.fromarray(_rgb(100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # hard limit 2,000 pixels, the image has 10,000
    assert read_image(path, max_megapixels=0.02).shape == (100, 100, 3)  # the caller's limit decides
    assert Image.MAX_IMAGE_PIXELS == 1000  # lifted for that one opening only
    with pytest.raises(ImageReadError, match=r"megapixels.*raise max_megapixels"):
        read_image(path, max_megapixels=0.005)
    with pytest.raises(ImageReadError, match=r"decompression bomb.*max_megapixels=null"):
        read_image(path)  # no limit of the caller's: Pillow's stays
    unlimited = ImageFileDataset([path], max_megapixels=None)[0]  # predict.py max_megapixels=null
    assert unlimited.error is None and unlimited.image is not None and unlimited.image.shape == (100, 100, 3)
    assert exif_orientation(path, max_megapixels=math.inf) == 1  # predict.py's camera orientation check
    # Callers without a limit of their own keep Pillow's: training's pair check refuses it at set-up, and
    # says that training has no option to lift it (the message named only predict.py's).
    for header_read in (image_size, exif_orientation):
        with pytest.raises(ImageReadError, match=r"decompression bomb.*train\.py has no such option"):
            header_read(path)


def test_a_tiff_read_while_another_thread_lifts_pillows_limit_keeps_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader with a limit of its own (predict.py's) lifts Pillow's global limit for one opening, under a
    lock; a TIFF read without a limit read that global outside the lock, so one read in another thread at
    that moment was decoded whatever its size."""
    import threading

    from marsunits.data import read_checks

    path = tmp_path / "mosaic.tif"
    tifffile.imwrite(path, _rgb(100, 100), photometric="rgb")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # hard limit 2,000 pixels, the image has 10,000
    outcome: list[object] = []

    def read_without_a_limit() -> None:
        try:
            outcome.append(image_size(path))
        except ImageReadError as err:
            outcome.append(err)

    with read_checks._PIL_LIMIT_LOCK:  # as _open_pil holds it while Pillow's limit is lifted
        Image.MAX_IMAGE_PIXELS = None
        reader = threading.Thread(target=read_without_a_limit)
        reader.start()
        reader.join(timeout=0.5)
        Image.MAX_IMAGE_PIXELS = 1000
    reader.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], ImageReadError), outcome
    assert "decompression bomb" in str(outcome[0])


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "e.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"e\.jpg.*empty \(0 bytes\).*Copy it again"):
        read_image(tmp_path / "e.jpg")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"nope\.png.*not found"):
        read_image(tmp_path / "nope.png")


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("hello, this is not a PNG\n")
    with pytest.raises(ImageReadError, match=r"text\.png.*not an image"):
        read_image(tmp_path / "text.png")
    (tmp_path / "text.tif").write_text("hello, this is not a TIFF\n")
    with pytest.raises(ImageReadError, match=r"text\.tif.*not a readable TIFF"):
        read_image(tmp_path / "text.tif")


def test_truncated_jpeg_raises(tmp_path: Path) -> None:
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.jpg.*truncated or corrupt"):
        read_image(tmp_path / "cut.jpg")
    # the header is intact, so the size is still available without decoding
    assert image_size(tmp_path / "cut.jpg") == (64, 64)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read any file")
def test_unreadable_permission(tmp_path: Path) -> None:
    path = tmp_path / "locked.png"
    Image.fromarray(_rgb()).save(path)
    path.chmod(0)
    try:
        with pytest.raises(ImageReadError, match=r"locked\.png.*permission denied.*chmod"):
            read_image(path)
    finally:
        path.chmod(0o644)


def test_unreadable_reported_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.png"
    Image.fromarray(_rgb()).save(path)
    monkeypatch.setattr("marsunits.data.io.os.access", lambda *_args, **_kw: False)
    with pytest.raises(ImageReadError, match=r"locked\.png.*permission denied"):
        read_image(path)


def test_image_size_without_decoding(tmp_path: Path) -> None:
    Image.fromarray(_rgb(13, 31)).save(tmp_path / "a.jpg")
    assert image_size(tmp_path / "a.jpg") == (31, 13)


# ------------------------------------------------------------------------------------------ read_mask


def test_read_mask_values_unchanged(tmp_path: Path) -> None:
    mask = RNG.choice(np.array([0, 1, 2, 7, 255], np.uint8), size=(11, 5))
    Image.fromarray(mask).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    assert out.dtype == np.uint8 and out.shape == (11, 5)
    np.testing.assert_array_equal(out, mask)
    # palette PNG: the stored indices are the ids, whatever the palette's colours
    pal = Image.frombytes("P", (5, 11), mask.tobytes())
    pal.putpalette(RNG.integers(0, 256, size=768, dtype=np.uint8).tolist())
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), mask)


def test_read_mask_rejects_colour(tmp_path: Path) -> None:
    Image.fromarray(_rgb()).save(tmp_path / "colour.png")
    with pytest.raises(ImageReadError, match=r"colour\.png.*single-channel.*'RGB'.*convert the colours"):
        read_mask(tmp_path / "colour.png")


def test_an_rgb_mask_is_told_its_colours_or_that_it_holds_ids_in_each_channel(tmp_path: Path) -> None:
    """An RGB mask was told "if this is a colour-coded mask, convert the colours to ids first", whatever it
    held: a geologist whose labelling tool drew the classes in colours was not told which colours the file
    holds, and one whose ids were saved as RGB (three equal channels, as an image editor exports grey) was
    told to convert colours it does not have. Each is now said what the file holds."""
    ids = np.zeros((20, 30), np.uint8)
    ids[:, 10:] = 1
    ids[:5] = 2
    ids[-2:] = 255
    Image.fromarray(np.dstack([ids] * 3)).save(tmp_path / "grey.png")
    with pytest.raises(ImageReadError) as grey:
        read_mask(tmp_path / "grey.png")
    said = str(grey.value)
    assert said.startswith(f"{tmp_path / 'grey.png'}: a mask must be a single-channel image"), said
    assert "its 3 channels are equal: ids [0, 1, 2, 255] saved in colour" in said, said
    assert "Save one channel as an 8-bit greyscale PNG" in said, said
    palette = {0: (40, 40, 200), 1: (200, 60, 40), 2: (180, 180, 180), 255: (0, 0, 0)}
    colours = np.zeros((*ids.shape, 3), np.uint8)
    for cid, colour in palette.items():
        colours[ids == cid] = colour
    Image.fromarray(colours).save(tmp_path / "coded.png")
    with pytest.raises(ImageReadError) as coded:
        read_mask(tmp_path / "coded.png")
    said = str(coded.value)
    # The colours, most pixels first, each with its share of the 600 pixels (class 1 has 260 of them).
    shares = "(200, 60, 40) 43 %, (180, 180, 180) 25 %, (40, 40, 200) 22 %, (0, 0, 0) 10 %"
    assert f"a colour-coded mask of 4 colours: {shares}." in said, said
    assert "Convert each colour to its class id" in said, said
    Image.fromarray(np.dstack([colours, np.full(ids.shape, 255, np.uint8)]), mode="RGBA").save(
        tmp_path / "coded_alpha.png"
    )
    with pytest.raises(ImageReadError, match=r"'RGBA' with 4 channels, a colour-coded mask of 4 colours"):
        read_mask(tmp_path / "coded_alpha.png")
    # Ids in the colour channels of an RGBA file: its 4 channels are not all equal, its 3 colour ones are.
    Image.fromarray(np.dstack([ids] * 3 + [np.full(ids.shape, 255, np.uint8)]), mode="RGBA").save(
        tmp_path / "grey_alpha.png"
    )
    with pytest.raises(ImageReadError) as grey_alpha:
        read_mask(tmp_path / "grey_alpha.png")
    said = str(grey_alpha.value)
    assert "mode 'RGBA' with 4 channels, but its 3 colour channels (R, G, B; alpha aside) are equal: " in said
    assert "ids [0, 1, 2, 255] saved in colour" in said, said


def test_read_mask_tiff(tmp_path: Path) -> None:
    mask = RNG.integers(0, 3, size=(4, 6), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "m.tif", mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif"), mask)
    tifffile.imwrite(tmp_path / "w.tif", mask.astype(np.uint16))  # ids in a 16-bit file: still the ids
    np.testing.assert_array_equal(read_mask(tmp_path / "w.tif"), mask)
    tifffile.imwrite(tmp_path / "big.tif", (mask.astype(np.uint16) * 300))
    with pytest.raises(ImageReadError, match=r"big\.tif: mask values reach 600 .*uint16.*0-255"):
        read_mask(tmp_path / "big.tif")
    negative = mask.astype(np.int16)
    negative[0, 0] = -1  # not an id: refused, not wrapped round to 255 (ignore)
    tifffile.imwrite(tmp_path / "neg.tif", negative)
    with pytest.raises(ImageReadError, match=r"neg\.tif: mask values reach -1 \(a int16 image\), but"):
        read_mask(tmp_path / "neg.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", np.dstack([mask] * 3))
    with pytest.raises(ImageReadError, match=r"rgb\.tif.*single-channel"):
        read_mask(tmp_path / "rgb.tif")


def test_a_float_tiff_mask_of_whole_ids_reads_as_the_ids_and_interpolated_values_are_named(
    tmp_path: Path,
) -> None:
    """GIS tools write label rasters as Float32 by default (QGIS' Rasterize): a TIFF mask of whole ids was
    refused as not "a single-channel image of class ids" (it was one), with no word on what was wrong. Its
    ids are now read as a 16-bit file's are; values that are no ids (0.5 from a bilinear resample, NaN as
    no-data, 300) are refused saying which and what to do."""
    mask = RNG.choice(np.array([0, 1, 2, 255], np.uint8), size=(6, 9))
    for dtype in (np.float32, np.float64):
        tifffile.imwrite(tmp_path / "f.tif", mask.astype(dtype))
        np.testing.assert_array_equal(read_mask(tmp_path / "f.tif"), mask)
        assert read_mask(tmp_path / "f.tif").dtype == np.uint8
    for value, said in ((0.5, r"0\.5.*nearest"), (np.nan, r"nan.*no-data"), (300.0, r"300.*0-255")):
        bad = mask.astype(np.float32)
        bad[1, 2] = value
        tifffile.imwrite(tmp_path / "bad.tif", bad)
        with pytest.raises(ImageReadError, match=rf"bad\.tif: .*{said}"):
            read_mask(tmp_path / "bad.tif")


def test_a_float_mask_value_just_off_a_whole_id_is_named_as_stored(tmp_path: Path) -> None:
    """A Float32 mask holding 0.99999994 (1 less one step, a resample's rounding) was refused as "mask value
    1 ... is a fraction": the value was printed to 6 digits, a whole id that read as no fault. It is named
    as stored; -0.0 is the id 0."""
    mask = np.zeros((4, 5), np.float32)
    mask[0, 0] = -0.0
    tifffile.imwrite(tmp_path / "zero.tif", mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "zero.tif"), np.zeros((4, 5), np.uint8))
    mask[1, 2] = np.nextafter(np.float32(1), np.float32(0))
    tifffile.imwrite(tmp_path / "off.tif", mask)
    with pytest.raises(
        ImageReadError, match=r"off\.tif: mask value 0\.99999994 \(a float32 image\) is a fraction"
    ):
        read_mask(tmp_path / "off.tif")


def test_16_bit_png_mask_holding_ids_reads_as_the_ids(tmp_path: Path) -> None:
    mask = RNG.choice(np.array([0, 1, 2, 255], np.uint16), size=(6, 9))
    Image.fromarray(mask).save(tmp_path / "m16.png")  # uint16: mode I;16
    out = read_mask(tmp_path / "m16.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, mask)


def test_grey_palette_mask_showing_other_values_than_its_indices_is_refused(tmp_path: Path) -> None:
    """Indices 0, 1, 2 shown as grey 1, 255, 0, or classes 0/1 saved as black/white: the ids could be either
    reading, and a silent guess trains on wrong labels (first the indices, then the grey values were used)."""
    indices = RNG.integers(0, 3, size=(7, 8), dtype=np.uint8)
    for name, grey in (("shown.png", [1, 255, 0]), ("bw.png", [0, 255, 128])):
        pal = Image.frombytes("P", (8, 7), indices.tobytes())
        pal.putpalette([v for g in grey for v in (g, g, g)] + [0] * (768 - 9))
        pal.save(tmp_path / name)
        with pytest.raises(ImageReadError, match=rf"{name}: a palette mask whose grey palette .*mode L"):
            read_mask(tmp_path / name)
    ramp = Image.frombytes("P", (8, 7), indices.tobytes())  # a grey ramp: index = value, unambiguous
    ramp.putpalette([v for g in range(256) for v in (g, g, g)])
    ramp.save(tmp_path / "ramp.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "ramp.png"), indices)


@pytest.mark.parametrize("name", ["m.jpg", "m.jpeg", "m.JPEG"])
def test_jpeg_mask_is_refused_as_lossy(tmp_path: Path, name: str) -> None:
    Image.fromarray(RNG.integers(0, 3, size=(8, 8), dtype=np.uint8)).save(tmp_path / name, format="JPEG")
    with pytest.raises(ImageReadError, match=rf"{name}: a JPEG cannot hold a mask.*lossy.*PNG"):
        read_mask(tmp_path / name)


# ------------------------------------------------------------------------------------------ to_channels


def test_to_channels() -> None:
    grey = RNG.random((4, 5, 1), dtype=np.float32)
    rgb3 = to_channels(grey, 3)
    assert rgb3.shape == (4, 5, 3) and all(np.array_equal(rgb3[..., i], grey[..., 0]) for i in range(3))
    # luminance of a replicated grey is the grey itself (601 weights sum to 1)
    np.testing.assert_allclose(to_channels(rgb3, 1), grey, atol=1e-6)
    rgb = np.zeros((1, 3, 3), np.float32)
    rgb[0, 0, 0] = rgb[0, 1, 1] = rgb[0, 2, 2] = 1.0
    np.testing.assert_allclose(to_channels(rgb, 1)[0, :, 0], [0.299, 0.587, 0.114], atol=1e-6)
    assert to_channels(rgb, 3) is rgb
    bytes_rgb = RNG.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)  # integers: luma in float32, not cut
    luma = to_channels(bytes_rgb, 1)
    assert luma.dtype == np.float32
    np.testing.assert_allclose(luma[:, :, 0], bytes_rgb.astype(np.float64) @ [0.299, 0.587, 0.114], rtol=1e-5)
    with pytest.raises(ValueError, match=r"an image with 4 channels to 3: only 1<->3"):
        to_channels(np.zeros((2, 2, 4), np.float32), 3)
    with pytest.raises(ValueError, match=r"an image with 1 channel to 4: only 1<->3"):  # not "1 channel(s)"
        to_channels(grey, 4)
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        to_channels(np.zeros((2, 2), np.float32), 3)


# ------------------------------------------------------------------------------------------ writing


def test_write_png_atomic_round_trip_and_no_leftovers(tmp_path: Path) -> None:
    mask = RNG.integers(0, 3, size=(7, 9), dtype=np.uint8)
    dest = write_png_atomic(tmp_path / "sub" / "m.png", mask)
    assert dest == tmp_path / "sub" / "m.png"
    np.testing.assert_array_equal(read_mask(dest), mask)
    rgb = _rgb()
    write_png_atomic(dest, rgb)  # overwrite in place
    np.testing.assert_allclose(read_image(dest), rgb / 255.0, atol=1e-7)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.png"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_writes_get_the_permissions_of_an_ordinary_file(tmp_path: Path) -> None:
    """mkstemp makes its temporaries 0600; a result must be as readable as a file saved by hand (0644 under
    umask 022), or co-workers on a shared server cannot open it."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    dest = write_png_atomic(tmp_path / "m.png", np.zeros((3, 3), np.uint8))
    assert dest.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    dest.chmod(0o600)  # restricted by its owner: a rewrite keeps that
    write_png_atomic(dest, np.ones((3, 3), np.uint8))
    assert dest.stat().st_mode & 0o777 == 0o600


def test_write_png_atomic_rejects_bad_input_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_png_atomic(tmp_path / "a.png", np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\)"):
        write_png_atomic(tmp_path / "a.png", np.zeros((3, 3, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_list_images(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", "c.txt", ".hidden.png", "d/e.tif"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a.png",
        "b.JPG",
        "d/e.tif",
    ]
    assert len(list_images(tmp_path, recursive=False)) == 2
    assert set(IMAGE_EXTENSIONS) == {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
    with pytest.raises(ImageReadError, match="does not exist"):
        list_images(tmp_path / "missing")


def test_a_fourth_tiff_band_that_is_not_alpha_is_dropped_without_blackening(tmp_path: Path) -> None:
    rgb = RNG.integers(50, 256, size=(6, 7, 3), dtype=np.uint8)
    band = np.zeros((6, 7), np.uint8)  # e.g. a near-infrared band that reads 0 in places
    band[::2] = 200  # (not everywhere: a band of 0 everywhere is left alone even when it is alpha)
    tifffile.imwrite(
        tmp_path / "nir.tif", np.dstack([rgb, band]), photometric="rgb", extrasamples=["unspecified"]
    )
    np.testing.assert_allclose(read_image(tmp_path / "nir.tif"), rgb / 255.0, atol=1e-7)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_tiff_orientation_tag_is_honoured_as_pillow_does(tmp_path: Path, orientation: int) -> None:
    """The TIFF Orientation tag (274, which EXIF borrowed) was ignored: a tagged TIFF came out as stored while
    a JPEG with the same tag came out as displayed, and the README promises the image as displayed."""
    from PIL import ImageOps

    from marsunits.data.io import exif_orientation

    arr = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, arr, photometric="rgb", extratags=[(274, 3, 1, orientation, True)])
    # Pillow's reference is a PNG with the same pixels and tag: its TIFF loader turns a tagged TIFF itself,
    # and Pillow 10.0's exif_transpose turned it a second time.
    exif = Image.Exif()
    exif[274] = orientation
    Image.fromarray(arr).save(tmp_path / "a.png", exif=exif)
    with Image.open(tmp_path / "a.png") as im:
        displayed = np.asarray(ImageOps.exif_transpose(im))
    out = read_image(path)
    np.testing.assert_allclose(out, displayed / 255.0, rtol=1e-6)
    assert image_size(path) == (displayed.shape[1], displayed.shape[0])
    assert exif_orientation(path) == orientation
    wide = RNG.integers(0, 65536, size=(5, 7, 3), dtype=np.uint16)  # 16-bit colour: Pillow cannot hold it
    tifffile.imwrite(path, wide, photometric="rgb", extratags=[(274, 3, 1, orientation, True)])
    assert read_image(path).shape[:2] == displayed.shape[:2]


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_tiff_mask_turns_with_its_image(tmp_path: Path, orientation: int) -> None:
    """TIFF images were turned by their Orientation tag but TIFF masks were not: a pair tagged 3 came out
    misaligned without a word, one tagged 6 of two sizes."""
    ids = (np.arange(24, dtype=np.uint8).reshape(4, 6) % 3).astype(np.uint8)
    ids[0, 0] = 255  # a marked corner
    grey = ids.astype(np.float32) / 255.0
    tag = [(274, 3, 1, orientation, True)]
    tifffile.imwrite(tmp_path / "i.tif", (grey * 255).astype(np.uint8), extratags=tag)
    tifffile.imwrite(tmp_path / "m.tif", ids, extratags=tag)
    image, mask = read_image(tmp_path / "i.tif")[:, :, 0], read_mask(tmp_path / "m.tif")
    assert mask.shape == image.shape
    np.testing.assert_array_equal(np.round(image * 255).astype(np.uint8), mask)


def test_tiff_photometric_interpretation_is_applied_or_refused(tmp_path: Path) -> None:
    """tifffile returns samples as stored: a palette TIFF was read as its indices (a picture predicted 65 %
    'other', status ok), a MinisWhite one inverted, a CMYK one with its inks as RGB."""
    yy, xx = np.mgrid[0:24, 0:32]
    rgb = np.stack([xx * 8, yy * 10, (xx + yy) * 4], -1).clip(0, 255).astype(np.uint8)
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE)
    pal.save(tmp_path / "p.tif")
    pal.save(tmp_path / "p.png")
    tiff, png = read_image(tmp_path / "p.tif"), read_image(tmp_path / "p.png")
    assert tiff.shape == png.shape == (24, 32, 3)
    np.testing.assert_allclose(tiff, png, atol=1.01 / 255)  # the ColorMap's 16 bits rounded to 8
    Image.fromarray(rgb[:, :, 0]).convert("P").save(tmp_path / "grey.tif")  # a grey palette stays grey
    assert read_image(tmp_path / "grey.tif").shape == (24, 32, 1)

    grey = rgb[:, :, 0]
    tifffile.imwrite(tmp_path / "mw.tif", 255 - grey, photometric="miniswhite")
    np.testing.assert_allclose(read_image(tmp_path / "mw.tif")[:, :, 0], grey / 255, atol=1e-6)
    grey16 = grey.astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "mw16.tif", 65535 - grey16, photometric="miniswhite")
    np.testing.assert_allclose(read_image(tmp_path / "mw16.tif")[:, :, 0], grey16 / 65535, atol=1e-6)
    grey12 = (grey.astype(np.uint16) * 4095 + 127) // 255  # 12-bit data in a 16-bit file, as rovers store it
    tifffile.imwrite(tmp_path / "mb12.tif", grey12, photometric="minisblack")
    tifffile.imwrite(tmp_path / "mw12.tif", 4095 - grey12, photometric="miniswhite")
    np.testing.assert_array_equal(read_image(tmp_path / "mw12.tif"), read_image(tmp_path / "mb12.tif"))

    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    Image.fromarray(rgb).convert("YCbCr").save(tmp_path / "ycc.tif")  # uncompressed: stored as YCbCr
    for name, kind in (("cmyk.tif", "CMYK"), ("ycc.tif", "YCbCr")):
        with pytest.raises(ImageReadError, match=rf"{name}: a {kind}.*Convert it to RGB"):
            read_image(tmp_path / name)
    tifffile.imwrite(tmp_path / "jpeg.tif", rgb, photometric="rgb", compression="jpeg")  # YCbCr in JPEG
    assert np.abs(read_image(tmp_path / "jpeg.tif") * 255 - rgb).mean() < 3  # decoded to RGB by the codec


def test_16_bit_colour_pngs_keep_their_low_byte(tmp_path: Path) -> None:
    """Pillow decodes 16-bit RGB(A) PNGs to 8 bits: 12-bit rover data in them read 16 times too dark (a
    panorama came out 95 % smooth with status ok) and full-range data lost its low byte."""
    import imagecodecs

    rng = np.random.default_rng(0)
    twelve = rng.integers(0, 4096, (10, 12, 3)).astype(np.uint16)
    full = rng.integers(0, 65536, (10, 12, 3)).astype(np.uint16)
    rgba = np.concatenate([full, np.full((10, 12, 1), 65535, np.uint16)], axis=2)
    rgba[0, 0, 3] = 0  # one transparent pixel: black, as in other images
    for name, arr in (("twelve.png", twelve), ("full.png", full), ("rgba.png", rgba)):
        (tmp_path / name).write_bytes(imagecodecs.png_encode(arr))
    np.testing.assert_allclose(read_image(tmp_path / "twelve.png"), twelve / 4095, atol=1e-5)  # widened
    np.testing.assert_allclose(read_image(tmp_path / "full.png"), full / 65535, atol=1e-6)
    out = read_image(tmp_path / "rgba.png")
    assert out.shape == (10, 12, 3) and not out[0, 0].any()
    np.testing.assert_allclose(out[1:], full[1:] / 65535, atol=1e-6)


def test_a_16_bit_colour_png_is_told_from_pillow_10_s_tiles_too(tmp_path: Path) -> None:
    """Pillow before 11 lists an image's tiles as plain tuples, without the ``args`` name that Pillow 11's
    have: every PNG read on Pillow 10 (pyproject.toml's floor) failed in an AttributeError."""
    import imagecodecs

    from marsunits.data.io import _is_16_bit_colour_png

    wide = np.random.default_rng(0).integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    (tmp_path / "wide.png").write_bytes(imagecodecs.png_encode(wide))
    Image.fromarray(wide[..., 0].astype(np.uint8)).convert("RGB").save(tmp_path / "narrow.png")
    for name, sixteen in (("wide.png", True), ("narrow.png", False)):
        with Image.open(tmp_path / name) as im:
            assert _is_16_bit_colour_png(im) is sixteen
            im.tile = [tuple(tile) for tile in im.tile]  # as Pillow 10 lists them
            assert _is_16_bit_colour_png(im) is sixteen


def test_a_tiff_of_several_pages_is_read_from_its_first_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stack of frames (or a stereo pair) saved as one TIFF was read from its first page without a word;
    a pyramidal TIFF's reduced-resolution pages are the same picture and are not warned about."""
    first = RNG.integers(0, 256, size=(6, 8), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "stack.tif") as tif:
        tif.write(first)
        tif.write(255 - first)
        tif.write(first // 2)
    with tifffile.TiffWriter(tmp_path / "pyramid.tif") as tif:
        tif.write(first)
        tif.write(first[::2, ::2], subfiletype=1)  # an overview
    with caplog.at_level("WARNING", logger="marsunits.data.io"):
        np.testing.assert_allclose(read_image(tmp_path / "stack.tif")[:, :, 0], first / 255.0, atol=1e-6)
        read_image(tmp_path / "stack.tif")
        np.testing.assert_allclose(read_image(tmp_path / "pyramid.tif")[:, :, 0], first / 255.0, atol=1e-6)
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        f"{tmp_path / 'stack.tif'}: the TIFF holds 3 full-resolution pages; only the first is read. If the "
        "others are frames or bands of the picture, save the image you want labelled as a TIFF of its own"
    ]
    assert read_image_noted(tmp_path / "pyramid.tif")[1] is None
    note = read_image_noted(tmp_path / "stack.tif")[1]
    assert note is not None and "3 full-resolution pages" in note


def test_the_pages_of_a_tiff_are_counted_once_per_unchanged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every read of a TIFF parsed every page's header again to count its pages, for a note: an uncached
    training source reads a file for every crop, and a 1000-page stack took 101 ms a read, 94 of them
    counting. Read again unchanged, a stack parses no more pages than a one-page file; a file written again
    (another size or modification time) is counted again."""
    frame = RNG.integers(0, 256, size=(6, 8), dtype=np.uint8)

    def write(path: Path, pages: int, value: int = 0) -> Path:
        with tifffile.TiffWriter(path) as tif:
            for _ in range(pages):
                tif.write(frame ^ value)
        return path

    parsed: list[int] = []
    init = tifffile.TiffPage.__init__

    def counting_init(self: tifffile.TiffPage, *args: object, **kwargs: object) -> None:
        parsed.append(1)
        init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tifffile.TiffPage, "__init__", counting_init)

    def pages_parsed(path: Path) -> tuple[int, str | None]:
        parsed.clear()
        note = read_image_noted(path)[1]
        return len(parsed), note

    single = write(tmp_path / "single.tif", 1)
    pages_parsed(single)
    one_page, _ = pages_parsed(single)
    stack = write(tmp_path / "stack.tif", 3)
    assert "3 full-resolution pages" in (pages_parsed(stack)[1] or "")
    for _ in range(2):
        again, note = pages_parsed(stack)
        assert again == one_page and "3 full-resolution pages" in (note or "")
    write(stack, 5)  # written again: another size
    assert "5 full-resolution pages" in (pages_parsed(stack)[1] or "")
    write(stack, 5, value=255)  # the same size, a later modification time
    stat = stack.stat()
    os.utime(stack, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert pages_parsed(stack)[0] > one_page


def test_planar_rgba_and_associated_alpha_tiffs_read_like_contiguous_unassociated_ones(
    tmp_path: Path,
) -> None:
    """Four planes stored separately are RGBA too, and ExtraSamples 1 (associated alpha) is alpha as 2 is:
    fully transparent pixels read black either way."""
    rgb = RNG.integers(50, 256, size=(6, 7, 3), dtype=np.uint8)
    alpha = np.full((6, 7), 255, np.uint8)
    alpha[:, :2] = 0
    want = rgb / 255.0
    want[:, :2] = 0.0
    rgba = np.dstack([rgb, alpha])
    tifffile.imwrite(tmp_path / "c.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    tifffile.imwrite(
        tmp_path / "p.tif",
        np.moveaxis(rgba, -1, 0),
        photometric="rgb",
        planarconfig="separate",
        extrasamples=["unassalpha"],
    )
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb", extrasamples=["assocalpha"])
    for name in ("c.tif", "p.tif", "a.tif"):
        np.testing.assert_allclose(read_image(tmp_path / name), want, atol=1e-7, err_msg=name)


def test_miniswhite_grey_with_alpha_inverts_the_grey_only(tmp_path: Path) -> None:
    grey = RNG.integers(0, 256, size=(6, 7), dtype=np.uint8)
    alpha = np.full((6, 7), 255, np.uint8)
    alpha[0] = 0  # transparent top row: black, whatever its grey
    tifffile.imwrite(
        tmp_path / "mw.tif",
        np.dstack([255 - grey, alpha]),
        photometric="miniswhite",
        extrasamples=["unassalpha"],
    )
    want = grey / 255.0
    want[0] = 0.0
    np.testing.assert_allclose(read_image(tmp_path / "mw.tif")[:, :, 0], want, atol=1e-7)


def test_palette_tiff_with_a_full_range_colour_map_reads_its_colours_exactly(tmp_path: Path) -> None:
    """A 16-bit ColorMap spans 0-65535 (8-bit v stored as v * 257, as tifffile and GDAL write it)."""
    lut = RNG.integers(0, 256, size=(256, 3), dtype=np.uint8)
    lut[:, 1] = lut[:, 0]  # red equals green everywhere, blue differs: still a colour image
    lut[:2] = [[255, 255, 255], [128, 128, 129]]
    indices = RNG.integers(0, 256, size=(8, 9), dtype=np.uint8)
    indices[0, :2] = [0, 1]
    colormap = lut.T.astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "p.tif", indices, photometric="palette", colormap=colormap)
    np.testing.assert_allclose(read_image(tmp_path / "p.tif"), lut[indices] / 255.0, atol=1e-7)


def test_palette_png_is_grey_only_when_all_three_channels_agree(tmp_path: Path) -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :3] = (10, 10, 200)  # red equals green, blue differs: a colour
    rgb[:, 3:] = (90, 90, 30)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=2).save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.shape == (4, 6, 3)
    np.testing.assert_allclose(out, rgb / 255.0, atol=1e-7)


def test_float_images_above_2_are_refused_and_up_to_2_clipped(tmp_path: Path) -> None:
    """README/read_image: a float image whose values exceed 2 is on another scale; up to 2 is saturation."""
    tifffile.imwrite(tmp_path / "ok.tif", np.array([[0.5, 2.0]], np.float32))
    np.testing.assert_allclose(read_image(tmp_path / "ok.tif")[:, :, 0], [[0.5, 1.0]])
    tifffile.imwrite(tmp_path / "big.tif", np.array([[0.5, 2.5]], np.float32))  # e.g. a 0-4 scale
    with pytest.raises(ImageReadError, match=r"big\.tif: float pixels reach 2\.5"):
        read_image(tmp_path / "big.tif")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_image_size_and_orientation_agree_with_the_image_read(
    tmp_path: Path, suffix: str, orientation: int
) -> None:
    """image_size (from the header) is the size read_image returns, and exif_orientation the tag applied."""
    path = tmp_path / f"e{suffix}"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_rgb(5, 9)).save(path, exif=exif)
    h, w = read_image(path).shape[:2]
    assert image_size(path) == (w, h)
    assert exif_orientation(path) == orientation


@pytest.mark.parametrize("photometric", ["minisblack", "miniswhite"])
def test_a_bilevel_tiff_reads_black_and_white_as_pillow_shows_it(tmp_path: Path, photometric: str) -> None:
    bits = RNG.integers(0, 2, size=(5, 9)).astype(bool)
    tifffile.imwrite(tmp_path / "b.tif", bits, photometric=photometric)  # 1 bit per sample
    with Image.open(tmp_path / "b.tif") as im:
        shown = np.asarray(im.convert("L"))
    assert set(np.unique(shown)) <= {0, 255}
    np.testing.assert_array_equal(read_image(tmp_path / "b.tif")[:, :, 0], shown / 255.0)


@pytest.mark.parametrize("photometric", ["minisblack", "miniswhite"])
@pytest.mark.parametrize("bits", [2, 4, 10, 14])
def test_a_tiff_of_fewer_bits_than_a_byte_or_two_reads_at_its_own_full_scale(
    tmp_path: Path, bits: int, photometric: str
) -> None:
    """tifffile unpacks a 4-bit grey TIFF to 0-15 in a uint8: divided by 255 it read 17 times too dark (and a
    10-bit one, 0-1023 in a uint16, 4 times), while its BitsPerSample tag says where full scale is."""
    top = (1 << bits) - 1
    stored = np.linspace(0, top, 24).round().astype(np.uint8 if bits < 8 else np.uint16).reshape(4, 6)
    path = tmp_path / "g.tif"
    _write_packed(path, stored, bitspersample=bits, photometric=photometric)
    want = stored / top if photometric == "minisblack" else 1.0 - stored / top
    resolution = 255 if bits < 8 else 65535  # what the samples are widened to
    np.testing.assert_allclose(read_image(path)[:, :, 0], want, atol=0.5 / resolution + 1e-7)
    if bits < 8:  # as Pillow shows it
        with Image.open(path) as im:
            shown = np.asarray(im.convert("L"))
        np.testing.assert_allclose(read_image(path)[:, :, 0] * 255, shown, atol=1e-4)


@pytest.mark.parametrize("bits", [10, 12, 14])
def test_a_dark_tiff_of_10_to_14_bits_is_not_brightened_as_12_bit_data_in_16_bits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bits: int
) -> None:
    """Stretched to 16 bits, a dark exposure of a tagged 10-14-bit TIFF still fitted in 12 bits, and the
    12-bit rule (widen_12_bit) brightened it 16 times more (a 12-bit image of at most 200 read 0.78 for 0.05),
    with a warning that its values fit in 8 bits."""
    top = (1 << bits) - 1
    stored = np.linspace(0, 200, 24).round().astype(np.uint16).reshape(4, 6)
    _write_packed(tmp_path / "d.tif", stored, bitspersample=bits, photometric="minisblack")
    with caplog.at_level("WARNING", logger="marsunits.data.io"):
        np.testing.assert_allclose(read_image(tmp_path / "d.tif")[:, :, 0], stored / top, atol=1e-6)
    assert not [r for r in caplog.records if "fit in 8 bits" in r.getMessage()]


def test_a_16_bit_colour_png_is_turned_by_its_exif_orientation(tmp_path: Path) -> None:
    """Decoded by imagecodecs (not Pillow), it is still read as displayed, as an 8-bit PNG with the tag is."""
    import struct
    import zlib

    import imagecodecs

    arr = RNG.integers(0, 65536, size=(3, 5, 3), dtype=np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = exif.tobytes().removeprefix(b"Exif\x00\x00")
    chunk = struct.pack(">I", len(data)) + b"eXIf" + data + struct.pack(">I", zlib.crc32(b"eXIf" + data))
    png = imagecodecs.png_encode(arr)
    at = png.index(b"IDAT") - 4  # the eXIf chunk goes before the pixels
    (tmp_path / "e.png").write_bytes(png[:at] + chunk + png[at:])
    np.testing.assert_allclose(read_image(tmp_path / "e.png"), np.rot90(arr, k=-1) / 65535, atol=1e-6)
    assert image_size(tmp_path / "e.png") == (3, 5)


def test_a_4_bit_palette_tiff_reads_its_colours(tmp_path: Path) -> None:
    """Palette indices of fewer than 8 bits are indices, not samples to widen to full scale."""
    import struct

    lut = RNG.integers(0, 256, size=(16, 3))
    indices = np.arange(16, dtype=np.uint8).reshape(2, 8)
    path = tmp_path / "p4.tif"
    colormap = (lut.T * 257).astype(np.uint16).ravel().tolist()
    _write_packed(path, indices, bitspersample=4, extratags=[(320, "H", 48, colormap, True)])
    with tifffile.TiffFile(path) as tif:  # tifffile writes no 4-bit palette: set Photometric to 3 by hand
        at = tif.pages[0].tags[262].valueoffset
    raw = bytearray(path.read_bytes())
    raw[at : at + 2] = struct.pack("<H", 3)
    path.write_bytes(bytes(raw))
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), lut[indices])  # what it shows
    np.testing.assert_allclose(read_image(path), lut[indices] / 255.0, atol=1e-6)


@pytest.mark.parametrize(
    ("head", "said"),
    [
        (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"4" * 64 + b"\nsize 1234\n",
            "git lfs pull",
        ),
        (b"\n  <!DOCTYPE html><html><body>403 Forbidden</body></html>", "Download the image again"),
        (b"<HTML><HEAD><TITLE>Sign in</TITLE></HEAD></HTML>", "Download the image again"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "convert it to JPEG"),
    ],
)
def test_files_that_are_no_image_but_tell_what_they_are_say_what_to_do(
    tmp_path: Path, head: bytes, said: str
) -> None:
    """A Git LFS pointer (a clone without ``git lfs pull``), an error page saved by a failed download and a
    phone's HEIC photo were told "remove the file or convert it": the first two lose an image the user has
    and only needs to fetch again. Images and masks alike."""
    for name in ("a.png", "a.jpg"):
        path = tmp_path / name
        path.write_bytes(head)
        for reader in (read_image, read_mask) if name.endswith(".png") else (read_image,):  # no JPEG masks
            with pytest.raises(ImageReadError, match=f"{name}: .*{said}") as caught:
                reader(path)
            assert "remove the file" not in str(caught.value)
    other = tmp_path / "noise.png"
    other.write_bytes(b"just some text, nothing known")
    with pytest.raises(ImageReadError, match="not an image PIL can identify"):
        read_image(other)


def test_a_1_bit_mask_is_read_as_0_and_255_and_said_once(tmp_path: Path, caplog) -> None:
    """A 1-bit PNG (PIL's save of a boolean array) reads white as 255, unlabelled; a class-0/1 mask saved
    so lost its class 1 without a word. The first such mask of a process is named, with the fix."""
    import marsunits.data.io as io_module
    import marsunits.data.mask_io as mask_io

    io_module._WARNED_READ_NOTES.discard(mask_io._ONE_BIT_MASK)
    ones = np.zeros((6, 8), bool)
    ones[:, 4:] = True
    for name in ("a.png", "b.png"):
        Image.fromarray(ones).save(tmp_path / name)
    with caplog.at_level("WARNING", logger="marsunits"):
        for name in ("a.png", "b.png"):
            ids = read_mask(tmp_path / name)
            assert set(np.unique(ids)) == {0, 255} and (ids[:, 4:] == 255).all()
    said = [r.getMessage() for r in caplog.records if "1-bit" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"{tmp_path / 'a.png'}: a 1-bit")
    assert "8-bit greyscale of class ids" in said[0]


def test_a_palette_mask_whose_colours_are_the_project_s_classes_in_another_order_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A palette mask's indices are its ids. A colour mask drawn in the project's class colours and saved
    with a palette (an image editor's "indexed colour" quantises it) holds its colours in the order they were
    found, so index 0 may show rough_olivine's green: it trained as smooth_volcanic without a word. The first
    such mask of a process is named, with the colours its indices show and the fix; a palette in the
    project's order, or of other colours, is read as before, unsaid."""
    import marsunits.data.io as io_module
    import marsunits.data.mask_io as mask_io
    from marsunits.constants import CLASS_NAMES, PALETTE

    io_module._WARNED_READ_NOTES.discard(mask_io._PROJECT_COLOURS_ELSEWHERE)
    indices = np.zeros((6, 8), np.uint8)
    indices[:, 3:], indices[:, 6:], indices[0] = 1, 2, 3

    def save(name: str, colours: list[tuple[int, int, int]]) -> Path:
        pal = Image.frombytes("P", (8, 6), indices.tobytes())
        pal.putpalette([c for rgb in colours for c in rgb] + [0] * (768 - 3 * len(colours)))
        pal.save(tmp_path / name)
        return tmp_path / name

    smooth, rough, other = PALETTE
    quantised = [rough, smooth, other, (0, 0, 0)]  # the colours in the order an editor found them
    with caplog.at_level("WARNING", logger="marsunits"):
        for name in ("q1.png", "q2.png"):
            np.testing.assert_array_equal(read_mask(save(name, quantised)), indices)  # read as its indices
        own = save("own.png", [smooth, rough, other, (0, 0, 0)])
        np.testing.assert_array_equal(read_mask(own), indices)
        np.testing.assert_array_equal(
            read_mask(save("voc.png", [(0, 0, 0), (128, 0, 0), (0, 128, 0)])), indices
        )
    said = [r.getMessage() for r in caplog.records if "palette" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith(f"{tmp_path / 'q1.png'}: a palette mask"), said
    assert f"index 0 shows {CLASS_NAMES[1]}'s colour {rough}" in said[0], said
    assert f"index 1 shows {CLASS_NAMES[0]}'s colour {smooth}" in said[0], said
    assert "8-bit greyscale" in said[0], said
