//! Tool definitions, grouped by what they act on. Each tool is a thin adapter: it takes the
//! authorised `Call` the guard attached, converts its arguments and calls one use case.

mod audit;
mod export;
mod grants;
mod keys;
mod me;
mod operators;
mod proof;
mod roles;
