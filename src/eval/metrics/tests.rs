use super::*;

const F: bool = false;
const T: bool = true;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

// Descending: 0.8 T, 0.4 F, 0.35 T, 0.1 F. Two positives, two negatives.
const SCORES: [f32; 4] = [0.1, 0.4, 0.35, 0.8];
const LABELS: [bool; 4] = [F, F, T, T];

#[test]
fn hand_example_auc_and_ap() {
    // Pairs (pos, neg): 0.8>0.1, 0.8>0.4, 0.35>0.1, 0.35<0.4 -> 3/4.
    assert!(close(roc_auc(&SCORES, &LABELS).unwrap(), 0.75));
    // (recall, precision) per threshold: 0.8 (1/2, 1), 0.4 (1/2, 1/2), 0.35 (1, 2/3),
    // 0.1 (1, 1/2). AP = 1/2 * 1 + 0 + 1/2 * 2/3 = 5/6.
    assert!(close(average_precision(&SCORES, &LABELS).unwrap(), 5.0 / 6.0));
}

#[test]
fn roc_curve_runs_from_origin_to_one_one() {
    let curve = roc_curve(&SCORES, &LABELS).unwrap();
    let got: Vec<(f64, f64, f32)> = curve.iter().map(|p| (p.fpr, p.tpr, p.threshold)).collect();
    let want = [
        (0.0, 0.0, f32::INFINITY),
        (0.0, 0.5, 0.8),
        (0.5, 0.5, 0.4),
        (0.5, 1.0, 0.35),
        (1.0, 1.0, 0.1),
    ];
    assert_eq!(got, want);
}

#[test]
fn perfect_ranking() {
    let (s, l) = ([0.1, 0.2, 0.8, 0.9], [F, F, T, T]);
    assert!(close(roc_auc(&s, &l).unwrap(), 1.0));
    assert!(close(average_precision(&s, &l).unwrap(), 1.0));
    // Curve (0,0) (0,1/2) (0,1) ...: FPR = FNR = 0 first at threshold 0.8.
    assert_eq!(eer(&s, &l), Some(Eer { rate: 0.0, threshold: 0.8 }));
    assert!(close(fpr_at_tpr(&s, &l, 0.95).unwrap(), 0.0));
    assert!(close(detection_error(&s, &l).unwrap(), 0.0));
}

#[test]
fn inverted_ranking() {
    let (s, l) = ([0.1, 0.2, 0.8, 0.9], [T, T, F, F]);
    assert!(close(roc_auc(&s, &l).unwrap(), 0.0));
    // Descending 0.9 F, 0.8 F, 0.2 T (R 1/2, P 1/3), 0.1 T (R 1, P 1/2): 1/6 + 1/4 = 5/12.
    assert!(close(average_precision(&s, &l).unwrap(), 5.0 / 12.0));
    // Curve (0,0) (1/2,0) (1,0): FPR = FNR = 1 at threshold 0.8.
    assert_eq!(eer(&s, &l), Some(Eer { rate: 1.0, threshold: 0.8 }));
    // Only the end points, (0,0) and (1,1), do as well as chance: 0.5.
    assert!(close(detection_error(&s, &l).unwrap(), 0.5));
}

#[test]
fn ties_are_one_threshold_whatever_their_order() {
    // A sort that kept input order would rank the tied positive (index 1) first: AP 1, AUC 1.
    let (s, l) = ([0.9, 0.5, 0.5, 0.1], [T, T, F, F]);
    // Average ranks ascending: 0.1 -> 1, the two 0.5 -> 2.5, 0.9 -> 4.
    // U = (2.5 + 4) - 2*3/2 = 3.5 of 4 pairs.
    assert!(close(roc_auc(&s, &l).unwrap(), 0.875));
    // 0.9 (R 1/2, P 1), 0.5 (R 1, P 2/3), 0.1 (R 1, P 1/2): 1/2 + 1/2 * 2/3 = 5/6.
    assert!(close(average_precision(&s, &l).unwrap(), 5.0 / 6.0));
    let curve = roc_curve(&s, &l).unwrap();
    assert_eq!(curve.len(), 4, "one point per distinct score plus the origin");
    // Curve (0,0) (0,1/2) (1/2,1) (1,1); on the diagonal step FPR - FNR goes -1/2 -> +1/2,
    // so they meet halfway: FPR = 1/4, FNR = 1/2 - 1/4 = 1/4.
    let e = eer(&s, &l).unwrap();
    assert!(close(e.rate, 0.25));
    assert_eq!(e.threshold, 0.5);

    let (swapped_s, swapped_l) = ([0.9, 0.5, 0.5, 0.1], [T, F, T, F]);
    assert_eq!(roc_curve(&swapped_s, &swapped_l).unwrap(), curve);
    assert_eq!(average_precision(&swapped_s, &swapped_l), average_precision(&s, &l));
}

#[test]
fn all_scores_tied_is_chance() {
    let (s, l) = ([0.5; 4], [T, F, T, F]);
    assert!(close(roc_auc(&s, &l).unwrap(), 0.5));
    // One threshold: recall 1 at precision 1/2.
    assert!(close(average_precision(&s, &l).unwrap(), 0.5));
    assert_eq!(roc_curve(&s, &l).unwrap().len(), 2);
}

#[test]
fn mann_whitney_equals_area_under_the_curve() {
    let cases: [(&[f32], &[bool]); 3] = [
        (&SCORES, &LABELS),
        (&[0.9, 0.5, 0.5, 0.1], &[T, T, F, F]),
        (&[0.3, 0.3, 0.7, 0.2, 0.7, 0.9, 0.1], &[F, T, F, F, T, T, F]),
    ];
    for (s, l) in cases {
        let curve = roc_curve(s, l).unwrap();
        let trapezoids: f64 =
            curve.windows(2).map(|w| (w[1].fpr - w[0].fpr) * (w[0].tpr + w[1].tpr) / 2.0).sum();
        assert!(close(roc_auc(s, l).unwrap(), trapezoids), "{s:?} {l:?}");
    }
}

#[test]
fn an_empty_class_gives_none() {
    let (s, only_pos, only_neg) = ([0.2, 0.7], [T, T], [F, F]);
    assert_eq!(roc_auc(&s, &only_pos), None);
    assert_eq!(roc_auc(&s, &only_neg), None);
    assert_eq!(roc_curve(&s, &only_neg), None);
    assert_eq!(eer(&s, &only_pos), None);
    assert_eq!(fpr_at_tpr(&s, &only_pos, 0.95), None);
    assert_eq!(detection_error(&s, &only_neg), None);
    assert_eq!(average_precision(&s, &only_neg), None);
    // Every call is right when there is no negative.
    assert_eq!(average_precision(&s, &only_pos), Some(1.0));
    assert_eq!(OodMetrics::compute(&s, &only_neg), None);
    assert_eq!(roc_auc(&[], &[]), None);
}

#[test]
fn eer_interpolates_between_roc_points() {
    // Positives 0.9, 0.6; negatives 0.7, 0.2, 0.1. Curve (0,0) (0,1/2) (1/3,1/2) (1/3,1) ...
    // On the step from (1/3,1/2) to (1/3,1) FNR falls from 1/2 to 0 and meets FPR = 1/3.
    let (s, l) = ([0.9, 0.7, 0.6, 0.2, 0.1], [T, F, T, F, F]);
    let e = eer(&s, &l).unwrap();
    assert!(close(e.rate, 1.0 / 3.0));
    assert_eq!(e.threshold, 0.6);
    // The exact crossing of the hand example: (1/2, 1/2) at threshold 0.4.
    assert_eq!(eer(&SCORES, &LABELS), Some(Eer { rate: 0.5, threshold: 0.4 }));
}

#[test]
fn log_loss_by_hand_and_clipped() {
    // -(ln 0.9 + ln 0.8) / 2 = (0.1053605 + 0.2231436) / 2.
    let loss = log_loss(&[0.9, 0.2], &[T, F]).unwrap();
    assert!((loss - 0.164_252_03).abs() < 1e-6, "{loss}");
    // A certain mistake costs -ln(1e-7) = 7 ln 10, not infinity.
    let clipped = 7.0 * 10f64.ln();
    assert!((log_loss(&[1.0], &[F]).unwrap() - clipped).abs() < 1e-6);
    assert!((log_loss(&[0.0], &[T]).unwrap() - clipped).abs() < 1e-6);
    assert!(log_loss(&[1.0], &[T]).unwrap() < 1e-6);
    assert_eq!(log_loss(&[], &[]), None);
}

#[test]
fn confusion_counts_ties_with_the_threshold_as_positive() {
    // At 0.4: 0.8 T -> tp, 0.4 F -> fp (>= counts), 0.35 T -> fn, 0.1 F -> tn.
    let c = Confusion::at(&SCORES, &LABELS, 0.4);
    assert_eq!(c, Confusion { tp: 1, fp: 1, tn: 1, fn_: 1 });
    assert_eq!(c.accuracy(), Some(0.5));
    assert_eq!(Confusion::default().accuracy(), None);
}

#[test]
fn binary_metrics_bundle_and_json() {
    let m = BinaryMetrics::compute(&SCORES, &LABELS, 0.5);
    assert_eq!((m.n_pos, m.n_neg), (2, 2));
    assert!(close(m.auc.unwrap(), 0.75));
    assert!(close(m.average_precision.unwrap(), 5.0 / 6.0));
    assert_eq!((m.eer, m.eer_threshold), (Some(0.5), Some(0.4)));
    // At 0.5 only 0.8 is called fake: tp 1, fn 1 (0.35), tn 2.
    assert_eq!(m.confusion, Confusion { tp: 1, fp: 0, tn: 2, fn_: 1 });
    assert_eq!(m.accuracy, Some(0.75));
    // -(ln 0.9 + ln 0.6 + ln 0.35 + ln 0.8) / 4 = 1.8891518 / 4.
    assert!((m.log_loss.unwrap() - 0.472_288).abs() < 1e-6);

    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["confusion"]["fn"], 1);
    assert_eq!(json["n_pos"], 2);
    let one_class = serde_json::to_value(BinaryMetrics::compute(&[0.9], &[T], 0.5)).unwrap();
    assert!(one_class["auc"].is_null());
    assert_eq!(one_class["accuracy"], 1.0);
}

#[test]
fn ood_metrics_by_hand() {
    // In-distribution risks 0.1 0.2 0.3 0.4; OOD risks 0.35 0.8 0.9.
    let risks = [0.1, 0.2, 0.3, 0.4, 0.35, 0.8, 0.9];
    let is_ood = [F, F, F, F, T, T, T];
    let m = OodMetrics::compute(&risks, &is_ood).unwrap();
    // OOD above in-dist in 3 + 4 + 4 of 12 pairs (0.35 < 0.4).
    assert!(close(m.auroc, 11.0 / 12.0));
    // OOD positive, descending: 0.9, 0.8 (P 1), 0.4 in, 0.35 (R 1, P 3/4): 2/3 + 1/3 * 3/4.
    assert!(close(m.aupr_out, 11.0 / 12.0));
    // In positive on -risk: 0.1 0.2 0.3 (P 1, R 3/4), 0.35 out, 0.4 (R 1, P 4/5): 3/4 + 1/5.
    assert!(close(m.aupr_in, 0.95));
    // Accepting all four in-dist (risk <= 0.4) also accepts 0.35: 1 OOD of 3. (With OOD as the
    // positive class it would be 1 in-dist of 4: the convention shows.)
    assert!(close(m.fpr_at_95_tpr, 1.0 / 3.0));
    assert!(close(fpr_at_tpr(&risks, &is_ood, 0.95).unwrap(), 0.25));
    // Best split at 0.35: all OOD caught, 0.4 of four in-dist flagged: 0.5 * 0 + 0.5 * 1/4.
    assert!(close(m.detection_error, 0.125));
}

#[test]
#[should_panic(expected = "one label per score")]
fn mismatched_lengths_panic() {
    roc_auc(&[0.1, 0.2], &[T]);
}

#[test]
fn reliability_bins_count_predictions_and_positives() {
    let probs = [0.05, 0.15, 0.12, 0.95, 1.0, 0.5];
    let labels = [F, T, F, T, T, F];
    let bins = reliability(&probs, &labels, 10);
    assert_eq!(bins.len(), 10);
    assert_eq!(bins[0].count, 1);
    assert_eq!((bins[1].count, bins[1].observed), (2, Some(0.5)));
    assert!(close(bins[1].mean_predicted.unwrap(), (0.15f32 as f64 + 0.12f32 as f64) / 2.0));
    // 1.0 falls in the last bin, with 0.95.
    assert_eq!((bins[9].count, bins[9].observed), (2, Some(1.0)));
    assert_eq!(bins[5].count, 1);
    assert_eq!(bins[3].mean_predicted, None);
    // A perfectly calibrated set has no error; a confident wrong one has a large one.
    let calibrated = reliability(&[0.0, 1.0], &[F, T], 10);
    assert!(close(expected_calibration_error(&calibrated).unwrap(), 0.0));
    let wrong = reliability(&[1.0, 0.0], &[F, T], 10);
    assert!(close(expected_calibration_error(&wrong).unwrap(), 1.0));
}
