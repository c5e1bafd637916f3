"""Shared test set-up."""

import os

import pytest

# Passive OpenMP waiting (see vireid/cli/__init__.py): tests share 2 cores with whatever else runs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# vireid's cache (checked image sets, decoded images) goes to a fresh folder per test session, never the user's
# home; the process that made it (the xdist controller, whose workers inherit it) removes it at the end.
_SESSION_CACHE = None
if "VIREID_CACHE" not in os.environ:
    import tempfile

    os.environ["VIREID_CACHE"] = _SESSION_CACHE = tempfile.mkdtemp(prefix="vireid-test-cache-")


def pytest_unconfigure(config):
    if _SESSION_CACHE is not None:
        import shutil

        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def small_sysu(tmp_path_factory):
    """A 12-identity synthetic SYSU-MM01 set of 32x16 images (seed 0, two images per camera), generated once per
    test process for every module that trains or searches on it. Read-only: a test that changes a set makes
    its own."""
    from vireid.data.synthetic import generate

    return generate("sysu", tmp_path_factory.mktemp("small_sysu") / "data", ids=12, seed=0, images_per_camera=2,
                    size=(32, 16), workers=1, progress=False)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models and indexes: one torch and one FAISS thread are faster than two on a shared
    2-core machine (and make timings of the suite predictable)."""
    import faiss
    import torch

    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(torch_threads)
    faiss.omp_set_num_threads(faiss_threads)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, start every worker on its share of the slow tests.

    The work-stealing scheduler hands each worker a contiguous slice of the collection and balances the
    rest by stealing queued tests; a long test met at the end of a slice cannot be shared, and leaves the
    other worker idle. So the modules with ``@pytest.mark.slow(seconds)`` tests are dealt to the slices
    (longest first, each to the slice with the least slow time), at the head of each slice; the other
    tests fill the slices to the sizes the scheduler cuts. A module stays in one slice (its fixtures are
    made once). Without xdist the order is the collection's.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.module.__name__, []).append(item)
    slow = {name: sum(_slow_seconds(i) for i in its) for name, its in modules.items()}
    slices: list[list] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for name in sorted((n for n in modules if slow[n]), key=lambda n: -slow[n]):
        k = load.index(min(load))
        slices[k] += modules[name]
        load[k] += slow[name]
    rest = [item for name, its in modules.items() if not slow[name] for item in its]
    left = len(items)
    for k in range(workers):  # the scheduler's cut: the k-th worker gets left // (workers - k) tests
        size = left // (workers - k)
        take = max(0, size - len(slices[k]))
        slices[k] += rest[:take]
        rest = rest[take:]
        left -= len(slices[k])
    slices[-1] += rest
    items[:] = [item for part in slices for item in part]


def _slow_seconds(item) -> float:
    """The seconds a ``slow`` test takes on the 2-core machine (its marker's argument; 5 when not given), or 0."""
    mark = item.get_closest_marker("slow")
    return 0.0 if mark is None else float(mark.args[0] if mark.args else 5.0)
