//! Compute backends. The CPU backend is the embedded default and the reference that every
//! other backend is tested against.

pub mod cpu;
