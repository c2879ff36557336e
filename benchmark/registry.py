"""The model registry: every model the benchmark runs, with the figures its scores need.

:data:`MODELS` maps each name to a :class:`benchmark.spec.ModelSpec`: a Keras constructor, the
input it takes, the preprocessing its weights were trained with (:mod:`benchmark.preprocess`),
and its published ImageNet accuracy, parameters and MACs. The registry is plain data: importing
it and listing it never imports TensorFlow or Keras.

Where the figures come from (each spec's ``source`` says which applies):

- ``top1``, ``top5``: the Keras applications table (keras.io/api/applications), the accuracy of
  the Keras weights themselves, single centre crop on the 50,000 ILSVRC2012 validation images.
  MobileNetV3 is not in that table; its top-1 comes from the table in Keras's own MobileNetV3
  docstring, and no top-5 is published for it (``None``). ConvNeXt has no published top-5.
- ``params``: the parameter count of the Keras model (``include_top=True``), which is what runs;
  it equals the count in the Keras table wherever that table gives exact counts.
- ``macs``: multiply-accumulates per image at ``input_size``, counted by
  :func:`benchmark.macs.count_macs` on the Keras model (every convolution and dense layer; batch
  norm, activations, pooling and element-wise products are not counted, as in the papers). These
  reproduce the papers' figures ("FLOPs" in the EfficientNet, MobileNet, NASNet and ConvNeXt
  papers are multiply-adds) within a few percent, and torchvision's published GFLOPS for the
  same architectures; the source of each spec quotes the paper's figure where there is one.

Cropping, ``crop_ratio``: resize the shorter side to ``round(input_size / crop_ratio)``
(:func:`benchmark.images.resize_size`, which the listing shows and the image pipeline does), then
take the centre ``input_size`` square.

- 0.875 (224 from 256, 299 from 342, 331 from 378): the TF-slim evaluation convention
  (``central_fraction=0.875``), where most of the Keras weights come from; also the evaluation
  crop of ConvNeXt (``crop_pct`` 0.875), of EfficientNet B0 and of EfficientNetV2 B0
  (``size / (size + 32)``: 224/256).
- EfficientNet B1-B7 and EfficientNetV2 B1-B3: ``size / (size + 32)``, as in the official
  EfficientNet evaluation (CROP_PADDING = 32): 0.882 for 240 px up to 0.949 for 600 px.
- 1.0 for EfficientNetV2 S, M, L: the official evaluation (google/automl efficientnetv2
  ``preprocess_for_eval``) does not crop at 320 px and above; it resizes the whole image. The
  nearest shape-preserving choice is to resize the shorter side to the input size and centre-crop.
- 1.0 for ``digits_cnn``: 8x8 images are used whole.

PyTorch-native models, ``tv_*`` (:func:`_torchvision`): torchvision's builders with their
``IMAGENET1K_V1`` weights, run by the torch engine alone where torchvision is installed
(``pip install -e '.[torch]'``). Their top-1, top-5, parameters and MACs are the figures of
torchvision's documentation for those weights (its "GFLOPS" count multiply-adds), and their
crop is the weights' own evaluation transform (resize 256, crop 224; EfficientNetV2-S: 384,
uncropped); their preprocessing is torchvision's ``Normalize`` with the ImageNet mean and
standard deviation, Keras's ``torch`` mode.
"""

from __future__ import annotations

import difflib

from benchmark.spec import BUILTIN, BUILTIN_FAMILIES, TORCHVISION_NORMALIZE, ModelSpec
from exporters.errors import UsageError

KERAS_TABLE = "keras.io/api/applications table (top-1, top-5, params)"
KERAS_MACS = "MACs: count_macs on the Keras model"


def _crop_padding_32(size: int) -> float:
    """EfficientNet's evaluation crop: the centre ``size`` of ``size + 32``."""
    return round(size / (size + 32), 4)


def _app(
    name: str,
    family: str,
    constructor: str,
    input_size: int,
    top1: float | None,
    top5: float | None,
    params: int,
    macs: int,
    year: int,
    source: str,
    crop_ratio: float = 0.875,
) -> ModelSpec:
    """A Keras application's spec; its preprocessing follows from its family."""
    if family in BUILTIN_FAMILIES:
        preprocess = BUILTIN
    else:
        preprocess = f"keras.applications.{family}.preprocess_input"
    return ModelSpec(
        name=name,
        family=family,
        constructor=f"keras.applications.{constructor}",
        input_size=input_size,
        preprocess=preprocess,
        crop_ratio=crop_ratio,
        top1=top1,
        top5=top5,
        params=params,
        macs=macs,
        source=source,
        year=year,
    )


def _table(macs_note: str) -> str:
    return f"{KERAS_TABLE}; {KERAS_MACS} ({macs_note})"


_MOBILENETV3_SOURCE = (
    "top-1: the table in Keras's MobileNetV3 docstring (keras/src/applications/mobilenet_v3.py;"
    " not in the keras.io table), no top-5 published; params: the Keras model (the docstring's"
    " {doc_params} M counts differently; paper: {paper_params} M); {macs} (paper: {paper_macs} M"
    " MAdds; the docstring says {doc_macs} M)"
)
_CONVNEXT_SOURCE = (
    "top-1, params: keras.io/api/applications table (Keras's converted weights; {note}), no"
    " top-5 published; {macs} (paper: {paper} G FLOPs, which are MACs)"
)

TORCHVISION_DOCS = (
    "torchvision docs (pytorch.org/vision/stable/models), {weights}: acc@1 {top1}, acc@5 {top5},"
    " num_params, GFLOPS {gflops} (multiply-adds: MACs), resize {resize} then centre crop {crop}"
)


def _torchvision(
    name: str,
    builder: str,
    input_size: int,
    crop_ratio: float,
    top1: float,
    top5: float,
    params: int,
    gflops: float,
    year: int,
    weights: str,
) -> ModelSpec:
    """A PyTorch-native torchvision model with its IMAGENET1K_V1 weights (the torch engine
    alone runs it, where torchvision is installed); figures from torchvision's docs."""
    resize = round(input_size / crop_ratio)
    return ModelSpec(
        name=name, family="torchvision", constructor=f"torchvision.models.{builder}",
        input_size=input_size, preprocess=TORCHVISION_NORMALIZE, crop_ratio=crop_ratio,
        top1=top1, top5=top5, params=params, macs=round(gflops * 1e9), year=year,
        source=TORCHVISION_DOCS.format(weights=weights, top1=top1 * 100, top5=top5 * 100,
                                       gflops=gflops, resize=resize, crop=input_size),
    )  # fmt: skip


# Year: first publication (arXiv), as in the reference paper's Table I.
_SPECS: tuple[ModelSpec, ...] = (
    # The reference paper's eight (Waltsburger et al., ISCAS 2023, Table I).
    _app(
        "inception_resnet_v2", "inception_resnet_v2", "InceptionResNetV2", 299,
        0.803, 0.953, 55_873_736, 13_155_794_016, 2016,
        _table("the paper gives no figure"),
    ),
    _app(
        "nasnet_mobile", "nasnet", "NASNetMobile", 224,
        0.744, 0.919, 5_326_716, 563_638_816, 2017,
        _table("paper: 564 M mult-adds"),
    ),
    _app(
        "nasnet_large", "nasnet", "NASNetLarge", 331,
        0.825, 0.960, 88_949_818, 23_783_414_658, 2017,
        _table("paper: 23.8 G mult-adds at 331 px"),
    ),
    _app(
        "mobilenetv3_small", "mobilenet_v3", "MobileNetV3Small", 224,
        0.681, None, 2_554_968, 56_510_400, 2019,
        _MOBILENETV3_SOURCE.format(
            doc_params=2.9, paper_params=2.5, macs=KERAS_MACS, paper_macs=56, doc_macs=66
        ),
    ),
    _app(
        "mobilenetv3_large", "mobilenet_v3", "MobileNetV3Large", 224,
        0.756, None, 5_507_432, 216_589_760, 2019,
        _MOBILENETV3_SOURCE.format(
            doc_params=5.4, paper_params=5.4, macs=KERAS_MACS, paper_macs=219, doc_macs=217
        ),
    ),
    _app(
        "efficientnetv2_s", "efficientnet_v2", "EfficientNetV2S", 384,
        0.839, 0.967, 21_612_360, 8_365_617_152, 2021,
        _table("paper: 8.8 G FLOPs at 384 px; torchvision: 8.37"), crop_ratio=1.0,
    ),
    _app(
        "efficientnetv2_m", "efficientnet_v2", "EfficientNetV2M", 480,
        0.853, 0.974, 54_431_388, 24_582_460_384, 2021,
        _table("paper: 24 G FLOPs at 480 px; torchvision: 24.58")
        + "; the reference paper's Table I gives 0.851, the EfficientNetV2 paper's top-1",
        crop_ratio=1.0,
    ),
    _app(
        "efficientnetv2_l", "efficientnet_v2", "EfficientNetV2L", 480,
        0.857, 0.975, 119_027_848, 56_079_699_008, 2021,
        _table("paper: 53 G FLOPs at 480 px"), crop_ratio=1.0,
    ),
    # Baselines.
    _app(
        "resnet50", "resnet", "ResNet50", 224,
        0.749, 0.921, 25_636_712, 3_857_973_248, 2015,
        _table("paper: 3.8 G multiply-adds; Keras's is ResNet v1, stride 2 in the first 1x1"),
    ),
    _app(
        "mobilenetv2", "mobilenet_v2", "MobileNetV2", 224,
        0.713, 0.901, 3_538_984, 300_774_272, 2018,
        _table("paper: 300 M MAdds"),
    ),
    _app(
        "efficientnet_b0", "efficientnet", "EfficientNetB0", 224,
        0.771, 0.933, 5_330_571, 385_814_752, 2019,
        _table("paper: 0.39 G FLOPs"), crop_ratio=_crop_padding_32(224),
    ),
    _app(
        "convnext_tiny", "convnext", "ConvNeXtTiny", 224,
        0.813, None, 28_589_128, 4_455_531_264, 2022,
        _CONVNEXT_SOURCE.format(note="the paper gives 82.1", macs=KERAS_MACS, paper=4.5),
    ),
    _app(
        "densenet121", "densenet", "DenseNet121", 224,
        0.750, 0.923, 8_062_504, 2_834_161_664, 2016,
        _table("torchvision: 2.83 G"),
    ),
    _app(
        "vgg16", "vgg16", "VGG16", 224,
        0.713, 0.901, 138_357_544, 15_470_264_320, 2014,
        _table("torchvision: 15.47 G"),
    ),
    _app(
        "inception_v3", "inception_v3", "InceptionV3", 299,
        0.779, 0.937, 23_851_784, 5_713_216_096, 2015,
        _table("paper: about 5 G multiply-adds; torchvision: 5.71 G"),
    ),
    _app(
        "xception", "xception", "Xception", 299,
        0.790, 0.945, 22_910_480, 8_357_403_496, 2016,
        _table("the paper gives no figure"),
    ),
    _app(
        "resnet50v2", "resnet_v2", "ResNet50V2", 224,
        0.760, 0.930, 25_613_800, 3_482_255_360, 2016,
        _table("Keras's is TF-slim's v2: stride 2 in the last unit of a stage"),
    ),
    # More of the Keras applications.
    _app(
        "mobilenet", "mobilenet", "MobileNet", 224,
        0.704, 0.895, 4_253_864, 568_740_352, 2017,
        _table("paper: 569 M mult-adds"),
    ),
    _app(
        "vgg19", "vgg19", "VGG19", 224,
        0.713, 0.900, 143_667_240, 19_632_062_464, 2014,
        _table("torchvision: 19.63 G"),
    ),
    _app(
        "resnet101", "resnet", "ResNet101", 224,
        0.764, 0.928, 44_707_176, 7_570_194_432, 2015,
        _table("paper: 7.6 G multiply-adds"),
    ),
    _app(
        "resnet152", "resnet", "ResNet152", 224,
        0.766, 0.931, 60_419_944, 11_282_415_616, 2015,
        _table("paper: 11.3 G multiply-adds"),
    ),
    _app(
        "resnet101v2", "resnet_v2", "ResNet101V2", 224,
        0.772, 0.938, 44_675_560, 7_194_476_544, 2016,
        _table("no published figure for Keras's variant"),
    ),
    _app(
        "resnet152v2", "resnet_v2", "ResNet152V2", 224,
        0.780, 0.942, 60_380_648, 10_906_697_728, 2016,
        _table("no published figure for Keras's variant"),
    ),
    _app(
        "densenet169", "densenet", "DenseNet169", 224,
        0.762, 0.932, 14_307_880, 3_359_843_328, 2016,
        _table("torchvision: 3.36 G"),
    ),
    _app(
        "densenet201", "densenet", "DenseNet201", 224,
        0.773, 0.936, 20_242_984, 4_291_365_888, 2016,
        _table("torchvision: 4.29 G"),
    ),
    *(
        _app(
            f"efficientnet_b{i}", "efficientnet", f"EfficientNetB{i}", size,
            top1, top5, params, macs, 2019,
            _table(f"paper: {paper} G FLOPs"), crop_ratio=_crop_padding_32(size),
        )
        for i, size, top1, top5, params, macs, paper in (
            (1, 240, 0.791, 0.944, 7_856_239, 686_802_832, 0.70),
            (2, 260, 0.801, 0.949, 9_177_569, 993_561_872, 1.0),
            (3, 300, 0.816, 0.957, 12_320_535, 1_827_141_392, 1.8),
            (4, 380, 0.829, 0.964, 19_466_823, 4_393_771_024, 4.2),
            (5, 456, 0.836, 0.967, 30_562_527, 10_266_384_752, 9.9),
            (6, 528, 0.840, 0.968, 43_265_143, 19_067_593_536, 19),
            (7, 600, 0.843, 0.970, 66_658_687, 37_745_884_192, 37),
        )
    ),
    *(
        _app(
            f"efficientnetv2_b{i}", "efficientnet_v2", f"EfficientNetV2B{i}", size,
            top1, top5, params, macs, 2021,
            _table("count only"), crop_ratio=_crop_padding_32(size),
        )
        for i, size, top1, top5, params, macs in (
            (0, 224, 0.787, 0.943, 7_200_312, 718_086_176),
            (1, 240, 0.798, 0.950, 8_212_124, 1_196_819_360),
            (2, 260, 0.805, 0.951, 10_178_374, 1_697_542_832),
            (3, 300, 0.820, 0.958, 14_467_622, 3_011_458_816),
        )
    ),
    _app(
        "convnext_small", "convnext", "ConvNeXtSmall", 224,
        0.823, None, 50_223_688, 8_683_712_256, 2022,
        _CONVNEXT_SOURCE.format(note="the paper gives 83.1", macs=KERAS_MACS, paper=8.7),
    ),
    _app(
        "convnext_base", "convnext", "ConvNeXtBase", 224,
        0.853, None, 88_591_464, 15_354_729_472, 2022,
        _CONVNEXT_SOURCE.format(note="ImageNet-21k pre-trained", macs=KERAS_MACS, paper=15.4),
    ),
    _app(
        "convnext_large", "convnext", "ConvNeXtLarge", 224,
        0.863, None, 197_767_336, 34_361_433_600, 2022,
        _CONVNEXT_SOURCE.format(note="ImageNet-21k pre-trained", macs=KERAS_MACS, paper=34.4),
    ),
    _app(
        "convnext_xlarge", "convnext", "ConvNeXtXLarge", 224,
        0.867, None, 350_196_968, 60_921_030_656, 2022,
        _CONVNEXT_SOURCE.format(note="ImageNet-21k pre-trained", macs=KERAS_MACS, paper=60.9),
    ),
    # A model small enough to train in seconds, for runs on machines without ImageNet.
    ModelSpec(
        name="digits_cnn",
        family="digits",
        constructor="benchmark.digits.build_digits_cnn",
        input_size=8,
        preprocess=BUILTIN,
        crop_ratio=1.0,
        top1=None,
        top5=None,
        params=None,
        macs=None,
        source="a small CNN for scikit-learn's 8x8 digits (benchmark/digits.py): accuracy is"
        " measured; params and MACs come from the built model",
        year=None,
        num_classes=10,
        channels=1,
        trained="benchmark.digits.trained_model",
    ),
    # PyTorch-native models (pip install -e '.[torch]'): torchvision's own weights.
    _torchvision("tv_resnet50", "resnet50", 224, 0.875, 0.7613, 0.92862, 25_557_032, 4.09,
                 2015, "ResNet50_Weights.IMAGENET1K_V1"),
    _torchvision("tv_efficientnet_v2_s", "efficientnet_v2_s", 384, 1.0, 0.84228, 0.96878,
                 21_458_488, 8.37, 2021, "EfficientNet_V2_S_Weights.IMAGENET1K_V1"),
)  # fmt: skip

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def get_spec(name: str) -> ModelSpec:
    """The spec called ``name`` (or its Keras constructor's name, any case)."""
    key = name.strip().lower().replace("-", "_")
    if key in MODELS:
        return MODELS[key]
    for spec in MODELS.values():
        if spec.constructor.rpartition(".")[2].lower() == key:
            return spec
    close = difflib.get_close_matches(key, list(MODELS), n=1)
    hint = f" did you mean '{close[0]}'?" if close else ""
    raise UsageError(f"unknown model '{name}':{hint} `python -m benchmark models` lists them")
