//! The shipped abnormality modules in a scan, the default model's own (on its features,
//! models/default.md) and the ViT's (`--ood-model vit`, models/vit.md): inputs unlike their
//! training data must get a higher `ood_risk` than what they were made from. Face crops with
//! the seed's noise corruptions (always), and clips generated here from a real clip of the
//! training corpus: a cartoon, a crushed re-encode and a grayscale copy (when ../shared holds
//! the corpus).
mod common;

use std::path::{Path, PathBuf};

use common::*;
use dfscan::crops::ood::{corrupt_all, OodKind};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The ffmpeg filters and codec settings that make the out-of-distribution copies of a clip.
const VARIANTS: [(&str, &str, &[&str]); 3] = [
    (
        // Smoothed, colours posterised to 4 levels per channel, black edges.
        "cartoon",
        "split[a][b];[a]median=radius=3,lutrgb=r='floor(val/64)*64+32':g='floor(val/64)*64+32':b='floor(val/64)*64+32',format=gbrp[p];\
         [b]edgedetect=low=0.1:high=0.25,negate,format=gbrp[e];[p][e]blend=all_mode=multiply",
        &["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    ),
    // Downscaled 6x and back, H.264 at its worst quantiser.
    ("crushed", "scale=iw/6:-2,scale=iw*6:-2", &["-c:v", "libx264", "-crf", "51"]),
    ("grayscale", "format=gray", &["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
];

/// `original` and its [`VARIANTS`] in `dir`.
fn with_variants(original: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![original.to_path_buf()];
    for (name, filter, codec) in VARIANTS {
        let path = dir.join(format!("{name}.mp4"));
        let mut args = vec!["-i", s(original), "-vf", filter];
        args.extend_from_slice(codec);
        args.push(s(&path));
        ffmpeg(&args);
        paths.push(path);
    }
    paths
}

#[test]
fn generated_out_of_distribution_clips_rank_above_the_real_clip_they_come_from() {
    let Some(shared) = shared() else {
        eprintln!("skipped: ../shared (the training corpus) is not beside this checkout");
        return;
    };
    let original = shared.join("data/deepfacelive_pairs/real_inputs/Ben_Stiller_Owen_Wilson.mp4");
    let tmp = tempfile::tempdir().unwrap();
    let clips = with_variants(&original, tmp.path());
    // The plain scan's risk (the default model's own), then the ViT's.
    for (ood, expected) in [(None, "efficientnet-lite0"), (Some("vit"), "deit-tiny")] {
        let mut args = vec!["scan", "-q", "--no-state", "--frames", "8"];
        if let Some(model) = ood {
            args.extend(["--ood-model", model]);
        }
        args.extend(clips.iter().map(|p| s(p)));
        let lines = json_lines(&dfscan(&args));
        assert_eq!(lines[0]["ood_model"]["name"], expected, "{:#}", lines[0]);
        let risk = |name: &str| line_for(&lines, name)["ood_risk"].as_f64().unwrap_or_else(|| panic!("no ood_risk for {name}: {lines:#?}"));
        let original_risk = risk("Ben_Stiller_Owen_Wilson.mp4");
        for (name, _, _) in VARIANTS {
            let name = format!("{name}.mp4");
            eprintln!("{expected}: ood_risk {name}: {:.4} (original {original_risk:.4})", risk(&name));
            assert!(risk(&name) > original_risk, "{expected}, {name}: ood_risk {} not above the original's {original_risk}", risk(&name));
        }
    }
}

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
    for model in ["default", "vit"] {
        let mut args = vec!["scan", "-q", "--no-state", "--faces", "none", "--models", model];
        args.extend(paths.iter().map(|p| p.to_str().unwrap()));
        let lines = json_lines(&dfscan(&args));
        let risk = |name: &str| line_for(&lines, name)["ood_risk"].as_f64().unwrap_or_else(|| panic!("no ood_risk for {name}: {lines:#?}"));
        let clean_risk = risk("clean.png");
        for kind in kinds {
            let name = format!("{}.png", kind.name());
            eprintln!("{model}: ood_risk {name}: {:.4} (clean {clean_risk:.4})", risk(&name));
            assert!(risk(&name) > clean_risk, "{model}, {name}: ood_risk {} not above the clean face's {clean_risk}", risk(&name));
        }
    }
}
