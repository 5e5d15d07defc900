// SPDX-License-Identifier: MIT OR Apache-2.0
//! Detect at start-up whether this kernel has TCP-AO, which algorithms it takes, and TCP-MD5.
//!
//! `cargo run -p tcpao-sys --example probe [EXTRA_ALG...]`, e.g. `hmac(sha512)`.

use tcpao_sys::{Algorithm, probe};

fn main() -> Result<(), tcpao_sys::Error> {
    let extra: Vec<Algorithm> = std::env::args()
        .skip(1)
        .map(|a| Algorithm::from_kernel_name(&a))
        .collect();
    let caps = probe(&extra)?;
    if caps.tcp_ao {
        println!("TCP-AO: supported");
        for a in &caps.algorithms {
            println!("  algorithm {a}: accepted");
        }
        for a in &caps.unavailable {
            println!("  algorithm {a}: not available (ENOENT)");
        }
    } else {
        println!("TCP-AO: NOT supported by this kernel (CONFIG_TCP_AO, Linux >= 6.7 needed)");
    }
    println!(
        "TCP-MD5: {}",
        if caps.tcp_md5 {
            "supported"
        } else {
            "NOT supported"
        }
    );
    Ok(())
}
