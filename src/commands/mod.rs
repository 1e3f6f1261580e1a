//! The runners of the subcommands (binary only): each turns its parsed arguments into the
//! library's configuration, runs it, and returns the exit code.
pub mod scan;
