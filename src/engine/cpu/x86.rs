//! The x86-64 kernels: AVX-512 VNNI, AVX-VNNI and AVX2 group dot products, the AVX2 quantizer.

use super::q8::{wofs, BLK, BLK5, G, PF_DIST, QK, QX};
use std::arch::x86_64::*;

#[inline(always)]
unsafe fn xb(qx: &QX, i: usize, b: usize, t: usize) -> i32 {
    // 4 activation bytes; q has 4 bytes of tail padding, reads stay in bounds.
    (qx.q.as_ptr().add(i * qx.k + b * QK + t * 4) as *const i32).read_unaligned()
}

/// Where a group kernel reads: the group's scales (as `T` vectors) and
/// weights (`grp` is a group of `nb` blocks), and activation row `i`'s
/// block scales and corrections.
#[inline(always)]
unsafe fn group_ptrs<T>(nb: usize, grp: *const u8, qx: &QX, i: usize) -> (*const T, *const u8, *const f32, *const i32) {
    (grp as *const T, grp.add(wofs(nb)), qx.d.as_ptr().add(i * qx.nb), qx.corr.as_ptr().add(i * qx.nb))
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
    let i: [__m256i; 4] = core::array::from_fn(|j| _mm256_cvtps_epi32(_mm256_round_ps::<R>(_mm256_mul_ps(v[j], id))));
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
    let (sc, ws, dx, corr) = group_ptrs::<__m256i>(nb, grp, qx, i);
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
            _mm_prefetch::<_MM_HINT_T0>(w0.add(PF_DIST + t * 64) as *const i8);
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

/// `group_avx512` on the 5-bit packing (see `Q8Matrix::from_q5_0`): each
/// line of nibbles gives two 8-bit chunks, the fifth bits come from masks,
/// and the accumulator starts at `-16 * sum(x)` (the 8-bit correction / 8).
#[target_feature(enable = "avx512f,avx512vnni,avx512bw,f16c,fma")]
pub(super) unsafe fn group_avx512_q5(nb: usize, grp: *const u8, qx: &QX, i: usize, out: &mut [f32; G]) {
    let (sc, ws, dx, corr) = group_ptrs::<__m256i>(nb, grp, qx, i);
    let low = _mm512_set1_epi8(0x0f);
    let fifth = _mm512_set1_epi8(0x10);
    let mut sum0 = _mm512_setzero_ps();
    let mut sum1 = _mm512_setzero_ps();
    for b in 0..nb {
        let w = ws.add(b * BLK5);
        for t in 0..6 {
            _mm_prefetch::<_MM_HINT_T0>(w.add(PF_DIST + t * 64) as *const i8);
        }
        let masks = w.add(256) as *const u64;
        let mut a0 = _mm512_set1_epi32(*corr.add(b) / 8);
        let mut a1 = _mm512_setzero_si512();
        for t in 0..4 {
            let v = _mm512_loadu_si512(w.add(t * 64) as *const _);
            let lo = _mm512_and_si512(v, low);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
            let lo = _mm512_mask_blend_epi8(masks.add(t).read_unaligned(), lo, _mm512_or_si512(lo, fifth));
            let hi = _mm512_mask_blend_epi8(masks.add(t + 4).read_unaligned(), hi, _mm512_or_si512(hi, fifth));
            a0 = _mm512_dpbusd_epi32(a0, lo, _mm512_set1_epi32(xb(qx, i, b, t)));
            a1 = _mm512_dpbusd_epi32(a1, hi, _mm512_set1_epi32(xb(qx, i, b, t + 4)));
        }
        let a = _mm512_add_epi32(a0, a1);
        let s = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256(sc.add(b))), _mm512_set1_ps(*dx.add(b)));
        if b % 2 == 0 {
            sum0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), s, sum0);
        } else {
            sum1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), s, sum1);
        }
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
    let (sc, ws, dx, corr) = group_ptrs::<__m128i>(nb, grp, qx, i);
    let mut sum0 = _mm256_setzero_ps();
    let mut sum1 = _mm256_setzero_ps();
    for b in 0..nb {
        let w0 = ws.add(b * BLK);
        for t in 0..9 {
            _mm_prefetch::<_MM_HINT_T0>(w0.add(PF_DIST + t * 64) as *const i8);
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

/// AVX2 without VNNI, for narrow weights (every value in -16..=15, from
/// Q5_0). `u = q + 16` is in 0..=31, so `maddubs(u, x)` cannot saturate
/// (2 x 31 x 127 < 32768) and four of them add up in i16 (4 x 7874 <
/// 32768): no sign trick, one widening per four steps, half the multiplier
/// work of `group_avx2`. The block's dot starts at `-16 sum(x)`, the 8-bit
/// correction divided by 8 (exact). Measured on Zen 2: 1.43x `group_avx2`;
/// two activation rows per weight load were slower (0.93x).
#[target_feature(enable = "avx2,f16c,fma")]
pub(super) unsafe fn group_avx2_narrow(
    nb: usize,
    grp: *const u8,
    qx: &QX,
    i: usize,
    out: &mut [f32; G],
    prefetch: bool,
) {
    let (sc, ws, dx, corr) = group_ptrs::<__m128i>(nb, grp, qx, i);
    // Stored bytes are q ^ 0x80 = q + 128; minus 112 gives q + 16.
    let shift = _mm256_set1_epi8(112);
    let ones = _mm256_set1_epi16(1);
    let mut sum = [_mm256_setzero_ps(); 2];
    for b in 0..nb {
        let w0 = ws.add(b * BLK);
        if prefetch {
            for t in 0..9 {
                _mm_prefetch::<_MM_HINT_T0>(w0.add(PF_DIST + t * 64) as *const i8);
            }
        }
        let c = _mm256_set1_epi32(*corr.add(b) >> 3);
        let mut a32 = [c, c];
        for half in 0..2 {
            let mut a16 = [_mm256_setzero_si256(); 2];
            for t in half * 4..half * 4 + 4 {
                let x = _mm256_set1_epi32(xb(qx, i, b, t));
                for (h, a) in a16.iter_mut().enumerate() {
                    let w = _mm256_sub_epi8(_mm256_loadu_si256(w0.add(t * 64 + h * 32) as *const _), shift);
                    *a = _mm256_add_epi16(*a, _mm256_maddubs_epi16(w, x));
                }
            }
            for h in 0..2 {
                a32[h] = _mm256_add_epi32(a32[h], _mm256_madd_epi16(a16[h], ones));
            }
        }
        let d = _mm256_set1_ps(*dx.add(b));
        for h in 0..2 {
            let s = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(sc.add(2 * b + h))), d);
            sum[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a32[h]), s, sum[h]);
        }
    }
    _mm256_storeu_ps(out.as_mut_ptr(), sum[0]);
    _mm256_storeu_ps(out.as_mut_ptr().add(8), sum[1]);
}

/// The fifth bits of chunks 0..8 of a 32-lane half block, moved to bit 4
/// of each byte (other bits garbage) from its planes `p`: bit `t` of a byte
/// is chunk `t`'s. Left moves are byte adds (no carry across bytes, and
/// adds issue on more ports than shifts on Zen 2).
#[inline(always)]
unsafe fn fifths(p: __m256i) -> [__m256i; 8] {
    let p2 = _mm256_add_epi8(p, p);
    let p4 = _mm256_add_epi8(p2, p2);
    let p8 = _mm256_add_epi8(p4, p4);
    let p16 = _mm256_add_epi8(p8, p8);
    [p16, p8, p4, p2, p, _mm256_srli_epi16::<1>(p), _mm256_srli_epi16::<2>(p), _mm256_srli_epi16::<3>(p)]
}

/// `u = q + 16` (0..=31) of chunks `t` and `t + 4` of a half block: nibble
/// line `v` and the moved fifth bits.
#[inline(always)]
unsafe fn unpack_pair(v: __m256i, f: &[__m256i; 8], t: usize) -> (__m256i, __m256i) {
    let (low, fifth) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x10));
    let lo = _mm256_or_si256(_mm256_and_si256(v, low), _mm256_and_si256(f[t], fifth));
    let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(v), low), _mm256_and_si256(f[t + 4], fifth));
    (lo, hi)
}

/// `group_avx2_narrow` on the 5-bit planes packing (`Pack::Q5Planes`),
/// read in place: 5/8 of the weight bytes for decode, where memory is the
/// limit. Same integer dots and the same float order as
/// `group_avx2_narrow` on the unpacked group, so the same bits.
#[target_feature(enable = "avx2,f16c,fma")]
pub(super) unsafe fn group_avx2_q5(nb: usize, grp: *const u8, qx: &QX, i: usize, out: &mut [f32; G]) {
    let (sc, ws, dx, corr) = group_ptrs::<__m128i>(nb, grp, qx, i);
    let ones = _mm256_set1_epi16(1);
    let mut sum = [_mm256_setzero_ps(); 2];
    for b in 0..nb {
        let w = ws.add(b * BLK5);
        for t in 0..5 {
            _mm_prefetch::<_MM_HINT_T0>(w.add(PF_DIST + t * 64) as *const i8);
        }
        let x: [__m256i; 8] = core::array::from_fn(|t| _mm256_set1_epi32(xb(qx, i, b, t)));
        let d = _mm256_set1_ps(*dx.add(b));
        for (h, acc) in sum.iter_mut().enumerate() {
            let f = fifths(_mm256_loadu_si256(w.add(256 + h * 32) as *const _));
            // Chunks 0..4 and 4..8 summed apart: four maddubs of at most
            // 2 x 31 x 127 each stay inside i16.
            let mut a16 = [_mm256_setzero_si256(); 2];
            for t in 0..4 {
                let (lo, hi) = unpack_pair(_mm256_loadu_si256(w.add(t * 64 + h * 32) as *const _), &f, t);
                a16[0] = _mm256_add_epi16(a16[0], _mm256_maddubs_epi16(lo, x[t]));
                a16[1] = _mm256_add_epi16(a16[1], _mm256_maddubs_epi16(hi, x[t + 4]));
            }
            let a = _mm256_add_epi32(_mm256_madd_epi16(a16[0], ones), _mm256_madd_epi16(a16[1], ones));
            let a = _mm256_add_epi32(a, _mm256_set1_epi32(*corr.add(b) >> 3));
            let s = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(sc.add(2 * b + h))), d);
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), s, *acc);
        }
    }
    _mm256_storeu_ps(out.as_mut_ptr(), sum[0]);
    _mm256_storeu_ps(out.as_mut_ptr().add(8), sum[1]);
}

/// Writes the 8-bit layout (`q ^ 0x80`, scales copied) of one group in the
/// planes packing: what `Q8Matrix::unpack_group` does, vectorized, for a
/// batch of rows. Safety: `src` is a whole planes group of `nb` blocks,
/// `dst` has room for `wofs(nb) + nb * BLK` bytes.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn unpack_planes_avx2(nb: usize, src: *const u8, dst: *mut u8) {
    let wo = wofs(nb);
    std::ptr::copy_nonoverlapping(src, dst, wo);
    // u - 16 + 128 = u + 112
    let bias = _mm256_set1_epi8(112);
    for b in 0..nb {
        let (w, o) = (src.add(wo + b * BLK5), dst.add(wo + b * BLK));
        for h in 0..2 {
            let f = fifths(_mm256_loadu_si256(w.add(256 + h * 32) as *const _));
            for t in 0..4 {
                let (lo, hi) = unpack_pair(_mm256_loadu_si256(w.add(t * 64 + h * 32) as *const _), &f, t);
                _mm256_storeu_si256(o.add(t * 64 + h * 32) as *mut _, _mm256_add_epi8(lo, bias));
                _mm256_storeu_si256(o.add((t + 4) * 64 + h * 32) as *mut _, _mm256_add_epi8(hi, bias));
            }
        }
    }
}
