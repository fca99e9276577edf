//! Q8_0 matrix-vector kernels for single-token decode.
//!
//! Weights are repacked at load into groups of 16 rows. Per group: `nb` x 16 f16 scales
//! (one per row and block), then `nb` blocks of 512 bytes. In block `b`, the 64-byte chunk
//! `t` (0..8) holds, in its 4-byte lane `j`, bytes `4t..4t+4` of row `j` of that block,
//! stored as `q ^ 0x80` (= q + 128 as u8). A broadcast of 4 activation bytes against one chunk
//! then gives, through `vpdpbusd` (u8 x i8), a partial dot for 16 rows at once; the +128 bias
//! is removed by starting each block's accumulator at -128 * sum(x_block). No horizontal sums.
//! Activations are quantized per 32-block (d = max|x|/127, q = round-half-even(x/d)).
//!
//! Q5_0 weights keep 5 bits in the same groups (`q8::Pack`): four 64-byte lines of nibbles
//! per block, then the fifth bits, as one 64-bit mask per chunk (`Q5Masks`, AVX-512) or as
//! 64 bytes whose byte `lane` bit `t` belongs to chunk `t` (`Q5Planes`, AVX2). Decode reads
//! them in place; a batch unpacks each group to the 8-bit layout first.
//!
//! `q8.rs` holds the layout, the repacking and `matmul`; `select.rs` picks a
//! kernel for the CPU (and has the scalar one); `x86.rs` the SIMD kernels;
//! `pool.rs` the persistent thread pool they run on; `attention.rs` the
//! fused causal attention.

pub mod attention;
mod pool;
mod q8;
mod select;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub(crate) use pool::set_threads;
pub use pool::threads;
pub(crate) use q8::Q8Matrix;
pub(crate) use select::kernel_name;
