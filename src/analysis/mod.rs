//! The paper's claims about the expansion, measured (`warpnet analyze`): Taylor error, binomial path
//! counts and contributions, gradient scaling with path length, WarpNet/WRN agreement in training.

pub mod agreement;
pub mod block;
pub mod gradients;
pub mod lm_taylor;
pub mod paths;
pub mod reproduce;
pub mod taylor;
