//! `--plot FILE.svg`: RSS and jobs/s over the run, one panel each, so a leak (a rising
//! RSS line under a flat throughput) is visible without the table.

use std::path::Path;

use plotters::prelude::*;

use super::sample::Sample;

const RSS_COLOR: RGBColor = RGBColor(214, 39, 40);
const JOBS_COLOR: RGBColor = RGBColor(31, 119, 180);

/// Writes the SVG; the error names the file.
pub fn write_svg(path: &Path, title: &str, samples: &[Sample], warm_up_s: f64) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("cannot draw the plot {}: {e}", path.display());
    let end = samples.last().map_or(1.0, |s| s.at_s).max(1.0);
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(320);
    let rss: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| (s.at_s, s.rss_bytes as f64 / (1 << 20) as f64))
        .collect();
    let jobs: Vec<(f64, f64)> = samples.iter().map(|s| (s.at_s, s.jobs_per_sec)).collect();
    panel(&top, "RSS (MiB)", &rss, end, RSS_COLOR, Some(warm_up_s)).map_err(|e| err(&e))?;
    panel(&bottom, "jobs ended per second", &jobs, end, JOBS_COLOR, None).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn panel(
    area: &Area<'_>,
    y_desc: &str,
    points: &[(f64, f64)],
    end: f64,
    color: RGBColor,
    warm_up_s: Option<f64>,
) -> Result<(), Box<dyn std::error::Error + 'static>> {
    // From zero, so a few percent of drift looks like a few percent.
    let top = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("wall-clock time (s)")
        .y_desc(y_desc)
        .light_line_style(WHITE.mix(0.0))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    if let Some(w) = warm_up_s {
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(LineSeries::new([(w, 0.0), (w, top)], grey.stroke_width(1)))?
            .label("end of warm-up")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(1)));
    }
    chart
        .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
        .label(y_desc)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
}
