//! SVG charts drawn with plotters (SVG backend only: text is left to the
//! viewer's fonts, so no font library is needed).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The colour of an allocator's bars and lines, the same in every chart.
fn color(name: &str) -> RGBColor {
    match name {
        n if n.starts_with("hakmem") => RGBColor(214, 39, 40),
        "system" => RGBColor(127, 127, 127),
        "jemalloc" => RGBColor(31, 119, 180),
        "mimalloc-2.0" => RGBColor(152, 223, 138),
        "mimalloc-2.3" | "mimalloc" => RGBColor(44, 160, 44),
        "mimalloc-3.3" => RGBColor(23, 100, 23),
        "tcmalloc" => RGBColor(148, 103, 189),
        "talc" => RGBColor(255, 127, 14),
        _ => RGBColor(140, 86, 75),
    }
}

type Res = Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("chart: {e:?}")
}

/// One group of bars: a label (workload and reference) and (allocator,
/// ratio) pairs.
pub struct BarGroup {
    /// Shown on the axis.
    pub label: String,
    /// One bar per allocator.
    pub bars: Vec<(String, f64)>,
}

/// Horizontal bars of time ratios on a log axis, drawn from 1: right of
/// the line is slower than the reference, left is faster.
pub fn ratio_bars(path: &Path, title: &str, groups: &[BarGroup]) -> Res {
    let rows: usize = groups.iter().map(|g| g.bars.len() + 1).sum();
    let height = (rows as u32 * 14 + 120).max(300);
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let labels: Vec<(f64, String)> = {
        let mut y = 0.0;
        groups
            .iter()
            .map(|g| {
                let mid = y + g.bars.len() as f64 / 2.0;
                y += g.bars.len() as f64 + 1.0;
                (mid, g.label.clone())
            })
            .collect()
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(260)
        .build_cartesian_2d((0.1f64..30.0).log_scale(), rows as f64..0.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("time ratio (log scale; > 1: slower than the reference)")
        .draw()
        .map_err(err)?;
    // Group labels right-aligned left of the plot, at each group's middle.
    let style = ("sans-serif", 12)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (mid, label) in &labels {
        let (x, y) = chart.backend_coord(&(0.1, *mid));
        root.draw(&Text::new(label.clone(), (x - 6, y), style.clone()))
            .map_err(err)?;
    }
    let mut names: Vec<String> = Vec::new();
    let mut y = 0.0;
    let mut rects = Vec::new();
    for g in groups {
        for (name, r) in &g.bars {
            if !names.contains(name) {
                names.push(name.clone());
            }
            let r = r.clamp(0.1, 30.0);
            let (a, b) = if r >= 1.0 { (1.0, r) } else { (r, 1.0) };
            rects.push(Rectangle::new(
                [(a, y + 0.1), (b, y + 0.9)],
                color(name).filled(),
            ));
            y += 1.0;
        }
        y += 1.0;
    }
    chart.draw_series(rects).map_err(err)?;
    chart
        .draw_series(LineSeries::new([(1.0, 0.0), (1.0, rows as f64)], BLACK))
        .map_err(err)?;
    for n in names {
        let c = color(&n);
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
            .map_err(err)?
            .label(n)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Lines: one (name, points) series each.
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Res {
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x1, mut y0, mut y1) = (1.0f64, 0.0f64, 1.0f64);
    for &(x, y) in pts {
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let x0 = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(f64::MAX, f64::min)
        .min(x1 - 1.0);
    let root = SVGBackend::new(path, (800, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1 * 1.05)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for (name, p) in series {
        let c = color(name);
        chart
            .draw_series(LineSeries::new(p.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(p.iter().map(|&q| Circle::new(q, 2, c.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}
