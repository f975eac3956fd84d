#!/usr/bin/env python3
"""Compiles every kernels/*.cu with NVRTC (through ctypes) for compute_80 and compute_90
and checks the result; no GPU is needed.

Fails on a compile error, on any warning in NVRTC's program log (the log is printed), and
when an entry point a file declares on its `// entry: a b c` line is missing from the
PTX. Prints one line per file and architecture: PTX size and the `.entry` names. With
--ptxas, also assembles the compute_90 PTX for sm_90 (`ptxas -v`) and prints registers,
shared memory and spills per entry (spills are reported, not failed; ptxas errors fail).

The kernels folder is on the include path (before the CUDA headers), so
`#include "common.cuh"` finds the same text the engine gives NVRTC in memory (in-memory
headers are searched first; src/backend/cuda/nvrtc_program.rs).

Usage: check_kernels.py --cuda-root DIR [--ptxas PATH] [--save-ptx OUT] [FILES...]
  DIR is where the nvidia-cuda-nvrtc and nvidia-cuda-runtime wheels were installed
  (pip --target): DIR/nvidia/cu13/{lib,include}. scripts/check_kernels.sh installs them.
  OUT (created if needed) receives each file's PTX as <name>.<arch>.ptx (`rope.compute_90.ptx`),
  e.g. to show that a change leaves the PTX alone: save before, save after, `diff -r`.
"""

import argparse
import ctypes
import os
import re
import subprocess
import sys
import tempfile
import time

ARCHS = ("compute_80", "compute_90")


def load_nvrtc(lib_dir):
    path = os.path.join(lib_dir, "libnvrtc.so.13")
    # libnvrtc loads libnvrtc-builtins from the same folder by name; RTLD_GLOBAL and the
    # folder on the path keep that working without LD_LIBRARY_PATH.
    os.environ["LD_LIBRARY_PATH"] = lib_dir + ":" + os.environ.get("LD_LIBRARY_PATH", "")
    ctypes.CDLL(os.path.join(lib_dir, "libnvrtc-builtins.so.13.0"), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(path)
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    return lib


class Nvrtc:
    def __init__(self, lib):
        self.lib = lib

    def check(self, status, what):
        if status != 0:
            msg = self.lib.nvrtcGetErrorString(status).decode()
            raise RuntimeError(f"{what}: {msg}")

    def version(self):
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return f"{major.value}.{minor.value}"

    def compile(self, source, name, options):
        """Returns (ok, log, ptx)."""
        prog = ctypes.c_void_p()
        self.check(
            self.lib.nvrtcCreateProgram(
                ctypes.byref(prog), source.encode(), name.encode(), 0, None, None
            ),
            "nvrtcCreateProgram",
        )
        try:
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            status = self.lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self.check(self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "log size")
            buf = ctypes.create_string_buffer(size.value)
            self.check(self.lib.nvrtcGetProgramLog(prog, buf), "log")
            log = buf.value.decode(errors="replace").strip()
            if status != 0:
                return False, log, ""
            self.check(self.lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "PTX size")
            buf = ctypes.create_string_buffer(size.value)
            self.check(self.lib.nvrtcGetPTX(prog, buf), "PTX")
            return True, log, buf.value.decode()
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def declared_entries(source, name):
    for line in source.splitlines()[:10]:
        m = re.match(r"\s*//\s*entry:\s*(.*)$", line)
        if m:
            return m.group(1).split()
    raise SystemExit(f"{name}: no `// entry: ...` line in its first 10 lines")


def ptxas_report(ptxas, ptx, name):
    """Runs ptxas -arch=sm_90 -v; returns (ok, text) with one line per entry."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, name + ".ptx")
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run(
            [ptxas, "-arch=sm_90", "-v", src, "-o", os.path.join(d, "out.cubin")],
            capture_output=True,
            text=True,
        )
    out = r.stdout + r.stderr
    if r.returncode != 0:
        return False, out
    lines, func = [], None
    for line in out.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            func = m.group(1)
            spill = ""
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and func:
            spill = f"spills {m.group(1)}/{m.group(2)} B"
            continue
        m = re.search(r"Used (\d+) registers.*?(?:(\d+) bytes smem)?", line)
        if m and func:
            smem = re.search(r"(\d+) bytes smem", line)
            lines.append(
                f"    {func}: {m.group(1)} registers, "
                f"{smem.group(1) if smem else 0} B smem, {spill or 'no spill info'}"
            )
            func = None
    if "warning" in out.lower():
        lines.append("    ptxas warnings:\n" + out)
    return True, "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuda-root", required=True)
    ap.add_argument("--ptxas")
    ap.add_argument("--save-ptx", metavar="OUT")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    root = os.path.join(args.cuda_root, "nvidia", "cu13")
    include = os.path.join(root, "include")
    nvrtc = Nvrtc(load_nvrtc(os.path.join(root, "lib")))
    here = os.path.dirname(os.path.abspath(__file__))
    kdir = os.path.normpath(os.path.join(here, "..", "kernels"))
    files = args.files or sorted(
        os.path.join(kdir, f) for f in os.listdir(kdir) if f.endswith(".cu")
    )
    if not files:
        raise SystemExit("no kernels/*.cu found")
    print(f"NVRTC {nvrtc.version()}, {len(files)} files, archs {' '.join(ARCHS)}")
    failures = []
    t0 = time.time()
    for path in files:
        name = os.path.basename(path)
        with open(path) as f:
            source = f.read()
        want = declared_entries(source, name)
        for arch in ARCHS:
            options = [
                f"--gpu-architecture={arch}",
                "-std=c++17",
                f"--include-path={kdir}",
                f"--include-path={include}",
            ]  # the engine's options (src/backend/cuda/kernels.rs: BASE_OPTIONS, arch, -I CUDA)
            ok, log, ptx = nvrtc.compile(source, name, options)
            if not ok:
                failures.append(f"{name} [{arch}]: compile error")
                print(f"FAIL {name} [{arch}]: compile error\n{log}")
                continue
            if log:
                failures.append(f"{name} [{arch}]: warnings")
                print(f"FAIL {name} [{arch}]: the program log is not empty\n{log}")
            if args.save_ptx:
                os.makedirs(args.save_ptx, exist_ok=True)
                stem = name[: -len(".cu")] if name.endswith(".cu") else name
                with open(os.path.join(args.save_ptx, f"{stem}.{arch}.ptx"), "w") as f:
                    f.write(ptx)
            entries = re.findall(r"^\.(?:visible\s+)?\.entry\s+(\w+)", ptx, re.M)
            missing = [e for e in want if e not in entries]
            extra = [e for e in entries if e not in want]
            if missing or extra:
                failures.append(f"{name} [{arch}]: entries missing {missing} undeclared {extra}")
            status = "ok  " if not (missing or extra or log) else "FAIL"
            print(f"{status} {name:24} {arch}  PTX {len(ptx):7d} B  entries: {' '.join(entries)}")
            if missing or extra:
                print(f"     missing: {missing}  not declared: {extra}")
            if arch == "compute_90" and args.ptxas:
                ok, text = ptxas_report(args.ptxas, ptx, name)
                if not ok:
                    failures.append(f"{name} [sm_90]: ptxas error")
                    print(f"FAIL {name} ptxas -arch=sm_90:\n{text}")
                else:
                    print(f"     ptxas sm_90:\n{text}")
    print(f"checked in {time.time() - t0:.1f} s")
    if failures:
        print("\nkernel check FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("all kernels compile cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
