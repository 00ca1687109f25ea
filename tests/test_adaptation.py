"""adapt_batchnorm (AdaBN): batch-norm statistics re-estimated on the target images, nothing else changed."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import small_task
from marsunits.checkpoint_loading import load_task
from marsunits.errors import ConfigError, DataError
from marsunits.inference import adaptation
from marsunits.inference.adaptation import adapt_batchnorm, adapt_batchnorm_tiled
from marsunits.inference.adapted_state import read_adapted_state
from marsunits.inference.runner import run
from marsunits.task import SegmentationTask
from test_predict import ckpt, make_cfg, save_rgb  # noqa: F401  (ckpt is a fixture)

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

#: Tiny networks on tiny inputs: intra-op threads only oversubscribe a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.Dropout(0.9),
        nn.Conv2d(4, 2, 1),
        nn.BatchNorm2d(2),
    ).eval()


def test_statistics_become_those_of_the_target_images_and_nothing_else_moves() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    batches = [0.5 + 2.0 * torch.rand(4, 3, 8, 8, generator=gen) for _ in range(3)]  # a shifted "domain"
    adapted, seen = adapt_batchnorm(net, batches)
    assert seen == 12 and not adapted.training
    # The input model is untouched.
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # First BatchNorm: running mean = mean of its input over every pixel of every image (equal batches).
    with torch.no_grad():
        features = net[0](torch.cat(batches))
    torch.testing.assert_close(adapted[1].running_mean, features.mean(dim=(0, 2, 3)))
    # Weights and affine parameters are the model's own.
    for key, value in net.state_dict().items():
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(adapted.state_dict()[key], value), key
    # Dropout stayed off during the pass: the second BatchNorm saw the first's eval-mode output.
    with torch.no_grad():
        second_in = adapted[3](adapted[2](adapted[1](adapted[0](torch.cat(batches)))))
    torch.testing.assert_close(adapted[4].running_mean, second_in.mean(dim=(0, 2, 3)))


def test_task_adapts_and_predicts_at_the_same_size() -> None:
    task = small_task()
    images = [torch.rand(2, 3, 32, 32) * 0.3 for _ in range(2)]
    adapted, _ = adapt_batchnorm(task, images)
    with torch.no_grad():
        out, ref = adapted(images[0]), task(images[0])
    assert out.shape == ref.shape == (2, 3, 32, 32)
    assert not torch.allclose(out, ref)


def test_nothing_to_adapt_or_nothing_to_adapt_on_is_an_error() -> None:
    with pytest.raises(ValueError, match="no images"):
        adapt_batchnorm(_net(), [])
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        adapt_batchnorm(nn.Conv2d(3, 3, 1), [torch.rand(1, 3, 4, 4)])


def test_tiled_adaptation_of_one_window_equals_adapting_on_that_window() -> None:
    task = small_task()
    image = torch.rand(3, 64, 64)
    tiled, seen = adapt_batchnorm_tiled(
        task, [image], tile=64, overlap=0.25, batch_size=2, num_classes=3, stride=8
    )
    direct, _ = adapt_batchnorm(task, [image[None]])
    assert seen == 1
    # Its two windows go through in one batch, each normalised alone: equal up to float rounding (the
    # per-window normalisation is computed another way than training mode's, 1e-5 apart after 10 layers).
    for (key, a), b in zip(tiled.state_dict().items(), direct.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=key)


# The skip is a mark, not a call in the body: a skipped cuda case sets up no fixture (its checkpoint, whose
# training warned on a machine without a GPU under `pytest -m gpu`).
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, NEEDS_CUDA])])
def test_predict_adapt_bn_predicts_with_the_folders_statistics(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    device: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 64, 64, seed=3)
    (inp / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    # The adaptation pass runs where prediction runs (the model and its windows on the chosen device).
    seen_devices: list[tuple[str, str]] = []
    original = adaptation.adapt_batchnorm_tiled

    def recording(model: nn.Module, images, **kwargs):  # type: ignore[no-untyped-def]
        seen_devices.append((next(model.parameters()).device.type, torch.device(kwargs["device"]).type))
        return original(model, images, **kwargs)

    monkeypatch.setattr(adaptation, "adapt_batchnorm_tiled", recording)
    cfg = make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true", "precision=32", "min_unit_area_px=0")
    cfg.device = device
    assert run(cfg) == 1  # the broken file is an error row, as without adapt_bn
    assert seen_devices == [(device, device)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["adapt_bn"] is True and summary["adapted_on_images"] == 1
    # One 64 px window (the checkpoint's tile): the mask is the argmax of the network adapted to that image.
    image = torch.from_numpy(np.asarray(Image.open(inp / "a.png"), dtype=np.float32) / 255).permute(2, 0, 1)
    task = load_task(ckpt)
    adapted, _ = adapt_batchnorm(task, [image[None]])
    with torch.no_grad():
        expected = adapted(image[None]).argmax(1)[0].numpy()
        plain = task(image[None]).argmax(1)[0].numpy()
    # (TF32 convolutions on CUDA may move a few near-tied pixels.)
    agreement = 0.999 if device == "cpu" else 0.99
    assert (np.asarray(Image.open(out / "a.mask.png")) == expected).mean() > agreement
    assert (expected != plain).any()  # so the check above tells the adapted network from the plain one


def test_adapt_bn_contact_files_name_the_adapted_network_beside_the_checkpoints(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With adapt_bn=true the contact files and the contact map named the checkpoint's network, which did not
    draw them (the checkpoint run on the image gives other masks and contacts): one shared alone named the
    wrong network. They name the adapted network's digest (network_sha256, the function
    prediction_settings.json's digest is computed with), the checkpoint's network beside it as
    prediction_settings.json records it, and how many images the statistics came from."""
    from marsunits.data.synthetic import SceneConfig, generate_dataset
    from marsunits.model_package import load_model, network_sha256

    data = tmp_path / "syn"
    names = generate_dataset(data, 2, seed=0, config=SceneConfig(width=96, height=64, p_contact=1.0))
    for camera_file in (data / "cameras").glob("*.json"):  # one site: one contact_map.geojson
        camera_file.write_text(json.dumps({**json.loads(camera_file.read_text()), "site": "traverse"}))
    adapted: list[nn.Module] = []
    original = adaptation.adapt_batchnorm_tiled

    def recording(model: nn.Module, images, **kwargs):  # type: ignore[no-untyped-def]
        network, seen = original(model, images, **kwargs)
        adapted.append(network)
        return network, seen

    monkeypatch.setattr(adaptation, "adapt_batchnorm_tiled", recording)
    out = tmp_path / "out"
    options = ("adapt_bn=true", "map=true", "max_range_m=60")
    assert run(make_cfg(tmp_path, ckpt, data / "images", out, *options)) == 0
    settings = json.loads((out / "prediction_settings.json").read_text())
    assert settings["network_sha256"] == network_sha256(load_model(ckpt))  # the checkpoint's, as loaded
    (network,) = adapted
    model = {
        "checkpoint": ckpt.name,
        "network_sha256": network_sha256(network),
        "checkpoint_network_sha256": settings["network_sha256"],
        "adapted_on_images": 2,
    }
    assert model["network_sha256"] != model["checkpoint_network_sha256"]

    def named_models() -> list[object]:
        files = [out / f"{n}.contact.geojson" for n in names] + [out / "contact_map.geojson"]
        return [json.loads(f.read_text()).get("model") for f in files]

    assert named_models() == [model] * 3
    # The resume reads the statistics the first run kept, adapting nothing: its map names the same network.
    assert run(make_cfg(tmp_path, ckpt, data / "images", out, *options)) == 0
    assert json.loads((out / "summary.json").read_text())["counts"]["skipped"] == 2
    assert len(adapted) == 1
    assert named_models() == [model] * 3


def test_adapt_bn_resume_is_refused_when_the_folder_it_adapted_to_changed(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
) -> None:
    """The statistics come from every input: after an image is added, resuming would keep the masks of the
    earlier statistics beside masks of the new ones. The same folder resumes; a changed one needs
    overwrite."""
    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        save_rgb(inp / f"img{i}.png", 48, 48, seed=i)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true")) == 0
    masks = {p.name: p.read_bytes() for p in out.glob("*.mask.png")}
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true")) == 0  # unchanged: resumes, all skipped
    assert json.loads((out / "summary.json").read_text())["counts"]["skipped"] == 2

    save_rgb(inp / "img2.png", 48, 48, seed=2)
    with pytest.raises(
        ConfigError,
        match=r"statistics are adapted to \(adapt_bn=true: 2 files then, 3 files now.*overwrite=true",
    ):
        run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true"))
    assert {p.name: p.read_bytes() for p in out.glob("*.mask.png")} == masks  # nothing lost
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true", "overwrite=true")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["ok"] == 3 and summary["adapted_on_images"] == 3
    # The same files under new times (a restore that rounds them, a touch) are the same inputs: they were
    # refused until overwrite=true. The new times are recorded, so the files are hashed once, not every run.
    for image in inp.glob("*.png"):
        os.utime(image, (image.stat().st_atime + 3600, image.stat().st_mtime + 3600))
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true")) == 0
    assert json.loads((out / "summary.json").read_text())["counts"]["skipped"] == 3
    recorded = json.loads((out / "prediction_settings.json").read_text())["adapt_bn_inputs"]
    from marsunits.inference.inputs import discover
    from marsunits.inference.output_settings import adaptation_inputs

    assert recorded == adaptation_inputs(discover(inp, (".png",))[0])
    # A folder recorded before the content digest resumes as long as its sizes and times are the same.
    settings = json.loads((out / "prediction_settings.json").read_text())
    del settings["adapt_bn_inputs"]["content_sha256"]
    (out / "prediction_settings.json").write_text(json.dumps(settings))
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true")) == 0
    assert "content_sha256" in json.loads((out / "prediction_settings.json").read_text())["adapt_bn_inputs"]
    # Another image of the same size under the old name: other statistics, refused.
    save_rgb(inp / "img0.png", 48, 48, seed=9)
    with pytest.raises(
        ConfigError, match=r"statistics are adapted to \(adapt_bn=true: 3 files then, 3 files now"
    ):
        run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true"))
    # Without adapt_bn the statistics are the checkpoint's: the input files are not part of the record.
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "plain")) == 0
    save_rgb(inp / "img3.png", 48, 48, seed=3)
    assert run(make_cfg(tmp_path, ckpt, inp, tmp_path / "plain")) == 0


def test_predict_adapt_bn_refuses_onnx_and_a_folder_without_readable_images(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
) -> None:
    inp = tmp_path / "in"
    (inp).mkdir()
    (inp / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="adapt_bn=true.*runtime=torch"):
        run(make_cfg(tmp_path, ckpt, inp, tmp_path / "o1", "adapt_bn=true", "runtime=onnx"))
    assert not (tmp_path / "o1" / "manifest.csv").exists()
    with pytest.raises(
        DataError, match=r"adapt_bn=true: the only input file under .* could not be read.*set adapt_bn=false"
    ):
        run(make_cfg(tmp_path, ckpt, inp, tmp_path / "o2", "adapt_bn=true"))
    assert not (tmp_path / "o2" / "manifest.csv").exists()


def test_statistics_are_pooled_over_every_value_whatever_the_batching() -> None:
    """PyTorch's cumulative average weighted batches alike and averaged within-batch variances: unequal
    batches, or the same windows batched otherwise, gave other statistics (8 % of one image's pixels changed
    class between predict.py's batch_size=1 and 4)."""
    net = _net()
    gen = torch.Generator().manual_seed(2)
    batches = [0.5 + 2.0 * torch.rand(n, 3, 8, 8, generator=gen) for n in (1, 5, 2)]
    adapted, seen = adapt_batchnorm(net, batches)
    assert seen == 8
    with torch.no_grad():
        features = net[0](torch.cat(batches))
    torch.testing.assert_close(adapted[1].running_mean, features.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(adapted[1].running_var, features.var(dim=(0, 2, 3), unbiased=True))
    task = small_task()
    images = [torch.rand(3, 140, 150), torch.rand(3, 64, 180) * 0.5]  # several windows each at tile 64
    layouts = [
        adapt_batchnorm_tiled(task, images, tile=64, overlap=0.25, batch_size=b, num_classes=3, stride=8)[0]
        for b in (1, 4)
    ]
    batches: list[int] = []  # and the windows do go through batch_size at a time (a GPU was left idle)
    first_conv = next(m for m in task.modules() if isinstance(m, nn.Conv2d))
    handle = first_conv.register_forward_pre_hook(lambda _m, args: batches.append(args[0].shape[0]))
    try:
        adapt_batchnorm_tiled(task, images, tile=64, overlap=0.25, batch_size=4, num_classes=3, stride=8)
    finally:
        handle.remove()
    assert max(batches) == 4 and sum(batches) > 4
    for key, value in layouts[0].state_dict().items():  # float rounding apart (previous test)
        torch.testing.assert_close(value, layouts[1].state_dict()[key], rtol=1e-4, atol=1e-5, msg=key)
    # Windows batched as training mode batches them (one set of statistics for the batch) differ by far more.
    windows = torch.rand(4, 3, 64, 64)
    joint, _ = adapt_batchnorm(task, [windows])
    alone, _ = adapt_batchnorm(task, list(windows.split(1)))
    assert any(
        not torch.allclose(a, b, rtol=1e-2, atol=1e-3)
        for (k, a), b in zip(joint.state_dict().items(), alone.state_dict().values(), strict=True)
        if "running_var" in k
    )


def test_one_value_per_channel_uses_the_running_statistics_instead_of_failing() -> None:
    """A 12 x 10 image in the folder stopped the whole adapt_bn run with "Expected more than 1 value per
    channel" (its deepest map is 1 x 1 with one window in the batch), and DeepLabV3+, whose image-pooling
    branch always holds one value per channel, could not be adapted at all with one window at a time."""
    task = small_task()
    layout = {"tile": 64, "overlap": 0.25, "batch_size": 1, "num_classes": 3, "stride": 8}
    tiny = torch.rand(3, 6, 5)  # one 8 px window: the deepest (1/8) map is 1 x 1
    adapted, seen = adapt_batchnorm_tiled(task, [tiny, torch.rand(3, 64, 64), tiny], **layout)
    assert seen == 3
    for norm in (m for m in adapted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        assert torch.isfinite(norm.running_var).all() and (norm.running_var >= 0).all()
    torch.manual_seed(0)
    deeplab = SegmentationTask(arch="deeplabv3plus", encoder="efficientnet_lite0", encoder_weights=None)
    image = torch.rand(3, 128, 160)
    layout = {"tile": 128, "overlap": 0.25, "batch_size": 4, "num_classes": 3, "stride": 32}
    adapted, seen = adapt_batchnorm_tiled(deeplab.eval(), [image], **layout)
    assert seen == 1
    norms = {n: m for n, m in adapted.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    before = dict(deeplab.named_modules())
    moved = [n for n, m in norms.items() if not torch.equal(m.running_mean, before[n].running_mean)]
    assert len(moved) > len(norms) // 2  # adapted, except the 1 x 1 pooled branch, which kept its own
    with torch.no_grad():
        assert adapted(image[None]).shape == (1, 3, 128, 160)


def test_switching_adapt_bn_on_is_said_once_without_digests(tmp_path: Path) -> None:
    """adapt_bn false -> true also listed adapt_bn_inputs, as raw JSON with two SHA-256 digests."""
    from marsunits.inference.output_settings import check_settings, write_settings

    before = {"weights_sha256": "a" * 64, "adapt_bn": False, "adapt_bn_inputs": None}
    now = {**before, "adapt_bn": True, "adapt_bn_inputs": {"files": 3, "sha256": "b" * 64}}
    write_settings(tmp_path, before)
    with pytest.raises(ConfigError, match=r"other settings: adapt_bn \(false then, true now\)\. ") as caught:
        check_settings(tmp_path, now, overwrite=False)
    assert "sha256" not in str(caught.value) and "adapt_bn_inputs" not in str(caught.value)


def _contact_models(out: Path) -> dict[str, object]:
    return {p.name: json.loads(p.read_text()).get("model") for p in sorted(out.glob("*.contact.geojson"))}


def test_a_resumed_adapt_bn_folder_is_predicted_with_the_network_it_began_with(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A resumed adapt_bn=true run adapted again: with another batch_size or threads the statistics came out
    a float rounding apart, so the images it predicted were drawn by another network than those already
    there, and their contact files named another adapted digest. The first run keeps the adapted statistics
    in the folder; the resumed one reads them, adapting nothing, whatever its batch_size."""
    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        save_rgb(inp / f"img{i}.png", 80, 100, seed=i)  # several 64 px windows each
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true", "batch_size=1")) == 0
    stored = out / "adapted_batchnorm.safetensors"
    assert stored.is_file() and stored.stat().st_size < 64_000  # the batch-norm buffers alone
    first = _contact_models(out)
    assert len(first) == 3 and len({json.dumps(m) for m in first.values()}) == 1
    mask = (out / "img1.mask.png").read_bytes()
    (out / "img1.mask.png").unlink()  # one image left to predict: a stopped run, resumed

    def not_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("adapted again instead of reading the folder's stored statistics")

    monkeypatch.setattr(adaptation, "adapt_batchnorm_tiled", not_again)
    before = stored.read_bytes()
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true", "batch_size=3", "threads=2")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["ok"] == 1 and summary["counts"]["skipped"] == 2
    assert summary["adapted_on_images"] == 3 and summary["adapt_bn_statistics"] == "stored"
    assert _contact_models(out) == first  # one network drew every image, as one run would have
    assert (out / "img1.mask.png").read_bytes() == mask
    assert stored.read_bytes() == before  # read, not rewritten
    said = " ".join(r.getMessage() for r in caplog.records)
    assert (
        f"using the batch-norm statistics kept in {stored} (adapted to 3 images by the run that began the "
        "folder) rather than adapting them again, so that every image of the folder is predicted with the "
        "same network" in said
    )


def test_stored_statistics_that_cannot_be_used_stop_the_run_and_overwrite_adapts_again(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
) -> None:
    """A stored file that is damaged, cut short, or of another network is refused in one sentence naming it
    and the fix (status 2, as another setting of the folder is), the outputs kept: adapting again would mix
    two networks' outputs. overwrite=true adapts again and replaces it; overwrite=true without adapt_bn
    removes it."""
    from safetensors.torch import load as load_safetensors_bytes
    from safetensors.torch import save as save_safetensors_bytes

    from marsunits.errors import exit_status
    from marsunits.inference.adapted_state import AdaptedStateError, load_adapted

    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        save_rgb(inp / f"img{i}.png", 48, 48, seed=i)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true")) == 0
    stored = out / "adapted_batchnorm.safetensors"
    good = stored.read_bytes()
    outputs = {p.name: p.read_bytes() for p in out.glob("*.mask.png")}
    header_size = int.from_bytes(good[:8], "little")
    meta = json.loads(good[8 : 8 + header_size])["__metadata__"]
    tensors = load_safetensors_bytes(good)
    record = json.loads(meta["marsunits"])
    stored.write_bytes(good[: len(good) // 2])  # cut short (a copy interrupted, a full disk elsewhere)
    (out / "img0.mask.png").unlink()  # an image still to predict
    fix = "run with overwrite=true to adapt again and predict every image, or give another output_dir"
    with pytest.raises(ConfigError) as caught:
        run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true"))
    message = str(caught.value)
    assert message.startswith(f"{stored} cannot be read (not a whole safetensors file") and message.endswith(
        fix
    )
    assert "\n" not in message and exit_status(caught.value) == 2
    assert not (out / "img0.mask.png").exists()  # nothing predicted with statistics adapted again
    assert (out / "img1.mask.png").read_bytes() == outputs["img1.mask.png"]  # nothing lost
    # Edited tensors, another checkpoint's network, other windows: each said, in the same sentence's form.
    expected = {
        k: record[k]
        for k in ("checkpoint_network_sha256", "adapt_bn_inputs", "tile", "overlap", "adapt_bn_version")
    }
    edited = {k: (v + 0.5 if k.endswith("running_mean") else v) for k, v in tensors.items()}
    damaged = {
        "edited": (save_safetensors_bytes(edited, meta), expected, "does not hold the statistics it records"),
        "another network": (
            good,
            {**expected, "checkpoint_network_sha256": "b" * 64},
            rf"adapted from another network \({record['checkpoint_network_sha256'][:12]}…\) than this "
            r"checkpoint's \(bbbbbbbbbbbb…\)",
        ),
        "other windows": (
            good,
            {**expected, "tile": 32},
            r"other settings than this run's: tile \(64 then, 32 now\)",
        ),
        "other inputs": (
            good,
            {**expected, "adapt_bn_inputs": {"files": 3, "sha256": "c" * 64, "content_sha256": "d" * 64}},
            r"other settings than this run's: input files \(2 files then, 3 files now",
        ),
    }
    task = load_task(ckpt)
    for what, (data, now, said) in damaged.items():
        stored.write_bytes(data)
        with pytest.raises(AdaptedStateError) as refused:
            load_adapted(task, stored, now)
        assert re.search(said, str(refused.value)) and str(refused.value).endswith(fix), what
    stored.write_bytes(save_safetensors_bytes(edited, meta))  # overwrite=true does not read it: replaces it
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true", "overwrite=true")) == 0
    assert load_safetensors_bytes(stored.read_bytes()).keys() == tensors.keys()
    assert json.loads((out / "summary.json").read_text())["adapt_bn_statistics"] == "adapted"
    load_adapted(task, stored, expected)  # the new file: whole, and what a resume reads
    assert run(make_cfg(tmp_path, ckpt, inp, out, "overwrite=true")) == 0
    assert not stored.exists()  # of no output left in the folder


def test_a_folder_begun_before_the_statistics_were_kept_is_adapted_again_once_and_keeps_them(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A folder predicted before the statistics were kept has none to read: its next run adapts again, says
    so, and keeps them, so the run after it reads them."""
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "img0.png", 48, 48, seed=0)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true")) == 0
    stored = out / "adapted_batchnorm.safetensors"
    kept = stored.read_bytes()
    stored.unlink()  # as a folder of an earlier marsunits left it: no file, and a record not naming it
    settings = json.loads((out / "prediction_settings.json").read_text())
    del settings["adapted_network_sha256"]
    (out / "prediction_settings.json").write_text(json.dumps(settings))
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true")) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"{out} keeps no adapted batch-norm statistics (a folder begun before they were kept)" in said
    assert json.loads((out / "summary.json").read_text())["adapt_bn_statistics"] == "adapted"
    assert stored.read_bytes() == kept  # the same images, batching and threads: the same statistics


def test_a_kept_statistics_file_deleted_or_swapped_stops_the_resume_instead_of_mixing_two_networks(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
) -> None:
    """The folder's record names the adapted network its images were drawn by. With the kept file deleted, a
    resume adapted again as if the folder had been begun before files were kept, and with another batch_size
    its images named two networks; with another folder's file of the same inputs (another batch_size) it
    read that one. Both stop now, naming the file and the fix, nothing predicted."""
    from marsunits.errors import exit_status
    from marsunits.inference.adapted_state import adapted_buffers, read_adapted_state, write_adapted_state
    from marsunits.model_package import network_sha256

    inp, out, other = tmp_path / "in", tmp_path / "out", tmp_path / "other"
    for i in range(2):
        save_rgb(inp / f"img{i}.png", 80, 100, seed=i)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true", "batch_size=1")) == 0
    stored = out / "adapted_batchnorm.safetensors"
    (digest,) = {m["network_sha256"] for m in _contact_models(out).values()}  # type: ignore[index]
    (out / "img0.mask.png").unlink()  # an image still to predict
    fix = "run with overwrite=true to adapt again and predict every image, or give another output_dir"
    # Another folder's file of the same inputs and checkpoint, adapted a float rounding apart (another
    # batch_size): whole, and true to the network it records, but not this folder's.
    tensors, record = read_adapted_state(stored)
    task = load_task(ckpt)
    with torch.no_grad():
        for key, value in adapted_buffers(task).items():
            value.copy_(tensors[key] * (1 + 1e-6) if key.endswith("running_mean") else tensors[key])
    record["network_sha256"] = network_sha256(task)
    assert record["network_sha256"] != digest
    other.mkdir()
    swapped = write_adapted_state(other, adapted_buffers(task), record).read_bytes()
    for what, said in {
        "deleted": f"{stored} is missing: {out}'s images were predicted with batch-norm statistics adapted "
        f"to its inputs (network {digest[:12]}…, as prediction_settings.json records), which it kept",
        "another folder's": f"{stored} holds other batch-norm statistics (network ",
    }.items():
        if what == "deleted":
            stored.unlink()
        else:
            stored.write_bytes(swapped)
        with pytest.raises(ConfigError) as caught:
            run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true", "batch_size=3"))
        message = str(caught.value)
        assert message.startswith(said) and message.endswith(fix), (what, message)
        assert "\n" not in message and exit_status(caught.value) == 2
        assert not (out / "img0.mask.png").exists()  # nothing predicted by another network
    stored.unlink()
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true", "overwrite=true")) == 0
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true", "batch_size=3")) == 0  # reads it


def test_a_folder_named_as_the_statistics_file_is_refused_before_predicting_naming_it(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
) -> None:
    """A folder under the statistics file's name was said to be fixed by overwrite=true, which then predicted
    every image and failed at the end on the rename ([Errno 21] Is a directory), the record left pending; a
    new folder was refused with that advice too. It is refused before anything is predicted, in one sentence
    naming it and what to do, with or without overwrite=true or adapt_bn."""
    from marsunits.errors import exit_status

    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "img0.png", 48, 48, seed=0)
    in_the_way = out / "adapted_batchnorm.safetensors"
    in_the_way.mkdir(parents=True)
    for options, then in {
        ("adapt_bn=true",): "remove or rename it, then run again",
        ("adapt_bn=true", "overwrite=true"): "remove or rename it, then run again",
        ("overwrite=true",): "remove or rename it, then run again",
    }.items():
        with pytest.raises(ConfigError) as caught:
            run(make_cfg(tmp_path, ckpt, inp, out, *options))
        message = str(caught.value)
        assert message.startswith(f"{in_the_way} is a folder, where predict.py keeps"), options
        assert then in message and "\n" not in message and exit_status(caught.value) == 2, options
        assert not (out / "img0.mask.png").exists(), options
    in_the_way.rmdir()
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true")) == 0
    (out / "img0.mask.png").unlink()
    in_the_way.unlink()
    in_the_way.mkdir()
    with pytest.raises(ConfigError) as caught:  # the images' statistics are gone: overwrite=true is needed
        run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true"))
    assert str(caught.value).endswith(
        "remove or rename it, then run with overwrite=true to adapt again and predict every image, or give "
        "another output_dir"
    )


def test_a_kept_file_of_a_run_stopped_before_its_record_does_not_stop_a_run_with_other_settings(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The statistics are kept before prediction_settings.json is written, and no image is predicted before
    both are: a run stopped between the two leaves a file no image was predicted with. A run with another
    tile was refused by it, naming overwrite=true for a folder with nothing in it; it adapts again and
    replaces it."""
    inp, out = tmp_path / "in", tmp_path / "out"
    save_rgb(inp / "img0.png", 48, 48, seed=0)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true")) == 0
    stored = out / "adapted_batchnorm.safetensors"
    for p in out.iterdir():  # what a run stopped after keeping the statistics leaves
        if p != stored:
            p.unlink()
    with caplog.at_level("INFO", logger="marsunits.inference.runner"):
        assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true", "tile=32")) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"{stored} is of a run stopped before it predicted an image" in said
    summary = json.loads((out / "summary.json").read_text())
    assert summary["adapt_bn_statistics"] == "adapted" and summary["counts"]["ok"] == 1
    header = stored.read_bytes()
    meta = json.loads(
        json.loads(header[8 : 8 + int.from_bytes(header[:8], "little")])["__metadata__"]["marsunits"]
    )
    assert meta["tile"] == 32  # replaced: the file the folder's image was predicted with


@pytest.mark.parametrize(
    ("full_at", "overwrite"),
    [
        ("adapted_batchnorm.safetensors", False),
        ("prediction_settings.json", False),
        ("adapted_batchnorm.safetensors", True),
    ],
)
def test_a_full_disk_as_the_statistics_or_the_settings_record_are_written_is_the_full_disk_stop(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    full_at: str,
    overwrite: bool,
) -> None:
    """A disk that filled up as adapt_bn=true kept its statistics (before the first image of a new folder, or
    once an overwrite=true run had predicted every image again), or as the folder's settings record was
    written, ended in the generic line of an unknown file ("cannot write a file: the disk is full ...", the
    write's error naming none). Every other write of the run ends in the full-disk stop: status 2, one line
    naming the file, to free space or choose another output_dir; summary.json, where the reports are
    written, says it in stopped_early."""
    import errno

    from marsunits.errors import report_user_errors
    from marsunits.inference import adapted_state, output_settings

    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        save_rgb(inp / f"img{i}.png", 48, 48, seed=i)
    if overwrite:
        assert run(make_cfg(tmp_path, ckpt, inp, out, "adapt_bn=true")) == 0

    def full(*args: object, **kwargs: object) -> None:  # as a write() raises it: no file name
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if full_at == "adapted_batchnorm.safetensors":
        monkeypatch.setattr(adapted_state, "atomic_write_bytes", full)
    else:
        real = output_settings.write_json_atomic

        def full_for_the_record(path: Path, data: object) -> Path:
            if path.name == full_at:
                full()
            return real(path, data)

        monkeypatch.setattr(output_settings, "write_json_atomic", full_for_the_record)
    extra = ("adapt_bn=true", *(("overwrite=true",) if overwrite else ()))
    try:
        report_user_errors(lambda: run(make_cfg(tmp_path, ckpt, inp, out, *extra)), prog="predict.py")
        status = 0
    except SystemExit as exc:
        status = int(exc.code or 0)
    err = capsys.readouterr().err
    assert status == 2, err
    first = err.splitlines()[0]
    assert first.startswith(
        f"predict.py: error: stopped: cannot write outputs to {out / full_at} because the disk is full"
    ), first
    assert "free space or choose another output_dir" in first and "Traceback" not in err
    if overwrite:  # every image predicted again: the reports say why the run ends with status 2
        summary = json.loads((out / "summary.json").read_text())
        assert summary["exit_status"] == 2 and summary["exit_reasons"] == ["stopped"], summary
        assert summary["stopped_early"] == first.removeprefix("predict.py: error: "), summary


def test_shares_of_the_images_adapted_apart_and_added_up_give_the_statistics_of_all_of_them() -> None:
    """``adapt_batchnorm_tiled`` with ``all_sum`` (a sharded run's ranks, here threads adding up their
    vectors): each share, unequal or empty, is passed alone, and every share ends with the same statistics,
    bit for bit, and the same count of images, those of one pass over every image up to float64 rounding."""
    import threading

    task = small_task()
    gen = torch.Generator().manual_seed(3)
    images = [torch.rand(3, 70 + 10 * i, 90, generator=gen) * (0.5 + 0.2 * i) for i in range(3)]
    shares = [images[:2], [], images[2:]]
    vectors: list[torch.Tensor | None] = [None] * len(shares)
    barrier = threading.Barrier(len(shares))

    def all_sum_of(rank: int):  # type: ignore[no-untyped-def]
        def all_sum(vector: torch.Tensor) -> torch.Tensor:
            vectors[rank] = vector
            barrier.wait(60)
            total = vectors[0].clone()  # type: ignore[union-attr]
            for other in vectors[1:]:
                total += other  # type: ignore[operator]
            return total

        return all_sum

    adapted: list[tuple[nn.Module, int] | None] = [None] * len(shares)

    def adapt(rank: int) -> None:
        adapted[rank] = adapt_batchnorm_tiled(
            task,
            shares[rank],
            tile=64,
            overlap=0.25,
            batch_size=2,
            num_classes=3,
            stride=8,
            all_sum=all_sum_of(rank),
        )

    threads = [threading.Thread(target=adapt, args=(rank,)) for rank in range(len(shares))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    alone, seen = adapt_batchnorm_tiled(
        task, images, tile=64, overlap=0.25, batch_size=2, num_classes=3, stride=8
    )
    assert seen == 3 and [a[1] for a in adapted] == [3, 3, 3]  # type: ignore[index]
    states = [a[0].state_dict() for a in adapted]  # type: ignore[index]
    for key, value in alone.state_dict().items():
        assert all(torch.equal(state[key], states[0][key]) for state in states[1:]), key
        torch.testing.assert_close(states[0][key], value, rtol=1e-6, atol=1e-9, msg=key)
    assert any(
        not torch.equal(value, task.state_dict()[key])
        for key, value in states[0].items()
        if "running_var" in key
    )


def _adapting_rank(rank: int, store: str, opts: object, conn: object, fail: str = "") -> None:
    """One rank of a two-process gloo run (forked, so the patches hold; collectives' timeout 20 s) with
    ``adapt_bn=true``: the images this rank's batch-norm pass is given are counted into ``fed<rank>`` beside
    the store. ``fail``: ``"<rank>"`` fails at its second image of the pass (an ``OSError``, as a disk
    failing), ``"<rank>:killed"`` is killed there (SIGKILL, after saying "killed"), ``"<rank>:stopped"`` is
    stopped there (SIGTERM); ``"<rank>:stopped-waiting"`` gets a SIGTERM half a second after its pass,
    waiting for the other rank, which takes 3 s more over its second image; ``"<rank>:blind"`` does not see
    ``OUT/adapted_batchnorm.safetensors`` (reading it raises ``FileNotFoundError``, as on a machine whose
    view of a shared filesystem lags)."""
    import pathlib
    import signal
    import threading

    from marsunits.errors import TerminatedError
    from test_recovery_predict import _run_as_rank

    original = adaptation.adapt_batchnorm_tiled
    fed = Path(store).parent / f"fed{rank}"
    failing, _, how = fail.partition(":")

    def counting(model: nn.Module, images, **kwargs):  # type: ignore[no-untyped-def]
        def counted():  # type: ignore[no-untyped-def]
            for n, image in enumerate(images):
                if failing == str(rank) and n == 1 and how != "blind":
                    if how == "killed":
                        conn.send("killed")  # type: ignore[attr-defined]
                        os.kill(os.getpid(), signal.SIGKILL)
                    if how == "stopped":
                        raise TerminatedError
                    if not how:
                        raise OSError(5, "Input/output error", "im2.png")
                if how == "stopped-waiting" and failing != str(rank) and n == 1:
                    time.sleep(3.0)
                fed.write_text(str(n + 1))
                yield image
            if how == "stopped-waiting" and failing == str(rank):
                threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()

        fed.write_text("0")
        return original(model, counted(), **kwargs)

    adaptation.adapt_batchnorm_tiled = counting  # type: ignore[assignment]
    if how == "blind" and failing == str(rank):
        read_bytes = pathlib.Path.read_bytes

        def unseen(path: Path) -> bytes:
            if path.name == "adapted_batchnorm.safetensors":
                raise FileNotFoundError(2, "No such file or directory", str(path))
            return read_bytes(path)

        pathlib.Path.read_bytes = unseen  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True)


def test_a_sharded_run_adapts_each_rank_to_its_shard_and_adds_up_the_statistics(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
) -> None:
    """``adapt_bn=true`` on two ranks: each rank passed every image of the folder through the network (the
    adaptation's pass once per rank, ranks on different GPUs a rounding apart). Each rank now passes its own
    shard and the ranks add up their float64 sums: the statistics are one process's (float64 rounding
    apart), adapted to all 8 images, every rank predicts with the same network (one digest in every contact
    file and prediction_settings.json), and rank 0 keeps them for re-runs."""
    from safetensors.torch import load_file

    from marsunits.inference import predict_folder
    from test_recovery_predict import _two_ranks

    opts, out, said = _two_ranks(tmp_path, ckpt, _adapting_rank, options=("adapt_bn=true",))
    assert [s[0] for s in said] == ["returned", "returned"], said  # type: ignore[index]
    assert [int((tmp_path / f"fed{rank}").read_text()) for rank in (0, 1)] == [4, 4]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["ok"] == 8 and summary["adapted_on_images"] == 8
    assert summary["adapt_bn_statistics"] == "adapted"
    one = tmp_path / "one"
    predict_folder(opts.with_values(output_dir=one))  # type: ignore[attr-defined]
    stored, alone = (load_file(folder / "adapted_batchnorm.safetensors") for folder in (out, one))
    assert stored.keys() == alone.keys() and any("running_var" in key for key in stored)
    for key, value in stored.items():
        torch.testing.assert_close(value, alone[key], rtol=1e-6, atol=1e-9, msg=key)
    settings = json.loads((out / "prediction_settings.json").read_text())
    digests = {json.dumps(model["network_sha256"]) for model in _contact_models(out).values()}  # type: ignore[index]
    assert len(_contact_models(out)) == 8 and digests == {json.dumps(settings["adapted_network_sha256"])}
    _, record = read_adapted_state(out / "adapted_batchnorm.safetensors")
    assert record["adapted_on_images"] == 8
    assert record["network_sha256"] == settings["adapted_network_sha256"]
    # A re-run on two ranks reads the kept statistics on both, passing no image: one network still.
    first = _contact_models(out)
    for image in ("im2", "im5"):  # one image of each rank's shard left to predict
        (out / f"{image}.mask.png").unlink()
    for rank in (0, 1):
        (tmp_path / f"fed{rank}").unlink()
    _, _, said = _two_ranks(tmp_path, ckpt, _adapting_rank, options=("adapt_bn=true",))
    assert [s[0] for s in said] == ["returned", "returned"], said  # type: ignore[index]
    assert not list(tmp_path.glob("fed*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["ok"] == 2 and summary["adapt_bn_statistics"] == "stored"
    assert _contact_models(out) == first


@pytest.mark.parametrize("fail", ["0", "1", "1:killed"])
def test_a_rank_failing_as_the_ranks_adapt_ends_every_rank_at_once(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    fail: str,
) -> None:
    """A rank failing (or killed) during its part of the ``adapt_bn=true`` pass, before the ranks add up
    their sums: the other rank, in its own pass or already waiting to add up, does not wait for it in the
    collective (the group's timeout is 20 s here, 30 minutes by default); every rank ends within seconds,
    the others naming the failing rank, and nothing is predicted or kept."""
    from test_recovery_predict import _two_ranks

    started = time.monotonic()
    _, out, said = _two_ranks(tmp_path, ckpt, _adapting_rank, after=(fail,), options=("adapt_bn=true",))
    took = time.monotonic() - started
    failing = int(fail[0])
    other = said[1 - failing]
    assert other[0] == "RankFailedError", said  # type: ignore[index]
    if fail.endswith("killed"):
        assert said[failing] == "killed", said
        assert f"rank {failing} of the run's 2 ranks went away without a word" in other[1], said  # type: ignore[index]
    else:
        assert said[failing][:1] == ("OSError",), said  # type: ignore[index]
        assert f"rank {failing} of its 2 ranks failed before predicting (OSError: " in other[1], said  # type: ignore[index]
    assert took < 20, f"a rank waited {took:.0f} s for a rank that had failed"
    assert not list(out.glob("*.mask.png")) and not (out / "adapted_batchnorm.safetensors").exists()
    # No report, as one process failing in its pass writes none (the next test): no image was predicted.
    assert not (out / "summary.json").exists() and not (out / "manifest.csv").exists()


def test_one_process_failing_as_it_adapts_writes_no_report_and_leaves_no_folder(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A one-process ``adapt_bn=true`` run whose pass fails (an ``OSError``, as a disk failing; a bug goes
    the same way) ends with that error before any image is predicted: no report, no kept statistics, and
    the output folder it would have made is not left behind. A sharded run failing in its pass does the same
    (the previous test)."""
    from test_recovery_predict import _eight_images

    original = adaptation.adapt_batchnorm_tiled

    def failing(model: nn.Module, images, **kwargs):  # type: ignore[no-untyped-def]
        def failed():  # type: ignore[no-untyped-def]
            for n, image in enumerate(images):
                if n == 1:
                    raise OSError(5, "Input/output error", "im1.png")
                yield image

        return original(model, failed(), **kwargs)

    monkeypatch.setattr(adaptation, "adapt_batchnorm_tiled", failing)
    inp, out = _eight_images(tmp_path)
    with pytest.raises(OSError, match="Input/output error"):
        run(make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0", "adapt_bn=true"))
    assert not out.exists()


@pytest.mark.parametrize("stop", ["1:stopped", "0:stopped-waiting"])
def test_a_rank_stopped_as_the_ranks_adapt_ends_every_rank_as_that_stop(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    stop: str,
) -> None:
    """A rank stopped (SIGTERM) during its part of the ``adapt_bn=true`` pass, or waiting for the other
    rank to add up their sums, left the run at once: the other rank took it for a rank that went away
    without a word (status 2). It now says its stop, the other rank stops there too, and every rank ends
    as the stop (143), nothing predicted or kept."""
    from test_recovery_predict import _two_ranks

    started = time.monotonic()
    _, out, said = _two_ranks(tmp_path, ckpt, _adapting_rank, after=(stop,), options=("adapt_bn=true",))
    assert [s[0] for s in said] == ["TerminatedError", "TerminatedError"], said  # type: ignore[index]
    assert time.monotonic() - started < 20
    assert not list(out.glob("*.mask.png")) and not (out / "adapted_batchnorm.safetensors").exists()


@pytest.mark.parametrize("blind", [1, 0])
def test_ranks_that_see_the_kept_statistics_differently_read_or_adapt_as_rank_0_decides(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    blind: int,
) -> None:
    """A folder holding a fitting ``adapted_batchnorm.safetensors`` and no record yet (a run stopped between
    the two writes), run on two ranks of which one does not see the file (a shared filesystem's lag): each
    rank decided alone, the one that saw it read it and the other adapted, and the adapting rank waited for
    the other in the ranks' meeting before their sum forever. Rank 0 now decides, and every rank follows
    before any reads or adapts: both take the statistics rank 0 read (rank 1 blind: no image passed, the
    file as it was), or both adapt (rank 0 blind: 4 images each), and one network predicts every image."""
    import shutil

    from test_recovery_predict import _eight_images, _two_ranks

    inp, out = _eight_images(tmp_path)
    first = tmp_path / "first"
    run(make_cfg(tmp_path, ckpt, inp, first, "threads=1", "num_workers=0", "adapt_bn=true"))
    out.mkdir()
    kept = out / "adapted_batchnorm.safetensors"
    shutil.copy(first / kept.name, kept)
    before = kept.read_bytes()
    started = time.monotonic()
    _, out, said = _two_ranks(
        tmp_path, ckpt, _adapting_rank, after=(f"{blind}:blind",), options=("adapt_bn=true",), wait_s=60
    )
    assert [s[0] for s in said] == ["returned", "returned"], said  # type: ignore[index]
    assert time.monotonic() - started < 60
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["ok"] == 8, summary["counts"]
    if blind == 1:  # rank 0 saw the file: every rank reads it
        assert summary["adapt_bn_statistics"] == "stored" and not list(tmp_path.glob("fed*"))
        assert kept.read_bytes() == before
    else:  # rank 0 saw none: every rank adapts, each to its shard, and rank 0 keeps what they adapted
        assert summary["adapt_bn_statistics"] == "adapted"
        assert [int((tmp_path / f"fed{rank}").read_text()) for rank in (0, 1)] == [4, 4]
    settings = json.loads((out / "prediction_settings.json").read_text())
    digests = {json.dumps(model["network_sha256"]) for model in _contact_models(out).values()}  # type: ignore[index]
    assert len(_contact_models(out)) == 8 and digests == {json.dumps(settings["adapted_network_sha256"])}
    assert read_adapted_state(kept)[1]["network_sha256"] == settings["adapted_network_sha256"]


@pytest.mark.parametrize("blind", [1, 0])
def test_a_re_run_on_two_ranks_of_which_one_does_not_see_the_kept_statistics_ends_as_rank_0_sees_them(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
    blind: int,
) -> None:
    """A re-run of an ``adapt_bn=true`` folder (its record names the kept file) on two ranks, one of which
    does not see the file: rank 1 blind refused the folder as if the file had been deleted, though rank 0
    read it; it now takes the file rank 0 read, and both predict with the folder's network. Rank 0 blind
    refuses the folder (the file the record names is missing), and rank 1, waiting for rank 0's word, ends
    at once naming it, nothing predicted."""
    from test_recovery_predict import _eight_images, _two_ranks

    inp, out = _eight_images(tmp_path)
    run(make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0", "adapt_bn=true"))
    first = _contact_models(out)
    for image in ("im2", "im5"):  # one image of each rank's shard left to predict
        (out / f"{image}.mask.png").unlink()
    started = time.monotonic()
    _, out, said = _two_ranks(
        tmp_path, ckpt, _adapting_rank, after=(f"{blind}:blind",), options=("adapt_bn=true",), wait_s=60
    )
    assert time.monotonic() - started < 60
    assert not list(tmp_path.glob("fed*"))  # no rank adapted
    if blind == 1:
        assert [s[0] for s in said] == ["returned", "returned"], said  # type: ignore[index]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["counts"]["ok"] == 2 and summary["adapt_bn_statistics"] == "stored"
        assert _contact_models(out) == first
    else:
        assert said[0][0] == "AdaptedStateError", said  # type: ignore[index]
        assert said[1][0] == "RankFailedError", said  # type: ignore[index]
        assert "rank 0 of its 2 ranks failed before predicting (AdaptedStateError: " in said[1][1], said  # type: ignore[index]
        assert not (out / "im2.mask.png").exists() and not (out / "im5.mask.png").exists()
