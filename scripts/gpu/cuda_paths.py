#!/usr/bin/env python3
"""Where the CUDA 13 libraries and headers rill opens at run time live, for run_all.sh.

    python3 scripts/gpu/cuda_paths.py libdirs    # folders with libnvrtc.so* / libcublas*.so*
    python3 scripts/gpu/cuda_paths.py includes   # folders with cuda_bf16.h

One folder per line, system CUDA first (/usr/local/cuda*, then this Python's nvidia-*
wheels: nvidia/<pkg>/lib, nvidia/cu13/lib*, nvidia/<pkg>/include); nothing when none.
"""
from __future__ import annotations

import glob
import os
import site
import sys


def site_roots() -> list[str]:
    roots = list(site.getsitepackages())
    user = site.getusersitepackages()
    return roots + ([user] if isinstance(user, str) else [])


def unique(paths):
    seen = []
    for p in paths:
        p = os.path.realpath(p)
        if os.path.isdir(p) and p not in seen:
            seen.append(p)
    return seen


def libdirs() -> list[str]:
    cands = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
    cands += sorted(glob.glob("/usr/local/cuda-13*/lib64"))
    for r in site_roots():
        cands += sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib")))
        cands += sorted(glob.glob(os.path.join(r, "nvidia", "cu13", "lib*")))
    return [d for d in unique(cands)
            if glob.glob(os.path.join(d, "libnvrtc.so*")) or glob.glob(os.path.join(d, "libcublas*.so*"))]


def includes() -> list[str]:
    cands = ["/usr/local/cuda/include", "/usr/local/cuda/targets/x86_64-linux/include"]
    for r in site_roots():
        cands += sorted(glob.glob(os.path.join(r, "nvidia", "*", "include")))
    return [d for d in unique(cands) if os.path.isfile(os.path.join(d, "cuda_bf16.h"))]


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what not in ("libdirs", "includes"):
        raise SystemExit("usage: cuda_paths.py libdirs|includes")
    print("\n".join(libdirs() if what == "libdirs" else includes()))
