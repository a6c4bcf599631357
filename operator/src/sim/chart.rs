//! An SVG chart of the fleet's use per zone over the day: slots used (solid) against slots
//! on Ready nodes (dashed) and the zone's nodes in any phase, in slots (dotted: what the
//! autoscaler runs), with the day's events marked.

use std::fmt::Write;

use super::outcome::Outcome;

/// Colour-blind-safe palette, one colour per zone.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999933", "#000000",
];

const WIDTH: f64 = 1080.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 50.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The smallest round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten)
/// that is at least `v`, so the axis ends just above the data.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

/// Maps hours and slots to the plot's pixels.
struct Frame {
    t0: f64,
    t1: f64,
    y_max: f64,
}

impl Frame {
    const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
    const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

    fn x(&self, hours: f64) -> f64 {
        LEFT + (hours - self.t0) / (self.t1 - self.t0).max(1e-9) * Self::PLOT_W
    }

    fn y(&self, slots: f64) -> f64 {
        TOP + Self::PLOT_H - slots / self.y_max * Self::PLOT_H
    }
}

/// Renders the chart.
pub fn render(o: &Outcome) -> String {
    let top_value = o
        .samples
        .iter()
        .flat_map(|s| {
            s.zones.iter().map(|z| {
                z.used
                    .max(z.capacity)
                    .max(u64::from(z.nodes) * u64::from(o.node_capacity))
            })
        })
        .max()
        .unwrap_or(0);
    let frame = Frame {
        t0: o.start.hours(),
        t1: o.end.hours(),
        y_max: nice_ceiling(top_value as f64 * 1.05),
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{} — participant slots per zone</text>"#,
        escape(&o.name)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="42" fill="#555">solid: slots used (reserved by rooms) · dashed: slots on Ready nodes · dotted: nodes × {} slots · seed {}</text>"##,
        o.node_capacity, o.seed
    );
    lifecycle(&mut svg, o);
    axes(&mut svg, &frame);
    events(&mut svg, &frame, o);
    series(&mut svg, &frame, o);
    let _ = writeln!(svg, "</svg>");
    svg
}

/// One line under the title with what drains and rollouts did, when the day had any.
fn lifecycle(svg: &mut String, o: &Outcome) {
    let l = &o.lifecycle;
    if l == &super::outcome::LifecycleOutcome::default() {
        return;
    }
    let mut text = format!(
        "rooms moved live: {} · rooms cut by drains: 0 · left live with nowhere to go: {}",
        l.migrated,
        l.stranded.len()
    );
    if let (Some(start), Some(end)) = (l.rollout_started, l.rollout_finished) {
        let minutes = end.seconds().saturating_sub(start.seconds()) / 60;
        let _ = write!(
            text,
            " · rolling upgrade {start}–{end} ({}h{:02}), surge {:.1} node-hours",
            minutes / 60,
            minutes % 60,
            l.surge_node_hours
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="58" fill="#555">{}</text>"##,
        escape(&text)
    );
}

fn axes(svg: &mut String, f: &Frame) {
    let (plot_w, plot_h) = (Frame::PLOT_W, Frame::PLOT_H);
    for i in 0..=5 {
        let v = f.y_max * f64::from(i) / 5.0;
        let py = f.y(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{}</text>"##,
            LEFT - 8.0,
            py + 4.0,
            v.round()
        );
    }
    let mut hour = f.t0.ceil();
    while hour <= f.t1 {
        let px = f.x(hour);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#f0f0f0"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            svg,
            r##"<text x="{px:.1}" y="{:.1}" text-anchor="middle" fill="#333">{:02}:00</text>"##,
            TOP + plot_h + 18.0,
            hour as u32
        );
        hour += 1.0;
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/>"##,
        TOP + plot_h
    );
    let mid = TOP + plot_h / 2.0;
    let _ = writeln!(
        svg,
        r##"<text x="16" y="{mid:.1}" transform="rotate(-90 16 {mid:.1})" text-anchor="middle" fill="#333">slots</text>"##
    );
}

fn events(svg: &mut String, f: &Frame, o: &Outcome) {
    for (i, e) in o.events.iter().enumerate() {
        let px = f.x(e.at.hours());
        let label = if e.moved > 0 || e.cut > 0 {
            format!("{} {}: {} moved, {} cut", e.at, e.what, e.moved, e.cut)
        } else {
            format!("{} {}", e.at, e.what)
        };
        let ly = TOP + 14.0 + 14.0 * (i % 4) as f64;
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#c00" stroke-dasharray="3,3"/>"##,
            TOP + Frame::PLOT_H
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{ly:.1}" fill="#c00" font-size="11">{}</text>"##,
            px + 4.0,
            escape(&label)
        );
    }
}

fn series(svg: &mut String, f: &Frame, o: &Outcome) {
    for (z, (name, _)) in o.zones.iter().enumerate() {
        let colour = PALETTE[z % PALETTE.len()];
        let line = |pick: &dyn Fn(usize) -> u64| {
            o.samples
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{:.1},{:.1}", f.x(s.at.hours()), f.y(pick(i) as f64)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let capacity = line(&|i| o.samples[i].zones[z].capacity);
        let used = line(&|i| o.samples[i].zones[z].used);
        let slots = u64::from(o.node_capacity);
        let nodes = line(&|i| u64::from(o.samples[i].zones[z].nodes) * slots);
        // The zone's nodes in any phase (starting and draining too), in slots: what it pays for.
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1" stroke-dasharray="1,3" points="{nodes}"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" stroke-dasharray="6,4" points="{capacity}"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{used}"/>"#
        );
        let (lx, ly) = (LEFT + Frame::PLOT_W + 20.0, TOP + 10.0 + 40.0 * z as f64);
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/>"#,
            lx + 24.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}">{}</text>"#,
            lx + 30.0,
            ly + 4.0,
            escape(name)
        );
        if let Some(s) = o.zone_stats.get(z) {
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" fill="#555" font-size="11">peak {:.0}% at {}, mean {:.0}%</text>"##,
                lx + 30.0,
                ly + 19.0,
                s.peak_percent,
                s.peak_at,
                s.mean_percent
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        assert!((nice_ceiling(4300.0) - 5000.0).abs() < 1e-9);
        assert!((nice_ceiling(5250.0) - 6000.0).abs() < 1e-9);
        assert!((nice_ceiling(5000.0) - 5000.0).abs() < 1e-9);
        assert!((nice_ceiling(120.0) - 120.0).abs() < 1e-9);
        assert!((nice_ceiling(121.0) - 150.0).abs() < 1e-9);
        assert!((nice_ceiling(0.0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
