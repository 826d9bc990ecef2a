//! The one font every chart uses, compiled into the binary.
//!
//! plotters' `ab_glyph` text backend knows no system fonts: a family name only resolves after
//! its bytes are registered. DejaVu Sans (from matplotlib's `mpl-data`, licence in
//! `assets/LICENSE_DEJAVU`) covers the µ, ≥ and × of our labels, and bundling it makes every
//! machine, including a bare cluster node, draw identical pixels.

use std::sync::OnceLock;

use plotters::style::{FontStyle, register_font};

use crate::error::PlotError;

static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The family name charts ask for; registered as DejaVu Sans.
pub(crate) const FAMILY: &str = "sans-serif";

/// Registers the font once per process; every drawing entry point calls this first.
pub(crate) fn ensure_registered() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok());
    if ok { Ok(()) } else { Err(PlotError::Font) }
}
