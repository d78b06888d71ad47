//! What the `sessiongate` command does besides serving: the demo, token minting, and
//! the operator's break glass.

mod break_glass;
mod demo;
mod mint;

pub use break_glass::{BreakGlass, BreakGlassError, Operation, break_glass};
pub use demo::{DemoError, run as demo};
pub use mint::{MintError, TokenRequest, mint};
