//! What the commands show: a bar per running stage on a terminal, one line per finished stage
//! everywhere, and plain text tables, durations and sizes.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct RunDisplay {
    multi: MultiProgress,
    terminal: bool,
    quiet: bool,
}

pub struct StageBar {
    bar: ProgressBar,
}

impl RunDisplay {
    pub fn new(quiet: bool) -> RunDisplay {
        let terminal = std::io::stderr().is_terminal() && !quiet;
        let target = if terminal { ProgressDrawTarget::stderr_with_hz(8) } else { ProgressDrawTarget::hidden() };
        RunDisplay { multi: MultiProgress::with_draw_target(target), terminal, quiet }
    }

    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        if self.terminal {
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    /// Always shown (also with `--quiet` and `--json`, on stderr): failures must never be silent.
    pub fn error(&self, text: &str) {
        if self.terminal {
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    pub fn stage_bar(&self, label: &str) -> StageBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:<28!} {elapsed:>4} {wide_bar:.cyan/blue} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        StageBar { bar }
    }
}

impl StageBar {
    pub fn update(&self, pos: u64, len: u64, message: &str) {
        self.bar.set_length(len);
        self.bar.set_position(pos);
        self.bar.set_message(message.to_string());
    }

    pub fn message(&self, message: &str) {
        self.bar.set_message(message.to_string());
    }

    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// A plain text table with aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let fmt_row = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = fmt_row(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    out.push_str(&fmt_row(widths.iter().map(|w| "─".repeat(*w)).collect()));
    for r in rows {
        out.push('\n');
        out.push_str(&fmt_row(r.clone()));
    }
    out
}

pub fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.0} min {:02.0} s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// Bytes for humans: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align() {
        let t = super::table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\n───  ──\nxxx  y");
    }
}
