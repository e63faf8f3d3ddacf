//! Reports: tables as markdown and CSV.

pub mod curves;
mod legend;
pub mod plot;
pub mod table;

pub use table::Table;
