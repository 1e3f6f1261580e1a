//! A random forest classifier (Breiman 2001) fitted by smartcore's `RandomForestClassifier`,
//! over any number of classes, read out into plain trees that predict class probabilities.
//!
//! Why read it out: smartcore's forest predicts the majority class only (no probabilities),
//! keeps its trees in private fields, and its serde form carries its generic matrix types.
//! Its trees' nodes are in that serde form, though ([`Forest::from_smartcore`]): a split sends
//! a row to its `true_child` when `x[split_feature] <= split_value`, and a leaf's `output` is
//! the index of its class. [`Forest::proba`] walks each tree and returns the share of trees
//! that vote for each class, so its argmax is smartcore's `predict` (ties go to the lower
//! class index in both), which a test holds.
//!
//! Classes are `0..classes`; the caller keeps their names.
use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_classifier::{RandomForestClassifier, RandomForestClassifierParameters};
use smartcore::linalg::basic::matrix::DenseMatrix;

/// How a forest is grown (smartcore's parameters; the defaults are scikit-learn's).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    pub trees: u16,
    /// None: grown until leaves are pure or hold `min_samples_leaf` rows.
    pub max_depth: Option<u16>,
    pub min_samples_leaf: usize,
    /// Features tried at each split; None: floor(sqrt(features)).
    pub features_per_split: Option<usize>,
    /// Seed of the bootstrap samples and the features tried.
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        Self { trees: 100, max_depth: None, min_samples_leaf: 1, features_per_split: None, seed: 1 }
    }
}

/// One node: a split (`left` and `right` are node indices, never 0, the root) or a leaf
/// (`left == right == 0`, `class` its vote). Serialised as a 5-tuple to keep the file small.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: u32,
    pub threshold: f64,
    /// Where rows with `x[feature] <= threshold` go.
    pub left: u32,
    pub right: u32,
    pub class: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The class this tree votes for at `x`.
    pub fn vote(&self, x: &[f64]) -> usize {
        let mut i = 0;
        loop {
            let n = &self.nodes[i];
            if n.left == 0 {
                return n.class as usize;
            }
            // NaN goes right, as smartcore's comparison with a NaN is false.
            i = if x[n.feature as usize] <= n.threshold { n.left } else { n.right } as usize;
        }
    }
}

/// A fitted forest: `trees` voting over `classes` classes of rows of `features` values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    pub classes: usize,
    pub features: usize,
    pub trees: Vec<Tree>,
}

impl Forest {
    /// Fits a forest on `rows` rows of `cols` values (`x`, row-major) with labels `y` in
    /// `0..classes`. Every class must have a row, and there must be two classes at least.
    pub fn fit(x: &[f64], rows: usize, cols: usize, y: &[u32], classes: usize, params: &ForestParams) -> Result<Self, String> {
        if x.len() != rows * cols || y.len() != rows || rows == 0 || cols == 0 {
            return Err(format!("{} values and {} labels for {rows} x {cols}", x.len(), y.len()));
        }
        let mut count = vec![0usize; classes];
        for &c in y {
            *count.get_mut(c as usize).ok_or_else(|| format!("label {c} outside 0..{classes}"))? += 1;
        }
        if classes < 2 || count.contains(&0) {
            return Err(format!("a forest needs two classes or more, each with a row: counts {count:?}"));
        }
        let matrix = DenseMatrix::new(rows, cols, x.to_vec(), false).map_err(|e| e.to_string())?;
        let labels: Vec<i32> = y.iter().map(|&c| c as i32).collect();
        let mut p = RandomForestClassifierParameters::default()
            .with_n_trees(params.trees)
            .with_min_samples_leaf(params.min_samples_leaf)
            .with_seed(params.seed);
        if let Some(depth) = params.max_depth {
            p = p.with_max_depth(depth);
        }
        if let Some(m) = params.features_per_split {
            p = p.with_m(m.clamp(1, cols));
        }
        let forest: RandomForestClassifier<f64, i32, DenseMatrix<f64>, Vec<i32>> = RandomForestClassifier::fit(&matrix, &labels, p).map_err(|e| format!("smartcore random forest: {e}"))?;
        Self::from_smartcore(&forest, classes, cols)
    }

    /// The trees of a fitted smartcore forest, from its serde form (see the module's note).
    /// Its classes are the sorted distinct labels, here `0..classes`, so a leaf's class index
    /// is the label.
    fn from_smartcore<S: Serialize>(forest: &S, classes: usize, features: usize) -> Result<Self, String> {
        let value = serde_json::to_value(forest).map_err(|e| e.to_string())?;
        let changed = |what: &str| format!("smartcore's RandomForestClassifier no longer serialises with {what}");
        let labels: Vec<i64> = serde_json::from_value(value.get("classes").cloned().ok_or_else(|| changed("classes"))?).map_err(|e| e.to_string())?;
        if labels != (0..classes as i64).collect::<Vec<_>>() {
            return Err(format!("unexpected forest classes {labels:?}"));
        }
        let trees = value.get("trees").and_then(|t| t.as_array()).ok_or_else(|| changed("trees"))?;
        let mut out = Vec::with_capacity(trees.len());
        for tree in trees {
            let nodes = tree.get("nodes").and_then(|n| n.as_array()).ok_or_else(|| changed("trees[].nodes"))?;
            let mut plain = Vec::with_capacity(nodes.len());
            for node in nodes {
                let int = |k: &str| node.get(k).and_then(|v| v.as_u64());
                let class = int("output").ok_or_else(|| changed("nodes[].output"))? as u32;
                let (left, right) = (int("true_child"), int("false_child"));
                plain.push(match (left, right) {
                    (Some(l), Some(r)) => Node {
                        feature: int("split_feature").ok_or_else(|| changed("nodes[].split_feature"))? as u32,
                        // A missing split value compares false in smartcore: always right.
                        threshold: node.get("split_value").and_then(|v| v.as_f64()).unwrap_or(f64::NEG_INFINITY),
                        left: l as u32,
                        right: r as u32,
                        class,
                    },
                    _ => Node { feature: 0, threshold: 0.0, left: 0, right: 0, class },
                });
            }
            if plain.is_empty() || plain.iter().any(|n| n.left as usize >= plain.len() || n.right as usize >= plain.len() || n.class as usize >= classes) {
                return Err("a tree with out-of-range nodes".into());
            }
            out.push(Tree { nodes: plain });
        }
        Ok(Self { classes, features, trees: out })
    }

    /// The share of trees voting for each class at `x` (one row of `features` values): sums to 1.
    pub fn proba(&self, x: &[f64]) -> Vec<f64> {
        assert_eq!(x.len(), self.features, "a row of {} values for a forest of {} features", x.len(), self.features);
        let mut votes = vec![0.0; self.classes];
        for tree in &self.trees {
            votes[tree.vote(x)] += 1.0;
        }
        let n = self.trees.len().max(1) as f64;
        votes.iter().map(|v| v / n).collect()
    }

    /// The class with the most votes (the lowest index among ties).
    pub fn predict(&self, x: &[f64]) -> usize {
        let p = self.proba(x);
        (0..p.len()).fold(0, |best, c| if p[c] > p[best] { c } else { best })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` rows in `cols` columns, three classes: class c is shifted by 2 along column c; a
    /// deterministic jitter elsewhere.
    fn three_blobs(n: usize, cols: usize) -> (Vec<f64>, Vec<u32>) {
        let y: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let x = (0..n * cols)
            .map(|k| {
                let (i, j) = (k / cols, k % cols);
                let jitter = ((k as f64 * 12.9898).sin() * 43758.5453).fract();
                jitter + if j == y[i] as usize { 2.0 } else { 0.0 }
            })
            .collect();
        (x, y)
    }

    #[test]
    fn the_forest_separates_separable_embeddings_with_probabilities() {
        let (x, y) = three_blobs(150, 6);
        let params = ForestParams { trees: 25, ..ForestParams::default() };
        let forest = Forest::fit(&x, 150, 6, &y, 3, &params).unwrap();
        assert_eq!((forest.classes, forest.features, forest.trees.len()), (3, 6, 25));
        // Unseen rows of the same blobs.
        let (test, truth) = three_blobs(90, 6);
        let test: Vec<f64> = test.iter().map(|v| v + 0.01).collect();
        let right = (0..90).filter(|&i| forest.predict(&test[i * 6..(i + 1) * 6]) == truth[i] as usize).count();
        assert!(right >= 85, "{right} of 90");
        let p = forest.proba(&test[..6]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12 && p[truth[0] as usize] > 0.5, "{p:?}");
        // The file form round-trips.
        let json = serde_json::to_string(&forest).unwrap();
        assert_eq!(serde_json::from_str::<Forest>(&json).unwrap(), forest);
    }

    #[test]
    fn our_votes_are_smartcores_predictions() {
        let (x, y) = three_blobs(120, 4);
        // Overlapping classes, so that trees disagree.
        let x: Vec<f64> = x.iter().map(|v| v * 0.4).collect();
        let matrix = DenseMatrix::new(120, 4, x.clone(), false).unwrap();
        let labels: Vec<i32> = y.iter().map(|&c| c as i32).collect();
        let p = RandomForestClassifierParameters::default().with_n_trees(15).with_seed(7);
        let theirs: RandomForestClassifier<f64, i32, DenseMatrix<f64>, Vec<i32>> = RandomForestClassifier::fit(&matrix, &labels, p).unwrap();
        let predicted = theirs.predict(&matrix).unwrap();
        let ours = Forest::from_smartcore(&theirs, 3, 4).unwrap();
        for i in 0..120 {
            assert_eq!(ours.predict(&x[i * 4..(i + 1) * 4]), predicted[i] as usize, "row {i}");
        }
    }

    #[test]
    fn one_class_or_a_class_without_rows_is_refused() {
        let (x, _) = three_blobs(30, 2);
        assert!(Forest::fit(&x, 30, 2, &[0; 30], 1, &ForestParams::default()).is_err());
        let y: Vec<u32> = (0..30).map(|i| (i % 2) as u32).collect();
        assert!(Forest::fit(&x, 30, 2, &y, 3, &ForestParams::default()).is_err());
        assert!(Forest::fit(&x, 30, 2, &[5; 30], 3, &ForestParams::default()).is_err());
    }
}
