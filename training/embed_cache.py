"""A content-addressed cache of frozen-network embeddings, shared by recipes and processes.

Key: SHA-1 of the uint8 input tensor exactly as ``edge.preprocess`` feeds the network (so a file, a
photographed crop or a negative image hits the cache whatever the caller called it). The cache is a
folder of shard files (``<name>.pt``: keys + float32 embeddings [N, F]); every process writes its own
shards, and loading merges them all. Valid only for one frozen network: the folder name carries the
architecture, input size, weights and the input's contrast normalisation (``cache_dir``; the key is
of the normalised input, and a separate folder per normalisation keeps each cache's size honest).
"""

import glob
import hashlib
import os
import pickle
import time

import numpy as np
import torch

from edge.errors import ConfigError

SHARD_EVERY = 256


def cache_dir(root, arch, image_size, weights="imagenet", contrast="none"):
    """The cache folder for one frozen network fed inputs normalised with ``contrast`` ("none": the
    folder used before normalisation existed)."""
    name = "{}-{}-{}".format(arch, int(image_size), weights)
    return os.path.join(root, name if contrast == "none" else "{}-contrast-{}".format(name, contrast))


def key_of(image_chw_uint8):
    """SHA-1 of one uint8 CHW input (shape included)."""
    array = np.ascontiguousarray(np.asarray(image_chw_uint8, dtype=np.uint8))
    digest = hashlib.sha1(str(array.shape).encode("ascii"))
    digest.update(array.tobytes())
    return digest.hexdigest()


class EmbeddingCache(object):
    """{key: embedding} backed by shard files in ``folder``; ``embed`` computes only what is missing."""

    def __init__(self, folder, shard_name=None):
        self.folder = folder
        self.shard_name = shard_name or "shard-{}-{}".format(os.getpid(), int(time.time()))
        self.table = {}
        self._pending_keys, self._pending = [], []
        self._shards = 0
        self.reload()

    def reload(self):
        """Merge every shard in the folder (other processes' too)."""
        for path in sorted(glob.glob(os.path.join(self.folder, "*.pt"))):
            try:
                data = torch.load(path, map_location="cpu")
            except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
                raise ConfigError("embedding cache shard {} cannot be read ({}). Fix: delete it".format(
                    path, exc)) from exc
            for key, row in zip(data["keys"], data["embeddings"]):
                self.table[key] = row
        return self

    def __len__(self):
        return len(self.table)

    def _flush(self):
        if not self._pending:
            return
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, "{}-{:04d}.pt".format(self.shard_name, self._shards))
        tmp = path + ".tmp"
        torch.save({"keys": list(self._pending_keys), "embeddings": torch.stack(self._pending)}, tmp)
        os.replace(tmp, path)
        self._shards += 1
        self._pending_keys, self._pending = [], []

    @torch.no_grad()
    def embed(self, trunk, images, batch_size=32, log=None):
        """uint8 tensor [N, C, H, W] -> float32 embeddings [N, F]; missing rows computed by ``trunk``."""
        if hasattr(trunk, "eval"):
            trunk.eval()
        keys = [key_of(image.numpy()) for image in images]
        missing = [i for i, key in enumerate(keys) if key not in self.table]
        started = time.time()
        for start in range(0, len(missing), batch_size):
            index = missing[start : start + batch_size]
            rows = trunk(images[index].float())
            for i, row in zip(index, rows):
                self.table[keys[i]] = row.clone()
                self._pending_keys.append(keys[i])
                self._pending.append(row.clone())
            if len(self._pending) >= SHARD_EVERY:
                self._flush()
            if log and (start // batch_size) % 20 == 0:
                log("embedded {} of {} new images ({:.0f}s)".format(start + len(index), len(missing),
                                                                   time.time() - started))
        self._flush()
        if not keys:
            return torch.empty(0)
        return torch.stack([self.table[key] for key in keys])
