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
    # the image checks' cache (dense_assign.data.checks) in a folder of this run, not ~/.cache
    # (inherited by the train_net.py subprocesses of the tests)
    if "DENSE_ASSIGN_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["DENSE_ASSIGN_CACHE_DIR"] = tempfile.mkdtemp(prefix="dense_assign_test_cache_")
        config._dense_assign_cache_dir = os.environ["DENSE_ASSIGN_CACHE_DIR"]


def pytest_unconfigure(config):
    folder = getattr(config, "_dense_assign_cache_dir", None)
    if folder:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("DENSE_ASSIGN_CACHE_DIR", None)


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


@pytest.fixture
def logs():
    """Records of the loggers that report the project's checks (``dense_assign``) and detectron2's
    dataset filtering (``detectron2.data``), at DEBUG, for the test using it."""
    import logging

    from .helpers import LogRecords

    handler = LogRecords()
    loggers = [logging.getLogger(n) for n in ("dense_assign", "detectron2.data")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield handler
    for lg, level in zip(loggers, levels):
        lg.removeHandler(handler)
        lg.setLevel(level)
