//! Training: labelled inputs -> cached face crops (extract) -> a fitted model (trainer).
pub mod dataset;
pub mod extract;
