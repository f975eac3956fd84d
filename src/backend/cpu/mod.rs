//! The CPU backend: a persistent thread pool, quantized dot-product kernels (AVX-512 VNNI,
//! AVX2 or NEON chosen at run time, all bit-identical to the portable reference), linear
//! layers over GGUF blocks, the row operations of the transformer, and the KV store.

pub mod dot;
pub mod kv;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod quant;
