#!/usr/bin/env python3
"""Reference data for rill's GGUF block formats, produced by ggml itself.

Loads ggml from the llama-cpp-python install with ctypes (pinned: llama-cpp-python
0.3.36, llama.cpp commit 0c1e57098; see tests/requirements-models.txt) and, for every
tensor type rill computes with (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K
Q5_K Q6_K), writes:

  - ROWS seeded random weight rows of COLS floats quantized with `ggml_quantize_chunk`
    (libggml-base; the reference quantizers, no importance matrix),
  - ggml's dequantization of those bytes (`ggml_get_type_traits(t)->to_float`),
  - one fixed activation row converted to the type's `vec_dot_type` with the CPU
    backend's own `from_float` (`ggml_get_type_traits_cpu(vec_dot_type)->from_float`,
    the code llama.cpp runs on this CPU),
  - the CPU backend's `vec_dot` of every weight row with that activation row.

Output: tests/fixtures/ggml_quants.bin (the blobs back to back) and
tests/fixtures/ggml_quants.json (for each type: offsets and sizes into the .bin).
The f32 activation row is stored once. Everything is little-endian.

Rerun (from the repository root):
    python3 scripts/models/ggml_quant_reference.py
The test tests/ggml_quants.rs reads the committed files; it does not need Python.
"""

import ctypes
import json
import os
import sys

import numpy as np

ROWS = 4
COLS = 512
SEED = 20261124

# ggml_type ids (ggml.h) -> rill names.
TYPES = [
    ("F32", 0), ("F16", 1), ("BF16", 30),
    ("Q4_0", 2), ("Q4_1", 3), ("Q5_0", 6), ("Q5_1", 7), ("Q8_0", 8),
    ("Q2_K", 10), ("Q3_K", 11), ("Q4_K", 12), ("Q5_K", 13), ("Q6_K", 14),
]

TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                           ctypes.c_size_t, ctypes.c_int)


class TypeTraits(ctypes.Structure):  # struct ggml_type_traits (ggml.h)
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


class TypeTraitsCpu(ctypes.Structure):  # struct ggml_type_traits_cpu (ggml-cpu.h)
    _fields_ = [
        ("from_float", ctypes.c_void_p),
        ("vec_dot", ctypes.c_void_p),
        ("vec_dot_type", ctypes.c_int),
        ("nrows", ctypes.c_int64),
    ]


def load_ggml():
    import llama_cpp  # noqa: F401  (only for its location)

    if getattr(llama_cpp, "__version__", "") != "0.3.36":
        sys.exit(f"need llama-cpp-python 0.3.36, found {llama_cpp.__version__}")
    lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    base = ctypes.CDLL(os.path.join(lib, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    cpu = ctypes.CDLL(os.path.join(lib, "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    base.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
    base.ggml_get_type_traits.argtypes = [ctypes.c_int]
    base.ggml_row_size.restype = ctypes.c_size_t
    base.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    base.ggml_quantize_chunk.restype = ctypes.c_size_t
    base.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                         ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                         ctypes.c_void_p]
    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(TypeTraitsCpu)
    cpu.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
    cpu.ggml_cpu_init.restype = None
    cpu.ggml_cpu_init()
    return base, cpu


def weights(rng):
    """ROWS x COLS: a plain row, a wide-range row, one with outliers, one near zero."""
    w = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    w[1] *= np.float32(7.5)
    w[2, rng.integers(0, COLS, 9)] *= np.float32(40.0)
    w[3] *= np.float32(1e-3)
    return np.ascontiguousarray(w * np.float32(0.05))


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out_dir = os.path.join(root, "tests", "fixtures")
    base, cpu = load_ggml()
    rng = np.random.default_rng(SEED)
    act = np.ascontiguousarray(rng.standard_normal(COLS).astype(np.float32))
    blob = bytearray()

    def put(b):
        off = len(blob)
        blob.extend(b)
        return {"offset": off, "len": len(b)}

    manifest = {
        "llama_cpp_python": "0.3.36",
        "rows": ROWS,
        "cols": COLS,
        "seed": SEED,
        "activation_f32": put(act.tobytes()),
        "types": {},
    }
    for name, ty in TYPES:
        w = weights(rng)
        row_size = base.ggml_row_size(ty, COLS)
        q = (ctypes.c_uint8 * (row_size * ROWS))()
        n = base.ggml_quantize_chunk(ty, w.ctypes.data, q, 0, ROWS, COLS, None)
        assert n == row_size * ROWS, (name, n, row_size)
        tr = base.ggml_get_type_traits(ty).contents
        deq = np.zeros((ROWS, COLS), dtype=np.float32)
        if tr.to_float:
            TO_FLOAT(tr.to_float)(q, deq.ctypes.data, ROWS * COLS)
        else:  # F32 has no conversion: its bytes are the floats
            assert ty == 0, name
            ctypes.memmove(deq.ctypes.data, q, row_size * ROWS)
        ct = cpu.ggml_get_type_traits_cpu(ty).contents
        vdt = ct.vec_dot_type
        act_size = base.ggml_row_size(vdt, COLS)
        aq = (ctypes.c_uint8 * act_size)()
        vdt_traits = cpu.ggml_get_type_traits_cpu(vdt).contents
        if not vdt_traits.from_float:  # F32: the activations as they are
            assert vdt == 0, name
            ctypes.memmove(aq, act.ctypes.data, act_size)
        else:
            FROM_FLOAT(vdt_traits.from_float)(act.ctypes.data, aq, COLS)
        dots = np.zeros(ROWS, dtype=np.float32)
        s = ctypes.c_float()
        for r in range(ROWS):
            row = ctypes.addressof(q) + r * row_size
            VEC_DOT(ct.vec_dot)(COLS, ctypes.byref(s), 0, row, 0, aq, 0, 1)
            dots[r] = s.value
        manifest["types"][name] = {
            "ggml_type": ty,
            "vec_dot_type": vdt,
            "vec_dot_type_name": base.ggml_get_type_traits(vdt).contents.type_name.decode(),
            "row_bytes": row_size,
            "weights": put(bytes(q)),
            "dequantized_f32": put(deq.tobytes()),
            "activation_vec_dot_type": put(bytes(aq)),
            "vec_dot_f32": put(dots.tobytes()),
        }
    with open(os.path.join(out_dir, "ggml_quants.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(out_dir, "ggml_quants.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"wrote {len(blob)} bytes for {len(TYPES)} types to {out_dir}")


if __name__ == "__main__":
    main()
