//! `dfscan cv --lrnet`: LRNet's cross-source table on a landmark cache, in the shape `dfscan
//! cv` prints ([`super::cv::CvReport`]). For each origin in turn, every row scores its videos:
//! a fixed pair (a public import, scored as it is) and, with a start, LRNet fine-tuned from it
//! on the other origins ([`super::lrnet::fine_tune`]; a training fold drops every group that
//! also appears in the held-out origin, and stops early on a validation share of its own
//! groups). Each row comes twice, on calibrated and on raw landmarks.
//!
//! Only videos LRNet can score (a track with a run of 31 frames) are counted: stills and
//! short or faceless clips have no landmark score in the scan either.
use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{ensure, Result};

use super::checkpoint::TrainState;
use super::cv::{summarise, CvReport, Fold, OutOfFold};
use super::lrnet::{fine_tune, network, scorable, video_score, windows, FineTune};
use crate::crops::dataset::{Split, SplitPlan};
use crate::crops::landmarks::{LandmarkRecord, LandmarkSet};
use crate::eval::metrics::roc_auc;
use crate::faces::calibrate::Calibration;
use crate::models::lrnet::Lrnet;

/// What the table holds.
pub struct LrnetCv<'a> {
    /// Pairs scored as they are: (row name, network).
    pub fixed: Vec<(String, &'a Lrnet)>,
    /// The weights each fold's fine-tune starts from (row name, file); None: no fine-tune rows.
    pub start: Option<(String, PathBuf)>,
    /// The fine-tune's settings (its calibration is each row's).
    pub fine_tune: FineTune,
    /// Landmark kinds, one set of rows each.
    pub calibrations: Vec<Calibration>,
    /// Held-out origins (empty: every origin with a scorable video).
    pub origins: Vec<String>,
    /// Groups of a training fold kept out for its early stopping.
    pub val: SplitPlan,
}

/// What a caller hears while the folds run.
pub enum CvEvent<'a> {
    /// A fold's fine-tune begins: its held-out origin, kind of rows, training windows and videos.
    FineTune { origin: &'a str, calibration: Calibration, windows: usize, train_videos: usize, val_videos: usize },
    /// A fine-tune epoch ended: its validation video AUC.
    Epoch { epoch: usize, train_loss: f64, val_auc: Option<f64> },
}

/// Runs the folds over the scorable videos of `set`.
pub fn cross_validate(set: &LandmarkSet, cv: &LrnetCv, mut on_event: impl FnMut(CvEvent)) -> Result<CvReport> {
    let min_frames = crate::models::lrnet::LrnetConfig::source().min_frames();
    let records: Vec<&LandmarkRecord> = set.records.iter().filter(|r| scorable(r, min_frames)).collect();
    let origins: Vec<String> = match cv.origins.is_empty() {
        true => records.iter().map(|r| r.origin.clone()).collect::<BTreeSet<_>>().into_iter().collect(),
        false => cv.origins.clone(),
    };
    ensure!(origins.len() >= 2, "cross-source validation needs at least two origins with videos LRNet can score");
    let row_names: Vec<String> = cv
        .calibrations
        .iter()
        .flat_map(|c| {
            let fixed = cv.fixed.iter().map(move |(name, _)| format!("{name}, {}", c.rows_name()));
            fixed.chain(cv.start.iter().map(move |(name, _)| format!("fine-tuned from {name}, {}", c.rows_name())))
        })
        .collect();
    let mut aucs: Vec<Vec<Option<f64>>> = vec![Vec::new(); row_names.len()];
    let (mut folds, mut out_of_fold) = (Vec::new(), Vec::<OutOfFold>::new());
    for origin in &origins {
        let test: Vec<&LandmarkRecord> = records.iter().copied().filter(|r| &r.origin == origin).collect();
        ensure!(!test.is_empty(), "no video of origin {origin} that LRNet can score");
        let held: BTreeSet<&str> = test.iter().map(|r| r.group.as_str()).collect();
        let train: Vec<&LandmarkRecord> = records.iter().copied().filter(|r| &r.origin != origin && !held.contains(r.group.as_str())).collect();
        let (fit, val): (Vec<&LandmarkRecord>, Vec<&LandmarkRecord>) = train.iter().partition(|r| cv.val.split_of(&r.group) != Split::Val);
        let mut scores: Vec<Vec<f32>> = Vec::with_capacity(row_names.len());
        let mut train_windows = 0;
        for &calibration in &cv.calibrations {
            for (_, net) in &cv.fixed {
                scores.push(score_all(net, &test, calibration)?);
            }
            if let Some((_, start)) = &cv.start {
                let cfg = FineTune { calibration, ..cv.fine_tune.clone() };
                let examples = windows(&fit, calibration, crate::models::lrnet::BLOCK as usize, cfg.stride);
                train_windows = examples.len();
                on_event(CvEvent::FineTune { origin, calibration, windows: examples.len(), train_videos: fit.len(), val_videos: val.len() });
                let (mut vs, net) = network(Some(start), cfg.device)?;
                let mut state = TrainState::new(cfg.schedule.seed, cfg.schedule.batch_size, examples.len(), 0);
                fine_tune(&net, &mut vs, &examples, &val, &cfg, &mut state, |r, _, _| {
                    on_event(CvEvent::Epoch { epoch: r.epoch, train_loss: r.train_loss, val_auc: r.val_video_auc });
                    Ok(())
                })?;
                scores.push(score_all(&net, &test, calibration)?);
            }
        }
        let labels: Vec<bool> = test.iter().map(|r| r.label.is_fake()).collect();
        for (r, s) in scores.iter().enumerate() {
            aucs[r].push(roc_auc(s, &labels));
        }
        for (k, record) in test.iter().enumerate() {
            out_of_fold.push(OutOfFold { source: record.source.clone(), origin: origin.clone(), fake: labels[k], scores: scores.iter().map(|s| s[k]).collect() });
        }
        let fakes = labels.iter().filter(|&&f| f).count();
        folds.push(Fold { origin: origin.clone(), real_videos: labels.len() - fakes, fake_videos: fakes, train_crops: train_windows });
    }
    let rows = summarise(row_names.into_iter().map(|n| (n, Vec::new())), aucs, &folds, &out_of_fold);
    let head = super::probe::HeadConfig::default();
    Ok(CvReport { backbone: "lrnet".into(), aggregate: crate::aggregate::Strategy::Mean, head, folds, rows, out_of_fold })
}

/// Every video's P(fake) (all of them scorable).
fn score_all(net: &Lrnet, records: &[&LandmarkRecord], calibration: Calibration) -> Result<Vec<f32>> {
    records.iter().map(|r| Ok(video_score(net, r, calibration)?.expect("a scorable video has a score"))).collect()
}
