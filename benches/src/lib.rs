//! Shared code of kcon's benchmarks.
