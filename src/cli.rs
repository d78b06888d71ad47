//! What the `sessiongate` command does besides serving: the demo and token minting.

mod demo;
mod mint;

pub use demo::{DemoError, run as demo};
pub use mint::{MintError, TokenRequest, mint};
