"""The model description: the one record that travels with every artefact.

A checkpoint, the ONNX file's metadata, a bundle's manifest and a TensorRT engine's sidecar all
carry the same dictionary, produced by ``ModelDescription.to_dict()``. The runtime's
preprocessing (``edge.preprocess``) is derived from it and nothing else.

Contract of the exported graph (see ``export``): the input is raw pixels (value range 0-255,
float32, NCHW, RGB or GRAY, at ``height`` x ``width``); normalisation with ``mean``/``std``,
temperature scaling and the softmax (multiclass) or sigmoid (multilabel) are inside the graph,
so the output is calibrated probabilities.

Optional ``input_check``: ``{"output": "ood_score", "threshold": t, "method": "...", "message":
"not a chest X-ray"}``. The graph then has a second output (float32, shape [N]) scoring how far the
input is from the training images; a score above ``threshold`` means the image is out of scope
and the kiosk shows ``message`` instead of probabilities.
"""

import copy

TASKS = {"multiclass": "softmax", "multilabel": "sigmoid"}
COLOURS = {"RGB": 3, "GRAY": 1}
LAYOUTS = ("NCHW",)
DTYPES = ("float32",)
RESIZE_MODES = ("area", "linear")
# Per-image contrast normalisation after the resize (edge.preprocess.CONTRAST_MODES); "none": absent
# from the dictionary, so descriptions written before the field existed read and write unchanged.
CONTRAST_MODES = ("none", "equalize", "clahe", "stretch", "equalize-clahe")

DEFAULT_INPUT_NAME = "image"
DEFAULT_OUTPUT_NAME = "probabilities"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DescriptionError(ValueError):
    """A model description field is missing or invalid (wrapped by callers that know the file)."""

    def __init__(self, field, problem):
        self.field = field
        self.problem = problem
        super().__init__("{}: {}".format(field, problem))


def _need(mapping, key, prefix=""):
    if not isinstance(mapping, dict) or key not in mapping:
        raise DescriptionError(prefix + key, "missing")
    return mapping[key]


class InputSpec(object):
    """What the model's input tensor expects: size, colour, layout, dtype, value range, resize."""

    def __init__(self, height, width, colour="RGB", layout="NCHW", dtype="float32",
                 value_range=(0.0, 255.0), resize="area", name=DEFAULT_INPUT_NAME, contrast="none"):
        self.height = int(height)
        self.width = int(width)
        self.colour = colour
        self.layout = layout
        self.dtype = dtype
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.resize = resize
        self.name = name
        self.contrast = contrast
        self.validate()

    @property
    def channels(self):
        return COLOURS[self.colour]

    def shape(self, batch=1):
        """The NCHW tensor shape for a batch."""
        return (batch, self.channels, self.height, self.width)

    def validate(self):
        if self.height < 8 or self.width < 8 or self.height > 4096 or self.width > 4096:
            raise DescriptionError("input.height/width", "must be 8..4096, got {}x{}".format(
                self.height, self.width))
        if self.colour not in COLOURS:
            raise DescriptionError("input.colour", "must be one of {}, got {!r}".format(
                sorted(COLOURS), self.colour))
        if self.layout not in LAYOUTS:
            raise DescriptionError("input.layout", "must be one of {}, got {!r}".format(
                LAYOUTS, self.layout))
        if self.dtype not in DTYPES:
            raise DescriptionError("input.dtype", "must be one of {}, got {!r}".format(
                DTYPES, self.dtype))
        if self.resize not in RESIZE_MODES:
            raise DescriptionError("input.resize", "must be one of {}, got {!r}".format(
                RESIZE_MODES, self.resize))
        if self.contrast not in CONTRAST_MODES:
            raise DescriptionError("input.contrast", "must be one of {}, got {!r}. Fix: update medkiosk or "
                                   "retrain with a known mode".format(list(CONTRAST_MODES), self.contrast))
        if not self.value_range[0] < self.value_range[1]:
            raise DescriptionError("input.value_range", "must be [low, high] with low < high")

    def to_dict(self):
        data = {
            "name": self.name,
            "height": self.height,
            "width": self.width,
            "colour": self.colour,
            "layout": self.layout,
            "dtype": self.dtype,
            "value_range": list(self.value_range),
            "resize": self.resize,
        }
        if self.contrast != "none":
            data["contrast"] = self.contrast
        return data

    @classmethod
    def from_dict(cls, data):
        prefix = "input."
        return cls(
            height=_need(data, "height", prefix),
            width=_need(data, "width", prefix),
            colour=_need(data, "colour", prefix),
            layout=_need(data, "layout", prefix),
            dtype=_need(data, "dtype", prefix),
            value_range=_need(data, "value_range", prefix),
            resize=data.get("resize", "area"),
            name=data.get("name", DEFAULT_INPUT_NAME),
            contrast=data.get("contrast", "none"),
        )

    def __eq__(self, other):
        return isinstance(other, InputSpec) and self.to_dict() == other.to_dict()

    def __ne__(self, other):
        return not self == other


class ModelDescription(object):
    """Architecture, task, classes, input contract, normalisation and calibration of one model."""

    def __init__(self, arch, task, classes, input_spec, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 display_names=None, temperature=1.0, abstain_threshold=0.5,
                 output_name=DEFAULT_OUTPUT_NAME, input_check=None, extra=None):
        self.arch = arch
        self.task = task
        self.classes = list(classes)
        self.display_names = list(display_names) if display_names else list(self.classes)
        self.input = input_spec
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.temperature = float(temperature)
        self.abstain_threshold = float(abstain_threshold)
        self.output_name = output_name
        self.input_check = dict(input_check) if input_check else None
        self.extra = dict(extra or {})
        self.validate()

    @property
    def activation(self):
        return TASKS[self.task]

    @property
    def num_classes(self):
        return len(self.classes)

    def validate(self):
        if not isinstance(self.arch, str) or not self.arch:
            raise DescriptionError("arch", "must be a non-empty architecture name")
        if self.task not in TASKS:
            raise DescriptionError("task", "must be one of {}, got {!r}".format(sorted(TASKS), self.task))
        if len(self.classes) < 2 and self.task == "multiclass":
            raise DescriptionError("classes", "a multiclass model needs at least 2 classes")
        if not self.classes:
            raise DescriptionError("classes", "must not be empty")
        if len(set(self.classes)) != len(self.classes):
            raise DescriptionError("classes", "contains duplicates: {}".format(self.classes))
        if len(self.display_names) != len(self.classes):
            raise DescriptionError("display_names", "has {} names for {} classes".format(
                len(self.display_names), len(self.classes)))
        channels = self.input.channels
        if len(self.mean) != channels or len(self.std) != channels:
            raise DescriptionError("normalization", "mean/std need {} values for {} input".format(
                channels, self.input.colour))
        if any(s <= 0 for s in self.std):
            raise DescriptionError("normalization.std", "must be positive")
        if not self.temperature > 0:
            raise DescriptionError("temperature", "must be > 0, got {}".format(self.temperature))
        if self.input_check is not None:
            for key in ("output", "threshold", "method", "message"):
                if key not in self.input_check:
                    raise DescriptionError("input_check." + key, "missing")
        if not 0.0 <= self.abstain_threshold <= 1.0:
            raise DescriptionError("abstain_threshold", "must be within [0, 1], got {}".format(
                self.abstain_threshold))

    def to_dict(self):
        data = {
            "arch": self.arch,
            "task": self.task,
            "activation": self.activation,
            "classes": list(self.classes),
            "display_names": list(self.display_names),
            "input": self.input.to_dict(),
            "normalization": {"mean": list(self.mean), "std": list(self.std), "applied_in_graph": True},
            "temperature": self.temperature,
            "abstain_threshold": self.abstain_threshold,
            "output_name": self.output_name,
        }
        if self.input_check:
            data["input_check"] = copy.deepcopy(self.input_check)
        if self.extra:
            data["extra"] = copy.deepcopy(self.extra)
        return data

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise DescriptionError("model", "must be an object")
        norm = _need(data, "normalization")
        description = cls(
            arch=_need(data, "arch"),
            task=_need(data, "task"),
            classes=_need(data, "classes"),
            input_spec=InputSpec.from_dict(_need(data, "input")),
            mean=_need(norm, "mean", "normalization."),
            std=_need(norm, "std", "normalization."),
            display_names=data.get("display_names"),
            temperature=_need(data, "temperature"),
            abstain_threshold=_need(data, "abstain_threshold"),
            output_name=data.get("output_name", DEFAULT_OUTPUT_NAME),
            input_check=data.get("input_check"),
            extra=data.get("extra"),
        )
        if "activation" in data and data["activation"] != description.activation:
            raise DescriptionError("activation", "{!r} does not match task {!r}".format(
                data["activation"], description.task))
        return description

    def replace(self, **changes):
        """A copy with some fields changed (e.g. the fitted temperature)."""
        data = self.to_dict()
        fields = {
            "arch": data["arch"], "task": data["task"], "classes": data["classes"],
            "input_spec": InputSpec.from_dict(data["input"]),
            "mean": data["normalization"]["mean"], "std": data["normalization"]["std"],
            "display_names": data["display_names"], "temperature": data["temperature"],
            "abstain_threshold": data["abstain_threshold"], "output_name": data["output_name"],
            "input_check": data.get("input_check"), "extra": data.get("extra"),
        }
        fields.update(changes)
        return ModelDescription(**fields)

    def __eq__(self, other):
        return isinstance(other, ModelDescription) and self.to_dict() == other.to_dict()

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "ModelDescription(arch={!r}, task={!r}, classes={!r}, input={}x{} {})".format(
            self.arch, self.task, self.classes, self.input.height, self.input.width, self.input.colour)
