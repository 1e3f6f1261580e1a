//! Training on cached face crops ([`crate::crops`]): a fitted model ([`trainer`], which
//! [`checkpoint`]s so a run can stop and resume mid-epoch), the abnormality module fitted with
//! the attention VAE onto a trained ViT ([`ood_trainer`]), linear probes on frozen features
//! ([`probe`]), the spectrum detector's classical classifiers ([`spectrum`]), LRNet's two GRU
//! streams fine-tuned on a landmark cache ([`lrnet`], folded by held-out origin in
//! [`lrnet_cv`]) and the cross-source validation that ranks them all ([`cv`]).
pub mod checkpoint;
pub mod cv;
pub mod lrnet;
pub mod lrnet_cv;
pub mod ood_trainer;
pub mod probe;
pub mod spectrum;
pub mod trainer;
