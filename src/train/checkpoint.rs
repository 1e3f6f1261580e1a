//! What lets `dfscan train` stop and go on: beside `<output>` (the best weights) it keeps
//! `<output>.last.safetensors` (the latest weights, f32), `<output>.train-state.json`
//! ([`TrainState`]: where the run stands) and appends to `<output>.log.jsonl` (one
//! [`CheckpointReport`] per checkpoint).
//!
//! A checkpoint writes the weights, then the state, each to a temporary file renamed into
//! place, so an interruption leaves the previous checkpoint whole; the state is written last
//! because it is what `--resume` trusts. The log line follows the state, so a resumed run never
//! logs a step twice (an interruption between the two loses at most that one line).
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

/// The files of a run whose best weights go to `output`.
pub struct Paths {
    pub last: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
}

impl Paths {
    pub fn of(output: &Path) -> Self {
        Self { last: sidecar(output, ".last.safetensors"), state: sidecar(output, ".train-state.json"), log: sidecar(output, ".log.jsonl") }
    }
}

fn sidecar(output: &Path, suffix: &str) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// One epoch, as printed at its end and kept in the state's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    /// None without a validation split.
    pub val_loss: Option<f64>,
    pub val_frame_auc: Option<f64>,
    pub val_video_auc: Option<f64>,
    pub learning_rate: f64,
    /// Of this epoch's steps run in this sitting (a resumed epoch counts from the resume).
    pub seconds: f64,
    /// The epoch set new best weights (at its end or at a checkpoint within it).
    pub best: bool,
}

/// One line of `<output>.log.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointReport {
    /// Optimizer steps done since the run began, across sittings.
    pub global_step: usize,
    pub epoch: usize,
    /// Steps done within `epoch`; at an epoch's end, its number of steps.
    pub step: usize,
    /// The rate of the last step.
    pub lr: f64,
    /// Mean training loss of the steps since the previous checkpoint.
    pub train_loss: f64,
    /// None when this checkpoint did not validate or there is no validation split.
    pub val_loss: Option<f64>,
    pub val_frame_auc: Option<f64>,
    pub val_video_auc: Option<f64>,
    /// Crops the network has trained on: examples x crops per example (T for a sequence model).
    pub crops_seen: u64,
    /// Training wall time since the run began, summed over sittings.
    pub seconds: f64,
    /// These weights became `<output>`.
    pub best: bool,
}

/// Where a run stands after its last checkpoint: with the same crop cache and settings,
/// `--resume` replays the run from exactly this step (the epoch's order and every random draw
/// come from the seed and the step; see `trainer`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// What fixes which examples each step sees; a resume with other values would not
    /// continue this run but start a different one from its weights.
    pub seed: u64,
    pub batch_size: usize,
    pub train_examples: usize,
    pub steps_per_epoch: usize,
    /// The epoch under way (the number of epochs finished).
    pub epoch: usize,
    /// Steps done within `epoch`.
    pub step: usize,
    pub global_step: usize,
    pub crops_seen: u64,
    pub seconds: f64,
    /// The checkpoint whose weights are `<output>`.
    pub best: Option<CheckpointReport>,
    /// Finished epochs since the one that last set new best weights.
    pub epochs_since_best: usize,
    /// Sums over the steps done in `epoch`, for its report.
    pub epoch_loss_sum: f64,
    pub epoch_improved: bool,
    pub history: Vec<EpochReport>,
}

impl TrainState {
    pub fn new(seed: u64, batch_size: usize, train_examples: usize, steps_per_epoch: usize) -> Self {
        Self {
            seed,
            batch_size,
            train_examples,
            steps_per_epoch,
            epoch: 0,
            step: 0,
            global_step: 0,
            crops_seen: 0,
            seconds: 0.0,
            best: None,
            epochs_since_best: 0,
            epoch_loss_sum: 0.0,
            epoch_improved: false,
            history: Vec::new(),
        }
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a training state of this dfscan version", path.display()))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = sidecar(path, ".partial");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }

    /// Fails unless `fresh` (the state this invocation would start with) describes the same
    /// sequence of steps.
    pub fn ensure_continues(&self, fresh: &TrainState) -> Result<()> {
        let same = (self.seed, self.batch_size, self.train_examples, self.steps_per_epoch)
            == (fresh.seed, fresh.batch_size, fresh.train_examples, fresh.steps_per_epoch);
        ensure!(
            same,
            "--resume continues a run with seed {}, batch size {}, {} training examples and {} steps per epoch; \
             this one has seed {}, batch size {}, {} examples and {} steps per epoch (same --seed, --batch-size, \
             --max-steps-per-epoch, crop cache and split needed)",
            self.seed, self.batch_size, self.train_examples, self.steps_per_epoch,
            fresh.seed, fresh.batch_size, fresh.train_examples, fresh.steps_per_epoch,
        );
        Ok(())
    }
}

/// Appends one line to the log.
pub fn append_log(path: &Path, report: &CheckpointReport) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{}", serde_json::to_string(report)?).with_context(|| format!("writing {}", path.display()))
}

/// The lines of a log, oldest first.
pub fn read_log(path: &Path) -> Result<Vec<CheckpointReport>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines().map(|l| serde_json::from_str(l).with_context(|| format!("{}: {l}", path.display()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(global_step: usize, val: Option<f64>) -> CheckpointReport {
        CheckpointReport {
            global_step,
            epoch: 1,
            step: 3,
            lr: 2.5e-4,
            train_loss: 0.61,
            val_loss: val.map(|v| 1.0 - v),
            val_frame_auc: val,
            val_video_auc: val,
            crops_seen: 96,
            seconds: 12.5,
            best: val.is_some(),
        }
    }

    #[test]
    fn the_state_survives_a_round_trip_with_and_without_validation() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::of(&tmp.path().join("m.safetensors"));
        assert_eq!(paths.state, tmp.path().join("m.safetensors.train-state.json"));
        let mut state = TrainState::new(7, 4, 30, 8);
        (state.epoch, state.step, state.global_step, state.crops_seen, state.seconds) = (1, 3, 11, 44, 12.5);
        state.best = Some(report(8, Some(0.75)));
        (state.epochs_since_best, state.epoch_loss_sum, state.epoch_improved) = (1, 1.83, true);
        // No validation split: the loss is None, not NaN, which JSON cannot hold.
        let no_val = EpochReport { epoch: 0, train_loss: 0.7, val_loss: None, val_frame_auc: None, val_video_auc: None, learning_rate: 9e-4, seconds: 3.0, best: true };
        state.history.push(no_val);
        state.write(&paths.state).unwrap();
        assert_eq!(TrainState::read(&paths.state).unwrap(), state);
        assert!(!sidecar(&paths.state, ".partial").exists(), "the temporary file is renamed away");
        state.ensure_continues(&TrainState::new(7, 4, 30, 8)).unwrap();
        assert!(state.ensure_continues(&TrainState::new(7, 5, 30, 6)).is_err());
        assert!(state.ensure_continues(&TrainState::new(8, 4, 30, 8)).is_err());

        append_log(&paths.log, &report(2, None)).unwrap();
        append_log(&paths.log, &report(4, Some(0.5))).unwrap();
        assert_eq!(read_log(&paths.log).unwrap(), [report(2, None), report(4, Some(0.5))]);
    }
}
