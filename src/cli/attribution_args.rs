//! `dfscan fit-attribution`'s arguments.
use std::path::PathBuf;

use clap::Args;
use dfscan::models::DeviceChoice;

#[derive(Args, Debug)]
pub struct FitAttributionArgs {
    /// Crop cache made by `dfscan extract` (both corpora; fakes are labelled by the table in
    /// src/attribution/labels.rs, joined on each crop's source).
    #[arg(long)]
    pub crops: PathBuf,
    /// The attribution model goes here (the scan's default: models/attribution.safetensors).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Grouped folds of the cross-validation printed before the final fit (below 2: none).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Read the head's 1280 pooled features only, not also the stages' statistics.
    #[arg(long)]
    pub head_only: bool,
    /// Trees per forest.
    #[arg(long, default_value_t = 100)]
    pub trees: u16,
    /// Rows of each class a forest is fitted on (drawn, with repeats for a small class).
    #[arg(long, default_value_t = 400)]
    pub per_class: usize,
    /// Groups a family or method needs to become a class.
    #[arg(long, default_value_t = 2)]
    pub min_groups: usize,
    /// Epochs of the autoencoder.
    #[arg(long, default_value_t = 30)]
    pub ae_epochs: usize,
    /// Hidden width of the autoencoder.
    #[arg(long, default_value_t = 512)]
    pub ae_hidden: i64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The confidence floor the evaluation applies as the scan does.
    #[arg(long, default_value_t = dfscan::attribution::DEFAULT_FLOOR)]
    pub floor: f32,
    /// Also write the data counts and the evaluation as markdown here (for the model card).
    #[arg(long, value_name = "FILE.md")]
    pub report: Option<PathBuf>,
    /// Evaluate only: fit no final model.
    #[arg(long)]
    pub no_save: bool,
    /// Crops per forward pass of the encoder.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}
