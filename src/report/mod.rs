//! Rendering of evaluation records (plots and tables) for the subnetwork-detection benchmark of Wang, Hu, Su
//! (arXiv 1910.02673); the numbers come from `metrics`, this module only draws them.
pub mod evasion;
pub mod heatmap;
pub mod helps;
pub mod html;
pub mod manifest;
pub mod plot;
pub mod render;
pub mod sweep;
pub mod tables;

use std::sync::Once;

/// DejaVu Sans (license in assets/DejaVuSans-LICENSE.txt), compiled in so PNG text renders on machines without fonts.
static SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the bundled font as "sans-serif" for plotters' text layout (PNG and SVG); safe to call from every plot.
pub fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [plotters::style::FontStyle::Normal, plotters::style::FontStyle::Bold] {
            // the bytes are a valid TrueType font checked by the tests; a failure here would only lose PNG text
            let _ = plotters::style::register_font("sans-serif", style, SANS);
        }
    });
}
