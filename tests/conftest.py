import os
import warnings

# Library deprecation noise (torch.jit.script, pkg_resources, meshgrid) on every import.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*pkg_resources.*")
warnings.filterwarnings("ignore", message=".*meshgrid.*")


def pytest_configure(config):
    config.addinivalue_line("markers", "long: long runs, excluded from `make test` (`make test-long`)")
    config.addinivalue_line("filterwarnings", "ignore::FutureWarning")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:.*pkg_resources.*")
    config.addinivalue_line("filterwarnings", "ignore:.*meshgrid.*")
    # tests train tiny models on CPU; keep them from competing for cores
    os.environ.setdefault("OMP_NUM_THREADS", "2")
