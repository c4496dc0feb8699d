"""Test setup: 8 simulated CPU devices (set before jax is imported) and shared fixtures."""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One XLA compilation cache for the run, shared with the CLI subprocesses the tests start: many
# tests compile the same tiny model's steps, and a hit skips the compile. A fresh directory per
# run, so no run's time or result depends on an earlier one.
_xla_cache = tempfile.mkdtemp(prefix="r1jax-test-xla-cache-")
atexit.register(shutil.rmtree, _xla_cache, True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _xla_cache
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def tiny_cfg():
    from r1jax.config import get_preset
    return get_preset("tiny")
