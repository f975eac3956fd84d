//! The CPU backend: a persistent thread pool, quantized dot-product kernels (AVX2 with a
//! portable fallback chosen at run time), linear layers over GGUF blocks, the row
//! operations of the transformer, and the KV store.

pub mod dot;
pub mod kv;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod quant;
