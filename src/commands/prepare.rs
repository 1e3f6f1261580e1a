//! `dfscan import` and `dfscan extract`: public checkpoints into dfscan weights, labelled
//! inputs into a face-crop cache.
use std::io::IsTerminal;

use anyhow::{Context, Result};

use crate::cli::{ExtractArgs, ImportArgs};
use dfscan::decode::Sampling;
use dfscan::models;

pub fn import(args: ImportArgs) -> Result<()> {
    let python = args.python.unwrap_or_else(models::import::default_python);
    let summary = models::import::import(args.arch, &args.input, &args.output, &python)
        .with_context(|| format!("importing {}", args.input.display()))?;
    eprintln!(
        "dfscan: wrote {} ({} tensors, {} layout, output {:?}, input {}x{})",
        args.output.display(),
        summary.tensors,
        summary.layout,
        summary.header.preprocess.output,
        summary.header.preprocess.input_size,
        summary.header.preprocess.input_size,
    );
    eprintln!("dfscan: provenance: {}", summary.header.provenance);
    Ok(())
}

pub fn extract(args: ExtractArgs) -> Result<i32> {
    use dfscan::train::extract::{self, ExtractConfig, ExtractEvent};
    let rows = dfscan::train::dataset::read_manifest(&args.manifest)?;
    let mut detector = dfscan::faces::build_detector(args.detector, &models::models_dir().join("public"), args.min_face_confidence)?;
    let crop = dfscan::faces::crop::CropSpec { detector: args.detector, margin: args.margin, side: args.size };
    let cfg = ExtractConfig { sampling: Sampling::Frames(args.frames.max(1)), crop, faces_per_frame: args.faces_per_frame.max(1) };
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let summary = extract::extract(&rows, &args.output, detector.as_mut(), &cfg, |event| {
        bar.inc(1);
        if let ExtractEvent::Failed { path, error } = event {
            bar.suspend(|| eprintln!("dfscan: skipped {}: {error}", path.display()));
        }
    })?;
    bar.finish_and_clear();
    eprintln!(
        "dfscan: {} crops from {} inputs into {} ({} already there, {} without usable faces)",
        summary.crops,
        summary.inputs - summary.failed.len(),
        args.output.display(),
        summary.skipped_already_done,
        summary.failed.len()
    );
    Ok(if summary.failed.is_empty() { 0 } else { 2 })
}
