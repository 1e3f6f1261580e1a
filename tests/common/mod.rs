//! Helpers shared by the integration tests: the real binary, real FFmpeg-made clips, and
//! weights files made by the library itself.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use dfscan::models::meso::MesoConfig;
use dfscan::models::resnet_lstm::ResnetLstmConfig;
use dfscan::models::vit::VitConfig;
use dfscan::models::vit_ood::{OodHeads, VitOod};
use dfscan::models::weights::{self, Header, NetworkConfig, Preprocess};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn samples() -> PathBuf {
    repo().join("samples")
}

/// ../shared beside the checkout: reference weights and data that exist only on the
/// project's machines. Tests that need it say they skipped when it is absent.
pub fn shared() -> Option<PathBuf> {
    let dir = repo().join("../shared");
    dir.is_dir().then_some(dir)
}

/// The binary, with its default state database under target/tmp instead of the user's, and
/// one OpenMP thread: the tests run several dfscan processes at once on few cores, where
/// libtorch's spinning worker threads slow each other down tenfold (measured on 2 cores).
pub fn dfscan_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dfscan"));
    command.env("XDG_STATE_HOME", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xdg-state"));
    command.env("OMP_NUM_THREADS", "1");
    command
}

pub fn dfscan(args: &[&str]) -> Output {
    dfscan_with_stdin(args, "")
}

pub fn dfscan_with_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = dfscan_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dfscan runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Every stdout line parsed as JSON and checked against docs/output-schema.json (a line that
/// is not JSON, or breaks the schema, fails the test).
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    parse_lines(&String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8"))
}

/// [`json_lines`] for text read from elsewhere (a `watch --output` file).
pub fn parse_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| {
            let line = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            if let Err(e) = output_schema().validate(&line) {
                panic!("breaks docs/output-schema.json at {}: {e}\n{l}", e.instance_path());
            }
            line
        })
        .collect()
}

/// Stdout lines of the commands that are not scans (`eval`, `bench`): JSON, no scan schema.
pub fn plain_json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The validator for docs/output-schema.json, built once per test binary.
pub fn output_schema() -> &'static jsonschema::Validator {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    VALIDATOR.get_or_init(|| jsonschema::draft202012::new(&output_schema_json()).expect("docs/output-schema.json compiles"))
}

pub fn output_schema_json() -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("docs/output-schema.json")).expect("docs/output-schema.json");
    serde_json::from_str(&text).expect("docs/output-schema.json is JSON")
}

pub fn line_for<'a>(lines: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["path"].as_str().is_some_and(|p| p.ends_with(name)))
        .unwrap_or_else(|| panic!("no line for {name} in {lines:#?}"))
}

/// A MesoInception4 with its random initial weights, saved as a dfscan weights file. The
/// pipeline tests check plumbing, not accuracy, so they need a real network, not a good one.
pub fn untrained_weights(dir: &Path) -> PathBuf {
    untrained_weights_seeded(dir, 0)
}

/// [`untrained_weights`] from another random initialisation: another model, as far as
/// `model.blake3` and the state database can tell.
pub fn untrained_weights_seeded(dir: &Path, seed: i64) -> PathBuf {
    let name = if seed == 0 { "untrained.safetensors".to_string() } else { format!("untrained-{seed}.safetensors") };
    tch::manual_seed(seed);
    let network = NetworkConfig::Meso(MesoConfig::mesoinception4_torch());
    untrained_file(&dir.join(name), network, Preprocess::meso_torch(), None)
}

/// A ResNet-LSTM (MobileNetV2 trunk) reading sequences of `frames` crops, untrained.
pub fn untrained_sequence_weights(dir: &Path, frames: i64) -> PathBuf {
    tch::manual_seed(0);
    let network = NetworkConfig::ResnetLstm(ResnetLstmConfig { frames, ..ResnetLstmConfig::mobilenetv2() });
    untrained_file(&dir.join("untrained-lstm.safetensors"), network, Preprocess::imagenet(), None)
}

/// A DeiT-tiny with its attention VAE and abnormality module (`models::vit_ood`), untrained:
/// it gives an out-of-distribution risk and attention maps.
pub fn untrained_vit_ood_weights(dir: &Path) -> PathBuf {
    tch::manual_seed(0);
    let network = NetworkConfig::Vit(VitConfig::deit_tiny_distilled());
    untrained_file(&dir.join("untrained-vit-ood.safetensors"), network, Preprocess::deit(), Some(OodHeads::shipped()))
}

fn untrained_file(path: &Path, network: NetworkConfig, preprocess: Preprocess, ood: Option<OodHeads>) -> PathBuf {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    match (&network, &ood) {
        (NetworkConfig::Vit(cfg), Some(heads)) => drop(VitOod::new(&vs.root(), cfg, heads).unwrap()),
        _ => drop(dfscan::models::build_network(&vs.root(), &network)),
    }
    let mut tensors: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let provenance = "untrained: random initialisation, for pipeline tests only".into();
    let header = Header { format: weights::FORMAT_VERSION, network, preprocess, provenance, ood };
    weights::save(path, &tensors, &header).unwrap();
    path.to_path_buf()
}

/// Runs the ffmpeg CLI (a test dependency installed by scripts/setup.sh).
pub fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg").args(["-v", "error", "-y"]).args(args).status().expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg {args:?} failed");
}

/// Like [`dfscan`], with arguments that need not be UTF-8. A run still going after `limit` is
/// killed and fails the test: a hang guard set far above a normal run, not a speed check.
pub fn dfscan_guarded<S: AsRef<std::ffi::OsStr>>(args: &[S], limit: std::time::Duration) -> Output {
    let child = dfscan_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dfscan runs");
    let (pid, started) = (child.id(), std::time::Instant::now());
    let reader = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !reader.is_finished() {
        if started.elapsed() > limit {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            let out = reader.join().unwrap();
            panic!("dfscan hung past {limit:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// The first frame of `path` as the scan decodes it (FFmpeg, upright RGB).
pub fn first_frame(path: &Path) -> dfscan::decode::Frame {
    use dfscan::decode::{Sampler, Sampling, VideoSource};
    let source = VideoSource::open(path).unwrap();
    let mut sampler = Sampler::new(Sampling::Frames(1), source.info.duration_s);
    let mut frame = None;
    source
        .sample(&mut sampler, |f| {
            frame = Some(f);
            Ok(false)
        })
        .unwrap();
    frame.expect("a decodable frame")
}

/// The astronaut still as `--faces none` feeds a model: decoded by FFmpeg, resized to `size`
/// by the crop stage, as a `[1, size, size, 3]` u8 batch.
pub fn astronaut_crop(size: i64) -> tch::Tensor {
    let crop = dfscan::faces::whole_frame(&first_frame(&samples().join("astronaut.jpg")), size as i32).unwrap();
    tch::Tensor::from_slice(&crop).view([1, size, size, 3])
}

/// `n` crops of the astronaut, each shifted and brightened differently, one group each, as
/// `dfscan extract` lays a cache out.
pub fn crop_cache(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let base = astronaut_crop(224).get(0);
    let mut index = String::from("file,label,group,source,frame,pts_s,confidence\n");
    for i in 0..n {
        let shifted = base.roll([4 * i as i64], [1]).to_kind(tch::Kind::Float) * (0.7 + 0.05 * i as f64);
        let rgb = Vec::<u8>::try_from(shifted.clamp(0.0, 255.0).to_kind(tch::Kind::Uint8).flatten(0, -1)).unwrap();
        let file = format!("c{i}.png");
        dfscan::faces::crop::write_rgb_png(&dir.join(&file), &rgb, 224).unwrap();
        let label = if i % 2 == 0 { "real" } else { "fake" };
        index += &format!("{file},{label},g{i},v{i}.mp4,0,0.0,1.0\n");
    }
    std::fs::write(dir.join("index.csv"), index).unwrap();
}

// ---- Numeric parity against plain-PyTorch references (tests/reference/*.py) ----

/// `path`, or None with a "skipped" message when the set-up has not made it.
pub fn set_up_file(test: &str, path: PathBuf) -> Option<PathBuf> {
    if !path.is_file() {
        eprintln!("{test}: skipped, {} is absent (run scripts/setup.sh)", path.display());
        return None;
    }
    Some(path)
}

/// The set-up's Python, which has torch: the references run on it.
pub fn venv_python(test: &str) -> Option<PathBuf> {
    set_up_file(test, repo().join(".venv/bin/python3"))
}

pub fn read_tensors(path: &Path) -> std::collections::HashMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

pub fn max_diff(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

/// Deterministic values in [0, 1) from a hash, not the RNG that parallel tests share.
pub fn hash_noise(shape: &[i64], salt: f64) -> tch::Tensor {
    let n: i64 = shape.iter().product();
    ((tch::Tensor::arange(n, (tch::Kind::Float, tch::Device::Cpu)) * 12.9898 + salt).sin() * 43758.5453).frac().abs().view(shape)
}

/// Runs `tests/reference/<script>` with `args`, then an input file holding `inputs` and an
/// output file, and returns the output's tensors.
pub fn run_reference(python: &Path, script: &str, args: &[&std::ffi::OsStr], inputs: &[(&str, tch::Tensor)]) -> std::collections::HashMap<String, tch::Tensor> {
    let tmp = tempfile::tempdir().unwrap();
    let (input, output) = (tmp.path().join("input.safetensors"), tmp.path().join("reference.safetensors"));
    let named: Vec<(&str, tch::Tensor)> = inputs.iter().map(|(n, t)| (*n, t.contiguous())).collect();
    tch::Tensor::write_safetensors(&named, &input).unwrap();
    let status = Command::new(python)
        .arg(repo().join("tests/reference").join(script))
        .args(args)
        .args([&input, &output])
        .status()
        .expect("the reference runs");
    assert!(status.success(), "the PyTorch reference {script} failed");
    read_tensors(&output)
}

/// A crop cache of 32 x 32 noise crops, `frames` of each input in `inputs`, one group per
/// input: reals reddish, fakes bluish (an easy difference). Noise from a hash, frame by frame,
/// so crops of one input differ. Inputs come in pairs from alternating origins ("o0" for
/// inputs 0-1, "o1" for 2-3, "o0" for 4-5, ...), so alternating labels give each both.
pub fn tinted_noise_cache(dir: &Path, inputs: &[(dfscan::crops::dataset::Label, usize)]) {
    use dfscan::crops::dataset::{CropRecord, Label, INDEX_FILE};
    const SIZE: i32 = 32;
    std::fs::create_dir_all(dir.join("crops")).unwrap();
    let mut index = csv::Writer::from_path(dir.join(INDEX_FILE)).unwrap();
    for (n, &(label, frames)) in inputs.iter().enumerate() {
        for frame in 0..frames {
            let rgb: Vec<u8> = (0..SIZE * SIZE * 3)
                .map(|i| {
                    let noise = (((i as f64 + 97.0 * (n * 8 + frame) as f64) * 12.9898).sin() * 43758.5453).fract().abs();
                    let tint = match (label, i % 3) {
                        (Label::Real, 0) | (Label::Fake, 2) => 120.0,
                        _ => 0.0,
                    };
                    (tint + 100.0 * noise) as u8
                })
                .collect();
            let file = format!("crops/{n}_{frame}.png");
            dfscan::faces::crop::write_rgb_png(&dir.join(&file), &rgb, SIZE).unwrap();
            let source = format!("input-{n}.mp4");
            index
                .serialize(CropRecord { file, label, group: source.clone(), source, frame, pts_s: frame as f64, confidence: 1.0, origin: format!("o{}", n / 2 % 2) })
                .unwrap();
        }
    }
    index.flush().unwrap();
}
