fn sum_of_squares(values: &[i64]) -> i64 {
    let mut total = 0
    for v in values {
        total += v * v;
    }
    total
}

fn main() {
    println!("{}", sum_of_squares(&[1, 2, 3]));
}
