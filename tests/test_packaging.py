"""A normal (non-editable) install must carry planners/, trainers/ and dataset_conversion/ under the
vertebraformer_nn namespace, and no generic top-level package names."""
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: the test environment already has setuptools; no download needed
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, capture_output=True)
    (whl,) = out.glob("vertebraformer_nn-*.whl")
    return whl


def test_wheel_maps_top_level_folders_into_the_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("planners", "trainers", "dataset_conversion", "phantoms", "network"):
        assert f"vertebraformer_nn/{package}/__init__.py" in names, package
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"vertebraformer_nn"}, top
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "vertebraformer = vertebraformer_nn.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_imports_the_namespaced_packages(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    # -S: no site-packages, so the editable install of the checkout cannot answer instead of the wheel
    code = ("import importlib.util, sys; sys.path.insert(0, sys.argv[1]);"
            "print(*(importlib.util.find_spec('vertebraformer_nn.' + p).origin for p in sys.argv[2:]))")
    out = subprocess.run([sys.executable, "-S", "-c", code, str(target), "planners", "trainers", "dataset_conversion"],
                         check=True, capture_output=True, text=True).stdout.split()
    assert len(out) == 3 and all(o.startswith(str(target)) for o in out), out
