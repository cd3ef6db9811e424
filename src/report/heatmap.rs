//! The error heatmap: one panel per step (layer × checkpoint kind, colour = log10 NMSE), as a
//! hand-written SVG. Failing cells are outlined, MISSING/SHAPE/ERROR cells are grey with a
//! letter, and every cell has a tooltip with its name, verdict and NMSE.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::checkpoint::catalogue::CheckpointName;
use crate::checkpoint::Kind;
use crate::compare::{CheckpointResult, Comparison, Verdict};

/// Panels beyond this are dropped (keeping the first divergence's and the worst step).
pub const MAX_PANELS: usize = 8;

const CELL_W: f64 = 18.0;
const CELL_H: f64 = 11.0;
const LEFT: f64 = 34.0;
const TOP: f64 = 92.0;
const GAP: f64 = 24.0;
/// The strip of non-layer checkpoints below each grid.
const STRIP: [&str; 3] = ["inp_embd", "result_norm", "result_output"];
const STRIP_W: f64 = 54.0;

/// Light (small error) to dark red (large error).
const PALETTE: [(f64, f64, f64); 5] = [
    (255.0, 247.0, 236.0),
    (253.0, 208.0, 162.0),
    (253.0, 141.0, 60.0),
    (217.0, 72.0, 1.0),
    (127.0, 39.0, 4.0),
];

fn colour(t: f64) -> String {
    let t = t.clamp(0.0, 1.0) * (PALETTE.len() - 1) as f64;
    let i = (t.floor() as usize).min(PALETTE.len() - 2);
    let f = t - i as f64;
    let (a, b) = (PALETTE[i], PALETTE[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The steps drawn: all of them up to [`MAX_PANELS`], else the first divergence's step, the
/// worst step and then the earliest ones.
pub fn panel_steps(c: &Comparison) -> Vec<u32> {
    let steps = c.steps();
    if steps.len() <= MAX_PANELS {
        return steps;
    }
    let mut keep = BTreeSet::new();
    if let Some(d) = &c.first_divergence {
        keep.insert(d.step);
    }
    if let Some(w) = worst_step(c) {
        keep.insert(w);
    }
    for s in steps {
        if keep.len() >= MAX_PANELS {
            break;
        }
        keep.insert(s);
    }
    keep.into_iter().collect()
}

/// The step holding the most severe checkpoint (then the largest NMSE relative to tolerance).
pub fn worst_step(c: &Comparison) -> Option<u32> {
    c.results
        .iter()
        .max_by(|a, b| {
            a.verdict
                .cmp(&b.verdict)
                .then(super::badness(a).total_cmp(&super::badness(b)))
        })
        .map(|r| r.step)
}

struct Scale {
    lo: f64,
    hi: f64,
}

impl Scale {
    fn of(c: &Comparison) -> Scale {
        let logs: Vec<f64> = c
            .results
            .iter()
            .filter_map(|r| r.nmse())
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(f64::log10)
            .collect();
        let tol: Vec<f64> = c
            .results
            .iter()
            .filter_map(|r| r.gate.nmse)
            .filter(|t| *t > 0.0)
            .map(f64::log10)
            .collect();
        let all = logs.iter().chain(&tol);
        let lo = all
            .clone()
            .fold(f64::INFINITY, |a, &b| a.min(b))
            .floor()
            .max(-16.0);
        let hi = all
            .fold(f64::NEG_INFINITY, |a, &b| a.max(b))
            .ceil()
            .min(4.0);
        if !lo.is_finite() || !hi.is_finite() {
            return Scale { lo: -12.0, hi: 0.0 };
        }
        Scale {
            lo,
            hi: if hi > lo { hi } else { lo + 1.0 },
        }
    }

    fn t(&self, nmse: f64) -> f64 {
        (nmse.log10() - self.lo) / (self.hi - self.lo)
    }
}

fn cell(svg: &mut String, x: f64, y: f64, w: f64, h: f64, r: &CheckpointResult, scale: &Scale) {
    let nmse = r.nmse();
    let tip = format!(
        "step {} {}: {}{}{}",
        r.step,
        r.name,
        r.verdict,
        nmse.map(|v| format!(", NMSE {}", super::sci(v)))
            .unwrap_or_default(),
        r.reason
            .as_ref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    );
    let (fill, letter) = match (r.verdict, nmse) {
        (Verdict::Missing | Verdict::Shape | Verdict::Error, _) => {
            ("#9e9e9e".to_string(), Some(&r.verdict.as_str()[..1]))
        }
        (_, Some(0.0)) => ("#ffffff".to_string(), None),
        (_, Some(v)) if v.is_finite() => (colour(scale.t(v)), None),
        // NaN metrics: only reachable with non-finite data, which fails anyway.
        _ => ("#000000".to_string(), None),
    };
    let stroke = if r.verdict == Verdict::Pass {
        r##"stroke="#e0e0e0" stroke-width="0.5""##
    } else {
        r##"stroke="#1a1a1a" stroke-width="1.6""##
    };
    let _ = write!(
        svg,
        r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}" {stroke}><title>{}</title></rect>"#,
        esc(&tip)
    );
    if let Some(l) = letter {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="8" text-anchor="middle" fill="#fff">{l}</text>"##,
            x + w / 2.0,
            y + h - 2.5
        );
    }
    svg.push('\n');
}

/// Renders the heatmap SVG for a comparison.
pub fn render(c: &Comparison) -> String {
    let kinds: Vec<Kind> = {
        let present: BTreeSet<Kind> = c.results.iter().filter_map(|r| r.id.name.kind()).collect();
        Kind::ALL
            .iter()
            .copied()
            .filter(|k| present.contains(k))
            .collect()
    };
    let n_layer = c
        .results
        .iter()
        .filter_map(|r| r.layer)
        .max()
        .map_or(0, |l| l + 1) as f64;
    let steps = panel_steps(c);
    let scale = Scale::of(c);

    let grid_w = (kinds.len() as f64 * CELL_W).max(STRIP.len() as f64 * STRIP_W);
    let panel_w = LEFT + grid_w + GAP;
    let strip_y = TOP + n_layer * CELL_H + 14.0;
    let legend_y = strip_y + CELL_H + 40.0;
    let width = (panel_w * steps.len().max(1) as f64 + 10.0).max(420.0);
    let height = legend_y + 50.0;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="9">"#
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let title = format!(
        "log10 NMSE per checkpoint, {} (A) vs {} (B), mode {}",
        c.expected.label(),
        c.candidate.label(),
        c.mode
    );
    let _ = writeln!(
        svg,
        r#"<text x="6" y="14" font-size="12" font-weight="bold">{}</text>"#,
        esc(&title)
    );

    for (p, &step) in steps.iter().enumerate() {
        let x0 = p as f64 * panel_w + 6.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="32" font-size="11" font-weight="bold">step {step}</text>"#,
            x0 + LEFT
        );
        for (j, k) in kinds.iter().enumerate() {
            let x = x0 + LEFT + j as f64 * CELL_W + CELL_W / 2.0 + 3.0;
            let _ = writeln!(
                svg,
                r#"<text x="{x:.1}" y="{:.1}" transform="rotate(-60 {x:.1} {:.1})">{}</text>"#,
                TOP - 4.0,
                TOP - 4.0,
                k.as_str()
            );
        }
        for l in 0..n_layer as u32 {
            let y = TOP + l as f64 * CELL_H;
            if l % 5 == 0 || l + 1 == n_layer as u32 {
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{l}</text>"#,
                    x0 + LEFT - 4.0,
                    y + CELL_H - 2.0
                );
            }
        }
        for r in c.step_results(step) {
            match (r.layer, r.id.name.kind()) {
                (Some(l), Some(k)) => {
                    let j = kinds.iter().position(|&x| x == k).unwrap_or(0);
                    let (x, y) = (x0 + LEFT + j as f64 * CELL_W, TOP + l as f64 * CELL_H);
                    cell(&mut svg, x, y, CELL_W, CELL_H, r, &scale);
                }
                _ => {
                    if let Some(j) = STRIP.iter().position(|s| *s == r.name) {
                        let x = x0 + LEFT + j as f64 * STRIP_W;
                        cell(&mut svg, x, strip_y, STRIP_W - 4.0, CELL_H, r, &scale);
                    }
                }
            }
        }
        for (j, s) in STRIP.iter().enumerate() {
            let x = x0 + LEFT + j as f64 * STRIP_W;
            let _ = writeln!(
                svg,
                r#"<text x="{x:.1}" y="{:.1}" font-size="8">{s}</text>"#,
                strip_y + CELL_H + 10.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="8">layer</text>"#,
            x0 + LEFT - 4.0,
            TOP - 4.0
        );
        if matches!(c.step_results(step).find(|r| r.id.name == CheckpointName::Tokens), Some(r) if r.verdict != Verdict::Pass)
        {
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="44" fill="#b00000" font-size="9">tokens differ</text>"##,
                x0 + LEFT
            );
        }
    }
    legend(&mut svg, 6.0 + LEFT, legend_y, &scale, c);
    svg.push_str("</svg>\n");
    svg
}

fn legend(svg: &mut String, x: f64, y: f64, scale: &Scale, c: &Comparison) {
    const W: f64 = 260.0;
    let _ = writeln!(svg, r#"<defs><linearGradient id="nmse-scale">"#);
    for (i, _) in PALETTE.iter().enumerate() {
        let t = i as f64 / (PALETTE.len() - 1) as f64;
        let _ = writeln!(
            svg,
            r#"<stop offset="{:.2}" stop-color="{}"/>"#,
            t,
            colour(t)
        );
    }
    let _ = writeln!(svg, "</linearGradient></defs>");
    let _ = writeln!(
        svg,
        r##"<rect x="{x:.1}" y="{y:.1}" width="{W}" height="10" fill="url(#nmse-scale)" stroke="#999" stroke-width="0.5"/>"##
    );
    let span = scale.hi - scale.lo;
    let step = if span > 10.0 { 2.0 } else { 1.0 };
    let mut e = scale.lo;
    while e <= scale.hi + 1e-9 {
        let tx = x + (e - scale.lo) / span * W;
        let _ = writeln!(
            svg,
            r##"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#333"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle" font-size="8">1e{}</text>"##,
            y + 10.0,
            y + 13.0,
            y + 21.0,
            e as i64
        );
        e += step;
    }
    let tols: BTreeSet<u64> = c
        .results
        .iter()
        .filter_map(|r| r.gate.nmse)
        .filter(|t| *t > 0.0)
        .map(f64::to_bits)
        .collect();
    for t in tols {
        let tx = x + scale.t(f64::from_bits(t)).clamp(0.0, 1.0) * W;
        let _ = writeln!(
            svg,
            r##"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#0050c8" stroke-width="1.5"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle" font-size="8" fill="#0050c8">tolerance {}</text>"##,
            y - 3.0,
            y + 12.0,
            y - 5.0,
            super::sci(f64::from_bits(t))
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="8">NMSE (white: 0; outlined: not PASS; grey: M/S/E = MISSING/SHAPE/ERROR)</text>"##,
        x,
        y + 34.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_ends() {
        assert_eq!(colour(0.0), "#fff7ec");
        assert_eq!(colour(1.0), "#7f2704");
        assert_eq!(colour(2.0), "#7f2704");
    }
}
