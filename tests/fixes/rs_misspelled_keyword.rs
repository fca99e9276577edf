fn largest(values: &[i32]) -> Option<i32> {
    let mut best = None;
    fro v in values {
        if best.map_or(true, |b| *v > b) {
            best = Some(*v);
        }
    }
    best
}
