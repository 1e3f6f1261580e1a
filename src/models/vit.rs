//! DeiT-tiny (distilled): a Vision Transformer with a class and a distillation token, as the
//! face classifier whose attention the out-of-distribution module reads (issue 5, seed 000).
//!
//! Papers: Dosovitskiy et al., "An Image is Worth 16x16 Words" (arXiv:2010.11929); Touvron et
//! al., "Training data-efficient image transformers & distillation through attention", ICML 2021
//! (arXiv:2012.12877). Reference code: timm's `deit_tiny_distilled_patch16_224`
//! (github.com/huggingface/pytorch-image-models@v0.9.16 `timm/models/deit.py`,
//! `VisionTransformerDistilled`, on `vision_transformer.py`'s `Block` and `Attention`), and the
//! seed's wrapper that exposes the last block's attention (github.com/FabrCas/master_thesis
//! `models.py`, `ViT_timm_EA`, prog_model 3).
//!
//! Parameter names are timm's state_dict keys (`cls_token`, `dist_token`, `pos_embed`,
//! `patch_embed.proj`, `blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`,
//! `head`, `head_dist`), so a timm checkpoint loads without renaming; only the two heads differ
//! in shape for ImageNet weights (1000 classes), and `dfscan import` drops them.
//!
//! Layout, as timm: the tokens are [CLS, DIST, 196 patches] plus a learnt position embedding;
//! pre-norm blocks `x + attn(norm1(x))`, `x + mlp(norm2(x))` (GELU, erf form); a final
//! LayerNorm; logits = mean of `head(CLS)` and `head_dist(DIST)` (timm's inference output).
//! timm's head dropout is not applied by the distilled head, so there is none here either.
use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::import::{is_keras, map_torch, Mapped};
use super::weights::{NetworkConfig, Preprocess};

/// Input side of the 224 models.
pub const INPUT_SIZE: i64 = 224;
/// timm's `IMAGENET_DEFAULT_MEAN` / `_STD` for DeiT, on RGB pixels scaled to [0, 1].
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];
/// Tokens before the patches: CLS and the distillation token.
pub const PREFIX_TOKENS: i64 = 2;

/// Hyper-parameters of a distilled DeiT (`VisionTransformerDistilled` arguments).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    pub image_size: i64,
    pub patch_size: i64,
    /// Token width (`embed_dim`).
    pub width: i64,
    pub depth: i64,
    pub heads: i64,
    /// Hidden width of each block's MLP (`mlp_ratio` x width).
    pub mlp_dim: i64,
    /// Outputs of `head` and `head_dist`: 2 for dfscan (real, fake), 1000 for ImageNet.
    pub classes: i64,
    /// timm builds DeiT's LayerNorms with eps 1e-6 (not PyTorch's 1e-5).
    pub ln_eps: f64,
    /// Stochastic depth at the last block, linearly less before it; training only. The seed
    /// trained with timm's default 0.
    pub drop_path: f64,
}

impl VitConfig {
    /// `deit_tiny_distilled_patch16_224` with dfscan's two classes.
    pub fn deit_tiny_distilled() -> Self {
        Self {
            image_size: INPUT_SIZE,
            patch_size: 16,
            width: 192,
            depth: 12,
            heads: 3,
            mlp_dim: 768,
            classes: 2,
            ln_eps: 1e-6,
            drop_path: 0.0,
        }
    }

    /// Patches per side (14 for 224 / 16).
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }

    /// Sequence length: CLS, DIST and one token per patch (198 for DeiT-tiny).
    pub fn tokens(&self) -> i64 {
        self.grid() * self.grid() + PREFIX_TOKENS
    }
}

/// timm's init for transformer linears: normal(0, 0.02) weights (timm truncates at +-2, which
/// at this std never happens), zero bias.
fn linear(p: nn::Path, c_in: i64, c_out: i64) -> nn::Linear {
    let cfg = nn::LinearConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, bs_init: Some(nn::Init::Const(0.0)), bias: true };
    nn::linear(p, c_in, c_out, cfg)
}

fn layer_norm(p: nn::Path, width: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![width], nn::LayerNormConfig { eps, ..Default::default() })
}

/// Drops each sample's residual branch with probability `p` in training, rescaling survivors
/// (timm's `DropPath`).
fn drop_path(xs: Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return xs;
    }
    let keep = 1.0 - p;
    let mask = (Tensor::rand([xs.size()[0], 1, 1], (xs.kind(), xs.device())) + keep).floor();
    xs * mask / keep
}

/// Multi-head self-attention with one fused `qkv` projection (timm's `Attention`).
#[derive(Debug)]
struct Attention {
    qkv: nn::Linear,
    proj: nn::Linear,
    heads: i64,
}

impl Attention {
    fn new(p: nn::Path, cfg: &VitConfig) -> Self {
        Self { qkv: linear(&p / "qkv", cfg.width, 3 * cfg.width), proj: linear(&p / "proj", cfg.width, cfg.width), heads: cfg.heads }
    }

    /// `[N, T, D]` tokens to `[N, T, D]`, with the attention probabilities `[N, heads, T, T]`.
    fn forward(&self, xs: &Tensor) -> (Tensor, Tensor) {
        let (n, t, d) = xs.size3().expect("tokens are [N, T, D]");
        let head_dim = d / self.heads;
        let qkv = xs.apply(&self.qkv).reshape([n, t, 3, self.heads, head_dim]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let probs = (q * (head_dim as f64).powf(-0.5)).matmul(&k.transpose(-2, -1)).softmax(-1, Kind::Float);
        let out = probs.matmul(&v).transpose(1, 2).reshape([n, t, d]).apply(&self.proj);
        (out, probs)
    }
}

/// Pre-norm transformer block (timm's `Block` without layer scale).
#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    drop_path: f64,
}

impl Block {
    fn new(p: nn::Path, cfg: &VitConfig, drop_path: f64) -> Self {
        let mlp = &p / "mlp";
        Self {
            norm1: layer_norm(&p / "norm1", cfg.width, cfg.ln_eps),
            attn: Attention::new(&p / "attn", cfg),
            norm2: layer_norm(&p / "norm2", cfg.width, cfg.ln_eps),
            fc1: linear(&mlp / "fc1", cfg.width, cfg.mlp_dim),
            fc2: linear(&mlp / "fc2", cfg.mlp_dim, cfg.width),
            drop_path,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let (attended, probs) = self.attn.forward(&xs.apply(&self.norm1));
        let xs = xs + drop_path(attended, self.drop_path, train);
        let mlp = xs.apply(&self.norm2).apply(&self.fc1).gelu("none").apply(&self.fc2);
        (&xs + drop_path(mlp, self.drop_path, train), probs)
    }
}

/// What the classifier tells the out-of-distribution module about a batch.
#[derive(Debug)]
pub struct VitOutput {
    /// `[N, classes]`: mean of the CLS and distillation heads; class 1 is "fake".
    pub logits: Tensor,
    /// `[N, 1, S, S]`: the last block's attention of CLS to the patches, averaged over heads,
    /// as a `grid` x `grid` map bilinearly upsampled to the input side (align_corners false, as
    /// the seed's `F.interpolate`). Values are attention probabilities in [0, 1]; the map sums to
    /// (S / grid)^2 = 256 times CLS's attention mass on the patches (bilinear upsampling by an
    /// integer factor spreads each patch's value over exactly that many pixels).
    pub attention: Tensor,
    /// `[N, width]`: mean over all tokens (CLS and DIST included) after the final LayerNorm.
    pub encoding: Tensor,
}

impl VitOutput {
    /// Softmax probabilities `[N, classes]`.
    pub fn probs(&self) -> Tensor {
        self.logits.softmax(-1, Kind::Float)
    }
}

/// The logit of P(fake) = softmax(logits)[.., 1] for two-class logits: l1 - l0.
pub fn fake_logit(logits: &Tensor) -> Tensor {
    logits.select(1, 1) - logits.select(1, 0)
}

/// Distilled DeiT: `[N, 3, S, S]` normalised as [`IMAGENET_MEAN`] / [`IMAGENET_STD`] to a
/// [`VitOutput`]. As a frame model (`ModuleT`) it returns `[N]` logits of "fake".
#[derive(Debug)]
pub struct Vit {
    config: VitConfig,
    patch_embed: nn::Conv2D,
    cls_token: Tensor,
    dist_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    head: nn::Linear,
    head_dist: nn::Linear,
}

impl Vit {
    pub fn new(p: &nn::Path, cfg: &VitConfig) -> Self {
        let patch = nn::ConvConfig { stride: cfg.patch_size, ..Default::default() };
        let randn = |stdev| nn::Init::Randn { mean: 0.0, stdev };
        let blocks_path = p / "blocks";
        let blocks = (0..cfg.depth)
            .map(|i| {
                let rate = if cfg.depth > 1 { cfg.drop_path * i as f64 / (cfg.depth - 1) as f64 } else { cfg.drop_path };
                Block::new(&blocks_path / i, cfg, rate)
            })
            .collect();
        Self {
            config: cfg.clone(),
            patch_embed: nn::conv2d(p / "patch_embed" / "proj", 3, cfg.width, cfg.patch_size, patch),
            // timm: normal(std 1e-6) for cls_token, trunc_normal(std .02) for the other two.
            cls_token: p.var("cls_token", &[1, 1, cfg.width], randn(1e-6)),
            dist_token: p.var("dist_token", &[1, 1, cfg.width], randn(0.02)),
            pos_embed: p.var("pos_embed", &[1, cfg.tokens(), cfg.width], randn(0.02)),
            blocks,
            norm: layer_norm(p / "norm", cfg.width, cfg.ln_eps),
            head: linear(p / "head", cfg.width, cfg.classes),
            head_dist: linear(p / "head_dist", cfg.width, cfg.classes),
        }
    }

    pub fn config(&self) -> &VitConfig {
        &self.config
    }

    /// The tokens after the final LayerNorm `[N, T, D]` and the last block's attention
    /// probabilities `[N, heads, T, T]`.
    fn tokens_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let n = xs.size()[0];
        let patches = xs.apply(&self.patch_embed).flatten(2, -1).transpose(1, 2);
        let prefix = [self.cls_token.expand([n, -1, -1], false), self.dist_token.expand([n, -1, -1], false)];
        let mut x = Tensor::cat(&[&prefix[0], &prefix[1], &patches], 1) + &self.pos_embed;
        let mut last = None;
        for block in &self.blocks {
            let (next, probs) = block.forward_t(&x, train);
            x = next;
            last = Some(probs);
        }
        (x.apply(&self.norm), last.expect("a ViT has at least one block"))
    }

    /// timm's inference output: the mean of `head(CLS)` and `head_dist(DIST)`.
    fn logits(&self, tokens: &Tensor) -> Tensor {
        (tokens.select(1, 0).apply(&self.head) + tokens.select(1, 1).apply(&self.head_dist)) / 2.0
    }

    /// Logits, attention map and encoding of a batch (see [`VitOutput`]).
    pub fn forward_all_t(&self, xs: &Tensor, train: bool) -> VitOutput {
        let (tokens, probs) = self.tokens_t(xs, train);
        let logits = self.logits(&tokens);
        let encoding = tokens.mean_dim(1i64, false, Kind::Float);
        let attention = cls_patch_attention(&probs, self.config.grid(), self.config.image_size);
        VitOutput { logits, attention, encoding }
    }
}

/// CLS -> patch attention `[N, 1, size, size]` from a block's probabilities `[N, H, T, T]`.
fn cls_patch_attention(probs: &Tensor, grid: i64, size: i64) -> Tensor {
    let n = probs.size()[0];
    let cls = probs.select(2, 0).narrow(-1, PREFIX_TOKENS, grid * grid).mean_dim(1i64, false, Kind::Float);
    cls.view([n, 1, grid, grid]).upsample_bilinear2d([size, size], false, None, None)
}

impl ModuleT for Vit {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        fake_logit(&self.logits(&self.tokens_t(xs, train).0))
    }
}

// ---- Import: the rename table of `dfscan import --arch deit-tiny` ----
//
// timm's `deit_tiny_distilled_patch16_224` state_dict (names already ours). Heads whose class
// count is not dfscan's two (ImageNet's 1000) are dropped and said so in the provenance: such a
// file is a training start, not a scan model. A two-class timm checkpoint keeps its heads and
// is a complete scan model.

pub fn import_deit_tiny(source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    map_deit(VitConfig::deit_tiny_distilled(), source)
}

fn map_deit(config: VitConfig, source: &BTreeMap<String, Tensor>) -> Result<Mapped> {
    ensure!(!is_keras(source), "deit-tiny imports timm's PyTorch state_dict, not Keras files");
    let mut tensors = map_torch(source);
    let mut left_out = Vec::new();
    let mut dropped = Vec::new();
    for head in ["head", "head_dist"] {
        let (weight, bias) = (format!("{head}.weight"), format!("{head}.bias"));
        let classes = tensors
            .get(&weight)
            .with_context(|| format!("no {weight}: not the state_dict of timm's deit_tiny_distilled_patch16_224"))?
            .size()[0];
        if classes != config.classes {
            tensors.remove(&weight);
            tensors.remove(&bias);
            dropped.push(format!("{head} ({classes} classes)"));
            left_out.extend([weight, bias]);
        }
    }
    let note = if dropped.is_empty() {
        String::new()
    } else {
        format!(
            "; {} dropped, the {}-class heads left to training (init_from_pretrained), so a training start, not a scan model",
            dropped.join(" and "),
            config.classes
        )
    };
    Ok(Mapped { network: NetworkConfig::Vit(config), preprocess: Preprocess::deit(), tensors, layout: "timm-state-dict", left_out, note })
}


#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    /// timm's `deit_tiny_distilled_patch16_224().state_dict()` keys, in its order.
    fn timm_keys(depth: i64) -> Vec<String> {
        let mut keys: Vec<String> =
            ["cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"].map(String::from).to_vec();
        for i in 0..depth {
            for layer in ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"] {
                keys.extend(["weight", "bias"].map(|f| format!("blocks.{i}.{layer}.{f}")));
            }
        }
        keys.extend(["norm.weight", "norm.bias", "head.weight", "head.bias", "head_dist.weight", "head_dist.bias"].map(String::from));
        keys
    }

    #[test]
    fn names_and_size_match_timm() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = Vit::new(&vs.root(), &VitConfig { classes: 1000, ..VitConfig::deit_tiny_distilled() });
        let mut ours: Vec<String> = vs.variables().into_keys().collect();
        let mut theirs = timm_keys(12);
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
        // timm reports 5,910,800 parameters for deit_tiny_distilled_patch16_224.
        let total: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(total, 5_910_800);
        assert_eq!(vs.variables()["pos_embed"].size(), [1, 198, 192]);
        assert_eq!(vs.variables()["blocks.11.attn.qkv.weight"].size(), [576, 192]);
    }

    #[test]
    fn tokens_logits_attention_and_encoding() {
        tch::manual_seed(0);
        let cfg = VitConfig::deit_tiny_distilled();
        assert_eq!(cfg.tokens(), 198);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Vit::new(&vs.root(), &cfg);
        let xs = Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu));
        let _guard = tch::no_grad_guard();
        let (tokens, probs) = net.tokens_t(&xs, false);
        assert_eq!(tokens.size(), [2, 198, 192]);
        assert_eq!(probs.size(), [2, 3, 198, 198]);

        let out = net.forward_all_t(&xs, false);
        assert_eq!(out.logits.size(), [2, 2]);
        assert_eq!(out.encoding.size(), [2, 192]);
        assert_eq!(out.attention.size(), [2, 1, 224, 224]);
        assert!(out.attention.min().double_value(&[]) >= 0.0 && out.attention.max().double_value(&[]) <= 1.0);
        // CLS's attention mass on the 196 patches (the rest went to CLS and DIST), per image.
        let mass = probs.select(2, 0).narrow(-1, 2, 196).sum_dim_intlist(-1i64, false, Kind::Float).mean_dim(1i64, false, Kind::Float);
        let map_sum = out.attention.sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float) / 256.0;
        for i in 0..2 {
            let (m, s) = (mass.double_value(&[i]), map_sum.double_value(&[i]));
            assert!(m > 0.0 && m <= 1.0 && (m - s).abs() < 1e-4, "image {i}: mass {m}, map {s}");
        }
        // The frame-model output is logit(softmax(logits)[1]).
        let p_fake = out.probs().select(1, 1);
        let from_module = net.forward_t(&xs, false).sigmoid();
        assert!(p_fake.allclose(&from_module, 1e-5, 1e-6, false));
    }

    /// Writes the variables of a fresh DeiT with `classes`-class heads as a timm-style state_dict.
    fn timm_checkpoint(path: &std::path::Path, classes: i64) -> nn::VarStore {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = Vit::new(&vs.root(), &VitConfig { classes, ..VitConfig::deit_tiny_distilled() });
        let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        Tensor::write_safetensors(&vars, path).unwrap();
        vs
    }

    #[test]
    fn timm_state_dicts_import_by_name() {
        use super::super::{import, init_from_pretrained, Arch, FaceModel};
        let dir = tempfile::tempdir().unwrap();
        let no_python = std::path::Path::new("/nonexistent/python3"); // safetensors need none
        let deit = VitConfig::deit_tiny_distilled();

        // ImageNet: both 1000-class heads are dropped, the rest is a training start.
        let (src, out) = (dir.path().join("imagenet.safetensors"), dir.path().join("deit-imagenet.safetensors"));
        let imagenet = timm_checkpoint(&src, 1000);
        let summary = import::import(Arch::DeitTiny, &[&src], &out, no_python).unwrap();
        assert_eq!(summary.tensors, 155 - 4);
        assert!(summary.header.provenance.contains("head (1000 classes) and head_dist (1000 classes) dropped"), "{}", summary.header.provenance);
        assert_eq!(summary.header.network.arch_name(), "deit-tiny");
        let mut start = nn::VarStore::new(Device::Cpu);
        let _net = Vit::new(&start.root(), &deit);
        let missing = init_from_pretrained(&mut start, &out).unwrap();
        assert_eq!(missing, ["head.bias", "head.weight", "head_dist.bias", "head_dist.weight"]);
        let key = "blocks.7.attn.qkv.weight";
        assert!(start.variables()[key].equal(&imagenet.variables()[key]));
        assert!(FaceModel::load(&out, Device::Cpu).is_err(), "a headless import is no scan model");

        // Two classes: the heads are kept and the file is a complete scan model.
        let (src, out) = (dir.path().join("two.safetensors"), dir.path().join("deit-two.safetensors"));
        let two = timm_checkpoint(&src, 2);
        let summary = import::import(Arch::DeitTiny, &[&src], &out, no_python).unwrap();
        assert_eq!(summary.tensors, 155);
        let model = FaceModel::load(&out, Device::Cpu).unwrap();
        assert_eq!(model.id.name, "deit-tiny");
        let crops = Tensor::full([2, 224, 224, 3], 128, (Kind::Uint8, Device::Cpu));
        assert_eq!(model.fake_logits(&crops).size(), [2]);
        assert!(two.variables()["head_dist.weight"].size() == [2, 192]);
    }
}
