#[derive(Debug)]
struct Point {
    x: f64
    y: f64,
}

fn origin() -> Point {
    Point { x: 0.0, y: 0.0 }
}
