"""Install hpcdist: MPI training toolkit (mpi4py + numpy, optional cupy)."""

from setuptools import Extension, find_packages, setup

# The 16-bit wire casts in C (hpcdist/casts.py); optional: without a compiler the
# install goes on and hpcdist uses numpy's casts.
CASTS = Extension(
    "hpcdist._casts",
    ["hpcdist/_casts.c"],
    extra_compile_args=["-O3", "-ffp-contract=off"],
    optional=True,
)

setup(
    name="hpcdist",
    version="0.1.0",
    description="Distributed neural-network training over MPI ranks: roles, devices, "
    "sharded data pipelines, fused and compressed gradient exchange.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["hpcdist", "hpcdist.*"]),
    ext_modules=[CASTS],
    install_requires=[
        "mpi4py>=3.1",
        "numpy>=1.24",
        "h5py>=3.8",
        "ml_dtypes>=0.3",
        "threadpoolctl>=3.1",
        "tomli>=2.0; python_version<'3.11'",
    ],
    extras_require={
        # A self-contained MPI from PyPI for laptops and CI; without it mpi4py
        # uses the site's MPI (see docs/install.md).
        "mpich": ["mpich", "mpi4py>=4.0"],
        "gpu": ["cupy"],
        "train": ["scikit-learn>=1.2", "tqdm>=4.60", "matplotlib>=3.6"],
        "test": [
            "pytest>=7",
            "pytest-mpi>=0.6",
            "pytest-timeout>=2.1",
            "scikit-learn>=1.2",
            "tqdm>=4.60",
            "matplotlib>=3.6",
        ],
    },
    entry_points={"console_scripts": ["hpcdist-train=hpcdist.train:main"]},
)
