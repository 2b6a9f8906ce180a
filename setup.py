"""Only here to ship ``hooks/nas_plugin.pth`` at the site-packages root; all metadata lives in setup.cfg.

- Wheel (``pip install .``): ``build_py`` copies the .pth to the root of ``build_lib``, which is the wheel root.
- Editable (``pip install -e .``, PEP 660): setuptools' ``editable_wheel`` does not put ``build_lib`` files in the
  wheel, so it is subclassed to add the .pth (with its RECORD line) to the root of the editable wheel it built.
Either way the .pth is listed in RECORD, so ``pip uninstall nas_plugin`` removes it.
"""

import base64
import hashlib
import os
import zipfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = "nas_plugin.pth"
PTH_SOURCE = os.path.join("hooks", PTH_NAME)  # relative to the project root (the cwd of every build)


class build_py_with_pth(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            self.copy_file(PTH_SOURCE, os.path.join(self.build_lib, PTH_NAME), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else [*outputs, os.path.join(self.build_lib, PTH_NAME)]

    def get_source_files(self):  # puts the .pth into the sdist, so wheels built from an sdist have it too
        return [*super().get_source_files(), PTH_SOURCE]


def _add_to_wheel(wheel_path, arcname, data):
    """Rewrite ``wheel_path`` with ``arcname`` added and listed in the RECORD."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    tmp_path = wheel_path.with_name(wheel_path.name + ".tmp")
    with zipfile.ZipFile(wheel_path) as src, zipfile.ZipFile(tmp_path, "w", zipfile.ZIP_DEFLATED) as dst:
        names = src.namelist()
        if arcname in names:
            raise RuntimeError(f"{wheel_path.name} already contains {arcname}")
        (record,) = [n for n in names if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
        dst.writestr(arcname, data)
        for info in src.infolist():
            content = src.read(info)
            if info.filename == record:
                content = content.rstrip(b"\r\n") + f"\n{arcname},sha256={digest},{len(data)}\n".encode()
            dst.writestr(info, content)
    os.replace(tmp_path, wheel_path)


class editable_wheel_with_pth(editable_wheel):
    def run(self):
        super().run()
        dist_name = self.get_finalized_command("dist_info").name  # "<name>-<version>", as in the wheel file name
        wheels = list(Path(self.dist_dir).glob(f"{dist_name}-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one editable wheel in {self.dist_dir}, found {wheels}: cannot add {PTH_NAME}")
        _add_to_wheel(wheels[0], PTH_NAME, Path(self.project_dir, PTH_SOURCE).read_bytes())


setup(cmdclass={"build_py": build_py_with_pth, "editable_wheel": editable_wheel_with_pth})
