//! Q8_0 weights repacked in groups of 16 rows, and activations quantized to match.

use super::pool::*;
use super::select::*;

pub(super) const QK: usize = 32;
pub(super) const G: usize = 16; // rows per group
pub(super) const BLK: usize = G * QK; // weight bytes per group-block
/// Weight bytes per group-block of the 5-bit packings: 4 lines of nibbles,
/// then 64 bytes of fifth bits (see [`Q8Matrix::from_q5_0`]).
pub(super) const BLK5: usize = 4 * 64 + 8 * 8;

/// How a matrix's weight blocks are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pack {
    /// 8 bits a weight, `q ^ 0x80` (`BLK` bytes a block).
    Q8,
    /// 5 bits a weight, the fifth bits as one 64-bit mask per chunk: the
    /// AVX-512 kernel reads it in place (`BLK5` bytes a block).
    Q5Masks,
    /// 5 bits a weight, the fifth bits as bit planes (byte `lane` holds the
    /// fifth bit of chunk `t` in bit `t`): the AVX2 kernel reads it in
    /// place, two operations a chunk (`BLK5` bytes a block).
    Q5Planes,
}

/// Software prefetch distance (bytes) for the streamed weights.
#[cfg(target_arch = "x86_64")]
pub(super) const PF_DIST: usize = 4096;

/// Byte offset of the weights within a group (after the scales, padded to 64).
#[inline]
pub(super) fn wofs(nb: usize) -> usize {
    (nb * G * 2).div_ceil(64) * 64
}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct Line(pub(super) [u8; 64]);

/// Q8_0 weights repacked for fast decode (values exactly as in the input).
pub(crate) struct Q8Matrix {
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) nb: usize,
    pub(super) ngroups: usize,
    pub(super) stride: usize, // bytes per group, multiple of 64
    pub(super) pack: Pack,
    /// Every value is in -16..=15 (from Q5_0): kernels without VNNI then
    /// multiply `q + 16` as unsigned bytes, without the sign trick.
    pub(super) narrow: bool,
    pub(super) data: Vec<Line>,
}

#[inline]
pub(super) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            let v = man as f32 * (1.0 / 16777216.0); // subnormal: man * 2^-24, exact
            return if sign != 0 { -v } else { v };
        }
    } else if exp == 31 {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 112) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// The fifth bit (0 or 1) of weight byte `(t, lane)` in a 5-bit block `w`.
#[inline]
fn fifth_bit(pack: Pack, w: &[u8], t: usize, lane: usize) -> u8 {
    match pack {
        Pack::Q5Planes => (w[256 + lane] >> t) & 1,
        _ => (w[256 + t * 8 + lane / 8] >> (lane % 8)) & 1,
    }
}

impl Q8Matrix {
    pub(super) fn build(
        n: usize,
        k: usize,
        bpb: usize,
        bytes: &[u8],
        conv: fn(&[u8], &mut [i8; 32]) -> u16,
        pack: Pack,
        narrow: bool,
    ) -> Result<Self, String> {
        if n == 0 || k == 0 || !k.is_multiple_of(QK) {
            return Err(format!("bad shape {n}x{k}: k must be a positive multiple of 32"));
        }
        let nb = k / QK;
        if bytes.len() != n * nb * bpb {
            return Err(format!("size mismatch: {} bytes for {n}x{k} (expected {})", bytes.len(), n * nb * bpb));
        }
        let ngroups = n.div_ceil(G);
        let wofs = (nb * G * 2).div_ceil(64) * 64; // weights start 64-aligned
        let stride = wofs + nb * if pack == Pack::Q8 { BLK } else { BLK5 };
        let mut data = vec![Line([0u8; 64]); ngroups * stride / 64];
        // SAFETY: `data` is a plain byte buffer of ngroups*stride bytes; we view it as bytes.
        let out = unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr() as *mut u8, ngroups * stride) };
        let mut q = [0i8; 32];
        for g in 0..ngroups {
            let grp = &mut out[g * stride..(g + 1) * stride];
            let (sc, ws) = grp.split_at_mut(wofs);
            for b in 0..nb {
                for j in 0..G {
                    let r = g * G + j;
                    let d = if r < n {
                        let off = (r * nb + b) * bpb;
                        conv(&bytes[off..off + bpb], &mut q)
                    } else {
                        q = [0; 32];
                        0
                    };
                    sc[(b * G + j) * 2..(b * G + j) * 2 + 2].copy_from_slice(&d.to_le_bytes());
                    if pack != Pack::Q8 {
                        let blk = &mut ws[b * BLK5..(b + 1) * BLK5];
                        for t in 0..8 {
                            for c in 0..4 {
                                let (lane, u) = (j * 4 + c, (q[t * 4 + c] as i32 + 16) as u8);
                                blk[(t % 4) * 64 + lane] |= (u & 0x0f) << (4 * (t / 4));
                                let fifth = (u >> 4) & 1;
                                if pack == Pack::Q5Masks {
                                    blk[256 + t * 8 + lane / 8] |= fifth << (lane % 8);
                                } else {
                                    blk[256 + lane] |= fifth << t;
                                }
                            }
                        }
                    } else {
                        for t in 0..8 {
                            for c in 0..4 {
                                ws[b * BLK + t * 64 + j * 4 + c] = (q[t * 4 + c] as u8) ^ 0x80;
                            }
                        }
                    }
                }
            }
        }
        Ok(Q8Matrix { n, k, nb, ngroups, stride, pack, narrow, data })
    }

    /// `bytes`: GGUF Q8_0 data for an n x k matrix (n rows of k/32 blocks of 34 bytes).
    pub(crate) fn from_q8_0(n: usize, k: usize, bytes: &[u8]) -> Result<Self, String> {
        Self::build(
            n,
            k,
            34,
            bytes,
            |blk, q| {
                for i in 0..32 {
                    q[i] = blk[2 + i] as i8;
                }
                u16::from_le_bytes([blk[0], blk[1]])
            },
            Pack::Q8,
            false,
        )
    }

    /// `bytes`: GGUF Q5_0 data (22-byte blocks). Kept at 5 bits a weight
    /// where the kernel in use reads a 5-bit packing in place (AVX-512 the
    /// masks, AVX2 the planes), else converted exactly to Q8_0 values;
    /// `WICK_Q5_REPACK=1` forces the conversion (for comparison).
    ///
    /// The 5-bit packings hold the same values as `u = q + 16` (0..31):
    /// line `t` (0..4) of a block holds, in the byte that the 8-bit
    /// layout's chunk `t` uses for a weight, its low nibble, and in the high
    /// nibble that of chunk `t + 4`. The fifth bits follow: as masks, mask
    /// `t` (0..8, 64 bits) has bit `4j + c` set when weight `4t + c` of row
    /// `j` has its fifth bit; as planes, byte `4j + c` has bit `t` set. A
    /// dot product over `u` then needs `-16 * sum(x)` added: the
    /// activations' 8-bit correction divided by 8, exactly.
    pub(crate) fn from_q5_0(n: usize, k: usize, bytes: &[u8]) -> Result<Self, String> {
        let pack = match kernel() {
            _ if std::env::var_os("WICK_Q5_REPACK").is_some() => Pack::Q8,
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512Vnni => Pack::Q5Masks,
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => Pack::Q5Planes,
            _ => Pack::Q8,
        };
        Self::from_q5_0_packed(n, k, bytes, pack)
    }

    pub(super) fn from_q5_0_packed(n: usize, k: usize, bytes: &[u8], pack: Pack) -> Result<Self, String> {
        Self::build(
            n,
            k,
            22,
            bytes,
            |blk, q| {
                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                let qs = &blk[6..22];
                for j in 0..16 {
                    let xh0 = ((qh >> j) << 4) & 0x10;
                    let xh1 = (qh >> (j + 12)) & 0x10;
                    q[j] = (((qs[j] as u32 & 0x0f) | xh0) as i32 - 16) as i8;
                    q[j + 16] = (((qs[j] as u32 >> 4) | xh1) as i32 - 16) as i8;
                }
                u16::from_le_bytes([blk[0], blk[1]])
            },
            pack,
            true,
        )
    }

    /// Weight bytes per group-block.
    pub(super) fn blk(&self) -> usize {
        if self.pack == Pack::Q8 {
            BLK
        } else {
            BLK5
        }
    }

    /// The 8-bit form of weight byte `(t, lane)` of block `b` of a group.
    #[inline]
    pub(super) fn byte8(&self, grp: &[u8], b: usize, t: usize, lane: usize) -> u8 {
        let w = &grp[wofs(self.nb) + b * self.blk()..];
        match self.pack {
            Pack::Q8 => w[t * 64 + lane],
            Pack::Q5Masks | Pack::Q5Planes => {
                let lo = (w[(t % 4) * 64 + lane] >> (4 * (t / 4))) & 0x0f;
                (lo | (fifth_bit(self.pack, w, t, lane) << 4)).wrapping_sub(16) ^ 0x80
            }
        }
    }

    /// Writes the 8-bit layout of group `g` (scales and blocks) into `dst`
    /// (`wofs(nb) + nb * BLK` bytes): a 5-bit packing unpacked once for a
    /// batch of rows.
    pub(super) fn unpack_group(&self, g: usize, dst: &mut [u8]) {
        let grp = &self.bytes()[g * self.stride..(g + 1) * self.stride];
        let wo = wofs(self.nb);
        dst[..wo].copy_from_slice(&grp[..wo]);
        for b in 0..self.nb {
            let w = &grp[wo + b * BLK5..wo + (b + 1) * BLK5];
            let out = &mut dst[wo + b * BLK..wo + (b + 1) * BLK];
            for t in 0..8 {
                let line = &w[(t % 4) * 64..(t % 4) * 64 + 64];
                for lane in 0..64 {
                    let u = ((line[lane] >> (4 * (t / 4))) & 0x0f) | (fifth_bit(self.pack, w, t, lane) << 4);
                    out[t * 64 + lane] = u.wrapping_sub(16) ^ 0x80;
                }
            }
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.n
    }
    pub fn cols(&self) -> usize {
        self.k
    }

    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: `data` holds ngroups*stride initialized bytes.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr() as *const u8, self.ngroups * self.stride) }
    }

    /// Dequantize to f32, row-major n x k.
    pub(crate) fn dequantize(&self) -> Vec<f32> {
        let (nb, k) = (self.nb, self.k);
        let mut out = vec![0f32; self.n * k];
        let bytes = self.bytes();
        for r in 0..self.n {
            let (g, j) = (r / G, r % G);
            let grp = &bytes[g * self.stride..];
            for b in 0..nb {
                let o = (b * G + j) * 2;
                let d = f16_to_f32(u16::from_le_bytes([grp[o], grp[o + 1]]));
                for i in 0..QK {
                    let q = (self.byte8(grp, b, i / 4, j * 4 + i % 4) ^ 0x80) as i8;
                    out[r * k + b * QK + i] = d * q as f32;
                }
            }
        }
        out
    }

    /// y (m x n) = x (m x k) * W^T, with activations quantized to Q8_0 per 32-block.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        self.matmul_with(x, m, y, kernel(), threads());
    }

    pub(super) fn matmul_with(&self, x: &[f32], m: usize, y: &mut [f32], kind: Kind, nthreads: usize) {
        assert_eq!(x.len(), m * self.k, "x must be m x k");
        assert!(y.len() >= m * self.n, "y must be m x n");
        if m == 0 {
            return;
        }
        thread_local! {
            static SCRATCH: std::cell::RefCell<QX> = const { std::cell::RefCell::new(QX { q: Vec::new(), d: Vec::new(), corr: Vec::new(), k: 0, nb: 0 }) };
        }
        SCRATCH.with(|cell| {
            let mut fresh;
            let mut borrowed = cell.try_borrow_mut();
            let qx: &mut QX = match borrowed.as_deref_mut() {
                Ok(q) => q,
                Err(_) => {
                    fresh = QX::empty();
                    &mut fresh
                }
            };
            qx.fill(x, m, self.k, kind != Kind::Scalar);
            let qx: &QX = qx;
            let yp = SendPtr(y.as_mut_ptr());
            let ng = self.ngroups;
            let nt = nthreads.max(1).min(ng);
            let chunk = if nt == 1 { ng } else { ng.div_ceil(nt * 6).max(1) };
            let nchunks = ng.div_ceil(chunk);
            let work = |c: usize| {
                let g0 = c * chunk;
                let g1 = (g0 + chunk).min(ng);
                // SAFETY: each chunk writes only rows of groups g0..g1 of y (disjoint across chunks),
                // and y outlives the parallel region (run_parallel returns after all work is done).
                unsafe { run_kernel(kind, self, g0, g1, qx, m, yp.get()) }
            };
            run_parallel(nchunks, nt, &work);
        })
    }
}

#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
// SAFETY: used only for disjoint writes into a slice that outlives the parallel region.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Quantized activations: q (m x k, i8, plus 4 bytes padding), d (m x nb), corr = -128*sum(q) (m x nb).
pub(super) struct QX {
    pub(super) q: Vec<i8>,
    pub(super) d: Vec<f32>,
    pub(super) corr: Vec<i32>,
    pub(super) k: usize,
    pub(super) nb: usize,
}

impl QX {
    pub(super) fn empty() -> QX {
        QX { q: Vec::new(), d: Vec::new(), corr: Vec::new(), k: 0, nb: 0 }
    }

    /// `simd`: use the AVX2 quantizer (only passed true for non-scalar kernels, which
    /// `available_kernels` offers only when AVX2 is detected). Same results either way.
    pub(super) fn fill(&mut self, x: &[f32], m: usize, k: usize, simd: bool) {
        let nb = k / QK;
        (self.k, self.nb) = (k, nb);
        self.q.clear();
        self.q.resize(m * k + 4, 0);
        self.d.clear();
        self.d.resize(m * nb, 0.0);
        self.corr.clear();
        self.corr.resize(m * nb, 0);
        for bi in 0..m * nb {
            let (xb, qb) = (&x[bi * QK..bi * QK + QK], (&mut self.q[bi * QK..bi * QK + QK]).try_into().unwrap());
            let (dd, s) = if simd {
                // SAFETY: non-scalar kernels are only selected when AVX2 is available.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    super::x86::quantize_block_avx2(xb, qb)
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!()
            } else {
                quantize_block(xb, qb)
            };
            self.d[bi] = dd;
            self.corr[bi] = -128 * s;
        }
    }
}

/// ggml-style Q8_0 quantization of one block; returns (d, sum of q). Rounds half to even
/// via the 1.5*2^23 trick (exact for |v| <= 127.x, vectorizable, no libm call).
#[inline]
pub(super) fn quantize_block(x: &[f32], q: &mut [i8; 32]) -> (f32, i32) {
    let mut amax = 0f32;
    for &v in x {
        amax = amax.max(v.abs());
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut s = 0i32;
    for i in 0..QK {
        const MAGIC: f32 = 12582912.0;
        let v = ((x[i] * id + MAGIC) - MAGIC).clamp(-127.0, 127.0);
        q[i] = v as i8;
        s += q[i] as i32;
    }
    (d, s)
}
