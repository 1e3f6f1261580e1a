//! How a scan shares the cores between FFmpeg (decode stage), OpenCV (face detection) and
//! libtorch (models), decided here and nowhere else.
//!
//! The stages already run side by side, one thread each, so every core is busy once the
//! queues fill; a library pool per stage on top of that oversubscribes. Measured on 2 cores
//! (README, "Speed"): with OpenCV's and libtorch's default pools (2 threads each) the
//! MesoInception4 scan of the bench clips took 38 CPU seconds, with one thread each 30, in
//! the same wall time; libtorch's OpenMP team spins while it waits (libgomp reads
//! `OMP_WAIT_POLICY` in its load-time constructor, before `main`, so the process cannot make
//! it wait passively itself) and the faces and models threads fought over both cores.
//! FFmpeg's frame threads only run while there is something to decode and do not spin, so
//! the decoder keeps one per core.
use anyhow::Result;

/// Threads of each library's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadSplit {
    /// FFmpeg decoder threads (frame and slice threading).
    pub decoder: usize,
    /// OpenCV's pool, which runs the DNN face detectors.
    pub opencv: usize,
    /// libtorch's intra-op threads.
    pub torch: usize,
}

impl ThreadSplit {
    /// The split for `cores` cores: the faces and models stages, the two that compute, get
    /// half the cores each.
    pub fn for_cores(cores: usize) -> Self {
        let half = (cores / 2).max(1);
        Self { decoder: cores.clamp(1, crate::decode::MAX_THREADS), opencv: half, torch: half }
    }

    /// The split for this machine's cores.
    pub fn detect() -> Self {
        Self::for_cores(std::thread::available_parallelism().map_or(1, |n| n.get()))
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
    fn two_cores_give_one_thread_to_each_computing_stage() {
        assert_eq!(ThreadSplit::for_cores(2), ThreadSplit { decoder: 2, opencv: 1, torch: 1 });
        assert_eq!(ThreadSplit::for_cores(1), ThreadSplit { decoder: 1, opencv: 1, torch: 1 });
        assert_eq!(ThreadSplit::for_cores(16), ThreadSplit { decoder: 8, opencv: 8, torch: 8 });
    }
}
