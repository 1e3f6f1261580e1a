//! Training on cached face crops ([`crate::crops`]): a fitted model ([`trainer`], which
//! minimises its network's [`objective`] and [`checkpoint`]s so a run can stop and resume
//! mid-epoch), the abnormality module fitted onto a trained ViT (with the attention VAE) or
//! U-Net ([`ood_trainer`]), linear probes on frozen features
//! ([`probe`]), the spectrum detector's classical classifiers ([`spectrum`]), LRNet's two GRU
//! streams fine-tuned on a landmark cache ([`lrnet`], folded by held-out origin in
//! [`lrnet_cv`]) and the cross-source validation that ranks them all ([`cv`]).
pub mod attribution;
pub mod attribution_eval;
pub mod checkpoint;
pub mod cv;
pub mod lrnet;
pub mod lrnet_cv;
pub mod objective;
pub mod ood_trainer;
pub mod probe;
pub mod spectrum;
pub mod trainer;
