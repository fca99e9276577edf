//! Which kernel runs: detected once (`WICK_Q8_KERNEL` overrides), and the scalar one.

use super::q8::*;
use std::sync::atomic::{AtomicU8, Ordering};
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Scalar = 1,
    #[cfg(target_arch = "x86_64")]
    Avx2 = 2,
    #[cfg(target_arch = "x86_64")]
    AvxVnni = 3,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni = 4,
}

pub(super) fn available_kernels() -> Vec<Kind> {
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

pub(super) static KERNEL: AtomicU8 = AtomicU8::new(0);

/// Best kernel for this CPU; env WICK_Q8_KERNEL=scalar|avx2|avxvnni|avx512 overrides (if available).
pub(super) fn kernel() -> Kind {
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

pub(super) fn kernel_name_of(k: Kind) -> &'static str {
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
pub(crate) fn kernel_name() -> &'static str {
    kernel_name_of(kernel())
}

/// Computes groups g0..g1 for all m inputs. Safety: y must be valid for m*n writes, and the
/// CPU must support `kind`'s features (guaranteed since kinds come from `available_kernels`).
pub(super) unsafe fn run_kernel(kind: Kind, w: &Q8Matrix, g0: usize, g1: usize, qx: &QX, m: usize, y: *mut f32) {
    // A 5-bit packing is read as it is for one row by the kernel made for
    // it (decode, where reading fewer bytes is the point), else unpacked
    // once per group into this thread's buffer and read by the 8-bit kernels.
    if w.pack == Pack::Q8 || in_place(w.pack, kind, m) {
        return run_groups(kind, w, g0..g1, qx, m, y, |g| w.bytes().as_ptr().add(g * w.stride));
    }
    thread_local! {
        static UNPACKED: std::cell::RefCell<Vec<Line>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    UNPACKED.with(|cell| {
        let mut buf = cell.borrow_mut();
        let len = (wofs(w.nb) + w.nb * BLK).div_ceil(64);
        // Every group is unpacked whole before it is read: no zeroing per call.
        if buf.len() < len {
            buf.resize(len, Line([0u8; 64]));
        }
        let dst = std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, len * 64);
        run_groups(kind, w, g0..g1, qx, m, y, |g| {
            #[cfg(target_arch = "x86_64")]
            if w.pack == Pack::Q5Planes && kind != Kind::Scalar {
                // SAFETY: non-scalar kinds imply AVX2; `dst` holds a whole 8-bit group.
                super::x86::unpack_planes_avx2(w.nb, w.bytes().as_ptr().add(g * w.stride), dst.as_mut_ptr());
                return dst.as_ptr();
            }
            w.unpack_group(g, dst);
            dst.as_ptr()
        })
    })
}

/// Whether `kind` has a kernel that reads the 5-bit `pack` in place for `m` rows.
fn in_place(pack: Pack, kind: Kind, m: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    let yes = m == 1 && matches!((pack, kind), (Pack::Q5Masks, Kind::Avx512Vnni) | (Pack::Q5Planes, Kind::Avx2));
    #[cfg(not(target_arch = "x86_64"))]
    let yes = {
        let _ = (pack, kind, m);
        false
    };
    yes
}

/// Runs `groups` over all m inputs, `group(g)` giving each group's bytes
/// (in the 8-bit layout unless read in place). Safety: as `run_kernel`.
unsafe fn run_groups(
    kind: Kind,
    w: &Q8Matrix,
    groups: std::ops::Range<usize>,
    qx: &QX,
    m: usize,
    y: *mut f32,
    mut group: impl FnMut(usize) -> *const u8,
) {
    let direct = in_place(w.pack, kind, m);
    let mut out = [0f32; G];
    for g in groups {
        let grp = group(g);
        for i in 0..m {
            match kind {
                #[cfg(target_arch = "x86_64")]
                Kind::Avx512Vnni if direct => super::x86::group_avx512_q5(w.nb, grp, qx, i, &mut out),
                #[cfg(target_arch = "x86_64")]
                Kind::Avx2 if direct => super::x86::group_avx2_q5(w.nb, grp, qx, i, &mut out),
                Kind::Scalar => group_scalar(w.nb, grp, qx, i, &mut out),
                #[cfg(target_arch = "x86_64")]
                Kind::Avx2 if w.narrow => super::x86::group_avx2_narrow(w.nb, grp, qx, i, &mut out, m == 1),
                #[cfg(target_arch = "x86_64")]
                Kind::Avx2 => super::x86::group_avx2(w.nb, grp, qx, i, &mut out),
                #[cfg(target_arch = "x86_64")]
                Kind::AvxVnni => super::x86::group_avxvnni(w.nb, grp, qx, i, &mut out),
                #[cfg(target_arch = "x86_64")]
                Kind::Avx512Vnni => super::x86::group_avx512(w.nb, grp, qx, i, &mut out),
            }
            let rows = G.min(w.n - g * G);
            std::ptr::copy_nonoverlapping(out.as_ptr(), y.add(i * w.n + g * G), rows);
        }
    }
}

/// Safety: grp points at a full group of the matrix with `nb` blocks.
pub(super) unsafe fn group_scalar(nb: usize, grp: *const u8, qx: &QX, i: usize, out: &mut [f32; G]) {
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
