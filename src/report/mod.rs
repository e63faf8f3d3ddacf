//! Reports: tables as markdown and CSV.

pub mod table;

pub use table::Table;
