//! Reports: tables as markdown and CSV.

pub mod plot;
pub mod table;

pub use table::Table;
