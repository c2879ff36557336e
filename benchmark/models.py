"""The model registry: every model the benchmark runs, with the figures its scores need.

Each :class:`ModelSpec` names a Keras constructor, the input it takes, the preprocessing its
weights were trained with, and its published ImageNet accuracy, parameters and MACs. The
registry is plain data: importing this module and listing it never imports TensorFlow or Keras;
:func:`build_model`, :func:`preprocess_fn` and :func:`count_macs` import them when called.

Where the figures come from (each spec's ``source`` says which applies):

- ``top1``, ``top5``: the Keras applications table (keras.io/api/applications), the accuracy of
  the Keras weights themselves, single centre crop on the 50,000 ILSVRC2012 validation images.
  MobileNetV3 is not in that table; its top-1 comes from the table in Keras's own MobileNetV3
  docstring, and no top-5 is published for it (``None``). ConvNeXt has no published top-5.
- ``params``: the parameter count of the Keras model (``include_top=True``), which is what runs;
  it equals the count in the Keras table wherever that table gives exact counts.
- ``macs``: multiply-accumulates per image at ``input_size``, counted by :func:`count_macs` on
  the Keras model (every convolution and dense layer; batch norm, activations, pooling and
  element-wise products are not counted, as in the papers). These reproduce the papers' figures
  ("FLOPs" in the EfficientNet, MobileNet, NASNet and ConvNeXt papers are multiply-adds) within a
  few percent, and torchvision's published GFLOPS for the same architectures; the source of each
  spec quotes the paper's figure where there is one.

Preprocessing: ``preprocess`` is the dotted path of the family's ``preprocess_input``, or
``"builtin"`` where the model starts with its own rescaling layers and takes 0..255 floats
(MobileNetV3, EfficientNet B0-B7, EfficientNetV2, ConvNeXt; their ``preprocess_input`` is a
pass-through). :func:`preprocess_fn` turns a spec into a function on a float32 NHWC batch in
0..255, written in TensorFlow ops so it runs inside ``tf.data`` whatever the Keras backend, and
checked against Keras's own ``preprocess_input`` by the tests.

Cropping, ``crop_ratio``: resize the shorter side to ``round(input_size / crop_ratio)``
(:attr:`ModelSpec.resize_size`), then take the centre ``input_size`` square.

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

Weights (:func:`build_model`): ``auto`` tries the ImageNet weights and falls back to random
weights with a loud warning when they cannot be fetched; ``imagenet`` insists; ``random`` never
fetches; a path to a ``.keras`` model or ``.h5`` weights file loads that. Keras keeps downloaded
weights in ``~/.keras/models`` (``$KERAS_HOME/models``) and uses them from there, offline.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from exporters.errors import UsageError

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

BUILTIN = "builtin"
WEIGHTS_CHOICES = ("auto", "imagenet", "random")
WEIGHTS_SUFFIXES = (".keras", ".h5")

KERAS_TABLE = "keras.io/api/applications table (top-1, top-5, params)"
KERAS_MACS = "MACs: count_macs on the Keras model"


@dataclass(frozen=True)
class ModelSpec:
    """One model the benchmark can run, and the published figures its scores use.

    ``params``, ``macs`` and ``year`` are ``None`` only for models that are not Keras
    applications (the digits CNN): there the built model is the only source of the counts,
    through ``model.count_params()`` and :func:`count_macs`. ``top1`` and ``top5`` are ``None``
    where nothing is published (the accuracy is then measured, or unknown). ``trained`` is the
    dotted path of a function that returns the model with its trained weights, for models whose
    weights are not Keras's ImageNet weights; ``auto`` and ``imagenet`` mean those weights for
    such a model.
    """

    name: str
    family: str
    constructor: str
    input_size: int
    preprocess: str
    crop_ratio: float
    top1: float | None
    top5: float | None
    params: int | None
    macs: int | None
    source: str
    year: int | None
    num_classes: int = 1000
    channels: int = 3
    trained: str | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)``: one image, channels last."""
        return (self.input_size, self.input_size, self.channels)

    @property
    def resize_size(self) -> int:
        """The shorter side's length before the centre crop."""
        return round(self.input_size / self.crop_ratio)

    @property
    def is_keras_application(self) -> bool:
        return self.constructor.startswith("keras.applications.")

    @property
    def preprocess_mode(self) -> str:
        """``builtin``, or Keras's mode name: ``tf`` (-1..1), ``caffe`` (BGR, mean), ``torch``."""
        if self.preprocess == BUILTIN:
            return BUILTIN
        return _PREPROCESS_MODES.get(self.preprocess, "custom")

    @property
    def canziani(self) -> float | None:
        """Canziani et al.'s score: top-1 in percent per million parameters."""
        if self.top1 is None or not self.params:
            return None
        return self.top1 * 100 / (self.params / 1e6)

    def as_dict(self) -> dict[str, Any]:
        """The spec's fields and derived figures, JSON-ready."""
        out = asdict(self)
        out.update(
            resize_size=self.resize_size,
            preprocess_mode=self.preprocess_mode,
            canziani=self.canziani,
        )
        return out


# What each family's Keras preprocess_input does (keras/src/applications/*.py, all through
# imagenet_utils.preprocess_input): "tf" scales 0..255 to -1..1; "caffe" flips RGB to BGR and
# subtracts the ImageNet channel means; "torch" scales to 0..1 and normalises with the ImageNet
# channel mean and standard deviation.
_PREPROCESS_MODES: dict[str, str] = {
    "keras.applications.vgg16.preprocess_input": "caffe",
    "keras.applications.vgg19.preprocess_input": "caffe",
    "keras.applications.resnet.preprocess_input": "caffe",
    "keras.applications.resnet_v2.preprocess_input": "tf",
    "keras.applications.inception_v3.preprocess_input": "tf",
    "keras.applications.inception_resnet_v2.preprocess_input": "tf",
    "keras.applications.xception.preprocess_input": "tf",
    "keras.applications.mobilenet.preprocess_input": "tf",
    "keras.applications.mobilenet_v2.preprocess_input": "tf",
    "keras.applications.nasnet.preprocess_input": "tf",
    "keras.applications.densenet.preprocess_input": "torch",
}
# Families whose Keras models rescale their own 0..255 input (a Rescaling or Normalization layer
# first; include_preprocessing=True by default), and whose preprocess_input is a pass-through.
BUILTIN_FAMILIES = frozenset({"mobilenet_v3", "efficientnet", "efficientnet_v2", "convnext"})

_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


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


def resolve(path: str) -> Any:
    """The object at a dotted path such as ``keras.applications.MobileNetV2``."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as e:
            module = ".".join(parts[:i])
            if e.name == parts[0] or (e.name != module and not module.startswith(f"{e.name}.")):
                raise  # a package not installed, or a module whose own imports fail
            continue
        try:
            return functools.reduce(getattr, parts[i:], obj)
        except AttributeError:
            break
    raise ImportError(f"cannot resolve {path!r}")


# ---------------------------------------------------------------------------------------------
# Building models


def _keras_models_dir() -> str:
    home = os.environ.get("KERAS_HOME")
    return os.path.join(home, "models") if home else "~/.keras/models"


def _is_fetch_failure(e: BaseException) -> bool:
    """Whether ``e`` is Keras failing to get pre-trained weights (offline, blocked, corrupt)."""
    text = str(e)
    if type(e) is Exception and "URL fetch failure" in text:  # keras.utils.get_file, offline
        return True
    if isinstance(e, ValueError) and "file hash" in text:  # a truncated or corrupt download
        return True
    return isinstance(e, OSError)  # URLError, a cache directory not writable, a bad .h5


def _fetch_fix(e: BaseException) -> str:
    """How to get the weights Keras could not fetch: which URL, and the file Keras looks for."""
    url = re.search(r"https?://\S+?\.h5", str(e))
    target = None
    tb = e.__traceback__
    while tb is not None:  # get_file's frame knows where the file belongs (its cache name)
        if tb.tb_frame.f_code.co_name == "get_file":
            target = tb.tb_frame.f_locals.get("download_target")
        tb = tb.tb_next
    if url and target:
        return f"download {url.group(0)} to {target} or pass --weights PATH"
    if url:
        return f"download {url.group(0)} into {_keras_models_dir()} or pass --weights PATH"
    return f"put the .h5 weights in {_keras_models_dir()} or pass --weights PATH"


def _build_keras(spec: ModelSpec, weights: str | None) -> keras.Model:
    constructor = resolve(spec.constructor)
    # Keras prints its download progress on stdout; keep stdout for the commands' output.
    with contextlib.redirect_stdout(sys.stderr):
        return constructor(weights=weights, input_shape=spec.input_shape, classes=spec.num_classes)


def _build_random(spec: ModelSpec) -> keras.Model:
    if spec.is_keras_application:
        return _build_keras(spec, None)
    return resolve(spec.constructor)()


def _build_pretrained(spec: ModelSpec, weights: str) -> tuple[keras.Model, str]:
    if spec.trained is not None:
        return resolve(spec.trained)(), "trained"
    try:
        return _build_keras(spec, "imagenet"), "imagenet"
    except Exception as e:
        if not _is_fetch_failure(e):
            raise
        reason = " ".join(str(e).split())
        if weights == "imagenet":
            raise UsageError(
                f"--weights imagenet: no ImageNet weights for {spec.name} ({reason}): "
                f"{_fetch_fix(e)}, or --weights random to measure energy alone"
            ) from e
        log.warning(
            "NO IMAGENET WEIGHTS for %s (%s): running with RANDOM weights, so its accuracy will "
            "be meaningless (energy is still real); to get the weights, %s",
            spec.name,
            reason,
            _fetch_fix(e),
        )
        return _build_random(spec), "random"


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def _check_loaded(spec: ModelSpec, model: keras.Model, path: str) -> None:
    """A model loaded from a file must take and give what ``spec`` says."""
    got_in = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if got_in is not None and None not in got_in and got_in != spec.input_shape:
        raise UsageError(
            f"--weights {path}: the model takes {got_in} images but {spec.name} takes "
            f"{spec.input_shape}: pass a model saved from {spec.name}"
        )
    got_out = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    if got_out is not None and got_out != spec.num_classes:
        raise UsageError(
            f"--weights {path}: the model has {got_out} outputs but {spec.name} has "
            f"{spec.num_classes}: pass a model saved from {spec.name}"
        )


def _load_file(spec: ModelSpec, path: str) -> keras.Model:
    full = os.path.expanduser(path)
    if not full.endswith(WEIGHTS_SUFFIXES):
        raise UsageError(
            f"--weights {path}: not a .keras model or .h5 weights file; pass auto, imagenet, "
            "random, or a path to a .keras or .h5 file"
        )
    if not os.path.isfile(full):
        raise UsageError(
            f"--weights {path}: no such file; pass auto, imagenet, random, or a path to a "
            ".keras or .h5 file"
        )
    if full.endswith(".keras"):
        import keras

        try:
            model = keras.saving.load_model(full)
        except Exception as e:
            raise UsageError(f"--weights {path}: cannot load the model: {_first_line(e)}") from e
        _check_loaded(spec, model, path)
        return model
    model = _build_random(spec)
    # Keras warns, layer by layer, where a file has nothing for a layer, and then raises (or,
    # for some layouts, leaves those layers at their random initial values): either way the
    # file is not this model's.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(full)
        except Exception as e:
            raise UsageError(
                f"--weights {path}: these are not weights for {spec.name}: {_first_line(e)}"
            ) from e
    untrained = [w for w in caught if "freshly-initialized" in str(w.message)]
    if untrained:
        raise UsageError(
            f"--weights {path}: these are not weights for {spec.name}: {len(untrained)} of its"
            " layers found nothing in the file"
        )
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return model


def build_model(spec: ModelSpec, weights: str = "auto") -> tuple[keras.Model, str]:
    """The model for ``spec`` and what weights it got: ``imagenet``, ``random``, ``file:PATH``.

    ``weights``: ``auto`` (ImageNet weights if Keras has or can fetch them, otherwise random
    weights and a warning), ``imagenet`` (a :class:`UsageError` if they cannot be had),
    ``random``, or a path to a ``.keras`` model (loaded whole) or ``.h5`` weights (loaded into
    the architecture). A model with its own trained weights (``spec.trained``, the digits CNN)
    gets those for ``auto`` and ``imagenet``, reported as ``trained``.
    """
    if weights == "random":
        return _build_random(spec), "random"
    if weights in ("auto", "imagenet"):
        return _build_pretrained(spec, weights)
    return _load_file(spec, weights), f"file:{weights}"


# ---------------------------------------------------------------------------------------------
# Preprocessing


def _identity(batch: Any) -> Any:
    """The model rescales its own 0..255 input."""
    return batch


def _preprocess_mode(batch: Any, mode: str) -> Any:
    import tensorflow as tf

    x = tf.cast(batch, tf.float32)
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "caffe":
        return tf.reverse(x, axis=[-1]) - tf.constant(_CAFFE_BGR_MEAN, tf.float32)
    if mode == "torch":
        mean = tf.constant(_TORCH_MEAN, tf.float32)
        return (x / 255.0 - mean) / tf.constant(_TORCH_STD, tf.float32)
    raise ValueError(f"unknown preprocessing mode {mode!r}")


def _preprocess_custom(batch: Any, path: str) -> Any:
    import tensorflow as tf

    return resolve(path)(tf.cast(batch, tf.float32))


def preprocess_fn(spec: ModelSpec) -> Callable[[Any], Any]:
    """What turns a float32 ``(N, size, size, channels)`` batch in 0..255 into model input.

    TensorFlow ops only, so it works in ``tf.data`` maps and on NumPy arrays (which it never
    changes in place); the result is a ``tf.Tensor``, or the batch itself for ``builtin``.
    """
    if spec.preprocess == BUILTIN:
        return _identity
    mode = _PREPROCESS_MODES.get(spec.preprocess)
    if mode is None:
        return functools.partial(_preprocess_custom, path=spec.preprocess)
    return functools.partial(_preprocess_mode, mode=mode)


# ---------------------------------------------------------------------------------------------
# Counting


def _positions(tensor: Any, data_format: str) -> int:
    shape = tuple(tensor.shape)
    spatial = shape[2:] if data_format == "channels_first" else shape[1:-1]
    if any(d is None for d in spatial):
        raise ValueError(f"count_macs needs a fixed input size; a layer's output is {shape}")
    return math.prod(int(d) for d in spatial)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates for one input: every convolution and dense layer, nested models too.

    Not counted, as in the papers: biases, batch norm, activations, pooling, element-wise sums
    and products (squeeze-and-excitation scaling, residual additions), resizing.
    """
    import keras

    conv = (
        keras.layers.Conv1D,
        keras.layers.Conv2D,
        keras.layers.Conv3D,
        keras.layers.DepthwiseConv1D,
        keras.layers.DepthwiseConv2D,
    )
    separable = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
    transpose = (
        keras.layers.Conv1DTranspose,
        keras.layers.Conv2DTranspose,
        keras.layers.Conv3DTranspose,
    )
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
            continue
        for node in layer._inbound_nodes:
            if not node.input_tensors or not node.output_tensors:
                continue
            x, y = node.input_tensors[0], node.output_tensors[0]
            if isinstance(layer, separable):
                depthwise = math.prod(layer.depthwise_kernel.shape)
                pointwise = math.prod(layer.pointwise_kernel.shape)
                total += _positions(y, layer.data_format) * (depthwise + pointwise)
            elif isinstance(layer, transpose):
                total += _positions(x, layer.data_format) * math.prod(layer.kernel.shape)
            elif isinstance(layer, conv):
                kernel = getattr(layer, "depthwise_kernel", None)
                kernel = layer.kernel if kernel is None else kernel
                total += _positions(y, layer.data_format) * math.prod(kernel.shape)
            elif isinstance(layer, keras.layers.Dense):
                positions = math.prod(int(d) for d in y.shape[1:-1])
                total += positions * math.prod(layer.kernel.shape)
    return total


# ---------------------------------------------------------------------------------------------
# Listing


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def registry_table() -> str:
    """The registry as an aligned text table, for ``python -m benchmark models``."""
    header = ("name", "input", "params (M)", "MACs (G)", "top-1", "top-5", "preprocessing", "year")
    rows = [header]
    for s in MODELS.values():
        rows.append(
            (
                s.name,
                "x".join(str(d) for d in s.input_shape),
                _fmt(None if s.params is None else s.params / 1e6, ".2f"),
                _fmt(None if s.macs is None else s.macs / 1e9, ".3f"),
                _fmt(None if s.top1 is None else s.top1 * 100, ".1f"),
                _fmt(None if s.top5 is None else s.top5 * 100, ".1f"),
                s.preprocess_mode,
                _fmt(s.year, "d"),
            )
        )
    numeric = {2, 3, 4, 5, 7}
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]
    lines.append("")
    lines.append(
        "top-1, top-5: published ImageNet validation accuracy in percent (- where none is\n"
        "published). preprocessing: builtin (the model takes 0..255), tf (-1..1), caffe (BGR\n"
        "minus the ImageNet mean), torch (ImageNet mean and standard deviation)."
    )
    return "\n".join(lines)


def registry_json() -> list[dict[str, Any]]:
    """The registry as JSON-ready dicts, one per model, in the table's order."""
    return [spec.as_dict() for spec in MODELS.values()]
