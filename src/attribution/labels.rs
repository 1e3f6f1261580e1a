//! The family/method table: every fake of the two training corpora, labelled with its family
//! and (where the data names it) its method. Written once, here; `dfscan fit-attribution`
//! joins it to a crop cache on each crop's `source` path, and nothing else labels attribution.
//!
//! Sources of each row, quoted in its `evidence`: corpus 1's label files
//! (`../shared/data/all_labels.csv`, each dataset's `labels.csv` and their `notes` column, and
//! `../shared/data/README.txt`), and corpus 2's `labels.csv` (`dataset_or_method`, `notes`) and
//! `README.txt` (`../shared/corpus2/`). A key is a corpus-1 path relative to the data folder
//! (a folder or file-name prefix), or a corpus-2 file name; the longest key that matches a
//! path wins, so a file's own row overrides its folder's.
//!
//! Judgement calls, each said in its row:
//! - AniPortrait's Aragaki and num18 demos are video-driven (the corpus README keeps their
//!   driving panels as real clips): face reenactment. Its other demos animate one reference
//!   portrait: talking-head synthesis.
//! - SadTalker-Video-Lip-Sync re-makes the mouth of a real video: lip-sync, its own method.
//!   SadTalker proper animates one image: talking-head synthesis.
//! - Wav2Lip-288 and the low-resolution stage of Wav2Lip-HD are Wav2Lip; "Wav2Lip-style"
//!   avatars of an unnamed pipeline are lip-sync of unknown method.
//! - Items the data calls fake without saying how (an FF++ clip of unknown method, a demo
//!   image named only "fake") have neither family nor method and train neither forest.
use super::Family;

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// A corpus-1 path prefix relative to the data folder, or a corpus-2 file name.
    pub key: &'static str,
    /// None: the data does not say which family.
    pub family: Option<Family>,
    /// None: the data names no method ("unknown").
    pub method: Option<&'static str>,
    /// What the label files say, shortened.
    pub evidence: &'static str,
}

const fn row(key: &'static str, family: Option<Family>, method: Option<&'static str>, evidence: &'static str) -> Row {
    Row { key, family, method, evidence }
}

use Family::{FaceReenactment as Reenact, FaceSwap as Swap, FullyGenerated as Generated, LipSync, TalkingHead as Head};

/// The table. Only fakes are in it; a real item's attribution is level 1 alone.
pub const TABLE: &[Row] = &[
    // ---- Corpus 1 (../shared/data) ----
    row("deepfacelive_pairs/fake/", Some(Swap), Some("DeepFaceLive"), "right half of iperov/DeepFaceLive's side-by-side demos: the real-time face swap"),
    row("dfdc_sample5/", Some(Swap), Some("DFDC swap"), "DFDC train_sample_videos FAKE entries (metadata.json)"),
    row("dfdc_facecrops_genconvit/fake/", Some(Swap), Some("DFDC swap"), "DFDC face crops <fakevideo>_<originalvideo>_<k>.jpg"),
    row("genconvit_prediction_samples/fake/", Some(Swap), Some("UADFV swap"), "UADFV-style fake (file name pattern NNNN_fake.mp4 = UADFV fake/ folder)"),
    row("ghost_faceswap/fake/", Some(Swap), Some("GHOST"), "GHOST one-shot face swap of orig.webm (README demo)"),
    row("gan_faces_deepsafe/fake/", Some(Generated), Some("StyleGAN-like"), "whole-face JPEGs that look like StyleGAN faces (as in Kaggle '140k real and fake faces')"),
    row("talking_heads/fake/sadtalker_", Some(Head), Some("SadTalker"), "SadTalker audio-driven one-image talking head"),
    row("talking_heads/fake/aniportrait_", Some(Head), Some("AniPortrait"), "AniPortrait generated panel from a reference portrait (audio-driven or self-driven demos)"),
    row("talking_heads/fake/aniportrait_Aragaki_", Some(Reenact), Some("AniPortrait"), "AniPortrait face-reenactment demo: its driving video is in the corpus as real"),
    row("talking_heads/fake/aniportrait_num18_", Some(Reenact), Some("AniPortrait"), "AniPortrait face-reenactment demo: its driving video is in the corpus as real"),
    row("misc_examples/fake/FaceForensic__ex_deepfakes", Some(Swap), Some("FF++ Deepfakes"), "FF++ example frame, Deepfakes"),
    row("misc_examples/fake/FaceForensic__ex_neuraltextures", Some(Reenact), Some("FF++ NeuralTextures"), "FF++ example frame, NeuralTextures"),
    row("misc_examples/fake/FaceForensic__ex_deepfakedetection", Some(Swap), Some("FF++ DeepFakeDetection"), "FF++/DFD example frame, DeepFakeDetection (Google's swaps)"),
    row("misc_examples/fake/MesoNet__", Some(Swap), None, "MesoNet test face crop (deepfake class: face swaps, method not named)"),
    row("misc_examples/fake/CVPRW2019_Fa__0000_fake_64", Some(Swap), Some("UADFV swap"), "FWA demo frame (UADFV fake 0000)"),
    row("misc_examples/fake/CVPRW2019_Fa__demo_fake", Some(Swap), None, "FWA demo deepfake clip (film scene, face swapped)"),
    row("misc_examples/fake/Deepfake-Det__fake", None, None, "FF++ manipulated version of real.mp4 (method unknown: swap or reenactment)"),
    row("misc_examples/fake/DeepSafe__fake_sample_faceswap", Some(Swap), None, "DeepSafe demo image named faceswap"),
    row("misc_examples/fake/DeepSafe__fake_sample_gan", Some(Generated), None, "DeepSafe demo image named gan"),
    row("misc_examples/fake/DeepSafe__fake_sample_stylegan", Some(Generated), Some("StyleGAN-like"), "DeepSafe demo image named stylegan"),
    row("misc_examples/fake/DeepSafe__fake_drake", None, None, "DeepSafe demo image named only fake"),
    // ---- Corpus 2 (/work/corpus2, labels.csv) ----
    row("c2_141189ef1095.mp4", Some(Swap), Some("DFDC swap"), "DFDC-style face swap 1920x1080 (clip id unknown)"),
    row("c2_911ff4d8dd2f.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync"),
    row("c2_e5df2eb4de91.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip-based dubbing (lip-sync)"),
    row("c2_e7649a314db2.mp4", Some(LipSync), Some("HyperLips"), "HyperLips lip-sync"),
    row("c2_63ac478040ec.mp4", Some(LipSync), Some("HyperLips"), "HyperLips lip-sync"),
    row("c2_aab66c6b0769.mp4", Some(LipSync), Some("HyperLips"), "HyperLips lip-sync"),
    row("c2_3cf1eff051a2.mp4", Some(LipSync), Some("HyperLips"), "HyperLips lip-sync"),
    row("c2_6f4e0bd147c9.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync (low-res stage of Wav2Lip-HD)"),
    row("c2_b62cb5e1f435.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync"),
    row("c2_0d9639dbdb02.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync"),
    row("c2_55a28507354f.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync"),
    row("c2_b502af2ffb6e.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync"),
    row("c2_8deb04b6b974.mp4", Some(LipSync), None, "Wav2Lip-style talking avatar (AI portrait), pipeline not named"),
    row("c2_bada4ce29052.mp4", Some(LipSync), None, "Wav2Lip-style talking avatar (AI portrait), pipeline not named"),
    row("c2_8345ba528137.mp4", Some(LipSync), Some("SadTalker-Video-Lip-Sync"), "SadTalker-Video-Lip-Sync (full-face enhance + DAIN 50 fps)"),
    row("c2_15d9a5264938.mp4", Some(LipSync), Some("SadTalker-Video-Lip-Sync"), "SadTalker-Video-Lip-Sync (lip enhance + DAIN 50 fps)"),
    row("c2_0f8b97f99287.mp4", Some(LipSync), Some("SadTalker-Video-Lip-Sync"), "SadTalker-Video-Lip-Sync (no enhance + DAIN 50 fps)"),
    row("c2_b84e6962acda.mp4", Some(LipSync), Some("SadTalker-Video-Lip-Sync"), "SadTalker-Video-Lip-Sync (no enhance, 25 fps)"),
    row("c2_c9de961d807e.mp4", Some(LipSync), Some("VideoReTalking"), "VideoReTalking lip-sync"),
    row("c2_d879fcea3006.mp4", Some(Head), Some("SadTalker"), "SadTalker talking head (README comparison: SadTalker output for the same input)"),
    row("c2_69a74051e0f5.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync"),
    row("c2_b859f2e60d5d.mov", Some(LipSync), Some("Wav2Lip"), "Wav2Lip-288 facial dubbing"),
    row("c2_e89dd19c2284.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync"),
    row("c2_bd7407440135.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync"),
    row("c2_d0a736f38e19.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync of an AI portrait"),
    row("c2_f1a037dc3f58.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync of an AI avatar"),
    row("c2_762a9fa25a4e.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync"),
    row("c2_1c04794a8b48.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync of a (likely AI) portrait"),
    row("c2_e15ff74745d7.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync of a portrait"),
    row("c2_3654ec3f34d3.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync (English audio)"),
    row("c2_79dc8f0502bf.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync (English audio)"),
    row("c2_136f768753c1.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync (English audio)"),
    row("c2_b36ff19d577c.mp4", Some(LipSync), Some("Wav2Lip"), "Wav2Lip lip-sync (Chinese audio)"),
];

/// The row of a fake item at `path` (a crop cache's `source`: absolute, or relative to its
/// corpus): the longest key that `path` holds at a folder boundary. None: not in the table.
pub fn lookup(path: &str) -> Option<&'static Row> {
    let path = format!("/{}", path.replace('\\', "/"));
    TABLE.iter().filter(|r| path.contains(&format!("/{}", r.key))).max_by_key(|r| r.key.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_corpus_paths_get_their_family_and_method() {
        let cases: [(&str, Option<Family>, Option<&str>); 10] = [
            ("/work/shared/data/deepfacelive_pairs/fake/Albica_Johns_0_R.mp4", Some(Family::FaceSwap), Some("DeepFaceLive")),
            ("/work/shared/data/ghost_faceswap/fake/elon.webm", Some(Family::FaceSwap), Some("GHOST")),
            ("/work/shared/data/talking_heads/fake/sadtalker_still1.mp4", Some(Family::TalkingHead), Some("SadTalker")),
            // A file's own row beats its folder's.
            ("/work/shared/data/talking_heads/fake/aniportrait_num18_generated.mp4", Some(Family::FaceReenactment), Some("AniPortrait")),
            ("/work/shared/data/talking_heads/fake/aniportrait_kara_generated.mp4", Some(Family::TalkingHead), Some("AniPortrait")),
            ("shared/data/gan_faces_deepsafe/fake/0001.jpg", Some(Family::FullyGenerated), Some("StyleGAN-like")),
            ("/work/shared/data/dfdc_sample5/faces/abofeumbvv_003_0.png", Some(Family::FaceSwap), Some("DFDC swap")),
            ("/work/corpus2/c2_e7649a314db2.mp4", Some(Family::LipSync), Some("HyperLips")),
            ("/work/corpus2/c2_b859f2e60d5d.mov", Some(Family::LipSync), Some("Wav2Lip")),
            ("/work/shared/data/misc_examples/fake/MesoNet__df00204.jpg", Some(Family::FaceSwap), None),
        ];
        for (path, family, method) in cases {
            let row = lookup(path).unwrap_or_else(|| panic!("{path} is not in the table"));
            assert_eq!((row.family, row.method), (family, method), "{path}");
        }
        // Unknown both ways, and not in the table at all.
        assert_eq!(lookup("/d/misc_examples/fake/Deepfake-Det__fake.mp4").map(|r| (r.family, r.method)), Some((None, None)));
        assert!(lookup("/work/shared/data/deepfacelive_pairs/real/Albica_Johns_0_L.mp4").is_none());
        assert!(lookup("/work/corpus2/c2_5d5ed3cd3d0f.mp4").is_none());
        // A key matches at a folder boundary only.
        assert!(lookup("/x/not_ghost_faceswap/fake/elon.webm").is_none());
    }

    #[test]
    fn keys_are_unique_and_methods_keep_one_family_but_for_aniportrait() {
        let mut keys: Vec<&str> = TABLE.iter().map(|r| r.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), TABLE.len());
        for a in TABLE {
            for b in TABLE {
                if a.method.is_some() && a.method == b.method && a.family != b.family {
                    assert_eq!(a.method, Some("AniPortrait"), "{a:?} vs {b:?}");
                }
            }
        }
    }

    /// Every fake of the corpora's label files is in the table (where they are on this machine).
    #[test]
    #[ignore = "reads the corpora's label files outside the repository"]
    fn every_fake_of_the_label_files_is_in_the_table() {
        let mut missing = Vec::new();
        let files = [("/work/shared/data/all_labels.csv", "path"), ("/work/corpus2/labels.csv", "file")];
        for (file, column) in files {
            let mut reader = csv::Reader::from_path(file).unwrap();
            let headers = reader.headers().unwrap().clone();
            let (path, label) = (headers.iter().position(|h| h == column).unwrap(), headers.iter().position(|h| h == "label").unwrap());
            for record in reader.records() {
                let record = record.unwrap();
                if &record[label] == "fake" && lookup(&record[path]).is_none() {
                    missing.push(record[path].to_string());
                }
            }
        }
        assert!(missing.is_empty(), "fakes without a row: {missing:?}");
    }
}
