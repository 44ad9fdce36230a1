//! End-to-end tests: the real `taipan` binary, real sockets, real HTTP.

mod assets;
mod bindings;
mod cache;
mod cli;
mod cluster;
mod conformance;
mod errors;
mod examples;
mod harness;
mod isolation;
mod limits;
mod native_packages;
mod packages;
mod queues;
mod real_projects;
mod reload;
mod s3;
mod sdk;
mod serve;
mod sockets;
mod tls;
mod websockets;
mod workflows;
