"""unist: a spatio-temporal foundation model for grids, graphs and video.

`kernels/` (our Triton kernels) ships inside the package as `unist.kernels`, so the wheel never
claims the generic top-level name `kernels`.
"""
from setuptools import find_packages, setup

packages = [p for p in find_packages(include=["unist", "unist.*"])]
packages += ["unist.kernels"] + ["unist.kernels." + p for p in find_packages("kernels")]
# The shipped releases (checkpoints/unist-tiny-6/, the current one, unist-tiny-5/, unist-tiny-4/, unist-tiny-3/ and
# unist-tiny-2/, ~6 MB each) are package data of `unist.checkpoints`, so an installed unist finds `from_pretrained("unist-tiny-6")` without
# a source checkout (unist.release.release_search_path).
packages += ["unist.checkpoints"]
RELEASE_FILES = [f"{rel}/{name}" for rel in ("unist-tiny-2", "unist-tiny-3", "unist-tiny-4", "unist-tiny-5", "unist-tiny-6")
                 for name in ("config.json", "model.safetensors", "normalization.json", "training_data.json",
                              "MODEL_CARD.md")]

setup(
    name="unist",
    version="0.1.0",
    description="Spatio-temporal foundation model over grids, graphs and video with Triton attention",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=packages,
    package_dir={"unist.kernels": "kernels", "unist.checkpoints": "checkpoints"},
    package_data={"unist.checkpoints": RELEASE_FILES},
    install_requires=[
        "torch>=2.4",
        "triton>=3.0; platform_system == 'Linux'",
        "numpy>=1.24",
        "einops>=0.7",
        "deepspeed>=0.14",
        "decord>=0.6; platform_machine == 'x86_64'",
        "av>=12",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "scipy>=1.10",
        "matplotlib>=3.7",
    ],
    extras_require={
        "dev": ["pytest>=7", "hypothesis>=6.80"],
        # GPU-side extras: xformers has no CPU operator; torchvision's registry wheel is a CUDA build
        # that does not import with the CPU torch (../shared/ENVIRONMENT.md).
        "gpu": ["xformers>=0.0.28", "torchvision"],
        # statsforecast peers of the evaluation (AutoETS, AutoTheta, SeasonalNaive, MSTL): unist/evaluation/peers.py
        "eval": ["statsforecast>=1.7"],
    },
    entry_points={"console_scripts": ["unist-data=unist.data.__main__:main"]},
)
