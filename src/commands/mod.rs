//! The runners of the subcommands (binary only): each turns its parsed arguments into the
//! library's configuration, runs it, reports on stderr, and returns the exit code.
pub mod cv;
pub mod measure;
pub mod prepare;
pub mod scan;
pub mod train;
