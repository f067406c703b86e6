"""Packaging for pysnn: spiking neural networks with correlation-based learning on PyTorch."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

EXTRAS = {
    "plot": ["matplotlib>=3.5"],
    "test": [
        "pytest>=7",
        "hypothesis>=6",
        "black==24.10.0",
        "matplotlib>=3.5",
        "tqdm>=4.60",
        "scikit-learn>=1.0",
        "gymnasium>=0.29",
    ],
    "examples": ["matplotlib>=3.5", "tqdm>=4.60", "scikit-learn>=1.0", "gymnasium>=0.29"],
    "docs": ["sphinx>=7", "matplotlib>=3.5"],
}
EXTRAS["dev"] = sorted({pkg for group in EXTRAS.values() for pkg in group} | {"pre-commit"})

setup(
    name="pysnn",
    version="1.0.0.dev0",
    description="Spiking neural networks with STDP-style learning on PyTorch, compatible with PySNN 0.1.1",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["pysnn", "pysnn.*"]),
    python_requires=">=3.9",
    install_requires=["torch>=2.1", "numpy"],
    extras_require=EXTRAS,
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
