//! The x axis of a grouped bar chart: group `g` is centred on `g`, the axis spans
//! `[-0.5, groups - 0.5]`, and ticks sit exactly on the group centres.
//!
//! plotters' float axes choose "nice" tick values themselves, which need not be integers, and its
//! segmented integer axis cannot place a bar at a fraction of a segment; this small axis gives
//! both: fractional positions for the bars of each series, integer ticks for the group names.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupAxis {
    pub(crate) groups: usize,
}

impl GroupAxis {
    fn hi(&self) -> f64 {
        self.groups.max(1) as f64 - 0.5
    }
}

impl Ranged for GroupAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = (value + 0.5) / (self.hi() + 0.5);
        limit.0 + (f64::from(limit.1 - limit.0) * t).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        (0..self.groups).map(|g| g as f64).collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.hi()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_group_edges_to_the_pixel_limits() {
        let axis = GroupAxis { groups: 4 };
        assert_eq!(axis.map(&-0.5, (100, 500)), 100);
        assert_eq!(axis.map(&3.5, (100, 500)), 500);
        assert_eq!(axis.map(&0.0, (100, 500)), 150);
        assert_eq!(axis.key_points(10usize), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(GroupAxis { groups: 0 }.range(), -0.5..0.5);
    }
}
