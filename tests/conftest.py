import os
import warnings

import pytest

# Library deprecation noise (torch.jit.script, pkg_resources, meshgrid) on every import.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*pkg_resources.*")
warnings.filterwarnings("ignore", message=".*meshgrid.*")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "long: long runs, excluded from `make test` (`make test-long`)"
    )
    config.addinivalue_line("filterwarnings", "ignore::FutureWarning")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:.*pkg_resources.*")
    config.addinivalue_line("filterwarnings", "ignore:.*meshgrid.*")
    # tests train tiny models on CPU; keep them from competing for cores
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="module")
def synthetic_datasets(tmp_path_factory):
    """The synthetic datasets registered under a temporary ``DETECTRON2_DATASETS`` root for the
    module using it (generated there on first use), then registered back under the real root."""
    import dense_assign.data as data

    root = tmp_path_factory.mktemp("detectron2_datasets")
    patch = pytest.MonkeyPatch()
    patch.setenv("DETECTRON2_DATASETS", str(root))
    data.register_all_synthetic()
    yield root
    patch.undo()
    data.register_all_synthetic()
