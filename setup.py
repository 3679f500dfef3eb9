"""Install tinymeta; the top-level kernels/ folder installs as tinymeta.kernels."""
from setuptools import setup

setup(
    name="tinymeta",
    version="0.1.0",
    description="A from-scratch reverse-mode autodiff for gradient-based meta-learning "
                "(MAML, first-order MAML, Reptile).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["tinymeta", "tinymeta.ops", "tinymeta.nn", "tinymeta.data", "tinymeta.meta",
              "tinymeta.kernels"],
    package_dir={"tinymeta": "tinymeta", "tinymeta.kernels": "kernels"},
    package_data={"tinymeta.kernels": ["cuda/*.cu"]},
    install_requires=["numpy>=1.24", "numba>=0.59"],
    extras_require={
        # the loaders are tested on real PNGs, the examples (which plot) are run by the tests, and so is the
        # lecture notebook, in a Jupyter kernel
        "test": ["pytest>=7", "hypothesis>=6", "Pillow>=9", "tqdm>=4.60", "matplotlib>=3.5",
                 "nbformat>=5.1", "nbclient>=0.9", "ipykernel>=6", "threadpoolctl>=3"],
        # threadpoolctl: meta.TaskThreads runs each thread's BLAS on one core
        "examples": ["matplotlib>=3.5", "Pillow>=9", "tqdm>=4.60", "threadpoolctl>=3"],
        "gpu": ["cupy>=13"],
        # mpiexec -n N: mpi4py, an MPI from the package index (mpich ships mpiexec), per-rank BLAS threads
        "mpi": ["mpi4py>=4", "mpich", "threadpoolctl>=3"],
        # developer tools, not CI: mutation testing and coverage (tests/README.md)
        "dev": ["mutmut>=3.3", "coverage>=7.10"],
    },
)
