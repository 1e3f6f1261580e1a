//! The out-of-distribution model on a thread of its own, beside the models stage.
//!
//! A model run only for its risk (`--ood-model`, e.g. `vit`; the plain scan gets its risk
//! from the default model itself) judges the input, not each face, and may cost more than the
//! classifier it runs beside: on the bench clips (README, "Speed") the ViT with its heads took
//! about 70 ms a face against EfficientNet-Lite0's 17, and the models stage, one thread, was
//! the scan's bottleneck while a core stood idle. Here the models stage hands the OOD model's
//! crops over and goes on with its own models; the answers come back in order and are filed
//! with their faces before the input's line is built. The crops and batches are the ones the
//! models stage would have scored, so the risks are the same.
use anyhow::{anyhow, Result};
use crossbeam_channel::{Receiver, Sender};

use crate::models::FaceModel;

/// Batches waiting for the OOD model: when it falls behind, the models stage waits instead of
/// holding a long input's crops (`super::serve`).
const REQUEST_QUEUE: usize = 8;

/// The OOD model's crops of some faces of one input.
struct Request {
    job: usize,
    faces: Vec<usize>,
    crops: tch::Tensor,
}

/// Its risks of those faces, or why there are none.
pub(super) struct Answer {
    pub job: usize,
    pub faces: Vec<usize>,
    pub risks: Result<Vec<f32>, String>,
}

pub(super) struct RiskWorker {
    /// Side of the crops the model reads.
    pub input_size: i64,
    requests: Sender<Request>,
    answers: Receiver<Answer>,
}

impl RiskWorker {
    /// Moves `model` to a new thread ("risk"), which ends when the worker is dropped.
    pub fn spawn(model: FaceModel) -> Result<Self> {
        let input_size = model.input_size();
        let (requests, answers) = super::serve("risk", REQUEST_QUEUE, move |Request { job, faces, crops }| {
            let risks = super::guarded(|| model.score(&crops)?.ood_risk.ok_or_else(|| anyhow!("the OOD model gave no risk"))).map_err(|e| format!("{e:#}"));
            Answer { job, faces, risks }
        })?;
        Ok(Self { input_size, requests, answers })
    }

    /// Queues `crops` (`[N, S, S, 3]` u8, one per face of `faces`) of input `job`.
    pub fn send(&self, job: usize, faces: Vec<usize>, crops: tch::Tensor) -> Result<()> {
        self.requests.send(Request { job, faces, crops }).map_err(|_| anyhow!("the OOD model's thread has stopped"))
    }

    /// The next answer, if one is ready.
    pub fn try_recv(&self) -> Option<Answer> {
        self.answers.try_recv().ok()
    }

    /// The next answer, waiting for it.
    pub fn recv(&self) -> Result<Answer> {
        self.answers.recv().map_err(|_| anyhow!("the OOD model's thread has stopped"))
    }
}
