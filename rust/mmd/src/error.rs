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
        value: i128,
    },

    /// A label beyond i64 (e.g. from an unsigned 64-bit column).
    #[error("{name}[{index}] = {value} is too large: labels must be at most 2^63 - 1")]
    LabelTooLarge {
        name: &'static str,
        index: usize,
        value: i128,
    },

    /// A bin label at or above num_bins.
    #[error("{name}[{index}] = {value} is out of range [0, {limit})")]
    OutOfRange {
        name: &'static str,
        index: usize,
        value: i128,
        limit: usize,
    },

    /// A setting outside its domain (num_bins < 2, bandwidth <= 0, ...).
    #[error("{0}")]
    InvalidArgument(String),

    /// Sizes whose buffers would exceed the memory policy (see `limits`), or a result too large
    /// for float64.
    #[error("{0}")]
    TooLarge(String),

    /// The caller's interrupt hook asked the computation to stop (see `interrupt`).
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, MmdError>;
