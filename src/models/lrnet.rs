//! LRNet: a two-stream GRU over a face track's 68-point landmarks.
//!
//! Paper: Sun, Zhang, Zhang, Zhou, Liu, Wang, Yu, "Improving the Efficiency and Robustness of
//! Deepfakes Detection through Precise Geometric Features", CVPR 2021. Reference code:
//! github.com/frederickszk/LRNet@9a172a0 (`demo/utils/model.py`, `demo/classify.py`); its
//! public weights (FF++ and DeeperForensics-1.0, MIT) are in models/third_party/lrnet/.
//!
//! A track's landmarks, one row of 136 numbers (x0 y0 x1 y1 ... in iBUG 300-W order, each in
//! [-1, 1], see `landmarks::calibrate`) per consecutive frame, are cut into blocks of 30 frames:
//! block k = frames [30k, 30k + 30) while 30k < n - 30 (`classify.py`'s `range(0, n - 30, 30)`,
//! so a track needs at least 31 frames). Stream g1 reads a block as is, g2 its 29 frame
//! differences (frame t+1 minus frame t). Block score = mean of the two streams' P(fake); the
//! source's video score is the share of blocks scoring >= 0.5 ([`TrackScore::share_fake`]);
//! the mean block score is reported beside it ([`TrackScore::mean`]).
//!
//! Each stream (`model.py`'s `LRNet`), with the state_dict keys as our names:
//!
//! ```text
//! [N, T, 136] -> landmark dropout (training only: whole points, shared by all frames)
//!             -> gru           GRU(136 -> 32, bidirectional, batch first), initial state
//!                              `hidden_state` [2, 1, 32] (learned, repeated over the batch)
//!             -> final hidden states, forward then backward: [N, 64]
//!             -> dropout 0.5 -> x + dense.1.fn.net.3(dropout(relu(dense.1.fn.net.0(x))))
//!             -> dropout 0.5 -> dense.3 Linear(64 -> 2) -> softmax, index 1 = P(fake)
//! ```
//!
//! One dfscan weights file holds both streams, under `g1.` and `g2.` (`dfscan import --arch
//! lrnet G1.pth G2.pth`).
use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT, RNN};
use tch::{Device, Kind, Tensor};

use super::import::{map_torch, Mapped};
use crate::aggregate::judge::TrackWindows;
use super::weights::{NetworkConfig, Preprocess};

/// The source's `args_model.yaml` plus its block length (`args_inference.yaml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrnetConfig {
    /// Numbers per frame: 68 points x (x, y).
    pub feature_size: i64,
    /// GRU hidden units per direction.
    pub rnn_unit: i64,
    /// Hidden width of the residual feed-forward block.
    pub res_hidden: i64,
    /// Landmark dropout (whole points) during training.
    pub lm_dropout: f64,
    /// Dropout before and inside the dense head during training.
    pub fc_dropout: f64,
    /// Frames per block (g2 reads `block - 1` differences).
    pub block: i64,
}

impl LrnetConfig {
    /// The published models' configuration.
    pub fn source() -> Self {
        Self { feature_size: 136, rnn_unit: 32, res_hidden: 64, lm_dropout: 0.1, fc_dropout: 0.5, block: BLOCK }
    }

    /// Fewest frames a track needs for one block: the source's rule `30k < n - 30`.
    pub fn min_frames(&self) -> usize {
        self.block as usize + 1
    }
}

/// Frames per block in the published models.
pub const BLOCK: i64 = 30;
/// The side of the calibrated face box the landmarks are measured in (`landmarks::calibrate`):
/// a point p becomes (p - 200) / 200.
pub const FACE_SIDE: i64 = 400;

/// A track too short to make one block: LRNet gives it no score.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("too short for lrnet: {frames} consecutive frames of landmarks, it needs at least {needed}")]
pub struct TooShort {
    pub frames: usize,
    pub needed: usize,
}

/// One stream (g1 or g2): the source's `LRNet` module.
#[derive(Debug)]
pub struct Stream {
    cfg: LrnetConfig,
    hidden_state: Tensor,
    gru: nn::GRU,
    /// `dense.1.fn.net.0` and `dense.1.fn.net.3`: the residual feed-forward block.
    ff_in: nn::Linear,
    ff_out: nn::Linear,
    /// `dense.3`: the two-class head.
    head: nn::Linear,
}

impl Stream {
    pub fn new(p: &nn::Path, cfg: &LrnetConfig) -> Self {
        let hidden = cfg.rnn_unit;
        let gru_cfg = nn::RNNConfig { bidirectional: true, batch_first: true, ..Default::default() };
        let dense = p / "dense";
        let ff = &dense / 1 / "fn" / "net";
        Self {
            cfg: cfg.clone(),
            hidden_state: p.var("hidden_state", &[2, 1, hidden], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
            gru: nn::gru(p / "gru", cfg.feature_size, hidden, gru_cfg),
            ff_in: nn::linear(&ff / 0, 2 * hidden, cfg.res_hidden, Default::default()),
            ff_out: nn::linear(&ff / 3, cfg.res_hidden, 2 * hidden, Default::default()),
            head: nn::linear(&dense / 3, 2 * hidden, 2, Default::default()),
        }
    }

    /// The source's landmark dropout: in training, whole points (x and y together) are
    /// dropped with one mask for every frame and example of the batch, the rest scaled up.
    fn landmark_dropout(&self, xs: &Tensor, train: bool) -> Tensor {
        let p = self.cfg.lm_dropout;
        if !train || p == 0.0 {
            return xs.shallow_clone();
        }
        let points = self.cfg.feature_size / 2;
        let keep = Tensor::full([points], 1.0 - p, (Kind::Float, xs.device())).bernoulli();
        let mask = keep.repeat_interleave_self_int(2, 0, None).view([1, 1, self.cfg.feature_size]);
        xs * mask / (1.0 - p)
    }
}

impl ModuleT for Stream {
    /// `[N, T, 136]` -> `[N, 2]` class logits (softmax index 1 = P(fake)).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let n = xs.size()[0];
        let xs = self.landmark_dropout(xs, train);
        let h0 = nn::GRUState(self.hidden_state.repeat([1, n, 1]));
        let (_, nn::GRUState(h)) = self.gru.seq_init(&xs, &h0);
        // h: [2, N, 32], forward direction first (the source's torch.cat(list(hidden), 1)).
        let x = Tensor::cat(&[h.get(0), h.get(1)], 1).dropout(self.cfg.fc_dropout, train);
        let ff = self.ff_in.forward(&x).relu().dropout(self.cfg.fc_dropout, train);
        let x = (self.ff_out.forward(&ff) + x).dropout(self.cfg.fc_dropout, train);
        self.head.forward(&x)
    }
}

/// Both streams.
#[derive(Debug)]
pub struct Lrnet {
    pub cfg: LrnetConfig,
    pub g1: Stream,
    pub g2: Stream,
}

/// What LRNet says about one track.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrackScore {
    /// P(fake) of g1 per block.
    pub g1: Vec<f32>,
    /// P(fake) of g2 per block.
    pub g2: Vec<f32>,
    /// Block scores: the mean of g1's and g2's.
    pub blocks: Vec<f32>,
    /// The source's video score: the share of blocks with score >= 0.5.
    pub share_fake: f64,
    /// The mean block score.
    pub mean: f64,
}

impl Lrnet {
    pub fn new(p: &nn::Path, cfg: &LrnetConfig) -> Self {
        Self { cfg: cfg.clone(), g1: Stream::new(&(p / "g1"), cfg), g2: Stream::new(&(p / "g2"), cfg) }
    }

    /// P(fake) of g1 and of g2 for `blocks`, `[B, 30, 136]`: two `[B]` tensors.
    pub fn stream_probs(&self, blocks: &Tensor, train: bool) -> (Tensor, Tensor) {
        let p1 = self.g1.forward_t(blocks, train).softmax(1, Kind::Float).select(1, 1);
        let p2 = self.g2.forward_t(&differences(blocks), train).softmax(1, Kind::Float).select(1, 1);
        (p1, p2)
    }

    /// Scores a track from its landmarks, `[n, 136]` (one row per consecutive frame), or says
    /// it is too short ([`TooShort`]).
    pub fn score_track(&self, landmarks: &Tensor) -> anyhow::Result<TrackScore> {
        let blocks = blocks(landmarks, self.cfg.block)?;
        let device = self.g1.hidden_state.device();
        let (p1, p2) = tch::no_grad(|| self.stream_probs(&blocks.to_device(device), false));
        let g1 = Vec::<f32>::try_from(p1.to_device(Device::Cpu))?;
        let g2 = Vec::<f32>::try_from(p2.to_device(Device::Cpu))?;
        Ok(track_score(g1, g2))
    }
}

impl ModuleT for Lrnet {
    /// `[N, 30, 136]` blocks -> `[N]` logits of the block score (the mean of both streams'
    /// P(fake)), so that LRNet is a network like the others for `build_network` and import.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let (p1, p2) = self.stream_probs(xs, train);
        ((p1 + p2) / 2.0).clamp(1e-7, 1.0 - 1e-7).logit(None::<f64>)
    }
}

/// LRNet loaded from a dfscan weights file (both streams), ready to score tracks.
pub struct LrnetModel {
    pub id: super::ModelId,
    pub header: super::Header,
    pub net: Lrnet,
    _vs: nn::VarStore,
}

impl LrnetModel {
    /// Loads a weights file made by `dfscan import --arch lrnet` (or training), strictly: every
    /// parameter of both streams, nothing else.
    pub fn load(path: &std::path::Path, device: Device) -> anyhow::Result<Self> {
        let (id, header, net, vs) = super::load::load_network(path, device, |root, network| match network {
            super::NetworkConfig::Lrnet(cfg) => Ok(Lrnet::new(root, cfg)),
            other => anyhow::bail!("{} is not lrnet", other.arch_name()),
        })?;
        Ok(Self { id, header, net, _vs: vs })
    }
}

/// A track's windows for the judge: LRNet's block scores of each of the track's runs of
/// consecutive frames (`runs`: rows of 136 numbers per frame) that is long enough, in order;
/// with none long enough, no window and LRNet's "too short" note. `frames` counts every row.
pub fn track_windows(net: &Lrnet, id: u32, runs: &[&[Vec<f32>]]) -> Result<TrackWindows> {
    let needed = net.cfg.min_frames();
    let mut windows = Vec::new();
    for rows in runs.iter().filter(|r| r.len() >= needed) {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        windows.extend(net.score_track(&Tensor::from_slice(&flat).view([rows.len() as i64, -1]))?.blocks);
    }
    let note = windows.is_empty().then(|| TooShort { frames: runs.iter().map(|r| r.len()).max().unwrap_or(0), needed }.to_string());
    Ok(TrackWindows { id, frames: runs.iter().map(|r| r.len()).sum(), windows, note })
}

/// The source's video scores from per-block stream probabilities.
pub fn track_score(g1: Vec<f32>, g2: Vec<f32>) -> TrackScore {
    assert_eq!(g1.len(), g2.len(), "g1 and g2 score the same blocks");
    let blocks: Vec<f32> = g1.iter().zip(&g2).map(|(a, b)| (a + b) / 2.0).collect();
    let n = blocks.len().max(1) as f64;
    let share_fake = blocks.iter().filter(|&&s| s >= 0.5).count() as f64 / n;
    let mean = blocks.iter().map(|&s| s as f64).sum::<f64>() / n;
    TrackScore { g1, g2, blocks, share_fake, mean }
}

/// The blocks of a track's `[n, F]` landmarks: `[B, block, F]` with block k = rows
/// [k block, (k + 1) block) for every k with k block < n - block. Fewer than block + 1 rows
/// make no block: [`TooShort`].
pub fn blocks(landmarks: &Tensor, block: i64) -> Result<Tensor, TooShort> {
    let n = landmarks.size()[0];
    let starts: Vec<i64> = (0..).map(|k| k * block).take_while(|&s| s < n - block).collect();
    if starts.is_empty() {
        return Err(TooShort { frames: n as usize, needed: block as usize + 1 });
    }
    let landmarks = landmarks.to_kind(Kind::Float);
    Ok(Tensor::stack(&starts.iter().map(|&s| landmarks.narrow(0, s, block)).collect::<Vec<_>>(), 0))
}

/// g2's input: frame-to-frame differences of `[B, T, F]` blocks, `[B, T - 1, F]`.
pub fn differences(blocks: &Tensor) -> Tensor {
    let t = blocks.size()[1];
    blocks.narrow(1, 1, t - 1) - blocks.narrow(1, 0, t - 1)
}

/// Parses a landmark file of the source's format: one line of whitespace-separated numbers
/// per frame, all lines of the same length. Returns `[n, F]`.
pub fn parse_landmarks(text: &str) -> anyhow::Result<Tensor> {
    let mut rows = Vec::new();
    let mut width = None;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row: Vec<f32> = line
            .split_whitespace()
            .map(|v| v.parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))?;
        anyhow::ensure!(*width.get_or_insert(row.len()) == row.len(), "line {}: {} numbers, earlier lines {width:?}", i + 1, row.len());
        rows.extend(row);
    }
    let width = width.unwrap_or(0) as i64;
    Ok(Tensor::from_slice(&rows).view([-1, width.max(1)]))
}

// ---- Import: the rename table of `dfscan import --arch lrnet G1 G2` ----
//
// The authors' two state_dicts, g1 (landmarks) and g2 (their differences), each with the
// source's names, become one file with both streams under `g1.` and `g2.`.

pub fn import(g1: &BTreeMap<String, Tensor>, g2: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    let mut tensors = BTreeMap::new();
    for (stream, source) in [("g1", g1), ("g2", g2)] {
        tensors.extend(map_torch(source).into_iter().map(|(k, v)| (format!("{stream}.{k}"), v)));
    }
    Ok(Mapped {
        network: NetworkConfig::Lrnet(LrnetConfig::source()),
        preprocess: Preprocess::lrnet(),
        tensors,
        layout: "lrnet-state-dicts",
        left_out: Vec::new(),
        note: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_follow_the_source_rule() {
        let track = |n: i64| Tensor::arange(n, (Kind::Float, Device::Cpu)).view([n, 1]).repeat([1, 136]);
        for n in [0, 1, 30] {
            let err = blocks(&track(n), 30).unwrap_err();
            assert_eq!(err, TooShort { frames: n as usize, needed: 31 });
            assert!(err.to_string().contains("too short for lrnet"));
        }
        // range(0, n - 30, 30): 31..=60 frames give one block, 61 two, 757 twenty-five.
        for (n, b) in [(31, 1), (60, 1), (61, 2), (90, 2), (91, 3), (757, 25)] {
            let bl = blocks(&track(n), 30).unwrap();
            assert_eq!(bl.size(), [b, 30, 136], "{n} frames");
            // Block k starts at frame 30k.
            assert_eq!(bl.double_value(&[b - 1, 0, 0]), (30 * (b - 1)) as f64);
        }
        let d = differences(&blocks(&track(31), 30).unwrap());
        assert_eq!(d.size(), [1, 29, 136]);
        assert!(d.eq(1.0).all().int64_value(&[]) == 1, "frame t+1 minus frame t");
    }

    #[test]
    fn video_scores_are_share_and_mean() {
        let s = track_score(vec![0.9, 0.2, 0.6, 0.1], vec![0.3, 0.4, 0.4, 0.1]);
        assert_eq!(s.blocks, [0.6, 0.3, 0.5, 0.1]);
        assert_eq!(s.share_fake, 0.5);
        assert!((s.mean - 0.375).abs() < 1e-6);
    }

    #[test]
    fn names_are_the_checkpoint_keys() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = Stream::new(&vs.root(), &LrnetConfig::source());
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        let mut expected = vec![
            "hidden_state", "gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0",
            "gru.weight_ih_l0_reverse", "gru.weight_hh_l0_reverse", "gru.bias_ih_l0_reverse", "gru.bias_hh_l0_reverse",
            "dense.1.fn.net.0.weight", "dense.1.fn.net.0.bias", "dense.1.fn.net.3.weight", "dense.1.fn.net.3.bias",
            "dense.3.weight", "dense.3.bias",
        ];
        expected.sort();
        assert_eq!(names, expected);
        // 41,154 parameters per stream, as the reference says.
        assert_eq!(vs.variables().values().map(|t| t.numel()).sum::<usize>(), 41_154);
    }

    #[test]
    fn parses_the_source_format() {
        let t = parse_landmarks("1 2 3\n4 5 6\n\n").unwrap();
        assert_eq!(t.size(), [2, 3]);
        assert!(parse_landmarks("1 2\n3\n").is_err());
    }
}
