//! Planning placements: the step-time model, the profiles it reads, the predictions and `auto`
//! placements made from them, the communication volume over ranks, and the side-by-side comparison
//! that measures runs of the runtime below it.

pub mod auto_placement;
pub mod comparison;
pub mod prediction;
pub mod profile;
pub mod runs;
pub mod stats;
pub mod step_model;
pub mod volume;
