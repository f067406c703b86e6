"""Packaging for pysnn: spiking neural networks with correlation-based learning on PyTorch."""

import tempfile
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

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
        "nir>=1.0.8,<2",
        "h5py>=3",
    ],
    "nir": ["nir>=1.0.8,<2", "h5py>=3"],
    "examples": ["matplotlib>=3.5", "tqdm>=4.60", "scikit-learn>=1.0", "gymnasium>=0.29"],
    "docs": [
        "sphinx>=7",
        "matplotlib>=3.5",
        "furo>=2024.1",
        "sphinx-mathjax-offline>=0.0.2",
        "nir>=1.0.8,<2",
        "h5py>=3",
    ],
}
EXTRAS["dev"] = sorted({pkg for group in EXTRAS.values() for pkg in group} | {"pre-commit"})


class BuildNative(build_ext):
    """Build the optional fused kernels (pysnn/_native.c) with flags the compiler understands.

    ``-ffp-contract=off`` rounds every multiply and add separately, as eager PyTorch does (the
    kernels call ``fma()`` where torch's ``addcmul_`` rounds once);
    ``-fno-trapping-math`` lets comparisons be vectorised (results are unchanged); ``-fopenmp``
    where the compiler links it. The extension is optional: without a compiler pysnn installs and runs on its eager PyTorch code.
    """

    def build_extensions(self):
        if self.compiler.compiler_type == "unix":
            threads = ["-fopenmp"] if self._links_openmp() else []
            for extension in self.extensions:
                extension.extra_compile_args += ["-O3", "-ffp-contract=off", "-fno-trapping-math"]
                extension.extra_compile_args += threads
                extension.extra_link_args += threads
        super().build_extensions()

    def _links_openmp(self) -> bool:
        """Whether the compiler builds and links a shared object with ``-fopenmp``.

        The kernels then split large steps over the OpenMP threads; the libgomp they link is
        the one PyTorch has already loaded (same soname), so both share one thread team.
        """
        with tempfile.TemporaryDirectory() as scratch:
            source = Path(scratch) / "probe.c"
            source.write_text(
                "#include <omp.h>\nint probe(void) { return omp_get_max_threads(); }\n"
            )
            try:
                objects = self.compiler.compile(
                    [str(source)], output_dir=scratch, extra_postargs=["-fopenmp", "-fPIC"]
                )
                self.compiler.link_shared_object(
                    objects, str(Path(scratch) / "probe.so"), extra_postargs=["-fopenmp"]
                )
            except Exception:  # any compiler or linker failure: build without threads
                return False
        return True


NATIVE = Extension("pysnn._native", sources=["pysnn/_native.c"], optional=True)

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
    ext_modules=[NATIVE],
    cmdclass={"build_ext": BuildNative},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
