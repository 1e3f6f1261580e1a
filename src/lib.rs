//! dfscan: a streaming video deepfake scanner.
//!
//! Data flows one way, and each module is one stage:
//! [`inputs`] -> [`decode`] (FFmpeg) -> [`faces`] (OpenCV) -> [`models`] (libtorch)
//! -> [`aggregate`] -> [`report`] -> [`output`]. [`pipeline`] wires the stages together;
//! [`state`] remembers finished inputs for `--resume` and `watch`; [`train`] fits the models
//! on crops cut by the same stages, and [`eval`] measures them. [`explain`] draws where the
//! ViT looked (`--explain`). [`queue`] spreads the scan over many machines: jobs in a Redis
//! stream, the same pipeline in each worker.
pub mod aggregate;
pub mod attribution;
pub mod bench;
pub mod crops;
pub mod decode;
pub mod eval;
pub mod explain;
pub mod faces;
pub mod inputs;
pub mod models;
pub mod output;
pub mod pipeline;
pub mod queue;
pub mod report;
pub mod state;
pub mod train;
