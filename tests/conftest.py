import pytest
import torch as th


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Repeatable numbers and no oversubscription on small CI machines."""
    th.set_num_threads(1)
