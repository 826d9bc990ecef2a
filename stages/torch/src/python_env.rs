//! Where the pipeline's Python environment is: `pipeline weights fetch` runs it, and the tests
//! that compare against torchvision, tifffile or tensorboard include this file by path.

use std::path::PathBuf;

/// The pipeline's Python: `$PIPELINE_PYTHON`, else `$PIPELINE_HOME/torch-2.11.0/bin/python`, with
/// `PIPELINE_HOME` defaulting to `${XDG_CACHE_HOME:-~/.cache}/midog-pipeline` (as `bin/env.sh`).
pub fn pipeline_python() -> PathBuf {
    if let Some(p) = std::env::var_os("PIPELINE_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("PIPELINE_HOME").filter(|p| !p.is_empty()).map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
        cache.join("midog-pipeline")
    });
    home.join("torch-2.11.0/bin/python")
}
