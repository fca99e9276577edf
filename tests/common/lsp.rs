#![allow(dead_code)]
//! The protocol tests' client: wick's own, spawning the binary under test.

#[allow(unused_imports)]
pub use wick::server::client::{caps_with_progress, LONG};

pub struct Client;

impl Client {
    #[allow(clippy::new_ret_no_self)]
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> wick::server::client::Client {
        wick::server::client::Client::spawn(&super::wick_bin(), args, envs)
    }
}
