//! dfscan: a streaming video deepfake scanner.
//!
//! Data flows one way, and each module is one stage:
//! [`inputs`] -> [`decode`] (FFmpeg) -> [`faces`] (OpenCV) -> [`models`] (libtorch)
//! -> [`aggregate`] -> [`report`] -> [`output`]. [`pipeline`] wires the stages together;
//! [`state`] remembers finished inputs for `--resume` and `watch`.
pub mod aggregate;
pub mod decode;
pub mod faces;
pub mod inputs;
pub mod models;
pub mod output;
pub mod pipeline;
pub mod report;
pub mod state;
