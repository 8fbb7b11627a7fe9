from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent

# The repository keeps planners/, trainers/ and dataset_conversion/ at its top level (DESIGN.md section 1),
# but installs them under the vertebraformer_nn namespace so that no generic top-level name is taken.
PACKAGE_DIR = {
    "vertebraformer_nn": "vertebraformer_nn",
    "vertebraformer_nn.planners": "planners",
    "vertebraformer_nn.trainers": "trainers",
    "vertebraformer_nn.dataset_conversion": "dataset_conversion",
}


def find_subpackages():
    """Every folder with an __init__.py below the mapped roots, named in the installed namespace."""
    packages = []
    for name, folder in PACKAGE_DIR.items():
        root = HERE / folder
        for init in sorted(root.rglob("__init__.py")):
            rel = init.parent.relative_to(root)
            packages.append(".".join([name, *rel.parts]) if rel.parts else name)
    return packages


setup(
    name="vertebraformer-nn",
    version="0.1.0",
    description="nnU-Net-style pipeline for spinal CT: vertebra segmentation, numbering (C1-L5, T13, L6) and lesions",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_subpackages(),
    package_dir=PACKAGE_DIR,
    include_package_data=True,
    # the built-in model (vertebraformer_nn/builtin_model: model folders with float16 weights, and its card)
    package_data={"vertebraformer_nn.builtin_model": ["MODEL_CARD.md", "*/*.json", "*/fold_*/*.pth"]},
    install_requires=[
        # nnU-Net's private APIs are used: pin exactly.
        "nnunetv2==2.8.1",
        "dynamic-network-architectures==0.4.4",
        "batchgeneratorsv2>=0.3.6",
        "acvl-utils>=0.2.6,<0.3",
        # timm (imported by nnU-Net's Primus code) imports torchvision: torch and torchvision must be a matched pair.
        "torch==2.14.1",
        "torchvision==0.29.1",
        "SimpleITK>=2.4",
        "nibabel>=5.2",
        "pydicom>=3.0",
        "highdicom>=0.23",
        "numpy>=1.26",
        "scipy>=1.11",
        "scikit-image>=0.22",
        "connected-components-3d>=3.12",
        "edt>=3.0",  # multi-label distance maps (the body centroids)
        "matplotlib>=3.8",
        "tqdm>=4.66",
    ],
    extras_require={"test": ["pytest>=8"]},
    entry_points={"console_scripts": ["vertebraformer=vertebraformer_nn.cli:main"]},
)
