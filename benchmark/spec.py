"""What one registry entry says about a model: :class:`ModelSpec`, and the dotted paths it names.

A spec names its Keras constructor, its preprocessing and (for models with weights of their
own) its trained-model function by dotted path; :func:`resolve` turns a path into the object.
Importing this module never imports TensorFlow or Keras.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import asdict, dataclass
from typing import Any

from benchmark.images import resize_size

BUILTIN = "builtin"
TORCHVISION_NORMALIZE = "torchvision.transforms.Normalize"

# What each family's Keras preprocess_input does (keras/src/applications/*.py, all through
# imagenet_utils.preprocess_input): "tf" scales 0..255 to -1..1; "caffe" flips RGB to BGR and
# subtracts the ImageNet channel means; "torch" scales to 0..1 and normalises with the ImageNet
# channel mean and standard deviation.
PREPROCESS_MODES: dict[str, str] = {
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
    # torchvision's ImageNet weights: transforms.Normalize with the ImageNet mean and std
    TORCHVISION_NORMALIZE: "torch",
}
# Families whose Keras models rescale their own 0..255 input (a Rescaling or Normalization layer
# first; include_preprocessing=True by default), and whose preprocess_input is a pass-through.
BUILTIN_FAMILIES = frozenset({"mobilenet_v3", "efficientnet", "efficientnet_v2", "convnext"})


def preprocess_mode(preprocess: str) -> str:
    """``builtin``, Keras's mode name (``tf`` -1..1, ``caffe`` BGR and mean, ``torch``), or
    ``custom`` for any other function, for a spec's ``preprocess`` path."""
    if preprocess == BUILTIN:
        return BUILTIN
    return PREPROCESS_MODES.get(preprocess, "custom")


@dataclass(frozen=True)
class ModelSpec:
    """One model the benchmark can run, and the published figures its scores use.

    ``params``, ``macs`` and ``year`` are ``None`` only for models that are not Keras
    applications (the digits CNN): there the built model is the only source of the counts,
    through ``model.count_params()`` and :func:`benchmark.macs.count_macs`. ``top1`` and ``top5``
    are ``None`` where nothing is published (the accuracy is then measured, or unknown).
    ``trained`` is the dotted path of a function that returns the model with its trained
    weights, for models whose weights are not Keras's ImageNet weights; ``auto`` and
    ``imagenet`` mean those weights for such a model.
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
        """The shorter side's length before the centre crop, as the image pipeline resizes it."""
        return resize_size(self.input_size, self.crop_ratio)

    @property
    def is_keras_application(self) -> bool:
        return self.constructor.startswith("keras.applications.")

    @property
    def is_torchvision(self) -> bool:
        """A PyTorch-native torchvision model: only the torch engine runs it."""
        return self.constructor.startswith("torchvision.models.")

    @property
    def preprocess_mode(self) -> str:
        """:func:`preprocess_mode` of this spec's ``preprocess``."""
        return preprocess_mode(self.preprocess)

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
