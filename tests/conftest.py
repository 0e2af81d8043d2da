"""Test set-up: 8 fake CPU devices (set before JAX starts) and paths to the shared real data."""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("BABYJAX_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(
            f"shared data not found at {SHARED_DATA}: put ../shared beside the checkout or set BABYJAX_SHARED_DATA"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def babylm_sample(shared_data) -> pathlib.Path:
    return shared_data / "babylm_sample"
