fn banner(name: &str) -> String {
    let greeting = format!("Welcome, {}!, name);
    greeting.to_uppercase()
}

fn main() {
    println!("{}", banner("wick"));
}
