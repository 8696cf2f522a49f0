"""Build hook: ship the template's released history (a git bundle of the `v*` tags) in the package.

`agentgen update` needs the template as it was at the release a project records, offline; see
src/agentgen/history.py. From a git checkout the bundle is built from its tags; a wheel built from an
sdist takes the bundle the sdist carries. Without tags (a fresh fork) nothing is added and agentgen
knows only its own template version.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUNDLE = "template-history.bundle"


class TemplateHistoryHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        if version == "editable" or not (root / ".git").exists():
            return
        sys.path.insert(0, str(root / "src"))
        try:
            from agentgen.history import build_history
        finally:
            sys.path.pop(0)
        self._scratch = tempfile.TemporaryDirectory(prefix="agentgen-build-")
        bundle = Path(self._scratch.name) / BUNDLE
        tags = build_history(root, bundle)
        if not tags:
            return
        where = "agentgen" if self.target_name == "wheel" else "src/agentgen"
        build_data["force_include"][str(bundle)] = f"{where}/{BUNDLE}"
        self.app.display_info(f"template history: {', '.join(tags)}")

    def finalize(self, version: str, build_data: dict, artifact_path: str) -> None:
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            scratch.cleanup()
