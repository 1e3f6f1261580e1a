//! How a scan shares the cores between FFmpeg (decode stage), OpenCV (face detection) and
//! libtorch (models), decided here and nowhere else.
//!
//! The stages already run side by side, one thread each (and an OOD model run only for its
//! risk, `pipeline::risk`, and the attribution model, `pipeline::attribution`, on one more
//! each), so every core is busy once the queues fill; a library
//! pool per stage on top of that oversubscribes. Measured on 2 cores
//! (README, "Speed"): with OpenCV's and libtorch's default pools (2 threads each) the
//! MesoInception4 scan of the bench clips took 38 CPU seconds, with one thread each 30, in
//! the same wall time; libtorch's OpenMP team spins while it waits (libgomp reads
//! `OMP_WAIT_POLICY` in its load-time constructor, before `main`, so the process cannot make
//! it wait passively itself) and the faces and models threads fought over both cores.
//! FFmpeg's frame threads do not spin, but one decoder thread instead of two still saved
//! 0.3-1.3 s of wall time on the bench clips' scans (most with `--detector yunet320`, where
//! decoding is 40% of the CPU time), so the decoder gets half the cores too.
//!
//! With one input decoded at a time, a core still stood idle during the 1080p clips, the
//! faces and models stages waiting for its frames. Two inputs decoded at once, each on its own
//! thread, fill that gap; their lines still leave in input order (`stages::Outbox`). Three
//! alternating rounds of the default scan of the bench clips: 6.09-6.20 s with one, 5.83-5.94 s
//! with two, 30-40 MB more peak RSS (a second decoder's frames).
use anyhow::Result;

/// Inputs decoded at once (`--decode-inputs`).
const INPUTS_OPEN: usize = 2;

/// Threads of each library's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadSplit {
    /// FFmpeg decoder threads (frame and slice threading) of each input.
    pub decoder: usize,
    /// Inputs decoded at once, each on its own decode thread.
    pub inputs: usize,
    /// OpenCV's pool, which runs the DNN face detectors.
    pub opencv: usize,
    /// libtorch's intra-op threads.
    pub torch: usize,
}

impl ThreadSplit {
    /// The split for `cores` cores: each stage's library gets half the cores (the three
    /// stages are rarely all busy at once).
    pub fn for_cores(cores: usize) -> Self {
        let half = (cores / 2).max(1);
        Self { decoder: half.min(crate::decode::MAX_THREADS), inputs: INPUTS_OPEN, opencv: half, torch: half }
    }

    /// The split for this machine's cores.
    pub fn detect() -> Self {
        Self::for_cores(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// `--threads N`: N threads for OpenCV's pool and N for libtorch's (None: the split's).
    pub fn with_pools(mut self, threads: Option<usize>) -> Self {
        if let Some(n) = threads {
            (self.opencv, self.torch) = (n.max(1), n.max(1));
        }
        self
    }

    /// Sizes OpenCV's and libtorch's pools (process-wide); the decoder's count goes to
    /// each decoder as it opens ([`crate::decode::DecodeOptions::threads`]).
    pub fn apply(&self) -> Result<()> {
        opencv::core::set_num_threads(self.opencv as i32)?;
        tch::set_num_threads(self.torch as i32);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_cores_give_one_thread_to_each_stage() {
        assert_eq!(ThreadSplit::for_cores(2), ThreadSplit { decoder: 1, inputs: 2, opencv: 1, torch: 1 });
        assert_eq!(ThreadSplit::for_cores(1), ThreadSplit { decoder: 1, inputs: 2, opencv: 1, torch: 1 });
        assert_eq!(ThreadSplit::for_cores(16), ThreadSplit { decoder: 8, inputs: 2, opencv: 8, torch: 8 });
    }
}
