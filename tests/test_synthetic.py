"""Properties of the synthetic rover-scene generator: geometry, labels, contact, unit cues, IO, Dataset."""

from __future__ import annotations

import json
import math
import os
import pickle

import numpy as np
import pytest
import torch

from marsunits.boundary.camera.pinhole import PinholeCamera
from marsunits.boundary.contact_io import read_contacts
from marsunits.constants import IGNORE_INDEX, OTHER, VALID_MASK_VALUES
from marsunits.data.io import read_image
from marsunits.data.mask_io import read_mask
from marsunits.data.synthetic import (
    SceneConfig,
    SyntheticScenes,
    generate_dataset,
    generate_scene,
    write_scene,
)

SMALL = {"width": 96, "height": 72}


def test_horizon_row_matches_first_ground_row() -> None:
    cfg = SceneConfig(**SMALL, roll_deg_max=0.0, pitch_deg_range=(10.0, 14.0), hfov_deg_range=(60.0, 90.0))
    checked = 0
    for i in range(8):
        s = generate_scene(1, i, cfg)
        cam = s.camera
        v_h = cam.image_height / 2.0 - cam.focal_px * math.tan(math.radians(cam.pitch_deg))
        ground_rows = np.flatnonzero((s.mask != OTHER).any(axis=1))
        assert len(ground_rows)
        first = int(ground_rows[0])
        # Row r is ground when its centre r + 0.5 lies below the horizon: first - 0.5 <= v_h < first + 0.5.
        assert abs(first - v_h) <= 1.0, (i, first, v_h)
        # Every column agrees (roll 0): the horizon is a straight row.
        per_col = np.argmax(s.mask != OTHER, axis=0)
        assert np.all(np.abs(per_col - v_h) <= 1.0)
        checked += 1
    assert checked == 8


def test_ray_cast_ground_points_project_back() -> None:
    cfg = SceneConfig(**SMALL, distortion=True)
    for i in range(6):
        cam = generate_scene(2, i, cfg).camera
        uu, vv = np.meshgrid(np.arange(cam.image_width) + 0.5, np.arange(cam.image_height) + 0.5)
        g = cam.pixel_to_ground(uu, vv, max_range_m=30.0)
        ok = np.isfinite(g[..., 0])
        assert ok.any()
        uv = cam.world_to_pixel(g[ok])
        err = np.hypot(uv[:, 0] - uu[ok], uv[:, 1] - vv[ok])
        assert err.max() < 0.1


@pytest.mark.parametrize("distortion", [False, True])
def test_pixel_grid_cast_matches_camera_pixel_to_ground(distortion: bool) -> None:
    from marsunits.data.synthetic.raycast import cast_pixel_grid
    from marsunits.data.synthetic.scene import draw_camera, scene_rng

    cfg = SceneConfig(
        **SMALL, distortion=distortion, pitch_deg_range=(5.0, 15.0), hfov_deg_range=(60.0, 90.0)
    )
    for i in range(6):
        cam = draw_camera(scene_rng(7, i), cfg)
        rays = cast_pixel_grid(cam)
        uu, vv = np.meshgrid(np.arange(96) + 0.5, np.arange(72) + 0.5)
        ref = cam.pixel_to_ground(uu, vv)
        np.testing.assert_array_equal(rays.ground, np.isfinite(ref[..., 0]))
        ok = rays.ground
        assert ok.any() and not ok.all()  # the horizon is in view at these pitches
        scale = 1.0 + np.hypot(ref[ok, 0] - cam.x_m, ref[ok, 1] - cam.y_m)
        assert np.allclose(rays.rel_x[ok] + cam.x_m, ref[ok, 0], rtol=0, atol=1e-9 * scale.max())
        assert np.allclose(rays.rel_y[ok] + cam.y_m, ref[ok, 1], rtol=0, atol=1e-9 * scale.max())
        sky = np.flatnonzero(~ok.ravel())
        elev, azim = rays.elevation_azimuth(sky)
        d = cam.pixel_to_ray(uu.ravel()[sky], vv.ravel()[sky])
        np.testing.assert_allclose(elev, np.arcsin(np.clip(d[:, 2], 0.0, 1.0)), atol=1e-12)
        np.testing.assert_allclose(azim, np.arctan2(d[:, 1], d[:, 0]), atol=1e-12)


def test_synthetic_data_config_caches_scenes_by_default() -> None:
    from pathlib import Path

    from omegaconf import OmegaConf

    from marsunits.data.datamodule import MarsDataModule

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "data" / "synthetic.yaml")
    assert cfg.cache_scenes is True
    kwargs = {"name": "synthetic", "sources": ["synthetic"], "in_channels": 3, "crop_size": 32}
    small = {"train_length": 2, "val_length": 1, "test_length": 1, "scene": {"width": 64, "height": 64}}
    for flag in (True, False):
        dm = MarsDataModule(**kwargs, **small, cache_scenes=flag)
        dm.setup("fit")
        assert dm.train_set.cache is flag and all(s.cache is flag for s in dm.val_sets)


def _boundary_distance(mask: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Distance (px) from points (u, v) to the nearest pixel edge separating a 0 pixel from a 1 pixel."""
    m = mask.astype(np.int16)
    h = ((m[:, :-1] == 0) & (m[:, 1:] == 1)) | ((m[:, :-1] == 1) & (m[:, 1:] == 0))
    v = ((m[:-1] == 0) & (m[1:] == 1)) | ((m[:-1] == 1) & (m[1:] == 0))
    hr, hc = np.nonzero(h)  # vertical edge at u = hc + 1, v in [hr, hr + 1]
    vr, vc = np.nonzero(v)  # horizontal edge at v = vr + 1, u in [vc, vc + 1]
    d = np.full(len(pts), np.inf)
    if len(hr):
        du = pts[:, None, 0] - (hc + 1)
        dv = np.maximum(np.abs(pts[:, None, 1] - (hr + 0.5)) - 0.5, 0.0)
        d = np.minimum(d, np.hypot(du, dv).min(axis=1))
    if len(vr):
        dv = pts[:, None, 1] - (vr + 1)
        du = np.maximum(np.abs(pts[:, None, 0] - (vc + 0.5)) - 0.5, 0.0)
        d = np.minimum(d, np.hypot(du, dv).min(axis=1))
    return d


@pytest.mark.parametrize("extras", [{"p_sand": 0.0, "p_rover": 0.0}, {"p_sand": 1.0, "p_rover": 1.0}])
def test_true_contact_lies_on_the_mask_boundary(extras: dict) -> None:
    cfg = SceneConfig(**SMALL, p_contact=1.0, distortion=True, **extras)
    with_contact = 0
    for i in range(12):
        s = generate_scene(3, i, cfg)
        if not s.contacts:
            continue
        with_contact += 1
        pts = np.concatenate([c.pixels for c in s.contacts])
        assert pts.shape[1] == 2
        assert (pts[:, 0] >= 0).all() and (pts[:, 0] <= 96).all()
        assert (pts[:, 1] >= 0).all() and (pts[:, 1] <= 72).all()
        # Where sand or the range limit hides a side, the geologic contact has no 0/1 edge to sit on.
        col = np.clip(pts[:, 0].astype(int), 0, 95)
        row = np.clip(pts[:, 1].astype(int), 0, 71)
        near_ignore = np.zeros(len(pts), bool)
        for dr in (-2, -1, 0, 1, 2):
            for dc in (-2, -1, 0, 1, 2):
                r, c = np.clip(row + dr, 0, 71), np.clip(col + dc, 0, 95)
                near_ignore |= ~np.isin(s.mask[r, c], (0, 1))
        # Within a pixel of the frame, a contact grazing the edge crosses no pixel centre: no edge there.
        at_frame = (pts[:, 0] < 1) | (pts[:, 0] > 95) | (pts[:, 1] < 1) | (pts[:, 1] > 71)
        free = pts[~near_ignore & ~at_frame]
        if len(free) < 5:
            continue
        d = _boundary_distance(s.mask, free)
        assert d.mean() <= 1.0, (i, d.mean())
        for c in s.contacts:
            assert c.ground_m is not None and c.ground_m.shape == c.pixels.shape
    assert with_contact >= 6


def test_units_differ_in_texture_not_reliably_in_brightness() -> None:
    cfg = SceneConfig(**SMALL, mode="grey", p_contact=1.0, p_sand=0.0, p_rover=0.0, jpeg_quality_range=None)
    tex0, tex1, bright0, bright1 = [], [], [], []
    for i in range(50):
        s = generate_scene(4, i, cfg)
        img = s.image.astype(np.float32) / 255.0
        pad = np.pad(img, 1, mode="edge")
        blur = sum(pad[r : r + 72, c : c + 96] for r in range(3) for c in range(3)) / 9.0
        hp2 = (img - blur) ** 2
        # Stay a pixel away from label edges so the high-pass measures texture, not the boundary.
        m = s.mask
        inner = np.ones_like(m, bool)
        inner[1:-1, 1:-1] = (
            (m[1:-1, 1:-1] == m[:-2, 1:-1])
            & (m[1:-1, 1:-1] == m[2:, 1:-1])
            & (m[1:-1, 1:-1] == m[1:-1, :-2])
            & (m[1:-1, 1:-1] == m[1:-1, 2:])
        )
        a, b = (m == 0) & inner, (m == 1) & inner
        if a.sum() < 200 or b.sum() < 200:
            continue
        tex0.append(hp2[a].mean())
        tex1.append(hp2[b].mean())
        bright0.append(img[a].mean())
        bright1.append(img[b].mean())
    assert len(tex0) >= 20
    tex0, tex1 = np.array(tex0), np.array(tex1)
    # The rough unit has more high-frequency texture on average and in most scenes.
    assert tex1.mean() > 1.5 * tex0.mean()
    assert (tex1 > tex0).mean() >= 0.7
    # Brightness is not a perfect cue: in some scenes the smooth unit is the brighter one.
    assert (np.array(bright0) > np.array(bright1)).any()


def test_deterministic_per_seed_and_index_independent() -> None:
    cfg = SceneConfig(**SMALL, mode="mixed")
    a, b = generate_scene(5, 3, cfg), generate_scene(5, 3, cfg)
    assert a.name == b.name == "synth_s5_000003"
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.camera == b.camera
    assert len(a.contacts) == len(b.contacts)
    for ca, cb in zip(a.contacts, b.contacts, strict=True):
        np.testing.assert_array_equal(ca.pixels, cb.pixels)
    assert not np.array_equal(generate_scene(5, 4, cfg).image, a.image)
    assert not np.array_equal(generate_scene(6, 3, cfg).image, a.image)


@pytest.mark.parametrize("mode", ["color", "grey", "mixed"])
def test_shapes_dtypes_and_mask_values(mode: str) -> None:
    cfg = SceneConfig(width=80, height=60, mode=mode, distortion=True, p_sand=1.0, p_rover=0.5)
    ndims = set()
    for i in range(6):
        s = generate_scene(7, i, cfg)
        assert s.mask.shape == (60, 80) and s.mask.dtype == np.uint8
        assert set(np.unique(s.mask)) <= VALID_MASK_VALUES
        assert s.image.dtype == np.uint8 and s.image.shape[:2] == (60, 80)
        assert s.image.ndim == 2 or s.image.shape[2] == 3
        ndims.add(s.image.ndim)
        assert isinstance(s.camera, PinholeCamera)
        assert (s.camera.image_width, s.camera.image_height) == (80, 60)
        assert 1.8 <= s.camera.height_m <= 2.2 and 10.0 <= s.camera.pitch_deg <= 45.0
    assert ndims == {"color": {3}, "grey": {2}, "mixed": {2, 3}}[mode]


def test_far_ground_is_ignored_and_sky_is_other() -> None:
    cfg = SceneConfig(**SMALL, pitch_deg_range=(10.0, 11.0), hfov_deg_range=(80.0, 90.0), roll_deg_max=0.0)
    s = generate_scene(8, 0, cfg)
    assert (s.mask[0] == OTHER).all()  # sky at the top
    ground_rows = np.flatnonzero((s.mask != OTHER).any(axis=1))
    assert (s.mask[ground_rows[0]] == IGNORE_INDEX).mean() > 0.9  # the first ground rows are > 30 m away


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"width": -4}, "width"),
        ({"height": 0}, "height"),
        ({"mode": "rgb"}, "mode"),
        ({"difficulty": 1.5}, "difficulty"),
        ({"p_sand": -0.1}, "p_sand"),
        ({"hfov_deg_range": (90.0, 25.0)}, "hfov_deg_range"),
        ({"max_range_m": 0.0}, "max_range_m"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        SceneConfig(**kwargs)


def test_bad_seed_is_rejected() -> None:
    with pytest.raises(ValueError, match="seed"):
        generate_scene(-1, 0, SceneConfig(**SMALL))


def test_dataset_items_match_generate_scene() -> None:
    cfg = SceneConfig(**SMALL)
    ds = SyntheticScenes(5, 9, cfg)
    assert len(ds) == 5
    item = ds[2]
    s = generate_scene(9, 2, cfg)
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 72, 96)
    assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy() * 255.0, s.image, atol=1e-3)
    assert item["mask"].dtype == torch.int64
    np.testing.assert_array_equal(item["mask"].numpy(), s.mask)
    assert item["path"] == "synthetic://seed=9/2"
    assert PinholeCamera.from_dict(item["camera"]) == s.camera
    with pytest.raises(IndexError):
        ds[5]
    grey = SyntheticScenes(2, 9, SceneConfig(**SMALL, mode="grey"))[0]
    assert grey["image"].shape == (1, 72, 96)
    forced = SyntheticScenes(4, 9, SceneConfig(**SMALL, mode="mixed"), channels=3)
    assert all(forced[i]["image"].shape == (3, 72, 96) for i in range(4))


def test_dataset_pickles_and_loads_in_workers() -> None:
    ds = SyntheticScenes(4, 10, SceneConfig(width=48, height=32))
    clone = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(clone[1]["image"], ds[1]["image"])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2
    assert batches[0]["image"].shape == (2, 3, 32, 48)
    torch.testing.assert_close(batches[1]["mask"][1], ds[3]["mask"])


def test_scene_cache_renders_each_scene_once_and_still_augments(monkeypatch: pytest.MonkeyPatch) -> None:
    import marsunits.data.synthetic.dataset as synth_dataset
    from marsunits.data.datasets import SceneDataset
    from marsunits.data.transforms import build_train_transform

    calls: list[int] = []
    real = synth_dataset.generate_scene

    def counting(seed: int, index: int = 0, config: SceneConfig | None = None):
        calls.append(index)
        return real(seed, index, config)

    monkeypatch.setattr(synth_dataset, "generate_scene", counting)
    cfg = SceneConfig(width=64, height=64)
    plain = SceneDataset(SyntheticScenes(3, 12, cfg), in_channels=3, cache=True)
    first, second = plain[1], plain[1]
    assert calls == [1]  # the second access is served from the cache
    assert torch.equal(first["image"], second["image"]) and torch.equal(first["mask"], second["mask"])
    assert first["camera"] == second["camera"] and first["path"] == second["path"]
    # The cached uint8 image is the rendered scene exactly (8-bit source).
    fresh = SyntheticScenes(3, 12, cfg)[1]
    torch.testing.assert_close(first["image"], fresh["image"], rtol=0.0, atol=1e-6)
    assert torch.equal(first["mask"], fresh["mask"])
    calls.clear()
    _ = plain[-1], plain[1]
    assert calls == [2]  # negative indices are normalised; index 1 is still cached

    calls.clear()
    torch.manual_seed(0)
    aug = SceneDataset(
        SyntheticScenes(2, 12, cfg), 3, build_train_transform(32, 3, min_scale=0.2), cache=True
    )
    a, b = aug[0], aug[0]
    assert calls == [0]
    assert a["image"].shape == b["image"].shape == (3, 32, 32)
    assert not torch.equal(a["image"], b["image"])  # a new augmentation at every access

    off = SceneDataset(SyntheticScenes(2, 12, cfg), in_channels=3, cache=False)
    calls.clear()
    off[0], off[0]
    assert calls == [0, 0]


def test_fill_cache_in_worker_processes_gives_the_lazily_rendered_scenes() -> None:
    from marsunits.data.datasets import SceneDataset

    cfg = SceneConfig(width=64, height=64)
    pooled = SceneDataset(SyntheticScenes(5, 21, cfg), in_channels=3, cache=True)
    assert pooled.fill_cache(processes=2) == 5
    assert sorted(pooled._items) == [0, 1, 2, 3, 4]
    assert pooled.fill_cache(processes=2) == 0  # everything is cached already
    lazy = SceneDataset(SyntheticScenes(5, 21, cfg), in_channels=3, cache=True)
    for i in range(5):
        a, b = pooled[i], lazy[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert a["path"] == b["path"] and a["camera"] == b["camera"]
    # Without a cache there is nothing to fill.
    assert SceneDataset(SyntheticScenes(2, 21, cfg), in_channels=3, cache=False).fill_cache(2) == 0


def test_fill_cache_falls_back_to_this_process_when_the_workers_die(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Workers die e.g. when an unguarded user script is re-imported in them; the run must go on.
    from concurrent.futures.process import BrokenProcessPool

    import marsunits.data.datasets as datasets_module
    from marsunits.data.datasets import SceneDataset

    class DyingPool:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self) -> DyingPool:
            return self

        def __exit__(self, *exc) -> None:
            return None

        def map(self, *args, **kwargs):
            raise BrokenProcessPool("a child process terminated abruptly")

    monkeypatch.setattr(datasets_module, "ProcessPoolExecutor", DyingPool)
    cfg = SceneConfig(width=64, height=64)
    ds = SceneDataset(SyntheticScenes(3, 21, cfg), in_channels=3, cache=True)
    with caplog.at_level("WARNING"):
        assert ds.fill_cache(processes=2) == 3
    assert sorted(ds._items) == [0, 1, 2]
    assert "__main__" in caplog.text and "render_processes=0" in caplog.text
    fresh = SceneDataset(SyntheticScenes(3, 21, cfg), in_channels=3, cache=True)
    assert torch.equal(ds[2]["image"], fresh[2]["image"])


def test_write_scene_layout_round_trips(tmp_path) -> None:
    cfg = SceneConfig(**SMALL, p_contact=1.0)
    s = next(sc for sc in (generate_scene(11, i, cfg) for i in range(10)) if sc.contacts)
    paths = write_scene(s, tmp_path)
    assert paths["image"] == tmp_path / "images" / f"{s.name}.png"
    assert paths["mask"] == tmp_path / "masks" / f"{s.name}.png"
    assert paths["contacts"] == tmp_path / "contacts" / f"{s.name}.contact.geojson"
    assert paths["camera"] == tmp_path / "cameras" / f"{s.name}.json"
    np.testing.assert_array_equal(read_mask(paths["mask"]), s.mask)
    img = read_image(paths["image"])
    assert img.shape == (72, 96, 3)
    np.testing.assert_allclose(img * 255.0, s.image, atol=0.5)
    lines, size = read_contacts(paths["contacts"])
    assert size == (96, 72) and len(lines) == len(s.contacts)
    np.testing.assert_allclose(lines[0].pixels, s.contacts[0].pixels, atol=1e-3)
    np.testing.assert_allclose(lines[0].ground_m, s.contacts[0].ground_m, atol=1e-3)
    cam = json.loads(paths["camera"].read_text())
    for key in ("height_m", "pitch_deg", "roll_deg", "hfov_deg", "image_width", "image_height", "K"):
        assert key in cam
    assert PinholeCamera.from_dict(cam) == s.camera
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_true_contact_file_names_the_site_of_its_ground_metres_as_a_predicted_one_does(tmp_path) -> None:
    """A scene's true contact file had ``ground_m`` and ``length_m`` but no ``site``, where predict.py's file
    for the same image and camera file names it: the true and predicted contacts of a scene, loaded together
    in a GIS or filtered by ``site``, did not say they are in one frame. Each ground line names the site of
    its scene's camera file, as a predicted one does."""
    from marsunits.boundary.camera import load_camera
    from marsunits.boundary.contact_io import ContactLine, contacts_to_geojson
    from marsunits.boundary.projection import add_ground

    cfg = SceneConfig(**SMALL, p_contact=1.0)
    s = next(sc for sc in (generate_scene(11, i, cfg) for i in range(10)) if sc.contacts)
    paths = write_scene(s, tmp_path)
    camera = load_camera(paths["camera"])
    assert camera.site
    true = json.loads(paths["contacts"].read_text())["features"]
    said = [f["properties"].get("site") for f in true]
    assert said and all(site == camera.site for site in said), said
    # The same pixels, as predict.py projects them with that camera file: the same ground properties.
    lines, _ = read_contacts(paths["contacts"])
    projected = add_ground([ContactLine(pixels=line.pixels) for line in lines], camera, cfg.max_range_m)
    predicted = contacts_to_geojson(projected, s.camera.image_width, s.camera.image_height)["features"]
    ground_keys = {"ground_m", "length_m", "site"}
    assert predicted and {f["properties"]["site"] for f in predicted} == {camera.site}
    for feature in true:
        assert ground_keys <= set(feature["properties"]), feature["properties"]
    assert all(line.site == camera.site for line in lines)  # read back as such


def test_the_pieces_of_a_true_contact_share_its_contact_id_as_a_predicted_contact_s_do(tmp_path) -> None:
    """A scene's one contact curve, cut into pieces in the image (where it leaves the range limit or the
    frame, behind rover hardware), was written as features without ``contact_id``: read back, each piece
    counted as a contact of its own (a contact map of the true files said 2 contacts for one). Every piece
    of the curve carries the curve's id, as the pieces of a predicted contact split at the range limit
    share theirs, and the file counts one contact."""
    from marsunits.boundary.contact_io import CONTACT_ID, count_contacts

    cfg = SceneConfig(**SMALL, p_contact=1.0, p_rover=1.0)
    s = next(sc for sc in (generate_scene(11, i, cfg) for i in range(12)) if len(sc.contacts) >= 2)
    paths = write_scene(s, tmp_path)
    features = json.loads(paths["contacts"].read_text())["features"]
    assert len(features) >= 2
    assert [f["properties"].get(CONTACT_ID) for f in features] == [0] * len(features)
    lines, _ = read_contacts(paths["contacts"])
    assert count_contacts(lines) == 1
    assert all(line.extra[CONTACT_ID] == 0 for line in s.contacts)  # the scene in memory says the same


def test_write_scene_temporaries_are_the_kind_the_stale_cleanup_removes(tmp_path, monkeypatch) -> None:
    # Every file of a scene goes through atomic.py: a process killed mid-write leaves temporaries that
    # remove_stale_temporaries recognises, and the camera JSON is readable like the other files (its own
    # writer used mkstemp's names, which the cleanup never matched, and left the file 0600).
    from marsunits import atomic

    renamed: list[str] = []
    real = os.replace

    def replace(src, dst):  # type: ignore[no-untyped-def]
        renamed.append(os.path.basename(src))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    paths = write_scene(generate_scene(11, 0, SceneConfig(**SMALL)), tmp_path)
    assert len(renamed) == 5  # the scene's four files and classes.json
    for name in renamed:
        match = atomic._TEMP_NAME.match(name)
        assert match is not None and int(match.group(1)) == os.getpid(), name
    assert paths["camera"].stat().st_mode & 0o777 == atomic.FILE_MODE


def test_generate_dataset_writes_n_scenes(tmp_path) -> None:
    names = generate_dataset(tmp_path, 3, 12, SceneConfig(width=40, height=30))
    assert names == [f"synth_s12_{i:06d}" for i in range(3)]
    for sub, suffix in (
        ("images", ".png"),
        ("masks", ".png"),
        ("contacts", ".contact.geojson"),
        ("cameras", ".json"),
    ):
        assert sorted(p.name for p in (tmp_path / sub).iterdir()) == [n + suffix for n in names]


def test_written_scenes_name_the_project_s_classes_beside_their_masks(tmp_path, monkeypatch) -> None:
    """Masks the generator wrote had no classes.json beside them, so predict.py scoring against them said
    they had been read as project ids, "their 2 as other", as it says of labels of unknown origin. The
    generator now writes one naming the project's classes in the form of AI4Mars' and MarsScapes' files,
    which the labels' readers take as saying the masks hold project ids; written once, not per scene."""
    from marsunits.constants import CLASS_NAMES
    from marsunits.data.class_map import labels_classes_folder, project_classes_file

    write_scene(generate_scene(3, 0, SceneConfig(width=40, height=30)), tmp_path)
    written = json.loads((tmp_path / "classes.json").read_text())
    named = {c["id"]: c["name"] for c in written["classes"]}
    assert named == {0: CLASS_NAMES[0], 1: CLASS_NAMES[1], 2: CLASS_NAMES[2], IGNORE_INDEX: "unlabelled"}
    assert project_classes_file(labels_classes_folder(tmp_path / "masks")) == tmp_path / "classes.json"
    renamed: list[str] = []
    real = os.replace
    monkeypatch.setattr(
        os, "replace", lambda src, dst: (renamed.append(os.path.basename(dst)), real(src, dst))
    )
    write_scene(generate_scene(3, 1, SceneConfig(width=40, height=30)), tmp_path)
    assert len(renamed) == 4 and "classes.json" not in renamed, renamed


def test_drawn_distorted_cameras_give_every_pixel_a_ray() -> None:
    """7 of 1,510 distorted cameras drawn for 90° lenses had corner pixels with no ray (the lens folded
    back), cast 1e6 px off; k1 is now clamped to keep the corners on the lens's monotonic branch."""
    from marsunits.data.synthetic.scene import draw_camera

    cfg = SceneConfig(width=80, height=60, distortion=True, hfov_deg_range=(85.0, 95.0))
    strongest = 0.0
    for seed in range(400):
        cam = draw_camera(np.random.default_rng(seed), cfg)
        u, v = np.meshgrid([0.5, 79.5], [0.5, 59.5])  # the corners: the largest radii
        assert np.isfinite(cam.pixel_to_ray(u, v)).all(), (seed, cam.k1, cam.hfov_deg)
        strongest = min(strongest, cam.k1)
    assert strongest < -0.06  # strong barrel distortion is still drawn, up to the limit


def test_ctrl_c_while_scenes_render_in_workers_stops_them_at_once() -> None:
    """Ctrl-C while the training scenes rendered in worker processes waited for every chunk in progress (the
    pool's exit joins them), and a worker dying of the same signal made the pool print a traceback."""
    import multiprocessing
    import signal
    import threading
    import time

    from marsunits.data.datasets import SceneDataset

    scenes = SceneDataset(
        SyntheticScenes(4000, 21, SceneConfig(width=64, height=64)), in_channels=3, cache=True
    )
    main = threading.main_thread().ident
    assert main is not None
    # A real SIGINT to the main thread, as Ctrl-C sends: it also wakes a blocking wait for the workers'
    # results, which _thread.interrupt_main does not (the interrupt then surfaced after the rendering).
    timer = threading.Timer(3.0, signal.pthread_kill, (main, signal.SIGINT))
    # Python's own Ctrl-C handler: an earlier test's Lightning shutdown may have left SIGINT ignored.
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    # What reaches the thread exception hook is printed as a traceback after train.py's one-line message: the
    # pool's manager thread raised InvalidStateError on the futures cancelled as the workers were ended.
    printed: list[BaseException | None] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: printed.append(args.exc_value)
    timer.start()
    start = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            scenes.fill_cache(processes=2)  # 12,000 scenes: far longer than 3 s even on a fast machine
        assert time.perf_counter() - start < 3.0 + 10.0  # stopped, not finished
        deadline = time.perf_counter() + 3.0  # ended, not left to finish their chunks (seconds each)
        while multiprocessing.active_children() and time.perf_counter() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the manager thread notices the ended workers
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, handler)
        threading.excepthook = hook
    assert printed == []
    # The race is the scheduler's to decide, so the filter itself: a cancelled future's InvalidStateError
    # from a pool's manager thread is dropped, and anything else still reaches the hook.
    from concurrent.futures import InvalidStateError
    from concurrent.futures.process import _ExecutorManagerThread
    from types import SimpleNamespace

    from marsunits.data.datasets import _quiet_pool_manager

    threading.excepthook = lambda args: printed.append(args.exc_value)
    try:
        _quiet_pool_manager()
        manager = object.__new__(_ExecutorManagerThread)
        threading.excepthook(SimpleNamespace(exc_value=InvalidStateError("CANCELLED"), thread=manager))
        assert printed == []
        other = ValueError("a real failure")
        threading.excepthook(SimpleNamespace(exc_value=other, thread=manager))
        assert printed == [other]
    finally:
        threading.excepthook = hook
    assert not [
        p for p in multiprocessing.active_children() if p.name.startswith("SpawnProcess") or "Fork" in p.name
    ]
