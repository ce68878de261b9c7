"""Photographed training samples: real X-rays rendered as camera frames (``training.photograph``), then
cut out exactly as the device does (``edge.locate`` + ``edge.classify.analysed_image``, i.e. the
shared ``normalise_crop``). The crops are extra training/validation images (offline augmentation):
their frozen-network embeddings cache like the files'.

Seeds: TRAIN and VAL renders use ``PHOTO_SEED`` + a part offset; the photographed TEST set
(``training.photo_eval``) uses seed 0 and only the test split. Test-split images are never rendered
here (``render_crops`` refuses the part name "test").
"""

import numpy as np

from edge.errors import ConfigError
from training.data import strided

PHOTO_SEED = 1000
PART_OFFSETS = {"train": 0, "val": 1, "negatives": 2}


def camera_crop(frame_bgr):
    """What the device classifies for a camera frame: (analysed BGR image, localisation method)."""
    from edge.classify import analysed_image
    from edge.locate import locate

    localisation = locate(frame_bgr)
    return analysed_image(localisation), localisation.method


def render_one(job):
    from training.photograph import SCENES, photograph_file

    path, seed, index = job
    return camera_crop(photograph_file(path, seed, index, SCENES[index % len(SCENES)]).frame)


def render_crops(samples, part, renders=1, seed=PHOTO_SEED, limit=None, workers=1):
    """(samples, crops, methods): ``renders`` camera crops of each of (at most ``limit``) samples;
    ``workers`` > 1 renders in that many processes (same frames: each has its own seeded index)."""
    if part not in PART_OFFSETS:
        raise ConfigError("render_crops: part {!r} cannot be rendered for training. Fix: use one of {} "
                          "(the test split is never trained on)".format(part, sorted(PART_OFFSETS)))
    kept, jobs = [], []
    for i, sample in enumerate(strided(samples, limit)):
        for r in range(int(renders)):
            kept.append(sample)
            jobs.append((sample.path, seed + PART_OFFSETS[part], i * int(renders) + r))
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(int(workers)) as pool:
            results = pool.map(render_one, jobs, chunksize=8)
    else:
        results = [render_one(job) for job in jobs]
    return kept, [crop for crop, _m in results], [method for _c, method in results]


def negative_images(seed=1):
    """[(kind, BGR image)] non-X-rays for fitting the input check, each as the device would analyse it:
    generated images (``training.ood``) and scenes (``training.photo_eval``) of seed ``seed`` (the
    evaluation uses seed 0 and scikit-image's real photos, which are never fitted on), as full camera
    frames and photographed on a lightbox."""
    import cv2

    from training import ood, photo_eval
    from training.photograph import photograph

    sources = [(ood.category(name), image) for name, image in
               sorted(ood.generated_images(count=8, size=224, seed=seed).items())]
    sources += photo_eval.generated_scenes(seed=seed)
    images = []
    for index, (kind, image) in enumerate(sources):
        full = cv2.resize(image, (1280, 720), interpolation=cv2.INTER_AREA)
        rng = np.random.RandomState([seed + PART_OFFSETS["negatives"], index])
        on_film = photograph(image, rng, "film").frame
        for variant, frame in (("frame", full), ("on-lightbox", on_film)):
            images.append(("{}:{}".format(kind, variant), camera_crop(frame)[0]))
    return images
