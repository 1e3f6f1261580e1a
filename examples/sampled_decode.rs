//! The scan's decode alone, per input: N frames spread over each video, with and without the
//! decode shortcuts, on T decoder threads; prints seconds and the decoder's counters.
//!
//! `cargo run --release --example sampled_decode -- N T CLIP...`
use std::sync::Arc;
use std::time::Instant;

use dfscan::decode::{DecodeOptions, Sampler, Sampling, VideoSource};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 3, "usage: sampled_decode N_FRAMES THREADS CLIP...");
    let (frames, threads): (usize, usize) = (args[0].parse()?, args[1].parse()?);
    let mut totals = [0.0; 2];
    for path in &args[2..] {
        for (i, shortcuts) in [true, false].into_iter().enumerate() {
            let started = Instant::now();
            let source = VideoSource::open_with(path.as_ref(), Arc::new(|| false), DecodeOptions { threads, shortcuts })?;
            let mut sampler = Sampler::new(Sampling::Frames(frames), source.info.duration_s);
            let stats = source.sample(&mut sampler, |_| Ok(true))?;
            let seconds = started.elapsed().as_secs_f64();
            totals[i] += seconds;
            println!("{path} shortcuts={shortcuts} {seconds:.3} s, {} decoded, {} kept, {} seeks", stats.frames_decoded, stats.frames_kept, stats.seeks);
        }
    }
    println!("total: {:.2} s with the shortcuts, {:.2} s without", totals[0], totals[1]);
    Ok(())
}
