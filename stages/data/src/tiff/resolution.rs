//! Pixel size in µm from XResolution + ResolutionUnit, or from an Aperio ImageDescription
//! ("… |MPP = 0.2499|…") when the tags are absent or implausible.

use super::ifd::Ifd;
use super::source::Source;
use super::tags;

/// Pixel sizes outside this range are writer defaults (72 dpi → 353 µm/px, or 1 px/unit), not
/// a microscope's resolution, and are reported as unknown.
const PLAUSIBLE_UM_PER_PX: std::ops::RangeInclusive<f64> = 0.01..=100.0;

/// µm per pixel of the IFD's image, if stated and plausible.
pub(crate) fn um_per_px(src: &Source, ifd: &Ifd) -> Option<f64> {
    let from_tags = || -> Option<f64> {
        let per_unit = ifd.float(src, tags::X_RESOLUTION).ok()??;
        let unit = ifd.uint(src, tags::RESOLUTION_UNIT).ok().flatten().unwrap_or(2);
        from_resolution(per_unit, unit)
    };
    from_tags().or_else(|| aperio_mpp(&ifd.ascii(src, tags::IMAGE_DESCRIPTION).ok()??))
}

/// `per_unit` pixels per inch (unit 2) or per centimetre (unit 3) → µm/px.
fn from_resolution(per_unit: f64, unit: u64) -> Option<f64> {
    let um_per_unit = match unit {
        2 => 25_400.0,
        3 => 10_000.0,
        _ => return None,
    };
    let um = um_per_unit / per_unit;
    (per_unit.is_finite() && per_unit > 0.0 && PLAUSIBLE_UM_PER_PX.contains(&um)).then_some(um)
}

/// The `MPP = x` field of an Aperio SVS description.
fn aperio_mpp(description: &str) -> Option<f64> {
    if !description.starts_with("Aperio") {
        return None;
    }
    description.split('|').find_map(|field| {
        let (key, value) = field.split_once('=')?;
        let um: f64 = (key.trim() == "MPP").then(|| value.trim().parse().ok())??;
        PLAUSIBLE_UM_PER_PX.contains(&um).then_some(um)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(from_resolution(40_000.0, 3), Some(0.25));
        assert_eq!(from_resolution(50_800.0, 2), Some(0.5));
        assert_eq!(from_resolution(72.0, 2), None);
        assert_eq!(from_resolution(40_000.0, 1), None);
        assert_eq!(from_resolution(0.0, 3), None);
    }

    #[test]
    fn aperio_description() {
        let d = "Aperio Image Library v11.2.1\r\n46000x32914 [0,100 46000x32814] (256x256) JPEG/RGB Q=30|AppMag = 20|MPP = 0.4990|Filename = x";
        assert_eq!(aperio_mpp(d), Some(0.499));
        assert_eq!(aperio_mpp("ImageJ=1.5|MPP = 0.5"), None);
    }
}
