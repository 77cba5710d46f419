//! The latency-versus-throughput chart of a `--sweep`: p50, p99 and p99.9
//! latency (log scale, microseconds) against the achieved rate, one line
//! per percentile, as SVG (plotters). Other runs' sweeps (`--chart-compare`,
//! e.g. Redis's) are drawn dashed beside it.

use plotters::prelude::*;
use std::path::Path;

/// Chart size in pixels.
const WIDTH_PX: u32 = 900;
/// Chart size in pixels.
const HEIGHT_PX: u32 = 560;

/// A percentile's line: its name, how to read it from a point, and its dash
/// pattern (pixels on, off; `None` for solid).
type Line = (&'static str, fn(&Point) -> f64, Option<(u32, u32)>);

/// One rate of a sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Achieved answers per second.
    pub achieved_rate_per_s: f64,
    /// Median latency, us.
    pub p50_us: f64,
    /// 99th percentile, us.
    pub p99_us: f64,
    /// 99.9th percentile, us.
    pub p999_us: f64,
}

/// One sweep, labelled (`x700`, `redis keys`, ...).
#[derive(Clone, Debug)]
pub struct Sweep {
    /// Legend label.
    pub label: String,
    /// Its rates, in sweep order.
    pub points: Vec<Point>,
}

impl Sweep {
    /// Reads the sweep of a `x700 bench --json` file.
    pub fn from_json(label: &str, json: &serde_json::Value) -> Option<Sweep> {
        let points = json["sweep"]
            .as_array()?
            .iter()
            .map(|entry| {
                Some(Point {
                    achieved_rate_per_s: entry["achieved_rate_per_s"].as_f64()?,
                    p50_us: entry["latency_us"]["p50"].as_f64()?,
                    p99_us: entry["latency_us"]["p99"].as_f64()?,
                    p999_us: entry["latency_us"]["p999"].as_f64()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Sweep {
            label: label.to_string(),
            points,
        })
    }
}

/// Draws the sweeps into an SVG file; the first one solid, the rest dashed.
pub fn draw(path: &Path, title: &str, sweeps: &[Sweep]) -> Result<(), String> {
    let points = sweeps.iter().flat_map(|s| s.points.iter());
    let x_max = points
        .clone()
        .map(|p| p.achieved_rate_per_s)
        .fold(1.0, f64::max)
        * 1.05;
    let y_max = points
        .clone()
        .map(|p| p.p999_us.max(p.p99_us))
        .fold(10.0, f64::max)
        * 2.0;
    let y_min = points
        .map(|p| p.p50_us)
        .filter(|v| *v > 0.0)
        .fold(y_max, f64::min)
        .max(1.0)
        / 2.0;
    let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max / 1000.0, (y_min..y_max).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("achieved throughput (thousand requests/s)")
        .y_desc("latency (us, log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    // One colour per sweep; the percentile is the line's style: p50 solid,
    // p99 dashed, p99.9 dotted.
    let colours = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    let percentiles: [Line; 3] = [
        ("p50", |p| p.p50_us, None),
        ("p99", |p| p.p99_us, Some((8, 5))),
        ("p99.9", |p| p.p999_us, Some((2, 4))),
    ];
    for (index, sweep) in sweeps.iter().enumerate() {
        let colour = colours[index % colours.len()];
        let style = colour.stroke_width(2);
        for (name, pick, dashes) in percentiles {
            let data: Vec<(f64, f64)> = sweep
                .points
                .iter()
                .map(|p| (p.achieved_rate_per_s / 1000.0, pick(p).max(y_min)))
                .collect();
            let label = format!("{} {name}", sweep.label);
            // The legend's sample: three segments, touching for solid.
            let gap = match dashes {
                None => 0,
                Some((on, _)) if on > 4 => 3,
                Some(_) => 6,
            };
            let legend = move |(x, y): (i32, i32)| {
                let segment = |k: i32| {
                    let from = k * 8;
                    PathElement::new(vec![(from, 0), (from + 8 - gap, 0)], style)
                };
                EmptyElement::at((x, y)) + segment(0) + segment(1) + segment(2)
            };
            let drawn = match dashes {
                None => chart.draw_series(LineSeries::new(data, style).point_size(3)),
                Some((on, off)) => chart.draw_series(DashedLineSeries::new(data, on, off, style)),
            };
            drawn
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(legend);
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.svg");
        let json = serde_json::json!({"sweep": [
            {"achieved_rate_per_s": 1000.0, "latency_us": {"p50": 20.0, "p99": 40.0, "p999": 90.0}},
            {"achieved_rate_per_s": 9000.0, "latency_us": {"p50": 30.0, "p99": 80.0, "p999": 400.0}},
        ]});
        let ours = Sweep::from_json("x700", &json).unwrap();
        let theirs = Sweep {
            label: "redis keys".into(),
            ..ours.clone()
        };
        draw(&path, "test", &[ours, theirs]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("x700 p99.9") && svg.contains("redis keys p50"));
        assert!(svg.matches("<polyline").count() >= 6, "{svg}");
        assert!(Sweep::from_json("x", &serde_json::json!({})).is_none());
    }
}
