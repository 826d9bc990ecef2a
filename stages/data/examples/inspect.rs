//! What `pipeline inspect FILE.tiff [--region X,Y,W,H] [--level L] [--out crop.png]` does:
//!
//!     cargo run --release -p midog-data --example inspect -- 001.tiff --region 1000,2000,512,512 --out crop.png

use midog_data::{TiffImage, write_png_rgb};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut file, mut region, mut level, mut out) = (None, None, 0usize, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--region" => {
                let v: Vec<i64> = args.next().unwrap_or_default().split(',').filter_map(|p| p.parse().ok()).collect();
                region = (v.len() == 4 && v[2] > 0 && v[3] > 0).then(|| (v[0], v[1], v[2] as u32, v[3] as u32));
            }
            "--level" => level = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--out" => out = args.next(),
            _ => file = Some(arg),
        }
    }
    let Some(file) = file else {
        eprintln!("usage: inspect FILE.tiff [--region X,Y,W,H] [--level L] [--out crop.png]");
        std::process::exit(2);
    };
    let run = || -> Result<(), midog_data::DataError> {
        let image = TiffImage::open(&file)?;
        print!("{}", image.info());
        if let (Some((x, y, w, h)), Some(out)) = (region, out) {
            let pixels = image.read_region_vec(level, x, y, w, h)?;
            write_png_rgb(&out, w, h, &pixels)?;
            println!("wrote level {level} region {x},{y} {w} × {h} to {out}");
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
