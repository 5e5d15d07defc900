// SPDX-License-Identifier: MIT OR Apache-2.0
//! How a test ends: the vocabulary every layer shares, and the only module that knows it.
//!
//! A test body returns a [`TestResult`] (`Ok(`[`Outcome`]`)`, or any error for a failure);
//! a peer function (and every helper a peer calls) returns a [`PeerResult`], whose
//! [`Failure`] is an outcome other than a pass, or one of the two the two-peer runner adds
//! (the other peer failed first; the topology could not be built). [`Outcome::from`] maps a
//! failure to the outcome reported.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// The result a test body reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The behaviour under test was observed.
    Pass,
    /// It was not; the reason says what was seen instead.
    Fail(String),
    /// The test could not run here (missing feature, tool, privilege).
    Skip(String),
    /// A known, documented failure (kselftest `XFAIL`): counted, does not fail the run.
    XFail(String),
}

impl Outcome {
    /// `Fail` with the given reason.
    pub fn fail(reason: impl fmt::Display) -> Self {
        Outcome::Fail(reason.to_string())
    }

    /// `Skip` with the given reason.
    pub fn skip(reason: impl fmt::Display) -> Self {
        Outcome::Skip(reason.to_string())
    }

    /// `XFail` with the given reason.
    pub fn xfail(reason: impl fmt::Display) -> Self {
        Outcome::XFail(reason.to_string())
    }
}

/// Any error a test body propagates with `?`; it becomes [`Outcome::Fail`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What a test body returns: `Ok(outcome)`, or an error that fails the test.
pub type TestResult = Result<Outcome, BoxError>;

/// Why a peer function did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The test failed; the text is a full sentence.
    Fail(String),
    /// The test cannot run here (missing kernel feature); the text is the reason.
    Skip(String),
    /// A known kernel issue showed up, as the kernel suite's `test_xfail`.
    XFail(String),
    /// The other peer failed first; its failure is the one reported.
    PeerFailed,
    /// The environment is broken (topology could not be built); kernel `test_error`.
    Setup(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Fail(s) => write!(f, "{s}"),
            Failure::Skip(s) => write!(f, "skipped: {s}"),
            Failure::XFail(s) => write!(f, "expected failure: {s}"),
            Failure::PeerFailed => write!(f, "the other peer failed"),
            Failure::Setup(s) => write!(f, "setup failed: {s}"),
        }
    }
}

impl std::error::Error for Failure {}

/// Result of a peer function.
pub type PeerResult<T = ()> = Result<T, Failure>;

/// Build a [`Failure::Fail`] from a format string: `return Err(failure!("counter {} did not grow", x))`.
#[macro_export]
macro_rules! failure {
    ($($arg:tt)*) => { $crate::outcome::Failure::Fail(format!($($arg)*)) };
}

/// Attach a sentence to an I/O error: `sk.listen(1).or_fail("server: listen() failed")?`.
pub trait OrFail<T> {
    /// Map the error to [`Failure::Fail`] with `what` and the error text.
    ///
    /// # Errors
    /// The mapped failure when `self` is an error.
    fn or_fail(self, what: &str) -> PeerResult<T>;
}

impl<T, E: fmt::Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> PeerResult<T> {
        self.map_err(|e| Failure::Fail(format!("{what}: {e}")))
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Fail(e.to_string())
    }
}

impl From<Failure> for Outcome {
    /// The outcome of a test whose one peer ended with `f`.
    fn from(f: Failure) -> Self {
        match f {
            Failure::Fail(s) => Outcome::Fail(s),
            Failure::Skip(s) => Outcome::Skip(s),
            Failure::XFail(s) => Outcome::XFail(s),
            Failure::Setup(s) => Outcome::Fail(format!("setup failed: {s}")),
            Failure::PeerFailed => Outcome::Fail("reported a peer failure without a peer".into()),
        }
    }
}

/// Returns early from a test body with [`Outcome::Fail`] and a formatted reason.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Ok($crate::Outcome::Fail(::std::format!($($arg)*)))
    };
}

/// Fails the test with a formatted reason unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::fail!($($arg)*);
        }
    };
}

/// Returns early from a test body with [`Outcome::Skip`] and a formatted reason.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {
        return ::core::result::Result::Ok($crate::Outcome::Skip(::std::format!($($arg)*)))
    };
}
