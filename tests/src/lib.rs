//! Support code for kcon's integration tests: starting and stopping real brokers.
