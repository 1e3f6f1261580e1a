//! The attribution model on a thread of its own, beside the models stage.
//!
//! A line names a fake's family and method, so the attribution model reads an input's kept
//! crops only once the input is judged fake, at its end (`scoring::JobState::finish`). On the
//! models stage's thread that was about 1.3 CPU s of the bench clips' scan, during which
//! nothing else moved while the other core was often idle. Here the models stage hands the
//! crops over, holds the judged input's line and goes on with the next input; the answer
//! completes the line, and lines still leave in input order (`stages::Outbox`). The batches
//! are the ones the models stage kept, so the numbers are the same.
use anyhow::{anyhow, Result};
use crossbeam_channel::{Receiver, Sender};

use crate::models::attribution::{AttributionModel, CropAttribution};
use crate::models::crop_batch;

/// Inputs waiting for the model (`super::serve`); the models stage holds at most a few judged
/// lines (`stages::Outbox`), so this never fills in practice.
const REQUEST_QUEUE: usize = 8;

/// An input's kept crops, in the batches they came in: `(face, crop)`.
pub(super) type Batches = Vec<Vec<(usize, Vec<u8>)>>;

struct Request {
    job: usize,
    batches: Batches,
}

/// The model's probabilities for those faces, `(face, probabilities)`, or why there are none.
pub(super) struct Answer {
    pub job: usize,
    pub faces: Result<Vec<(usize, CropAttribution)>, String>,
}

pub(super) struct AttributionWorker {
    requests: Sender<Request>,
    answers: Receiver<Answer>,
}

impl AttributionWorker {
    /// Moves `model` to a new thread ("attribution"), which ends when the worker is dropped.
    pub fn spawn(model: AttributionModel) -> Result<Self> {
        let (requests, answers) = super::serve("attribution", REQUEST_QUEUE, move |Request { job, batches }| {
            let faces = super::guarded(|| attribute(&model, &batches)).map_err(|e| format!("{e:#}"));
            Answer { job, faces }
        })?;
        Ok(Self { requests, answers })
    }

    /// Queues input `job`'s kept crops.
    pub fn send(&self, job: usize, batches: Batches) -> Result<()> {
        self.requests.send(Request { job, batches }).map_err(|_| anyhow!("the attribution model's thread has stopped"))
    }

    /// Where the answers arrive (for `select!`).
    pub fn answers(&self) -> &Receiver<Answer> {
        &self.answers
    }
}

/// The model's probabilities of `batches`' faces, batch by batch as they came.
fn attribute(model: &AttributionModel, batches: &Batches) -> Result<Vec<(usize, CropAttribution)>> {
    let mut faces = Vec::new();
    for picked in batches {
        let batch = crop_batch(picked.iter().map(|(_, crop)| crop), model.input_size());
        faces.extend(picked.iter().map(|(face, _)| *face).zip(model.attribute(&batch)?));
    }
    Ok(faces)
}
