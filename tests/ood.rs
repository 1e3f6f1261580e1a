//! The shipped ViT's abnormality module (`models/vit.safetensors`, see models/vit.md) in a
//! scan: the face crops it was trained to flag (the seed's noise corruptions) must get a higher
//! `ood_risk` than the clean crop they were made from.
//!
//! What it does not flag is measured in models/vit.md: blur and JPEG, and cartoon, grayscale or
//! crushed re-encodes of whole clips, score like clean faces, because the classifier it reads
//! was trained to be invariant to such changes (its augmentations).
mod common;

use common::*;
use dfscan::train::ood::{corrupt_all, OodKind};

#[test]
fn noise_corrupted_faces_get_a_higher_risk_than_the_clean_face() {
    let tmp = tempfile::tempdir().unwrap();
    let size = 224;
    let clean = Vec::<u8>::try_from(astronaut_crop(size).flatten(0, -1)).unwrap();
    let kinds = [OodKind::Noise, OodKind::ScaledNoise, OodKind::RotatedNoise];
    let corrupted = corrupt_all(&vec![clean.clone(); kinds.len()], size as i32, 1, |i| kinds[i]).unwrap();
    let mut paths = vec![tmp.path().join("clean.png")];
    dfscan::faces::crop::write_rgb_png(&paths[0], &clean, size as i32).unwrap();
    for (kind, rgb) in kinds.iter().zip(&corrupted) {
        let path = tmp.path().join(format!("{}.png", kind.name()));
        dfscan::faces::crop::write_rgb_png(&path, rgb, size as i32).unwrap();
        paths.push(path);
    }
    let mut args = vec!["scan", "-q", "--no-state", "--faces", "none", "--models", "vit"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let lines = json_lines(&dfscan(&args));
    let risk = |name: &str| line_for(&lines, name)["ood_risk"].as_f64().unwrap_or_else(|| panic!("no ood_risk for {name}: {lines:#?}"));
    let clean_risk = risk("clean.png");
    for kind in kinds {
        let name = format!("{}.png", kind.name());
        eprintln!("ood_risk {name}: {:.4} (clean {clean_risk:.4})", risk(&name));
        assert!(risk(&name) > clean_risk, "{name}: ood_risk {} not above the clean face's {clean_risk}", risk(&name));
    }
}
