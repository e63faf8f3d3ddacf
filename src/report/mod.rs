//! Reports: tables as markdown and CSV.

pub mod curves;
pub mod plot;
pub mod table;

pub use table::Table;
