//! Evaluation of scored, labelled splits: binary metrics (AUC, AP, EER, log loss, confusion),
//! out-of-distribution metrics (AUROC, AUPR-In/Out, FPR at 95% TPR, detection error), and ROC
//! plots. Pure functions of scores and labels: nothing here prints, and only [`plot`] writes.
//! [`evaluate`] runs a model over a crop cache and computes them all; [`ood_eval`] compares
//! out-of-distribution detectors on it.
pub mod evaluate;
pub mod metrics;
pub mod ood_eval;
pub mod plot;

pub use metrics::{
    aupr_in, aupr_out, average_precision, detection_error, eer, fpr_at_tpr, log_loss, roc_auc,
    roc_curve, BinaryMetrics, Confusion, Eer, OodMetrics, RocPoint,
};
pub use plot::{roc_png, RocSeries, ROC_PNG_SIZE};
