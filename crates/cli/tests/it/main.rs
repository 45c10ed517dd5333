//! The `protolab` command line end to end: `certs` in-process and through the binary, `up` as
//! a user runs it, each against real peers.

mod acme;
mod autobahn;
mod bench;
mod capture;
mod certs;
mod compare;
mod compare_contention;
mod compare_deflate;
mod compare_h2;
mod compare_lab;
mod compare_pinning;
mod compare_report;
mod compare_rounds;
mod compare_wire;
mod containers;
mod errors;
mod fdlimit;
mod hub;
mod hub_redis;
mod hub_scaleout;
mod inspect;
mod interrupt;
mod k8s;
mod merge;
mod notify;
mod probe;
mod progress;
mod proxy;
mod readme;
mod results;
mod up;
mod wan;
mod ws_deflate;
mod ws_memory;
