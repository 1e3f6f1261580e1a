//! ROC curves as a PNG, one line per model or split, against the chance diagonal.
//!
//! Text is drawn with plotters' `ttf` feature: font-kit asks fontconfig for a sans-serif TTF
//! at run time, so the machine needs one installed (Debian: `fonts-dejavu-core`, which
//! `scripts/setup.sh` installs); without it drawing fails with a font error.
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

use super::metrics::{roc_auc, roc_curve, RocPoint};

/// Width and height of [`roc_png`]'s image in pixels.
pub const ROC_PNG_SIZE: (u32, u32) = (800, 800);

/// Distinguishable on white and for common colour blindness (Okabe–Ito).
const LINE_COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// One line of the plot, labelled "name (AUC 0.xxx)".
#[derive(Clone, Debug, PartialEq)]
pub struct RocSeries {
    pub name: String,
    pub points: Vec<RocPoint>,
    pub auc: f64,
}

impl RocSeries {
    /// The curve and AUC of one scored split; None when a class is empty.
    pub fn new(name: impl Into<String>, scores: &[f32], labels: &[bool]) -> Option<Self> {
        Some(RocSeries {
            name: name.into(),
            points: roc_curve(scores, labels)?,
            auc: roc_auc(scores, labels)?,
        })
    }
}

/// Writes FPR against TPR for each series to `path` as a PNG of [`ROC_PNG_SIZE`].
pub fn roc_png(path: &Path, curves: &[RocSeries], title: &str) -> Result<()> {
    draw(path, curves, title).with_context(|| {
        format!(
            "drawing ROC plot {} (text needs a TTF font that fontconfig can find, \
             e.g. Debian's fonts-dejavu-core)",
            path.display()
        )
    })
}

fn draw(path: &Path, curves: &[RocSeries], title: &str) -> Result<()> {
    let root = BitMapBackend::new(path, ROC_PNG_SIZE).into_drawing_area();
    root.fill(&WHITE)?;

    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 28))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        ?;
    chart
        .configure_mesh()
        .x_desc("False positive rate")
        .y_desc("True positive rate")
        .axis_desc_style(("sans-serif", 20))
        .label_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        ?;

    let chance = DashedLineSeries::new([(0.0, 0.0), (1.0, 1.0)], 8, 6, BLACK.mix(0.6).into());
    chart.draw_series(chance)?;

    for (i, curve) in curves.iter().enumerate() {
        let colour = LINE_COLOURS[i % LINE_COLOURS.len()];
        let points = curve.points.iter().map(|p| (p.fpr, p.tpr));
        let line = LineSeries::new(points, colour.stroke_width(3));
        chart
            .draw_series(line)
            ?
            .label(format!("{} (AUC {:.3})", curve.name, curve.auc))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], colour.stroke_width(3)));
    }
    if !curves.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 18))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            ?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Width and height from the IHDR chunk, which a PNG must start with.
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        (be(16), be(20))
    }

    #[test]
    fn writes_a_readable_png_of_the_requested_size() {
        let good = RocSeries::new("good", &[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        let weak_labels = [false, true, false, true, true];
        let weak = RocSeries::new("weak", &[0.3, 0.6, 0.5, 0.2, 0.7], &weak_labels);
        let curves = [good.unwrap(), weak.unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roc.png");

        roc_png(&path, &curves, "ROC on the test split").unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(png_size(&bytes), ROC_PNG_SIZE);
        let image = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), ROC_PNG_SIZE);
        // The first line's colour must be drawn somewhere on the white page.
        let RGBColor(r, g, b) = LINE_COLOURS[0];
        assert!(image.pixels().any(|p| p.0 == [r, g, b]), "no ROC line in the image");
        assert!(image.pixels().any(|p| p.0 != image.get_pixel(0, 0).0), "a single colour");
    }

    #[test]
    fn series_needs_both_classes() {
        assert_eq!(RocSeries::new("only fakes", &[0.2, 0.9], &[true, true]), None);
    }
}
