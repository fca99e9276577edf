use super::q8::*;
use super::select::*;

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

/// `w` (dequantized: `deq`) times `x` (m rows) with every kernel and 1-3
/// threads, against the f64 reference of the quantized math.
fn every_kernel_matches_reference(w: &Q8Matrix, deq: &[f32], x: &[f32], m: usize, what: &str) {
    let (n, k) = (w.rows(), w.cols());
    let (yr, mag) = reference(deq, n, k, x, m);
    for kind in available_kernels() {
        for nt in [1, 2, 3] {
            let mut y = vec![f32::NAN; m * n];
            w.matmul_with(x, m, &mut y, kind, nt);
            for idx in 0..m * n {
                let err = (y[idx] as f64 - yr[idx]).abs();
                assert!(
                    err <= 1e-4 * mag[idx].max(1e-6),
                    "{what} {kind:?} nt={nt} ({n},{k}) m={m} idx={idx}: {} vs {}",
                    y[idx],
                    yr[idx]
                );
            }
        }
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
            every_kernel_matches_reference(&w, &deq, &x, m, "Q8_0");
        }
    }
}

const PACKS: [Pack; 3] = [Pack::Q8, Pack::Q5Masks, Pack::Q5Planes];

/// Random GGUF Q5_0 bytes (every 5-bit value and fifth-bit pattern).
fn rand_q5(n: usize, k: usize, rng: &mut Rng) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..n * k / 32 {
        v.extend_from_slice(&f32_to_f16_bits(0.001 + rng.f().abs() * 0.05).to_le_bytes());
        for _ in 0..20 {
            v.push(rng.next() as u8);
        }
    }
    v
}

/// Narrow matrices (from Q5_0, values in -16..=15) have kernels of their own
/// without VNNI (unsigned bytes, several activation rows at once): every
/// kernel, both packings, odd and even batch sizes against the reference.
#[test]
fn narrow_matmul_matches_reference_all_kernels() {
    let mut rng = Rng(0x5eed_0005);
    for &(n, k) in &[(1, 32), (37, 96), (896, 896), (130, 4864)] {
        let bytes = rand_q5(n, k, &mut rng);
        for pack in PACKS {
            let w = Q8Matrix::from_q5_0_packed(n, k, &bytes, pack).unwrap();
            let deq = w.dequantize();
            for &m in &[1usize, 2, 3, 5, 16] {
                let mut x: Vec<f32> = (0..m * k).map(|_| rng.f() * 3.0).collect();
                if k >= 64 {
                    x[32..64].iter_mut().for_each(|v| *v = 0.0);
                }
                // Extremes: activations quantized to +-127 next to 5-bit extremes.
                x[0] = 40.0;
                x[1] = -40.0;
                every_kernel_matches_reference(&w, &deq, &x, m, &format!("Q5_0, {pack:?}"));
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
        let rb = unsafe { super::x86::quantize_block_avx2(&x, &mut b) };
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
    for pack in PACKS {
        let w = Q8Matrix::from_q5_0_packed(n, k, &bytes, pack).unwrap();
        assert_eq!(w.dequantize(), expect, "{pack:?}");
    }
    // Every packing gives the same products, bit for bit, with every kernel,
    // for one row (read in place where a kernel can) and a batch (unpacked
    // per group).
    let p8 = Q8Matrix::from_q5_0_packed(n, k, &bytes, Pack::Q8).unwrap();
    for pack in [Pack::Q5Masks, Pack::Q5Planes] {
        let p5 = Q8Matrix::from_q5_0_packed(n, k, &bytes, pack).unwrap();
        for m in [1usize, 7] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.f() * 3.0).collect();
            for kind in available_kernels() {
                let (mut y8, mut y5) = (vec![0f32; m * n], vec![0f32; m * n]);
                p8.matmul_with(&x, m, &mut y8, kind, 2);
                p5.matmul_with(&x, m, &mut y5, kind, 2);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y8), bits(&y5), "{pack:?}, {kind:?}, {m} rows");
            }
        }
    }
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

/// Attention the plain way: every score, a max-subtracted softmax, in f64.
fn attention_reference(q: &[f32], k: &[f32], v: &[f32], s: super::attention::Shape, scale: f32) -> Vec<f32> {
    let d = s.head_dim;
    let group = s.n_head / s.n_kv_head;
    let mut out = vec![0f32; s.t * s.n_head * d];
    for head in 0..s.n_head {
        let h = head / group;
        for i in 0..s.t {
            let qr = &q[(head * s.t + i) * d..][..d];
            let n = s.pos + i + 1;
            let scores: Vec<f64> = (0..n)
                .map(|j| {
                    let kr = &k[(h * s.stride + j) * d..][..d];
                    qr.iter().zip(kr).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * scale as f64
                })
                .collect();
            let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|x| (x - mx).exp()).collect();
            let sum: f64 = e.iter().sum();
            for c in 0..d {
                let y: f64 = (0..n).map(|j| e[j] * v[(h * s.stride + j) * d + c] as f64).sum::<f64>() / sum;
                out[(i * s.n_head + head) * d + c] = y as f32;
            }
        }
    }
    out
}

/// Keys stored plainly (`[n_kv_head, stride, d]`) in the kernel's tiles.
fn tiled_keys(k: &[f32], s: super::attention::Shape) -> Vec<f32> {
    use super::attention::{key_head_len, store_key};
    let d = s.head_dim;
    let mut out = vec![f32::NAN; s.n_kv_head * key_head_len(s.stride, d)];
    for h in 0..s.n_kv_head {
        for j in 0..s.stride {
            store_key(&mut out, s.stride, h, j, &k[(h * s.stride + j) * d..][..d]);
        }
    }
    out
}

#[test]
fn fused_attention_matches_the_plain_computation() {
    use super::attention::{available, causal_with, Shape};
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Decode, a prefill chunk after a cache, tiles and blocks not full, one
    // KV head for all, no grouping, an odd head size, a long context.
    let shapes = [
        (14, 2, 64, 1, 0),
        (14, 2, 64, 1, 1535),
        (14, 2, 64, 37, 100),
        (4, 1, 16, 16, 0),
        (3, 3, 24, 65, 63),
        (2, 2, 7, 5, 2),
        (12, 2, 128, 20, 300),
        (2, 1, 64, 300, 1800),
    ];
    for (n_head, n_kv_head, head_dim, t, pos) in shapes {
        let stride = pos + t + 3;
        let s = Shape { n_head, n_kv_head, head_dim, t, pos, stride };
        // Scores of a few units, as in a real model; one large key too.
        let mut gen = |n: usize, amp: f32| (0..n).map(|_| rng.f() * amp).collect::<Vec<f32>>();
        let q = gen(n_head * t * head_dim, 1.0);
        let mut k = gen(n_kv_head * stride * head_dim, 1.0);
        k[head_dim] = 40.0;
        let v = gen(n_kv_head * stride * head_dim, 3.0);
        let scale = 1.0 / (head_dim as f32).sqrt();
        let want = attention_reference(&q, &k, &v, s, scale);
        // Lanes of the last tile past `stride` stay NaN: never read into
        // a result.
        let kt = tiled_keys(&k, s);
        for kind in available() {
            let mut got = vec![f32::NAN; t * n_head * head_dim];
            causal_with(kind, &q, &kt, &v, s, scale, &mut got);
            let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 6e-5, "{kind:?} {s:?}: max abs error {worst}");
        }
    }
}

#[test]
fn the_polynomial_exp_is_close_to_std() {
    let mut worst = 0f32;
    for i in 0..=200_000 {
        let x = -100.0 + i as f32 * 0.0005;
        let (a, b) = (super::attention::exp(x), x.exp());
        let rel = if b > 1e-30 { (a - b).abs() / b } else { (a - b).abs() };
        worst = worst.max(rel);
    }
    assert!(worst < 1e-6, "worst relative error {worst}");
    assert_eq!(super::attention::exp(f32::NEG_INFINITY), 0.0);
}

/// `cargo test --release --lib attention_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn attention_speed() {
    use super::attention::{available, causal_with, Shape};
    let mut rng = Rng(7);
    for (t, pos) in [(256usize, 1280usize), (1, 1536), (256, 3840)] {
        let s = Shape { n_head: 14, n_kv_head: 2, head_dim: 64, t, pos, stride: pos + t };
        let q: Vec<f32> = (0..14 * t * 64).map(|_| rng.f()).collect();
        let v: Vec<f32> = (0..2 * s.stride * 64).map(|_| rng.f()).collect();
        let k = tiled_keys(&v, s);
        let mut out = vec![0f32; t * 14 * 64];
        for kind in available() {
            let n = if t == 1 { 200 } else { 5 };
            let t0 = std::time::Instant::now();
            for _ in 0..n {
                causal_with(kind, &q, &k, &v, s, 0.125, &mut out);
            }
            let dt = t0.elapsed().as_secs_f64() / n as f64;
            let fma = 14.0 * t as f64 * (pos as f64 + t as f64 / 2.0) * 128.0;
            eprintln!("{kind:?} t={t} pos={pos}: {:.2} ms, {:.1} GFMA/s", dt * 1e3, fma / dt / 1e9);
        }
    }
}

#[test]
fn thread_counts_are_clamped_to_the_machine() {
    // The pure rule: `set_threads` also writes the environment, which other
    // tests' threads read.
    let have = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    assert_eq!(crate::engine::clamp_threads(0), 1);
    assert_eq!(crate::engine::clamp_threads(usize::MAX), have);
    assert_eq!(crate::engine::clamp_threads(1), 1);
}
