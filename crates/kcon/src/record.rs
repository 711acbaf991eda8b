//! The record handed to the application: kcon-core's, made by the fetch layer without a copy.

pub use kcon_core::Record;
