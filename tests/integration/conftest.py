"""Fixtures the integration tests share."""

import os
import shutil
import subprocess

import pytest


@pytest.fixture(scope="session")
def chromium():
    path = shutil.which("chromium")
    if path:
        return path
    if not shutil.which("apt-get"):
        pytest.skip("chromium is missing and apt-get is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "chromium"]  # waits for a held lock
    for step in (install, ["apt-get", "update"], install):
        done = subprocess.run(step, env=env, capture_output=True, text=True)
        if done.returncode == 0 and shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.fail(f"could not install chromium with apt-get (root needed):\n{done.stderr[-2000:]}")
