//! The one error type of the core. Each variant says what is wrong and where, so that the
//! bindings can raise the right Python exception with the message intact.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum MmdError {
    /// An input that must hold at least one element holds none.
    #[error("{name} is empty")]
    Empty { name: &'static str },

    /// Two inputs that must have the same length do not.
    #[error("{name} has length {got} but rewards has length {expected}")]
    LengthMismatch {
        name: &'static str,
        expected: usize,
        got: usize,
    },

    /// A NaN or infinite value.
    #[error("{name}[{index}] is {value}: values must be finite")]
    NonFinite {
        name: &'static str,
        index: usize,
        value: f64,
    },

    /// A negative bin or group label.
    #[error("{name}[{index}] = {value} is negative")]
    Negative {
        name: &'static str,
        index: usize,
        value: i64,
    },

    /// A bin label at or above num_bins.
    #[error("{name}[{index}] = {value} is out of range [0, {limit})")]
    OutOfRange {
        name: &'static str,
        index: usize,
        value: i64,
        limit: usize,
    },

    /// A setting outside its domain (num_bins < 2, bandwidth <= 0, ...).
    #[error("{0}")]
    InvalidArgument(String),
}

pub type Result<T> = std::result::Result<T, MmdError>;
