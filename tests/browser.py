"""Headless Chromium for the tests that look at a page as a person would (skipped without it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def chromium(profile: Path) -> list[str]:
    """Chromium's command line for one headless page load; the test skips without it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium)")
    return [browser, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={profile}"]


def inked_share(page_uri: str, shot: Path, profile: Path, size: str = "1200,1600") -> float:
    """The share of a screenshot's pixels that are not white (a blank page: about 0)."""
    matplotlib_image = pytest.importorskip("matplotlib.image")
    subprocess.run([*chromium(profile), f"--window-size={size}", f"--screenshot={shot}",
                    page_uri], capture_output=True, timeout=120, check=False)
    assert shot.exists(), "Chromium wrote no screenshot"
    pixels = matplotlib_image.imread(str(shot))[..., :3]
    return float((pixels.mean(axis=2) < 0.9).mean())
