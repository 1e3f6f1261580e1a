//! Hierarchical attribution (seed 002; issue 13, item 4): after "is it fake?", "made how?".
//!
//! Three levels. Level 1, real or fake, is the scanner's verdict. Level 2 is the family of the
//! manipulation ([`Family`]). Level 3 is the method, where the training data names one
//! ("Wav2Lip", "DeepFaceLive", ...). Levels 2 and 3 come from the attribution model
//! (`models::attribution`): a fixed ImageNet encoder's embedding of each face, an autoencoder
//! down to 64 dimensions, and a random forest per level, trained on fakes only.
//!
//! This module holds what needs no model: the family and method names, the table that labels
//! the corpora with them ([`labels`]), and [`summarise`], the pure rule that turns the
//! per-face probabilities into a line's `attribution`. It imports no other module of the crate.
use serde::{Deserialize, Serialize};

pub mod labels;

/// What the line says where the model is not confident enough, or the data named no method.
pub const UNKNOWN: &str = "unknown";

/// The default confidence floor (`scan --attribution-floor`): a family or method whose
/// averaged forest probability is below it is reported as "unknown".
pub const DEFAULT_FLOOR: f32 = 0.5;

/// The default number of faces of each track the attribution model reads
/// (`scan --attribution-faces`).
pub const DEFAULT_FACES: usize = 8;

/// The family of a manipulation (level 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Another person's face put on the target (DeepFaceLive, DFDC, GHOST, FF++ Deepfakes).
    FaceSwap,
    /// The target's own face driven by another video's expressions and pose (FF++
    /// NeuralTextures, AniPortrait's video-driven mode).
    FaceReenactment,
    /// A real video's mouth re-made to match other audio (Wav2Lip, HyperLips, VideoReTalking).
    LipSync,
    /// A whole talking head animated from one still image (SadTalker, AniPortrait's audio mode).
    TalkingHead,
    /// A face that never existed, made whole by a generator (StyleGAN-like faces).
    FullyGenerated,
}

impl Family {
    pub const ALL: [Family; 5] = [Family::FaceSwap, Family::FaceReenactment, Family::LipSync, Family::TalkingHead, Family::FullyGenerated];

    /// As JSON lines and the card write it.
    pub fn name(self) -> &'static str {
        match self {
            Family::FaceSwap => "face_swap",
            Family::FaceReenactment => "face_reenactment",
            Family::LipSync => "lip_sync",
            Family::TalkingHead => "talking_head",
            Family::FullyGenerated => "fully_generated",
        }
    }
}

/// A method class of level 3 and the families its training items belong to (one, but for a
/// tool with several modes: AniPortrait reenacts a face or animates a still).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodClass {
    pub name: String,
    pub families: Vec<Family>,
}

/// The classes a fitted attribution model predicts, in the order of its forests' outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classes {
    pub families: Vec<Family>,
    pub methods: Vec<MethodClass>,
}

/// One face's evidence: the forests' probabilities over [`Classes`] (each sums to 1).
#[derive(Clone, Debug, PartialEq)]
pub struct FaceAttribution {
    /// The face's position among all faces of the input, in frame order.
    pub face: usize,
    pub track: u32,
    pub family: Vec<f32>,
    pub method: Vec<f32>,
}

/// A line's `attribution`: the family and method with their averaged probabilities.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attribution {
    /// A [`Family`] name, or "unknown" when `family_p` is below the floor.
    pub family: String,
    /// The highest family probability (of the family named, or of the best guess when
    /// `family` is "unknown").
    pub family_p: f32,
    /// A method name, or "unknown": below the floor, or not of the family reported.
    pub method: String,
    /// The highest method probability.
    pub method_p: f32,
}

/// The attribution of a fake input from its faces' evidence: the forests' probabilities
/// averaged over the faces of `tracks` (the tracks that made the input fake; all faces when
/// none of them has evidence), then the most probable family and method. A family below
/// `floor` is "unknown"; a method below `floor`, or not of the family reported, is "unknown"
/// (so the line never names a method of another family than its own, and names none when the
/// family is unknown). None without evidence.
pub fn summarise(faces: &[FaceAttribution], tracks: &[u32], classes: &Classes, floor: f32) -> Option<Attribution> {
    let of_tracks: Vec<&FaceAttribution> = faces.iter().filter(|f| tracks.contains(&f.track)).collect();
    let used: Vec<&FaceAttribution> = if of_tracks.is_empty() { faces.iter().collect() } else { of_tracks };
    if used.is_empty() {
        return None;
    }
    let mean = |pick: fn(&FaceAttribution) -> &[f32], n: usize| -> Vec<f32> {
        let mut sum = vec![0.0f32; n];
        for f in &used {
            for (s, p) in sum.iter_mut().zip(pick(f)) {
                *s += p;
            }
        }
        sum.iter().map(|s| s / used.len() as f32).collect()
    };
    let family_p = mean(|f| &f.family, classes.families.len());
    let method_p = mean(|f| &f.method, classes.methods.len());
    let best = |p: &[f32]| (0..p.len()).fold(None, |b: Option<usize>, i| if b.is_none_or(|b| p[i] > p[b]) { Some(i) } else { b });
    let family = best(&family_p).map(|i| (classes.families[i], family_p[i]));
    let method = best(&method_p).map(|i| (&classes.methods[i], method_p[i]));
    let reported = family.filter(|&(_, p)| p >= floor).map(|(f, _)| f);
    let method_name = match (method, reported) {
        (Some((m, p)), Some(f)) if p >= floor && m.families.contains(&f) => m.name.clone(),
        _ => UNKNOWN.to_string(),
    };
    Some(Attribution {
        family: reported.map_or(UNKNOWN, Family::name).to_string(),
        family_p: family.map_or(0.0, |(_, p)| p),
        method: method_name,
        method_p: method.map_or(0.0, |(_, p)| p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Classes {
        let m = |name: &str, family| MethodClass { name: name.into(), families: vec![family] };
        Classes {
            families: vec![Family::FaceSwap, Family::LipSync, Family::TalkingHead],
            methods: vec![m("DeepFaceLive", Family::FaceSwap), m("Wav2Lip", Family::LipSync), m("SadTalker", Family::TalkingHead)],
        }
    }

    fn face(face: usize, track: u32, family: [f32; 3], method: [f32; 3]) -> FaceAttribution {
        FaceAttribution { face, track, family: family.to_vec(), method: method.to_vec() }
    }

    #[test]
    fn probabilities_are_averaged_over_the_fake_tracks_faces() {
        let faces = [
            face(0, 0, [0.1, 0.8, 0.1], [0.1, 0.7, 0.2]),
            face(1, 0, [0.1, 0.6, 0.3], [0.1, 0.5, 0.4]),
            // Another track, not fake: left out.
            face(2, 1, [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
        ];
        let a = summarise(&faces, &[0], &classes(), 0.5).unwrap();
        assert_eq!((a.family.as_str(), a.method.as_str()), ("lip_sync", "Wav2Lip"));
        assert!((a.family_p - 0.7).abs() < 1e-6 && (a.method_p - 0.6).abs() < 1e-6, "{a:?}");
        // Tracks without evidence: every face counts.
        // Family means (0.4, 0.467, 0.133): lip-sync leads, below the floor.
        let all = summarise(&faces, &[7], &classes(), 0.5).unwrap();
        assert_eq!(all.family, "unknown");
        assert!((all.family_p - (0.8 + 0.6) / 3.0).abs() < 1e-6, "{all:?}");
        assert!(summarise(&[], &[0], &classes(), 0.5).is_none());
    }

    #[test]
    fn below_the_floor_is_unknown_and_a_method_must_be_of_the_family() {
        let unsure = [face(0, 0, [0.4, 0.35, 0.25], [0.6, 0.2, 0.2])];
        let a = summarise(&unsure, &[0], &classes(), 0.5).unwrap();
        // The family is below the floor, so neither is named, though the method is above it.
        assert_eq!((a.family.as_str(), a.method.as_str()), ("unknown", "unknown"));
        assert!((a.family_p - 0.4).abs() < 1e-6 && (a.method_p - 0.6).abs() < 1e-6);
        // A lower floor names both.
        let b = summarise(&unsure, &[0], &classes(), 0.3).unwrap();
        assert_eq!((b.family.as_str(), b.method.as_str()), ("face_swap", "DeepFaceLive"));
        // A confident method of another family than the reported one is not named.
        let torn = [face(0, 0, [0.1, 0.8, 0.1], [0.05, 0.15, 0.8])];
        let c = summarise(&torn, &[0], &classes(), 0.5).unwrap();
        assert_eq!((c.family.as_str(), c.method.as_str()), ("lip_sync", "unknown"));
        // A method below the floor under a known family.
        let weak = [face(0, 0, [0.1, 0.8, 0.1], [0.3, 0.4, 0.3])];
        assert_eq!(summarise(&weak, &[0], &classes(), 0.5).unwrap().method, "unknown");
    }
}
