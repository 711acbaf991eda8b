//! kcon-pool against the scripted broker (kcon-scripted): connections scripted step by step, and
//! brokers that answer with crafted responses.

mod connection;
mod pool;
mod rebootstrap;
mod sasl;
mod support;
