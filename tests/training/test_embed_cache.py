"""training.embed_cache: content keys, only missing rows computed, shards shared between instances."""

import numpy as np
import pytest
import torch

from edge.errors import ConfigError
from training.embed_cache import EmbeddingCache, cache_dir, key_of


class Counting(torch.nn.Module):
    """A stand-in trunk (mean per channel) that counts the images it sees."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, x):
        self.seen += len(x)
        return x.mean(dim=(2, 3))


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8))


def test_key_depends_on_pixels_and_shape():
    a = _images(1)[0].numpy()
    assert key_of(a) == key_of(a.copy())
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert key_of(b) != key_of(a)
    assert key_of(a.reshape(3, 4, 16)) != key_of(a)


def test_embed_computes_only_missing_rows_and_shares_them_through_shards(tmp_path):
    folder = cache_dir(str(tmp_path), "toy", 8)
    trunk = Counting()
    first = EmbeddingCache(folder, shard_name="one")
    images = _images(5)
    out = first.embed(trunk, images, batch_size=2)
    assert trunk.seen == 5 and out.shape == (5, 3)
    assert torch.allclose(out, images.float().mean(dim=(2, 3)))
    again = first.embed(trunk, images[[4, 0]])
    assert trunk.seen == 5 and torch.equal(again, out[[4, 0]])
    second = EmbeddingCache(folder, shard_name="two")  # another process: reads the first one's shards
    assert len(second) == 5
    both = second.embed(trunk, torch.cat([images, _images(2, seed=1)]))
    assert trunk.seen == 7 and torch.equal(both[:5], out)
    assert len(EmbeddingCache(folder)) == 7


def test_unreadable_shard_is_a_config_error_naming_the_fix(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="Fix: delete it"):
        EmbeddingCache(str(tmp_path))


def test_cache_folder_keys_on_the_contrast_normalisation(tmp_path):
    plain = cache_dir(str(tmp_path), "toy", 8)
    assert plain == cache_dir(str(tmp_path), "toy", 8, contrast="none")  # the folder made before the field
    folders = {mode: cache_dir(str(tmp_path), "toy", 8, contrast=mode) for mode in ("equalize", "clahe")}
    assert len({plain, *folders.values()}) == 3 and folders["clahe"].endswith("contrast-clahe")
    trunk = Counting()
    EmbeddingCache(plain, shard_name="one").embed(trunk, _images(4))
    EmbeddingCache(folders["clahe"], shard_name="one").embed(trunk, _images(4))
    assert trunk.seen == 8  # the same raw pixels are embedded again for another normalisation's cache
