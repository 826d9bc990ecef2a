//! Side-by-side with `parity/bench_torchvision.py`:
//!
//! ```text
//! cargo run --release -p midog-model --example bench_train -- [batch] [size] [steps] [fp32|bf16|fp16] [p3p7|p3p5] [cpu|cuda]
//! ```

use midog_model::{BenchOptions, FpnLevels, Precision, RetinaNetConfig, bench_train_step_with};
use tch::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let batch: i64 = arg(0, "4").parse()?;
    let size: i64 = arg(1, "512").parse()?;
    let steps: usize = arg(2, "10").parse()?;
    let precision: Precision = serde_json::from_str(&format!("\"{}\"", arg(3, "fp32")))?;
    let fpn_levels: FpnLevels = serde_json::from_str(&format!("\"{}\"", arg(4, "p3p7")))?;
    let device = if arg(5, "cpu") == "cuda" { Device::Cuda(0) } else { Device::Cpu };
    let cfg = RetinaNetConfig { fpn_levels, ..Default::default() };
    let opts = BenchOptions { precision, channels_last: device != Device::Cpu, ..Default::default() };
    let ips = bench_train_step_with(&cfg, batch, size, steps, device, &opts)?;
    println!(
        "midog-model img/s: {ips:.3} (batch {batch}, size {size}, steps {steps}, {device:?}, {precision:?}, \
         threads {}, {fpn_levels:?})",
        tch::get_num_threads()
    );
    Ok(())
}
