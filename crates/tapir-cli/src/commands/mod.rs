//! Every command, one function each, by what it works on.

pub(crate) mod calls;
pub(crate) mod conference;
pub(crate) mod lines;
pub(crate) mod service;
