"""Test-wide settings: offline, one thread, deterministic."""

import os
import pathlib
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# converted data files (archspec.data.store) go to a throw-away cache, never the user's ~/.cache
os.environ.setdefault("ARCHSPEC_CACHE_DIR", tempfile.mkdtemp(prefix="archspec-test-cache-"))

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def pytest_configure(config):
    try:
        import torch
    except ImportError:  # core-only install
        return
    torch.set_num_threads(1)


@pytest.fixture(params=SPECS, ids=[p.stem for p in SPECS])
def spec_path(request):
    return request.param
