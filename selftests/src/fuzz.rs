// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tcpao-selftests fuzz`: a TCP-AO-aware uAPI fuzzer with KCOV feedback and a model oracle
//! (see docs/fuzz.md).
//!
//! * [`prog`]: programs, sequences of socket operations, TCP-AO/MD5 socket options and
//!   crafted segments over a few socket slots in two namespaces.
//! * [`mutate`]: generation, mutation at the edges, splicing, minimisation.
//! * [`encode`]: typed arguments to the uAPI structs' bytes; the topology's addresses.
//! * [`model`]: the uAPI model that predicts each call's errno and what `TCP_AO_GET_KEYS` /
//!   `TCP_AO_INFO` report.
//! * [`exec`]: runs a program on the kernel (namespaces, veth, TUN, KCOV) and checks it
//!   against the model, the wire (every segment the kernel sends to the virtual peer verified
//!   by `tcpao-refimpl`) and the counters (never backwards).
//! * [`wire`]: the wire oracle for kernel-to-kernel segments on the veth.
//! * [`engine`]: the loop: corpus, coverage, findings, progress, JSON summary.
//! * [`probe`]: what KCOV sees of the receive path, over veth and through TUN.
//! * [`cases`]: findings kept as suite tests (`fuzz-cases/any/*`).
//! * [`repro`]: a finding as a suite test case and as a standalone C program.

pub mod cases;
pub mod encode;
pub mod engine;
pub mod exec;
pub mod model;
pub mod mutate;
pub mod peer;
pub mod probe;
pub mod prog;
pub mod repro;
pub mod wire;

pub use engine::main;
