//! Lifecycle states of a [`crate::Loader`], as types.
//!
//! The markers are sealed: only this crate can define a state, so the set
//! of transitions in `loader` is the whole story.

mod sealed {
    pub trait Sealed {}
}

/// A loader lifecycle state.
pub trait State: sealed::Sealed {
    /// Human-readable name.
    const NAME: &'static str;
}

macro_rules! state {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;
        impl sealed::Sealed for $name {}
        impl State for $name {
            const NAME: &'static str = stringify!($name);
        }
    };
}

state!(
    Created,
    "The sandbox exists; its root container has not started."
);
state!(Started, "Application code runs.");
state!(Paused, "Every task is stopped.");
state!(Checkpointed, "The sandbox's state has been saved.");

pub mod statefile;
