"""Build step only (the project's metadata is in pyproject.toml): the wheel ships every ``configs/**/*.yaml`` as
``freemask/model_zoo/configs/...``, copied from the repository's ``configs/`` (the one source; users of Mask2Former and
detectron2 look for configs there). detectron2 ships its configs the same way (facebookresearch/detectron2, setup.py,
get_model_zoo_configs), through a symlink in the source tree; the copy here goes to the build folder only, so the
checkout is never changed. An editable install gets no copy: freemask.model_zoo reads the checkout's configs/.
An sdist carries configs/ at its root (MANIFEST.in), so a wheel built from it ships the same files.
"""

import glob
import os
import shutil
from typing import List, Tuple

from setuptools import setup
from setuptools.command.build_py import build_py

CONFIGS = "configs"
PACKAGED = os.path.join("freemask", "model_zoo", "configs")


class BuildPyWithConfigs(build_py):
    """build_py, then ``configs/**/*.yaml`` copied into the built package (not for an editable install)."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            # A build folder reused from an earlier build would otherwise keep configs since moved or deleted.
            shutil.rmtree(os.path.join(self.build_lib, PACKAGED), ignore_errors=True)
            for source, target in self._config_copies():
                self.mkpath(os.path.dirname(target))
                self.copy_file(source, target)

    def get_outputs(self, include_bytecode: bool = True) -> List[str]:
        configs = [] if self.editable_mode else [target for _, target in self._config_copies()]
        return super().get_outputs(include_bytecode) + configs

    def _config_copies(self) -> List[Tuple[str, str]]:
        """(source, target in the build folder) for every shipped config."""
        sources = sorted(glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True))
        if not sources:
            raise SystemExit(f"error: no {CONFIGS}/**/*.yaml next to setup.py; a wheel without configs is refused")
        return [(path, os.path.join(self.build_lib, PACKAGED, os.path.relpath(path, CONFIGS))) for path in sources]


setup(cmdclass={"build_py": BuildPyWithConfigs})
