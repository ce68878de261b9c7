"""One torch thread for the tests of the torch packages (training/, recipes/): a pytest fixture."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run faster on one thread, and far faster when the 2 CPUs are shared."""
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
