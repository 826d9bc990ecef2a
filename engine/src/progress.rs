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

/// A Unix time as `2026-12-05 12:11:02 UTC` (proleptic Gregorian, days from civil dates after
/// Howard Hinnant's algorithm).
pub fn utc_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let rem = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A path as a user types it: `..` resolved (lexically: symbolic links are kept), relative to
/// the working directory when it lies below it.
pub fn display_path(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let Ok(cwd) = std::env::current_dir() else { return path.to_path_buf() };
    let mut clean = std::path::PathBuf::new();
    for c in cwd.join(path).components() {
        match c {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    match clean.strip_prefix(&cwd) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.to_path_buf(),
        Err(_) => clean,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_times_are_civil_dates() {
        assert_eq!(super::utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc_time(1_796_472_662), "2026-12-05 12:11:02 UTC");
    }

    #[test]
    fn paths_below_the_working_directory_are_shown_relative() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(super::display_path(&cwd.join("results/x")), std::path::Path::new("results/x"));
        assert_eq!(super::display_path(std::path::Path::new("/elsewhere/x")), std::path::Path::new("/elsewhere/x"));
        assert_eq!(super::display_path(std::path::Path::new("experiments/../data/x")), std::path::Path::new("data/x"));
    }

    #[test]
    fn tables_align() {
        let t = super::table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\n───  ──\nxxx  y");
    }
}
