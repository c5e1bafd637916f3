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
