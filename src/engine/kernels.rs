//! Q8_0 matrix-vector kernels for single-token decode.
//!
//! Weights are repacked at load into groups of 16 rows. Per group: `nb` x 16 f16 scales
//! (one per row and block), then `nb` blocks of 512 bytes. In block `b`, the 64-byte chunk
//! `t` (0..8) holds, in its 4-byte lane `j`, bytes `4t..4t+4` of row `j` of that block,
//! stored as `q ^ 0x80` (= q + 128 as u8). A broadcast of 4 activation bytes against one chunk
//! then gives, through `vpdpbusd` (u8 x i8), a partial dot for 16 rows at once; the +128 bias
//! is removed by starting each block's accumulator at -128 * sum(x_block). No horizontal sums.
//! Activations are quantized per 32-block (d = max|x|/127, q = round-half-even(x/d)).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

const QK: usize = 32;
const G: usize = 16; // rows per group
const BLK: usize = G * QK; // weight bytes per group-block

/// Software prefetch distance (bytes) for the streamed weights.
#[cfg(target_arch = "x86_64")]
const PF_DIST: usize = 4096;

/// Byte offset of the weights within a group (after the scales, padded to 64).
fn wofs(nb: usize) -> usize {
    (nb * G * 2).div_ceil(64) * 64
}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

/// Q8_0 weights repacked for fast decode (values exactly as in the input).
pub struct Q8Matrix {
    n: usize,
    k: usize,
    nb: usize,
    ngroups: usize,
    stride: usize, // bytes per group, multiple of 64
    data: Vec<Line>,
}

fn f16_to_f32(h: u16) -> f32 {
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

impl Q8Matrix {
    fn build(
        n: usize,
        k: usize,
        bpb: usize,
        bytes: &[u8],
        conv: fn(&[u8], &mut [i8; 32]) -> u16,
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
        let stride = wofs + nb * BLK;
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
                    for t in 0..8 {
                        for c in 0..4 {
                            ws[b * BLK + t * 64 + j * 4 + c] = (q[t * 4 + c] as u8) ^ 0x80;
                        }
                    }
                }
            }
        }
        Ok(Q8Matrix { n, k, nb, ngroups, stride, data })
    }

    /// `bytes`: GGUF Q8_0 data for an n x k matrix (n rows of k/32 blocks of 34 bytes).
    pub fn from_q8_0(n: usize, k: usize, bytes: &[u8]) -> Result<Self, String> {
        Self::build(n, k, 34, bytes, |blk, q| {
            for i in 0..32 {
                q[i] = blk[2 + i] as i8;
            }
            u16::from_le_bytes([blk[0], blk[1]])
        })
    }

    /// `bytes`: GGUF Q5_0 data (22-byte blocks), converted exactly to Q8_0 values.
    pub fn from_q5_0(n: usize, k: usize, bytes: &[u8]) -> Result<Self, String> {
        Self::build(n, k, 22, bytes, |blk, q| {
            let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
            let qs = &blk[6..22];
            for j in 0..16 {
                let xh0 = ((qh >> j) << 4) & 0x10;
                let xh1 = (qh >> (j + 12)) & 0x10;
                q[j] = (((qs[j] as u32 & 0x0f) | xh0) as i32 - 16) as i8;
                q[j + 16] = (((qs[j] as u32 >> 4) | xh1) as i32 - 16) as i8;
            }
            u16::from_le_bytes([blk[0], blk[1]])
        })
    }

    pub fn rows(&self) -> usize {
        self.n
    }
    pub fn cols(&self) -> usize {
        self.k
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `data` holds ngroups*stride initialized bytes.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr() as *const u8, self.ngroups * self.stride) }
    }

    /// Dequantize to f32, row-major n x k.
    pub fn dequantize(&self) -> Vec<f32> {
        let (nb, k) = (self.nb, self.k);
        let mut out = vec![0f32; self.n * k];
        let bytes = self.bytes();
        for r in 0..self.n {
            let (g, j) = (r / G, r % G);
            let grp = &bytes[g * self.stride..];
            for b in 0..nb {
                let o = (b * G + j) * 2;
                let d = f16_to_f32(u16::from_le_bytes([grp[o], grp[o + 1]]));
                let w = &grp[wofs(nb) + b * BLK..];
                for i in 0..QK {
                    let q = (w[(i / 4) * 64 + j * 4 + i % 4] ^ 0x80) as i8;
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

    fn matmul_with(&self, x: &[f32], m: usize, y: &mut [f32], kind: Kind, nthreads: usize) {
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
struct SendPtr(*mut f32);
// SAFETY: used only for disjoint writes into a slice that outlives the parallel region.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Quantized activations: q (m x k, i8, plus 4 bytes padding), d (m x nb), corr = -128*sum(q) (m x nb).
struct QX {
    q: Vec<i8>,
    d: Vec<f32>,
    corr: Vec<i32>,
    k: usize,
    nb: usize,
}

impl QX {
    fn empty() -> QX {
        QX { q: Vec::new(), d: Vec::new(), corr: Vec::new(), k: 0, nb: 0 }
    }

    /// `simd`: use the AVX2 quantizer (only passed true for non-scalar kernels, which
    /// `available_kernels` offers only when AVX2 is detected). Same results either way.
    fn fill(&mut self, x: &[f32], m: usize, k: usize, simd: bool) {
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
                    x86::quantize_block_avx2(xb, qb)
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
fn quantize_block(x: &[f32], q: &mut [i8; 32]) -> (f32, i32) {
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

// ---------------------------------------------------------------------------------------------
// Kernel selection

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Scalar = 1,
    #[cfg(target_arch = "x86_64")]
    Avx2 = 2,
    #[cfg(target_arch = "x86_64")]
    AvxVnni = 3,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni = 4,
}

fn available_kernels() -> Vec<Kind> {
    #[allow(unused_mut)]
    let mut v = vec![Kind::Scalar];
    #[cfg(target_arch = "x86_64")]
    {
        let base =
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
        if base {
            v.push(Kind::Avx2);
            if is_x86_feature_detected!("avxvnni") {
                v.push(Kind::AvxVnni);
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
                v.push(Kind::Avx512Vnni);
            }
        }
    }
    v
}

static KERNEL: AtomicU8 = AtomicU8::new(0);

/// Best kernel for this CPU; env WICK_Q8_KERNEL=scalar|avx2|avxvnni|avx512 overrides (if available).
fn kernel() -> Kind {
    match KERNEL.load(Ordering::Relaxed) {
        1 => return Kind::Scalar,
        #[cfg(target_arch = "x86_64")]
        2 => return Kind::Avx2,
        #[cfg(target_arch = "x86_64")]
        3 => return Kind::AvxVnni,
        #[cfg(target_arch = "x86_64")]
        4 => return Kind::Avx512Vnni,
        _ => {}
    }
    let avail = available_kernels();
    let want = std::env::var("WICK_Q8_KERNEL").unwrap_or_default();
    let kind = avail.iter().copied().find(|x| kernel_name_of(*x) == want).unwrap_or(*avail.last().unwrap());
    KERNEL.store(kind as u8, Ordering::Relaxed);
    kind
}

fn kernel_name_of(k: Kind) -> &'static str {
    match k {
        Kind::Scalar => "scalar",
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => "avx2",
        #[cfg(target_arch = "x86_64")]
        Kind::AvxVnni => "avxvnni",
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512Vnni => "avx512",
    }
}

/// Name of the kernel in use ("scalar", "avx2", "avxvnni", "avx512").
pub fn kernel_name() -> &'static str {
    kernel_name_of(kernel())
}

/// Computes groups g0..g1 for all m inputs. Safety: y must be valid for m*n writes, and the
/// CPU must support `kind`'s features (guaranteed since kinds come from `available_kernels`).
unsafe fn run_kernel(kind: Kind, w: &Q8Matrix, g0: usize, g1: usize, qx: &QX, m: usize, y: *mut f32) {
    let mut out = [0f32; G];
    for g in g0..g1 {
        let grp = w.bytes().as_ptr().add(g * w.stride);
        for i in 0..m {
            match kind {
                Kind::Scalar => group_scalar(w.nb, grp, qx, i, &mut out),
                #[cfg(target_arch = "x86_64")]
                Kind::Avx2 => x86::group_avx2(w.nb, grp, qx, i, &mut out),
                #[cfg(target_arch = "x86_64")]
                Kind::AvxVnni => x86::group_avxvnni(w.nb, grp, qx, i, &mut out),
                #[cfg(target_arch = "x86_64")]
                Kind::Avx512Vnni => x86::group_avx512(w.nb, grp, qx, i, &mut out),
            }
            let rows = G.min(w.n - g * G);
            std::ptr::copy_nonoverlapping(out.as_ptr(), y.add(i * w.n + g * G), rows);
        }
    }
}

/// Safety: grp points at a full group of the matrix with `nb` blocks.
unsafe fn group_scalar(nb: usize, grp: *const u8, qx: &QX, i: usize, out: &mut [f32; G]) {
    let sc = std::slice::from_raw_parts(grp, nb * G * 2);
    let ws = std::slice::from_raw_parts(grp.add(wofs(nb)), nb * BLK);
    let xq = &qx.q[i * qx.k..(i + 1) * qx.k];
    let mut acc = [0f32; G];
    for b in 0..nb {
        let dx = qx.d[i * qx.nb + b];
        for j in 0..G {
            let mut s = 0i32;
            for t in 0..8 {
                for c in 0..4 {
                    s += ((ws[b * BLK + t * 64 + j * 4 + c] ^ 0x80) as i8 as i32) * xq[b * QK + t * 4 + c] as i32;
                }
            }
            let dw = f16_to_f32(u16::from_le_bytes([sc[(b * G + j) * 2], sc[(b * G + j) * 2 + 1]]));
            acc[j] += s as f32 * (dw * dx);
        }
    }
    *out = acc;
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BLK, G, QK, QX};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn xb(qx: &QX, i: usize, b: usize, t: usize) -> i32 {
        // 4 activation bytes; q has 4 bytes of tail padding, reads stay in bounds.
        (qx.q.as_ptr().add(i * qx.k + b * QK + t * 4) as *const i32).read_unaligned()
    }

    /// Same results as `super::quantize_block` (round-half-even of x * (1/d), same d).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantize_block_avx2(x: &[f32], q: &mut [i8; 32]) -> (f32, i32) {
        assert!(x.len() >= QK);
        let p = x.as_ptr();
        let v = [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))];
        let sign = _mm256_set1_ps(-0.0);
        let mut mx = _mm256_andnot_ps(sign, v[0]);
        for vi in &v[1..] {
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, *vi));
        }
        let m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m1 = _mm_max_ss(m2, _mm_movehdup_ps(m2));
        let amax = _mm_cvtss_f32(m1);
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        const R: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let i: [__m256i; 4] =
            core::array::from_fn(|j| _mm256_cvtps_epi32(_mm256_round_ps::<R>(_mm256_mul_ps(v[j], id))));
        let s = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        let sum = _mm_cvtsi128_si32(s2) + _mm_extract_epi32(s2, 1);
        // packs works within 128-bit lanes: fix the order with a permute.
        let a = _mm256_packs_epi32(i[0], i[1]); // lanes: [0..4,8..12 | 4..8,12..16]
        let b = _mm256_packs_epi32(i[2], i[3]);
        let c = _mm256_packs_epi16(a, b);
        let c = _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, c);
        (d, sum)
    }

    #[target_feature(enable = "avx512f,avx512vnni,avx512bw,f16c,fma")]
    pub(super) unsafe fn group_avx512(nb: usize, grp: *const u8, qx: &QX, i: usize, out: &mut [f32; G]) {
        let sc = grp as *const __m256i;
        let ws = grp.add(super::wofs(nb));
        let (dx, corr) = (qx.d.as_ptr().add(i * qx.nb), qx.corr.as_ptr().add(i * qx.nb));
        let mut sum0 = _mm512_setzero_ps();
        let mut sum1 = _mm512_setzero_ps();
        let mut b = 0;
        while b + 2 <= nb {
            let w0 = ws.add(b * BLK);
            let w1 = w0.add(BLK);
            let mut a0 = _mm512_set1_epi32(*corr.add(b));
            let mut a1 = _mm512_set1_epi32(*corr.add(b + 1));
            for t in 0..17 {
                // prefetch never faults, even past the end of the buffer
                _mm_prefetch::<_MM_HINT_T0>(w0.add(super::PF_DIST + t * 64) as *const i8);
            }
            for t in 0..8 {
                let v0 = _mm512_loadu_si512(w0.add(t * 64) as *const _);
                let v1 = _mm512_loadu_si512(w1.add(t * 64) as *const _);
                a0 = _mm512_dpbusd_epi32(a0, v0, _mm512_set1_epi32(xb(qx, i, b, t)));
                a1 = _mm512_dpbusd_epi32(a1, v1, _mm512_set1_epi32(xb(qx, i, b + 1, t)));
            }
            let s0 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256(sc.add(b))), _mm512_set1_ps(*dx.add(b)));
            let s1 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256(sc.add(b + 1))), _mm512_set1_ps(*dx.add(b + 1)));
            sum0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0), s0, sum0);
            sum1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a1), s1, sum1);
            b += 2;
        }
        if b < nb {
            let w0 = ws.add(b * BLK);
            let mut a0 = _mm512_set1_epi32(*corr.add(b));
            for t in 0..8 {
                let v0 = _mm512_loadu_si512(w0.add(t * 64) as *const _);
                a0 = _mm512_dpbusd_epi32(a0, v0, _mm512_set1_epi32(xb(qx, i, b, t)));
            }
            let s0 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256(sc.add(b))), _mm512_set1_ps(*dx.add(b)));
            sum0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0), s0, sum0);
        }
        _mm512_storeu_ps(out.as_mut_ptr(), _mm512_add_ps(sum0, sum1));
    }

    /// 256-bit: the group's 16 rows as two halves of 8 (lo/hi 32 bytes of each 64-byte chunk).
    #[inline(always)]
    unsafe fn group256<F: Fn(__m256i, __m256i, __m256i) -> __m256i>(
        nb: usize,
        grp: *const u8,
        qx: &QX,
        i: usize,
        out: &mut [f32; G],
        init: bool,
        dot: F,
    ) {
        let sc = grp as *const __m128i;
        let ws = grp.add(super::wofs(nb));
        let (dx, corr) = (qx.d.as_ptr().add(i * qx.nb), qx.corr.as_ptr().add(i * qx.nb));
        let mut sum0 = _mm256_setzero_ps();
        let mut sum1 = _mm256_setzero_ps();
        for b in 0..nb {
            let w0 = ws.add(b * BLK);
            for t in 0..9 {
                _mm_prefetch::<_MM_HINT_T0>(w0.add(super::PF_DIST + t * 64) as *const i8);
            }
            let c = if init { _mm256_set1_epi32(*corr.add(b)) } else { _mm256_setzero_si256() };
            let (mut a0, mut a1) = (c, c);
            for t in 0..8 {
                let x = _mm256_set1_epi32(xb(qx, i, b, t));
                a0 = dot(a0, _mm256_loadu_si256(w0.add(t * 64) as *const _), x);
                a1 = dot(a1, _mm256_loadu_si256(w0.add(t * 64 + 32) as *const _), x);
            }
            let d = _mm256_set1_ps(*dx.add(b));
            let s0 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(sc.add(2 * b))), d);
            let s1 = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(sc.add(2 * b + 1))), d);
            sum0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a0), s0, sum0);
            sum1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a1), s1, sum1);
        }
        _mm256_storeu_ps(out.as_mut_ptr(), sum0);
        _mm256_storeu_ps(out.as_mut_ptr().add(8), sum1);
    }

    #[target_feature(enable = "avx2,avxvnni,f16c,fma")]
    pub(super) unsafe fn group_avxvnni(nb: usize, grp: *const u8, qx: &QX, i: usize, out: &mut [f32; G]) {
        group256(nb, grp, qx, i, out, true, |a, w, x| _mm256_dpbusd_avx_epi32(a, w, x))
    }

    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn group_avx2(nb: usize, grp: *const u8, qx: &QX, i: usize, out: &mut [f32; G]) {
        // No VNNI: undo the bias, then the sign trick (|w| as u8) x (x * sign(w) as i8) with maddubs;
        // pair sums are at most 2*128*127 < 32768, so no i16 saturation.
        let bias = _mm256_set1_epi8(-128);
        let ones = _mm256_set1_epi16(1);
        group256(nb, grp, qx, i, out, false, |a, wu, x| {
            let w = _mm256_xor_si256(wu, bias);
            let p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
            _mm256_add_epi32(a, _mm256_madd_epi16(p, ones))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Threading: a small persistent pool. The caller publishes a job (a borrowed closure) under a
// new generation; workers join it by CAS on `state` while it is open, then claim chunks from a
// shared counter. The caller does chunks too, then waits until no worker is inside the job and
// closes it with a CAS (only possible while the active count is 0), so no worker can touch the
// borrowed closure after `run_parallel` returns. Workers that wake late find the job closed.

static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets the number of threads used by `matmul` (including the calling thread).
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// Threads used by `matmul`: set_threads, else env WICK_THREADS, else available_parallelism.
pub fn threads() -> usize {
    let t = THREADS.load(Ordering::Relaxed);
    if t != 0 {
        return t;
    }
    let t = std::env::var("WICK_THREADS").ok().and_then(|s| s.parse::<usize>().ok()).filter(|&t| t > 0);
    let t = t.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let _ = THREADS.compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed);
    THREADS.load(Ordering::Relaxed)
}

const CLOSED: u64 = 1 << 31;
const GEN_SHIFT: u32 = 32;
const SPIN_NS: u128 = 80_000; // idle workers spin this long before blocking
const YIELD_NS: u128 = 20_000; // ... yielding between checks after this

type Job = dyn Fn() + Sync;

struct Pool {
    state: AtomicU64,            // gen << 32 | closed bit | active count
    want: AtomicUsize,           // workers with id < want may join the current job
    job: UnsafeCell<*const Job>, // written only while closed (no joined worker), by the lock holder
    sleepers: AtomicUsize,
    mutex: Mutex<()>,
    cv: Condvar,
    call: Mutex<usize>, // serializes callers; holds the number of spawned workers
}
// SAFETY: `job` is written only by the holder of `call` while the job is closed and no worker is
// active; workers read it only after joining (CAS Acquire on state, which follows the Release store
// that opened the job). All other fields are Sync.
unsafe impl Sync for Pool {}
// SAFETY: as above; the raw job pointer is just data guarded by the protocol.
unsafe impl Send for Pool {}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: AtomicU64::new(CLOSED),
        want: AtomicUsize::new(0),
        job: UnsafeCell::new(std::ptr::null::<fn()>() as *const Job),
        sleepers: AtomicUsize::new(0),
        mutex: Mutex::new(()),
        cv: Condvar::new(),
        call: Mutex::new(0),
    })
}

fn worker(id: usize, mut last_gen: u64) {
    let p = pool();
    loop {
        // Wait for a new generation: spin briefly, then block.
        let start = std::time::Instant::now();
        let mut spins = 0u32;
        let mut s = p.state.load(Ordering::Acquire);
        while s >> GEN_SHIFT == last_gen {
            std::hint::spin_loop();
            spins += 1;
            if !spins.is_multiple_of(64) {
                continue;
            }
            let el = start.elapsed().as_nanos();
            if el > YIELD_NS {
                std::thread::yield_now(); // let others run if this core is shared
            }
            if el > SPIN_NS {
                let mut guard = p.mutex.lock().unwrap();
                p.sleepers.fetch_add(1, Ordering::SeqCst);
                while p.state.load(Ordering::SeqCst) >> GEN_SHIFT == last_gen {
                    guard = p.cv.wait(guard).unwrap();
                }
                p.sleepers.fetch_sub(1, Ordering::SeqCst);
                drop(guard);
            }
            s = p.state.load(Ordering::Acquire);
        }
        last_gen = s >> GEN_SHIFT;
        if id >= p.want.load(Ordering::Relaxed) {
            continue;
        }
        // Join if still open and of this generation.
        while s & CLOSED == 0 && s >> GEN_SHIFT == last_gen {
            match p.state.compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    // Leave the job even if it panics (the caller waits for active == 0).
                    struct Leave(&'static Pool);
                    impl Drop for Leave {
                        fn drop(&mut self) {
                            self.0.state.fetch_sub(1, Ordering::Release);
                        }
                    }
                    let _leave = Leave(p);
                    // SAFETY: we are counted active, so the caller cannot close the job nor
                    // return; the closure and everything it borrows are alive.
                    unsafe { (**p.job.get())() };
                    break;
                }
                Err(cur) => s = cur,
            }
        }
    }
}

/// Runs `f(c)` for every c in 0..nchunks on up to `nthreads` threads (caller included).
fn run_parallel(nchunks: usize, nthreads: usize, f: &(dyn Fn(usize) + Sync)) {
    let next = AtomicUsize::new(0);
    let job = || loop {
        let c = next.fetch_add(1, Ordering::Relaxed);
        if c >= nchunks {
            break;
        }
        f(c);
    };
    if nthreads <= 1 || nchunks <= 1 {
        return job();
    }
    let p = pool();
    let mut spawned = match p.call.try_lock() {
        Ok(g) => g,
        // poisoned only by a panic in an earlier job; the protocol state is still consistent
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return job(), // pool busy: run inline
    };
    let gen = p.state.load(Ordering::Relaxed) >> GEN_SHIFT;
    while *spawned < nthreads - 1 {
        let id = *spawned;
        std::thread::Builder::new()
            .name(format!("q8-worker-{id}"))
            .spawn(move || worker(id, gen))
            .expect("spawn q8 worker");
        *spawned += 1;
    }
    let job_ref: *const (dyn Fn() + Sync + '_) = &job;
    // SAFETY: the job is closed and no worker is active (we hold `call`, and the previous caller
    // closed it with active == 0), so nobody reads `job` now. The lifetime is erased; the pointer
    // is only dereferenced by workers that joined, and we wait for them below before returning.
    unsafe { *p.job.get() = std::mem::transmute::<*const (dyn Fn() + Sync + '_), *const Job>(job_ref) };
    p.want.store(nthreads - 1, Ordering::Relaxed);
    p.state.store(((gen + 1) & 0xffff_ffff) << GEN_SHIFT, Ordering::SeqCst);
    if p.sleepers.load(Ordering::SeqCst) > 0 {
        let _g = p.mutex.lock().unwrap();
        p.cv.notify_all();
    }
    // Close in a guard, so that even if `job` unwinds we do not return (and free the closure)
    // while a worker is inside it.
    struct Close(&'static Pool);
    impl Drop for Close {
        fn drop(&mut self) {
            let p = self.0;
            let mut spins = 0u32;
            let mut start = None;
            loop {
                let s = p.state.load(Ordering::Acquire);
                if s & (CLOSED - 1) == 0
                    && p.state.compare_exchange(s, s | CLOSED, Ordering::AcqRel, Ordering::Acquire).is_ok()
                {
                    break;
                }
                spins += 1;
                std::hint::spin_loop();
                if spins.is_multiple_of(64)
                    && start.get_or_insert_with(std::time::Instant::now).elapsed().as_nanos() > YIELD_NS
                {
                    std::thread::yield_now(); // a worker was preempted: give it our core if shared
                }
            }
        }
    }
    let close = Close(p);
    job();
    drop(close);
    drop(spawned);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn f(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    fn f32_to_f16_bits(x: f32) -> u16 {
        // test helper: round via exhaustive nearest search is too slow; use simple truncation of a normal value
        let b = x.to_bits();
        let sign = ((b >> 16) & 0x8000) as u16;
        let e = ((b >> 23) & 0xff) as i32 - 127 + 15;
        assert!(e > 0 && e < 31);
        sign | ((e as u16) << 10) | ((b >> 13) & 0x3ff) as u16
    }

    /// Random GGUF Q8_0 bytes (weights in -128..=127, including -128).
    fn rand_q8(n: usize, k: usize, rng: &mut Rng) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..n * k / 32 {
            let d = 0.001 + rng.f().abs() * 0.02;
            v.extend_from_slice(&f32_to_f16_bits(d).to_le_bytes());
            for _ in 0..32 {
                v.push(rng.next() as u8);
            }
        }
        v
    }

    fn ref_deq_q8(n: usize, k: usize, bytes: &[u8]) -> Vec<f32> {
        let mut out = Vec::with_capacity(n * k);
        for blk in bytes.chunks(34) {
            let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
            out.extend(blk[2..].iter().map(|&q| d * q as i8 as f32));
        }
        out
    }

    /// f64 reference of the quantized math: same activation quantization, exact integer dots.
    fn reference(w: &[f32], n: usize, k: usize, x: &[f32], m: usize) -> (Vec<f64>, Vec<f64>) {
        let (mut y, mut mag) = (vec![0f64; m * n], vec![0f64; m * n]);
        for i in 0..m {
            let mut q = [0i8; 32];
            for b in 0..k / 32 {
                let (dx, _) = quantize_block(&x[i * k + b * 32..i * k + b * 32 + 32], &mut q);
                for r in 0..n {
                    let t: f64 = (0..32).map(|c| w[r * k + b * 32 + c] as f64 * q[c] as f64).sum::<f64>() * dx as f64;
                    y[i * n + r] += t;
                    mag[i * n + r] += t.abs();
                }
            }
        }
        (y, mag)
    }

    #[test]
    fn f16_conversion_exact() {
        for h in 0..=u16::MAX {
            let a = f16_to_f32(h);
            let b = half::f16::from_bits(h).to_f32();
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{h:#x}");
        }
    }

    #[test]
    fn matmul_matches_reference_all_kernels() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let shapes = [(1, 32), (5, 64), (896, 896), (128, 896), (4864, 896), (37, 96), (17, 4864)];
        for &(n, k) in &shapes {
            let bytes = rand_q8(n, k, &mut rng);
            let w = Q8Matrix::from_q8_0(n, k, &bytes).unwrap();
            assert_eq!((w.rows(), w.cols()), (n, k));
            let deq = ref_deq_q8(n, k, &bytes);
            assert_eq!(w.dequantize(), deq, "dequantize exact");
            for &m in &[1usize, 2, 3, 7, 16] {
                let mut x: Vec<f32> = (0..m * k).map(|_| rng.f() * 3.0).collect();
                if k >= 64 {
                    x[32..64].iter_mut().for_each(|v| *v = 0.0); // an all-zero block
                }
                let (yr, mag) = reference(&deq, n, k, &x, m);
                for kind in available_kernels() {
                    for nt in [1, 2, 3] {
                        let mut y = vec![f32::NAN; m * n];
                        w.matmul_with(&x, m, &mut y, kind, nt);
                        for idx in 0..m * n {
                            let err = (y[idx] as f64 - yr[idx]).abs();
                            assert!(
                                err <= 1e-4 * mag[idx].max(1e-6),
                                "{kind:?} nt={nt} ({n},{k}) m={m} idx={idx}: {} vs {}",
                                y[idx],
                                yr[idx]
                            );
                        }
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_quantizer_matches_scalar() {
        if !is_x86_feature_detected!("avx2") || !is_x86_feature_detected!("fma") {
            return;
        }
        let mut rng = Rng(99);
        for it in 0..20000 {
            let mut x: Vec<f32> = (0..32).map(|_| rng.f() * 10.0).collect();
            if it % 3 == 0 {
                // exact ties: amax 127 so x*id is x; half-integers
                x = (0..32).map(|i| (i as f32 - 16.0) + 0.5).collect();
                x[0] = 127.0;
            }
            if it % 7 == 0 {
                x.iter_mut().for_each(|v| *v = 0.0);
            }
            let (mut a, mut b) = ([0i8; 32], [0i8; 32]);
            let ra = quantize_block(&x, &mut a);
            let rb = unsafe { x86::quantize_block_avx2(&x, &mut b) };
            assert_eq!((ra.0.to_bits(), ra.1, a), (rb.0.to_bits(), rb.1, b));
        }
    }

    #[test]
    fn q5_0_exact() {
        let mut rng = Rng(12345);
        let (n, k) = (19, 96);
        let mut bytes = Vec::new();
        for _ in 0..n * k / 32 {
            bytes.extend_from_slice(&f32_to_f16_bits(0.01 + rng.f().abs() * 0.1).to_le_bytes());
            for _ in 0..20 {
                bytes.push(rng.next() as u8);
            }
        }
        // Independent Q5_0 dequantization (ggml dequantize_row_q5_0).
        let mut expect = Vec::new();
        for blk in bytes.chunks(22) {
            let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
            let qh = u32::from_le_bytes(blk[2..6].try_into().unwrap());
            let mut vals = [0f32; 32];
            for j in 0..16 {
                let xh0 = ((qh >> j) << 4) & 0x10;
                let xh1 = (qh >> (j + 12)) & 0x10;
                vals[j] = (((blk[6 + j] as u32 & 0x0f) | xh0) as i32 - 16) as f32 * d;
                vals[j + 16] = (((blk[6 + j] as u32 >> 4) | xh1) as i32 - 16) as f32 * d;
            }
            expect.extend_from_slice(&vals);
        }
        let w = Q8Matrix::from_q5_0(n, k, &bytes).unwrap();
        assert_eq!(w.dequantize(), expect);
        assert!(Q8Matrix::from_q5_0(n, k, &bytes[1..]).is_err());
        assert!(Q8Matrix::from_q8_0(1, 48, &[0u8; 51]).is_err());
        assert!(Q8Matrix::from_q8_0(2, 32, &[0u8; 34]).is_err());
    }

    #[test]
    fn pool_wakes_blocked_workers() {
        let mut rng = Rng(4242);
        let (n, k) = (1000, 128);
        let w = Q8Matrix::from_q8_0(n, k, &rand_q8(n, k, &mut rng)).unwrap();
        let x: Vec<f32> = (0..k).map(|_| rng.f()).collect();
        let mut y0 = vec![0f32; n];
        w.matmul_with(&x, 1, &mut y0, Kind::Scalar, 1);
        for it in 0..40 {
            let mut y = vec![f32::NAN; n];
            w.matmul_with(&x, 1, &mut y, kernel(), 1 + it % 3);
            for (a, b) in y.iter().zip(&y0) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()));
            }
            // alternate between spinning and blocked (condvar) workers
            std::thread::sleep(std::time::Duration::from_micros(if it % 2 == 0 { 10 } else { 300 }));
        }
    }

    #[test]
    fn concurrent_callers() {
        let mut rng = Rng(777);
        let (n, k) = (300, 256);
        let bytes = rand_q8(n, k, &mut rng);
        let w = Q8Matrix::from_q8_0(n, k, &bytes).unwrap();
        let x: Vec<f32> = (0..k).map(|_| rng.f()).collect();
        let mut y0 = vec![0f32; n];
        w.matmul_with(&x, 1, &mut y0, Kind::Scalar, 1);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..300 {
                        let mut y = vec![0f32; n];
                        w.matmul_with(&x, 1, &mut y, kernel(), 2);
                        for (a, b) in y.iter().zip(&y0) {
                            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()));
                        }
                    }
                });
            }
        });
    }
}
