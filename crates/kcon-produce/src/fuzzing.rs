//! What the fuzz targets drive (the feature `fuzzing`, hidden; no API promise): the sender
//! machine, sans-IO, with its inputs and outputs, and the simulated cluster of its tests (one
//! broker that coordinates the transactions and the group and leads topic `t`), for the fuzz
//! target `producer_machine`.

pub use crate::machine::sim::{
    Api, Cluster, FAULT_APIS, RETRIABLE, WALL_MS, Written, config, fault, metadata_of, record_to,
    transactional_machine, txn_config,
};
pub use crate::machine::{
    CallId, Event, FlushId, Incoming, Request, Response, SenderMachine, TxnCall, TxnOffset, TxnOp,
    TxnProtocol,
};
