//! `dfscan import` and `dfscan extract`: public checkpoints into dfscan weights, labelled
//! inputs into a face-crop cache.

use anyhow::{Context, Result};

use crate::cli::{ContractArgs, ExtractArgs, ImportArgs, SelfBlendArgs};
use dfscan::decode::Sampling;
use dfscan::models;

use super::Outcome;

pub fn import(args: ImportArgs) -> Result<()> {
    if let Some(module) = &args.torchscript {
        return import_torchscript(module, args.contract, &args.output);
    }
    let (Some(arch), Some(input)) = (args.arch, args.input) else { anyhow::bail!("import needs --arch and INPUT, or --torchscript") };
    let python = args.python.unwrap_or_else(super::python);
    let inputs: Vec<&std::path::Path> = std::iter::once(input.as_path()).chain(args.second.as_deref()).collect();
    let summary = models::import::import(arch, &inputs, &args.output, &python)
        .with_context(|| format!("importing {}", input.display()))?;
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

fn import_torchscript(module: &std::path::Path, flags: ContractArgs, output: &std::path::Path) -> Result<()> {
    use models::torchscript::Contract;
    let three = |flag: &str, v: Option<Vec<f64>>| -> Result<Option<[f64; 3]>> {
        v.map(|v| <[f64; 3]>::try_from(v.as_slice()).map_err(|_| anyhow::anyhow!("--{flag} takes three values A,B,C, got {v:?}"))).transpose()
    };
    let given = Contract {
        name: flags.name,
        input_size: flags.input_size,
        frames: flags.frames,
        margin: flags.margin,
        channels: flags.channels,
        pixel_max: flags.pixel_max,
        mean: three("mean", flags.mean)?,
        std: three("std", flags.std)?,
        returns: flags.returns,
        fake_index: flags.fake_index,
    };
    let contract = match &flags.contract {
        Some(json) => Contract::parse(json)?.overridden_by(given),
        None => given,
    };
    let summary = models::torchscript::import(module, &contract, output).with_context(|| format!("importing {}", module.display()))?;
    let (h, pre) = (&summary.header, &summary.header.preprocess);
    let kind = if h.network.is_sequence() { "sequence" } else { "frame" };
    eprintln!("dfscan: wrote {} (TorchScript {kind} module, {} bytes)", output.display(), summary.module_bytes);
    eprintln!(
        "dfscan: contract: {:?} pixels to [0, {}], mean {:?}, std {:?}, returns {:?}, margin {}",
        pre.channels,
        pre.pixel_max,
        pre.mean,
        pre.std,
        pre.output,
        pre.crop.map_or("the scan's".to_string(), |c| c.margin.to_string())
    );
    eprintln!("dfscan: checked: {}", summary.checked);
    eprintln!("dfscan: provenance: {}", h.provenance);
    Ok(())
}

pub fn extract(args: ExtractArgs) -> Result<Outcome> {
    if args.landmarks {
        return super::lrnet::extract(&args);
    }
    use dfscan::crops::extract::{self, ExtractConfig, ExtractEvent};
    let rows = dfscan::crops::dataset::read_manifest(&args.manifest)?;
    let mut detector = dfscan::faces::build_detector(args.detector, &super::models_dir().join("public"), args.min_face_confidence)?;
    let crop = dfscan::faces::crop::CropSpec { detector: args.detector, margin: args.margin, side: args.size };
    let cfg = ExtractConfig { sampling: Sampling::Frames(args.frames.max(1)), crop, faces_per_frame: args.faces_per_frame.max(1) };
    let bar = dfscan::output::progress_bar(rows.len() as u64, "extract [{bar:30}] {pos}/{len} inputs {eta}");
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
    Ok(if summary.failed.is_empty() { Outcome::Clean } else { Outcome::Failures })
}

/// `dfscan self-blend`: the still `args.input` with its most confident face self-blended (a
/// synthetic fake made from a real face, `train::sbi`), written as PNG. How `samples/` gets a
/// fake made by the project's own means (scripts/make_samples.sh).
pub fn self_blend(args: SelfBlendArgs) -> Result<()> {
    use opencv::core::{Mat, Rect, Vec3b};
    use rand::SeedableRng;
    let source = dfscan::decode::VideoSource::open(&args.input)?;
    let mut frame = None;
    let mut sampler = dfscan::decode::Sampler::new(Sampling::Frames(1), source.info.duration_s);
    source.sample(&mut sampler, |f| {
        frame = Some(f);
        Ok(false)
    })?;
    let frame = frame.with_context(|| format!("{}: no frame decoded", args.input.display()))?;
    let mut detector = dfscan::faces::build_detector(args.detector, &super::models_dir().join("public"), 0.5)?;
    let face = detector.detect(&frame)?.into_iter().next().with_context(|| format!("{}: no face found", args.input.display()))?;
    // The face's square at its own resolution, so nothing outside the blend is resampled.
    let b = face.bbox;
    let side = (b.w.max(b.h) * (1.0 + 2.0 * dfscan::faces::crop::DEFAULT_MARGIN)).round() as i32;
    let crop = dfscan::faces::square_crop(&frame, &b, dfscan::faces::crop::DEFAULT_MARGIN, side)?;
    let plan = dfscan::crops::sbi::SbiPlan::sample(&mut rand::rngs::StdRng::seed_from_u64(args.seed));
    let (blended, _) = plan.apply(&crop, side)?;
    // Paste the square back where it lies inside the frame.
    let (fw, fh) = (frame.width as i32, frame.height as i32);
    let x0 = (b.x + b.w / 2.0 - side as f32 / 2.0).round() as i32;
    let y0 = (b.y + b.h / 2.0 - side as f32 / 2.0).round() as i32;
    let inside = Rect::new(x0, y0, side, side) & Rect::new(0, 0, fw, fh);
    let mut rgb = frame.rgb.clone();
    for y in inside.y..inside.y + inside.height {
        let (src, dst) = ((((y - y0) * side + inside.x - x0) * 3) as usize, ((y * fw + inside.x) * 3) as usize);
        let n = inside.width as usize * 3;
        rgb[dst..dst + n].copy_from_slice(&blended[src..src + n]);
    }
    let image = Mat::new_rows_cols_with_bytes::<Vec3b>(fh, fw, &rgb)?;
    let mut bgr = Mat::default();
    opencv::imgproc::cvt_color_def(&image, &mut bgr, opencv::imgproc::COLOR_RGB2BGR)?;
    anyhow::ensure!(opencv::imgcodecs::imwrite_def(&args.output, &bgr)?, "could not write {}", args.output.display());
    eprintln!("dfscan: wrote {} (face {:?} self-blended, seed {})", args.output.display(), [b.x, b.y, b.w, b.h], args.seed);
    Ok(())
}
