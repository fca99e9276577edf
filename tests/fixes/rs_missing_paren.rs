fn clamp(x: f64, lo: f64, hi: f64) -> f64 {
    if x < lo {
        return lo;
    }
    x.min(hi
}
