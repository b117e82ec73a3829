"""A device build on disk: its manifest, verified by checksum before anything is loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fnedge.catalog import Catalog, load_catalog
from fnedge.errors import FnedgeError
from fnedge.io import read_json, sha256_file

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Build:
    root: Path
    manifest: dict[str, Any]
    catalog: Catalog

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.root.name)

    @property
    def generalist(self) -> bool:
        return bool(self.manifest["model"].get("generalist", False))

    @property
    def copied_arguments(self) -> dict[str, dict[str, bool]]:
        """Fields the model's training data always copied (see fnedge.data.copied_arguments)."""
        copied = self.manifest["model"].get("copied_arguments") or {}
        if not (isinstance(copied, dict) and all(isinstance(f, dict) and all(isinstance(r, bool) for r in f.values())
                                                  for f in copied.values())):
            raise FnedgeError(f"{self.root / MANIFEST}: model.copied_arguments must map tools to "
                              f"{{field: true/false}}")
        return copied

    @property
    def threads(self) -> int:
        return int(self.manifest["runtime"]["threads"])

    @property
    def context_length(self) -> int:
        return int(self.manifest["runtime"]["context_length"])

    def artifact(self, file: str | None = None) -> dict[str, Any]:
        """The named artifact, or the build's primary one."""
        wanted = file or self.manifest["primary"]
        wanted = Path(wanted).name
        for artifact in self.manifest["artifacts"]:
            if artifact["file"] == wanted:
                return artifact
        names = ", ".join(a["file"] for a in self.manifest["artifacts"])
        raise FnedgeError(f"{self.root}: no artifact '{wanted}' in this build (has: {names})")

    def path(self, file: str) -> Path:
        return self.root / file


def load_build(root: str | Path, verify: bool = True) -> Build:
    root = Path(root)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise FnedgeError(f"{root}: not a build folder (no {MANIFEST}); create one with 'fnedge export'")
    manifest = read_json(manifest_path)
    if verify:
        verify_files(root, manifest)
    return Build(root=root, manifest=manifest, catalog=load_catalog(root / "tools.json"))


def verify_files(root: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists exists with its recorded size and sha256."""
    for name, entry in manifest["files"].items():
        path = root / name
        if not path.is_file():
            raise FnedgeError(f"{path}: missing from the build (listed in {MANIFEST})")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise FnedgeError(f"{path}: checksum does not match {MANIFEST}; the file is corrupt or was changed")
