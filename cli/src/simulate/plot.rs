//! `--plot FILE.svg`: requests in flight at the store over scenario time, one line per
//! policy, with the cap and the store's limit drawn across, readable without the table.

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

/// Why the plot was not written.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the plot {path}: {message}")]
pub struct PlotError {
    path: String,
    message: String,
}

/// One line of the plot.
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// Its legend.
    pub name: &'a str,
    /// `(time, value)` after each change, in time order.
    pub points: &'a [(Duration, u32)],
}

/// Horizontal lines across the plot.
#[derive(Clone, Copy, Debug)]
pub struct Level<'a> {
    /// Its legend.
    pub name: &'a str,
    /// Its height.
    pub value: u32,
}

/// Columns the time axis is cut into; each shows the highest value within it, so a
/// peak is never lost to downsampling.
const COLUMNS: usize = 1200;

/// The highest value within each of `COLUMNS` equal slices of `0 ..= end`, as a step line.
fn columns(points: &[(Duration, u32)], end: f64) -> Vec<(f64, f64)> {
    let width = (end / COLUMNS as f64).max(f64::EPSILON);
    let mut highest = vec![0u32; COLUMNS];
    let mut current = 0u32;
    let mut col = 0usize;
    for &(at, value) in points {
        let c = ((at.as_secs_f64() / width) as usize).min(COLUMNS - 1);
        // The value held since the previous change covers the columns up to this one.
        while col < c {
            highest[col] = highest[col].max(current);
            col += 1;
        }
        highest[c] = highest[c].max(value).max(current);
        current = value;
    }
    for h in highest.iter_mut().skip(col) {
        *h = (*h).max(current);
    }
    highest
        .iter()
        .enumerate()
        .flat_map(|(i, &h)| {
            [
                (i as f64 * width, f64::from(h)),
                ((i + 1) as f64 * width, f64::from(h)),
            ]
        })
        .collect()
}

const COLORS: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Writes the SVG of queries in flight at the store.
pub fn write_svg(
    path: &Path,
    title: &str,
    series: &[Series<'_>],
    levels: &[Level<'_>],
) -> Result<(), PlotError> {
    let y_desc = "queries in flight at the store";
    draw(
        path,
        title,
        y_desc,
        series,
        levels,
        SeriesLabelPosition::UpperRight,
    )
}

/// Writes the SVG of counts that only grow (`y_desc` names them); the legend goes upper
/// left, where rising lines are still low.
pub fn write_cumulative_svg(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[Series<'_>],
) -> Result<(), PlotError> {
    draw(path, title, y_desc, series, &[], SeriesLabelPosition::UpperLeft)
}

fn draw(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[Series<'_>],
    levels: &[Level<'_>],
    legend: SeriesLabelPosition,
) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let end = series
        .iter()
        .filter_map(|s| s.points.last())
        .map(|p| p.0.as_secs_f64())
        .fold(1.0, f64::max);
    let lines: Vec<Vec<(f64, f64)>> = series.iter().map(|s| columns(s.points, end)).collect();
    let top = lines
        .iter()
        .flatten()
        .map(|p| p.1)
        .chain(levels.iter().map(|l| f64::from(l.value)))
        .fold(1.0, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (1000, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end, 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("scenario time (s)")
        .y_desc(y_desc)
        .light_line_style(WHITE.mix(0.0))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    // The levels first, so the policies' lines are drawn over them.
    for (i, l) in levels.iter().enumerate() {
        let color = if i == 0 {
            RGBColor(60, 60, 60)
        } else {
            RGBColor(150, 150, 150)
        };
        let y = f64::from(l.value);
        chart
            .draw_series(LineSeries::new([(0.0, y), (end, y)], color.stroke_width(1)))
            .map_err(|e| err(&e))?
            .label(format!("{} = {}", l.name, l.value))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1)));
    }
    for (i, (s, line)) in series.iter().zip(lines).enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(legend)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_keep_every_peak() {
        let s = |ms| Duration::from_millis(ms);
        // A one-millisecond spike to 9 in a 10 s run survives downsampling.
        let points = [(s(0), 1), (s(5000), 9), (s(5001), 2), (s(10_000), 0)];
        let line = columns(&points, 10.0);
        assert_eq!(line.iter().map(|p| p.1).fold(0.0, f64::max), 9.0);
        assert_eq!(line.first().map(|p| p.1), Some(1.0));
    }
}
