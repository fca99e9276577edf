//! Fused causal attention for one sequence on the CPU.
//!
//! The scores are computed a tile of keys at a time and folded into the
//! output with an online softmax (running maximum and sum per query row, as
//! in FlashAttention), so neither the t x L score matrix nor a mask is ever
//! built: memory is a few tiles per thread whatever the context length, and
//! the work is the causal triangle only.
//!
//! Work is split into units of one KV head and a block of queries; a unit
//! holds the rows of every query head of that KV head's group (grouped-query
//! attention: they share the keys), so each transposed key tile is used by
//! `group x BQ` rows while it is in L1. Inner loops have fixed lengths, are
//! compiled for AVX-512 or AVX2+FMA when the CPU has them (chosen at run
//! time), and use a polynomial `exp` that vectorizes.

use super::pool::{run_parallel, threads};
use super::q8::SendPtr;

/// Keys per tile: a transposed tile of head_dim 64 is 16 KB.
pub(crate) const BK: usize = 64;
/// Queries per unit of work.
const BQ: usize = 16;

/// The shape of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// New queries.
    pub t: usize,
    /// Cached positions before them: query `i` sees keys `0..=pos + i`.
    pub pos: usize,
    /// Rows allocated per KV head in `k` and `v` (at least `pos + t`).
    pub stride: usize,
}

/// `out[i, h, :] = softmax(scale * q[h, i, :] . k[h / group, ..=pos+i, :]) v[..]`.
///
/// Layouts: `q` is `[n_head, t, d]`; `v` is `[n_kv_head, stride, d]`; `k`
/// holds each KV head's keys in tiles of [`BK`] positions, each tile
/// transposed (`[c][j % BK]`, see [`store_key`]), the layout the kernel
/// reads, so no unit transposes keys again; the first `pos + t` positions
/// of each head are filled. `out` is `[t, n_head, d]` (the layout the
/// output projection reads).
pub fn causal(q: &[f32], k: &[f32], v: &[f32], s: Shape, scale: f32, out: &mut [f32]) {
    causal_with(simd(), q, k, v, s, scale, out)
}

pub(super) fn causal_with(kind: Simd, q: &[f32], k: &[f32], v: &[f32], s: Shape, scale: f32, out: &mut [f32]) {
    let d = s.head_dim;
    assert!(s.n_kv_head > 0 && s.n_head.is_multiple_of(s.n_kv_head) && d > 0 && s.t > 0, "attention shape {s:?}");
    assert!(s.stride >= s.pos + s.t, "attention cache stride {s:?}");
    assert!(q.len() >= s.n_head * s.t * d && out.len() >= s.t * s.n_head * d, "attention buffers {s:?}");
    assert!(
        k.len() >= s.n_kv_head * key_head_len(s.stride, d) && v.len() >= s.n_kv_head * s.stride * d,
        "attention cache {s:?}"
    );
    let blocks = s.t.div_ceil(BQ);
    let units = s.n_kv_head * blocks;
    let call = Call { q, k, v, s, scale, out: SendPtr(out.as_mut_ptr()) };
    let work = |u: usize| {
        let (h, b) = (u / blocks, u % blocks);
        let i0 = b * BQ;
        let i1 = (i0 + BQ).min(s.t);
        // SAFETY: unit (h, b) writes only rows i0..i1 of the query heads of
        // KV head h, disjoint from every other unit's; `out` outlives the
        // parallel region (run_parallel returns when all units are done).
        unsafe { unit(kind, &call, Unit { h, i0, i1 }) }
    };
    // Decode (one query) has as many units as KV heads: spread them anyway.
    run_parallel(units, threads().min(units), &work);
}

/// Floats one KV head takes in the tiled key layout for `stride` positions.
pub(crate) fn key_head_len(stride: usize, d: usize) -> usize {
    stride.div_ceil(BK) * BK * d
}

/// Writes the key of position `j` of KV head `h` (`row`, `d` values) into
/// `k`, the tiled layout of [`causal`] for `stride` positions per head.
pub(crate) fn store_key(k: &mut [f32], stride: usize, h: usize, j: usize, row: &[f32]) {
    let d = row.len();
    let at = h * key_head_len(stride, d) + (j / BK) * BK * d + j % BK;
    for (c, &x) in row.iter().enumerate() {
        k[at + c * BK] = x;
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Simd {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// What this CPU runs, for tests: each of them.
#[cfg(test)]
pub(super) fn available() -> Vec<Simd> {
    #[allow(unused_mut)]
    let mut v = vec![Simd::Scalar];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            v.push(Simd::Avx2);
        }
        if is_x86_feature_detected!("avx512f") {
            v.push(Simd::Avx512);
        }
    }
    v
}

fn simd() -> Simd {
    static KIND: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
    *KIND.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var("WICK_Q8_KERNEL").as_deref() == Ok("scalar") {
                return Simd::Scalar;
            }
            if is_x86_feature_detected!("avx512f") {
                return Simd::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Simd::Avx2;
            }
        }
        Simd::Scalar
    })
}

/// One call's inputs, shared by all its units.
#[derive(Clone, Copy)]
struct Call<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    s: Shape,
    scale: f32,
    out: SendPtr,
}

/// One unit of work: KV head `h`, queries `i0..i1`.
#[derive(Clone, Copy)]
struct Unit {
    h: usize,
    i0: usize,
    i1: usize,
}

unsafe fn unit(kind: Simd, c: &Call, u: Unit) {
    match kind {
        Simd::Scalar => unit_body::<1, 64, false>(c, u),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unit_avx2(c, u),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unit_avx512(c, u),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn unit_avx2(c: &Call, u: Unit) {
    unit_body::<2, 32, true>(c, u)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn unit_avx512(c: &Call, u: Unit) {
    unit_body::<2, 64, true>(c, u)
}

/// One KV head `h`, queries `i0..i1` of every query head in its group.
/// Inlined into the wrappers above, so it is compiled for their features;
/// A register block is `R` query rows by `W` lanes (keys for the scores,
/// head dimensions for the values): each key or value row loaded is used by
/// `R` rows, and the `R x W` accumulators fill about half the vector
/// registers (AVX-512: 32 of 16 lanes; AVX2: 16 of 8). `FMA`: fused
/// multiply-adds (the SIMD wrappers, compiled with the feature).
#[inline(always)]
unsafe fn unit_body<const R: usize, const W: usize, const FMA: bool>(c: &Call, u: Unit) {
    let Call { q, k, v, s, scale, out } = *c;
    let Unit { h, i0, i1 } = u;
    let d = s.head_dim;
    let group = s.n_head / s.n_kv_head;
    let nq = i1 - i0;
    let rows = group * nq;
    // Rows padded to a whole register block and the head size to whole
    // blocks of W; padding is zero and never written out.
    let rows_p = rows.div_ceil(R) * R;
    let dp = d.div_ceil(W) * W;
    // Per row: the scaled query, the running maximum and sum, the output.
    let mut qs = vec![0f32; rows_p * dp];
    let mut m = vec![f32::NEG_INFINITY; rows_p];
    let mut l = vec![0f32; rows_p];
    let mut o = vec![0f32; rows_p * dp];
    // The position each row queries from (padding rows: the block's first).
    let mut at = vec![s.pos + i0; rows_p];
    for g in 0..group {
        let head = h * group + g;
        for ii in 0..nq {
            let r = g * nq + ii;
            at[r] = s.pos + i0 + ii;
            let src = &q[(head * s.t + i0 + ii) * d..][..d];
            for (a, b) in qs[r * dp..][..d].iter_mut().zip(src) {
                *a = b * scale;
            }
        }
    }
    let kh = &k[h * key_head_len(s.stride, d)..][..key_head_len(s.stride, d)];
    let vh = &v[h * s.stride * d..][..s.stride * d];
    // Keys this block needs: up to the last query's own position.
    let keys = s.pos + i1;
    // Values are read in place when a row is whole blocks of W; else a
    // tile is copied, padded to dp columns.
    let mut vpad = if dp == d { Vec::new() } else { vec![0f32; BK * dp] };
    let mut sc = [[0f32; BK]; R];
    for j0 in (0..keys).step_by(BK) {
        let n = BK.min(keys - j0);
        // The key tile, kt[c * BK + jj] = k[j0 + jj][c]: as stored. Lanes
        // past `n` hold other positions or zeros; their scores are masked.
        let kt = &kh[(j0 / BK) * BK * d..][..BK * d];
        let vt: &[f32] = if dp == d {
            &vh[j0 * d..][..n * d]
        } else {
            for jj in 0..n {
                vpad[jj * dp..][..d].copy_from_slice(&vh[(j0 + jj) * d..][..d]);
            }
            &vpad
        };
        for r0 in (0..rows_p).step_by(R) {
            // Keys visible to each row of the block in this tile.
            let nv: [usize; R] = std::array::from_fn(|x| (at[r0 + x] + 1).saturating_sub(j0).min(n));
            let most = nv.iter().copied().max().unwrap_or(0);
            if most == 0 {
                continue;
            }
            // Scores: sc[x] = q[r0 + x] . kt, W keys at a time.
            for c0 in (0..BK).step_by(W) {
                let mut acc = [[0f32; W]; R];
                for c in 0..d {
                    let kc: &[f32; W] = (&kt[c * BK + c0..c * BK + c0 + W]).try_into().unwrap();
                    for x in 0..R {
                        let qv = qs[(r0 + x) * dp + c];
                        for j in 0..W {
                            acc[x][j] = madd::<FMA>(qv, kc[j], acc[x][j]);
                        }
                    }
                }
                for x in 0..R {
                    sc[x][c0..c0 + W].copy_from_slice(&acc[x]);
                }
            }
            // The online softmax, row by row; p overwrites the scores.
            let mut corr = [1f32; R];
            for x in 0..R {
                let r = r0 + x;
                if nv[x] == 0 {
                    sc[x].fill(0.0);
                    continue;
                }
                // Keys the row may not see count as -inf: every loop below
                // then has a fixed length and vectorizes (exp(-inf) is 0).
                sc[x][nv[x]..].fill(f32::NEG_INFINITY);
                let mut top = [m[r]; 8];
                for ys in sc[x].chunks_exact(8) {
                    for (t, &y) in top.iter_mut().zip(ys) {
                        *t = if y > *t { y } else { *t };
                    }
                }
                let mx = top.iter().fold(m[r], |a, &b| if b > a { b } else { a });
                corr[x] = exp(m[r] - mx);
                m[r] = mx;
                for y in sc[x].iter_mut() {
                    *y = exp(*y - mx);
                }
                let mut part = [0f32; 8];
                for ys in sc[x].chunks_exact(8) {
                    for (p, y) in part.iter_mut().zip(ys) {
                        *p += y;
                    }
                }
                l[r] = l[r] * corr[x] + part.iter().sum::<f32>();
            }
            // o = o * corr + p . v, W columns at a time.
            for c0 in (0..dp).step_by(W) {
                let mut acc = [[0f32; W]; R];
                for x in 0..R {
                    let orow: &[f32; W] = (&o[(r0 + x) * dp + c0..][..W]).try_into().unwrap();
                    for j in 0..W {
                        acc[x][j] = orow[j] * corr[x];
                    }
                }
                for jj in 0..most {
                    let vr: &[f32; W] = (&vt[jj * dp + c0..][..W]).try_into().unwrap();
                    for x in 0..R {
                        let p = sc[x][jj];
                        for j in 0..W {
                            acc[x][j] = madd::<FMA>(p, vr[j], acc[x][j]);
                        }
                    }
                }
                for x in 0..R {
                    o[(r0 + x) * dp + c0..][..W].copy_from_slice(&acc[x]);
                }
            }
        }
    }
    let width = s.n_head * d;
    for g in 0..group {
        let head = h * group + g;
        for ii in 0..nq {
            let r = g * nq + ii;
            let inv = if l[r] > 0.0 { 1.0 / l[r] } else { 0.0 };
            let dst = out.get().add((i0 + ii) * width + head * d);
            for c in 0..d {
                *dst.add(c) = o[r * dp + c] * inv;
            }
        }
    }
}

/// `a * b + c`, fused where the caller is compiled with FMA: Rust never
/// contracts `a * b + c` itself, and without the feature `mul_add` is a
/// library call.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `e^x` to ~2 ulp for the range softmax uses (x <= 0), 0 below -87, in
/// arithmetic only, so loops over it vectorize (std's `exp` is a call).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by the 1.5 * 2^23 trick (no rounding instruction needed).
    const MAGIC: f32 = 12_582_912.0;
    let below = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    let kf = (x * LOG2E + MAGIC) - MAGIC;
    let r = x - kf * LN2_HI - kf * LN2_LO;
    // Cephes' expf polynomial on [-ln2/2, ln2/2].
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_6e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits(((kf as i32 + 127) as u32) << 23);
    if below {
        0.0
    } else {
        y * scale
    }
}
