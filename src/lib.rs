//! warpnet: Warped Residual Networks (Fok, An, Rashidi, Wang, ICLR 2018) on libtorch.
//!
//! A residual network computes x_{i+1} = x_i + F_i(x_i) unit after unit. A warp layer expands K
//! consecutive units to first order around their input x1, so that every term depends on x1 alone
//! (paper eq. 3 and 5). The wide ResNet baseline is the K = 1 case of the same network.

pub mod analysis;
pub mod base;
pub mod cli;
pub mod data;
pub mod error;
pub mod model;
pub mod planner;
pub mod precision;
pub mod report;
pub mod runtime;
pub mod train;
