#!/usr/bin/env python3
"""Reference GGUF files for rill's reader, written and read back by gguf-py (llama.cpp's
own Python package), so tests/gguf_reference.rs can check that `GgufFile` reads what
the reference writer wrote and the reference reader sees.

Writes, under tests/fixtures/gguf/:
  reference.gguf     little-endian GGUF v3: every metadata value type, arrays of ints,
                     floats, bools and strings, a custom general.alignment
                     of 64, and F32, F16, Q8_0 and Q4_1 tensors (1-D to 3-D)
  reference_be.gguf  the same content written big-endian (rill must refuse it by name)
  reference.json     what gguf-py's GGUFReader reads back from reference.gguf: each key
                     with its value type and value, each tensor with its ggml dims, type
                     id, absolute data offset, byte length and bytes (hex)

Rerun (python3.11 with gguf==0.19.0 and numpy, see tests/requirements-models.txt):
  python3 scripts/models/gguf_reference.py
"""

import json
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFEndian, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import quantize

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "gguf"


def write(path, endian):
    w = GGUFWriter(path, "llama", endianess=endian)
    w.add_custom_alignment(64)
    w.add_string("general.name", "rill reference: «ünïcode» \"quotes\" <&>")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 1.5)
    w.add_bool("test.bool", True)
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", -0.1)
    w.add_array("test.ints", [1, -2, 3])
    w.add_array("test.floats", [0.5, -1.25])
    w.add_array("test.bools", [True, False, True])
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "héllo", " world", ""])
    rng = np.random.default_rng(7)
    w.add_tensor("f32.weight", rng.standard_normal((3, 8), dtype=np.float32))
    w.add_tensor("f16.weight", rng.standard_normal((2, 2, 4)).astype(np.float16))
    for name, qtype in [("q8_0.weight", GGMLQuantizationType.Q8_0), ("q4_1.weight", GGMLQuantizationType.Q4_1)]:
        data = rng.standard_normal((2, 64), dtype=np.float32)
        w.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)
    w.add_tensor("norm.weight", np.arange(5, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def value(field):
    types = [int(t) for t in field.types]
    if types[0] == GGUFValueType.ARRAY:
        items = [field.parts[i] for i in field.data]
        if types[1] == GGUFValueType.STRING:
            return [bytes(p).decode() for p in items]
        return [p.tolist()[0] for p in items]
    part = field.parts[field.data[0]]
    if types[0] == GGUFValueType.STRING:
        return bytes(part).decode()
    return part.tolist()[0]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write(OUT / "reference.gguf", GGUFEndian.LITTLE)
    write(OUT / "reference_be.gguf", GGUFEndian.BIG)
    r = GGUFReader(OUT / "reference.gguf")
    skip = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
    desc = {
        "generator": "scripts/models/gguf_reference.py",
        "metadata": {
            k: {"type": [int(t) for t in f.types], "value": value(f)}
            for k, f in r.fields.items()
            if k not in skip
        },
        "tensors": [
            {
                "name": t.name,
                "dims": [int(d) for d in t.shape],
                "type": int(t.tensor_type),
                "offset": int(t.data_offset),
                "n_bytes": int(t.n_bytes),
                "hex": bytes(r.data[t.data_offset : t.data_offset + t.n_bytes]).hex(),
            }
            for t in r.tensors
        ],
    }
    (OUT / "reference.json").write_text(json.dumps(desc, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT}: {len(desc['metadata'])} keys, {len(desc['tensors'])} tensors")


if __name__ == "__main__":
    main()
