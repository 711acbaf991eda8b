//! kcon-pool against scripted peers: in-test TCP servers that answer with crafted responses.

mod connection;
mod pool;
mod sasl;
mod support;
