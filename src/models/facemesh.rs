//! MediaPipe FaceMesh: 468 3-D face landmarks and a face-presence score from a face crop.
//!
//! Paper: Kartynnik, Ablavatski, Grishchenko, Grundmann, "Real-time Facial Surface Geometry
//! from Monocular Video on Mobile GPUs", arXiv:1907.06724. Reference code: the PyTorch port of
//! Google's TFLite model, github.com/thepowerfuldeez/facemesh.pytorch@348400f (`facemesh.py`);
//! its weights (Apache-2.0) are in models/third_party/facemesh/ and load under the port's names
//! (`backbone.N`, `coord_head.N`, `conf_head.N`, blocks `convs.{0,1}` and `act`) after
//! `dfscan import --arch facemesh`.
//!
//! Input: a 192x192 RGB crop of the face with 25% of the box added on every side
//! ([`crop_geometry`]), pixels scaled to [-1, 1]. BatchNorm was folded into the convolutions by
//! TFLite; TFLite's 'same' padding for stride 2 is reproduced as the port does (reflection pad
//! (1, 0, 1, 0) before the first conv, zero pad (0, 2, 0, 2) before stride-2 depthwise convs).
//! Output: 468 points (x, y, z) in pixels of the 192x192 input, and a face-flag logit.
//!
//! [`IBUG68`] picks 68 of the 468 points in the iBUG 300-W order that LRNet reads.
use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

use super::import::{map_torch, Mapped};
use super::weights::{NetworkConfig, Preprocess};

/// Side of the network input.
pub const INPUT_SIZE: i64 = 192;
/// Fraction of the face box added on each side before the crop is resized to the input.
pub const MARGIN: f32 = 0.25;
/// Number of mesh points.
pub const POINTS: i64 = 468;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaceMeshConfig {
    pub points: i64,
}

impl FaceMeshConfig {
    pub fn mediapipe() -> Self {
        Self { points: POINTS }
    }
}

/// PReLU with one slope per channel, the port's `nn.PReLU(C)` (`weight`).
#[derive(Debug)]
struct PRelu {
    weight: Tensor,
}

impl PRelu {
    fn new(p: nn::Path, channels: i64) -> Self {
        Self { weight: p.var("weight", &[channels], nn::Init::Const(0.25)) }
    }
}

impl Module for PRelu {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.prelu(&self.weight)
    }
}

/// The port's `FaceMeshBlock`: depthwise 3x3 + pointwise 1x1, added to the input (max-pooled
/// at stride 2, zero-padded on channels when they grow), then PReLU.
#[derive(Debug)]
struct Block {
    stride: i64,
    channel_pad: i64,
    depthwise: nn::Conv2D,
    pointwise: nn::Conv2D,
    act: PRelu,
}

impl Block {
    fn new(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let convs = &p / "convs";
        let padding = if stride == 2 { 0 } else { 1 };
        let dw = nn::ConvConfig { stride, padding, groups: c_in, ..Default::default() };
        Self {
            stride,
            channel_pad: c_out - c_in,
            depthwise: nn::conv2d(&convs / 0, c_in, c_in, 3, dw),
            pointwise: nn::conv2d(&convs / 1, c_in, c_out, 1, Default::default()),
            act: PRelu::new(&p / "act", c_out),
        }
    }
}

impl Module for Block {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let (h, x) = if self.stride == 2 {
            (xs.constant_pad_nd([0, 2, 0, 2]), super::ops::max_pool(xs, 2, false))
        } else {
            (xs.shallow_clone(), xs.shallow_clone())
        };
        let x = if self.channel_pad > 0 { x.constant_pad_nd([0, 0, 0, 0, 0, self.channel_pad]) } else { x };
        self.act.forward(&(h.apply(&self.depthwise).apply(&self.pointwise) + x))
    }
}

/// The network: `[N, 3, 192, 192]` in [-1, 1] -> `[N, 468 * 3 + 1]`: the points (x, y, z per
/// point, pixels of the input) then the face-flag logit. [`FaceMesh::landmarks`] splits them.
#[derive(Debug)]
pub struct FaceMesh {
    cfg: FaceMeshConfig,
    conv0: nn::Conv2D,
    act0: PRelu,
    backbone: Vec<Block>,
    coord_blocks: Vec<Block>,
    coord_conv3: nn::Conv2D,
    coord_act4: PRelu,
    coord_block5: Block,
    coord_conv6: nn::Conv2D,
    conf_block0: Block,
    conf_conv1: nn::Conv2D,
    conf_act2: PRelu,
    conf_block3: Block,
    conf_conv4: nn::Conv2D,
}

impl FaceMesh {
    pub fn new(p: &nn::Path, cfg: &FaceMeshConfig) -> Self {
        let b = p / "backbone";
        // backbone.2 .. backbone.15: (in, out, stride).
        let spec = [
            (16, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1),
            (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1), (128, 128, 2), (128, 128, 1), (128, 128, 1),
        ];
        let backbone = spec.iter().enumerate().map(|(i, &(ci, co, s))| Block::new(&b / (i + 2), ci, co, s)).collect();
        let c = p / "coord_head";
        let f = p / "conf_head";
        let conv = |path: nn::Path, ci, co, k, stride| nn::conv2d(path, ci, co, k, nn::ConvConfig { stride, ..Default::default() });
        Self {
            cfg: cfg.clone(),
            conv0: conv(&b / 0, 3, 16, 3, 2),
            act0: PRelu::new(&b / 1, 16),
            backbone,
            coord_blocks: vec![Block::new(&c / 0, 128, 128, 2), Block::new(&c / 1, 128, 128, 1), Block::new(&c / 2, 128, 128, 1)],
            coord_conv3: conv(&c / 3, 128, 32, 1, 1),
            coord_act4: PRelu::new(&c / 4, 32),
            coord_block5: Block::new(&c / 5, 32, 32, 1),
            coord_conv6: conv(&c / 6, 32, cfg.points * 3, 3, 1),
            conf_block0: Block::new(&f / 0, 128, 128, 2),
            conf_conv1: conv(&f / 1, 128, 32, 1, 1),
            conf_act2: PRelu::new(&f / 2, 32),
            conf_block3: Block::new(&f / 3, 32, 32, 1),
            conf_conv4: conv(&f / 4, 32, 1, 3, 1),
        }
    }

    /// Points `[N, 468, 3]` (pixels of the 192x192 input) and face-flag logits `[N]` for
    /// `[N, 3, 192, 192]` input in [-1, 1] ([`to_input`]).
    pub fn landmarks(&self, xs: &Tensor) -> (Tensor, Tensor) {
        let out = self.forward_t(xs, false);
        let n = out.size()[0];
        let points = out.narrow(1, 0, self.cfg.points * 3).view([n, self.cfg.points, 3]);
        (points, out.select(1, self.cfg.points * 3))
    }
}

impl ModuleT for FaceMesh {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let n = xs.size()[0];
        let mut x = self.act0.forward(&xs.reflection_pad2d([1, 0, 1, 0]).apply(&self.conv0));
        for block in &self.backbone {
            x = block.forward(&x);
        }
        let mut r = x.shallow_clone();
        for block in &self.coord_blocks {
            r = block.forward(&r);
        }
        let r = self.coord_block5.forward(&self.coord_act4.forward(&r.apply(&self.coord_conv3))).apply(&self.coord_conv6);
        let c = self.conf_block0.forward(&x).apply(&self.conf_conv1);
        let c = self.conf_block3.forward(&self.conf_act2.forward(&c)).apply(&self.conf_conv4);
        Tensor::cat(&[r.view([n, -1]), c.view([n, -1])], 1)
    }
}

/// u8 RGB crops `[N, 192, 192, 3]` -> network input `[N, 3, 192, 192]` in [-1, 1] (the port's
/// `x / 127.5 - 1`).
pub fn to_input(crops: &Tensor, device: Device) -> Tensor {
    crops.to_device(device).permute([0, 3, 1, 2]).to_kind(Kind::Float) / 127.5 - 1.0
}

/// Where FaceMesh's crop of a face lies in the frame: the square `faces::square_crop` cuts at
/// [`MARGIN`] (side = max(w, h) x 1.5, centred on the box, rounded as it rounds), as
/// (left, top, side) in frame pixels.
pub fn crop_geometry(bbox: &crate::faces::FaceBox) -> (f32, f32, f32) {
    let side = (bbox.w.max(bbox.h) * (1.0 + 2.0 * MARGIN)).round().max(1.0);
    let cx = bbox.x + bbox.w / 2.0;
    let cy = bbox.y + bbox.h / 2.0;
    ((cx - side / 2.0).round(), (cy - side / 2.0).round(), side)
}

/// A face's FaceMesh crop at the network's input side (black where it leaves the frame).
pub fn crop(frame: &crate::decode::Frame, bbox: &crate::faces::FaceBox) -> anyhow::Result<Vec<u8>> {
    crate::faces::square_crop(frame, bbox, MARGIN, INPUT_SIZE as i32)
}

/// Points in pixels of the 192x192 input, `[.., 2+]`, to frame pixels for the face at `bbox`.
pub fn to_frame(points: &[[f32; 2]], bbox: &crate::faces::FaceBox) -> Vec<[f32; 2]> {
    let (left, top, side) = crop_geometry(bbox);
    let scale = side / INPUT_SIZE as f32;
    points.iter().map(|[x, y]| [left + x * scale, top + y * scale]).collect()
}

/// The 68 iBUG 300-W points (dlib's and FAN's order, what LRNet reads) as FaceMesh indices.
///
/// iBUG's points are named anatomically, FaceMesh's are vertices of MediaPipe's canonical face
/// model (numbered in `canonical_face_model_uv_visualization.png`, the `mesh_map.jpg` of the
/// port): each entry is the vertex at the same anatomical place, by hand, following the
/// commonly used MediaPipe-to-dlib correspondence. "Right" and "left" are the subject's, so
/// the subject's right side is on the image's left. Approximate where the two definitions
/// differ: iBUG's jaw line follows the visible outline, while a mesh vertex stays on the
/// surface (at a profile the outline moves across vertices); 31-35 take the nearest vertices
/// of the nostril base. `tests/facemesh.rs` checks the regions on a real face.
#[rustfmt::skip]
pub const IBUG68: [usize; 68] = [
    // 0-16 jaw, from the subject's right temple level down to the chin (8 = 152) and up to the left.
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
    // 17-21 right brow, outer to inner; 22-26 left brow, inner to outer (upper brow edge).
    70, 63, 105, 66, 107,
    336, 296, 334, 293, 300,
    // 27-30 nose bridge, between the eyes down to the tip.
    168, 197, 5, 4,
    // 31-35 base of the nose, right wing to left wing through the subnasale (33 = 2).
    75, 97, 2, 326, 305,
    // 36-41 right eye: outer corner, upper lid (2), inner corner, lower lid (2).
    33, 160, 158, 133, 153, 144,
    // 42-47 left eye: inner corner, upper lid (2), outer corner, lower lid (2).
    362, 385, 387, 263, 373, 380,
    // 48-59 outer lips: right corner, upper lip to the left corner (54), lower lip back.
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    // 60-67 inner lips: right corner, upper, left corner (64), lower.
    78, 82, 13, 312, 308, 317, 14, 87,
];

/// The 68 iBUG points of one face's 468 FaceMesh points (x, y).
pub fn ibug68(points: &[[f32; 2]]) -> Vec<[f32; 2]> {
    IBUG68.iter().map(|&i| points[i]).collect()
}

/// FaceMesh loaded from a dfscan weights file (made by `dfscan import --arch facemesh`).
pub struct FaceMeshModel {
    pub id: super::ModelId,
    pub net: FaceMesh,
    device: Device,
    _vs: nn::VarStore,
}

/// One face's landmarks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaceLandmarks {
    /// The 468 mesh points (x, y) in frame pixels.
    pub mesh: Vec<[f32; 2]>,
    /// The 68 iBUG points (x, y) in frame pixels ([`IBUG68`]).
    pub ibug68: Vec<[f32; 2]>,
    /// P(a face is in the crop), from the face-flag head.
    pub presence: f32,
}

impl FaceMeshModel {
    pub fn load(path: &std::path::Path, device: Device) -> anyhow::Result<Self> {
        let (id, _, net, vs) = super::load::load_network(path, device, |root, network| match network {
            super::NetworkConfig::FaceMesh(cfg) => Ok(FaceMesh::new(root, cfg)),
            other => anyhow::bail!("{} is not facemesh", other.arch_name()),
        })?;
        Ok(Self { id, net, device, _vs: vs })
    }

    /// Landmarks of the faces at `boxes` in `frame`, one batch.
    pub fn detect(&self, frame: &crate::decode::Frame, boxes: &[crate::faces::FaceBox]) -> anyhow::Result<Vec<FaceLandmarks>> {
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let crops = boxes.iter().map(|b| crop(frame, b)).collect::<anyhow::Result<Vec<_>>>()?;
        let batch = super::crop_batch(&crops, INPUT_SIZE);
        let (points, flags) = tch::no_grad(|| self.net.landmarks(&to_input(&batch, self.device)));
        let points = Vec::<f32>::try_from(points.to_device(Device::Cpu).contiguous().view([-1]))?;
        let flags = Vec::<f32>::try_from(flags.sigmoid().to_device(Device::Cpu))?;
        Ok(boxes
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let face = &points[i * POINTS as usize * 3..(i + 1) * POINTS as usize * 3];
                let xy: Vec<[f32; 2]> = face.chunks(3).map(|p| [p[0], p[1]]).collect();
                let mesh = to_frame(&xy, b);
                FaceLandmarks { ibug68: ibug68(&mesh), mesh, presence: flags[i] }
            })
            .collect())
    }
}

// ---- Import: the rename table of `dfscan import --arch facemesh` ----
//
// The facemesh.pytorch port's state_dict: names already ours.

pub fn import(source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    Ok(Mapped {
        network: NetworkConfig::FaceMesh(FaceMeshConfig::mediapipe()),
        preprocess: Preprocess::facemesh(),
        tensors: map_torch(source),
        layout: "facemesh-pytorch-state-dict",
        left_out: Vec::new(),
        note: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_size_are_the_ports() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = FaceMesh::new(&vs.root(), &FaceMeshConfig::mediapipe());
        // 604,685 parameters, as the reference says.
        assert_eq!(vs.variables().values().map(|t| t.numel()).sum::<usize>(), 604_685);
        let vars = vs.variables();
        for key in ["backbone.0.weight", "backbone.1.weight", "backbone.15.act.weight", "coord_head.6.weight", "conf_head.4.bias", "conf_head.3.convs.0.weight"] {
            assert!(vars.contains_key(key), "{key}");
        }
        let (points, flag) = net.landmarks(&Tensor::zeros([2, 3, 192, 192], (Kind::Float, Device::Cpu)));
        assert_eq!(points.size(), [2, 468, 3]);
        assert_eq!(flag.size(), [2]);
    }

    #[test]
    fn the_68_indices_are_distinct_mesh_points() {
        let mut seen = std::collections::HashSet::new();
        assert!(IBUG68.iter().all(|&i| i < POINTS as usize && seen.insert(i)));
    }
}
