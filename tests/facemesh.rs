//! FaceMesh: the committed public weights (models/third_party/facemesh), imported with
//! `dfscan import --arch facemesh`, give the points the port's PyTorch code gives on the same
//! input (tests/reference/facemesh.py); and on a real face (samples/astronaut.jpg) the 68 iBUG
//! points picked from the 468 land in the right regions.
mod common;

use common::*;
use dfscan::decode::Frame;
use dfscan::faces::FaceBox;
use dfscan::models::facemesh::{self, FaceMeshModel};
use tch::{Device, Kind, Tensor};

fn import_facemesh(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("facemesh.safetensors");
    let pth = repo().join("models/third_party/facemesh/facemesh.pth");
    let import = dfscan(&["import", "--arch", "facemesh", pth.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(import.status.success(), "import failed: {}", String::from_utf8_lossy(&import.stderr));
    out
}

/// The largest face the project's detector finds in `frame` (res10 when the set-up fetched it,
/// else OpenCV's Haar cascade).
pub fn face_box(frame: &Frame) -> FaceBox {
    use dfscan::faces::DetectorKind;
    let public = std::path::Path::new(dfscan::models::BUILT_IN_DIR).join("public");
    let mut detector = dfscan::faces::build_detector(DetectorKind::Res10, &public, 0.5)
        .or_else(|_| dfscan::faces::build_detector(DetectorKind::Haar, &public, 0.5))
        .unwrap();
    let faces = detector.detect(frame).unwrap();
    faces.iter().max_by(|a, b| (a.bbox.w * a.bbox.h).total_cmp(&(b.bbox.w * b.bbox.h))).expect("a face in the sample").bbox
}

#[test]
fn points_match_the_pytorch_port() {
    let Some(python) = venv_python("facemesh parity") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let model = FaceMeshModel::load(&import_facemesh(tmp.path()), Device::Cpu).unwrap();
    let frame = first_frame(&samples().join("astronaut.jpg"));
    let bbox = face_box(&frame);
    let crop = facemesh::crop(&frame, &bbox).unwrap();
    let face = Tensor::from_slice(&crop).view([1, 192, 192, 3]);
    // The face, and the same face mirrored: a batch of two.
    let input = facemesh::to_input(&Tensor::cat(&[face.shallow_clone(), face.flip([2])], 0), Device::Cpu);
    let (points, flag) = tch::no_grad(|| model.net.landmarks(&input));
    let weights = repo().join("models/third_party/facemesh/facemesh.pth");
    let reference = run_reference(&python, "facemesh.py", &[weights.as_os_str()], &[("face", input.shallow_clone())]);
    let want_points = reference["face.points"].view([2, 468, 3]);
    let want_flag = reference["face.flag"].view([2]);
    let d_points = max_diff(&points, &want_points);
    let d_flag = max_diff(&flag, &want_flag);
    eprintln!("facemesh parity: max |point difference| {d_points:.2e} px of 192, max |flag logit difference| {d_flag:.2e}");
    assert!(d_points < 1e-2, "points differ by {d_points} px");
    assert!(d_flag < 1e-3, "face flag differs by {d_flag}");
    // A face: the flag says so, and the points spread over the crop.
    assert!(flag.sigmoid().min().double_value(&[]) > 0.5, "face flag {flag:?}");
    let xs = points.select(2, 0);
    assert!(xs.max().double_value(&[]) - xs.min().double_value(&[]) > 60.0);
}

fn mean(points: &[[f32; 2]], range: std::ops::Range<usize>) -> [f32; 2] {
    let n = range.len() as f32;
    let s = points[range].iter().fold([0.0, 0.0], |a, p| [a[0] + p[0], a[1] + p[1]]);
    [s[0] / n, s[1] / n]
}

#[test]
fn ibug68_points_fall_in_their_regions() {
    if venv_python("facemesh regions").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let model = FaceMeshModel::load(&import_facemesh(tmp.path()), Device::Cpu).unwrap();
    let frame = first_frame(&samples().join("astronaut.jpg"));
    let bbox = face_box(&frame);
    let faces = model.detect(&frame, &[bbox]).unwrap();
    let lm = &faces[0].ibug68;
    assert_eq!(lm.len(), 68);
    assert_eq!(faces[0].mesh.len(), 468);
    assert!(faces[0].presence > 0.5, "presence {}", faces[0].presence);
    // The image's left is the subject's right: iBUG's right eye (36-41) is the image-left one.
    let (right_eye, left_eye) = (mean(lm, 36..42), mean(lm, 42..48));
    let nose_tip = lm[30];
    let (brows, mouth, chin) = (mean(lm, 17..27), mean(lm, 48..68), lm[8]);
    eprintln!("box {bbox:?}: right eye {right_eye:?} left eye {left_eye:?} nose {nose_tip:?} mouth {mouth:?} chin {chin:?}");
    assert!(right_eye[0] < nose_tip[0] && nose_tip[0] < left_eye[0], "eyes either side of the nose");
    assert!(brows[1] < right_eye[1].min(left_eye[1]), "brows above the eyes");
    assert!(right_eye[1].max(left_eye[1]) < nose_tip[1], "eyes above the nose tip");
    assert!(nose_tip[1] < mouth[1] && mouth[1] < chin[1], "nose above mouth above chin");
    assert!(lm[48][0] < lm[54][0] && lm[36][0] < lm[39][0] && lm[42][0] < lm[45][0], "corners in order");
    assert!(lm[0][0] < right_eye[0] && left_eye[0] < lm[16][0], "jaw outside the eyes");
    // Eyes, brows, nose and mouth inside the detected box; the whole jaw inside the crop.
    let inside = |p: &[f32; 2], b: &FaceBox, slack: f32| {
        p[0] >= b.x - slack && p[0] <= b.x + b.w + slack && p[1] >= b.y - slack && p[1] <= b.y + b.h + slack
    };
    for (i, p) in lm.iter().enumerate().skip(17) {
        assert!(inside(p, &bbox, 0.05 * bbox.w), "point {i} {p:?} outside {bbox:?}");
    }
    let (left, top, side) = facemesh::crop_geometry(&bbox);
    let crop_box = FaceBox { x: left, y: top, w: side, h: side };
    assert!(lm.iter().all(|p| inside(p, &crop_box, 0.0)));
}

#[test]
fn crop_geometry_matches_the_crop() {
    // A white square on black: its FaceMesh crop shows it where crop_geometry says.
    let (w, h) = (320u32, 240u32);
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    for y in 100..140 {
        for x in 200..240 {
            let i = ((y * w + x) * 3) as usize;
            rgb[i..i + 3].fill(255);
        }
    }
    let frame = Frame { index: 0, pts_s: 0.0, width: w, height: h, rgb, role: Default::default() };
    let bbox = FaceBox { x: 190.0, y: 90.0, w: 60.0, h: 60.0 };
    let crop = Tensor::from_slice(&facemesh::crop(&frame, &bbox).unwrap()).view([192, 192, 3]).to_kind(Kind::Float);
    let white = crop.select(2, 0).gt(128.0).nonzero();
    let (ys, xs) = (white.select(1, 0).to_kind(Kind::Float), white.select(1, 1).to_kind(Kind::Float));
    let corners = [[xs.min().double_value(&[]) as f32, ys.min().double_value(&[]) as f32], [xs.max().double_value(&[]) as f32 + 1.0, ys.max().double_value(&[]) as f32 + 1.0]];
    let back = facemesh::to_frame(&corners, &bbox);
    assert!((back[0][0] - 200.0).abs() < 1.5 && (back[0][1] - 100.0).abs() < 1.5, "{back:?}");
    assert!((back[1][0] - 240.0).abs() < 1.5 && (back[1][1] - 140.0).abs() < 1.5, "{back:?}");
}

/// The 68 points FaceMesh gives the astronaut's face, with its frame.
fn astronaut_landmarks() -> Option<(Frame, Vec<[f32; 2]>)> {
    venv_python("calibration")?;
    let tmp = tempfile::tempdir().unwrap();
    let model = FaceMeshModel::load(&import_facemesh(tmp.path()), Device::Cpu).unwrap();
    let frame = first_frame(&samples().join("astronaut.jpg"));
    let bbox = face_box(&frame);
    let lm = model.detect(&frame, &[bbox]).unwrap().remove(0).ibug68;
    Some((frame, lm))
}

#[test]
fn calibration_reduces_the_jitter_of_a_still_face() {
    use dfscan::faces::calibrate::{calibrate, jitter, CalibrationConfig};
    use rand::{Rng, SeedableRng};
    let Some((frame, lm)) = astronaut_landmarks() else { return };
    // A still face, 40 frames, each frame's landmarks moved by up to 2 px at random.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let frames: Vec<Frame> = (0..40).map(|i| Frame { index: i, ..frame.clone() }).collect();
    let noisy: Vec<Option<Vec<[f32; 2]>>> =
        (0..40).map(|_| Some(lm.iter().map(|&[x, y]| [x + rng.random_range(-2.0..2.0), y + rng.random_range(-2.0..2.0)]).collect())).collect();
    let raw = calibrate(&frames, &noisy, &CalibrationConfig { track: false, ..Default::default() }).unwrap();
    let calibrated = calibrate(&frames, &noisy, &CalibrationConfig::default()).unwrap();
    assert_eq!(calibrated.len(), 40);
    assert!(calibrated.iter().all(|r| r.len() == 136 && r.iter().all(|v| (-1.0..=1.0).contains(v))));
    let (j_raw, j_cal) = (jitter(&raw), jitter(&calibrated));
    // In pixels of the 400-px face: (p - 200) / 200.
    eprintln!("calibration: frame-to-frame jitter {:.2} px raw -> {:.2} px calibrated (400-px face)", j_raw * 200.0, j_cal * 200.0);
    assert!(j_raw > 0.0);
    assert!(j_cal < 0.6 * j_raw, "calibration did not steady the points: {j_raw} -> {j_cal}");
    // And the points stay on the face: the mean calibrated shape is near the mean raw shape
    // (the noise averaged out; both in the same stable box).
    let mean_row = |rows: &[Vec<f32>]| -> Vec<f32> { (0..136).map(|i| rows.iter().map(|r| r[i]).sum::<f32>() / rows.len() as f32).collect() };
    let (m_raw, m_cal) = (mean_row(&raw), mean_row(&calibrated));
    let offset = m_raw.iter().zip(&m_cal).map(|(a, b)| (a - b).abs()).sum::<f32>() / 136.0 * 200.0;
    eprintln!("calibration: mean |calibrated - raw| of the mean shapes {offset:.2} px");
    assert!(offset < 4.0, "calibrated points drift {offset} px from the raw ones");
}

/// FaceMesh's speed on this machine, with 1 and 2 libtorch threads: `cargo test --release
/// --test facemesh -- --ignored --nocapture facemesh_speed`. Prints faces per wall second and
/// per CPU second of the process (the latter holds up better on a shared machine).
#[test]
#[ignore]
fn facemesh_speed() {
    let Some(_) = venv_python("facemesh speed") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let model = FaceMeshModel::load(&import_facemesh(tmp.path()), Device::Cpu).unwrap();
    let frame = first_frame(&samples().join("astronaut.jpg"));
    let bbox = face_box(&frame);
    // utime + stime of this process, in seconds (clock ticks of 1/100 s).
    let cpu = || {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    };
    for threads in [1, 2] {
        tch::set_num_threads(threads);
        for batch in [1usize, 8] {
            let boxes = vec![bbox; batch];
            model.detect(&frame, &boxes).unwrap();
            let (started, cpu0) = (std::time::Instant::now(), cpu());
            let mut faces = 0;
            while started.elapsed().as_secs_f64() < 10.0 {
                faces += model.detect(&frame, &boxes).unwrap().len();
            }
            let (wall, cpu_s) = (started.elapsed().as_secs_f64(), cpu() - cpu0);
            eprintln!(
                "facemesh: {:.1} faces/s wall, {:.1} faces per CPU second (batch {batch}, {threads} libtorch threads, crop + network + mapping)",
                faces as f64 / wall,
                faces as f64 / cpu_s
            );
        }
    }
}
