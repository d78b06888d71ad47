//! Operability: the ops listener (health, readiness, metrics), the metrics registry every
//! room registers its own metrics in, and structured logging.

mod health;
mod histogram;
mod logging;
mod metrics;

pub use health::serve;
pub use histogram::LatencyHistogram;
pub use logging::init as init_logging;
pub use metrics::{GaugeGuard, registered, registry};
