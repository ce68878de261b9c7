"""Diagnostic modules: which classes a model learns, from what kind of image, with which augmentation.

A module is a built-in name (``skin``, ``chest``, ``pediatric-pneumonia``) or a small JSON or INI
file for a custom module. X-ray modules use colour ``RGB`` with the grey value replicated into
three channels, because the ImageNet-pretrained backbones expect three channels; the kiosk's
preprocessing does the same conversion from the camera or file image.
"""

import configparser
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Tuple

from edge.description import COLOURS, TASKS, InputSpec
from edge.errors import ConfigError

AUGMENTATION_PRESETS = ("skin", "chest-xray", "chest-xray-photo", "none")
MULTI_FINDING_MODES = ("drop", "multilabel")
FIELDS = ("id", "title", "classes", "display_names", "task", "colour", "image_size", "augmentation",
          "multi_finding", "description")


@dataclass(frozen=True)
class ModuleDefinition:
    """What a diagnostic module is: classes, task, input colour/size and augmentation preset."""

    id: str
    title: str
    classes: Tuple[str, ...]
    display_names: Tuple[str, ...] = ()
    task: str = "multiclass"
    colour: str = "RGB"
    image_size: int = 224
    augmentation: str = "none"
    multi_finding: str = "drop"
    description: str = ""
    source: str = field(default="built-in", compare=False)

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "display_names",
                           tuple(str(d) for d in self.display_names) if self.display_names else self.classes)
        self.validate()

    def _fail(self, field_name, problem, fix):
        raise ConfigError("module {} ({}): {}: {}. Fix: {}".format(
            self.id or "?", self.source, field_name, problem, fix))

    def validate(self):
        if not self.id or not isinstance(self.id, str):
            self._fail("id", "missing", "give the module a short id such as 'chest'")
        if not self.title:
            self._fail("title", "missing", "give the module a title shown on the kiosk")
        if len(self.classes) < 2:
            self._fail("classes", "needs at least 2 classes, got {}".format(list(self.classes)),
                       "list the class names")
        lowered = [c.lower() for c in self.classes]
        if len(set(lowered)) != len(lowered):
            self._fail("classes", "contains duplicates (case-insensitive): {}".format(list(self.classes)),
                       "make every class name unique")
        if any(not c.strip() for c in self.classes):
            self._fail("classes", "contains an empty name", "remove it")
        if len(self.display_names) != len(self.classes):
            self._fail("display_names", "has {} names for {} classes".format(
                len(self.display_names), len(self.classes)), "give one display name per class or none")
        if self.task not in TASKS:
            self._fail("task", "must be one of {}, got {!r}".format(sorted(TASKS), self.task),
                       "use multiclass or multilabel")
        if self.colour not in COLOURS:
            self._fail("colour", "must be one of {}, got {!r}".format(sorted(COLOURS), self.colour),
                       "use RGB (also for X-rays: grey is replicated) or GRAY")
        if not isinstance(self.image_size, int) or not 32 <= self.image_size <= 1024:
            self._fail("image_size", "must be an integer 32..1024, got {!r}".format(self.image_size),
                       "use e.g. 224")
        if self.augmentation not in AUGMENTATION_PRESETS:
            self._fail("augmentation", "must be one of {}, got {!r}".format(
                list(AUGMENTATION_PRESETS), self.augmentation), "pick a preset")
        if self.multi_finding not in MULTI_FINDING_MODES:
            self._fail("multi_finding", "must be one of {}, got {!r}".format(
                list(MULTI_FINDING_MODES), self.multi_finding), "use drop or multilabel")
        if (self.multi_finding == "multilabel") != (self.task == "multilabel"):
            self._fail("multi_finding", "{!r} does not fit task {!r}".format(self.multi_finding, self.task),
                       "use multi_finding=multilabel with task=multilabel, drop with multiclass")

    def input_spec(self, image_size=None):
        """The model input this module trains at (``image_size`` overrides the module's size)."""
        size = int(image_size or self.image_size)
        return InputSpec(height=size, width=size, colour=self.colour)

    def class_for(self, name):
        """The module's class matching ``name`` case-insensitively (spaces/underscores alike), or None."""
        wanted = _norm(name)
        for cls in self.classes:
            if _norm(cls) == wanted:
                return cls
        return None

    def to_dict(self):
        data = asdict(self)
        data.pop("source")
        data["classes"] = list(self.classes)
        data["display_names"] = list(self.display_names)
        return data


def _norm(name):
    return str(name).strip().lower().replace("_", " ").replace("-", " ")


BUILTIN_MODULES = {
    "skin": ModuleDefinition(
        id="skin",
        title="Skin condition",
        classes=("Acne", "Scabies", "Psoriasis", "Vitiligo", "Warts", "Fungal infection", "Leprosy"),
        task="multiclass",
        colour="RGB",
        image_size=224,
        augmentation="skin",
        multi_finding="drop",
        description="Photo of a skin lesion taken with the kiosk camera: common skin conditions in "
                    "primary care. Decision support only, not a diagnosis.",
    ),
    "chest": ModuleDefinition(
        id="chest",
        title="Chest X-ray (adult)",
        classes=("Effusion", "Pneumonia", "Pneumothorax", "No Finding"),
        display_names=("Pleural effusion", "Pneumonia", "Pneumothorax", "No finding"),
        task="multiclass",
        colour="RGB",
        image_size=224,
        augmentation="chest-xray",
        multi_finding="drop",
        description="Frontal adult chest X-ray (NIH ChestX-ray14 label set, Wang et al. CVPR 2017). "
                    "Grey X-rays are replicated into RGB for ImageNet-pretrained backbones. "
                    "Decision support only, not a diagnosis.",
    ),
    "pediatric-pneumonia": ModuleDefinition(
        id="pediatric-pneumonia",
        title="Chest X-ray (child): pneumonia",
        classes=("Normal", "Pneumonia"),
        task="multiclass",
        colour="RGB",
        image_size=224,
        augmentation="chest-xray",
        multi_finding="drop",
        description="Frontal paediatric chest X-ray, normal vs pneumonia (Kermany et al., Cell 2018, "
                    "CC BY 4.0). Grey X-rays are replicated into RGB. "
                    "Decision support only, not a diagnosis.",
    ),
}


def list_modules():
    """The built-in module ids."""
    return sorted(BUILTIN_MODULES)


def _split_list(value):
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def module_from_dict(data, source="dict"):
    """Build and validate a ModuleDefinition from a mapping (JSON object or INI section)."""
    if not isinstance(data, dict):
        raise ConfigError("module {}: must be an object with fields {}".format(source, ", ".join(FIELDS)))
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ConfigError("module {}: unknown field(s) {}. Fix: use only {}".format(
            source, ", ".join(unknown), ", ".join(FIELDS)))
    for needed in ("id", "title", "classes"):
        if needed not in data:
            raise ConfigError("module {}: field {!r} is missing. Fix: add it".format(source, needed))
    values = dict(data)
    values["classes"] = tuple(_split_list(values["classes"]))
    if "display_names" in values:
        values["display_names"] = tuple(_split_list(values["display_names"]))
    if "image_size" in values:
        try:
            values["image_size"] = int(values["image_size"])
        except (TypeError, ValueError):
            raise ConfigError("module {}: image_size must be an integer, got {!r}".format(
                source, values["image_size"])) from None
    return ModuleDefinition(source=source, **values)


def _read_module_file(path):
    ext = os.path.splitext(path)[1].lower()
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError("module file {}: cannot be read ({})".format(path, exc.strerror)) from exc
    if ext == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError("module file {}: not valid JSON ({}). Fix the syntax".format(
                path, exc)) from exc
        return module_from_dict(data, source=path)
    if ext in (".ini", ".cfg", ".conf"):
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text, source=path)
        except configparser.Error as exc:
            raise ConfigError("module file {}: not valid INI ({}). Fix the syntax".format(path, exc)) from exc
        if not parser.has_section("module"):
            raise ConfigError("module file {}: no [module] section. Fix: put the fields under "
                              "[module]".format(path))
        return module_from_dict(dict(parser.items("module")), source=path)
    raise ConfigError("module file {}: use a .json or .ini file".format(path))


def get_module(name_or_path):
    """A built-in module by id, or a custom module from a JSON/INI file."""
    if isinstance(name_or_path, ModuleDefinition):
        return name_or_path
    key = str(name_or_path)
    if key in BUILTIN_MODULES:
        return BUILTIN_MODULES[key]
    if os.path.isfile(key):
        return _read_module_file(key)
    raise ConfigError("unknown module {!r}. Fix: use one of {} or the path of a module .json/.ini "
                      "file".format(key, ", ".join(list_modules())))
