//! Checkpoint and restore speed and statefile size for sandboxes with
//! 16 MiB, 256 MiB and 1 GiB of touched memory (half of it zero pages).
//!
//! `cargo run --release --example ckptbench [MiB...]`. Runs in-process
//! through the library: a `memhog` guest touches the memory, the sandbox
//! is paused and checkpointed to a file under target/, then restored into
//! a fresh loader.

use rvisor::{Args, Config, Loader};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn null() -> OwnedFd {
    std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .expect("/dev/null")
        .into()
}

fn guest() -> PathBuf {
    let out = PathBuf::from("target/guests/memhog-static");
    let src = PathBuf::from("tests/guests/memhog.c");
    let fresh = out.metadata().and_then(|m| m.modified()).ok()
        >= src.metadata().and_then(|m| m.modified()).ok();
    if !out.exists() || !fresh {
        std::fs::create_dir_all("target/guests").expect("target/guests");
        let st = Command::new("cc")
            .args(["-O2", "-static", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("cc");
        assert!(st.success(), "cc memhog.c failed");
    }
    std::fs::canonicalize(out).expect("guest path")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![16, 256, 1024]
    } else {
        sizes
    };
    let exe = guest();
    let scratch = PathBuf::from("target/ckptbench");
    std::fs::create_dir_all(&scratch)?;
    println!(
        "{:>8} {:>12} {:>12} {:>14} {:>14} {:>10}",
        "MiB", "checkpoint", "restore", "statefile", "non-zero", "overhead"
    );
    for mib in sizes {
        let ready = scratch.join(format!("ready-{mib}"));
        let out = std::fs::File::create(&ready)?;
        let spec = rvisor::simple_spec(
            "/",
            "/",
            &[exe.to_str().unwrap_or_default(), &mib.to_string()],
            &[],
        )?;
        let stdio = [null(), out.try_clone()?.into(), out.into()];
        let started = Loader::new(Args {
            spec,
            config: Config::default(),
            stdio,
        })?
        .start()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::fs::read_to_string(&ready)?.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let paused = started.pause().map_err(|(_, e)| e)?;
        let image = scratch.join(format!("image-{mib}"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&image)?);
        let t0 = Instant::now();
        let (saved, summary) = paused.checkpoint(&mut f).map_err(|(_, e)| e)?;
        drop(f);
        let ckpt = t0.elapsed();
        saved.destroy();
        let fresh = Loader::new(Args {
            spec: rvisor::simple_spec("/", "/", &["/bin/true"], &[])?,
            config: Config::default(),
            stdio: [null(), null(), null()],
        })?;
        let mut r = std::io::BufReader::new(std::fs::File::open(&image)?);
        let t1 = Instant::now();
        let restored = fresh.restore(&mut r)?;
        let rest = t1.elapsed();
        restored.destroy();
        let nonzero = mib << 19; // half the pages are touched with non-zero bytes
        let size = std::fs::metadata(&image)?.len();
        println!(
            "{:>8} {:>10.1}ms {:>10.1}ms {:>12}KiB {:>12}KiB {:>9.2}%",
            mib,
            ckpt.as_secs_f64() * 1e3,
            rest.as_secs_f64() * 1e3,
            size / 1024,
            nonzero / 1024,
            (size as f64 / nonzero as f64 - 1.0) * 100.0
        );
        let _ = summary;
        std::fs::remove_file(&image).ok();
    }
    Ok(())
}
